//! Reproducibility (issue 4, acceptance 3): two clean-store builds with
//! `SOURCE_DATE_EPOCH` (or `--source-date-epoch`) give identical manifest digests, with
//! every mtime and every created time clamped.

use std::fs;
use std::path::{Path, PathBuf};

use crate::drivers::{build_busybox_in, rich_entries, strata_at};
use crate::layout::Layout;
use crate::support::{path_str, scratch, skip_without_sandbox};

const EPOCH: u64 = 1_700_000_000;
const EPOCH_RFC3339: &str = "2023-11-14T22:13:20Z";

fn repro_context() -> PathBuf {
    let ctx = scratch("repro-context");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\n\
         COPY file.txt /app/file.txt\n\
         RUN mkdir -p /app/d && echo hi > /app/d/hi && touch /app/d/empty && ln -s hi /app/d/link && chown 1000:1000 /app/d/hi\n\
         ENV X=1\n\
         RUN rm /app/d/empty\n",
    )
    .expect("write Dockerfile");
    fs::write(ctx.join("file.txt"), "reproducible\n").expect("write file.txt");
    ctx
}

/// Builds busybox (with `base_envs`) and then the repro context (with `envs` and `extra`
/// flags) on a clean store; returns the layout.
#[track_caller]
fn repro_build(ctx: &Path, name: &str, base_envs: &[(&str, &str)], envs: &[(&str, &str)], extra: &[&str]) -> Layout {
    let dir = scratch(name);
    let root = dir.join("store");
    build_busybox_in(&root, None, base_envs).unwrap_or_else(|e| panic!("{e}"));
    let out = dir.join("layout");
    let mut args = vec!["build", "-t", "repro:latest"];
    args.extend_from_slice(extra);
    let output = format!("oci:{}:repro", path_str(&out));
    let ctx = path_str(ctx);
    args.extend_from_slice(&["--output", &output, &ctx]);
    strata_at(&root, None, envs, &args).ok();
    Layout::open(&out)
}

fn manifest_digest(layout: &Layout) -> String {
    let index = layout.index();
    index["manifests"][0]["digest"].as_str().unwrap_or_else(|| panic!("index.json: {index:#}")).to_owned()
}

#[track_caller]
fn check_clamped(label: &str, layout: &Layout) {
    let manifest = layout.manifest(Some("repro"));
    let config = layout.config(&manifest);
    assert_eq!(config["created"], EPOCH_RFC3339, "{label}: config created: {config:#}");
    for h in config["history"].as_array().expect("history") {
        assert_eq!(h["created"], EPOCH_RFC3339, "{label}: history created: {h:#}");
    }
    for layer in Layout::layers(&manifest) {
        for e in rich_entries(layout, &layer) {
            assert!(e.mtime <= EPOCH, "{label}: {} has mtime {} > SOURCE_DATE_EPOCH {EPOCH}", e.path, e.mtime);
            if let Some(t) = e.pax.get("mtime") {
                let t = String::from_utf8_lossy(t);
                let secs: u64 = t.split('.').next().unwrap_or_default().parse().unwrap_or(u64::MAX);
                assert!(secs <= EPOCH, "{label}: {} has PAX mtime {t}", e.path);
            }
        }
    }
}

#[test]
fn reproducible_builds_with_source_date_epoch() {
    if skip_without_sandbox("reproducible_builds_with_source_date_epoch") {
        return;
    }
    let ctx = repro_context();
    let epoch = EPOCH.to_string();
    let envs = [("SOURCE_DATE_EPOCH", epoch.as_str())];
    let first = repro_build(&ctx, "repro-a", &envs, &envs, &[]);
    // Make sure wall-clock times differ between the two builds.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = repro_build(&ctx, "repro-b", &envs, &envs, &[]);

    check_clamped("first build", &first);
    check_clamped("second build", &second);
    let (a, b) = (manifest_digest(&first), manifest_digest(&second));
    if a != b {
        let ma = first.manifest(Some("repro"));
        let mb = second.manifest(Some("repro"));
        let mut why = String::new();
        if ma["config"]["digest"] != mb["config"]["digest"] {
            why.push_str(&format!("configs differ:\n{:#}\n{:#}\n", first.config(&ma), second.config(&mb)));
        }
        for (i, (la, lb)) in Layout::layers(&ma).iter().zip(Layout::layers(&mb)).enumerate() {
            if la["digest"] != lb["digest"] {
                let ea: Vec<String> = rich_entries(&first, la).iter().map(|e| format!("{} mtime={}", e.key(), e.mtime)).collect();
                let eb: Vec<String> = rich_entries(&second, &lb).iter().map(|e| format!("{} mtime={}", e.key(), e.mtime)).collect();
                why.push_str(&format!("layer {i} differs ({} vs {}):\n", la["digest"], lb["digest"]));
                for line in ea.iter().filter(|l| !eb.contains(l)) {
                    why.push_str(&format!("  first only:  {line}\n"));
                }
                for line in eb.iter().filter(|l| !ea.contains(l)) {
                    why.push_str(&format!("  second only: {line}\n"));
                }
                if ea == eb {
                    why.push_str("  (same entries: tar framing or compression differs)\n");
                }
            }
        }
        panic!("two clean-store builds with SOURCE_DATE_EPOCH={EPOCH} gave manifests {a} and {b}:\n{why}");
    }
}

#[test]
fn reproducible_with_source_date_epoch_flag() {
    if skip_without_sandbox("reproducible_with_source_date_epoch_flag") {
        return;
    }
    let ctx = repro_context();
    let epoch = EPOCH.to_string();
    // The flag alone (no environment variable on the build) clamps too.
    let by_flag = repro_build(&ctx, "repro-flag", &[("SOURCE_DATE_EPOCH", epoch.as_str())], &[], &["--source-date-epoch", &epoch]);
    check_clamped("--source-date-epoch build", &by_flag);
}
