//! ADD of a git repository, served by a real `git daemon` on 127.0.0.1: branch,
//! annotated tag, commit and `#ref:subdir` checkouts owned 0:0 (or `--chown`) with
//! `--chmod`, no `.git` unless `--keep-git-dir` (then one `git log` can read), a
//! branch that did not move is a cache hit and one that moved is a miss, and an
//! unknown ref or a wrong `--checksum` is an error naming the URL.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::support::{path_str, run, scratch, skip_without_sandbox, strata, with_base, Run};

/// A repository (`repo.git`) served by `git daemon` on a free port of 127.0.0.1,
/// with a work tree `src` to commit from; the daemon is killed on drop. `git daemon`
/// runs `git-daemon` as a child of its own, so it is started in a process group of
/// its own and the whole group is killed: killing only `git` left `git-daemon`
/// running after the tests.
struct Daemon {
    port: u16,
    src: PathBuf,
    child: Child,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["-C", dir.to_str().unwrap(), "-c", "user.name=e2e", "-c", "user.email=e2e@example.com"];
    all.extend_from_slice(args);
    run("git", all).ok().stdout.trim().to_string()
}

impl Daemon {
    /// main: "one" (tagged v1, annotated), then "two"; `sub/inner.txt` and an
    /// executable `run.sh` throughout.
    fn start(name: &str) -> Daemon {
        let dir = scratch(name);
        let (src, base) = (dir.join("src"), dir.join("base"));
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::create_dir_all(&base).unwrap();
        git(&src, &["init", "-q", "-b", "main"]);
        fs::write(src.join("hello.txt"), "one\n").unwrap();
        fs::write(src.join("sub/inner.txt"), "inner\n").unwrap();
        fs::write(src.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("run.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        git(&src, &["add", "."]);
        git(&src, &["commit", "-q", "-m", "one"]);
        git(&src, &["tag", "-a", "v1", "-m", "release one"]);
        fs::write(src.join("hello.txt"), "two\n").unwrap();
        git(&src, &["commit", "-q", "-am", "two"]);
        run("git", ["clone", "-q", "--bare", &path_str(&src), &path_str(&base.join("repo.git"))]).ok();
        git(&src, &["remote", "add", "origin", &path_str(&base.join("repo.git"))]);
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("git")
            .args(["daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1", "--enable=upload-pack"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(&base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start git daemon (install git)");
        let daemon = Daemon { port, src, child };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return daemon;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("git daemon did not listen on 127.0.0.1:{port}");
    }

    fn url(&self) -> String {
        format!("git://127.0.0.1:{}/repo.git", self.port)
    }

    /// Commits `hello.txt` = `text` on main and pushes it to the served repository.
    fn advance(&self, text: &str) {
        fs::write(self.src.join("hello.txt"), text).unwrap();
        git(&self.src, &["commit", "-q", "-am", text.trim()]);
        git(&self.src, &["push", "-q", "origin", "main"]);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn build(name: &str, dockerfile: &str, extra: &[&str]) -> (PathBuf, Run) {
    let ctx = scratch(name);
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut args = vec!["build".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(path_str(&ctx));
    let out = strata(args);
    (ctx, out)
}

fn sh(image: &str, script: &str) -> String {
    strata(["run", "--rm", image, "sh", "-c", script]).ok().stdout
}

#[test]
fn add_git_checks_out_branches_tags_commits_and_subdirs() {
    if skip_without_sandbox("add_git_checks_out_branches_tags_commits_and_subdirs") {
        return;
    }
    with_base();
    let d = Daemon::start("git-refs");
    let first = git(&d.src, &["rev-parse", "main~1"]);
    let url = d.url();
    let df = format!(
        "FROM busybox\nADD {url} /branch\nADD {url}#v1 /tag\nADD {url}#{first} /commit/\nADD {url}#main:sub /sub\n\
         ADD --chown=5:6 --chmod=640 --checksum={} {url}#v1:sub /owned\n",
        &first[..12]
    );
    build("git-refs-ctx", &df, &["-t", "e2e-git-refs"]).1.ok();
    let got = sh(
        "e2e-git-refs",
        "cat /branch/hello.txt /tag/hello.txt /commit/hello.txt /sub/inner.txt; ls -A /branch /sub; \
         stat -c '%n %u:%g %a' /branch/hello.txt /branch/run.sh /branch/sub /owned/inner.txt",
    );
    assert_eq!(
        got,
        "two\none\none\ninner\n/branch:\nhello.txt\nrun.sh\nsub\n\n/sub:\ninner.txt\n\
         /branch/hello.txt 0:0 644\n/branch/run.sh 0:0 755\n/branch/sub 0:0 755\n/owned/inner.txt 5:6 640\n",
        "the default branch, the tag's commit, the commit, a subdir only; no .git; 0:0 unless --chown"
    );
}

#[test]
fn add_git_keep_git_dir_keeps_a_repository_git_can_read() {
    if skip_without_sandbox("add_git_keep_git_dir_keeps_a_repository_git_can_read") {
        return;
    }
    with_base();
    let d = Daemon::start("git-keep");
    let out = scratch("git-keep-out");
    let df = format!("FROM scratch\nADD --keep-git-dir {}#main /src\nADD {}#main /plain\n", d.url(), d.url());
    build("git-keep-ctx", &df, &["--output", &format!("dir:{}", path_str(&out))]).1.ok();
    let src = out.join("src");
    assert!(src.join(".git").is_dir(), "--keep-git-dir keeps .git");
    assert!(!out.join("plain/.git").exists(), "without it there is none");
    assert_eq!(git(&src, &["log", "--format=%s"]), "two", "a shallow history at the commit");
    assert_eq!(git(&src, &["rev-parse", "HEAD"]), git(&d.src, &["rev-parse", "main"]));
    assert_eq!(git(&src, &["remote", "get-url", "origin"]), d.url());
    assert_eq!(git(&src, &["status", "--porcelain"]), "", "the work tree is the commit");
}

#[test]
fn add_git_cache_hits_while_the_branch_stays_and_misses_when_it_moves() {
    if skip_without_sandbox("add_git_cache_hits_while_the_branch_stays_and_misses_when_it_moves") {
        return;
    }
    with_base();
    let d = Daemon::start("git-cache");
    let ctx = scratch("git-cache-ctx");
    fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nADD {}#main /src\nRUN cat /src/hello.txt > /seen\n", d.url())).unwrap();
    let cached = |tag: &str| -> Vec<String> {
        let out = strata(["build", "-t", tag, &path_str(&ctx)]).ok();
        let mut steps = Vec::new();
        let mut hits = Vec::new();
        for line in out.stderr.lines() {
            if let Some((_, instr)) = line.split_once(": ").filter(|_| line.contains("STEP ")) {
                steps.push(instr.to_string());
            } else if line.trim_end().ends_with("--> CACHED") {
                hits.push(steps.last().cloned().unwrap_or_default());
            }
        }
        hits
    };
    assert!(cached("e2e-git-cache").is_empty());
    assert_eq!(sh("e2e-git-cache", "cat /seen"), "two\n");
    let again = cached("e2e-git-cache");
    assert_eq!(again.len(), 2, "an unmoved branch hits, and so does the RUN after it: {again:?}");
    d.advance("three\n");
    let moved = cached("e2e-git-cache");
    assert!(moved.is_empty(), "a moved branch is a new commit: {moved:?}");
    assert_eq!(sh("e2e-git-cache", "cat /seen"), "three\n");
}

#[test]
fn add_git_errors_name_the_url_and_ref() {
    if skip_without_sandbox("add_git_errors_name_the_url_and_ref") {
        return;
    }
    with_base();
    let d = Daemon::start("git-errors");
    let url = d.url();
    let missing = build("git-errors-ref", &format!("FROM busybox\nADD {url}#no-such-ref /x\n"), &[]).1;
    assert!(!missing.success());
    assert!(missing.stderr.contains(&url) && missing.stderr.contains("no-such-ref"), "{}", missing.stderr);
    let wrong = build("git-errors-sum", &format!("FROM busybox\nADD --checksum=0000000 {url}#v1 /x\n"), &[]).1;
    assert!(!wrong.success());
    assert!(wrong.stderr.contains(&url) && wrong.stderr.contains("expected checksum to match 0000000"), "{}", wrong.stderr);
    let copy = build("git-errors-copy", &format!("FROM busybox\nCOPY {url} /x\n"), &[]).1;
    assert!(copy.stderr.contains("source can't be a git ref for COPY"), "{}", copy.stderr);
}
