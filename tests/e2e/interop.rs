//! Images that other tools accept: strata's docker-archive and oci-archive go into
//! podman (rootless, with runc: crun refuses these hosts' hybrid cgroups) and run there;
//! archives podman saved come back through `strata load`; `save`/`load` round-trip
//! through files and pipes; `FROM docker-archive:` builds on one.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::drivers::strata_at;
use crate::support::{
    fixture, hello_image, path_str, run, run_command, scratch, skip_without_sandbox, strata, strata_bin, with_base, world,
};

/// Runs podman with a private store under `dir` (vfs: no fuse or overlay needed).
/// Also tests/e2e/ci_image.rs's podman.
pub(crate) fn podman(dir: &Path, args: &[&str]) -> crate::support::Run {
    let mut cmd = Command::new("podman");
    cmd.args(podman_globals(dir));
    cmd.args(args);
    run_command(cmd)
}

/// podman's global flags for the private store under `dir`. Podman refuses a runroot
/// path over 50 bytes, so that one lives in a short temp dir named after `dir`'s last
/// component.
pub(crate) fn podman_globals(dir: &Path) -> Vec<String> {
    let tag = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let runroot = std::env::temp_dir().join(format!("pm-{}-{tag}", std::process::id()));
    let runroot = if path_str(&runroot).len() < 40 { runroot } else { Path::new("/tmp").join(format!("pm-{}-{tag}", std::process::id())) };
    let mut args = vec!["--root".to_string(), path_str(&dir.join("root")), "--runroot".into(), path_str(&runroot)];
    args.extend(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"].map(String::from));
    args
}

/// The name podman says it loaded ("Loaded image: NAME").
pub(crate) fn loaded_name(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Loaded image: ").or_else(|| l.strip_prefix("Loaded image(s): ")))
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|| panic!("podman printed no loaded image: {out}"))
}

/// Members of a tar file, in order.
fn tar_members(file: &Path) -> Vec<String> {
    run("tar", ["-tf", &path_str(file)]).ok().stdout.lines().map(str::to_string).collect()
}

#[test]
fn podman_loads_and_runs_strata_archives() {
    if skip_without_sandbox("podman_loads_and_runs_strata_archives") {
        return;
    }
    with_base();
    let out = scratch("interop-podman");
    let docker = out.join("hello-docker.tar");
    let oci = out.join("hello-oci.tar");
    let context = fixture("hello");
    strata(["build", "-t", "e2e-interop:v1", "--output", &format!("docker-archive:{}", path_str(&docker)), &context]).ok();
    strata(["save", "--format", "oci-archive", "-o", &path_str(&oci), "e2e-interop:v1"]).ok();

    let members = tar_members(&docker);
    assert!(members.iter().any(|m| m == "manifest.json"), "{members:?}");
    let manifest = run("tar", ["-xOf", &path_str(&docker), "manifest.json"]).ok().json();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["localhost/e2e-interop:v1"]), "{manifest:#}");
    let layers = manifest[0]["Layers"].as_array().expect("Layers");
    assert!(layers.len() >= 7, "busybox and hello layers: {manifest:#}");
    let inspect = run("skopeo", ["inspect", &format!("docker-archive:{}", path_str(&docker))]).ok().json();
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(layers.len()), "{inspect:#}");

    for archive in [&docker, &oci] {
        let store = scratch("podman-store");
        let loaded = podman(&store, &["load", "-i", &path_str(archive)]).ok();
        let name = loaded_name(&format!("{}{}", loaded.stdout, loaded.stderr));
        // Both formats carry the whole name, as podman's own saves do.
        assert_eq!(name, "localhost/e2e-interop:v1", "{}: {}", archive.display(), loaded.describe());
        // And a fresh strata store restores it from either.
        let fresh = scratch("interop-fresh-store");
        strata_at(&fresh, None, &[], &["load", "-i", &path_str(archive)]).ok();
        let images = strata_at(&fresh, None, &[], &["images"]).ok().stdout;
        assert!(images.lines().any(|l| l.starts_with("localhost/e2e-interop") && l.contains(" v1 ")), "{}: {images}", archive.display());
        let ran = podman(&store, &["run", "--rm", "--runtime", "runc", "--network", "host", &name]).ok();
        assert!(
            ran.stdout.contains("Hello from strata! I am app (uid 1000), working in /app."),
            "{}: {}",
            archive.display(),
            ran.describe()
        );
        assert!(ran.stdout.contains("built by a RUN step on"), "{}", ran.describe());
    }
}

#[test]
fn strata_loads_archives_podman_saved() {
    if skip_without_sandbox("strata_loads_archives_podman_saved") {
        return;
    }
    let hello = hello_image();
    let out = scratch("interop-podman-save");
    let ours = out.join("ours.tar");
    strata(["save", "-o", &path_str(&ours), hello]).ok();
    let store = out.join("podman");
    let name = loaded_name(&podman(&store, &["load", "-i", &path_str(&ours)]).ok().stdout);
    for format in ["docker-archive", "oci-archive"] {
        let file = out.join(format!("podman-{format}.tar"));
        podman(&store, &["save", "--format", format, "-o", &path_str(&file), &name]).ok();
        // A store of its own: the image must come from the archive alone.
        let root = out.join(format!("strata-{format}"));
        let loaded = strata_at(&root, None, &[], &["load", "-i", &path_str(&file)]).ok();
        assert!(loaded.stdout.contains(&format!("Loaded image: {name}")), "{format}: {}", loaded.describe());
        let ran = strata_at(&root, None, &[], &["run", "--rm", &name]).ok();
        assert!(ran.stdout.contains("Hello from strata!"), "{format}: {}", ran.describe());
        strata_at(&root, None, &[], &["fsck"]).ok();
    }
}

#[test]
fn save_load_pipes_and_from_docker_archive() {
    if skip_without_sandbox("save_load_pipes_and_from_docker_archive") {
        return;
    }
    let hello = hello_image();
    let out = scratch("interop-save-load");
    let file = out.join("piped.tar");
    let root = path_str(&world().root);
    let bin = path_str(&strata_bin());
    // docker save > FILE and docker load < FILE work through pipes.
    run("sh", ["-c", &format!("'{bin}' --root '{root}' save {hello} > '{}'", path_str(&file))]).ok();
    assert!(tar_members(&file).iter().any(|m| m == "manifest.json"));
    let other = path_str(&out.join("other-store"));
    let loaded = run("sh", ["-c", &format!("'{bin}' --root '{other}' load < '{}'", path_str(&file))]).ok();
    assert!(loaded.stdout.contains("Loaded image: localhost/e2e-hello:latest"), "{}", loaded.describe());
    let ids_here = strata(["images", "-q", "--no-trunc"]).ok().stdout;
    let id_there = run(strata_bin(), ["--root", other.as_str(), "images", "-q", "--no-trunc"]).ok().stdout;
    let id_there = id_there.trim();
    assert!(
        !id_there.is_empty() && ids_here.lines().any(|l| l.trim() == id_there),
        "the loaded image keeps its id {id_there:?}: {ids_here}"
    );

    // A terminal is never written to, and an empty stdin is an error, not a hang.
    let no_input = strata(["load"]);
    assert_ne!(no_input.code, Some(0), "{}", no_input.describe());

    // FROM docker-archive:FILE builds on the archive's image.
    let ctx = out.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), format!("FROM docker-archive:{}\nRUN echo layered > /app/extra\n", path_str(&file))).unwrap();
    strata(["build", "-t", "e2e-from-docker-archive", &path_str(&ctx)]).ok();
    let ran = strata(["run", "--rm", "e2e-from-docker-archive", "cat", "/app/extra", "/app/greeting.txt"]).ok();
    assert!(ran.stdout.starts_with("layered\n"), "{}", ran.describe());
    assert_eq!(&ran.stdout["layered\n".len()..], fs::read_to_string(crate::support::fixtures().join("hello/greeting.txt")).unwrap());

    // A damaged archive is refused with the path named, and nothing is tagged.
    let bad = out.join("bad.tar");
    fs::write(&bad, b"not a tar at all").unwrap();
    let failed = strata(["load", "-i", &path_str(&bad)]);
    assert_eq!(failed.code, Some(1), "{}", failed.describe());
    assert!(failed.stderr.contains("bad.tar"), "{}", failed.describe());
}

#[test]
fn runc_runs_a_strata_bundle_rootless() {
    if skip_without_sandbox("runc_runs_a_strata_bundle_rootless") {
        return;
    }
    let hello = hello_image();
    let out = scratch("interop-bundle");
    let bundle = out.join("bundle");
    strata(["bundle", hello, &path_str(&bundle)]).ok();
    let config: serde_json::Value = serde_json::from_slice(&fs::read(bundle.join("config.json")).expect("config.json")).expect("json");
    assert_eq!(config["process"]["args"], serde_json::json!(["hello"]), "{config:#}");
    assert_eq!(config["process"]["cwd"], "/app");
    assert_eq!(config["process"]["user"]["uid"], 1000, "USER app resolved in the image's /etc/passwd");
    assert!(bundle.join("rootfs/usr/local/bin/hello").is_file());
    assert!(!out.join("bundle/rootfs.dir-inodes").exists() && fs::read_dir(&bundle).unwrap().count() == 2, "only rootfs and config.json");
    // A second bundle into a non-empty dir is refused.
    let again = strata(["bundle", hello, &path_str(&bundle)]);
    assert_eq!(again.code, Some(1), "{}", again.describe());

    // runc keeps its state under a short private root (its socket paths are limited too).
    let state = std::env::temp_dir().join(format!("runc-{}", std::process::id()));
    let mut cmd = Command::new("runc");
    cmd.arg("--root").arg(&state).args(["run", "--bundle", &path_str(&bundle), &format!("e2e-{}", std::process::id())]);
    let ran = run_command(cmd).ok();
    assert!(ran.stdout.contains("Hello from strata! I am app (uid 1000), working in /app."), "{}", ran.describe());

    // crun runs the same bundle where the host's cgroups allow it; this host family's
    // hybrid cgroup layout makes crun refuse every container, which it says plainly.
    let mut cmd = Command::new("crun");
    cmd.arg("--root").arg(&state).args(["run", "--bundle", &path_str(&bundle), &format!("e2e-crun-{}", std::process::id())]);
    let crun = run_command(cmd);
    if crun.success() {
        assert!(crun.stdout.contains("Hello from strata!"), "{}", crun.describe());
    } else {
        assert!(
            crun.stderr.contains("hybrid mode not supported"),
            "crun failed for another reason than the host's cgroups: {}",
            crun.describe()
        );
        eprintln!("crun: this host's hybrid cgroups are refused by crun (runc ran the bundle)");
    }
    let _ = fs::remove_dir_all(&state);
}

#[test]
fn dir_output_gives_the_files_owned_by_the_user() {
    if skip_without_sandbox("dir_output_gives_the_files_owned_by_the_user") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    with_base();
    let out = scratch("interop-dir");
    let context = fixture("hello");
    for (n, spec) in ["dir:{}", "type=local,dest={}"].iter().enumerate() {
        let dest = out.join(format!("files-{n}"));
        strata(["build", "-t", "e2e-dir-out", "--output", &spec.replace("{}", &path_str(&dest)), &context]).ok();
        let info = dest.join("app/build-info");
        let meta = fs::symlink_metadata(&info).unwrap_or_else(|e| panic!("{}: {e}", info.display()));
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750, "modes are kept");
        assert_eq!(meta.uid(), crate::support::euid(), "owned by the user, not a subordinate id");
        assert_eq!(
            fs::read(dest.join("app/greeting.txt")).unwrap(),
            fs::read(crate::support::fixtures().join("hello/greeting.txt")).unwrap()
        );
        assert_eq!(fs::read_link(dest.join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
        // The user can remove what strata wrote, without strata's help.
        fs::remove_dir_all(&dest).unwrap_or_else(|e| panic!("removing {}: {e}", dest.display()));
    }
    // A non-empty destination is refused rather than mixed into.
    let full = out.join("full");
    fs::create_dir_all(&full).unwrap();
    fs::write(full.join("keep"), b"mine").unwrap();
    let refused = strata(["build", "-t", "e2e-dir-refused", "--output", &format!("dir:{}", path_str(&full)), &context]);
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(refused.stderr.contains("not empty"), "{}", refused.describe());
    assert_eq!(fs::read(full.join("keep")).unwrap(), b"mine");
    let images = strata(["images"]).ok().stdout;
    assert!(!images.contains("e2e-dir-refused"), "a failed --output tags nothing: {images}");
}

#[test]
fn skopeo_copies_strata_outputs() {
    if skip_without_sandbox("skopeo_copies_strata_outputs") {
        return;
    }
    let hello = hello_image();
    let out = scratch("interop-skopeo");
    let layout = out.join("layout");
    let archive = out.join("hello-oci.tar");
    strata(["save", "--format", "oci-dir", "-o", &path_str(&layout), hello]).ok();
    strata(["save", "--format", "oci-archive", "-o", &path_str(&archive), hello]).ok();
    let digest_of = |reference: &str| run("skopeo", ["inspect", "--raw", reference]).ok().stdout;
    for (from, to) in [
        (format!("oci:{}:latest", path_str(&layout)), format!("oci:{}:copied", path_str(&out.join("copy-of-dir")))),
        (format!("oci-archive:{}", path_str(&archive)), format!("oci:{}:copied", path_str(&out.join("copy-of-archive")))),
        (format!("oci-archive:{}", path_str(&archive)), format!("dir:{}", path_str(&out.join("skopeo-dir")))),
    ] {
        // skopeo re-reads and re-hashes every blob while copying: a bad digest fails here.
        run("skopeo", ["copy", "--quiet", &from, &to]).ok();
        assert_eq!(digest_of(&from), digest_of(&to), "{from} -> {to}: the manifest is copied unchanged");
    }
    // A copy made by skopeo is an image strata builds on.
    let ctx = out.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM oci:{}:copied\nRUN cat /app/greeting.txt > /tmp/copied\n", path_str(&out.join("copy-of-archive"))),
    )
    .unwrap();
    strata(["build", "-t", "e2e-from-skopeo-copy", &path_str(&ctx)]).ok();
    let ran = strata(["run", "--rm", "e2e-from-skopeo-copy", "cat", "/tmp/copied"]).ok();
    assert_eq!(ran.stdout, fs::read_to_string(crate::support::fixtures().join("hello/greeting.txt")).unwrap());
}
