//! Content-addressed image store: the bottom layer of strata.
//!
//! This module owns everything that is an OCI image on disk and nothing else: digests,
//! the image config JSON, manifests, image names, the OCI image layout that holds our
//! images (`blobs/sha256/…`, `index.json`), the one-pass layer writer, and import/export
//! of `oci:` directories, `oci-archive:` and `docker-archive:` tarballs.
//!
//! Layering rule: `oci` imports no other strata module but the leaves `durable` and
//! `platform` (and `fault`'s test hooks). Everything above it (`rootfs`, `registry`,
//! `store`, `transport`, `engine`) talks to images
//! only through the types re-exported here.
//!
//! Durability model: a blob becomes visible only by an atomic rename of a fully written,
//! fsynced temp file (`durable::persist`), so a crash leaves at worst a stray `.tmp-*` file (its writer's
//! lock gone, so the next open removes it: `temps`), never a blob whose name lies
//! about its content. `index.json` is rewritten the same way under an
//! exclusive `flock`, so concurrent taggers never lose each other's entries and readers
//! never see a half-written index.

mod archive;
mod content_size;
mod deflate;
mod digest;
mod docker_archive;
mod fsck;
mod image;
mod index;
mod layer_writer;
mod member_index;
mod name;
mod pgzip;
mod store;
mod temps;
mod validate;

use std::path::PathBuf;

pub use archive::{export_oci_archive, export_oci_dir, import_oci_archive, import_oci_dir, write_oci_archive};
pub use content_size::content_bytes;
pub use digest::{hex_of, DiffId, Digest, HashingReader, HashingWriter};
pub use docker_archive::{export_docker_archive, load_archive, load_archive_from, write_docker_archive, ArchiveFormat, LoadedImage};
pub use fsck::{CorruptBlob, FsckReport};
pub use image::platform_of;
pub use image::{
    build_manifest, descriptor, descriptor_digest, host_manifest, layer_decoder, ContainerConfig, Healthcheck, History, ImageConfig,
    ManifestFormat, RootFs, ANNOTATION_REF_NAME, MEDIA_TYPE_CONFIG, MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_LAYER_TAR, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_INDEX, MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD, MEDIA_TYPE_MANIFEST,
};
pub use index::{is_index_descriptor, oci_platform, PlatformManifest};
pub use layer_writer::{LayerBlob, LayerCompression, LayerWriter, LAYER_COMPRESSION_LEVEL};
pub use member_index::MemberStats;
pub use name::ImageName;
pub use store::{BlobInfo, ImageSummary, Store};
pub use temps::{remove_if_abandoned, StaleTemp, TempDir};

/// Re-exported so callers name manifests and descriptors without depending on oci-spec
/// directly (and so a later switch to our own serde types touches only this module).
pub use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

/// Result alias for the `oci` module.
pub type Result<T, E = OciError> = std::result::Result<T, E>;

/// Everything that can go wrong in the content store. Each variant names the path,
/// digest or reference involved so a message is actionable without a backtrace.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} {path}: the disk is full (no space left on device); free space there or move the store with --root")]
    DiskFull {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest { value: String, reason: &'static str },
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: &'static str },
    #[error("blob {digest} not found in {layout}")]
    BlobNotFound { digest: Digest, layout: PathBuf },
    #[error("blob {path}: digest mismatch, expected {expected}, found {found}")]
    DigestMismatch { path: PathBuf, expected: Digest, found: Digest },
    #[error("blob {digest}: size mismatch, expected {expected} bytes, found {found}")]
    SizeMismatch { digest: Digest, expected: u64, found: u64 },
    #[error("parse json {path}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("serialize json for {what}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("descriptor {digest}: unsupported media type {media_type}")]
    UnsupportedMediaType { digest: Digest, media_type: String },
    #[error("image {reference:?} not found")]
    ImageNotFound { reference: String },
    #[error("image id prefix {prefix:?} is ambiguous: matches {}", candidates.join(", "))]
    AmbiguousImageId { prefix: String, candidates: Vec<String> },
    #[error("{path} is not an OCI image layout: {reason}")]
    InvalidLayout { path: PathBuf, reason: String },
    #[error("no manifest named {ref_name:?} in {layout}; available: {}", list_or_none(available))]
    ManifestNotFound { layout: PathBuf, ref_name: String, available: Vec<String> },
    #[error("{layout} holds several manifests, name one of: {}", list_or_none(available))]
    AmbiguousManifest { layout: PathBuf, available: Vec<String> },
    #[error("image index {digest} has no manifest for {wanted}; it has: {}", list_or_none(available))]
    NoPlatformMatch { digest: Digest, wanted: String, available: Vec<String> },
    #[error("image {manifest}: {reason}")]
    InvalidImage { manifest: Digest, reason: String },
    #[error("archive {archive}: refusing unsafe member {member:?}")]
    UnsafeArchivePath { archive: PathBuf, member: String },
    #[error("lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

impl OciError {
    /// Shorthand for the ubiquitous "this I/O call on this path failed".
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| {
            if is_disk_full(&source) {
                OciError::DiskFull { op, path, source }
            } else {
                OciError::Io { op, path, source }
            }
        }
    }
}

/// True when `e`, or an error it wraps (a layer producer's error travels inside an
/// `io::Error::other`), is ENOSPC. The kind counts too: tempfile wraps the OS error in
/// its own payload (adding the path) and keeps only the kind visible.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(libc::ENOSPC) || io.kind() == std::io::ErrorKind::StorageFull {
                return true;
            }
        }
        // io::Error::other keeps its payload behind get_ref, not source().
        cur = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}
