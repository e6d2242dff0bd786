//! Entering strata's user namespace.
//!
//! Every command that touches layer directories runs as "root" inside one user
//! namespace whose id mapping never changes between runs: container uid 0 is the
//! invoking user and container uids 1..N are the user's /etc/subuid range (likewise
//! for gids). Layer files are then owned on the host by the mapped subids, and the
//! same files read back with the same container ids in every later run, which is what
//! kernel overlay copy-up needs (an unmapped owner fails with EOVERFLOW).
//!
//! The namespace is created by forking before any thread exists: the child unshares
//! its user and mount namespaces, the parent writes the maps with the setuid helpers
//! newuidmap/newgidmap (the only way for an unprivileged user to map more than one
//! id), then lets the child go on with the command while it waits to pass on the exit
//! code (and SIGINT, SIGTERM and SIGHUP sent to it, so killing strata's pid stops the
//! build). Without a subuid range, or without the helpers, the child maps its single id
//! itself and strata says once that other owners cannot be represented.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getegid, geteuid, pipe, setresgid, setresuid, ForkResult, Gid, Uid};

use super::setup::{self, Entry};
use super::SandboxError;

/// Environment variable a namespaced strata process sets so that nested strata
/// invocations (e.g. `strata unshare strata build`) do not try to nest namespaces.
const INSIDE_ENV: &str = "_STRATA_USERNS";

/// One extent of a uid or gid map: `size` ids from `inside` map to `outside`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdExtent {
    pub inside: u32,
    pub outside: u32,
    pub size: u32,
}

/// The uid and gid maps a process runs under.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMapping {
    pub uids: Vec<IdExtent>,
    pub gids: Vec<IdExtent>,
}

impl IdMapping {
    /// Reads the maps of the current process from /proc.
    pub fn current() -> Result<IdMapping, SandboxError> {
        Ok(IdMapping { uids: read_map("/proc/self/uid_map")?, gids: read_map("/proc/self/gid_map")? })
    }

    /// True when this is the initial namespace (real root sees every id).
    pub fn is_initial(&self) -> bool {
        self.uids.len() == 1 && self.uids[0].inside == 0 && self.uids[0].outside == 0 && self.uids[0].size == u32::MAX
    }

    /// True when only one uid is mapped: chown to any other id fails.
    pub fn is_single_id(&self) -> bool {
        self.uids.iter().map(|e| u64::from(e.size)).sum::<u64>() <= 1
    }
}

impl fmt::Display for IdMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &[IdExtent]| v.iter().map(|e| format!("{}:{}:{}", e.inside, e.outside, e.size)).collect::<Vec<_>>().join(",");
        write!(f, "uids {} gids {}", show(&self.uids), show(&self.gids))
    }
}

fn read_map(path: &str) -> Result<Vec<IdExtent>, SandboxError> {
    let text = fs::read_to_string(path).map_err(|e| SandboxError::io(path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(|n| n.parse::<u32>());
            match (it.next(), it.next(), it.next()) {
                (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(size))) => Some(IdExtent { inside, outside, size }),
                _ => None,
            }
        })
        .collect())
}

/// How the current process relates to the host's ids once [`enter`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// Real root in the initial user namespace: no id mapping, trusted.* xattrs.
    RealRoot,
    /// Root inside a user namespace: overlay needs `userxattr`, ids are mapped.
    Namespaced(IdMapping),
    /// Root that may neither mount nor create namespaces (a container under Docker's
    /// default seccomp profile): RUN is chrooted into a copied tree with no
    /// namespaces of its own, so it is not isolated from the build (as with Kaniko).
    Chroot(IdMapping),
}

impl Privilege {
    pub fn is_namespaced(&self) -> bool {
        matches!(self, Privilege::Namespaced(_))
    }

    /// The ids this process sees, as /proc/self/uid_map and gid_map list them.
    pub fn mapping(&self) -> Option<&IdMapping> {
        match self {
            Privilege::RealRoot => None,
            Privilege::Namespaced(m) | Privilege::Chroot(m) => Some(m),
        }
    }
}

/// Said once when strata builds without namespaces (setup C).
const CHROOT_TRADE_OFF: &str = "this process may neither create namespaces nor mount (a seccomp profile or missing CAP_SYS_ADMIN denies unshare and mount): RUN steps run chrooted into a copied tree with the build's own network and processes, not isolated from strata, as with Kaniko; allow unshare (e.g. --security-opt seccomp=unconfined, or a Kubernetes seccompProfile of type Unconfined) for isolated steps";

/// A subordinate id range from /etc/subuid or /etc/subgid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubIdRange {
    pub start: u32,
    pub count: u32,
}

/// Finds the ranges for a user in a subid file's text, matched by name or numeric id.
pub fn parse_subid(text: &str, user: &str, id: u32) -> Vec<SubIdRange> {
    let id = id.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.trim().split(':');
            let (owner, start, count) = (parts.next()?, parts.next()?, parts.next()?);
            if owner != user && owner != id {
                return None;
            }
            Some(SubIdRange { start: start.parse().ok()?, count: count.parse().ok()? })
        })
        .filter(|r| r.count > 0)
        .collect()
}

/// Puts the process into strata's user and mount namespaces, unless it already has
/// root there. Must be called before any thread is started. In the unprivileged case
/// the calling process becomes a waiting parent that never returns. `warn` is told,
/// before the fork, when only one id can be mapped (the command's reporter: `-q`
/// silences it).
pub fn enter(warn: &dyn Fn(&str)) -> Result<Privilege, SandboxError> {
    let privilege = enter_namespace(warn)?;
    setup::hide_from_bound_proc();
    Ok(privilege)
}

fn enter_namespace(warn: &dyn Fn(&str)) -> Result<Privilege, SandboxError> {
    if geteuid().is_root() {
        return enter_as_root(warn);
    }
    if std::env::var_os(INSIDE_ENV).is_some() {
        return Err(SandboxError::Unsupported("strata's user namespace is set up but this process is not root in it".into()));
    }
    let plan = MapPlan::for_caller();
    if let Some(reason) = plan.single_id_reason {
        plan.warn_single_id(reason, warn);
    }
    fork_into_namespace(plan, warn)
}

/// Forks: the child goes on in a new user and mount namespace, the parent maps its
/// ids and waits to pass on its exit code.
fn fork_into_namespace(plan: MapPlan, warn: &dyn Fn(&str)) -> Result<Privilege, SandboxError> {
    let (ready_r, ready_w) = pipe().map_err(|e| SandboxError::sys("pipe", e))?;
    let (go_r, go_w) = pipe().map_err(|e| SandboxError::sys("pipe", e))?;
    // SAFETY: called before any thread exists (documented contract of `enter`), so the
    // child may run arbitrary code after the fork.
    match unsafe { fork() }.map_err(|e| SandboxError::sys("fork", e))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(go_w);
            become_namespaced_root(&plan, ready_w, go_r)
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(go_r);
            map_ids_and_wait(child, &plan, ready_r, go_w, warn)
        }
    }
}

/// Real root, or root already inside a namespace (a nested strata, a pod with
/// `hostUsers: false`): a private mount namespace is all that is needed so mounts
/// never leak to the host. Root without CAP_SYS_ADMIN (a rootless podman container)
/// gets it in a nested user namespace mapping every id it has; root that may not
/// create one either builds without namespaces.
fn enter_as_root(warn: &dyn Fn(&str)) -> Result<Privilege, SandboxError> {
    match unshare(CloneFlags::CLONE_NEWNS) {
        Ok(()) => {
            make_mounts_private()?;
            let mapping = IdMapping::current()?;
            if mapping.is_initial() {
                setup::record(Entry::HostRoot);
                return Ok(Privilege::RealRoot);
            }
            setup::record(Entry::RootInNamespace);
            return Ok(Privilege::Namespaced(mapping));
        }
        Err(nix::errno::Errno::EPERM) => {}
        Err(e) => return Err(SandboxError::sys("unshare(CLONE_NEWNS)", e)),
    }
    let mapping = IdMapping::current()?;
    if std::env::var_os(INSIDE_ENV).is_none() && may_create_user_namespace() {
        return fork_into_namespace(MapPlan::identity(mapping), warn);
    }
    warn(CHROOT_TRADE_OFF);
    setup::record(Entry::Chroot);
    Ok(Privilege::Chroot(mapping))
}

/// Asks the kernel, any seccomp filter and any AppArmor profile, in a throwaway
/// child, whether this process may create a user namespace and mount in it (Docker's
/// AppArmor profile denies mount even where seccomp allows unshare).
fn may_create_user_namespace() -> bool {
    // SAFETY: called before any thread exists (contract of `enter`); the child
    // only unshares, mounts in its own namespace and exits.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let ok = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).is_ok() && make_mounts_private().is_ok();
            // SAFETY: _exit skips the parent's atexit handlers and buffers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        Ok(ForkResult::Parent { child }) => matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0))),
        Err(_) => false,
    }
}

/// The ids the caller's namespace will map.
struct MapPlan {
    uid: u32,
    gid: u32,
    user: String,
    subuids: Vec<SubIdRange>,
    subgids: Vec<SubIdRange>,
    /// Why only the caller's own uid and gid will be mapped; `None` when the
    /// subordinate ranges are mapped too (by the parent, with newuidmap/newgidmap).
    single_id_reason: Option<&'static str>,
    /// Root's ids, mapped one to one by the parent itself (it holds CAP_SETUID and
    /// CAP_SETGID where it is) instead of through the helpers.
    identity: Option<IdMapping>,
}

impl MapPlan {
    fn for_caller() -> MapPlan {
        let uid = geteuid().as_raw();
        let gid = getegid().as_raw();
        let user = user_name(uid).unwrap_or_else(|| uid.to_string());
        let subuids = fs::read_to_string("/etc/subuid").map(|t| parse_subid(&t, &user, uid)).unwrap_or_default();
        let subgids = fs::read_to_string("/etc/subgid").map(|t| parse_subid(&t, &user, uid)).unwrap_or_default();
        let helpers = which("newuidmap").is_some() && which("newgidmap").is_some();
        // A test hook (fault-injection builds only) behaves as a host without ranges.
        let single_id_reason = if let Some(hook) = crate::fault::subids_ignored() {
            Some(hook)
        } else if !helpers {
            Some("newuidmap/newgidmap not found")
        } else if subuids.is_empty() || subgids.is_empty() {
            Some("no /etc/subuid or /etc/subgid range")
        } else {
            None
        };
        MapPlan { uid, gid, user, subuids, subgids, single_id_reason, identity: None }
    }

    /// Root of a namespace that lacks CAP_SYS_ADMIN: a nested namespace maps each id
    /// to itself, so files keep the owners they have.
    fn identity(mapping: IdMapping) -> MapPlan {
        let (subuids, subgids) = (Vec::new(), Vec::new());
        MapPlan { uid: 0, gid: 0, user: "root".into(), subuids, subgids, single_id_reason: None, identity: Some(mapping) }
    }

    fn multi(&self) -> bool {
        self.single_id_reason.is_none()
    }

    fn warn_single_id(&self, reason: &str, warn: &dyn Fn(&str)) {
        let MapPlan { uid, gid, user, .. } = self;
        // setgroups is denied in a single-id namespace: the caller's supplementary
        // groups cannot be dropped there (see `child::user::drop_privileges`).
        let extra_groups = nix::unistd::getgroups().unwrap_or_default().iter().any(|g| g.as_raw() != *gid);
        warn(&format!(
            "{reason} for user {user}: only uid {uid} and gid {gid} are mapped; other owners are recorded in user.containers.override_stat xattrs and written to layers, but processes cannot switch to other users{} (add ranges to /etc/subuid and /etc/subgid and install uidmap)",
            if extra_groups { ", and they keep your supplementary groups" } else { "" }
        ));
    }
}

/// The forked child: unshares the user and mount namespaces, has its ids mapped
/// (by itself, or by the parent while it waits on `go_r`) and becomes root there.
fn become_namespaced_root(plan: &MapPlan, ready_w: OwnedFd, go_r: OwnedFd) -> Result<Privilege, SandboxError> {
    // Whoever kills the strata the user started (a CI timeout, kill) kills the
    // build with it instead of leaving it running unseen.
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
        .map_err(|e| SandboxError::Unsupported(format!("cannot create a user namespace ({e}): {}", userns_hint())))?;
    let mut entry = match (plan.multi(), plan.identity.is_some()) {
        (false, _) => Entry::SingleId,
        (true, true) => Entry::NestedForRoot,
        (true, false) => Entry::Subids,
    };
    if !plan.multi() {
        write_single_map(plan.uid, plan.gid)?;
    }
    signal(ready_w)?;
    if plan.multi() && wait_for(go_r)? == MAP_YOURSELF {
        write_single_map(plan.uid, plan.gid)?;
        entry = Entry::SingleId;
    }
    setup::record(entry);
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(|e| SandboxError::sys("setresgid(0)", e))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(|e| SandboxError::sys("setresuid(0)", e))?;
    make_mounts_private()?;
    std::env::set_var(INSIDE_ENV, "1");
    Ok(Privilege::Namespaced(IdMapping::current()?))
}

/// The waiting parent: maps the child's subordinate ids once it has unshared, then
/// exits with its exit code.
fn map_ids_and_wait(child: nix::unistd::Pid, plan: &MapPlan, ready_r: OwnedFd, go_w: OwnedFd, warn: &dyn Fn(&str)) -> ! {
    let ok = wait_for(ready_r).is_ok();
    if ok && plan.multi() {
        match map_child(child, plan) {
            Ok(()) => {
                let _ = signal(go_w);
            }
            // Nothing written yet: a newuidmap that cannot work here (not setuid in
            // this image, or no_new_privs set by the container) leaves the single id.
            Err((e, false)) => {
                plan.warn_single_id(&format!("{e}; newuidmap does not work here"), warn);
                let _ = signal_byte(go_w, MAP_YOURSELF);
            }
            Err((e, true)) => {
                eprintln!("strata: {e}");
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = signal(go_w);
            }
        }
    }
    // `kill -INT <strata pid>` (a CI runner's cancel, a supervisor's stop) only
    // reaches this process: pass it on so the build stops as on Ctrl-C, which
    // the child receives from the terminal itself (same process group).
    setup::hide_from_bound_proc();
    forward_signals_to(child);
    let code = loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, c)) => break c,
            Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break 1,
        }
    };
    std::process::exit(code);
}

/// What the parent tells a child that waits for its maps: they could not be written,
/// so it maps its single id itself.
const MAP_YOURSELF: u8 = b'S';

/// Writes the child's maps: root's own ids one to one, or the caller's subordinate
/// ranges through newuidmap/newgidmap. An error says whether the uid map was
/// written already (it can be written only once, so the child cannot fall back).
fn map_child(child: nix::unistd::Pid, plan: &MapPlan) -> Result<(), (SandboxError, bool)> {
    let pid = child.as_raw().to_string();
    if let Some(identity) = &plan.identity {
        let lines = |v: &[IdExtent]| v.iter().map(|e| format!("{} {} {}\n", e.inside, e.inside, e.size)).collect::<String>();
        let w = |file: &str, text: String| {
            let path = format!("/proc/{pid}/{file}");
            fs::write(&path, text).map_err(|e| SandboxError::io(path, e))
        };
        w("uid_map", lines(&identity.uids)).map_err(|e| (e, false))?;
        return w("gid_map", lines(&identity.gids)).map_err(|e| (e, true));
    }
    run_map_helper("newuidmap", &pid, plan.uid, &plan.subuids).map_err(|e| (e, false))?;
    run_map_helper("newgidmap", &pid, plan.gid, &plan.subgids).map_err(|e| (e, true))
}

/// Why user namespaces may be unavailable, from the sysctls that switch them off.
fn userns_hint() -> String {
    let read = |p: &str| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return "user namespaces are disabled (sysctl user.max_user_namespaces=0); raise it, e.g. sysctl -w user.max_user_namespaces=15000"
            .into();
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone=0); enable with sysctl -w kernel.unprivileged_userns_clone=1".into();
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1); allow strata with an AppArmor profile or set the sysctl to 0".into();
    }
    if seccomp_filtered() {
        return "a seccomp filter denies unshare (this process runs in a container under a profile such as Docker's default): give the container a profile that allows it (docker/podman run --security-opt seccomp=unconfined, Kubernetes securityContext.seccompProfile.type: Unconfined), or run strata as root there, where it builds without namespaces".into();
    }
    "unprivileged user namespaces may be disabled on this host".into()
}

/// True when a seccomp filter applies to this process (`Seccomp: 2`).
pub(super) fn seccomp_filtered() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.split_whitespace().eq(["Seccomp:", "2"])))
}

/// The pid the waiting parent forwards signals to (0 before the fork).
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Makes the waiting parent pass SIGINT, SIGTERM and SIGHUP on to `child` (which dies
/// of it, or handles it, and the parent then exits with its status). SIGQUIT stays
/// ignored: only a terminal sends it, and the child got it from there already.
fn forward_signals_to(child: nix::unistd::Pid) {
    use nix::sys::signal::{sigaction, signal, SaFlags, SigAction, SigHandler, SigSet, Signal};
    FORWARD_TO.store(child.as_raw(), Ordering::Relaxed);
    let action = SigAction::new(SigHandler::Handler(forward_signal), SaFlags::SA_RESTART, SigSet::empty());
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only reads an atomic and calls kill.
        let old = unsafe { sigaction(s, &action) };
        if matches!(old, Ok(o) if o.handler() == SigHandler::SigIgn) {
            // Ignored since we started (a `cmd &` of a non-interactive shell): the
            // child ignores it too, so keep the convention and leave it ignored.
            // SAFETY: as above.
            let _ = unsafe { sigaction(s, &SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty())) };
        }
    }
    // SAFETY: installing SIG_IGN has no handler code to be unsafe.
    let _ = unsafe { signal(Signal::SIGQUIT, SigHandler::SigIgn) };
}

fn make_mounts_private() -> Result<(), SandboxError> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| SandboxError::sys("make / private", e))
}

fn write_single_map(uid: u32, gid: u32) -> Result<(), SandboxError> {
    let w = |path: &str, text: String| fs::write(path, text).map_err(|e| SandboxError::io(path, e));
    w("/proc/self/setgroups", "deny".into())?;
    w("/proc/self/uid_map", format!("0 {uid} 1"))?;
    w("/proc/self/gid_map", format!("0 {gid} 1"))
}

fn run_map_helper(helper: &str, pid: &str, own: u32, ranges: &[SubIdRange]) -> Result<(), SandboxError> {
    let mut args = vec![pid.to_string(), "0".into(), own.to_string(), "1".into()];
    let mut next = 1u32;
    for r in ranges {
        args.extend([next.to_string(), r.start.to_string(), r.count.to_string()]);
        next = next.saturating_add(r.count);
    }
    let out = Command::new(helper).args(&args).output().map_err(|e| SandboxError::io(helper, e))?;
    if !out.status.success() {
        return Err(SandboxError::Helper {
            helper: helper.into(),
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn signal(fd: OwnedFd) -> Result<(), SandboxError> {
    signal_byte(fd, b'1')
}

fn signal_byte(fd: OwnedFd, byte: u8) -> Result<(), SandboxError> {
    let mut f = fs::File::from(fd);
    f.write_all(&[byte]).map_err(|e| SandboxError::io("sync pipe", e))
}

/// Waits for the peer's byte and returns it.
fn wait_for(fd: OwnedFd) -> Result<u8, SandboxError> {
    let raw = fd.as_raw_fd();
    let mut f = fs::File::from(fd);
    let mut b = [0u8; 1];
    match f.read(&mut b) {
        Ok(1) => Ok(b[0]),
        _ => Err(SandboxError::Unsupported(format!("namespace setup peer went away (fd {raw})"))),
    }
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
}

/// Looks a program up on PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_lines_match_by_name_or_id() {
        let text = "# comment\nalice:100000:65536\n1001:300000:1000\nbob:200000:65536\nalice:500000:0\n";
        assert_eq!(parse_subid(text, "alice", 1000), vec![SubIdRange { start: 100000, count: 65536 }]);
        assert_eq!(parse_subid(text, "carol", 1001), vec![SubIdRange { start: 300000, count: 1000 }]);
        assert!(parse_subid(text, "dave", 7).is_empty());
    }

    #[test]
    fn initial_and_single_maps_are_recognised() {
        let init = IdMapping { uids: vec![IdExtent { inside: 0, outside: 0, size: u32::MAX }], gids: vec![] };
        assert!(init.is_initial());
        let single = IdMapping { uids: vec![IdExtent { inside: 0, outside: 1000, size: 1 }], gids: vec![] };
        assert!(single.is_single_id() && !single.is_initial());
    }
}
