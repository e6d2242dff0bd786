//! The walking skeleton's acceptance: rootless for real, valid OCI output that real tools
//! accept, ownership and whiteouts in layer tars, and a failing RUN reported properly.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::layout::{layer_history_count, Layout};
use crate::support::{
    egid, euid, fixture, fixtures, path_str, run, sandbox_required, scratch, skip_without_sandbox, strata, strings, with_base, world,
};

/// One extent of /proc/PID/uid_map: inside, outside, count.
fn parse_id_map(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let nums: Vec<u64> = line.split_whitespace().filter_map(|n| n.parse().ok()).collect();
            (nums.len() == 3).then(|| (nums[0], nums[1], nums[2]))
        })
        .collect()
}

/// This user's name, from /etc/passwd.
fn user_name(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[2] == uid.to_string()).then(|| fields[0].to_owned())
    })
}

/// The first subordinate id range of this user (by name or uid) in /etc/subuid or subgid.
fn subid_range(file: &str, uid: u32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(file).ok()?;
    let name = user_name(uid);
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.trim().split(':').collect();
        if fields.len() != 3 {
            return None;
        }
        let owner_matches = fields[0] == uid.to_string() || Some(fields[0]) == name.as_deref();
        let start = fields[1].parse().ok()?;
        let count: u64 = fields[2].parse().ok()?;
        (owner_matches && count > 0).then_some((start, count))
    })
}

fn check_map(kind: &str, map: &[(u64, u64, u64)], own: u32, range: Option<(u64, u64)>) {
    assert!(
        map.iter().any(|&(inside, outside, count)| inside == 0 && outside == u64::from(own) && count >= 1),
        "{kind}: container root should map to our own id {own}, got {map:?}"
    );
    assert!(map.iter().all(|&(_, outside, _)| outside != 0), "{kind}: host id 0 must not be mapped by a rootless user: {map:?}");
    if let Some((start, count)) = range {
        assert!(
            map.iter().any(|&(inside, outside, len)| inside >= 1 && outside == start && len == count),
            "{kind}: expected an extent mapping the subordinate range {start}+{count}, got {map:?}"
        );
    } else {
        eprintln!("{kind}: no subordinate range for uid {own}: single-id mapping {map:?}");
    }
}

#[test]
fn builder_runs_unprivileged_with_subordinate_ids() {
    if skip_without_sandbox("builder_runs_unprivileged_with_subordinate_ids") {
        return;
    }
    let uid = euid();
    if sandbox_required() {
        assert_ne!(uid, 0, "the e2e tests must run as an unprivileged user");
    } else if uid == 0 {
        eprintln!("skipped: running as root, strata uses no user namespace");
        return;
    }
    let root = path_str(&world().root);
    let uid_map = strata(["unshare", "cat", "/proc/self/uid_map"]).ok();
    let uid_map = parse_id_map(&uid_map.stdout);
    check_map("uid_map", &uid_map, uid, subid_range("/etc/subuid", uid));
    let gid_map = strata(["unshare", "cat", "/proc/self/gid_map"]).ok();
    let gid_map = parse_id_map(&gid_map.stdout);
    check_map("gid_map", &gid_map, egid(), subid_range("/etc/subgid", uid));

    // The builder itself, outside the namespace, is this unprivileged user too: a RUN
    // sees itself as root of its namespace, with our uid as the outside id.
    with_base();
    let seen = strata(["run", "--rm", "busybox", "cat", "/proc/self/uid_map"]).ok();
    let seen = parse_id_map(&seen.stdout);
    assert!(
        seen.iter().any(|&(inside, outside, _)| inside == 0 && outside == u64::from(uid)),
        "the sandbox should map container root to uid {uid} (store {root}): {seen:?}"
    );
}

#[test]
fn hello_output_is_accepted_by_skopeo_and_umoci() {
    if skip_without_sandbox("hello_output_is_accepted_by_skopeo_and_umoci") {
        return;
    }
    with_base();
    let out = scratch("hello-output");
    let archive = out.join("hello.tar");
    let layout_dir = out.join("layout");
    let dockerfile = fixture("hello/Dockerfile");
    let context = fixture("hello");
    strata(["build", "-f", &dockerfile, "-t", "e2e-hello-out", "--output", &format!("oci-archive:{}", path_str(&archive)), &context]).ok();
    strata(["build", "-f", &dockerfile, "-t", "e2e-hello-out", "--output", &format!("oci:{}:hello", path_str(&layout_dir)), &context]).ok();

    // Our own reading of the layout: layers match the history.
    let layout = Layout::open(&layout_dir);
    let manifest = layout.manifest(Some("hello"));
    let config = layout.config(&manifest);
    let layers = Layout::layers(&manifest);
    assert_eq!(layers.len(), layer_history_count(&config), "one non-empty history entry per layer: {config:#}");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(layers.len()), "one diff_id per layer");
    // busybox: COPY, COPY, RUN, RUN; hello: COPY, COPY, RUN (WORKDIR may add one).
    assert!(layers.len() >= 7, "expected at least 7 layers, got {}", layers.len());

    for reference in [format!("oci:{}:hello", path_str(&layout_dir)), format!("oci-archive:{}", path_str(&archive))] {
        let inspect = run("skopeo", ["inspect", reference.as_str()]).ok().json();
        let skopeo_layers = inspect["Layers"].as_array().expect("skopeo Layers");
        assert_eq!(skopeo_layers.len(), layers.len(), "{reference}: {inspect:#}");
        let env = strings(&inspect["Env"]);
        assert!(env.iter().any(|e| e == "GREETING=Hello from strata"), "{reference}: Env {env:?}");
        assert_eq!(inspect["Labels"]["org.example.demo"], "strata", "{reference}: {inspect:#}");
        assert_eq!(inspect["Labels"]["org.opencontainers.image.title"], "hello");
        let raw = run("skopeo", ["inspect", "--config", reference.as_str()]).ok().json();
        assert_eq!(raw["config"]["User"], "app", "{reference}: {raw:#}");
        assert_eq!(raw["config"]["WorkingDir"], "/app", "{reference}: {raw:#}");
    }

    // The archive holds the same image: unpack it with tar and read it the same way.
    let from_archive = Layout::from_archive(&archive, &out.join("archive"));
    let archived = from_archive.manifest(None);
    let archived_layers = Layout::layers(&archived);
    assert_eq!(archived_layers.len(), layers.len(), "{archived:#}");
    let top = from_archive.layer_entries(&archived_layers[archived_layers.len() - 1]);
    assert!(
        top.iter().any(|e| e.path == "app/build-info" && e.uid == 1000 && e.mode & 0o7777 == 0o750),
        "the RUN layer holds app/build-info (1000, 0750): {top:#?}"
    );

    // umoci unpacks it rootless; the files are those the Dockerfile made.
    let bundle = out.join("bundle");
    run("umoci", ["unpack", "--rootless", "--image", &format!("{}:hello", path_str(&layout_dir)), &path_str(&bundle)]).ok();
    let rootfs = bundle.join("rootfs");
    let expected = fs::read(fixtures().join("hello/greeting.txt")).expect("fixture");
    assert_eq!(fs::read(rootfs.join("app/greeting.txt")).expect("app/greeting.txt"), expected);
    let mode = |rel: &str| fs::symlink_metadata(rootfs.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")).permissions().mode() & 0o7777;
    let info = fs::read_to_string(rootfs.join("app/build-info")).expect("app/build-info");
    assert!(info.starts_with("built by a RUN step on "), "build-info: {info:?}");
    assert_eq!(mode("app/build-info"), 0o750, "RUN chmod 0750");
    assert_eq!(mode("usr/local/bin/hello"), 0o755, "RUN chmod 0755");
    assert_eq!(
        fs::read(rootfs.join("usr/local/bin/hello")).expect("hello script"),
        fs::read(fixtures().join("hello/hello.sh")).expect("fixture"),
    );
    assert_eq!(mode("tmp"), 0o1777, "the base image's /tmp");
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).expect("bin/sh is a symlink"),
        std::path::Path::new("/bin/busybox"),
        "busybox --install -s"
    );
}

#[test]
fn chown_and_delete_show_in_layer_headers() {
    if skip_without_sandbox("chown_and_delete_show_in_layer_headers") {
        return;
    }
    with_base();
    let out = scratch("layers");
    let layout_dir = out.join("layout");
    strata(["build", "-t", "e2e-layers", "--output", &format!("oci:{}:layers", path_str(&layout_dir)), &fixture("e2e/layers")]).ok();
    let layout = Layout::open(&layout_dir);
    let manifest = layout.manifest(Some("layers"));
    let layers = Layout::layers(&manifest);
    assert!(layers.len() >= 3, "base layers plus two RUN layers: {manifest:#}");
    let chown_layer = layout.layer_entries(&layers[layers.len() - 2]);
    let rm_layer = layout.layer_entries(&layers[layers.len() - 1]);

    let owned = chown_layer
        .iter()
        .find(|e| e.path == "data/owned.txt")
        .unwrap_or_else(|| panic!("no data/owned.txt in the chown layer: {chown_layer:#?}"));
    assert_eq!((owned.uid, owned.gid), (1000, 1000), "chown 1000:1000: {owned:?}");
    assert_eq!(owned.mode & 0o7777, 0o640, "chmod 0640: {owned:?}");
    assert!(owned.kind.is_file(), "{owned:?}");
    let data = chown_layer.iter().find(|e| e.path == "data").unwrap_or_else(|| panic!("no data/ dir in the chown layer: {chown_layer:#?}"));
    assert_eq!((data.uid, data.gid), (0, 0), "mkdir as root: {data:?}");
    assert!(data.kind.is_dir(), "{data:?}");

    assert!(rm_layer.iter().any(|e| e.path == "etc/.wh.group"), "rm /etc/group should give etc/.wh.group: {rm_layer:#?}");
    assert!(
        !rm_layer.iter().any(|e| e.path == "etc/group" || e.path.ends_with(".wh..opq")),
        "no etc/group and no opaque marker in the rm layer: {rm_layer:#?}"
    );
    assert!(rm_layer.iter().all(|e| !e.path.starts_with("data")), "the rm layer must hold only its own changes: {rm_layer:#?}");
}

#[test]
fn failing_run_names_step_line_and_exit_status() {
    if skip_without_sandbox("failing_run_names_step_line_and_exit_status") {
        return;
    }
    with_base();
    let failed = strata(["build", "-t", "e2e-fail", &fixture("e2e/fail")]);
    assert_eq!(failed.code, Some(1), "a failing RUN exits 1: {}", failed.describe());
    let err = &failed.stderr;
    assert!(err.contains("RUN exit 3") || err.contains("STEP 3/4"), "the step: {err}");
    assert!(err.contains("Dockerfile:4") || err.contains("line 4"), "the Dockerfile line: {err}");
    assert!(err.contains("exit status 3") || err.contains("exit code 3"), "the exit status: {err}");
    assert!(
        !failed.stdout.contains("reached-42") && !err.contains("reached-42"),
        "steps after the failure must not run: {}",
        failed.describe()
    );
    let images = strata(["images"]).ok();
    assert!(!images.stdout.contains("e2e-fail"), "a failed build tags nothing: {}", images.stdout);
}
