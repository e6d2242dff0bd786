//! The build cache in a registry (`--cache-from REPO`, `--cache-to REPO`), so CI
//! runners with empty stores reuse what another runner built.
//!
//! As buildah does it: every step's result is an ordinary image in the cache
//! repository, tagged with the step's cache key (the same key the local cache files
//! it under, see `cache`). Keys hash content only (instruction text, expanded words,
//! context content, the parent's result), never a path or a store id, so two runners
//! with the same base and context compute the same keys. A lookup is one manifest
//! GET; a hit pulls only the blobs the store lacks, and the hit is then recorded in
//! the local cache too. The key a hit hands on is recomputed from what was pulled
//! (`cache::result_key`), never taken from the registry.
//!
//! Entries are exported after the build succeeded, every step's (hits included), so
//! a cache repository always holds a whole chain; blobs the registry has are skipped
//! once per build, not once per entry.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use super::cache::{self, Key};
use super::workspace::{ImageState, Workspace};
use crate::oci::{Digest, ImageName};
use crate::registry::client::Client;
use crate::registry::{self, transfer, RegistryError};
use crate::report::Reporter;

/// One cache repository and a client for its registry.
struct Repo {
    name: ImageName,
    client: Client,
    /// Set once the repository could not be read: later steps do not wait for the
    /// same failure again.
    unreachable: AtomicBool,
}

/// The remote caches of one build.
pub struct RemoteCache {
    from: Vec<Repo>,
    to: Vec<Repo>,
    /// Step key -> result, in build order, for `--cache-to`.
    results: Mutex<Vec<(Key, ImageState)>>,
}

/// Parses `REPO` or BuildKit's `type=registry,ref=REPO[,mode=max]` into a repository
/// name without a tag: the entries are tagged with their keys.
pub fn parse_repo(spec: &str) -> Result<ImageName> {
    let reference = if spec.contains('=') {
        let mut reference = None;
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("type", "registry")) => {}
                Some(("type", other)) => bail!("cache {spec:?}: type={other} is not supported (only type=registry)"),
                Some(("ref", r)) => reference = Some(r),
                // mode, compression, ignore-error and the like: every entry is kept
                // (BuildKit's mode=max) and layers go up as stored.
                Some(_) => {}
                None => bail!("cache {spec:?}: {field:?} is not KEY=VALUE"),
            }
        }
        reference.with_context(|| format!("cache {spec:?}: no ref=REPO"))?
    } else {
        spec
    };
    let reference = reference.strip_prefix("docker://").unwrap_or(reference);
    let last = &reference[reference.rfind('/').map_or(0, |i| i + 1)..];
    if reference.contains('@') || last.contains(':') {
        bail!("cache repository {reference:?} must not have a tag or digest: strata tags its entries with their cache keys");
    }
    if !reference.contains('/') {
        bail!("cache repository {reference:?} names no registry (e.g. 127.0.0.1:5000/cache or quay.io/me/cache)");
    }
    let name = ImageName::parse(reference).with_context(|| format!("cache repository {reference:?}"))?;
    if name.domain() == "localhost" {
        bail!("cache repository {reference:?} names no registry (e.g. 127.0.0.1:5000/cache or quay.io/me/cache)");
    }
    Ok(name)
}

impl RemoteCache {
    /// Connects to the registries of `from` and `to` (credentials as for pull and push).
    pub fn new(ws: &Workspace, from: &[ImageName], to: &[ImageName]) -> Result<Option<RemoteCache>> {
        if from.is_empty() && to.is_empty() {
            return Ok(None);
        }
        let connect = |names: &[ImageName]| -> Result<Vec<Repo>> {
            names
                .iter()
                .map(|name| {
                    Ok(Repo { name: name.clone(), client: registry::connect(name.domain(), &ws.tls)?, unreachable: AtomicBool::new(false) })
                })
                .collect()
        };
        Ok(Some(RemoteCache { from: connect(from)?, to: connect(to)?, results: Mutex::new(Vec::new()) }))
    }

    /// The result of step `key` from the first `--cache-from` repository that has it,
    /// with its blobs now in the store. A repository that cannot be read is a miss
    /// with a warning: a cache only ever saves work.
    pub fn fetch(&self, ws: &Workspace, key: &str, report: &Reporter) -> Option<ImageState> {
        for repo in self.from.iter().filter(|r| !r.unreachable.load(Ordering::Relaxed)) {
            let Ok(entry) = repo.name.with_tag(key) else { continue };
            let quiet = |_: &str| {};
            match transfer::pull(&ws.store, &repo.client, &entry, &quiet) {
                Ok(manifest) => match ws.load_image(&manifest) {
                    Ok(mut state) => {
                        state.cache_key = cache::result_key(key, &state);
                        return Some(state);
                    }
                    Err(e) => report.warn(&format!("cache entry {entry}: {e:#}")),
                },
                Err(RegistryError::Status { status: 404, .. }) => {}
                Err(e) => {
                    report.warn(&format!("cache from {}: {e} (not asked again in this build)", repo.name.repository()));
                    repo.unreachable.store(true, Ordering::Relaxed);
                }
            }
        }
        None
    }

    /// Remembers what step `key` produced, for [`RemoteCache::export`].
    pub fn record(&self, key: &str, state: &ImageState) {
        if self.to.is_empty() {
            return;
        }
        let mut results = self.results.lock().expect("remote cache lock");
        match results.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = state.clone(),
            None => results.push((key.to_string(), state.clone())),
        }
    }

    /// Pushes every recorded result to each `--cache-to` repository as an image
    /// tagged with its key.
    pub fn export(&self, ws: &Workspace, report: &Reporter) -> Result<()> {
        let results = self.results.lock().expect("remote cache lock");
        for repo in &self.to {
            let mut known: HashSet<Digest> = HashSet::new();
            let mut uploaded = 0;
            for (key, state) in results.iter() {
                let manifest = ws.save_image(state)?;
                let dest = repo.name.with_tag(key)?;
                let quiet = |_: &str| {};
                let pushed = transfer::push_known(&ws.store, &repo.client, &manifest, &dest, &mut known, &quiet)
                    .with_context(|| format!("exporting the build cache to {}", repo.name.repository()))?;
                uploaded += pushed.uploaded;
            }
            report.line(&format!("exported {} cache entries to {} ({uploaded} blobs uploaded)", results.len(), repo.name.repository()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_repositories_parse_in_both_spellings() {
        assert_eq!(parse_repo("127.0.0.1:5000/ci/cache").unwrap().repository(), "127.0.0.1:5000/ci/cache");
        assert_eq!(parse_repo("type=registry,ref=quay.io/me/cache,mode=max").unwrap().repository(), "quay.io/me/cache");
        assert_eq!(parse_repo("docker://127.0.0.1:5000/c").unwrap().repository(), "127.0.0.1:5000/c");
        for bad in ["127.0.0.1:5000/c:tag", "quay.io/c@sha256:0000", "cache", "type=local,dest=x", "type=registry", "localhost/c"] {
            assert!(parse_repo(bad).is_err(), "{bad} should be refused");
        }
    }
}
