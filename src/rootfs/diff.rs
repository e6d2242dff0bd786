//! Upper directory -> layer tar stream.
//!
//! An overlay upper dir already is the step's diff, in overlay's own vocabulary:
//! a 0:0 character device marks a deleted path and an "opaque" xattr marks a directory
//! that hides everything below it. This module walks the dir in sorted order and
//! writes the OCI vocabulary instead (`.wh.NAME` files and one `.wh..wh..opq` per
//! opaque dir), with hard links, xattrs and ownership kept exactly. Headers are built
//! by hand (ustar + PAX records) so nothing is followed, rewritten or made sparse.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use super::lower::LowerView;
use super::{is_private_xattr, RootfsError, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::overlay_marks::{is_whiteout, FUSE_OPAQUE_FILE, OPAQUE_VALUE};

/// Choices that change the bytes of a layer.
#[derive(Clone, Debug, Default)]
pub struct DiffOptions {
    /// Xattr names that mark an opaque dir in this upper dir's driver.
    pub opaque_xattrs: Vec<String>,
    /// Clamp every mtime to this (SOURCE_DATE_EPOCH) for reproducible layers.
    pub clamp_mtime: Option<u64>,
    /// The layer dirs below the upper dir, top-most first. An opaque marker is only
    /// written where it hides a directory of these: fuse-overlayfs marks every new
    /// directory opaque, kernel overlay does not, and the layer must not depend on it.
    pub lowers: Vec<std::path::PathBuf>,
    /// Where owners recorded in single-id mode are honoured (sealed values only).
    pub owners: crate::owner::Owners,
}

/// What writing a diff saw, beside the tar itself.
#[derive(Clone, Debug, Default)]
pub struct Diffed {
    /// Entries written.
    pub entries: u64,
    /// The paths the upper dir deletes (its whiteouts), relative to it, in walk
    /// order: the build's WastedLayerSpace check reads them instead of walking
    /// the dir again.
    pub whiteouts: Vec<PathBuf>,
}

/// Writes the tar of `upper` to `out`.
pub fn write_diff<W: Write>(upper: &Path, out: W, opts: &DiffOptions) -> Result<Diffed, RootfsError> {
    let mut layer = LayerWriter { tar: Builder::new(out), links: HashMap::new(), diffed: Diffed::default(), opts };
    // The walk's own time (readdir, sorting) is what the tar of each entry leaves.
    let _walk = crate::trace::span(crate::trace::Phase::Walk);
    let walker = walkdir::WalkDir::new(upper)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
    for entry in walker {
        let entry = entry.map_err(|e| RootfsError::Walk { path: upper.display().to_string(), message: e.to_string() })?;
        crate::trace::timed(crate::trace::Phase::Tar, || layer.add(upper, &entry))?;
    }
    layer.tar.finish().map_err(|e| RootfsError::io(upper, e))?;
    Ok(layer.diffed)
}

/// The tar being written, with what later entries depend on.
struct LayerWriter<'a, W: Write> {
    tar: Builder<W>,
    /// The first name written for each (dev, inode) with more than one link.
    links: HashMap<(u64, u64), Vec<u8>>,
    diffed: Diffed,
    opts: &'a DiffOptions,
}

impl<W: Write> LayerWriter<'_, W> {
    /// Writes the entries for one path of the upper dir.
    fn add(&mut self, upper: &Path, entry: &walkdir::DirEntry) -> Result<(), RootfsError> {
        let path = entry.path();
        let rel = path.strip_prefix(upper).expect("walkdir stays below its root");
        // Names are bytes: a name that is not UTF-8 must reach the layer unchanged.
        let name: &[u8] = rel.as_os_str().as_bytes();
        let base = entry.file_name().as_bytes();
        // fuse-overlayfs keeps its own opaque markers as entries; the dir's own entry
        // already emitted the one OCI marker.
        if base == OPAQUE_MARKER.as_bytes() || base == FUSE_OPAQUE_FILE.as_bytes() {
            return Ok(());
        }
        let meta = fs::symlink_metadata(path).map_err(|e| RootfsError::io(path, e))?;
        let ft = meta.file_type();
        let mtime = clamp(meta.mtime(), self.opts.clamp_mtime);
        if is_whiteout(&meta) {
            self.diffed.whiteouts.push(rel.to_path_buf());
            let split = name.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
            return self.marker(&meta, mtime, &[&name[..split], WHITEOUT_PREFIX.as_bytes(), &name[split..]].concat());
        }
        let xattrs = read_xattrs(path)?;
        let mut h = base_header(&meta, mtime);
        // A single-id namespace records the true owner beside the file; only a value
        // strata sealed counts (see `crate::owner`).
        if let Some((uid, gid)) = self.opts.owners.recorded(path) {
            h.set_uid(u64::from(uid));
            h.set_gid(u64::from(gid));
        }
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            h.set_size(0);
            self.append(h, &[name, b"/"].concat(), None, &xattrs, io::empty())?;
            if is_opaque(path, &self.opts.opaque_xattrs) && hides_a_lower_dir(self.opts, rel) {
                self.marker(&meta, mtime, &[name, b"/", OPAQUE_MARKER.as_bytes()].concat())?;
            }
            Ok(())
        } else if ft.is_file() {
            self.file(h, path, name, &meta, &xattrs)
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| RootfsError::io(path, e))?;
            h.set_entry_type(EntryType::Symlink);
            h.set_size(0);
            self.append(h, name, Some(target.as_os_str().as_bytes()), &xattrs, io::empty())
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            self.node(h, path, name, &meta, &xattrs)
        } else {
            // Sockets cannot be stored in a tar; Docker skips them too.
            Ok(())
        }
    }

    /// An empty 0600 file that stands for something else: a whiteout or an opaque
    /// marker. It keeps the path's owner as the filesystem shows it.
    fn marker(&mut self, meta: &Metadata, mtime: u64, name: &[u8]) -> Result<(), RootfsError> {
        let mut h = base_header(meta, mtime);
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o600);
        h.set_size(0);
        self.append(h, name, None, &[], io::empty())
    }

    /// A regular file, or a hard link to the first name of its inode written so far.
    fn file(&mut self, mut h: Header, path: &Path, name: &[u8], meta: &Metadata, xattrs: &[(String, Vec<u8>)]) -> Result<(), RootfsError> {
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                h.set_entry_type(EntryType::Link);
                h.set_size(0);
                return self.append(h, name, Some(first.as_slice()), &[], io::empty());
            }
            self.links.insert(key, name.to_vec());
        }
        h.set_entry_type(EntryType::Regular);
        h.set_size(meta.len());
        let file = File::open(path).map_err(|e| RootfsError::io(path, e))?;
        // A file that changes size while being read would corrupt the tar framing;
        // take exactly the size in the header.
        self.append(h, name, None, xattrs, io::Read::take(file, meta.len()))
    }

    /// A character or block device or a fifo.
    fn node(&mut self, mut h: Header, path: &Path, name: &[u8], meta: &Metadata, xattrs: &[(String, Vec<u8>)]) -> Result<(), RootfsError> {
        let ft = meta.file_type();
        h.set_entry_type(if ft.is_char_device() {
            EntryType::Char
        } else if ft.is_block_device() {
            EntryType::Block
        } else {
            EntryType::Fifo
        });
        h.set_size(0);
        let rdev = meta.rdev();
        h.set_device_major(libc::major(rdev)).map_err(|e| RootfsError::io(path, e))?;
        h.set_device_minor(libc::minor(rdev)).map_err(|e| RootfsError::io(path, e))?;
        self.append(h, name, None, xattrs, io::empty())
    }

    fn append<R: io::Read>(
        &mut self,
        h: Header,
        name: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(String, Vec<u8>)],
        data: R,
    ) -> Result<(), RootfsError> {
        append(&mut self.tar, h, name, link, xattrs, data)?;
        self.diffed.entries += 1;
        Ok(())
    }
}

fn clamp(mtime: i64, limit: Option<u64>) -> u64 {
    let t = mtime.max(0) as u64;
    limit.map_or(t, |l| t.min(l))
}

fn base_header(meta: &Metadata, mtime: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(mtime);
    h
}

pub(super) fn hides_a_lower_dir(opts: &DiffOptions, rel: &Path) -> bool {
    let names: Vec<&str> = opts.opaque_xattrs.iter().map(String::as_str).collect();
    let view = LowerView { lowers: &opts.lowers, opaque: &names };
    matches!(view.find(rel), Some((_, m)) if m.is_dir())
}

fn is_opaque(dir: &Path, names: &[String]) -> bool {
    names.iter().any(|n| matches!(xattr::get(dir, n), Ok(Some(v)) if v == OPAQUE_VALUE))
        || fs::symlink_metadata(dir.join(OPAQUE_MARKER)).is_ok()
}

fn read_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>, RootfsError> {
    let mut out = Vec::new();
    let names = match xattr::list(path) {
        Ok(n) => n,
        // Filesystems without xattr support simply have none to keep.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(out),
        Err(e) => return Err(RootfsError::io(path, e)),
    };
    for name in names {
        let name = name.to_string_lossy().into_owned();
        if is_private_xattr(&name) || name == crate::owner::OVERRIDE_XATTR {
            continue;
        }
        if let Ok(Some(value)) = xattr::get(path, &name) {
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

/// Appends one entry, moving anything a ustar header cannot hold (long names, long
/// link targets, xattrs) into a PAX extended header in front of it.
fn append<W: Write, R: io::Read>(
    tar: &mut Builder<W>,
    mut h: Header,
    name: &[u8],
    link: Option<&[u8]>,
    xattrs: &[(String, Vec<u8>)],
    data: R,
) -> Result<(), RootfsError> {
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if !set_ustar_name(&mut h, name) {
        pax.push(("path".into(), name.to_vec()));
    }
    // ustar's octal fields stop at 8 GiB (size) and 2097151 (ids); PAX records carry
    // larger values in the standard way rather than GNU's base-256 encoding.
    const MAX_SIZE: u64 = 0o77777777777;
    const MAX_ID: u64 = 0o7777777;
    if let Ok(size) = h.size() {
        if size > MAX_SIZE {
            pax.push(("size".into(), size.to_string().into_bytes()));
        }
    }
    for (key, value) in [("uid", h.uid()), ("gid", h.gid())] {
        if let Ok(v) = value {
            if v > MAX_ID {
                pax.push((key.into(), v.to_string().into_bytes()));
            }
        }
    }
    if let Some(link) = link {
        let field = &mut h.as_old_mut().linkname;
        if link.len() <= field.len() {
            field[..link.len()].copy_from_slice(link);
        } else {
            let n = field.len();
            field.copy_from_slice(&link[..n]);
            pax.push(("linkpath".into(), link.to_vec()));
        }
    }
    for (k, v) in xattrs {
        pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    if !pax.is_empty() {
        tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(|e| RootfsError::io(shown(name), e))?;
    }
    h.set_cksum();
    tar.append(&h, data).map_err(|e| RootfsError::io(shown(name), e))
}

fn shown(name: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(name))
}

/// Fills the ustar name (and prefix) fields; false when the name does not fit and a
/// PAX `path` record must carry it (the header then holds a truncated copy).
fn set_ustar_name(h: &mut Header, name: &[u8]) -> bool {
    let ustar = h.as_ustar_mut().expect("headers are created as ustar");
    if name.len() <= ustar.name.len() {
        ustar.name[..name.len()].copy_from_slice(name);
        return true;
    }
    // Split at a '/' so that prefix <= 155 bytes and name <= 100 bytes.
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    for (i, b) in trimmed.iter().enumerate().rev() {
        if *b == b'/' && i <= ustar.prefix.len() && name.len() - i - 1 <= ustar.name.len() {
            ustar.prefix[..i].copy_from_slice(&name[..i]);
            let rest = &name[i + 1..];
            ustar.name[..rest.len()].copy_from_slice(rest);
            return true;
        }
    }
    let n = ustar.name.len();
    ustar.name.copy_from_slice(&name[..n]);
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn entries(upper: &Path, opts: &DiffOptions) -> Vec<(String, EntryType, Option<String>)> {
        let mut buf = Vec::new();
        write_diff(upper, &mut buf, opts).unwrap();
        let mut ar = tar::Archive::new(&buf[..]);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                (e.path().unwrap().display().to_string(), e.header().entry_type(), link)
            })
            .collect()
    }

    #[test]
    fn sorted_entries_with_hardlinks_symlinks_and_long_names() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path();
        fs::create_dir(up.join("b")).unwrap();
        fs::write(up.join("b/f"), b"hello").unwrap();
        fs::hard_link(up.join("b/f"), up.join("a")).unwrap();
        symlink("/etc/passwd", up.join("c")).unwrap();
        let long = "x".repeat(120);
        fs::write(up.join(&long), b"").unwrap();
        let got = entries(up, &DiffOptions::default());
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, vec!["a", "b/", "b/f", "c", long.as_str()]);
        assert_eq!(got[0].1, EntryType::Regular);
        assert_eq!((got[2].1, got[2].2.as_deref()), (EntryType::Link, Some("a")));
        assert_eq!((got[3].1, got[3].2.as_deref()), (EntryType::Symlink, Some("/etc/passwd")));
    }

    #[test]
    fn fuse_style_opaque_markers_become_one_oci_marker() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path();
        fs::create_dir(up.join("dir")).unwrap();
        fs::write(up.join("dir").join(OPAQUE_MARKER), b"").unwrap();
        fs::write(up.join("dir/kept"), b"1").unwrap();
        let lower = tempfile::tempdir().unwrap();
        let got = entries(up, &DiffOptions { lowers: vec![lower.path().to_path_buf()], ..Default::default() });
        assert_eq!(got.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), vec!["dir/", "dir/kept"], "nothing below to hide");
        fs::create_dir(lower.path().join("dir")).unwrap();
        let got = entries(up, &DiffOptions { lowers: vec![lower.path().to_path_buf()], ..Default::default() });
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, vec!["dir/", "dir/.wh..wh..opq", "dir/kept"]);
    }

    #[test]
    fn names_that_are_not_utf8_reach_the_layer_unchanged() {
        use std::ffi::OsStr;
        let d = tempfile::tempdir().unwrap();
        let dir = OsStr::from_bytes(b"d\xff\xfe");
        let file = OsStr::from_bytes(b"caf\xe9");
        fs::create_dir(d.path().join(dir)).unwrap();
        fs::write(d.path().join(dir).join(file), b"latin-1").unwrap();
        fs::hard_link(d.path().join(dir).join(file), d.path().join(dir).join("link")).unwrap();
        let long = [vec![b'x'; 120], b"\xff".to_vec()].concat();
        fs::write(d.path().join(OsStr::from_bytes(&long)), b"").unwrap();
        let mut buf = Vec::new();
        write_diff(d.path(), &mut buf, &DiffOptions::default()).unwrap();
        let mut ar = tar::Archive::new(&buf[..]);
        let got: Vec<(Vec<u8>, Option<Vec<u8>>)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path_bytes().into_owned(), e.link_name_bytes().map(|l| l.into_owned()))
            })
            .collect();
        let want: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
            (b"d\xff\xfe/".to_vec(), None),
            (b"d\xff\xfe/caf\xe9".to_vec(), None),
            (b"d\xff\xfe/link".to_vec(), Some(b"d\xff\xfe/caf\xe9".to_vec())),
            (long, None),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn large_ids_travel_in_pax_records() {
        let d = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        let mut tar = Builder::new(&mut buf);
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(5_000_000);
        h.set_gid(7);
        append(&mut tar, h, b"big-owner", None, &[], io::empty()).unwrap();
        tar.finish().unwrap();
        drop(tar);
        let mut ar = tar::Archive::new(&buf[..]);
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        let exts: Vec<(String, String)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_string(), x.value().unwrap().to_string())
            })
            .collect();
        assert!(exts.contains(&("uid".to_string(), "5000000".to_string())), "{exts:?}");
        let _ = d;
    }

    #[test]
    fn sizes_beyond_ustar_travel_in_a_pax_record() {
        // 9 GiB does not fit ustar's 11 octal digits; the header alone is written (no
        // data follows), which is all this test reads back.
        const SIZE: u64 = 9 << 30;
        let mut buf = Vec::new();
        let mut tar = Builder::new(&mut buf);
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(SIZE);
        append(&mut tar, h, b"huge", None, &[], io::empty()).unwrap();
        drop(tar);
        let mut ar = tar::Archive::new(&buf[..]);
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        let size = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| x.unwrap())
            .find(|x| x.key() == Ok("size"))
            .map(|x| x.value().unwrap().to_string());
        assert_eq!(size.as_deref(), Some("9663676416"));
        assert_eq!(e.size(), SIZE, "readers take the PAX size");
        assert_eq!(e.path().unwrap(), Path::new("huge"));
    }

    /// The names every driver's opaque dirs may carry (store/layer_stack.rs passes these).
    fn all_opaque_names() -> Vec<String> {
        crate::overlay_marks::OPAQUE_XATTRS.iter().map(|s| s.to_string()).collect()
    }

    /// An upper dir `dir/` marked opaque by `mark`, over a lower dir that has `dir/`.
    fn opaque_case(mark: impl Fn(&Path) -> io::Result<()>) -> io::Result<Vec<String>> {
        let up = tempfile::tempdir().unwrap();
        let lower = tempfile::tempdir().unwrap();
        fs::create_dir(lower.path().join("dir")).unwrap();
        fs::write(lower.path().join("dir/hidden"), b"old").unwrap();
        fs::create_dir(up.path().join("dir")).unwrap();
        fs::write(up.path().join("dir/new"), b"new").unwrap();
        mark(&up.path().join("dir"))?;
        let opts = DiffOptions { opaque_xattrs: all_opaque_names(), lowers: vec![lower.path().to_path_buf()], ..Default::default() };
        let mut buf = Vec::new();
        write_diff(up.path(), &mut buf, &opts).unwrap();
        let mut ar = tar::Archive::new(&buf[..]);
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let xattrs: Vec<String> = e
                .pax_extensions()
                .unwrap()
                .map(|x| x.map(|x| String::from_utf8_lossy(x.unwrap().key_bytes()).into_owned()).collect())
                .unwrap_or_default();
            assert!(xattrs.iter().all(|k| !k.contains("overlay")), "no overlay xattr reaches the layer: {xattrs:?}");
            out.push(e.path().unwrap().display().to_string());
        }
        Ok(out)
    }

    #[test]
    fn opaque_dirs_of_every_driver_give_one_oci_marker() {
        let want = vec!["dir/".to_string(), format!("dir/{OPAQUE_MARKER}"), "dir/new".to_string()];
        let xattr_mark = |name: &'static str| move |d: &Path| xattr::set(d, name, b"y");
        // Kernel overlay in a user namespace, fuse-overlayfs's own xattr.
        for name in ["user.overlay.opaque", "user.fuseoverlayfs.opaque"] {
            assert_eq!(opaque_case(xattr_mark(name)).unwrap(), want, "{name}");
        }
        // fuse-overlayfs also (or only) leaves marker files in the dir.
        let files = |d: &Path| {
            fs::write(d.join(OPAQUE_MARKER), b"")?;
            fs::write(d.join(".wh..opq"), b"")
        };
        assert_eq!(opaque_case(files).unwrap(), want, "fuse-overlayfs marker files");
        // Kernel overlay as real root; setting trusted.* needs CAP_SYS_ADMIN, which
        // scripts/test.sh (run as root) has. Without it the refusal must be EPERM.
        match opaque_case(xattr_mark("trusted.overlay.opaque")) {
            Ok(got) => assert_eq!(got, want, "trusted.overlay.opaque"),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
        // A value other than "y" is not opaque.
        let no = opaque_case(|d: &Path| xattr::set(d, "user.overlay.opaque", b"n")).unwrap();
        assert_eq!(no, vec!["dir/", "dir/new"]);
    }

    #[test]
    fn mtimes_are_clamped() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("f"), b"x").unwrap();
        let mut buf = Vec::new();
        write_diff(d.path(), &mut buf, &DiffOptions { clamp_mtime: Some(10), ..Default::default() }).unwrap();
        let mut ar = tar::Archive::new(&buf[..]);
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().mtime().unwrap(), 10);
    }

    #[test]
    fn only_sealed_owner_records_count_and_none_reaches_the_layer() {
        use crate::owner::{OwnerKey, Owners, KEY_FILE, OVERRIDE_XATTR};
        let d = tempfile::tempdir().unwrap();
        let up = d.path().join("upper");
        fs::create_dir(&up).unwrap();
        for f in ["forged", "sealed"] {
            fs::write(up.join(f), b"x").unwrap();
            fs::set_permissions(up.join(f), std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
        }
        if xattr::set(up.join("forged"), OVERRIDE_XATTR, b"0:0:04755").is_err() {
            eprintln!("skipping: no user xattrs on this filesystem");
            return;
        }
        let key = OwnerKey::load_or_create(&d.path().join(KEY_FILE)).unwrap();
        xattr::set(up.join("sealed"), OVERRIDE_XATTR, key.seal(1000, 100, 0o4755).as_bytes()).unwrap();
        let me = fs::metadata(up.join("forged")).unwrap();
        let owners_of = |opts: &DiffOptions| {
            let mut buf = Vec::new();
            write_diff(&up, &mut buf, opts).unwrap();
            let mut ar = tar::Archive::new(&buf[..]);
            let mut out = Vec::new();
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let pax: Vec<String> =
                    e.pax_extensions().unwrap().map(|x| x.map(|r| r.unwrap().key().unwrap().to_string()).collect()).unwrap_or_default();
                assert!(!pax.iter().any(|k| k.contains(OVERRIDE_XATTR)), "the record never reaches a layer: {pax:?}");
                let h = e.header();
                out.push((e.path().unwrap().display().to_string(), h.uid().unwrap(), h.gid().unwrap()));
            }
            out
        };
        let mine = (u64::from(me.uid()), u64::from(me.gid()));
        let single = DiffOptions { owners: Owners::Recorded(key), ..Default::default() };
        assert_eq!(owners_of(&single), vec![("forged".into(), mine.0, mine.1), ("sealed".into(), 1000, 100)]);
        let mapped = DiffOptions::default();
        assert_eq!(
            owners_of(&mapped),
            vec![("forged".into(), mine.0, mine.1), ("sealed".into(), mine.0, mine.1)],
            "every id mapped: no record counts"
        );
    }
}
