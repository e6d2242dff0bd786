//! Sparse entries and entries naming the layer root, unpacked from hand-made tars.

use std::fs;
use std::os::unix::fs::MetadataExt;

use tar::EntryType;

use super::*;

fn opts() -> UnpackOptions {
    UnpackOptions { opaque_xattr: "user.overlay.opaque".into(), owners: crate::owner::Owners::Real, warn: crate::rootfs::Warn::ignore() }
}

fn pad(out: &mut Vec<u8>) {
    let n = (512 - out.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, n));
}

/// An old-GNU sparse entry ('S'): `extents` are (offset, data) pairs, all but the last
/// a multiple of 512 bytes long; the map ends with a zero-length extent at `size`.
pub(super) fn sparse_tar(name: &str, size: u64, extents: &[(u64, &[u8])]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_uid(nix::unistd::geteuid().as_raw() as u64);
    h.set_gid(nix::unistd::getegid().as_raw() as u64);
    let data: usize = extents.iter().map(|(_, d)| d.len()).sum();
    h.set_size(data as u64);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.set_real_size(size);
    let map: Vec<(u64, u64)> = extents.iter().map(|(o, d)| (*o, d.len() as u64)).chain([(size, 0)]).collect();
    assert!(map.len() <= 4, "the test builder has no extension headers");
    for (slot, (off, len)) in gnu.sparse.iter_mut().zip(&map) {
        slot.set_offset(*off);
        slot.set_length(*len);
    }
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    for (_, d) in extents {
        out.extend_from_slice(d);
    }
    pad(&mut out);
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

#[test]
fn a_small_sparse_file_keeps_its_data_and_holes() {
    let d = tempfile::tempdir().unwrap();
    let head = [b'a'; 512];
    let t = sparse_tar("s", 3 << 20, &[(0, &head), (1 << 20, b"xyz")]);
    unpack(&t[..], d.path(), &opts()).unwrap();
    let content = fs::read(d.path().join("s")).unwrap();
    assert_eq!(content.len(), 3 << 20);
    assert_eq!(&content[..512], &head[..]);
    assert!(content[512..1 << 20].iter().all(|&b| b == 0), "the first hole reads as zeros");
    assert_eq!(&content[1 << 20..(1 << 20) + 3], b"xyz");
    assert!(content[(1 << 20) + 3..].iter().all(|&b| b == 0), "the trailing hole reads as zeros");
    let blocks = fs::metadata(d.path().join("s")).unwrap().blocks() * 512;
    assert!(blocks < 1 << 20, "holes take no disk: {blocks} bytes allocated for 3 MiB");
}

#[test]
fn a_huge_declared_sparse_file_takes_a_few_blocks() {
    let d = tempfile::tempdir().unwrap();
    let size = 50u64 << 30;
    let t = sparse_tar("huge", size, &[(size - 512, &[b'z'; 512])]);
    assert!(t.len() < 4096, "the layer is {} bytes", t.len());
    unpack(&t[..], d.path(), &opts()).unwrap();
    let m = fs::metadata(d.path().join("huge")).unwrap();
    assert_eq!(m.len(), size);
    assert!(m.blocks() * 512 <= 64 << 10, "a 2 KB layer allocated {} bytes", m.blocks() * 512);
}

#[test]
fn a_sparse_file_beyond_the_bound_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let t = sparse_tar("toobig", MAX_SPARSE_SIZE + 1, &[(0, b"x")]);
    let err = unpack(&t[..], d.path(), &opts()).unwrap_err();
    assert!(err.to_string().contains("toobig") && err.to_string().contains("exceeds"), "{err}");
    assert!(!d.path().join("toobig").exists());
}

#[test]
fn a_sparse_map_claiming_more_data_than_the_archive_holds_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut t = sparse_tar("short", 1 << 30, &[(0, &[b'q'; 1024])]);
    t.truncate(512 + 512); // the header and half the data, no end blocks
    let err = unpack(&t[..], d.path(), &opts()).unwrap_err();
    assert!(err.to_string().contains("short"), "{err}");
}

#[test]
fn pax_sparse_files_are_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let rec = b"22 GNU.sparse.major=1\n";
    let mut pax = tar::Header::new_ustar();
    pax.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
    pax.set_entry_type(EntryType::XHeader);
    pax.set_size(rec.len() as u64);
    pax.set_cksum();
    let mut t = pax.as_bytes().to_vec();
    t.extend_from_slice(rec);
    pad(&mut t);
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..20].copy_from_slice(b"GNUSparseFile.0/data");
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h.set_cksum();
    t.extend_from_slice(h.as_bytes());
    t.extend(std::iter::repeat_n(0u8, 1024));
    let err = unpack(&t[..], d.path(), &opts()).unwrap_err();
    assert!(err.to_string().contains("GNUSparseFile.0/data") && err.to_string().contains("PAX sparse"), "{err}");
}

/// umoci's CVE-2021-29136: a root entry (`.`, `./`) that is a symlink would, applied
/// naively, make every later entry land where it points.
#[test]
fn a_root_entry_that_is_not_a_directory_is_refused() {
    for name in [".", "./", "/"] {
        let outside = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        let link = outside.path().to_str().unwrap().as_bytes();
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_cksum();
        let mut t = h.as_bytes().to_vec();
        let mut f = tar::Header::new_gnu();
        f.as_old_mut().name[..5].copy_from_slice(b"pwned");
        f.set_entry_type(EntryType::Regular);
        f.set_mode(0o644);
        f.set_size(1);
        f.set_cksum();
        t.extend_from_slice(f.as_bytes());
        t.push(b'x');
        pad(&mut t);
        t.extend(std::iter::repeat_n(0u8, 1024));
        let err = unpack(&t[..], d.path(), &opts()).unwrap_err();
        assert!(err.to_string().contains("layer root"), "{name}: {err}");
        assert!(!outside.path().join("pwned").exists(), "{name}: a file was written through the root symlink");
        assert!(fs::symlink_metadata(d.path()).unwrap().is_dir());
    }
}
