//! Layers' content sizes: the bytes of their regular files, which is what docker
//! shows as a layer's and an image's SIZE (a blob's own size is compressed, and a
//! base loaded from an uncompressed archive would count several times more).
//! Finding one streams the layer once; the figure is then kept beside the blobs
//! in `sizes/<blob hex>`, as member indexes are, and dropped with the blob.

use std::fs;
use std::io::BufReader;
use std::path::PathBuf;

use crate::durable::{self, Mode};

use super::{descriptor_digest, layer_decoder, Descriptor, Digest, OciError, Result, Store};

impl Store {
    fn size_dir(&self) -> PathBuf {
        self.root().join("sizes")
    }

    /// The content bytes of the layer `layer` describes.
    pub fn content_size(&self, layer: &Descriptor) -> Result<u64> {
        let digest = descriptor_digest(layer)?;
        let path = self.size_dir().join(digest.hex());
        if let Some(known) = fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok()) {
            return Ok(known);
        }
        let size = self.count_content(layer, &digest)?;
        // Best effort: without the record the next call counts again, nothing worse.
        let _ = fs::create_dir_all(self.size_dir()).and_then(|()| durable::replace(&path, size.to_string().as_bytes(), Mode::Umask));
        Ok(size)
    }

    fn count_content(&self, layer: &Descriptor, digest: &Digest) -> Result<u64> {
        let io = |source| OciError::Io { op: "read layer", path: PathBuf::from(digest.to_string()), source };
        let blob = BufReader::with_capacity(1 << 20, self.open_blob(digest)?);
        let mut archive = tar::Archive::new(layer_decoder(layer.media_type().as_ref(), digest, blob)?);
        let mut total = 0;
        for entry in archive.entries().map_err(io)? {
            let entry = entry.map_err(io)?;
            total += content_bytes(entry.header().entry_type(), entry.size());
        }
        Ok(total)
    }

    /// Drops the sizes of blobs the store no longer has (prune), and temp files.
    pub fn retain_content_sizes(&self) {
        let Ok(entries) = fs::read_dir(self.size_dir()) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !Digest::parse(&format!("sha256:{name}")).is_ok_and(|d| self.has_blob(&d)) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// What a layer tar entry adds to the content size: a regular file's bytes, and
/// nothing for the rest (a hard link's bytes are its target's).
pub fn content_bytes(kind: tar::EntryType, size: u64) -> u64 {
    if kind.is_file() || kind == tar::EntryType::Continuous {
        size
    } else {
        0
    }
}
