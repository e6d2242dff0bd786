//! The user-mode network helper (pasta or slirp4netns) serving a container's
//! namespace: how it is started, how slirp4netns is asked to publish ports, and how
//! it ends with its container.
//!
//! Apart from the rest of `network` because this is the one part that runs a
//! program and owns a process; the rest decides which network a container gets
//! and makes its namespace.

use std::fs;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{NetworkError, PortMapping, Proto, CONTAINER_ADDR, DNS, GATEWAY};
use crate::sandbox::Via;

/// A running network helper; dropping it ends it.
pub struct Running {
    via: Via,
    child: Child,
    log: PathBuf,
    /// slirp4netns quits when this closes, even if we are killed.
    _exit_fd: Option<OwnedFd>,
}

/// Starts the helper for `via` against the network namespace `netns` (an fd the
/// helper inherits). `scratch` is the run's private (0700) directory: the helper's
/// messages go to a log there, read back if it fails, and slirp4netns's API socket
/// is made there, where no other user can pre-create or connect to it.
pub fn start(via: Via, netns: &OwnedFd, publish: &[PortMapping], scratch: &Path) -> Result<Running, NetworkError> {
    let program = via.program().expect("resolved before the sandbox starts");
    let spawn_error = |e| NetworkError::Spawn { helper: program, source: e };
    let log = &scratch.join("network.log");
    let ns_path = format!("/proc/self/fd/{}", netns.as_raw_fd());
    let stderr = fs::File::create(log).map_err(spawn_error)?;
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null()).stdout(stderr.try_clone().map_err(spawn_error)?).stderr(stderr);
    let mut keep: Vec<RawFd> = vec![netns.as_raw_fd()];
    let slirp = match via {
        Via::Pasta => {
            pasta_args(&mut cmd, publish, &ns_path);
            None
        }
        Via::Slirp4netns => Some(slirp_args(&mut cmd, &mut keep, publish, scratch, &ns_path).map_err(spawn_error)?),
        Via::Default | Via::Auto => unreachable!("resolved before the sandbox starts"),
    };
    keep_across_exec(&mut cmd, keep);
    let child = cmd.spawn().map_err(spawn_error)?;
    let Some(SlirpFds { exit: (exit_r, exit_w), api }) = slirp else {
        return Ok(Running { via, child, log: log.to_path_buf(), _exit_fd: None });
    };
    // Our copy of the read end goes; the write end stays open as long as we live.
    drop(exit_r);
    let mut running = Running { via, child, log: log.to_path_buf(), _exit_fd: Some(exit_w) };
    if let Some((ready_r, ready_w, api)) = api {
        drop(ready_w);
        let result = slirp_forward(ready_r, &api.path, publish);
        // Its directory goes with it: slirp4netns needs the socket no more.
        drop(api);
        result.map_err(|message| NetworkError::Failed { helper: program, message: running.failure().unwrap_or(message) })?;
    }
    Ok(running)
}

fn pasta_args(cmd: &mut Command, publish: &[PortMapping], ns_path: &str) {
    // -T/-U none: nothing in the container reaches the host's loopback ports;
    // --no-map-gw: nor the gateway address; -t/-u: only what -p publishes.
    cmd.args(["-f", "-q", "--config-net", "--runas", "0", "-4", "-a", CONTAINER_ADDR, "-n", "24", "-g", GATEWAY]);
    cmd.args(["--dns-forward", DNS, "--no-map-gw", "-T", "none", "-U", "none"]);
    for proto in [Proto::Tcp, Proto::Udp] {
        let specs: Vec<String> = publish.iter().filter(|p| p.proto == proto).map(PortMapping::pasta_spec).collect();
        let flag = if proto == Proto::Tcp { "-t" } else { "-u" };
        if specs.is_empty() {
            cmd.args([flag, "none"]);
        }
        for s in specs {
            cmd.args([flag, &s]);
        }
    }
    cmd.args(["--netns", ns_path]);
}

/// The descriptors slirp4netns is started with, as (read, write) pipe ends.
struct SlirpFds {
    /// slirp4netns quits when the write end closes.
    exit: (OwnedFd, OwnedFd),
    /// With ports to publish: the pipe it says it is ready on, and its API socket.
    api: Option<(OwnedFd, OwnedFd, ApiSocket)>,
}

/// Adds slirp4netns's arguments, and to `keep` the descriptors it inherits.
fn slirp_args(
    cmd: &mut Command,
    keep: &mut Vec<RawFd>,
    publish: &[PortMapping],
    scratch: &Path,
    ns_path: &str,
) -> std::io::Result<SlirpFds> {
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from);
    let (r, w) = pipe()?;
    keep.push(r.as_raw_fd());
    cmd.args(["--configure", "--mtu=65520", "--disable-host-loopback", "--netns-type=path"]);
    cmd.arg(format!("--exit-fd={}", r.as_raw_fd()));
    let mut api = None;
    if !publish.is_empty() {
        // Ports are added through its API once it is ready.
        let (ready_r, ready_w) = pipe()?;
        keep.push(ready_w.as_raw_fd());
        cmd.arg(format!("--ready-fd={}", ready_w.as_raw_fd()));
        let socket = ApiSocket::new(scratch)?;
        cmd.arg(format!("--api-socket={}", socket.path.display()));
        api = Some((ready_r, ready_w, socket));
    }
    cmd.arg(ns_path).arg("tap0");
    Ok(SlirpFds { exit: (r, w), api })
}

/// Has the helper die with the sandbox helper, and inherit `keep` across its exec.
fn keep_across_exec(cmd: &mut Command, keep: Vec<RawFd>) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            for fd in &keep {
                let flags = libc::fcntl(*fd, libc::F_GETFD);
                libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
            Ok(())
        });
    }
}

/// Where slirp4netns's API socket goes: a fresh 0700 directory of random name in the
/// run's scratch dir (whatever that dir's own mode), unless that path would not fit
/// a unix socket address (108 bytes with its NUL); then in $XDG_RUNTIME_DIR (else
/// $TMPDIR). Either way no other user can pre-create the socket or connect to it.
struct ApiSocket {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl ApiSocket {
    const NAME: &'static str = "slirp.sock";
    const MAX_PATH: usize = 107;
    /// "/net-" and tempfile's 6 random characters.
    const DIR_LEN: usize = 11;

    fn new(scratch: &Path) -> std::io::Result<ApiSocket> {
        let fits = |base: &Path| base.as_os_str().len() + Self::DIR_LEN + 1 + Self::NAME.len() <= Self::MAX_PATH;
        let base = if fits(scratch) {
            scratch.to_path_buf()
        } else {
            std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|d| d.is_dir()).unwrap_or_else(std::env::temp_dir)
        };
        if !fits(&base) {
            return Err(std::io::Error::other(format!("{}: too long for a unix socket's directory", base.display())));
        }
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        let dir = tempfile::Builder::new().prefix("net-").rand_bytes(6).permissions(perms).tempdir_in(&base)?;
        Ok(ApiSocket { path: dir.path().join(Self::NAME), _dir: dir })
    }
}

/// Waits for slirp4netns to be ready, then asks its API for each published port.
fn slirp_forward(ready: OwnedFd, api: &Path, publish: &[PortMapping]) -> Result<(), String> {
    let mut byte = [0u8; 1];
    if !matches!(fs::File::from(ready).read(&mut byte), Ok(1)) {
        return Err("it exited before the network was ready".into());
    }
    for p in publish {
        let host_addr = match p.host_ip {
            None => "0.0.0.0".to_string(),
            Some(IpAddr::V4(ip)) => ip.to_string(),
            Some(IpAddr::V6(ip)) => return Err(format!("cannot publish on the IPv6 address {ip}")),
        };
        let proto = if p.proto == Proto::Tcp { "tcp" } else { "udp" };
        for offset in 0..=(p.host.1 - p.host.0) {
            let request = serde_json::json!({"execute": "add_hostfwd", "arguments": {
                "proto": proto, "host_addr": host_addr, "host_port": p.host.0 + offset, "guest_port": p.container.0 + offset}});
            let mut stream = std::os::unix::net::UnixStream::connect(api).map_err(|e| format!("{}: {e}", api.display()))?;
            stream.write_all(request.to_string().as_bytes()).map_err(|e| format!("{}: {e}", api.display()))?;
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let mut reply = String::new();
            stream.read_to_string(&mut reply).map_err(|e| format!("{}: {e}", api.display()))?;
            let value: serde_json::Value = serde_json::from_str(&reply).unwrap_or_default();
            if let Some(err) = value.get("error") {
                let desc = err.get("desc").and_then(|d| d.as_str()).unwrap_or("refused");
                return Err(format!("publishing {host_addr}:{}: {desc}", p.host.0 + offset));
            }
        }
    }
    Ok(())
}

impl Running {
    /// If the helper already exited, why (its messages); a helper must outlive the
    /// container.
    pub fn failure(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(self.message(&format!("exited with {status}"))),
            _ => None,
        }
    }

    fn message(&self, fallback: &str) -> String {
        let mut text = String::new();
        let _ = fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.contains("to syslog")).collect();
        if lines.is_empty() {
            format!("{} {fallback}", self.via)
        } else {
            lines.join("; ")
        }
    }
}

impl Drop for Running {
    /// Kills the helper, and has the kernel reap it without waiting for it: its
    /// exit tears down the namespace's devices, which takes some 25 ms that no RUN
    /// should wait for. Dropped once pid 1 is reaped (or was never forked), so the
    /// sandbox helper has no other child whose status it still needs.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: setting a signal disposition; with SIGCHLD ignored, children
            // that exit from now on are reaped by the kernel and leave no zombie.
            unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
            let _ = self.child.kill();
        }
        let _ = fs::remove_file(&self.log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_socket_goes_to_the_scratch_dir_or_a_private_one_when_too_long() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = tempfile::tempdir().unwrap();
        let long = PathBuf::from(format!("/x/{}", "d".repeat(90)));
        for (base, inside) in [(scratch.path(), true), (long.as_path(), false)] {
            let api = ApiSocket::new(base).unwrap();
            assert_eq!(api.path.starts_with(base), inside, "{}", api.path.display());
            assert!(api.path.as_os_str().len() <= ApiSocket::MAX_PATH, "{}", api.path.display());
            let dir = api.path.parent().unwrap().to_path_buf();
            assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700, "{}", dir.display());
            drop(api);
            assert!(!dir.exists(), "{}: removed with the socket", dir.display());
        }
    }
}
