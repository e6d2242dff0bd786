//! Step keys: a pure function of everything a step's result depends on.
//!
//! A key chains the parent's key with everything the step's result depends on: the
//! instruction as written and its words after expansion, heredoc bodies, for RUN
//! the stage's ARG values (proxy ARGs excluded), the kind of network the step gets
//! (host, none or private) and a non-default seccomp
//! profile, for COPY/ADD a hash of
//! what the copy keeps of its sources (see [`super::source_digest::content_digest`]) or the key of the
//! `--from` stage, for ADD the name, digest and date of each URL's download (fetched
//! to compute the key, as BuildKit does), the layer compression and SOURCE_DATE_EPOCH. Environment, SHELL,
//! USER and WORKDIR are part of the parent's state, hence of its key.
//!
//! The parent's key is the key of its *result*: an entry records the key it hands
//! on, and a step that ran hands on [`result_key`] (its input key with its layers and
//! config, times aside), so a step that re-ran (`--no-cache-filter`, `--no-cache`) never lets a
//! later step or a stage built on it hit an entry made over an older result.
//!
//! Look-up is one file read (`cache/<key>.json`), never a scan of images; an entry
//! whose blobs are gone is a miss. Entries and the memo are written temp -> fsync ->
//! rename, so a crash leaves none half-written.

use crate::oci::Digest;
use crate::store::ImageState;

/// Hex key of the chain so far.
pub type Key = String;

/// Hashes text into a key.
pub fn key_of(parts: &[&str]) -> Key {
    let mut text = String::new();
    for p in parts {
        text.push_str(&p.len().to_string());
        text.push(':');
        text.push_str(p);
        text.push('\n');
    }
    Digest::of_bytes(text.as_bytes()).hex().to_string()
}

/// The key a step that ran hands on: its input key and what it produced, the
/// config's timestamps left out. A re-run that produced the same layers and config
/// (a metadata step under `--no-cache`, a COPY of unchanged files) then keeps the
/// entries after it valid; anything else it produced gives a new key.
pub fn result_key(input: &str, state: &ImageState) -> Key {
    let layers: Vec<String> = state.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let mut config = serde_json::to_value(&state.config).unwrap_or_default();
    // `retain`, not `remove`: with serde_json's preserve_order, remove swaps the
    // last field into the hole and the text would depend on whether one was there.
    if let Some(obj) = config.as_object_mut() {
        // rootfs is left out too: the layers above cover it, and a state in the
        // middle of a stage does not keep it up to date while one loaded from a
        // registry cache does.
        obj.retain(|k, _| k != "created" && k != "rootfs");
        for entry in obj.get_mut("history").and_then(|h| h.as_array_mut()).into_iter().flatten() {
            if let Some(e) = entry.as_object_mut() {
                e.retain(|k, _| k != "created");
            }
        }
    }
    key_of(&["ran", input, &layers.join(","), &config.to_string()])
}

/// The key of a base image: its layers and config, as stored.
pub fn base_key(image: &ImageState) -> Key {
    let layers: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let config = serde_json::to_string(&image.config).unwrap_or_default();
    key_of(&["base", &layers.join(","), &config])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci;

    #[test]
    fn result_keys_name_what_a_step_produced() {
        let mut state = ImageState::scratch();
        let a = result_key("k", &state);
        assert_eq!(a, result_key("k", &state), "deterministic");
        state.config.history.push(oci::History { created: Some("2024-01-01T00:00:00Z".into()), ..Default::default() });
        let b = result_key("k", &state);
        assert_ne!(a, b, "another result, another key");
        state.config.history[0].created = Some("2025-01-01T00:00:00Z".into());
        state.config.set_created(chrono::Utc::now());
        assert_eq!(b, result_key("k", &state), "times are not part of a result");
        assert_ne!(a, result_key("j", &state));
    }
}
