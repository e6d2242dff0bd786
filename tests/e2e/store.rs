//! The store under stress: builds killed at each crash point (a test-only fault hook
//! makes strata SIGKILL itself exactly there) leave it consistent (fsck clean, prune
//! removes every leftover, a rebuild succeeds and tags), and concurrent builds on one
//! store all succeed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{abort_at_env, path_str, run_command, scratch, skip_without_sandbox, strata, strata_bin, with_base, world, Run};

/// `strata --root ROOT ARGS...` with extra environment.
pub fn strata_at(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(strata_bin());
    cmd.arg("--root").arg(root).args(args).envs(env.iter().copied());
    run_command(cmd)
}

/// A store of its own holding busybox as `base` (imported from an OCI layout of the
/// shared store's), so prune there cannot disturb tests running beside this one.
pub fn private_store(name: &str) -> PathBuf {
    with_base();
    let ctx = scratch(&format!("{name}-base"));
    fs::write(ctx.join("Dockerfile"), "FROM busybox\n").unwrap();
    let layout = ctx.join("layout");
    strata(["build", "-q", "--output", &format!("oci:{}:latest", path_str(&layout)), &path_str(&ctx)]).ok();
    let import = scratch(&format!("{name}-import"));
    fs::write(import.join("Dockerfile"), format!("FROM oci:{}:latest\n", path_str(&layout))).unwrap();
    let root = scratch(name).join("store");
    strata_at(&root, &["build", "-q", "-t", "base", &path_str(&import)], &[]).ok();
    root
}

/// Names in the store that only a writer that died leaves behind.
fn leftovers(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["oci", "oci/blobs/sha256", "cache", "layers", "tmp"] {
        for e in fs::read_dir(root.join(dir)).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp") || name.ends_with(".tmp") || dir == "tmp" {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_kill_at_each_crash_point_leaves_the_store_consistent() {
    if skip_without_sandbox("a_kill_at_each_crash_point_leaves_the_store_consistent") {
        return;
    }
    let root = private_store("crash");
    for point in ["run", "commit", "index"] {
        let ctx = scratch(&format!("crash-{point}"));
        fs::write(ctx.join("Dockerfile"), format!("FROM base\nRUN echo {point} > /ran\nCOPY f /f\n")).unwrap();
        fs::write(ctx.join("f"), format!("file {point}\n")).unwrap();
        let tag = format!("crash-{point}");
        let killed = strata_at(&root, &["build", "-t", &tag, &path_str(&ctx)], &abort_at_env(point));
        // Killed by SIGKILL: the namespace parent relays it as 128 + 9.
        assert_eq!(killed.code, Some(137), "the build died at {point} by SIGKILL: {}", killed.describe());
        let left = leftovers(&root);
        assert!(!left.is_empty(), "a kill at {point} leaves something for prune: {left:?}");
        let expected = match point {
            "run" => "tmp/step-",
            "commit" => "blobs/sha256/.tmp-",
            _ => "oci/.tmp-",
        };
        assert!(left.iter().any(|p| path_str(p).contains(expected)), "a kill at {point} stopped where it should ({expected}): {left:?}");
        let images = strata_at(&root, &["images"], &[]);
        assert!(images.success() && !images.stdout.contains(&format!("localhost/{tag} ")), "nothing half-tagged: {}", images.describe());
        let fsck = strata_at(&root, &["fsck"], &[]);
        assert!(fsck.success() && fsck.stdout.contains("no problems"), "fsck after a kill at {point}: {}", fsck.describe());
        let prune = strata_at(&root, &["prune"], &[]);
        assert!(prune.success(), "{}", prune.describe());
        assert_eq!(leftovers(&root), Vec::<PathBuf>::new(), "prune removed every leftover of the kill at {point}");
        let rebuilt = strata_at(&root, &["build", "-q", "-t", &tag, &path_str(&ctx)], &[]);
        assert!(rebuilt.success(), "{}", rebuilt.describe());
        let ran = strata_at(&root, &["run", "--rm", &tag, "cat", "/ran", "/f"], &[]);
        assert_eq!(ran.stdout, format!("{point}\nfile {point}\n"), "{}", ran.describe());
        assert!(strata_at(&root, &["fsck"], &[]).success());
    }
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

#[test]
fn prune_collects_only_garbage_and_refuses_an_unreadable_manifest() {
    if skip_without_sandbox("prune_collects_only_garbage_and_refuses_an_unreadable_manifest") {
        return;
    }
    let root = private_store("prune");
    let build = |tag: Option<&str>, text: &str| {
        let ctx = scratch("prune-ctx");
        fs::write(ctx.join("Dockerfile"), format!("FROM base\nRUN echo {text} > /t\n")).unwrap();
        let mut args = vec!["build", "-q"];
        args.extend(tag.iter().flat_map(|t| ["-t", *t]));
        let ctx_s = path_str(&ctx);
        args.push(&ctx_s);
        strata_at(&root, &args, &[]).ok().stdout.trim().to_string()
    };
    let blob = |hex: &str| root.join("oci/blobs/sha256").join(hex);
    let kept = build(Some("kept"), "kept");
    let dangling = build(None, "dangling");
    assert!(blob(&dangling).is_file());
    let prune = strata_at(&root, &["prune"], &[]).ok();
    assert!(prune.stdout.contains("removed 1 dangling images"), "{}", prune.describe());
    assert!(!blob(&dangling).exists(), "the dangling image's config went");
    assert!(blob(&kept).is_file(), "the tagged image's config stays");
    assert_eq!(strata_at(&root, &["run", "--rm", "kept", "cat", "/t"], &[]).ok().stdout, "kept\n");
    assert!(strata_at(&root, &["fsck"], &[]).ok().stdout.contains("no problems"));

    // A tagged manifest that cannot be read: prune must not sweep anything.
    let victim = build(Some("victim"), "victim");
    let extra = build(None, "extra");
    let manifest = strata_at(&root, &["inspect", "victim"], &[]).ok().json()[0]["Digest"].as_str().unwrap().replace("sha256:", "");
    fs::remove_file(blob(&manifest)).unwrap();
    let before = fs::read_dir(root.join("oci/blobs/sha256")).unwrap().count();
    let refused = strata_at(&root, &["prune"], &[]);
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(refused.stderr.contains("prune aborted") && refused.stderr.contains(&manifest), "{}", refused.describe());
    assert_eq!(fs::read_dir(root.join("oci/blobs/sha256")).unwrap().count(), before, "no blob was removed");
    assert!(blob(&victim).is_file() && blob(&extra).is_file());
    // `images` lists what it can and warns about the rest.
    let images = strata_at(&root, &["images"], &[]).ok();
    assert!(images.stdout.contains("localhost/kept ") && !images.stdout.contains("localhost/victim "), "{}", images.describe());
    assert!(images.stderr.contains("warning: skipping image localhost/victim:latest"), "{}", images.describe());
}

/// `load` (and `pull`, the same path) unpacks the image as podman does at pull, so
/// the first build on it does not: every layer has its layer dir once `load` returns.
#[test]
fn load_unpacks_the_image_for_its_first_use() {
    if skip_without_sandbox("load_unpacks_the_image_for_its_first_use") {
        return;
    }
    with_base();
    let dir = scratch("load-unpacks");
    let archive = dir.join("busybox.tar");
    strata(["save", "--format", "oci-archive", "-o", &path_str(&archive), "busybox"]).ok();
    let root = dir.join("store");
    strata_at(&root, &["load", "-i", &path_str(&archive)], &[]).ok();
    let inspect = strata_at(&root, &["inspect", "busybox"], &[]).ok().json();
    let diff_ids = inspect[0]["rootfs"]["diff_ids"].as_array().expect("diff ids").clone();
    assert!(!diff_ids.is_empty());
    for id in diff_ids {
        let hex = id.as_str().and_then(|d| d.strip_prefix("sha256:")).expect("a sha256 diff id");
        assert!(root.join("layers").join(hex).is_dir(), "layer {hex} is unpacked after load");
    }
}
