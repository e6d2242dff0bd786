//! The text a COPY source digest hashes, fed to the hash in walk order while the
//! content hashes of its files come back from the hashing threads out of order.
//!
//! Holding every entry's line until the walk ended cost about 250 bytes per entry:
//! 50 MiB for a 200k-file context, much of a no-op rebuild's memory. Only the
//! entries from the oldest file still being hashed onwards are held now: a few
//! batches' worth, unless one huge file holds up everything after it.

use std::collections::VecDeque;
use std::io::{Sink, Write};

use crate::oci::HashingWriter;

/// One entry's description and, for a file, its content hash once known.
struct Line {
    text: Vec<u8>,
    hash: Option<String>,
    /// False for a file until its hashing thread reports.
    done: bool,
}

/// Entry lines in walk order, written to the hash as soon as all before them are.
pub(super) struct OrderedLines {
    held: VecDeque<Line>,
    /// The walk index of `held`'s front.
    base: usize,
    out: HashingWriter<Sink>,
}

impl OrderedLines {
    pub fn new() -> OrderedLines {
        OrderedLines { held: VecDeque::new(), base: 0, out: HashingWriter::new(std::io::sink()) }
    }

    /// Adds an entry's line, with its content hash when already known; `done` when
    /// nothing more will be added to it. Returns its walk index.
    pub fn push(&mut self, text: Vec<u8>, hash: Option<String>, done: bool) -> usize {
        self.held.push_back(Line { text, hash, done });
        let index = self.base + self.held.len() - 1;
        self.write_ready();
        index
    }

    /// Completes the file at `index`: its xattr text, a `\0`, and its content hash.
    pub fn complete(&mut self, index: usize, xattrs: &[u8], hash: String) {
        let line = &mut self.held[index - self.base];
        line.text.extend_from_slice(xattrs);
        line.text.push(0);
        line.hash = Some(hash);
        line.done = true;
        self.write_ready();
    }

    /// True when no entry is waiting for its file's hash.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The digest of every line, in walk order.
    pub fn finish(self) -> String {
        assert!(self.held.is_empty(), "every file hashed before the digest is taken");
        self.out.finish().1.hex().to_string()
    }

    fn write_ready(&mut self) {
        while self.held.front().is_some_and(|l| l.done) {
            let line = self.held.pop_front().expect("front checked");
            self.base += 1;
            // A hashing writer over a sink cannot fail.
            let _ = self.out.write_all(&line.text);
            if let Some(h) = &line.hash {
                let _ = self.out.write_all(h.as_bytes());
            }
            let _ = self.out.write_all(b"\0");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(text: &[u8]) -> String {
        let mut out = HashingWriter::new(std::io::sink());
        out.write_all(text).unwrap();
        out.finish().1.hex().to_string()
    }

    #[test]
    fn lines_are_hashed_in_walk_order_and_only_waiting_ones_are_held() {
        let mut lines = OrderedLines::new();
        let dir = lines.push(b"d\0".to_vec(), None, true);
        let a = lines.push(b"a\0".to_vec(), None, false);
        let b = lines.push(b"b\0".to_vec(), None, false);
        assert_eq!((dir, a, b), (0, 1, 2));
        assert_eq!(lines.held.len(), 2, "the directory before the first file is hashed already");
        lines.complete(b, b"x", "hb".into());
        assert_eq!(lines.held.len(), 2, "b waits for a");
        lines.complete(a, b"", "ha".into());
        assert!(lines.is_empty());
        lines.push(b"s\0\0".to_vec(), Some("hs".into()), true);
        assert_eq!(lines.finish(), digest_of(b"d\0\0a\0\0ha\0b\0x\0hb\0s\0\0hs\0"));
    }
}
