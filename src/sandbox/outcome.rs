//! The outcome file: how the sandbox helper tells the builder how the command ended.
//!
//! The builder reserves the file's blocks before the helper starts, so a RUN that
//! fills the disk still gets its outcome written; when the file is nevertheless
//! missing, empty or cut short, the error says so and names the file, and says
//! "no space left on device" when its filesystem is full, instead of a JSON parser's
//! "EOF".

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitStatus;

use super::{Outcome, SandboxError};

/// Room for any outcome: an exit code, a signal, or a setup error message.
const RESERVED: i64 = 64 << 10;

/// Creates `path` with its blocks allocated, so the helper's write needs no new space.
pub(super) fn reserve(path: &Path) -> Result<(), SandboxError> {
    let _ = fs::remove_file(path);
    let file = File::create(path).map_err(|e| disk_error(path, "create", e))?;
    match nix::fcntl::posix_fallocate(file.as_fd(), 0, RESERVED) {
        Err(nix::errno::Errno::ENOSPC) => Err(disk_error(path, "reserve space for", io::Error::from_raw_os_error(libc::ENOSPC))),
        // A filesystem without fallocate: the write may then still find room.
        _ => Ok(()),
    }
}

/// Writes `outcome` into the reserved file and trims it to the JSON's length.
pub(super) fn write(path: &Path, outcome: &Outcome) -> io::Result<()> {
    let text = serde_json::to_vec(outcome).expect("Outcome serialises");
    let mut file = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    file.write_all(&text)?;
    file.set_len(text.len() as u64)?;
    file.sync_all()
}

/// Reads the outcome the helper left at `path`; `status` is how the helper ended.
pub(super) fn read(path: &Path, status: ExitStatus) -> Result<Outcome, SandboxError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(_) => return Err(SandboxError::Setup(format!("sandbox helper ended with {status} without an outcome{}", full_hint(path)))),
    };
    if bytes.iter().all(|&b| b == 0) {
        // Empty, or still the reserved zeros: the helper died before writing.
        return Err(SandboxError::Setup(format!(
            "sandbox helper ended with {status} before writing its outcome to {}{}",
            path.display(),
            full_hint(path)
        )));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| SandboxError::Setup(format!("outcome file {} is cut short or damaged ({e}){}", path.display(), full_hint(path))))
}

/// An error for a file the builder could not create, saying "disk full" when it is.
fn disk_error(path: &Path, op: &str, e: io::Error) -> SandboxError {
    if is_disk_full(&e) {
        SandboxError::Setup(format!(
            "no space left on device: cannot {op} {}; free space there or move the store with --root",
            path.display()
        ))
    } else {
        SandboxError::io(path, e)
    }
}

/// ENOSPC (the sandbox uses no other strata module, so not `oci::is_disk_full`).
pub(super) fn is_disk_full(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == io::ErrorKind::StorageFull
}

/// "; no space left on device in DIR" when the filesystem holding `path` is full.
fn full_hint(path: &Path) -> String {
    let dir = path.parent().unwrap_or(path);
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) if s.blocks_available() == 0 => format!("; no space left on device (disk full) in {}", dir.display()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn status() -> ExitStatus {
        ExitStatus::from_raw(125 << 8)
    }

    #[test]
    fn a_written_outcome_reads_back_from_the_reserved_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("outcome.json");
        reserve(&p).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().len(), RESERVED as u64);
        write(&p, &Outcome::Exited(3)).unwrap();
        assert_eq!(read(&p, status()).unwrap(), Outcome::Exited(3));
    }

    #[test]
    fn a_missing_empty_or_unwritten_outcome_says_so_and_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("outcome.json");
        let err = read(&p, status()).unwrap_err().to_string();
        assert!(err.contains("without an outcome"), "{err}");
        fs::write(&p, b"").unwrap();
        let err = read(&p, status()).unwrap_err().to_string();
        assert!(err.contains("before writing its outcome") && err.contains("outcome.json"), "{err}");
        assert!(!err.contains("EOF"), "{err}");
        reserve(&p).unwrap();
        let err = read(&p, status()).unwrap_err().to_string();
        assert!(err.contains("before writing its outcome"), "{err}");
    }

    #[test]
    fn a_cut_short_outcome_is_told_apart() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("outcome.json");
        fs::write(&p, br#"{"SetupFailed":"mount"#).unwrap();
        let err = read(&p, status()).unwrap_err().to_string();
        assert!(err.contains("cut short") && err.contains("outcome.json"), "{err}");
    }

    #[test]
    fn a_full_disk_is_named() {
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        let err = disk_error(Path::new("/store/tmp/step-1/outcome.json"), "reserve space for", e).to_string();
        assert!(err.contains("no space left on device") && err.contains("/store/tmp/step-1/outcome.json"), "{err}");
    }
}
