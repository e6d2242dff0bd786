//! Steps that write through an overlay the builder mounts itself (COPY, ADD,
//! WORKDIR): the step's tree is mounted over the image's layers, written, and its
//! upper dir committed as the next layer (none when nothing changed, as BuildKit).

use std::path::Path;

use anyhow::{Context, Result};

use super::chown::resolve_owner;
use super::Build;
use crate::rootfs::{resolve_in, Last};
use crate::sandbox::{mount_overlay, OverlaySpec};
use crate::store::{ImageState, LayerRef};

/// The overlay of a new step over `image` in `scratch` (with `init/` below it for
/// RUN), quiet as the build is: the one place a step's overlay is asked for.
pub(super) fn step_overlay(b: &Build, image: &ImageState, scratch: &Path, with_init: bool) -> Result<OverlaySpec> {
    let mut spec = b.store.overlay_for(image, scratch, with_init)?;
    spec.quiet = b.report.is_quiet();
    Ok(spec)
}

/// Runs `write` against the mounted tree of a new step over `image`; returns the
/// layer it produced, if any.
pub(super) fn fs_step(b: &Build, image: &ImageState, write: impl FnOnce(&Path) -> Result<()>) -> Result<Option<LayerRef>> {
    let scratch = b.store.layers.scratch()?;
    let spec = step_overlay(b, image, scratch.path(), false)?;
    {
        let mount = mount_overlay(&spec)?;
        write(mount.merged())?;
    }
    b.store.settle(&spec)?;
    b.store.commit_upper(&spec.upper, image, b.req.layers)
}

/// WORKDIR's directory: BuildKit creates a missing one owned by the current USER.
pub(super) fn workdir_step(b: &Build, image: &ImageState, path: &str) -> Result<Option<LayerRef>> {
    let user = image.config.config.as_ref().and_then(|c| c.user.clone()).filter(|u| !u.is_empty());
    fs_step(b, image, |tree| {
        let owner = user.as_deref().map(|u| resolve_owner(tree, u)).transpose()?;
        make_workdir(tree, path, owner)
    })
}

/// Creates the missing components of `path` inside `tree`, 0755, owned by `owner`.
fn make_workdir(tree: &Path, path: &str, owner: Option<(u32, u32)>) -> Result<()> {
    let mut cur = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        cur.push('/');
        cur.push_str(part);
        let host = resolve_in(tree, Path::new(&cur), Last::Follow)?;
        if host.is_dir() {
            continue;
        }
        std::fs::create_dir(&host).with_context(|| format!("creating working directory {cur}"))?;
        std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(&host, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)))
                .with_context(|| format!("chown {uid}:{gid} {cur}"))?;
        }
    }
    Ok(())
}
