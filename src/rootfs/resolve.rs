//! Path resolution confined to a root directory.
//!
//! COPY and WORKDIR write into a mounted image tree whose symlinks are the image's,
//! not the host's: `/bin -> usr/bin` must land in the tree's usr/bin, and a link to
//! `/etc` or `../../..` must never reach the host. [`resolve_in`] walks a path one
//! component at a time, expanding symlinks against the tree's root and clamping `..`
//! there, the way a chroot would.
//!
//! A resolved path is only a name: between the check and an open by path, a
//! directory of a build context can be swapped for a symlink to the host. Readers
//! of a context therefore open what they resolved with [`DirFd`]: component by
//! component from the root's descriptor, never following a symlink, and read the
//! content from the descriptor they checked.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use super::RootfsError;

/// Symlink hops allowed before giving up (Linux's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// Whether the last component is itself followed when it is a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Last {
    Follow,
    NoFollow,
}

/// Resolves `path` (absolute or relative to the tree's root) inside `root`; the
/// result is a host path below `root`. Missing components are fine: they resolve
/// lexically, ready to be created.
pub fn resolve_in(root: &Path, path: &Path, last: Last) -> Result<PathBuf, RootfsError> {
    let mut pending: Vec<OsString> = components(path);
    pending.reverse();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = host_path(root, &resolved).join(&c);
        let is_last = pending.is_empty();
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && !(is_last && last == Last::NoFollow) => {
                hops += 1;
                if hops > MAX_LINKS {
                    return Err(RootfsError::BadEntry {
                        path: path.display().to_string(),
                        reason: "too many levels of symbolic links".into(),
                    });
                }
                let target = fs::read_link(&candidate).map_err(|e| RootfsError::io(&candidate, e))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved.push(c),
        }
    }
    Ok(host_path(root, &resolved))
}

fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn host_path(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

/// A directory opened beneath a root without following any symlink: whatever is
/// renamed or swapped later, entries read through it are entries of this directory.
#[derive(Debug)]
pub struct DirFd {
    dir: File,
    /// Its path, for messages only (never opened again).
    path: PathBuf,
}

/// One entry of a [`DirFd`], opened (or read, for a symlink) without following it.
#[derive(Debug)]
pub enum Entry {
    Dir(DirFd, FileStat),
    File(File, FileStat),
    Symlink(PathBuf, FileStat),
    /// A device, fifo or socket: not opened.
    Other(FileStat),
}

impl Entry {
    /// The entry's status as seen through its descriptor (lstat for the rest).
    pub fn stat(&self) -> &FileStat {
        match self {
            Entry::Dir(_, st) | Entry::File(_, st) | Entry::Symlink(_, st) | Entry::Other(st) => st,
        }
    }
}

/// Only the file type bits of `st`.
pub fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// Test hook: runs between the type check of an entry and its open, where a
/// concurrent swap would strike.
#[cfg(test)]
pub(crate) static BEFORE_OPEN: std::sync::Mutex<Option<OpenHook>> = std::sync::Mutex::new(None);
#[cfg(test)]
pub(crate) type OpenHook = Box<dyn Fn(&Path) + Send>;
/// Serialises the tests that set [`BEFORE_OPEN`]: one hook at a time.
#[cfg(test)]
pub(crate) static HOOK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl DirFd {
    /// Opens the root itself (a path strata chose or canonicalised).
    pub fn open_root(path: &Path) -> Result<DirFd, RootfsError> {
        let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| RootfsError::io(path, e.into()))?;
        Ok(DirFd { dir: File::from(fd), path: path.to_path_buf() })
    }

    /// Opens the directory `rel` below this one; every component must be a real
    /// directory now (a symlink there fails with "changed while being read").
    pub fn open_below(&self, rel: &Path) -> Result<DirFd, RootfsError> {
        let mut cur: Option<DirFd> = None;
        for c in rel.components() {
            let name = match c {
                Component::Normal(n) => n,
                Component::CurDir => continue,
                _ => return Err(RootfsError::BadEntry { path: rel.display().to_string(), reason: "not a path below the root".into() }),
            };
            let parent = cur.as_ref().unwrap_or(self);
            let next = parent.open_dir(name)?;
            cur = Some(next);
        }
        match cur {
            Some(d) => Ok(d),
            None => Ok(DirFd { dir: self.dir.try_clone().map_err(|e| RootfsError::io(&self.path, e))?, path: self.path.clone() }),
        }
    }

    /// Opens the subdirectory `name`, never through a symlink.
    pub fn open_dir(&self, name: &OsStr) -> Result<DirFd, RootfsError> {
        let path = self.path.join(name);
        let fd = openat(self.dir.as_fd(), name, DIR_FLAGS, Mode::empty()).map_err(|e| swapped(&path, e))?;
        Ok(DirFd { dir: File::from(fd), path })
    }

    /// Opens the entry `name` without following it: a directory or regular file is
    /// opened and its status taken from the descriptor, a symlink is read.
    pub fn open_entry(&self, name: &OsStr) -> Result<Entry, RootfsError> {
        let path = self.path.join(name);
        let st = fstatat(self.dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| RootfsError::io(&path, e.into()))?;
        #[cfg(test)]
        if let Some(hook) = BEFORE_OPEN.lock().unwrap().as_ref() {
            hook(&path);
        }
        let kind = file_type(&st);
        if kind == SFlag::S_IFLNK {
            let target = readlinkat(self.dir.as_fd(), name).map_err(|e| swapped(&path, e))?;
            return Ok(Entry::Symlink(PathBuf::from(target), st));
        }
        if kind == SFlag::S_IFDIR {
            let d = self.open_dir(name)?;
            let st = fstat(d.dir.as_fd()).map_err(|e| RootfsError::io(&path, e.into()))?;
            return Ok(Entry::Dir(d, st));
        }
        if kind != SFlag::S_IFREG {
            return Ok(Entry::Other(st));
        }
        // O_NONBLOCK: a fifo swapped in must not hang the build.
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd: OwnedFd = openat(self.dir.as_fd(), name, flags, Mode::empty()).map_err(|e| swapped(&path, e))?;
        let st = fstat(fd.as_fd()).map_err(|e| RootfsError::io(&path, e.into()))?;
        if file_type(&st) != SFlag::S_IFREG {
            return Err(changed(&path));
        }
        Ok(Entry::File(File::from(fd), st))
    }

    /// The names in this directory (without `.` and `..`), sorted by their bytes.
    pub fn names(&self) -> Result<Vec<OsString>, RootfsError> {
        let fd = self.dir.try_clone().map_err(|e| RootfsError::io(&self.path, e))?;
        let mut dir = nix::dir::Dir::from_fd(OwnedFd::from(fd)).map_err(|e| RootfsError::io(&self.path, e.into()))?;
        let mut names = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(|e| RootfsError::io(&self.path, e.into()))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(OsStr::from_bytes(n).to_os_string());
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(names)
    }

    /// The open directory (for its xattrs and status).
    pub fn file(&self) -> &File {
        &self.dir
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Its path when opened, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens the regular file `rel` below `root` (a symlink anywhere on the way, the
/// file itself included, is refused), for readers such as the ignore file's.
pub fn open_file_below(root: &Path, rel: &Path) -> Result<File, RootfsError> {
    let name =
        rel.file_name().ok_or_else(|| RootfsError::BadEntry { path: rel.display().to_string(), reason: "not a file name".into() })?;
    let dir = DirFd::open_root(root)?.open_below(rel.parent().unwrap_or(Path::new("")))?;
    match dir.open_entry(name)? {
        Entry::File(f, _) => Ok(f),
        _ => Err(RootfsError::BadEntry { path: root.join(rel).display().to_string(), reason: "not a regular file".into() }),
    }
}

fn changed(path: &Path) -> RootfsError {
    RootfsError::BadEntry {
        path: path.display().to_string(),
        reason: "changed while being read (replaced by a symlink or another kind of file); refusing to follow it".into(),
    }
}

/// ELOOP (O_NOFOLLOW met a symlink) and ENOTDIR mean the entry was swapped since
/// its check; anything else is an ordinary I/O error.
fn swapped(path: &Path, e: nix::errno::Errno) -> RootfsError {
    match e {
        nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => changed(path),
        e => RootfsError::io(path, io::Error::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("/etc", r.join("etclink")).unwrap();
        symlink("../../../../..", r.join("up")).unwrap();
        assert_eq!(resolve_in(r, Path::new("/bin/sh"), Last::Follow).unwrap(), r.join("usr/bin/sh"));
        assert_eq!(resolve_in(r, Path::new("/etclink/passwd"), Last::Follow).unwrap(), r.join("etc/passwd"));
        assert_eq!(resolve_in(r, Path::new("/up/etc/shadow"), Last::Follow).unwrap(), r.join("etc/shadow"));
        assert_eq!(resolve_in(r, Path::new("../../x"), Last::Follow).unwrap(), r.join("x"));
        assert_eq!(resolve_in(r, Path::new("/bin"), Last::NoFollow).unwrap(), r.join("bin"));
    }

    #[test]
    fn symlink_loops_fail() {
        let d = tempfile::tempdir().unwrap();
        symlink("b", d.path().join("a")).unwrap();
        symlink("a", d.path().join("b")).unwrap();
        assert!(resolve_in(d.path(), Path::new("/a/x"), Last::Follow).is_err());
    }

    #[test]
    fn a_symlinked_component_is_refused() {
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("secret"), b"s").unwrap();
        let ctx = tempfile::tempdir().unwrap();
        symlink(host.path(), ctx.path().join("dir")).unwrap();
        let root = DirFd::open_root(ctx.path()).unwrap();
        let err = root.open_below(Path::new("dir")).unwrap_err();
        assert!(err.to_string().contains("changed while being read"), "{err}");
        assert!(open_file_below(ctx.path(), Path::new("dir/secret")).is_err());
        symlink(host.path().join("secret"), ctx.path().join("f")).unwrap();
        assert!(open_file_below(ctx.path(), Path::new("f")).is_err(), "a symlinked file is not followed");
        match root.open_entry(OsStr::new("f")).unwrap() {
            Entry::Symlink(t, _) => assert_eq!(t, host.path().join("secret")),
            other => panic!("a symlink is read as one: {other:?}"),
        }
    }

    #[test]
    fn a_swap_between_check_and_open_is_refused() {
        // The hook swaps the checked directory for a symlink to the host right
        // before the open, as a racing process would.
        let _serial = HOOK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("secret"), b"s").unwrap();
        let ctx = tempfile::tempdir().unwrap();
        fs::create_dir(ctx.path().join("dir")).unwrap();
        fs::write(ctx.path().join("dir/secret"), b"inside").unwrap();
        fs::write(ctx.path().join("file"), b"inside").unwrap();
        let (ctx_path, host_path) = (ctx.path().to_path_buf(), host.path().to_path_buf());
        *BEFORE_OPEN.lock().unwrap() = Some(Box::new(move |p: &Path| {
            // Other tests may open entries meanwhile: touch only this context.
            if !p.starts_with(&ctx_path) {
                return;
            }
            if p.ends_with("dir") && fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                fs::rename(p, ctx_path.join("moved")).unwrap();
                symlink(&host_path, p).unwrap();
            }
            if p.ends_with("file") && fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) {
                fs::remove_file(p).unwrap();
                symlink(host_path.join("secret"), p).unwrap();
            }
        }));
        let root = DirFd::open_root(ctx.path()).unwrap();
        let dir = root.open_entry(OsStr::new("dir"));
        let file = root.open_entry(OsStr::new("file"));
        *BEFORE_OPEN.lock().unwrap() = None;
        let err = dir.unwrap_err();
        assert!(err.to_string().contains("changed while being read"), "{err}");
        let err = file.unwrap_err();
        assert!(err.to_string().contains("changed while being read"), "{err}");
    }
}
