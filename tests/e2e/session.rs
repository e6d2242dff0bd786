//! The container's session, terminal and standard streams: a RUN or `strata run` must
//! not type into the caller's terminal (TIOCSTI), reopen the caller's output files
//! through /proc/self/fd, or learn host paths from its pid 1; `run -t` follows the
//! caller's terminal size.
//!
//! The terminal tests give strata a real pty as its controlling terminal, as a shell
//! would, and a static probe compiled here with `cc -static` attacks it from inside.
//! What a shell on that terminal would read next is the pty's pending input: it must
//! stay empty.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::pty::{openpty, Winsize};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

use crate::support::{path_str, scratch, skip_without_sandbox, strata, strata_bin, with_base, world};

/// The probe: `tty` tries /dev/tty, /dev/console and TIOCSTI on every descriptor it
/// has; `fds` tries to read, then truncate, what its stdout and stderr lead to.
const PROBE_C: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

static void inject(const char *what, int fd) {
    const char *keys = "echo INJECTED-BY-CONTAINER\n";
    for (const char *p = keys; *p; p++) {
        if (ioctl(fd, TIOCSTI, p) != 0) {
            printf("tiocsti %s: %s\n", what, strerror(errno));
            return;
        }
    }
    printf("tiocsti %s: ok\n", what);
}

static void ctty(const char *pid) {
    char path[64], buf[1024];
    int tty_nr = -1;
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[got] = 0;
    char *end = strrchr(buf, ')');
    if (end) sscanf(end + 2, "%*c %*d %*d %*d %d", &tty_nr);
    printf("ctty of %s: %s\n", pid, tty_nr < 0 ? "unknown" : tty_nr ? "a terminal" : "none");
    if (f) fclose(f);
}

static void tty(void) {
    ctty("self");
    ctty("1");
    for (int fd = 0; fd < 3; fd++) printf("fd%d: %s\n", fd, isatty(fd) ? "a terminal" : "no terminal");
    int t = open("/dev/tty", O_RDWR);
    printf("open /dev/tty: %s\n", t < 0 ? strerror(errno) : "ok");
    if (t >= 0) inject("/dev/tty", t);
    struct stat st;
    printf("/dev/console: %s\n", stat("/dev/console", &st) == 0 ? "present" : strerror(errno));
    const char *names[] = {"fd0", "fd1", "fd2"};
    for (int fd = 0; fd < 3; fd++) inject(names[fd], fd);
}

static void fds(void) {
    char report[512] = "";
    for (int n = 1; n <= 2; n++) {
        char path[32], buf[4096], line[128];
        snprintf(path, sizeof path, "/proc/self/fd/%d", n);
        int fd = open(path, O_RDONLY | O_NONBLOCK);
        ssize_t got = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
        buf[got > 0 ? got : 0] = 0;
        snprintf(line, sizeof line, "read fd%d: %s\n", n, strstr(buf, "PRIOR") ? "LEAKED" : "clean");
        strcat(report, line);
        if (fd >= 0) close(fd);
        fd = open(path, O_WRONLY | O_TRUNC);
        snprintf(line, sizeof line, "truncate fd%d: %s\n", n, fd < 0 ? strerror(errno) : "opened");
        strcat(report, line);
        if (fd >= 0) close(fd);
    }
    fputs(report, stdout);
    fputs("probe stderr\n", stderr);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "tty") == 0) tty();
    else if (argc > 1 && strcmp(argv[1], "fds") == 0) fds();
    else return 2;
    return 0;
}
"#;

/// A build context with the static probe at `probe` and `dockerfile`; None when the
/// test must skip (no C compiler and no STRATA_REQUIRE_SANDBOX).
fn probe_context(name: &str, dockerfile: &str) -> Option<PathBuf> {
    let ctx = scratch(name);
    fs::write(ctx.join("probe.c"), PROBE_C).unwrap();
    let compiled = Command::new("cc").args(["-static", "-O2", "-o"]).arg(ctx.join("probe")).arg(ctx.join("probe.c")).output();
    match compiled {
        Ok(out) if out.status.success() => {}
        other => {
            let why = format!("cc -static failed (install gcc and libc6-dev): {other:?}");
            assert!(!crate::support::sandbox_required(), "{name}: STRATA_REQUIRE_SANDBOX=1 but {why}");
            eprintln!("skipped {name}: {why}");
            return None;
        }
    }
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    Some(ctx)
}

/// The probe image's tag and the probe binary in its build context.
struct Probe {
    image: &'static str,
    binary: PathBuf,
}

static PROBE: OnceLock<Option<Probe>> = OnceLock::new();

/// An image with the probe at /probe (built off any terminal, without a RUN).
fn probe() -> Option<&'static Probe> {
    PROBE
        .get_or_init(|| {
            with_base();
            let ctx = probe_context("session-probe", "FROM busybox\nCOPY probe /probe\n")?;
            strata(["build", "-t", "session-probe", &path_str(&ctx)]).ok();
            Some(Probe { image: "session-probe", binary: ctx.join("probe") })
        })
        .as_ref()
}

/// A pty standing for the caller's terminal: strata gets its slave as controlling
/// terminal and standard streams; the test reads what was written to it (the master)
/// and what a shell would read from it next (the slave's pending input).
struct Terminal {
    master: File,
    slave: OwnedFd,
}

impl Terminal {
    fn new(rows: u16, cols: u16) -> Terminal {
        let size = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = openpty(Some(&size), None).expect("openpty");
        // Raw: every byte pushed into the input is readable at once, echoed nowhere.
        let mut modes = tcgetattr(&pty.slave).expect("tcgetattr");
        cfmakeraw(&mut modes);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &modes).expect("tcsetattr");
        Terminal { master: File::from(pty.master), slave: pty.slave }
    }

    /// Starts `strata --root STORE ARGS` as the leader of a new session whose
    /// controlling terminal is this pty, like a login shell's job.
    fn spawn(&self, args: &[&str]) -> Session {
        let mut cmd = Command::new(strata_bin());
        cmd.arg("--root").arg(&world().root).args(args);
        let fd = |_| Stdio::from(self.slave.try_clone().expect("dup the pty slave"));
        cmd.stdin(fd(0)).stdout(fd(1)).stderr(fd(2));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let cmdline = args.join(" ");
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start strata {cmdline}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = drain(self.master.try_clone().expect("dup the pty master"), output.clone(), stop.clone());
        Session { cmdline, child, output, stop, reader: Some(reader) }
    }

    /// Bytes waiting in the terminal's input: what the caller's shell would run next.
    fn pending_input(&self) -> Vec<u8> {
        let fd = self.slave.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own; strata, which shared it, has exited.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
        let mut file = File::from(self.slave.try_clone().unwrap());
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
        }
        pending
    }

    fn resize(&self, rows: u16, cols: u16) {
        let size = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads a plain struct we own.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }
}

/// Copies what arrives on the master into `output` until told to stop and idle.
fn drain(mut master: File, output: Arc<Mutex<Vec<u8>>>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let mut fds = [libc::pollfd { fd: master.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            // SAFETY: poll on one descriptor we own, with a timeout.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) };
            if ready > 0 {
                match master.read(&mut buf) {
                    Ok(n) if n > 0 => output.lock().unwrap().extend_from_slice(&buf[..n]),
                    _ => break,
                }
            } else if stop.load(Ordering::SeqCst) {
                break;
            }
        }
    })
}

/// strata running on a [`Terminal`].
struct Session {
    cmdline: String,
    child: std::process::Child,
    output: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Session {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).replace('\r', "")
    }

    /// Waits until the terminal showed `text`; false after `secs` seconds.
    fn wait_for(&self, text: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.text().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Waits for strata to exit (killing it after 300 s); its exit code and output.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (status.code(), format!("`strata {}` on a terminal exited {:?}:\n{}", self.cmdline, status.code(), self.text()))
    }
}

/// Asserts the probe's `tty` report: no TIOCSTI got through and, unless the container
/// has a terminal of its own, neither /dev/tty nor /dev/console is there to open.
#[track_caller]
fn check_tty_report(out: &str, own_terminal: bool) {
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.iter().any(|l| l.contains("/dev/console: No such file or directory")), "/dev/console must be absent:\n{out}");
    let tty_line = lines.iter().find(|l| l.contains("open /dev/tty: ")).unwrap_or_else(|| panic!("no probe report:\n{out}"));
    // pid 1 is never in a session with a terminal; only -t gives the command one.
    assert!(lines.iter().any(|l| l.ends_with("ctty of 1: none")), "pid 1 has a controlling terminal:\n{out}");
    if own_terminal {
        assert!(lines.iter().any(|l| l.ends_with("ctty of self: a terminal")), "with -t, the pty is the command's terminal:\n{out}");
        assert!(tty_line.ends_with("open /dev/tty: ok"), "with -t, /dev/tty is the container's pty:\n{out}");
    } else {
        assert!(lines.iter().any(|l| l.ends_with("ctty of self: none")), "the command has a controlling terminal:\n{out}");
        for fd in 0..3 {
            assert!(lines.iter().any(|l| l.ends_with(&format!("fd{fd}: no terminal"))), "fd {fd} leads to a terminal:\n{out}");
        }
        assert!(tty_line.ends_with("open /dev/tty: No such file or directory"), "/dev/tty must be absent without -t:\n{out}");
        for fd in ["fd0", "fd1", "fd2", "/dev/tty"] {
            assert!(!lines.iter().any(|l| l.ends_with(&format!("tiocsti {fd}: ok"))), "TIOCSTI on {fd} succeeded:\n{out}");
        }
        assert_eq!(lines.iter().filter(|l| l.contains("tiocsti fd")).count(), 3, "the probe tried every descriptor:\n{out}");
    }
}

#[track_caller]
fn assert_nothing_injected(term: &Terminal, report: &str) {
    let pending = term.pending_input();
    assert!(pending.is_empty(), "the container typed {:?} into the caller's terminal\n{report}", String::from_utf8_lossy(&pending));
}

#[test]
fn a_run_step_cannot_type_into_the_callers_terminal() {
    if skip_without_sandbox("a_run_step_cannot_type_into_the_callers_terminal") {
        return;
    }
    with_base();
    let Some(ctx) = probe_context("session-run-step", "FROM busybox\nCOPY probe /probe\nRUN /probe tty\n") else {
        return;
    };
    let term = Terminal::new(24, 80);
    let (code, out) = term.spawn(&["build", "--progress=plain", "-t", "session-run-step", &path_str(&ctx)]).finish();
    assert_eq!(code, Some(0), "{out}");
    assert_nothing_injected(&term, &out);
    check_tty_report(&out, false);
}

#[test]
fn run_cannot_type_into_the_callers_terminal() {
    if skip_without_sandbox("run_cannot_type_into_the_callers_terminal") {
        return;
    }
    let Some(Probe { image, .. }) = probe() else {
        return;
    };
    for flags in [&[][..], &["-i"][..], &["-t"][..], &["-i", "-t"][..]] {
        let term = Terminal::new(24, 80);
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend([image, "/probe", "tty"]);
        let (code, out) = term.spawn(&args).finish();
        assert_eq!(code, Some(0), "{out}");
        assert_nothing_injected(&term, &out);
        check_tty_report(&out, flags.contains(&"-t"));
    }
}

#[test]
fn run_cannot_reopen_the_callers_output_files() {
    if skip_without_sandbox("run_cannot_reopen_the_callers_output_files") {
        return;
    }
    let Some(Probe { image, .. }) = probe() else {
        return;
    };
    let dir = scratch("session-fds");
    let open = |name: &str| {
        let path = dir.join(name);
        fs::write(&path, "PRIOR-HOST-CONTENT\n").unwrap();
        (path.clone(), fs::OpenOptions::new().append(true).open(&path).unwrap())
    };
    let (out_path, out) = open("out.log");
    let (err_path, err) = open("err.log");
    let status = Command::new(strata_bin())
        .arg("--root")
        .arg(&world().root)
        .args(["run", "--rm", image, "/probe", "fds"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .expect("start strata run");
    let out = fs::read_to_string(&out_path).unwrap();
    let err = fs::read_to_string(&err_path).unwrap();
    let both = format!("stdout file:\n{out}\nstderr file:\n{err}");
    assert_eq!(status.code(), Some(0), "{both}");
    assert!(out.starts_with("PRIOR-HOST-CONTENT\n") && err.starts_with("PRIOR-HOST-CONTENT\n"), "the files were truncated:\n{both}");
    for n in [1, 2] {
        assert!(out.contains(&format!("read fd{n}: clean\n")), "the container read the caller's file through fd {n}:\n{both}");
    }
    assert!(err.ends_with("probe stderr\n"), "{both}");
}

#[test]
fn run_streams_are_exact_live_and_keep_exit_codes_and_eof() {
    if skip_without_sandbox("run_streams_are_exact_live_and_keep_exit_codes_and_eof") {
        return;
    }
    let Some(Probe { image, binary }) = probe() else {
        return;
    };
    let world = world();
    let run = |args: &[&str], stdin: Stdio| {
        let mut cmd = Command::new(strata_bin());
        cmd.arg("--root").arg(&world.root).args(["run", "--rm"]).args(args).stdin(stdin);
        output_within(cmd, 300)
    };
    // Binary output, byte for byte: the static probe itself.
    let probe = fs::read(binary).unwrap();
    let cat = run(&[image, "cat", "/probe"], Stdio::null());
    assert!(cat.status.success(), "{}", String::from_utf8_lossy(&cat.stderr));
    assert!(cat.stdout == probe, "cat /probe gave {} bytes, not the {} of the probe", cat.stdout.len(), probe.len());

    // Both streams large at once (no relay may block the other), and the exit code.
    let big = run(&[image, "sh", "-c", "seq 1 200000 >&2 & seq 1 200000; wait; exit 3"], Stdio::null());
    let expected: String = (1..=200000).map(|n| format!("{n}\n")).collect();
    assert_eq!(big.status.code(), Some(3));
    assert!(big.stdout == expected.as_bytes() && big.stderr == expected.as_bytes(), "large outputs were cut or mixed");

    // -i: the command reads our stdin to its end; without -i it reads nothing.
    let input = scratch("session-stdin").join("input");
    fs::write(&input, "line one\nline two\n").unwrap();
    let fed = run(&["-i", image, "sh", "-c", "cat; echo after-eof"], File::open(&input).unwrap().into());
    assert_eq!(String::from_utf8_lossy(&fed.stdout), "line one\nline two\nafter-eof\n");
    let unfed = run(&[image, "sh", "-c", "cat; echo after-eof"], File::open(&input).unwrap().into());
    assert_eq!(String::from_utf8_lossy(&unfed.stdout), "after-eof\n");

    // Live: a line arrives while the command still runs.
    let mut child = Command::new(strata_bin())
        .arg("--root")
        .arg(&world.root)
        .args(["run", "--rm", image, "sh", "-c", "echo first; sleep 30; echo late"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    let started = Instant::now();
    stdout.read_exact(&mut first).unwrap();
    let waited = started.elapsed();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
    assert_eq!(&first, b"first\n");
    assert!(waited < Duration::from_secs(25), "the first line came only after {waited:?}: output is not streamed");
}

/// `cmd`'s exit status and raw output; panics if it runs longer than `secs` (a relay
/// that deadlocks on a full pipe must fail the test, not hang it).
fn output_within(mut cmd: Command, secs: u64) -> std::process::Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start strata");
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

#[test]
fn init_shows_no_host_path() {
    if skip_without_sandbox("init_shows_no_host_path") {
        return;
    }
    let world = with_base();
    let script = "echo \"cmdline=[$(tr '\\0' ' ' < /proc/1/cmdline)]\"; echo \"comm=[$(cat /proc/1/comm)]\"; \
                  echo \"environ=[$(tr '\\0' ' ' < /proc/1/environ 2>&1)]\"";
    let host_paths = [path_str(&world.root), path_str(&strata_bin()), path_str(&world.work)];
    let check = |label: &str, out: &str| {
        let line =
            |key: &str| out.lines().find_map(|l| l.split_once(&format!("{key}=[")).map(|(_, v)| v.trim_end_matches(']').to_string()));
        let cmdline = line("cmdline").unwrap_or_else(|| panic!("{label}: no report:\n{out}"));
        assert_eq!(cmdline.trim_end(), "strata-init", "{label}: pid 1's cmdline:\n{out}");
        assert_eq!(line("comm").as_deref(), Some("strata-init"), "{label}:\n{out}");
        let environ = line("environ").unwrap_or_default();
        for path in &host_paths {
            assert!(!cmdline.contains(path.as_str()) && !environ.contains(path.as_str()), "{label}: pid 1 shows {path}:\n{out}");
        }
    };
    let ran = strata(["run", "--rm", "busybox", "sh", "-c", script]).ok();
    check("strata run", &ran.stdout);
    let ctx = scratch("session-init");
    fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN {script}\n")).unwrap();
    let built = strata(["build", "--progress=plain", "--no-cache", "-t", "session-init", &path_str(&ctx)]).ok();
    check("RUN", &format!("{}{}", built.stdout, built.stderr));
}

#[test]
fn run_t_follows_the_terminal_size() {
    if skip_without_sandbox("run_t_follows_the_terminal_size") {
        return;
    }
    with_base();
    let term = Terminal::new(33, 101);
    let script = "stty size; trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.1; done";
    let session = term.spawn(&["run", "--rm", "-t", "busybox", "sh", "-c", script]);
    let ready = session.wait_for("ready\n", 120);
    if ready {
        term.resize(44, 120);
    }
    let resized = ready && session.wait_for("44 120\n", 20);
    if !resized {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(session.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    }
    let (code, out) = session.finish();
    assert!(ready, "{out}");
    assert!(out.contains("33 101\n"), "the container's terminal starts at the caller's size:\n{out}");
    assert!(resized, "a resize of the caller's terminal must reach the container:\n{out}");
    assert_eq!(code, Some(0), "{out}");
}
