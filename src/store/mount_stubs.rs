//! Mount targets a RUN's sandbox had to create, taken out of the step's upper dir
//! after it ran, as BuildKit removes its mount stubs: a `--mount` leaves no empty
//! directory or file behind in the layer, nor a parent copied up only to hold one.
//!
//! Only an empty directory or an empty regular file is removed, and it is reached
//! through the upper dir without following any symlink: a RUN that swapped a
//! stub's parent for a link to a host path cannot make this remove anything
//! outside the step's dirs (BuildKit's CVE-2024-23652).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::stat::SFlag;
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::LocalStore;
use crate::overlay_marks::{FUSE_OPAQUE_FILE, OPAQUE_XATTRS};
use crate::rootfs::{file_type, DirFd, Entry, LowerView, OPAQUE_MARKER};
use crate::sandbox::OverlaySpec;

impl LocalStore {
    /// Removes the targets listed in the run's `scratch` dir from `spec`'s upper
    /// dir, deepest first, then each parent the RUN left empty and as the image
    /// below has it.
    pub fn remove_mount_stubs(&self, spec: &OverlaySpec, scratch: &Path) -> Result<()> {
        let stubs = crate::sandbox::created_targets(scratch).context("reading the mount targets the RUN's sandbox created")?;
        for stub in stubs.iter().rev() {
            remove_empty(&spec.upper, stub);
        }
        let view = LowerView { lowers: &spec.lower, opaque: &OPAQUE_XATTRS };
        for stub in &stubs {
            let mut parent = stub.parent();
            while let Some(dir) = parent.filter(|d| *d != Path::new("/")) {
                let rel = dir.strip_prefix("/").unwrap_or(dir);
                let Some((_, below)) = view.find(rel) else { break };
                if !below.is_dir() || !unchanged_empty_dir(&spec.upper, rel, &below) {
                    break;
                }
                remove_empty(&spec.upper, dir);
                parent = dir.parent();
            }
        }
        Ok(())
    }
}

/// Removes `path` (absolute in the container) below `upper` if it is an empty
/// directory or an empty regular file, reached without following a symlink.
fn remove_empty(upper: &Path, path: &Path) {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else { return };
    let Ok(root) = DirFd::open_root(upper) else { return };
    let dir = if parent.as_os_str().is_empty() {
        root
    } else {
        match root.open_below(parent) {
            Ok(d) => d,
            Err(_) => return,
        }
    };
    let flag = match dir.open_entry(name) {
        Ok(Entry::Dir(stub, _)) => {
            // fuse-overlayfs marks a directory it creates opaque with these entries;
            // the stub was a mount point, so nothing else of the RUN's is in it.
            for marker in [FUSE_OPAQUE_FILE, OPAQUE_MARKER] {
                if let Ok(Entry::File(..) | Entry::Other(_)) = stub.open_entry(std::ffi::OsStr::new(marker)) {
                    let _ = unlinkat(stub.fd(), marker, UnlinkatFlags::NoRemoveDir);
                }
            }
            UnlinkatFlags::RemoveDir
        }
        Ok(Entry::File(_, st)) if file_type(&st) == SFlag::S_IFREG && st.st_size == 0 => UnlinkatFlags::NoRemoveDir,
        _ => return,
    };
    // A directory that is not empty stays: rmdir refuses it.
    let _ = unlinkat(dir.fd(), name, flag);
}

/// Whether `rel` in `upper` is a plain (not symlinked, not opaque), empty
/// directory with the mode and owner the image below has for it.
fn unchanged_empty_dir(upper: &Path, rel: &Path, below: &fs::Metadata) -> bool {
    let Ok(root) = DirFd::open_root(upper) else { return false };
    let Ok(dir) = root.open_below(rel) else { return false };
    let Ok(meta) = dir.file().metadata() else { return false };
    if meta.mode() != below.mode() || meta.uid() != below.uid() || meta.gid() != below.gid() {
        return false;
    }
    use xattr::FileExt;
    let opaque = OPAQUE_XATTRS.iter().any(|x| dir.file().get_xattr(x).ok().flatten().is_some());
    !opaque && dir.names().map(|n| n.is_empty()).unwrap_or(false)
}
