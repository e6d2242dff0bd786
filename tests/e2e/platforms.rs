//! Multi-platform builds (issue 15): `--platform` for several platforms gives an
//! image index under the tag, foreign RUN steps go through qemu's binfmt_misc
//! handler, and a missing emulator fails the build cleanly.
//!
//! The bases are made as the amd64 one is (fixtures/busybox's recipe), from the
//! host's static busybox and Debian's `busybox-static:arm64`, which
//! `scripts/deps.sh` downloads to `$STRATA_ARM64_DEBS` (default
//! /var/cache/strata-arm64).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::*;

pub(crate) const BASE: &str = "pbase:latest";
static PBASE: OnceLock<Result<(), String>> = OnceLock::new();

/// The arm64 static busybox, extracted from the downloaded .deb.
fn arm64_busybox(dest: &Path) -> Result<(), String> {
    let dir = PathBuf::from(std::env::var("STRATA_ARM64_DEBS").unwrap_or_else(|_| "/var/cache/strata-arm64".into()));
    let deb = fs::read_dir(&dir)
        .map_err(|e| format!("read {} (run scripts/deps.sh): {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("busybox-static") && n.to_string_lossy().ends_with("_arm64.deb"))
        })
        .ok_or_else(|| format!("no busybox-static arm64 .deb in {} (run scripts/deps.sh)", dir.display()))?;
    let out = scratch("arm64-deb");
    let x = run("dpkg-deb", ["-x", &path_str(&deb), &path_str(&out)]);
    if !x.success() {
        return Err(x.describe());
    }
    fs::copy(out.join("bin/busybox"), dest).map_err(|e| format!("copy the arm64 busybox: {e}"))?;
    Ok(())
}

/// `pbase:latest`: fixtures/busybox's recipe for linux/amd64 and linux/arm64, one
/// index, each platform's busybox picked by TARGETARCH.
#[track_caller]
pub(crate) fn with_platform_base() {
    with_base();
    let built = PBASE.get_or_init(|| {
        let ctx = scratch("pbase-context");
        stage_busybox_context(&ctx)?;
        fs::rename(ctx.join("busybox"), ctx.join("busybox-amd64")).map_err(|e| e.to_string())?;
        arm64_busybox(&ctx.join("busybox-arm64"))?;
        let recipe = fs::read_to_string(ctx.join("Dockerfile")).map_err(|e| e.to_string())?;
        let recipe = recipe
            .replace("FROM scratch\n", "FROM scratch\nARG TARGETARCH\n")
            .replace("COPY busybox /bin/busybox", "COPY busybox-${TARGETARCH} /bin/busybox");
        fs::write(ctx.join("Dockerfile"), recipe).map_err(|e| e.to_string())?;
        let run = strata(["build", "--platform", "linux/amd64,linux/arm64", "-t", BASE, &path_str(&ctx)]);
        if run.success() {
            Ok(())
        } else {
            Err(format!("building the two-platform base failed: {}", run.describe()))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
}

const MULTI: &str = "ARG BASE\n\
FROM --platform=$BUILDPLATFORM $BASE AS cross\n\
ARG TARGETARCH\n\
RUN echo \"built on $(uname -m) for $TARGETARCH\" > /per-target\n\
FROM $BASE\n\
ARG TARGETARCH\n\
RUN echo \"$(uname -m) $TARGETARCH\" > /arch\n\
COPY --from=cross /per-target /per-target\n";

fn multi_context() -> PathBuf {
    let ctx = scratch("multi");
    fs::write(ctx.join("Dockerfile"), MULTI).unwrap();
    ctx
}

fn index_digest(tag: &str) -> String {
    let doc = strata(["inspect", tag]).ok().json();
    doc[0]["Digest"].as_str().unwrap_or_else(|| panic!("no Digest in {doc}")).to_string()
}

#[test]
fn a_two_platform_build_is_an_index_each_platform_runs_and_a_rebuild_is_cached() {
    with_platform_base();
    let ctx = multi_context();
    let base_arg = format!("BASE={BASE}");
    let build =
        |tag: &str| strata(["build", "--platform", "linux/amd64,linux/arm64", "--build-arg", &base_arg, "-t", tag, &path_str(&ctx)]).ok();
    build("multi");

    let layout = scratch("multi-layout").join("oci");
    strata(["save", "--format", "oci-dir", "-o", &path_str(&layout), "multi"]).ok();
    let raw = run("skopeo", ["inspect", "--raw", &format!("oci:{}:latest", path_str(&layout))]).ok().json();
    let mut arches: Vec<String> = raw["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    arches.sort();
    assert_eq!(arches, ["amd64", "arm64"], "{raw}");

    let arm = strata(["run", "--rm", "--platform", "linux/arm64", "multi", "cat", "/arch", "/per-target"]).ok();
    assert_eq!(arm.stdout, "aarch64 arm64\nbuilt on x86_64 for arm64\n", "{}", arm.describe());
    let amd = strata(["run", "--rm", "--platform", "linux/amd64", "multi", "cat", "/arch", "/per-target"]).ok();
    assert_eq!(amd.stdout, "x86_64 amd64\nbuilt on x86_64 for amd64\n", "{}", amd.describe());

    let images = strata(["images"]).ok();
    let row = images.stdout.lines().find(|l| l.starts_with("localhost/multi ")).unwrap_or_else(|| panic!("{}", images.describe()));
    assert!(row.contains("manifest list: 2 platforms"), "{row}");
    let arm_config = strata(["inspect", "--platform", "linux/arm64", "multi"]).ok().json();
    assert_eq!(arm_config[0]["architecture"], "arm64");

    // Each platform has its own cache entries: a second build runs nothing and
    // gives the same index.
    let first = index_digest("multi");
    let again = build("multi2");
    // A RUN that ran again would give a layer of new mtimes, so another digest.
    assert_eq!(index_digest("multi2"), first, "{}", again.describe());
}

/// The architectures an index lists, sorted, from `skopeo inspect --raw`.
fn listed_arches(reference: &str) -> Vec<String> {
    let raw = run("skopeo", ["inspect", "--raw", reference]).ok().json();
    let mut arches: Vec<String> = raw["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {raw}"))
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap_or_default().to_string())
        .collect();
    arches.sort();
    arches
}

#[test]
fn every_platform_survives_an_oci_archive_output_and_a_save_and_load() {
    with_platform_base();
    // Steps of their own (an ENV first in each stage): run beside the test above,
    // the same steps would race for one cache entry and change its rebuild's digest.
    let ctx = scratch("multi-out-context");
    fs::write(ctx.join("Dockerfile"), MULTI.replace("ARG TARGETARCH\n", "ENV OUTPUT_TEST=1\nARG TARGETARCH\n")).unwrap();
    let out = scratch("multi-out");
    let archive = out.join("multi.tar");
    let dest = format!("oci-archive:{}", path_str(&archive));
    let base_arg = format!("BASE={BASE}");
    strata([
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--build-arg",
        &base_arg,
        "-t",
        "multi-out",
        "--output",
        &dest,
        &path_str(&ctx),
    ])
    .ok();
    assert_eq!(listed_arches(&format!("oci-archive:{}", path_str(&archive))), ["amd64", "arm64"]);

    // A docker-archive has no index: it takes the host's platform and says so.
    let docker = out.join("multi-docker.tar");
    let dest = format!("docker-archive:{}", path_str(&docker));
    let one = strata(["build", "--platform", "linux/amd64,linux/arm64", "--build-arg", &base_arg, "--output", &dest, &path_str(&ctx)]).ok();
    assert!(one.stderr.contains("holds one platform: writing linux/amd64"), "{}", one.describe());
    let inspected = run("skopeo", ["inspect", &format!("docker-archive:{}", path_str(&docker))]).ok().json();
    assert_eq!(inspected["Architecture"], "amd64", "{inspected}");

    // save, then load into a fresh store: the index and both platforms come back.
    let saved = out.join("saved.tar");
    strata(["save", "--format", "oci-archive", "-o", &path_str(&saved), "multi-out"]).ok();
    let fresh = out.join("fresh-store");
    let root = path_str(&fresh);
    let loaded = run(strata_bin(), ["--root", &root, "load", "-i", &path_str(&saved)]).ok();
    assert!(loaded.stdout.contains("localhost/multi-out:latest"), "{}", loaded.describe());
    let images = run(strata_bin(), ["--root", &root, "images"]).ok();
    assert!(images.stdout.contains("manifest list: 2 platforms"), "{}", images.describe());
    let arm = run(strata_bin(), ["--root", &root, "run", "--rm", "--platform", "linux/arm64", "multi-out", "cat", "/arch"]).ok();
    assert_eq!(arm.stdout, "aarch64 arm64\n", "{}", arm.describe());
    let digest = run(strata_bin(), ["--root", &root, "inspect", "multi-out"]).ok().json();
    assert_eq!(digest[0]["Digest"], index_digest("multi-out"), "the index keeps its digest through save and load");
    let _ = run(strata_bin(), ["--root", &root, "unshare", "rm", "-rf", &root]);
}

/// The architecture an image's config names, for one platform of it.
fn config_arch(tag: &str, platform: &str) -> String {
    let doc = strata(["inspect", "--platform", platform, tag]).ok().json();
    doc[0]["architecture"].as_str().unwrap_or_else(|| panic!("no architecture in {doc}")).to_string()
}

#[test]
fn from_scratch_and_archived_bases_are_taken_per_platform() {
    with_platform_base();
    // FROM scratch with no ARG: only the platform in the cache key keeps the arm64
    // pass from taking the amd64 pass's COPY, config and all.
    let ctx = scratch("scratch-per-platform");
    fs::write(ctx.join("f"), "same bytes\n").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    strata(["build", "--platform", "linux/amd64,linux/arm64", "-t", "scratch-multi", &path_str(&ctx)]).ok();
    assert_eq!(config_arch("scratch-multi", "linux/arm64"), "arm64");
    assert_eq!(config_arch("scratch-multi", "linux/amd64"), "amd64");

    // A multi-platform base in an oci-archive (FROM oci-archive:) and in an OCI
    // layout (--build-context NAME=oci-layout://): each pass takes its platform.
    let out = scratch("archived-bases");
    let archive = out.join("pbase.tar");
    let layout = out.join("pbase-layout");
    strata(["save", "--format", "oci-archive", "-o", &path_str(&archive), BASE]).ok();
    strata(["save", "--format", "oci-dir", "-o", &path_str(&layout), BASE]).ok();
    let from_archive = scratch("from-archive");
    fs::write(from_archive.join("Dockerfile"), format!("FROM oci-archive:{}\nRUN uname -m > /m\n", path_str(&archive))).unwrap();
    strata(["build", "--platform", "linux/arm64", "-t", "from-archive", &path_str(&from_archive)]).ok();
    let m = strata(["run", "--rm", "--platform", "linux/arm64", "from-archive", "cat", "/m"]).ok();
    assert_eq!(m.stdout, "aarch64\n", "{}", m.describe());
    let from_layout = scratch("from-layout");
    fs::write(from_layout.join("Dockerfile"), "FROM pbase-ctx\nRUN uname -m > /m\n").unwrap();
    let context = format!("pbase-ctx=oci-layout://{}", path_str(&layout));
    strata(["build", "--platform", "linux/amd64,linux/arm64", "--build-context", &context, "-t", "from-layout", &path_str(&from_layout)])
        .ok();
    let arm = strata(["run", "--rm", "--platform", "linux/arm64", "from-layout", "cat", "/m"]).ok();
    assert_eq!(arm.stdout, "aarch64\n", "{}", arm.describe());
    let amd = strata(["run", "--rm", "--platform", "linux/amd64", "from-layout", "cat", "/m"]).ok();
    assert_eq!(amd.stdout, "x86_64\n", "{}", amd.describe());
}

#[test]
fn a_foreign_run_without_its_emulator_fails_and_tags_nothing() {
    require_fault_injection();
    with_platform_base();
    let ctx = scratch("no-emulator");
    fs::write(ctx.join("Dockerfile"), format!("FROM {BASE}\nRUN echo never > /ran\n")).unwrap();
    let empty = scratch("binfmt-empty");
    let root = path_str(&world().root);
    let mut cmd = Command::new(strata_bin());
    cmd.env("STRATA_TEST_BINFMT_DIR", &empty).args([
        "--root",
        &root,
        "build",
        "--platform",
        "linux/arm64",
        "-t",
        "no-emulator",
        &path_str(&ctx),
    ]);
    let failed = run_command(cmd);
    assert_eq!(failed.code, Some(1), "{}", failed.describe());
    assert!(failed.stderr.contains("qemu-user-static") && failed.stderr.contains("qemu-aarch64"), "{}", failed.describe());
    assert!(!strata(["inspect", "no-emulator"]).success(), "a failed build tagged its image");
}
