//! FROM: what a stage starts from.

use anyhow::{bail, Context, Result};

use super::export::{import, Destination};
use super::workspace::{ImageState, PullPolicy, Workspace};
use crate::oci::ImageName;
use crate::registry;

/// Resolves a FROM reference that is not an earlier stage: `scratch`, a transport
/// (`oci:`, `oci-archive:`, `docker-archive:`), or an image in the local store by name or id.
pub fn resolve(ws: &Workspace, reference: &str) -> Result<ImageState> {
    if reference.eq_ignore_ascii_case("scratch") {
        return Ok(ImageState::scratch());
    }
    if let Some(source) = Destination::parse_transport(reference) {
        let manifest = import(ws, &source?)?;
        return ws.load_image(&manifest);
    }
    // A name with a registry in it can come from there; `localhost/...` and ids only
    // ever name images of the local store.
    let name = ImageName::parse(reference).ok().filter(|n| n.domain() != "localhost" && reference.contains('/'));
    if ws.pull != PullPolicy::Always || name.is_none() {
        if let Some(manifest) = ws.store.resolve(reference)? {
            return ws.load_image(&manifest);
        }
    }
    match name {
        Some(name) if ws.pull != PullPolicy::Never => {
            let client = registry::connect(name.domain(), &ws.tls)?;
            let progress = crate::report::transfer_progress(false);
            let manifest = registry::transfer::pull_into_store(&ws.store, &client, &name, progress.as_ref()).with_context(|| format!("pulling base image {name}"))?;
            ws.load_image(&manifest)
        }
        _ => bail!(
            "base image {reference:?} is not in the local store {}{} (build or import it first, name it with its registry, e.g. docker.io/library/{reference}, or use oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG])",
            ws.root.display(),
            if ws.pull == PullPolicy::Never { " and --pull=never forbids pulling it" } else { "" }
        ),
    }
}
