//! Container escapes other runtimes shipped, tried against strata's sandbox: a
//! read-only volume with a writable mount below it and a writable /sys/fs/cgroup.

use std::fs;
use std::process::Command;

use crate::support::{path_str, run_command, scratch, skip_without_sandbox, strata, strata_bin, with_base, world};

/// The lines `KEY VALUE` the container printed for `key`.
fn facts<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    out.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix(' ')).collect()
}

/// A RUN's output without the "N/M | " a build puts in front of each line.
fn step_output(stdout: &str) -> String {
    stdout.lines().map(|l| format!("{}\n", l.rsplit(" | ").next().unwrap_or(l))).collect()
}

#[test]
fn read_only_volume_covers_the_mounts_below_it() {
    if skip_without_sandbox("read_only_volume_covers_the_mounts_below_it") {
        return;
    }
    with_base();
    let src = scratch("ro-volume");
    fs::create_dir(src.join("sub")).unwrap();
    // An unprivileged test gets a submount the container sees by mounting it inside
    // strata's own namespace and running a nested strata from there.
    let inner = "for d in ro rw; do \
                   ( touch /$d/top-$d && echo \"$d top written\" ) 2>&1; \
                   ( touch /$d/sub/below && echo \"$d below written\" ) 2>&1; \
                 done; \
                 awk '$5 ~ \"^/r[ow]\" {print \"mount\", $5, $6}' /proc/self/mountinfo";
    let script = format!(
        "mount -t tmpfs tmpfs \"$SRC/sub\" && exec {} --root {} run --rm -v \"$SRC:/ro:ro\" -v \"$SRC:/rw\" busybox sh -c \"$INNER\"",
        path_str(&strata_bin()),
        path_str(&world().root)
    );
    let mut cmd = Command::new(strata_bin());
    cmd.arg("--root").arg(&world().root).args(["unshare", "sh", "-c", &script]).env("SRC", &src).env("INNER", inner);
    let out = run_command(cmd).ok();
    let all = out.describe();
    assert!(out.stdout.contains("rw top written") && out.stdout.contains("rw below written"), "a rw volume stays writable:\n{all}");
    assert!(!out.stdout.contains("ro top written"), "the :ro volume itself is writable:\n{all}");
    assert!(!out.stdout.contains("ro below written"), "the mount below the :ro volume is writable:\n{all}");
    assert_eq!(out.stdout.matches("Read-only file system").count(), 2, "both writes under /ro fail with EROFS:\n{all}");
    let mounts = facts(&out.stdout, "mount");
    for point in ["/ro", "/ro/sub"] {
        let opts = mounts.iter().find_map(|m| m.strip_prefix(point)?.strip_prefix(' '));
        let opts = opts.unwrap_or_else(|| panic!("{point} is not mounted in the container:\n{all}"));
        assert!(opts.split(',').any(|o| o == "ro"), "{point} must be read-only, has {opts}:\n{all}");
    }
    assert!(src.join("top-rw").exists() && !src.join("top-ro").exists(), "only the rw volume reaches the host:\n{all}");
}

#[test]
fn sys_is_read_only_all_the_way_down() {
    if skip_without_sandbox("sys_is_read_only_all_the_way_down") {
        return;
    }
    with_base();
    let script = "awk '$5 ~ \"^/sys\" {print \"mount\", $5, $6}' /proc/self/mountinfo; \
                  for p in /sys/strata-escape /sys/fs/cgroup/strata-escape /sys/fs/cgroup/*/strata-escape; do \
                    ( mkdir $p && echo \"created $p\" ) 2>&1; \
                  done; true";
    // The host's sysfs bound (host network, also what a RUN gets) and a fresh sysfs
    // (a network of its own).
    let ctx = scratch("sys-ctx");
    fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN {script}\n")).unwrap();
    let build = strata(["build", "--no-cache", "-t", "e2e-sys", &path_str(&ctx)]).ok();
    let build_out = step_output(&build.stdout);
    let run_host = strata(["run", "--rm", "--network", "host", "busybox", "sh", "-c", script]).ok().stdout;
    let run_none = strata(["run", "--rm", "--network", "none", "busybox", "sh", "-c", script]).ok().stdout;
    let host_info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let host_cgroups = host_info.lines().filter_map(|l| l.split(' ').nth(4)).any(|p| p.starts_with("/sys/fs/cgroup"));
    for (label, out) in [("RUN", &build_out), ("run --network host", &run_host), ("run --network none", &run_none)] {
        let mounts = facts(out, "mount");
        assert!(mounts.iter().any(|m| m.starts_with("/sys ")), "{label}: /sys is not mounted:\n{out}");
        for m in &mounts {
            let (point, opts) = m.split_once(' ').unwrap();
            assert!(opts.split(',').any(|o| o == "ro"), "{label}: {point} under /sys is writable ({opts}):\n{out}");
        }
        assert!(!out.contains("created"), "{label}: a dir was created under /sys:\n{out}");
        assert!(out.contains("'/sys/strata-escape': Read-only file system"), "{label}: /sys is read-only:\n{out}");
        // The host's sysfs brings its cgroup mounts along; a fresh sysfs (a network
        // namespace of the container's own) has none.
        let cgroups = mounts.iter().any(|m| m.starts_with("/sys/fs/cgroup"));
        if label == "run --network host" {
            assert_eq!(cgroups, host_cgroups, "{label}: the host's /sys/fs/cgroup mounts are bound:\n{out}");
        }
        if cgroups {
            let refused = out.contains("'/sys/fs/cgroup/strata-escape': Read-only file system");
            assert!(refused, "{label}: /sys/fs/cgroup refuses writes as read-only:\n{out}");
        }
    }
}
