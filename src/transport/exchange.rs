//! Writing a stored image to a location outside the store (`--output`, push by
//! `docker://`), and reading one in (FROM `oci:...`).

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{Location, RegistryOptions};
use crate::oci;
use crate::store::LocalStore;

/// Writes the stored image `manifest` to `dest`. An oci layout names it by the
/// destination's tag, else by `name`'s tag (the build's first -t); a docker-archive by
/// the destination's reference, else by `name` in full. Returns the manifest digest
/// a registry destination now holds.
pub fn export(
    store: &LocalStore,
    manifest: &oci::Descriptor,
    dest: &Location,
    name: Option<&oci::ImageName>,
    registry: &RegistryOptions,
) -> Result<Option<oci::Digest>> {
    let default_tag = name.and_then(|n| n.tag().map(str::to_string));
    let tag = dest.tag().or(default_tag.as_deref());
    let local = store;
    let store = &store.images;
    match dest {
        Location::RootfsDir { path } => export_rootfs(local, &one_platform(store, manifest, "a dir: output")?, path).map(|()| None),
        Location::Registry { path } => {
            let name =
                oci::ImageName::parse(&path.to_string_lossy()).with_context(|| format!("invalid registry reference {}", path.display()))?;
            let client = registry.connect(name.domain())?;
            let progress = crate::report::transfer_progress(registry.view);
            crate::registry::push(store, &client, manifest, &name, progress.as_ref()).map(|r| r.manifest).map_err(anyhow::Error::from)
        }
        Location::OciDir { path, .. } => Ok(oci::export_oci_dir(store, manifest, path, tag).map(|()| None)?),
        Location::OciArchive { path, .. } => Ok(oci::export_oci_archive(store, manifest, path, tag).map(|()| None)?),
        Location::DockerArchive { path, reference } => {
            let tags = docker_repo_tags(reference.as_deref(), name)?;
            let one = one_platform(store, manifest, "a docker-archive")?;
            oci::export_docker_archive(store, &one, path, &tags).map(|()| None).map_err(anyhow::Error::from)
        }
    }
    .with_context(|| format!("exporting to {dest}"))
}

/// The manifest a one-image output takes: of a manifest list, the host's platform,
/// said once (oci:, oci-archive: and docker:// keep every platform).
fn one_platform(store: &oci::Store, manifest: &oci::Descriptor, what: &str) -> Result<oci::Descriptor> {
    let one = store.select_manifest(manifest, None)?;
    if oci::is_index_descriptor(manifest) {
        eprintln!(
            "strata: note: {what} holds one platform: writing {} of the manifest list (oci:, oci-archive: and docker:// keep every platform)",
            crate::platform::Platform::host()
        );
    }
    Ok(one)
}

/// Writes the image's files into `path` (missing or empty), all owned by the user who
/// runs strata (container root here), as BuildKit's local exporter gives them.
fn export_rootfs(store: &LocalStore, manifest: &oci::Descriptor, path: &Path) -> Result<()> {
    if path.exists() && std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?.next().is_some() {
        bail!("output directory {} is not empty", path.display());
    }
    let image = store.load_image(manifest)?;
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    store.flatten_image(&image, path)?;
    // Subordinate owners would leave files the user cannot remove: hand them all over.
    for entry in walkdir::WalkDir::new(path).follow_links(false) {
        let entry = entry.with_context(|| format!("walking {}", path.display()))?;
        std::os::unix::fs::lchown(entry.path(), Some(0), Some(0)).with_context(|| format!("chown {}", entry.path().display()))?;
    }
    Ok(())
}

/// The RepoTags of a docker-archive: the reference given with the destination, else
/// the image's own name, normalised as podman shows names (`localhost/hello:latest`).
pub fn docker_repo_tags(reference: Option<&str>, name: Option<&oci::ImageName>) -> Result<Vec<String>> {
    match (reference, name) {
        (Some(r), _) => {
            let n = oci::ImageName::parse(r).with_context(|| format!("invalid docker-archive reference {r:?}"))?;
            if n.digest().is_some() {
                bail!("docker-archive reference {r:?}: a digest cannot name an image in an archive");
            }
            Ok(vec![n.to_string()])
        }
        (None, Some(n)) => Ok(vec![n.to_string()]),
        (None, None) => Ok(Vec::new()),
    }
}

/// Copies the image at `source` into the store and returns its manifest descriptor.
pub fn import(store: &LocalStore, source: &Location, platform: Option<&crate::platform::Platform>) -> Result<oci::Descriptor> {
    match source {
        Location::OciDir { path, tag } => oci::import_oci_dir(&store.images, path, tag.as_deref(), platform),
        Location::OciArchive { path, tag } => oci::import_oci_archive(&store.images, path, tag.as_deref(), platform),
        Location::DockerArchive { path, reference } => oci::load_archive(&store.images, path, reference.as_deref()).map(|l| l.manifest),
        Location::RootfsDir { path } => {
            bail!("dir:{} is an output only: an image cannot start from a plain directory", path.display())
        }
        Location::Registry { path } => bail!("FROM docker://{}: name the image without docker:// to pull it", path.display()),
    }
    .with_context(|| format!("importing {source}"))
}
