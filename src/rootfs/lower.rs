//! The merged view of a stack of layer dirs (top-most first), resolved one path at a
//! time without mounting anything: whiteouts hide paths, opaque dirs hide the layers
//! below them. The vfs driver diffs against it, and the layer writer asks it whether
//! an "opaque" directory really hides anything.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};

use crate::overlay_marks::{is_whiteout, OPAQUE_VALUE};

/// Whether `dir` carries any of the opaque-marking xattrs, set.
pub fn is_opaque(dir: &Path, opaque_xattrs: &[&str]) -> bool {
    opaque_xattrs.iter().any(|n| matches!(xattr::get(dir, n), Ok(Some(v)) if v == OPAQUE_VALUE))
}

/// The merged view of a layer stack, resolved one path at a time.
pub struct LowerView<'a> {
    pub lowers: &'a [PathBuf],
    pub opaque: &'a [&'a str],
}

impl LowerView<'_> {
    /// The topmost layer's host path for `rel`, or None when absent or whited out.
    /// Parents are checked one by one with lstat before `rel` itself: a layer whose
    /// `bin` is a symlink has no `bin/sh` (and hides every lower `bin/sh`), and
    /// lstat of `layer/bin/sh` would follow that symlink, out of the layer if absolute.
    pub fn find(&self, rel: &Path) -> Option<(PathBuf, Metadata)> {
        for layer in self.lowers {
            let mut cur = layer.to_path_buf();
            let mut opaque = false;
            let mut parents_here = true;
            for c in rel.parent().into_iter().flat_map(|p| p.components()) {
                cur.push(c);
                match fs::symlink_metadata(&cur) {
                    // A parent that is a whiteout or not a dir in this layer hides
                    // the path in this layer and in all below.
                    Ok(m) if is_whiteout(&m) || !m.is_dir() => return None,
                    Ok(_) => opaque |= is_opaque(&cur, self.opaque),
                    Err(_) => {
                        parents_here = false;
                        break;
                    }
                }
            }
            if parents_here {
                let p = layer.join(rel);
                if let Ok(m) = fs::symlink_metadata(&p) {
                    return if is_whiteout(&m) { None } else { Some((p, m)) };
                }
            }
            // An opaque parent hides the layers below.
            if opaque {
                return None;
            }
        }
        None
    }

    /// Names visible in directory `rel` of the stack.
    pub fn children(&self, rel: &Path) -> BTreeSet<OsString> {
        let mut seen = BTreeSet::new();
        let mut gone = BTreeSet::new();
        for layer in self.lowers {
            // Walk rel's components in this layer: a whiteout or a non-dir ends the
            // stack here; an opaque dir lets this layer count but hides those below.
            let mut cur = layer.to_path_buf();
            let mut blocked = false;
            let mut opaque = false;
            let mut exists = true;
            for c in rel.components() {
                cur.push(c);
                match fs::symlink_metadata(&cur) {
                    Ok(m) if is_whiteout(&m) || !m.is_dir() => blocked = true,
                    Ok(_) => opaque |= is_opaque(&cur, self.opaque),
                    Err(_) => exists = false,
                }
                if blocked || !exists {
                    break;
                }
            }
            if blocked {
                break;
            }
            if exists {
                if let Ok(entries) = fs::read_dir(&cur) {
                    for e in entries.flatten() {
                        let name = e.file_name();
                        if e.metadata().map(|m| is_whiteout(&m)).unwrap_or(false) {
                            gone.insert(name);
                        } else if !gone.contains(&name) {
                            seen.insert(name);
                        }
                    }
                }
            }
            if opaque {
                break;
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinked_parents_are_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"host").unwrap();
        let top = tempfile::tempdir().unwrap();
        let bottom = tempfile::tempdir().unwrap();
        // top: abs -> the outside dir, rel -> d (inside the layer); bottom: real dirs.
        symlink(outside.path(), top.path().join("abs")).unwrap();
        fs::create_dir(top.path().join("d")).unwrap();
        fs::write(top.path().join("d/secret"), b"in layer").unwrap();
        symlink("d", top.path().join("rel")).unwrap();
        for dir in ["abs", "rel"] {
            fs::create_dir(bottom.path().join(dir)).unwrap();
            fs::write(bottom.path().join(dir).join("secret"), b"lower").unwrap();
        }
        let lowers = vec![top.path().to_path_buf(), bottom.path().to_path_buf()];
        let view = LowerView { lowers: &lowers, opaque: &[] };
        assert!(view.find(Path::new("abs/secret")).is_none(), "an absolute symlinked parent is not followed out of the layer");
        assert!(view.find(Path::new("rel/secret")).is_none(), "a symlinked parent hides the lower dir of that name");
        let (p, m) = view.find(Path::new("abs")).unwrap();
        assert!(m.file_type().is_symlink() && p.starts_with(top.path()));
        let (p, _) = view.find(Path::new("d/secret")).unwrap();
        assert_eq!(fs::read(p).unwrap(), b"in layer");
    }

    #[test]
    fn missing_parents_fall_through_and_opaque_ones_stop() {
        let top = tempfile::tempdir().unwrap();
        let bottom = tempfile::tempdir().unwrap();
        fs::create_dir_all(bottom.path().join("a/b")).unwrap();
        fs::write(bottom.path().join("a/b/f"), b"x").unwrap();
        fs::create_dir_all(bottom.path().join("o")).unwrap();
        fs::write(bottom.path().join("o/f"), b"x").unwrap();
        fs::create_dir(top.path().join("o")).unwrap();
        let lowers = vec![top.path().to_path_buf(), bottom.path().to_path_buf()];
        let view = LowerView { lowers: &lowers, opaque: &["user.overlay.opaque"] };
        assert!(view.find(Path::new("a/b/f")).unwrap().0.starts_with(bottom.path()));
        assert!(view.find(Path::new("o/f")).is_some(), "a plain dir merges");
        xattr::set(top.path().join("o"), "user.overlay.opaque", b"y").unwrap();
        assert!(view.find(Path::new("o/f")).is_none(), "an opaque dir hides the layers below");
    }
}
