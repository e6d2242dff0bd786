//! The build cache's entries: step key -> the image state the step produced.
//!
//! Keys are the engine's (`engine::step_key`); this file only keeps results by key.
//! Look-up is one file read (`cache/<key>.json`), never a scan of images; an entry
//! whose blobs are gone is a miss. Entries are written through `durable`, so a crash
//! leaves none half-written. Garbage collection reads entries through
//! [`Cache::referenced_layers`], never their JSON by hand.

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
