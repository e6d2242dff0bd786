//! Image indexes in the store: one name for several platforms' manifests (a
//! multi-platform build, a pulled or imported manifest list).
//!
//! An index is a blob like a manifest, tagged the same way (`Store::tag_all`): its
//! index.json entry has the index's media type. The platform's manifests are not
//! entries of index.json of their own; the index keeps them alive (`fsck`'s walk,
//! and so `prune`, follows indexes). Every reader that wants one image asks
//! [`Store::select_manifest`] with the platform it wants, so a tag that names an
//! index and one that names a manifest are used alike.

use oci_spec::image::{Arch, Descriptor, ImageIndex, MediaType, Os};

use super::image::{descriptor_digest, platform_of, MEDIA_TYPE_INDEX};
use super::store::{is_index, is_manifest};
use super::{OciError, Result, Store};
use crate::platform::Platform;

/// One manifest of an index and the platform its descriptor names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformManifest {
    pub platform: Platform,
    pub manifest: Descriptor,
}

/// `platform` as an index entry's `platform` field.
pub fn oci_platform(platform: &Platform) -> oci_spec::image::Platform {
    let mut p = oci_spec::image::Platform::default();
    p.set_os(Os::from(platform.os.as_str()));
    p.set_architecture(Arch::from(platform.architecture.as_str()));
    p.set_variant(platform.variant.clone());
    p
}

/// Whether `desc` names an image index (OCI's or Docker's manifest list).
pub fn is_index_descriptor(desc: &Descriptor) -> bool {
    is_index(desc.media_type())
}

impl Store {
    /// Stores an OCI image index over `entries`, each descriptor carrying its
    /// platform, in the order given; returns its descriptor (ready for `tag_all`).
    pub fn put_index(&self, entries: &[PlatformManifest]) -> Result<Descriptor> {
        let manifests = entries
            .iter()
            .map(|e| {
                let mut d = Descriptor::new(e.manifest.media_type().clone(), e.manifest.size(), e.manifest.digest().clone());
                d.set_platform(Some(oci_platform(&e.platform)));
                d
            })
            .collect();
        let mut index = ImageIndex::default();
        index.set_media_type(Some(MediaType::ImageIndex));
        index.set_manifests(manifests);
        self.put_json(MEDIA_TYPE_INDEX, &index)
    }

    /// Reads an image index blob.
    pub fn read_image_index(&self, digest: &super::Digest) -> Result<ImageIndex> {
        self.read_json(digest)
    }

    /// The manifests an index lists with their platforms, in its order; entries
    /// without a platform are left out (nothing could choose them).
    pub fn index_manifests(&self, index: &Descriptor) -> Result<Vec<PlatformManifest>> {
        let index = self.read_image_index(&descriptor_digest(index)?)?;
        Ok(index.manifests().iter().filter_map(|d| Some(PlatformManifest { platform: platform_of(d)?, manifest: d.clone() })).collect())
    }

    /// The one manifest `desc` stands for on `platform` (default: the host's). A
    /// manifest is itself, whatever its platform (its config says which; callers
    /// that must not run it elsewhere check that); an index gives the first entry
    /// that matches, or an error listing the platforms it has.
    pub fn select_manifest(&self, desc: &Descriptor, platform: Option<&Platform>) -> Result<Descriptor> {
        if !is_index(desc.media_type()) {
            return Ok(desc.clone());
        }
        let wanted = platform.cloned().unwrap_or_else(Platform::host);
        let digest = descriptor_digest(desc)?;
        let entries = self.index_manifests(desc)?;
        match entries.iter().find(|e| wanted.matches(&e.platform) && is_manifest(e.manifest.media_type())) {
            Some(e) => Ok(e.manifest.clone()),
            None => Err(OciError::NoPlatformMatch {
                digest,
                wanted: wanted.to_string(),
                available: entries.iter().map(|e| e.platform.to_string()).collect(),
            }),
        }
    }

    /// [`resolve`](Store::resolve), then [`select_manifest`](Store::select_manifest):
    /// the manifest of `reference` for `platform`.
    pub fn resolve_for(&self, reference: &str, platform: Option<&Platform>) -> Result<Option<Descriptor>> {
        match self.resolve(reference)? {
            Some(d) => self.select_manifest(&d, platform).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{ImageConfig, ImageName};

    fn image_for(store: &Store, arch: &str) -> Descriptor {
        let mut config = ImageConfig::for_host();
        config.architecture = arch.to_string();
        store.put_image(&config, &[]).unwrap()
    }

    #[test]
    fn an_index_is_tagged_and_resolved_per_platform() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (amd, arm) = (image_for(&store, "amd64"), image_for(&store, "arm64"));
        let entries = [
            PlatformManifest { platform: Platform::parse("linux/amd64").unwrap(), manifest: amd.clone() },
            PlatformManifest { platform: Platform::parse("linux/arm64").unwrap(), manifest: arm.clone() },
        ];
        let index = store.put_index(&entries).unwrap();
        assert!(is_index_descriptor(&index));
        store.tag_all(&[ImageName::parse("multi").unwrap()], &index).unwrap();
        let listed: Vec<_> =
            store.index_manifests(&index).unwrap().into_iter().map(|e| (e.platform, e.manifest.digest().clone())).collect();
        let given: Vec<_> = entries.iter().map(|e| (e.platform.clone(), e.manifest.digest().clone())).collect();
        assert_eq!(listed, given);
        let arm64 = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(store.resolve_for("multi", Some(&arm64)).unwrap().unwrap().digest(), arm.digest());
        let amd64 = Platform::parse("x86_64").unwrap();
        assert_eq!(store.resolve_for("multi", Some(&amd64)).unwrap().unwrap().digest(), amd.digest());
        let err = store.resolve_for("multi", Some(&Platform::parse("linux/s390x").unwrap())).unwrap_err().to_string();
        assert!(err.contains("linux/s390x") && err.contains("linux/amd64, linux/arm64"), "{err}");
        // A manifest is itself for any platform asked.
        store.tag_all(&[ImageName::parse("one").unwrap()], &amd).unwrap();
        assert_eq!(store.resolve_for("one", Some(&arm64)).unwrap().unwrap().digest(), amd.digest());
        // What the index holds stays reachable though only the index is named.
        let reach = store.reachable().unwrap();
        assert!(reach.blobs.contains(&descriptor_digest(&arm).unwrap()));
    }
}
