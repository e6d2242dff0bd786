//! `save` and `load`: a stored image written to an archive (a file, a directory or
//! a stream), and an archive's image brought into the store under the names it
//! carries, as docker and podman name them. Both need the image store alone.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::docker_repo_tags;
use crate::oci::{self, Digest, ImageName, Store};

/// What `save` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFormat {
    /// What `docker load` reads.
    DockerArchive,
    OciArchive,
    /// An OCI layout directory: never a stream.
    OciDir,
}

impl SaveFormat {
    /// `--format`'s values.
    pub fn from_name(name: &str) -> Option<SaveFormat> {
        match name {
            "docker-archive" => Some(SaveFormat::DockerArchive),
            "oci-archive" => Some(SaveFormat::OciArchive),
            "oci-dir" => Some(SaveFormat::OciDir),
            _ => None,
        }
    }
}

/// A stored image about to be saved, with the names its archive will carry.
pub struct SaveSource {
    manifest: oci::Descriptor,
    /// A docker-archive's RepoTags.
    repo_tags: Vec<String>,
    /// An OCI layout's ref name: the bare tag, as `skopeo copy … oci:DIR:TAG` writes it.
    tag: Option<String>,
    /// An oci-archive's ref name: the whole name (`localhost/app:latest`), as
    /// `podman save --format oci-archive` writes it, so `podman load` and
    /// `strata load` restore the name.
    full_name: Option<String>,
}

impl SaveSource {
    /// The image `reference` names. Saved by name, the archive carries the name;
    /// saved by id, none (as docker does).
    pub fn find(images: &Store, reference: &str) -> Result<SaveSource> {
        let manifest = images.resolve(reference)?.with_context(|| format!("image {reference:?} not found in the local store"))?;
        let name =
            ImageName::parse(reference).ok().filter(|n| n.digest().is_none() && images.resolve(&n.to_string()).ok().flatten().is_some());
        let repo_tags = docker_repo_tags(None, name.as_ref())?;
        let tag = name.as_ref().and_then(|n| n.tag().map(str::to_string));
        let full_name = name.as_ref().map(|n| n.to_string());
        Ok(SaveSource { manifest, repo_tags, tag, full_name })
    }

    /// The manifest a docker-archive holds: a docker-archive has no index, so of a
    /// manifest list it takes the host's platform, and says so.
    fn one_platform(&self, images: &Store) -> Result<oci::Descriptor> {
        let one = images.select_manifest(&self.manifest, None)?;
        if oci::is_index_descriptor(&self.manifest) {
            eprintln!(
                "strata: note: a docker-archive holds one platform: saving {} of the manifest list (oci-archive and oci-dir keep every platform)",
                crate::platform::Platform::host()
            );
        }
        Ok(one)
    }

    /// Writes the archive to `path` (a directory for [`SaveFormat::OciDir`]).
    pub fn save(&self, images: &Store, format: SaveFormat, path: &Path) -> Result<()> {
        let tag = self.tag.as_deref();
        match format {
            SaveFormat::DockerArchive => oci::export_docker_archive(images, &self.one_platform(images)?, path, &self.repo_tags),
            SaveFormat::OciArchive => oci::export_oci_archive(images, &self.manifest, path, self.full_name.as_deref()),
            SaveFormat::OciDir => oci::export_oci_dir(images, &self.manifest, path, tag),
        }?;
        Ok(())
    }

    /// Streams the archive to `out`; `label` names the stream in errors.
    pub fn write<W: Write>(&self, images: &Store, format: SaveFormat, out: W, label: &Path) -> Result<W> {
        Ok(match format {
            SaveFormat::DockerArchive => oci::write_docker_archive(images, &self.one_platform(images)?, out, &self.repo_tags, label)?,
            SaveFormat::OciArchive => oci::write_oci_archive(images, &self.manifest, out, self.full_name.as_deref(), label)?,
            SaveFormat::OciDir => bail!("an oci-dir is a directory: it cannot be written to {}", label.display()),
        })
    }
}

/// An image `load` brought into the store.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The image id (its config's digest).
    pub id: Digest,
    /// The names it was given; none leaves it unnamed.
    pub names: Vec<ImageName>,
}

/// Loads the docker-archive or oci-archive at `path` (told apart by content).
pub fn load(images: &Store, path: &Path) -> Result<Loaded> {
    let loaded = oci::load_archive(images, path, None).with_context(|| format!("loading {}", path.display()))?;
    add_loaded(images, loaded)
}

/// [`load`] from a stream; `label` names it in errors.
pub fn load_from(images: &Store, reader: impl Read, label: &Path) -> Result<Loaded> {
    let loaded = oci::load_archive_from(images, reader, label, None).with_context(|| format!("loading from {}", label.display()))?;
    add_loaded(images, loaded)
}

/// Names a loaded image as its archive did, or keeps it unnamed.
fn add_loaded(images: &Store, loaded: oci::LoadedImage) -> Result<Loaded> {
    // A multi-platform archive comes back as its index, whose own digest is its id.
    let id = if oci::is_index_descriptor(&loaded.manifest) {
        oci::descriptor_digest(&loaded.manifest)?
    } else {
        oci::descriptor_digest(images.read_manifest(&oci::descriptor_digest(&loaded.manifest)?)?.config())?
    };
    if loaded.names.is_empty() {
        images.add_unnamed(&loaded.manifest)?;
    }
    for name in &loaded.names {
        images.tag(name, &loaded.manifest)?;
    }
    Ok(Loaded { id, names: loaded.names })
}
