//! The opened local store: OCI layout, layer dirs and the privilege they were made
//! under, plus the operations that need all three (loading an image's layer stack,
//! committing an upper dir as a layer, saving an image).

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::oci::{self, DiffId, Digest, ImageConfig, Store};
use crate::rootfs::diff::{write_diff, DiffOptions};
use crate::rootfs::layers::LayerDirs;
use crate::rootfs::normalise::normalise_upper;
use crate::rootfs::vfs;
use crate::sandbox::userns::Privilege;
use crate::sandbox::{Driver, DriverChoice, OverlaySpec};

/// Xattrs that mark an opaque dir in an upper dir, whichever driver wrote it.
const OPAQUE_XATTRS: [&str; 3] = ["trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque"];

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
    /// Build-cache key of the chain that produced this state (see `cache`).
    pub cache_key: String,
}

impl ImageState {
    /// What `FROM scratch` starts from: BuildKit's empty image, with the default
    /// PATH and `/` as working directory.
    pub fn scratch() -> ImageState {
        let mut config = ImageConfig::for_host();
        config.config = Some(oci::ContainerConfig {
            env: Some(vec![format!("PATH={}", crate::sandbox::child::DEFAULT_PATH)]),
            working_dir: Some("/".into()),
            ..Default::default()
        });
        ImageState { layers: Vec::new(), config, cache_key: super::cache::key_of(&["scratch"]) }
    }
}

/// The store below one root directory (see ARCHITECTURE.md for its layout).
pub struct Workspace {
    pub root: PathBuf,
    pub store: Store,
    pub layers: LayerDirs,
    pub privilege: Privilege,
    /// How step root filesystems are assembled (probed unless forced).
    pub driver: Driver,
    /// Whether `driver` was forced; a forced one never falls back to another.
    pub driver_choice: DriverChoice,
    /// How new layers are compressed (`build --compression`).
    pub compression: oci::LayerCompression,
    /// When FROM fetches from a registry (`build --pull`) and how (`--tls-verify`,
    /// `--cert-dir`).
    pub pull: PullPolicy,
    /// How pulls for FROM and pushes for `--output docker://` show progress.
    pub transfer_view: crate::report::TransferView,
    pub tls: crate::registry::tls::TlsOptions,
    /// How owners are kept: sealed records in single-id mode, real chown otherwise.
    pub owners: crate::owner::Owners,
}

/// `--pull`: when a base image comes from its registry rather than the local store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Only when the store lacks it (podman's and docker's default).
    #[default]
    Missing,
    /// Every time, so a moved tag is followed.
    Always,
    /// Never: a base the store lacks is an error.
    Never,
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

impl Workspace {
    /// Opens the image store alone: enough for commands that never touch layer dirs.
    /// Temp files of writers that died are removed (their names carry the pid).
    pub fn open_store(root: &Path) -> Result<Store> {
        let store = Self::open_store_as_found(root)?;
        // Best effort: a leftover that will not go is no reason to refuse the store.
        if let Err(e) = store.remove_stale_temps() {
            eprintln!("strata: warning: cleaning up after dead writers in {}: {e}", store.root().display());
        }
        Ok(store)
    }

    /// Opens the image store and leaves dead writers' temp files for `fsck` to report.
    pub fn open_store_as_found(root: &Path) -> Result<Store> {
        secure_root(root)?;
        Store::open(root.join("oci")).with_context(|| format!("opening image store {}", root.join("oci").display()))
    }

    /// Opens everything; the caller must already be inside strata's namespace.
    /// `driver` forces a storage driver; None probes the best one the host allows.
    pub fn open(root: &Path, privilege: Privilege, driver: Option<Driver>) -> Result<Workspace> {
        let store = Self::open_store(root)?;
        let (mapping, opaque) = match &privilege {
            Privilege::RealRoot => ("host ids (real root)".to_string(), "trusted.overlay.opaque"),
            Privilege::Namespaced(m) => (m.to_string(), "user.overlay.opaque"),
        };
        let mut layers = LayerDirs::open(root, &mapping, opaque)?;
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
            None => {
                let trial = layers.scratch()?;
                (crate::sandbox::overlay::probe(trial.path(), privilege.is_namespaced()), DriverChoice::Probed)
            }
        };
        Ok(Workspace {
            root: root.to_path_buf(),
            store,
            layers,
            privilege,
            driver,
            driver_choice,
            compression: oci::LayerCompression::default(),
            pull: PullPolicy::default(),
            transfer_view: crate::report::TransferView::default(),
            tls: crate::registry::tls::TlsOptions::default(),
            owners,
        })
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

    /// Loads the image a manifest descriptor names.
    pub fn load_image(&self, manifest: &oci::Descriptor) -> Result<ImageState> {
        let digest = oci::descriptor_digest(manifest)?;
        let m = self.store.read_manifest(&digest)?;
        let config_digest = oci::descriptor_digest(m.config())?;
        let config = self.store.read_config(&config_digest)?;
        if config.rootfs.diff_ids.len() != m.layers().len() {
            bail!("image {digest}: manifest has {} layers but config lists {} diff ids", m.layers().len(), config.rootfs.diff_ids.len());
        }
        let layers = m
            .layers()
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(blob, diff_id)| LayerRef { diff_id: diff_id.clone(), blob: blob.clone() })
            .collect();
        let mut state = ImageState { layers, config, cache_key: String::new() };
        state.cache_key = super::cache::base_key(&state);
        Ok(state)
    }

    /// Makes sure every layer has a layer dir (unpacking blobs not yet unpacked) and
    /// returns the dirs top-most first, as overlay wants them.
    pub fn layer_dirs(&self, image: &ImageState) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            let hex = layer.diff_id.digest().hex().to_string();
            if !self.layers.has(&hex) {
                let blob = oci::descriptor_digest(&layer.blob)?;
                let media = layer.blob.media_type().to_string();
                let file = self.store.open_blob(&blob)?;
                let reader = std::io::BufReader::with_capacity(1 << 20, file);
                let decoder = oci::layer_decoder(&media, &blob, reader)?;
                let unpacked = self.layers.unpack_layer(decoder, &hex);
                unpacked.with_context(|| format!("unpacking layer {blob}"))?;
            }
            dirs.push(self.layers.dir(&hex));
        }
        dirs.reverse();
        Ok(dirs)
    }

    /// The overlay for a new step over `image`, in a fresh scratch dir.
    pub fn overlay_for(&self, image: &ImageState, scratch: &Path, with_init: bool) -> Result<OverlaySpec> {
        let mut lower = Vec::new();
        if with_init {
            lower.push(self.layers.init_dir());
        }
        lower.extend(self.layer_dirs(image)?);
        let (upper, work, merged) = (scratch.join("upper"), scratch.join("work"), scratch.join("merged"));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        if lower.is_empty() {
            // Overlay needs at least one lower dir; an empty one stands for scratch.
            let empty = scratch.join("empty");
            fs::create_dir_all(&empty).with_context(|| format!("creating {}", empty.display()))?;
            lower.push(empty);
        }
        let spec = OverlaySpec {
            lower,
            upper,
            work,
            merged,
            driver: self.driver,
            choice: self.driver_choice,
            userxattr: self.privilege.is_namespaced(),
        };
        if spec.driver == Driver::Vfs {
            // The copying driver: the step works on a full copy of the stack.
            vfs::flatten(&spec.lower, &spec.merged, &OPAQUE_XATTRS).context("copying the layers (vfs driver)")?;
        }
        Ok(spec)
    }

    /// Copies the image's merged tree into the empty or missing dir `dest` (an OCI
    /// runtime bundle's rootfs), whiteouts applied and owners kept.
    pub fn flatten_image(&self, image: &ImageState, dest: &Path) -> Result<()> {
        let lowers = self.layer_dirs(image)?;
        vfs::flatten(&lowers, dest, &OPAQUE_XATTRS).with_context(|| format!("copying the image's files to {}", dest.display()))?;
        Ok(vfs::forget_dir_inodes(dest)?)
    }

    /// After a step wrote into `spec`: with the vfs driver, computes its upper dir by
    /// comparing the copy with the layers; overlay drivers filled it already.
    pub fn settle(&self, spec: &OverlaySpec) -> Result<()> {
        if spec.driver == Driver::Vfs {
            vfs::diff_trees(&spec.lower, &spec.merged, &spec.upper, &OPAQUE_XATTRS, self.layers.opaque_xattr())
                .context("finding the step's changes (vfs driver)")?;
        }
        Ok(())
    }

    /// Turns a finished step's upper dir into a layer: streams its diff into a blob
    /// (digest and diff id in the same pass), then renames the dir into place. An
    /// upper dir with no changes gives no layer, as BuildKit does.
    pub fn commit_upper(&self, upper: &Path, below: &ImageState) -> Result<Option<LayerRef>> {
        let opts = self.diff_options(below)?;
        let layer = self.write_upper_layer(upper, &opts)?;
        if let Some(layer) = &layer {
            // Any driver may stack this dir later: fuse-overlayfs's markers become overlay's.
            normalise_upper(upper, &opts, self.layers.opaque_xattr())?;
            self.layers.adopt(upper, layer.diff_id.digest().hex())?;
        }
        Ok(layer)
    }

    /// Writes the layer blob of an upper dir over `below` and leaves the dir where it
    /// is (a container keeps its writable layer after `commit`; the layer dir is
    /// unpacked from the blob when an image first needs it). None when unchanged.
    pub fn layer_from_upper(&self, upper: &Path, below: &ImageState) -> Result<Option<LayerRef>> {
        self.write_upper_layer(upper, &self.diff_options(below)?)
    }

    fn diff_options(&self, below: &ImageState) -> Result<DiffOptions> {
        Ok(DiffOptions {
            opaque_xattrs: OPAQUE_XATTRS.iter().map(|s| s.to_string()).collect(),
            clamp_mtime: source_date_epoch(),
            lowers: self.layer_dirs(below)?,
            owners: self.owners.clone(),
        })
    }

    fn write_upper_layer(&self, upper: &Path, opts: &DiffOptions) -> Result<Option<LayerRef>> {
        let empty = fs::read_dir(upper).with_context(|| format!("reading {}", upper.display()))?.next().is_none();
        if empty {
            return Ok(None);
        }
        // A crash test's "after the RUN, before its layer" point.
        Store::abort_if_asked("run");
        let blob = self.store.write_layer_with(self.compression, |w| {
            let mut out = BufWriter::with_capacity(1 << 20, w);
            write_diff(upper, &mut out, opts).map_err(std::io::Error::other)?;
            std::io::Write::flush(&mut out)
        })?;
        Ok(Some(LayerRef { diff_id: blob.diff_id.clone(), blob: blob.descriptor() }))
    }

    /// Writes the image's config and manifest blobs; returns the manifest descriptor.
    pub fn save_image(&self, image: &ImageState) -> Result<oci::Descriptor> {
        let mut config = image.config.clone();
        config.rootfs.diff_ids = image.layers.iter().map(|l| l.diff_id.clone()).collect();
        let layers: Vec<oci::Descriptor> = image.layers.iter().map(|l| l.blob.clone()).collect();
        Ok(self.store.put_image(&config, &layers)?)
    }

    /// The image id (config digest) of a stored manifest.
    pub fn image_id(&self, manifest: &oci::Descriptor) -> Result<Digest> {
        let m = self.store.read_manifest(&oci::descriptor_digest(manifest)?)?;
        Ok(oci::descriptor_digest(m.config())?)
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
pub fn secure_root(root: &Path) -> Result<()> {
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
            eprintln!("strata: warning: {e:#}");
        }
    }
    Ok(())
}

/// Takes `store.lock` of the store at `root` (see [`Workspace::lock`]); image
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

/// SOURCE_DATE_EPOCH, when set, pins timestamps for reproducible images.
pub fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse().ok())
}
