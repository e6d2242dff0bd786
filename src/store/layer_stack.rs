//! An image's layer dirs stacked for a step (overlay, or a copy with the vfs
//! driver), and a finished step's upper dir turned into a layer blob and dir.

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{ImageState, LayerRef, LocalStore};
use crate::oci;
use crate::overlay_marks::OPAQUE_XATTRS;
use crate::rootfs::{self, normalise_upper, write_diff, DiffOptions, Diffed};
use crate::sandbox::{Driver, OverlaySpec};

/// How new layers are written: one build's or one commit's choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerFormat {
    /// `build --compression` (and its level).
    pub compression: oci::LayerCompression,
    /// SOURCE_DATE_EPOCH: file times above it are clamped to it.
    pub source_date_epoch: Option<u64>,
}

/// A step's upper dir committed as a layer.
pub struct Committed {
    pub layer: LayerRef,
    /// How many of its gzip members were copied from the candidate blob.
    pub members: oci::MemberStats,
    /// The paths it deletes, relative to the upper dir (see `rootfs::Diffed`).
    pub whiteouts: Vec<PathBuf>,
}

impl LocalStore {
    /// Unpacks the layers of the image `reference` names (the host's image of an
    /// index) that have no layer dir yet; an index without one for the host is
    /// left as it is.
    pub fn unpack_image(&self, reference: &str) -> Result<()> {
        let Ok(Some(manifest)) = self.images.resolve_for(reference, None) else { return Ok(()) };
        let image = self.load_image(&manifest)?;
        self.layer_dirs(&image).map(drop)
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
                let file = self.images.open_blob(&blob)?;
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
            quiet: false,
        };
        if spec.driver == Driver::Vfs {
            // The copying driver: the step works on a full copy of the stack.
            rootfs::flatten(&spec.lower, &spec.merged, &OPAQUE_XATTRS).context("copying the layers (vfs driver)")?;
        }
        Ok(spec)
    }

    /// Copies the image's merged tree into the empty or missing dir `dest` (an OCI
    /// runtime bundle's rootfs), whiteouts applied and owners kept.
    pub fn flatten_image(&self, image: &ImageState, dest: &Path) -> Result<()> {
        let lowers = self.layer_dirs(image)?;
        rootfs::flatten(&lowers, dest, &OPAQUE_XATTRS).with_context(|| format!("copying the image's files to {}", dest.display()))?;
        Ok(rootfs::forget_dir_inodes(dest)?)
    }

    /// After a step wrote into `spec`: with the vfs driver, computes its upper dir by
    /// comparing the copy with the layers; overlay drivers filled it already.
    pub fn settle(&self, spec: &OverlaySpec) -> Result<()> {
        if spec.driver == Driver::Vfs {
            rootfs::diff_trees(&spec.lower, &spec.merged, &spec.upper, &OPAQUE_XATTRS, self.layers.opaque_xattr())
                .context("finding the step's changes (vfs driver)")?;
        }
        Ok(())
    }

    /// Turns a finished step's upper dir into a layer: streams its diff into a blob
    /// (digest and diff id in the same pass), then renames the dir into place. An
    /// upper dir with no changes gives no layer, as BuildKit does. The gzip members
    /// `candidate` (a blob the same step wrote before) holds unchanged are copied;
    /// the counts say how many.
    pub fn commit_upper(
        &self,
        upper: &Path,
        below: &ImageState,
        format: LayerFormat,
        candidate: Option<&oci::Digest>,
    ) -> Result<Option<Committed>> {
        let opts = self.diff_options(below, format)?;
        let committed = self.write_upper_layer(upper, &opts, format, candidate)?;
        if let Some(c) = &committed {
            // Any driver may stack this dir later: fuse-overlayfs's markers become overlay's.
            normalise_upper(upper, &opts, self.layers.opaque_xattr())?;
            self.layers.adopt(upper, c.layer.diff_id.digest().hex())?;
        }
        Ok(committed)
    }

    /// Writes the layer blob of an upper dir over `below` and leaves the dir where it
    /// is (a container keeps its writable layer after `commit`; the layer dir is
    /// unpacked from the blob when an image first needs it). None when unchanged.
    pub fn layer_from_upper(&self, upper: &Path, below: &ImageState, format: LayerFormat) -> Result<Option<LayerRef>> {
        Ok(self.write_upper_layer(upper, &self.diff_options(below, format)?, format, None)?.map(|c| c.layer))
    }

    fn diff_options(&self, below: &ImageState, format: LayerFormat) -> Result<DiffOptions> {
        Ok(DiffOptions {
            opaque_xattrs: OPAQUE_XATTRS.iter().map(|s| s.to_string()).collect(),
            clamp_mtime: format.source_date_epoch,
            lowers: self.layer_dirs(below)?,
            owners: self.owners.clone(),
        })
    }

    fn write_upper_layer(
        &self,
        upper: &Path,
        opts: &DiffOptions,
        format: LayerFormat,
        candidate: Option<&oci::Digest>,
    ) -> Result<Option<Committed>> {
        let empty = fs::read_dir(upper).with_context(|| format!("reading {}", upper.display()))?.next().is_none();
        if empty {
            return Ok(None);
        }
        // A crash test's "after the RUN, before its layer" point.
        crate::fault::abort_if_asked("run");
        let mut diffed = Diffed::default();
        let blob = self.images.write_layer_reusing(format.compression, candidate, |w| {
            let mut out = BufWriter::with_capacity(1 << 20, w);
            diffed = write_diff(upper, &mut out, opts).map_err(std::io::Error::other)?;
            std::io::Write::flush(&mut out)
        })?;
        let layer = LayerRef { diff_id: blob.diff_id.clone(), blob: blob.descriptor() };
        Ok(Some(Committed { layer, members: blob.members, whiteouts: diffed.whiteouts }))
    }
}
