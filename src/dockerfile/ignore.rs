//! `.dockerignore` (and `.containerignore`) patterns with moby's semantics.
//!
//! Patterns are anchored at the context root; `*` and `?` never cross `/`; `**`
//! matches any number of directories; `!` re-includes; the last matching pattern
//! wins; a pattern that matches a parent directory matches everything below it.
//!
//! What reaches a build is what Docker's context transfer (fsutil's walker, as
//! the BuildKit of Docker 20.10 runs it) lets through, which is more than the
//! patterns: an excluded directory is skipped whole unless an exception pattern
//! begins, literally, with its path and a `/` ([`Ignore::walks_into`]), so `a`
//! then `!*/b` does not bring back `a/b`; and a directory walked into for a
//! re-included file comes with that file. [`Ignore::excluded`] gives that
//! verdict; walks that skip what `walks_into` refuses ask [`Ignore::matches`].

use std::path::Path;

/// One element of a compiled pattern.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// `**` at the end (or a leading `**` suffix match): anything, `/` included.
    Any,
    /// `**` elsewhere, with or without its `/`: zero or more whole directories.
    Dirs,
    /// `*`: anything but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    /// `[...]`: a class, kept as written (without brackets) for matching.
    Class {
        negate: bool,
        ranges: Vec<(char, char)>,
    },
    Lit(char),
}

#[derive(Clone, Debug)]
struct Pattern {
    exclusion: bool,
    /// As cleaned, without `!` or a leading `/`: what the prefix rule compares.
    text: String,
    toks: Vec<Tok>,
}

/// A parsed ignore file.
#[derive(Clone, Debug, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parses the text of an ignore file.
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        // A UTF-8 byte order mark before the first line is not part of a pattern.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
            }
            let cleaned = clean(p);
            let cleaned = if cleaned.len() > 1 { cleaned.strip_prefix('/').unwrap_or(&cleaned).to_string() } else { cleaned };
            patterns.push(Pattern { exclusion, toks: compile(&cleaned), text: cleaned });
        }
        Ignore { patterns }
    }

    /// Loads the ignore file for a build: `<Dockerfile>.dockerignore` next to the
    /// Dockerfile wins, then `.containerignore`, then `.dockerignore` in the context.
    /// `read` reads one candidate (NotFound when absent); the builder's reader keeps
    /// a context's files inside the context.
    pub fn for_build(context: &Path, dockerfile: &Path, read: impl Fn(&Path) -> std::io::Result<String>) -> std::io::Result<Ignore> {
        let mut candidates = Vec::new();
        if let Some(name) = dockerfile.file_name() {
            let mut n = name.to_os_string();
            n.push(".dockerignore");
            candidates.push(dockerfile.with_file_name(n));
        }
        candidates.push(context.join(".containerignore"));
        candidates.push(context.join(".dockerignore"));
        for c in candidates {
            match read(&c) {
                Ok(text) => return Ok(Ignore::parse(&text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", c.display()))),
            }
        }
        Ok(Ignore::default())
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any `!` pattern brings something back.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether a pattern ignores every entry of the context (`*`, `**`, `**/*`).
    pub fn ignores_everything(&self) -> bool {
        self.patterns.iter().any(|p| !p.exclusion && matches!(p.text.as_str(), "*" | "**" | "**/*"))
    }

    /// True when `rel` (relative to the context, `/`-separated) is not in the
    /// context: a directory above it is skipped whole (excluded, and not walked
    /// into), or the patterns exclude it.
    pub fn excluded(&self, rel: &str) -> bool {
        let mut verdicts = self.verdicts(rel).peekable();
        while let Some((prefix, excluded)) = verdicts.next() {
            let last = verdicts.peek().is_none();
            if excluded && (last || !self.walks_into(prefix)) {
                return true;
            }
        }
        false
    }

    /// The patterns' verdict on `rel` alone: the last pattern matching it or one
    /// of its parents wins. A walk that never enters a directory
    /// [`Ignore::walks_into`] refuses needs nothing more.
    pub fn matches(&self, rel: &str) -> bool {
        self.verdicts(rel).last().is_some_and(|(_, excluded)| excluded)
    }

    /// The patterns' verdict on each of `rel`'s prefixes (`a`, `a/b`, ..., `rel`),
    /// each pattern matched once per prefix: a pattern that matched a parent
    /// matches everything below it.
    fn verdicts<'r>(&'r self, rel: &'r str) -> impl Iterator<Item = (&'r str, bool)> + 'r {
        let rel = trim(rel);
        let ends = rel.match_indices('/').map(|(i, _)| i).chain((!rel.is_empty() && rel != ".").then_some(rel.len()));
        let mut parent_matched = vec![false; self.patterns.len()];
        ends.map(move |end| {
            let prefix = &rel[..end];
            let chars: Vec<char> = prefix.chars().collect();
            let mut excluded = false;
            for (p, seen) in self.patterns.iter().zip(parent_matched.iter_mut()) {
                *seen = *seen || match_toks(&p.toks, &chars);
                // Only a pattern that could flip the outcome counts.
                if p.exclusion == excluded && *seen {
                    excluded = !p.exclusion;
                }
            }
            (prefix, excluded)
        })
    }

    /// For the excluded directory `dir`: true when the context transfer still
    /// walks into it, which it does only when an exception pattern begins with
    /// `dir/` as written. A wildcard exception (`!**/keep`, `!*/b*`) never
    /// reaches into an excluded directory, even where it would match.
    pub fn walks_into(&self, dir: &str) -> bool {
        let dir_slash = format!("{}/", trim(dir));
        self.patterns.iter().any(|p| p.exclusion && format!("{}/", p.text).starts_with(&dir_slash))
    }
}

/// A context-relative path without `./` in front or slashes around it.
fn trim(rel: &str) -> &str {
    rel.trim_start_matches("./").trim_matches('/')
}

/// Go's filepath.Clean on a `/`-separated pattern.
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." if out.last().is_some_and(|l| *l != "..") => {
                out.pop();
            }
            ".." if rooted => {}
            c => out.push(c),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

fn compile(p: &str) -> Vec<Tok> {
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                // moby's patternmatcher: `**` (eating a following `/`) is `(.*/)?`,
                // except at the end (anything) and at the very start of a pattern
                // with no other wildcard (a suffix match: `**foo` is "ends in foo").
                let at_start = i == 0;
                i += 2;
                let slash = chars.get(i) == Some(&'/');
                if slash {
                    i += 1;
                }
                let rest_is_plain = !chars[i..].iter().any(|c| matches!(c, '*' | '?' | '[' | ']'));
                if i == chars.len() || (at_start && !slash && rest_is_plain) {
                    toks.push(Tok::Any);
                } else {
                    toks.push(Tok::Dirs);
                }
            }
            '*' => {
                toks.push(Tok::Star);
                i += 1;
            }
            '?' => {
                toks.push(Tok::One);
                i += 1;
            }
            '\\' if i + 1 < chars.len() => {
                toks.push(Tok::Lit(chars[i + 1]));
                i += 2;
            }
            '[' => match compile_class(&chars, i) {
                Some((tok, next)) => {
                    toks.push(tok);
                    i = next;
                }
                None => {
                    toks.push(Tok::Lit('['));
                    i += 1;
                }
            },
            c => {
                toks.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    toks
}

fn compile_class(chars: &[char], start: usize) -> Option<(Tok, usize)> {
    let mut i = start + 1;
    let negate = matches!(chars.get(i), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Tok::Class { negate, ranges }, i + 1));
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *chars.get(i)?
        } else {
            c
        };
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|x| *x != ']') {
            let hi = *chars.get(i + 1)?;
            ranges.push((lo, hi));
            i += 2;
        } else {
            ranges.push((lo, lo));
        }
    }
}

/// Runs the pattern as an automaton over `s`, one character at a time, keeping the
/// set of tokens that could come next: time linear in the path for each token.
/// Backtracking was exponential (a .dockerignore line of 33 `**` hung the build on a
/// 60-character path) and, memoised, still too slow for deep paths.
fn match_toks(toks: &[Tok], s: &[char]) -> bool {
    let n = toks.len();
    // at[t]: the pattern before token t matched what was read so far.
    let mut at = vec![false; n + 1];
    // inside[t]: token t is a `**` (Dirs) that has read part of its `(.*/)`.
    let mut inside = vec![false; n];
    at[0] = true;
    skip_empty(toks, &mut at);
    // Two buffers swapped per character: the matcher runs for every path of a context.
    let mut next = vec![false; n + 1];
    let mut next_inside = vec![false; n];
    for &c in s {
        next.fill(false);
        next_inside.fill(false);
        for (t, tok) in toks.iter().enumerate() {
            let here = at[t];
            match tok {
                Tok::Any => next[t] |= here,
                Tok::Dirs => {
                    if here || inside[t] {
                        next_inside[t] = true;
                        next[t + 1] |= c == '/';
                    }
                }
                Tok::Star => next[t] |= here && c != '/',
                Tok::One => next[t + 1] |= here && c != '/',
                Tok::Class { negate, ranges } => {
                    next[t + 1] |= here && c != '/' && (ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negate)
                }
                Tok::Lit(l) => next[t + 1] |= here && c == *l,
            }
        }
        skip_empty(toks, &mut next);
        if !next.iter().chain(&next_inside).any(|b| *b) {
            return false;
        }
        std::mem::swap(&mut at, &mut next);
        std::mem::swap(&mut inside, &mut next_inside);
    }
    at[n]
}

/// `**`, `*` and a `**` as a whole may match nothing: reaching them reaches the next token.
fn skip_empty(toks: &[Tok], at: &mut [bool]) {
    for (t, tok) in toks.iter().enumerate() {
        if at[t] && matches!(tok, Tok::Any | Tok::Dirs | Tok::Star) {
            at[t + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_stars_and_double_stars() {
        let ig = Ignore::parse("# comment\n*.md\n/build\nsrc/**/gen\n**/*.tmp\n");
        assert!(ig.excluded("README.md"));
        assert!(!ig.excluded("docs/README.md"), "* does not cross /");
        assert!(ig.excluded("build/out/a.o"), "a matched parent excludes its contents");
        assert!(ig.excluded("src/gen") && ig.excluded("src/a/b/gen/x.rs"));
        assert!(ig.excluded("x.tmp") && ig.excluded("a/b/x.tmp"));
        assert!(!ig.excluded("src/main.rs"));
    }

    #[test]
    fn negation_and_last_match_wins() {
        let ig = Ignore::parse("docs\n!docs/keep.md\n*.log\n!important.log\nimportant.log\n");
        assert!(ig.excluded("docs/other.md"));
        assert!(!ig.excluded("docs/keep.md"), "re-included under an excluded dir");
        assert!(ig.walks_into("docs"));
        assert!(ig.excluded("important.log"), "the last matching pattern wins");
        assert!(ig.excluded("a.log"));
    }

    #[test]
    fn excluded_directories_are_entered_only_for_exceptions_written_below_them() {
        // `**` then `!dir/file`: dir is walked into and its file comes back.
        let ig = Ignore::parse("**\n!dir/file\n");
        assert!(ig.matches("dir") && ig.walks_into("dir"));
        assert!(!ig.excluded("dir/file") && ig.excluded("dir/other") && ig.excluded("top"));
        // A wildcard exception never reaches into an excluded directory.
        let ig = Ignore::parse("**/a\n!**/b\n");
        assert!(!ig.matches("a/b"), "the patterns alone would keep a/b");
        assert!(ig.excluded("a/b") && ig.excluded("x/a/b") && !ig.walks_into("a"));
        assert!(!ig.excluded("b") && !ig.excluded("x/b"));
        let ig = Ignore::parse("a\n!*/b*\n");
        assert!(ig.excluded("a/b") && ig.excluded("a/bc") && !ig.excluded("x/b"));
        // `!a/b/c` enters a and a/b, nothing else.
        let ig = Ignore::parse("a\n!a/b/c\n");
        assert!(ig.walks_into("a") && ig.walks_into("a/b") && !ig.walks_into("a/x") && !ig.walks_into("ab"));
        assert!(!ig.excluded("a/b/c") && !ig.excluded("a/b/c/d") && ig.excluded("a/b/d") && ig.excluded("a/x/c"));
        // As written after cleaning, without `!` or a leading `/`.
        assert!(Ignore::parse("a\n!/a/./b\n").walks_into("a"));
    }

    #[test]
    fn double_star_follows_moby() {
        // Not followed by `/`, mid-pattern: `(.*/)?`, whole directories only.
        let ig = Ignore::parse("a**b\n");
        assert!(ig.excluded("ab") && ig.excluded("ax/b") && ig.excluded("a/x/b"));
        assert!(!ig.excluded("axb"), "** does not stand for part of a name");
        // At the start without other wildcards: a suffix match.
        let ig = Ignore::parse("**foo\n");
        assert!(ig.excluded("foo") && ig.excluded("afoo") && ig.excluded("x/yfoo"));
        // At the start with other wildcards: `(.*/)?`.
        let ig = Ignore::parse("**f*\n");
        assert!(ig.excluded("f1") && ig.excluded("d/f2") && !ig.excluded("xf"));
        // At the end: anything below.
        let ig = Ignore::parse("dir/**\nx**\n");
        assert!(ig.excluded("dir/a/b") && !ig.excluded("dir") && ig.excluded("xyz") && ig.excluded("x/y"));
        assert!(Ignore::parse("**\n").excluded("any/thing"));
    }

    #[test]
    fn many_double_stars_match_in_polynomial_time() {
        // Found by fuzz/patterns: 33 `**` against a path of many slashes backtracked
        // exponentially (the build hung reading the context); a memo still took
        // seconds on deep paths.
        let ig = Ignore::parse(&format!("{}s@\n", "*".repeat(66)));
        let path = format!("x{}y/{}", "/".repeat(40), "*".repeat(50));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(ig.excluded(&path)).unwrap());
        let excluded = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("matching took more than 10 s");
        assert!(!excluded);
        let ig = Ignore::parse(&format!("{}s@\n", "*".repeat(66)));
        assert!(ig.excluded(&format!("x{}s@", "/".repeat(40))));
        // Every parent of a deep path, as a context walk asks.
        let ig = Ignore::parse(&format!("{}/*/c*c\n", "*".repeat(21)));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let deep = format!("{}cxc", "d/".repeat(100));
            tx.send((1..=deep.len()).filter(|&i| deep.is_char_boundary(i)).filter(|&i| ig.excluded(&deep[..i])).count()).unwrap()
        });
        let matched = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("matching took more than 10 s");
        assert!(matched > 0);
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let ig = Ignore::parse("\u{feff}secret.txt\n*.log\n");
        assert!(ig.excluded("secret.txt") && ig.excluded("a.log"));
    }

    #[test]
    fn patterns_are_cleaned() {
        let ig = Ignore::parse("./a/../b\n  c/  \n?x\n[a-c]y\n");
        assert!(ig.excluded("b") && ig.excluded("c/d"));
        assert!(ig.excluded("zx") && !ig.excluded("x"));
        assert!(ig.excluded("by") && !ig.excluded("dy"));
    }
}
