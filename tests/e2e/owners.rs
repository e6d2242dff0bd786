//! Owners a RUN cannot forge, and a build context that cannot smuggle host files in.
//!
//! - `user.containers.override_stat` is writable by any file's owner: a RUN that
//!   sets it must not change the owner the layer records (with subuid ranges it is
//!   ignored; in single-id mode only values strata sealed count), and the xattr
//!   never appears in a layer, nor is it unpacked from a base layer.
//! - A context directory swapped for a symlink to a host directory while COPY runs
//!   must never bring the host's files into the image, and a `.dockerignore` or
//!   `Dockerfile` that is a symlink to a host file is resolved inside the context.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::drivers::{build_busybox_in, rich_entries, strata_at, Rich};
use crate::hostile::{hostile_layout, RawTar};
use crate::layout::Layout;
use crate::support::{path_str, scratch, single_id_env, skip_without_sandbox, strata, with_base};

const RECORD: &str = "user.containers.override_stat";

/// A static helper run inside the RUN: creates FILE with MODE (octal) and sets
/// RECORD to VALUE on it, as any unprivileged owner of a file may.
const SETX_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: setx FILE MODE VALUE\n"); return 2; }
    int fd = open(argv[1], O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "x", 1) != 1 || close(fd) != 0) { perror(argv[1]); return 1; }
    if (chmod(argv[1], strtol(argv[2], NULL, 8)) != 0) { perror("chmod"); return 1; }
    if (setxattr(argv[1], "user.containers.override_stat", argv[3], strlen(argv[3]), 0) != 0) { perror("setxattr"); return 1; }
    return 0;
}
"#;

/// Compiles the helper into `ctx/setx` with `cc -static` (gcc and libc6-dev).
#[track_caller]
fn build_setx(ctx: &Path) {
    let src = ctx.join("setx.c");
    fs::write(&src, SETX_C).expect("write setx.c");
    let out = Command::new("cc").args(["-static", "-O2", "-o"]).arg(ctx.join("setx")).arg(&src).output();
    let out = out.unwrap_or_else(|e| panic!("running cc (install gcc and libc6-dev, see scripts/deps.sh): {e}"));
    assert!(out.status.success(), "cc -static setx.c failed: {}", String::from_utf8_lossy(&out.stderr));
    fs::remove_file(&src).expect("remove setx.c");
}

/// The entries of the top layer of the image written to the OCI layout `out`.
fn top_layer(out: &Path) -> Vec<Rich> {
    let layout = Layout::open(out);
    let manifest = layout.manifest(Some("t"));
    let top = Layout::layers(&manifest).last().cloned().expect("the RUN made a layer");
    rich_entries(&layout, &top)
}

#[track_caller]
fn find<'a>(entries: &'a [Rich], path: &str) -> &'a Rich {
    entries.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("no {path} in the layer: {entries:#?}"))
}

#[track_caller]
fn assert_no_record(entries: &[Rich]) {
    for e in entries {
        assert!(!e.xattrs.contains_key(RECORD), "{} carries {RECORD} into the layer: {e:?}", e.path);
    }
}

#[test]
fn owners_forged_record_is_ignored_with_subuid_ranges() {
    if skip_without_sandbox("owners_forged_record_is_ignored_with_subuid_ranges") {
        return;
    }
    with_base();
    let ctx = scratch("owners-forge");
    build_setx(&ctx);
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY setx /setx\nRUN mkdir /w && chown 1000:1000 /w\nUSER 1000:1000\n\
         RUN /setx /w/plain 0644 0:0:04755 && /setx /w/suid 04755 0:0:04755 && id -u\n",
    )
    .unwrap();
    let out = scratch("owners-forge-out").join("layout");
    strata(["build", "--no-cache", "-t", "owners-forge", "--output", &format!("oci:{}:t", path_str(&out)), &path_str(&ctx)]).ok();
    let entries = top_layer(&out);
    let plain = find(&entries, "w/plain");
    assert_eq!((plain.uid, plain.gid, plain.mode & 0o7777), (1000, 1000, 0o644), "the true owner and mode: {plain:?}");
    let suid = find(&entries, "w/suid");
    assert_eq!((suid.uid, suid.gid), (1000, 1000), "a forged record must not make a setuid-root file: {suid:?}");
    assert_no_record(&entries);
}

#[test]
fn owners_single_id_honours_chown_but_not_a_forged_record() {
    if skip_without_sandbox("owners_single_id_honours_chown_but_not_a_forged_record") {
        return;
    }
    let single = single_id_env();
    let root = scratch("owners-single").join("store");
    build_busybox_in(&root, None, &single).unwrap();
    let ctx = scratch("owners-single-ctx");
    build_setx(&ctx);
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY setx /setx\n\
         RUN /setx /forged 04755 1000:1000:04755 && touch /real && chown 1000:100 /real \\\n    && /setx /both 0644 7:7:0644 && chown 42:42 /both\n",
    )
    .unwrap();
    let out = scratch("owners-single-out").join("layout");
    let dest = format!("oci:{}:t", path_str(&out));
    strata_at(&root, None, &single, &["build", "-t", "owners-single", "--output", &dest, &path_str(&ctx)]).ok();
    let entries = top_layer(&out);
    let forged = find(&entries, "forged");
    assert_eq!((forged.uid, forged.gid), (0, 0), "a record strata did not write is not honoured: {forged:?}");
    let real = find(&entries, "real");
    assert_eq!((real.uid, real.gid), (1000, 100), "a real chown is still recorded: {real:?}");
    let both = find(&entries, "both");
    assert_eq!((both.uid, both.gid), (42, 42), "chown after a forged record wins: {both:?}");
    assert_no_record(&entries);
}

/// Atomically exchanges two paths (renameat2 RENAME_EXCHANGE): `dir` is never
/// missing, only a directory or a symlink.
fn exchange(a: &Path, b: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (a, b) = (std::ffi::CString::new(a.as_os_str().as_bytes()).unwrap(), std::ffi::CString::new(b.as_os_str().as_bytes()).unwrap());
    // SAFETY: two NUL-terminated paths that outlive the call.
    unsafe { libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) == 0 }
}

#[test]
fn owners_record_in_a_base_layer_is_not_unpacked() {
    if skip_without_sandbox("owners_record_in_a_base_layer_is_not_unpacked") {
        return;
    }
    with_base();
    // A layer whose root-owned file claims, in the record, another owner: a RUN
    // that copies it up must not give that owner to the next layer.
    let layer = RawTar::default().file_with_xattr("claimed", "x\n", 0o644, RECORD, b"1000:1000:0644").finish();
    let dir = scratch("owners-base-layer");
    hostile_layout(&dir.join("layout"), &[layer], true);
    let ctx = dir.join("context");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), format!("FROM oci:{}:hostile\nRUN echo more >> /claimed\n", path_str(&dir.join("layout")))).unwrap();
    let out = scratch("owners-base-layer-out").join("layout");
    strata(["build", "--no-cache", "--output", &format!("oci:{}:t", path_str(&out)), &path_str(&ctx)]).ok();
    let entries = top_layer(&out);
    let claimed = find(&entries, "claimed");
    assert_eq!((claimed.uid, claimed.gid), (0, 0), "the layer's record was believed: {claimed:?}");
    assert_no_record(&entries);
}

/// Swaps the directory `dir` with a symlink to `host` and back (about a
/// millisecond each way) until `stop`; returns how many times it swapped.
fn swap_loop(dir: PathBuf, link: PathBuf, host: PathBuf, stop: Arc<AtomicBool>) -> usize {
    symlink(&host, &link).expect("create the racing symlink");
    let pause = std::time::Duration::from_micros(700);
    let mut swaps = 0;
    while !stop.load(Ordering::Relaxed) {
        if exchange(&dir, &link) {
            std::thread::sleep(pause);
            assert!(exchange(&dir, &link), "swapping back");
            swaps += 1;
        }
        std::thread::sleep(pause);
    }
    swaps
}

#[test]
fn owners_copy_race_never_copies_a_host_file() {
    if skip_without_sandbox("owners_copy_race_never_copies_a_host_file") {
        return;
    }
    let ctx = scratch("owners-race");
    let host = scratch("owners-race-host");
    // The host dir holds the same name as the context's, so whenever the swap
    // strikes, a copy that follows the symlink finds a file to read.
    fs::write(host.join("inner"), "TOP SECRET\n").unwrap();
    // COPY lists dir/, then copies its files before it reaches zsub: the swap of
    // zsub strikes between that listing and zsub's open.
    fs::create_dir_all(ctx.join("dir/zsub")).unwrap();
    for i in 0..200 {
        fs::write(ctx.join(format!("dir/ok-{i:03}")), "fine\n".repeat(100)).unwrap();
    }
    fs::write(ctx.join("dir/zsub/inner"), "fine\n").unwrap();
    let copies: String = (0..3).map(|i| format!("COPY dir/ /x{i}/\n")).collect();
    fs::write(ctx.join("Dockerfile"), format!("FROM scratch\n{copies}")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (dir, link, host, stop) = (ctx.join("dir/zsub"), ctx.join("zsub.link"), host.clone(), stop.clone());
        std::thread::spawn(move || swap_loop(dir, link, host, stop))
    };
    let (mut ok, mut refused) = (0, 0);
    let mut leaks = Vec::new();
    for n in 0..20 {
        let out = scratch("owners-race-out").join("files");
        let run = strata(["build", "--no-cache", "-q", "--output", &format!("dir:{}", path_str(&out)), &path_str(&ctx)]);
        assert!(!run.stderr.contains("panicked"), "strata panicked: {}", run.describe());
        if !run.success() {
            if refused == 0 {
                eprintln!("copy race: build {n} was refused: {}", run.stderr.trim());
            }
            refused += 1;
            continue;
        }
        ok += 1;
        for e in walkdir::WalkDir::new(&out).into_iter().filter_map(Result::ok) {
            if e.file_type().is_file() && fs::read(e.path()).is_ok_and(|d| d == b"TOP SECRET\n") {
                leaks.push(format!("build {n}: {}", e.path().display()));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = racer.join().expect("the racing thread");
    eprintln!("copy race: {ok} builds succeeded, {refused} refused, {swaps} swaps");
    assert!(swaps > 0, "the racing thread never swapped the directory");
    assert!(leaks.is_empty(), "host files were copied into images ({ok} builds succeeded, {refused} refused): {leaks:#?}");
}

#[test]
fn owners_symlinked_ignore_file_and_dockerfile_resolve_inside_the_context() {
    if skip_without_sandbox("owners_symlinked_ignore_file_and_dockerfile_resolve_inside_the_context") {
        return;
    }
    let host = scratch("owners-ignore-host");
    fs::write(host.join("ignore"), "keep.txt\n").unwrap();
    fs::write(host.join("Dockerfile"), "FROM scratch\nCOPY keep.txt /from-host-dockerfile\n").unwrap();
    let ctx = scratch("owners-ignore");
    fs::write(ctx.join("keep.txt"), "kept\n").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /c/\n").unwrap();
    symlink(host.join("ignore"), ctx.join(".dockerignore")).unwrap();
    let out = scratch("owners-ignore-out").join("files");
    strata(["build", "-q", "--output", &format!("dir:{}", path_str(&out)), &path_str(&ctx)]).ok();
    assert_eq!(
        fs::read_to_string(out.join("c/keep.txt")).ok().as_deref(),
        Some("kept\n"),
        "the host file's patterns were used: {:?}",
        fs::read_dir(out.join("c")).map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect::<Vec<_>>())
    );

    // A Dockerfile that is a symlink to a host file names the context's path instead.
    let ctx = scratch("owners-dockerfile");
    fs::write(ctx.join("keep.txt"), "kept\n").unwrap();
    symlink(host.join("Dockerfile"), ctx.join("Dockerfile")).unwrap();
    let run = strata(["build", "-q", &path_str(&ctx)]);
    assert!(!run.success(), "a Dockerfile outside the context was read: {}", run.describe());
    assert!(run.stderr.contains("no Containerfile or Dockerfile found"), "the error says why: {}", run.describe());
    // One pointing inside the context is followed there.
    fs::remove_file(ctx.join("Dockerfile")).unwrap();
    fs::write(ctx.join("Real.dockerfile"), "FROM scratch\nCOPY keep.txt /k\n").unwrap();
    symlink("Real.dockerfile", ctx.join("Dockerfile")).unwrap();
    strata(["build", "-q", &path_str(&ctx)]).ok();
}
