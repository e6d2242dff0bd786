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
use super::{Digest, OciError, Result, StaleTemp, Store};

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
    /// Temp files of writers that died (killed mid-blob); not damage, but disk
    /// space the next open of the store frees.
    pub stale_temps: Vec<StaleTemp>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty() && self.invalid.is_empty()
    }
}

/// Where a blob was found during a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Config,
    Other,
}

/// What index.json keeps alive.
#[derive(Clone, Debug, Default)]
pub struct Reachable {
    pub blobs: HashSet<Digest>,
    /// The image configs among `blobs`.
    pub configs: Vec<Digest>,
}

impl Store {
    /// Visits every blob reachable from index.json once (indexes, manifests, configs,
    /// layers). `visit` gets the blob's role and says whether to descend into it;
    /// manifests and indexes that do not parse go to `invalid`. Returns the digests
    /// visited.
    fn walk(
        &self,
        mut visit: impl FnMut(&Descriptor, &Digest, Role) -> Result<bool>,
        mut invalid: impl FnMut(Digest),
    ) -> Result<HashSet<Digest>> {
        let mut seen = HashSet::new();
        let mut queue: Vec<(Descriptor, Role)> = self.read_index()?.manifests().iter().map(|d| (d.clone(), Role::Other)).collect();
        while let Some((desc, role)) = queue.pop() {
            let digest = descriptor_digest(&desc)?;
            if !seen.insert(digest.clone()) || !visit(&desc, &digest, role)? {
                continue;
            }
            if is_manifest(desc.media_type()) {
                match self.read_manifest(&digest) {
                    Ok(m) => {
                        queue.push((m.config().clone(), Role::Config));
                        queue.extend(m.layers().iter().map(|l| (l.clone(), Role::Other)));
                    }
                    Err(_) => invalid(digest),
                }
            } else if is_index(desc.media_type()) {
                match self.read_json::<ImageIndex>(&digest) {
                    Ok(i) => queue.extend(i.manifests().iter().map(|d| (d.clone(), Role::Other))),
                    Err(_) => invalid(digest),
                }
            }
        }
        Ok(seen)
    }

    /// Re-hashes every blob reachable from index.json (indexes, manifests, configs,
    /// layers) and reports the missing, corrupt and unparsable ones.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let mut invalid = Vec::new();
        self.walk(
            |desc, digest, _| {
                report.checked += 1;
                match self.verify_blob(digest) {
                    Ok(info) if info.size == desc.size() => Ok(true),
                    Ok(info) => {
                        report.corrupt.push(CorruptBlob {
                            found: info.digest,
                            digest: digest.clone(),
                            expected_size: desc.size(),
                            found_size: info.size,
                        });
                        Ok(false)
                    }
                    Err(OciError::BlobNotFound { .. }) => {
                        report.missing.push(digest.clone());
                        Ok(false)
                    }
                    Err(OciError::DigestMismatch { found, .. }) => {
                        let found_size = fs::metadata(self.blob_path(digest)).map_or(0, |m| m.len());
                        report.corrupt.push(CorruptBlob { digest: digest.clone(), found, expected_size: desc.size(), found_size });
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            },
            |d| invalid.push(d),
        )?;
        report.invalid = invalid;
        report.stale_temps = self.stale_temps();
        Ok(report)
    }

    /// Every blob reachable from index.json (manifests, configs, layers, nested
    /// indexes), and which of them are configs, named by the manifests so no layer
    /// is read to find out. A manifest or index that cannot be read is an error:
    /// what it references is unknown, so nothing may be collected.
    pub fn reachable(&self) -> Result<Reachable> {
        let mut configs = Vec::new();
        let mut unreadable = None;
        let blobs = self.walk(
            |_, digest, role| {
                if role == Role::Config {
                    configs.push(digest.clone());
                }
                Ok(true)
            },
            |d| unreadable = Some(d),
        )?;
        if let Some(d) = unreadable {
            return Err(OciError::InvalidLayout {
                path: self.blob_path(&d),
                reason: format!("manifest or index {d} is missing or unreadable, so what it references is unknown (run `strata fsck`)"),
            });
        }
        Ok(Reachable { blobs, configs })
    }

    /// Removes blobs not in `keep` and leftover temp files; returns (blobs removed,
    /// bytes freed). The caller must hold off every writer (see `store::LocalStore::lock`).
    pub fn sweep(&self, keep: &HashSet<Digest>) -> Result<(usize, u64)> {
        let dir = self.root().join("blobs").join("sha256");
        let (mut count, mut bytes) = (0, 0);
        let entries = fs::read_dir(&dir).map_err(OciError::io("read", &dir))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let garbage = match Digest::parse(&format!("sha256:{name}")) {
                Ok(d) => !keep.contains(&d),
                Err(_) => true, // temp files of writers that died
            };
            if garbage {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(e.path()).is_ok() {
                    count += 1;
                    bytes += size;
                }
            }
        }
        Ok((count, bytes))
    }
}
