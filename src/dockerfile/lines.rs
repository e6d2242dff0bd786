//! Physical lines to logical lines: parser directives, comments, line
//! continuations and heredoc bodies.
//!
//! This follows BuildKit's scanner closely because small differences show up
//! as different instructions: directives are only recognised before the first
//! comment, blank line or instruction; a continuation is the escape character
//! as the last non-blank character unless it is itself escaped; comment lines
//! and blank lines inside a continuation are dropped; and continuation lines
//! keep their leading whitespace (only the first line of an instruction is
//! left-trimmed). Line numbers are 1-based and inclusive.

use super::words::Lexer;
use super::{Heredoc, ParseErrorKind};

/// Parser directives found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape character: `\` by default or a backtick.
    pub escape: char,
    /// `# syntax=` value, recorded but not acted upon.
    pub syntax: Option<String>,
    /// `# check=` value, recorded for linting.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives { escape: '\\', syntax: None, check: None }
    }
}

/// One instruction's text with its continuations joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    pub text: String,
    pub start_line: usize,
    pub end_line: usize,
}

/// A located failure while reading lines; the caller adds the file name.
#[derive(Debug)]
pub(crate) struct LineError {
    pub line: usize,
    pub end_line: usize,
    pub kind: ParseErrorKind,
}

/// Reads a Dockerfile line by line, tracking directives and line numbers.
pub(crate) struct LineReader<'a> {
    lines: Vec<&'a str>,
    /// Number of physical lines consumed so far (= 1-based number of the last).
    consumed: usize,
    pub directives: Directives,
    directives_done: bool,
    escape_seen: bool,
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

/// A comment is a line whose first non-blank character is `#`.
fn is_comment(raw: &str) -> bool {
    trim_newline(raw).trim_start().starts_with('#')
}

impl<'a> LineReader<'a> {
    pub fn new(text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        LineReader {
            lines: text.split_inclusive('\n').collect(),
            consumed: 0,
            directives: Directives::default(),
            directives_done: false,
            escape_seen: false,
        }
    }

    /// 1-based number of the last line read (0 before any).
    pub fn line_number(&self) -> usize {
        self.consumed
    }

    fn next_raw(&mut self) -> Option<&'a str> {
        let l = self.lines.get(self.consumed).copied();
        if l.is_some() {
            self.consumed += 1;
        }
        l
    }

    /// Looks for a directive while still at the top of the file; anything that
    /// is not a known directive ends the directive section for good.
    fn check_directive(&mut self, line: &str) -> Result<(), ParseErrorKind> {
        if self.directives_done {
            return Ok(());
        }
        let Some((key, value)) = parse_directive(line) else {
            self.directives_done = true;
            return Ok(());
        };
        let slot = match key.as_str() {
            "escape" => {
                if value != "\\" && value != "`" {
                    return Err(ParseErrorKind::InvalidEscape(value));
                }
                if self.escape_seen {
                    return Err(ParseErrorKind::DuplicateDirective(key));
                }
                self.directives.escape = value.chars().next().unwrap_or('\\');
                self.escape_seen = true;
                return Ok(());
            }
            "syntax" => &mut self.directives.syntax,
            "check" => &mut self.directives.check,
            _ => {
                self.directives_done = true;
                return Ok(());
            }
        };
        if slot.is_some() {
            return Err(ParseErrorKind::DuplicateDirective(key));
        }
        *slot = Some(value);
        Ok(())
    }

    /// Strips a trailing continuation (escape char plus optional blanks).
    /// Returns the text and whether the logical line ends here.
    fn trim_continuation(&self, line: &str) -> (String, bool) {
        let esc = self.directives.escape;
        let body = line.trim_end_matches([' ', '\t']);
        if let Some(before) = body.strip_suffix(esc) {
            // An escaped escape character (`\\`) at the end is literal text.
            if before.is_empty() || !before.ends_with(esc) {
                return (before.to_string(), false);
            }
        }
        (line.to_string(), true)
    }

    /// The next instruction's text, or `None` at the end of the file.
    pub fn next_logical(&mut self) -> Result<Option<LogicalLine>, LineError> {
        loop {
            let Some(raw) = self.next_raw() else {
                return Ok(None);
            };
            let here = self.consumed;
            let token = trim_newline(raw).trim_start();
            self.check_directive(token).map_err(|kind| LineError { line: here, end_line: here, kind })?;
            let token = if token.starts_with('#') { "" } else { token };
            let (mut text, mut end) = self.trim_continuation(token);
            if end && text.is_empty() {
                continue;
            }
            let start_line = here;
            while !end {
                let Some(raw) = self.next_raw() else { break };
                if is_comment(raw) {
                    continue;
                }
                let token = trim_newline(raw);
                // Blank lines inside a continuation are skipped (BuildKit warns).
                if token.trim_start().is_empty() {
                    continue;
                }
                let (part, e) = self.trim_continuation(token);
                text.push_str(&part);
                end = e;
            }
            return Ok(Some(LogicalLine { text, start_line, end_line: self.consumed }));
        }
    }

    /// Reads a heredoc body up to its terminator line; the content keeps its
    /// newlines and, for `<<-`, its tabs (they are stripped when instructions
    /// are built, as BuildKit does).
    pub fn read_heredoc(&mut self, name: &str, chomp: bool) -> Result<String, ParseErrorKind> {
        let mut content = String::new();
        while let Some(raw) = self.next_raw() {
            let mut candidate = trim_newline(raw);
            if chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == name {
                return Ok(content);
            }
            content.push_str(raw);
        }
        Err(ParseErrorKind::UnterminatedHeredoc(name.to_string()))
    }
}

/// Matches `#\s*key\s*=\s*value\s*` with an ASCII-alphanumeric key starting
/// with a letter. The key is lower-cased; the value keeps its case.
fn parse_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_re_space);
    let key_len = rest.char_indices().find(|(_, c)| !c.is_ascii_alphanumeric()).map_or(rest.len(), |(i, _)| i);
    let key = &rest[..key_len];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let rest = rest[key_len..].trim_start_matches(is_re_space);
    let rest = rest.strip_prefix('=')?;
    let value = rest.trim_matches(is_re_space);
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value.to_string()))
}

/// `\s` in Go's RE2 syntax: ASCII whitespace only.
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x0b')
}

/// Finds heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `2<<EOF`) in an
/// instruction line, in order.
pub(crate) fn heredocs_in_line(line: &str) -> Result<Vec<Heredoc>, ParseErrorKind> {
    let lexer = Lexer { raw_quotes: true, raw_escapes: true, skip_unset: true, ..Lexer::new('\\') };
    let none = |_: &str| None;
    // A line the lexer cannot split (an open quote) simply has no heredocs.
    let Ok((_, words)) = lexer.process(line, &none) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    for word in words {
        if let Some(h) = parse_heredoc_marker(&word)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

/// Parses one word as a heredoc marker: `^(\d*)<<(-?)([^<]*)$`. Quoting any
/// part of the delimiter turns expansion of the body off.
pub(crate) fn parse_heredoc_marker(word: &str) -> Result<Option<Heredoc>, ParseErrorKind> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let none = |_: &str| None;
    let mut lexer = Lexer { skip_unset: true, ..Lexer::new('\\') };
    let (_, words) = lexer.process(rest, &none).map_err(ParseErrorKind::Heredoc)?;
    if words.len() != 1 {
        return Ok(None);
    }
    lexer.raw_quotes = true;
    let (_, raw) = lexer.process(rest, &none).map_err(ParseErrorKind::Heredoc)?;
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let expand = raw.first().map(|r| quotes(r)) == Some(quotes(&words[0]));
    Ok(Some(Heredoc { name: words[0].clone(), content: String::new(), expand, chomp }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logical(text: &str) -> Vec<(String, usize, usize)> {
        let mut r = LineReader::new(text);
        let mut out = Vec::new();
        while let Some(l) = r.next_logical().unwrap() {
            out.push((l.text, l.start_line, l.end_line));
        }
        out
    }

    #[test]
    fn continuation_skips_comments_and_blanks() {
        let got = logical("RUN a \\\n# c\n\n  b\nFROM x\n");
        assert_eq!(got[0], ("RUN a   b".to_string(), 1, 4));
        assert_eq!(got[1], ("FROM x".to_string(), 5, 5));
    }

    #[test]
    fn escaped_escape_is_not_a_continuation() {
        let got = logical("ENV A b\\\\\nENV C d\n");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn directives_only_at_top() {
        let mut r = LineReader::new("# Escape = `\n#syntax=docker/dockerfile:1\nFROM x `\n  y\n# check=skip=all\n");
        let l = r.next_logical().unwrap().unwrap();
        assert_eq!(l.text, "FROM x   y");
        assert_eq!(r.directives.escape, '`');
        assert_eq!(r.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(r.directives.check, None);
    }

    #[test]
    fn duplicate_and_invalid_directives() {
        let mut r = LineReader::new("# escape=`\n# escape=\\\nFROM x\n");
        assert!(r.next_logical().is_err());
        let mut r = LineReader::new("# escape=x\nFROM x\n");
        assert!(r.next_logical().is_err());
    }

    #[test]
    fn heredoc_markers() {
        let docs = heredocs_in_line("RUN <<EOF <<-'E2' 3<<\"E3\" cat").unwrap();
        let names: Vec<_> = docs.iter().map(|d| (d.name.as_str(), d.expand, d.chomp)).collect();
        assert_eq!(names, [("EOF", true, false), ("E2", false, true), ("E3", false, false)]);
        assert!(heredocs_in_line("RUN echo a<<b").unwrap().is_empty());
    }

    #[test]
    fn heredoc_body() {
        let mut r = LineReader::new("RUN <<-EOF\n\techo hi\n\tEOF\nFROM x\n");
        r.next_logical().unwrap();
        assert_eq!(r.read_heredoc("EOF", true).unwrap(), "\techo hi\n");
        assert_eq!(r.next_logical().unwrap().unwrap().start_line, 4);
    }
}
