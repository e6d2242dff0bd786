//! Names overlayfs and fuse-overlayfs write on disk, in upper dirs and so in layer
//! dirs (which are kept in overlay form): the xattrs that mark a directory opaque,
//! the xattr namespaces of their own bookkeeping, and whiteouts.
//!
//! The OCI layer format has its own names for the same two things, `.wh.NAME` and
//! `.wh..wh..opq`: those belong to the layer tar and stay with `rootfs`, which
//! translates between the two forms (fuse-overlayfs also leaves them on disk where
//! it cannot do better, and `rootfs::normalise` turns them into these).
//!
//! A leaf: uses nothing in strata, so every module may use it.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::sys::stat::{mknod, Mode, SFlag};

/// Kernel overlayfs's opaque-dir xattr, as it reads it for real root.
pub const TRUSTED_OPAQUE: &str = "trusted.overlay.opaque";
/// Kernel overlayfs's opaque-dir xattr with the `userxattr` mount option (in a user
/// namespace, where `trusted.*` cannot be written).
pub const USER_OPAQUE: &str = "user.overlay.opaque";
/// fuse-overlayfs's opaque-dir xattr.
pub const FUSE_OPAQUE: &str = "user.fuseoverlayfs.opaque";
/// Every xattr that marks an opaque dir, whichever driver wrote it.
pub const OPAQUE_XATTRS: [&str; 3] = [TRUSTED_OPAQUE, USER_OPAQUE, FUSE_OPAQUE];
/// The value of an opaque-dir xattr on a dir that is opaque.
pub const OPAQUE_VALUE: &[u8] = b"y";
/// The file fuse-overlayfs puts in an opaque dir (beside the OCI marker).
pub const FUSE_OPAQUE_FILE: &str = ".wh..opq";

/// Xattr namespaces of the drivers' own bookkeeping: never part of an image.
const DRIVER_XATTR_PREFIXES: [&str; 3] = ["trusted.overlay.", "user.overlay.", "user.fuseoverlayfs."];

/// Whether `name` is an xattr an overlay driver keeps for itself.
pub fn is_driver_xattr(name: &str) -> bool {
    DRIVER_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether a dir entry is a whiteout as overlayfs writes one: a 0:0 character device.
pub fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Makes `path` a whiteout (needs the right to mknod, which a user namespace has
/// for this one device).
pub fn make_whiteout(path: &Path) -> io::Result<()> {
    mknod(path, SFlag::S_IFCHR, Mode::empty(), 0).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_xattrs_are_told_from_content() {
        for name in OPAQUE_XATTRS.iter().copied().chain(["trusted.overlay.redirect", "user.overlay.origin"]) {
            assert!(is_driver_xattr(name), "{name}");
        }
        for name in ["user.overlayish", "trusted.other", "security.capability", "user.test"] {
            assert!(!is_driver_xattr(name), "{name}");
        }
    }

    #[test]
    fn a_plain_file_is_no_whiteout() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(!is_whiteout(&std::fs::symlink_metadata(&file).unwrap()));
        // Making one needs mknod, which unprivileged test runs may lack.
        let wh = d.path().join("gone");
        if make_whiteout(&wh).is_ok() {
            assert!(is_whiteout(&std::fs::symlink_metadata(&wh).unwrap()));
        }
    }
}
