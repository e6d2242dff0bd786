//! Removing images from the store by name or id (`rmi`), as docker decides it: a
//! name goes alone; an id takes every name of its image, but only when forced if
//! there are several; and an image a container stands on keeps its last name
//! unless forced.

use anyhow::Result;

use crate::oci::{self, Digest, ImageName, Store};

/// What became of one reference.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// These names went (the reference itself when it was a name, or an id of an
    /// image without names).
    Untagged(Vec<String>),
    /// Nothing was removed: the container named would be left without its image.
    InUse {
        container: String,
    },
    /// Nothing was removed: the id names an image with these several names.
    MultipleNames(Vec<String>),
    NotFound,
}

/// Removes `reference` from `images`. `in_use` lists the image ids containers stand
/// on, with a container's name each (`Containers::images_in_use`); `force` removes
/// an id with several names and an image in use too.
pub fn remove_image(images: &Store, reference: &str, force: bool, in_use: &[(Digest, String)]) -> Result<Removal> {
    if !force {
        if let Some(container) = container_using(images, reference, in_use)? {
            return Ok(Removal::InUse { container });
        }
    }
    if let Ok(name) = ImageName::parse(reference) {
        if images.untag(&name)? {
            return Ok(Removal::Untagged(vec![reference.to_string()]));
        }
    }
    let Some(desc) = images.resolve(reference)? else { return Ok(Removal::NotFound) };
    let names = images.names_of(&oci::descriptor_digest(&desc)?)?;
    if names.len() > 1 && !force {
        return Ok(Removal::MultipleNames(names));
    }
    images.update_index(|index| {
        let kept: Vec<_> = index.manifests().iter().filter(|d| d.digest() != desc.digest()).cloned().collect();
        index.set_manifests(kept);
        Ok(())
    })?;
    Ok(Removal::Untagged(if names.is_empty() { vec![reference.to_string()] } else { names }))
}

/// The container that would be left without its image's last name if `reference`
/// were removed (docker refuses that without -f).
fn container_using(images: &Store, reference: &str, in_use: &[(Digest, String)]) -> Result<Option<String>> {
    if in_use.is_empty() {
        return Ok(None);
    }
    let Some(desc) = images.resolve(reference)? else { return Ok(None) };
    let id = oci::descriptor_digest(images.read_manifest(&oci::descriptor_digest(&desc)?)?.config())?;
    let Some((_, user)) = in_use.iter().find(|(d, _)| d == &id) else { return Ok(None) };
    let by_name = ImageName::parse(reference).ok().filter(|n| images.resolve(&n.to_string()).ok().flatten().is_some());
    let names = images.names_of(&oci::descriptor_digest(&desc)?)?.len();
    Ok((by_name.is_none() || names <= 1).then(|| user.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_several_names_and_images_in_use_need_force() {
        let dir = tempfile::tempdir().unwrap();
        let images = Store::open(dir.path()).unwrap();
        let manifest = images.put_image(&oci::ImageConfig::for_host(), &[]).unwrap();
        let (a, b) = (ImageName::parse("a").unwrap(), ImageName::parse("b").unwrap());
        images.tag(&a, &manifest).unwrap();
        images.tag(&b, &manifest).unwrap();
        let id = oci::descriptor_digest(images.read_manifest(&oci::descriptor_digest(&manifest).unwrap()).unwrap().config()).unwrap();
        let by_id = id.to_string();
        assert!(matches!(remove_image(&images, &by_id, false, &[]).unwrap(), Removal::MultipleNames(n) if n.len() == 2));
        assert_eq!(remove_image(&images, "a", false, &[]).unwrap(), Removal::Untagged(vec!["a".into()]));
        let in_use = [(id.clone(), "box".to_string())];
        assert_eq!(remove_image(&images, "b", false, &in_use).unwrap(), Removal::InUse { container: "box".into() });
        assert_eq!(remove_image(&images, &by_id, true, &in_use).unwrap(), Removal::Untagged(vec![b.to_string()]));
        assert_eq!(remove_image(&images, "b", false, &[]).unwrap(), Removal::NotFound);
    }
}
