//! FROM: what a stage starts from.

use anyhow::{bail, Context, Result};

use super::export::{import, Destination};
use super::workspace::{ImageState, PullPolicy, Workspace};
use crate::oci::ImageName;
use crate::registry::{self, shortnames, shortnames::ShortNames};

/// Resolves a FROM reference that is not an earlier stage: `scratch`, a transport
/// (`oci:`, `oci-archive:`, `docker-archive:`), an image in the local store by name
/// or id, or a registry image (pulled as `--pull` says).
pub fn resolve(ws: &Workspace, reference: &str) -> Result<ImageState> {
    if reference.eq_ignore_ascii_case("scratch") {
        return Ok(ImageState::scratch());
    }
    if let Some(source) = Destination::parse_transport(reference) {
        let manifest = import(ws, &source?)?;
        return ws.load_image(&manifest);
    }
    // An id (`sha256:...`) only ever names an image of the local store.
    if shortnames::is_short(reference) && !reference.starts_with("sha256:") {
        return resolve_short(ws, reference);
    }
    // A name with a registry in it can come from there; `localhost/...` only ever
    // names images of the local store.
    let name = ImageName::parse(reference).ok().filter(|n| n.domain() != "localhost" && reference.contains('/'));
    if ws.pull != PullPolicy::Always || name.is_none() {
        if let Some(manifest) = ws.store.resolve(reference)? {
            return ws.load_image(&manifest);
        }
    }
    match name {
        Some(name) if ws.pull != PullPolicy::Never => {
            let client = registry::connect(name.domain(), &ws.tls)?;
            let progress = crate::report::transfer_progress(ws.transfer_view);
            let manifest = registry::transfer::pull_into_store(&ws.store, &client, &name, progress.as_ref()).with_context(|| format!("pulling base image {name}"))?;
            ws.load_image(&manifest)
        }
        _ => bail!(
            "base image {reference:?} is not in the local store {}{} (build or import it first, or use oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG])",
            ws.root.display(),
            if ws.pull == PullPolicy::Never { " and --pull=never forbids pulling it" } else { "" }
        ),
    }
}

/// A short name (`busybox`, `user/app:1`): the local image `localhost/NAME` (or an
/// image id) first, as podman looks it up, so `build -t NAME` results stay what
/// FROM NAME means; then, unless `--pull=always`, what registries.conf makes of it
/// that the store already has; then those names pulled in order.
fn resolve_short(ws: &Workspace, reference: &str) -> Result<ImageState> {
    if let Some(manifest) = ws.store.resolve(reference)? {
        return ws.load_image(&manifest);
    }
    let names = ShortNames::load()?;
    for w in &names.warnings {
        eprintln!("warning: {w}");
    }
    let candidates = names.candidates(reference)?;
    if ws.pull != PullPolicy::Always {
        for name in &candidates {
            if let Some(manifest) = ws.store.resolve(&name.to_string())? {
                return ws.load_image(&manifest);
            }
        }
    }
    if ws.pull == PullPolicy::Never {
        let looked: Vec<String> =
            std::iter::once(format!("localhost/{reference}")).chain(candidates.iter().map(ToString::to_string)).collect();
        bail!(
            "base image {reference:?} is not in the local store {} (looked for {}) and --pull=never forbids pulling it",
            ws.root.display(),
            looked.join(", ")
        );
    }
    let progress = crate::report::transfer_progress(ws.transfer_view);
    let connect = |registry: &str| registry::connect(registry, &ws.tls);
    let (_, manifest) = registry::transfer::pull_first(&ws.store, reference, &candidates, &connect, progress.as_ref())
        .with_context(|| format!("pulling base image {reference}"))?;
    ws.load_image(&manifest)
}
