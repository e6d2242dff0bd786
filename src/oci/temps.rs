//! Temp files and dirs of the store's writers, and what dead writers left behind.
//!
//! Every writer holds an exclusive `flock` on its temp file or dir from right after
//! creating it until it is done; the kernel drops the lock when the writer dies, however
//! it dies. A leftover is one nobody holds the lock of: clean-up takes the lock without
//! waiting and removes the temp while holding it. A lock, unlike a pid, means the same
//! in every pid namespace, so two containers (or a container and the host) sharing one
//! store volume never remove each other's live temps, and a killed build or load no
//! longer leaves a half-written blob behind for ever.
//!
//! Temp names still carry the writer's pid (`.tmp-PID-XXXXXX` beside the blobs and
//! index, `.tmp-import-PID-XXXXXX` and `.tmp-export-PID-XXXXXX` in the layout dir), for
//! diagnostics, and a pid that runs in our namespace spares its temps without a look at
//! the lock (a strata from before the lock, in this namespace, is covered that way).

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use tempfile::NamedTempFile;

use super::{OciError, Result};

/// The prefix of every temp name; blobs never start with a dot.
const TEMP_PREFIX: &str = ".tmp-";

/// Creations a concurrent clean-up may undo before a writer gives up (it can only
/// undo one in the instant between create and lock).
const ATTEMPTS: usize = 5;

/// The name prefix for a temp file of this process; `kind` is "", "import-" or
/// "export-".
pub(crate) fn temp_prefix(kind: &str) -> String {
    format!("{TEMP_PREFIX}{kind}{}-", std::process::id())
}

/// The pid of the writer that named a temp file, when the name carries one (temp
/// files made before names carried pids do not: `prune` removes those).
pub(crate) fn writer_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    let rest = rest.strip_prefix("import-").or_else(|| rest.strip_prefix("export-")).unwrap_or(rest);
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Whether process `pid` runs in our pid namespace. A writer in another namespace is
/// not seen here (its lock protects its temps); a reused pid only delays the clean-up.
fn alive_here(pid: u32) -> bool {
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

/// A temp file in `dir` named for this process (`kind` as in [`temp_prefix`]), its
/// writer's lock held until the file is dropped or persisted and closed.
pub(crate) fn create_file(dir: &Path, kind: &str) -> Result<NamedTempFile> {
    let make = || tempfile::Builder::new().prefix(&temp_prefix(kind)).tempfile_in(dir);
    // A duplicate shares the open file description, and so the lock, with the file.
    create_locked(make, |t| t.as_file().try_clone().map(|f| (t.path().to_path_buf(), f)))
        .map(|(t, _)| t)
        .map_err(OciError::io("create temp file in", dir))
}

/// A temp dir in `dir` named for this process (`kind` as in [`temp_prefix`]).
pub(crate) fn create_dir(dir: &Path, kind: &str) -> Result<TempDir> {
    TempDir::new_in(dir, &temp_prefix(kind)).map_err(OciError::io("create temp dir in", dir))
}

/// A temp dir whose writer's lock is held while it lives; removed when dropped.
/// Also the step scratch dirs' (`rootfs::layers`), so they get the same clean-up.
#[derive(Debug)]
pub struct TempDir {
    // Declared first, so dropped first: the dir goes before its lock is released.
    dir: tempfile::TempDir,
    _lock: File,
}

impl TempDir {
    /// Creates `parent/PREFIX` + random characters and takes its lock.
    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<TempDir> {
        let make = || tempfile::Builder::new().prefix(prefix).tempdir_in(parent);
        let (dir, lock) = create_locked(make, |t| File::open(t.path()).map(|f| (t.path().to_path_buf(), f)))?;
        Ok(TempDir { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Creates a temp with `make` and takes the writer's lock on `lock_fd`'s descriptor.
/// In the instant before the lock, a clean-up in another pid namespace may take the
/// temp for a dead writer's and remove it: then the name no longer leads to what we
/// locked, and we start again.
fn create_locked<T>(make: impl Fn() -> io::Result<T>, lock_fd: impl Fn(&T) -> io::Result<(PathBuf, File)>) -> io::Result<(T, File)> {
    for _ in 0..ATTEMPTS {
        let temp = make()?;
        let (path, file) = lock_fd(&temp)?;
        lock_for_writing(&file).map_err(|e| io::Error::new(e.kind(), format!("locking {}: {e}", path.display())))?;
        if names(&path, &file) {
            return Ok((temp, file));
        }
    }
    Err(io::Error::other("each new temp was removed at once by a concurrent clean-up"))
}

/// Takes the exclusive lock on `file`'s open file description, waiting for a clean-up
/// that holds it (briefly). Held until every descriptor of it is closed.
fn lock_for_writing(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own, with integer arguments. Not nix's
        // `Flock`: it takes the file, and our lock must stay on the writer's own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether `path` still names the file or dir open as `file`.
fn names(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The lock of the temp at `path` when no writer holds it, in any pid namespace: the
/// temp is then a dead writer's, and stays so while the lock is held.
fn lock_abandoned(path: &Path) -> Option<Flock<File>> {
    let file = File::open(path).ok()?;
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()?;
    names(path, &lock).then_some(lock)
}

/// Removes the temp file or dir at `path` if its writer is gone (nobody holds its
/// lock), holding the lock meanwhile; whether it went.
pub fn remove_if_abandoned(path: &Path) -> io::Result<bool> {
    let Some(_lock) = lock_abandoned(path) else { return Ok(false) };
    let r = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    match r {
        Ok(()) => Ok(true),
        // Another opener removed it first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A temp file or dir whose writer is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleTemp {
    pub path: PathBuf,
    pub pid: u32,
    pub bytes: u64,
}

/// Temp names, in `dirs`, of writers that do not run in our pid namespace, with the
/// pid each name carries.
fn temp_candidates(dirs: &[PathBuf]) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            match writer_of(&e.file_name().to_string_lossy()) {
                Some(pid) if !alive_here(pid) => out.push((e.path(), pid)),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Temp files and dirs of dead writers in `dirs`: those whose lock nobody holds.
pub(crate) fn stale_in(dirs: &[PathBuf]) -> Vec<StaleTemp> {
    let abandoned = |(path, pid): (PathBuf, u32)| lock_abandoned(&path).map(|_| StaleTemp { bytes: disk_usage(&path), path, pid });
    temp_candidates(dirs).into_iter().filter_map(abandoned).collect()
}

/// Removes dead writers' temps in `dirs`, each while holding its lock, so no writer
/// can have it; returns what went. Safe beside live writers in any pid namespace.
pub(crate) fn remove_stale_in(dirs: &[PathBuf]) -> Result<Vec<StaleTemp>> {
    let mut removed = Vec::new();
    for (path, pid) in temp_candidates(dirs) {
        let bytes = disk_usage(&path);
        if remove_if_abandoned(&path).map_err(OciError::io("remove leftover temp file", &path))? {
            removed.push(StaleTemp { path, pid, bytes });
        }
    }
    Ok(removed)
}

/// Bytes below `path` (a file or a dir tree), for reporting.
fn disk_usage(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path).map(|es| es.flatten().map(|e| disk_usage(&e.path())).sum()).unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_the_writer_pid() {
        let me = std::process::id();
        assert_eq!(writer_of(&format!("{}abc123", temp_prefix(""))), Some(me));
        assert_eq!(writer_of(&format!("{}abc123", temp_prefix("import-"))), Some(me));
        assert_eq!(writer_of(".tmp-export-42-x"), Some(42));
        assert_eq!(writer_of(".tmp-abc123"), None);
        assert_eq!(writer_of("0123abcd"), None);
    }
}
