//! The local store that was opened: the image store (OCI layout), the layer dirs and
//! the privilege they were made under, the storage driver, and how owners are kept.
//!
//! What one build or command wants (compression, pulls, progress) is not here: it
//! travels in that command's request. Submodules: images as layer stacks (`image`),
//! an image's layer dirs stacked for a step and a step's upper dir committed as a
//! layer (`layer_stack`), the build cache's entries (`cache`), the blob each step
//! wrote last, for the next one to copy members from (`lineage`), containers' records
//! (`containers`), removing images by name or id (`removal`), an image's top
//! layers merged into one for `build --squash` (`squash`), and garbage collection
//! (`gc`).

mod cache;
mod containers;
mod gc;
mod image;
mod layer_stack;
mod lineage;
mod mount_cache;
mod mount_stubs;
mod removal;
mod squash;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::oci::Store;
use crate::overlay_marks;
use crate::report::Reporter;
use crate::rootfs::LayerDirs;
use crate::rootfs::Warn;
use crate::sandbox::Privilege;
use crate::sandbox::{Driver, DriverChoice};

pub use cache::{Cache, CachedLayers};
pub use containers::{ContainerRecord, ContainerState, Containers};
pub use gc::PruneReport;
pub use image::{ImageState, LayerRef};
pub use layer_stack::{Committed, LayerFormat};
pub use mount_cache::{CacheLease, CacheSharing, MountsPruned};
pub use removal::{remove_image, Removal};

/// The store below one root directory (see ARCHITECTURE.md for its layout).
pub struct LocalStore {
    pub root: PathBuf,
    /// The OCI image layout: blobs, manifests, names.
    pub images: Store,
    pub layers: LayerDirs,
    pub privilege: Privilege,
    /// How step root filesystems are assembled (probed unless forced).
    pub driver: Driver,
    /// Whether `driver` was forced; a forced one never falls back to another.
    pub driver_choice: DriverChoice,
    /// How owners are kept: sealed records in single-id mode, real chown otherwise.
    pub owners: crate::owner::Owners,
}

/// Where the store lives: `--root`, else $STRATA_ROOT (clap fills it), else
/// $XDG_DATA_HOME/strata, else ~/.local/share/strata.
pub fn default_root() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("strata"));
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).context("neither --root, STRATA_ROOT, XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/strata"))
}

impl LocalStore {
    /// Opens the image store alone: enough for commands that never touch layer dirs.
    /// Temp files of writers that died are removed (their names carry the pid).
    /// Warnings go to the command's `report`.
    pub fn open_images(root: &Path, report: &Reporter) -> Result<Store> {
        let store = Self::open_images_as_found(root, report)?;
        // Best effort: a leftover that will not go is no reason to refuse the store.
        if let Err(e) = store.remove_stale_temps() {
            report.warn(&format!("cleaning up after dead writers in {}: {e}", store.root().display()));
        }
        Ok(store)
    }

    /// Opens the image store and leaves dead writers' temp files for `fsck` to report.
    pub fn open_images_as_found(root: &Path, report: &Reporter) -> Result<Store> {
        secure_root(root, report)?;
        Store::open(root.join("oci")).with_context(|| format!("opening image store {}", root.join("oci").display()))
    }

    /// Opens everything; the caller must already be inside strata's namespace.
    /// `driver` forces a storage driver; None probes the best one the host allows.
    /// Warnings, now and from unpacking layers later, go to the command's `report`.
    pub fn open(root: &Path, privilege: Privilege, driver: Option<Driver>, report: &Reporter) -> Result<LocalStore> {
        let images = Self::open_images(root, report)?;
        let (mapping, opaque) = match &privilege {
            Privilege::RealRoot => ("host ids (real root)".to_string(), overlay_marks::TRUSTED_OPAQUE),
            Privilege::Namespaced(m) => (m.to_string(), overlay_marks::USER_OPAQUE),
            // trusted.* needs CAP_SYS_ADMIN, which setup C lacks even as real root.
            Privilege::Chroot(m) => (format!("{m} without namespaces"), overlay_marks::USER_OPAQUE),
        };
        let to = report.clone();
        let mut layers = LayerDirs::open(root, &mapping, opaque, Warn::new(move |w| to.warn(w)))?;
        let owners = match &privilege {
            Privilege::Namespaced(m) if m.is_single_id() => {
                let path = root.join(crate::owner::KEY_FILE);
                let key =
                    crate::owner::OwnerKey::load_or_create(&path).with_context(|| format!("opening the owner key {}", path.display()))?;
                crate::owner::Owners::Recorded(key)
            }
            _ => crate::owner::Owners::Real,
        };
        layers.set_owners(owners.clone());
        let (driver, driver_choice) = match driver {
            Some(d) => (d, DriverChoice::Forced),
            // Nothing can be mounted: the copying driver is the only one.
            None if matches!(privilege, Privilege::Chroot(_)) => (Driver::Vfs, DriverChoice::Forced),
            None => {
                let trial = layers.scratch()?;
                (crate::sandbox::probe_driver(trial.path(), privilege.is_namespaced()), DriverChoice::Probed)
            }
        };
        Ok(LocalStore { root: root.to_path_buf(), images, layers, privilege, driver, driver_choice, owners })
    }

    /// Held (shared) by every process that writes blobs or uses layer dirs, and
    /// (exclusive) by prune, so garbage collection never removes what a running build
    /// has written but not yet tagged.
    pub fn lock(&self, exclusive: bool) -> Result<nix::fcntl::Flock<fs::File>> {
        lock_root(&self.root, exclusive)
    }

    /// True when only one id is mapped: chown in RUN is then served by pid 1 and
    /// other owners are recorded in xattrs.
    pub fn single_id(&self) -> bool {
        matches!(&self.privilege, Privilege::Namespaced(m) if m.is_single_id())
    }
}

/// strata's own dirs below the store root. Each is private: container root is the
/// user on the host, so a setuid file of any image is a setuid file of the user in
/// a layer dir or an upper dir, and no other account may reach it.
const PRIVATE_DIRS: [&str; 6] = ["oci", "layers", "tmp", "init", "containers", "cache"];

/// Creates the store root 0700 when it is missing, and creates or tightens strata's
/// own subdirs to 0700 on every open (a store made by an older strata was 0755).
/// An existing root keeps its mode, as podman keeps an existing `--root`: it may be
/// a directory the user chose to share; the private subdirs protect the content.
pub fn secure_root(root: &Path, report: &Reporter) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let private = |dir: &Path| -> Result<()> {
        match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() && m.permissions().mode() & 0o077 == 0 => Ok(()),
            Ok(m) if m.is_dir() => fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make {} private (mode 0700)", dir.display())),
            Ok(_) => bail!("{} is not a directory", dir.display()),
            Err(_) => {
                fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
                // The umask may have taken bits away, never added any: set it exactly.
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).with_context(|| format!("making {} private", dir.display()))
            }
        }
    };
    if fs::symlink_metadata(root).is_err() {
        private(root)?;
    }
    for sub in PRIVATE_DIRS {
        // Another user's store, read by image commands, cannot be changed: say so, and
        // let whatever needs the dir fail on its own.
        if let Err(e) = private(&root.join(sub)) {
            report.warn(&format!("{e:#}"));
        }
    }
    Ok(())
}

/// Takes `store.lock` of the store at `root` (see [`LocalStore::lock`]); image
/// commands that never enter the namespace take it shared too, so they never read a
/// store that prune is halfway through.
pub fn lock_root(root: &Path, exclusive: bool) -> Result<nix::fcntl::Flock<fs::File>> {
    let path = root.join("store.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let arg = if exclusive { nix::fcntl::FlockArg::LockExclusive } else { nix::fcntl::FlockArg::LockShared };
    nix::fcntl::Flock::lock(file, arg).map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", path.display()))
}
