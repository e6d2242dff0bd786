//! File content hashes remembered between builds (`cache/hash-memo.bin`), so a
//! rebuild describes an unchanged context file from its status alone.
//!
//! The memo holds an entry per file a build of the store hashed in the last
//! [`KEEP_DAYS`] days, so it is kept compact: 76-byte binary records on disk, read
//! and written streaming, and about 100 bytes a file in memory. The JSON memo it
//! replaces took about 200 bytes a file in memory and as much again as text while
//! loading and saving, the larger part of a 200k-file no-op rebuild's 86 MiB. An
//! unreadable memo, or the old JSON one, is an empty memo: it only costs hashing
//! again.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use nix::sys::stat::FileStat;

use crate::durable::{self, Mode};
use crate::oci::hex_of;

/// The first bytes of the memo file; a file without them is not read.
const MAGIC: &[u8] = b"strata hash memo 1\n";
/// Bytes per record: the key's five fields, the 32-byte SHA-256, and the day the
/// entry was last used.
const RECORD: usize = 76;
/// Entries unused this many days are dropped when the memo is saved: without
/// that, every file any build ever hashed, deleted ones too, would stay for good.
/// A context not built for that long is hashed once again.
const KEEP_DAYS: u32 = 30;
/// Files changed this recently are not remembered (see [`Memo`]).
const SETTLE_NS: i64 = 3_000_000_000;

/// What identifies a file's content without reading it: device, inode, size, and
/// both mtime and ctime in nanoseconds. ctime cannot be set by users (touch -d
/// changes mtime only, and bumps ctime), so an edit that restores size and mtime
/// still changes the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    ctime: i64,
}

impl MemoKey {
    pub fn of(st: &FileStat) -> MemoKey {
        // i64 nanoseconds last until 2262; a time past that saturates, which can
        // only make two such files share a key if size and inode agree too.
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        MemoKey {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: ns(st.st_mtime, st.st_mtime_nsec),
            ctime: ns(st.st_ctime, st.st_ctime_nsec),
        }
    }

    fn record(&self, (hash, day): &Entry) -> [u8; RECORD] {
        let mut r = [0u8; RECORD];
        r[0..8].copy_from_slice(&self.dev.to_le_bytes());
        r[8..16].copy_from_slice(&self.ino.to_le_bytes());
        r[16..24].copy_from_slice(&self.size.to_le_bytes());
        r[24..32].copy_from_slice(&self.mtime.to_le_bytes());
        r[32..40].copy_from_slice(&self.ctime.to_le_bytes());
        r[40..72].copy_from_slice(hash);
        r[72..].copy_from_slice(&day.to_le_bytes());
        r
    }

    fn from_record(r: &[u8; RECORD]) -> (MemoKey, Entry) {
        let u = |at: usize| u64::from_le_bytes(r[at..at + 8].try_into().expect("8 bytes"));
        let key = MemoKey { dev: u(0), ino: u(8), size: u(16), mtime: u(24) as i64, ctime: u(32) as i64 };
        let day = u32::from_le_bytes(r[72..].try_into().expect("4 bytes"));
        (key, (r[40..72].try_into().expect("32 bytes"), day))
    }
}

/// A remembered content hash, and the day (since the epoch) it was last used.
type Entry = ([u8; 32], u32);

/// The memo. It can only skip reading a file whose identity is unchanged, and
/// files changed in the last few seconds are never remembered: the kernel's coarse
/// clock could give a second edit within the same tick the same times ("racy git").
pub struct Memo {
    path: PathBuf,
    map: Mutex<HashMap<MemoKey, Entry>>,
    dirty: AtomicBool,
    /// Days since the epoch, when the memo was loaded.
    today: u32,
}

impl Memo {
    /// Loads the memo of the store at `root` (empty when absent or unreadable).
    pub fn load(root: &Path) -> Memo {
        let path = root.join("cache").join("hash-memo.bin");
        // Sized from the file: growing a large map by doubling holds two at once.
        let records = fs::metadata(&path).map_or(0, |m| m.len() as usize / RECORD);
        let mut map = HashMap::with_capacity(records);
        read_records(&path, |key, entry| {
            map.insert(key, entry);
        });
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Memo { path, map: Mutex::new(map), dirty: AtomicBool::new(false), today: (secs / 86_400) as u32 }
    }

    /// The remembered content hash of the file `key` names, as hex. Marks the entry
    /// used today, so a memo in daily use is written at most once a day for it.
    pub fn get(&self, key: &MemoKey) -> Option<String> {
        let mut map = self.map.lock().ok()?;
        let (hash, day) = map.get_mut(key)?;
        if *day != self.today {
            *day = self.today;
            self.dirty.store(true, Ordering::Relaxed);
        }
        Some(hex_of(&hash[..]))
    }

    /// Remembers `digest` (hex SHA-256) for a file that has settled.
    pub fn remember(&self, key: &MemoKey, digest: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
        if now.saturating_sub(key.ctime.max(key.mtime)) < SETTLE_NS {
            return;
        }
        self.learn(key, digest);
    }

    /// Remembers `digest` whatever the file's age (tests teach the memo with it).
    pub(super) fn learn(&self, key: &MemoKey, digest: &str) {
        let Some(hash) = unhex(digest) else { return };
        if let Ok(mut m) = self.map.lock() {
            m.insert(*key, (hash, self.today));
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Writes the memo back if it learned anything (best effort: a memo that cannot be
    /// written only costs hashing again). Builds share one memo, so the file on disk is
    /// read again under a lock and this build's entries merged into it: writing only
    /// what was loaded at the start would drop what a concurrent build learned.
    pub fn save(&self) {
        // Cleared first: what is remembered from here on marks the memo again.
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let Ok(lock_file) = fs::OpenOptions::new().create(true).append(true).open(self.path.with_extension("lock")) else { return };
        let Ok(_lock) = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive) else { return };
        let Ok(tmp) = durable::temp_beside(&self.path, Mode::Umask) else { return };
        // Merged into the map itself, so a memo of many files is held once. The
        // records go to the temp file's page cache under the map's lock; the fsync
        // waits outside it, so hashing threads of stages building beside this one
        // wait only for the merge and the copy.
        let written = {
            let Ok(mut map) = self.map.lock() else { return };
            read_records(&self.path, |key, (hash, day)| {
                let ours = map.entry(key).or_insert((hash, day));
                ours.1 = ours.1.max(day);
            });
            map.retain(|_, (_, day)| self.today.saturating_sub(*day) <= KEEP_DAYS);
            write_records(tmp.as_file(), &map)
        };
        if written.is_ok() && durable::persist(tmp, &self.path, Mode::Umask, || {}).is_ok() {
            // The JSON memo of earlier versions, never read again.
            let _ = fs::remove_file(self.path.with_extension("json"));
        }
    }
}

/// Calls `each` for every record of the memo file at `path`; nothing when the
/// file is missing or not a memo, and stops at a torn record.
fn read_records(path: &Path, mut each: impl FnMut(MemoKey, Entry)) {
    let Ok(file) = File::open(path) else { return };
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut magic = [0u8; MAGIC.len()];
    if r.read_exact(&mut magic).is_err() || magic != MAGIC {
        return;
    }
    let mut record = [0u8; RECORD];
    while r.read_exact(&mut record).is_ok() {
        let (key, entry) = MemoKey::from_record(&record);
        each(key, entry);
    }
}

fn write_records(file: &File, map: &HashMap<MemoKey, Entry>) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 16, file);
    w.write_all(MAGIC)?;
    for (key, entry) in map {
        w.write_all(&key.record(entry))?;
    }
    w.flush()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const DEF: &str = "cb8379ac2098aa165029e3938a51da0bcecfc008fd6795f401178647f96c5b34";

    fn store() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("cache")).unwrap();
        d
    }

    #[test]
    fn memo_remembers_only_settled_files_and_keys_on_ctime() {
        let d = store();
        let memo = Memo::load(d.path());
        let old = MemoKey { dev: 1, ino: 2, size: 3, mtime: 1_000_000_000, ctime: 1_000_000_000 };
        memo.remember(&old, ABC);
        assert_eq!(memo.get(&old).as_deref(), Some(ABC));
        let touched = MemoKey { ctime: 2_000_000_000, ..old };
        assert_eq!(memo.get(&touched), None, "a changed ctime is another key");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
        let fresh = MemoKey { ctime: now, mtime: now, ..old };
        memo.remember(&fresh, DEF);
        assert_eq!(memo.get(&fresh), None, "files changed just now are never remembered");
        memo.save();
        assert_eq!(Memo::load(d.path()).get(&old).as_deref(), Some(ABC), "saved and loaded");
    }

    #[test]
    fn concurrent_builds_keep_each_others_memo_entries() {
        let d = store();
        let (one, two) = (Memo::load(d.path()), Memo::load(d.path()));
        let a = MemoKey { dev: 1, ino: 2, size: 3, mtime: 1_000_000_000, ctime: 1_000_000_000 };
        let b = MemoKey { ino: 3, ..a };
        one.remember(&a, ABC);
        two.remember(&b, DEF);
        one.save();
        two.save();
        let back = Memo::load(d.path());
        assert_eq!(back.get(&a).as_deref(), Some(ABC), "the first build's entry survives the second's save");
        assert_eq!(back.get(&b).as_deref(), Some(DEF));
    }

    #[test]
    fn a_file_that_is_not_a_memo_is_an_empty_memo_and_is_replaced() {
        let d = store();
        let path = d.path().join("cache/hash-memo.bin");
        fs::write(&path, b"[[{\"dev\":1}]]").unwrap();
        fs::write(d.path().join("cache/hash-memo.json"), b"[]").unwrap();
        let memo = Memo::load(d.path());
        let key = MemoKey { dev: 7, ino: 8, size: 9, mtime: -1, ctime: i64::MAX };
        assert_eq!(memo.get(&key), None);
        memo.learn(&key, ABC);
        memo.learn(&MemoKey { ino: 9, ..key }, "not hex");
        memo.save();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), MAGIC.len() + RECORD, "one record: the bad digest was not learned");
        assert_eq!(Memo::load(d.path()).get(&key).as_deref(), Some(ABC), "negative and extreme times round-trip");
        assert_eq!(unhex(ABC).map(|h| hex_of(&h)).as_deref(), Some(ABC));
        assert!(!d.path().join("cache/hash-memo.json").exists(), "the old JSON memo is removed");
        // A torn last record is dropped, the whole ones before it kept.
        let other = MemoKey { ino: 10, ..key };
        memo.learn(&other, DEF);
        memo.save();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let torn = Memo::load(d.path());
        assert_eq!([torn.get(&key), torn.get(&other)].iter().flatten().count(), 1, "one whole record left");
    }

    #[test]
    fn entries_unused_for_a_month_are_dropped_and_used_ones_kept() {
        let d = store();
        let key = |ino| MemoKey { dev: 1, ino, size: 3, mtime: 1_000_000_000, ctime: 1_000_000_000 };
        let mut then = Memo::load(d.path());
        then.today -= KEEP_DAYS + 5;
        then.learn(&key(1), ABC);
        then.learn(&key(2), DEF);
        then.save();
        let now = Memo::load(d.path());
        assert_eq!(now.map.lock().unwrap().len(), 2, "loaded whatever their age");
        assert_eq!(now.get(&key(2)).as_deref(), Some(DEF), "used today");
        now.save();
        let after = Memo::load(d.path());
        assert_eq!(after.get(&key(1)), None, "unused for 35 days: dropped");
        assert_eq!(after.get(&key(2)).as_deref(), Some(DEF), "its use today kept it");
        // A concurrent build's older view of an entry does not age it.
        then.learn(&key(3), ABC);
        then.save();
        assert_eq!(Memo::load(d.path()).get(&key(2)).as_deref(), Some(DEF));
    }
}
