//! What an image's layers hold: per layer, the files it adds, changes and removes
//! and the bytes it ships that a later layer hides (wasted bytes); for the image,
//! what it ships against what a container sees. Each layer's tar is streamed once,
//! in order, and only the index of visible paths ([`visible`]) is kept.

mod changes;
mod visible;

pub use changes::{compare, final_tree};
pub use visible::{clean, Applied, Hidden, Visible};

use std::io::BufReader;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::oci::{self, Digest, Store};

/// Files and their content bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub files: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// One layer's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LayerFigures {
    /// 1-based, bottom first.
    pub index: usize,
    pub digest: String,
    /// The blob's size as stored (compressed).
    pub size: u64,
    /// The content bytes of its regular files: what docker calls the layer's size.
    pub uncompressed: u64,
    pub created_by: String,
    pub added: Count,
    pub modified: Count,
    /// Whiteouts, and the bytes they hide.
    pub removed: Count,
    /// Bytes this layer ships that later layers overwrite or delete.
    pub wasted_bytes: u64,
}

/// The whole image's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImageFigures {
    pub layers: Vec<LayerFigures>,
    /// Content bytes of every layer together.
    pub total_bytes: u64,
    pub wasted_bytes: u64,
    /// Seen over shipped: 1 when nothing is wasted.
    pub efficiency: f64,
    /// The largest wasted paths, largest first (layer numbers 1-based).
    pub wasted_paths: Vec<WastedPath>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WastedPath {
    /// Absolute, as a container would see it.
    pub path: String,
    pub bytes: u64,
    /// The layer that shipped the bytes.
    pub layer: usize,
    /// The layer that overwrote or deleted them.
    pub hidden_by: usize,
}

/// How many wasted paths the figures keep.
pub const TOP_WASTED: usize = 10;

/// One layer as the manifest lists it, with the history step that made it.
pub struct LayerSource {
    pub descriptor: oci::Descriptor,
    pub created_by: String,
}

/// The layers of the image `manifest` names, each with its history line.
pub fn layer_sources(store: &Store, manifest: &Digest) -> Result<Vec<LayerSource>> {
    let m = store.read_manifest(manifest)?;
    let config = store.read_config(&oci::descriptor_digest(m.config())?)?;
    let mut steps = config.history.iter().filter(|h| !h.empty_layer).map(|h| h.created_by.clone().unwrap_or_default());
    Ok(m.layers().iter().map(|d| LayerSource { descriptor: d.clone(), created_by: steps.next().unwrap_or_default() }).collect())
}

/// A layer tar's entry as [`read_entries`] hands it over.
pub type Entry<'a> = tar::Entry<'a, Box<dyn std::io::Read>>;

/// Calls `each` for every entry of the layer's tar, in order, its content unread.
pub fn read_entries(store: &Store, layer: &oci::Descriptor, mut each: impl FnMut(&mut Entry<'_>) -> Result<()>) -> Result<()> {
    let digest = oci::descriptor_digest(layer)?;
    let blob = BufReader::with_capacity(1 << 20, store.open_blob(&digest)?);
    let decoded = oci::layer_decoder(layer.media_type().as_ref(), &digest, blob)?;
    let mut archive = tar::Archive::new(decoded);
    let read = |e: std::io::Error| anyhow::Error::from(e).context(format!("reading layer {digest}"));
    for entry in archive.entries().map_err(read)? {
        each(&mut entry.map_err(read)?)?;
    }
    Ok(())
}

/// An entry's name as the tar holds it, its content bytes (regular files only),
/// and whether it is a directory.
pub fn entry_facts(entry: &Entry<'_>) -> (String, u64, bool) {
    let kind = entry.header().entry_type();
    let size = oci::content_bytes(kind, entry.size());
    (String::from_utf8_lossy(&entry.path_bytes()).into_owned(), size, kind.is_dir())
}

/// Calls `each(name, size, is_dir)` for every entry of the layer's tar, in order.
pub fn for_each_entry(store: &Store, layer: &oci::Descriptor, mut each: impl FnMut(&str, u64, bool)) -> Result<()> {
    read_entries(store, layer, |entry| {
        let (name, size, dir) = entry_facts(entry);
        each(&name, size, dir);
        Ok(())
    })
}

/// Streams every layer of `manifest` once and adds up its figures.
pub fn figures(store: &Store, manifest: &Digest) -> Result<ImageFigures> {
    let sources = layer_sources(store, manifest)?;
    let mut visible = Visible::default();
    let mut layers: Vec<LayerFigures> = Vec::with_capacity(sources.len());
    let mut hidden: Vec<Hidden> = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let mut f = LayerFigures {
            index: i + 1,
            digest: oci::descriptor_digest(&source.descriptor)?.to_string(),
            size: source.descriptor.size(),
            created_by: source.created_by.clone(),
            ..Default::default()
        };
        for_each_entry(store, &source.descriptor, |name, size, dir| {
            let applied = visible.apply(i, name, size, dir, 0);
            f.uncompressed += size;
            match (applied.op, dir) {
                ('D' | 'O', _) => f.removed.add(applied.hidden.iter().map(|h| h.bytes).sum()),
                (_, true) => {}
                ('A', false) => f.added.add(size),
                (_, false) => f.modified.add(size),
            }
            hidden.extend(applied.hidden);
        })
        .with_context(|| format!("layer {} of the image", i + 1))?;
        layers.push(f);
    }
    Ok(summarise(layers, hidden))
}

/// Charges hidden bytes to the layers that shipped them and ranks the paths.
fn summarise(mut layers: Vec<LayerFigures>, hidden: Vec<Hidden>) -> ImageFigures {
    for h in &hidden {
        layers[h.layer].wasted_bytes += h.bytes;
    }
    let total_bytes: u64 = layers.iter().map(|l| l.uncompressed).sum();
    let wasted_bytes: u64 = layers.iter().map(|l| l.wasted_bytes).sum();
    let efficiency = if total_bytes == 0 { 1.0 } else { (total_bytes - wasted_bytes) as f64 / total_bytes as f64 };
    let mut ranked: Vec<WastedPath> = hidden
        .into_iter()
        .filter(|h| h.bytes > 0)
        .map(|h| WastedPath {
            path: format!("/{}", h.path.trim_start_matches('/')),
            bytes: h.bytes,
            layer: h.layer + 1,
            hidden_by: h.hidden_by + 1,
        })
        .collect();
    ranked.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    ranked.truncate(TOP_WASTED);
    ImageFigures { layers, total_bytes, wasted_bytes, efficiency, wasted_paths: ranked }
}

/// The entries of layer `index` (1-based) with what each did: `(op, path, bytes,
/// is_dir)`, in the tar's order; a removal's bytes are those it hides. The layers below it are read first for the ops.
pub fn layer_changes(store: &Store, manifest: &Digest, index: usize) -> Result<Vec<(char, String, u64, bool)>> {
    let sources = layer_sources(store, manifest)?;
    anyhow::ensure!(index >= 1 && index <= sources.len(), "the image has layers 1 to {}, not {index}", sources.len());
    let mut visible = Visible::default();
    let mut changes = Vec::new();
    for (i, source) in sources.iter().enumerate().take(index) {
        for_each_entry(store, &source.descriptor, |name, size, dir| {
            let applied = visible.apply(i, name, size, dir, 0);
            if i + 1 == index {
                let removed: u64 = applied.hidden.iter().map(|h| h.bytes).sum();
                changes.push(match applied.op {
                    'D' => ('D', display_path(name), removed, dir),
                    // An opaque directory: its lower contents are gone, the directory stays.
                    'O' => ('C', display_path(name).rsplit_once('/').map_or("/", |(d, _)| d).to_string(), removed, true),
                    op => (op, display_path(name), size, dir),
                });
            }
        })?;
    }
    Ok(changes)
}

/// A tar name as a container sees it: absolute, a whiteout as the path it removes.
fn display_path(name: &str) -> String {
    let path = clean(name);
    let (parent, base) = path.rsplit_once('/').unwrap_or(("", path));
    let base = base.strip_prefix(".wh.").filter(|b| *b != ".wh..opq").unwrap_or(base);
    if parent.is_empty() {
        format!("/{base}")
    } else {
        format!("/{parent}/{base}")
    }
}
