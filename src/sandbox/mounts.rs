//! Mounts that make a container's system dirs: /proc, a minimal /dev, read-only /sys, the host's resolv.conf and hosts files,
//! and the user's volumes (`run -v`).
//!
//! Runs in the container's pid 1 after it entered fresh mount and pid namespaces, so
//! nothing here is visible outside and everything vanishes when the command ends.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::{BindMount, SandboxError};

/// Device nodes every container gets, bind-mounted from the host because mknod is
/// refused in a user namespace. Not /dev/tty (see [`mount_tty`]), never /dev/console:
/// both would lead to a terminal of the host.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

fn ensure_dir(path: &Path) -> Result<(), SandboxError> {
    fs::create_dir_all(path).map_err(|e| SandboxError::io(path, e))
}

fn ensure_file(path: &Path) -> Result<(), SandboxError> {
    if fs::symlink_metadata(path).is_err() {
        if let Some(dir) = path.parent() {
            ensure_dir(dir)?;
        }
        fs::write(path, b"").map_err(|e| SandboxError::io(path, e))?;
    }
    Ok(())
}

fn bind(src: &Path, dst: &Path, read_only: bool) -> Result<(), SandboxError> {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| SandboxError::sys(format!("bind {} on {}", src.display(), dst.display()), e))?;
    if read_only {
        if let Err(e) = make_tree_read_only(dst) {
            // Never leave behind a writable bind that was asked to be read-only.
            let _ = nix::mount::umount2(dst, nix::mount::MntFlags::MNT_DETACH);
            return Err(e);
        }
    }
    Ok(())
}

/// Makes the attached mount at `path` and every mount below it read-only: with
/// mount_setattr, or, on kernels older than 5.12 that lack it, one remount per mount
/// of the tree as /proc/self/mountinfo lists it.
fn make_tree_read_only(path: &Path) -> Result<(), SandboxError> {
    match set_read_only(libc::AT_FDCWD, &c_path(path)?, 0) {
        Err(nix::errno::Errno::ENOSYS) => {}
        other => return other.map_err(|e| SandboxError::sys(format!("make {} read-only", path.display()), e)),
    }
    let info = fs::read_to_string("/proc/self/mountinfo").map_err(|e| SandboxError::io("/proc/self/mountinfo", e))?;
    let mut points: Vec<std::path::PathBuf> =
        info.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape_mountinfo).filter(|p| p.starts_with(path)).collect();
    points.dedup();
    if !points.iter().any(|p| p == path) {
        points.insert(0, path.to_path_buf());
    }
    points.iter().try_for_each(|p| remount_read_only(p))
}

/// Mount points in mountinfo escape space, tab, newline and backslash as \ooo.
fn unescape_mountinfo(field: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out).into()
}

/// A read-only bind remount of one mount; it must repeat the flags the kernel locked
/// on the source (nosuid, nodev, noexec) or it is refused.
fn remount_read_only(path: &Path) -> Result<(), SandboxError> {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let locked = statvfs(path).map_err(|e| SandboxError::sys(format!("statvfs {}", path.display()), e))?.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (f, m) in
        [(FsFlags::ST_NOSUID, MsFlags::MS_NOSUID), (FsFlags::ST_NODEV, MsFlags::MS_NODEV), (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC)]
    {
        if locked.contains(f) {
            flags |= m;
        }
    }
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
        .map_err(|e| SandboxError::sys(format!("make {} read-only", path.display()), e))
}

fn c_path(path: &Path) -> Result<std::ffi::CString, SandboxError> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| SandboxError::Setup(format!("{} has a NUL byte", path.display())))
}

/// `struct mount_attr` of mount_setattr(2) (linux/mount.h; not in the libc crate).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Makes the mount at `dirfd`/`path` and every mount below it read-only.
///
/// A bind remount with MS_RDONLY changes one mount only: a submount of a `-v SRC:DST:ro`
/// source, or the cgroup mounts below a bound /sys, would stay writable. mount_setattr
/// with AT_RECURSIVE covers the whole tree, and only sets the flag, so the flags the
/// kernel locked on the source (nosuid, nodev, noexec) need not be repeated.
fn set_read_only(dirfd: libc::c_int, path: &std::ffi::CStr, extra_flags: libc::c_uint) -> Result<(), nix::errno::Errno> {
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let flags = AT_RECURSIVE | extra_flags;
    // SAFETY: mount_setattr with a valid C string and a mount_attr of the size passed.
    let rc = unsafe {
        libc::syscall(libc::SYS_mount_setattr, dirfd, path.as_ptr(), flags, &attr as *const MountAttr, std::mem::size_of::<MountAttr>())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// Mounts /proc, /dev, /sys and the resolver files below `root` (the merged dir);
/// `resolv_conf` replaces the host's (a private network's DNS forwarder).
pub fn mount_system(root: &Path, resolv_conf: Option<&Path>) -> Result<(), SandboxError> {
    let proc_dir = root.join("proc");
    ensure_dir(&proc_dir)?;
    let nsx = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_proc(&proc_dir)?;

    let dev = root.join("dev");
    ensure_dir(&dev)?;
    mount(Some("tmpfs"), &dev, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME, Some("mode=755,size=65536k"))
        .map_err(|e| SandboxError::sys("mount tmpfs on /dev", e))?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if host.exists() {
            let target = dev.join(name);
            ensure_file(&target)?;
            bind(&host, &target, false)?;
        }
    }
    let pts = dev.join("pts");
    ensure_dir(&pts)?;
    if mount(Some("devpts"), &pts, Some("devpts"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("newinstance,ptmxmode=0666,mode=0620"))
        .is_ok()
    {
        let _ = symlink("pts/ptmx", dev.join("ptmx"));
    }
    let shm = dev.join("shm");
    ensure_dir(&shm)?;
    mount(Some("shm"), &shm, Some("tmpfs"), nsx, Some("mode=1777,size=65536k")).map_err(|e| SandboxError::sys("mount /dev/shm", e))?;
    for (link, target) in
        [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]
    {
        let _ = symlink(target, dev.join(link));
    }

    let sys = root.join("sys");
    ensure_dir(&sys)?;
    // A fresh sysfs shows the container's own network namespace; it can only be
    // mounted when that namespace is ours (`none` or private). With the host's network
    // the host's sysfs is bound instead, read-only with every mount below it (the
    // cgroup hierarchies under /sys/fs/cgroup are submounts); a bind that cannot be
    // made read-only is taken away again, leaving /sys empty rather than writable.
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if mount(Some("sysfs"), &sys, Some("sysfs"), ro, None::<&str>).is_err() {
        let _ = bind(Path::new("/sys"), &sys, true);
    }

    for file in ["resolv.conf", "hosts"] {
        let host = match (file, resolv_conf) {
            ("resolv.conf", Some(generated)) => generated.to_path_buf(),
            _ => Path::new("/etc").join(file),
        };
        let target = root.join("etc").join(file);
        if host.exists() && target.is_file() {
            bind(&host, &target, true)?;
        }
    }
    Ok(())
}

/// A fresh procfs for the container's pid namespace, or, where the kernel refuses
/// one, the /proc strata sees, bound with every mount below it.
///
/// The kernel lets a user namespace mount procfs only when the proc it can already
/// see is fully visible: inside a container whose runtime masked /proc/kcore and
/// friends (podman, docker, a Kubernetes pod) the mount fails with EPERM. The bind,
/// as buildah's chroot isolation makes it, keeps the runtime's masks and shows the
/// outer pid namespace's processes; `mask_paths` then adds Docker's masks on top.
fn mount_proc(proc_dir: &Path) -> Result<(), SandboxError> {
    let nsx = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mount(Some("proc"), proc_dir, Some("proc"), nsx, None::<&str>) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) if proc_is_masked() => bind(Path::new("/proc"), proc_dir, false)
            .map_err(|e| SandboxError::Setup(format!("mount /proc: EPERM (the outer /proc has masked paths), and binding it failed: {e}"))),
        Err(e) => Err(SandboxError::sys("mount /proc", e)),
    }
}

/// True when something is mounted below /proc, which is what makes the kernel
/// refuse a fresh procfs to a user namespace (binfmt_misc aside, which is allowed).
pub(super) fn proc_is_masked() -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|p| p.starts_with("/proc/") && !p.starts_with("/proc/sys/fs/binfmt_misc"))
}

/// /dev/tty for `run -t`, whose command has the container's own pty as controlling
/// terminal, so /dev/tty opens that pty. Without `-t` there is no terminal to open.
pub fn mount_tty(root: &Path) -> Result<(), SandboxError> {
    let target = root.join("dev/tty");
    ensure_file(&target)?;
    bind(Path::new("/dev/tty"), &target, false)
}

/// Hides /proc and /sys entries that expose the host, as Docker's default masked
/// and read-only paths do. Best effort: entries a kernel lacks are skipped.
pub fn mask_paths(root: &Path) {
    const MASKED: [&str; 12] = [
        "proc/asound",
        "proc/acpi",
        "proc/interrupts",
        "proc/kcore",
        "proc/keys",
        "proc/latency_stats",
        "proc/timer_list",
        "proc/timer_stats",
        "proc/sched_debug",
        "proc/scsi",
        "sys/firmware",
        "sys/devices/virtual/powercap",
    ];
    const READ_ONLY: [&str; 5] = ["proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"];
    for rel in MASKED {
        let p = root.join(rel);
        match fs::metadata(&p) {
            Ok(m) if m.is_dir() => {
                let _ = mount(Some("tmpfs"), &p, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"));
            }
            Ok(_) => {
                let _ = mount(Some("/dev/null"), &p, None::<&str>, MsFlags::MS_BIND, None::<&str>);
            }
            Err(_) => {}
        }
    }
    for rel in READ_ONLY {
        let p = root.join(rel);
        if p.exists() {
            let _ = bind(&p, &p, true);
        }
    }
}

/// open_tree(2) and move_mount(2) flags (linux/mount.h), not all in the libc crate.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;

/// Clones each volume source's mount tree (open_tree, detached) while the host is
/// still in view: after pivot_root only these descriptors reach the host paths.
pub fn open_bind_sources(binds: &[BindMount]) -> Result<Vec<std::os::fd::OwnedFd>, SandboxError> {
    use std::os::unix::ffi::OsStrExt;
    binds
        .iter()
        .map(|b| {
            let path = std::ffi::CString::new(b.source.as_os_str().as_bytes())
                .map_err(|_| SandboxError::Setup(format!("volume {} has a NUL byte", b.source.display())))?;
            clone_tree(libc::AT_FDCWD, &path, false, &b.source.display().to_string())
        })
        .collect()
}

/// Attaches the cloned `sources` on their targets; runs after pivot_root, so target
/// paths (and any symlinks in them) resolve inside the container. Missing targets are
/// made, a dir for a dir and an empty file for a file, as docker does.
pub fn bind_volumes(binds: &[BindMount], sources: Vec<std::os::fd::OwnedFd>) -> Result<(), SandboxError> {
    for (b, tree) in binds.iter().zip(sources) {
        let target = Path::new(&b.target);
        let is_dir = nix::sys::stat::fstat(&tree)
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .map_err(|e| SandboxError::sys(format!("stat volume {}", b.source.display()), e))?;
        if is_dir {
            ensure_dir(target)?
        } else {
            ensure_file(target)?
        }
        attach_tree(tree, &b.target, b.read_only, &format!("volume {}", b.source.display()))?;
    }
    Ok(())
}

/// Attaches a detached mount tree (from open_tree) on `target`, an existing path
/// resolved in the caller's root; `what` names the source in errors.
pub(super) fn attach_tree(tree: std::os::fd::OwnedFd, target: &str, read_only: bool, what: &str) -> Result<(), SandboxError> {
    use std::os::fd::AsRawFd;
    // On the detached clone, before it is attached: the tree is never writable
    // inside the container, not even for an instant (kernels without
    // mount_setattr get it read-only right after attaching, below).
    let mut still_writable = false;
    if read_only {
        match set_read_only(tree.as_raw_fd(), c"", AT_EMPTY_PATH) {
            Ok(()) => {}
            Err(nix::errno::Errno::ENOSYS) => still_writable = true,
            Err(e) => return Err(SandboxError::sys(format!("make {what} read-only"), e)),
        }
    }
    let dest =
        std::ffi::CString::new(target.as_bytes()).map_err(|_| SandboxError::Setup(format!("mount target {target:?} has a NUL byte")))?;
    // SAFETY: move_mount of a detached tree fd onto a path; plain integer and string arguments.
    let rc = unsafe {
        libc::syscall(libc::SYS_move_mount, tree.as_raw_fd(), c"".as_ptr(), libc::AT_FDCWD, dest.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH)
    };
    if rc != 0 {
        return Err(SandboxError::sys(format!("bind {what} on {target}"), nix::errno::Errno::last()));
    }
    if still_writable {
        make_tree_read_only(Path::new(target))?;
    }
    Ok(())
}

/// open_tree(2) of `path` below `dirfd` (`""` with AT_EMPTY_PATH for the
/// descriptor itself): a detached clone of the mount tree found there.
pub(super) fn clone_tree(
    dirfd: libc::c_int,
    path: &std::ffi::CStr,
    empty_path: bool,
    what: &str,
) -> Result<std::os::fd::OwnedFd, SandboxError> {
    use std::os::fd::FromRawFd;
    let mut flags = OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint;
    if empty_path {
        flags |= AT_EMPTY_PATH;
    }
    // SAFETY: open_tree with a valid C string and integer flags; returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(SandboxError::sys(format!("open_tree {what}"), nix::errno::Errno::last()));
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b/c\\134d"), Path::new("/a b/c\\d"));
        assert_eq!(unescape_mountinfo("/tab\\011nl\\012"), Path::new("/tab\tnl\n"));
        // Not an escape: left as it is.
        assert_eq!(unescape_mountinfo("/x\\09y\\"), Path::new("/x\\09y\\"));
    }
}
