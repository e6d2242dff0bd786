//! Layer directories on disk: unpacking layer tars into them, turning a step's upper
//! dir into a layer tar, and keeping the directory of layer dirs.
//!
//! A layer dir holds exactly one layer's diff in overlay form, named by its DiffId, so
//! any image that contains that layer stacks the same dir as an overlay lower dir:
//! a base is unpacked once, and a step's upper dir is renamed into place instead of
//! being re-extracted from the tar just written.

mod diff;
mod extract;
mod layers;
mod lower;
mod normalise;
mod resolve;
mod unpack;
mod vfs;

use std::io;
use std::path::Path;
use std::sync::Arc;

pub use diff::{write_diff, DiffOptions, Diffed};
pub use extract::{detect_file as detect_compression, extract as extract_archive, open_archive_file, Compression};
pub use layers::LayerDirs;
pub use lower::LowerView;
pub use normalise::normalise_upper;
pub use resolve::{file_type, open_file_below, resolve_in, DirFd, Entry, Last};
#[cfg(test)]
pub(crate) use resolve::{BEFORE_OPEN, HOOK_LOCK};
pub use unpack::{unpack, UnpackOptions};
pub use vfs::{copy_data, diff_trees, flatten, forget_dir_inodes, remove_any};

/// Prefix of an OCI whiteout entry. These two are the layer tar's names; what
/// overlay drivers write on disk instead is named in `overlay_marks`.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Where rootfs's warnings go: the command's reporter, as a closure (rootfs may not
/// use `report`, and prints nothing itself, so `-q` silences them).
#[derive(Clone)]
pub struct Warn(Arc<dyn Fn(&str) + Send + Sync>);

impl Warn {
    pub fn new(to: impl Fn(&str) + Send + Sync + 'static) -> Warn {
        Warn(Arc::new(to))
    }

    /// Drops every warning (fuzzing, tests).
    pub fn ignore() -> Warn {
        Warn::new(|_| {})
    }

    pub fn say(&self, text: &str) {
        (self.0)(text)
    }
}

impl std::fmt::Debug for Warn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Warn(..)")
    }
}

/// Errors reading or writing layer dirs; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: the disk is full (no space left on device); free space there or move the store with --root")]
    DiskFull { path: String, source: io::Error },
    #[error("layer entry {path}: {reason}")]
    BadEntry { path: String, reason: String },
    #[error("{path}: cannot chown to {uid}:{gid}: {source} (is the id inside the mapped subuid/subgid range?)")]
    Chown { path: String, uid: u64, gid: u64, source: io::Error },
    #[error("walking {path}: {message}")]
    Walk { path: String, message: String },
    #[error("layer {expected}: unpacked content hashes to {found}")]
    DiffIdMismatch { expected: String, found: String },
    #[error("{0}")]
    Mapping(String),
}

impl RootfsError {
    pub(crate) fn io(path: impl AsRef<Path>, source: io::Error) -> Self {
        let path = path.as_ref().display().to_string();
        if crate::oci::is_disk_full(&source) {
            RootfsError::DiskFull { path, source }
        } else {
            RootfsError::Io { path, source }
        }
    }
}

/// Xattrs that belong to an overlay implementation or to the host, never to the
/// image's content. `security.selinux` is the host's label of the file: written into a
/// layer it would relabel the file on every host that unpacks it (Docker drops it too).
pub fn is_private_xattr(name: &str) -> bool {
    crate::overlay_marks::is_driver_xattr(name) || name == "security.selinux"
}

/// The bytes of the regular files at or below `path`, no link followed: what a
/// deleted path held (WastedLayerSpace), or a container's writable layer (`ps -s`).
pub fn regular_bytes_below(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_says_the_disk_is_full_and_names_the_path() {
        let err = RootfsError::io("/store/tmp/step-1/diff/big", io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(err, RootfsError::DiskFull { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("/store/tmp/step-1/diff/big") && msg.contains("disk is full"), "{msg}");
        // Writing a layer: the producer's error arrives wrapped in io::Error::other.
        let wrapped = io::Error::other(RootfsError::io("etc/big", io::Error::from_raw_os_error(libc::ENOSPC)));
        let err = crate::oci::OciError::io("produce layer into", "/store/oci/blobs/sha256/tmp-1")(wrapped);
        let msg = err.to_string();
        assert!(msg.contains("/store/oci/blobs/sha256/tmp-1") && msg.contains("disk is full"), "{msg}");
        // tempfile's errors keep only the kind of the OS error they wrap.
        let kind_only = io::Error::new(io::ErrorKind::StorageFull, "no space left on device at path /store/oci/blobs/x");
        assert!(crate::oci::OciError::io("write layer", "/store/oci/blobs/x")(kind_only).to_string().contains("disk is full"));
        let other = crate::oci::OciError::io("write", "/x")(io::Error::from_raw_os_error(libc::EIO));
        assert!(!other.to_string().contains("disk is full"), "{other}");
    }

    #[test]
    fn enospc_from_a_real_write_is_reported_as_disk_full() {
        // /dev/full fails every write with ENOSPC, as a full filesystem does.
        let mut full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("open /dev/full");
        let e = io::Write::write_all(&mut full, b"x").unwrap_err();
        assert!(crate::oci::is_disk_full(&e), "{e}");
        assert!(RootfsError::io("/dev/full", e).to_string().contains("disk is full"));
    }

    #[test]
    fn overlay_and_selinux_xattrs_are_private_and_content_ones_are_not() {
        for name in ["trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque", "security.selinux"] {
            assert!(is_private_xattr(name), "{name}");
        }
        for name in ["security.capability", "user.test", "trusted.other", "security.ima", "user.overlayish"] {
            assert!(!is_private_xattr(name), "{name}");
        }
    }
}
