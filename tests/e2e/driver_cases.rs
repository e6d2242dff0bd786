//! Storage-driver behaviour beyond the diff matrix (`drivers.rs`): a base image's
//! own fidelity (file capabilities, OCI whiteouts) on every driver, layer dirs one
//! driver made stacked by the others, forced drivers that cannot work here (they fail
//! with advice and never fall back), and a full disk.

use std::fs;
use std::path::Path;

use crate::drivers::{build_busybox_in, check_clean, dump, rich_entries, skip_driver, strata_at, DRIVERS};
use crate::layout::Layout;
use crate::support::{path_str, scratch, skip_without_sandbox, stage_busybox_context, strata_bin};

/// `security.capability` v2 for cap_net_bind_service=ep (what `setcap` writes).
const CAP_NET_BIND_EP: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// A base layout (tag `hostile`): busybox, then a layer with `d/{a,b}` and `x`, then one
/// that makes `d` opaque (keeping only `d/c`), whites out `x` and adds a file with a
/// file capability. A RUN chmods that file and records what it sees; its layer must hold
/// exactly the chmodded file (capability intact) and the listing.
fn base_fidelity_for(test: &str, driver: &str) {
    use crate::hostile::{hostile_layout, RawTar};
    if skip_driver(test, driver) {
        return;
    }
    let dir = scratch(&format!("base-fidelity-{driver}"));
    let layout = dir.join("base");
    let first = RawTar::default().dir("d").file("d/a", "a\n").file("d/b", "b\n").file("x", "x\n").finish();
    let second = RawTar::default()
        .dir("d")
        .file("d/.wh..wh..opq", "")
        .file("d/c", "c\n")
        .file(".wh.x", "")
        .file_with_xattr("capfile", "cap\n", 0o755, "security.capability", &CAP_NET_BIND_EP)
        .finish();
    hostile_layout(&layout, &[first, second], true);
    let ctx = dir.join("context");
    fs::create_dir_all(&ctx).expect("create context");
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM oci:{}:hostile\nRUN chmod 0750 /capfile && ls -A /d > /listing && {{ test -e /x && echo x-present || echo x-gone; }} >> /listing\n",
            path_str(&layout)
        ),
    )
    .expect("write Dockerfile");
    let root = dir.join("store");
    let out = dir.join("out");
    strata_at(
        &root,
        Some(driver),
        &[],
        &["build", "-t", "base-fidelity:latest", "--output", &format!("oci:{}:b", path_str(&out)), &path_str(&ctx)],
    )
    .ok();
    let layout = Layout::open(&out);
    let manifest = layout.manifest(Some("b"));
    let top = Layout::layers(&manifest).last().cloned().expect("layers");
    let entries = rich_entries(&layout, &top);
    check_clean(driver, "RUN", &entries);
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["capfile", "listing"], "{driver}: the RUN layer holds the chmodded file and the listing only:\n{}", dump(&entries));
    let listing = &entries[1];
    assert!(
        listing.content_is(b"c\nx-gone\n"),
        "{driver}: the base's opaque dir shows only d/c and its whiteout hides /x: {}",
        listing.key()
    );
    let cap = &entries[0];
    assert_eq!(cap.mode & 0o7777, 0o750, "{driver}: {}", cap.key());
    assert!(cap.content_is(b"cap\n"), "{driver}: {}", cap.key());
    assert_eq!(
        cap.xattrs.get("security.capability").map(Vec::as_slice),
        Some(&CAP_NET_BIND_EP[..]),
        "{driver}: the file capability survives unpack and copy-up: {}",
        cap.key()
    );
}

#[test]
fn base_fidelity_overlay() {
    base_fidelity_for("base_fidelity_overlay", "overlay");
}

#[test]
fn base_fidelity_fuse_overlayfs() {
    base_fidelity_for("base_fidelity_fuse_overlayfs", "fuse-overlayfs");
}

#[test]
fn base_fidelity_vfs() {
    base_fidelity_for("base_fidelity_vfs", "vfs");
}

/// Layer dirs a fuse-overlayfs build made are stacked by the other drivers with the
/// same meaning: fuse-overlayfs marks opaque dirs its own way (a `.wh..wh..opq` file,
/// a `.wh..opq` device), which kernel overlay and vfs would show as files and see
/// through.
#[test]
fn drivers_fuse_layer_dirs_stack_under_every_driver() {
    let test = "drivers_fuse_layer_dirs_stack_under_every_driver";
    if DRIVERS.iter().any(|d| skip_driver(test, d)) {
        return;
    }
    let dir = scratch("fuse-then-others");
    let root = dir.join("store");
    build_busybox_in(&root, Some("fuse-overlayfs"), &[]).unwrap_or_else(|e| panic!("{e}"));
    let ctx = dir.join("context");
    fs::create_dir_all(&ctx).expect("create context");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\n\
         RUN mkdir -p /q/o && echo 1 > /q/o/a && echo 2 > /q/gone\n\
         RUN rm /q/gone && rm -rf /q/o && mkdir /q/o && echo 3 > /q/o/b && mkdir /q/newdir && echo 4 > /q/newdir/c\n",
    )
    .expect("write Dockerfile");
    strata_at(&root, Some("fuse-overlayfs"), &[], &["build", "-t", "fuse-made:latest", &path_str(&ctx)]).ok();
    for driver in DRIVERS {
        let out = strata_at(&root, Some(driver), &[], &["run", "--rm", "fuse-made:latest", "sh", "-c", "ls -A /q /q/o /q/newdir"]).ok();
        assert_eq!(
            out.stdout,
            "/q:\nnewdir\no\n\n/q/newdir:\nc\n\n/q/o:\nb\n",
            "{driver} stacking fuse-overlayfs's layer dirs: the replaced dir shows only its new file, no marker files: {}",
            out.describe()
        );
    }
}

/// Too many layers for one kernel overlay mount (its options must fit in a page): a
/// probed overlay falls back to fuse-overlayfs for that mount, a forced one fails and
/// says what to use instead, and never becomes another driver silently.
#[test]
fn drivers_forced_overlay_never_falls_back() {
    let test = "drivers_forced_overlay_never_falls_back";
    if skip_driver(test, "fuse-overlayfs") {
        return;
    }
    crate::support::with_base();
    let ctx = scratch("many-layers");
    let mut dockerfile = String::from("FROM busybox:latest\n");
    for i in 0..60 {
        dockerfile.push_str(&format!("RUN echo {i} > /f{i}\n"));
    }
    fs::write(ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    let root = crate::support::world().root.clone();
    let probed = strata_at(&root, None, &[], &["build", "-t", "many-layers:latest", &path_str(&ctx)]);
    let probed_driver =
        strata_at(&root, None, &[], &["info", "--json"]).ok().json()["storage_driver"].as_str().unwrap_or_default().to_owned();
    if probed_driver == "overlay" {
        let probed = probed.ok();
        assert!(probed.stderr.contains("using fuse-overlayfs"), "{test}: a probed overlay falls back, and says so: {}", probed.describe());
    } else {
        probed.ok();
    }
    let forced = strata_at(&root, Some("overlay"), &[], &["run", "--rm", "many-layers:latest", "cat", "/f59"]);
    assert!(!forced.success(), "{test}: a forced overlay cannot mount 64 layers: {}", forced.describe());
    assert!(!forced.stdout.contains("59"), "{test}: the command must not have run on another driver: {}", forced.describe());
    assert!(!forced.stderr.contains("using fuse-overlayfs"), "{test}: no silent fallback: {}", forced.describe());
    assert!(
        forced.stderr.contains("storage driver overlay") && forced.stderr.contains("--storage-driver fuse-overlayfs"),
        "{test}: the error names the driver and suggests another: {}",
        forced.describe()
    );
    let fuse = strata_at(&root, Some("fuse-overlayfs"), &[], &["run", "--rm", "many-layers:latest", "cat", "/f59"]).ok();
    assert_eq!(fuse.stdout, "59\n", "{test}: the suggested driver works: {}", fuse.describe());
}

/// A full disk while committing a layer or unpacking a base says so and names the
/// store path. The store lives on a 10 MiB tmpfs mounted inside `strata unshare` (a
/// user namespace may mount tmpfs), which vanishes with it.
#[test]
fn drivers_full_disk_is_reported_as_such() {
    let test = "drivers_full_disk_is_reported_as_such";
    if skip_without_sandbox(test) {
        return;
    }
    let dir = scratch("disk-full");
    let mnt = dir.join("mnt");
    let busybox = dir.join("busybox");
    let commit = dir.join("commit");
    let unpack = dir.join("unpack");
    for d in [&mnt, &busybox, &commit, &unpack] {
        fs::create_dir_all(d).expect("create dir");
    }
    stage_busybox_context(&busybox).unwrap_or_else(|e| panic!("{e}"));
    // 4 MB that gzip cannot shrink: the upper dir fits, the blob beside it does not.
    fs::write(commit.join("Dockerfile"), "FROM busybox:latest\nRUN head -c 4000000 /dev/urandom > /r\n").expect("write Dockerfile");
    // A base layer whose blob is small (zeros) but whose content (12 MB) is not.
    let layout = dir.join("big-base");
    let zeros = "\0".repeat(12 << 20);
    crate::hostile::hostile_layout(&layout, &[crate::hostile::RawTar::default().file("zeros", &zeros).finish()], true);
    fs::write(unpack.join("Dockerfile"), format!("FROM oci:{}:hostile\nRUN true\n", path_str(&layout))).expect("write Dockerfile");
    let (bin, store) = (path_str(&strata_bin()), path_str(&mnt.join("store")));
    let script = format!(
        "mount -t tmpfs -o size=10m tmpfs {mnt} || exit 99; \
         {bin} --root {store} build -q -t busybox:latest {busybox} >/dev/null || exit 98; \
         echo '== commit'; {bin} --root {store} build -t full-commit {commit} 2>&1; echo \"rc=$?\"; \
         echo '== unpack'; {bin} --root {store} build -t full-unpack {unpack} 2>&1; echo \"rc=$?\"; \
         echo '== images'; {bin} --root {store} images",
        mnt = path_str(&mnt),
        busybox = path_str(&busybox),
        commit = path_str(&commit),
        unpack = path_str(&unpack),
    );
    let out = strata_at(&dir.join("outer"), None, &[], &["unshare", "sh", "-c", &script]).ok();
    let text = &out.stdout;
    let section = |name: &str| {
        let start = text.find(&format!("== {name}\n")).unwrap_or_else(|| panic!("{test}: no {name} section: {}", out.describe()));
        let rest = &text[start..];
        rest[..rest[3..].find("== ").map_or(rest.len(), |i| i + 3)].to_string()
    };
    for (name, path_part) in [("commit", "/oci/blobs/"), ("unpack", "/tmp/step-")] {
        let s = section(name);
        assert!(s.contains("rc=1"), "{test}: the {name} build fails: {s}");
        let line = s
            .lines()
            .find(|l| l.contains("the disk is full"))
            .unwrap_or_else(|| panic!("{test}: {name} does not say the disk is full: {s}"));
        assert!(
            line.contains(&format!("{store}{path_part}")),
            "{test}: {name}: the error names the path in the store ({store}{path_part}...): {line}"
        );
        assert!(!s.contains("panicked"), "{s}");
    }
    let images = section("images");
    assert!(images.contains("busybox") && !images.contains("full-"), "{test}: failed builds tag nothing: {images}");
}

/// A forced driver that cannot work here fails with what to use instead, and never
/// switches to another driver behind the user's back.
#[test]
fn drivers_forced_fuse_without_binary_fails_with_advice() {
    let test = "drivers_forced_fuse_without_binary_fails_with_advice";
    if skip_without_sandbox(test) {
        return;
    }
    let dir = scratch("forced-no-fuse");
    // A PATH with the id-mapping helpers and nothing else: no fuse-overlayfs.
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).expect("create bin dir");
    for helper in ["newuidmap", "newgidmap"] {
        let found = ["/usr/bin", "/bin", "/usr/local/bin"].iter().map(|d| Path::new(d).join(helper)).find(|p| p.exists());
        let found = found.unwrap_or_else(|| panic!("{test}: {helper} is not installed"));
        std::os::unix::fs::symlink(&found, bin.join(helper)).expect("link helper");
    }
    let root = dir.join("store");
    let ctx = scratch("forced-no-fuse-context");
    stage_busybox_context(&ctx).unwrap_or_else(|e| panic!("{e}"));
    let bin_path = path_str(&bin);
    let run = strata_at(&root, Some("fuse-overlayfs"), &[("PATH", bin_path.as_str())], &["build", "-t", "noway:latest", &path_str(&ctx)]);
    assert!(!run.success(), "{test}: the build cannot mount anything: {}", run.describe());
    assert!(run.stderr.contains("fuse-overlayfs is not installed"), "{test}: the error says why: {}", run.describe());
    assert!(run.stderr.contains("--storage-driver vfs"), "{test}: the error says what to use instead: {}", run.describe());
    assert!(!run.stderr.contains("panicked"), "{}", run.describe());
    let images = strata_at(&root, None, &[], &["images"]).ok();
    assert!(!images.stdout.contains("noway"), "{test}: a failed build tags nothing: {}", images.describe());
    // The same store works with the driver the error suggests.
    let vfs = strata_at(&root, Some("vfs"), &[("PATH", bin_path.as_str())], &["build", "-t", "noway:latest", &path_str(&ctx)]).ok();
    assert!(!vfs.stderr.contains("fuse"), "{test}: vfs needs no fuse: {}", vfs.describe());
    let out = strata_at(&root, Some("vfs"), &[("PATH", bin_path.as_str())], &["run", "--rm", "noway:latest", "cat", "/etc/group"]).ok();
    assert!(out.stdout.starts_with("root:"), "{test}: {}", out.describe());
}
