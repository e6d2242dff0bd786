//! What a build leaves beside the image: `--iidfile`, `--metadata-file` and
//! `--digestfile` (build and push) agree with `strata inspect` and with the registry
//! (`skopeo inspect`); `--label` reaches the config over the Dockerfile's LABEL
//! without costing a cache hit, `--annotation` the manifest.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use crate::registry_server::Registry;
use crate::support::{hello_image, path_str, run, scratch, skip_without_sandbox, strata, with_base, world};

fn context(name: &str) -> std::path::PathBuf {
    let ctx = scratch(name);
    // The pid makes the RUN a miss on the first build of each test run.
    let df = format!("FROM busybox\nLABEL keep=dockerfile over=dockerfile\nRUN echo {} > /marker\n", std::process::id());
    fs::write(ctx.join("Dockerfile"), df).unwrap();
    ctx
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn metadata(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}: {}", path.display(), read(path)))
}

fn inspect(image: &str) -> Value {
    strata(["inspect", image]).ok().json()[0].clone()
}

/// The keys buildx writes for an image export, in Go's sorted order.
fn assert_metadata_keys(meta: &Value) {
    let keys: Vec<&String> = meta.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["containerimage.config.digest", "containerimage.descriptor", "containerimage.digest", "image.name"], "{meta:#}");
}

#[test]
fn iidfile_and_metadata_match_inspect_and_labels_and_annotations_land() {
    if skip_without_sandbox("iidfile_and_metadata_match_inspect_and_labels_and_annotations_land") {
        return;
    }
    with_base();
    let ctx = context("outputs-local");
    let dir = scratch("outputs-files");
    let (iid, meta) = (dir.join("iid"), dir.join("meta.json"));
    let built = strata([
        "build",
        "-t",
        "e2e-outputs",
        "-t",
        "e2e-outputs:two",
        "--label",
        "over=cli",
        "--label",
        "extra=1",
        "--annotation",
        "org.example.a=https://example.com/x",
        "--annotation",
        "manifest:org.example.b=2",
        "--iidfile",
        &path_str(&iid),
        "--metadata-file",
        &path_str(&meta),
        &path_str(&ctx),
    ])
    .ok();
    let image = inspect("e2e-outputs");
    let id = read(&iid);
    assert_eq!(id, format!("sha256:{}", image["Id"].as_str().unwrap()), "no newline, as docker writes it");
    assert_eq!(built.stdout.trim(), image["Id"], "{}", built.describe());

    let meta = metadata(&meta);
    assert_metadata_keys(&meta);
    assert_eq!(meta["containerimage.config.digest"], id);
    assert_eq!(meta["containerimage.digest"], image["Digest"]);
    let descriptor = &meta["containerimage.descriptor"];
    assert_eq!(descriptor["digest"], image["Digest"]);
    assert_eq!(descriptor["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let hex = image["Digest"].as_str().unwrap().trim_start_matches("sha256:");
    let blob = world().root.join("oci/blobs/sha256").join(hex);
    assert_eq!(descriptor["size"], fs::metadata(&blob).unwrap().len(), "the size of the stored manifest");
    assert_eq!(meta["image.name"], "localhost/e2e-outputs:latest,localhost/e2e-outputs:two");

    assert_eq!(image["config"]["Labels"], json!({"keep": "dockerfile", "over": "cli", "extra": "1"}), "{image:#}");
    assert_eq!(image["Manifest"]["annotations"], json!({"org.example.a": "https://example.com/x", "org.example.b": "2"}));

    // Without the flags the same steps hit the cache, and the image has neither.
    let plain = strata(["build", "-t", "e2e-outputs-plain", &path_str(&ctx)]).ok();
    assert_eq!(plain.stderr.matches("--> CACHED").count(), 2, "LABEL and RUN are cached: {}", plain.describe());
    let image = inspect("e2e-outputs-plain");
    assert_eq!(image["config"]["Labels"], json!({"keep": "dockerfile", "over": "dockerfile"}));
    assert!(image["Manifest"].get("annotations").is_none(), "{image:#}");
    // Another label: still every step cached, but the label is there.
    let other = strata(["build", "-t", "e2e-outputs-other", "--label", "over=again", &path_str(&ctx)]).ok();
    assert_eq!(other.stderr.matches("--> CACHED").count(), 2, "{}", other.describe());
    assert_eq!(inspect("e2e-outputs-other")["config"]["Labels"]["over"], "again");
}

#[test]
fn refused_outputs_fail_before_building() {
    let dir = scratch("outputs-refused");
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
    let digest = dir.join("digest");
    let no_push = strata(["build", "--digestfile", &path_str(&digest), &path_str(&ctx)]);
    assert_eq!(no_push.code, Some(1), "{}", no_push.describe());
    assert!(no_push.stderr.contains("--digestfile needs a push"), "{}", no_push.describe());
    let index = strata(["build", "--annotation", "index:k=v", &path_str(&ctx)]);
    assert_eq!(index.code, Some(1), "{}", index.describe());
    assert!(index.stderr.contains("only manifest annotations"), "{}", index.describe());
    assert!(!digest.exists());

    // A failed build leaves no earlier build's id behind, as docker removes it first.
    let (iid, meta) = (dir.join("iid"), dir.join("meta.json"));
    fs::write(&iid, "sha256:stale").unwrap();
    fs::write(&meta, "{}").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY missing /\n").unwrap();
    let failed = strata(["build", "--iidfile", &path_str(&iid), "--metadata-file", &path_str(&meta), &path_str(&ctx)]);
    assert_eq!(failed.code, Some(1), "{}", failed.describe());
    assert!(!iid.exists() && !meta.exists(), "{}", failed.describe());
}

#[test]
fn digestfiles_match_the_registry() {
    if skip_without_sandbox("digestfiles_match_the_registry") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("outputs-registry");
    let registry = Registry::start(&dir, None);
    let skopeo = |reference: &str, raw: bool| {
        let target = format!("docker://{reference}");
        let mut args = vec!["inspect", "--tls-verify=false"];
        if raw {
            args.push("--raw");
        }
        args.push(&target);
        run("skopeo", args).ok()
    };

    // push --digestfile
    let dest = format!("{}/e2e/pushed:1", registry.addr);
    let file = dir.join("push-digest");
    let pushed = strata(["push", "--digestfile", &path_str(&file), hello, &dest]).ok();
    let digest = read(&file);
    assert!(digest.starts_with("sha256:") && !digest.ends_with('\n'), "{digest:?}");
    assert_eq!(digest, pushed.stdout.trim());
    assert_eq!(skopeo(&dest, false).json()["Digest"], digest);

    // A build that pushes: digestfile, metadata, label and annotation, as the registry has them.
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), format!("FROM {hello}\nLABEL from=dockerfile\n")).unwrap();
    let result = format!("{}/e2e/built:2", registry.addr);
    let (digest_file, meta_file, iid_file) = (dir.join("build-digest"), dir.join("meta.json"), dir.join("iid"));
    let args = [
        "build",
        "-t",
        "e2e-outputs-pushed",
        "--label",
        "cli=yes",
        "--annotation",
        "org.example.pushed=1",
        "--output",
        &format!("docker://{result}"),
        "--digestfile",
        &path_str(&digest_file),
        "--metadata-file",
        &path_str(&meta_file),
        "--iidfile",
        &path_str(&iid_file),
        &path_str(&ctx),
    ];
    strata(args).ok();
    let remote = skopeo(&result, false).json();
    let digest = read(&digest_file);
    assert_eq!(remote["Digest"], digest, "{remote:#}");
    assert_eq!((&remote["Labels"]["from"], &remote["Labels"]["cli"]), (&json!("dockerfile"), &json!("yes")), "{remote:#}");
    let raw = skopeo(&result, true).stdout;
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(manifest["annotations"], json!({"org.example.pushed": "1"}), "{raw}");
    assert_eq!(manifest["config"]["digest"], read(&iid_file));

    let meta = metadata(&meta_file);
    assert_metadata_keys(&meta);
    assert_eq!(meta["containerimage.digest"], digest);
    assert_eq!(meta["containerimage.config.digest"], read(&iid_file));
    assert_eq!(meta["containerimage.descriptor"]["size"], raw.trim_end().len(), "the size of the manifest the registry serves");
    assert_eq!(meta["image.name"], format!("localhost/e2e-outputs-pushed:latest,{result}"));
    assert_eq!(inspect("e2e-outputs-pushed")["Digest"], digest, "the local image is the pushed one");
}
