//! The container's side: new namespaces, pid 1's setup, and the exec.
//!
//! [`contain`] runs in the sandbox helper process. It mounts the overlay, unshares
//! pid, uts and ipc namespaces, forks pid 1 and waits for it. Pid 1 takes its own
//! mount namespace (with the overlay in it), mounts /proc, /dev and /sys, pivots into
//! it, resolves the user in the container's own /etc/passwd, drops to Docker's
//! default capability set with no_new_privs, loads the seccomp filter, and execs the
//! command. A setup failure travels back over a close-on-exec pipe, so "the command
//! exited 125" and "the sandbox could not start" are never confused. Pid 1 then
//! stays as a minimal init: the command runs as its child, orphans are reaped and
//! signals forwarded. Who the command runs as, and with which privileges, is the
//! `user` submodule's part.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, fork, pipe2, pivot_root, sethostname, ForkResult};
use std::os::fd::AsRawFd;

use super::{chown_notify, mounts, network, overlay, seccomp, step_mounts, Driver, Isolation, Network, Outcome, RunSpec};
use std::os::unix::net::UnixStream;

mod user;

use user::{drop_privileges, resolve_user};
pub use user::{resolve_user_in, ResolvedUser, DEFAULT_CAPS};

/// The PATH a container gets when its image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the spec's command in new namespaces and reports how it ended. `scratch`
/// is the run's own directory (the generated resolv.conf and the network helper's
/// log go there).
pub fn contain(spec: &RunSpec, seccomp: Option<&seccomp::Program>, scratch: &Path) -> Outcome {
    if spec.isolation == Isolation::Chroot {
        return contain_chrooted(spec, seccomp, scratch);
    }
    // Unmounted on return, once pid 1 is gone.
    let _rootfs = match mount_rootfs(spec) {
        Ok(m) => m,
        Err(msg) => return Outcome::SetupFailed(msg),
    };
    // A private network is made, and its helper started, before the pid namespace:
    // the helper must not be a process of the container (see `network`).
    let (netns, helper, resolv) = match spec.network {
        Network::Private(via) => match start_network(via, spec, scratch) {
            Ok((ns, h, r)) => (Some(ns), Some(h), Some(r)),
            Err(msg) => return Outcome::SetupFailed(msg),
        },
        _ => (None, None, None),
    };
    if let Err(msg) = unshare_container_namespaces(spec.network) {
        return Outcome::SetupFailed(msg);
    }
    let (err_r, err_w) = match pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return Outcome::SetupFailed(format!("pipe: {e}")),
    };
    // SAFETY: the helper process is single-threaded (freshly exec'd for this purpose).
    match unsafe { fork() } {
        Err(e) => Outcome::SetupFailed(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(err_r);
            become_pid1(spec, seccomp, err_w, netns.as_ref(), resolv.as_deref(), scratch)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(err_w);
            drop(netns);
            wait_for_pid1(child, err_r, helper)
        }
    }
}

/// Setup C: no namespaces and no mounts. The copied tree gets what a container's
/// mounts would give (see `chroot::Tree`), put back afterwards so the tree diff
/// sees only the command's changes; the process that would be pid 1 chroots and
/// stays as the command's subreaper.
fn contain_chrooted(spec: &RunSpec, seccomp: Option<&seccomp::Program>, scratch: &Path) -> Outcome {
    let tree = match super::chroot::Tree::prepare(spec, scratch) {
        Ok(t) => t,
        Err(msg) => return Outcome::SetupFailed(msg),
    };
    let (err_r, err_w) = match pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return Outcome::SetupFailed(format!("pipe: {e}")),
    };
    // SAFETY: the helper process is single-threaded (freshly exec'd for this purpose).
    let outcome = match unsafe { fork() } {
        Err(e) => Outcome::SetupFailed(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(err_r);
            // Orphans of the command come back to it, not to the container's init.
            // SAFETY: plain prctl with an integer argument.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
            become_pid1(spec, seccomp, err_w, None, None, scratch)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(err_w);
            wait_for_pid1(child, err_r, None)
        }
    };
    match tree.restore() {
        Ok(()) => outcome,
        Err(msg) => Outcome::SetupFailed(format!("after the command ended (exit status {}): {msg}", outcome.code())),
    }
}

/// Mounts the overlay drivers' root; the vfs driver's is a plain directory.
///
/// Done here, in the helper's mount namespace, not in pid 1's: fuse-overlayfs serves
/// its mount from a daemon, and pivot_root re-roots every process of the namespace it
/// runs in, so a daemon in pid 1's namespace would have its root on the very mount it
/// serves; its own path lookups (/proc/self/fd/N for xattrs) then wait for an answer
/// only it can give, and the RUN hangs. pid 1's namespace is copied from this one and
/// keeps the mount. Before unsharing the pid namespace: the mount helper must not
/// become its pid 1.
fn mount_rootfs(spec: &RunSpec) -> Result<Option<overlay::OverlayMount>, String> {
    if spec.rootfs.driver == Driver::Vfs {
        return Ok(None);
    }
    overlay::mount_overlay_with(&spec.rootfs, overlay::FuseLife::TiedToCaller).map(Some).map_err(|e| e.to_string())
}

/// Unshares the pid, uts and ipc namespaces pid 1 will be forked into, and the
/// network namespace too for `--network none`.
fn unshare_container_namespaces(network: Network) -> Result<(), String> {
    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| format!("unshare(pid, uts, ipc{} namespaces): {e}", if network == Network::None { ", net" } else { "" }))?;
    if network == Network::None {
        // Docker's "none" network still has a working loopback.
        super::network::loopback_up().map_err(|e| format!("bringing up lo in the new network namespace: {e}"))?;
    }
    Ok(())
}

/// The forked child: becomes the container's pid 1, or reports why it could not
/// over `err_w` and exits 125.
fn become_pid1(
    spec: &RunSpec,
    seccomp: Option<&seccomp::Program>,
    err_w: std::os::fd::OwnedFd,
    netns: Option<&std::os::fd::OwnedFd>,
    resolv: Option<&Path>,
    scratch: &Path,
) -> ! {
    // If the helper dies, so does the whole container (pid 1 takes the pid
    // namespace with it).
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // The helper's argv and environment name strata's binary and the store;
    // the container sees pid 1's in /proc/1.
    super::title::neutralise();
    let err = match setup_and_exec(spec, seccomp, &err_w, netns, resolv, scratch) {
        Err(msg) => msg,
        Ok(never) => match never {},
    };
    let mut w = fs::File::from(err_w);
    let _ = w.write_all(err.as_bytes());
    std::process::exit(125);
}

/// The helper's side once pid 1 is forked: waits for its setup to end (or the
/// network helper to fail), then for it to exit, and reports how it ended.
fn wait_for_pid1(child: nix::unistd::Pid, err_r: std::os::fd::OwnedFd, mut helper: Option<network::Running>) -> Outcome {
    // pid 1 hands these on to the command; dying of them here would SIGKILL
    // the container before the command could act on them.
    super::forward::forward_to(child.as_raw());
    let msg = match read_setup_message(err_r, helper.as_mut()) {
        Ok(msg) => {
            super::timing::exec_started();
            msg
        }
        Err(msg) => {
            // pid 1 first: ending the helper stops reaping children by hand.
            let failed = kill_and_fail(child, msg);
            drop(helper);
            return failed;
        }
    };
    let status = loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, c)) => break Outcome::Exited(c),
            Ok(WaitStatus::Signaled(_, s, _)) => break Outcome::Signaled(s as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => break Outcome::SetupFailed(format!("waitpid: {e}")),
        }
    };
    super::timing::pid1_ended();
    // pid 1 is reaped: the helper may go (see `network::Running`'s drop).
    drop(helper);
    if msg.is_empty() {
        status
    } else {
        Outcome::SetupFailed(msg)
    }
}

/// Makes the container's network namespace, writes its resolv.conf and starts the
/// helper that serves it.
fn start_network(via: super::Via, spec: &RunSpec, scratch: &Path) -> Result<(std::os::fd::OwnedFd, network::Running, PathBuf), String> {
    let resolv = scratch.join("resolv.conf");
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    fs::write(&resolv, network::resolv_conf(&host)).map_err(|e| format!("writing {}: {e}", resolv.display()))?;
    let netns = network::create_namespace()?;
    let helper = network::start(via, &netns, &spec.publish, scratch).map_err(|e| e.to_string())?;
    Ok((netns, helper, resolv))
}

/// Reads pid 1's setup error (empty once the command was exec'd), failing early if
/// the network helper exits before that: pid 1 would otherwise wait for a network
/// that never comes.
fn read_setup_message(err_r: std::os::fd::OwnedFd, helper: Option<&mut network::Running>) -> Result<String, String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    if let Some(h) = helper {
        loop {
            let mut fds = [PollFd::new(err_r.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(50u8)) {
                Ok(n) if n > 0 => break,
                _ => {}
            }
            if let Some(why) = h.failure() {
                return Err(format!("network: {why}"));
            }
        }
    }
    let mut msg = String::new();
    let _ = fs::File::from(err_r).read_to_string(&mut msg);
    Ok(msg)
}

fn kill_and_fail(child: nix::unistd::Pid, msg: String) -> Outcome {
    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
    Outcome::SetupFailed(msg)
}

enum Never {}

/// What pid 1 prepared for the exec.
struct Prepared {
    exe: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    user: ResolvedUser,
}

/// Signals pid 1 passes on to the command instead of acting on them.
const FORWARDED: [Signal; 8] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH, Signal::SIGCONT];

/// Pid 1: prepares the root, then runs the command as its child while it reaps
/// orphans (a shell's background jobs, daemons that double-fork) and forwards
/// signals, so the command never runs as a pid 1 that ignores SIGTERM.
fn setup_and_exec(
    spec: &RunSpec,
    seccomp: Option<&seccomp::Program>,
    err_w: &std::os::fd::OwnedFd,
    netns: Option<&std::os::fd::OwnedFd>,
    resolv: Option<&Path>,
    scratch: &Path,
) -> Result<Never, String> {
    // Joined before the seal: the namespace's descriptor is one of those it closes.
    if let Some(ns) = netns {
        network::join(ns)?;
    }
    seal_pid1(err_w.as_raw_fd())?;
    // Opened while /proc is still in view: the chroot leaves none.
    let leftovers = match spec.isolation {
        Isolation::Chroot => Some(super::chroot::Leftovers::watch()?),
        Isolation::Namespaces => None,
    };
    let prepared = setup(spec, resolv, scratch)?;
    if netns.is_some() {
        // The mounts above overlapped with the helper's start; the command needs it done.
        network::wait_configured()?;
    }
    let set = pid1_signals();
    set.thread_block().map_err(|e| format!("blocking signals: {e}"))?;
    let notify_pair = if spec.fake_chown { Some(UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?) } else { None };
    // SAFETY: pid 1 is single-threaded (forked from the single-threaded helper).
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => exec_command(spec, &prepared, seccomp, &set, notify_pair),
        ForkResult::Parent { child } => {
            // Only the command's exec may close the pipe's last write end.
            let _ = nix::unistd::close(err_w.as_raw_fd());
            let listener = notify_pair.and_then(|(ours, theirs)| {
                drop(theirs);
                chown_notify::receive_listener(&ours)
            });
            let code = reap_and_forward(child, &set, listener.as_ref());
            if let Some(leftovers) = leftovers {
                leftovers.kill_all(child);
            }
            std::process::exit(code)
        }
    }
}

/// What pid 1 blocks and reads from a signalfd: children's exits and the signals
/// it forwards.
fn pid1_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(s);
    }
    set
}

/// The command's process, forked by pid 1: takes a session, the terminal and the
/// user's privileges, loads the seccomp filter and execs. `blocked` is what pid 1
/// blocked, unblocked again here.
fn exec_command(
    spec: &RunSpec,
    prepared: &Prepared,
    seccomp: Option<&seccomp::Program>,
    blocked: &SigSet,
    notify_pair: Option<(UnixStream, UnixStream)>,
) -> Result<Never, String> {
    reset_signal_dispositions();
    let _ = blocked.thread_unblock();
    // The command leads a session of its own (the helper's already left the
    // caller's). With `-t` the pty becomes its controlling terminal: Ctrl-C
    // typed there becomes SIGINT for its process group, as in docker -t.
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    if spec.tty {
        // SAFETY: TIOCSCTTY on our stdin (the pty slave) with an integer argument.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
            return Err(format!("making the pty the controlling terminal: {}", std::io::Error::last_os_error()));
        }
    }
    drop_privileges(&prepared.user)?;
    if spec.isolation == Isolation::Chroot {
        // No pid namespace ends with pid 1 here: the command dies with it instead
        // (set after the credentials changed, which clears it).
        // SAFETY: plain prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    }
    // Nothing of the builder's may leak into the command (see `fds`).
    super::fds::close_on_exec_above_stderr()?;
    // Last before exec, in the command's process only: pid 1 stays unfiltered
    // to serve the chown notifications.
    let listener = match seccomp {
        Some(p) => p.load().map_err(|e| e.to_string())?,
        None => None,
    };
    if let (Some((_, theirs)), Some(listener)) = (&notify_pair, &listener) {
        chown_notify::send_listener(theirs, listener).map_err(|e| format!("passing the chown listener: {e}"))?;
    }
    // Close-on-exec already (kernel, std); closed here all the same.
    drop(listener);
    drop(notify_pair);
    let err = nix::unistd::execve(&prepared.exe, &prepared.argv, &prepared.envp).unwrap_err();
    Err(format!("exec {}: {err}", prepared.exe.to_string_lossy()))
}

/// Ignored signals survive exec, and the Rust runtime ignores SIGPIPE: without this,
/// `yes | head -c 1` in a RUN would never end.
fn reset_signal_dispositions() {
    use nix::sys::signal::{signal, SigHandler};
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL runs no handler code.
            let _ = unsafe { signal(sig, SigHandler::SigDfl) };
        }
    }
}

/// pid 1's loop: returns the exit code the command ended with. With a chown
/// listener it also serves the command's chown calls.
fn reap_and_forward(main: nix::unistd::Pid, set: &SigSet, listener: Option<&std::os::fd::OwnedFd>) -> i32 {
    let signals = nix::sys::signalfd::SignalFd::new(set).ok();
    loop {
        if let (Some(l), Some(sfd)) = (listener, signals.as_ref()) {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN), PollFd::new(l.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue;
            }
            if fds[1].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
                chown_notify::serve_one(l);
            }
            if !fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
                continue;
            }
        }
        let sig = match signals.as_ref().map(|s| s.read_signal()) {
            Some(Ok(Some(info))) => Signal::try_from(info.ssi_signo as i32).unwrap_or(Signal::SIGCHLD),
            Some(_) => continue,
            None => match set.wait() {
                Ok(s) => s,
                Err(_) => continue,
            },
        };
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(main, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == main => return code,
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == main => return 128 + s as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

fn setup(spec: &RunSpec, resolv: Option<&Path>, scratch: &Path) -> Result<Prepared, String> {
    match spec.isolation {
        Isolation::Namespaces => enter_container_root(spec, resolv, scratch)?,
        Isolation::Chroot => super::chroot::enter(&spec.rootfs.merged)?,
    }
    prepare_exec(spec)
}

/// pid 1's mount namespace, the container's system mounts and volumes, and
/// pivot_root into the merged tree.
fn enter_container_root(spec: &RunSpec, resolv: Option<&Path>, scratch: &Path) -> Result<(), String> {
    // pid 1 gets a mount namespace of its own: pivot_root re-roots every process of
    // its namespace, and the helper must keep the host's view to write the outcome.
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(mount namespace): {e}"))?;
    nix::mount::mount(None::<&str>, "/", None::<&str>, nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("make / private: {e}"))?;
    if spec.rootfs.driver == Driver::Vfs {
        // A bind of the copy onto itself, so it can be pivoted into (the overlay
        // drivers were mounted by the helper, see `contain`).
        overlay::mount_rootfs(&spec.rootfs).map_err(|e| e.to_string())?;
    }
    mounts::mount_system(&spec.rootfs.merged, resolv).map_err(|e| e.to_string())?;
    if spec.tty {
        mounts::mount_tty(&spec.rootfs.merged).map_err(|e| e.to_string())?;
    }
    mounts::mask_paths(&spec.rootfs.merged);
    write_pipes(&spec.rootfs.merged, &spec.pipes)?;
    // Volume sources are opened now, while the host is still in view; they are bound
    // after pivot_root, so a symlink in a target path resolves inside the container.
    let sources = mounts::open_bind_sources(&spec.binds).map_err(|e| e.to_string())?;
    let step_sources = step_mounts::open_sources(&spec.mounts).map_err(|e| e.to_string())?;
    let mut stubs = open_stubs_file(scratch, &spec.mounts)?;
    let _ = sethostname(&spec.hostname);
    chdir(&spec.rootfs.merged).map_err(|e| format!("chdir {}: {e}", spec.rootfs.merged.display()))?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves
    // only the container's tree without needing a directory to park it in.
    pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).map_err(|e| format!("detach old root: {e}"))?;
    chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    mounts::bind_volumes(&spec.binds, sources).map_err(|e| e.to_string())?;
    if let Some(stubs) = stubs.as_mut() {
        step_mounts::attach(&spec.mounts, step_sources, stubs).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Inside the container's root: the user, the working dir, the environment and
/// the program to exec.
fn prepare_exec(spec: &RunSpec) -> Result<Prepared, String> {
    let user = resolve_user(&spec.user)?;
    let cwd = clean_cwd(&spec.cwd);
    if fs::metadata(&cwd).is_err() {
        fs::create_dir_all(&cwd).map_err(|e| format!("create working directory {cwd}: {e}"))?;
    }
    chdir(cwd.as_str()).map_err(|e| format!("chdir {cwd}: {e}"))?;
    check_cwd_inside_root(&cwd)?;

    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", spec.hostname));
    }
    let path_var = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH).to_string();
    let program = spec.argv.first().ok_or("no command given")?;
    let exe = find_program(program, &path_var).ok_or_else(|| format!("exec: \"{program}\": executable file not found in $PATH"))?;

    let c = |s: &str| CString::new(s).map_err(|_| format!("argument contains a NUL byte: {s:?}"));
    let exe = CString::new(exe.as_os_str().as_bytes()).map_err(|_| "bad path".to_string())?;
    let argv = spec.argv.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
    let envp = env.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared { exe, argv, envp, user })
}

/// Closes what pid 1 inherited and hides its executable, before anything the
/// container controls is looked at.
///
/// Every descriptor above stderr but `keep` (the setup-error pipe) is closed: a
/// directory descriptor leaked from whoever started strata (`strata run ... 7</etc`)
/// would otherwise make `-w /proc/self/fd/7` or `WORKDIR /proc/self/fd/7` a host
/// directory (runc's CVE-2024-21626). Marking them close-on-exec is not enough: the
/// working directory is entered here, before any exec.
///
/// pid 1 is strata itself, so /proc/1/exe is the host's strata binary. When the user
/// who runs strata owns that binary (a `cargo build` in their home), container root is
/// that user and could open it for writing (runc's CVE-2019-5736), or read pid 1's
/// memory and environment. A non-dumpable process's /proc entries need
/// CAP_SYS_PTRACE, which no container process has. The flag is per process and
/// reset by exec, so the command's own /proc/self stays usable. It is cheaper than
/// re-executing from a sealed memfd copy and covers the whole pid 1, not only exe.
/// The file pid 1 lists created mount targets in (none without mounts): opened
/// before pivot_root, while the run's scratch dir is still in view.
fn open_stubs_file(scratch: &Path, mounts: &[step_mounts::StepMount]) -> Result<Option<fs::File>, String> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let path = scratch.join(step_mounts::STUBS_FILE);
    fs::File::create(&path).map(Some).map_err(|e| format!("create {}: {e}", path.display()))
}

fn seal_pid1(keep: std::os::fd::RawFd) -> Result<(), String> {
    let keep = keep as libc::c_uint;
    for (first, last) in [(3, keep.saturating_sub(1)), (keep + 1, libc::c_uint::MAX)] {
        // SAFETY: close_range with integer arguments; nothing of ours holds these fds.
        if first <= last && unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } != 0 {
            return Err(format!("closing inherited descriptors: {}", std::io::Error::last_os_error()));
        }
    }
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(format!("prctl(PR_SET_DUMPABLE): {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The working dir as runc enters it: cleaned lexically, as an image may record
/// it with `..` (BuildKit keeps `WORKDIR /x/../y` as written), so `/x` is neither
/// created nor needed.
fn clean_cwd(cwd: &str) -> String {
    crate::clean_path::clean_abs(cwd)
}

/// The second guard against CVE-2024-21626: whatever `cwd` resolved through (a
/// /proc/self/fd link, a descriptor inherited as stdin), the directory we are in must
/// be reachable from the container's root. Outside it, the kernel's path starts with
/// "(unreachable)" and glibc's getcwd fails with ENOENT.
fn check_cwd_inside_root(cwd: &str) -> Result<(), String> {
    match nix::unistd::getcwd() {
        Ok(path) if path.as_os_str().as_bytes().starts_with(b"/") => Ok(()),
        Ok(path) => Err(format!("working directory {cwd} is outside the container ({})", path.display())),
        Err(e) => Err(format!("working directory {cwd} is outside the container (getcwd: {e})")),
    }
}

fn write_pipes(root: &Path, pipes: &[(String, String)]) -> Result<(), String> {
    if pipes.is_empty() {
        return Ok(());
    }
    let dir = root.join("dev/pipes");
    fs::create_dir_all(&dir).map_err(|e| format!("creating /dev/pipes: {e}"))?;
    for (name, content) in pipes {
        if name.contains('/') || name.is_empty() || name == "." || name == ".." {
            return Err(format!("bad heredoc name {name:?}"));
        }
        let path = dir.join(name);
        fs::write(&path, content).map_err(|e| format!("writing /dev/pipes/{name}: {e}"))?;
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| format!("chmod /dev/pipes/{name}: {e}"))?;
    }
    Ok(())
}

fn find_program(program: &str, path_var: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path_var.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(program)).find(|p| {
        fs::metadata(p).map(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0).unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_working_dir_is_cleaned_as_runc_cleans_it() {
        assert_eq!(super::clean_cwd("/tmp/./cache/.."), "/tmp");
        assert_eq!(super::clean_cwd("/x/y/"), "/x/y");
        assert_eq!(super::clean_cwd("/../.."), "/");
        assert_eq!(super::clean_cwd(""), "/");
    }
}
