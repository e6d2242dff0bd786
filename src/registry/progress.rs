//! What a transfer tells its user: lines about the image, and each blob's bytes as
//! they move. The registry code only calls [`Progress`]; how it looks (bars on a
//! terminal, plain lines in CI logs) is the caller's choice (`report`).
//!
//! Any `Fn(&str)` is a [`Progress`] that prints a line when a blob starts and ignores
//! the bytes, which is what logs and tests want.

use std::io::Read;

use crate::oci::Digest;

/// Receives a transfer's progress.
pub trait Progress {
    /// A line: a resolved platform, a skipped blob, the manifest written.
    fn line(&self, text: &str);
    /// A blob of `size` bytes starts moving; its bytes are reported to the result.
    fn blob(&self, digest: &Digest, size: u64) -> Box<dyn BlobProgress + '_>;
}

/// One blob's transfer.
pub trait BlobProgress {
    /// `n` more bytes moved.
    fn advance(&self, n: u64);
    /// The transfer starts again from its first byte (a retry).
    fn restart(&self);
    /// All bytes moved and the digest matched.
    fn finish(&self);
}

struct NoBar;

impl BlobProgress for NoBar {
    fn advance(&self, _: u64) {}
    fn restart(&self) {}
    fn finish(&self) {}
}

impl<F: Fn(&str)> Progress for F {
    fn line(&self, text: &str) {
        self(text)
    }

    fn blob(&self, digest: &Digest, size: u64) -> Box<dyn BlobProgress + '_> {
        self(&format!("Copying blob {} ({size} bytes)", digest.short()));
        Box::new(NoBar)
    }
}

/// A reader that reports every byte it hands out to a blob's progress.
pub struct Counted<'p, R> {
    inner: R,
    progress: &'p dyn BlobProgress,
}

impl<'p, R: Read> Counted<'p, R> {
    pub fn new(inner: R, progress: &'p dyn BlobProgress) -> Self {
        Counted { inner, progress }
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
