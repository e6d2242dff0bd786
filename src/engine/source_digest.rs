//! The digest of COPY's context sources for the build cache.
//!
//! The digest reads the context the way the copy does: through
//! [`crate::rootfs::DirFd`], one component at a time, never following a
//! symlink and never opening anything but a regular file (O_NONBLOCK). A context
//! directory swapped for a symlink or a FIFO between matching and hashing is then
//! refused or skipped, never read: the digest ends up in a cache key that
//! `--cache-to` pushes, so hashing a host file would leak that file's hash, and
//! opening a FIFO would hang the build.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use nix::fcntl::AtFlags;
use nix::sys::stat::{fstat, fstatat, FileStat, SFlag};

use crate::dockerfile::Ignore;
use crate::oci::HashingWriter;
use crate::rootfs::{file_type, DirFd, Entry};

use super::hash_memo::{Memo, MemoKey};
use super::ordered_lines::OrderedLines;

/// A file whose xattrs and content a hashing thread reads: its item's index, the
/// descriptor the walk opened and checked, its memo key and its path (for messages).
type Job = (usize, File, MemoKey, PathBuf);

/// What a hashing thread found of a file: its item's index, its xattr text, and its
/// content hash.
type Hashed = (usize, Vec<u8>, Result<String>);

/// A digest of the files below `root` at `paths` (relative, already matched, every
/// symlink on the way resolved): everything COPY keeps of them. Per entry: name,
/// type and mode bits, device number, link target, the first name of its hard-link
/// group, non-private xattrs, and content. Owners are not covered: COPY sets them
/// from `--chown` (part of the step's expanded words) or to root. Nor are mtimes,
/// as in BuildKit: a checkout that only touches files keeps its hits. Every field
/// ends in `\0`, so no two different trees give the same text. Content is always
/// read (in parallel, up to one thread per core, while the walk goes on) unless the
/// memo knows the file, so a change that keeps size and mtime is seen. The walk
/// opens and checks entries; the threads read a file's xattrs and content (a file
/// the memo knows is described by the walk without being opened).
pub fn content_digest(root: &Path, paths: &[PathBuf], ignore: &Ignore, memo: &Memo) -> Result<String> {
    let _key = crate::trace::span(crate::trace::Phase::Key);
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
    // Bounded: at most this many batches of files are open and waiting at any
    // time, far below the descriptor limit whatever the size of the context.
    let (tx, rx) = sync_channel::<Vec<Job>>(workers);
    let rx = Mutex::new(rx);
    let (done_tx, done) = channel::<Vec<Hashed>>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            scope.spawn(|| hash_jobs(&rx, memo, done_tx));
        }
        // Only the threads hold senders now, so the walk sees when all have ended.
        drop(done_tx);
        let walk =
            Walk { root, ignore, memo, tx: Some(tx), batch: Vec::new(), done, lines: OrderedLines::new(), link_groups: Default::default() };
        walk.all(root, paths)
    })
}

/// A hashing thread: takes batches of files until the walk is done, and sends
/// back each batch's hashes; content from the memo when it knows the file.
fn hash_jobs(rx: &Mutex<Receiver<Vec<Job>>>, memo: &Memo, done: Sender<Vec<Hashed>>) {
    loop {
        let batch = rx.lock().map_err(|_| ()).and_then(|r| r.recv().map_err(|_| ()));
        let Ok(batch) = batch else { break };
        let mut out = Vec::with_capacity(batch.len());
        for (i, mut file, key, path) in batch {
            let digest = match memo.get(&key) {
                Some(known) => Ok(known),
                None => file_digest(&mut file, &path).inspect(|d| memo.remember(&key, d)),
            };
            out.push((i, xattr_text(&file), digest));
        }
        if done.send(out).is_err() {
            break;
        }
    }
}

/// Files per hand-over to a hashing thread.
const BATCH: usize = 32;

/// The walk of the sources: entries in order, files handed to the hashing threads.
struct Walk<'a> {
    /// The context, for messages.
    root: &'a Path,
    ignore: &'a Ignore,
    memo: &'a Memo,
    /// To the hashing threads; None once the walk is over.
    tx: Option<SyncSender<Vec<Job>>>,
    /// Files not sent yet: one send per batch keeps the threads' hand-over cheap.
    batch: Vec<Job>,
    /// From the hashing threads: what they found of each batch.
    done: Receiver<Vec<Hashed>>,
    /// Per entry: its description, and its content hash (files only). A file's
    /// description lacks its xattrs until its hashing thread reports them.
    lines: OrderedLines,
    /// (dev, inode) of multiply-linked files -> the name first seen.
    link_groups: std::collections::HashMap<(u64, u64), Vec<u8>>,
}

impl Walk<'_> {
    /// Walks every source, then waits for the files' hashes; returns the digest.
    /// On an error the sender is dropped with the walk, which ends the threads.
    fn all(mut self, root: &Path, paths: &[PathBuf]) -> Result<String> {
        let dir = DirFd::open_root(root)?;
        for top in paths {
            self.source(&dir, top)?;
        }
        self.flush()?;
        self.tx = None;
        while !self.lines.is_empty() {
            let batch = self.done.recv().context("hashing threads stopped")?;
            self.complete(batch)?;
        }
        Ok(self.lines.finish())
    }

    /// Adds what a hashing thread found to the lines it completes.
    fn complete(&mut self, batch: Vec<Hashed>) -> Result<()> {
        for (i, xattrs, digest) in batch {
            self.lines.complete(i, &xattrs, digest?);
        }
        Ok(())
    }

    /// One matched source, opened as the copy opens it: a symlink now means the
    /// context changed since matching (which resolved them all).
    fn source(&mut self, root: &DirFd, top: &Path) -> Result<()> {
        let entry = match top.file_name() {
            Some(name) => root.open_below(top.parent().unwrap_or(Path::new("")))?.open_entry(name)?,
            None => {
                let dir = root.open_below(top)?;
                let st = fstat(dir.fd()).with_context(|| format!("reading {}", dir.path().display()))?;
                Entry::Dir(dir, st)
            }
        };
        if matches!(entry, Entry::Symlink(..)) {
            bail!("COPY source {}: changed while being read (now a symlink); refusing to follow it", root.path().join(top).display());
        }
        self.entry(top, entry)
    }

    /// Describes one opened entry, queues a file's content, walks a directory.
    fn entry(&mut self, rel: &Path, entry: Entry) -> Result<()> {
        let st: FileStat = *entry.stat();
        let target = match &entry {
            Entry::Symlink(target, _) => Some(target.as_path()),
            _ => None,
        };
        let mut line = self.describe(rel, &st, target);
        // A file's xattrs and their `\0` follow from its hashing thread. The copy
        // skips devices, fifos and sockets, and a symlink has no xattrs of its own
        // that COPY keeps.
        if let Entry::Dir(d, _) = &entry {
            line.extend_from_slice(&xattr_text(d.file()));
        }
        let is_file = matches!(entry, Entry::File(..));
        if !is_file {
            line.push(0);
        }
        let index = self.lines.push(line, None, !is_file);
        match entry {
            Entry::File(file, _) => {
                self.batch.push((index, file, MemoKey::of(&st), self.root.join(rel)));
                if self.batch.len() >= BATCH {
                    self.flush()?;
                }
            }
            Entry::Dir(dir, _) => self.dir_contents(&dir, rel)?,
            Entry::Symlink(..) | Entry::Other(_) => {}
        }
        Ok(())
    }

    /// An entry's description up to its xattrs.
    fn describe(&mut self, rel: &Path, st: &FileStat, target: Option<&Path>) -> Vec<u8> {
        let name = rel.as_os_str().as_encoded_bytes().to_vec();
        let mut line = name.clone();
        line.push(0);
        line.extend_from_slice(format!("{:o}\0{}\0", st.st_mode, st.st_rdev).as_bytes());
        if let Some(target) = target {
            line.extend_from_slice(target.as_os_str().as_encoded_bytes());
        }
        line.push(0);
        if file_type(st) == SFlag::S_IFREG && st.st_nlink > 1 {
            line.extend_from_slice(self.link_groups.entry((st.st_dev, st.st_ino)).or_insert(name));
        }
        line.push(0);
        line
    }

    /// Describes a regular file the memo knows without opening it (the common case
    /// of a rebuild, kept as cheap as a by-path walk): its status by `fstatat`, its
    /// xattrs through the directory's descriptor (`/proc/self/fd/N/name`, the last
    /// component not followed). Neither can reach outside this directory whatever
    /// is swapped meanwhile, and the content hash is the memo's, which only holds
    /// hashes of files read through checked descriptors. False: take the open path.
    fn known_file(&mut self, dir: &DirFd, name: &OsStr, rel: &Path) -> bool {
        let Ok(st) = fstatat(dir.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) else { return false };
        if file_type(&st) != SFlag::S_IFREG {
            return false;
        }
        let Some(known) = self.memo.get(&MemoKey::of(&st)) else { return false };
        let at = Path::new("/proc/self/fd").join(dir.fd().as_raw_fd().to_string()).join(name);
        let Some(xattrs) = xattr_text_at(&at) else { return false };
        let mut line = self.describe(rel, &st, None);
        line.extend_from_slice(&xattrs);
        line.push(0);
        self.lines.push(line, Some(known), true);
        true
    }

    /// Sends the batch, and takes in whatever the threads finished meanwhile.
    fn flush(&mut self) -> Result<()> {
        if !self.batch.is_empty() {
            let tx = self.tx.as_ref().expect("the walk is still going");
            tx.send(std::mem::take(&mut self.batch)).context("hashing threads stopped")?;
        }
        while let Ok(batch) = self.done.try_recv() {
            self.complete(batch)?;
        }
        Ok(())
    }

    /// The entries below `dir` (at `rel` in the context) in name order, with the
    /// copy's ignore rules: an excluded directory is only walked when a
    /// `!pattern` names something below it.
    fn dir_contents(&mut self, dir: &DirFd, rel: &Path) -> Result<()> {
        for name in dir.names()? {
            let rel = rel.join(&name);
            let rel_str = rel.to_string_lossy();
            if !self.ignore.is_empty() && self.ignore.matches(&rel_str) {
                if self.ignore.walks_into(&rel_str) {
                    if let Entry::Dir(sub, _) = dir.open_entry(&name)? {
                        self.dir_contents(&sub, &rel)?;
                    }
                }
                continue;
            }
            if !self.known_file(dir, &name, &rel) {
                let entry = dir.open_entry(&name)?;
                self.entry(&rel, entry)?;
            }
        }
        Ok(())
    }
}

/// The xattrs COPY carries over, sorted, as `name\0hex(value)\0` pairs: neither
/// overlay markers, nor the host's SELinux label, nor an owner record (see
/// `copy::copy_xattrs`, which drops the same ones).
fn xattr_text(file: &File) -> Vec<u8> {
    use xattr::FileExt;
    let names = file.list_xattr().map(|l| l.collect()).unwrap_or_default();
    xattr_pairs(names, |n| file.get_xattr(n))
}

/// [`xattr_text`] of the entry `at` itself (never followed), None when its list
/// cannot be read.
fn xattr_text_at(at: &Path) -> Option<Vec<u8>> {
    let names = xattr::list(at).ok()?.collect();
    Some(xattr_pairs(names, |n| xattr::get(at, n)))
}

fn xattr_pairs(mut names: Vec<OsString>, get: impl Fn(&OsStr) -> std::io::Result<Option<Vec<u8>>>) -> Vec<u8> {
    names.retain(|n| {
        let n = n.to_string_lossy();
        !crate::rootfs::is_private_xattr(&n) && !n.starts_with("security.selinux") && n != crate::owner::OVERRIDE_XATTR
    });
    names.sort();
    let mut text = Vec::new();
    for name in names {
        if let Ok(Some(value)) = get(&name) {
            text.extend_from_slice(name.as_encoded_bytes());
            text.push(0);
            text.extend_from_slice(crate::oci::hex_of(&value).as_bytes());
            text.push(0);
        }
    }
    text
}

fn file_digest(file: &mut File, path: &Path) -> Result<String> {
    let mut out = HashingWriter::new(std::io::sink());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut out, &buf[..n])?;
    }
    Ok(out.finish().1.hex().to_string())
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn content_digest_sees_content_not_just_metadata() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("cache")).unwrap();
        fs::write(d.path().join("f"), b"one").unwrap();
        let memo = Memo::load(d.path());
        let a = content_digest(d.path(), &[PathBuf::from("f")], &Ignore::default(), &memo).unwrap();
        fs::write(d.path().join("f"), b"two").unwrap();
        let b = content_digest(d.path(), &[PathBuf::from("f")], &Ignore::default(), &memo).unwrap();
        assert_ne!(a, b);
    }

    fn digest_of(d: &Path) -> String {
        content_digest(d, &[PathBuf::from("t")], &Ignore::default(), &Memo::load(d)).unwrap()
    }

    #[test]
    fn content_digest_covers_what_copy_keeps() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("cache")).unwrap();
        fs::create_dir(root.join("t")).unwrap();
        fs::write(root.join("t/a"), b"x").unwrap();
        fs::write(root.join("t/b"), b"x").unwrap();
        symlink("a", root.join("t/l")).unwrap();
        let plain = digest_of(root);
        // A hard link in place of an equal copy.
        fs::remove_file(root.join("t/b")).unwrap();
        fs::hard_link(root.join("t/a"), root.join("t/b")).unwrap();
        let linked = digest_of(root);
        assert_ne!(plain, linked, "hard-link grouping");
        // Another symlink target.
        fs::remove_file(root.join("t/l")).unwrap();
        symlink("b", root.join("t/l")).unwrap();
        let retargeted = digest_of(root);
        assert_ne!(linked, retargeted, "symlink target");
        fs::set_permissions(root.join("t/a"), fs::Permissions::from_mode(0o600)).unwrap();
        let moded = digest_of(root);
        assert_ne!(retargeted, moded, "mode");
        if xattr::set(root.join("t/a"), "user.strata-test", b"1").is_ok() {
            let tagged = digest_of(root);
            assert_ne!(moded, tagged, "xattr");
            xattr::set(root.join("t/a"), "user.overlay.opaque", b"y").unwrap();
            assert_eq!(tagged, digest_of(root), "overlay-private xattrs are not copied, so not hashed");
        }
    }

    #[test]
    fn files_the_memo_knows_are_described_as_when_read() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("t/sub")).unwrap();
        fs::write(d.path().join("t/sub/a"), b"a").unwrap();
        fs::write(d.path().join("t/b"), b"b").unwrap();
        let _ = xattr::set(d.path().join("t/sub/a"), "user.strata-test", b"1");
        let read = digest_of(d.path());
        // Teach the memo every file (remember() waits for settled files).
        let memo = Memo::load(d.path());
        for (rel, content) in [("t/sub/a", &b"a"[..]), ("t/b", b"b")] {
            let st = nix::sys::stat::lstat(&d.path().join(rel)).unwrap();
            let hash = crate::oci::Digest::of_bytes(content).hex().to_string();
            memo.learn(&MemoKey::of(&st), &hash);
        }
        let known = content_digest(d.path(), &[PathBuf::from("t")], &Ignore::default(), &memo).unwrap();
        assert_eq!(read, known, "the memo's shortcut describes a file exactly as reading it does");
    }

    #[test]
    fn an_owner_record_is_not_hashed() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("t")).unwrap();
        fs::write(d.path().join("t/a"), b"x").unwrap();
        let plain = digest_of(d.path());
        if xattr::set(d.path().join("t/a"), crate::owner::OVERRIDE_XATTR, b"0:0:04755").is_ok() {
            assert_eq!(plain, digest_of(d.path()), "COPY drops the owner record, so it is not part of the key");
        }
    }

    #[test]
    fn a_source_swapped_for_a_host_symlink_is_not_hashed() {
        // Matching resolved every symlink: one at a source now means a swap since.
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("secret"), b"s").unwrap();
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(host.path(), d.path().join("t")).unwrap();
        std::os::unix::fs::symlink(host.path().join("secret"), d.path().join("f")).unwrap();
        for top in ["t", "f"] {
            let got = content_digest(d.path(), &[PathBuf::from(top)], &Ignore::default(), &Memo::load(d.path()));
            let err = got.expect_err("a host file was hashed");
            assert!(format!("{err:#}").contains("changed while being read"), "{err:#}");
        }
    }

    #[test]
    fn a_swap_during_the_walk_is_refused_and_a_fifo_never_hangs() {
        use crate::rootfs::{BEFORE_OPEN, HOOK_LOCK};
        let _serial = HOOK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("secret"), b"s").unwrap();
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("t/sub")).unwrap();
        fs::write(d.path().join("t/sub/f"), b"f").unwrap();
        fs::write(d.path().join("t/g"), b"g").unwrap();
        let hash = || content_digest(d.path(), &[PathBuf::from("t")], &Ignore::default(), &Memo::load(d.path()));
        // The directory turns into a symlink to the host right before its open.
        let (sub, host_dir) = (d.path().join("t/sub"), host.path().to_path_buf());
        *BEFORE_OPEN.lock().unwrap() = Some(Box::new(move |p: &Path| {
            if p == sub && fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                fs::rename(p, p.with_file_name("moved")).unwrap();
                std::os::unix::fs::symlink(&host_dir, p).unwrap();
            }
        }));
        let swapped = hash();
        // A file turns into a FIFO right before its open: reading it would block.
        let g = d.path().join("t/g");
        *BEFORE_OPEN.lock().unwrap() = Some(Box::new(move |p: &Path| {
            if p == g && fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) {
                fs::remove_file(p).unwrap();
                nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            }
        }));
        let fifo = hash();
        *BEFORE_OPEN.lock().unwrap() = None;
        for got in [swapped, fifo] {
            let err = got.expect_err("a swapped entry was hashed");
            assert!(format!("{err:#}").contains("changed while being read"), "{err:#}");
        }
        // A FIFO found in place of a directory is skipped, as the copy skips it.
        fs::remove_dir_all(d.path().join("t")).unwrap();
        nix::unistd::mkfifo(&d.path().join("t"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        hash().unwrap();
    }
}
