//! Container escapes other runtimes shipped, tried against strata's sandbox: a
//! read-only volume with a writable mount below it, a writable /sys/fs/cgroup, a
//! working directory reached through a leaked host descriptor (runc's
//! CVE-2024-21626), writing the runtime's binary through /proc/1/exe (runc's
//! CVE-2019-5736) and the caller's supplementary groups following the command in
//! (buildah's CVE-2022-2990).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::drivers::{build_busybox_in, strata_at};
use crate::support::{path_str, run_command, scratch, single_id_env, skip_without_sandbox, strata, strata_bin, with_base, world, Run};

/// Runs `script` with `bash -c` on the host, `$STRATA` being `strata --root <store>`.
#[track_caller]
fn host_sh(script: &str, strata: &Path) -> Run {
    // bash: dash cannot redirect descriptors above 9.
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).env("STRATA", format!("{} --root {}", path_str(strata), path_str(&world().root)));
    run_command(cmd)
}

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

/// Opens host directory `dir` as descriptors 3 to 10 in the shell that runs strata.
fn leak_fds(dir: &Path) -> String {
    (3..=10).map(|n| format!("exec {n}<\"{}\"; ", path_str(dir))).collect()
}

#[test]
fn workdir_through_a_leaked_descriptor_is_refused() {
    if skip_without_sandbox("workdir_through_a_leaked_descriptor_is_refused") {
        return;
    }
    with_base();
    let host = scratch("leaked-dir");
    fs::write(host.join("host-marker"), "outside").unwrap();
    let leak = leak_fds(&host);
    for n in 3..=10 {
        let out = host_sh(&format!("{leak}exec $STRATA run --rm -w /proc/self/fd/{n} busybox sh -c 'ls; ls ..; pwd'"), &strata_bin());
        let all = out.describe();
        assert!(!out.stdout.contains("host-marker"), "fd {n}: the command saw the host directory:\n{all}");
        assert!(!out.success(), "fd {n}: a working directory through a leaked descriptor must fail:\n{all}");
        assert!(out.stderr.contains(&format!("/proc/self/fd/{n}")), "fd {n}: the error names the working directory:\n{all}");
    }
    // stdin reaches the container only as a pipe strata feeds (`sandbox::stdio`), so
    // it is no directory at all; were it the host's, the getcwd check would refuse it.
    let out =
        host_sh(&format!("exec $STRATA run --rm -i -w /proc/self/fd/0 busybox sh -c 'ls; pwd' < \"{}\"", path_str(&host)), &strata_bin());
    let all = out.describe();
    assert!(!out.stdout.contains("host-marker") && !out.success(), "stdin as working directory must fail:\n{all}");
    assert!(out.stderr.contains("/proc/self/fd/0"), "the error names the working directory:\n{all}");

    let ctx = scratch("leaked-dir-ctx");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nWORKDIR /proc/self/fd/7\nRUN ls; ls ..; pwd\n").unwrap();
    let out = host_sh(&format!("{leak}exec $STRATA build -t e2e-leaked-workdir {}", path_str(&ctx)), &strata_bin());
    let all = out.describe();
    assert!(!out.stdout.contains("host-marker") && !out.stderr.contains("host-marker"), "the RUN saw the host directory:\n{all}");
    assert!(!out.success(), "WORKDIR through a leaked descriptor must fail the build:\n{all}");
    assert!(out.stderr.contains("/proc/self/fd/7"), "the error names the working directory:\n{all}");
}

fn sha256(path: &Path) -> String {
    let out = crate::support::run("sha256sum", [path_str(path)]).ok();
    out.stdout.split_whitespace().next().unwrap_or_default().to_owned()
}

#[test]
fn pid_1_executable_is_out_of_reach() {
    if skip_without_sandbox("pid_1_executable_is_out_of_reach") {
        return;
    }
    with_base();
    // A strata the test user owns, as after a `cargo build` in their home: without a
    // guard, container root (that user) may open it through /proc/1/exe.
    let own = scratch("own-strata").join("strata");
    fs::copy(strata_bin(), &own).unwrap();
    let before = sha256(&own);
    let probe = "for p in /proc/[0-9]*; do \
                   n=${p#/proc/}; \
                   dd if=$p/exe of=/dev/null bs=1 count=1 2>/dev/null && echo \"read $n\"; \
                   ( echo x >> $p/exe ) 2>/dev/null && echo \"wrote $n\"; \
                   readlink $p/exe >/dev/null 2>&1 && echo \"link $n\"; \
                   grep -q . $p/environ 2>/dev/null && echo \"environ $n\"; \
                 done; echo probed";
    let run = host_sh(&format!("exec $STRATA run --rm busybox sh -c '{probe}'"), &own).ok();
    let ctx = scratch("own-strata-ctx");
    fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN {probe}\n")).unwrap();
    let build = host_sh(&format!("exec $STRATA build --no-cache -t e2e-own-strata {}", path_str(&ctx)), &own).ok();
    let build_out = step_output(&build.stdout);
    for (label, out) in [("run", &run.stdout), ("RUN", &build_out)] {
        assert!(out.contains("probed"), "{label}: the probe did not run:\n{out}");
        for fact in ["read 1", "wrote 1", "link 1", "environ 1"] {
            assert!(!out.lines().any(|l| l.ends_with(fact)), "{label}: pid 1 (strata) allows `{fact}`:\n{out}");
        }
        assert!(!out.lines().any(|l| l.contains("wrote")), "{label}: an executable was written:\n{out}");
        // The command's own executable (busybox) stays readable: the guard is pid 1's.
        assert!(out.lines().any(|l| l.starts_with("read ") && l != "read 1"), "{label}: busybox's exe should be readable:\n{out}");
    }
    assert_eq!(sha256(&own), before, "the strata binary changed");
}

/// The ids of the `Groups:` line the container printed.
fn groups(out: &str) -> Vec<u32> {
    let line = out.lines().find_map(|l| Some(l.split_once("Groups:")?.1)).unwrap_or_else(|| panic!("no Groups line in:\n{out}"));
    line.split_whitespace().map(|g| g.parse().unwrap()).collect()
}

#[test]
fn only_the_images_groups_reach_the_command() {
    if skip_without_sandbox("only_the_images_groups_reach_the_command") {
        return;
    }
    with_base();
    // busybox's /etc/group: root:x:0:, nobody:x:65534:, app:x:1000:.
    let app = strata(["run", "--rm", "--user", "app", "busybox", "grep", "Groups", "/proc/self/status"]).ok();
    assert_eq!(groups(&app.stdout), [1000], "app's groups: {}", app.describe());
    let root = strata(["run", "--rm", "busybox", "grep", "Groups", "/proc/self/status"]).ok();
    assert_eq!(groups(&root.stdout), [0], "root's groups: {}", root.describe());
    let ctx = scratch("groups-ctx");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nUSER app\nRUN grep Groups /proc/self/status\n").unwrap();
    let build = strata(["build", "--no-cache", "-t", "e2e-groups", &path_str(&ctx)]).ok();
    assert_eq!(groups(&build.stdout), [1000], "a RUN as app: {}", build.describe());
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN grep Groups /proc/self/status\n").unwrap();
    let build = strata(["build", "--no-cache", "-t", "e2e-groups-root", &path_str(&ctx)]).ok();
    assert_eq!(groups(&build.stdout), [0], "a RUN as root: {}", build.describe());

    // Single-id mode: setgroups is denied in such a namespace, so the caller's
    // supplementary groups cannot be dropped; they show as the overflow gid 65534
    // and strata says so in its warning.
    let root_dir = scratch("groups-single").join("store");
    let single = single_id_env();
    build_busybox_in(&root_dir, None, &single).unwrap();
    let out = strata_at(&root_dir, None, &single, &["run", "--rm", "busybox", "grep", "Groups", "/proc/self/status"]).ok();
    let got = groups(&out.stdout);
    assert!(got.iter().all(|g| *g == 0 || *g == 65534), "single-id: only root's group and unmapped ones: {}", out.describe());
    let ctx = scratch("groups-single-ctx");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN grep Groups /proc/self/status\n").unwrap();
    let build = strata_at(&root_dir, None, &single, &["build", "-t", "e2e-groups-single", &path_str(&ctx)]).ok();
    let got = groups(&build.stdout);
    assert!(got.iter().all(|g| *g == 0 || *g == 65534), "single-id RUN: only root's group and unmapped ones: {}", build.describe());
    // SAFETY: getgroups with a null buffer only counts.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut mine = vec![0 as libc::gid_t; n.max(0) as usize];
    // SAFETY: the buffer holds `n` gids.
    unsafe { libc::getgroups(n, mine.as_mut_ptr()) };
    let extra = mine.iter().any(|g| *g != crate::support::egid());
    assert_eq!(
        out.stderr.contains("keep your supplementary groups"),
        extra,
        "the warning names kept groups when there are any: {}",
        out.describe()
    );
}
