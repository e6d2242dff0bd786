//! `strata prune`: dangling images, unreferenced blobs and layer dirs, leftovers of
//! writers that died (temp files, scratch dirs), and (with `--all`) the build cache.
//! Runs under the store's exclusive lock, so it waits for running builds instead of
//! collecting what they have written but not yet tagged, and anything temporary it
//! finds belongs to a process that is gone.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::oci::{self, DiffId};
use crate::store::Containers;
use crate::store::LocalStore;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove the build cache.
    #[arg(short = 'a', long)]
    pub all: bool,
}

pub fn prune(store: &LocalStore, args: PruneArgs) -> Result<ExitCode> {
    let _exclusive = store.lock(true)?;
    // Images that containers stand on stay, named or not, as docker keeps them.
    let containers = Containers::open(&store.root).list()?;
    let in_use: HashSet<oci::Digest> = containers.iter().filter_map(|c| oci::descriptor_digest(&c.manifest).ok()).collect();
    // Dangling: index entries without a name.
    let dangling = store.images.update_index(|index| {
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
    let cache_dir = store.root.join("cache");
    if args.all {
        let _ = fs::remove_dir_all(&cache_dir);
    }
    // A tagged manifest that cannot be read would make its blobs look like garbage:
    // then nothing is swept.
    let reachable = store.images.reachable().context("prune aborted before removing any blob")?;
    let mut keep = reachable.blobs;
    let mut diff_ids: HashSet<DiffId> = HashSet::new();
    for digest in &reachable.configs {
        let config = store.images.read_config(digest).with_context(|| format!("prune aborted: reading image config {digest}"))?;
        diff_ids.extend(config.rootfs.diff_ids);
    }
    // So do containers, whose image may have lost every name (`rmi -f`).
    for c in &containers {
        let Ok(manifest) = oci::descriptor_digest(&c.manifest).and_then(|d| store.images.read_manifest(&d).map(|m| (d, m))) else {
            continue;
        };
        let (digest, manifest) = manifest;
        keep.insert(digest);
        for d in manifest.layers().iter().chain(std::iter::once(manifest.config())) {
            if let Ok(b) = oci::descriptor_digest(d) {
                keep.insert(b);
            }
        }
        if let Ok(config) = oci::descriptor_digest(manifest.config()).and_then(|d| store.images.read_config(&d)) {
            diff_ids.extend(config.rootfs.diff_ids);
        }
    }
    // Cache entries keep their layers alive.
    if let Ok(entries) = fs::read_dir(&cache_dir) {
        for e in entries.flatten() {
            let Ok(bytes) = fs::read(e.path()) else { continue };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
            for layer in v["layers"].as_array().into_iter().flatten() {
                if let (Some(diff), Some(blob)) = (layer[0].as_str(), layer[1]["digest"].as_str()) {
                    if let (Ok(d), Ok(b)) = (DiffId::parse(diff), oci::Digest::parse(blob)) {
                        diff_ids.insert(d);
                        keep.insert(b);
                    }
                }
            }
        }
    }
    let (blobs, bytes) = store.images.sweep(&keep)?;
    crate::registry::sources::BlobSources::of(&store.images).retain_present(&store.images);
    let keep_dirs: HashSet<String> = diff_ids.iter().map(|d| d.digest().hex().to_string()).collect();
    let mut dirs = 0;
    if let Ok(entries) = fs::read_dir(store.root.join("layers")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && e.path().is_dir() && !keep_dirs.contains(&name) && fs::remove_dir_all(e.path()).is_ok() {
                dirs += 1;
            }
        }
    }
    let leftovers = remove_leftovers(&store.root);
    println!(
        "removed {dangling} dangling images, {blobs} blobs ({} MB), {dirs} layer dirs, {leftovers} leftover temp files{}",
        bytes / 1_000_000,
        if args.all { ", the build cache" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether a name in one of the store's dirs is a dead writer's leftover.
type Leftover = fn(&str) -> bool;

/// Removes what writers that died left behind: `oci/.tmp-*` (index and layout
/// temps, `.tmp-import-*` dirs; blob temps go with `sweep`), `cache/*.tmp`,
/// `layers/*.tmp` (the id map's temp) and every scratch dir in `tmp/` but this
/// process's own. Under the exclusive lock no other strata is writing. Returns how
/// many entries went.
fn remove_leftovers(root: &Path) -> usize {
    let own = format!("step-{}-", std::process::id());
    let mut removed = 0;
    let dirs: [(&str, Leftover); 4] =
        [("oci", |n| n.starts_with(".tmp-")), ("cache", |n| n.ends_with(".tmp")), ("layers", |n| n.ends_with(".tmp")), ("tmp", |_| true)];
    for (dir, garbage) in dirs {
        let Ok(entries) = fs::read_dir(root.join(dir)) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !garbage(&name) || name.starts_with(&own) {
                continue;
            }
            let gone = match e.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(e.path()).is_ok(),
                _ => fs::remove_file(e.path()).is_ok(),
            };
            removed += usize::from(gone);
        }
    }
    removed
}
