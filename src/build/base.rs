//! FROM: what a stage starts from.

use anyhow::{bail, Result};

use super::export::{import, Destination};
use super::workspace::{ImageState, Workspace};

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
    match ws.store.resolve(reference)? {
        Some(manifest) => ws.load_image(&manifest),
        None => bail!(
            "base image {reference:?} is not in the local store {} (build or import it first, or use oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]; pulling from registries is not supported yet)",
            ws.root.display()
        ),
    }
}
