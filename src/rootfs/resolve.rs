//! Path resolution confined to a root directory.
//!
//! COPY and WORKDIR write into a mounted image tree whose symlinks are the image's,
//! not the host's: `/bin -> usr/bin` must land in the tree's usr/bin, and a link to
//! `/etc` or `../../..` must never reach the host. [`resolve_in`] walks a path one
//! component at a time, expanding symlinks against the tree's root and clamping `..`
//! there, the way a chroot would.

use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use super::RootfsError;

/// Symlink hops allowed before giving up (Linux's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// Whether the last component is itself followed when it is a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Last {
    Follow,
    NoFollow,
}

/// Resolves `path` (absolute or relative to the tree's root) inside `root`; the
/// result is a host path below `root`. Missing components are fine: they resolve
/// lexically, ready to be created.
pub fn resolve_in(root: &Path, path: &Path, last: Last) -> Result<PathBuf, RootfsError> {
    let mut pending: Vec<OsString> = components(path);
    pending.reverse();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = host_path(root, &resolved).join(&c);
        let is_last = pending.is_empty();
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && !(is_last && last == Last::NoFollow) => {
                hops += 1;
                if hops > MAX_LINKS {
                    return Err(RootfsError::BadEntry {
                        path: path.display().to_string(),
                        reason: "too many levels of symbolic links".into(),
                    });
                }
                let target = fs::read_link(&candidate).map_err(|e| RootfsError::io(&candidate, e))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved.push(c),
        }
    }
    Ok(host_path(root, &resolved))
}

fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn host_path(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("/etc", r.join("etclink")).unwrap();
        symlink("../../../../..", r.join("up")).unwrap();
        assert_eq!(resolve_in(r, Path::new("/bin/sh"), Last::Follow).unwrap(), r.join("usr/bin/sh"));
        assert_eq!(resolve_in(r, Path::new("/etclink/passwd"), Last::Follow).unwrap(), r.join("etc/passwd"));
        assert_eq!(resolve_in(r, Path::new("/up/etc/shadow"), Last::Follow).unwrap(), r.join("etc/shadow"));
        assert_eq!(resolve_in(r, Path::new("../../x"), Last::Follow).unwrap(), r.join("x"));
        assert_eq!(resolve_in(r, Path::new("/bin"), Last::NoFollow).unwrap(), r.join("bin"));
    }

    #[test]
    fn symlink_loops_fail() {
        let d = tempfile::tempdir().unwrap();
        symlink("b", d.path().join("a")).unwrap();
        symlink("a", d.path().join("b")).unwrap();
        assert!(resolve_in(d.path(), Path::new("/a/x"), Last::Follow).is_err());
    }
}
