//! `strata manifest`: manifest lists kept in the local store, as podman and buildah
//! keep them, and pushed to a registry; how fan-out builds (one runner per
//! platform, each pushing its image by digest) are joined under one tag.
//!
//! A list is an OCI image index tagged in the store (`oci::index`); every edit
//! writes a new index blob and moves the tag to it. Its entries are manifests the
//! store holds whole: a `docker://` image is pulled when it is added (its layers
//! too, where podman records only the reference), and its repository is noted as
//! the blobs' source, so pushing to the same registry mounts them from there
//! instead of uploading them again.
//!
//! Each edit is a read of the tagged index, a change and a new tag: edits take
//! an exclusive lock of their own (`manifest-lists.lock` in the image store) for
//! that whole span, so two joins running at once (a CI matrix's last jobs) both
//! land.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, MediaType};

use super::registry::registry_name;
use super::RegistryOptions;
use crate::oci::{self, Digest, ImageName, Store};
use crate::platform::Platform;
use crate::registry;

/// What `add` and `annotate` set on an entry: `--platform` replaces the platform
/// whole, `--os`/`--arch`/`--variant` one part each (after it), `--annotation`s are
/// added to the entry's.
#[derive(Clone, Debug, Default)]
pub struct EntryEdit {
    pub platform: Option<Platform>,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub variant: Option<String>,
    pub annotations: Vec<(String, String)>,
}

impl EntryEdit {
    /// `current` with this edit's platform fields applied, normalised.
    pub fn platform_of(&self, current: &Platform) -> Platform {
        let base = self.platform.clone().unwrap_or_else(|| current.clone());
        let os = self.os.as_deref().unwrap_or(&base.os);
        let arch = self.arch.as_deref().unwrap_or(&base.architecture);
        // A new architecture drops the old one's variant unless one is given.
        let variant = match (&self.variant, &self.arch) {
            (Some(v), _) => Some(v.as_str()),
            (None, Some(_)) => None,
            (None, None) => base.variant.as_deref(),
        };
        Platform::new(os, arch, variant)
    }

    fn apply(&self, entry: &mut Descriptor, current: &Platform) {
        entry.set_platform(Some(oci::oci_platform(&self.platform_of(current))));
        if !self.annotations.is_empty() {
            let mut all: HashMap<String, String> = entry.annotations().clone().unwrap_or_default();
            all.extend(self.annotations.iter().cloned());
            entry.set_annotations(Some(all));
        }
    }
}

/// The local name a list is kept under (`mylist` is `localhost/mylist:latest`).
fn list_name(list: &str) -> Result<ImageName> {
    ImageName::parse(list).with_context(|| format!("invalid manifest list name {list:?}"))
}

/// The stored index `list` names, or an error saying it is none.
fn load(images: &Store, list: &str) -> Result<(ImageName, ImageIndex)> {
    let name = list_name(list)?;
    let found = images.resolve(&name.to_string())?.with_context(|| format!("manifest list {list:?} not found in the local store"))?;
    if !oci::is_index_descriptor(&found) {
        bail!("{list:?} is an image, not a manifest list (create one with `strata manifest create {list}`)");
    }
    Ok((name, images.read_image_index(&oci::descriptor_digest(&found)?)?))
}

/// Stores `index` and points `name` at it; returns the new index's digest.
fn save(images: &Store, name: &ImageName, mut index: ImageIndex) -> Result<Digest> {
    index.set_schema_version(2);
    index.set_media_type(Some(MediaType::ImageIndex));
    let desc = images.put_json(oci::MEDIA_TYPE_INDEX, &index)?;
    images.tag(name, &desc)?;
    Ok(oci::descriptor_digest(&desc)?)
}

/// `manifest create LIST [IMAGE...]`: an empty list, then each image added as `add`
/// adds it. A name already in use is refused, as podman refuses it, unless `amend`
/// and it names a list: then the images are added to that one.
pub fn create(images: &Store, list: &str, sources: &[String], amend: bool, opts: &RegistryOptions) -> Result<Digest> {
    let _edit = edit_lock(images)?;
    let name = list_name(list)?;
    let mut digest = match images.resolve(&name.to_string())? {
        Some(found) if amend && oci::is_index_descriptor(&found) => oci::descriptor_digest(&found)?,
        Some(_) => bail!(
            "{list:?} already names an image or manifest list in the local store (remove it first, add to a list with `strata manifest add`, or --amend it)"
        ),
        None => save(images, &name, ImageIndex::default())?,
    };
    for source in sources {
        add_unlocked(images, list, source, &EntryEdit::default(), false, opts)?;
        digest = images.resolve(&name.to_string())?.map(|d| oci::descriptor_digest(&d)).transpose()?.unwrap_or(digest);
    }
    Ok(digest)
}

/// `manifest add LIST IMAGE`: the image's manifest as an entry of the list, with
/// its config's platform unless `edit` says otherwise; an entry of the same
/// digest is replaced. IMAGE is a local image or `docker://REF` (pulled). When it
/// is itself a manifest list, `all` adds each of its images, else the one for the
/// platform `edit` names (default: the host's), as podman picks it. Returns the
/// added manifests' digests.
pub fn add(images: &Store, list: &str, image: &str, edit: &EntryEdit, all: bool, opts: &RegistryOptions) -> Result<Vec<Digest>> {
    let _edit = edit_lock(images)?;
    add_unlocked(images, list, image, edit, all, opts)
}

/// Serialises edits of lists (see the module's doc): held until dropped.
fn edit_lock(images: &Store) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let path = images.root().join("manifest-lists.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", path.display()))
}

fn add_unlocked(images: &Store, list: &str, image: &str, edit: &EntryEdit, all: bool, opts: &RegistryOptions) -> Result<Vec<Digest>> {
    let (name, mut index) = load(images, list)?;
    crate::fault::pause_if_asked("list-edit");
    let context = || format!("adding {image} to manifest list {list:?}");
    let wanted = edit.platform_of(&Platform::host());
    let found = if image.starts_with("docker://") {
        let source = registry_name(image)?;
        let client = opts.connect(source.domain())?;
        let progress = crate::report::transfer_progress(opts.view);
        let pulled = match all {
            true => registry::pull_all(images, &client, &source, progress.as_ref()),
            false => registry::pull_for(images, &client, &source, Some(&wanted), progress.as_ref()),
        };
        pulled.with_context(context)?
    } else {
        images.resolve(image)?.with_context(|| format!("{}: not found in the local store", context()))?
    };
    let picked: Vec<Descriptor> = match (oci::is_index_descriptor(&found), all) {
        (false, _) => vec![found],
        (true, false) => vec![images.select_manifest(&found, Some(&wanted)).with_context(context)?],
        (true, true) => images.index_manifests(&found)?.into_iter().map(|e| e.manifest).collect(),
    };
    let mut entries: Vec<Descriptor> = index.manifests().clone();
    let mut digests = Vec::new();
    for manifest in picked {
        let digest = oci::descriptor_digest(&manifest)?;
        let current = match image_platform(images, &digest) {
            Ok(p) => p,
            // A platform given whole needs none from the config.
            Err(_) if edit.platform.is_some() || (edit.os.is_some() && edit.arch.is_some()) => wanted.clone(),
            Err(e) => return Err(e.context(context())),
        };
        let mut entry = Descriptor::new(manifest.media_type().clone(), manifest.size(), manifest.digest().clone());
        edit.apply(&mut entry, &current);
        entries.retain(|d| d.digest() != entry.digest());
        entries.push(entry);
        digests.push(digest);
    }
    index.set_manifests(entries);
    save(images, &name, index)?;
    Ok(digests)
}

/// The platform the config of the stored manifest `digest` names.
fn image_platform(images: &Store, digest: &Digest) -> Result<Platform> {
    let m = images.read_manifest(digest)?;
    let config = images.read_config(&oci::descriptor_digest(m.config())?)?;
    if config.architecture.is_empty() || config.os.is_empty() {
        bail!("image {digest} names no platform in its config: give one with --platform or --os and --arch");
    }
    Ok(Platform::new(&config.os, &config.architecture, config.variant.as_deref()))
}

/// The entry of `index` that `target` names: a manifest digest, or a local image.
fn entry_position(images: &Store, list: &str, index: &ImageIndex, target: &str) -> Result<usize> {
    let digest = match Digest::parse(target) {
        Ok(d) => d,
        Err(_) => {
            let found =
                images.resolve(target)?.with_context(|| format!("{target:?} is neither a digest nor an image of the local store"))?;
            oci::descriptor_digest(&found)?
        }
    };
    index.manifests().iter().position(|d| oci::descriptor_digest(d).ok().as_ref() == Some(&digest)).with_context(|| {
        let listed: Vec<String> = index.manifests().iter().map(|d| d.digest().to_string()).collect();
        format!(
            "manifest list {list:?} has no entry {digest} (it lists: {})",
            if listed.is_empty() { "nothing".into() } else { listed.join(", ") }
        )
    })
}

/// `manifest annotate LIST DIGEST|IMAGE`: `edit` applied to that entry.
pub fn annotate(images: &Store, list: &str, target: &str, edit: &EntryEdit) -> Result<Digest> {
    let _edit = edit_lock(images)?;
    let (name, mut index) = load(images, list)?;
    let at = entry_position(images, list, &index, target)?;
    let mut entries = index.manifests().clone();
    let current = oci::platform_of(&entries[at]).unwrap_or_else(Platform::host);
    edit.apply(&mut entries[at], &current);
    index.set_manifests(entries);
    save(images, &name, index)
}

/// `manifest remove LIST DIGEST`: the entry taken out of the list (the image stays).
pub fn remove(images: &Store, list: &str, target: &str) -> Result<Digest> {
    let _edit = edit_lock(images)?;
    let (name, mut index) = load(images, list)?;
    let at = entry_position(images, list, &index, target)?;
    let mut entries = index.manifests().clone();
    entries.remove(at);
    index.set_manifests(entries);
    save(images, &name, index)
}

/// `manifest inspect LIST`: the stored index, as JSON; or for
/// `manifest inspect docker://REF`: the manifest or index the registry serves.
pub fn inspect(images: &Store, list: &str, opts: &RegistryOptions) -> Result<serde_json::Value> {
    if list.starts_with("docker://") {
        let source = registry_name(list)?;
        let client = opts.connect(source.domain())?;
        let reference = match (source.digest(), source.tag()) {
            (Some(d), _) => d.to_string(),
            (None, tag) => tag.unwrap_or("latest").to_string(),
        };
        let fetched = client.get_manifest(source.path(), &reference).with_context(|| format!("inspecting {list}"))?;
        return serde_json::from_slice(&fetched.bytes).with_context(|| format!("{list}: the registry sent no JSON"));
    }
    let (_, index) = load(images, list)?;
    Ok(serde_json::to_value(index)?)
}

/// `manifest rm LIST`: the list's name removed; the images it listed stay.
pub fn delete(images: &Store, list: &str) -> Result<()> {
    let _edit = edit_lock(images)?;
    let (name, _) = load(images, list)?;
    images.untag(&name)?;
    Ok(())
}

/// `manifest push LIST [DEST]`: with `all`, every manifest and its blobs, then the
/// index (see `registry::push_known`); without, the index alone. Returns the
/// index's digest.
pub fn push(images: &Store, list: &str, dest: Option<&str>, all: bool, opts: &RegistryOptions) -> Result<Digest> {
    let (name, index) = load(images, list)?;
    if index.manifests().is_empty() {
        bail!("manifest list {list:?} is empty: add images first (strata manifest add {list} IMAGE)");
    }
    let found = images.resolve(&name.to_string())?.with_context(|| format!("manifest list {list:?} vanished"))?;
    let dest = registry_name(dest.unwrap_or(list))?;
    let client = opts.connect(dest.domain())?;
    let progress = crate::report::transfer_progress(opts.view);
    let pushed = if all {
        registry::push(images, &client, &found, &dest, progress.as_ref()).map(|r| r.manifest)
    } else {
        registry::push_index_only(images, &client, &found, &dest, progress.as_ref()).map(Some)
    };
    let digest = pushed.with_context(|| format!("pushing manifest list {list:?} to {dest}"))?;
    digest.context("the registry push reported no manifest")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Platform {
        Platform::parse(text).unwrap()
    }

    #[test]
    fn an_edit_replaces_the_platform_part_by_part() {
        let arm = p("linux/arm/v7");
        assert_eq!(EntryEdit::default().platform_of(&arm), arm);
        let arch = EntryEdit { arch: Some("arm64".into()), ..Default::default() };
        assert_eq!(arch.platform_of(&arm), p("linux/arm64"), "a new arch drops the old variant");
        let variant = EntryEdit { variant: Some("v6".into()), ..Default::default() };
        assert_eq!(variant.platform_of(&arm), p("linux/arm/v6"));
        let whole = EntryEdit { platform: Some(p("linux/amd64")), os: Some("freebsd".into()), ..Default::default() };
        assert_eq!(whole.platform_of(&arm), p("freebsd/amd64"), "the parts apply after --platform");
    }

    #[test]
    fn a_list_is_edited_by_digest_and_refuses_what_it_does_not_hold() {
        let dir = tempfile::tempdir().unwrap();
        let images = Store::open(dir.path()).unwrap();
        let mut config = oci::ImageConfig::for_host();
        config.architecture = "arm64".into();
        let arm = images.put_image(&config, &[]).unwrap();
        images.tag(&ImageName::parse("armimg").unwrap(), &arm).unwrap();
        let opts = RegistryOptions::default();
        create(&images, "mylist", &[], false, &opts).unwrap();
        create(&images, "mylist", &["armimg".to_string()], true, &opts).unwrap();
        assert!(create(&images, "mylist", &[], false, &opts).unwrap_err().to_string().contains("already names"));
        assert!(create(&images, "armimg", &[], true, &opts).is_err(), "--amend of an image, not a list");
        let edit = EntryEdit { annotations: vec![("k".into(), "v".into())], variant: Some("v8".into()), ..Default::default() };
        annotate(&images, "mylist", arm.digest().as_ref(), &edit).unwrap();
        let doc = inspect(&images, "mylist", &opts).unwrap();
        assert_eq!(doc["manifests"][0]["platform"]["architecture"], "arm64");
        assert_eq!(doc["manifests"][0]["annotations"]["k"], "v");
        assert_eq!(doc["manifests"][0]["digest"], arm.digest().to_string());
        // The list resolves per platform like any stored index.
        assert_eq!(images.resolve_for("mylist", Some(&p("linux/arm64"))).unwrap().unwrap().digest(), arm.digest());
        let missing = remove(&images, "mylist", &Digest::of_bytes(b"x").to_string()).unwrap_err().to_string();
        assert!(missing.contains("mylist") && missing.contains(arm.digest().as_ref()), "{missing}");
        remove(&images, "mylist", "armimg").unwrap();
        assert_eq!(inspect(&images, "mylist", &opts).unwrap()["manifests"], serde_json::json!([]));
        let not_list = add(&images, "armimg", "armimg", &EntryEdit::default(), false, &opts).unwrap_err().to_string();
        assert!(not_list.contains("not a manifest list"), "{not_list}");
        // A local list added to another: one platform's image, or with `all` each.
        let mut config = oci::ImageConfig::for_host();
        config.architecture = "amd64".into();
        let amd = images.put_image(&config, &[]).unwrap();
        let both = [
            oci::PlatformManifest { platform: p("linux/amd64"), manifest: amd.clone() },
            oci::PlatformManifest { platform: p("linux/arm64"), manifest: arm.clone() },
        ];
        images.tag(&ImageName::parse("multi").unwrap(), &images.put_index(&both).unwrap()).unwrap();
        let arm64 = EntryEdit { platform: Some(p("linux/arm64")), ..Default::default() };
        assert_eq!(add(&images, "mylist", "multi", &arm64, false, &opts).unwrap(), [oci::descriptor_digest(&arm).unwrap()]);
        let added = add(&images, "mylist", "multi", &EntryEdit::default(), true, &opts).unwrap();
        assert_eq!(added.len(), 2);
        let doc = inspect(&images, "mylist", &opts).unwrap();
        let listed: Vec<&str> =
            doc["manifests"].as_array().unwrap().iter().map(|m| m["platform"]["architecture"].as_str().unwrap()).collect();
        assert_eq!(listed, ["amd64", "arm64"], "re-adding replaces, never duplicates: {doc}");
        delete(&images, "mylist").unwrap();
        assert!(images.resolve("mylist").unwrap().is_none());
        assert!(images.resolve("armimg").unwrap().is_some(), "rm removes the list, not its images");
    }
}
