//! Writing a file whole and durably: a temp file beside it is written, fsynced and
//! renamed over the target, then the directory is fsynced, so after a crash the
//! target is the old file or the new one, never a mix, and the rename itself is on
//! disk. Every writer that replaces a file goes through here, so all get the same
//! durability; best-effort writers (the build cache) ignore the error.
//!
//! Temp names are `.NAME.XXXXXX.tmp` beside `NAME`; `prune` removes dead writers'
//! ones where strata's files live (`store::gc`: cache/, layers/, the store root and
//! each container's dir). A writer that streams takes a temp from [`temp_beside`], writes
//! it and hands it to [`persist`]; one whose temps follow other rules (the OCI
//! store's locked `.tmp-PID-*`) makes its own and hands that over instead.
//!
//! Uses only `trace` (a leaf), so every module may use it.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::NamedTempFile;

use crate::trace::{self, Phase};

/// The permission bits a written file gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// What `File::create` gives: 0666 less the process's umask.
    Umask,
    /// Exactly these bits, whatever the umask (set before the rename, so the file
    /// never appears with others).
    Exact(u32),
}

/// Replaces `path` with `bytes`.
pub fn replace(path: &Path, bytes: &[u8], mode: Mode) -> io::Result<()> {
    let mut tmp = temp_beside(path, mode)?;
    tmp.write_all(bytes)?;
    persist(tmp, path, mode, || {})
}

/// Creates `path` with `bytes` unless it exists (then `AlreadyExists`, and the
/// existing file is left alone): the file appears complete with a hard link, which,
/// unlike a rename, never replaces. Two processes creating it at once agree on one.
pub fn create_new(path: &Path, bytes: &[u8], mode: Mode) -> io::Result<()> {
    let mut tmp = temp_beside(path, mode)?;
    tmp.write_all(bytes)?;
    settle(tmp.as_file(), mode)?;
    // The temp goes when `tmp` is dropped, linked or not.
    trace::timed(Phase::Rename, || fs::hard_link(tmp.path(), path))?;
    sync_dir(parent_of(path))
}

/// Makes `tmp`, a fully written temp file in `path`'s directory, the file `path`:
/// mode, fsync, rename, fsync the directory. `before_rename` runs once the content
/// is durable (crash tests stop there). On error the temp file is removed.
pub fn persist(tmp: NamedTempFile, path: &Path, mode: Mode, before_rename: impl FnOnce()) -> io::Result<()> {
    settle(tmp.as_file(), mode)?;
    before_rename();
    trace::timed(Phase::Rename, || tmp.persist(path)).map_err(|e| e.error)?;
    sync_dir(parent_of(path))
}

/// Moves `from`, a fully written file open as `file`, to `to` in the same
/// filesystem as [`persist`] does (for a file written by someone else, as an
/// archive member extracted in place).
pub fn move_into(file: &File, from: &Path, to: &Path, mode: Mode) -> io::Result<()> {
    settle(file, mode)?;
    trace::timed(Phase::Rename, || fs::rename(from, to))?;
    sync_dir(parent_of(to))
}

/// fsyncs a directory so a rename or link into it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = File::open(dir)?;
    trace::timed(Phase::Fsync, || dir.sync_all())
}

/// A temp file in `path`'s directory (same filesystem, so the rename is atomic),
/// named `.NAME.XXXXXX.tmp`, for [`persist`] with the same `mode`; removed when
/// dropped unpersisted. An exact mode is 0600 until then.
pub fn temp_beside(path: &Path, mode: Mode) -> io::Result<NamedTempFile> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // The umask applies to the bits given at creation, as with `File::create`.
    let created = match mode {
        Mode::Umask => 0o666,
        Mode::Exact(_) => 0o600,
    };
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(created))
        .tempfile_in(parent_of(path))
}

/// Sets an exact mode and flushes the content to disk.
fn settle(file: &File, mode: Mode) -> io::Result<()> {
    if let Mode::Exact(bits) = mode {
        file.set_permissions(Permissions::from_mode(bits))?;
    }
    trace::timed(Phase::Fsync, || file.sync_all())
}

/// The directory `path` is in; a bare name is in the current one.
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn umask() -> u32 {
        // SAFETY: umask only swaps the process's mask; it is put back at once.
        unsafe {
            let old = libc::umask(0o022);
            libc::umask(old);
            old as u32
        }
    }

    #[test]
    fn replace_swaps_the_content_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("index.json");
        replace(&path, b"old", Mode::Umask).unwrap();
        replace(&path, b"new", Mode::Umask).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(names(d.path()), ["index.json"]);
        assert_eq!(mode_of(&path), 0o666 & !umask(), "as File::create makes it");
    }

    #[test]
    fn an_exact_mode_is_applied_whatever_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("auth.json");
        replace(&secret, b"{}", Mode::Exact(0o600)).unwrap();
        assert_eq!(mode_of(&secret), 0o600);
        let public = d.path().join("blob");
        replace(&public, b"x", Mode::Exact(0o644)).unwrap();
        assert_eq!(mode_of(&public), 0o644);
        // Replacing a public file with a secret one takes the new mode.
        replace(&public, b"y", Mode::Exact(0o600)).unwrap();
        assert_eq!(mode_of(&public), 0o600);
    }

    #[test]
    fn a_failed_replacement_leaves_the_old_file_and_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("record");
        replace(&path, b"kept", Mode::Umask).unwrap();
        // A streaming writer that fails half way drops its temp.
        let write = || -> io::Result<()> {
            let mut tmp = temp_beside(&path, Mode::Umask)?;
            tmp.write_all(b"half")?;
            Err(io::Error::other("the source broke"))
        };
        assert!(write().is_err());
        // The rename fails: a non-empty directory stands where the file would go.
        let blocked = d.path().join("dir");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), b"").unwrap();
        assert!(replace(&blocked, b"x", Mode::Umask).is_err());
        // A caller's temp whose hook is reached but whose rename fails is removed too.
        let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(d.path()).unwrap();
        let mut hooked = false;
        assert!(persist(tmp, &blocked, Mode::Exact(0o644), || hooked = true).is_err());
        assert!(hooked);
        assert_eq!(fs::read(&path).unwrap(), b"kept");
        assert_eq!(names(d.path()), ["dir", "record"]);
    }

    #[test]
    fn create_new_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("owner.key");
        create_new(&path, b"first", Mode::Exact(0o600)).unwrap();
        let again = create_new(&path, b"second", Mode::Exact(0o600)).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(names(d.path()), ["owner.key"]);
    }

    #[test]
    fn move_into_renames_a_finished_file() {
        let d = tempfile::tempdir().unwrap();
        let (from, to) = (d.path().join("member"), d.path().join("blob"));
        fs::write(&from, b"layer").unwrap();
        move_into(&File::open(&from).unwrap(), &from, &to, Mode::Exact(0o644)).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"layer");
        assert_eq!(mode_of(&to), 0o644);
        assert_eq!(names(d.path()), ["blob"]);
    }

    #[test]
    fn temps_are_hidden_and_end_in_tmp() {
        let d = tempfile::tempdir().unwrap();
        let tmp = temp_beside(&d.path().join("abc.json"), Mode::Umask).unwrap();
        let name = tmp.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".abc.json.") && name.ends_with(".tmp"), "{name}");
    }
}
