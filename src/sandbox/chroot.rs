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
    /// Paths that did not exist before, removed afterwards (deepest first).
    created: Vec<PathBuf>,
    /// The image's own files moved aside: (in the tree, parked in the scratch dir).
    parked: Vec<(PathBuf, PathBuf)>,
}

impl Tree {
    /// Lends the tree what the command expects of a container. Fails for what
    /// cannot work without mounts: `RUN --mount`, volumes, a network of its own.
    pub fn prepare(spec: &RunSpec, scratch: &Path) -> Result<Tree, String> {
        refuse_what_needs_mounts(spec)?;
        let root = &spec.rootfs.merged;
        let mut tree = Tree { created: Vec::new(), parked: Vec::new() };
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
                fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(|e| format!("chmod {}: {e}", path.display()))?;
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

    /// Puts a copy of `host` at `path`, the image's own entry parked aside.
    fn lend_file(&mut self, path: &Path, host: &Path, park: &Path) -> Result<(), String> {
        if fs::symlink_metadata(path).is_ok() {
            fs::rename(path, park).map_err(|e| format!("moving {} aside: {e}", path.display()))?;
            self.parked.push((path.to_path_buf(), park.to_path_buf()));
        } else {
            self.created.push(path.to_path_buf());
        }
        fs::copy(host, path).map_err(|e| format!("copying {} to {}: {e}", host.display(), path.display()))?;
        Ok(())
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
    pub fn restore(self) -> Result<(), String> {
        let mut first_error = None;
        for path in self.created.iter().rev() {
            if let Err(e) = remove_any(path) {
                first_error.get_or_insert(format!("removing {}: {e}", path.display()));
            }
        }
        for (path, park) in &self.parked {
            let back = remove_any(path).and_then(|()| fs::rename(park, path));
            if let Err(e) = back {
                first_error.get_or_insert(format!("putting back {}: {e}", path.display()));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Removes a file or a whole tree; a missing path is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
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

    #[test]
    fn what_needs_a_mount_is_refused_by_name() {
        let mut s = spec(Path::new("/nonexistent"));
        s.network = Network::None;
        assert!(Tree::prepare(&s, Path::new("/nonexistent")).err().expect("refused").contains("network namespace"));
    }
}
