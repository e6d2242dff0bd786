//! strata where CI runs (issue 14, docs/ci.md setups A-D): inside real containers,
//! building fixtures/hello (RUN, COPY, a chown to uid 1000), and giving the same
//! layers, entry for entry, as the same build on the host.
//!
//! The containers are podman's, from a root made here: the host's static busybox,
//! strata and the libraries it links, nothing else (no image registry needed).
//! podman runs with `--runtime runc --network host` and explicit rlimits (crun
//! refuses this machine's hybrid cgroups; root here lacks CAP_SYS_RESOURCE). It
//! is rootless when this binary runs as an ordinary user (as scripts/test.sh runs
//! it) and rootful when it runs as root (scripts/test.sh runs the B and C tests a
//! second time that way).
//! - A: `unshare --user --map-root-user --mount`, and root in a rootless podman
//!   container (root of a user namespace without CAP_SYS_ADMIN);
//! - B: uid 1000 with no subuid range and no newuidmap, under podman's default
//!   seccomp profile and capabilities;
//! - C: root under Docker's default seccomp profile with no added capability:
//!   neither unshare nor mount is allowed, RUN is chrooted;
//! - D: nested in strata's own `strata run`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{euid, fixture, path_str, run, run_command, scratch, skip_without_sandbox, strata, strata_bin, with_base, Run};

/// Docker's default seccomp profile (moby's default.json; the same bytes as
/// ../shared/testdata/docker-default-seccomp.json).
const DOCKER_SECCOMP: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sandbox/seccomp/docker-default.json"));

/// A container root: busybox as /bin/sh, strata, its shared libraries, and the
/// dirs a build inside needs (world-writable /tmp for a non-root user's store).
fn container_root(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "usr/local/bin", "etc", "tmp", "root", "proc", "dev", "sys", "exp", "out"] {
        fs::create_dir_all(root.join(d)).expect("rootfs dir");
    }
    set_mode(&root.join("tmp"), 0o1777);
    set_mode(&root.join("out"), 0o1777);
    let busybox = std::env::var("STRATA_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".into());
    fs::copy(&busybox, root.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "cat", "grep", "mkdir", "tar", "ls", "id", "env", "head", "ps", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    fs::copy(strata_bin(), root.join("usr/local/bin/strata")).expect("copy strata");
    for lib in shared_libraries(&strata_bin()) {
        let dest = root.join(lib.strip_prefix("/").expect("absolute"));
        fs::create_dir_all(dest.parent().expect("a parent")).expect("lib dir");
        fs::copy(&lib, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n").expect("passwd");
    fs::write(root.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("group");
    root
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The libraries `ldd` lists for `bin`, the dynamic loader included.
fn shared_libraries(bin: &Path) -> Vec<PathBuf> {
    let out = run("ldd", [path_str(bin)]).ok().stdout;
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split("=>").nth(1).unwrap_or(l).split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// What every setup builds: fixtures/hello, and the busybox base it starts from as
/// an oci-archive the container's strata loads.
struct Inputs {
    dir: PathBuf,
    /// The layers of the same build on the host.
    host_layers: Vec<Vec<String>>,
}

fn inputs(name: &str) -> Inputs {
    inputs_of(name, Path::new(&fixture("hello")))
}

/// [`inputs`] for the context `ctx`, staged as /exp/hello.
fn inputs_of(name: &str, ctx: &Path) -> Inputs {
    with_base();
    let dir = scratch(name);
    let exp = dir.join("exp");
    fs::create_dir_all(&exp).expect("exp dir");
    strata(["save", "--format", "oci-archive", "-o", &path_str(&exp.join("busybox.tar")), "busybox:latest"]).ok();
    run("cp", ["-r", &path_str(ctx), &path_str(&exp.join("hello"))]).ok();
    let tag = format!("{name}-host");
    strata(["build", "-q", "-t", &tag, &path_str(ctx)]).ok();
    let archive = dir.join("host.tar");
    strata(["save", "--format", "oci-archive", "-o", &path_str(&archive), &tag]).ok();
    let host_layers = layer_entries(&archive, &dir.join("host-unpacked"));
    Inputs { dir, host_layers }
}

/// Each layer's entries as `tar -tv` shows them with numeric owners, dates left out
/// (a RUN's files are new each build): type and mode, owner, size, name, link.
fn layer_entries(archive: &Path, unpack: &Path) -> Vec<Vec<String>> {
    fs::create_dir_all(unpack).expect("unpack dir");
    run("tar", ["-xf", &path_str(archive), "-C", &path_str(unpack)]).ok();
    let blob = |digest: &str| unpack.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let read = |p: PathBuf| -> serde_json::Value { serde_json::from_slice(&fs::read(&p).expect("read json")).expect("json") };
    let index = read(unpack.join("index.json"));
    let manifest = read(blob(index["manifests"][0]["digest"].as_str().expect("a manifest")));
    let layers = manifest["layers"].as_array().expect("layers");
    layers
        .iter()
        .map(|l| {
            let path = blob(l["digest"].as_str().expect("digest"));
            let listing = run("tar", ["-tzv", "--numeric-owner", "-f", &path_str(&path)]).ok().stdout;
            listing
                .lines()
                .map(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    format!("{} {} {} {}", f[0], f[1], f[2], f[5..].join(" "))
                })
                .collect()
        })
        .collect()
}

/// Fails naming the first layer that differs, with only that layer's entries.
fn assert_same_layers(got: &[Vec<String>], host: &[Vec<String>]) {
    assert_eq!(got.len(), host.len(), "layer counts differ from the host's");
    for (i, (g, h)) in got.iter().zip(host).enumerate() {
        assert_eq!(g, h, "layer {i} differs from the host's");
    }
}

/// podman as whoever runs this test, with this machine's settings, its store in `dir`.
fn podman(dir: &Path) -> Command {
    let runroot = Path::new("/tmp").join(format!("pm-{}-{}", std::process::id(), dir.file_name().expect("a name").to_string_lossy()));
    let mut cmd = Command::new("podman");
    cmd.arg("--root").arg(dir.join("podman")).arg("--runroot").arg(runroot);
    cmd.args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
    cmd.args(["run", "--rm", "--runtime", "runc", "--network", "host"]);
    cmd.args(["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]);
    cmd
}

/// The script each container runs: load the base, show `info`, build, save.
const BUILD_INSIDE: &str = "strata load -i /exp/busybox.tar >/dev/null && strata info && strata build -t hello /exp/hello && strata save --format oci-archive -o /out/hello.tar hello && ${AFTER:-true}";

/// Runs the build in a podman container made with `extra` options and returns its
/// output, after checking its layers against the host's.
fn build_in_podman(inputs: &Inputs, extra: &[&str]) -> Run {
    let root = container_root(&inputs.dir);
    let mut cmd = podman(&inputs.dir);
    cmd.arg("-v").arg(format!("{}:/exp:ro", path_str(&inputs.dir.join("exp"))));
    cmd.arg("-v").arg(format!("{}:/out", path_str(&root.join("out"))));
    cmd.args(extra).arg("--rootfs").arg(&root).args(["/bin/sh", "-c", BUILD_INSIDE]);
    let ran = run_command(cmd);
    assert!(ran.success(), "the build in the container failed: {}", ran.describe());
    let layers = layer_entries(&root.join("out/hello.tar"), &inputs.dir.join("container-unpacked"));
    assert_same_layers(&layers, &inputs.host_layers);
    ran
}

/// The `setup:` line of `strata info` in a run's output.
fn setup_line(ran: &Run) -> String {
    ran.stdout.lines().find(|l| l.starts_with("setup:")).unwrap_or_else(|| panic!("no setup line: {}", ran.describe())).to_string()
}

#[test]
fn setup_a_unshare_map_root_user_builds_the_host_layers() {
    if skip_without_sandbox("setup_a_unshare_map_root_user_builds_the_host_layers") {
        return;
    }
    let inputs = inputs("setup-a-unshare");
    let store = inputs.dir.join("store");
    let out = inputs.dir.join("out.tar");
    let exp = inputs.dir.join("exp");
    let script = format!(
        "set -e; S={bin}; $S --root {store} load -i {exp}/busybox.tar >/dev/null; $S --root {store} info; $S --root {store} build -t hello {exp}/hello; $S --root {store} save --format oci-archive -o {out} hello",
        bin = path_str(&strata_bin()),
        store = path_str(&store),
        exp = path_str(&exp),
        out = path_str(&out)
    );
    let ran = run("unshare", ["--user", "--map-root-user", "--mount", "sh", "-c", &script]);
    assert!(ran.success(), "{}", ran.describe());
    assert!(setup_line(&ran).contains("A: root inside a user namespace"), "{}", ran.stdout);
    assert_same_layers(&layer_entries(&out, &inputs.dir.join("unpacked")), &inputs.host_layers);
    let _ = run(strata_bin(), ["--root", &path_str(&store), "unshare", "rm", "-rf", &path_str(&store)]);
}

#[test]
fn setup_a_root_in_a_rootless_podman_container_builds_the_host_layers() {
    if skip_without_sandbox("setup_a_root_in_a_rootless_podman_container_builds_the_host_layers") {
        return;
    }
    assert_ne!(euid(), 0, "setup A needs rootless podman: run this test as an ordinary user");
    let inputs = inputs("setup-a-podman");
    let ran = build_in_podman(&inputs, &[]);
    assert!(setup_line(&ran).contains("A: root inside a user namespace without CAP_SYS_ADMIN"), "{}", ran.stdout);
    // podman masks paths below /proc: a RUN there gets the outer /proc, bound.
    assert!(ran.stdout.contains("outer /proc bound"), "{}", ran.stdout);
}

#[test]
fn setup_b_uid_1000_without_subuids_in_podman_builds_the_host_layers() {
    if skip_without_sandbox("setup_b_uid_1000_without_subuids_in_podman_builds_the_host_layers") {
        return;
    }
    let inputs = inputs("setup-b");
    let ran = build_in_podman(&inputs, &["--user", "1000:1000", "-e", "HOME=/tmp"]);
    assert!(setup_line(&ran).starts_with("setup:          B: one id mapped"), "{}", ran.stdout);
}

#[test]
fn setup_c_under_dockers_default_seccomp_builds_the_host_layers_chrooted() {
    if skip_without_sandbox("setup_c_under_dockers_default_seccomp_builds_the_host_layers_chrooted") {
        return;
    }
    let inputs = inputs("setup-c");
    let profile = inputs.dir.join("docker-default.json");
    fs::write(&profile, DOCKER_SECCOMP).expect("write the profile");
    let opt = format!("seccomp={}", path_str(&profile));
    let ran = build_in_podman(&inputs, &["--security-opt", &opt]);
    assert!(setup_line(&ran).contains("C: no namespaces and no mounts"), "{}", ran.stdout);
    // The trade-off is stated once per command: `info` and `build` each say it.
    let said = ran.stderr.matches("not isolated from strata, as with Kaniko").count();
    assert_eq!(said, 2, "{}", ran.stderr);
}

/// What a container's mounts lend a RUN, which setup C lends the copied tree and
/// takes back: a heredoc script under /dev/pipes, /dev/null. And what a pid
/// namespace ends, which setup C must end itself: a job left in the background.
const LENT_AND_LEFT: &str = "FROM busybox:latest
RUN <<EOT
#!/bin/sh
echo from a heredoc > /heredoc.txt
EOT
RUN echo discarded > /dev/null && echo kept > /kept.txt
RUN sleep 1000 </dev/null >/dev/null 2>&1 & echo started
";

#[test]
fn setup_c_lends_pipes_and_devices_back_and_leaves_no_process_running() {
    if skip_without_sandbox("setup_c_lends_pipes_and_devices_back_and_leaves_no_process_running") {
        return;
    }
    let ctx = scratch("setup-c-extras-ctx");
    fs::write(ctx.join("Dockerfile"), LENT_AND_LEFT).expect("Dockerfile");
    let inputs = inputs_of("setup-c-extras", &ctx);
    let profile = inputs.dir.join("docker-default.json");
    fs::write(&profile, DOCKER_SECCOMP).expect("write the profile");
    let opt = format!("seccomp={}", path_str(&profile));
    // build_in_podman compares every layer with the host's: no dev/ entry, the
    // heredoc's and /dev/null's output as on the host.
    let ran = build_in_podman(&inputs, &["--security-opt", &opt, "--env", "AFTER=ps"]);
    assert!(setup_line(&ran).contains("C: no namespaces and no mounts"), "{}", ran.stdout);
    assert!(ran.stdout.contains("PID"), "ps ran after the build: {}", ran.stdout);
    let leftover = ran.stdout.lines().filter(|l| l.contains("sleep 1000")).collect::<Vec<_>>();
    assert!(leftover.is_empty(), "the background job outlived its RUN: {leftover:?}");
}

#[test]
fn setup_d_strata_run_of_a_strata_image_builds_hello_inside() {
    if skip_without_sandbox("setup_d_strata_run_of_a_strata_image_builds_hello_inside") {
        return;
    }
    let inputs = inputs("setup-d");
    let root = container_root(&inputs.dir);
    // The strata image: the container root above, FROM scratch.
    let image_ctx = inputs.dir.join("image");
    fs::create_dir_all(&image_ctx).expect("image context");
    fs::write(image_ctx.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin:/bin\nCMD [\"strata\", \"info\"]\n")
        .expect("Dockerfile");
    run("cp", ["-a", &path_str(&root), &path_str(&image_ctx.join("rootfs"))]).ok();
    strata(["build", "-q", "-t", "setup-d-strata", &path_str(&image_ctx)]).ok();
    let out = inputs.dir.join("out");
    fs::create_dir_all(&out).expect("out dir");
    set_mode(&out, 0o777);
    let exp = format!("{}:/exp:ro", path_str(&inputs.dir.join("exp")));
    let outv = format!("{}:/out", path_str(&out));
    let ran = strata(["run", "--rm", "-v", &exp, "-v", &outv, "setup-d-strata", "sh", "-c", BUILD_INSIDE]);
    assert!(ran.success(), "{}", ran.describe());
    assert!(ran.stdout.contains("D: inside strata run"), "{}", ran.stdout);
    // As root under the run's default seccomp profile (Docker's), D is setup C.
    assert!(setup_line(&ran).contains("C: no namespaces and no mounts"), "{}", ran.stdout);
    assert_same_layers(&layer_entries(&out.join("hello.tar"), &inputs.dir.join("unpacked")), &inputs.host_layers);
}
