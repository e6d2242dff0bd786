//! The sandbox: the only code in strata that forks, unshares or mounts.
//!
//! A RUN step or `strata run` is described by a [`RunSpec`]: the layer directories to
//! stack, a fresh upper directory, the command and its environment. [`run`] hands the
//! spec to a freshly exec'd helper process (`strata __sandbox SPEC`), because new pid
//! and mount namespaces must be created by a single-threaded process while the builder
//! may already run compression threads. The helper unshares, forks the container's
//! pid 1, waits for it and records a typed [`Outcome`] the builder reads back.
//!
//! Submodules: `userns` (entering strata's user namespace), `mounts` (overlay, /proc,
//! /dev, bind mounts), `child` (what pid 1 does before exec), `seccomp` (the command's
//! syscall filter), `chown_notify` (chown served by pid 1), `tty` (the pty of
//! `run -t`), `stdio` (the pipes `run` relays instead of the caller's descriptors),
//! `title` (pid 1's neutral name), `outcome` (the file the helper reports through),
//! `network` (the private network and its helper, pasta or slirp4netns), `tail` (a
//! build step's last lines of output), `chroot` (setup C: a command chrooted into a
//! copied tree where nothing may be mounted), `setup` (which container setup strata
//! found at start).

mod binfmt;
mod child;
mod chown_notify;
mod chroot;
mod fds;
mod forward;
mod mounts;
mod network;
mod outcome;
mod overlay;
mod running;
mod seccomp;
mod setup;
mod stdio;
mod step_mounts;
mod tail;
mod timing;
mod title;
mod tty;
mod userns;

use std::fs;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

pub use binfmt::{check_runnable, runnable_platforms};
pub use child::{resolve_user_in, DEFAULT_CAPS, DEFAULT_PATH};
pub use network::{cache_key as network_cache_key, resolve as resolve_network, PortMapping};
pub use overlay::{mount_overlay, probe as probe_driver};
pub use running::{start_steps, stop_steps};
pub use seccomp::{Profile as SeccompProfile, SeccompPolicy};
pub use setup::{container as detect_container, entry as setup_entry, proc_source, Entry as SetupEntry};
pub use step_mounts::{created_targets, StepMount};
pub use tail::OutputTail;
pub use userns::{enter as enter_user_namespace, which, IdExtent, IdMapping, Privilege};

/// Name of the hidden subcommand that runs [`helper_main`].
pub const HELPER_COMMAND: &str = "__sandbox";

/// Errors of namespace and mount setup; each names the call or path that failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{call}: {source}")]
    Sys { call: String, source: nix::Error },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{helper} {args} failed: {stderr}")]
    Helper { helper: String, args: String, stderr: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    #[error("storage driver {driver}: {reason}; {hint}")]
    Driver { driver: &'static str, reason: String, hint: String },
}

impl SandboxError {
    pub(crate) fn sys(call: impl Into<String>, source: nix::Error) -> Self {
        SandboxError::Sys { call: call.into(), source }
    }
    pub(crate) fn io(path: impl AsRef<Path>, source: io::Error) -> Self {
        SandboxError::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// How the root filesystem is assembled from layer directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Driver {
    /// Kernel overlayfs; `userxattr` inside a user namespace.
    KernelOverlay,
    /// fuse-overlayfs, for kernels that refuse overlay mounts in a user namespace.
    FuseOverlay,
    /// No overlay: `merged` is a full copy prepared by the builder (`rootfs::vfs`);
    /// the sandbox only bind-mounts it onto itself so it can pivot into it.
    Vfs,
}

impl Driver {
    /// The name users pass to `--storage-driver` and see in `strata info`.
    pub fn name(self) -> &'static str {
        match self {
            Driver::KernelOverlay => "overlay",
            Driver::FuseOverlay => "fuse-overlayfs",
            Driver::Vfs => "vfs",
        }
    }

    pub fn from_name(name: &str) -> Option<Driver> {
        match name {
            "overlay" | "overlay2" => Some(Driver::KernelOverlay),
            "fuse-overlayfs" | "fuse" => Some(Driver::FuseOverlay),
            "vfs" => Some(Driver::Vfs),
            _ => None,
        }
    }
}

/// Whether the driver was asked for (`--storage-driver`) or found by the probe. A
/// probed kernel overlay may fall back to fuse-overlayfs for one mount (e.g. a lower
/// dir list longer than a page); a forced one must fail instead: a user who forced it
/// is comparing drivers or working around one, and a silent switch defeats that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriverChoice {
    #[default]
    Probed,
    Forced,
}

/// The container's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// The host's network namespace (`--network host`, an explicit opt-in).
    Host,
    /// A new network namespace with only loopback.
    None,
    /// A new network namespace with outbound access through a user-mode helper and
    /// no route to the host's loopback (the default, as BuildKit and podman do).
    Private(Via),
}

impl Default for Network {
    fn default() -> Self {
        Network::Private(Via::Default)
    }
}

impl Network {
    /// Parses a `--network` value: `private` (or docker's `bridge`), `host`, `none`,
    /// a helper by name (`pasta`, `slirp4netns`), or `default`, which names the
    /// default as if no `--network` were given.
    pub fn from_name(name: &str) -> Option<Network> {
        match name {
            "default" => Some(Network::default()),
            "private" | "bridge" => Some(Network::Private(Via::Auto)),
            "host" => Some(Network::Host),
            "none" => Some(Network::None),
            "pasta" => Some(Network::Private(Via::Pasta)),
            "slirp4netns" => Some(Network::Private(Via::Slirp4netns)),
            _ => None,
        }
    }

    /// The values [`Network::from_name`] takes, for clap.
    pub const NAMES: [&'static str; 7] = ["private", "default", "bridge", "host", "none", "pasta", "slirp4netns"];
}

/// The helper that gives a private network its outbound access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Via {
    /// The implicit default (no `--network`): as `Auto`, but where neither helper is
    /// usable the host's network, with a warning ([`resolve_network`] decides).
    Default,
    /// pasta when installed, else slirp4netns (`--network private`): one must be
    /// usable, as podman requires.
    Auto,
    Pasta,
    Slirp4netns,
}

/// What the container's standard input is connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stdin {
    Null,
    Inherit,
}

/// The directories an overlay mount is made of.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OverlaySpec {
    /// Read-only layer directories, top-most first (overlay's lowerdir order).
    pub lower: Vec<PathBuf>,
    /// Receives every change made through the mount.
    pub upper: PathBuf,
    /// Overlay's scratch directory, on the same filesystem as `upper`.
    pub work: PathBuf,
    /// Where the merged tree is mounted.
    pub merged: PathBuf,
    /// The driver; a probed kernel overlay falls back to fuse-overlayfs when refused.
    pub driver: Driver,
    #[serde(default)]
    pub choice: DriverChoice,
    /// True when running as root inside a user namespace (overlay needs userxattr).
    pub userxattr: bool,
    /// `-q`: a fallback to fuse-overlayfs is not announced (it is a notice, and the
    /// helper process that mounts has no reporter of its own).
    #[serde(default)]
    pub quiet: bool,
}

/// Everything the helper needs to run one command in a container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSpec {
    pub rootfs: OverlaySpec,
    pub argv: Vec<String>,
    /// `KEY=VALUE` strings, exactly as the process will see them.
    pub env: Vec<String>,
    /// Working directory; created when missing, as runc does.
    pub cwd: String,
    /// `user[:group]` by name or id, resolved in the container's /etc/passwd and /etc/group.
    pub user: String,
    pub hostname: String,
    pub stdin: Stdin,
    /// Executable scripts placed at /dev/pipes/NAME (a RUN heredoc with a shebang),
    /// on the container's /dev tmpfs so they never enter a layer.
    #[serde(default)]
    pub pipes: Vec<(String, String)>,
    #[serde(default)]
    pub network: Network,
    /// Single-id namespace: chown calls are performed by pid 1 and unmapped owners
    /// recorded (see `chown_notify`).
    #[serde(default)]
    pub fake_chown: bool,
    /// The store's owner key, with which pid 1 seals the owners it records in
    /// single-id mode (see `crate::owner`); None with every id mapped.
    #[serde(default)]
    pub owner_key: Option<crate::owner::OwnerKey>,
    /// Host paths bound into the container (`run -v`).
    #[serde(default)]
    pub binds: Vec<BindMount>,
    /// The command gets a terminal of its own (`run -t`): standard input, output and
    /// error are the slave side of a pty whose master strata relays.
    #[serde(default)]
    pub tty: bool,
    /// The command's seccomp profile (`--security-opt seccomp=...`); Docker's default
    /// when absent.
    #[serde(default)]
    pub seccomp: seccomp::SeccompPolicy,
    /// Host ports forwarded into a private network (`run -p`).
    #[serde(default)]
    pub publish: Vec<network::PortMapping>,
    /// A RUN's `--mount`s, parents first; targets created for them are listed in
    /// the run's scratch dir (see [`created_targets`]).
    #[serde(default)]
    pub mounts: Vec<StepMount>,
    /// Namespaces and pivot_root, or a bare chroot where neither may be made.
    #[serde(default)]
    pub isolation: Isolation,
}

/// How the command is shut in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Isolation {
    /// New pid, mount, uts and ipc namespaces (and a network one unless `host`),
    /// pivot_root into the merged tree.
    #[default]
    Namespaces,
    /// Setup C (see `chroot`): chroot into the copied tree, no namespaces, no mounts.
    Chroot,
}

impl Isolation {
    /// What a process with this privilege can give its commands.
    pub fn for_privilege(privilege: &Privilege) -> Isolation {
        match privilege {
            Privilege::Chroot(_) => Isolation::Chroot,
            _ => Isolation::Namespaces,
        }
    }
}

/// One `-v SOURCE:TARGET[:ro]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// An absolute host path (file or directory).
    pub source: PathBuf,
    /// An absolute path in the container; symlinks in it resolve inside the container.
    pub target: String,
    pub read_only: bool,
}

impl BindMount {
    /// Parses docker's `-v SOURCE:TARGET[:ro|rw]` (host paths only: strata has no
    /// named volumes).
    pub fn parse(spec: &str) -> Result<BindMount, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [s, t] => (*s, *t, ""),
            [s, t, m] => (*s, *t, *m),
            _ => return Err(format!("invalid volume {spec:?}: expected SOURCE:TARGET[:ro]")),
        };
        if !source.starts_with('/') {
            return Err(format!("invalid volume {spec:?}: {source:?} is not an absolute host path (named volumes are not supported)"));
        }
        if !target.starts_with('/') {
            return Err(format!("invalid volume {spec:?}: the container path {target:?} must be absolute"));
        }
        let mut read_only = false;
        for opt in mode.split(',').filter(|o| !o.is_empty()) {
            match opt {
                "ro" => read_only = true,
                "rw" => read_only = false,
                "z" | "Z" => {} // SELinux relabelling: nothing to do without SELinux
                other => return Err(format!("invalid volume {spec:?}: unknown option {other:?}")),
            }
        }
        let source = Path::new(source);
        if !source.exists() {
            return Err(format!("invalid volume {spec:?}: {} does not exist", source.display()));
        }
        Ok(BindMount { source: source.to_path_buf(), target: target.to_string(), read_only })
    }
}

/// How the contained command ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    SetupFailed(String),
}

impl Outcome {
    /// The exit code a shell would report for this outcome.
    pub fn code(&self) -> i32 {
        match self {
            Outcome::Exited(c) => *c,
            Outcome::Signaled(s) => 128 + s,
            Outcome::SetupFailed(_) => 125,
        }
    }
}

/// Where a contained command's output goes.
pub enum Output<'a> {
    /// `strata run`: its standard streams are pipes strata relays to and from its own
    /// (a pty with `-t`; never the caller's descriptors, see `stdio`) and it gets the
    /// signals strata receives.
    Attached,
    /// A build step: its output lines are relayed live with `prefix` in front (which
    /// may be empty), and the last of them kept in `tail` if given. Signals stay the
    /// builder's: it stops the build and the helper dies with it.
    Step { prefix: &'a str, tail: Option<std::sync::Arc<OutputTail>> },
}

/// Runs `spec` in a new sandbox and returns how the command ended. The caller must
/// already be root in strata's namespace (see [`enter_user_namespace`]); `output`
/// says where the command's output goes.
pub fn run(spec: &RunSpec, scratch: &Path, output: Output) -> Result<Outcome, SandboxError> {
    let traced = timing::started();
    let spec_path = scratch.join("spec.json");
    let result_path = scratch.join("outcome.json");
    let program = seccomp::program(&spec.seccomp, spec.fake_chown).map_err(|e| SandboxError::Setup(e.to_string()))?;
    let json = serde_json::to_vec(&HelperInput { spec, seccomp_program: program.as_deref() }).expect("RunSpec serialises");
    fs::write(&spec_path, json).map_err(|e| SandboxError::io(&spec_path, e))?;
    outcome::reserve(&result_path)?;
    let exe = std::env::current_exe().map_err(|e| SandboxError::io("/proc/self/exe", e))?;
    // None of the caller's descriptors enter the container (see `stdio`): with `-i`
    // our stdin is fed through a pipe, output always comes back through pipes.
    let stdin = match spec.stdin {
        Stdin::Null => Stdio::null(),
        Stdin::Inherit => Stdio::piped(),
    };
    let mut cmd = Command::new(exe);
    cmd.arg(HELPER_COMMAND).arg(&spec_path).arg(&result_path).stdin(stdin);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let terminal = if spec.tty {
        let mut relay = tty::Relay::attach(&mut cmd, spec.stdin == Stdin::Inherit)?;
        if spec.stdin == Stdin::Inherit {
            relay.raw_input();
        }
        Some(relay)
    } else {
        None
    };
    // SAFETY: setsid and prctl are async-signal-safe. A session of its own leaves the
    // container without the caller's controlling terminal: /dev/tty cannot be opened and
    // TIOCSTI cannot type into the caller's shell. The death signal ties the helper's
    // life to ours so an interrupted build leaves no container behind.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| SandboxError::io("spawn sandbox helper", e))?;
    // A build step's helper may be stopped by a failing stage beside it.
    let _listed = matches!(output, Output::Step { .. }).then(|| running::list(child.id()));
    // The Command still holds our copies of the pty slave: the relay sees the end of
    // the container's output only once every slave descriptor is closed.
    drop(cmd);
    if let Some(pipe) = child.stdin.take() {
        stdio::feed(pipe);
    }
    let out = child.stdout.take();
    let err = child.stderr.take();
    let attached = matches!(output, Output::Attached);
    let relays: Vec<_> = match output {
        Output::Step { prefix, tail } => {
            let out = out.map(|r| relay(r, prefix.to_string(), false, tail.clone()));
            let err = err.map(|r| relay(r, prefix.to_string(), true, tail));
            out.into_iter().chain(err).collect()
        }
        Output::Attached => {
            let out = out.map(|r| stdio::relay(r, stdio::Sink::Stdout));
            let err = err.map(|r| stdio::relay(r, stdio::Sink::Stderr));
            out.into_iter().chain(err).collect()
        }
    };
    if let Some(t) = &terminal {
        t.start();
    }
    if attached {
        // `strata run`: the container decides what a Ctrl-C or SIGTERM means.
        forward::forward_to(child.id() as i32);
    }
    let status = child.wait().map_err(|e| SandboxError::io("wait for sandbox helper", e));
    timing::report(traced, scratch);
    forward::stop();
    let status = status?;
    if let Some(t) = terminal {
        t.finish();
    }
    for r in relays {
        let _ = r.join();
    }
    outcome::read(&result_path, status)
}

/// Copies lines from a child's pipe to our stdout or stderr with a prefix, keeping
/// the last ones in `tail`.
fn relay(
    pipe: impl io::Read + Send + 'static,
    prefix: String,
    to_stderr: bool,
    tail: Option<std::sync::Arc<OutputTail>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = io::BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match io::BufRead::read_until(&mut reader, b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    let mut buf = prefix.as_bytes().to_vec();
                    buf.extend_from_slice(&line);
                    if let Some(tail) = &tail {
                        tail.push(&buf);
                    }
                    let _ = if to_stderr { io::stderr().lock().write_all(&buf) } else { io::stdout().lock().write_all(&buf) };
                }
            }
        }
    })
}

/// What the helper reads: the spec and the seccomp program the builder generated
/// for it (once per policy, not once per RUN; see `seccomp::program`).
#[derive(Serialize)]
struct HelperInput<'a> {
    #[serde(flatten)]
    spec: &'a RunSpec,
    seccomp_program: Option<&'a seccomp::Program>,
}

#[derive(Deserialize)]
struct HelperSpec {
    #[serde(flatten)]
    spec: RunSpec,
    #[serde(default)]
    seccomp_program: Option<seccomp::Program>,
}

/// Entry point of the hidden `__sandbox SPEC OUTCOME` subcommand; never returns.
pub fn helper_main(spec_path: &Path, outcome_path: &Path) -> ! {
    setup::hide_from_bound_proc();
    let outcome = match fs::read(spec_path)
        .map_err(|e| SandboxError::io(spec_path, e))
        .and_then(|b| serde_json::from_slice::<HelperSpec>(&b).map_err(|e| SandboxError::Setup(format!("bad spec: {e}"))))
    {
        Ok(input) => {
            chown_notify::set_owners(&input.spec.owner_key);
            let outcome = child::contain(&input.spec, input.seccomp_program.as_ref(), spec_path.parent().unwrap_or(Path::new("/")));
            timing::save(spec_path.parent().unwrap_or(Path::new("/")));
            outcome
        }
        Err(e) => Outcome::SetupFailed(e.to_string()),
    };
    let code = match outcome::write(outcome_path, &outcome) {
        Ok(()) => outcome.code(),
        Err(e) => {
            let full = if outcome::is_disk_full(&e) { " (disk full)" } else { "" };
            eprintln!("strata: cannot write {}{full}: {e}", outcome_path.display());
            125
        }
    };
    std::process::exit(code)
}
