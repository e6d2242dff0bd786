//! The regular files of a COPY, written on worker threads while the copy walks on.
//!
//! Creating and filling files is mostly kernel time (and through an overlay mount,
//! a copy-up's worth of it), so a 1 GiB, 20k-file COPY spent seconds on one core
//! while the other idled. The walk stays on the caller's thread and in order: it
//! resolves every target inside the tree, creates directories and symlinks, and
//! links hard links; only a file's own data and metadata go to a worker, by a path
//! the walk already resolved. Whatever would race with a queued file waits for the
//! workers to be idle first ([`FileWriters::wait_idle`]): a path written twice, and
//! any removal of an existing entry. The caller sets directory times after
//! [`FileWriters::finish`], since filling a directory changes them.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use nix::sys::stat::{utimensat, FileStat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::owner::Owners;
use crate::rootfs::is_private_xattr;

/// One file to write: its opened source, where it goes, and what it gets.
pub(super) struct FileJob {
    pub from: File,
    pub target: PathBuf,
    /// The source as errors name it.
    pub shown: PathBuf,
    pub st: FileStat,
    pub owner: (u32, u32),
    pub mode: u32,
}

/// The targets handed to a worker and not yet written, and a signal when none are.
/// Only files in flight are held, so a 200k-file COPY keeps a few dozen paths here,
/// not every path it copied.
type InFlight = Arc<(Mutex<HashSet<PathBuf>>, Condvar)>;

/// Worker threads writing [`FileJob`]s; the first error wins and stops the rest.
pub(super) struct FileWriters {
    jobs: Option<SyncSender<FileJob>>,
    workers: Vec<JoinHandle<()>>,
    failure: Arc<Mutex<Option<anyhow::Error>>>,
    in_flight: InFlight,
}

impl FileWriters {
    /// One worker per core (at most 4: past that the disk, not the CPU, decides).
    pub fn start(owners: &Owners) -> FileWriters {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
        let (tx, rx) = mpsc::sync_channel::<FileJob>(count * 16);
        let rx = Arc::new(Mutex::new(rx));
        let failure: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
        let in_flight: InFlight = Arc::default();
        let step = crate::trace::current();
        let workers = (0..count)
            .map(|_| {
                let (rx, failure, owners, in_flight) = (rx.clone(), failure.clone(), owners.clone(), in_flight.clone());
                std::thread::spawn(crate::trace::within(step.clone(), move || loop {
                    let job = rx.lock().map(|r| r.recv());
                    let Ok(Ok(job)) = job else { return };
                    let target = job.target.clone();
                    if let Err(e) = write_file(job, &owners) {
                        failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    }
                    let mut left = in_flight.0.lock().unwrap_or_else(|p| p.into_inner());
                    left.remove(&target);
                    if left.is_empty() {
                        in_flight.1.notify_all();
                    }
                }))
            })
            .collect();
        FileWriters { jobs: Some(tx), workers, failure, in_flight }
    }

    /// Queues `job`; fails with the first worker's error, if one failed already.
    pub fn send(&mut self, job: FileJob) -> Result<()> {
        if let Some(e) = self.failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        if self.is_queued(&job.target) {
            // Written twice (two sources onto one path): in order, as one thread would.
            self.wait_idle();
        }
        self.in_flight.0.lock().unwrap_or_else(|p| p.into_inner()).insert(job.target.clone());
        let jobs = self.jobs.as_ref().expect("jobs are sent before finish");
        jobs.send(job).map_err(|_| anyhow::anyhow!("the file writers stopped"))
    }

    /// Whether `target` may still be written by a worker.
    pub fn is_queued(&self, target: &Path) -> bool {
        self.in_flight.0.lock().unwrap_or_else(|p| p.into_inner()).contains(target)
    }

    /// Waits until every queued file is written.
    pub fn wait_idle(&mut self) {
        let (lock, idle) = &*self.in_flight;
        let mut left = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !left.is_empty() {
            left = idle.wait(left).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// How many files are still in flight (tests).
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Waits for every queued file; the first error, if any.
    pub fn finish(mut self) -> Result<()> {
        self.stop();
        match self.failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for FileWriters {
    /// A copy that failed in the walk still waits for its files: nothing writes
    /// into the tree once the step has moved on.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates `job.target`, fills it (holes stay holes), and sets its owner, mode,
/// xattrs and times.
pub(super) fn write_file(job: FileJob, owners: &Owners) -> Result<()> {
    let target = &job.target;
    let mut to = File::create(target).with_context(|| format!("creating {}", target.display()))?;
    // Holes stay holes: a base image's sparse lastlog copied with `--from` must not
    // be written out in full.
    let (len, blocks) = (job.st.st_size as u64, job.st.st_blocks as u64);
    crate::rootfs::copy_data(&job.from, &mut to, len, blocks)
        .with_context(|| format!("copying {} to {}", job.shown.display(), target.display()))?;
    drop(to);
    let (uid, gid) = job.owner;
    owners.set_owner(target, uid, gid).with_context(|| format!("chown {uid}:{gid} {}", target.display()))?;
    fs::set_permissions(target, fs::Permissions::from_mode(job.mode))?;
    copy_xattrs(&job.from, target);
    set_times(target, job.st.st_mtime, job.st.st_mtime_nsec)
}

/// Copies a source's xattrs, read from its descriptor. Overlay markers, the host's
/// SELinux label and owner records are not content (an owner record in a context
/// is a claim anyone could write; see `crate::owner`).
pub(super) fn copy_xattrs(src: &File, target: &Path) {
    use xattr::FileExt;
    if let Ok(names) = src.list_xattr() {
        for name in names {
            let n = name.to_string_lossy();
            if is_private_xattr(&n) || n.starts_with("security.selinux") || n == crate::owner::OVERRIDE_XATTR {
                continue;
            }
            if let Ok(Some(v)) = src.get_xattr(&name) {
                let _ = xattr::set(target, &name, &v);
            }
        }
    }
}

pub(super) fn set_times(path: &Path, secs: i64, nsecs: i64) -> Result<()> {
    let t = TimeSpec::new(secs, nsecs);
    utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .with_context(|| format!("setting times of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::fstat;

    #[test]
    fn only_files_in_flight_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        fs::write(&source, b"x").unwrap();
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let mut writers = FileWriters::start(&Owners::Real);
        let workers = writers.workers.len();
        let mut most = 0;
        for i in 0..3000 {
            let from = File::open(&source).unwrap();
            let st = fstat(&from).unwrap();
            let target = dir.path().join(format!("f{i}"));
            writers.send(FileJob { from, target, shown: source.clone(), st, owner: me, mode: 0o644 }).unwrap();
            most = most.max(writers.in_flight());
        }
        // The channel's slots, one file per worker, and the one being sent.
        assert!(most <= workers * 16 + workers + 1, "{most} paths held for 3000 files");
        writers.wait_idle();
        assert_eq!(writers.in_flight(), 0);
        writers.finish().unwrap();
        assert_eq!(fs::read(dir.path().join("f2999")).unwrap(), b"x");
    }
}
