//! The build cache: step key -> the image state the step produced.
//!
//! A key chains the parent's key with everything the step's result depends on: the
//! instruction as written and its words after expansion, heredoc bodies, for RUN
//! the stage's ARG values (proxy ARGs excluded), the kind of network the step gets
//! (host, none or private) and a non-default seccomp
//! profile, for COPY/ADD a hash of
//! what the copy keeps of its sources (see [`super::source_digest::content_digest`]) or the key of the
//! `--from` stage, for ADD the name, digest and date of each URL's download (fetched
//! to compute the key, as BuildKit does), the layer compression and SOURCE_DATE_EPOCH. Environment, SHELL,
//! USER and WORKDIR are part of the parent's state, hence of its key.
//!
//! The parent's key is the key of its *result*: an entry records the key it hands
//! on, and a step that ran hands on [`result_key`] (its input key with its layers and
//! config, times aside), so a step that re-ran (`--no-cache-filter`, `--no-cache`) never lets a
//! later step or a stage built on it hit an entry made over an older result.
//!
//! Look-up is one file read (`cache/<key>.json`), never a scan of images; an entry
//! whose blobs are gone is a miss. Entries and the memo are written temp -> fsync ->
//! rename, so a crash leaves none half-written.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::workspace::{ImageState, LayerRef, Workspace};
use crate::oci::{self, DiffId, Digest, ImageConfig};

/// One stored result.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// The key this result hands on to the next step.
    key: Key,
    layers: Vec<(DiffId, oci::Descriptor)>,
    config: ImageConfig,
}

/// The cache directory of a store.
pub struct Cache {
    dir: PathBuf,
}

/// Hex key of the chain so far.
pub type Key = String;

/// Hashes text into a key.
pub fn key_of(parts: &[&str]) -> Key {
    let mut text = String::new();
    for p in parts {
        text.push_str(&p.len().to_string());
        text.push(':');
        text.push_str(p);
        text.push('\n');
    }
    Digest::of_bytes(text.as_bytes()).hex().to_string()
}

/// The key a step that ran hands on: its input key and what it produced, the
/// config's timestamps left out. A re-run that produced the same layers and config
/// (a metadata step under `--no-cache`, a COPY of unchanged files) then keeps the
/// entries after it valid; anything else it produced gives a new key.
pub fn result_key(input: &str, state: &ImageState) -> Key {
    let layers: Vec<String> = state.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let mut config = serde_json::to_value(&state.config).unwrap_or_default();
    // `retain`, not `remove`: with serde_json's preserve_order, remove swaps the
    // last field into the hole and the text would depend on whether one was there.
    if let Some(obj) = config.as_object_mut() {
        // rootfs is left out too: the layers above cover it, and a state in the
        // middle of a stage does not keep it up to date while one loaded from a
        // registry cache does.
        obj.retain(|k, _| k != "created" && k != "rootfs");
        for entry in obj.get_mut("history").and_then(|h| h.as_array_mut()).into_iter().flatten() {
            if let Some(e) = entry.as_object_mut() {
                e.retain(|k, _| k != "created");
            }
        }
    }
    key_of(&["ran", input, &layers.join(","), &config.to_string()])
}

/// Writes `bytes` to `path` durably: temp file, fsync, rename (best effort).
pub(super) fn write_durably(path: &Path, tmp: &Path, bytes: &[u8]) {
    let written = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        fs::rename(tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(tmp);
    }
}

/// The key of a base image: its layers and config, as stored.
pub fn base_key(image: &ImageState) -> Key {
    let layers: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let config = serde_json::to_string(&image.config).unwrap_or_default();
    key_of(&["base", &layers.join(","), &config])
}

impl Cache {
    pub fn open(ws: &Workspace) -> Result<Cache> {
        let dir = ws.root.join("cache");
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
    pub fn get(&self, ws: &Workspace, key: &str) -> Option<ImageState> {
        let bytes = fs::read(self.path(key)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        for (_, blob) in &entry.layers {
            let digest = oci::descriptor_digest(blob).ok()?;
            if !ws.store.has_blob(&digest) {
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
        let tmp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        write_durably(&self.path(key), &tmp, &bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_keys_name_what_a_step_produced() {
        let mut state = ImageState::scratch();
        let a = result_key("k", &state);
        assert_eq!(a, result_key("k", &state), "deterministic");
        state.config.history.push(oci::History { created: Some("2024-01-01T00:00:00Z".into()), ..Default::default() });
        let b = result_key("k", &state);
        assert_ne!(a, b, "another result, another key");
        state.config.history[0].created = Some("2025-01-01T00:00:00Z".into());
        state.config.set_created(chrono::Utc::now());
        assert_eq!(b, result_key("k", &state), "times are not part of a result");
        assert_ne!(a, result_key("j", &state));
    }
}
