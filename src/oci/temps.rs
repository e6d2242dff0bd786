//! Temp files and dirs of the store's writers, and what dead writers left behind.
//!
//! Every temp name carries its writer's pid (`.tmp-PID-XXXXXX` beside the blobs and
//! index, `.tmp-import-PID-XXXXXX` and `.tmp-export-PID-XXXXXX` in the layout dir),
//! so a leftover whose writer is gone can be told from one being written right now:
//! a killed build or load no longer leaves a half-written blob behind for ever. The
//! same rule already frees `tmp/step-PID-*` scratch dirs (`rootfs::layers`).

use std::fs;
use std::path::{Path, PathBuf};

use super::{OciError, Result, Store};

/// The prefix of every temp name; blobs never start with a dot.
const TEMP_PREFIX: &str = ".tmp-";

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

/// Whether process `pid` still runs (strata never changes pid namespace, so /proc
/// shows its writers' pids). A reused pid only delays the clean-up.
fn alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

/// A temp file or dir whose writer is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleTemp {
    pub path: PathBuf,
    pub pid: u32,
    pub bytes: u64,
}

impl Store {
    /// Temp files and dirs of dead writers, in the layout dir and beside the blobs.
    pub fn stale_temps(&self) -> Vec<StaleTemp> {
        let mut out = Vec::new();
        for dir in [self.root().to_path_buf(), self.root().join("blobs").join("sha256")] {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                match writer_of(&name) {
                    Some(pid) if !alive(pid) => out.push(StaleTemp { path: e.path(), pid, bytes: disk_usage(&e.path()) }),
                    _ => {}
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Removes [`Store::stale_temps`]; returns what went. Safe beside live writers:
    /// only a dead writer's names are touched.
    pub fn remove_stale_temps(&self) -> Result<Vec<StaleTemp>> {
        let stale = self.stale_temps();
        for t in &stale {
            let r = if t.path.is_dir() { fs::remove_dir_all(&t.path) } else { fs::remove_file(&t.path) };
            match r {
                Ok(()) => {}
                // Another opener removed it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(OciError::io("remove leftover temp file", &t.path)(e)),
            }
        }
        Ok(stale)
    }
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

    #[test]
    fn only_dead_writers_temps_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let blobs = d.path().join("blobs/sha256");
        // pid_max is at most 2^22: this pid cannot run.
        let dead = blobs.join(".tmp-4999999-dead01");
        fs::write(&dead, vec![0u8; 1000]).unwrap();
        let dead_dir = d.path().join(".tmp-import-4999999-dead02");
        fs::create_dir(&dead_dir).unwrap();
        fs::write(dead_dir.join("blob"), b"12345").unwrap();
        let live = store.temp_blob().unwrap();
        let old_style = blobs.join(".tmp-Ab12Cd");
        fs::write(&old_style, b"x").unwrap();

        let stale = store.stale_temps();
        assert_eq!(
            stale.iter().map(|t| (&t.path, t.pid, t.bytes)).collect::<Vec<_>>(),
            vec![(&dead_dir, 4999999, 5), (&dead, 4999999, 1000)]
        );
        store.remove_stale_temps().unwrap();
        assert!(!dead.exists() && !dead_dir.exists());
        assert!(live.path().exists(), "a live writer's temp file stays");
        assert!(old_style.exists(), "a name without a pid is left to prune");
    }
}
