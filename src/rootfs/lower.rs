//! The merged view of a stack of layer dirs (top-most first), resolved one path at a
//! time without mounting anything: whiteouts hide paths, opaque dirs hide the layers
//! below them. The vfs driver diffs against it, and the layer writer asks it whether
//! an "opaque" directory really hides anything.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Whether a layer-dir entry is a whiteout (overlay's 0:0 character device).
pub fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether `dir` carries any of the opaque-marking xattrs with value "y".
pub fn is_opaque(dir: &Path, opaque_xattrs: &[&str]) -> bool {
    opaque_xattrs.iter().any(|n| matches!(xattr::get(dir, n), Ok(Some(v)) if v == b"y"))
}

/// The merged view of a layer stack, resolved one path at a time.
pub struct LowerView<'a> {
    pub lowers: &'a [PathBuf],
    pub opaque: &'a [&'a str],
}

impl LowerView<'_> {
    /// The topmost layer's host path for `rel`, or None when absent or whited out.
    pub fn find(&self, rel: &Path) -> Option<(PathBuf, Metadata)> {
        for layer in self.lowers {
            let p = layer.join(rel);
            if let Ok(m) = fs::symlink_metadata(&p) {
                if is_whiteout(&m) {
                    return None;
                }
                return Some((p, m));
            }
            // A parent that is opaque (or not a dir) in this layer hides lower layers.
            if self.hidden_below(layer, rel) {
                return None;
            }
        }
        None
    }

    fn hidden_below(&self, layer: &Path, rel: &Path) -> bool {
        let mut cur = layer.to_path_buf();
        for c in rel.parent().into_iter().flat_map(|p| p.components()) {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if is_whiteout(&m) || !m.is_dir() => return true,
                Ok(_) if is_opaque(&cur, self.opaque) => return true,
                _ => {}
            }
        }
        false
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
