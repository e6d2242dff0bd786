//! Rust source as tokens, just enough for the structure checks.
//!
//! Comments vanish and string and char literals become single tokens, so a brace,
//! a `crate::` path or a `set_var` inside them is never mistaken for code. That is
//! all a brace counter needs to be right, without a parser dependency.

/// What a token is; literals keep their text only where a check reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ident,
    /// One punctuation character, or `::`, `->` or `=>` (merged so `->` is never
    /// taken for a closing angle bracket).
    Punct,
    /// A string literal of any form; `text` is its content between the quotes.
    Str,
    Char,
    Lifetime,
    Number,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub kind: Kind,
    pub text: String,
    /// 1-based line of the token's first character.
    pub line: usize,
}

impl Token {
    pub fn is_punct(&self, p: &str) -> bool {
        self.kind == Kind::Punct && self.text == p
    }

    pub fn is_ident(&self, word: &str) -> bool {
        self.kind == Kind::Ident && self.text == word
    }
}

/// Splits `src` into tokens, dropping whitespace and comments.
pub fn tokenize(src: &str) -> Vec<Token> {
    let mut lexer = Lexer { chars: src.chars().collect(), pos: 0, line: 1, out: Vec::new() };
    lexer.run();
    lexer.out
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    out: Vec<Token>,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn push(&mut self, kind: Kind, text: String, line: usize) {
        self.out.push(Token { kind, text, line });
    }

    fn run(&mut self) {
        while let Some(c) = self.peek(0) {
            let line = self.line;
            match c {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '/' if self.peek(1) == Some('/') => self.line_comment(),
                '/' if self.peek(1) == Some('*') => self.block_comment(),
                '"' => {
                    let text = self.quoted('"');
                    self.push(Kind::Str, text, line);
                }
                '\'' => self.quote_or_lifetime(line),
                c if is_ident_start(c) => self.word(line),
                c if c.is_ascii_digit() => self.number(line),
                _ => self.punct(line),
            }
        }
    }

    fn line_comment(&mut self) {
        while let Some(c) = self.peek(0) {
            if c == '\n' {
                return;
            }
            self.bump();
        }
    }

    /// Block comments nest in Rust: `/* a /* b */ still a comment */`.
    fn block_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.peek(0) {
            if c == '/' && self.peek(1) == Some('*') {
                depth += 1;
                self.pos += 2;
            } else if c == '*' && self.peek(1) == Some('/') {
                depth -= 1;
                self.pos += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.bump();
            }
        }
    }

    /// A literal closed by `close` with backslash escapes (strings and chars); the
    /// cursor is on the opening quote.
    fn quoted(&mut self, close: char) -> String {
        self.bump();
        let mut text = String::new();
        while let Some(c) = self.bump() {
            if c == '\\' {
                text.push(c);
                if let Some(escaped) = self.bump() {
                    text.push(escaped);
                }
            } else if c == close {
                break;
            } else {
                text.push(c);
            }
        }
        text
    }

    /// `r"..."`, `r#"..."#` and so on: no escapes, closed by a quote and as many
    /// `#` as opened it. The cursor is on the first `#` or the quote.
    fn raw_string(&mut self) -> String {
        let mut hashes = 0;
        while self.peek(0) == Some('#') {
            hashes += 1;
            self.bump();
        }
        self.bump(); // the opening quote
        let mut text = String::new();
        while let Some(c) = self.bump() {
            if c == '"' && (0..hashes).all(|k| self.peek(k) == Some('#')) {
                self.pos += hashes;
                break;
            }
            text.push(c);
        }
        text
    }

    /// True when the cursor starts a raw string's `#...#"` or `"`.
    fn at_raw_string_opening(&self) -> bool {
        let mut k = 0;
        while self.peek(k) == Some('#') {
            k += 1;
        }
        self.peek(k) == Some('"')
    }

    /// `'x'`, `'\n'`, `'\u{7b}'` are chars; `'a` in `&'a str` or `'outer: loop`
    /// is a lifetime or label, whose quote is never closed.
    fn quote_or_lifetime(&mut self, line: usize) {
        if self.peek(1) == Some('\\') || self.peek(2) == Some('\'') {
            let text = self.quoted('\'');
            self.push(Kind::Char, text, line);
        } else if self.peek(1).is_some_and(is_ident_start) {
            self.bump();
            let name = self.ident_chars();
            self.push(Kind::Lifetime, name, line);
        } else {
            self.punct(line);
        }
    }

    fn ident_chars(&mut self) -> String {
        let mut word = String::new();
        while let Some(c) = self.peek(0).filter(|&c| is_ident_char(c)) {
            word.push(c);
            self.bump();
        }
        word
    }

    /// An identifier, or the prefix of a literal: `b"..."`, `c"..."`, `r#"..."#`,
    /// `br"..."`, `b'x'`; `r#name` is the raw identifier `name`.
    fn word(&mut self, line: usize) {
        let word = self.ident_chars();
        let next = self.peek(0);
        match word.as_str() {
            "b" | "c" if next == Some('"') => {
                let text = self.quoted('"');
                self.push(Kind::Str, text, line);
            }
            "r" | "br" | "cr" if self.at_raw_string_opening() => {
                let text = self.raw_string();
                self.push(Kind::Str, text, line);
            }
            "b" if next == Some('\'') => {
                let text = self.quoted('\'');
                self.push(Kind::Char, text, line);
            }
            "r" if next == Some('#') && self.peek(1).is_some_and(is_ident_start) => {
                self.bump();
                let name = self.ident_chars();
                self.push(Kind::Ident, name, line);
            }
            _ => self.push(Kind::Ident, word, line),
        }
    }

    /// Digits with suffixes (`0x1f`, `10u64`, `1_000`) and a fraction (`1.5`), but
    /// not a range's dots (`0..n`).
    fn number(&mut self, line: usize) {
        let mut text = String::new();
        while let Some(c) = self.peek(0) {
            let fraction = c == '.' && self.peek(1).is_some_and(|d| d.is_ascii_digit());
            if !(is_ident_char(c) || fraction) {
                break;
            }
            text.push(c);
            self.bump();
        }
        self.push(Kind::Number, text, line);
    }

    fn punct(&mut self, line: usize) {
        let first = self.bump().unwrap_or(' ');
        let pair = match (first, self.peek(0)) {
            (':', Some(':')) => Some("::"),
            ('-', Some('>')) => Some("->"),
            ('=', Some('>')) => Some("=>"),
            _ => None,
        };
        let text = match pair {
            Some(p) => {
                self.bump();
                p.to_string()
            }
            None => first.to_string(),
        };
        self.push(Kind::Punct, text, line);
    }
}

/// Index of the `}` that closes the `{` at `open`, or `None` when it never closes.
pub fn matching_close(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        if t.is_punct("{") {
            depth += 1;
        } else if t.is_punct("}") {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// True when every brace closes in order: a file that does not balance was
/// misread, and nothing computed from its tokens can be trusted.
pub fn balanced(tokens: &[Token]) -> bool {
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].is_punct("}") {
            return false;
        }
        if tokens[i].is_punct("{") {
            match matching_close(tokens, i) {
                Some(close) => i = close,
                None => return false,
            }
        }
        i += 1;
    }
    true
}

/// A function with a body.
#[derive(Debug)]
pub struct FnSpan {
    /// `Type::name` inside an `impl Type` or `trait Type` block, else `name`.
    pub name: String,
    pub first_line: usize,
    pub last_line: usize,
}

impl FnSpan {
    /// Lines from the `fn` line to the closing brace's, both included.
    pub fn lines(&self) -> usize {
        self.last_line - self.first_line + 1
    }
}

/// Every `fn NAME` with a body (free, method, nested); a declaration that ends in
/// `;` (a trait method without a default) has none and is skipped. `fn(u8)` types
/// have no name after `fn` and are skipped too.
pub fn functions(tokens: &[Token]) -> Vec<FnSpan> {
    let blocks = impl_blocks(tokens);
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let name = match tokens.get(i + 1) {
            Some(n) if t.is_ident("fn") && n.kind == Kind::Ident => &n.text,
            _ => continue,
        };
        let Some(open) = body_open(tokens, i + 2) else { continue };
        let Some(close) = matching_close(tokens, open) else { continue };
        // The innermost impl or trait block around the fn names its type.
        let owner = blocks.iter().filter(|b| b.open < i && i < b.close).max_by_key(|b| b.open);
        let name = match owner {
            Some(b) => format!("{}::{name}", b.name),
            None => name.clone(),
        };
        out.push(FnSpan { name, first_line: t.line, last_line: tokens[close].line });
    }
    out
}

/// The `{` that opens a signature's body, scanning from `from`; `None` for a
/// declaration. A `;` inside brackets or parentheses (`[u8; 4]`) ends nothing.
fn body_open(tokens: &[Token], from: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate().skip(from) {
        match t.text.as_str() {
            _ if t.kind != Kind::Punct => {}
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            "{" if depth == 0 => return Some(i),
            ";" | "}" if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

struct Block {
    name: String,
    open: usize,
    close: usize,
}

/// `impl ... {}` and `trait Name {}` blocks with the type they are about.
fn impl_blocks(tokens: &[Token]) -> Vec<Block> {
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let is_trait = t.is_ident("trait");
        // `impl` in a type (`-> impl Iterator`, `x: impl AsRef<Path>`) follows
        // punctuation other than the end of an item or attribute.
        let item_start = match i.checked_sub(1).map(|p| &tokens[p]) {
            None => true,
            Some(p) => ["}", ";", "{", "]"].iter().any(|s| p.is_punct(s)) || p.is_ident("unsafe"),
        };
        if !(is_trait || t.is_ident("impl") && item_start) {
            continue;
        }
        let Some(open) = tokens[i..].iter().position(|t| t.is_punct("{") || t.is_punct(";")).map(|p| p + i) else { continue };
        if !tokens[open].is_punct("{") {
            continue;
        }
        let Some(close) = matching_close(tokens, open) else { continue };
        let header = &tokens[i + 1..open];
        let name = if is_trait { header.first().map(|t| t.text.clone()) } else { impl_type_name(header) };
        out.push(Block { name: name.unwrap_or_else(|| "impl".into()), open, close });
    }
    out
}

/// `impl<T> Trait for Type<T> where ...` -> `Type`: the last identifier outside
/// angle brackets, after `for` when there is one, before `where`.
fn impl_type_name(header: &[Token]) -> Option<String> {
    let mut depth = 0i32;
    let mut name = None;
    for t in header {
        match t.text.as_str() {
            "<" if t.kind == Kind::Punct => depth += 1,
            ">" if t.kind == Kind::Punct => depth -= 1,
            "for" if depth == 0 => name = None,
            "where" if depth == 0 => break,
            _ if depth == 0 && t.kind == Kind::Ident => name = Some(t.text.clone()),
            _ => {}
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, String)> {
        tokenize(src).into_iter().map(|t| (t.kind, t.text)).collect()
    }

    fn spans(src: &str) -> Vec<(String, usize, usize)> {
        functions(&tokenize(src)).into_iter().map(|f| (f.name, f.first_line, f.last_line)).collect()
    }

    #[test]
    fn braces_in_strings_chars_and_comments_are_not_code() {
        let src = r####"fn a() {
    let s = "}\"{";
    let r = r#"}"# ;
    let rr = r##"a "# } still"##;
    let b = b"}";
    let br = br#"{"#;
    let c = '{';
    let d = '}';
    let e = '\'';
    let f = '\u{7b}';
    let g = b'}';
    // }
    /* } /* nested } */ } */
}
fn b() {}
"####;
        assert_eq!(spans(src), vec![("a".into(), 1, 14), ("b".into(), 15, 15)]);
    }

    #[test]
    fn lifetimes_and_labels_are_not_char_literals() {
        // A lifetime's quote is never closed: treating it as a char would swallow
        // the `{` after it and shift every brace that follows.
        let src = "fn a<'a>(x: &'a str) -> &'static str {\n    'outer: loop { break 'outer; }\n    x\n}\nfn b() {}\n";
        assert_eq!(spans(src), vec![("a".into(), 1, 4), ("b".into(), 5, 5)]);
        let toks = kinds("&'a '\"' '\\\\'");
        assert_eq!(
            toks,
            vec![(Kind::Punct, "&".into()), (Kind::Lifetime, "a".into()), (Kind::Char, "\"".into()), (Kind::Char, "\\\\".into())]
        );
    }

    #[test]
    fn declarations_and_fn_types_have_no_body() {
        let src = "trait T {\n    fn decl(&self, x: [u8; 4]);\n    fn with_default(&self) -> u8 {\n        0\n    }\n}\nfn takes(f: fn(u8) -> u8) {}\n";
        assert_eq!(spans(src), vec![("T::with_default".into(), 3, 5), ("takes".into(), 7, 7)]);
    }

    #[test]
    fn methods_are_named_after_their_type() {
        let src = "impl<'a, T: Clone> fmt::Display for Wrapper<'a, T> where T: Debug {\n    fn fmt(&self) {}\n}\n\
                   impl Plain {\n    pub(crate) const unsafe fn run() -> impl Iterator<Item = u8> {\n        fn inner() {}
        std::iter::empty()
    }\n}\n";
        assert_eq!(spans(src), vec![("Wrapper::fmt".into(), 2, 2), ("Plain::run".into(), 5, 8), ("Plain::inner".into(), 6, 6)]);
    }

    #[test]
    fn literal_prefixes_and_raw_identifiers() {
        assert_eq!(
            kinds(r###"r#type br"x" c"y" r#"a"b"# 1.5 0..n x.0"###),
            vec![
                (Kind::Ident, "type".into()),
                (Kind::Str, "x".into()),
                (Kind::Str, "y".into()),
                (Kind::Str, "a\"b".into()),
                (Kind::Number, "1.5".into()),
                (Kind::Number, "0".into()),
                (Kind::Punct, ".".into()),
                (Kind::Punct, ".".into()),
                (Kind::Ident, "n".into()),
                (Kind::Ident, "x".into()),
                (Kind::Punct, ".".into()),
                (Kind::Number, "0".into()),
            ]
        );
    }

    #[test]
    fn lines_are_counted_inside_multiline_literals_and_comments() {
        let toks = tokenize("\"a\nb\"\n/* c\nd */ x\nr#\"\n\"# y");
        let lines: Vec<_> = toks.iter().map(|t| (t.text.as_str(), t.line)).collect();
        assert_eq!(lines, vec![("a\nb", 1), ("x", 4), ("\n", 5), ("y", 6)]);
    }

    #[test]
    fn an_unclosed_brace_has_no_match() {
        let toks = tokenize("fn a() { {");
        assert_eq!(matching_close(&toks, 3), None);
        assert!(functions(&toks).is_empty());
    }
}
