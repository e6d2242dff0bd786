//! The build cache in a registry (`--cache-from REPO`, `--cache-to REPO`), so CI
//! runners with empty stores reuse what another runner built.
//!
//! As buildah does it: every step's result is an ordinary image in the cache
//! repository, tagged with the step's cache key (the same key the local cache files
//! it under, see `step_key`). Keys hash content only (instruction text, expanded words,
//! context content, the parent's result), never a path or a store id, so two runners
//! with the same base and context compute the same keys. A lookup is one manifest
//! GET, made only when the local cache misses; a hit pulls only the blobs the store
//! lacks, and is then recorded in the local cache too. The key a hit hands on is recomputed from what was pulled
//! (`step_key::result_key`), never taken from the registry.
//!
//! Entries are exported after the build succeeded, every step's (hits included, but
//! not those the same repository answered), so a cache repository always holds a
//! whole chain; blobs the registry has are skipped once per build, not once per
//! entry. With `ignore-error=true` a failed export is a warning.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use super::step_key::{self, Key};
use crate::oci::{Digest, ImageName};
use crate::registry::{self, Client, RegistryError};
use crate::report::Reporter;
use crate::store::{ImageState, LocalStore};

/// A cache repository as `--cache-from`/`--cache-to` named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheRepo {
    pub name: ImageName,
    /// BuildKit's `ignore-error=true`: a failed export is a warning, not a failed build.
    pub ignore_error: bool,
}

/// One cache repository and a client for its registry.
struct Repo {
    name: ImageName,
    ignore_error: bool,
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
    /// Keys answered by a `--cache-from` repository, with it: exporting them back to
    /// the same repository would only rewrite what is there.
    fetched: Mutex<HashSet<(Key, ImageName)>>,
}

/// Parses `REPO` or BuildKit's `type=registry,ref=REPO[,mode=max][,ignore-error=true]`
/// into a repository name without a tag: the entries are tagged with their keys.
pub fn parse_repo(spec: &str) -> Result<CacheRepo> {
    let mut ignore_error = false;
    let reference = if spec.contains('=') {
        let mut reference = None;
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("type", "registry")) => {}
                Some(("type", other)) => bail!("cache {spec:?}: type={other} is not supported (only type=registry)"),
                Some(("ref", r)) => reference = Some(r),
                Some(("ignore-error", v)) => {
                    ignore_error = v.parse().with_context(|| format!("cache {spec:?}: ignore-error takes true or false"))?;
                }
                // mode, compression and the like: every entry is kept (BuildKit's
                // mode=max) and layers go up as stored.
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
    Ok(CacheRepo { name, ignore_error })
}

impl RemoteCache {
    /// Connects to the registries of `from` and `to` (credentials as for pull and push).
    pub fn new(tls: &crate::registry::TlsOptions, from: &[CacheRepo], to: &[CacheRepo]) -> Result<Option<RemoteCache>> {
        if from.is_empty() && to.is_empty() {
            return Ok(None);
        }
        let connect = |repos: &[CacheRepo]| -> Result<Vec<Repo>> {
            repos
                .iter()
                .map(|repo| {
                    Ok(Repo {
                        name: repo.name.clone(),
                        ignore_error: repo.ignore_error,
                        client: registry::connect(repo.name.domain(), tls)?,
                        unreachable: AtomicBool::new(false),
                    })
                })
                .collect()
        };
        Ok(Some(RemoteCache {
            from: connect(from)?,
            to: connect(to)?,
            results: Mutex::new(Vec::new()),
            fetched: Mutex::new(HashSet::new()),
        }))
    }

    /// The result of step `key` from the first `--cache-from` repository that has it,
    /// with its blobs now in the store. A repository that cannot be read is a miss
    /// with a warning: a cache only ever saves work.
    pub fn fetch(&self, store: &LocalStore, key: &str, report: &Reporter) -> Option<ImageState> {
        for repo in self.from.iter().filter(|r| !r.unreachable.load(Ordering::Relaxed)) {
            let Ok(entry) = repo.name.with_tag(key) else { continue };
            let quiet = |_: &str| {};
            match registry::pull(&store.images, &repo.client, &entry, &quiet) {
                Ok(manifest) => match store.load_image(&manifest) {
                    Ok(mut state) => {
                        state.cache_key = step_key::result_key(key, &state);
                        self.fetched.lock().expect("remote cache lock").insert((key.to_string(), repo.name.clone()));
                        return Some(state);
                    }
                    Err(e) => report.warn(&format!("cache entry {entry}: {e:#}")),
                },
                // No entry for this key: the one answer a cache gives most.
                Err(RegistryError::Status { status: 404, what, .. }) if what.starts_with("manifest") => {}
                // An entry whose blob is gone (the registry collected it): a miss,
                // but worth saying; the next entries may be whole.
                Err(e @ RegistryError::Status { status: 404, .. }) => {
                    report.warn(&format!("cache entry {entry}: {}", registry::describe(&e)))
                }
                Err(e) => {
                    report.warn(&format!(
                        "cache from {}: {} (not asked again in this build)",
                        repo.name.repository(),
                        registry::describe(&e)
                    ));
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
    pub fn export(&self, store: &LocalStore, report: &Reporter) -> Result<()> {
        let results = self.results.lock().expect("remote cache lock");
        let fetched = self.fetched.lock().expect("remote cache lock");
        for repo in &self.to {
            let fresh: Vec<&(Key, ImageState)> =
                results.iter().filter(|(k, _)| !fetched.contains(&(k.clone(), repo.name.clone()))).collect();
            match self.export_to(store, repo, &fresh) {
                Ok(uploaded) => report.line(&format!(
                    "exported {} cache entries to {} ({uploaded} blobs uploaded)",
                    fresh.len(),
                    repo.name.repository()
                )),
                Err(e) if repo.ignore_error => report.warn(&format!("{e:#} (ignore-error=true: the build goes on)")),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Pushes `entries` to one repository; returns how many blobs went up.
    fn export_to(&self, store: &LocalStore, repo: &Repo, entries: &[&(Key, ImageState)]) -> Result<usize> {
        let mut known: HashSet<Digest> = HashSet::new();
        let mut uploaded = 0;
        for (key, state) in entries {
            let manifest = store.save_image(state)?;
            let dest = repo.name.with_tag(key)?;
            let quiet = |_: &str| {};
            let pushed = registry::push_known(&store.images, &repo.client, &manifest, &dest, &mut known, &quiet)
                .with_context(|| format!("exporting the build cache to {}", repo.name.repository()))?;
            uploaded += pushed.uploaded;
        }
        Ok(uploaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_repositories_parse_in_both_spellings() {
        let plain = parse_repo("127.0.0.1:5000/ci/cache").unwrap();
        assert_eq!((plain.name.repository().as_str(), plain.ignore_error), ("127.0.0.1:5000/ci/cache", false));
        let buildkit = parse_repo("type=registry,ref=quay.io/me/cache,mode=max,ignore-error=true").unwrap();
        assert_eq!((buildkit.name.repository().as_str(), buildkit.ignore_error), ("quay.io/me/cache", true));
        assert_eq!(parse_repo("docker://127.0.0.1:5000/c").unwrap().name.repository(), "127.0.0.1:5000/c");
        for bad in [
            "127.0.0.1:5000/c:tag",
            "quay.io/c@sha256:0000",
            "cache",
            "type=local,dest=x",
            "type=registry",
            "localhost/c",
            "type=registry,ref=quay.io/c,ignore-error=maybe",
        ] {
            assert!(parse_repo(bad).is_err(), "{bad} should be refused");
        }
    }
}
