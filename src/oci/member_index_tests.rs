//! Member reuse: indexes, candidates, and layers written with one.

use super::*;
use crate::oci::pgzip::{compress_member, produce, CHUNK_SIZE as CHUNK};

fn entry(n: u8, offset: u64, len: u64) -> MemberEntry {
    MemberEntry { hash: [n; 32], chunk_len: 1 << 20, offset, len }
}

#[test]
fn an_index_round_trips_only_for_its_own_level_and_without_gaps() {
    let entries = vec![entry(1, 0, 100), entry(2, 100, 50)];
    let bytes = encode(6, &entries);
    assert_eq!(decode(&bytes, 6), Some(entries.clone()));
    assert_eq!(decode(&bytes, 9), None, "another level compresses to other bytes");
    assert_eq!(decode(&bytes[..bytes.len() - 1], 6), None, "a torn record");
    let gap = encode(6, &[entry(1, 0, 100), entry(2, 101, 50)]);
    assert_eq!(decode(&gap, 6), None);
}

#[test]
fn a_copied_member_equals_a_compressed_one_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let chunk = b"some text to compress ".repeat(1000);
    let other = b"other text, same idea ".repeat(1000);
    let (a, b) = (compress_member(&chunk, 6).unwrap(), compress_member(&other, 6).unwrap());
    let blob = store.put_blob(&[a.clone(), b.clone()].concat()[..]).unwrap().digest;
    let hash = |c: &[u8]| produce(c, 6, None).unwrap().hash;
    let honest = [
        MemberEntry { hash: hash(&chunk), chunk_len: chunk.len() as u64, offset: 0, len: a.len() as u64 },
        MemberEntry { hash: hash(&other), chunk_len: other.len() as u64, offset: a.len() as u64, len: b.len() as u64 },
    ];
    store.save_member_index(&blob, 6, &honest);
    let cand = Candidate::open(&store, &blob, 6).expect("index and blob agree");
    let p = produce(&other, 6, Some(&cand)).unwrap();
    assert!(p.reused);
    assert_eq!(p.member, b);
    assert!(Candidate::open(&store, &blob, 1).is_none(), "another level is never a candidate");

    // An index that swaps the hashes points each chunk at the other's member.
    let mut lying = honest.clone();
    (lying[0].hash, lying[1].hash) = (honest[1].hash, honest[0].hash);
    (lying[0].chunk_len, lying[1].chunk_len) = (honest[1].chunk_len, honest[0].chunk_len);
    fs::write(store.member_index_path(&blob), encode(6, &lying)).unwrap();
    let cand = Candidate::open(&store, &blob, 6).unwrap();
    let p = produce(&other, 6, Some(&cand)).unwrap();
    assert!(!p.reused, "the trailer's CRC does not match: compressed instead");
    assert_eq!(p.member, b);
}

/// A compressible pseudo-random layer stream: words from a small alphabet.
fn stream(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b"abcdefgh \n"[(x % 10) as usize]
        })
        .collect()
}

fn write(store: &Store, data: &[u8], candidate: Option<&Digest>) -> crate::oci::LayerBlob {
    store.write_layer_reusing(crate::oci::LayerCompression::default(), candidate, |w| w.write_all(data)).unwrap()
}

#[test]
fn a_layer_with_one_changed_chunk_copies_the_others_and_equals_a_cold_write() {
    let (warm_dir, cold_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (warm, cold) = (Store::open(warm_dir.path()).unwrap(), Store::open(cold_dir.path()).unwrap());
    let first = stream(5 * CHUNK + 12_345);
    let mut second = first.clone();
    second[2 * CHUNK + 777..2 * CHUNK + 790].copy_from_slice(b"edited bytes!");
    let old = write(&warm, &first, None);
    assert_eq!(old.members, MemberStats { members: 6, reused: 0 });
    let new = write(&warm, &second, Some(&old.digest));
    assert_eq!(new.members, MemberStats { members: 6, reused: 5 }, "all but the edited chunk are copied");
    let fresh = write(&cold, &second, None);
    assert_eq!(crate::oci::LayerBlob { members: new.members, ..fresh.clone() }, new);
    assert_eq!(fs::read(warm.blob_path(&new.digest)).unwrap(), fs::read(cold.blob_path(&fresh.digest)).unwrap());
    assert!(warm.verify_blob(&new.digest).is_ok());
    // The reused layer's own index is written too: a third build copies from it.
    let again = write(&warm, &first, Some(&new.digest));
    assert_eq!(again.members.reused, 5);
    assert_eq!(again.digest, old.digest);
}

#[test]
fn a_lying_index_or_a_missing_candidate_still_gives_the_cold_blob() {
    let (warm_dir, cold_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (warm, cold) = (Store::open(warm_dir.path()).unwrap(), Store::open(cold_dir.path()).unwrap());
    let first = stream(4 * CHUNK);
    let mut second = first.clone();
    second[3 * CHUNK + 5] ^= 1;
    let old = write(&warm, &first, None);
    // Swap the first two records' hashes: each chunk is pointed at the other's member.
    let path = warm.member_index_path(&old.digest);
    let mut entries = decode(&fs::read(&path).unwrap(), crate::oci::LAYER_COMPRESSION_LEVEL).unwrap();
    let h0 = entries[0].hash;
    entries[0].hash = entries[1].hash;
    entries[1].hash = h0;
    fs::write(&path, encode(crate::oci::LAYER_COMPRESSION_LEVEL, &entries)).unwrap();
    let new = write(&warm, &second, Some(&old.digest));
    let fresh = write(&cold, &second, None);
    assert_eq!(new.digest, fresh.digest);
    assert_eq!(new.members, MemberStats { members: 4, reused: 1 }, "only the honest, unchanged record is copied");
    // A candidate that is not in the store (pruned) is no candidate at all.
    let missing = Digest::of_bytes(b"not a blob");
    assert_eq!(write(&warm, &first, Some(&missing)).members.reused, 0);
}

#[test]
fn indexes_of_removed_blobs_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kept = store.put_blob(&b"kept"[..]).unwrap().digest;
    let gone = Digest::of_bytes(b"gone");
    store.save_member_index(&kept, 6, &[]);
    store.save_member_index(&gone, 6, &[]);
    store.retain_member_indexes();
    assert!(store.member_index_path(&kept).exists());
    assert!(!store.member_index_path(&gone).exists());
}
