//! Member indexes: which gzip members a layer blob holds, so a later layer can copy
//! the compressed bytes of an unchanged chunk instead of compressing it again.
//!
//! `pgzip` cuts every gzip layer into members of fixed `CHUNK_SIZE` uncompressed
//! chunks, and a member's bytes depend only on its chunk's bytes (fixed level, header
//! without mtime or name, the store-or-deflate choice sampled from the chunk itself).
//! So a chunk that hashes like a member of an earlier blob *is* that member: copying
//! it gives byte for byte what compressing would. The index is
//! `members/<blob hex>` in the layout directory, beside `blob-sources/` and outside
//! `blobs/`: a header naming the compressor and level, then one record per member
//! (SHA-256 of the chunk, its length, the member's offset and length in the blob).
//!
//! An index is a hint, never trusted for correctness: it is read only when its
//! compressor, level and total size agree with the blob, it is looked up by chunk
//! hash (so a chunk that moved is found too), and before a member is copied its gzip
//! trailer (CRC-32 and length) must match the new chunk. Any doubt compresses the
//! chunk as usual. A missing or unwritable index only costs the reuse.
//!
//! Boundaries are fixed byte offsets of the tar stream, so an edit that keeps a
//! file's size leaves every other chunk as it was, while one that changes a size
//! shifts every chunk after it (then nothing after the edit is reused). Content-
//! defined boundaries would survive that, but they would change where members end
//! for every layer, hence every layer digest strata has ever written.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::durable::{self, Mode};

use super::{Digest, Store};

/// SHA-256 of one uncompressed chunk.
pub(crate) type ChunkHash = [u8; 32];

/// What writes the members: a different deflate implementation or version may
/// compress the same chunk to other bytes, so an index written by another one is
/// not used (its blobs are still read as usual). The crate versions alone would
/// miss a rebuilt dependency, so the name carries a digest of what this process's
/// deflate makes of a fixed probe at two levels.
fn compressor() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let probe: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 % 17 + b'a').collect();
        let mut made = Vec::new();
        for level in [1, 6] {
            let mut member = Vec::new();
            let _ = super::deflate::deflate_gzip(&probe, level, &mut member);
            made.extend(member);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &made);
        let hex = super::hex_of(&digest.as_ref()[..8]);
        format!("libdeflate strata-{} probe-{hex}", env!("CARGO_PKG_VERSION"))
    })
}

/// First line of every index file.
const MAGIC: &str = "strata-members 1";

/// Bytes per record: hash, chunk length, member offset, member length.
const RECORD: usize = 32 + 8 + 8 + 8;

/// One member of a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberEntry {
    pub hash: ChunkHash,
    /// Uncompressed chunk length.
    pub chunk_len: u64,
    /// Where the member starts in the blob.
    pub offset: u64,
    /// The member's compressed length.
    pub len: u64,
}

/// One chunk turned into a member, compressed or copied.
pub(crate) struct Produced {
    pub member: Vec<u8>,
    pub hash: ChunkHash,
    pub chunk_len: u64,
    /// The member was copied from the candidate blob.
    pub reused: bool,
}

/// How many members a gzip layer has and how many were copied from a candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberStats {
    pub members: usize,
    pub reused: usize,
}

/// A blob written earlier whose members a new layer may copy.
pub(crate) struct Candidate {
    file: File,
    /// Chunk hash -> (offset, member length), with the chunk length.
    by_hash: HashMap<ChunkHash, (u64, u64, u64)>,
}

impl Candidate {
    /// The blob `digest` with its index, if both are there and agree with each other
    /// and with `level`; None otherwise (the layer is then compressed in full).
    pub(crate) fn open(store: &Store, digest: &Digest, level: u32) -> Option<Candidate> {
        let bytes = fs::read(store.member_index_path(digest)).ok()?;
        let entries = decode(&bytes, level)?;
        let file = store.open_blob(digest).ok()?;
        let size = file.metadata().ok()?.len();
        let end = entries.last().map(|e| e.offset + e.len).unwrap_or(0);
        if end != size {
            return None;
        }
        let by_hash = entries.into_iter().map(|e| (e.hash, (e.offset, e.len, e.chunk_len))).collect();
        Some(Candidate { file, by_hash })
    }

    /// The candidate's member for `chunk` (whose hash is `hash`), if it has one
    /// whose trailer agrees.
    pub(crate) fn member_for(&self, hash: &ChunkHash, chunk: &[u8]) -> Option<Vec<u8>> {
        let &(offset, len, chunk_len) = self.by_hash.get(hash)?;
        // A member is at least a 10-byte header and an 8-byte trailer, and ours are
        // never much larger than their chunk (stored blocks add 5 bytes per 64 KiB).
        if chunk_len != chunk.len() as u64 || len < 18 || len > chunk_len + chunk_len / 64 + 1024 {
            return None;
        }
        let mut member = vec![0u8; len as usize];
        self.file.read_exact_at(&mut member, offset).ok()?;
        let trailer = &member[member.len() - 8..];
        let crc = u32::from_le_bytes(trailer[..4].try_into().ok()?);
        let isize = u32::from_le_bytes(trailer[4..].try_into().ok()?);
        let mut want = flate2::Crc::new();
        want.update(chunk);
        let header_ok = member[..3] == [0x1f, 0x8b, 8];
        (header_ok && crc == want.sum() && isize == chunk.len() as u32).then_some(member)
    }
}

/// The hash a chunk is looked up by.
pub(crate) fn chunk_hash(chunk: &[u8]) -> ChunkHash {
    ring::digest::digest(&ring::digest::SHA256, chunk).as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn header(level: u32) -> String {
    format!("{MAGIC} {} level={level}\n", compressor())
}

/// An index file's bytes: the header line, then fixed-size records.
pub(super) fn encode(level: u32, entries: &[MemberEntry]) -> Vec<u8> {
    let mut out = header(level).into_bytes();
    out.reserve(entries.len() * RECORD);
    for e in entries {
        out.extend_from_slice(&e.hash);
        for n in [e.chunk_len, e.offset, e.len] {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    out
}

/// The records of an index written by this compressor at `level`, if the members
/// follow each other without gaps; None for anything else.
pub(super) fn decode(bytes: &[u8], level: u32) -> Option<Vec<MemberEntry>> {
    let header = header(level);
    let body = bytes.strip_prefix(header.as_bytes())?;
    if body.len() % RECORD != 0 {
        return None;
    }
    let mut entries = Vec::with_capacity(body.len() / RECORD);
    let mut expected_offset = 0;
    for r in body.chunks_exact(RECORD) {
        let num = |i: usize| u64::from_le_bytes(r[32 + 8 * i..40 + 8 * i].try_into().expect("8 bytes"));
        let entry = MemberEntry { hash: r[..32].try_into().ok()?, chunk_len: num(0), offset: num(1), len: num(2) };
        if entry.offset != expected_offset {
            return None;
        }
        expected_offset = entry.offset.checked_add(entry.len)?;
        entries.push(entry);
    }
    Some(entries)
}

impl Store {
    fn member_dir(&self) -> PathBuf {
        self.root().join("members")
    }

    pub(crate) fn member_index_path(&self, digest: &Digest) -> PathBuf {
        self.member_dir().join(digest.hex())
    }

    /// Records the members of the blob `digest`, written at `level` (best effort:
    /// without an index the next layer is compressed in full, nothing worse).
    pub(crate) fn save_member_index(&self, digest: &Digest, level: u32, entries: &[MemberEntry]) {
        let path = self.member_index_path(digest);
        // One this strata can read stays; one of another compressor is replaced.
        if fs::read(&path).ok().and_then(|b| decode(&b, level)).is_some() {
            return;
        }
        let _ = fs::create_dir_all(self.member_dir()).and_then(|()| durable::replace(&path, &encode(level, entries), Mode::Umask));
    }

    /// Drops the indexes of blobs the store no longer has (prune), and temp files.
    pub fn retain_member_indexes(&self) {
        let Ok(entries) = fs::read_dir(self.member_dir()) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let present = Digest::parse(&format!("sha256:{name}")).is_ok_and(|d| self.has_blob(&d));
            if !present {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
#[path = "member_index_tests.rs"]
mod tests;
