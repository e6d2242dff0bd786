//! Finding an image by reference for FROM, `--from` and `pull`: a transport
//! location, the local store, or a registry (short names through registries.conf),
//! pulled as the pull policy says.

use anyhow::{bail, Context, Result};

use super::exchange::import;
use super::{Location, PullPolicy, RegistryOptions};
use crate::oci::{self, ImageName};
use crate::registry::{self, shortnames, shortnames::ShortNames};
use crate::report::{Reporter, TransferView};
use crate::store::LocalStore;

/// The manifest of an image that is not an earlier stage nor `scratch`: a transport
/// (`oci:`, `oci-archive:`, `docker-archive:`), an image in the local store by name
/// or id, or a registry image (pulled as `--pull` says).
pub fn find_image(store: &LocalStore, reference: &str, opts: &RegistryOptions) -> Result<oci::Descriptor> {
    if let Some(source) = Location::parse_transport(reference) {
        return import(store, &source?);
    }
    // An id (`sha256:...`) only ever names an image of the local store.
    if shortnames::is_short(reference) && !reference.starts_with("sha256:") {
        return find_short(store, reference, opts);
    }
    // A name with a registry in it can come from there; `localhost/...` only ever
    // names images of the local store.
    let name = ImageName::parse(reference).ok().filter(|n| n.domain() != "localhost" && reference.contains('/'));
    if opts.pull != PullPolicy::Always || name.is_none() {
        if let Some(manifest) = store.images.resolve(reference)? {
            return Ok(manifest);
        }
    }
    match name {
        Some(name) if opts.pull != PullPolicy::Never => {
            let client = registry::connect(name.domain(), &opts.tls)?;
            let progress = crate::report::transfer_progress(opts.view);
            let manifest = registry::transfer::pull_into_store(&store.images, &client, &name, progress.as_ref()).with_context(|| format!("pulling base image {name}"))?;
            Ok(manifest)
        }
        _ => bail!(
            "base image {reference:?} is not in the local store {}{} (build or import it first, or use oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG])",
            store.root.display(),
            if opts.pull == PullPolicy::Never { " and --pull=never forbids pulling it" } else { "" }
        ),
    }
}

/// A short name (`busybox`, `user/app:1`): the local image `localhost/NAME` (or an
/// image id) first, as podman looks it up, so `build -t NAME` results stay what
/// FROM NAME means; then, unless `--pull=always`, what registries.conf makes of it
/// that the store already has; then those names pulled in order.
fn find_short(store: &LocalStore, reference: &str, opts: &RegistryOptions) -> Result<oci::Descriptor> {
    if let Some(manifest) = store.images.resolve(reference)? {
        return Ok(manifest);
    }
    let names = ShortNames::load()?;
    // The build's -q made the transfer view quiet; it silences these too.
    let report = Reporter::new(opts.view == TransferView::Quiet);
    for w in &names.warnings {
        report.warn(w);
    }
    let candidates = names.candidates(reference)?;
    if opts.pull != PullPolicy::Always {
        for name in &candidates {
            if let Some(manifest) = store.images.resolve(&name.to_string())? {
                return Ok(manifest);
            }
        }
    }
    if opts.pull == PullPolicy::Never {
        let looked: Vec<String> =
            std::iter::once(format!("localhost/{reference}")).chain(candidates.iter().map(ToString::to_string)).collect();
        bail!(
            "base image {reference:?} is not in the local store {} (looked for {}) and --pull=never forbids pulling it",
            store.root.display(),
            looked.join(", ")
        );
    }
    let progress = crate::report::transfer_progress(opts.view);
    let connect = |registry: &str| registry::connect(registry, &opts.tls);
    let (_, manifest) = registry::transfer::pull_first(&store.images, reference, &candidates, &connect, progress.as_ref())
        .with_context(|| format!("pulling base image {reference}"))?;
    Ok(manifest)
}
