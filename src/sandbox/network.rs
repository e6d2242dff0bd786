//! A container's private network: its own network namespace, given outbound access
//! by a user-mode network helper (pasta from Debian's `passt`, else `slirp4netns`).
//!
//! The namespace is created inside strata's user namespace (so the container's root
//! may bind ports below 1024 in it) before the container's pid namespace; the
//! sandbox helper, still in the caller's network, starts the network helper against
//! it and the container's pid 1 joins it. Both
//! helpers get the same layout: the container is 10.0.2.100/24, the gateway
//! 10.0.2.2 leads nowhere on the host (never to its loopback), and 10.0.2.3 answers
//! DNS by forwarding to the host's resolver. The host's loopback addresses and
//! abstract unix sockets live in the host's namespace and stay out of reach; the
//! host's other addresses are reached like any outside address.
//!
//! The network helper (started and ended by the `helper` submodule) runs in the
//! foreground, tied to the sandbox helper with PR_SET_PDEATHSIG (and, for
//! slirp4netns, an exit fd), and is killed when the container ends and reaped by
//! the kernel (SIGCHLD ignored from then on), so none outlives its container, not
//! even as a zombie.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Network, Via};

mod helper;

pub use helper::{start, Running};

/// The container's address, its gateway and DNS forwarder (slirp4netns's defaults,
/// which pasta is told to use too).
pub const CONTAINER_ADDR: &str = "10.0.2.100";
pub const GATEWAY: &str = "10.0.2.2";
pub const DNS: &str = "10.0.2.3";

/// How long pid 1 waits for the helper to configure the interface.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("--network {0}: {1} is not installed (Debian package {2})")]
    Missing(&'static str, &'static str, &'static str),
    #[error("--network {0}: /dev/net/tun is not usable: {1}")]
    NoTun(&'static str, std::io::Error),
    #[error("--network {0}: {1}")]
    Unusable(&'static str, String),
    #[error("publishing ports needs a private network (pasta or slirp4netns), not --network {0}")]
    PublishWithout(&'static str),
    #[error("publishing ports needs a private network, and no private network helper is usable: {0}")]
    PublishNoHelper(String),
    #[error("invalid port mapping {spec:?}: {reason}")]
    BadPort { spec: String, reason: String },
    #[error("starting {helper}: {source}")]
    Spawn { helper: &'static str, source: std::io::Error },
    #[error("{helper} failed: {message}")]
    Failed { helper: &'static str, message: String },
}

/// TCP or UDP, for a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One `-p [IP:]HOST:CONTAINER[/PROTO]`; ports may be equal-length ranges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<IpAddr>,
    pub host: (u16, u16),
    pub container: (u16, u16),
    pub proto: Proto,
}

impl PortMapping {
    /// Parses docker's `-p` forms that name a host port: `HOST:CONTAINER`,
    /// `IP:HOST:CONTAINER`, `[IPv6]:HOST:CONTAINER`, each with an optional `/tcp` or
    /// `/udp` and `A-B` ranges of equal length.
    pub fn parse(spec: &str) -> Result<PortMapping, NetworkError> {
        let bad = |reason: &str| NetworkError::BadPort { spec: spec.to_string(), reason: reason.to_string() };
        let (ports, proto) = match spec.rsplit_once('/') {
            Some((p, "tcp")) => (p, Proto::Tcp),
            Some((p, "udp")) => (p, Proto::Udp),
            Some((_, other)) => return Err(bad(&format!("unknown protocol {other:?} (expected tcp or udp)"))),
            None => (spec, Proto::Tcp),
        };
        let (ip, rest) = match ports.strip_prefix('[') {
            Some(v6) => {
                let (ip, rest) = v6.split_once("]:").ok_or_else(|| bad("expected [IPv6]:HOST:CONTAINER"))?;
                (Some(ip), rest)
            }
            None => match ports.matches(':').count() {
                1 => (None, ports),
                2 => ports.split_once(':').map(|(i, r)| (Some(i), r)).expect("two colons"),
                0 => return Err(bad("a host port is required (HOST:CONTAINER); strata does not pick one")),
                _ => return Err(bad("expected [IP:]HOST:CONTAINER")),
            },
        };
        let host_ip = match ip {
            None | Some("") => None,
            Some(i) => Some(i.parse::<IpAddr>().map_err(|_| bad(&format!("{i:?} is not an IP address")))?),
        };
        let (host, container) = rest.split_once(':').ok_or_else(|| bad("expected HOST:CONTAINER"))?;
        if host.is_empty() {
            return Err(bad("a host port is required (HOST:CONTAINER); strata does not pick one"));
        }
        let host = port_range(host).map_err(|r| bad(&r))?;
        let container = port_range(container).map_err(|r| bad(&r))?;
        if host.1 - host.0 != container.1 - container.0 {
            return Err(bad("the host and container port ranges differ in length"));
        }
        Ok(PortMapping { host_ip, host, container, proto })
    }

    /// pasta's `-t`/`-u` spec: `[ADDR/]HOST[-END]:CONTAINER[-END]`.
    fn pasta_spec(&self) -> String {
        let range = |(a, b): (u16, u16)| if a == b { a.to_string() } else { format!("{a}-{b}") };
        let addr = self.host_ip.map(|ip| format!("{ip}/")).unwrap_or_default();
        format!("{addr}{}:{}", range(self.host), range(self.container))
    }
}

fn port_range(text: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{p:?} is not a port (1-65535)")),
    };
    let (a, b) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(text)?, port(text)?),
    };
    if a > b {
        return Err(format!("the range {text:?} runs backwards"));
    }
    Ok((a, b))
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Via::Default | Via::Auto => "private",
            Via::Pasta => "pasta",
            Via::Slirp4netns => "slirp4netns",
        })
    }
}

impl Via {
    fn program(self) -> Option<&'static str> {
        match self {
            Via::Default | Via::Auto => None,
            Via::Pasta => Some("pasta"),
            Via::Slirp4netns => Some("slirp4netns"),
        }
    }
}

/// Turns the requested network into the one a container gets: a private network
/// names the helper that will serve it. Only the implicit default may fall back to
/// the host's network (with a one-line warning per process, told to `warn`) where no
/// helper is usable; a private network asked for by name must get one, as podman's
/// does.
pub fn resolve(requested: Network, publish: &[PortMapping], warn: &dyn Fn(&str)) -> Result<Network, NetworkError> {
    let network = match requested {
        Network::Private(Via::Default) => match probe() {
            Ok(via) => Network::Private(via),
            // Publishing needs the private network the user did not get: say so
            // rather than blame a --network the user never gave.
            Err(reason) if !publish.is_empty() => return Err(NetworkError::PublishNoHelper(reason)),
            Err(reason) => {
                static WARNED: OnceLock<()> = OnceLock::new();
                WARNED.get_or_init(|| warn(&format!("{reason}; using the host's network")));
                Network::Host
            }
        },
        Network::Private(Via::Auto) => Network::Private(probe().map_err(|reason| NetworkError::Unusable("private", reason))?),
        Network::Private(via) => {
            let program = via.program().expect("a named helper");
            if find_program(program).is_none() {
                let package = if via == Via::Pasta { "passt" } else { "slirp4netns" };
                return Err(NetworkError::Missing(program, program, package));
            }
            tun_usable().map_err(|e| NetworkError::NoTun(program, e))?;
            requested
        }
        other => other,
    };
    match (network, publish.is_empty()) {
        (_, true) | (Network::Private(_), false) => Ok(network),
        (Network::Host, false) => Err(NetworkError::PublishWithout("host")),
        (Network::None, false) => Err(NetworkError::PublishWithout("none")),
    }
}

/// What a step's cache key holds of its network: the kind it resolved to, so that
/// `private`, `pasta` and `slirp4netns` (which behave alike) share results and a
/// fallback to the host's network keys as the host's. The host's is keyed as it
/// was while the host's network was the default, so those results stay usable.
pub fn cache_key(resolved: Network) -> &'static str {
    match resolved {
        Network::Host => "net=Host/None",
        Network::None => "net=none",
        Network::Private(_) => "net=private",
    }
}

/// The helper a private network uses, probed once per process; the error says
/// what is missing.
fn probe() -> Result<Via, String> {
    static FOUND: OnceLock<Result<Via, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let via = [Via::Pasta, Via::Slirp4netns]
                .into_iter()
                .find(|v| find_program(v.program().expect("named")).is_some())
                .ok_or_else(|| "neither pasta nor slirp4netns is installed (Debian package passt or slirp4netns)".to_string())?;
            tun_usable().map_err(|e| format!("/dev/net/tun is not usable ({e})"))?;
            Ok(via)
        })
        .clone()
}

fn tun_usable() -> std::io::Result<()> {
    fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").map(drop)
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        fs::metadata(p).map(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0).unwrap_or(false)
    })
}

/// The container's /etc/resolv.conf: the forwarder, with the host's search domains
/// and options (its nameservers may be loopback addresses the container cannot use).
pub fn resolv_conf(host: &str) -> String {
    let mut out = format!("nameserver {DNS}\n");
    for line in host.lines() {
        let t = line.trim_start();
        if t.starts_with("search ") || t.starts_with("domain ") || t.starts_with("options ") {
            out.push_str(t);
            out.push('\n');
        }
    }
    out
}

/// pid 1: waits until the helper has configured the interface (a default route is
/// its last step), so the command never starts without a network.
pub fn wait_configured() -> Result<(), String> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(500);
    loop {
        let routes = fs::read_to_string("/proc/self/net/route").map_err(|e| format!("reading /proc/self/net/route: {e}"))?;
        if routes.lines().skip(1).any(|l| l.split_whitespace().nth(1) == Some("00000000")) {
            return Ok(());
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(format!("the network helper did not configure the container's interface within {}s", READY_TIMEOUT.as_secs()));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

/// Makes the container's network namespace and returns it as an fd for pid 1 to
/// join. A short-lived child unshares it (the sandbox helper must stay in the
/// caller's network to start the helper) before the pid namespace exists, so the
/// network helper, started next, is never a process of the container's pid
/// namespace, where the command could see or signal it.
pub fn create_namespace() -> Result<OwnedFd, String> {
    use nix::fcntl::OFlag;
    use nix::unistd::{fork, pipe2, ForkResult};
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let (hold_r, hold_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the sandbox helper is single-threaded; the child only makes syscalls
    // and exits without returning into the caller.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop((ready_r, hold_w));
            let result = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("unshare(network namespace): {e}"))
                .and_then(|()| loopback_up().map_err(|e| format!("bringing up lo in the new network namespace: {e}")));
            let msg = match result {
                Ok(()) => {
                    // Any user may bind low ports in a container's own network (Docker >= 20.10).
                    let _ = fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
                    "n".to_string()
                }
                Err(e) => e,
            };
            let _ = fs::File::from(ready_w).write_all(msg.as_bytes());
            // Held until the parent has opened our namespace.
            let _ = fs::File::from(hold_r).read(&mut [0u8; 1]);
            // SAFETY: leave without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop((ready_w, hold_r));
            let mut msg = String::new();
            let _ = fs::File::from(ready_r).read_to_string(&mut msg);
            let ns = if msg == "n" { open_netns(child.as_raw()) } else { Err(msg) };
            drop(hold_w);
            let _ = nix::sys::wait::waitpid(child, None);
            ns
        }
    }
}

fn open_netns(pid: i32) -> Result<OwnedFd, String> {
    let path = format!("/proc/{pid}/ns/net");
    fs::File::open(&path).map(OwnedFd::from).map_err(|e| format!("{path}: {e}"))
}

/// pid 1: joins the namespace [`create_namespace`] made.
pub fn join(netns: &OwnedFd) -> Result<(), String> {
    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("joining the container's network namespace: {e}"))
}

/// Sets IFF_UP on `lo` in the current network namespace.
pub(super) fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a socket used only for the two interface ioctls, closed on return;
    // ifreq is plain data initialised from zeroes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r == 0 {
            Ok(())
        } else {
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortMapping {
        PortMapping::parse(s).unwrap()
    }

    #[test]
    fn docker_publish_forms_parse() {
        assert_eq!(p("8080:80"), PortMapping { host_ip: None, host: (8080, 8080), container: (80, 80), proto: Proto::Tcp });
        assert_eq!(p("127.0.0.1:8080:80/udp").host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(p("127.0.0.1:8080:80/udp").proto, Proto::Udp);
        assert_eq!(p("[::1]:8080:80").host_ip, Some("::1".parse().unwrap()));
        assert_eq!(p("8000-8002:80-82/tcp").container, (80, 82));
        assert_eq!(p("127.0.0.1:8080:80").pasta_spec(), "127.0.0.1/8080:80");
        assert_eq!(p("8000-8002:80-82").pasta_spec(), "8000-8002:80-82");
    }

    #[test]
    fn bad_publish_forms_say_why() {
        for (spec, why) in [
            ("80", "host port is required"),
            ("127.0.0.1::80", "host port is required"),
            ("8080:80/sctp", "unknown protocol"),
            ("8080:0", "not a port"),
            ("8000-8002:80", "differ in length"),
            ("90-80:90-80", "backwards"),
            ("nohost:8080:80", "not an IP address"),
            ("1:2:3:4", "expected [IP:]HOST:CONTAINER"),
        ] {
            let err = PortMapping::parse(spec).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(spec), "{spec}: {err}");
        }
    }

    #[test]
    fn resolv_conf_points_at_the_forwarder_and_keeps_search() {
        let out = resolv_conf("nameserver 127.0.0.53\nsearch example.org\noptions edns0\n");
        assert_eq!(out, "nameserver 10.0.2.3\nsearch example.org\noptions edns0\n");
    }

    #[test]
    fn network_names_map_like_docker_and_podman() {
        assert_eq!(Network::from_name("default"), Some(Network::Private(Via::Default)));
        assert_eq!(Network::from_name("private"), Some(Network::Private(Via::Auto)));
        assert_eq!(Network::from_name("slirp4netns"), Some(Network::Private(Via::Slirp4netns)));
        assert_eq!(Network::from_name("host"), Some(Network::Host));
        assert_eq!(Network::from_name("container:x"), None);
        assert_eq!(Network::default(), Network::Private(Via::Default));
        assert!(Network::NAMES.iter().all(|n| Network::from_name(n).is_some()));
    }

    #[test]
    fn cache_keys_hold_the_kind_of_network_not_its_helper() {
        let private = cache_key(Network::Private(Via::Pasta));
        assert_eq!(private, cache_key(Network::Private(Via::Slirp4netns)));
        assert_ne!(private, cache_key(Network::Host));
        assert_ne!(private, cache_key(Network::None));
        assert_ne!(cache_key(Network::Host), cache_key(Network::None));
        // What every step held while the host's network was the default.
        assert_eq!(cache_key(Network::Host), format!("net={:?}/{:?}", Network::Host, None::<String>));
    }

    #[test]
    fn publishing_needs_a_private_network() {
        let ports = [p("8080:80")];
        let warn = |w: &str| panic!("no fallback here: {w}");
        assert!(matches!(resolve(Network::Host, &ports, &warn), Err(NetworkError::PublishWithout("host"))));
        assert!(matches!(resolve(Network::None, &ports, &warn), Err(NetworkError::PublishWithout("none"))));
        assert_eq!(resolve(Network::None, &[], &warn).unwrap(), Network::None);
    }
}
