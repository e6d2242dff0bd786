//! Layer tar stream -> layer directory in overlay form.
//!
//! The reverse of `diff`: `.wh.NAME` becomes a 0:0 character device and
//! `.wh..wh..opq` an opaque xattr, so the directory can be stacked as an overlay lower
//! dir as it is. Each layer is unpacked into its own empty directory, so nothing in
//! it may be followed: every parent component is checked with lstat, `..` and absolute
//! names are refused, and hard links must point at an entry of the same layer. A
//! hostile layer therefore fails with an error naming the entry instead of writing
//! outside its directory.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{mknod, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::mkfifo;
use tar::EntryType;

use super::{is_private_xattr, RootfsError, Warn, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::overlay_marks::{make_whiteout, OPAQUE_VALUE};

/// Choices about the layer dir's on-disk form.
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Xattr written on opaque dirs (user.overlay.opaque in a user namespace).
    pub opaque_xattr: String,
    /// How owners are set (recorded in single-id mode).
    pub owners: crate::owner::Owners,
    /// Told what is skipped: device nodes a user namespace cannot make, xattrs the
    /// filesystem refuses.
    pub warn: Warn,
}

/// Unpacks the uncompressed tar `input` into the empty directory `dest`.
pub fn unpack<R: Read>(input: R, dest: &Path, opts: &UnpackOptions) -> Result<(), RootfsError> {
    let _unpack = crate::trace::span(crate::trace::Phase::Unpack);
    let mut archive = tar::Archive::new(input);
    let mut layer = Layer { dest, opts, dir_times: Vec::new(), warned_devices: false };
    let entries = archive.entries().map_err(|e| RootfsError::io(dest, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| RootfsError::io(dest, e))?;
        layer.unpack_entry(&mut entry)?;
    }
    layer.set_dir_times()
}

/// The layer directory being unpacked into, and what unpacking it has left to do.
struct Layer<'a> {
    dest: &'a Path,
    opts: &'a UnpackOptions,
    /// Directories and their mtimes, in archive order: set once all entries are in.
    dir_times: Vec<(PathBuf, u64)>,
    warned_devices: bool,
}

/// What the header says about an entry besides its name and content.
struct EntryMeta {
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

impl Layer<'_> {
    fn unpack_entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), RootfsError> {
        let raw = entry.path_bytes().into_owned();
        let Some(rel) = clean_path(&raw)? else {
            return check_root_entry(entry.header().entry_type(), &raw);
        };
        let target = self.dest.join(&rel);
        let parent = target.parent().expect("joined path has a parent").to_path_buf();
        ensure_parents(self.dest, &parent, &raw)?;
        let base = rel.file_name().map(OsStr::as_bytes).unwrap_or_default();
        if base == OPAQUE_MARKER.as_bytes() {
            return xattr::set(&parent, &self.opts.opaque_xattr, OPAQUE_VALUE).map_err(|e| RootfsError::io(&parent, e));
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return whiteout(&parent, hidden, &raw);
        }
        let meta = entry_meta(entry, &target, &raw)?;
        if meta.kind != EntryType::Directory {
            remove_existing(&target)?;
        }
        if self.create(entry, &target, &raw, &meta)? {
            apply_metadata(entry, &target, &meta, &self.opts.owners, &self.opts.warn)?;
        }
        Ok(())
    }

    /// Creates the entry's file, directory, link or node at `target`. False when it
    /// gets no owner, mode, xattrs or time of its own: a hard link shares its
    /// target's, and a skipped device node or a bare header has nothing to set them on.
    fn create<R: Read>(&mut self, entry: &mut tar::Entry<R>, target: &Path, raw: &[u8], meta: &EntryMeta) -> Result<bool, RootfsError> {
        match meta.kind {
            EntryType::Directory => {
                create_dir(target)?;
                self.dir_times.push((target.to_path_buf(), meta.mtime));
            }
            EntryType::GNUSparse => unpack_sparse(entry, target, raw)?,
            EntryType::Regular | EntryType::Continuous => write_file(entry, target)?,
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| RootfsError::BadEntry { path: display(raw), reason: "symlink without target".into() })?;
                symlink(OsStr::from_bytes(&link), target).map_err(|e| RootfsError::io(target, e))?;
            }
            EntryType::Link => {
                hard_link(self.dest, entry, target, raw)?;
                return Ok(false);
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => return Ok(self.make_node(entry.header(), meta.kind, target, raw)),
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => return Ok(false),
            other => return Err(RootfsError::BadEntry { path: display(raw), reason: format!("unsupported tar entry type {other:?}") }),
        }
        Ok(true)
    }

    /// Makes a device node or fifo; false (after one warning per layer) where the
    /// kernel does not permit it.
    fn make_node(&mut self, header: &tar::Header, kind: EntryType, target: &Path, raw: &[u8]) -> bool {
        let r = if kind == EntryType::Fifo {
            mkfifo(target, Mode::from_bits_truncate(0o600))
        } else {
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            let flag = if kind == EntryType::Char { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
            mknod(target, flag, Mode::from_bits_truncate(0o600), libc::makedev(major, minor))
        };
        if let Err(e) = r {
            // Device nodes cannot be created in a user namespace; containers get
            // their devices from the runtime anyway.
            if !self.warned_devices {
                self.opts.warn.say(&format!("skipping device node {} ({e}): not permitted here", display(raw)));
                self.warned_devices = true;
            }
            return false;
        }
        true
    }

    /// Directory times last: creating their children changed them.
    fn set_dir_times(self) -> Result<(), RootfsError> {
        for (dir, mtime) in self.dir_times.into_iter().rev() {
            set_mtime(&dir, mtime)?;
        }
        Ok(())
    }
}

/// An entry naming the layer root itself. umoci's CVE-2021-29136: `.` as a symlink
/// would redirect every later entry. The root is the layer dir itself; only a
/// directory may name it, and changes nothing.
fn check_root_entry(kind: EntryType, raw: &[u8]) -> Result<(), RootfsError> {
    match kind {
        EntryType::Directory | EntryType::XGlobalHeader | EntryType::XHeader => Ok(()),
        other => {
            Err(RootfsError::BadEntry { path: display(raw), reason: format!("names the layer root but is a {other:?}, not a directory") })
        }
    }
}

/// Turns `.wh.NAME` in `parent` into overlay's whiteout of NAME.
fn whiteout(parent: &Path, hidden: &[u8], raw: &[u8]) -> Result<(), RootfsError> {
    // `.wh.`, `.wh..` and `.wh...` would name the parent itself or the dir
    // above it (the store's layers/ for a top-level entry), which the removal
    // below would delete whole.
    if matches!(hidden, b"" | b"." | b"..") || hidden.contains(&b'/') {
        return Err(RootfsError::BadEntry {
            path: display(raw),
            reason: format!("whiteout of {:?} names no file of the directory", display(hidden)),
        });
    }
    let victim = parent.join(OsStr::from_bytes(hidden));
    remove_existing(&victim)?;
    make_whiteout(&victim).map_err(|e| RootfsError::io(&victim, e))
}

fn entry_meta<R: Read>(entry: &mut tar::Entry<R>, target: &Path, raw: &[u8]) -> Result<EntryMeta, RootfsError> {
    let header = entry.header();
    let mode = header.mode().map_err(|e| RootfsError::io(target, e))? & 0o7777;
    let uid = header.uid().map_err(|e| RootfsError::io(target, e))?;
    let gid = header.gid().map_err(|e| RootfsError::io(target, e))?;
    let (mtime, kind) = (header.mtime().unwrap_or(0), header.entry_type());
    let (uid, gid) = pax_owner(entry, uid, gid, raw)?;
    Ok(EntryMeta { kind, mode, uid, gid, mtime })
}

/// PAX uid/gid records override the header's octal fields (ids > 2097151).
fn pax_owner<R: Read>(entry: &mut tar::Entry<R>, mut uid: u64, mut gid: u64, raw: &[u8]) -> Result<(u64, u64), RootfsError> {
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            let parse = || ext.value().ok().and_then(|v| v.trim().parse::<u64>().ok());
            match ext.key() {
                Ok("uid") => uid = parse().unwrap_or(uid),
                Ok("gid") => gid = parse().unwrap_or(gid),
                // The tar crate reads PAX sparse files as plain files: their map and
                // packed data would land as the file's content, under a mangled name.
                Ok(k) if k.starts_with("GNU.sparse.") => {
                    return Err(RootfsError::BadEntry {
                        path: display(raw),
                        reason:
                            "PAX sparse files (GNU.sparse.* records) are not supported; write the layer without --sparse or in GNU format"
                                .into(),
                    })
                }
                _ => {}
            }
        }
    }
    Ok((uid, gid))
}

/// Makes `target` a directory, replacing anything else there; an existing
/// directory stays, with its contents.
fn create_dir(target: &Path) -> Result<(), RootfsError> {
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => {
            remove_existing(target)?;
            fs::create_dir(target).map_err(|e| RootfsError::io(target, e))
        }
        Err(_) => fs::create_dir(target).map_err(|e| RootfsError::io(target, e)),
    }
}

fn write_file<R: Read>(entry: &mut tar::Entry<R>, target: &Path) -> Result<(), RootfsError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(target)
        .map_err(|e| RootfsError::io(target, e))?;
    io::copy(entry, &mut f).map_err(|e| RootfsError::io(target, e))?;
    Ok(())
}

/// Links `target` to an earlier non-directory entry of this layer, and to nothing
/// else: the link name is cleaned like an entry name and its parents checked.
fn hard_link<R: Read>(dest: &Path, entry: &tar::Entry<R>, target: &Path, raw: &[u8]) -> Result<(), RootfsError> {
    let link =
        entry.link_name_bytes().ok_or_else(|| RootfsError::BadEntry { path: display(raw), reason: "hard link without target".into() })?;
    let src_rel =
        clean_path(&link)?.ok_or_else(|| RootfsError::BadEntry { path: display(raw), reason: "hard link to the layer root".into() })?;
    let src = dest.join(src_rel);
    ensure_parents(dest, src.parent().unwrap_or(dest), raw)?;
    match fs::symlink_metadata(&src) {
        Ok(m) if !m.is_dir() => {}
        _ => {
            return Err(RootfsError::BadEntry {
                path: display(raw),
                reason: format!("hard link target {} is not an earlier file of this layer", display(&link)),
            })
        }
    }
    fs::hard_link(&src, target).map_err(|e| RootfsError::io(target, e))
}

/// Sets the entry's owner, mode, xattrs and (but for directories, see
/// [`Layer::set_dir_times`]) mtime on what [`Layer::create`] made.
fn apply_metadata<R: Read>(
    entry: &mut tar::Entry<R>,
    target: &Path,
    meta: &EntryMeta,
    owners: &crate::owner::Owners,
    warn: &Warn,
) -> Result<(), RootfsError> {
    owners.set_owner(target, meta.uid as u32, meta.gid as u32).map_err(|e| RootfsError::Chown {
        path: target.display().to_string(),
        uid: meta.uid,
        gid: meta.gid,
        source: e,
    })?;
    if meta.kind != EntryType::Symlink {
        // After chown: chown clears setuid/setgid bits.
        fs::set_permissions(target, fs::Permissions::from_mode(meta.mode)).map_err(|e| RootfsError::io(target, e))?;
    }
    set_xattrs(entry, target, warn)?;
    if meta.kind != EntryType::Directory {
        set_mtime(target, meta.mtime)?;
    }
    Ok(())
}

/// Sets the entry's SCHILY.xattr records; one the filesystem refuses is a warning.
fn set_xattrs<R: Read>(entry: &mut tar::Entry<R>, target: &Path, warn: &Warn) -> Result<(), RootfsError> {
    let Some(exts) = entry.pax_extensions().map_err(|e| RootfsError::io(target, e))? else {
        return Ok(());
    };
    for ext in exts {
        let ext = ext.map_err(|e| RootfsError::io(target, e))?;
        let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        // An owner record in a layer is a claim anyone could write, never
        // strata's own record (see `crate::owner`).
        if is_private_xattr(&name) || name == crate::owner::OVERRIDE_XATTR {
            continue;
        }
        if let Err(e) = xattr::set(target, &name, ext.value_bytes()) {
            warn.say(&format!("cannot set xattr {name} on {}: {e}", target.display()));
        }
    }
    Ok(())
}

/// The largest logical size of a sparse file: beyond any real file an image ships
/// (lastlog of a 2^32 uid is 1.25 TB of holes), small enough that the file stays
/// within what ext4 and xfs accept.
pub const MAX_SPARSE_SIZE: u64 = 4 << 40;

/// Writes a GNU sparse entry with its holes as holes: the tar crate's own unpack
/// seeks over them. Disk use is then the data extents, which the tar crate checks lie
/// inside the declared size, in order, and are present in the archive (their sum is
/// the entry's size in the archive): a 2 KB layer cannot fill the disk.
fn unpack_sparse<R: Read>(entry: &mut tar::Entry<R>, target: &Path, raw: &[u8]) -> Result<(), RootfsError> {
    let bad = |reason: String| RootfsError::BadEntry { path: display(raw), reason };
    let gnu = entry.header().as_gnu().ok_or_else(|| bad("sparse entry without a GNU header".into()))?;
    let size = gnu.real_size().map_err(|e| bad(format!("unreadable sparse size: {e}")))?;
    if size > MAX_SPARSE_SIZE {
        return Err(bad(format!("sparse file of {size} bytes exceeds the {MAX_SPARSE_SIZE} bytes strata unpacks")));
    }
    // The target was removed first (see `Layer::unpack_entry`) and the tar crate
    // creates it with O_EXCL, so a symlink planted there is never followed.
    entry.unpack(target).map(drop).map_err(|e| bad(format!("cannot write the sparse file: {e}")))
}

fn display(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Normalises a member name to a relative path; `None` for the root itself.
fn clean_path(raw: &[u8]) -> Result<Option<PathBuf>, RootfsError> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            // Layers written by other tools sometimes use absolute names; they are
            // relative to the layer root, never to the host's.
            Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(RootfsError::BadEntry { path: display(raw), reason: "path leaves the layer root (\"..\")".into() })
            }
        }
    }
    Ok(if out.as_os_str().is_empty() { None } else { Some(out) })
}

/// Creates missing parents of an entry as root-owned 0755 dirs (as tar does), and
/// refuses a parent that is a symlink or not a directory.
/// Errors name the archive entry (`entry`) and the offending parent as it appears in
/// the layer, never a path of the store.
fn ensure_parents(root: &Path, parent: &Path, entry: &[u8]) -> Result<(), RootfsError> {
    let rel = parent.strip_prefix(root).expect("parent is under the root");
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        let shown = || cur.strip_prefix(root).unwrap_or(&cur).display().to_string();
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(RootfsError::BadEntry {
                    path: display(entry),
                    reason: format!("its parent {} is a symlink in the layer; refusing to follow it", shown()),
                })
            }
            Ok(_) => {
                return Err(RootfsError::BadEntry { path: display(entry), reason: format!("its parent {} is not a directory", shown()) })
            }
            Err(_) => fs::create_dir(&cur).map_err(|e| RootfsError::io(&cur, e))?,
        }
    }
    Ok(())
}

fn remove_existing(path: &Path) -> Result<(), RootfsError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(|e| RootfsError::io(path, e)),
        Ok(_) => fs::remove_file(path).map_err(|e| RootfsError::io(path, e)),
        Err(_) => Ok(()),
    }
}

fn set_mtime(path: &Path, mtime: u64) -> Result<(), RootfsError> {
    let t = TimeSpec::new(mtime as i64, 0);
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .map_err(|e| RootfsError::io(path, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn tar_of(entries: &[(&str, EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(nix::unistd::geteuid().as_raw() as u64);
            h.set_gid(nix::unistd::getegid().as_raw() as u64);
            {
                let n = name.as_bytes();
                h.as_old_mut().name[..n.len()].copy_from_slice(n);
            }
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn opts() -> UnpackOptions {
        UnpackOptions { opaque_xattr: "user.overlay.opaque".into(), owners: crate::owner::Owners::Real, warn: Warn::ignore() }
    }

    #[test]
    fn parent_dir_escape_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("../evil", EntryType::Regular, b"x", None)]);
        let err = unpack(&t[..], d.path(), &opts()).unwrap_err();
        assert!(err.to_string().contains("../evil"), "{err}");
        assert!(!d.path().parent().unwrap().join("evil").exists());
    }

    #[test]
    fn symlinked_parent_is_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let link = outside.path().display().to_string();
        let t = tar_of(&[("esc", EntryType::Symlink, b"", Some(&link)), ("esc/pwned", EntryType::Regular, b"x", None)]);
        let err = unpack(&t[..], d.path(), &opts()).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn hardlink_to_outside_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("h", EntryType::Link, b"", Some("/etc/passwd"))]);
        assert!(unpack(&t[..], d.path(), &opts()).is_err());
        let t = tar_of(&[("h", EntryType::Link, b"", Some("../../etc/passwd"))]);
        assert!(unpack(&t[..], d.path(), &opts()).is_err());
    }

    #[test]
    fn files_links_and_absolute_names_land_inside() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("/abs/file", EntryType::Regular, b"data", None),
            ("./abs/hl", EntryType::Link, b"", Some("abs/file")),
            ("abs/sl", EntryType::Symlink, b"", Some("/nowhere")),
        ]);
        unpack(&t[..], d.path(), &opts()).unwrap();
        assert_eq!(fs::read(d.path().join("abs/file")).unwrap(), b"data");
        assert_eq!(fs::metadata(d.path().join("abs/hl")).unwrap().ino(), fs::metadata(d.path().join("abs/file")).unwrap().ino());
        assert_eq!(fs::read_link(d.path().join("abs/sl")).unwrap(), Path::new("/nowhere"));
        assert_eq!(fs::metadata(d.path().join("abs/file")).unwrap().mode() & 0o777, 0o644);
    }

    #[test]
    fn whiteouts_of_dot_names_are_refused_and_remove_nothing() {
        for name in [".wh.", ".wh..", ".wh...", "sub/.wh.", "sub/.wh..", "sub/.wh..."] {
            let outer = tempfile::tempdir().unwrap();
            fs::write(outer.path().join("sibling"), b"keep").unwrap();
            let d = outer.path().join("layer");
            fs::create_dir(&d).unwrap();
            let t = tar_of(&[
                ("sub/", EntryType::Directory, b"", None),
                ("sub/f", EntryType::Regular, b"f", None),
                (name, EntryType::Regular, b"", None),
            ]);
            let err = unpack(&t[..], &d, &opts()).unwrap_err();
            assert!(matches!(err, RootfsError::BadEntry { .. }), "{name}: {err}");
            assert!(err.to_string().contains(name), "{name}: the error names the entry: {err}");
            assert_eq!(fs::read(outer.path().join("sibling")).unwrap(), b"keep", "{name}: a file beside the layer dir survives");
            assert_eq!(fs::read(d.join("sub/f")).unwrap(), b"f", "{name}: the layer's own files survive");
        }
    }

    #[test]
    fn whiteouts_become_char_devices_when_permitted() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("etc/.wh.group", EntryType::Regular, b"", None)]);
        match unpack(&t[..], d.path(), &opts()) {
            Ok(()) => {
                let m = fs::symlink_metadata(d.path().join("etc/group")).unwrap();
                assert!(m.file_type().is_char_device() && m.rdev() == 0);
            }
            // Unprivileged test runs cannot mknod; the error must name the path.
            Err(e) => assert!(e.to_string().contains("etc/group"), "{e}"),
        }
    }

    #[test]
    fn an_owner_record_in_a_layer_is_not_unpacked() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("SCHILY.xattr.user.containers.override_stat", &b"0:0:04755"[..]), ("SCHILY.xattr.user.kept", &b"v"[..])])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("f").unwrap();
        h.set_size(1);
        h.set_mode(0o755);
        h.set_uid(nix::unistd::geteuid().as_raw().into());
        h.set_gid(nix::unistd::getegid().as_raw().into());
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let d = tempfile::tempdir().unwrap();
        unpack(&t[..], d.path(), &opts()).unwrap();
        let f = d.path().join("f");
        if xattr::get(&f, "user.kept").unwrap().is_none() {
            eprintln!("skipping: no user xattrs on this filesystem");
            return;
        }
        assert_eq!(xattr::get(&f, crate::owner::OVERRIDE_XATTR).unwrap(), None);
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o755);
    }
}

#[cfg(test)]
#[path = "unpack_sparse_tests.rs"]
mod sparse_tests;
