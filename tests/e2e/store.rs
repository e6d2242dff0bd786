//! The store under stress: builds SIGKILLed at several points leave it consistent
//! (fsck clean, a rebuild succeeds, nothing half-tagged), and concurrent builds on
//! one store all succeed.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{path_str, scratch, skip_without_sandbox, strata, strata_bin, with_base, world};

/// Starts `strata build` in its own process group and SIGKILLs the whole group
/// after `after`, as a CI runner's timeout would.
fn kill_build_after(ctx: &std::path::Path, tag: &str, after: Duration) {
    let mut child = Command::new(strata_bin())
        .args(["--root", &path_str(&world().root), "build", "-q", "-t", tag, &path_str(ctx)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start strata");
    std::thread::sleep(after);
    // SAFETY: signalling the process group we just created.
    unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

#[test]
fn sigkill_at_any_point_leaves_the_store_consistent() {
    if skip_without_sandbox("sigkill_at_any_point_leaves_the_store_consistent") {
        return;
    }
    with_base();
    let ctx = scratch("crash");
    // A slow RUN, then a large layer to commit, then the tag.
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN sleep 1 && echo ran > /ran\nCOPY big /big\nRUN head -c 1000 /big > /head\n")
        .unwrap();
    let big: Vec<u8> = (0..64u32 * 1024 * 1024).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    fs::write(ctx.join("big"), big).unwrap();
    for (i, ms) in [300u64, 1200, 1700, 2300, 3000].iter().enumerate() {
        let tag = format!("crash-{i}");
        kill_build_after(&ctx, &tag, Duration::from_millis(*ms));
        let fsck = strata(["fsck"]);
        assert!(fsck.success(), "fsck after a kill at {ms} ms: {}", fsck.describe());
        let images = strata(["images"]).ok();
        if images.stdout.contains(&format!("localhost/{tag} ")) {
            // Killed after tagging: the image must then be whole.
            strata(["run", "--rm", &tag, "cat", "/ran"]).ok();
        }
    }
    strata(["build", "-q", "-t", "crash-final", &path_str(&ctx)]).ok();
    assert_eq!(strata(["run", "--rm", "crash-final", "cat", "/ran"]).ok().stdout, "ran\n");
    strata(["fsck"]).ok();
}

#[test]
fn concurrent_builds_on_one_store_all_succeed() {
    if skip_without_sandbox("concurrent_builds_on_one_store_all_succeed") {
        return;
    }
    with_base();
    let children: Vec<_> = (0..4)
        .map(|i| {
            let ctx = scratch(&format!("concurrent-{i}"));
            fs::write(
                ctx.join("Dockerfile"),
                format!("FROM busybox\nRUN echo {i} > /id && sleep 0.{i}\nCOPY f /f\nCMD [\"cat\", \"/id\"]\n"),
            )
            .unwrap();
            fs::write(ctx.join("f"), format!("file {i}\n")).unwrap();
            Command::new(strata_bin())
                .args(["--root", &path_str(&world().root), "build", "-q", "-t", &format!("concurrent-{i}"), &path_str(&ctx)])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start strata")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a concurrent build failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let images = strata(["images"]).ok();
    for i in 0..4 {
        assert!(images.stdout.contains(&format!("localhost/concurrent-{i} ")), "{}", images.stdout);
        assert_eq!(strata(["run", "--rm", &format!("concurrent-{i}")]).ok().stdout, format!("{i}\n"));
    }
    strata(["fsck"]).ok();
}
