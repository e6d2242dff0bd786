//! A RUN's `--mount`s inside the container. pid 1 opens each bind's source while
//! the host is in view, resolved inside the root the builder named for it (so a
//! `source` or a symlink there can never reach beyond that root), and attaches
//! them after pivot_root, so a target and any symlink in it resolve inside the
//! container. Targets it had to create are listed, NUL-separated, in a file the
//! builder reads afterwards to take those stubs out of the step's layer.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};

use super::mounts::{attach_tree, clone_tree};
use super::SandboxError;

/// One mount of a RUN step, in the order they are attached (parents first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepMount {
    /// `source`, resolved inside `root` as if `root` were `/`, bound on `target`.
    Bind { root: PathBuf, source: String, target: String, read_only: bool },
    /// A fresh tmpfs on `target`, of at most `size` bytes.
    Tmpfs { target: String, size: Option<u64> },
}

impl StepMount {
    fn target(&self) -> &str {
        match self {
            StepMount::Bind { target, .. } | StepMount::Tmpfs { target, .. } => target,
        }
    }
}

/// The name of the file in the run's scratch dir where pid 1 lists the mount
/// targets it created.
pub(super) const STUBS_FILE: &str = "mount-stubs";

/// The targets pid 1 created for a run whose scratch dir is `scratch`, in the
/// order it made them (none when it made none).
pub fn created_targets(scratch: &Path) -> std::io::Result<Vec<PathBuf>> {
    let list = match fs::read(scratch.join(STUBS_FILE)) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(list.split(|&c| c == 0).filter(|s| !s.is_empty()).map(|s| PathBuf::from(std::ffi::OsStr::from_bytes(s))).collect())
}

/// Clones each bind's source tree (detached), before pivot_root.
pub(super) fn open_sources(mounts: &[StepMount]) -> Result<Vec<Option<OwnedFd>>, SandboxError> {
    mounts
        .iter()
        .map(|m| match m {
            StepMount::Bind { root, source, .. } => {
                let found = open_in_root(root, source)?;
                let what = format!("{} in {}", source, root.display());
                clone_tree(found.as_raw_fd(), c"", true, &what).map(Some)
            }
            StepMount::Tmpfs { .. } => Ok(None),
        })
        .collect()
}

/// struct open_how (linux/openat2.h); the libc crate's is non-exhaustive.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(RESOLVE_IN_ROOT): `..` and absolute symlinks stop at `root`, as they
/// would at `/` for a process chrooted there.
fn open_in_root(root: &Path, source: &str) -> Result<OwnedFd, SandboxError> {
    let dir = fs::File::open(root).map_err(|e| SandboxError::io(root, e))?;
    let rel = source.trim_start_matches('/');
    let rel = CString::new(if rel.is_empty() { "." } else { rel })
        .map_err(|_| SandboxError::Setup(format!("mount source {source:?} has a NUL byte")))?;
    let how =
        OpenHow { flags: (libc::O_PATH | libc::O_CLOEXEC) as u64, mode: 0, resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS };
    // SAFETY: openat2 with a valid dirfd, C string and an open_how of the size passed.
    let fd =
        unsafe { libc::syscall(libc::SYS_openat2, dir.as_raw_fd(), rel.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>()) };
    if fd < 0 {
        let e = nix::errno::Errno::last();
        return Err(SandboxError::Setup(format!("mount source {source}: {}", e.desc())));
    }
    // SAFETY: a new descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches every mount after pivot_root, creating missing targets and listing
/// them in `stubs`.
pub(super) fn attach(mounts: &[StepMount], sources: Vec<Option<OwnedFd>>, stubs: &mut fs::File) -> Result<(), SandboxError> {
    for (m, source) in mounts.iter().zip(sources) {
        let is_dir = match &source {
            Some(tree) => nix::sys::stat::fstat(tree)
                .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                .map_err(|e| SandboxError::sys(format!("stat the source of {}", m.target()), e))?,
            None => true,
        };
        let target = make_target(m.target(), is_dir, stubs)?;
        let target = target.to_string_lossy().into_owned();
        match (m, source) {
            (StepMount::Bind { source, read_only, .. }, Some(tree)) => {
                attach_tree(tree, &target, *read_only, &format!("mount source {source}"))?
            }
            (StepMount::Tmpfs { size, .. }, _) => {
                let data = size.map(|s| format!("size={s}"));
                mount(Some("tmpfs"), target.as_str(), Some("tmpfs"), MsFlags::MS_NOSUID, data.as_deref())
                    .map_err(|e| SandboxError::sys(format!("mount tmpfs on {target}"), e))?;
            }
            (StepMount::Bind { .. }, None) => unreachable!("open_sources opens every bind"),
        }
    }
    Ok(())
}

/// The target's real path inside the container, each missing component created
/// (a directory, or an empty file for a non-directory source) and written to
/// `stubs`. Symlinks are followed as runc's SecureJoin follows them, a dangling
/// one included (what it names is created): the root is the container's by now,
/// and `..` stops at it, so nothing leads out.
fn make_target(target: &str, is_dir: bool, stubs: &mut fs::File) -> Result<PathBuf, SandboxError> {
    let mut todo: Vec<std::ffi::OsString> = names(Path::new(target));
    todo.reverse();
    let mut cur = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        match fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(SandboxError::Setup(format!("mount target {target}: too many levels of symbolic links")));
                }
                let link = fs::read_link(&next).map_err(|e| SandboxError::io(&next, e))?;
                if link.is_absolute() {
                    cur = PathBuf::from("/");
                }
                todo.extend(names(&link).into_iter().rev());
            }
            Ok(_) => cur = next,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if todo.is_empty() && !is_dir {
                    fs::File::create_new(&next).map_err(|e| SandboxError::io(&next, e))?;
                } else {
                    fs::create_dir(&next).map_err(|e| SandboxError::io(&next, e))?;
                }
                let mut line = next.as_os_str().as_bytes().to_vec();
                line.push(0);
                stubs.write_all(&line).map_err(|e| SandboxError::io(Path::new(STUBS_FILE), e))?;
                cur = next;
            }
            Err(e) => return Err(SandboxError::io(&next, e)),
        }
    }
    Ok(cur)
}

/// A path's names, `..` kept, `.` and `/` dropped.
fn names(path: &Path) -> Vec<std::ffi::OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}
