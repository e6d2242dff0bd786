//! Shared helpers of the end-to-end tests: where the strata binary and the fixtures are,
//! one throw-away store per test binary with the busybox base built once, running
//! commands with a time limit, and skipping (or failing, under
//! `STRATA_REQUIRE_SANDBOX=1`) when the machine cannot sandbox.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The strata binary under test: `$STRATA_BIN`, else the one cargo built beside the tests.
pub fn strata_bin() -> PathBuf {
    match std::env::var_os("STRATA_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_strata")),
    }
}

static FAULT_INJECTION: OnceLock<Result<(), String>> = OnceLock::new();

/// Panics unless the strata binary under test was built with the `fault-injection`
/// feature, whose test hooks (`STRATA_TEST_*`, src/fault.rs) the calling test needs:
/// without it a hook is silently ignored and the test would check the wrong thing.
/// Checked once, by using a hook and observing its effect: such a build run with
/// `STRATA_TEST_ABORT_AT=start` is SIGKILLed first thing; any other prints its version.
#[track_caller]
pub fn require_fault_injection() {
    let checked = FAULT_INJECTION.get_or_init(|| {
        let bin = strata_bin();
        let out = Command::new(&bin)
            .arg("--version")
            .env("STRATA_TEST_ABORT_AT", "start")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        match std::os::unix::process::ExitStatusExt::signal(&out.status) {
            Some(libc::SIGKILL) => Ok(()),
            _ if out.status.success() => Err(format!(
                "{} was built without the fault-injection feature, and this test needs its hooks (STRATA_TEST_*): \
                 build it with `cargo build --features fault-injection`, or run `cargo test --features fault-injection` \
                 (scripts/test.sh does)",
                bin.display()
            )),
            _ => Err(format!(
                "checking {} for the fault-injection feature: `STRATA_TEST_ABORT_AT=start strata --version` ended with {}: {}{}",
                bin.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    });
    if let Err(e) = checked {
        panic!("{e}");
    }
}

/// The environment of single-id mode on a host with subuid ranges (the hook
/// `STRATA_TEST_IGNORE_SUBIDS=1`); panics unless the binary has the hooks.
#[track_caller]
pub fn single_id_env() -> [(&'static str, &'static str); 1] {
    require_fault_injection();
    [("STRATA_TEST_IGNORE_SUBIDS", "1")]
}

/// The environment that SIGKILLs strata at a crash point (the hook
/// `STRATA_TEST_ABORT_AT`: `run`, `commit` or `index`); panics unless the binary has
/// the hooks.
#[track_caller]
pub fn abort_at_env(point: &str) -> [(&'static str, &str); 1] {
    require_fault_injection();
    [("STRATA_TEST_ABORT_AT", point)]
}

/// The fixtures directory: `$STRATA_FIXTURES`, else the repository's `fixtures/`.
pub fn fixtures() -> PathBuf {
    match std::env::var_os("STRATA_FIXTURES") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures")),
    }
}

/// A path inside the fixtures directory, as a string for command lines.
pub fn fixture(rel: &str) -> String {
    path_str(&fixtures().join(rel))
}

pub fn path_str(path: &Path) -> String {
    path.to_str().expect("test paths are UTF-8").to_owned()
}

/// Whether a missing capability must fail the test instead of skipping it.
pub fn sandbox_required() -> bool {
    std::env::var("STRATA_REQUIRE_SANDBOX").is_ok_and(|v| v == "1")
}

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

pub fn egid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// Why strata cannot sandbox RUN steps here, if it cannot.
fn sandbox_missing() -> Option<String> {
    if euid() == 0 {
        return None; // real root: strata uses no user namespace
    }
    let read = |path: &str| fs::read_to_string(path).ok().map(|s| s.trim().to_owned());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user namespaces are disabled (user.max_user_namespaces = 0)".into());
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some("unprivileged user namespaces are disabled".into());
    }
    let has_newuidmap = ["/usr/bin/newuidmap", "/bin/newuidmap", "/usr/local/bin/newuidmap"].iter().any(|p| Path::new(p).exists());
    if !has_newuidmap {
        return Some("newuidmap is not installed (Debian package uidmap)".into());
    }
    None
}

/// True when the calling test must return early because the machine cannot sandbox;
/// panics instead when `STRATA_REQUIRE_SANDBOX=1`.
pub fn skip_without_sandbox(test: &str) -> bool {
    match sandbox_missing() {
        None => false,
        Some(reason) if sandbox_required() => {
            panic!("{test}: STRATA_REQUIRE_SANDBOX=1 but {reason}")
        }
        Some(reason) => {
            eprintln!("skipped {test}: {reason}");
            true
        }
    }
}

/// The result of one command.
pub struct Run {
    pub cmdline: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics, showing everything the command printed, unless it exited 0.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(self.success(), "command failed: {}", self.describe());
        self
    }

    pub fn describe(&self) -> String {
        format!("`{}` exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.cmdline, self.code, self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("output is not JSON ({e}): {}", self.describe()))
    }
}

fn timeout() -> Duration {
    let secs = std::env::var("STRATA_E2E_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    Duration::from_secs(secs)
}

/// Runs a program with no stdin, capturing its output; kills it after the time limit.
#[track_caller]
pub fn run<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: impl IntoIterator<Item = S>) -> Run {
    let mut cmd = Command::new(program.as_ref());
    cmd.args(args);
    run_command(cmd)
}

/// Runs `cmd` with no stdin, capturing its output; kills it after the time limit.
#[track_caller]
pub fn run_command(mut cmd: Command) -> Run {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let envs: Vec<String> = cmd
        .get_envs()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.map(|v| v.to_string_lossy().into_owned()).unwrap_or_default()))
        .collect();
    let cmdline = envs
        .into_iter()
        .chain(std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{cmdline}` timed out after {:?}", timeout());
        }
        thread::sleep(Duration::from_millis(20));
    };
    Run { cmdline, code: status.code(), stdout: out.join().expect("stdout reader"), stderr: err.join().expect("stderr reader") }
}

/// The throw-away world of this test binary: a work dir and a store inside it.
pub struct World {
    pub work: PathBuf,
    pub root: PathBuf,
}

static WORLD: OnceLock<World> = OnceLock::new();
static BASE: OnceLock<Result<(), String>> = OnceLock::new();
static SCRATCH: AtomicUsize = AtomicUsize::new(0);

/// The shared store (created on first use, removed when the process exits unless
/// `STRATA_E2E_KEEP=1`). Tests sharing it use unique tags.
pub fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let work = std::env::temp_dir().join(format!("strata-e2e-{}", std::process::id()));
        if work.exists() {
            remove_tree(&work, &work.join("store"));
        }
        fs::create_dir_all(work.join("scratch")).expect("create the e2e work dir");
        let world = World { root: work.join("store"), work };
        if std::env::var("STRATA_E2E_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("keeping the e2e work dir {}", world.work.display());
        } else {
            // SAFETY: registering a plain extern "C" fn; it runs once at process exit.
            unsafe { libc::atexit(cleanup_at_exit) };
        }
        world
    })
}

extern "C" fn cleanup_at_exit() {
    if let Some(world) = WORLD.get() {
        remove_tree(&world.work, &world.root);
    }
}

/// Best-effort removal of a directory that may hold files owned by subordinate ids:
/// first inside strata's user namespace, then plainly.
fn remove_tree(dir: &Path, store: &Path) {
    let _ = Command::new(strata_bin())
        .arg("--root")
        .arg(store)
        .args(["unshare", "rm", "-rf"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = fs::remove_dir_all(dir);
}

/// A fresh, empty directory for one test's outputs.
pub fn scratch(name: &str) -> PathBuf {
    let n = SCRATCH.fetch_add(1, Ordering::SeqCst);
    let dir = world().work.join("scratch").join(format!("{name}-{n}"));
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Runs `strata --root <shared store> ARGS...`.
#[track_caller]
pub fn strata<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Run {
    let root = path_str(&world().root);
    let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    run(strata_bin(), ["--root", root.as_str()].into_iter().chain(args.iter().map(String::as_str)))
}

/// Stages fixtures/busybox plus the host's static busybox, like scripts/busybox-base.sh.
pub fn stage_busybox_context(dest: &Path) -> Result<(), String> {
    let src = fixtures().join("busybox");
    let entries = fs::read_dir(&src).map_err(|e| format!("read {}: {e}", src.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        if name == "busybox" || !entry.file_type().map_err(|e| e.to_string())?.is_file() {
            continue; // a stale staged copy, or not part of the recipe
        }
        fs::copy(entry.path(), dest.join(&name)).map_err(|e| format!("copy {name:?}: {e}"))?;
    }
    let busybox = std::env::var("STRATA_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".into());
    fs::copy(&busybox, dest.join("busybox")).map_err(|e| format!("copy {busybox} (install busybox-static): {e}"))?;
    Ok(())
}

/// The shared store with `busybox:latest` built in it (once per test binary).
#[track_caller]
pub fn with_base() -> &'static World {
    let world = world();
    let built = BASE.get_or_init(|| {
        let ctx = scratch("busybox-context");
        stage_busybox_context(&ctx)?;
        let run = strata(["build", "-t", "busybox:latest", &path_str(&ctx)]);
        if run.success() {
            Ok(())
        } else {
            Err(format!("building the busybox base failed: {}", run.describe()))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    world
}

static HELLO: OnceLock<Result<(), String>> = OnceLock::new();

/// The tag of fixtures/hello built once into the shared store.
#[track_caller]
pub fn hello_image() -> &'static str {
    const TAG: &str = "e2e-hello";
    with_base();
    let built = HELLO.get_or_init(|| {
        let run = strata(["build", "-t", TAG, &fixture("hello")]);
        if run.success() {
            Ok(())
        } else {
            Err(format!("building fixtures/hello failed: {}", run.describe()))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    TAG
}

/// The OCI image config printed by `strata inspect`, tolerating podman's array form.
#[track_caller]
pub fn inspect_config(image: &str) -> serde_json::Value {
    let value = strata(["inspect", image]).ok().json();
    let value = match value {
        serde_json::Value::Array(mut items) if items.len() == 1 => items.remove(0),
        other => other,
    };
    value
        .get("config")
        .or_else(|| value.get("Config"))
        .cloned()
        .unwrap_or_else(|| panic!("no config in `strata inspect {image}`: {value:#}"))
}

/// The string items of a JSON array (e.g. Env, Cmd); empty when absent.
pub fn strings(value: &serde_json::Value) -> Vec<String> {
    value.as_array().map(|items| items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}
