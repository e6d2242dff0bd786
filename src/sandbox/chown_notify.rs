//! Faithful chown in a single-id user namespace, via seccomp user notification.
//!
//! With only one id mapped, the kernel refuses `chown 1000 f` with EINVAL before any
//! filesystem sees it, so a RUN that sets ownership (package installs, `chown -R`)
//! would fail or lose the owner. The command therefore runs under a seccomp filter
//! that turns chown, fchown, lchown and fchownat into notifications for pid 1, which
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

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

#[cfg(target_arch = "x86_64")]
mod arch {
    pub const AUDIT_ARCH: u32 = 0xC000_003E;
    pub const CHOWN: i32 = 92;
    pub const FCHOWN: i32 = 93;
    pub const LCHOWN: i32 = 94;
    pub const FCHOWNAT: i32 = 260;
}
#[cfg(target_arch = "aarch64")]
mod arch {
    pub const AUDIT_ARCH: u32 = 0xC000_00B7;
    // aarch64 has no chown/lchown syscalls; -1 never matches a syscall number.
    pub const CHOWN: i32 = -1;
    pub const FCHOWN: i32 = 55;
    pub const LCHOWN: i32 = -1;
    pub const FCHOWNAT: i32 = 54;
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump_eq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt, jf, k }
}

/// Installs the filter on the calling thread (no_new_privs must be set) and returns
/// the notification listener.
pub fn install() -> io::Result<OwnedFd> {
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let nrs = [arch::CHOWN, arch::FCHOWN, arch::LCHOWN, arch::FCHOWNAT];
    let mut prog = vec![
        stmt(ld, 4), // seccomp_data.arch
        jump_eq(arch::AUDIT_ARCH, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ld, 0), // seccomp_data.nr
    ];
    for (i, nr) in nrs.iter().enumerate() {
        // On a match jump to the final NOTIFY; else fall through to the next test.
        let to_notify = (nrs.len() - i) as u8;
        prog.push(jump_eq(*nr as u32, to_notify, 0));
    }
    prog.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    prog.push(stmt(ret, libc::SECCOMP_RET_USER_NOTIF));
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
    // SAFETY: fprog points at a live filter for the duration of the call.
    let fd = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog as *const _)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

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

/// How pid 1 records owners: set once from the run spec, before the container starts.
static OWNERS: OnceLock<crate::owner::Owners> = OnceLock::new();

/// Keeps the store's owner key for the records pid 1 writes.
pub fn set_owners(key: &Option<crate::owner::OwnerKey>) {
    let owners = key.clone().map_or(crate::owner::Owners::Real, crate::owner::Owners::Recorded);
    let _ = OWNERS.set(owners);
}

/// Handles one pending notification on `listener`.
pub fn serve_one(listener: &OwnedFd) {
    // SAFETY: zeroed plain-data structs filled in by the kernel.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: RECV writes one seccomp_notif into req.
    if unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
        return;
    }
    let a = req.data.args;
    let pid = req.pid;
    let result = (|| -> io::Result<()> {
        let (path, follow, uid, gid) = match req.data.nr {
            nr if nr == arch::CHOWN => (at_path(pid, libc::AT_FDCWD, &read_path(pid, a[0])?), true, a[1] as u32, a[2] as u32),
            nr if nr == arch::LCHOWN => (at_path(pid, libc::AT_FDCWD, &read_path(pid, a[0])?), false, a[1] as u32, a[2] as u32),
            nr if nr == arch::FCHOWN => (PathBuf::from(format!("/proc/{pid}/fd/{}", a[0] as i32)), true, a[1] as u32, a[2] as u32),
            nr if nr == arch::FCHOWNAT => {
                let flags = a[4] as i32;
                let path = read_path(pid, a[1])?;
                let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
                (at_path(pid, a[0] as i32, &path), follow, a[2] as u32, a[3] as u32)
            }
            _ => return Err(io::Error::from_raw_os_error(libc::ENOSYS)),
        };
        OWNERS.get_or_init(Default::default).chown_request(&path, follow, uid, gid)
    })();
    let error = match result {
        Ok(()) => 0,
        Err(e) => -e.raw_os_error().unwrap_or(libc::EPERM),
    };
    let mut resp = libc::seccomp_notif_resp { id: req.id, val: 0, error, flags: 0 };
    // SAFETY: SEND reads one seccomp_notif_resp; a stale id just fails with ENOENT.
    unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
}
