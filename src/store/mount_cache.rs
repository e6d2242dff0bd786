//! Cache mounts (`RUN --mount=type=cache`): directories kept in the store under
//! `mounts/cache/`, one per id, that outlive builds and never become layers.
//!
//! A directory is named by the digest of its id, so no id can name a path: `../../x`
//! and `/etc` are only text (Buildah's CVE-2024-9675 let a cache id leave the cache
//! root). Each has a lock file beside it, held for as long as a step uses it:
//! shared by `sharing=shared` users, exclusive for `locked`, and tried without
//! waiting by `private`, which gets a throwaway directory of its own when another
//! step has the cache. A new directory is made, under a second lock held only
//! that long, beside its final name and renamed into place, so a step never sees
//! one half set up and never waits for another step to make one.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

use super::LocalStore;
use crate::oci::{Digest, TempDir};

/// How concurrent steps share one cache id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    /// Every step uses the same directory at once.
    Shared,
    /// A step waits until no other step uses the directory.
    Locked,
    /// A step uses the directory alone, or a fresh one when it is busy.
    Private,
}

/// A cache directory in use by one step: released when dropped.
pub struct CacheLease {
    pub path: PathBuf,
    _lock: Option<Flock<fs::File>>,
    _private: Option<TempDir>,
}

/// What `prune --mounts` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountsPruned {
    pub caches: usize,
}

fn cache_root(store_root: &Path) -> PathBuf {
    store_root.join("mounts").join("cache")
}

/// The directory of cache `id`: always a child of the cache root.
fn cache_dir(store_root: &Path, id: &str) -> PathBuf {
    cache_root(store_root).join(Digest::of_bytes(id.as_bytes()).hex())
}

impl LocalStore {
    /// The cache directory of `id`, leased as `sharing` says. `init` fills a new
    /// directory (its mode and owner, a seed from another stage) before any step
    /// sees it.
    pub fn cache_mount(&self, id: &str, sharing: CacheSharing, init: &dyn Fn(&Path) -> Result<()>) -> Result<CacheLease> {
        let dir = cache_dir(&self.root, id);
        let root = cache_root(&self.root);
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let use_path = dir.with_extension("lock");
        let file = open_lock(&use_path)?;
        let held = match sharing {
            CacheSharing::Shared => lock(file, FlockArg::LockShared, &use_path)?,
            CacheSharing::Locked => lock(file, FlockArg::LockExclusive, &use_path)?,
            CacheSharing::Private => match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => return self.private_copy(init),
                Err((_, e)) => anyhow::bail!("locking {}: {e}", use_path.display()),
            },
        };
        if !dir.is_dir() {
            // Made under a lock of its own, held only while it is made: waiting on
            // the use lock here would make a `shared` step wait for every step
            // that uses the cache to end.
            let make_path = dir.with_extension("create-lock");
            let _making = lock(open_lock(&make_path)?, FlockArg::LockExclusive, &make_path)?;
            if !dir.is_dir() {
                create(&dir, init).with_context(|| format!("creating the cache mount {id:?} in {}", dir.display()))?;
            }
        }
        Ok(CacheLease { path: dir, _lock: Some(held), _private: None })
    }

    /// A `private` step's own directory while the shared one is busy, gone after it.
    fn private_copy(&self, init: &dyn Fn(&Path) -> Result<()>) -> Result<CacheLease> {
        let scratch = self.layers.scratch()?;
        let dir = scratch.path().join("cache");
        create(&dir, init)?;
        Ok(CacheLease { path: dir, _lock: None, _private: Some(scratch) })
    }

    /// Removes every cache mount, under the store's exclusive lock: no build is
    /// using one (builds hold the lock shared).
    pub fn prune_cache_mounts(&self) -> Result<MountsPruned> {
        let _exclusive = self.lock(true)?;
        self.remove_cache_mounts()
    }

    /// [`Self::prune_cache_mounts`] for a caller that holds the exclusive lock.
    pub(super) fn remove_cache_mounts(&self) -> Result<MountsPruned> {
        let root = cache_root(&self.root);
        let mut pruned = MountsPruned::default();
        let Ok(entries) = fs::read_dir(&root) else { return Ok(pruned) };
        for e in entries.flatten() {
            let path = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
                pruned.caches += usize::from(!path.to_string_lossy().contains(".new-"));
            } else {
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(pruned)
    }
}

fn open_lock(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).with_context(|| format!("opening {}", path.display()))
}

fn lock(file: fs::File, arg: FlockArg, path: &Path) -> Result<Flock<fs::File>> {
    Flock::lock(file, arg).map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", path.display()))
}

/// Makes `dir` through a temporary name beside it, so it appears whole.
fn create(dir: &Path, init: &dyn Fn(&Path) -> Result<()>) -> Result<()> {
    let tmp = dir.with_file_name(format!("{}.new-{}", dir.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    if let Err(e) = init(&tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_name_paths() {
        let root = Path::new("/store");
        for id in ["../../x", "/etc", "a/../../b", "", "..", "x/y"] {
            let dir = cache_dir(root, id);
            assert_eq!(dir.parent(), Some(cache_root(root).as_path()), "{id}");
            assert_eq!(dir.file_name().unwrap().len(), 64, "{id}");
        }
    }

    #[test]
    fn a_new_directory_appears_whole_and_initialised() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let failed = create(&dir, &|d| {
            fs::write(d.join("half"), b"x")?;
            anyhow::bail!("init failed")
        });
        assert!(failed.is_err());
        assert!(!dir.exists(), "a failed init leaves no cache dir behind");
        create(&dir, &|d| Ok(fs::write(d.join("seed"), b"x")?)).unwrap();
        assert!(dir.join("seed").is_file());
    }
}
