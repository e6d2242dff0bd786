//! Two images' final trees compared path by path (`strata diff IMAGE IMAGE`):
//! while the layers stream by, each path's type, mode, owner, times, size, link
//! target, PAX records (xattrs among them) and content are reduced to a
//! fingerprint, so the comparison holds no content.

use std::cmp::Ordering;
use std::io::Write;

use anyhow::{Context, Result};

use super::{entry_facts, layer_sources, read_entries, Entry, Visible};
use crate::oci::{Digest, HashingWriter, Store};

/// The tree `manifest`'s image shows, each path with its fingerprint.
pub fn final_tree(store: &Store, manifest: &Digest) -> Result<Visible> {
    let mut visible = Visible::default();
    for (i, source) in layer_sources(store, manifest)?.iter().enumerate() {
        read_entries(store, &source.descriptor, |entry| {
            let (name, size, dir) = entry_facts(entry);
            let print = fingerprint(entry).with_context(|| format!("reading {name}"))?;
            visible.apply(i, &name, size, dir, print);
            Ok(())
        })
        .with_context(|| format!("layer {} of the image", i + 1))?;
    }
    Ok(visible)
}

/// SHA-256 of everything that makes the entry what it is but its name, cut to 64 bits.
fn fingerprint(entry: &mut Entry<'_>) -> Result<u64> {
    let mut hash = HashingWriter::new(std::io::sink());
    let h = entry.header();
    let fields = [u64::from(h.entry_type().as_byte()), u64::from(h.mode()?), h.uid()?, h.gid()?, h.mtime()?, h.size()?];
    for f in fields {
        hash.write_all(&f.to_le_bytes())?;
    }
    hash.write_all(&entry.link_name_bytes().unwrap_or_default())?;
    if let Some(records) = entry.pax_extensions()? {
        for record in records {
            let record = record?;
            // Names are what the paths already say; everything else (times,
            // owners, xattrs) counts.
            if !matches!(record.key_bytes(), b"path" | b"linkpath") {
                hash.write_all(record.key_bytes())?;
                hash.write_all(record.value_bytes())?;
            }
        }
    }
    std::io::copy(entry, &mut hash)?;
    let (_, digest, _) = hash.finish();
    Ok(u64::from_str_radix(&digest.hex()[..16], 16).expect("hex digits"))
}

/// `from` against `to`: `A` for a path only `to` has, `D` for one only `from`
/// has, `C` for one whose fingerprint or type differs; sorted by path.
pub fn compare(from: &Visible, to: &Visible) -> Vec<(char, String)> {
    let mut out = Vec::new();
    let (mut a, mut b) = (from.paths().peekable(), to.paths().peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((pa, _)), Some((pb, _))) => pa.cmp(pb),
        };
        let (kind, path) = match order {
            Ordering::Less => ('D', a.next().expect("peeked").0),
            Ordering::Greater => ('A', b.next().expect("peeked").0),
            Ordering::Equal => {
                let ((path, x), (_, y)) = (a.next().expect("peeked"), b.next().expect("peeked"));
                if (x.print, x.dir) == (y.print, y.dir) {
                    continue;
                }
                ('C', path)
            }
        };
        if !path.is_empty() {
            out.push((kind, format!("/{path}")));
        }
    }
    out
}
