//! The sandbox as a RUN or `strata run` sees it: Docker's default capabilities,
//! no_new_privs, masked and read-only /proc paths, its own ipc and uts namespaces, an init that forwards signals and
//! reaps orphans, no leaked descriptors, `--network none`; and the compressions
//! other tools must read (zstd through skopeo, plain tar through umoci).

use crate::layout::Layout;
use crate::support::{path_str, run, scratch, skip_without_sandbox, strata, with_base};

/// Docker's masked paths: files are covered by /dev/null, dirs by an empty tmpfs.
const MASKED: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READ_ONLY: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// One line of shell that reports what the hardening checks need, one fact a line:
/// the capability lines, `/proc/PID/fd/N` for each of the shell's own descriptors, `exists P` for
/// each masked or read-only path this kernel has, `size P N` of world-readable masked
/// files, `mount POINT OPTIONS` for each mount, and `ns KIND LINK` for ipc and uts.
fn report_script() -> String {
    let paths = MASKED.iter().chain(READ_ONLY.iter()).copied().collect::<Vec<_>>().join(" ");
    [
        "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status".to_string(),
        // A separate process (no pipeline: the shell holds a pipe's ends while it
        // forks, and busybox runs ls inside the shell) lists the shell's descriptors.
        "find /proc/$$/fd -mindepth 1".to_string(),
        format!("for p in {paths}; do [ -e $p ] && echo \"exists $p\"; done"),
        "for p in /proc/interrupts /proc/timer_list /proc/keys; do [ -e $p ] && echo \"size $p $(cat $p | wc -c)\"; done".to_string(),
        "awk '{print \"mount\", $5, $6}' /proc/self/mountinfo".to_string(),
        "echo \"ns ipc $(readlink /proc/self/ns/ipc)\"".to_string(),
        "echo \"ns uts $(readlink /proc/self/ns/uts)\"".to_string(),
        "true".to_string(),
    ]
    .join("; ")
}

/// Checks the report of `report_script` (`lines`, already stripped of any prefix).
#[track_caller]
fn check_report(label: &str, lines: &[String]) {
    let all = lines.join("\n");
    assert!(lines.iter().any(|l| l == "CapEff:\t00000000a80425fb"), "{label}: Docker's default capability set:\n{all}");
    assert!(lines.iter().any(|l| l == "CapBnd:\t00000000a80425fb"), "{label}: bounding set cut too:\n{all}");
    assert!(lines.iter().any(|l| l == "NoNewPrivs:\t1"), "{label}: no_new_privs:\n{all}");
    let fds: Vec<&str> =
        lines.iter().filter(|l| l.starts_with("/proc/") && l.contains("/fd/")).filter_map(|l| l.rsplit('/').next()).collect();
    assert_eq!(fds, ["0", "1", "2"], "{label}: only stdin, stdout and stderr are open in the command:\n{all}");

    let mounts: Vec<(&str, &str)> = lines.iter().filter_map(|l| l.strip_prefix("mount ")?.split_once(' ')).collect();
    assert!(mounts.iter().any(|(p, _)| *p == "/"), "{label}: no mountinfo lines:\n{all}");
    let existing: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("exists ")).collect();
    assert!(existing.contains(&"/proc/interrupts") && existing.contains(&"/proc/sys"), "{label}: every kernel has these:\n{all}");
    for path in existing.iter().filter(|p| MASKED.contains(p) || READ_ONLY.contains(p)) {
        let opts = mounts.iter().rev().find(|(p, _)| p == path).map(|(_, o)| *o);
        let opts = opts.unwrap_or_else(|| panic!("{label}: {path} exists but nothing is mounted on it (not masked):\n{all}"));
        if READ_ONLY.contains(path) {
            assert!(opts.split(',').any(|o| o == "ro"), "{label}: {path} must be mounted read-only, has {opts}:\n{all}");
        }
    }
    let sizes: Vec<(&str, &str)> = lines.iter().filter_map(|l| l.strip_prefix("size ")?.split_once(' ')).collect();
    assert!(sizes.iter().any(|(p, _)| *p == "/proc/interrupts"), "{label}: /proc/interrupts was not read:\n{all}");
    for (path, size) in &sizes {
        assert_eq!(size.trim(), "0", "{label}: the masked {path} must read as empty:\n{all}");
    }

    for kind in ["ipc", "uts"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{kind}")).expect("read the host's namespace link");
        let host = host.to_string_lossy();
        let inside = lines.iter().find_map(|l| l.strip_prefix(&format!("ns {kind} "))).unwrap_or_default();
        assert!(inside.starts_with(&format!("{kind}:[")), "{label}: no {kind} namespace link:\n{all}");
        assert_ne!(inside, host, "{label}: the command shares the host's {kind} namespace");
    }
}

#[test]
fn run_gets_docker_defaults_and_masked_proc() {
    if skip_without_sandbox("run_gets_docker_defaults_and_masked_proc") {
        return;
    }
    with_base();
    let out = strata(["run", "--rm", "busybox", "sh", "-c", &report_script()]).ok();
    let lines: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
    check_report("strata run", &lines);
    let user = strata(["run", "--rm", "--user", "1000", "busybox", "grep", "CapEff", "/proc/self/status"]).ok();
    assert!(user.stdout.contains("CapEff:\t0000000000000000"), "a non-root user has no capabilities: {}", user.stdout);
}

#[test]
fn build_run_steps_get_the_same_hardening() {
    if skip_without_sandbox("build_run_steps_get_the_same_hardening") {
        return;
    }
    with_base();
    let ctx = scratch("hardening-run");
    std::fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN {}\n", report_script())).unwrap();
    let out = strata(["build", "--no-cache", &path_str(&ctx)]);
    assert!(out.success(), "{}", out.describe());
    // The step's output is relayed with a `N/M | ` prefix, on stdout or stderr.
    let lines: Vec<String> =
        out.stdout.lines().chain(out.stderr.lines()).filter_map(|l| l.split_once(" | ").map(|(_, rest)| rest.to_owned())).collect();
    check_report("RUN", &lines);
}

#[test]
fn init_forwards_signals_and_reaps_orphans() {
    if skip_without_sandbox("init_forwards_signals_and_reaps_orphans") {
        return;
    }
    with_base();
    let forwarded = strata(["run", "--rm", "busybox", "sh", "-c", "trap 'echo got-term; exit 7' TERM; kill -TERM 1; sleep 5 & wait"]);
    assert_eq!(forwarded.code, Some(7), "SIGTERM to pid 1 reaches the command: {}", forwarded.describe());
    assert!(forwarded.stdout.contains("got-term"));
    let reaped = strata(["run", "--rm", "busybox", "sh", "-c", "(sleep 0.2 &) ; sleep 1; ps -o stat,comm | grep -c '^Z' || true"]).ok();
    assert_eq!(reaped.stdout.trim(), "0", "no zombies left: {}", reaped.stdout);
    assert_eq!(strata(["run", "--rm", "busybox", "sh", "-c", "echo $$"]).ok().stdout.trim(), "2", "the command is pid 2 under an init");
}

#[test]
fn network_none_has_only_loopback() {
    if skip_without_sandbox("network_none_has_only_loopback") {
        return;
    }
    with_base();
    let out = strata([
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net 2>/dev/null; cat /proc/net/dev | tail -n +3 | cut -d: -f1",
    ])
    .ok();
    let ifaces: Vec<&str> = out.stdout.split_whitespace().collect();
    assert!(ifaces.contains(&"lo"), "loopback is there: {}", out.stdout);
    assert!(ifaces.iter().all(|i| *i == "lo"), "only lo: {}", out.stdout);
    let ctx = scratch("network-none");
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN --network=none ping -c 1 -W 1 127.0.0.1\n").unwrap();
    strata(["build", "-q", &path_str(&ctx)]).ok();
}

#[test]
fn zstd_layers_pass_skopeo_and_plain_layers_pass_umoci() {
    if skip_without_sandbox("zstd_layers_pass_skopeo_and_plain_layers_pass_umoci") {
        return;
    }
    with_base();
    let ctx = scratch("compression");
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo zstd-or-not > /marker\n").unwrap();
    let zarchive = scratch("compression-out").join("z.tar");
    strata([
        "build",
        "-q",
        "--compression",
        "zstd",
        "--compression-level",
        "9",
        "--output",
        &format!("oci-archive:{}", path_str(&zarchive)),
        &path_str(&ctx),
    ])
    .ok();
    let raw = run("skopeo", ["inspect", "--raw", &format!("oci-archive:{}", path_str(&zarchive))]).ok().json();
    let last = raw["layers"].as_array().and_then(|l| l.last()).cloned().expect("layers");
    assert_eq!(last["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");
    run("skopeo", ["inspect", &format!("oci-archive:{}", path_str(&zarchive))]).ok();

    let plain = scratch("compression-plain").join("layout");
    strata(["build", "-q", "--compression", "none", "--output", &format!("oci:{}:p", path_str(&plain)), &path_str(&ctx)]).ok();
    let layout = Layout::open(&plain);
    let manifest = layout.manifest(Some("p"));
    let top = Layout::layers(&manifest).last().cloned().expect("layers");
    assert_eq!(top["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    let bundle = scratch("compression-bundle").join("b");
    run("umoci", ["unpack", "--rootless", "--image", &format!("{}:p", path_str(&plain)), &path_str(&bundle)]).ok();
    assert_eq!(std::fs::read_to_string(bundle.join("rootfs/marker")).unwrap(), "zstd-or-not\n");
}

/// `kill -INT <strata pid>` (what a CI runner's cancel sends) stops a build in a RUN
/// step at once: non-zero exit, nothing tagged, no container left running, and the
/// store's scratch space is cleaned up by the next build, which works.
#[test]
fn sigint_to_strata_stops_a_build_cleanly() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    if skip_without_sandbox("sigint_to_strata_stops_a_build_cleanly") {
        return;
    }
    let dir = scratch("sigint");
    let root = dir.join("store");
    crate::drivers::build_busybox_in(&root, None, &[]).unwrap_or_else(|e| panic!("{e}"));
    let ctx = dir.join("context");
    std::fs::create_dir_all(&ctx).unwrap();
    // A sleep nobody else runs, so its process can be looked for afterwards.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:latest\nRUN echo step-started && exec sleep 61\n").unwrap();
    let mut cmd = Command::new(crate::support::strata_bin());
    cmd.env_remove("STRATA_STORAGE_DRIVER").arg("--root").arg(&root).args(["build", "-t", "interrupted:latest"]).arg(&ctx);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Whatever started the test may have SIGINT ignored (a `cmd &` of a shell), and an
    // ignored signal is inherited: give strata the disposition a terminal user's has.
    // SAFETY: signal(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start strata build");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.ends_with("| step-started")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the RUN step never started:\n{}\n{}", seen.join("\n"), err.join().unwrap_or_default());
            }
        }
    }
    // SAFETY: kill(2) on the pid of a child we have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for strata") {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("strata was still running 10 s after SIGINT:\n{}", seen.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = err.join().unwrap_or_default();
    assert_eq!(status.code(), Some(130), "strata ends as a process killed by SIGINT does (128 + 2): {status:?}\n{stderr}");

    // The container went with it.
    std::thread::sleep(Duration::from_millis(500));
    let sleepers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| c == b"sleep\x0061\x00")
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .collect();
    assert!(sleepers.is_empty(), "the RUN step's process outlived the build: {sleepers:?}");
    let images = crate::drivers::strata_at(&root, None, &[], &["images"]).ok();
    assert!(!images.stdout.contains("interrupted"), "an interrupted build tags nothing: {}", images.describe());

    // The next build works, and its open removed the interrupted step's scratch dir.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:latest\nRUN echo again > /again\n").unwrap();
    crate::drivers::strata_at(&root, None, &[], &["build", "-t", "interrupted:latest", &path_str(&ctx)]).ok();
    let leftovers: Vec<_> = std::fs::read_dir(root.join("tmp")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.is_empty(), "scratch dirs left in the store's tmp/: {leftovers:?}");
    let out = crate::drivers::strata_at(&root, None, &[], &["run", "--rm", "interrupted:latest", "cat", "/again"]).ok();
    assert_eq!(out.stdout, "again\n");
}
