//! Step keys: a pure function of everything a step's result depends on.
//!
//! A key chains the parent's key with everything the step's result depends on: the
//! instruction as written and its words after expansion, heredoc bodies, for RUN
//! the stage's ARG values (proxy ARGs excluded), the kind of network the step gets
//! (host, none or private) and a non-default seccomp
//! profile, for COPY/ADD a hash of
//! what the copy keeps of its sources (see [`super::source_digest::content_digest`]) or the key of the
//! `--from` stage, for ADD the name, digest and date of each URL's download (fetched
//! to compute the key, as BuildKit does, unless `--checksum` names the digest) and
//! each git repository's resolved commit, subdir and `--keep-git-dir`, the layer compression and SOURCE_DATE_EPOCH. Environment, SHELL,
//! USER and WORKDIR are part of the parent's state, hence of its key.
//!
//! The parent's key is the key of its *result*: an entry records the key it hands
//! on, and a step that ran hands on [`result_key`] (its input key with its layers and
//! config, times aside), so a step that re-ran (`--no-cache-filter`, `--no-cache`) never lets a
//! later step or a stage built on it hit an entry made over an older result.
//!
//! [`step_key`] is pure: `step` gathers the inputs first (hashing context sources,
//! fetching ADD's URLs, resolving `--from`) and hands what it fetched to the step,
//! so nothing is fetched twice and the key can be tested without a store.

use crate::oci::Digest;
use crate::store::{ImageState, LayerFormat};

/// Hex key of the chain so far.
pub type Key = String;

/// Everything a step's result depends on beyond the state it starts from, as
/// values (see the module doc for what each holds and why).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepInputs {
    /// The key of the state the step starts from (its parent's result).
    pub parent: Key,
    /// The instruction as written.
    pub text: String,
    /// Its words after expansion, for instructions strata expands itself.
    pub words: Vec<String>,
    /// Heredocs: name, whether the body is expanded, body.
    pub heredocs: Vec<(String, bool, String)>,
    /// `K=V` lines of the ARG values the step sees (RUN's shell, expanded heredocs).
    pub args: String,
    /// RUN: the kind of network it resolved to (`sandbox::network_cache_key`).
    pub network: Option<&'static str>,
    /// RUN under a profile other than Docker's default: the profile's digest.
    pub seccomp: Option<String>,
    /// COPY/ADD: the content digest of context sources, or the `--from` image's key.
    pub sources: String,
    /// ADD's URLs: name, digest and date of each download, in order.
    pub downloads: Vec<Download>,
    /// ADD's git repositories: each resolved commit, in order.
    pub git: Vec<GitKey>,
    /// The layer format: a zstd layer never answers a gzip build, nor an unclamped
    /// one a reproducible one.
    pub format: LayerFormat,
}

/// One fetched ADD URL as the key sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Download {
    pub url: String,
    pub name: String,
    pub digest: Digest,
    /// Last-Modified, as Unix seconds, when the server sent one.
    pub modified: Option<i64>,
    /// The digest is `--checksum`'s and nothing was fetched: the date is unknown
    /// (as in BuildKit, the checksum alone keys the download).
    pub pinned: bool,
}

/// One ADD of a git repository as the key sees it: never the credentials, never
/// the branch name alone (a moved branch is a new commit, an unmoved one a hit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitKey {
    /// The URL without credentials.
    pub remote: String,
    /// The resolved commit (an annotated tag's object when `.git` is kept).
    pub commit: String,
    /// The full ref name, only when `.git` (which records it) is kept.
    pub reference: Option<String>,
    pub subdir: String,
    pub keep_git_dir: bool,
}

/// The key of a step: a hash of its inputs, in a fixed order.
pub fn step_key(i: &StepInputs) -> Key {
    let docs: Vec<String> = i.heredocs.iter().map(|(name, expand, body)| format!("{name}\0{expand}\0{body}")).collect();
    let mut extra = String::new();
    extra.extend(i.network);
    if let Some(profile) = &i.seccomp {
        extra.push_str(&format!("/seccomp={profile}"));
    }
    extra.push_str(&i.sources);
    for d in &i.downloads {
        extra.push_str(&format!("url={}\0{}\0{}\0{:?}\0", d.url, d.name, d.digest, d.modified));
        if d.pinned {
            extra.push_str("pinned\0");
        }
    }
    for g in &i.git {
        extra.push_str(&format!("git={}\0{}\0{:?}\0{}\0{}\0", g.remote, g.commit, g.reference, g.subdir, g.keep_git_dir));
    }
    let format = format!("{:?}/epoch={:?}", i.format.compression, i.format.source_date_epoch);
    key_of(&[&i.parent, &i.text, &i.words.join("\0"), &docs.join("\0"), &i.args, &extra, &format])
}

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

    fn inputs() -> StepInputs {
        StepInputs {
            parent: "p".into(),
            text: "RUN echo $A".into(),
            words: vec!["w".into()],
            heredocs: vec![("EOF".into(), true, "body".into())],
            args: "A=1".into(),
            network: Some("net=Private"),
            seccomp: None,
            sources: "s".into(),
            downloads: vec![Download {
                url: "http://h/f".into(),
                name: "f".into(),
                digest: Digest::of_bytes(b"x"),
                modified: Some(1),
                pinned: false,
            }],
            git: vec![GitKey {
                remote: "git://h/r".into(),
                commit: "c".repeat(40),
                reference: None,
                subdir: String::new(),
                keep_git_dir: false,
            }],
            format: LayerFormat::default(),
        }
    }

    #[test]
    fn step_keys_are_deterministic_and_hold_every_input() {
        let base = step_key(&inputs());
        assert_eq!(base, step_key(&inputs()));
        type Change = (&'static str, fn(&mut StepInputs));
        let changes: Vec<Change> = vec![
            ("parent", |i| i.parent = "q".into()),
            ("text", |i| i.text = "RUN echo $B".into()),
            ("words", |i| i.words.push("x".into())),
            ("heredoc body", |i| i.heredocs[0].2 = "other".into()),
            ("heredoc expansion", |i| i.heredocs[0].1 = false),
            ("args", |i| i.args = "A=2".into()),
            ("network", |i| i.network = Some("net=Host")),
            ("seccomp", |i| i.seccomp = Some("abc".into())),
            ("sources", |i| i.sources = "t".into()),
            ("download digest", |i| i.downloads[0].digest = Digest::of_bytes(b"y")),
            ("download date", |i| i.downloads[0].modified = None),
            ("a pinned download", |i| i.downloads[0].pinned = true),
            ("git remote", |i| i.git[0].remote = "git://h/s".into()),
            ("git commit", |i| i.git[0].commit = "d".repeat(40)),
            ("git ref", |i| i.git[0].reference = Some("refs/heads/main".into())),
            ("git subdir", |i| i.git[0].subdir = "sub".into()),
            ("git keep-git-dir", |i| i.git[0].keep_git_dir = true),
            ("compression", |i| i.format.compression = oci::LayerCompression::Zstd(3)),
            ("epoch", |i| i.format.source_date_epoch = Some(0)),
        ];
        for (what, change) in changes {
            let mut i = inputs();
            change(&mut i);
            assert_ne!(step_key(&i), base, "{what} must be part of the key");
        }
    }

    #[test]
    fn fields_do_not_run_into_each_other() {
        // Each part is length-prefixed, so moving text between parts changes the key.
        let mut a = inputs();
        a.text = "RUN x".into();
        a.args = "y".into();
        let mut b = inputs();
        b.text = "RUN xy".into();
        b.args = String::new();
        assert_ne!(step_key(&a), step_key(&b));
    }
}
