//! Which container setup strata found at start, for `strata info` and for errors.
//!
//! CI runners are mostly containers, and each kind gives strata different powers
//! (docs/ci.md names them A-D): root inside a user namespace (a pod with
//! `hostUsers: false`, rootless podman), a non-root user with one id, root that may
//! neither unshare nor mount (Docker's default seccomp profile), or strata's own
//! `strata run`. `userns::enter` records how it got in; this module only names it.

use std::sync::OnceLock;

/// How `userns::enter` made this process root somewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Real root in the initial user namespace.
    HostRoot,
    /// Root of a user namespace it already had CAP_SYS_ADMIN in (`unshare -r`,
    /// a pod with `hostUsers: false` and the capability).
    RootInNamespace,
    /// Root of a user namespace without CAP_SYS_ADMIN (rootless podman's root): a
    /// nested namespace maps each of its ids to itself.
    NestedForRoot,
    /// An ordinary user with subordinate ids mapped by newuidmap/newgidmap.
    Subids,
    /// An ordinary user with only its own id (no range, or no working newuidmap).
    SingleId,
    /// Root that may neither create namespaces nor mount: RUN is chrooted.
    Chroot,
}

static ENTRY: OnceLock<Entry> = OnceLock::new();

pub(super) fn record(entry: Entry) {
    let _ = ENTRY.set(entry);
}

/// How this process entered, once `userns::enter` returned.
pub fn entry() -> Option<Entry> {
    ENTRY.get().copied()
}

impl Entry {
    /// The setup's letter in docs/ci.md and what it means for a build.
    pub fn describe(self) -> &'static str {
        match self {
            Entry::HostRoot => "real root: no user namespace, trusted.* overlay xattrs",
            Entry::RootInNamespace => "A: root inside a user namespace, with CAP_SYS_ADMIN there (overlay with userxattr)",
            Entry::NestedForRoot => "A: root inside a user namespace without CAP_SYS_ADMIN: a nested namespace maps every id one to one",
            Entry::Subids => "rootless: subordinate ids mapped by newuidmap/newgidmap",
            Entry::SingleId => "B: one id mapped (no subuid range or no working newuidmap): other owners are recorded in xattrs",
            Entry::Chroot => "C: no namespaces and no mounts allowed: RUN is chrooted into a copied tree, not isolated from the build",
        }
    }
}

/// Where strata runs, as far as the usual marks tell: strata's own `run` (its pid 1
/// is `strata-init`: setup D), a Kubernetes pod, podman, docker, or a runtime that
/// masks /proc.
pub fn container() -> String {
    let pid1 = std::fs::read("/proc/1/cmdline").unwrap_or_default();
    if pid1.starts_with(b"strata-init") {
        return "D: inside strata run".into();
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return "a Kubernetes pod".into();
    }
    if std::path::Path::new("/run/.containerenv").exists() {
        return "a podman container".into();
    }
    if std::path::Path::new("/.dockerenv").exists() {
        return "a docker container".into();
    }
    if let Some(name) = std::env::var_os("container").filter(|v| !v.is_empty()) {
        return format!("a container ({})", name.to_string_lossy());
    }
    if super::mounts::proc_is_masked() {
        return "a container (its /proc has masked paths)".into();
    }
    "none found".into()
}

/// Makes this process non-dumpable where a RUN gets the outer /proc bound
/// (`mounts::mount_proc`): there the RUN sees strata's processes, and with the
/// same kernel uid (setups A and B) could otherwise open their /proc entries
/// (`environ`, `root`, `mem`). A non-dumpable process's entries need
/// CAP_SYS_PTRACE. The sandbox helper and pid 1 do the same for themselves.
pub fn hide_from_bound_proc() {
    if super::mounts::proc_is_masked() {
        // SAFETY: plain prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    }
}

/// How a RUN's /proc is made here.
pub fn proc_source() -> &'static str {
    if entry() == Some(Entry::Chroot) {
        "none: nothing can be mounted here"
    } else if super::mounts::proc_is_masked() {
        "the outer /proc bound (a fresh procfs is refused while paths below it are masked)"
    } else {
        "a fresh procfs"
    }
}
