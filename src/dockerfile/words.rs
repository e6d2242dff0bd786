//! Shell-word splitting and `$VAR` expansion, compatible with BuildKit's lexer.
//!
//! Dockerfile instructions such as ENV, COPY or WORKDIR expand variables with
//! a small, deterministic subset of POSIX shell rules: single and double
//! quotes, the escape character (`\` or a backtick chosen by `# escape=`),
//! `$NAME`, `${NAME}` and the `${NAME:-word}` family of modifiers, plus the
//! pattern operators `#`, `##`, `%`, `%%`, `/` and `//`. Nothing here runs a
//! shell or touches the process environment: every function is pure and the
//! caller supplies variables through [`Lookup`], so the build stage decides
//! which environment applies.
//!
//! The parser also uses this lexer in "raw" mode (quotes and escapes kept,
//! unset variables left as written) to find heredoc markers in a line.

use std::collections::{BTreeMap, HashMap};

use super::pattern::{replace, trim_prefix, trim_suffix, InvalidPattern};

/// Source of variable values for expansion.
pub trait Lookup {
    /// The value of `name`, or `None` when the variable is unset. A variable set
    /// to the empty string must return `Some("")`: `${V:-x}` and `${V-x}` differ.
    fn lookup(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn lookup(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Lookup for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Lookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandErrorKind {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'")]
    InvalidPattern { pattern: String, escaped: String },
}

impl From<InvalidPattern> for ExpandErrorKind {
    fn from(e: InvalidPattern) -> Self {
        ExpandErrorKind::InvalidPattern { pattern: e.pattern, escaped: e.escaped }
    }
}

/// An expansion failure, naming the word being processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ExpandError {
    pub word: String,
    pub kind: ExpandErrorKind,
}

/// Expands one word and removes its quotes, keeping inner whitespace: what
/// ENV values, WORKDIR, USER and the like need.
pub fn expand_word(word: &str, env: &dyn Lookup, escape: char) -> Result<String, ExpandError> {
    Lexer::new(escape).process(word, env).map(|(w, _)| w)
}

/// Expands `text` and splits it into words on unquoted whitespace. Whitespace
/// coming from a variable's value splits too, as in a shell.
pub fn expand_words(text: &str, env: &dyn Lookup, escape: char) -> Result<Vec<String>, ExpandError> {
    Lexer::new(escape).process(text, env).map(|(_, ws)| ws)
}

/// Lexer settings. The defaults give normal expansion; the raw switches exist
/// for the parser's heredoc detection, which must see the line as written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written instead of emptying them.
    pub skip_unset: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer { escape, raw_quotes: false, raw_escapes: false, skip_unset: false }
    }

    /// Returns the expanded word and its split into words.
    pub fn process(&self, word: &str, env: &dyn Lookup) -> Result<(String, Vec<String>), ExpandError> {
        let mut state = State { lx: *self, chars: word.chars().collect(), pos: 0, env, raw_escapes: self.raw_escapes };
        state.process_stop_on(None, self.raw_escapes).map_err(|kind| ExpandError { word: word.to_string(), kind })
    }
}

/// Accumulates split words; whitespace from literals and from variable values
/// separates words, quoted or escaped text never does.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct State<'a> {
    lx: Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Lookup,
    raw_escapes: bool,
}

type Res<T> = Result<T, ExpandErrorKind>;

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes until `stop` (consumed) or the end of input. Nested `${...}`
    /// words stop on `}`; pattern words keep their escapes so the pattern
    /// compiler can tell `\*` from `*`.
    fn process_stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Res<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn process_inner(&mut self, stop: Option<char>) -> Res<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                    words.add_string(&v);
                }
                '\'' => {
                    let v = self.process_single_quote()?;
                    result.push_str(&v);
                    words.add_raw_string(&v);
                }
                '"' => {
                    let v = self.process_double_quote()?;
                    result.push_str(&v);
                    words.add_raw_string(&v);
                }
                _ => {
                    self.pos += 1;
                    if ch == self.lx.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // An escape at the very end is dropped, as in BuildKit.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(c) => Err(ExpandErrorKind::Unterminated(c)),
            None => Ok((result, words.finish())),
        }
    }

    fn process_single_quote(&mut self) -> Res<String> {
        // Everything up to the closing quote is literal; nothing escapes `'`.
        let mut out = String::new();
        let open = self.next().unwrap_or('\'');
        if self.lx.raw_quotes {
            out.push(open);
        }
        loop {
            match self.next() {
                None => return Err(ExpandErrorKind::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lx.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Res<String> {
        // Only `"`, `$` and the escape character itself can be escaped inside
        // double quotes; any other escape stays literal (`"a\tb"` keeps `\t`).
        let mut out = String::new();
        let open = self.next().unwrap_or('"');
        if self.lx.raw_quotes {
            out.push(open);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandErrorKind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.lx.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    out.push_str(&v);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.lx.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lx.escape => {
                                self.pos += 1;
                                ch = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.lookup(name)
    }

    fn process_dollar(&mut self) -> Res<String> {
        self.pos += 1; // the `$`
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.value_or_reference(&name, || format!("${name}")));
        }
        self.pos += 1; // the `{`
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        match self.next() {
            Some('}') => Ok(self.value_or_reference(&name, || format!("${{{name}}}"))),
            Some(first @ (':' | '+' | '-' | '?' | '#' | '%')) => self.process_modifier(name, first),
            Some('/') => self.process_replace(name),
            other => Err(ExpandErrorKind::UnsupportedModifier(other.into_iter().collect())),
        }
    }

    /// The variable's value; when it is unset, the reference as written (`shown`)
    /// in raw mode, else nothing.
    fn value_or_reference(&self, name: &str, shown: impl FnOnce() -> String) -> String {
        match self.lookup(name) {
            Some(v) => v,
            None if self.lx.skip_unset => shown(),
            None => String::new(),
        }
    }

    /// The rest of `${NAME:-word}` and its family (`-`, `+`, `?`, `#`, `##`, `%`,
    /// `%%`, each but the patterns also after `:`), `first` being the character
    /// after the name.
    fn process_modifier(&mut self, name: String, first: char) -> Res<String> {
        let mut modifier = first.to_string();
        let mut op = Some(first);
        let null_is_unset = first == ':';
        if null_is_unset {
            op = self.next();
            modifier.extend(op);
        }
        let raw = matches!(op, Some('#' | '%'));
        let word = self.word_until('}', raw, ExpandErrorKind::MissingBrace)?;
        let value = self.lookup(&name);
        if self.lx.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let unset_or_null = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            Some('-') => Ok(if unset_or_null { word } else { value.unwrap_or_default() }),
            Some('+') => Ok(if unset_or_null { String::new() } else { word }),
            Some('?') => required(name, value, null_is_unset, word),
            Some(c @ ('#' | '%')) => trim(c, word, &value.unwrap_or_default()),
            _ => Err(ExpandErrorKind::UnsupportedModifier(modifier)),
        }
    }

    /// The rest of `${NAME/pattern/replacement}` and `${NAME//pattern/replacement}`.
    fn process_replace(&mut self, name: String) -> Res<String> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern = self.word_until('/', true, ExpandErrorKind::MissingSlash)?;
        let replacement = self.word_until('}', true, ExpandErrorKind::MissingBrace)?;
        let value = self.lookup(&name);
        if self.lx.skip_unset && value.is_none() {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        Ok(replace(&pattern, &value.unwrap_or_default(), &replacement, all)?)
    }

    /// A nested word up to `stop`. Running out of input means the delimiter is
    /// missing, which is reported as `at_end` whatever stopped the inner word.
    fn word_until(&mut self, stop: char, raw_escapes: bool, at_end: ExpandErrorKind) -> Res<String> {
        match self.process_stop_on(Some(stop), raw_escapes) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err(at_end),
            Err(e) => Err(e),
        }
    }

    /// Reads a variable name: letters, digits and `_`; a leading digit run is
    /// a positional parameter and a special parameter is one character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }
}

/// `${NAME?message}` and `${NAME:?message}`: the value, or an error with the
/// message (a default one when it is empty).
fn required(name: String, value: Option<String>, null_is_unset: bool, message: String) -> Res<String> {
    let default = match value {
        None => "is not allowed to be unset",
        Some(ref v) if null_is_unset && v.is_empty() => "is not allowed to be empty",
        Some(v) => return Ok(v),
    };
    let message = if message.is_empty() { default.to_string() } else { message };
    Err(ExpandErrorKind::Required { name, message })
}

/// `#`/`##` (prefix) and `%`/`%%` (suffix) trimming; the doubled operator, seen as
/// the pattern's first character, makes the match greedy.
fn trim(op: char, word: String, value: &str) -> Res<String> {
    let (greedy, pat) = match word.strip_prefix(op) {
        Some(rest) => (true, rest.to_string()),
        None => (false, word),
    };
    let trimmed = if op == '%' { trim_suffix(&pat, value, greedy) } else { trim_prefix(&pat, value, greedy) };
    Ok(trimmed?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PWD" => Some("/home".into()),
            "EMPTY" => Some(String::new()),
            "STR" => Some("foobarbaz".into()),
            "SP" => Some("a  b".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> Result<String, ExpandError> {
        expand_word(s, &env, '\\')
    }

    #[test]
    fn simple_and_braced() {
        assert_eq!(w("$PWD/x").unwrap(), "/home/x");
        assert_eq!(w("${PWD}x").unwrap(), "/homex");
        assert_eq!(w("${NOPE:-d}").unwrap(), "d");
        assert_eq!(w("${EMPTY-d}").unwrap(), "");
        assert_eq!(w("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(w("${EMPTY+set}").unwrap(), "set");
        assert_eq!(w("${EMPTY:+set}").unwrap(), "");
    }

    #[test]
    fn required_errors_carry_message() {
        let e = w("${NOPE:?must be set}").unwrap_err();
        assert_eq!(e.kind, ExpandErrorKind::Required { name: "NOPE".into(), message: "must be set".into() });
        assert!(w("${EMPTY?}").is_ok());
    }

    #[test]
    fn pattern_operators() {
        assert_eq!(w("${STR#f*b}").unwrap(), "arbaz");
        assert_eq!(w("${STR##f*b}").unwrap(), "az");
        assert_eq!(w("${STR%b*}").unwrap(), "foobar");
        assert_eq!(w("${STR%%b*}").unwrap(), "foo");
        assert_eq!(w("${STR/ba/fo}").unwrap(), "fooforbaz");
        assert_eq!(w("${STR//ba/fo}").unwrap(), "fooforfoz");
        assert_eq!(w("${STR#x}").unwrap(), "foobarbaz");
    }

    #[test]
    fn backtick_escape() {
        assert_eq!(expand_word("a`$PWD", &env, '`').unwrap(), "a$PWD");
        assert_eq!(expand_word("a\\b", &env, '`').unwrap(), "a\\b");
    }

    #[test]
    fn splitting() {
        let ws = expand_words("x $SP \"$SP\" 'y z'", &env, '\\').unwrap();
        assert_eq!(ws, ["x", "a", "b", "a  b", "y z"]);
    }

    #[test]
    fn raw_lexer_keeps_text() {
        let lx = Lexer { raw_quotes: true, raw_escapes: true, skip_unset: true, ..Lexer::new('\\') };
        let (_, ws) = lx.process("RUN <<\"EOF\" $X ${Y:-z} a\\ b", &env).unwrap();
        assert_eq!(ws, ["RUN", "<<\"EOF\"", "$X", "${Y:-z}", "a\\ b"]);
    }
}
