//! The sandbox helpers of build steps now running, held as pidfds, so that a
//! failed stage can stop the RUN commands of the stages building beside it.
//!
//! A pidfd names one process for good: signalling it after the helper was reaped
//! fails with ESRCH instead of reaching whatever process took its pid since.
//! Stopping is remembered under the list's lock, so a helper started just after
//! the failure is stopped as it is listed, not left to run its whole command.
//!
//! One list per process: the CLI runs one build per process.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The helpers running, and whether the build is stopping.
static RUNNING: Mutex<(Vec<(u64, OwnedFd)>, bool)> = Mutex::new((Vec::new(), false));
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A helper on the list until this is dropped.
pub struct Listed(Option<u64>);

impl Drop for Listed {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            RUNNING.lock().unwrap_or_else(|e| e.into_inner()).0.retain(|(i, _)| *i != id);
        }
    }
}

/// Lists the helper `pid` (a child not yet waited for). Without pidfds (Linux before
/// 5.3) it is not listed: a failed stage then waits for that step to end.
pub fn list(pid: u32) -> Listed {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Listed(None);
    }
    // SAFETY: the descriptor was just returned to us and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    if running.1 {
        signal(&fd, libc::SIGKILL);
    }
    running.0.push((id, fd));
    Listed(Some(id))
}

/// A build starts: nothing is stopping.
pub fn start_steps() {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).1 = false;
}

/// Stops every listed helper, and every helper listed from now on; each step then
/// fails. SIGTERM first: the helper passes it to pid 1, which (in every setup,
/// chroot included) kills what the command left behind; SIGKILL two seconds later
/// for a helper still there (its container dies with it, pid 1's parent-death
/// signal).
pub fn stop_steps() {
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    running.1 = true;
    for (_, fd) in &running.0 {
        signal(fd, libc::SIGTERM);
    }
    drop(running);
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(2));
        for (_, fd) in &RUNNING.lock().unwrap_or_else(|e| e.into_inner()).0 {
            signal(fd, libc::SIGKILL);
        }
    });
}

fn signal(fd: &OwnedFd, sig: libc::c_int) {
    // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo, no flags.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0) };
}
