//! The directory of layer dirs, the init layer and per-step scratch space.
//!
//! Layout below the store root:
//! - `layers/<diff-id hex>/`: one layer's diff in overlay form;
//! - `layers/idmap`: the id mapping the layer dirs were written under (their on-disk
//!   owners only mean the right thing under that mapping);
//! - `init/`: mount-point stubs stacked on top during RUN, so /proc, /dev, /sys,
//!   /etc/hosts and /etc/resolv.conf exist without ever entering a step's diff;
//! - `tmp/`: upper, work and merged dirs of running steps (same filesystem as
//!   `layers/`, so an upper dir becomes a layer dir with one rename).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::durable::{self, Mode};
use crate::oci::{remove_if_abandoned, HashingReader, TempDir};

use super::unpack::{unpack, UnpackOptions};
use super::{RootfsError, Warn};

/// Handle on the layer dirs of one store.
#[derive(Clone, Debug)]
pub struct LayerDirs {
    root: PathBuf,
    opaque_xattr: String,
    /// How unpacked files get their owners (single-id mode records them).
    owners: crate::owner::Owners,
    /// The opening command's warnings (what an unpack skips).
    warn: Warn,
}

impl LayerDirs {
    /// Opens (creating) the layer dirs below `root`. `mapping` describes the id mapping
    /// and xattr namespace in force; dirs written under another mapping are refused
    /// with an explanation rather than producing wrong owners or EOVERFLOW later.
    pub fn open(root: &Path, mapping: &str, opaque_xattr: &str, warn: Warn) -> Result<LayerDirs, RootfsError> {
        for d in ["layers", "tmp", "init"] {
            fs::create_dir_all(root.join(d)).map_err(|e| RootfsError::io(root.join(d), e))?;
        }
        let record = root.join("layers").join("idmap");
        match fs::read_to_string(&record) {
            Ok(old) if old.trim() == mapping.trim() => {}
            Ok(old) => {
                return Err(RootfsError::Mapping(format!(
                    "layer dirs in {} were written under id mapping [{}] but strata now runs under [{}]; run strata with the same user and /etc/subuid range, or remove that directory with `strata unshare rm -rf {}`",
                    root.join("layers").display(),
                    old.trim(),
                    mapping.trim(),
                    root.join("layers").display()
                )))
            }
            Err(_) => durable::replace(&record, mapping.as_bytes(), Mode::Umask).map_err(|e| RootfsError::io(&record, e))?,
        }
        let dirs = LayerDirs { root: root.to_path_buf(), opaque_xattr: opaque_xattr.to_string(), owners: crate::owner::Owners::Real, warn };
        dirs.ensure_init()?;
        dirs.remove_abandoned_scratch();
        Ok(dirs)
    }

    /// Unpacks give owners this way from now on (the store sets it once, on open).
    pub fn set_owners(&mut self, owners: crate::owner::Owners) {
        self.owners = owners;
    }

    pub fn opaque_xattr(&self) -> &str {
        &self.opaque_xattr
    }

    /// The layer dir for a diff id given as bare hex.
    pub fn dir(&self, diff_hex: &str) -> PathBuf {
        self.root.join("layers").join(diff_hex)
    }

    pub fn has(&self, diff_hex: &str) -> bool {
        self.dir(diff_hex).is_dir()
    }

    /// The init layer (see module docs).
    pub fn init_dir(&self) -> PathBuf {
        self.root.join("init")
    }

    /// A fresh scratch dir for one step; removed when the handle is dropped unless
    /// its upper dir was adopted. Its lock (see `oci::temps`) tells a live step's dir
    /// from an abandoned one in every pid namespace that shares the store.
    pub fn scratch(&self) -> Result<TempDir, RootfsError> {
        let tmp = self.root.join("tmp");
        TempDir::new_in(&tmp, &format!("step-{}-", std::process::id())).map_err(|e| RootfsError::io(&tmp, e))
    }

    /// Removes scratch dirs of builds that died without cleaning up (Ctrl-C, a kill):
    /// those whose lock nobody holds. The owner's pid in the name spares a dir of a
    /// process running here without a look at the lock (a strata from before the lock).
    fn remove_abandoned_scratch(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("step-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = remove_if_abandoned(&e.path());
            }
        }
    }

    fn ensure_init(&self) -> Result<(), RootfsError> {
        let init = self.init_dir();
        if init.join("etc/resolv.conf").exists() {
            return Ok(());
        }
        for d in ["proc", "sys", "dev", "etc"] {
            fs::create_dir_all(init.join(d)).map_err(|e| RootfsError::io(init.join(d), e))?;
        }
        for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
            fs::write(init.join(f), b"").map_err(|e| RootfsError::io(init.join(f), e))?;
        }
        Ok(())
    }

    /// Unpacks a layer tar stream (already decompressed) into its layer dir, checking
    /// that its content hashes to `diff_hex`. Concurrent unpackers of the same layer
    /// both succeed: the loser of the final rename discards its copy.
    pub fn unpack_layer<R: Read>(&self, input: R, diff_hex: &str) -> Result<PathBuf, RootfsError> {
        let dest = self.dir(diff_hex);
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = self.scratch()?;
        let target = tmp.path().join("diff");
        fs::create_dir(&target).map_err(|e| RootfsError::io(&target, e))?;
        let mut hashing = HashingReader::new(input);
        let opts = UnpackOptions { opaque_xattr: self.opaque_xattr.clone(), owners: self.owners.clone(), warn: self.warn.clone() };
        unpack(&mut hashing, &target, &opts)?;
        // Drain trailing padding so the hash covers the whole stream.
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| RootfsError::io(&target, e))?;
        let found = hashing.finish().1.hex().to_string();
        if found != diff_hex {
            return Err(RootfsError::DiffIdMismatch { expected: format!("sha256:{diff_hex}"), found: format!("sha256:{found}") });
        }
        self.adopt(&target, diff_hex)
    }

    /// Makes `upper` (a finished step's upper dir) the layer dir of `diff_hex`.
    pub fn adopt(&self, upper: &Path, diff_hex: &str) -> Result<PathBuf, RootfsError> {
        let dest = self.dir(diff_hex);
        match crate::trace::timed(crate::trace::Phase::Rename, || fs::rename(upper, &dest)) {
            Ok(()) => Ok(dest),
            // Same diff already present (another build made it): keep that one.
            Err(_) if dest.is_dir() => Ok(dest),
            Err(e) => Err(RootfsError::io(&dest, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{Flock, FlockArg};

    #[test]
    fn only_unlocked_scratch_dirs_of_writers_gone_from_here_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let dirs = LayerDirs::open(d.path(), "0 1000 1\n", "user.overlay.opaque", Warn::ignore()).unwrap();
        let ours = dirs.scratch().unwrap();
        // pids that do not run here: a build in another pid namespace holds the
        // first dir's lock, the second's writer is gone.
        let held = d.path().join("tmp/step-4999999-held");
        let gone = d.path().join("tmp/step-4999999-gone");
        fs::create_dir(&held).unwrap();
        fs::create_dir(&gone).unwrap();
        let lock = Flock::lock(fs::File::open(&held).unwrap(), FlockArg::LockExclusive).unwrap();
        let again = LayerDirs::open(d.path(), "0 1000 1\n", "user.overlay.opaque", Warn::ignore()).unwrap();
        assert!(ours.path().is_dir() && held.is_dir() && !gone.exists());
        drop(lock);
        drop(again);
        LayerDirs::open(d.path(), "0 1000 1\n", "user.overlay.opaque", Warn::ignore()).unwrap();
        assert!(!held.exists());
    }
}
