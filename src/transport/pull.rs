//! Finding an image by reference for FROM and `--from`: a transport location, the
//! local store, or a registry (short names through registries.conf), pulled as the
//! pull policy says; and `pull`, which always asks the registry. Both pull a short
//! name through the same candidates and the same code.

use anyhow::{bail, Context, Result};

use super::exchange::import;
use super::registry::registry_name;
use super::{Location, PullPolicy, RegistryOptions};
use crate::oci::{self, ImageName};
use crate::platform::Platform;
use crate::registry::{self, is_short_name, ShortNames};
use crate::report::{Reporter, TransferView};
use crate::store::LocalStore;

/// An image `pull` brought into the store.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub manifest: oci::Descriptor,
    /// The image id (its config's digest).
    pub id: oci::Digest,
}

/// The manifest of an image that is not an earlier stage nor `scratch`: a transport
/// (`oci:`, `oci-archive:`, `docker-archive:`), an image in the local store by name
/// or id, or a registry image (pulled as `--pull` says).
pub fn find_image(store: &LocalStore, reference: &str, opts: &RegistryOptions) -> Result<oci::Descriptor> {
    if let Some(source) = Location::parse_transport(reference) {
        return import(store, &source?, opts.platform.as_ref());
    }
    // An id (`sha256:...`) only ever names an image of the local store.
    if is_short_name(reference) && !reference.starts_with("sha256:") {
        return find_short(store, reference, opts);
    }
    // A name with a registry in it can come from there; `localhost/...` only ever
    // names images of the local store.
    let name = ImageName::parse(reference).ok().filter(|n| n.domain() != "localhost" && reference.contains('/'));
    if opts.pull != PullPolicy::Always || name.is_none() {
        if let Some(manifest) =
            store.images.resolve(reference)?.filter(|m| name.is_none() || opts.pull == PullPolicy::Never || fits(&store.images, m, opts))
        {
            return Ok(manifest);
        }
    }
    match name {
        Some(name) if opts.pull != PullPolicy::Never => pull_name(&store.images, &name, opts, "pulling base image"),
        _ => bail!(
            "base image {reference:?} is not in the local store {}{} (build or import it first, or use oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG])",
            store.root.display(),
            if opts.pull == PullPolicy::Never { " and --pull=never forbids pulling it" } else { "" }
        ),
    }
}

/// `strata pull`: `reference` from its registry (`docker://` allowed in front), or a
/// short name's candidates tried in order. The local store is never consulted first:
/// pulling is what was asked for.
pub fn pull(images: &oci::Store, reference: &str, opts: &RegistryOptions) -> Result<Pulled> {
    let bare = reference.strip_prefix("docker://").unwrap_or(reference);
    let manifest = if is_short_name(reference) {
        let candidates = short_candidates(bare, opts)?;
        pull_candidates(images, bare, &candidates, opts).with_context(|| format!("pulling {bare}"))?
    } else {
        let name = registry_name(reference)?;
        pull_name(images, &name, opts, "pulling")?
    };
    let m = images.read_manifest(&oci::descriptor_digest(&manifest)?)?;
    let id = oci::descriptor_digest(m.config())?;
    Ok(Pulled { manifest, id })
}

/// `strata pull --all-platforms`: every manifest of `reference`'s index and the
/// index, named as pulled; the id is the index's digest. A full name only: which
/// registry's index a short name means is for the search to find first.
pub fn pull_all(images: &oci::Store, reference: &str, opts: &RegistryOptions) -> Result<Pulled> {
    if is_short_name(reference) {
        bail!("pull --all-platforms needs a full name REGISTRY/REPOSITORY[:TAG|@DIGEST], not the short name {reference:?}");
    }
    let name = registry_name(reference)?;
    let client = opts.connect(name.domain())?;
    let progress = crate::report::transfer_progress(opts.view);
    let pulled = registry::pull_all(images, &client, &name, progress.as_ref()).with_context(|| format!("pulling {name}"))?;
    registry::name_pulled(images, &name, &pulled)?;
    let id = if oci::is_index_descriptor(&pulled) {
        oci::descriptor_digest(&pulled)?
    } else {
        oci::descriptor_digest(images.read_manifest(&oci::descriptor_digest(&pulled)?)?.config())?
    };
    Ok(Pulled { manifest: pulled, id })
}

/// A short name (`busybox`, `user/app:1`): the local image `localhost/NAME` (or an
/// image id) first, as podman looks it up, so `build -t NAME` results stay what
/// FROM NAME means; then, unless `--pull=always`, what registries.conf makes of it
/// that the store already has; then those names pulled in order.
fn find_short(store: &LocalStore, reference: &str, opts: &RegistryOptions) -> Result<oci::Descriptor> {
    if let Some(manifest) = store.images.resolve(reference)? {
        return Ok(manifest);
    }
    let candidates = short_candidates(reference, opts)?;
    if opts.pull != PullPolicy::Always {
        for name in &candidates {
            if let Some(manifest) = store.images.resolve(&name.to_string())?.filter(|m| fits(&store.images, m, opts)) {
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
    pull_candidates(&store.images, reference, &candidates, opts).with_context(|| format!("pulling base image {reference}"))
}

/// Whether the stored `found` has an image for the platform `opts` pulls for: a
/// pulled image of another platform under the same name is pulled again for this
/// one rather than refused (as a multi-platform build's bases are).
fn fits(images: &oci::Store, found: &oci::Descriptor, opts: &RegistryOptions) -> bool {
    let Some(wanted) = &opts.platform else { return true };
    let config = images.select_manifest(found, Some(wanted)).and_then(|m| {
        let m = images.read_manifest(&oci::descriptor_digest(&m)?)?;
        images.read_config(&oci::descriptor_digest(m.config())?)
    });
    match config {
        Ok(c) => c.architecture.is_empty() || wanted.matches(&Platform::new(&c.os, &c.architecture, c.variant.as_deref())),
        Err(_) => false,
    }
}

/// What registries.conf makes of a short name, in the order to try; the files it
/// had to skip are warned about, and the command goes on without them.
fn short_candidates(short: &str, opts: &RegistryOptions) -> Result<Vec<ImageName>> {
    let names = ShortNames::load()?;
    // The build's -q made the transfer view quiet; it silences these too.
    let report = Reporter::new(opts.view == TransferView::Quiet);
    for w in &names.warnings {
        report.warn(w);
    }
    Ok(names.candidates(short)?)
}

/// Pulls the first of `candidates` that can be pulled and names it as pulled.
fn pull_candidates(images: &oci::Store, short: &str, candidates: &[ImageName], opts: &RegistryOptions) -> Result<oci::Descriptor> {
    let progress = crate::report::transfer_progress(opts.view);
    let connect = |registry: &str| opts.connect(registry);
    let (_, manifest) = registry::pull_first(images, short, candidates, &connect, opts.platform.as_ref(), progress.as_ref())?;
    Ok(manifest)
}

/// Pulls `name` and names it in the store as pulled; a failure of the transfer
/// itself is said to be `what` the name.
fn pull_name(images: &oci::Store, name: &ImageName, opts: &RegistryOptions, what: &str) -> Result<oci::Descriptor> {
    let client = opts.connect(name.domain())?;
    let progress = crate::report::transfer_progress(opts.view);
    registry::pull_into_store(images, &client, name, opts.platform.as_ref(), progress.as_ref()).with_context(|| format!("{what} {name}"))
}
