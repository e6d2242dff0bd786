//! FROM and `--from` when they name no stage: `scratch`, or an image the transport
//! finds (imported or pulled as the build's pull policy says), keyed by its content.

use anyhow::Result;

use super::step_key;
use crate::store::{ImageState, LocalStore};
use crate::transport::{self, RegistryOptions};

/// The image a FROM or `--from` reference names, with its build-cache key.
pub fn resolve(store: &LocalStore, reference: &str, registry: &RegistryOptions) -> Result<ImageState> {
    if reference.eq_ignore_ascii_case("scratch") {
        let mut state = ImageState::scratch();
        state.cache_key = step_key::key_of(&["scratch"]);
        return Ok(state);
    }
    let manifest = transport::find_image(store, reference, registry)?;
    let mut state = store.load_image(&manifest)?;
    state.cache_key = step_key::base_key(&state);
    Ok(state)
}
