//! COPY/ADD source patterns with Go's `filepath.Match` semantics: `*` and `?` never
//! cross a `/`, `[...]` classes with ranges and `^`/`!` negation, `\` escapes.
//! A pattern is matched one path component at a time against a directory tree.

use std::fs;
use std::path::{Path, PathBuf};

/// A malformed pattern (as Go's ErrBadPattern).
#[derive(Debug, thiserror::Error)]
#[error("syntax error in pattern {0:?}")]
pub struct BadPattern(pub String);

/// True when `pattern` has characters that make it a pattern rather than a path.
pub fn has_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

/// Matches one name (no `/`) against one pattern component.
pub fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n).map_err(|_| BadPattern(pattern.to_string()))
}

fn match_from(p: &[char], n: &[char]) -> Result<bool, ()> {
    let (mut pi, mut ni) = (0, 0);
    // Position to resume at after the last `*`: (pattern index, name index).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() && n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' if ni < n.len() => {
                    let (ok, next) = class(p, pi, n[ni])?;
                    if ok && n[ni] != '/' {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' => {
                    let c = *p.get(pi + 1).ok_or(())?;
                    if ni < n.len() && n[ni] == c {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c if c != '?' && c != '[' && ni < n.len() && n[ni] == c => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Ok(true);
        }
        // Mismatch: let the last `*` swallow one more character (never a `/`).
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp;
                ni = sn + 1;
            }
            _ => {
                validate_rest(p, pi)?;
                return Ok(false);
            }
        }
    }
}

/// Go reports a bad pattern even when the mismatch happened before the bad part.
fn validate_rest(p: &[char], mut i: usize) -> Result<(), ()> {
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(());
                }
                i += 2;
            }
            '[' => {
                let (_, next) = class(p, i, '\0')?;
                i = next;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Evaluates the class starting at `p[start] == '['` against `c`; returns whether it
/// matched and the index after the closing `]`.
fn class(p: &[char], start: usize, c: char) -> Result<(bool, usize), ()> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i).ok_or(())?;
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let (lo, after) = class_char(p, i)?;
        i = after;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|x| *x != ']') {
            let (hi, after) = class_char(p, i + 1)?;
            i = after;
            hi
        } else {
            lo
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Ok((matched != negate, i))
}

fn class_char(p: &[char], i: usize) -> Result<(char, usize), ()> {
    match p.get(i) {
        Some('\\') => p.get(i + 1).map(|c| (*c, i + 2)).ok_or(()),
        Some('-') | Some(']') | None => Err(()),
        Some(c) => Ok((*c, i + 1)),
    }
}

/// Finds every path below `root` matching `pattern` (relative, `/`-separated),
/// returned relative to `root` in sorted order. Symlinks are not followed.
pub fn glob(root: &Path, pattern: &str) -> Result<Vec<PathBuf>, BadPattern> {
    let parts: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    let mut current = vec![PathBuf::new()];
    for part in parts {
        let mut next = Vec::new();
        for base in &current {
            if !has_meta(part) {
                let candidate = base.join(part);
                if fs::symlink_metadata(root.join(&candidate)).is_ok() {
                    next.push(candidate);
                }
                continue;
            }
            let Ok(entries) = fs::read_dir(root.join(base)) else { continue };
            let mut names: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            for name in names {
                if matches(part, &name)? {
                    next.push(base.join(name));
                }
            }
        }
        current = next;
    }
    Ok(current.into_iter().filter(|p| !p.as_os_str().is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match_cases() {
        let cases: &[(&str, &str, Option<bool>)] = &[
            ("abc", "abc", Some(true)),
            ("*", "abc", Some(true)),
            ("*c", "abc", Some(true)),
            ("a*", "a", Some(true)),
            ("a*", "abc", Some(true)),
            ("a*", "ab/c", Some(false)),
            ("a*/b", "abc/b", Some(true)),
            ("a*/b", "a/c/b", Some(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
            ("ab[c]", "abc", Some(true)),
            ("ab[b-d]", "abc", Some(true)),
            ("ab[e-g]", "abc", Some(false)),
            ("ab[^c]", "abc", Some(false)),
            ("ab[^b-d]", "abc", Some(false)),
            ("ab[^e-g]", "abc", Some(true)),
            ("a\\*b", "a*b", Some(true)),
            ("a\\*b", "ab", Some(false)),
            ("a?b", "a☺b", Some(true)),
            ("a[^a]b", "a☺b", Some(true)),
            ("a???b", "a☺b", Some(false)),
            ("[a-ζ]*", "α", Some(true)),
            ("*[a-ζ]", "A", Some(false)),
            ("a?b", "a/b", Some(false)),
            ("a*b", "a/b", Some(false)),
            ("[\\]a]", "]", Some(true)),
            ("[\\-]", "-", Some(true)),
            ("[x\\-]", "x", Some(true)),
            ("[x\\-]", "-", Some(true)),
            ("[x\\-]", "z", Some(false)),
            ("[\\-x]", "x", Some(true)),
            ("[]a]", "]", None),
            ("[-]", "-", None),
            ("[x-]", "x", None),
            ("[-x]", "x", None),
            ("\\", "a", None),
            ("[a-b-c]", "a", None),
            ("[", "a", None),
            ("[^", "a", None),
            ("[^bc", "a", None),
            ("a[", "a", None),
            ("a[", "ab", None),
            ("*x", "xxx", Some(true)),
        ];
        for (p, n, want) in cases {
            let got = matches(p, n).ok();
            assert_eq!(got, *want, "pattern {p:?} name {n:?}");
        }
    }

    #[test]
    fn glob_walks_components() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("src/a")).unwrap();
        fs::write(d.path().join("src/a/x.rs"), b"").unwrap();
        fs::write(d.path().join("src/y.rs"), b"").unwrap();
        fs::write(d.path().join("top.rs"), b"").unwrap();
        assert_eq!(glob(d.path(), "*.rs").unwrap(), vec![PathBuf::from("top.rs")]);
        assert_eq!(glob(d.path(), "src/*/*.rs").unwrap(), vec![PathBuf::from("src/a/x.rs")]);
        assert_eq!(glob(d.path(), "s?c/*.rs").unwrap(), vec![PathBuf::from("src/y.rs")]);
    }
}
