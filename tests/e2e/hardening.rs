//! The sandbox as a RUN or `strata run` sees it: Docker's default capabilities,
//! no_new_privs, masked and read-only /proc paths, an init that forwards signals and
//! reaps orphans, no leaked descriptors, `--network none`; and the compressions
//! other tools must read (zstd through skopeo, plain tar through umoci).

use crate::layout::Layout;
use crate::support::{path_str, run, scratch, skip_without_sandbox, strata, with_base};

#[test]
fn run_gets_docker_defaults_and_masked_proc() {
    if skip_without_sandbox("run_gets_docker_defaults_and_masked_proc") {
        return;
    }
    with_base();
    let script = "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; \
                  head -c 1 /proc/kcore | wc -c; \
                  (echo x > /proc/sys/kernel/hostname) 2>/dev/null && echo sys-writable || echo sys-readonly; \
                  ls /proc/self/fd | tr '\\n' ' '";
    let out = strata(["run", "--rm", "busybox", "sh", "-c", script]).ok();
    assert!(out.stdout.contains("CapEff:\t00000000a80425fb"), "Docker's default capability set: {}", out.stdout);
    assert!(out.stdout.contains("CapBnd:\t00000000a80425fb"), "bounding set cut too: {}", out.stdout);
    assert!(out.stdout.contains("NoNewPrivs:\t1"), "{}", out.stdout);
    assert!(out.stdout.lines().any(|l| l.trim() == "0"), "/proc/kcore reads nothing (masked): {}", out.stdout);
    assert!(out.stdout.contains("sys-readonly"), "{}", out.stdout);
    let fds = out.stdout.lines().last().unwrap_or_default().split_whitespace().count();
    assert!(fds <= 4, "only stdio (and ls's own directory fd) are open: {}", out.stdout);
    let user = strata(["run", "--rm", "--user", "1000", "busybox", "grep", "CapEff", "/proc/self/status"]).ok();
    assert!(user.stdout.contains("CapEff:\t0000000000000000"), "a non-root user has no capabilities: {}", user.stdout);
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
