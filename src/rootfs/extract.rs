//! A user's tar archive (ADD of a local archive) -> files in an image tree.
//!
//! Unlike `unpack`, the target is a live image tree, not an empty layer dir: entries
//! replace what is there. Every member path is resolved inside the destination
//! directory as if it were `/`, as Docker's untar chrooted into the destination
//! resolves it: a member symlink leading up or out (`link -> ../..`, `-> /`) names
//! the destination itself for the members below it, so nothing lands beside or
//! above the destination. Compression is detected from the stream's magic bytes,
//! as Docker does, not from the file name.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::resolve::{resolve_in, Last};
use super::RootfsError;

/// Compression of an archive, by magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// Detects the compression of `file`; `None` when it is not an archive at all.
#[cfg(test)]
fn detect(file: &Path) -> io::Result<Option<Compression>> {
    detect_file(&mut File::open(file)?)
}

/// Detects the compression of an open file from its first bytes, then rewinds it.
pub fn detect_file(f: &mut File) -> io::Result<Option<Compression>> {
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    io::Seek::rewind(f)?;
    let h = &head[..n];
    Ok(if h.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if h.starts_with(b"BZh") {
        Some(Compression::Bzip2)
    } else if h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(Compression::Xz)
    } else if h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else if n >= 262 && &h[257..262] == b"ustar" {
        Some(Compression::None)
    } else {
        None
    })
}

/// Opens `file` as a decompressed tar stream.
#[cfg(test)]
fn open_archive(file: &Path, compression: Compression) -> io::Result<Box<dyn Read>> {
    open_archive_file(File::open(file)?, compression)
}

/// Reads an open file as a decompressed tar stream.
pub fn open_archive_file(file: File, compression: Compression) -> io::Result<Box<dyn Read>> {
    let reader = BufReader::with_capacity(1 << 20, file);
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(reader)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(reader)),
        Compression::Zstd => return Err(io::Error::new(io::ErrorKind::Unsupported, "zstd archives are not supported by ADD yet")),
    })
}

/// Extracts `input` into the directory `dest` (a host path, already resolved in
/// the image tree), confined to `dest`. `owner` overrides the archive's
/// ownership (ADD --chown); `owners` says how owners are set.
pub fn extract<R: Read>(input: R, dest: &Path, owner: Option<(u32, u32)>, owners: &crate::owner::Owners) -> Result<(), RootfsError> {
    let mut archive = tar::Archive::new(BufReader::new(input));
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    for entry in archive.entries().map_err(|e| RootfsError::io(dest, e))? {
        let mut entry = entry.map_err(|e| RootfsError::io(dest, e))?;
        // The name as bytes (a name that is not UTF-8 is kept as it is); `raw` is only
        // for messages.
        let name = entry.path_bytes().into_owned();
        let raw = String::from_utf8_lossy(&name).into_owned();
        let Some(rel) = relative(Path::new(OsStr::from_bytes(&name)), &raw)? else { continue };
        let parent = resolve_in(dest, rel.parent().unwrap_or(Path::new("")), Last::Follow)?;
        fs::create_dir_all(&parent).map_err(|e| RootfsError::io(&parent, e))?;
        let target = parent.join(rel.file_name().expect("a relative path has a name"));
        let h = entry.header().clone();
        let kind = h.entry_type();
        let (uid, gid) = owner.unwrap_or((h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32));
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let mtime = h.mtime().unwrap_or(0);
        if let Ok(existing) = fs::symlink_metadata(&target) {
            if !(existing.is_dir() && kind == EntryType::Directory) {
                let r = if existing.is_dir() { fs::remove_dir_all(&target) } else { fs::remove_file(&target) };
                r.map_err(|e| RootfsError::io(&target, e))?;
            }
        }
        match kind {
            EntryType::Directory => {
                if !target.is_dir() {
                    fs::create_dir(&target).map_err(|e| RootfsError::io(&target, e))?;
                }
                dirs.push((target.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| RootfsError::io(&target, e))?;
                io::copy(&mut entry, &mut f).map_err(|e| RootfsError::io(&target, e))?;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| RootfsError::BadEntry { path: raw.clone(), reason: "symlink without target".into() })?;
                symlink(link.as_ref(), &target).map_err(|e| RootfsError::io(&target, e))?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| RootfsError::BadEntry { path: raw.clone(), reason: "hard link without target".into() })?;
                let link_rel = relative(&link, &link.to_string_lossy())?
                    .ok_or_else(|| RootfsError::BadEntry { path: raw.clone(), reason: "hard link to the root".into() })?;
                let src = resolve_in(dest, &link_rel, Last::NoFollow)?;
                fs::hard_link(&src, &target).map_err(|e| RootfsError::io(&target, e))?;
                continue;
            }
            // Devices and fifos from a user archive are skipped, as in rootless Docker.
            _ => continue,
        }
        owners.set_owner(&target, uid, gid).map_err(|e| RootfsError::Chown {
            path: target.display().to_string(),
            uid: uid.into(),
            gid: gid.into(),
            source: e,
        })?;
        if kind != EntryType::Symlink {
            fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(|e| RootfsError::io(&target, e))?;
            set_mtime(&target, mtime)?;
        }
    }
    for (d, mtime) in dirs.into_iter().rev() {
        set_mtime(&d, mtime)?;
    }
    Ok(())
}

fn set_mtime(path: &Path, mtime: u64) -> Result<(), RootfsError> {
    let t = TimeSpec::new(mtime as i64, 0);
    utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(|e| RootfsError::io(path, e.into()))
}

/// An archive member name as a relative path; `..` that would climb above the
/// extraction dir is refused.
fn relative(path: &Path, raw: &str) -> Result<Option<PathBuf>, RootfsError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir if !out.pop() => {
                return Err(RootfsError::BadEntry { path: raw.to_string(), reason: "path leaves the extraction directory (\"..\")".into() })
            }
            _ => {}
        }
    }
    Ok(if out.as_os_str().is_empty() { None } else { Some(out) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            h.set_uid(nix::unistd::geteuid().as_raw().into());
            h.set_gid(nix::unistd::getegid().as_raw().into());
            h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extracts_gzip_archives_inside_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        fs::create_dir_all(tree.join("usr/lib")).unwrap();
        symlink("usr/lib", tree.join("lib")).unwrap();
        let t = tar_bytes(&[("a/b.txt", b"hello"), ("x", b"1")]);
        let gz = d.path().join("a.tar.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        io::Write::write_all(&mut enc, &t).unwrap();
        enc.finish().unwrap();
        let c = detect(&gz).unwrap().unwrap();
        assert_eq!(c, Compression::Gzip);
        extract(open_archive(&gz, c).unwrap(), &tree.join("usr/lib"), None, &crate::owner::Owners::Real).unwrap();
        assert_eq!(fs::read(tree.join("usr/lib/a/b.txt")).unwrap(), b"hello");
        assert_eq!(fs::metadata(tree.join("usr/lib/x")).unwrap().permissions().mode() & 0o777, 0o640);
        let plain = d.path().join("plain.txt");
        fs::write(&plain, b"not an archive").unwrap();
        assert_eq!(detect(&plain).unwrap(), None);
    }

    #[test]
    fn names_that_are_not_utf8_are_kept() {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_uid(nix::unistd::geteuid().as_raw().into());
        h.set_gid(nix::unistd::getegid().as_raw().into());
        h.as_ustar_mut().unwrap().name[..6].copy_from_slice(b"caf\xe9/x");
        h.set_cksum();
        b.append(&h, &b"hi"[..]).unwrap();
        let t = b.into_inner().unwrap();
        extract(&t[..], d.path(), None, &crate::owner::Owners::Real).unwrap();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
        assert_eq!(fs::read(d.path().join(name).join("x")).unwrap(), b"hi");
        assert!(!d.path().join("caf\u{fffd}").exists(), "no lossy replacement name");
    }

    #[test]
    fn member_symlinks_leading_out_resolve_inside_the_destination() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("tree/dest");
        fs::create_dir_all(&dest).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let (uid, gid) = (nix::unistd::geteuid().as_raw().into(), nix::unistd::getegid().as_raw().into());
        let mut append = |name: &str, kind: EntryType, link: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(uid);
            h.set_gid(gid);
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_gnu_mut().unwrap().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        append("up", EntryType::Symlink, "../..", b"");
        append("up/x", EntryType::Regular, "", b"x");
        append("root", EntryType::Symlink, "/", b"");
        append("root/y", EntryType::Regular, "", b"y");
        append("sub/in", EntryType::Symlink, "../..", b"");
        append("sub/in/w", EntryType::Regular, "", b"w");
        append("hard", EntryType::Link, "up/x", b"");
        let t = b.into_inner().unwrap();
        extract(&t[..], &dest, None, &crate::owner::Owners::Real).unwrap();
        for (name, content) in [("x", "x"), ("y", "y"), ("w", "w"), ("hard", "x")] {
            assert_eq!(fs::read_to_string(dest.join(name)).unwrap(), content, "{name} lands in the destination");
        }
        assert_eq!(fs::read_link(dest.join("up")).unwrap(), Path::new("../.."), "the link itself is kept as written");
        let outside: Vec<_> = walkdir::WalkDir::new(d.path())
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .filter(|p| !p.starts_with(&dest) && p != d.path() && p != &d.path().join("tree"))
            .collect();
        assert!(outside.is_empty(), "written outside the destination: {outside:?}");
    }

    #[test]
    fn climbing_out_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_bytes(&[("../../evil", b"x")]);
        let err = extract(&t[..], d.path(), None, &crate::owner::Owners::Real).unwrap_err();
        assert!(err.to_string().contains("evil"));
    }
}
