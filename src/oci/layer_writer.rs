//! One-pass layer writer: tar bytes in, finished layer blob out.
//!
//! The pipeline is `tar -> hash (diff_id) -> parallel gzip -> hash (digest) + count ->
//! temp file`, then fsync and rename to `blobs/sha256/<digest>`. Nothing is buffered
//! beyond a few compression chunks and a write buffer, so memory stays flat whatever
//! the layer size, and no byte is read back to compute either digest.
//!
//! Output is reproducible: a fixed compression level, fixed chunk size (see `pgzip`)
//! and gzip headers with no mtime, no file name and the "unknown" OS byte, so
//! identical tar streams give identical layer digests on any machine.
//!
//! A gzip layer's members are recorded in a member index once the blob is in place
//! (`member_index`); a layer written with a candidate (the blob the same step wrote
//! last time) copies the candidate's members for the chunks it holds unchanged.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use oci_spec::image::Descriptor;
use tempfile::NamedTempFile;
use zstd::zstd_safe::CParameter;

use super::image::{descriptor, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD};
use super::member_index::{Candidate, MemberEntry, MemberStats};
use super::pgzip::ParallelGzip;
use super::{DiffId, Digest, HashingWriter, OciError, Result, Store};

/// The gzip level every layer is written with; changing it changes every layer digest,
/// so it is a constant, not a knob.
pub const LAYER_COMPRESSION_LEVEL: u32 = 6;

/// How a layer blob is compressed (`--compression`, `--compression-level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompression {
    /// gzip at the given level (default 6): what every runtime reads.
    Gzip(u32),
    /// zstd at the given level (default 3): smaller and faster, read by newer runtimes.
    Zstd(i32),
    /// Plain tar.
    None,
}

impl Default for LayerCompression {
    fn default() -> Self {
        LayerCompression::Gzip(LAYER_COMPRESSION_LEVEL)
    }
}

impl LayerCompression {
    /// Parses `gzip`, `zstd` or `none` with an optional level.
    pub fn from_name(name: &str, level: Option<i32>) -> Option<LayerCompression> {
        match name {
            "gzip" => Some(LayerCompression::Gzip(level.map(|l| l.clamp(0, 9) as u32).unwrap_or(LAYER_COMPRESSION_LEVEL))),
            "zstd" => Some(LayerCompression::Zstd(level.unwrap_or(3).clamp(1, 19))),
            "none" | "uncompressed" => Some(LayerCompression::None),
            _ => None,
        }
    }

    /// The layer media type this compression produces.
    pub fn media_type(self) -> &'static str {
        match self {
            LayerCompression::Gzip(_) => MEDIA_TYPE_LAYER_GZIP,
            LayerCompression::Zstd(_) => MEDIA_TYPE_LAYER_ZSTD,
            LayerCompression::None => MEDIA_TYPE_LAYER_TAR,
        }
    }
}

/// The compressor stage of the pipeline.
enum Encoder {
    Gzip(ParallelGzip<BlobSink>),
    Zstd(zstd::stream::Encoder<'static, BlobSink>),
    None(BlobSink),
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(w) => w.write(buf),
            // zstd compresses on this thread, inside its write.
            Encoder::Zstd(w) => crate::trace::timed(crate::trace::Phase::Compress, || w.write(buf)),
            Encoder::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}

/// A gzip layer's members, for its index.
type Members = Option<(Vec<MemberEntry>, MemberStats)>;

impl Encoder {
    fn finish(self) -> io::Result<(BlobSink, Members)> {
        match self {
            Encoder::Gzip(w) => w.finish_indexed().map(|(sink, entries, stats)| (sink, Some((entries, stats)))),
            Encoder::Zstd(w) => Ok((w.finish()?, None)),
            Encoder::None(w) => Ok((w, None)),
        }
    }
}

/// A layer stored as a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBlob {
    /// Digest of the compressed blob (the manifest's layer digest).
    pub digest: Digest,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: DiffId,
    /// Compressed size in bytes.
    pub size: u64,
    /// Uncompressed tar size in bytes.
    pub uncompressed_size: u64,
    /// The blob's media type (from its compression).
    pub media_type: &'static str,
    /// gzip: how many members it has and how many were copied from a candidate.
    pub members: MemberStats,
}

impl LayerBlob {
    /// The manifest descriptor for this layer.
    pub fn descriptor(&self) -> Descriptor {
        descriptor(self.media_type, &self.digest, self.size)
    }
}

type BlobSink = HashingWriter<BufWriter<NamedTempFile>>;

/// Streams an uncompressed layer tar into the store; call `finish` to commit it.
/// Dropping it without `finish` discards the temp file.
pub struct LayerWriter<'a> {
    store: &'a Store,
    temp_path: PathBuf,
    inner: HashingWriter<Encoder>,
    media_type: &'static str,
    compression: LayerCompression,
}

impl<'a> LayerWriter<'a> {
    /// Starts a gzip layer in `store`.
    pub fn new(store: &'a Store) -> Result<Self> {
        Self::with_compression(store, LayerCompression::default())
    }

    /// Starts a layer in `store` with the given compression.
    pub fn with_compression(store: &'a Store, compression: LayerCompression) -> Result<Self> {
        Self::reusing(store, compression, None)
    }

    /// Starts a layer that copies the gzip members of `candidate` (a blob in `store`
    /// with a member index) for the chunks it holds, instead of compressing them.
    /// The blob is the same as without a candidate; zstd and plain layers ignore it.
    pub fn reusing(store: &'a Store, compression: LayerCompression, candidate: Option<&Digest>) -> Result<Self> {
        let tmp = store.temp_blob()?;
        let temp_path = tmp.path().to_path_buf();
        // 256 KiB: large sequential writes, still a constant amount of memory.
        let sink = HashingWriter::new(BufWriter::with_capacity(256 * 1024, tmp));
        let encoder = match compression {
            LayerCompression::Gzip(level) => {
                let candidate = candidate.and_then(|d| Candidate::open(store, d, level));
                Encoder::Gzip(ParallelGzip::with_candidate(sink, level, candidate))
            }
            LayerCompression::Zstd(level) => {
                let z = zstd_encoder(sink, level, zstd_workers()).map_err(OciError::io("start zstd for", &temp_path))?;
                Encoder::Zstd(z)
            }
            LayerCompression::None => Encoder::None(sink),
        };
        Ok(LayerWriter { store, temp_path, inner: HashingWriter::new(encoder), media_type: compression.media_type(), compression })
    }

    /// Ends the gzip stream, fsyncs and renames the blob into place.
    pub fn finish(self) -> Result<LayerBlob> {
        let io_err = OciError::io("write layer", &self.temp_path);
        let (gz, diff_id, uncompressed_size) = self.inner.finish();
        let (sink, members) = match gz.finish() {
            Ok(done) => done,
            Err(e) => return Err(io_err(e)),
        };
        let (buf, digest, size) = sink.finish();
        let tmp = match buf.into_inner() {
            Ok(tmp) => tmp,
            Err(e) => return Err(io_err(e.into_error())),
        };
        self.store.commit_blob(tmp, &digest)?;
        let (entries, stats) = members.unwrap_or_default();
        if let LayerCompression::Gzip(level) = self.compression {
            self.store.save_member_index(&digest, level, &entries);
        }
        Ok(LayerBlob { digest, diff_id: DiffId::new(diff_id), size, uncompressed_size, media_type: self.media_type, members: stats })
    }
}

impl Write for LayerWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Store {
    /// Starts a streaming layer; see [`LayerWriter`].
    pub fn layer_writer(&self) -> Result<LayerWriter<'_>> {
        LayerWriter::new(self)
    }

    /// Runs `produce` against a layer writer and commits the result. `produce` may wrap
    /// the writer in `tar::Builder<&mut dyn Write>`; it must finish the archive (call
    /// `Builder::finish` or `into_inner`) before returning.
    pub fn write_layer<F>(&self, produce: F) -> Result<LayerBlob>
    where
        F: FnOnce(&mut dyn Write) -> io::Result<()>,
    {
        self.write_layer_with(LayerCompression::default(), produce)
    }

    /// [`Store::write_layer`] with a chosen compression.
    pub fn write_layer_with<F>(&self, compression: LayerCompression, produce: F) -> Result<LayerBlob>
    where
        F: FnOnce(&mut dyn Write) -> io::Result<()>,
    {
        self.write_layer_reusing(compression, None, produce)
    }

    /// [`Store::write_layer_with`], copying unchanged members from `candidate`
    /// (see [`LayerWriter::reusing`]).
    pub fn write_layer_reusing<F>(&self, compression: LayerCompression, candidate: Option<&Digest>, produce: F) -> Result<LayerBlob>
    where
        F: FnOnce(&mut dyn Write) -> io::Result<()>,
    {
        let mut writer = LayerWriter::reusing(self, compression, candidate)?;
        produce(&mut writer).map_err(OciError::io("produce layer into", &writer.temp_path))?;
        writer.finish()
    }
}

/// Bytes each zstd worker takes at a time. zstd's default (4 windows, 8 MiB at
/// level 3) made a 1 GiB layer peak at 127 MiB of RSS: its round buffer holds a
/// job per worker and more. Both this and the overlap shape the output, so they
/// are constants.
const ZSTD_JOB_SIZE: u32 = 1 << 20;

/// Each job starts with a whole window of the data before it (overlap log 9), so
/// small jobs lose no ratio. With zstd's default overlap, 1 MiB jobs made W3's
/// tree 4.5% larger than single-threaded zstd; with the whole window, 0.5% smaller.
const ZSTD_FULL_OVERLAP: u32 = 9;

/// A zstd encoder for a layer: on `workers` threads, as gzip is on every core.
/// zstd's frame is the same for any number of workers from 1 up (only 0,
/// compressing on the caller's thread, differs), so a layer does not depend on
/// the machine that built it. The checksum makes the frame self-checking.
fn zstd_encoder<W: Write>(sink: W, level: i32, workers: u32) -> io::Result<zstd::stream::Encoder<'static, W>> {
    let mut z = zstd::stream::Encoder::new(sink, level)?;
    z.include_checksum(true)?;
    z.multithread(workers)?;
    z.set_parameter(CParameter::JobSize(ZSTD_JOB_SIZE))?;
    z.set_parameter(CParameter::OverlapSizeLog(ZSTD_FULL_OVERLAP))?;
    Ok(z)
}

/// zstd's worker threads: one per core, at most 4. Each holds a job and a window
/// of overlap (about 12 MiB at level 3), so past 4 the memory, not the speed, is
/// what grows.
fn zstd_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4) as u32
}

/// Test fixture: a one-file layer plus config and manifest, returning the manifest
/// descriptor and the layer.
#[cfg(test)]
pub(crate) fn tiny_image(store: &Store, content: &[u8]) -> (Descriptor, LayerBlob) {
    let layer = store
        .write_layer(|w| {
            let mut b = tar::Builder::new(w);
            let mut h = tar::Header::new_ustar();
            h.set_path("hello.txt")?;
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            b.append(&h, content)?;
            b.finish()
        })
        .unwrap();
    let mut config = super::ImageConfig::for_host();
    config.created = Some("2024-01-02T03:04:05Z".to_string());
    config.rootfs.diff_ids.push(layer.diff_id.clone());
    config.config = Some(super::ContainerConfig { cmd: Some(vec!["/hello".to_string()]), ..Default::default() });
    let manifest = store.put_image(&config, &[layer.descriptor()]).unwrap();
    (manifest, layer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    fn tar_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// The claim zstd layers' reproducibility rests on: any worker count from 1
    /// up writes the same frame, so the builder's core count is not in the layer.
    #[test]
    fn zstd_output_does_not_depend_on_the_worker_count() {
        let mut x: u32 = 1;
        let data: Vec<u8> = (0..(24 << 20))
            .map(|i: usize| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if i % 3 == 0 {
                    (x >> 24) as u8
                } else {
                    b"layer "[i % 6]
                }
            })
            .collect();
        let frame = |workers: u32| {
            let mut z = zstd_encoder(Vec::new(), 3, workers).unwrap();
            for piece in data.chunks(300_007) {
                z.write_all(piece).unwrap();
            }
            z.finish().unwrap()
        };
        let one = frame(1);
        assert_eq!(one, frame(2));
        assert_eq!(one, frame(5));
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), data);
    }

    #[test]
    fn digest_and_diff_id_match_the_stored_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = tar_bytes(&[("a", b"alpha"), ("b/c", b"charlie")]);
        let mut w = store.layer_writer().unwrap();
        // Small, odd-sized writes exercise the pass-through paths.
        for chunk in tar.chunks(7) {
            w.write_all(chunk).unwrap();
        }
        let layer = w.finish().unwrap();

        let blob = std::fs::read(store.blob_path(&layer.digest)).unwrap();
        assert_eq!(Digest::of_bytes(&blob), layer.digest);
        assert_eq!(blob.len() as u64, layer.size);
        let mut plain = Vec::new();
        GzDecoder::new(&blob[..]).read_to_end(&mut plain).unwrap();
        assert_eq!(plain, tar);
        assert_eq!(DiffId::new(Digest::of_bytes(&plain)), layer.diff_id);
        assert_eq!(layer.uncompressed_size, tar.len() as u64);
        // The gzip header carries no mtime and no file name.
        assert_eq!(&blob[3..8], &[0, 0, 0, 0, 0]);
        assert_eq!(blob[9], super::super::pgzip::GZIP_OS_UNKNOWN);
        assert_eq!(layer.descriptor().size(), layer.size);
    }

    #[test]
    fn identical_layers_are_reproducible() {
        let dir1 = tempfile::tempdir().unwrap();
        let dir2 = tempfile::tempdir().unwrap();
        let s1 = Store::open(dir1.path()).unwrap();
        let s2 = Store::open(dir2.path()).unwrap();
        let tar = tar_bytes(&[("x", &[7u8; 100_000][..])]);
        let a = s1.write_layer(|w| w.write_all(&tar)).unwrap();
        let b = s2.write_layer(|w| w.write_all(&tar)).unwrap();
        assert_eq!(a, b);
        // Writing the same layer twice into one store is a no-op the second time.
        let c = s1.write_layer(|w| w.write_all(&tar)).unwrap();
        assert_eq!(a, c);
        assert!(s1.verify_blob(&a.digest).is_ok());
    }

    #[test]
    fn works_with_tar_builder_over_dyn_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (_, layer) = tiny_image(&store, b"hi there");
        let file = store.open_blob(&layer.digest).unwrap();
        let mut archive = tar::Archive::new(GzDecoder::new(file));
        let mut entries = archive.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some("hello.txt"));
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hi there");
        assert!(entries.next().is_none());
    }

    #[test]
    fn failed_producer_leaves_no_blob_or_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = store
            .write_layer(|w| {
                w.write_all(b"partial")?;
                Err(io::Error::other("boom"))
            })
            .unwrap_err();
        assert!(err.to_string().contains("produce layer"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn large_layer_streams() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // 1 MiB of pseudo-random data in 256 KiB chunks (debug-build hashing and zlib are
        // slow, so bigger sizes belong in benchmarks); only the digest is kept.
        let mut state = 0x1234_5678u32;
        let mut plain_hash = HashingWriter::new(io::sink());
        let layer = store
            .write_layer(|w| {
                let mut chunk = vec![0u8; 256 << 10];
                for _ in 0..4 {
                    for b in chunk.iter_mut() {
                        state ^= state << 13;
                        state ^= state >> 17;
                        state ^= state << 5;
                        *b = state as u8;
                    }
                    w.write_all(&chunk)?;
                    plain_hash.write_all(&chunk)?;
                }
                Ok(())
            })
            .unwrap();
        let (_, want, size) = plain_hash.finish();
        assert_eq!(layer.diff_id, DiffId::new(want));
        assert_eq!(layer.uncompressed_size, size);
        assert_eq!(store.verify_blob(&layer.digest).unwrap().size, layer.size);
    }
}
