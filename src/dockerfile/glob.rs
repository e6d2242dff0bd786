//! COPY/ADD source patterns with Go's `filepath.Match` semantics: `*` and `?` never
//! cross a `/`, `[...]` classes with ranges and `^`/`!` negation, `\` escapes.
//! A pattern is matched one path component at a time against a directory tree.
//!
//! As BuildKit resolves wildcards: the components before the first wildcard are a
//! plain path the caller resolves (symlinks included, inside the source root); the
//! rest is matched below that directory without following any symlink, so a
//! match can never lead out of the directory it started in.

use std::fs;
use std::path::{Path, PathBuf};

/// A malformed pattern (as Go's ErrBadPattern).
#[derive(Debug, thiserror::Error)]
#[error("syntax error in pattern {0:?}")]
pub struct BadPattern(pub String);

/// True when `pattern` has an unescaped `*`, `?` or `[`, which make it a pattern
/// rather than a path (BuildKit's `containsWildcards`: a `\` escapes the next
/// character, so `a\*` names no pattern).
pub fn has_meta(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Splits a relative, `/`-separated pattern into the plain path before its first
/// wildcard component and the components from there on.
pub fn split_wildcards(pattern: &str) -> (String, Vec<String>) {
    let parts: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    let first = parts.iter().position(|p| has_meta(p)).unwrap_or(parts.len());
    (parts[..first].join("/"), parts[first..].iter().map(|s| s.to_string()).collect())
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

/// Finds every path below the directory `base` that matches `parts` (pattern
/// components, see [`split_wildcards`]), relative to `base`, in sorted order.
/// Symlinks are never followed: a symlink can be a match, but is never descended
/// into, and `base` itself must already be resolved by the caller.
pub fn glob_below(base: &Path, parts: &[String]) -> Result<Vec<PathBuf>, BadPattern> {
    let real_dir = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    let mut current = vec![PathBuf::new()];
    for part in parts {
        let mut next = Vec::new();
        for dir in &current {
            let host = base.join(dir);
            if !real_dir(&host) {
                continue;
            }
            if !has_meta(part) {
                let name = unescape(part);
                // `\..` unescapes to `..`, which a directory listing never names: it
                // matches nothing, as in BuildKit, rather than climbing out of `base`.
                if name != "." && name != ".." && fs::symlink_metadata(host.join(&name)).is_ok() {
                    next.push(dir.join(name));
                }
                continue;
            }
            let Ok(entries) = fs::read_dir(&host) else { continue };
            let mut names: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            for name in names {
                if matches(part, &name)? {
                    next.push(dir.join(name));
                }
            }
        }
        current = next;
    }
    Ok(current.into_iter().filter(|p| !p.as_os_str().is_empty()).collect())
}

/// A component without wildcards matched by `filepath.Match` names itself with its
/// escapes removed.
fn unescape(part: &str) -> String {
    let mut out = String::new();
    let mut chars = part.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
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

    fn glob(base: &Path, pattern: &str) -> Vec<PathBuf> {
        let (prefix, parts) = split_wildcards(pattern);
        glob_below(&base.join(&prefix), &parts).unwrap().into_iter().map(|p| Path::new(&prefix).join(p)).collect()
    }

    #[test]
    fn escaped_dot_dot_matches_nothing() {
        // Found by fuzz/patterns: `*/\..` unescaped to `..` and climbed out of the base.
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("base/a")).unwrap();
        fs::write(d.path().join("secret"), b"").unwrap();
        assert!(glob(&d.path().join("base"), "*/\\../\\../secret").is_empty());
        assert!(glob(&d.path().join("base"), "*/\\.").is_empty());
    }

    #[test]
    fn glob_walks_components() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("src/a")).unwrap();
        fs::write(d.path().join("src/a/x.rs"), b"").unwrap();
        fs::write(d.path().join("src/y.rs"), b"").unwrap();
        fs::write(d.path().join("top.rs"), b"").unwrap();
        assert_eq!(glob(d.path(), "*.rs"), vec![PathBuf::from("top.rs")]);
        assert_eq!(glob(d.path(), "src/*/*.rs"), vec![PathBuf::from("src/a/x.rs")]);
        assert_eq!(glob(d.path(), "s?c/*.rs"), vec![PathBuf::from("src/y.rs")]);
        assert_eq!(glob(d.path(), "./src/*/x.rs"), vec![PathBuf::from("src/a/x.rs")]);
    }

    #[test]
    fn wildcards_split_and_escapes() {
        assert_eq!(split_wildcards("a/b/*.c/d"), ("a/b".to_string(), vec!["*.c".to_string(), "d".to_string()]));
        assert_eq!(split_wildcards("*"), (String::new(), vec!["*".to_string()]));
        assert!(has_meta("a[0]") && has_meta("x?") && !has_meta("a\\*b") && !has_meta("plain"));
        assert_eq!(unescape("a\\*b"), "a*b");
    }

    #[test]
    fn glob_never_descends_through_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        fs::create_dir(d.path().join("real")).unwrap();
        fs::write(d.path().join("real/f"), b"").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("link")).unwrap();
        assert_eq!(glob(d.path(), "*/*"), vec![PathBuf::from("real/f")], "link/* is not walked");
        assert_eq!(glob(d.path(), "*/secret"), Vec::<PathBuf>::new());
        assert_eq!(glob(d.path(), "l*"), vec![PathBuf::from("link")], "a symlink itself can match");
    }
}
