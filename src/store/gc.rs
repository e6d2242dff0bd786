//! Garbage collection (`strata prune`): dangling images, unreferenced blobs and
//! layer dirs, leftovers of writers that died (temp files, scratch dirs), and (on
//! request) the build cache.
//!
//! Runs under the store's exclusive lock, so it waits for running builds instead of
//! collecting what they have written but not yet tagged, and anything temporary it
//! finds belongs to a process that is gone.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Cache, ContainerRecord, Containers, LocalStore};
use crate::oci::{self, DiffId};

/// What one collection removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Images without a name that no container stands on.
    pub dangling: usize,
    pub blobs: usize,
    /// The blobs' total size.
    pub bytes: u64,
    pub layer_dirs: usize,
    /// Dead writers' temp files and scratch dirs.
    pub leftovers: usize,
    /// Whether the build cache went too.
    pub cache: bool,
    /// Cache mounts removed (`--all`).
    pub mounts: usize,
}

/// What stays: blobs by digest and layer dirs by diff id.
#[derive(Default)]
struct Live {
    blobs: HashSet<oci::Digest>,
    diff_ids: HashSet<DiffId>,
}

impl LocalStore {
    /// Removes everything nothing refers to; with `all`, the build cache first (so
    /// the layers only it kept go too).
    pub fn prune(&self, all: bool) -> Result<PruneReport> {
        let _exclusive = self.lock(true)?;
        let containers = Containers::open(&self.root).list()?;
        let dangling = self.drop_dangling(&containers)?;
        let cache = Cache::existing(&self.root);
        let mut mounts = 0;
        if all {
            cache.clear();
            mounts = self.remove_cache_mounts()?.caches;
        }
        let mut live = self.live_images(&containers)?;
        let cached = cache.referenced_layers();
        live.blobs.extend(cached.blobs);
        live.diff_ids.extend(cached.diff_ids);
        let (blobs, bytes) = self.images.sweep(&live.blobs)?;
        crate::registry::BlobSources::of(&self.images).retain_present(&self.images);
        self.images.retain_member_indexes();
        self.images.retain_content_sizes();
        super::lineage::retain_present(&self.root, &self.images);
        let layer_dirs = self.remove_layer_dirs(&live.diff_ids);
        let leftovers = remove_leftovers(&self.root);
        Ok(PruneReport { dangling, blobs, bytes, layer_dirs, leftovers, cache: all, mounts })
    }

    /// Drops index entries without a name, except images that containers stand on:
    /// those stay, named or not, as docker keeps them. Returns how many went.
    fn drop_dangling(&self, containers: &[ContainerRecord]) -> Result<usize> {
        let in_use: HashSet<oci::Digest> = containers.iter().filter_map(|c| oci::descriptor_digest(&c.manifest).ok()).collect();
        let dropped = self.images.update_index(|index| {
            let before = index.manifests().len();
            let kept: Vec<_> = index
                .manifests()
                .iter()
                .filter(|d| {
                    d.annotations().as_ref().is_some_and(|a| a.contains_key(oci::ANNOTATION_REF_NAME))
                        || oci::descriptor_digest(d).is_ok_and(|m| in_use.contains(&m))
                })
                .cloned()
                .collect();
            index.set_manifests(kept);
            Ok(before - index.manifests().len())
        })?;
        Ok(dropped)
    }

    /// The blobs and layers of every named image and every container's image.
    fn live_images(&self, containers: &[ContainerRecord]) -> Result<Live> {
        // A tagged manifest that cannot be read would make its blobs look like
        // garbage: then nothing is swept.
        let reachable = self.images.reachable().context("prune aborted before removing any blob")?;
        let mut live = Live { blobs: reachable.blobs, diff_ids: HashSet::new() };
        for digest in &reachable.configs {
            let config = self.images.read_config(digest).with_context(|| format!("prune aborted: reading image config {digest}"))?;
            live.diff_ids.extend(config.rootfs.diff_ids);
        }
        // A container's image may have lost every name (`rmi -f`); it stays too.
        for c in containers {
            let Ok(digest) = oci::descriptor_digest(&c.manifest) else { continue };
            let Ok(manifest) = self.images.read_manifest(&digest) else { continue };
            live.blobs.insert(digest);
            for d in manifest.layers().iter().chain(std::iter::once(manifest.config())) {
                if let Ok(b) = oci::descriptor_digest(d) {
                    live.blobs.insert(b);
                }
            }
            if let Ok(config) = oci::descriptor_digest(manifest.config()).and_then(|d| self.images.read_config(&d)) {
                live.diff_ids.extend(config.rootfs.diff_ids);
            }
        }
        Ok(live)
    }

    /// Removes the layer dirs whose diff id is not in `keep`; returns how many went.
    fn remove_layer_dirs(&self, keep: &HashSet<DiffId>) -> usize {
        let keep: HashSet<String> = keep.iter().map(|d| d.digest().hex().to_string()).collect();
        let Ok(entries) = fs::read_dir(self.root.join("layers")) else { return 0 };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && e.path().is_dir() && !keep.contains(&name) && fs::remove_dir_all(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// Whether a name in one of the store's dirs is a dead writer's leftover.
type Leftover = fn(&str) -> bool;

/// Removes what writers that died left behind: `oci/.tmp-*` (index and layout
/// temps, `.tmp-import-*` dirs; blob temps go with `sweep`), `cache/*.tmp`,
/// `layers/*.tmp` (the id map's temp), durable temps at the root (the owner key's)
/// and in each container's dir (its record's), and every scratch dir in `tmp/` but
/// this process's own. Under the exclusive lock no other strata is writing. Returns how
/// many entries went.
fn remove_leftovers(root: &Path) -> usize {
    let own = format!("step-{}-", std::process::id());
    let durable_temp: Leftover = |n| n.starts_with('.') && n.ends_with(".tmp");
    let dirs: [(&str, Leftover); 5] = [
        ("oci", |n| n.starts_with(".tmp-")),
        ("cache", |n| n.ends_with(".tmp")),
        ("layers", |n| n.ends_with(".tmp")),
        ("tmp", |_| true),
        // The owner key's temp (`durable`'s `.NAME.XXXXXX.tmp`) at the root.
        ("", durable_temp),
    ];
    let mut removed = 0;
    for (dir, garbage) in dirs {
        removed += remove_matching(&root.join(dir), garbage, &own);
    }
    // Each container's record is replaced through a temp beside it.
    if let Ok(entries) = fs::read_dir(root.join("containers")) {
        for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            removed += remove_matching(&e.path(), durable_temp, &own);
        }
    }
    removed
}

/// Removes the entries of `dir` that `garbage` names, but this process's own.
fn remove_matching(dir: &Path, garbage: Leftover, own: &str) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !garbage(&name) || name.starts_with(own) {
            continue;
        }
        let gone = match e.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(e.path()).is_ok(),
            _ => fs::remove_file(e.path()).is_ok(),
        };
        removed += usize::from(gone);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_writers_durable_temps_go_and_real_files_stay() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let record_dir = root.join("containers/0123abcd");
        fs::create_dir_all(&record_dir).unwrap();
        fs::create_dir_all(root.join("cache")).unwrap();
        let leftovers =
            [root.join(".owner.key.AbC123.tmp"), record_dir.join(".container.json.XyZ789.tmp"), root.join("cache/.k.json.Q1w2E3.tmp")];
        let kept = [root.join("owner.key"), record_dir.join("container.json"), root.join("cache/k.json")];
        for f in leftovers.iter().chain(&kept) {
            fs::write(f, b"x").unwrap();
        }
        assert_eq!(remove_leftovers(root), leftovers.len());
        assert!(leftovers.iter().all(|f| !f.exists()));
        assert!(kept.iter().all(|f| f.exists()));
    }
}
