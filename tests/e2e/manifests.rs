//! Multi-platform images and registries (issue 15, acceptance 2 and 3): an index is
//! pushed with every manifest it lists (`push`, `--output docker://`), a fresh store
//! pulls one platform's manifest by its registry digest (or with `--all-platforms`
//! the whole index), skopeo copies the whole index, and `strata manifest` joins
//! images that runners pushed by digest into an index podman pulls per architecture.

use std::fs;
use std::path::Path;

use crate::drivers::strata_at;
use crate::interop::podman;
use crate::platforms::{with_platform_base, BASE};
use crate::registry_server::Registry;
use crate::support::{path_str, run, scratch, skip_without_sandbox, strata};

/// The `manifests` of the index at `reference` (skopeo's raw view): (architecture,
/// digest) pairs in the index's order.
fn raw_entries(reference: &str) -> (serde_json::Value, Vec<(String, String)>) {
    let raw = run("skopeo", ["inspect", "--raw", "--tls-verify=false", reference]).ok().json();
    let entries = raw["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("{reference} is no index: {raw}"))
        .iter()
        .map(|m| (m["platform"]["architecture"].as_str().unwrap_or_default().to_string(), m["digest"].as_str().unwrap().to_string()))
        .collect();
    (raw, entries)
}

fn digest_of(entries: &[(String, String)], arch: &str) -> String {
    entries.iter().find(|(a, _)| a == arch).unwrap_or_else(|| panic!("no {arch} in {entries:?}")).1.clone()
}

#[test]
fn a_pushed_index_pulls_per_platform_and_skopeo_copies_it_whole() {
    if skip_without_sandbox("a_pushed_index_pulls_per_platform_and_skopeo_copies_it_whole") {
        return;
    }
    with_platform_base();
    let dir = scratch("manifests-push");
    let registry = Registry::start(&dir, None);
    let dest = format!("{}/e2e/multi:v1", registry.addr);
    let digestfile = dir.join("digest");
    let pushed = strata(["push", "--digestfile", &path_str(&digestfile), BASE, &dest]).ok();
    let index_digest = pushed.stdout.trim().to_string();
    assert_eq!(fs::read_to_string(&digestfile).unwrap().trim(), index_digest, "{}", pushed.describe());
    let (raw, entries) = raw_entries(&format!("docker://{}/e2e/multi@{index_digest}", registry.addr));
    assert_eq!(entries.len(), 2, "{raw}");
    let arm = digest_of(&entries, "arm64");

    // A fresh store gets the arm64 manifest, byte for byte: the registry's digest.
    let fresh = dir.join("fresh-store");
    strata_at(&fresh, None, &[], &["pull", "--platform", "linux/arm64", &dest]).ok();
    let inspect = strata_at(&fresh, None, &[], &["inspect", &dest]).ok().json();
    assert_eq!(inspect[0]["Digest"], arm.as_str(), "{inspect:#}");
    assert_eq!(inspect[0]["architecture"], "arm64", "{inspect:#}");
    strata_at(&fresh, None, &[], &["fsck"]).ok();
    let none = strata_at(&fresh, None, &[], &["pull", "--platform", "linux/s390x", &dest]);
    assert_eq!(none.code, Some(1), "{}", none.describe());
    assert!(none.stderr.contains("linux/s390x") && none.stderr.contains("linux/arm64"), "{}", none.describe());

    // --all-platforms keeps the index, every manifest whole.
    let all = dir.join("all-store");
    strata_at(&all, None, &[], &["pull", "--all-platforms", &dest]).ok();
    let inspect = strata_at(&all, None, &[], &["inspect", &dest]).ok().json();
    assert_eq!(inspect[0]["Digest"], index_digest.as_str(), "{inspect:#}");
    let arm_config = strata_at(&all, None, &[], &["inspect", "--platform", "linux/arm64", &dest]).ok().json();
    assert_eq!(arm_config[0]["architecture"], "arm64", "{arm_config:#}");
    strata_at(&all, None, &[], &["fsck"]).ok();

    // skopeo copy --all finds every manifest and blob the index names.
    let layout = dir.join("copied");
    run("skopeo", ["copy", "--all", "--src-tls-verify=false", &format!("docker://{dest}"), &format!("oci:{}:v1", path_str(&layout))]).ok();
    let (_, copied) = raw_entries(&format!("oci:{}:v1", path_str(&layout)));
    assert_eq!(copied, entries);
    for (_, d) in &entries {
        assert!(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:")).exists(), "{d} was not copied");
    }

    // A multi-platform build's --output docker:// pushes the index the same way, and
    // --digestfile names the index. Its FROM pulls each platform's base in turn,
    // though the name holds the arm64 image pulled above.
    let ctx = scratch("manifests-output");
    fs::write(ctx.join("Dockerfile"), format!("FROM {dest}\nARG TARGETARCH\nLABEL arch=$TARGETARCH\n")).unwrap();
    let out_file = dir.join("out-digest");
    let out = format!("docker://{}/e2e/out:v1", registry.addr);
    let args = ["build", "--platform", "linux/amd64,linux/arm64", "--output", &out, "--digestfile", &path_str(&out_file), &path_str(&ctx)];
    strata_at(&fresh, None, &[], &args).ok();
    let out_digest = fs::read_to_string(&out_file).unwrap().trim().to_string();
    let (raw, built) = raw_entries(&format!("docker://{}/e2e/out@{out_digest}", registry.addr));
    let mut arches: Vec<&str> = built.iter().map(|(a, _)| a.as_str()).collect();
    arches.sort();
    assert_eq!(arches, ["amd64", "arm64"], "{raw}");
}

/// One runner: its own store builds `platform` FROM the registry's base and pushes
/// to `repo`; returns the manifest digest the registry holds.
fn runner(dir: &Path, ctx: &Path, base: &str, platform: &str, repo: &str) -> String {
    let store = dir.join(format!("runner-{}", platform.replace('/', "-")));
    let base_arg = format!("BASE={base}");
    strata_at(&store, None, &[], &["build", "--platform", platform, "--build-arg", &base_arg, "-t", "app", &path_str(ctx)]).ok();
    let file = dir.join(format!("{}.digest", platform.replace('/', "-")));
    strata_at(&store, None, &[], &["push", "--digestfile", &path_str(&file), "app", repo]).ok();
    fs::read_to_string(&file).unwrap().trim().to_string()
}

#[test]
fn runners_push_by_digest_and_strata_manifest_joins_them_for_podman() {
    if skip_without_sandbox("runners_push_by_digest_and_strata_manifest_joins_them_for_podman") {
        return;
    }
    with_platform_base();
    let dir = scratch("manifests-fanout");
    let registry = Registry::start(&dir, None);
    let base = format!("{}/e2e/pbase:latest", registry.addr);
    strata(["push", BASE, &base]).ok();
    let ctx = scratch("manifests-fanout-context");
    fs::write(ctx.join("Dockerfile"), "ARG BASE\nFROM $BASE\nARG TARGETARCH\nRUN echo \"$(uname -m) $TARGETARCH\" > /arch\n").unwrap();
    let amd = runner(&dir, &ctx, &base, "linux/amd64", &format!("{}/e2e/app-amd64:ci", registry.addr));
    let arm = runner(&dir, &ctx, &base, "linux/arm64", &format!("{}/e2e/app-arm64:ci", registry.addr));
    assert_ne!(amd, arm);

    let join = dir.join("join-store");
    let manifest = |args: &[&str]| strata_at(&join, None, &[], &[&["manifest"], args].concat());
    manifest(&["create", "app"]).ok();
    manifest(&["add", "app", &format!("docker://{}/e2e/app-amd64@{amd}", registry.addr)]).ok();
    manifest(&["add", "app", &format!("docker://{}/e2e/app-arm64@{arm}", registry.addr)]).ok();
    manifest(&["annotate", "--annotation", "org.example.runner=arm", "app", &arm]).ok();
    let shown = manifest(&["inspect", "app"]).ok().json();
    assert_eq!(shown["manifests"][1]["annotations"]["org.example.runner"], "arm", "{shown:#}");
    let missing = manifest(&["remove", "app", "sha256:0000000000000000000000000000000000000000000000000000000000000000"]);
    assert_eq!(missing.code, Some(1), "{}", missing.describe());
    assert!(missing.stderr.contains("\"app\""), "the error names the list: {}", missing.describe());

    let uploads = registry.finished_uploads();
    let dest = format!("docker://{}/e2e/app:v1", registry.addr);
    let pushed = manifest(&["push", "app", &dest]).ok();
    assert_eq!(registry.finished_uploads(), uploads, "the layers were mounted, not sent again: {}", pushed.describe());
    let (raw, entries) = raw_entries(&dest);
    assert_eq!(entries, [("amd64".to_string(), amd), ("arm64".to_string(), arm.clone())], "{raw}");
    assert_eq!(raw["manifests"][1]["annotations"]["org.example.runner"], "arm", "{raw}");

    let podman_store = dir.join("podman");
    let image = format!("{}/e2e/app:v1", registry.addr);
    podman(&podman_store, &["pull", "--tls-verify=false", "--arch", "arm64", &image]).ok();
    let inspected = podman(&podman_store, &["image", "inspect", &image]).ok().json();
    assert_eq!(inspected[0]["Architecture"], "arm64", "{inspected:#}");

    // The registry's view through strata, and a list copied from it whole.
    let remote = manifest(&["inspect", &dest]).ok().json();
    assert_eq!(remote, raw);
    manifest(&["create", "copy"]).ok();
    let added = manifest(&["add", "--all", "copy", &dest]).ok();
    assert_eq!(added.stdout.lines().count(), 2, "{}", added.describe());
    let copy = manifest(&["inspect", "copy"]).ok().json();
    assert_eq!(copy["manifests"][0]["digest"], raw["manifests"][0]["digest"], "{copy:#}");
    assert_eq!(copy["manifests"][1]["digest"], raw["manifests"][1]["digest"], "{copy:#}");

    manifest(&["rm", "app"]).ok();
    let gone = manifest(&["inspect", "app"]);
    assert_eq!(gone.code, Some(1), "{}", gone.describe());
}

/// Two `manifest add`s to one list at the same time both land: the first is held
/// (a test hook) between reading the list and writing it back, and the second,
/// started meanwhile, waits for the edit lock instead of writing over it.
#[test]
fn concurrent_adds_to_one_list_both_land() {
    if skip_without_sandbox("concurrent_adds_to_one_list_both_land") {
        return;
    }
    crate::support::require_fault_injection();
    crate::support::with_base();
    let ctx = scratch("list-race");
    for tag in ["race-a", "race-b"] {
        fs::write(ctx.join("Dockerfile"), format!("FROM busybox:latest\nLABEL which={tag}\n")).unwrap();
        strata(["build", "-q", "-t", tag, &path_str(&ctx)]).ok();
    }
    strata(["manifest", "create", "race-list"]).ok();
    let root = path_str(&crate::support::world().root);
    let mut first = std::process::Command::new(crate::support::strata_bin());
    first.args(["--root", &root, "manifest", "add", "race-list", "race-a"]).env("STRATA_TEST_PAUSE_AT", "list-edit");
    let mut first = first.spawn().expect("start the first add");
    std::thread::sleep(std::time::Duration::from_millis(300));
    strata(["manifest", "add", "race-list", "race-b"]).ok();
    assert!(first.wait().expect("wait for the first add").success());
    let list = strata(["manifest", "inspect", "race-list"]).ok().json();
    let entries = list["manifests"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(entries, 2, "both adds are in the list: {list:#}");
}
