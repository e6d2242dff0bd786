//! Parallel gzip: the layer stream is cut into fixed-size chunks, each compressed on
//! a worker thread into a complete gzip member, and the members are written in order.
//! A member is one whole buffer, compressed by libdeflate (`deflate`).
//!
//! Concatenated members are one valid gzip file (RFC 1952 section 2.2), read as one
//! stream by Go's compress/gzip (containerd, skopeo, podman, umoci), GNU gzip and
//! flate2's MultiGzDecoder. Chunk boundaries depend only on byte counts, never on
//! thread timing, so the output is as reproducible as single-threaded gzip. Memory
//! is bounded: at most `2 x workers` chunks are in flight.
//!
//! The chunk and member buffers go round a small pool (`Spares`) instead of being
//! allocated per chunk: a 1 GiB layer is a thousand chunks, and fresh 1 MiB buffers
//! each time cost page faults, and through glibc's arenas, memory kept after free.
//!
//! Given a candidate blob (see `member_index`), a worker copies the candidate's
//! member for a chunk it already holds instead of compressing it; the bytes are the
//! same either way. The writer records every member it writes, for the new blob's
//! own index.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::deflate::deflate_gzip;
use super::member_index::{chunk_hash, Candidate, MemberEntry, MemberStats, Produced};

/// Uncompressed bytes per gzip member: large enough that restarting the dictionary
/// costs well under 1% of ratio, small enough to keep both cores busy early.
pub const CHUNK_SIZE: usize = 1 << 20;

/// gzip's OS byte for "unknown", which libdeflate writes: the header does not depend
/// on the build host.
#[cfg(test)]
pub(crate) const GZIP_OS_UNKNOWN: u8 = 255;

/// Bytes of a chunk test-compressed to decide whether it is worth compressing.
const SAMPLE: usize = 64 * 1024;

/// True when a quick level-1 pass over the chunk's first bytes saves under 2%:
/// already-compressed content (archives, media, random data) is then stored, which
/// is several times faster than deflating it for nothing. The decision depends only
/// on the chunk's bytes, so it is as reproducible as the compression itself.
fn incompressible(data: &[u8]) -> bool {
    if data.len() < SAMPLE {
        return false;
    }
    let sample = &data[..SAMPLE];
    let mut out = Vec::new();
    deflate_gzip(sample, 1, &mut out).map(|()| out.len() * 100 >= sample.len() * 98).unwrap_or(false)
}

/// Compresses one chunk into a complete, reproducible gzip member.
#[cfg(test)]
pub fn compress_member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    compress_member_into(data, level, Vec::with_capacity(data.len() / 2 + 64))
}

/// [`compress_member`] into `out` (emptied first), whose capacity is reused.
fn compress_member_into(data: &[u8], level: u32, mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    let _compress = crate::trace::span(crate::trace::Phase::Compress);
    let level = if incompressible(data) { 0 } else { level };
    deflate_gzip(data, level, &mut out)?;
    Ok(out)
}

/// Makes the member of `chunk`: copied from `candidate` when it holds the same
/// chunk, else compressed at `level` into a buffer from `out`. Either way the bytes
/// are the same.
fn produce_into(chunk: &[u8], level: u32, candidate: Option<&Candidate>, out: impl FnOnce() -> Vec<u8>) -> io::Result<Produced> {
    let hash = chunk_hash(chunk);
    let chunk_len = chunk.len() as u64;
    if let Some(member) = candidate.and_then(|c| c.member_for(&hash, chunk)) {
        return Ok(Produced { member, hash, chunk_len, reused: true });
    }
    Ok(Produced { member: compress_member_into(chunk, level, out())?, hash, chunk_len, reused: false })
}

/// [`produce_into`] a new buffer.
pub(crate) fn produce(chunk: &[u8], level: u32, candidate: Option<&Candidate>) -> io::Result<Produced> {
    produce_into(chunk, level, candidate, Vec::new)
}

/// Room for a chunk, or for its member: libdeflate's bound for a chunk adds 5 bytes
/// per 5000 (about 1 KiB per MiB), and the gzip header and trailer 18, below 4 KiB.
const BUFFER_SIZE: usize = CHUNK_SIZE + 4096;

/// Emptied chunk and member buffers, taken before allocating a new one. At most
/// two per chunk in flight (its chunk and its member), plus the one being filled,
/// ever exist.
#[derive(Clone, Default)]
struct Spares(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spares {
    fn take(&self) -> Vec<u8> {
        let spare = self.0.lock().unwrap_or_else(|p| p.into_inner()).pop();
        spare.unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE))
    }

    fn give(&self, mut buf: Vec<u8>) {
        // A member copied from a candidate blob has a size of its own: let it go.
        if buf.capacity() >= BUFFER_SIZE {
            buf.clear();
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(buf);
        }
    }
}

type Job = (u64, Vec<u8>);
type Done = (u64, io::Result<Produced>);

/// A `Write` that gzips into `inner` using worker threads.
pub struct ParallelGzip<W: Write> {
    inner: W,
    level: u32,
    buf: Vec<u8>,
    next_seq: u64,
    next_out: u64,
    in_flight: usize,
    max_in_flight: usize,
    ready: BTreeMap<u64, Produced>,
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    /// True once anything was written, so an empty stream still gets one member.
    wrote_member: bool,
    /// A blob whose members may be copied instead of compressed.
    candidate: Option<Arc<Candidate>>,
    spares: Spares,
    /// The members written so far, in order, for the blob's index.
    members: Vec<MemberEntry>,
    reused: usize,
    offset: u64,
    /// The first error, kept: after it the counts no longer match the workers, so
    /// waiting on them again could block forever, and a later member written after
    /// a lost one would make a corrupt stream.
    failed: Option<(io::ErrorKind, Option<i32>, String)>,
}

impl<W: Write> ParallelGzip<W> {
    /// Starts a compressor with one worker per available core (tests; layers go
    /// through [`ParallelGzip::with_candidate`]).
    #[cfg(test)]
    pub fn new(inner: W, level: u32) -> ParallelGzip<W> {
        Self::with_candidate(inner, level, None)
    }

    /// Starts a compressor with one worker per available core that copies the
    /// members `candidate` already holds.
    pub(crate) fn with_candidate(inner: W, level: u32, candidate: Option<Candidate>) -> ParallelGzip<W> {
        let candidate = candidate.map(Arc::new);
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(workers * 2);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let spares = Spares::default();
        let step = crate::trace::current();
        let handles = (0..workers)
            .map(|_| {
                let (rx, tx, candidate, spares) = (job_rx.clone(), done_tx.clone(), candidate.clone(), spares.clone());
                std::thread::spawn(crate::trace::within(step.clone(), move || loop {
                    let job = rx.lock().map(|r| r.recv());
                    let Ok(Ok((seq, data))) = job else { return };
                    let made = produce_into(&data, level, candidate.as_deref(), || spares.take());
                    spares.give(data);
                    if tx.send((seq, made)).is_err() {
                        return;
                    }
                }))
            })
            .collect();
        ParallelGzip {
            inner,
            level,
            buf: spares.take(),
            next_seq: 0,
            next_out: 0,
            in_flight: 0,
            max_in_flight: workers * 2,
            ready: BTreeMap::new(),
            jobs: Some(job_tx),
            results: done_rx,
            workers: handles,
            wrote_member: false,
            candidate,
            spares,
            members: Vec::new(),
            reused: 0,
            offset: 0,
            failed: None,
        }
    }

    /// The error to return when an earlier call failed, naming what failed.
    fn earlier_failure(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some((_, Some(code), _)) => Err(io::Error::from_raw_os_error(*code)),
            Some((kind, None, msg)) => Err(io::Error::new(*kind, format!("an earlier layer write failed: {msg}"))),
        }
    }

    /// Records `e` as the compressor's failure and hands it back.
    fn fail(&mut self, e: io::Error) -> io::Error {
        if self.failed.is_none() {
            self.failed = Some((e.kind(), e.raw_os_error(), e.to_string()));
        }
        e
    }

    fn submit(&mut self) -> io::Result<()> {
        while self.in_flight >= self.max_in_flight {
            self.collect_one()?;
        }
        let data = std::mem::replace(&mut self.buf, self.spares.take());
        let jobs = self.jobs.as_ref().expect("compressor still open");
        jobs.send((self.next_seq, data)).map_err(|_| io::Error::other("gzip worker stopped"))?;
        self.next_seq += 1;
        self.in_flight += 1;
        self.wrote_member = true;
        Ok(())
    }

    /// Waits for one finished member and writes out every member now in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, result) =
            crate::trace::timed(crate::trace::Phase::Wait, || self.results.recv()).map_err(|_| io::Error::other("gzip worker stopped"))?;
        self.ready.insert(seq, result?);
        let _write = crate::trace::span(crate::trace::Phase::Write);
        // A chunk stays in flight until its member is written: one slow chunk must
        // not let finished members pile up behind it, unbounded.
        while let Some(member) = self.ready.remove(&self.next_out) {
            self.next_out += 1;
            self.in_flight -= 1;
            self.put(member)?;
        }
        Ok(())
    }

    /// Writes one member and records it.
    fn put(&mut self, p: Produced) -> io::Result<()> {
        self.inner.write_all(&p.member)?;
        let len = p.member.len() as u64;
        self.members.push(MemberEntry { hash: p.hash, chunk_len: p.chunk_len, offset: self.offset, len });
        self.offset += len;
        self.reused += usize::from(p.reused);
        self.spares.give(p.member);
        Ok(())
    }

    /// Compresses what is buffered, waits for the workers and returns the sink.
    #[cfg(test)]
    pub fn finish(self) -> io::Result<W> {
        self.finish_indexed().map(|(w, _, _)| w)
    }

    /// [`ParallelGzip::finish`], also returning the members written, in order.
    pub(crate) fn finish_indexed(mut self) -> io::Result<(W, Vec<MemberEntry>, MemberStats)> {
        self.earlier_failure()?;
        if let Err(e) = self.drain() {
            return Err(self.fail(e));
        }
        self.inner.flush()?;
        let stats = MemberStats { members: self.members.len(), reused: self.reused };
        Ok((self.inner, self.members, stats))
    }

    /// Compresses the last partial chunk and writes every member still to come.
    fn drain(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() || !self.wrote_member {
            if self.next_seq == 0 {
                // A small layer: one member, no thread hand-off.
                let member = produce(&self.buf, self.level, self.candidate.as_deref())?;
                self.put(member)?;
                self.buf.clear();
                self.wrote_member = true;
            } else {
                self.submit()?;
            }
        }
        while self.in_flight > 0 {
            self.collect_one()?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        Ok(())
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        self.earlier_failure()?;
        let total = data.len();
        while !data.is_empty() {
            let room = CHUNK_SIZE - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK_SIZE {
                if let Err(e) = self.submit() {
                    return Err(self.fail(e));
                }
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Members can only be written whole; flushing mid-chunk would change the
        // output, so flush only pushes what is complete.
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn round_trips_and_is_reproducible() {
        let input: Vec<u8> = (0..(CHUNK_SIZE * 3 + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let mut a = ParallelGzip::new(Vec::new(), 6);
        for piece in input.chunks(70_001) {
            a.write_all(piece).unwrap();
        }
        let a = a.finish().unwrap();
        let mut b = ParallelGzip::new(Vec::new(), 6);
        b.write_all(&input).unwrap();
        let b = b.finish().unwrap();
        assert_eq!(a, b, "chunking by byte count, not by write calls or timing");
        assert_eq!(gunzip(&a), input);
    }

    #[test]
    fn incompressible_chunks_are_stored() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let noise: Vec<u8> = (0..CHUNK_SIZE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(incompressible(&noise), "noise is detected as incompressible");
        let member = compress_member(&noise, 6).unwrap();
        assert!(member.len() > noise.len(), "stored, not deflated: {} bytes", member.len());
        let text = b"hello world ".repeat(CHUNK_SIZE / 12);
        assert!(!incompressible(&text));
        assert_eq!(gunzip(&member), noise);
        assert!(compress_member(&text, 6).unwrap().len() < text.len() / 10);
    }

    #[test]
    fn buffers_are_reused_not_allocated_per_chunk() {
        let chunk: Vec<u8> = (0..CHUNK_SIZE).map(|i| (i * 31 % 253) as u8).collect();
        let mut gz = ParallelGzip::new(Vec::new(), 1);
        for _ in 0..40 {
            gz.write_all(&chunk).unwrap();
        }
        let bound = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).unwrap()).gzip_compress_bound(CHUNK_SIZE);
        assert!(bound <= BUFFER_SIZE, "a member fits a pooled buffer: {bound} bytes");
        let spare = gz.spares.0.lock().unwrap().len();
        // Every buffer is one being filled, one in flight, a member waiting, or spare.
        assert!(spare <= 2 * gz.max_in_flight + 1, "{spare} spare buffers after 40 chunks");
        let out = gz.finish().unwrap();
        assert_eq!(gunzip(&out), chunk.repeat(40));
    }

    /// A sink that takes `room` bytes, then fails as a full disk does.
    struct FullDisk {
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = data.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_fails_every_later_call_and_never_hangs() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let chunk: Vec<u8> = (0..CHUNK_SIZE).map(|i| (i * 31 % 253) as u8).collect();
            let mut gz = ParallelGzip::new(FullDisk { room: 100 }, 1);
            let first = (0..40).find_map(|_| gz.write_all(&chunk).err());
            // The tar builder writes its trailer after a failed entry; that must
            // fail too rather than wait on members that will never come.
            let again = gz.write_all(&chunk).err();
            let finish = gz.finish().err();
            let _ = tx.send([first, again, finish].map(|e| e.and_then(|e| e.raw_os_error())));
        });
        let codes = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the compressor hung after a write error");
        assert_eq!(codes, [Some(libc::ENOSPC); 3], "every call after the disk filled says ENOSPC");
    }

    #[test]
    fn empty_and_small_streams_are_one_member() {
        let e = ParallelGzip::new(Vec::new(), 6).finish().unwrap();
        assert_eq!(gunzip(&e), b"");
        assert_eq!(e, compress_member(b"", 6).unwrap());
        let mut s = ParallelGzip::new(Vec::new(), 6);
        s.write_all(b"hello").unwrap();
        assert_eq!(s.finish().unwrap(), compress_member(b"hello", 6).unwrap());
    }
}
