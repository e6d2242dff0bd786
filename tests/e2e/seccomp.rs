//! The command's seccomp filter: Docker's default profile on every RUN and `strata
//! run`, `--security-opt seccomp=unconfined|FILE` instead, bad options refused, and
//! single-id mode's chown notifications composed with the profile.

use std::fs;
use std::path::Path;

use crate::drivers::{build_busybox_in, strata_at};
use crate::layout::Layout;
use crate::support::{path_str, scratch, single_id_env, skip_without_sandbox, strata, with_base, Run};

/// Reports the filter mode and tries a call Docker's profile denies without
/// CAP_SYS_ADMIN: `unshare(CLONE_NEWUSER)`, which needs no capability otherwise.
const PROBE: &str = "grep -E '^Seccomp' /proc/self/status; unshare -U true; echo \"unshare-exit=$?\"; \
                     mkdir /probe-dir; echo \"mkdir-exit=$?\"";

/// The probe's output lines of a build (the step's lines carry a `N/M | ` prefix).
fn step_lines(out: &Run) -> Vec<String> {
    out.stdout.lines().chain(out.stderr.lines()).filter_map(|l| l.split_once(" | ").map(|(_, rest)| rest.to_owned())).collect()
}

fn run_lines(out: &Run) -> Vec<String> {
    out.stdout.lines().chain(out.stderr.lines()).map(str::to_owned).collect()
}

/// What the probe found: (Seccomp mode, filter count, unshare exit, mkdir exit).
#[track_caller]
fn probe_result(label: &str, lines: &[String]) -> (String, u32, String, String) {
    let all = lines.join("\n");
    let field = |key: &str| lines.iter().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string());
    let mode = field("Seccomp:").unwrap_or_else(|| panic!("{label}: no Seccomp line:\n{all}"));
    let filters = field("Seccomp_filters:").and_then(|v| v.parse().ok()).unwrap_or(0);
    let unshare = field("unshare-exit=").unwrap_or_else(|| panic!("{label}: the probe did not finish:\n{all}"));
    let mkdir = field("mkdir-exit=").unwrap_or_default();
    (mode, filters, unshare, mkdir)
}

/// Runs the probe with `opts` both as `strata run` and as a RUN step.
fn probe_both(opts: &[&str]) -> [(String, Vec<String>); 2] {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["busybox", "sh", "-c", PROBE]);
    let run = strata(&args);
    assert!(run.success(), "strata run {opts:?}: {}", run.describe());

    let ctx = scratch("seccomp-build");
    fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN {PROBE}\n")).unwrap();
    let mut args = vec!["build", "--no-cache"];
    args.extend_from_slice(opts);
    let ctx = path_str(&ctx);
    args.push(&ctx);
    let build = strata(&args);
    assert!(build.success(), "strata build {opts:?}: {}", build.describe());
    [(format!("strata run {opts:?}"), run_lines(&run)), (format!("RUN {opts:?}"), step_lines(&build))]
}

#[test]
fn run_and_build_get_dockers_default_profile() {
    if skip_without_sandbox("run_and_build_get_dockers_default_profile") {
        return;
    }
    with_base();
    for (label, lines) in probe_both(&[]) {
        let (mode, filters, unshare, mkdir) = probe_result(&label, &lines);
        let all = lines.join("\n");
        assert_eq!(mode, "2", "{label}: the command runs under a seccomp filter:\n{all}");
        assert!(filters >= 1, "{label}: Seccomp_filters >= 1:\n{all}");
        assert_ne!(unshare, "0", "{label}: unshare(CLONE_NEWUSER) is denied:\n{all}");
        assert!(all.contains("Operation not permitted"), "{label}: denied with EPERM:\n{all}");
        assert_eq!(mkdir, "0", "{label}: mkdir is allowed:\n{all}");
    }
    // no-new-privileges is accepted (it is always on) and changes nothing.
    let nnp = strata([
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "grep",
        "-E",
        "^(Seccomp|NoNewPrivs):",
        "/proc/self/status",
    ])
    .ok();
    assert!(nnp.stdout.contains("Seccomp:\t2") && nnp.stdout.contains("NoNewPrivs:\t1"), "{}", nnp.stdout);
}

#[test]
fn seccomp_unconfined_turns_the_filter_off() {
    if skip_without_sandbox("seccomp_unconfined_turns_the_filter_off") {
        return;
    }
    with_base();
    for (label, lines) in probe_both(&["--security-opt", "seccomp=unconfined"]) {
        let (mode, filters, unshare, _) = probe_result(&label, &lines);
        let all = lines.join("\n");
        assert_eq!((mode.as_str(), filters), ("0", 0), "{label}: no filter:\n{all}");
        // The same call the default profile denies works: the EPERM above was the filter's.
        assert_eq!(unshare, "0", "{label}: unshare(CLONE_NEWUSER) works unconfined:\n{all}");
    }
    // A step's cached result stands in only for a run under the same profile.
    let ctx = scratch("seccomp-cache");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN grep -E '^Seccomp:' /proc/self/status > /mode\n").unwrap();
    let ctx = path_str(&ctx);
    strata(["build", "-t", "seccomp-cache", &ctx]).ok();
    strata(["build", "-t", "seccomp-cache-unconfined", "--security-opt", "seccomp=unconfined", &ctx]).ok();
    strata(["build", "-t", "seccomp-cache-again", &ctx]).ok();
    let mode = |tag: &str| strata(["run", "--rm", "--security-opt", "seccomp=unconfined", tag, "cat", "/mode"]).ok().stdout;
    assert_eq!(mode("seccomp-cache"), "Seccomp:\t2\n");
    assert_eq!(mode("seccomp-cache-unconfined"), "Seccomp:\t0\n", "the unconfined build ran its RUN, not the default one's cache");
    assert_eq!(mode("seccomp-cache-again"), "Seccomp:\t2\n", "and the default build did not take the unconfined result");
}

#[test]
fn a_custom_profile_file_is_honoured() {
    if skip_without_sandbox("a_custom_profile_file_is_honoured") {
        return;
    }
    with_base();
    let dir = scratch("seccomp-profile");
    let file = dir.join("no-mkdir.json");
    fs::write(
        &file,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", path_str(&file));
    for (label, lines) in probe_both(&["--security-opt", &opt]) {
        let (mode, _, unshare, mkdir) = probe_result(&label, &lines);
        let all = lines.join("\n");
        assert_eq!(mode, "2", "{label}:\n{all}");
        assert_ne!(mkdir, "0", "{label}: the profile denies mkdir:\n{all}");
        assert!(all.contains("can't create directory '/probe-dir': Operation not permitted"), "{label}: with EPERM:\n{all}");
        assert_eq!(unshare, "0", "{label}: this profile allows what Docker's denies:\n{all}");
    }
}

#[test]
fn bad_security_opts_and_profiles_are_refused_with_the_reason() {
    if skip_without_sandbox("bad_security_opts_and_profiles_are_refused_with_the_reason") {
        return;
    }
    with_base();
    let dir = scratch("seccomp-bad");
    let bad = dir.join("bad.json");
    fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_DENY"}]}"#).unwrap();
    let missing = dir.join("missing.json");
    let cases: [(String, &[&str]); 3] = [
        (format!("seccomp={}", path_str(&bad)), &[&path_str(&bad), "unknown action \"SCMP_ACT_DENY\" for mkdir"]),
        (format!("seccomp={}", path_str(&missing)), &[&path_str(&missing), "No such file"]),
        ("label=disable".to_string(), &["invalid --security-opt \"label=disable\""]),
    ];
    for (n, (opt, expected)) in cases.iter().enumerate() {
        // Named and without --rm: a container made before the options were checked
        // would stay in `ps -a`.
        let name = format!("seccomp-refused-{n}");
        for cmd in
            [vec!["run", "--name", &name, "--security-opt", opt, "busybox", "true"], vec!["build", "--security-opt", opt, &path_str(&dir)]]
        {
            let out = strata(&cmd);
            assert!(!out.success(), "{cmd:?} must fail: {}", out.describe());
            for e in expected.iter() {
                assert!(out.stderr.contains(e), "{cmd:?}: the error says {e:?}: {}", out.describe());
            }
        }
    }
    let left = strata(["ps", "-a"]).ok();
    assert!(!left.stdout.contains("seccomp-refused-"), "a refused run leaves no container: {}", left.stdout);
}

/// Single-id mode: the chown notifications and the profile are one filter; chown to
/// an unmapped id still reaches the layer, and the profile still denies.
#[test]
fn single_id_chown_notify_composes_with_the_profile() {
    if skip_without_sandbox("single_id_chown_notify_composes_with_the_profile") {
        return;
    }
    let single = single_id_env();
    let root = scratch("seccomp-single").join("store");
    build_busybox_in(&root, None, &single).unwrap();
    for (policy, denies) in [(None, true), (Some("seccomp=unconfined"), false)] {
        let ctx = scratch("seccomp-single-ctx");
        let script =
            "touch /owned && chown 1000:1000 /owned && grep -E '^Seccomp' /proc/self/status; unshare -U true; echo \"unshare-exit=$?\"";
        fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN {script}\n")).unwrap();
        let out = scratch("seccomp-single-out").join("layout");
        let mut args = vec!["build".to_string(), "--no-cache".into(), "--output".into(), format!("oci:{}:t", path_str(&out))];
        if let Some(p) = policy {
            args.extend(["--security-opt".to_string(), p.to_string()]);
        }
        args.push(path_str(&ctx));
        let build = strata_at(&root, None, &single, &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(build.success(), "{policy:?}: {}", build.describe());
        let lines = step_lines(&build);
        let (mode, _, unshare, _) = probe_result(&format!("single-id {policy:?}"), &lines);
        assert_eq!(mode, "2", "{policy:?}: chown is filtered in single-id mode even unconfined: {lines:?}");
        assert_eq!(unshare != "0", denies, "{policy:?}: the profile's denials hold beside the notify rules: {lines:?}");
        assert_chowned(&out);
    }
}

fn assert_chowned(out: &Path) {
    let layout = Layout::open(out);
    let manifest = layout.manifest(Some("t"));
    let top = Layout::layers(&manifest).last().cloned().expect("the RUN made a layer");
    let entries = layout.layer_entries(&top);
    let owned = entries.iter().find(|e| e.path == "owned").unwrap_or_else(|| panic!("no /owned in the layer: {entries:?}"));
    assert_eq!((owned.uid, owned.gid), (1000, 1000), "pid 1 served the chown");
}

/// Docker's default profile (the copy strata embeds, the same file as
/// ../shared/testdata/docker-default-seccomp.json) with close_range taken out of its
/// allow list, so the default action (EPERM) applies to it; with `kill`, a rule that
/// kills the process calling it besides, so a call under the filter cannot go unseen.
fn profile_without_close_range(kill: bool) -> serde_json::Value {
    let mut profile: serde_json::Value =
        serde_json::from_str(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sandbox/seccomp/docker-default.json"))).unwrap();
    let rules = profile["syscalls"].as_array_mut().unwrap();
    let mut removed = false;
    for rule in rules.iter_mut() {
        if let Some(names) = rule["names"].as_array_mut() {
            let before = names.len();
            names.retain(|n| n != "close_range");
            removed |= names.len() != before;
        }
    }
    assert!(removed, "Docker's profile allows close_range");
    if kill {
        rules.push(serde_json::json!({"names": ["close_range"], "action": "SCMP_ACT_KILL_PROCESS"}));
    }
    profile
}

#[test]
fn a_profile_denying_close_range_still_gets_a_swept_command() {
    if skip_without_sandbox("a_profile_denying_close_range_still_gets_a_swept_command") {
        return;
    }
    with_base();
    let dir = scratch("seccomp-close-range");
    for (label, kill) in [("denied", false), ("killed", true)] {
        let file = dir.join(format!("{label}.json"));
        fs::write(&file, serde_json::to_vec(&profile_without_close_range(kill)).unwrap()).unwrap();
        let opt = format!("seccomp={}", path_str(&file));
        let run = strata(["run", "--rm", "--security-opt", &opt, "busybox", "ls", "/proc/self/fd"]);
        assert!(run.success(), "{label}: the sweep runs before the filter: {}", run.describe());
        // 3 is ls's own listing of the directory; nothing of strata's is open.
        assert_eq!(run.stdout.lines().collect::<Vec<_>>(), ["0", "1", "2", "3"], "{label}: {}", run.describe());
    }
}
