//! Images as the engine and containers see them: a stack of layers and a config,
//! loaded from and saved to the image store.

use anyhow::{bail, Result};

use super::LocalStore;
use crate::oci::{self, DiffId, Digest, ImageConfig};

/// One layer of an image: its blob and the content's diff id.
#[derive(Clone, Debug)]
pub struct LayerRef {
    pub diff_id: DiffId,
    pub blob: oci::Descriptor,
}

/// An image being built or run: its layers bottom-first and its config.
#[derive(Clone, Debug)]
pub struct ImageState {
    pub layers: Vec<LayerRef>,
    pub config: ImageConfig,
    /// Build-cache key of the chain that produced this state; the engine sets it
    /// (empty for an image loaded from the store).
    pub cache_key: String,
}

impl ImageState {
    /// What `FROM scratch` starts from: BuildKit's empty image, with the default
    /// PATH and `/` as working directory.
    pub fn scratch() -> ImageState {
        Self::scratch_for(&crate::platform::Platform::host())
    }

    /// [`scratch`](Self::scratch) for `platform`: its config names that platform.
    pub fn scratch_for(platform: &crate::platform::Platform) -> ImageState {
        let mut config = ImageConfig::for_host();
        config.os = platform.os.clone();
        config.architecture = platform.architecture.clone();
        config.variant = platform.variant.clone();
        config.config = Some(oci::ContainerConfig {
            env: Some(vec![format!("PATH={}", crate::sandbox::DEFAULT_PATH)]),
            working_dir: Some("/".into()),
            ..Default::default()
        });
        ImageState { layers: Vec::new(), config, cache_key: String::new() }
    }
}

impl LocalStore {
    /// Loads the image a manifest descriptor names.
    pub fn load_image(&self, manifest: &oci::Descriptor) -> Result<ImageState> {
        let digest = oci::descriptor_digest(manifest)?;
        let m = self.images.read_manifest(&digest)?;
        let config_digest = oci::descriptor_digest(m.config())?;
        let config = self.images.read_config(&config_digest)?;
        if config.rootfs.diff_ids.len() != m.layers().len() {
            bail!("image {digest}: manifest has {} layers but config lists {} diff ids", m.layers().len(), config.rootfs.diff_ids.len());
        }
        let layers = m
            .layers()
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(blob, diff_id)| LayerRef { diff_id: diff_id.clone(), blob: blob.clone() })
            .collect();
        Ok(ImageState { layers, config, cache_key: String::new() })
    }

    /// Writes the image's config and manifest blobs; returns the manifest descriptor.
    pub fn save_image(&self, image: &ImageState) -> Result<oci::Descriptor> {
        self.save_image_annotated(image, &Default::default())
    }

    /// [`save_image`](Self::save_image) with `annotations` in the manifest.
    pub fn save_image_annotated(
        &self,
        image: &ImageState,
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<oci::Descriptor> {
        self.save_image_as(image, annotations, oci::ManifestFormat::Oci)
    }

    /// [`save_image_annotated`](Self::save_image_annotated) with the media types of
    /// `format` (`build --format`). Only this manifest differs between the formats:
    /// the config and layer blobs, and the build cache's entries, are shared.
    pub fn save_image_as(
        &self,
        image: &ImageState,
        annotations: &std::collections::BTreeMap<String, String>,
        format: oci::ManifestFormat,
    ) -> Result<oci::Descriptor> {
        let mut config = image.config.clone();
        config.rootfs.diff_ids = image.layers.iter().map(|l| l.diff_id.clone()).collect();
        let layers: Vec<oci::Descriptor> = image.layers.iter().map(|l| l.blob.clone()).collect();
        Ok(self.images.put_image_as(format, &config, &layers, annotations)?)
    }

    /// The image id (config digest) of a stored manifest.
    pub fn image_id(&self, manifest: &oci::Descriptor) -> Result<Digest> {
        let m = self.images.read_manifest(&oci::descriptor_digest(manifest)?)?;
        Ok(oci::descriptor_digest(m.config())?)
    }
}
