//! Setup C: running a command where nothing may be mounted and no namespace made.
//!
//! Under Docker's default seccomp profile without CAP_SYS_ADMIN (a CI job in a plain
//! container, Kaniko's home ground) `unshare` and `mount` are denied. The command
//! then runs chrooted into the step's copied tree (the vfs driver's `merged` dir),
//! sharing the build's pid, network and ipc namespaces: it is not isolated from
//! strata, which says so once at start (`userns::CHROOT_TRADE_OFF`).
//!
//! What a container's mounts would lend the command is lent by the tree itself
//! ([`Tree::prepare`]): the host's resolv.conf and hosts in place of the image's,
//! /dev's device nodes where the kernel lets us make them, the heredoc scripts under
//! /dev/pipes. [`Tree::restore`] takes all of it back before the builder diffs the
//! tree, so a layer holds the command's changes only, as on the host. There is no
//! /proc: it cannot be mounted here.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknod, Mode, SFlag};

use super::{Network, RunSpec};

/// The device nodes a container's /dev has; made with mknod when CAP_MKNOD allows.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// The files of /etc a container gets from the host (bound read-only elsewhere).
const HOST_FILES: [&str; 2] = ["resolv.conf", "hosts"];

/// What [`Tree::prepare`] put into the tree, to be taken out again.
pub struct Tree {
    root: PathBuf,
    /// Paths (below `root`) that did not exist before, removed afterwards.
    created: Vec<PathBuf>,
    /// The image's own files moved aside: (below `root`, parked in the scratch dir).
    parked: Vec<(PathBuf, PathBuf)>,
}

impl Tree {
    /// Lends the tree what the command expects of a container. Fails for what
    /// cannot work without mounts: `RUN --mount`, volumes, a network of its own.
    pub fn prepare(spec: &RunSpec, scratch: &Path) -> Result<Tree, String> {
        refuse_what_needs_mounts(spec)?;
        let root = &spec.rootfs.merged;
        let mut tree = Tree { root: root.clone(), created: Vec::new(), parked: Vec::new() };
        if let Err(e) = tree.lend(root, spec, scratch).and_then(|()| tree.record_lent(root)) {
            let _ = tree.restore();
            return Err(e);
        }
        Ok(tree)
    }

    fn lend(&mut self, root: &Path, spec: &RunSpec, scratch: &Path) -> Result<(), String> {
        let etc = root.join("etc");
        if fs::symlink_metadata(&etc).is_ok_and(|m| m.is_dir()) {
            for name in HOST_FILES {
                let host = Path::new("/etc").join(name);
                if host.is_file() {
                    self.lend_file(&etc.join(name), &host, &scratch.join(format!("parked-{name}")))?;
                }
            }
        }
        let dev = root.join("dev");
        self.make_dir(&dev)?;
        for name in DEVICES {
            self.make_device(&dev.join(name));
        }
        if !spec.pipes.is_empty() {
            let pipes = dev.join("pipes");
            self.make_dir(&pipes)?;
            for (name, text) in &spec.pipes {
                let path = pipes.join(name);
                write_new(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
                self.created.push(path);
            }
        }
        Ok(())
    }

    /// Lists the image's entries that were moved aside and back for the tree diff,
    /// which would otherwise take their new ctime for the step's change. The name,
    /// `<merged>.lent`, is the one `rootfs::vfs::lent_record` reads.
    fn record_lent(&self, root: &Path) -> Result<(), String> {
        use std::os::unix::ffi::OsStrExt;
        let mut text = Vec::new();
        for (path, _) in &self.parked {
            text.extend_from_slice(path.strip_prefix(root).unwrap_or(path).as_os_str().as_bytes());
            text.push(b'\n');
        }
        let record = root.with_extension("lent");
        fs::write(&record, text).map_err(|e| format!("writing {}: {e}", record.display()))
    }

    /// Puts a copy of `host` at `path`, the image's own entry (a symlink as such)
    /// parked aside.
    fn lend_file(&mut self, path: &Path, host: &Path, park: &Path) -> Result<(), String> {
        if fs::symlink_metadata(path).is_ok() {
            fs::rename(path, park).map_err(|e| format!("moving {} aside: {e}", path.display()))?;
            self.parked.push((path.to_path_buf(), park.to_path_buf()));
        } else {
            self.created.push(path.to_path_buf());
        }
        let text = fs::read(host).map_err(|e| format!("reading {}: {e}", host.display()))?;
        write_new(path, &text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(|e| format!("chmod {}: {e}", path.display()))
    }

    fn make_dir(&mut self, dir: &Path) -> Result<(), String> {
        match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(format!("{} is not a directory in the image", dir.display())),
            Err(_) => {
                fs::create_dir(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(|e| format!("chmod {}: {e}", dir.display()))?;
                self.created.push(dir.to_path_buf());
                Ok(())
            }
        }
    }

    /// A copy of the host's node. Without CAP_MKNOD nothing is made, but the path
    /// is still taken back afterwards: a `> /dev/null` then writes a plain file
    /// there, which must not reach the layer.
    fn make_device(&mut self, path: &Path) {
        if fs::symlink_metadata(path).is_ok() {
            return;
        }
        self.created.push(path.to_path_buf());
        let host = Path::new("/dev").join(path.file_name().expect("a device name"));
        if let Ok(m) = fs::metadata(&host) {
            if m.file_type().is_char_device() {
                let _ = mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), m.rdev());
                let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o666));
            }
        }
    }

    /// Takes back everything [`Tree::prepare`] lent, whatever the command did to it.
    ///
    /// The command may have replaced /etc or /dev with a symlink to anywhere: each
    /// entry is reached from the root without following one, and where a parent is
    /// no longer a plain directory there is nothing of ours left to take back (an
    /// image file parked aside is then dropped: the command replaced its directory).
    pub fn restore(self) -> Result<(), String> {
        let mut first_error = None;
        for path in self.created.iter().rev() {
            if let Err(e) = remove_in(&self.root, path) {
                first_error.get_or_insert(format!("removing {}: {e}", path.display()));
            }
        }
        for (path, park) in &self.parked {
            let back = remove_in(&self.root, path).and_then(|()| rename_into(&self.root, park, path));
            if let Err(e) = back {
                first_error.get_or_insert(format!("putting back {}: {e}", path.display()));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Creates `path` with `text`, 0755, refusing anything already there (a symlink
/// the image planted included: O_EXCL does not follow one).
fn write_new(path: &Path, text: impl AsRef<[u8]>) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o755).custom_flags(libc::O_NOFOLLOW).open(path)?;
    f.write_all(text.as_ref())?;
    f.set_permissions(fs::Permissions::from_mode(0o755))
}

/// The directory that holds `path` (below `root`), opened from `root` one plain
/// directory at a time, and the entry's name; None when a parent is gone or is no
/// longer a directory.
fn parent_in(root: &Path, path: &Path) -> io::Result<Option<(std::os::fd::OwnedFd, std::ffi::OsString)>> {
    use nix::fcntl::{open, openat, OFlag};
    let rel = path.strip_prefix(root).map_err(|_| io::Error::other(format!("{} is not below {}", path.display(), root.display())))?;
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else { return Ok(None) };
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let mut dir = open(root, flags, Mode::empty()).map_err(io::Error::from)?;
    for part in parent.components() {
        match openat(&dir, part.as_os_str(), flags, Mode::empty()) {
            Ok(next) => dir = next,
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some((dir, name.to_os_string())))
}

/// Removes the entry at `path` (a file, or a whole tree), reached as [`parent_in`]
/// reaches it; missing is fine.
fn remove_in(root: &Path, path: &Path) -> io::Result<()> {
    use nix::unistd::{unlinkat, UnlinkatFlags};
    use std::os::fd::AsRawFd;
    let Some((dir, name)) = parent_in(root, path)? else { return Ok(()) };
    match nix::sys::stat::fstatat(&dir, name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
        // Through the descriptor's own /proc link: no symlink above it is followed,
        // and remove_dir_all never follows one below.
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
            fs::remove_dir_all(Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(&name))
        }
        Ok(_) => unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir).map_err(io::Error::from),
    }
}

/// Moves the parked `from` (outside the tree) back to `path`; dropped when the
/// directory it came from is no longer there.
fn rename_into(root: &Path, from: &Path, path: &Path) -> io::Result<()> {
    let Some((dir, name)) = parent_in(root, path)? else { return fs::remove_file(from) };
    nix::fcntl::renameat(nix::fcntl::AT_FDCWD, from, &dir, name.as_os_str()).map_err(io::Error::from)
}

fn refuse_what_needs_mounts(spec: &RunSpec) -> Result<(), String> {
    const WHY: &str = "this container may not mount (its seccomp profile or missing CAP_SYS_ADMIN denies mount and unshare)";
    const FIX: &str = "allow unshare and mount (e.g. --security-opt seccomp=unconfined, or a Kubernetes seccompProfile of type Unconfined)";
    if !spec.mounts.is_empty() {
        return Err(format!("RUN --mount needs mounts: {WHY}; {FIX}"));
    }
    if !spec.binds.is_empty() {
        return Err(format!("volumes (-v) need mounts: {WHY}; {FIX}"));
    }
    if spec.tty {
        return Err(format!("a terminal (-t) needs a /dev of the container's own: {WHY}; {FIX}"));
    }
    match spec.network {
        Network::Host => Ok(()),
        _ => Err(format!("a network of the container's own needs a network namespace: {WHY}; use --network host, or {FIX}")),
    }
}

/// What the command leaves running, in setup C: with no pid namespace to end with
/// it, a shell's `cmd &` or a daemon would outlive the step, change the tree while
/// it is diffed, and outlive the build. The process that chroots is their
/// subreaper; this reads its children from /proc, opened before the chroot.
pub struct Leftovers(fs::File);

impl Leftovers {
    pub fn watch() -> Result<Leftovers, String> {
        let path = "/proc/thread-self/children";
        fs::File::open(path).map(Leftovers).map_err(|e| format!("opening {path}: {e}"))
    }

    /// Kills the command's process group, then every child left (orphans come to
    /// us), until none is left.
    pub fn kill_all(mut self, main: nix::unistd::Pid) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        use std::io::{Read, Seek};
        let _ = killpg(main, Signal::SIGKILL);
        loop {
            let mut text = String::new();
            if self.0.rewind().and_then(|()| self.0.read_to_string(&mut text)).is_ok() {
                for pid in text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                    let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Err(_) => return,
                Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Ok(_) => {}
            }
        }
    }
}

/// The command's root: the copied tree, entered with chroot (pivot_root needs a
/// mount namespace). Runs in the process that then forks the command.
pub fn enter(root: &Path) -> Result<(), String> {
    nix::unistd::chroot(root).map_err(|e| match e {
        nix::errno::Errno::EPERM => format!(
            "chroot {}: EPERM: without namespaces a RUN needs CAP_SYS_CHROOT, which this container dropped; add it (docker/podman --cap-add SYS_CHROOT, Kubernetes securityContext.capabilities.add: [SYS_CHROOT]) or allow unshare",
            root.display()
        ),
        e => format!("chroot {}: {e}", root.display()),
    })?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(root: &Path) -> RunSpec {
        let json = serde_json::json!({
            "rootfs": {"lower": [], "upper": "/u", "work": "/w", "merged": root, "driver": "Vfs", "userxattr": false},
            "argv": ["true"], "env": [], "cwd": "/", "user": "", "hostname": "h", "stdin": "Null",
            "network": "Host", "pipes": [["script", "#!/bin/sh\necho hi\n"]]
        });
        serde_json::from_value(json).expect("a spec")
    }

    fn listing(root: &Path) -> Vec<(PathBuf, u64, i64, u64)> {
        let mut out: Vec<_> = walkdir::WalkDir::new(root)
            .into_iter()
            .map(|e| {
                let e = e.expect("walk");
                let m = e.metadata().expect("stat");
                (e.path().to_path_buf(), m.ino(), if m.is_dir() { 0 } else { m.mtime() }, m.len())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn what_was_lent_is_taken_back_whatever_the_command_did() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("merged");
        let scratch = dir.path().join("scratch");
        fs::create_dir_all(root.join("etc")).expect("etc");
        fs::create_dir_all(&scratch).expect("scratch");
        fs::write(root.join("etc/hosts"), "image's own\n").expect("hosts");
        let before = listing(&root);
        let tree = Tree::prepare(&spec(&root), &scratch).expect("prepare");
        assert!(root.join("dev/pipes/script").is_file());
        assert_ne!(fs::read_to_string(root.join("etc/hosts")).expect("lent hosts"), "image's own\n");
        // The command writes where a device would be and drops the lent file.
        let _ = fs::remove_file(root.join("dev/null"));
        fs::write(root.join("dev/null"), "written to a missing device").expect("write");
        fs::remove_file(root.join("etc/hosts")).expect("rm");
        tree.restore().expect("restore");
        assert_eq!(listing(&root), before, "the tree is as the command's changes left it, nothing of ours");
        assert_eq!(fs::read_to_string(root.join("etc/hosts")).expect("hosts"), "image's own\n");
    }

    /// A tree with an /etc of its own, and a directory outside it the test watches.
    fn tree_beside_outside() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, scratch, outside) = (dir.path().join("merged"), dir.path().join("scratch"), dir.path().join("outside"));
        for d in [root.join("etc"), scratch.clone(), outside.clone()] {
            fs::create_dir_all(d).expect("dir");
        }
        fs::write(root.join("etc/hosts"), "image's own\n").expect("hosts");
        fs::write(outside.join("null"), "outside").expect("outside file");
        (dir, root, scratch, outside)
    }

    #[test]
    fn a_symlink_the_image_planted_under_dev_pipes_is_never_written_through() {
        let (_dir, root, scratch, outside) = tree_beside_outside();
        fs::create_dir_all(root.join("dev/pipes")).expect("pipes");
        std::os::unix::fs::symlink(outside.join("null"), root.join("dev/pipes/script")).expect("symlink");
        assert!(Tree::prepare(&spec(&root), &scratch).is_err(), "an existing entry is refused");
        assert_eq!(fs::read_to_string(outside.join("null")).expect("outside"), "outside");
        assert!(fs::symlink_metadata(root.join("dev/pipes/script")).expect("kept").file_type().is_symlink());
        assert_eq!(fs::read_to_string(root.join("etc/hosts")).expect("hosts"), "image's own\n", "put back after the refusal");
    }

    #[test]
    fn restoring_never_follows_a_directory_the_command_replaced_with_a_symlink() {
        let (_dir, root, scratch, outside) = tree_beside_outside();
        let tree = Tree::prepare(&spec(&root), &scratch).expect("prepare");
        // The command swaps /dev and /etc for symlinks to the directory outside.
        fs::remove_dir_all(root.join("dev")).expect("rm dev");
        std::os::unix::fs::symlink(&outside, root.join("dev")).expect("dev link");
        fs::remove_dir_all(root.join("etc")).expect("rm etc");
        std::os::unix::fs::symlink(&outside, root.join("etc")).expect("etc link");
        tree.restore().expect("restore");
        assert_eq!(fs::read_to_string(outside.join("null")).expect("outside"), "outside", "nothing outside is removed");
        assert!(!outside.join("hosts").exists(), "the parked file is not moved outside");
        assert!(fs::symlink_metadata(root.join("etc")).expect("etc").file_type().is_symlink(), "the command's change stays");
        assert!(fs::symlink_metadata(root.join("dev")).is_err(), "the /dev strata made is taken back");
    }

    #[test]
    fn what_needs_a_mount_is_refused_by_name() {
        let mut s = spec(Path::new("/nonexistent"));
        s.network = Network::None;
        assert!(Tree::prepare(&s, Path::new("/nonexistent")).err().expect("refused").contains("network namespace"));
    }
}
