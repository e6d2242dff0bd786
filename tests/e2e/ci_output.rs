//! What a CI job sees and chains on: `-f -` reads the Dockerfile from standard input,
//! `--format docker` writes Docker's media types (in the store, an `oci:` output and
//! a registry alike, over the same cache entries as OCI), buildah's `--layers` is
//! taken, an unknown flag gets clap's error without the `-- --flag` tip,
//! `--progress=plain` times each step and ends with a summary, a failed RUN ends the
//! log with its last lines, an interrupt says where the build stopped and that
//! nothing was tagged, and `STRATA_TRACE=1` splits each step's time into phases.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::registry_server::Registry;
use crate::support::{path_str, run, run_command, scratch, skip_without_sandbox, strata, strata_bin, with_base, world, Run};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A context holding `Dockerfile` (unique to `name`: tests share one store and cache).
fn context(name: &str, dockerfile: &str) -> PathBuf {
    let ctx = scratch(name);
    fs::write(ctx.join("Dockerfile"), dockerfile.replace("UNIQUE", &format!("{name}-{}", std::process::id()))).unwrap();
    ctx
}

/// `strata --root STORE ARGS` with `input` on its standard input.
fn strata_with_stdin(args: &[&str], input: &str) -> Run {
    let root = path_str(&world().root);
    let mut child = Command::new(strata_bin())
        .arg("--root")
        .arg(&root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strata");
    let mut stdin = child.stdin.take().unwrap();
    let text = input.to_string();
    let feeder = thread::spawn(move || {
        let _ = stdin.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().expect("wait for strata");
    feeder.join().unwrap();
    Run {
        cmdline: format!("strata {} <<< {input:?}", args.join(" ")),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The one image `strata inspect NAME` shows.
fn inspect(name: &str) -> serde_json::Value {
    strata(["inspect", name]).ok().json()[0].clone()
}

#[test]
fn f_dash_reads_the_dockerfile_from_stdin() {
    if skip_without_sandbox("f_dash_reads_the_dockerfile_from_stdin") {
        return;
    }
    with_base();
    // The context's own Dockerfile would fail: the one on stdin is built.
    let ctx = context("ci-stdin", "FROM busybox\nRUN exit 7\n");
    fs::write(ctx.join("payload"), "from the context\n").unwrap();
    let stdin = "FROM busybox\nCOPY payload /payload\nRUN cat /payload > /seen\nLABEL from=stdin\n";
    strata_with_stdin(&["build", "-f", "-", "-t", "ci-stdin", &path_str(&ctx)], stdin).ok();
    assert_eq!(inspect("ci-stdin")["config"]["Labels"]["from"], "stdin");
    let ran = strata(["run", "--rm", "ci-stdin", "cat", "/seen"]).ok();
    assert_eq!(ran.stdout, "from the context\n", "COPY read the positional context: {}", ran.describe());

    // An error names the line of standard input.
    let bad = strata_with_stdin(&["build", "-f", "-", &path_str(&ctx)], "FROM busybox\nFROBNICATE now\n");
    assert_eq!(bad.code, Some(1), "{}", bad.describe());
    assert!(bad.stderr.contains("<stdin>:2"), "{}", bad.describe());
}

#[test]
fn format_docker_writes_docker_media_types_over_shared_cache() {
    if skip_without_sandbox("format_docker_writes_docker_media_types_over_shared_cache") {
        return;
    }
    with_base();
    let ctx = context("ci-format", "FROM busybox\nRUN echo UNIQUE > /u\n");
    let ctx = path_str(&ctx);
    strata(["build", "-t", "ci-format-oci", &ctx]).ok();
    // The same steps: every one a cache hit, only the manifest differs.
    let docker = strata(["build", "--format", "docker", "-t", "ci-format-docker", &ctx]).ok();
    assert!(docker.stderr.contains("--> CACHED"), "{}", docker.describe());
    let (oci_img, docker_img) = (inspect("ci-format-oci"), inspect("ci-format-docker"));
    assert_eq!(docker_img["Manifest"]["mediaType"], DOCKER_MANIFEST, "{docker_img:#}");
    assert_eq!(oci_img["Manifest"]["mediaType"], OCI_MANIFEST, "the OCI build is not served the docker manifest: {oci_img:#}");
    assert_eq!(oci_img["Id"], docker_img["Id"], "one config blob, one image id");

    // Pushed, each keeps its manifest byte for byte; skopeo reads Docker's types.
    let dir = scratch("ci-format-registry");
    let registry = Registry::start(&dir, None);
    let raw = |tag: &str| {
        let reference = format!("docker://{}/ci/format:{tag}", registry.addr);
        run("skopeo", ["inspect", "--raw", "--tls-verify=false", &reference]).ok().json()
    };
    for (image, tag) in [("ci-format-docker", "docker"), ("ci-format-oci", "oci")] {
        let pushed = strata(["push", image, &format!("{}/ci/format:{tag}", registry.addr)]).ok();
        assert_eq!(pushed.stdout.trim(), inspect(image)["Digest"], "{}", pushed.describe());
    }
    let m = raw("docker");
    assert_eq!(m["mediaType"], DOCKER_MANIFEST, "{m:#}");
    assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG, "{m:#}");
    let layers = m["layers"].as_array().expect("layers");
    assert!(!layers.is_empty() && layers.iter().all(|l| l["mediaType"] == DOCKER_GZIP), "{m:#}");
    let o = raw("oci");
    assert_eq!(o["mediaType"], OCI_MANIFEST, "{o:#}");
    assert_eq!(o["config"]["digest"], m["config"]["digest"]);
    let digests = |v: &serde_json::Value| v["layers"].as_array().unwrap().iter().map(|l| l["digest"].clone()).collect::<Vec<_>>();
    assert_eq!(digests(&o), digests(&m), "the same layer blobs");
    let skopeo = run("skopeo", ["inspect", "--tls-verify=false", &format!("docker://{}/ci/format:docker", registry.addr)]).ok().json();
    assert_eq!(skopeo["Digest"], docker_img["Digest"], "{skopeo:#}");

    // BUILDAH_FORMAT chooses it too, for a build that pushes.
    let root = path_str(&world().root);
    let dest = format!("docker://{}/ci/format:env", registry.addr);
    run_with_env(&["--root", &root, "build", "--output", &dest, &ctx], &[("BUILDAH_FORMAT", "docker")]).ok();
    assert_eq!(raw("env"), m, "the same docker manifest");

    // What Docker's format cannot say, or an OCI layout cannot hold, is refused.
    let refused = [
        (vec!["--compression", "zstd"], "zstd"),
        (vec!["--annotation", "a=b"], "--annotation needs --format oci"),
        (vec!["--output", "oci:/nonexistent/layout"], "use --format oci"),
    ];
    for (flags, why) in refused {
        let mut args = vec!["build", "--format", "docker"];
        args.extend(flags);
        args.push(&ctx);
        let bad = strata(&args);
        assert_eq!(bad.code, Some(1), "{}", bad.describe());
        assert!(bad.stderr.contains(why), "{}", bad.describe());
    }
}

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(strata_bin());
    cmd.args(args).envs(env.iter().copied());
    crate::support::run_command(cmd)
}

#[test]
fn buildah_layers_flag_is_taken() {
    if skip_without_sandbox("buildah_layers_flag_is_taken") {
        return;
    }
    with_base();
    let ctx = context("ci-layers", "FROM busybox\nRUN echo UNIQUE > /u\n");
    let ctx = path_str(&ctx);
    let first = strata(["build", "--layers", "-t", "ci-layers", &ctx]).ok();
    assert!(!first.stderr.contains("CACHED"), "{}", first.describe());
    let cached = strata(["build", "--layers=true", &ctx]).ok();
    assert!(cached.stderr.contains("--> CACHED"), "--layers keeps the cache: {}", cached.describe());
    let rerun = strata(["build", "--layers=false", &ctx]).ok();
    assert!(!rerun.stderr.contains("CACHED"), "--layers=false runs every step: {}", rerun.describe());
    let bad = strata(["build", "--layers=maybe", &ctx]);
    assert_eq!(bad.code, Some(2), "{}", bad.describe());
}

#[test]
fn an_unknown_flag_gets_no_dash_dash_tip() {
    let ctx = path_str(&scratch("ci-flag"));
    for args in [vec!["build", "--zzzzqqq", ctx.as_str()], vec!["build", "-Z"], vec!["run", "--zzzzqqq", "busybox"]] {
        let bad = strata(&args);
        assert_eq!(bad.code, Some(2), "{}", bad.describe());
        assert!(bad.stderr.contains("error: unexpected argument"), "{}", bad.describe());
        assert!(bad.stderr.contains(&format!("Usage: strata {}", args[0])), "clap's usage line stays: {}", bad.describe());
        assert!(!bad.stderr.contains("-- -") && !bad.stderr.contains("as a value"), "{}", bad.describe());
    }
}

/// The last non-empty line of `text`.
fn last_line(text: &str) -> &str {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
}

#[test]
fn plain_progress_times_every_step_and_ends_with_a_summary() {
    if skip_without_sandbox("plain_progress_times_every_step_and_ends_with_a_summary") {
        return;
    }
    with_base();
    let ctx = context("ci-plain", "FROM busybox\nRUN echo UNIQUE > /u\nLABEL ci=plain\n");
    let build = |tag: &str| strata(["build", "--progress=plain", "-t", tag, &path_str(&ctx)]).ok();
    let first = build("ci-plain");
    let lines: Vec<&str> = first.stderr.lines().collect();
    for step in ["STEP 1/3: FROM busybox", "STEP 2/3: RUN echo", "STEP 3/3: LABEL ci=plain"] {
        let at = lines.iter().position(|l| l.starts_with(step)).unwrap_or_else(|| panic!("no {step}: {}", first.describe()));
        let next_step = lines[at + 1..].iter().position(|l| l.starts_with("STEP ")).map_or(lines.len(), |p| at + 1 + p);
        let done = lines[at + 1..next_step].iter().find(|l| l.starts_with("--> done in "));
        let secs = done.and_then(|l| l.strip_prefix("--> done in ")?.strip_suffix('s')?.parse::<f64>().ok());
        assert!(secs.is_some(), "{step} has no duration: {}", first.describe());
    }
    let digest = inspect("ci-plain")["Digest"].as_str().unwrap().to_string();
    let summary = last_line(&first.stderr);
    assert!(summary.starts_with("BUILD DONE: 3 steps (3 run, 0 cached) in "), "{}", first.describe());
    assert!(summary.ends_with(&format!("; digest {digest}")), "the digest inspect reports: {}", first.describe());

    let second = build("ci-plain-again");
    let summary = last_line(&second.stderr);
    assert!(summary.starts_with("BUILD DONE: 3 steps (1 run, 2 cached) in "), "{}", second.describe());
    assert_eq!(second.stderr.matches("--> done in ").count(), 1, "cached steps say CACHED: {}", second.describe());
    // auto (the default) stays as it was: no durations, no summary.
    let auto = strata(["build", &path_str(&ctx)]).ok();
    assert!(!auto.stderr.contains("done in") && !auto.stderr.contains("BUILD DONE"), "{}", auto.describe());
}

/// `strata build ARGS` with `STRATA_TRACE` set to `trace`, or removed.
fn build_traced(args: &[&str], trace: Option<&str>) -> Run {
    let mut cmd = Command::new(strata_bin());
    cmd.arg("--root").arg(world().root.as_os_str()).arg("build").args(args);
    match trace {
        Some(v) => cmd.env("STRATA_TRACE", v),
        None => cmd.env_remove("STRATA_TRACE"),
    };
    run_command(cmd)
}

/// The phases of a `TRACE` line with their seconds: `wall 1.20s | tar 0.10 ...`.
fn trace_phases(line: &str) -> Vec<(String, f64)> {
    let (_, rest) = line.split_once(": wall ").unwrap_or_else(|| panic!("no wall time: {line}"));
    let words: Vec<&str> = rest.split(' ').filter(|w| !w.starts_with('(') && !w.ends_with(')') && *w != "|").collect();
    words[1..].chunks(2).map(|p| (p[0].to_string(), p[1].parse::<f64>().unwrap_or_else(|_| panic!("{line}")))).collect()
}

#[test]
fn strata_trace_splits_each_step_into_phases() {
    if skip_without_sandbox("strata_trace_splits_each_step_into_phases") {
        return;
    }
    with_base();
    let ctx = context("ci-trace", "FROM busybox\nRUN echo UNIQUE > /u && sleep 0.3\nCOPY payload /payload\n");
    fs::write(ctx.join("payload"), format!("payload {}\n", std::process::id()).repeat(50_000)).unwrap();
    let traced = build_traced(&["-t", "ci-trace", &path_str(&ctx)], Some("1")).ok();
    let line = |step: &str| {
        let prefix = format!("TRACE {step}");
        let found = traced.stderr.lines().find(|l| l.starts_with(&prefix));
        trace_phases(found.unwrap_or_else(|| panic!("no {prefix} line: {}", traced.describe())))
    };
    // Only phases that took time are named (their seconds may round to 0.00).
    let has = |phases: &[(String, f64)], name: &str| phases.iter().any(|(p, _)| p == name);
    let from = line("STEP 1/3: FROM busybox");
    assert!(from.iter().all(|(p, _)| p != "command"), "{}", traced.describe());
    let run = line("STEP 2/3: RUN echo");
    // The command's own time, told apart from the sandbox's start by the helper.
    let command = run.iter().find(|(p, _)| p == "command").map(|(_, s)| *s).unwrap_or(0.0);
    assert!(command >= 0.3, "the RUN's sleep is command time: {run:?}\n{}", traced.describe());
    let copy = line("STEP 3/3: COPY payload /payload");
    for (phases, names) in [
        (&run, &["sandbox", "walk", "tar", "compress", "hash", "fsync", "rename"][..]),
        (&copy, &["key", "copy", "tar", "compress", "hash", "fsync"][..]),
    ] {
        for name in names {
            assert!(has(phases, name), "{name} in {phases:?}: {}", traced.describe());
        }
    }
    assert!(!has(&copy, "command") && !has(&copy, "sandbox"), "{copy:?}");
    let total =
        traced.stderr.lines().find(|l| l.starts_with("TRACE build total: wall ")).unwrap_or_else(|| panic!("{}", traced.describe()));
    let total = trace_phases(total);
    assert!(has(&total, "command") && has(&total, "copy") && has(&total, "compress"), "{total:?}");

    // Off by default, and with 0.
    for trace in [None, Some("0")] {
        let plain = build_traced(&["--no-cache", "-t", "ci-trace", &path_str(&ctx)], trace).ok();
        assert!(!plain.stderr.contains("TRACE"), "{trace:?}: {}", plain.describe());
    }
}

#[test]
fn a_failed_run_ends_the_log_with_its_last_lines() {
    if skip_without_sandbox("a_failed_run_ends_the_log_with_its_last_lines") {
        return;
    }
    with_base();
    // One stream: two relays may interleave their lines in either order.
    let script = "echo UNIQUE >&2; i=1; while [ $i -le 30 ]; do echo err-$i >&2; i=$((i+1)); done; exit 3";
    let ctx = context("ci-fail", &format!("FROM busybox\nRUN {script}\n"));
    let failed = strata(["build", "--progress=plain", "-t", "ci-fail", &path_str(&ctx)]);
    assert_eq!(failed.code, Some(1), "{}", failed.describe());
    let (error, tail) =
        failed.stderr.split_once("--- the last 20 lines of its output ---").unwrap_or_else(|| panic!("{}", failed.describe()));
    assert!(
        error.contains("strata: error: step 2/2 (Dockerfile:2)") && error.contains("failed with exit status 3"),
        "{}",
        failed.describe()
    );
    let tail: Vec<&str> = tail.lines().filter(|l| !l.is_empty()).collect();
    let expected: Vec<String> = (11..=30).map(|i| format!("2/2 | err-{i}")).collect();
    assert_eq!(tail, expected, "the last 20 lines, as the log showed them: {}", failed.describe());
    assert_eq!(last_line(&failed.stderr), "2/2 | err-30", "the failure closes the log: {}", failed.describe());
    // Without plain progress the error is as before: the lines were shown live.
    let auto = strata(["build", &path_str(&ctx)]);
    assert_eq!(auto.code, Some(1));
    assert!(!auto.stderr.contains("--- the last"), "{}", auto.describe());
}

/// stderr collected line by line while the process runs.
struct Watched {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Watched {
    fn start(args: &[&str], cmd_setup: impl FnOnce(&mut Command)) -> Watched {
        let root = path_str(&world().root);
        let mut cmd = Command::new(strata_bin());
        cmd.arg("--root").arg(&root).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd_setup(&mut cmd);
        let mut child = cmd.spawn().expect("start strata");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Watched { child, stderr }
    }

    fn wait_for(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.stderr.lock().unwrap().contains(text) {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Exit code and stderr, the process killed past `limit`.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(50));
        };
        thread::sleep(Duration::from_millis(200));
        let text = self.stderr.lock().unwrap().clone();
        (status.and_then(|s| s.code()), text)
    }
}

/// Interrupts a build during its `RUN sleep 30`: by `kill -INT` of strata's pid (a CI
/// runner's cancel), or as a terminal's Ctrl-C does, to the whole process group.
fn interrupt_during_run(name: &str, progress: &str, whole_group: bool, signal: libc::c_int, expected_code: i32, signal_name: &str) {
    let ctx = context(name, "FROM busybox\nRUN echo UNIQUE >&2 && sleep 30\n");
    let watched = Watched::start(&["build", progress, "-t", name, &path_str(&ctx)], |cmd| {
        std::os::unix::process::CommandExt::process_group(cmd, 0);
    });
    // The RUN's own line: it is running.
    let started = watched.wait_for(&format!("{name}-{}\n", std::process::id()), Duration::from_secs(120));
    let pid = watched.child.id() as i32;
    let before = Instant::now();
    // SAFETY: kill(2) with plain integers, on the process (group) this test started.
    unsafe { libc::kill(if whole_group { -pid } else { pid }, signal) };
    let (code, stderr) = watched.finish(Duration::from_secs(25));
    assert!(started, "the RUN never started: {stderr}");
    assert!(before.elapsed() < Duration::from_secs(20), "the RUN was stopped, not waited for: {stderr}");
    assert_eq!(code, Some(expected_code), "{stderr}");
    let message = format!(
        "strata: interrupted by {signal_name}: stopped at step 2/2 (Dockerfile:2): RUN echo {name}-{} >&2 && sleep 30; nothing was tagged",
        std::process::id()
    );
    assert_eq!(stderr.matches(&message).count(), 1, "said once: {stderr}");
    assert_eq!(last_line(&stderr), message, "{stderr}");
    let tag = strata(["inspect", name]);
    assert_eq!(tag.code, Some(1), "nothing was tagged: {}", tag.describe());
}

#[test]
fn an_interrupt_says_where_the_build_stopped_and_tags_nothing() {
    if skip_without_sandbox("an_interrupt_says_where_the_build_stopped_and_tags_nothing") {
        return;
    }
    with_base();
    interrupt_during_run("ci-sigint", "--progress=plain", false, libc::SIGINT, 130, "SIGINT");
    interrupt_during_run("ci-ctrl-c", "--progress=plain", true, libc::SIGINT, 130, "SIGINT");
    interrupt_during_run("ci-sigterm", "--progress=auto", false, libc::SIGTERM, 143, "SIGTERM");
    // -q prints no progress, but an interrupt is reported as an error is.
    interrupt_during_run("ci-quiet", "-q", false, libc::SIGINT, 130, "SIGINT");
}
