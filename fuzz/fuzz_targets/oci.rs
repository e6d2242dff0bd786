//! OCI/Docker JSON as strata reads it from registries, layouts and archives: the
//! input is tried as an image index, a manifest and an image config. Nothing may
//! panic; every descriptor's digest is validated as the pull does; a config must
//! survive strata's read-modify-write (parse, serialise, parse gives the same
//! config), or building FROM it would silently change the base image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::oci::{descriptor_digest, Descriptor, ImageConfig, ImageIndex, ImageManifest, ImageName, ANNOTATION_REF_NAME};

fn descriptor(d: &Descriptor) {
    if let Ok(digest) = descriptor_digest(d) {
        let _ = digest.short();
        assert_eq!(digest.to_string().parse::<strata::oci::Digest>().ok().as_ref(), Some(&digest), "digest round trip");
    }
    if let Some(name) = d.annotations().as_ref().and_then(|a| a.get(ANNOTATION_REF_NAME)) {
        let _ = ImageName::parse(name);
        let _ = ImageName::parse_tag(name);
    }
    if let Some(p) = d.platform() {
        let _ = (p.os().to_string(), p.architecture().to_string(), p.variant());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = serde_json::from_slice::<ImageIndex>(data) {
        index.manifests().iter().for_each(descriptor);
        let _ = serde_json::to_vec(&index).expect("an index read must serialise");
    }
    if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(data) {
        manifest.layers().iter().chain(std::iter::once(manifest.config())).for_each(descriptor);
        let _ = serde_json::to_vec(&manifest).expect("a manifest read must serialise");
    }
    if let Ok(config) = serde_json::from_slice::<ImageConfig>(data) {
        let _ = config.created_time();
        for diff_id in &config.rootfs.diff_ids {
            let _ = diff_id.to_string();
        }
        let bytes = serde_json::to_vec(&config).expect("a config read must serialise");
        let again: ImageConfig = serde_json::from_slice(&bytes).expect("a serialised config must parse");
        assert_eq!(again, config, "config changed in a round trip: {}", String::from_utf8_lossy(&bytes));
    }
});
