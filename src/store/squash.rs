//! `build --squash` and `--squash-all`: an image's top layers merged into one, as
//! buildah merges them.
//!
//! The layer dirs are applied one over another into a fresh upper dir, bottom
//! first: a later entry replaces an earlier one; a whiteout removes what the
//! merged layers put there, and stays only where it hides a path of the layers
//! kept below; an opaque directory drops what the merged layers put below it.
//! Files, links and devices are hard links to the layer dirs' own (a layer dir
//! never changes, and a RUN over it copies a file up before writing), so no byte
//! is copied. The upper dir is then committed like a step's, so the layer holds
//! exactly what a container of the unsquashed image sees, whiteouts resolved.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::{ImageState, LayerFormat, LocalStore};
use crate::oci::History;
use crate::overlay_marks::{is_whiteout, OPAQUE_VALUE, OPAQUE_XATTRS};
use crate::rootfs::{remove_any, LowerView};

impl LocalStore {
    /// `image` with its layers from index `from` on merged into one; `what` names
    /// the flag in the history entry the merged layer gets. An image with fewer
    /// than two such layers comes back as it is.
    pub fn squash(&self, image: &ImageState, from: usize, format: LayerFormat, what: &str) -> Result<ImageState> {
        let merged = image.layers.len().saturating_sub(from);
        if merged < 2 {
            return Ok(image.clone());
        }
        let mut bottom_first = self.layer_dirs(image)?;
        bottom_first.reverse();
        let kept_top_first: Vec<PathBuf> = bottom_first[..from].iter().rev().cloned().collect();
        let kept = LowerView { lowers: &kept_top_first, opaque: &OPAQUE_XATTRS };
        let scratch = self.layers.scratch()?;
        let upper = scratch.path().join("upper");
        fs::create_dir(&upper).with_context(|| format!("creating {}", upper.display()))?;
        let mut dir_times = HashMap::new();
        for layer in &bottom_first[from..] {
            apply_layer(&upper, layer, &kept, &mut dir_times).with_context(|| format!("merging layer dir {}", layer.display()))?;
        }
        // Filling a directory changed its times: they are the layers' again. One a
        // later layer removed or replaced is not there to set.
        for (dir, times) in dir_times.iter().filter(|(d, _)| d.symlink_metadata().is_ok_and(|m| m.is_dir())) {
            set_times(dir, times)?;
        }
        let below = ImageState { layers: image.layers[..from].to_vec(), config: image.config.clone(), cache_key: String::new() };
        let mut state = below.clone();
        if let Some(committed) = self.commit_upper(&upper, &below, format, None)? {
            state.layers.push(committed.layer);
        }
        state.config = squashed_config(image, merged, state.layers.len() > from, what);
        state.cache_key = image.cache_key.clone();
        Ok(state)
    }
}

/// A directory's access and modification times, set once everything is in it.
type Times = (TimeSpec, TimeSpec);

/// Applies one layer dir (overlay form) onto `upper`.
fn apply_layer(upper: &Path, layer: &Path, kept: &LowerView<'_>, dir_times: &mut HashMap<PathBuf, Times>) -> Result<()> {
    for entry in walkdir::WalkDir::new(layer).min_depth(1).follow_links(false).sort_by_file_name() {
        let entry = entry.with_context(|| format!("walking {}", layer.display()))?;
        let rel = entry.path().strip_prefix(layer).expect("below the walk's root");
        let meta = entry.path().symlink_metadata().with_context(|| format!("reading {}", entry.path().display()))?;
        let target = upper.join(rel);
        // Only directories this merge made lie above the target: never a link.
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !upper.join(parent).symlink_metadata().is_ok_and(|m| m.is_dir()) {
                bail!("{}: its parent is not a directory in the merged layers", rel.display());
            }
        }
        if meta.is_dir() {
            merge_dir(entry.path(), &target, &meta, dir_times)?;
            continue;
        }
        remove_any(&target)?;
        // A whiteout of something only the merged layers had is resolved away.
        if is_whiteout(&meta) && kept.find(rel).is_none() {
            continue;
        }
        fs::hard_link(entry.path(), &target).with_context(|| format!("linking {} to {}", entry.path().display(), target.display()))?;
    }
    Ok(())
}

/// A directory of the layer: replaces what is at `target` unless that is a
/// directory (emptied first when the layer's is opaque), and takes its owner,
/// mode and xattrs. An opaque mark already there stays: what it hides stays hidden.
fn merge_dir(from: &Path, target: &Path, meta: &Metadata, dir_times: &mut HashMap<PathBuf, Times>) -> Result<()> {
    let opaque = OPAQUE_XATTRS.iter().any(|n| matches!(xattr::get(from, n), Ok(Some(v)) if v == OPAQUE_VALUE));
    let existing = target.symlink_metadata().ok();
    if opaque || existing.as_ref().is_some_and(|m| !m.is_dir()) {
        remove_any(target)?;
    }
    if !target.exists() {
        fs::create_dir(target).with_context(|| format!("creating {}", target.display()))?;
    }
    let keep_opaque: Vec<(String, Vec<u8>)> =
        OPAQUE_XATTRS.iter().filter_map(|n| xattr::get(target, n).ok().flatten().map(|v| (n.to_string(), v))).collect();
    for name in xattr::list(target).with_context(|| format!("listing xattrs of {}", target.display()))? {
        let _ = xattr::remove(target, &name);
    }
    for name in xattr::list(from).with_context(|| format!("listing xattrs of {}", from.display()))? {
        if let Ok(Some(value)) = xattr::get(from, &name) {
            let set = xattr::set(target, &name, &value);
            // The host's security labels are its own (the layer writer leaves them out too).
            if !name.to_string_lossy().starts_with("security.") {
                set.with_context(|| format!("setting {} on {}", name.to_string_lossy(), target.display()))?;
            }
        }
    }
    for (name, value) in keep_opaque {
        xattr::set(target, &name, &value).with_context(|| format!("keeping {name} on {}", target.display()))?;
    }
    std::os::unix::fs::lchown(target, Some(meta.uid()), Some(meta.gid())).with_context(|| format!("chown {}", target.display()))?;
    fs::set_permissions(target, fs::Permissions::from_mode(meta.mode() & 0o7777)).with_context(|| format!("chmod {}", target.display()))?;
    let times = (TimeSpec::new(meta.atime(), meta.atime_nsec()), TimeSpec::new(meta.mtime(), meta.mtime_nsec()));
    dir_times.insert(target.to_path_buf(), times);
    Ok(())
}

fn set_times(path: &Path, (atime, mtime): &Times) -> Result<()> {
    utimensat(nix::fcntl::AT_FDCWD, path, atime, mtime, UtimensatFlags::NoFollowSymlink)
        .with_context(|| format!("setting times of {}", path.display()))
}

/// The config of the squashed image: the merged layers' history entries marked
/// empty, and one entry for the merged layer (if it holds anything), dated as
/// the newest entry so that a rebuild gives the same config.
fn squashed_config(image: &ImageState, merged: usize, has_layer: bool, what: &str) -> crate::oci::ImageConfig {
    let mut config = image.config.clone();
    let mut left = merged;
    for h in config.history.iter_mut().rev() {
        if left == 0 {
            break;
        }
        if !h.empty_layer {
            h.empty_layer = true;
            left -= 1;
        }
    }
    if has_layer {
        config.history.push(History {
            created: config.history.last().and_then(|h| h.created.clone()),
            created_by: Some(format!("strata build {what}: {merged} layers merged into one")),
            comment: Some("strata.dockerfile.v0".into()),
            ..Default::default()
        });
    }
    config
}
