//! The build cache's entries: step key -> the image state the step produced.
//!
//! Keys are the engine's (`engine::step_key`); this file only keeps results by key.
//! Look-up is one file read (`cache/<key>.json`), never a scan of images; an entry
//! whose blobs are gone is a miss. Entries are written through `durable`, so a crash
//! leaves none half-written. Garbage collection reads entries through
//! [`Cache::referenced_layers`], never their JSON by hand.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{ImageState, LayerRef, LocalStore};
use crate::durable::{self, Mode};
use crate::oci::{self, DiffId, ImageConfig};

/// One stored result.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// The key this result hands on to the next step.
    key: String,
    layers: Vec<(DiffId, oci::Descriptor)>,
    config: ImageConfig,
}

/// An entry as garbage collection sees it: only its layers (the rest is ignored).
#[derive(Deserialize)]
struct EntryLayers {
    layers: Vec<(DiffId, oci::Descriptor)>,
}

/// What the cache's entries keep alive: the layer dirs (by diff id) and the blobs.
#[derive(Debug, Default)]
pub struct CachedLayers {
    pub diff_ids: HashSet<DiffId>,
    pub blobs: HashSet<oci::Digest>,
}

/// The cache directory of a store.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(root: &Path) -> Result<Cache> {
        let dir = root.join("cache");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Cache { dir })
    }

    /// A cache that finds nothing and keeps nothing (the store's cache dir could not
    /// be created; builds still work, uncached).
    pub fn disabled() -> Cache {
        Cache { dir: PathBuf::from("/nonexistent/strata-cache") }
    }

    /// The cache of the store at `root` as it is on disk, without creating its dir
    /// (garbage collection must not make what it may be about to remove).
    pub fn existing(root: &Path) -> Cache {
        Cache { dir: root.join("cache") }
    }

    /// Forgets every entry (`prune --all`); the dir is made again by the next build.
    pub fn clear(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// The layers every entry refers to. An entry that cannot be read keeps nothing:
    /// [`Cache::get`] would miss it too.
    pub fn referenced_layers(&self) -> CachedLayers {
        let mut out = CachedLayers::default();
        let Ok(files) = fs::read_dir(&self.dir) else { return out };
        for file in files.flatten() {
            let Ok(bytes) = fs::read(file.path()) else { continue };
            let Ok(entry) = serde_json::from_slice::<EntryLayers>(&bytes) else { continue };
            for (diff_id, blob) in entry.layers {
                if let Ok(digest) = oci::descriptor_digest(&blob) {
                    out.diff_ids.insert(diff_id);
                    out.blobs.insert(digest);
                }
            }
        }
        out
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The cached result for `key`, if it and all its blobs are present.
    pub fn get(&self, store: &LocalStore, key: &str) -> Option<ImageState> {
        let bytes = fs::read(self.path(key)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        for (_, blob) in &entry.layers {
            let digest = oci::descriptor_digest(blob).ok()?;
            if !store.images.has_blob(&digest) {
                return None;
            }
        }
        let layers = entry.layers.into_iter().map(|(diff_id, blob)| LayerRef { diff_id, blob }).collect();
        Some(ImageState { layers, config: entry.config, cache_key: entry.key })
    }

    /// Records `state` as the result of `key` (best effort: a cache that cannot be
    /// written only costs a rebuild).
    pub fn put(&self, key: &str, state: &ImageState) {
        let entry = Entry {
            key: state.cache_key.clone(),
            layers: state.layers.iter().map(|l| (l.diff_id.clone(), l.blob.clone())).collect(),
            config: state.config.clone(),
        };
        let Ok(bytes) = serde_json::to_vec(&entry) else { return };
        let _ = durable::replace(&self.path(key), &bytes, Mode::Umask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_layers_are_the_entries_layers_and_a_broken_entry_keeps_none() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let blob = oci::Digest::of_bytes(b"layer blob");
        let diff_id = DiffId::new(oci::Digest::of_bytes(b"layer tar"));
        let mut state = ImageState::scratch();
        state
            .layers
            .push(LayerRef { diff_id: diff_id.clone(), blob: oci::descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &blob, 10) });
        cache.put("k1", &state);
        fs::write(root.path().join("cache/k2.json"), br#"{"layers": [["not a digest", {}]]}"#).unwrap();
        let kept = Cache::existing(root.path()).referenced_layers();
        assert_eq!(kept.diff_ids, HashSet::from([diff_id]));
        assert_eq!(kept.blobs, HashSet::from([blob]));
        cache.clear();
        assert!(Cache::existing(root.path()).referenced_layers().blobs.is_empty());
    }
}
