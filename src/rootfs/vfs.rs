//! The copy-based driver (`vfs`), for hosts with neither kernel overlay in a user
//! namespace nor fuse-overlayfs.
//!
//! [`flatten`] copies a stack of layer dirs into one plain tree (whiteouts applied,
//! opaque dirs honoured) for a step to change in place; [`diff_trees`] then writes
//! what the step changed into an upper dir in overlay form (0:0 char devices for
//! deletions, copies of new or changed entries), so the rest of strata commits it
//! exactly like an overlay upper dir. A file counts as changed when its type, mode,
//! owner, size, mtime, link target, device or xattrs differ, as containers/storage's
//! naive diff does; content is not re-read. It also counts as changed when its
//! inode changed after the copy was made (ctime): overlay copies a file up on any
//! metadata change, a `chmod` to the mode it already has included, and the layer
//! must hold what overlay's would.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknod, Mode, SFlag};
use nix::sys::time::TimeSpec;

use super::lower::{is_opaque, LowerView};
use super::{is_private_xattr, RootfsError};
use crate::overlay_marks::{is_whiteout, make_whiteout, OPAQUE_VALUE};

/// Copies the stack `lowers` (top-most first) into the empty dir `dest`.
pub fn flatten(lowers: &[PathBuf], dest: &Path, opaque_xattrs: &[&str]) -> Result<(), RootfsError> {
    for layer in lowers.iter().rev() {
        let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
        let walker = walkdir::WalkDir::new(layer).min_depth(1).follow_links(false).sort_by_file_name();
        let mut dirs = Vec::new();
        for entry in walker {
            let entry = entry.map_err(|e| RootfsError::Walk { path: layer.display().to_string(), message: e.to_string() })?;
            let rel = entry.path().strip_prefix(layer).expect("below the layer");
            let target = dest.join(rel);
            let meta = fs::symlink_metadata(entry.path()).map_err(|e| RootfsError::io(entry.path(), e))?;
            if is_whiteout(&meta) {
                remove_any(&target)?;
                continue;
            }
            if meta.is_dir() {
                let existing_dir = fs::symlink_metadata(&target).map(|m| m.is_dir()).unwrap_or(false);
                if existing_dir && is_opaque(entry.path(), opaque_xattrs) {
                    // An opaque dir hides everything the layers below put there.
                    remove_any(&target)?;
                }
                if !fs::symlink_metadata(&target).map(|m| m.is_dir()).unwrap_or(false) {
                    remove_any(&target)?;
                    fs::create_dir(&target).map_err(|e| RootfsError::io(&target, e))?;
                }
                copy_metadata(entry.path(), &target, &meta)?;
                dirs.push((target, meta));
                continue;
            }
            remove_any(&target)?;
            copy_node(entry.path(), &target, &meta, &mut links)?;
        }
        walker_done(&mut dirs)?;
    }
    record_dir_inodes(dest)
}

/// Restores directory times after their children were written.
fn walker_done(dirs: &mut Vec<(PathBuf, Metadata)>) -> Result<(), RootfsError> {
    for (d, m) in dirs.drain(..).rev() {
        set_times(&d, &m)?;
    }
    Ok(())
}

/// Removes whatever is at `p`, a directory with all below it; nothing is followed,
/// and nothing there is no error.
pub fn remove_any(p: &Path) -> Result<(), RootfsError> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).map_err(|e| RootfsError::io(p, e)),
        Ok(_) => fs::remove_file(p).map_err(|e| RootfsError::io(p, e)),
        Err(_) => Ok(()),
    }
}

/// Copies a non-directory entry with its metadata, keeping hard links linked.
fn copy_node(src: &Path, target: &Path, meta: &Metadata, links: &mut HashMap<(u64, u64), PathBuf>) -> Result<(), RootfsError> {
    let ft = meta.file_type();
    if ft.is_file() && meta.nlink() > 1 {
        let key = (meta.dev(), meta.ino());
        if let Some(first) = links.get(&key) {
            return fs::hard_link(first, target).map_err(|e| RootfsError::io(target, e));
        }
        links.insert(key, target.to_path_buf());
    }
    if ft.is_symlink() {
        let link = fs::read_link(src).map_err(|e| RootfsError::io(src, e))?;
        std::os::unix::fs::symlink(&link, target).map_err(|e| RootfsError::io(target, e))?;
    } else if ft.is_file() {
        copy_file(src, target, meta).map_err(|e| RootfsError::io(target, e))?;
    } else {
        let kind = if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else if ft.is_fifo() {
            SFlag::S_IFIFO
        } else {
            return Ok(());
        };
        mknod(target, kind, Mode::from_bits_truncate(0o600), meta.rdev()).map_err(|e| RootfsError::io(target, e.into()))?;
    }
    copy_metadata(src, target, meta)?;
    if !ft.is_dir() {
        set_times(target, meta)?;
    }
    Ok(())
}

/// Copies a regular file; a sparse one (fewer blocks than its size) keeps its holes,
/// so an image's 50 GiB lastlog of holes is not written out in full.
fn copy_file(src: &Path, target: &Path, meta: &Metadata) -> io::Result<()> {
    if meta.blocks() * 512 >= meta.len() {
        return fs::copy(src, target).map(drop);
    }
    let from = fs::File::open(src)?;
    let mut to = fs::OpenOptions::new().write(true).create(true).truncate(true).open(target)?;
    copy_data(&from, &mut to, meta.len(), meta.blocks())
}

/// Copies the content of `from` (at offset 0, `len` bytes, `blocks` 512-byte blocks
/// allocated) into the empty `to`. A sparse file copies only its data extents
/// (SEEK_DATA/SEEK_HOLE) and keeps its holes as holes: a 4 TiB lastlog of holes in
/// a base image takes a few blocks, not 4 TiB, wherever it is copied.
pub fn copy_data(from: &fs::File, to: &mut fs::File, len: u64, blocks: u64) -> io::Result<()> {
    use nix::unistd::{lseek, Whence};
    use std::io::{Read, Seek, SeekFrom};
    if blocks * 512 >= len {
        return io::copy(&mut &*from, to).map(drop);
    }
    let len = len as i64;
    let mut pos = 0;
    while pos < len {
        let data = match lseek(from, pos, Whence::SeekData) {
            Ok(d) => d,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let hole = lseek(from, data, Whence::SeekHole)?.min(len);
        (&*from).seek(SeekFrom::Start(data as u64))?;
        to.seek(SeekFrom::Start(data as u64))?;
        io::copy(&mut from.take((hole - data) as u64), to)?;
        pos = hole;
    }
    to.set_len(len as u64)
}

fn copy_metadata(src: &Path, target: &Path, meta: &Metadata) -> Result<(), RootfsError> {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        target,
        Some(nix::unistd::Uid::from_raw(meta.uid())),
        Some(nix::unistd::Gid::from_raw(meta.gid())),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| RootfsError::Chown {
        path: target.display().to_string(),
        uid: meta.uid().into(),
        gid: meta.gid().into(),
        source: e.into(),
    })?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    fs::set_permissions(target, fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(|e| RootfsError::io(target, e))?;
    for (name, value) in xattrs(src) {
        let _ = xattr::set(target, &name, &value);
    }
    Ok(())
}

fn set_times(p: &Path, m: &Metadata) -> Result<(), RootfsError> {
    let t = TimeSpec::new(m.mtime(), m.mtime_nsec());
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, p, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .map_err(|e| RootfsError::io(p, e.into()))
}

/// The image-visible xattrs of a path, sorted; names as the filesystem has them (a
/// name that is not UTF-8 is copied as it is, not replaced).
fn xattrs(p: &Path) -> Vec<(OsString, Vec<u8>)> {
    let mut out: Vec<(OsString, Vec<u8>)> = xattr::list(p)
        .map(|names| {
            names
                .filter_map(|n| {
                    if is_private_xattr(&n.to_string_lossy()) {
                        return None;
                    }
                    xattr::get(p, &n).ok().flatten().map(|v| (n, v))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn changed(a: &Path, am: &Metadata, b: &Path, bm: &Metadata) -> bool {
    let (at, bt) = (am.file_type(), bm.file_type());
    if at.is_dir() != bt.is_dir() || at.is_symlink() != bt.is_symlink() || at.is_file() != bt.is_file() {
        return true;
    }
    if am.mode() != bm.mode() || am.uid() != bm.uid() || am.gid() != bm.gid() || am.rdev() != bm.rdev() {
        return true;
    }
    if at.is_symlink() {
        return fs::read_link(a).ok() != fs::read_link(b).ok();
    }
    if !at.is_dir() && (am.len() != bm.len() || am.mtime() != bm.mtime() || am.mtime_nsec() != bm.mtime_nsec()) {
        return true;
    }
    // A new hard link to a lower file: overlay copies the file up and links it, so
    // both names belong in the layer.
    if at.is_file() && am.nlink() != bm.nlink() {
        return true;
    }
    xattrs(a) != xattrs(b)
}

/// Where `flatten` records the identity (inode and birth time) of every directory of
/// its copy, so the diff can tell a directory that was removed and made again
/// (overlay: an opaque dir) from one that was only changed. The birth time matters:
/// a filesystem happily gives a new directory the inode number just freed.
fn inode_record(merged: &Path) -> PathBuf {
    merged.with_extension("dir-inodes")
}

/// Where the sandbox lists, one path relative to the copy per line, what it put
/// into the copy for a step and took back afterwards (setup C's chroot lends the
/// host's resolv.conf in place of the image's). The sandbox writes the same name,
/// `<merged>.lent`, in `sandbox::chroot`.
pub fn lent_record(merged: &Path) -> PathBuf {
    merged.with_extension("lent")
}

fn read_lent(merged: &Path) -> BTreeSet<PathBuf> {
    let bytes = fs::read(lent_record(merged)).unwrap_or_default();
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| PathBuf::from(std::os::unix::ffi::OsStrExt::from_bytes(l) as &std::ffi::OsStr))
        .collect()
}

/// Drops the note [`flatten`] keeps beside `dest` for a later [`diff_trees`], for a
/// copy that will never be diffed (a runtime bundle's rootfs).
pub fn forget_dir_inodes(dest: &Path) -> Result<(), RootfsError> {
    match fs::remove_file(inode_record(dest)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RootfsError::io(inode_record(dest), e)),
        _ => Ok(()),
    }
}

fn record_dir_inodes(dest: &Path) -> Result<(), RootfsError> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dest).min_depth(1).follow_links(false) {
        let entry = entry.map_err(|e| RootfsError::Walk { path: dest.display().to_string(), message: e.to_string() })?;
        if entry.file_type().is_dir() {
            let meta = entry.metadata().map_err(|e| RootfsError::Walk { path: dest.display().to_string(), message: e.to_string() })?;
            out.extend_from_slice(dir_identity(&meta).to_string().as_bytes());
            out.push(0);
            out.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(entry.path().strip_prefix(dest).expect("below dest").as_os_str()));
            out.push(0);
        }
    }
    let record = inode_record(dest);
    fs::write(&record, out).map_err(|e| RootfsError::io(&record, e))
}

/// Inode number mixed with the birth time (when the filesystem records one).
fn dir_identity(meta: &Metadata) -> u128 {
    let born = meta.created().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    (u128::from(meta.ino()) << 64) ^ born
}

fn read_dir_inodes(merged: &Path) -> HashMap<PathBuf, u128> {
    let bytes = fs::read(inode_record(merged)).unwrap_or_default();
    let mut parts = bytes.split(|b| *b == 0);
    let mut map = HashMap::new();
    while let (Some(ino), Some(path)) = (parts.next(), parts.next()) {
        if let Ok(ino) = String::from_utf8_lossy(ino).parse::<u128>() {
            map.insert(PathBuf::from(std::os::unix::ffi::OsStrExt::from_bytes(path) as &std::ffi::OsStr), ino);
        }
    }
    map
}

/// State of one tree comparison.
struct Diff<'a> {
    view: LowerView<'a>,
    merged: &'a Path,
    upper: &'a Path,
    /// Directory identities of the copy as `flatten` made it.
    inodes: HashMap<PathBuf, u128>,
    /// The xattr that marks an opaque dir in this store's layer dirs.
    mark_opaque: &'a str,
    /// When `flatten` finished: a later ctime means the step touched the entry.
    flattened_at: Option<(i64, i64)>,
    /// Entries the sandbox lent the step and put back (see [`lent_record`]):
    /// their ctime is the sandbox's doing, not the step's.
    lent: BTreeSet<PathBuf>,
    links: HashMap<(u64, u64), PathBuf>,
    dirs: Vec<(PathBuf, Metadata)>,
}

/// Writes into the empty dir `upper` what changed in `merged` relative to `lowers`;
/// `mark_opaque` is the xattr that marks a replaced directory.
pub fn diff_trees(lowers: &[PathBuf], merged: &Path, upper: &Path, opaque_xattrs: &[&str], mark_opaque: &str) -> Result<(), RootfsError> {
    let mut d = Diff {
        view: LowerView { lowers, opaque: opaque_xattrs },
        merged,
        upper,
        inodes: read_dir_inodes(merged),
        mark_opaque,
        flattened_at: fs::metadata(inode_record(merged)).ok().map(|m| (m.mtime(), m.mtime_nsec())),
        lent: read_lent(merged),
        links: HashMap::new(),
        dirs: Vec::new(),
    };
    d.dir(Path::new(""))?;
    walker_done(&mut d.dirs)
}

impl Diff<'_> {
    /// True when a file's inode changed after `flatten` copied it, by the step.
    fn touched(&self, rel: &Path, meta: &Metadata) -> bool {
        self.flattened_at.is_some_and(|at| (meta.ctime(), meta.ctime_nsec()) > at) && !self.lent.contains(rel)
    }

    fn dir(&mut self, rel: &Path) -> Result<(), RootfsError> {
        let (merged, upper) = (self.merged, self.upper);
        let here = merged.join(rel);
        let mut names: Vec<OsString> =
            fs::read_dir(&here).map_err(|e| RootfsError::io(&here, e))?.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        names.sort();
        let present: BTreeSet<OsString> = names.iter().cloned().collect();
        for gone in self.view.children(rel).difference(&present) {
            let target = upper.join(rel).join(gone);
            ensure_upper_parents(merged, upper, rel)?;
            make_whiteout(&target).map_err(|e| RootfsError::io(&target, e))?;
        }
        for name in names {
            let r = rel.join(&name);
            let src = merged.join(&r);
            let meta = fs::symlink_metadata(&src).map_err(|e| RootfsError::io(&src, e))?;
            let lower = self.view.find(&r);
            let differs = match &lower {
                None => true,
                Some((lp, lm)) => changed(lp, lm, &src, &meta),
            };
            if !meta.is_dir() {
                let differs = differs || self.touched(&r, &meta);
                if differs {
                    ensure_upper_parents(merged, upper, rel)?;
                    let target = upper.join(&r);
                    remove_any(&target)?;
                    copy_node(&src, &target, &meta, &mut self.links)?;
                }
                continue;
            }
            let was_dir = lower.as_ref().map(|(_, m)| m.is_dir()).unwrap_or(false);
            let replaced = was_dir && self.inodes.get(&r).is_some_and(|id| *id != dir_identity(&meta));
            if differs || !was_dir || replaced {
                ensure_upper_parents(merged, upper, rel)?;
                let target = upper.join(&r);
                if fs::symlink_metadata(&target).is_err() {
                    fs::create_dir(&target).map_err(|e| RootfsError::io(&target, e))?;
                }
                copy_metadata(&src, &target, &meta)?;
                if replaced {
                    xattr::set(&target, self.mark_opaque, OPAQUE_VALUE).map_err(|e| RootfsError::io(&target, e))?;
                }
                self.dirs.push((target, meta.clone()));
            }
            if was_dir && !replaced {
                self.dir(&r)?;
            } else {
                // New or replaced: everything below is new, as in an overlay upper.
                copy_tree(&src, &upper.join(&r), &mut self.links, &mut self.dirs)?;
            }
        }
        Ok(())
    }
}

fn copy_tree(
    src: &Path,
    dest: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    dirs: &mut Vec<(PathBuf, Metadata)>,
) -> Result<(), RootfsError> {
    for entry in walkdir::WalkDir::new(src).min_depth(1).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| RootfsError::Walk { path: src.display().to_string(), message: e.to_string() })?;
        let target = dest.join(entry.path().strip_prefix(src).expect("below the walk root"));
        let meta = fs::symlink_metadata(entry.path()).map_err(|e| RootfsError::io(entry.path(), e))?;
        if meta.is_dir() {
            fs::create_dir(&target).map_err(|e| RootfsError::io(&target, e))?;
            copy_metadata(entry.path(), &target, &meta)?;
            dirs.push((target, meta));
        } else {
            copy_node(entry.path(), &target, &meta, links)?;
        }
    }
    Ok(())
}

/// Creates `rel`'s directories in `upper`, copying their metadata from `merged`.
fn ensure_upper_parents(merged: &Path, upper: &Path, rel: &Path) -> Result<(), RootfsError> {
    let mut cur = PathBuf::new();
    for c in rel.components() {
        cur.push(c);
        let target = upper.join(&cur);
        if fs::symlink_metadata(&target).is_ok() {
            continue;
        }
        let src = merged.join(&cur);
        let meta = fs::symlink_metadata(&src).map_err(|e| RootfsError::io(&src, e))?;
        fs::create_dir(&target).map_err(|e| RootfsError::io(&target, e))?;
        copy_metadata(&src, &target, &meta)?;
        set_times(&target, &meta)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPAQUE: [&str; 1] = ["user.overlay.opaque"];

    #[test]
    fn a_sparse_file_is_copied_with_its_holes() {
        use std::io::{Seek, SeekFrom, Write};
        let d = tempfile::tempdir().unwrap();
        let (l1, merged) = (d.path().join("l1"), d.path().join("m"));
        fs::create_dir(&l1).unwrap();
        fs::create_dir(&merged).unwrap();
        let mut f = fs::File::create(l1.join("sparse")).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(1 << 30)).unwrap();
        f.write_all(b"tail").unwrap();
        drop(f);
        flatten(std::slice::from_ref(&l1), &merged, &OPAQUE).unwrap();
        let m = fs::metadata(merged.join("sparse")).unwrap();
        assert_eq!(m.len(), (1 << 30) + 4);
        assert!(m.blocks() * 512 <= 1 << 20, "1 GiB of holes took {} bytes", m.blocks() * 512);
        let mut content = fs::File::open(merged.join("sparse")).unwrap();
        let mut buf = [0u8; 4];
        std::io::Read::read_exact(&mut content, &mut buf).unwrap();
        assert_eq!(&buf, b"head");
        content.seek(SeekFrom::Start(1 << 29)).unwrap();
        std::io::Read::read_exact(&mut content, &mut buf).unwrap();
        assert_eq!(buf, [0; 4]);
        content.seek(SeekFrom::Start(1 << 30)).unwrap();
        std::io::Read::read_exact(&mut content, &mut buf).unwrap();
        assert_eq!(&buf, b"tail");
    }

    #[test]
    fn xattr_and_file_names_that_are_not_utf8_are_copied_as_they_are() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        let (l1, merged) = (d.path().join("l1"), d.path().join("m"));
        fs::create_dir(&l1).unwrap();
        fs::create_dir(&merged).unwrap();
        let file = OsStr::from_bytes(b"caf\xe9");
        let name = OsStr::from_bytes(b"user.caf\xe9");
        fs::write(l1.join(file), b"x").unwrap();
        xattr::set(l1.join(file), name, b"v").unwrap();
        flatten(&[l1], &merged, &OPAQUE).unwrap();
        assert_eq!(xattr::get(merged.join(file), name).unwrap().as_deref(), Some(&b"v"[..]));
        let names: Vec<_> = xattr::list(merged.join(file)).unwrap().filter(|n| n.as_bytes().starts_with(b"user.")).collect();
        assert_eq!(names, [name], "no lossy copy of the name beside it");
    }

    #[test]
    fn flatten_then_diff_finds_exactly_the_changes() {
        let d = tempfile::tempdir().unwrap();
        let (l1, l2, merged, upper) = (d.path().join("l1"), d.path().join("l2"), d.path().join("m"), d.path().join("u"));
        for p in [&l1, &l2, &merged, &upper] {
            fs::create_dir(p).unwrap();
        }
        fs::create_dir_all(l1.join("etc")).unwrap();
        fs::write(l1.join("etc/keep"), b"k").unwrap();
        fs::write(l1.join("etc/gone"), b"g").unwrap();
        fs::write(l1.join("etc/edit"), b"old").unwrap();
        fs::create_dir_all(l2.join("opt")).unwrap();
        fs::write(l2.join("opt/tool"), b"t").unwrap();
        let lowers = vec![l2.clone(), l1.clone()];
        flatten(&lowers, &merged, &OPAQUE).unwrap();
        assert_eq!(fs::read(merged.join("etc/keep")).unwrap(), b"k");
        assert_eq!(fs::read(merged.join("opt/tool")).unwrap(), b"t");

        fs::remove_file(merged.join("etc/gone")).unwrap();
        fs::remove_dir_all(merged.join("opt")).unwrap();
        fs::create_dir(merged.join("opt")).unwrap();
        fs::write(merged.join("opt/other"), b"o").unwrap();
        fs::write(merged.join("etc/edit"), b"new!").unwrap();
        fs::create_dir_all(merged.join("new/sub")).unwrap();
        fs::write(merged.join("new/sub/f"), b"f").unwrap();
        diff_trees(&lowers, &merged, &upper, &OPAQUE, OPAQUE[0]).unwrap();

        assert_eq!(fs::read(upper.join("etc/edit")).unwrap(), b"new!");
        assert_eq!(fs::read(upper.join("new/sub/f")).unwrap(), b"f");
        assert!(!upper.join("etc/keep").exists(), "unchanged files stay out of the diff");
        assert_eq!(xattr::get(upper.join("opt"), OPAQUE[0]).unwrap().as_deref(), Some(&b"y"[..]), "a re-made dir is opaque");
        assert!(upper.join("opt/other").exists() && !upper.join("opt/tool").exists());
        assert!(xattr::get(upper.join("new"), OPAQUE[0]).unwrap().is_none(), "a new dir is not opaque");
        match fs::symlink_metadata(upper.join("etc/gone")) {
            Ok(m) => assert!(is_whiteout(&m), "a deletion is a whiteout"),
            Err(e) => panic!("no whiteout for etc/gone: {e}"),
        }
    }

    #[test]
    fn a_file_touched_without_a_visible_change_is_in_the_diff_as_overlay_copies_it_up() {
        let d = tempfile::tempdir().unwrap();
        let (l1, merged, upper) = (d.path().join("l1"), d.path().join("m"), d.path().join("u"));
        for p in [&l1, &merged, &upper] {
            fs::create_dir(p).unwrap();
        }
        fs::create_dir_all(l1.join("bin")).unwrap();
        for f in ["bin/tool", "bin/lent", "bin/other"] {
            fs::write(l1.join(f), b"x").unwrap();
            fs::set_permissions(l1.join(f), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let lowers = vec![l1.clone()];
        flatten(&lowers, &merged, &OPAQUE).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::set_permissions(merged.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(merged.join("bin/lent"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(lent_record(&merged), "bin/lent\n").unwrap();
        diff_trees(&lowers, &merged, &upper, &OPAQUE, OPAQUE[0]).unwrap();
        assert!(upper.join("bin/tool").is_file(), "a chmod to the same mode is a change, as in overlay");
        assert!(!upper.join("bin/lent").exists(), "what the sandbox lent and put back is not the step's change");
        assert!(!upper.join("bin/other").exists());
    }
}
