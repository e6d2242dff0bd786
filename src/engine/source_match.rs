//! Matching COPY/ADD sources: patterns (already variable-expanded) -> paths below
//! a source root (the context dir or a stage's tree), with Docker's rules for
//! wildcards and the ignore file.
//!
//! Every path is confined to its root: a pattern may not climb out with `..`, and
//! symlinks are resolved inside the root, as if it were `/`. The result is only a
//! name: readers open it again through `rootfs::DirFd`, so a swap after
//! matching is refused rather than followed.

use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::dockerfile::{glob_below, has_meta, split_wildcards, Ignore};
use crate::rootfs::{resolve_in, Last};

/// One matched source.
#[derive(Clone, Debug)]
pub struct Source {
    /// Where it is: below the root, every symlink on the way (its own name
    /// included) resolved inside the root, never on the host.
    pub host: PathBuf,
    /// The path below the root it was matched as (a symlink's own path, not its
    /// target's), which `--parents` keeps.
    pub matched: PathBuf,
    /// The name a copy into a directory gives it: the matched name, as BuildKit.
    pub name: String,
    pub is_dir: bool,
}

/// The sources `patterns` (already variable-expanded) match below `root`, as paths
/// relative to it with every symlink resolved (for the build cache).
pub fn matched_paths(root: &Path, patterns: &[String], ignore: &Ignore, what: &str) -> Result<Vec<PathBuf>> {
    Ok(match_sources(root, patterns, ignore, what)?
        .into_iter()
        .map(|s| s.host.strip_prefix(root).unwrap_or(&s.host).to_path_buf())
        .collect())
}

/// Expands source patterns (already variable-expanded) against `root`, with
/// BuildKit's rules: a path that names nothing is an error; a wildcard that
/// matches nothing copies nothing (AllowEmptyWildcard), but the plain directory
/// before its first wildcard must exist. Every path is resolved inside `root`:
/// a symlink in the build context or in a `--from` tree, absolute or climbing with
/// `..`, is followed as if `root` were `/`, so nothing outside it is ever read.
pub fn match_sources(root: &Path, patterns: &[String], ignore: &Ignore, what: &str) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for pat in patterns {
        let clean = clean_relative(pat);
        let wildcard = has_meta(&clean);
        let found: Vec<PathBuf> = if wildcard {
            let (prefix, parts) = split_wildcards(&clean);
            let base = resolve_in(root, Path::new(&prefix), Last::Follow)?;
            if fs::symlink_metadata(&base).is_err() {
                bail!("{what} source {pat:?}: {prefix:?} not found in the build context{}", outside_hint(pat));
            }
            let base_rel = base.strip_prefix(root).unwrap_or(Path::new("")).to_path_buf();
            let matches = glob_below(&base, &parts).with_context(|| format!("{what} source pattern {pat:?}"))?;
            matches.into_iter().map(|m| base_rel.join(m)).collect()
        } else {
            vec![PathBuf::from(&clean)]
        };
        for rel in found {
            let host = resolve_in(root, &rel, Last::Follow)?;
            let resolved = host.strip_prefix(root).unwrap_or(Path::new("")).to_string_lossy().into_owned();
            let excluded = !in_context(ignore, &rel.to_string_lossy(), &host) || !in_context(ignore, &resolved, &host);
            if wildcard && excluded {
                continue;
            }
            let meta = match fs::symlink_metadata(&host) {
                Ok(m) if !excluded => m,
                _ if !wildcard => bail!(
                    "{what} source {pat:?}: not found in the build context{}",
                    if excluded { " (excluded by .dockerignore)".to_string() } else { outside_hint(pat).to_string() }
                ),
                Err(_) => bail!("{what} source {}: a symlink to {resolved:?}, which does not exist", rel.display()),
                Ok(_) => unreachable!("excluded wildcard matches were skipped"),
            };
            let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out.push(Source { is_dir: meta.is_dir(), host, matched: rel, name });
        }
    }
    Ok(out)
}

/// Whether the context holds `rel` (found at `host`): it is not excluded, or it
/// is an excluded directory the context transfer walks into and something below
/// it is kept, which brings the directory along (`**` then `!dir/file` leaves
/// `dir` with `dir/file` in it).
fn in_context(ignore: &Ignore, rel: &str, host: &Path) -> bool {
    !ignore.excluded(rel) || (ignore.walks_into(rel) && keeps_something_below(ignore, rel, host))
}

/// True when the walk of the excluded directory `rel` (at `host`) keeps an entry.
fn keeps_something_below(ignore: &Ignore, rel: &str, host: &Path) -> bool {
    let Ok(entries) = fs::read_dir(host) else { return false };
    entries.flatten().any(|entry| {
        let child = format!("{}/{}", rel.trim_end_matches('/'), entry.file_name().to_string_lossy());
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        !ignore.matches(&child) || (is_dir && ignore.walks_into(&child) && keeps_something_below(ignore, &child, &entry.path()))
    })
}

/// Cleans a source path lexically and anchors it at the source root, as the
/// reference specifies: a leading `/` and any `../` that would climb above the root
/// are removed, so nothing outside the context can ever be named.
fn clean_relative(p: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// Explains a missing source whose `../` was removed, so a user who meant a file
/// outside the context learns why it was not found.
fn outside_hint(pattern: &str) -> &'static str {
    if Path::new(pattern).components().any(|c| c == Component::ParentDir) {
        " (sources are relative to the build context: \"../\" cannot leave it)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_may_not_leave_the_context() {
        assert_eq!(clean_relative("../etc/passwd"), "etc/passwd");
        assert_eq!(clean_relative("a/../../b"), "b");
        assert_eq!(clean_relative("./a/./b/../c"), "a/c");
        assert_eq!(clean_relative("/abs/x"), "abs/x");
        assert_eq!(clean_relative("."), ".");
    }

    #[test]
    fn a_reincluded_file_brings_its_directory_and_wildcard_exceptions_stay_out() {
        let ctx = tempfile::tempdir().unwrap();
        for f in ["dir/file", "dir/other", "a/b", "top"] {
            fs::create_dir_all(ctx.path().join(f).parent().unwrap()).unwrap();
            fs::write(ctx.path().join(f), f).unwrap();
        }
        let names = |ignore: &str, pattern: &str| {
            let found = match_sources(ctx.path(), &[pattern.to_string()], &Ignore::parse(ignore), "COPY");
            found.map(|s| s.into_iter().map(|s| s.matched.display().to_string()).collect::<Vec<_>>()).map_err(|e| format!("{e:#}"))
        };
        assert_eq!(names("**\n!dir/file\n", "dir").unwrap(), ["dir"], "dir/file brings dir along");
        assert!(names("**\n!dir/missing\n", "dir").is_err(), "nothing kept below: dir is not in the context");
        assert!(names("**/a\n!**/b\n", "a/b").unwrap_err().contains("excluded"), "a is skipped whole");
        assert!(names("a\n!*/b*\n", "a/b").unwrap_err().contains("excluded"), "a is skipped whole");
        assert!(names("a\n!*/b*\n", "a").is_err());
        assert_eq!(names("a\n!a/b\n", "a/b").unwrap(), ["a/b"], "an exception naming a/ enters it");
    }
}
