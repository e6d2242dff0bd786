//! The command's descriptor sweep: nothing of the builder's (the setup-error pipe,
//! the chown socket, a namespace descriptor) may reach the command across exec.
//!
//! Runs before the seccomp filter is loaded, so a profile that denies `close_range`
//! (a `seccomp=FILE` written before it existed, or a libseccomp that does not know it)
//! cannot turn the sweep into a silent EPERM. Where `close_range` with
//! `CLOSE_RANGE_CLOEXEC` is missing (kernels before 5.11, or a filter around strata
//! itself that denies it), every descriptor listed in /proc/self/fd is marked
//! close-on-exec one by one instead.

use std::os::fd::RawFd;

/// Marks every descriptor above stderr close-on-exec; an error is a setup error:
/// a command must never start holding a descriptor it was not meant to have.
pub(super) fn close_on_exec_above_stderr() -> Result<(), String> {
    // SAFETY: plain syscall with integer arguments.
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        // ENOSYS before 5.9, EINVAL for the CLOEXEC flag before 5.11, EPERM from a
        // filter strata itself runs under.
        Some(libc::ENOSYS | libc::EINVAL | libc::EPERM) => mark_listed_fds(),
        _ => Err(format!("close_range(3, ~0, CLOSE_RANGE_CLOEXEC): {err}")),
    }
}

/// The fallback: FD_CLOEXEC on each descriptor above stderr in /proc/self/fd.
fn mark_listed_fds() -> Result<(), String> {
    let dir = "/proc/self/fd";
    // Collected first: the listing's own descriptor is closed when it ends.
    let fds: Vec<RawFd> = std::fs::read_dir(dir)
        .map_err(|e| format!("listing {dir} to close descriptors on exec: {e}"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().parse::<RawFd>().unwrap_or(-1)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("listing {dir} to close descriptors on exec: {e}"))?;
    for fd in fds.into_iter().filter(|&fd| fd > 2) {
        // SAFETY: fcntl with integer arguments on a descriptor number; a stale one
        // (the listing's) fails with EBADF and is skipped.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        // SAFETY: as above.
        if flags >= 0 && unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } != 0 {
            return Err(format!("marking descriptor {fd} close-on-exec: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn cloexec(fd: RawFd) -> bool {
        // SAFETY: fcntl with integer arguments.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn the_fallback_marks_every_descriptor_above_stderr() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        // std opens with O_CLOEXEC; clear it to see the fallback set it again.
        // SAFETY: fcntl with integer arguments on our own pipe.
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFD, 0) };
        assert!(!cloexec(r.as_raw_fd()));
        mark_listed_fds().unwrap();
        assert!(cloexec(r.as_raw_fd()));
    }
}
