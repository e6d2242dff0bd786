//! Step lineages: the blob a build step wrote last time, so its next layer can copy
//! the unchanged gzip members of that blob (see `oci::LayerWriter::reusing`).
//!
//! A lineage names a step without its inputs' content (the engine hashes where the
//! step is: platform, context, Dockerfile, stage, the instructions up to it), so an
//! edited source keeps its step's lineage while its cache key changes. Each lineage
//! is one small file, `cache/lineage/<key>`, holding a blob digest, replaced through
//! `durable`. It is a hint: a wrong or stale one costs compression time, never a
//! byte of the layer, since the layer writer checks every member it copies against
//! the new chunk (its hash, and the member's CRC-32 and length). A candidate blob
//! damaged on disk inside a member's deflate data is not caught there: `fsck` finds
//! it, by the blob's digest, and `--no-cache` copies nothing.

use std::fs;
use std::path::{Path, PathBuf};

use super::LocalStore;
use crate::durable::{self, Mode};
use crate::oci::{Digest, Store};

fn dir(root: &Path) -> PathBuf {
    root.join("cache").join("lineage")
}

/// A lineage key is the engine's hex hash; anything else names no file.
fn path(root: &Path, lineage: &str) -> Option<PathBuf> {
    let plain = !lineage.is_empty() && lineage.len() <= 128 && lineage.bytes().all(|b| b.is_ascii_alphanumeric());
    plain.then(|| dir(root).join(lineage))
}

impl LocalStore {
    /// The blob `lineage` last wrote, if the store still has it.
    pub fn lineage_blob(&self, lineage: &str) -> Option<Digest> {
        let text = fs::read_to_string(path(&self.root, lineage)?).ok()?;
        Digest::parse(text.trim()).ok().filter(|d| self.images.has_blob(d))
    }

    /// Records that `lineage` wrote `blob` (best effort: a lost record costs reuse).
    pub fn set_lineage_blob(&self, lineage: &str, blob: &Digest) {
        let Some(path) = path(&self.root, lineage) else { return };
        if fs::read_to_string(&path).is_ok_and(|t| t.trim() == blob.as_str()) {
            return;
        }
        let _ = fs::create_dir_all(dir(&self.root)).and_then(|()| durable::replace(&path, blob.as_str().as_bytes(), Mode::Umask));
    }
}

/// Drops the lineages whose blob is gone (prune), and dead writers' temps.
pub(super) fn retain_present(root: &Path, images: &Store) {
    let Ok(entries) = fs::read_dir(dir(root)) else { return };
    for e in entries.flatten() {
        let blob = fs::read_to_string(e.path()).ok().and_then(|t| Digest::parse(t.trim()).ok());
        if !blob.is_some_and(|d| images.has_blob(&d)) {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lineage_names_a_present_blob_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let images = Store::open(d.path().join("oci")).unwrap();
        let blob = images.put_blob(&b"layer"[..]).unwrap().digest;
        let gone = Digest::of_bytes(b"pruned");
        fs::create_dir_all(dir(d.path())).unwrap();
        fs::write(dir(d.path()).join("aaaa"), blob.as_str()).unwrap();
        fs::write(dir(d.path()).join("bbbb"), gone.as_str()).unwrap();
        fs::write(dir(d.path()).join(".aaaa.XyZ.tmp"), "").unwrap();
        retain_present(d.path(), &images);
        let left: Vec<_> = fs::read_dir(dir(d.path())).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("aaaa")]);
        assert!(path(d.path(), "../x").is_none(), "a key never leaves the lineage dir");
    }
}
