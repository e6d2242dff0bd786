//! The syntax tree: one [`Node`] per instruction, as BuildKit's parser builds
//! it, before any instruction-specific validation.
//!
//! Each keyword has its own argument rule (JSON-or-shell, whitespace list,
//! name/value pairs, ...), mirroring BuildKit's "line parsers" so that the
//! tree, printed with [`Node::dump`], is byte-for-byte the reference format
//! used by BuildKit's golden tests. Unknown keywords are kept with no
//! arguments here; rejecting them is the job of the instruction layer.

use super::ParseErrorKind;

/// A heredoc attached to RUN, COPY or ADD (`<<EOF ... EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter with quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The body, each line with its newline. In a [`Node`] this is the raw
    /// text; in an [`Instruction`](super::Instruction) leading tabs are
    /// already removed when `chomp` is set.
    pub content: String,
    /// False when the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from body lines.
    pub chomp: bool,
}

/// One parsed instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Lower-cased instruction keyword (`run`, `copy`, ...).
    pub keyword: String,
    /// Leading `--flags` as written but unquoted (`--from=x`).
    pub flags: Vec<String>,
    /// Arguments. For the JSON form the decoded array; for the shell form of
    /// RUN/CMD/ENTRYPOINT/SHELL one string; ENV and LABEL hold triples
    /// (name, raw value, `"="` or `""` for the legacy form); HEALTHCHECK starts
    /// with its type (`CMD`, `NONE`).
    pub args: Vec<String>,
    /// True when `args` came from a JSON array.
    pub json_form: bool,
    pub heredocs: Vec<Heredoc>,
    /// 1-based first and last physical line of the instruction.
    pub start_line: usize,
    pub end_line: usize,
    /// The logical line (continuations joined) the node was parsed from.
    pub original: String,
    /// ONBUILD's nested instruction.
    pub onbuild: Option<Box<Node>>,
}

impl Node {
    /// Prints the node in BuildKit's test format, without the surrounding
    /// parentheses of the top level: `run ["--mount=x"] "make"`.
    pub fn dump(&self) -> String {
        let mut s = self.keyword.clone();
        if !self.flags.is_empty() {
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&format!(" [{}]", quoted.join(" ")));
        }
        if let Some(sub) = &self.onbuild {
            s.push_str(&format!(" ({})", sub.dump()));
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(a));
        }
        s.trim().to_string()
    }

    /// Whether heredoc markers in this line are honoured: only RUN, COPY and
    /// ADD in shell form, possibly under ONBUILD.
    pub(crate) fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.keyword[..], &self.onbuild) {
            ("onbuild", Some(sub)) => sub,
            _ => self,
        };
        matches!(&node.keyword[..], "run" | "copy" | "add") && !node.json_form
    }
}

/// Go's `strconv.Quote`: the golden files are produced with it.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `unicode.IsPrint`: graphic characters and the ASCII
/// space; other spaces, controls and format characters are escaped.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format_or_private = matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xd800..=0xf8ff
        | 0xfeff | 0xfff9..=0xfffb | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..=0x10ffff);
    !format_or_private && !(0xfdd0..=0xfdef).contains(&u) && (u & 0xfffe) != 0xfffe
}

/// `[\t\v\f\r ]`: the whitespace BuildKit splits keywords and lists on.
fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn split_token_space(s: &str) -> Vec<String> {
    s.split(is_token_space).filter(|p| !p.is_empty()).map(str::to_string).collect()
}

/// Splits off the first whitespace-separated token and the rest.
fn split_once_space(s: &str) -> (&str, Option<&str>) {
    match s.find(is_token_space) {
        Some(i) => (&s[..i], Some(s[i..].trim_start_matches(is_token_space))),
        None => (s, None),
    }
}

/// Builds a node from one logical line. Line numbers and heredocs are filled
/// in by the caller.
pub(crate) fn node_from_line(line: &str, escape: char) -> Result<Node, ParseErrorKind> {
    let (cmd, rest) = split_once_space(line.trim());
    let keyword = cmd.to_lowercase();
    let (args_text, flags) = match rest {
        Some(r) => extract_flags(r),
        None => (String::new(), Vec::new()),
    };
    let rest = args_text.trim();
    let mut node = Node {
        keyword,
        flags,
        args: Vec::new(),
        json_form: false,
        heredocs: Vec::new(),
        start_line: 0,
        end_line: 0,
        original: line.to_string(),
        onbuild: None,
    };
    match node.keyword.as_str() {
        "add" | "copy" | "volume" => match parse_json(rest)? {
            Some(v) => set_json(&mut node, v),
            None => node.args = split_token_space(rest),
        },
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(&mut node, rest)?,
        "arg" => node.args = parse_words(rest, escape),
        "env" | "label" => node.args = parse_name_val(rest, &node.keyword, escape)?,
        "expose" | "from" => node.args = split_token_space(rest),
        "maintainer" | "stopsignal" | "user" | "workdir" if !rest.is_empty() => {
            node.args.push(rest.to_string());
        }
        "healthcheck" => {
            let (typ, cmd) = split_once_unicode_space(rest);
            if !typ.is_empty() {
                node.args.push(typ.to_string());
                maybe_json(&mut node, cmd)?;
            }
        }
        "onbuild" if !rest.is_empty() => {
            node.onbuild = Some(Box::new(node_from_line(rest, escape)?));
        }
        _ => {}
    }
    Ok(node)
}

fn split_once_unicode_space(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn set_json(node: &mut Node, values: Vec<String>) {
    node.args.extend(values);
    node.json_form = true;
}

/// JSON array if it parses as one, else the whole text as one shell string.
fn maybe_json(node: &mut Node, rest: &str) -> Result<(), ParseErrorKind> {
    if rest.is_empty() {
        return Ok(());
    }
    match parse_json(rest)? {
        Some(v) => set_json(node, v),
        None => node.args.push(rest.to_string()),
    }
    Ok(())
}

/// Decodes a leading JSON array of strings. Text after the array is ignored,
/// like Go's `json.Decoder`. `Ok(None)` means "not JSON, use the shell form";
/// an array holding anything but strings is an error.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, ParseErrorKind> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    let Some(Ok(serde_json::Value::Array(items))) = stream.next() else {
        return Ok(None);
    };
    items
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(ParseErrorKind::NotStringArray),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Splits off leading `--flag[=value]` words. Quotes and backslashes inside
/// flags are processed; a bare `--` ends the flags and is dropped.
fn extract_flags(line: &str) -> (String, Vec<String>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut flags = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && chars[i].1.is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            return (String::new(), flags);
        }
        let starts_flag = chars[i].1 == '-' && chars.get(i + 1).map(|c| c.1) == Some('-');
        if !starts_flag {
            return (line[chars[i].0..].to_string(), flags);
        }
        let mut word = String::new();
        let mut blank_ok = false;
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let ch = chars[i].1;
            match quote {
                None if ch.is_whitespace() => break,
                None if ch == '\'' || ch == '"' => {
                    quote = Some(ch);
                    blank_ok = true;
                }
                Some(q) if ch == q => quote = None,
                _ if ch == '\\' => {
                    if i + 1 < chars.len() {
                        i += 1;
                        word.push(chars[i].1);
                    } else {
                        quote = None;
                    }
                }
                _ => word.push(ch),
            }
            i += 1;
        }
        if word == "--" {
            let rest = chars.get(i).map_or("", |c| &line[c.0..]);
            return (rest.to_string(), flags);
        }
        if blank_ok || !word.is_empty() {
            flags.push(word);
        }
    }
}

/// Splits on whitespace keeping quotes and escapes in the words (they are
/// removed later, at expansion time).
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let mut ch = chars[i];
        let last = i + 1 == chars.len();
        if !in_word {
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            in_word = true;
        }
        match quote {
            None => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if last {
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    ch = chars[i];
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    if last {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    ch = chars[i];
                }
                word.push(ch);
            }
        }
        i += 1;
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// ENV/LABEL arguments as (name, value, separator) triples: `NAME value`
/// (legacy, separator `""`) or one or more `name=value` words (`"="`).
fn parse_name_val(rest: &str, keyword: &str, escape: char) -> Result<Vec<String>, ParseErrorKind> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let (name, value) = split_once_space(rest);
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Err(ParseErrorKind::NeedsTwoArguments(keyword.to_uppercase()));
        };
        return Ok(vec![name.to_string(), value.to_string(), String::new()]);
    }
    let mut out = Vec::new();
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(ParseErrorKind::MissingEquals(word));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(line: &str) -> String {
        node_from_line(line, '\\').unwrap().dump()
    }

    #[test]
    fn quoting_matches_go() {
        assert_eq!(go_quote("a\"b\\c\n\x00é"), "\"a\\\"b\\\\c\\n\\x00é\"");
        assert_eq!(go_quote("\u{a0}"), "\"\\u00a0\"");
    }

    #[test]
    fn flags_and_json() {
        assert_eq!(dump("COPY --from=a -- x y"), "copy [\"--from=a\"] \"x\" \"y\"");
        assert_eq!(dump("CMD [\"a\", \"b\"] trailing"), "cmd \"a\" \"b\"");
        assert_eq!(dump("RUN --mount=\"type=cache\" make"), "run [\"--mount=type=cache\"] \"make\"");
        assert!(node_from_line("CMD [1]", '\\').is_err());
    }

    #[test]
    fn env_forms() {
        assert_eq!(dump("ENV a b c"), "env \"a\" \"b c\" \"\"");
        assert_eq!(dump("ENV a=\"x y\" b=1"), "env \"a\" \"\\\"x y\\\"\" \"=\" \"b\" \"1\" \"=\"");
        assert!(node_from_line("ENV a", '\\').is_err());
        assert!(node_from_line("ENV a=1 b", '\\').is_err());
    }

    #[test]
    fn onbuild_nests() {
        assert_eq!(dump("ONBUILD RUN echo hi"), "onbuild (run \"echo hi\")");
        assert_eq!(dump("HEALTHCHECK --retries=3 CMD [\"x\"]"), "healthcheck [\"--retries=3\"] \"CMD\" \"x\"");
    }
}
