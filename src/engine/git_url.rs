//! Which ADD sources are git repositories, told apart the way BuildKit's Dockerfile
//! frontend does (`dfgitutil.ParseGitRef` over `gitutil.ParseURL`): `git://` and
//! `ssh://` URLs always, `http(s)://` ones only when their path ends in `.git`, and
//! scp-style `user@host:path`. The fragment is `#REF[:SUBDIR]`; BuildKit's query
//! form (`?ref=`, `?tag=`, `?branch=`, `?subdir=`, `?checksum=`/`?commit=`,
//! `?keep-git-dir`) is read too. `./`, `../` and the deprecated bare
//! `github.com/...` are local paths, as BuildKit treats them for ADD.

use anyhow::{bail, Result};

/// A git source as written in ADD, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct GitUrl {
    /// What git is given: the URL without fragment or query.
    pub remote: String,
    /// The remote with its password (any userinfo, for HTTP) left out: for
    /// messages, the cache key and a kept `.git`'s `origin`.
    pub shown: String,
    /// Branch, tag (`refs/tags/...` with `?tag=`) or commit; None: the remote's HEAD.
    pub reference: Option<String>,
    /// Below the repository's root, cleaned ("" for the root).
    pub subdir: String,
    /// `?keep-git-dir[=BOOL]`.
    pub keep_git_dir: Option<bool>,
    /// `?checksum=` / `?commit=`: a hex prefix of the commit.
    pub checksum: Option<String>,
}

/// The source as a git repository: `Ok(None)` when it is not one (a local path or
/// an HTTP download), an error when it is one whose options are malformed.
pub(super) fn parse(src: &str) -> Result<Option<GitUrl>> {
    if src.starts_with("./") || src.starts_with("../") || src.starts_with("github.com/") {
        return Ok(None);
    }
    let (remote, query, fragment) = match scheme_of(src) {
        Some(scheme) => {
            let scheme = scheme.to_ascii_lowercase();
            if !["http", "https", "ssh", "git"].contains(&scheme.as_str()) {
                return Ok(None);
            }
            let (rest, fragment) = split_once_opt(src, '#');
            let (remote, query) = split_once_opt(rest, '?');
            if scheme.starts_with("http") && !url_path(remote).ends_with(".git") {
                return Ok(None);
            }
            (remote, query, fragment)
        }
        None => match scp_style(src) {
            Some(parts) => parts,
            None => return Ok(None),
        },
    };
    let mut git = GitUrl {
        remote: remote.to_string(),
        shown: without_credentials(remote),
        reference: None,
        subdir: String::new(),
        keep_git_dir: None,
        checksum: None,
    };
    if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
        let (reference, subdir) = split_once_opt(fragment, ':');
        git.reference = Some(reference.to_string()).filter(|r| !r.is_empty());
        git.subdir = clean_subdir(subdir.unwrap_or(""));
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        read_query(&mut git, query).map_err(|e| e.context(format!("git source {}", git.shown)))?;
    }
    Ok(Some(git))
}

/// True for sources ADD fetches with git (malformed ones included: they are
/// reported as git sources, not copied as files).
pub(super) fn is_git(src: &str) -> bool {
    !matches!(parse(src), Ok(None))
}

/// `scheme` of `scheme://...` (ASCII letters and digits, as BuildKit's protocol
/// pattern).
fn scheme_of(src: &str) -> Option<&str> {
    let (scheme, _) = src.split_once("://")?;
    (!scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(scheme)
}

fn split_once_opt(s: &str, sep: char) -> (&str, Option<&str>) {
    match s.split_once(sep) {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

/// The path of `scheme://authority/path`, percent-decoded as Go's `url.Path` is.
fn url_path(remote: &str) -> String {
    let after = remote.split_once("://").map_or(remote, |(_, r)| r);
    after.find('/').map(|i| percent_decode(&after[i..])).unwrap_or_default()
}

/// `user@host:path[?query][#fragment]`: the user is letters, digits, `-` and
/// `_`; the host letters, digits, `-` and `.` (BuildKit's sshutil pattern). The
/// path ends at the first `?` or `#`.
fn scp_style(src: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    let (user, rest) = src.split_once('@')?;
    let (host, _) = rest.split_once(':')?;
    let user_ok = !user.is_empty() && user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !user_ok || !host_ok {
        return None;
    }
    let path_start = user.len() + 1 + host.len() + 1;
    let path_end = src[path_start..].find(['?', '#']).map_or(src.len(), |i| path_start + i);
    let remote = &src[..path_end];
    let (query, fragment) = match src[path_end..].chars().next() {
        Some('?') => {
            let (q, f) = split_once_opt(&src[path_end + 1..], '#');
            (Some(q), f)
        }
        Some('#') => (None, Some(&src[path_end + 1..])),
        _ => (None, None),
    };
    Some((remote, query, fragment))
}

/// `path.Join("/", subdir)` without its leading `/`: `..` cannot climb above the
/// repository's root.
fn clean_subdir(subdir: &str) -> String {
    crate::clean_path::clean_abs(subdir).trim_start_matches('/').to_string()
}

/// Drops what could be a secret from a URL: all userinfo of an HTTP(S) URL (a token
/// is often the user name), the password of any other. scp-style users stay.
pub(super) fn without_credentials(remote: &str) -> String {
    let Some((scheme, rest)) = remote.split_once("://") else {
        return remote.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return remote.to_string();
    };
    let (userinfo, host_and_path) = (&rest[..at], &rest[at + 1..]);
    if scheme.to_ascii_lowercase().starts_with("http") {
        return format!("{scheme}://{host_and_path}");
    }
    let user = userinfo.split(':').next().unwrap_or_default();
    format!("{scheme}://{user}@{host_and_path}")
}

/// BuildKit's query options; the ones strata does not implement are refused by
/// name rather than ignored.
fn read_query(git: &mut GitUrl, query: &str) -> Result<()> {
    let (mut tag, mut branch) = (None, None);
    let mut seen = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = split_once_opt(pair, '=');
        let (key, value) = (percent_decode(key), value.map(percent_decode).filter(|v| !v.is_empty()));
        if seen.contains(&key) {
            bail!("query {key:?} has multiple values");
        }
        seen.push(key.clone());
        let flag = matches!(key.as_str(), "keep-git-dir" | "submodules" | "fetch-by-commit");
        let Some(value) = value.or_else(|| flag.then(|| "true".to_string())) else {
            bail!("query {key:?} has no value");
        };
        match key.as_str() {
            "ref" => set_once(&mut git.reference, value, "ref")?,
            "tag" => tag = Some(value),
            "branch" => branch = Some(value),
            "subdir" => {
                let value = clean_subdir(&value);
                if !git.subdir.is_empty() && git.subdir != value {
                    bail!("subdir conflicts: {:?} vs {value:?}", git.subdir);
                }
                git.subdir = value;
            }
            "checksum" | "commit" => git.checksum = Some(value),
            "keep-git-dir" => git.keep_git_dir = Some(parse_bool(&key, &value)?),
            "submodules" | "mtime" | "fetch-by-commit" => bail!("query {key:?} is not supported by strata"),
            _ => bail!("unexpected query {key:?}"),
        }
    }
    match (tag, branch) {
        (Some(_), Some(_)) => bail!("branch conflicts with tag"),
        (Some(t), None) => set_once(&mut git.reference, prefixed("refs/tags/", t), "ref"),
        (None, Some(b)) => set_once(&mut git.reference, prefixed("refs/heads/", b), "ref"),
        (None, None) => Ok(()),
    }
}

fn set_once(slot: &mut Option<String>, value: String, what: &str) -> Result<()> {
    if let Some(old) = slot.as_ref().filter(|old| **old != value) {
        bail!("{what} conflicts: {old:?} vs {value:?}");
    }
    *slot = Some(value);
    Ok(())
}

fn prefixed(prefix: &str, name: String) -> String {
    if name.starts_with(prefix) {
        name
    } else {
        format!("{prefix}{name}")
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => bail!("invalid {key} value: {value:?}"),
    }
}

/// `%XX` escapes decoded (and `+` as a space in queries is left alone: git refs
/// and paths do not hold spaces).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(src: &str) -> GitUrl {
        parse(src).unwrap().unwrap_or_else(|| panic!("{src} is a git source"))
    }

    #[test]
    fn sources_are_classified_as_buildkit_does() {
        for src in [
            "https://github.com/moby/buildkit.git",
            "https://github.com/moby/buildkit.git#v0.10.1",
            "http://127.0.0.1:8080/repo.git#main:sub",
            "HTTPS://host/x.git",
            "git://127.0.0.1:9418/repo",
            "git://host/repo.git#v1",
            "ssh://git@github.com/moby/buildkit",
            "git@github.com:moby/buildkit.git",
            "git@github.com:moby/buildkit",
            "user_1@my-host.example:repo#ref:dir",
        ] {
            assert!(is_git(src), "{src} is git");
        }
        for src in [
            // An https URL is a download unless its path ends in .git: a fragment
            // alone does not make it git.
            "https://example.com/archive.tar.gz",
            "https://example.com/repo#main",
            "https://example.com/repo.git/file",
            "https://example.com/x?y=.git",
            "https://example.com",
            "./git@host:path",
            "../repo.git",
            "github.com/moby/buildkit",
            "file:///tmp/repo.git",
            "s3://bucket/repo.git",
            "local/file.txt",
            "a b@host:path",
            "user@host/path",
        ] {
            assert!(!is_git(src), "{src} is not git");
        }
    }

    #[test]
    fn fragments_give_ref_and_subdir() {
        let g = git("https://github.com/foo/bar.git#baz/qux:quux/quuz");
        assert_eq!(g.remote, "https://github.com/foo/bar.git");
        assert_eq!(g.reference.as_deref(), Some("baz/qux"));
        assert_eq!(g.subdir, "quux/quuz");
        let g = git("git@github.com:foo/bar.git#v1:../../etc/./x/");
        assert_eq!(g.remote, "git@github.com:foo/bar.git");
        assert_eq!((g.reference.as_deref(), g.subdir.as_str()), (Some("v1"), "etc/x"), "subdir stays below the root");
        let g = git("git://h/r#:sub");
        assert_eq!((g.reference, g.subdir.as_str()), (None, "sub"));
        let g = git("git://h/r");
        assert_eq!((g.reference, g.subdir.as_str()), (None, ""));
    }

    #[test]
    fn queries_are_read_and_checked() {
        let g = git("https://h/r.git?tag=v1&subdir=docs&keep-git-dir&checksum=abc123");
        assert_eq!(g.remote, "https://h/r.git");
        assert_eq!(g.reference.as_deref(), Some("refs/tags/v1"));
        assert_eq!((g.subdir.as_str(), g.keep_git_dir, g.checksum.as_deref()), ("docs", Some(true), Some("abc123")));
        assert_eq!(git("git@h:r?branch=dev").reference.as_deref(), Some("refs/heads/dev"));
        assert_eq!(git("git@h:r?ref=x#x").reference.as_deref(), Some("x"), "the same ref twice agrees");
        assert!(parse("https://h/r.git?tag=a&branch=b").is_err(), "tag and branch conflict");
        assert!(parse("https://h/r.git#main?x").is_ok(), "a ? in the fragment is the ref's");
        assert!(parse("https://h/r.git?ref=a#b").is_err(), "ref conflicts with the fragment");
        assert!(parse("https://h/r.git?bogus=1").is_err());
        assert!(parse("https://h/r.git?mtime=commit").is_err(), "unsupported options are refused, not ignored");
        assert!(parse("https://h/r.git?keep-git-dir=maybe").is_err());
        assert!(is_git("https://h/r.git?bogus=1"), "a malformed git source is still a git source");
    }

    #[test]
    fn credentials_never_reach_the_shown_url() {
        assert_eq!(git("https://user:secret@h/r.git#main").shown, "https://h/r.git");
        assert_eq!(git("https://token@h/r.git").shown, "https://h/r.git");
        assert_eq!(git("ssh://git:pw@h/r").shown, "ssh://git@h/r");
        assert_eq!(git("git@h:r.git").shown, "git@h:r.git");
        assert_eq!(git("https://user:secret@h/r.git").remote, "https://user:secret@h/r.git", "git still gets them");
    }
}
