//! Store integrity checking: the test oracle for everything that writes blobs.
//!
//! `fsck` walks what index.json references (indexes, manifests, configs, layers) and
//! re-hashes each distinct blob once. It reports rather than stopping at the first
//! problem, so one run shows the whole extent of the damage.

use std::collections::HashSet;
use std::fs;

use oci_spec::image::{Descriptor, ImageIndex};

use super::image::descriptor_digest;
use super::store::{is_index, is_manifest};
use super::{Digest, OciError, Result, Store};

/// A blob whose content no longer matches its name or descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptBlob {
    pub digest: Digest,
    pub found: Digest,
    pub expected_size: u64,
    pub found_size: u64,
}

/// What `fsck` found; the store is healthy when `is_clean()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Distinct blobs re-hashed.
    pub checked: usize,
    pub missing: Vec<Digest>,
    pub corrupt: Vec<CorruptBlob>,
    /// Manifests or indexes that hash correctly but do not parse.
    pub invalid: Vec<Digest>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty() && self.invalid.is_empty()
    }
}

impl Store {
    /// Re-hashes every blob reachable from index.json (indexes, manifests, configs,
    /// layers) and reports the missing, corrupt and unparsable ones.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let mut seen = HashSet::new();
        let mut queue: Vec<Descriptor> = self.read_index()?.manifests().clone();
        while let Some(desc) = queue.pop() {
            let digest = descriptor_digest(&desc)?;
            if !seen.insert(digest.clone()) {
                continue;
            }
            report.checked += 1;
            match self.verify_blob(&digest) {
                Ok(info) if info.size == desc.size() => {}
                Ok(info) => {
                    report.corrupt.push(CorruptBlob { found: info.digest, digest, expected_size: desc.size(), found_size: info.size });
                    continue;
                }
                Err(OciError::BlobNotFound { .. }) => {
                    report.missing.push(digest);
                    continue;
                }
                Err(OciError::DigestMismatch { found, .. }) => {
                    let found_size = fs::metadata(self.blob_path(&digest)).map_or(0, |m| m.len());
                    report.corrupt.push(CorruptBlob { digest, found, expected_size: desc.size(), found_size });
                    continue;
                }
                Err(e) => return Err(e),
            }
            if is_manifest(desc.media_type()) {
                match self.read_manifest(&digest) {
                    Ok(m) => {
                        queue.push(m.config().clone());
                        queue.extend(m.layers().iter().cloned());
                    }
                    Err(_) => report.invalid.push(digest),
                }
            } else if is_index(desc.media_type()) {
                match self.read_json::<ImageIndex>(&digest) {
                    Ok(i) => queue.extend(i.manifests().iter().cloned()),
                    Err(_) => report.invalid.push(digest),
                }
            }
        }
        Ok(report)
    }
}
