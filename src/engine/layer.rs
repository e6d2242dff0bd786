//! Steps that write through an overlay the builder mounts itself (COPY, ADD,
//! WORKDIR): the step's tree is mounted over the image's layers, written, and its
//! upper dir committed as the next layer (none when nothing changed, as BuildKit).
//! Every step's layer is committed here (`commit_step`), copying the unchanged gzip
//! members of the blob the same step, by its lineage, wrote last time.

use std::path::Path;

use anyhow::{Context, Result};

use super::chown::workdir_owner;
use super::Build;
use crate::owner::Owners;
use crate::rootfs::{resolve_in, Last};
use crate::sandbox::{mount_overlay, OverlaySpec};
use crate::store::{ImageState, LayerRef};

/// Commits a step's upper dir as its layer. `lineage` names the step apart from
/// its inputs' content (see `StageBuilder`): the blob it wrote last time is the
/// candidate whose unchanged members are copied, and the new blob is recorded.
/// `run_line`, a RUN's Dockerfile line, has what it deleted judged for
/// WastedLayerSpace (`wasted`), from the whiteouts the layer writer saw.
pub(super) fn commit_step(
    b: &Build,
    upper: &Path,
    image: &ImageState,
    lineage: Option<&str>,
    run_line: Option<usize>,
) -> Result<Option<LayerRef>> {
    // --no-cache redoes everything, compression too: a rebuild that way never
    // depends on an earlier blob's bytes.
    let candidate = lineage.filter(|_| !b.req.no_cache).and_then(|l| b.store.lineage_blob(l));
    let Some(committed) = b.store.commit_upper(upper, image, b.req.layers, candidate.as_ref())? else { return Ok(None) };
    let (layer, members) = (committed.layer, committed.members);
    if let (Some(lineage), Ok(blob)) = (lineage, crate::oci::descriptor_digest(&layer.blob)) {
        b.store.set_lineage_blob(lineage, &blob);
    }
    if members.reused > 0 && b.report.is_plain() {
        b.report.line(&format!("--> reused {} of {} compressed chunks of the step's previous layer", members.reused, members.members));
    }
    if let Some(line) = run_line {
        super::wasted::check_deletions(b, &committed.whiteouts, image, line)?;
    }
    Ok(Some(layer))
}

/// The overlay of a new step over `image` in `scratch` (with `init/` below it for
/// RUN), quiet as the build is: the one place a step's overlay is asked for.
pub(super) fn step_overlay(b: &Build, image: &ImageState, scratch: &Path, with_init: bool) -> Result<OverlaySpec> {
    let mut spec = b.store.overlay_for(image, scratch, with_init)?;
    spec.quiet = b.report.is_quiet();
    Ok(spec)
}

/// Runs `write` against the mounted tree of a new step over `image`; returns the
/// layer it produced, if any (see [`commit_step`] for `lineage`).
pub(super) fn fs_step(
    b: &Build,
    image: &ImageState,
    lineage: Option<&str>,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<Option<LayerRef>> {
    let scratch = b.store.layers.scratch()?;
    let spec = step_overlay(b, image, scratch.path(), false)?;
    {
        let mount = mount_overlay(&spec)?;
        write(mount.merged())?;
    }
    b.store.settle(&spec)?;
    commit_step(b, &spec.upper, image, lineage, None)
}

/// WORKDIR's directory: BuildKit creates each missing component owned by the
/// current USER (see [`workdir_owner`]: a name the image does not know is root,
/// not an error) and leaves an existing directory as it is.
pub(super) fn workdir_step(b: &Build, image: &ImageState, path: &str, lineage: &str) -> Result<Option<LayerRef>> {
    let user = image.config.config.as_ref().and_then(|c| c.user.clone()).filter(|u| !u.is_empty());
    fs_step(b, image, Some(lineage), |tree| {
        let owner = user.as_deref().map(|u| workdir_owner(tree, u));
        make_workdir(tree, path, owner, &b.store.owners)
    })
}

/// Creates the missing components of `path` inside `tree`, 0755, owned by `owner`
/// (recorded in single-id mode). `path` is resolved as BuildKit's mkdir resolves
/// it, symlinks first, so `..` after a symlink climbs from its target.
fn make_workdir(tree: &Path, path: &str, owner: Option<(u32, u32)>, owners: &Owners) -> Result<()> {
    let host = resolve_in(tree, Path::new(path), Last::Follow)?;
    let mut cur = tree.to_path_buf();
    for part in host.strip_prefix(tree).unwrap_or(Path::new("")).components() {
        cur.push(part);
        if cur.is_dir() {
            continue;
        }
        let shown = format!("/{}", cur.strip_prefix(tree).unwrap_or(&cur).display());
        std::fs::create_dir(&cur).with_context(|| format!("creating working directory {shown} (WORKDIR {path})"))?;
        std::fs::set_permissions(&cur, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        if let Some((uid, gid)) = owner {
            owners.set_owner(&cur, uid, gid).with_context(|| format!("chown {uid}:{gid} {shown}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn workdir_creates_what_is_missing_and_leaves_the_rest() {
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        std::fs::create_dir_all(t.join("exist")).unwrap();
        std::fs::set_permissions(t.join("exist"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::create_dir_all(t.join("tmp/elsewhere")).unwrap();
        std::os::unix::fs::symlink("/tmp/elsewhere", t.join("a")).unwrap();
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        make_workdir(t, "/exist/new/", Some(me), &Owners::Real).unwrap();
        assert_eq!(std::fs::metadata(t.join("exist")).unwrap().mode() & 0o7777, 0o700, "an existing dir keeps its mode");
        assert_eq!(std::fs::metadata(t.join("exist/new")).unwrap().mode() & 0o7777, 0o755);
        make_workdir(t, "/x/../y/", None, &Owners::Real).unwrap();
        assert!(t.join("y").is_dir() && !t.join("x").exists(), "a missing /x is not created for /x/../y");
        make_workdir(t, "/a/../c", None, &Owners::Real).unwrap();
        assert!(t.join("tmp/c").is_dir() && !t.join("c").exists(), "`..` after a symlink climbs from its target");
    }
}
