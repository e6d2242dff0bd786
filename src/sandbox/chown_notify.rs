//! Faithful chown in a single-id user namespace, via seccomp user notification.
//!
//! With only one id mapped, the kernel refuses `chown 1000 f` with EINVAL before any
//! filesystem sees it, so a RUN that sets ownership (package installs, `chown -R`)
//! would fail or lose the owner. The command's seccomp filter (`super::seccomp`, which
//! adds notify rules for the chown syscalls to the profile in single-id mode) therefore
//! turns chown, fchown, lchown and fchownat into notifications for pid 1, which
//! performs them on the command's behalf: mapped ids for real, other ids recorded in
//! `user.containers.override_stat` (see `crate::owner`), from which the layer writer
//! takes the true owner. Only installed in single-id mode. pid 1 seals each record
//! with the store's owner key (from the run spec, read before the container starts);
//! the command cannot read pid 1's memory (it holds fewer capabilities, so ptrace
//! access is refused) and the key file is outside its root.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;

use libseccomp::{ScmpArch, ScmpNotifReq, ScmpNotifResp};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Sends the listener to pid 1 over `sock`.
pub fn send_listener(sock: &UnixStream, fd: &OwnedFd) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock.as_raw_fd(), &[IoSlice::new(b"L")], &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives the listener in pid 1; None when the command exited before sending it.
pub fn receive_listener(sock: &UnixStream) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS gave us ownership of these descriptors.
            return fds.first().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    None
}

/// Reads a NUL-terminated path from the command's memory.
fn read_path(pid: u32, addr: u64) -> io::Result<PathBuf> {
    let mem = File::open(format!("/proc/{pid}/mem"))?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let n = mem.read_at(&mut buf, addr)?;
    let end = buf[..n].iter().position(|b| *b == 0).ok_or_else(|| io::Error::from_raw_os_error(libc::ENAMETOOLONG))?;
    Ok(PathBuf::from(std::ffi::OsStr::new(&*String::from_utf8_lossy(&buf[..end]))))
}

/// The path a (dirfd, path) pair names, through /proc so it resolves as the command
/// sees it (same root: pid 1 and the command share the container's mounts).
fn at_path(pid: u32, dirfd: i32, path: &std::path::Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let base = if dirfd == libc::AT_FDCWD { format!("/proc/{pid}/cwd") } else { format!("/proc/{pid}/fd/{dirfd}") };
    if path.as_os_str().is_empty() {
        PathBuf::from(base)
    } else {
        PathBuf::from(base).join(path)
    }
}

/// The number /proc knows the command's process `pid` (in pid 1's namespace) by.
///
/// Inside a container that masks /proc, the sandbox binds the outer /proc instead of
/// mounting a fresh one (`mounts::mount_proc`), and there every process has its outer
/// pid. A pidfd names the process itself; its fdinfo, read through that /proc, gives
/// the pid in the proc's own namespace.
fn proc_pid(pid: u32) -> io::Result<u32> {
    let ours = std::process::id().to_string();
    if std::fs::read_link("/proc/self").is_ok_and(|p| p.as_os_str() == ours.as_str()) {
        return Ok(pid);
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|p: &u32| *p > 0)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))
}

/// How pid 1 records owners: set once from the run spec, before the container starts.
static OWNERS: OnceLock<crate::owner::Owners> = OnceLock::new();

/// Keeps the store's owner key for the records pid 1 writes.
pub fn set_owners(key: &Option<crate::owner::OwnerKey>) {
    let owners = key.clone().map_or(crate::owner::Owners::Real, crate::owner::Owners::Recorded);
    let _ = OWNERS.set(owners);
}

/// What one chown-family call asks: the file (through /proc, as the command sees
/// it), whether to follow a final symlink, and the new owner.
fn decode(req: &ScmpNotifReq) -> io::Result<(PathBuf, bool, u32, u32)> {
    let a = req.data.args;
    let pid = proc_pid(req.pid)?;
    // The name, not the number: the filter covers the native arch and its 32-bit
    // sub-architectures, whose numbers (and uid widths) differ.
    let name = req.data.syscall.get_name_by_arch(req.data.arch).map_err(|_| io::Error::from_raw_os_error(libc::ENOSYS))?;
    // i386's and arm's plain chown, fchown and lchown take 16-bit ids (-1 is 0xffff).
    let narrow = matches!(req.data.arch, ScmpArch::X86 | ScmpArch::Arm) && !name.ends_with("32") && name != "fchownat";
    let id = |v: u64| match (narrow, v as u32) {
        (true, 0xffff) => u32::MAX,
        (true, v) => v & 0xffff,
        (false, v) => v,
    };
    Ok(match name.as_str() {
        "chown" | "chown32" => (at_path(pid, libc::AT_FDCWD, &read_path(pid, a[0])?), true, id(a[1]), id(a[2])),
        "lchown" | "lchown32" => (at_path(pid, libc::AT_FDCWD, &read_path(pid, a[0])?), false, id(a[1]), id(a[2])),
        "fchown" | "fchown32" => (PathBuf::from(format!("/proc/{pid}/fd/{}", a[0] as i32)), true, id(a[1]), id(a[2])),
        "fchownat" => {
            let follow = (a[4] as i32) & libc::AT_SYMLINK_NOFOLLOW == 0;
            (at_path(pid, a[0] as i32, &read_path(pid, a[1])?), follow, a[2] as u32, a[3] as u32)
        }
        _ => return Err(io::Error::from_raw_os_error(libc::ENOSYS)),
    })
}

/// Handles one pending notification on `listener`.
pub fn serve_one(listener: &OwnedFd) {
    let Ok(req) = ScmpNotifReq::receive(listener.as_raw_fd()) else { return };
    let result =
        decode(&req).and_then(|(path, follow, uid, gid)| OWNERS.get_or_init(Default::default).chown_request(&path, follow, uid, gid));
    let error = match result {
        Ok(()) => 0,
        Err(e) => -e.raw_os_error().unwrap_or(libc::EPERM),
    };
    // A stale id (the command died meanwhile) just fails with ENOENT.
    let _ = ScmpNotifResp::new(req.id, 0, error, 0).respond(listener.as_raw_fd());
}
