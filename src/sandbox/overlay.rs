//! Overlay mounts: kernel overlayfs first, fuse-overlayfs when the kernel refuses
//! (only when the driver was probed; a forced driver fails with what to use instead).
//!
//! Used by a container's pid 1 (the mount dies with its namespace) and by the builder
//! itself for COPY and WORKDIR, which write through a mounted overlay so that
//! symlinks in lower layers (merged-/usr's `/bin -> usr/bin`) are honoured and the
//! upper dir receives proper copy-ups, exactly as a RUN would leave them.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{userns::which, Driver, DriverChoice, OverlaySpec, SandboxError};

/// What to try instead when an overlay driver cannot mount here.
const VFS_HINT: &str = "use --storage-driver vfs (copies the layers, needs no mounts)";

/// A mounted overlay; unmounted when dropped.
#[derive(Debug)]
pub struct OverlayMount {
    merged: PathBuf,
    pub driver: Driver,
}

impl OverlayMount {
    pub fn merged(&self) -> &Path {
        &self.merged
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        // Lazy detach: a process still holding a file open must not keep the scratch
        // dir from being cleaned up.
        if self.driver != Driver::Vfs {
            let _ = umount2(&self.merged, MntFlags::MNT_DETACH);
        }
    }
}

/// How long a fuse-overlayfs daemon lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FuseLife {
    /// It daemonizes and lives until unmounted (the builder: threads make a parent
    /// death signal unreliable, it fires when the spawning thread ends).
    Detached,
    /// It stays our child and is killed when this single-threaded process dies (the
    /// sandbox helper: a build killed mid-RUN must not leave a daemon behind).
    TiedToCaller,
}

/// Mounts `spec` and returns a guard that unmounts it.
pub fn mount_overlay(spec: &OverlaySpec) -> Result<OverlayMount, SandboxError> {
    mount_overlay_with(spec, FuseLife::Detached)
}

/// [`mount_overlay`], choosing how a fuse-overlayfs daemon lives.
pub fn mount_overlay_with(spec: &OverlaySpec, life: FuseLife) -> Result<OverlayMount, SandboxError> {
    // The copy is a plain directory the builder writes into as it is: no mount, so
    // COPY and WORKDIR work where nothing may be mounted (setup C).
    if spec.driver == Driver::Vfs {
        return Ok(OverlayMount { merged: spec.merged.clone(), driver: Driver::Vfs });
    }
    let driver = mount_rootfs_with(spec, life)?;
    Ok(OverlayMount { merged: spec.merged.clone(), driver })
}

/// Mounts the overlay of `spec.lower` + `spec.upper` on `spec.merged`, returning the
/// driver that succeeded.
pub fn mount_rootfs(spec: &OverlaySpec) -> Result<Driver, SandboxError> {
    mount_rootfs_with(spec, FuseLife::Detached)
}

fn mount_rootfs_with(spec: &OverlaySpec, life: FuseLife) -> Result<Driver, SandboxError> {
    if spec.driver == Driver::Vfs {
        mount(Some(&spec.merged), &spec.merged, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|e| SandboxError::sys(format!("bind {} onto itself", spec.merged.display()), e))?;
        return Ok(Driver::Vfs);
    }
    if spec.driver == Driver::KernelOverlay {
        let refused = match mount_kernel(spec) {
            Ok(()) => return Ok(Driver::KernelOverlay),
            Err(e) => e.to_string(),
        };
        let fuse = fuse_problem();
        match (spec.choice, fuse) {
            (DriverChoice::Probed, None) if spec.quiet => {}
            (DriverChoice::Probed, None) => eprintln!("strata: kernel overlay refused ({refused}); using fuse-overlayfs"),
            (DriverChoice::Forced, None) => {
                return Err(SandboxError::Driver {
                    driver: "overlay",
                    reason: format!("the kernel refused the mount ({refused})"),
                    hint: format!("use --storage-driver fuse-overlayfs, or {VFS_HINT}"),
                })
            }
            (_, Some(why)) => {
                return Err(SandboxError::Driver {
                    driver: "overlay",
                    reason: format!("the kernel refused the mount ({refused}) and fuse-overlayfs cannot stand in: {why}"),
                    hint: VFS_HINT.into(),
                })
            }
        }
    }
    if let Some(why) = fuse_problem() {
        return Err(SandboxError::Driver { driver: "fuse-overlayfs", reason: why, hint: VFS_HINT.into() });
    }
    match life {
        FuseLife::Detached => mount_fuse(spec)?,
        FuseLife::TiedToCaller => mount_fuse_tied(spec)?,
    }
    Ok(Driver::FuseOverlay)
}

/// Why fuse-overlayfs cannot mount here, if it cannot: no binary on PATH, or a
/// /dev/fuse this user cannot open read-write.
fn fuse_problem() -> Option<String> {
    if which("fuse-overlayfs").is_none() {
        return Some("fuse-overlayfs is not installed (not found on PATH; Debian package fuse-overlayfs)".into());
    }
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => None,
        Err(e) => Some(format!(
            "/dev/fuse is not usable ({e}); it must exist and be readable and writable by this user (distributions ship it 0666)"
        )),
    }
}

/// Finds the best driver this host offers: kernel overlay, else fuse-overlayfs
/// (binary present and /dev/fuse usable), else the copying vfs driver. `scratch` is
/// an empty directory used for a trial mount.
pub fn probe(scratch: &Path, userxattr: bool) -> Driver {
    let dirs: Vec<PathBuf> = ["lower", "upper", "work", "merged"].iter().map(|d| scratch.join(d)).collect();
    if dirs.iter().any(|d| std::fs::create_dir_all(d).is_err()) {
        return Driver::Vfs;
    }
    let spec = OverlaySpec {
        lower: vec![dirs[0].clone()],
        upper: dirs[1].clone(),
        work: dirs[2].clone(),
        merged: dirs[3].clone(),
        driver: Driver::KernelOverlay,
        choice: DriverChoice::Forced,
        userxattr,
        quiet: true,
    };
    if mount_kernel(&spec).is_ok() {
        let _ = umount2(&spec.merged, MntFlags::MNT_DETACH);
        return Driver::KernelOverlay;
    }
    if fuse_problem().is_none() && mount_fuse(&spec).is_ok() {
        let _ = umount2(&spec.merged, MntFlags::MNT_DETACH);
        return Driver::FuseOverlay;
    }
    Driver::Vfs
}

/// Overlay's option string is limited to one page, so paths are given relative to
/// their deepest common ancestor, which becomes the working directory for the mount.
fn relative_options(spec: &OverlaySpec) -> (PathBuf, String) {
    let all: Vec<&Path> = spec.lower.iter().map(|p| p.as_path()).chain([spec.upper.as_path(), spec.work.as_path()]).collect();
    let mut base = all[0].parent().unwrap_or(Path::new("/")).to_path_buf();
    while !all.iter().all(|p| p.starts_with(&base)) {
        if !base.pop() {
            break;
        }
    }
    let rel = |p: &Path| p.strip_prefix(&base).unwrap_or(p).display().to_string();
    let lower: Vec<String> = spec.lower.iter().map(|p| rel(p)).collect();
    let opts = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), rel(&spec.upper), rel(&spec.work));
    (base, opts)
}

fn mount_kernel(spec: &OverlaySpec) -> Result<(), SandboxError> {
    let (base, mut opts) = relative_options(spec);
    if spec.userxattr {
        // Inside a user namespace the kernel already disables redirects and metacopy
        // with userxattr and refuses redirect_dir=off outright.
        opts.push_str(",userxattr");
    } else {
        // An upper dir must be a self-contained diff: no redirects, no metacopy.
        opts.push_str(",redirect_dir=off,metacopy=off,index=off");
    }
    if opts.len() >= 4000 {
        return Err(SandboxError::Unsupported(format!("too many layers for one overlay mount ({} lower dirs)", spec.lower.len())));
    }
    // The working directory is the process's: stages building in parallel must not
    // move it under each other's relative options.
    static CWD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _cwd = CWD.lock().unwrap_or_else(|e| e.into_inner());
    let old = std::env::current_dir().map_err(|e| SandboxError::io(".", e))?;
    std::env::set_current_dir(&base).map_err(|e| SandboxError::io(&base, e))?;
    let r = mount(Some("overlay"), &spec.merged, Some("overlay"), MsFlags::empty(), Some(opts.as_str()));
    std::env::set_current_dir(old).map_err(|e| SandboxError::io(".", e))?;
    r.map_err(|e| SandboxError::sys(format!("mount overlay on {}", spec.merged.display()), e))
}

fn mount_fuse(spec: &OverlaySpec) -> Result<(), SandboxError> {
    let (base, opts) = relative_options(spec);
    let out = Command::new("fuse-overlayfs")
        .current_dir(&base)
        .arg("-o")
        .arg(&opts)
        .arg(&spec.merged)
        .output()
        .map_err(|e| SandboxError::io("fuse-overlayfs", e))?;
    if !out.status.success() {
        return Err(SandboxError::Helper {
            helper: "fuse-overlayfs".into(),
            args: opts,
            stderr: String::from_utf8_lossy(&out.stderr).trim().into(),
        });
    }
    Ok(())
}

/// fuse-overlayfs in the foreground as our child, in a session of its own (a terminal's
/// Ctrl-C is for the command, not for the daemon serving its files) and killed when we
/// die; returns once `spec.merged` is a mount point.
fn mount_fuse_tied(spec: &OverlaySpec) -> Result<(), SandboxError> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let (base, opts) = relative_options(spec);
    let parent = spec.merged.parent().unwrap_or(Path::new("/"));
    let parent_dev = std::fs::metadata(parent).map_err(|e| SandboxError::io(parent, e))?.dev();
    // Its chatter ("unknown argument ignored: lazytime") is not the command's output:
    // it goes to a log beside the work dir, shown only when the mount fails.
    let log_path = spec.work.with_file_name("fuse-overlayfs.log");
    let log = std::fs::File::create(&log_path).map_err(|e| SandboxError::io(&log_path, e))?;
    let mut cmd = Command::new("fuse-overlayfs");
    cmd.current_dir(&base).arg("-f").arg("-o").arg(&opts).arg(&spec.merged);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(log);
    // SAFETY: setsid and prctl are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| SandboxError::io("fuse-overlayfs", e))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if std::fs::metadata(&spec.merged).is_ok_and(|m| m.dev() != parent_dev) {
            return Ok(());
        }
        let failed = |why: String| {
            let said = std::fs::read_to_string(&log_path).unwrap_or_default();
            SandboxError::Helper { helper: "fuse-overlayfs".into(), args: opts.clone(), stderr: format!("{why}: {}", said.trim()) }
        };
        match child.try_wait() {
            Ok(Some(status)) => return Err(failed(format!("exited with {status} before mounting"))),
            Err(e) => return Err(SandboxError::io("fuse-overlayfs", e)),
            Ok(None) => {}
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err(failed("did not mount within 30 s".into()));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
