//! Single-id mode (a host without /etc/subuid ranges, simulated with the
//! fault-injection hook STRATA_TEST_IGNORE_SUBIDS=1): builds still work, one warning
//! says what is lost, and a RUN's chown to ids the namespace cannot map still reaches
//! the layer exactly.

use std::fs;

use crate::drivers::{build_busybox_in, strata_at};
use crate::layout::Layout;
use crate::support::{path_str, scratch, single_id_env, skip_without_sandbox};

#[test]
fn single_id_mode_keeps_chowned_owners_in_the_layer() {
    if skip_without_sandbox("single_id_mode_keeps_chowned_owners_in_the_layer") {
        return;
    }
    let single = single_id_env();
    let root = scratch("single-id").join("store");
    let map = strata_at(&root, None, &single, &["unshare", "cat", "/proc/self/uid_map"]).ok();
    let extents: Vec<&str> = map.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(extents.len(), 1, "one id mapped: {}", map.stdout);
    assert!(extents[0].split_whitespace().nth(2) == Some("1"), "a single id: {}", map.stdout);
    assert_eq!(map.stderr.matches("warning:").count(), 1, "the warning is printed once: {}", map.stderr);

    build_busybox_in(&root, None, &single).unwrap();
    let ctx = scratch("single-id-ctx");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN touch /owned && chown 1000:1000 /owned && mkdir /nobody && chown 65534:65534 /nobody \\\n    && chown -R 1000:100 /home/app\n",
    )
    .unwrap();
    let out = scratch("single-id-out").join("layout");
    let build =
        strata_at(&root, None, &single, &["build", "-t", "single", "--output", &format!("oci:{}:t", path_str(&out)), &path_str(&ctx)]).ok();
    assert_eq!(build.stderr.matches("warning:").count(), 1, "the warning is printed once per run: {}", build.stderr);

    let layout = Layout::open(&out);
    let manifest = layout.manifest(Some("t"));
    let top = Layout::layers(&manifest).last().cloned().expect("the RUN made a layer");
    let entries = layout.layer_entries(&top);
    let find = |p: &str| entries.iter().find(|e| e.path == p).unwrap_or_else(|| panic!("no {p} in the layer: {entries:?}"));
    assert_eq!((find("owned").uid, find("owned").gid), (1000, 1000));
    assert_eq!((find("nobody").uid, find("nobody").gid), (65534, 65534));
    assert_eq!((find("home/app").uid, find("home/app").gid), (1000, 100));
}

#[test]
fn single_id_mode_records_the_owners_copy_from_keeps() {
    if skip_without_sandbox("single_id_mode_records_the_owners_copy_from_keeps") {
        return;
    }
    let single = single_id_env();
    let root = scratch("single-id-from").join("store");
    build_busybox_in(&root, None, &single).unwrap();
    let ctx = scratch("single-id-from-ctx");
    let dockerfile = "FROM busybox AS src\nRUN echo s > /f && chown 1234:5678 /f\nFROM busybox\nCOPY --from=src /f /g\n";
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let out = scratch("single-id-from-out").join("layout");
    let tag = format!("oci:{}:t", path_str(&out));
    strata_at(&root, None, &single, &["build", "-t", "single-from", "--output", &tag, &path_str(&ctx)]).ok();
    let layout = Layout::open(&out);
    let manifest = layout.manifest(Some("t"));
    let top = Layout::layers(&manifest).last().cloned().expect("the COPY made a layer");
    let entries = layout.layer_entries(&top);
    let g = entries.iter().find(|e| e.path == "g").unwrap_or_else(|| panic!("no g in the layer: {entries:?}"));
    assert_eq!((g.uid, g.gid), (1234, 5678), "the stage's recorded owner is kept");
}
