//! A finished step's upper dir -> a layer dir in overlay form.
//!
//! fuse-overlayfs writes its own vocabulary into upper dirs: an opaque dir holds a
//! `.wh..wh..opq` file and a `.wh..opq` 0:0 device and may carry
//! `user.fuseoverlayfs.opaque`, and every new directory is marked so, hiding something
//! or not. Kernel overlay and `LowerView` read none of that: a layer dir adopted as it
//! is would show the marker file, and the lower files it should hide, as soon as
//! another driver (or a later run with a different probe result) stacks it. So before
//! an upper dir becomes a layer dir its markers are rewritten to the store's one
//! opaque xattr, set exactly where the layer tar has a `.wh..wh..opq` (the dir hides a
//! directory of the layers below): the layer dir then says what its tar says, whatever
//! driver stacks it next. Kernel overlay's own upper dirs pass through unchanged.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::time::TimeSpec;

use super::diff::{hides_a_lower_dir, DiffOptions};
use super::{RootfsError, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::overlay_marks::{make_whiteout, FUSE_OPAQUE, FUSE_OPAQUE_FILE, OPAQUE_VALUE};

/// Rewrites fuse-overlayfs markers in `upper` into overlay form: `opaque_xattr` where
/// the dir hides a directory of `opts.lowers`, and `.wh.NAME` files (fuse-overlayfs's
/// whiteouts where it cannot mknod) into 0:0 devices when this process can make them.
pub fn normalise_upper(upper: &Path, opts: &DiffOptions, opaque_xattr: &str) -> Result<(), RootfsError> {
    let mut dirs = Vec::new();
    for entry in walkdir::WalkDir::new(upper).min_depth(1).follow_links(false) {
        let entry = entry.map_err(|e| RootfsError::Walk { path: upper.display().to_string(), message: e.to_string() })?;
        if entry.file_type().is_dir() {
            dirs.push(entry.into_path());
        }
    }
    for dir in dirs {
        let rel = dir.strip_prefix(upper).expect("walkdir stays below its root");
        let before = fs::symlink_metadata(&dir).map_err(|e| RootfsError::io(&dir, e))?;
        let mut changed = false;
        let fuse_xattr = matches!(xattr::get(&dir, FUSE_OPAQUE), Ok(Some(v)) if v == OPAQUE_VALUE);
        let marker = dir.join(OPAQUE_MARKER);
        if fuse_xattr || fs::symlink_metadata(&marker).is_ok() {
            for name in [OPAQUE_MARKER, FUSE_OPAQUE_FILE] {
                changed |= remove_if_present(&dir.join(name))?;
            }
            if fuse_xattr {
                xattr::remove(&dir, FUSE_OPAQUE).map_err(|e| RootfsError::io(&dir, e))?;
            }
            if hides_a_lower_dir(opts, rel) {
                xattr::set(&dir, opaque_xattr, OPAQUE_VALUE).map_err(|e| RootfsError::io(&dir, e))?;
            }
        }
        changed |= whiteout_files_to_devices(&dir)?;
        if changed {
            // Removing the markers touched the dir; its time is the image's.
            let t = TimeSpec::new(before.mtime(), before.mtime_nsec());
            nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, &dir, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
                .map_err(|e| RootfsError::io(&dir, e.into()))?;
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<bool, RootfsError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(RootfsError::io(path, e)),
    }
}

/// `.wh.NAME` empty files in `dir` -> a 0:0 device named NAME (overlay's whiteout).
fn whiteout_files_to_devices(dir: &Path) -> Result<bool, RootfsError> {
    let mut changed = false;
    for entry in fs::read_dir(dir).map_err(|e| RootfsError::io(dir, e))? {
        let entry = entry.map_err(|e| RootfsError::io(dir, e))?;
        let file_name = entry.file_name();
        let Some(hidden) = file_name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) else { continue };
        if matches!(hidden, b"" | b"." | b"..") || hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            continue;
        }
        let meta = entry.metadata().map_err(|e| RootfsError::io(entry.path(), e))?;
        let victim = dir.join(std::ffi::OsStr::from_bytes(hidden));
        if !meta.is_file() || meta.len() != 0 || fs::symlink_metadata(&victim).is_ok() {
            continue;
        }
        // Where even a whiteout device cannot be made, the file stays: the layer
        // writer emits it as the same `.wh.NAME` entry either way.
        if make_whiteout(&victim).is_ok() {
            remove_if_present(&entry.path())?;
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn opts(lower: &Path) -> DiffOptions {
        DiffOptions {
            opaque_xattrs: crate::overlay_marks::OPAQUE_XATTRS.iter().map(|s| s.to_string()).collect(),
            lowers: vec![lower.to_path_buf()],
            ..Default::default()
        }
    }

    #[test]
    fn fuse_markers_become_the_overlay_xattr_only_where_a_lower_dir_is_hidden() {
        let lower = tempfile::tempdir().unwrap();
        fs::create_dir(lower.path().join("replaced")).unwrap();
        fs::write(lower.path().join("replaced/old"), b"old").unwrap();
        let up = tempfile::tempdir().unwrap();
        for d in ["replaced", "fresh", "by-xattr"] {
            fs::create_dir(up.path().join(d)).unwrap();
            fs::write(up.path().join(d).join("kept"), b"k").unwrap();
        }
        for d in ["replaced", "fresh"] {
            fs::write(up.path().join(d).join(OPAQUE_MARKER), b"").unwrap();
            fs::write(up.path().join(d).join(FUSE_OPAQUE_FILE), b"").unwrap();
        }
        xattr::set(up.path().join("by-xattr"), FUSE_OPAQUE, b"y").unwrap();
        fs::create_dir(lower.path().join("by-xattr")).unwrap();
        let t = TimeSpec::new(1_000_000, 0);
        nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, &up.path().join("fresh"), &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
            .unwrap();

        normalise_upper(up.path(), &opts(lower.path()), "user.overlay.opaque").unwrap();

        let names = |d: &str| {
            let mut v: Vec<String> =
                fs::read_dir(up.path().join(d)).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        };
        let opaque = |d: &str| xattr::get(up.path().join(d), "user.overlay.opaque").unwrap();
        for d in ["replaced", "fresh", "by-xattr"] {
            assert_eq!(names(d), ["kept"], "{d}: only the content is left");
            assert_eq!(xattr::get(up.path().join(d), FUSE_OPAQUE).unwrap(), None, "{d}");
        }
        assert_eq!(opaque("replaced").as_deref(), Some(&b"y"[..]), "hides the lower dir");
        assert_eq!(opaque("by-xattr").as_deref(), Some(&b"y"[..]), "hides the lower dir");
        assert_eq!(opaque("fresh"), None, "hides nothing, so not opaque (the tar has no marker either)");
        assert_eq!(fs::metadata(up.path().join("fresh")).unwrap().mtime(), 1_000_000, "the dir's time is kept");
    }

    #[test]
    fn whiteout_files_become_devices_when_permitted() {
        let lower = tempfile::tempdir().unwrap();
        let up = tempfile::tempdir().unwrap();
        fs::write(up.path().join(".wh.gone"), b"").unwrap();
        fs::write(up.path().join(".wh.notempty"), b"data").unwrap();
        normalise_upper(up.path(), &opts(lower.path()), "user.overlay.opaque").unwrap();
        assert!(up.path().join(".wh.notempty").exists(), "a file with content is not a whiteout");
        match fs::symlink_metadata(up.path().join("gone")) {
            Ok(m) => {
                assert!(m.file_type().is_char_device() && m.rdev() == 0);
                assert!(!up.path().join(".wh.gone").exists());
            }
            // Without the right to mknod even a whiteout, the OCI form stays.
            Err(_) => assert!(up.path().join(".wh.gone").exists()),
        }
    }
}
