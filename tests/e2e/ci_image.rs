//! strata's own image (issue 14, acceptance 5): built by strata from
//! contrib/image/Containerfile through scripts/strata-image.sh, moved to podman with
//! `strata save --format oci-archive IMAGE | podman load`, and run there the way every
//! recipe of docs/ci.md runs it: as its user `user` (uid 1000, subordinate ranges
//! 1-999 and 1001-65535), with `--device /dev/fuse` and no other privilege. Inside, the
//! demo: `strata load` of the busybox base (a CI job pulls it from a registry),
//! `strata build` of fixtures/hello and `strata run` of it, which prints the greeting.
//!
//! The script, lib.sh and the Containerfile are compiled into this test and laid out
//! as in the repository, so the test needs no checkout. The base is the debootstrap
//! minbase of tests/e2e/workload.rs (no Docker Hub here) given as the build-arg
//! BASE_IMAGE; the binary put in is the strata under test. podman runs rootless as the
//! test user, with the flags this machine needs (runc: crun refuses its hybrid cgroups;
//! host network; ulimits within the test user's own).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::interop::{loaded_name, podman, podman_globals};
use crate::support::{fixture, path_str, run_command, scratch, skip_without_sandbox, strata, strata_bin, with_base, world};
use crate::workload::{link_or_copy, minbase_tarball};

const IMAGE: &str = "localhost/e2e-strata:ci";
const GREETING: &str = "Hello from strata! I am app (uid 1000), working in /app.";

/// The repository files scripts/strata-image.sh needs, at their repository paths.
const REPO_FILES: [(&str, &str); 3] = [
    ("scripts/strata-image.sh", include_str!("../../scripts/strata-image.sh")),
    ("scripts/lib.sh", include_str!("../../scripts/lib.sh")),
    ("contrib/image/Containerfile", include_str!("../../contrib/image/Containerfile")),
];

fn stage_repo(dir: &Path) {
    for (rel, text) in REPO_FILES {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create the staged repo dirs");
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// Builds the Debian base from the cached minbase tarball: `localhost/e2e-debian:minbase`.
fn debian_base() -> &'static str {
    const BASE: &str = "localhost/e2e-debian:minbase";
    let ctx = scratch("ci-image-debian");
    link_or_copy(&minbase_tarball(), &ctx.join("rootfs.tar"));
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nADD rootfs.tar /\nCMD [\"bash\"]\n").unwrap();
    strata(["build", "-q", "-t", BASE, &path_str(&ctx)]).ok();
    BASE
}

/// Makes `dir` and what is below it readable by every user: the container's `user` is
/// one of the test user's subordinate ids, not its owner.
fn open_to_all(dir: &Path) {
    let mut cmd = Command::new("chmod");
    cmd.args(["-R", "a+rX"]).arg(dir);
    run_command(cmd).ok();
}

#[test]
fn strata_image_built_by_strata_runs_the_demo_in_podman() {
    if skip_without_sandbox("strata_image_built_by_strata_runs_the_demo_in_podman") {
        return;
    }
    with_base();
    let base = debian_base();

    // scripts/strata-image.sh, as a user runs it, on the test's store.
    let repo = scratch("ci-image-repo");
    stage_repo(&repo);
    let mut build = Command::new("bash");
    build.arg(repo.join("scripts/strata-image.sh"));
    build.args(["-t", IMAGE, "--build-arg", &format!("BASE_IMAGE={base}")]);
    build.env("STRATA", strata_bin()).env("STRATA_IMAGE_BIN", strata_bin()).env("STRATA_ROOT", &world().root);
    run_command(build).ok();
    let config = strata(["inspect", IMAGE]).ok().json();
    let config = if config.is_array() { config[0].clone() } else { config };
    assert!(config["config"]["Volumes"].get("/home/user/.local/share/strata").is_some(), "the store is a VOLUME: {config:#}");

    // The demo's input: the busybox base as a CI job would pull it, and fixtures/hello.
    let input = scratch("ci-image-in");
    strata(["save", "--format", "oci-archive", "-o", &path_str(&input.join("busybox.tar")), "busybox:latest"]).ok();
    let mut copy = Command::new("cp");
    copy.arg("-r").arg(fixture("hello")).arg(input.join("hello"));
    run_command(copy).ok();
    open_to_all(&input);

    // The recipe of docs/ci.md: save | podman load.
    let store = scratch("ci-image-podman");
    let globals: Vec<String> = podman_globals(&store).iter().map(|a| format!("'{a}'")).collect();
    let pipe = format!(
        "'{}' --root '{}' save --format oci-archive {IMAGE} | podman {} load",
        path_str(&strata_bin()),
        path_str(&world().root),
        globals.join(" "),
    );
    let mut load = Command::new("sh");
    load.args(["-c", &pipe]);
    let loaded = run_command(load).ok();
    assert_eq!(loaded_name(&format!("{}{}", loaded.stdout, loaded.stderr)), IMAGE, "{}", loaded.describe());

    let demo = "strata load -i /in/busybox.tar && strata build -t hello /in/hello && strata run --rm hello";
    let mount = format!("{}:/in:ro", path_str(&input));
    let ran = podman(
        &store,
        &[
            "run",
            "--rm",
            "--runtime",
            "runc",
            "--network",
            "host",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
            "--device",
            "/dev/fuse",
            "-v",
            &mount,
            IMAGE,
            "sh",
            "-c",
            demo,
        ],
    );
    assert!(ran.success() && ran.stdout.contains(GREETING), "the demo in the strata image: {}", ran.describe());
    // The image's user maps its subordinate ranges: newuidmap works in the image
    // (file capabilities, not setuid), so no fall back to a single id.
    assert!(!ran.stderr.contains("only uid 1000"), "the demo fell back to a single id: {}", ran.stderr);

    // Setup D with the same image: `strata run` of it builds fixtures/hello inside.
    // As root under the run's default seccomp profile (Docker's), that is setup C;
    // the nested `strata run` of the result shares the build's network there.
    let nested = "strata load -i /in/busybox.tar >/dev/null && strata info && strata build -t hello /in/hello && strata run --rm hello";
    let d = strata(["run", "--rm", "--user", "0", "-v", &mount, IMAGE, "sh", "-c", nested]);
    assert!(d.success() && d.stdout.contains(GREETING), "the demo nested in strata run: {}", d.describe());
    assert!(d.stdout.contains("D: inside strata run") && d.stdout.contains("C: no namespaces"), "{}", d.stdout);
}
