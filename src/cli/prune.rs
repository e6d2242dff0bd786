//! `strata prune`: dangling images, unreferenced blobs and layer dirs, and (with
//! `--all`) the build cache. Runs under the store's exclusive lock, so it waits for
//! running builds instead of collecting what they have written but not yet tagged.

use std::collections::HashSet;
use std::fs;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::build::workspace::Workspace;
use crate::oci::{self, DiffId};

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove the build cache.
    #[arg(short = 'a', long)]
    pub all: bool,
}

pub fn prune(ws: &Workspace, args: PruneArgs) -> Result<ExitCode> {
    let _exclusive = ws.lock(true)?;
    // Dangling: index entries without a name.
    let dangling = ws.store.update_index(|index| {
        let before = index.manifests().len();
        let kept: Vec<_> = index
            .manifests()
            .iter()
            .filter(|d| d.annotations().as_ref().is_some_and(|a| a.contains_key(oci::ANNOTATION_REF_NAME)))
            .cloned()
            .collect();
        index.set_manifests(kept);
        Ok(before - index.manifests().len())
    })?;
    let cache_dir = ws.root.join("cache");
    if args.all {
        let _ = fs::remove_dir_all(&cache_dir);
    }
    let mut keep = ws.store.reachable()?;
    let mut diff_ids: HashSet<DiffId> = HashSet::new();
    for digest in keep.clone() {
        if let Ok(config) = ws.store.read_config(&digest) {
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
    let (blobs, bytes) = ws.store.sweep(&keep)?;
    let keep_dirs: HashSet<String> = diff_ids.iter().map(|d| d.digest().hex().to_string()).collect();
    let mut dirs = 0;
    if let Ok(entries) = fs::read_dir(ws.root.join("layers")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && e.path().is_dir() && !keep_dirs.contains(&name) && fs::remove_dir_all(e.path()).is_ok() {
                dirs += 1;
            }
        }
    }
    println!(
        "removed {dangling} dangling images, {blobs} blobs ({} MB), {dirs} layer dirs{}",
        bytes / 1_000_000,
        if args.all { ", the build cache" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}
