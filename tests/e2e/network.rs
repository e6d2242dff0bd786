//! The container's network: private by default (pasta or slirp4netns), with no way
//! to the host's loopback (its own 127.0.0.1 or the gateway) or its abstract unix
//! sockets; `--network host` as the opt-in; outbound traffic, DNS and `run -p`
//! through the helper; no helper process left once a build ends or a `strata run`
//! is killed; a fallback to the host only for the implicit default; cache keys on
//! the kind of network a step got.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{path_str, run, scratch, skip_without_sandbox, strata, strata_bin, with_base};

/// A TCP listener that records the first line of every connection it receives.
struct Recorder {
    port: u16,
    seen: Arc<Mutex<BTreeSet<String>>>,
}

impl Recorder {
    fn on(ip: IpAddr) -> Recorder {
        let listener = TcpListener::bind((ip, 0)).expect("bind a test listener");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let record = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                thread::spawn(move || {
                    let mut stream = stream;
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = Vec::new();
                    let _ = stream.read_to_end(&mut buf);
                    record.lock().unwrap().insert(String::from_utf8_lossy(&buf).trim().to_string());
                });
            }
        });
        Recorder { port, seen }
    }

    /// What arrived, after giving late connections a moment.
    fn seen(&self) -> BTreeSet<String> {
        thread::sleep(Duration::from_millis(300));
        self.seen.lock().unwrap().clone()
    }
}

/// A shell line that sends `token` to ip:port and never fails the command.
fn send(token: &str, ip: &str, port: u16) -> String {
    format!("echo {token} | nc -w 3 {ip} {port}; echo sent-{token}=$?")
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn default_network_cannot_reach_the_hosts_loopback_but_host_network_can() {
    if skip_without_sandbox("default_network_cannot_reach_the_hosts_loopback_but_host_network_can") {
        return;
    }
    with_base();
    let rec = Recorder::on("127.0.0.1".parse().unwrap());
    let name = format!("strata-e2e-net-{}", std::process::id());
    let _abstract = UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).expect("abstract socket");
    // Abstract unix sockets belong to a network namespace: the container's
    // /proc/net/unix lists exactly the ones it could connect to. The container's
    // own 127.0.0.1 is not the host's (unless pasta's -T forwards it), and its
    // gateway and DNS addresses lead to the host's loopback unless pasta gets
    // --no-map-gw and slirp4netns --disable-host-loopback.
    let probe = |token: &str| {
        let sends: Vec<String> = [("lo", "127.0.0.1"), ("gw", "10.0.2.2"), ("dns", "10.0.2.3")]
            .iter()
            .map(|(via, ip)| send(&format!("{token}-{via}"), ip, rec.port))
            .collect();
        format!("{}; grep -q @{name} /proc/net/unix && echo abstract=visible || echo abstract=hidden", sends.join("; "))
    };
    for (network, token) in [("private", "run-default"), ("pasta", "run-pasta"), ("slirp4netns", "run-slirp"), ("host", "run-host")] {
        let out = strata(["run", "--rm", "--network", network, "busybox", "sh", "-c", &probe(token)]).ok();
        let expect = if network == "host" { "abstract=visible" } else { "abstract=hidden" };
        assert!(out.stdout.contains(expect), "--network {network}: {}", out.stdout);
    }
    let default_run = strata(["run", "--rm", "busybox", "sh", "-c", &probe("run-unflagged")]).ok();
    assert!(default_run.stdout.contains("abstract=hidden"), "{}", default_run.stdout);

    let ctx = scratch("network-loopback");
    let dockerfile = format!(
        "FROM busybox\nRUN {}; {}\nRUN --network=host {}\nRUN --network=default {}\n",
        send("build-default-lo", "127.0.0.1", rec.port),
        send("build-default-gw", "10.0.2.2", rec.port),
        send("build-host-lo", "127.0.0.1", rec.port),
        send("build-flag-default-gw", "10.0.2.2", rec.port),
    );
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    strata(["build", "-q", &path_str(&ctx)]).ok();
    assert_eq!(rec.seen(), set(&["build-host-lo", "run-host-lo"]), "only --network host reaches the host's 127.0.0.1");
}

/// The machine's first global IPv4 address (not loopback), if it has one.
fn primary_ipv4() -> Option<IpAddr> {
    let out = run("ip", ["-4", "-o", "addr", "show", "scope", "global"]);
    out.stdout.lines().find_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
}

#[test]
fn default_network_reaches_the_outside_and_resolves_through_its_forwarder() {
    if skip_without_sandbox("default_network_reaches_the_outside_and_resolves_through_its_forwarder") {
        return;
    }
    with_base();
    let out = strata(["run", "--rm", "busybox", "cat", "/etc/resolv.conf"]).ok();
    assert_eq!(out.stdout.lines().next(), Some("nameserver 10.0.2.3"), "the helper's DNS forwarder: {}", out.stdout);
    // The host's non-loopback addresses stand in for the outside: the container
    // reaches them through the helper, as it would any other host.
    let Some(ip) = primary_ipv4() else {
        eprintln!("skipped the outbound part: this machine has no global IPv4 address");
        return;
    };
    let rec = Recorder::on(ip);
    let ip = ip.to_string();
    for (network, token) in [("private", "out-default"), ("pasta", "out-pasta"), ("slirp4netns", "out-slirp")] {
        strata(["run", "--rm", "--network", network, "busybox", "sh", "-c", &send(token, &ip, rec.port)]).ok();
    }
    let ctx = scratch("network-outbound");
    std::fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN {}\n", send("out-build", &ip, rec.port))).unwrap();
    strata(["build", "-q", &path_str(&ctx)]).ok();
    assert_eq!(rec.seen(), set(&["out-build", "out-default", "out-pasta", "out-slirp"]));
    // A name the host can resolve resolves inside too (skipped offline).
    if std::net::ToSocketAddrs::to_socket_addrs(&("deb.debian.org", 80)).is_ok() {
        for network in ["private", "slirp4netns"] {
            let out = strata(["run", "--rm", "--network", network, "busybox", "nslookup", "deb.debian.org"]);
            assert!(out.success() && out.stdout.contains("Address"), "--network {network}: {}", out.describe());
        }
    } else {
        eprintln!("skipped the DNS lookup: the host itself cannot resolve deb.debian.org");
    }
}

/// The pids of pasta and slirp4netns processes below `pid`.
fn network_helpers_below(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(after) = stat.rsplit_once(") ") else { continue };
        let ppid = after.1.split_whitespace().nth(1).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        parents.push((p, ppid, comm.trim().to_string()));
    }
    let mut below = vec![pid];
    let mut i = 0;
    while i < below.len() {
        let cur = below[i];
        below.extend(parents.iter().filter(|(_, pp, _)| *pp == cur).map(|(p, _, _)| *p));
        i += 1;
    }
    parents
        .iter()
        .filter(|(p, _, c)| below.contains(p) && (c.starts_with("pasta") || c.starts_with("passt") || c == "slirp4netns"))
        .map(|(p, _, _)| *p)
        .collect()
}

fn still_helpers(pids: &[u32]) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|p| {
                let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                let zombie = std::fs::read_to_string(format!("/proc/{p}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true);
                !zombie && (comm.starts_with("pas") || comm.starts_with("slirp4netns"))
            })
            .collect();
        if alive.is_empty() || Instant::now() > deadline {
            return alive;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_strata(root: &Path, args: &[&str]) -> Child {
    Command::new(strata_bin())
        .env("TMPDIR", "/nonexistent/strata-e2e-shared-tmp")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strata")
}

/// Waits until some helper runs below `child` (the container is up).
fn wait_for_helpers(child: &mut Child, what: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let helpers = network_helpers_below(child.id());
        if !helpers.is_empty() {
            return helpers;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("{what} ended ({status}) before a network helper was seen: {err}");
        }
        assert!(Instant::now() < deadline, "{what}: no network helper appeared");
        thread::sleep(Duration::from_millis(50));
    }
}

/// `strata run -p` of busybox httpd on port 80 answers on 127.0.0.1; killing that
/// `strata run` takes its network helper with it. $TMPDIR is unusable: nothing of
/// the network (slirp4netns's API socket) may live in a directory other users share.
fn serve_published_then_kill(root: &Path, network: &str) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Port 80 in the container: below 1024, refused in the host's network namespace.
    let script = format!("mkdir -p /www && echo hello-{network} > /www/index.html && exec httpd -f -p 80 -h /www");
    let publish = format!("127.0.0.1:{port}:80");
    let mut child = spawn_strata(root, &["run", "--rm", "--network", network, "-p", &publish, "busybox", "sh", "-c", &script]);
    let helpers = wait_for_helpers(&mut child, "strata run -p");
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let answer = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        });
        match answer {
            Ok(text) if text.contains(&format!("hello-{network}")) => break text,
            _ if Instant::now() > deadline => panic!("--network {network}: no answer on 127.0.0.1:{port}: {answer:?}"),
            _ => thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(body.lines().next().is_some_and(|l| l.starts_with("HTTP/1.") && l.contains(" 200 ")), "{body}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = child.wait();
    assert_eq!(still_helpers(&helpers), Vec::<u32>::new(), "--network {network}: helpers left after strata run was killed");
}

#[test]
fn published_low_port_answers_on_the_host_and_no_helper_outlives_its_container() {
    if skip_without_sandbox("published_low_port_answers_on_the_host_and_no_helper_outlives_its_container") {
        return;
    }
    let world = with_base();
    serve_published_then_kill(&world.root, "private");
    serve_published_then_kill(&world.root, "slirp4netns");

    // And a build's helpers end with their RUN steps.
    let ctx = scratch("network-teardown");
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN sleep 2; echo one\nRUN echo two\n").unwrap();
    let mut build = spawn_strata(&world.root, &["build", "-q", "--no-cache", &path_str(&ctx)]);
    let helpers = wait_for_helpers(&mut build, "strata build");
    let status = build.wait().unwrap();
    assert!(status.success(), "build failed");
    assert_eq!(still_helpers(&helpers), Vec::<u32>::new(), "network helpers left after the build");
}

#[test]
fn bad_publish_specs_and_publishing_without_a_private_network_are_refused() {
    if skip_without_sandbox("bad_publish_specs_and_publishing_without_a_private_network_are_refused") {
        return;
    }
    with_base();
    let out = strata(["run", "--rm", "-p", "80", "busybox", "true"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("invalid port mapping \"80\""), "{}", out.stderr);
    let out = strata(["run", "--rm", "--network", "host", "-p", "8080:80", "busybox", "true"]);
    assert!(!out.success() && out.stderr.contains("publishing ports needs a private network"), "{}", out.describe());
}

#[test]
fn without_a_helper_the_default_falls_back_to_the_host_with_a_warning() {
    if skip_without_sandbox("without_a_helper_the_default_falls_back_to_the_host_with_a_warning") {
        return;
    }
    let world = with_base();
    // A PATH with what strata needs besides the network helpers.
    let bin = scratch("network-no-helpers");
    for tool in ["newuidmap", "newgidmap", "fuse-overlayfs"] {
        if let Some(found) = ["/usr/bin", "/bin", "/usr/sbin"].iter().map(|d| Path::new(d).join(tool)).find(|p| p.exists()) {
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
    }
    let strata_without = |args: &[&str]| {
        let mut cmd = Command::new(strata_bin());
        cmd.env("PATH", &bin).arg("--root").arg(&world.root).args(args);
        crate::support::run_command(cmd)
    };
    let name = format!("strata-e2e-fallback-{}", std::process::id());
    let _abstract = UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).expect("abstract socket");
    let probe = format!("grep -q @{name} /proc/net/unix && echo abstract=visible || echo abstract=hidden");
    let out = strata_without(&["run", "--rm", "busybox", "sh", "-c", &probe]).ok();
    assert!(out.stdout.contains("abstract=visible"), "the host's network: {}", out.describe());
    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.contains("warning: neither pasta nor slirp4netns is installed")).collect();
    assert_eq!(warnings.len(), 1, "one warning line: {}", out.stderr);
    let out = strata_without(&["run", "--rm", "--network", "pasta", "busybox", "true"]);
    assert!(!out.success() && out.stderr.contains("pasta is not installed (Debian package passt)"), "{}", out.describe());

    // Only the implicit default falls back: a private network asked for by name
    // fails, naming what is missing, and so does publishing a port without one.
    let missing = "neither pasta nor slirp4netns is installed (Debian package passt or slirp4netns)";
    for args in
        [&["run", "--rm", "--network", "private", "busybox", "true"][..], &["run", "--rm", "--network", "bridge", "busybox", "true"]]
    {
        let out = strata_without(args);
        assert_eq!(out.code, Some(1), "{}", out.describe());
        assert!(out.stderr.contains(&format!("--network private: {missing}")), "{}", out.describe());
    }
    let out = strata_without(&["run", "--rm", "-p", "8080:80", "busybox", "true"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("no private network helper is usable") && !out.stderr.contains("not --network host"), "{}", out.describe());
    let ctx = scratch("network-no-helpers-build");
    std::fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN {probe}\n")).unwrap();
    let out = strata_without(&["build", "--network", "private", &path_str(&ctx)]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains(&format!("--network private: {missing}")), "{}", out.describe());
    let out = strata_without(&["build", "--no-cache", &path_str(&ctx)]).ok();
    assert!(out.stderr.contains("abstract=visible") || out.stdout.contains("abstract=visible"), "RUN falls back: {}", out.describe());
}

/// The build steps of `strata build` output that were answered from the cache.
fn cached_runs(out: &crate::support::Run) -> usize {
    let mut last_run = false;
    let mut hits = 0;
    for line in out.stderr.lines() {
        if line.contains("STEP ") {
            last_run = line.contains(": RUN ");
        } else if line.trim_end().ends_with("--> CACHED") && last_run {
            hits += 1;
        }
    }
    hits
}

#[test]
fn cache_keys_follow_the_network_a_step_gets_not_its_name() {
    if skip_without_sandbox("cache_keys_follow_the_network_a_step_gets_not_its_name") {
        return;
    }
    with_base();
    let ctx = scratch("network-cache-key");
    std::fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN echo {} > /made\n", std::process::id())).unwrap();
    let build = |network: &str| strata(["build", "--network", network, &path_str(&ctx)]).ok();
    assert_eq!(cached_runs(&build("private")), 0, "a fresh step");
    for (network, hits) in [("pasta", 1), ("slirp4netns", 1), ("default", 1), ("host", 0), ("none", 0)] {
        let out = build(network);
        assert_eq!(cached_runs(&out), hits, "--network {network} after --network private: {}", out.stderr);
    }
}
