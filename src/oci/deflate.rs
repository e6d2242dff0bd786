//! One buffer as one gzip member, through libdeflate: the compressor every gzip
//! layer member is made with (`pgzip`), and whose output on a fixed probe names it
//! in member indexes (`member_index`). libdeflate compresses a whole buffer at once,
//! which is what a 1 MiB member is, faster than a streaming zlib at the same level
//! and size.

use std::cell::RefCell;
use std::io;

use libdeflater::{CompressionLvl, Compressor};

thread_local! {
    /// This thread's libdeflate compressors, by level: its match-finder tables are
    /// allocated once per worker, not once per chunk.
    static COMPRESSORS: RefCell<Vec<(u32, Compressor)>> = const { RefCell::new(Vec::new()) };
}

/// `data` as one gzip member, into `out` (its capacity reused): libdeflate writes
/// a header with no name, mtime 0 and OS "unknown", so the bytes depend only on
/// `data` and `level` (0-9; 0 stores).
pub(crate) fn deflate_gzip(data: &[u8], level: u32, out: &mut Vec<u8>) -> io::Result<()> {
    COMPRESSORS.with_borrow_mut(|made| {
        let at = match made.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                let lvl = CompressionLvl::new(level.min(9) as i32).map_err(|_| io::Error::other(format!("gzip level {level}")))?;
                made.push((level, Compressor::new(lvl)));
                made.len() - 1
            }
        };
        let compressor = &mut made[at].1;
        out.clear();
        out.resize(compressor.gzip_compress_bound(data.len()), 0);
        let n = compressor.gzip_compress(data, out).map_err(|e| io::Error::other(format!("gzip: {e:?}")))?;
        out.truncate(n);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_member_has_a_fixed_header_and_round_trips_at_every_level() {
        let data = b"strata layer bytes ".repeat(4000);
        for level in [0, 1, 6, 9] {
            let mut member = Vec::new();
            deflate_gzip(&data, level, &mut member).unwrap();
            // Magic, deflate, no flags, mtime 0, then the OS byte: "unknown".
            assert_eq!(&member[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0], "level {level}");
            assert_eq!(member[9], 255, "level {level}");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&member[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "level {level}");
            assert_eq!(member.len() > data.len(), level == 0, "level 0 stores, the others compress");
        }
    }
}
