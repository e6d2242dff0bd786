//! FROM and `--from` when they name no stage: `scratch`, or an image the transport
//! finds (imported or pulled as the build's pull policy says), keyed by its content.

use anyhow::{bail, Result};

use super::step_key;
use crate::platform::Platform;
use crate::store::{ImageState, LocalStore};
use crate::transport::{self, RegistryOptions};

/// The image a FROM or `--from` reference names for `platform` (its manifest of
/// an index), with its build-cache key. An image for another platform is refused:
/// nothing is ever built on, or run as, the wrong architecture.
pub fn resolve(store: &LocalStore, reference: &str, registry: &RegistryOptions, platform: &Platform) -> Result<ImageState> {
    if reference.eq_ignore_ascii_case("scratch") {
        let mut state = ImageState::scratch_for(platform);
        // The platform is in the config, and so in every key built on it.
        state.cache_key = step_key::key_of(&["scratch", &platform.to_string()]);
        return Ok(state);
    }
    // A registry index gives this platform's manifest, stored under the name.
    let registry = RegistryOptions { platform: Some(platform.clone()), ..registry.clone() };
    let found = transport::find_image(store, reference, &registry)?;
    let manifest = store.images.select_manifest(&found, Some(platform))?;
    let mut state = store.load_image(&manifest)?;
    refuse_other_platform(reference, &state, platform)?;
    state.cache_key = step_key::key_of(&[&step_key::base_key(&state), &platform.to_string()]);
    Ok(state)
}

/// Refuses an image whose config is for another platform than `platform`: nothing
/// is ever built on, or run as, the wrong architecture.
pub(super) fn refuse_other_platform(reference: &str, state: &ImageState, platform: &Platform) -> Result<()> {
    let config = &state.config;
    if !config.architecture.is_empty() {
        let image = Platform::new(&config.os, &config.architecture, config.variant.as_deref());
        if !platform.matches(&image) {
            bail!("base image {reference:?} is for {image}, not {platform}: build or pull it for {platform} (strata never uses an image on another architecture)");
        }
    }
    Ok(())
}
