//! The sandbox helpers of build steps now running, held as pidfds, so that a
//! failed stage can stop the RUN commands of the stages building beside it.
//!
//! A pidfd names one process for good: signalling it after the helper was reaped
//! fails with ESRCH instead of reaching whatever process took its pid since.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static RUNNING: Mutex<Vec<(u64, OwnedFd)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A helper on the list until this is dropped.
pub struct Listed(Option<u64>);

impl Drop for Listed {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            RUNNING.lock().unwrap_or_else(|e| e.into_inner()).retain(|(i, _)| *i != id);
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
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push((id, fd));
    Listed(Some(id))
}

/// Kills every listed helper; each container dies with its helper (pid 1's
/// parent-death signal), and its step fails.
pub fn stop_steps() {
    for (_, fd) in RUNNING.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo, no flags.
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0) };
    }
}
