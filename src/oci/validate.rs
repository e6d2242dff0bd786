//! Checks an imported image whole before anything names it: `strata load`, `oci:`,
//! `oci-archive:` FROM. Blob digests are checked as blobs are copied in; this adds
//! what would otherwise fail on first use, long after the tag was written: media
//! types strata can read, a config that parses and lists one diff id per layer, and
//! layers that are tar streams hashing to those diff ids with no member leaving the
//! root.

use std::io::{self, BufReader, Read};
use std::path::Component;

use oci_spec::image::ImageManifest;

use super::image::{descriptor_digest, layer_decoder, MEDIA_TYPE_CONFIG, MEDIA_TYPE_DOCKER_CONFIG};
use super::{Digest, HashingReader, OciError, Result, Store};

/// Validates the stored image whose manifest is `manifest` (digest `digest`).
pub(super) fn check_image(store: &Store, digest: &Digest, manifest: &ImageManifest) -> Result<()> {
    let bad = |reason: String| OciError::InvalidImage { manifest: digest.clone(), reason };
    let config_digest = descriptor_digest(manifest.config())?;
    let config_type = manifest.config().media_type().to_string();
    if config_type != MEDIA_TYPE_CONFIG && config_type != MEDIA_TYPE_DOCKER_CONFIG {
        return Err(bad(format!("config {config_digest} has media type {config_type}, not an image config")));
    }
    let config = store.read_config(&config_digest).map_err(|e| bad(format!("config {config_digest}: {}", chain(&e))))?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers().len() {
        return Err(bad(format!(
            "the manifest has {} layers but config {config_digest} lists {} diff ids",
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let blob = descriptor_digest(layer)?;
        let reader = BufReader::with_capacity(1 << 20, store.open_blob(&blob)?);
        let decoder = layer_decoder(layer.media_type().as_ref(), &blob, reader)?;
        let found = walk_layer(decoder).map_err(|reason| bad(format!("layer {blob}: {reason}")))?;
        if &found != diff_id.digest() {
            return Err(bad(format!("layer {blob} unpacks to content {found}, but the config's diff id is {}", diff_id.digest())));
        }
    }
    Ok(())
}

/// Reads a layer's tar stream once: every header parses, no member name climbs out
/// of the root; returns the digest of the uncompressed stream (the diff id).
fn walk_layer(decoder: impl Read) -> std::result::Result<Digest, String> {
    let mut hashing = HashingReader::new(decoder);
    {
        let mut tar = tar::Archive::new(&mut hashing);
        for entry in tar.entries().map_err(|e| format!("not a tar stream: {e}"))? {
            let entry = entry.map_err(|e| format!("not a tar stream: {e}"))?;
            let path = entry.path().map_err(|e| format!("unreadable member name: {e}"))?;
            let shown = || path.display().to_string();
            if path.components().any(|c| c == Component::ParentDir) {
                return Err(format!("member {:?} leaves the layer root", shown()));
            }
            // umoci's CVE-2021-29136: `.` as a symlink would redirect later members.
            let names_root = path.components().all(|c| matches!(c, Component::CurDir | Component::RootDir));
            let kind = entry.header().entry_type();
            if names_root && !matches!(kind, tar::EntryType::Directory | tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
                return Err(format!("member {:?} names the layer root but is a {kind:?}, not a directory", shown()));
            }
        }
    }
    // The tar crate stops at the end-of-archive blocks; the diff id covers the rest.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| format!("read: {e}"))?;
    Ok(hashing.finish().1)
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!(": {s}"));
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::image::{descriptor, MEDIA_TYPE_LAYER_TAR};
    use crate::oci::layer_writer::tiny_image;
    use crate::oci::{DiffId, ImageConfig};

    fn manifest_of(store: &Store, d: &oci_spec::image::Descriptor) -> (Digest, ImageManifest) {
        let digest = descriptor_digest(d).unwrap();
        (digest.clone(), store.read_manifest(&digest).unwrap())
    }

    /// An image of one plain-tar layer `tar` whose config claims `diff_id`.
    fn image_with(store: &Store, tar: &[u8], media_type: &str, diff_id: Digest) -> (Digest, ImageManifest) {
        let blob = store.put_blob(tar).unwrap();
        let mut config = ImageConfig::for_host();
        config.rootfs.diff_ids.push(DiffId::new(diff_id));
        let m = store.put_image(&config, &[descriptor(media_type, &blob.digest, blob.size)]).unwrap();
        manifest_of(store, &m)
    }

    fn tar_with(name: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.push(b'x');
        out.extend(std::iter::repeat_n(0u8, 511 + 1024));
        out
    }

    #[test]
    fn a_sound_image_passes() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let (m, _) = tiny_image(&store, b"hi");
        let (digest, manifest) = manifest_of(&store, &m);
        check_image(&store, &digest, &manifest).unwrap();
    }

    #[test]
    fn bad_media_types_diff_ids_and_paths_are_named() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let good = tar_with(b"ok");
        let cases: [(Vec<u8>, &str, Digest, &str); 4] = [
            (good.clone(), "application/x-unknown", Digest::of_bytes(&good), "application/x-unknown"),
            (good.clone(), MEDIA_TYPE_LAYER_TAR, Digest::of_bytes(b"other"), "diff id"),
            (tar_with(b"../escape"), MEDIA_TYPE_LAYER_TAR, Digest::of_bytes(&tar_with(b"../escape")), "../escape"),
            (b"not a tar at all, just text".to_vec(), MEDIA_TYPE_LAYER_TAR, Digest::of_bytes(b"not a tar at all, just text"), "tar"),
        ];
        for (tar, media_type, diff_id, expect) in cases {
            let (digest, manifest) = image_with(&store, &tar, media_type, diff_id);
            let err = check_image(&store, &digest, &manifest).unwrap_err().to_string();
            assert!(err.contains(expect), "expected {expect:?} in: {err}");
        }
    }
}
