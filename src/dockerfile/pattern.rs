//! Shell glob patterns for the `${V#pat}`, `${V%pat}` and `${V/pat/rep}`
//! operators of the word lexer (`words`), which is the only user of this file.
//!
//! BuildKit turns these patterns into Go regular expressions; the regex crate
//! is not a dependency here, so a small backtracking matcher reproduces the
//! same leftmost-first results (`*` greedy or lazy, `?` one character, `\*`,
//! `\?` and `\\` literal). Bracket expressions are not supported, as in BuildKit.

/// A `\` before a character other than `*`, `?`, `\`, `}` or `/`. The lexer
/// turns it into its own error kind; this file imports nothing of the lexer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidPattern {
    pub pattern: String,
    /// The escaped character, empty for a `\` at the end.
    pub escaped: String,
}

type Res<T> = Result<T, InvalidPattern>;

/// One element of a `${V#pattern}` glob.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pat {
    Star,
    One,
    Lit(char),
}

fn compile_pattern(pattern: &str) -> Res<Vec<Pat>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => out.push(Pat::Star),
            '?' => out.push(Pat::One),
            '\\' => match chars.get(i) {
                // `\}` and `\/` only protect the ${} syntax; the escape is not
                // part of the pattern.
                Some('}' | '/') => {}
                Some(&n @ ('*' | '?' | '\\')) => {
                    out.push(Pat::Lit(n));
                    i += 1;
                }
                other => {
                    return Err(InvalidPattern { pattern: pattern.to_string(), escaped: other.map(|c| c.to_string()).unwrap_or_default() })
                }
            },
            c => out.push(Pat::Lit(c)),
        }
    }
    Ok(out)
}

/// Backtracking match of `pat` against `value` from `vi`, trying stars longest
/// first when `greedy` and shortest first otherwise: this reproduces the
/// leftmost-first regex semantics BuildKit gets from Go's regexp.
fn match_at(pat: &[Pat], value: &[char], vi: usize, greedy: bool) -> Option<usize> {
    let Some((first, rest)) = pat.split_first() else {
        return Some(vi);
    };
    match first {
        Pat::Star => {
            let max = value.len() - vi;
            let mut try_len = |k: usize| match_at(rest, value, vi + k, greedy);
            if greedy {
                (0..=max).rev().find_map(&mut try_len)
            } else {
                (0..=max).find_map(&mut try_len)
            }
        }
        Pat::One => (vi < value.len()).then(|| match_at(rest, value, vi + 1, greedy))?,
        Pat::Lit(c) => (value.get(vi) == Some(c)).then(|| match_at(rest, value, vi + 1, greedy))?,
    }
}

pub(crate) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    let pat = compile_pattern(pattern)?;
    let chars: Vec<char> = value.chars().collect();
    Ok(match match_at(&pat, &chars, 0, greedy) {
        Some(end) => chars[end..].iter().collect(),
        None => value.to_string(),
    })
}

pub(crate) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    // Matching the reversed pattern against the reversed value turns "shortest
    // or longest suffix" into a prefix search.
    let mut pat = compile_pattern(pattern)?;
    pat.reverse();
    let mut chars: Vec<char> = value.chars().collect();
    chars.reverse();
    Ok(match match_at(&pat, &chars, 0, greedy) {
        Some(end) => chars[end..].iter().rev().collect(),
        None => value.to_string(),
    })
}

pub(crate) fn replace(pattern: &str, value: &str, replacement: &str, all: bool) -> Res<String> {
    let pat = compile_pattern(pattern)?;
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i <= chars.len() {
        let m = if replaced && !all { None } else { match_at(&pat, &chars, i, true) };
        match m {
            Some(end) => {
                out.push_str(replacement);
                replaced = true;
                if end > i {
                    i = end;
                    continue;
                }
                // An empty match still advances by one character.
                if let Some(c) = chars.get(i) {
                    out.push(*c);
                }
                i += 1;
            }
            None => {
                if let Some(c) = chars.get(i) {
                    out.push(*c);
                }
                i += 1;
            }
        }
    }
    Ok(out)
}
