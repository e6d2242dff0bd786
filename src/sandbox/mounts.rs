//! Mounts that make a container's system dirs: /proc, a minimal /dev, read-only /sys, and the host's resolv.conf and hosts files.
//!
//! Runs in the container's pid 1 after it entered fresh mount and pid namespaces, so
//! nothing here is visible outside and everything vanishes when the command ends.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::SandboxError;

/// Device nodes every container gets, bind-mounted from the host because mknod is
/// refused in a user namespace.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

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
        // Best effort: a remount must keep flags the kernel locked on the source
        // (nosuid/nodev/noexec) or it is refused; losing read-only is not fatal here.
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if mount(None::<&str>, dst, None::<&str>, flags, None::<&str>).is_err() {
            let _ = mount(None::<&str>, dst, None::<&str>, flags | MsFlags::MS_NOEXEC, None::<&str>);
        }
    }
    Ok(())
}

/// Mounts /proc, /dev, /sys and the resolver files below `root` (the merged dir).
pub fn mount_system(root: &Path) -> Result<(), SandboxError> {
    let proc_dir = root.join("proc");
    ensure_dir(&proc_dir)?;
    let nsx = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), &proc_dir, Some("proc"), nsx, None::<&str>).map_err(|e| SandboxError::sys("mount /proc", e))?;

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
    // mounted when that namespace is ours (`--network none`). With the host's network
    // the host's sysfs is bound read-only instead.
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if mount(Some("sysfs"), &sys, Some("sysfs"), ro, None::<&str>).is_err() {
        let _ = bind(Path::new("/sys"), &sys, true);
    }

    for file in ["resolv.conf", "hosts"] {
        let host = Path::new("/etc").join(file);
        let target = root.join("etc").join(file);
        if host.exists() && target.is_file() {
            bind(&host, &target, true)?;
        }
    }
    Ok(())
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
