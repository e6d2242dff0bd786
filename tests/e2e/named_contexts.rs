//! `--build-context NAME=VALUE` (issue 13): a directory, an OCI layout and an image
//! given a name that FROM and COPY --from use, replacing a stage or an image of that
//! name as BuildKit does; the cache keyed on a directory's files; bad values refused
//! with the flag named.

use std::fs;

use crate::language::{assert_untagged, sh, skip, Ctx};
use crate::support::{path_str, scratch, Run};

/// The instructions of `run`'s steps that were answered from the cache.
fn cached_steps(run: &Run) -> Vec<String> {
    let mut last = String::new();
    let mut cached = Vec::new();
    for line in run.stderr.lines() {
        if let Some((_, instr)) = line.split_once(": ").filter(|_| line.contains("STEP ")) {
            last = instr.to_string();
        } else if line.trim_end().ends_with("--> CACHED") {
            cached.push(last.clone());
        }
    }
    cached
}

#[test]
fn directory_context_feeds_copy_from_and_from_and_keys_the_cache() {
    if skip("directory_context_feeds_copy_from_and_from_and_keys_the_cache") {
        return;
    }
    let ctx = Ctx::new(
        "ctx-dir",
        "FROM src AS tree\n\
         LABEL from=dir\n\
         FROM busybox\n\
         COPY --from=src . /ctx/\n\
         COPY --from=tree / /tree/\n",
    );
    let src = scratch("ctx-dir-src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), "alpha\n").unwrap();
    fs::write(src.join("sub/b.txt"), "bravo\n").unwrap();
    fs::write(src.join("secret.txt"), "hidden\n").unwrap();
    fs::write(src.join(".dockerignore"), "secret.txt\n").unwrap();
    // The main context's own files must not leak in where the named one is meant.
    ctx.file("a.txt", "main context\n");
    let flag = format!("src={}", path_str(&src));
    let first = ctx.build_ok("ctx-dir", &["--build-context", &flag]);
    let script =
        "cat /ctx/a.txt /ctx/sub/b.txt /tree/a.txt; for f in /ctx/secret.txt /tree/secret.txt; do test -e $f && echo leaked $f; done; \
                  stat -c %u:%g /ctx/a.txt /tree/a.txt";
    assert_eq!(sh("ctx-dir", script), "alpha\nbravo\nalpha\n0:0\n0:0\n", "the dir's files, its .dockerignore applied, owned by root");
    assert!(cached_steps(&first).iter().all(|s| !s.starts_with("COPY --from=src")), "a fresh dir hits nothing: {}", first.stderr);

    // Unchanged files (an ignored one edited) hit; a changed file misses.
    fs::write(src.join("secret.txt"), "changed but ignored\n").unwrap();
    let again = ctx.build_ok("ctx-dir", &["--build-context", &flag]);
    let cached = cached_steps(&again);
    assert!(cached.iter().any(|s| s == "COPY --from=src . /ctx/"), "an unchanged dir context is a hit: {}", again.stderr);
    assert!(cached.iter().any(|s| s == "COPY --from=tree / /tree/"), "FROM of an unchanged dir context is a hit: {}", again.stderr);
    assert_eq!(first.stdout, again.stdout, "the same image");

    fs::write(src.join("a.txt"), "alpha two\n").unwrap();
    let changed = ctx.build_ok("ctx-dir", &["--build-context", &flag]);
    assert!(!cached_steps(&changed).iter().any(|s| s.starts_with("COPY --from=")), "a changed file misses: {}", changed.stderr);
    assert_eq!(sh("ctx-dir", "cat /ctx/a.txt /tree/a.txt"), "alpha two\nalpha two\n");
}

#[test]
fn oci_layout_context_serves_from_and_copy_from() {
    if skip("oci_layout_context_serves_from_and_copy_from") {
        return;
    }
    let layout = scratch("ctx-layout").join("layout");
    let maker = Ctx::new("ctx-layout-maker", "FROM busybox\nRUN echo from-layout > /layout.txt\nENV LAYOUT=1\n");
    maker.build_ok("ctx-layout-maker", &["--output", &format!("oci:{}:v1", path_str(&layout))]);
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().expect("a manifest digest").to_string();

    // FROM by tag, COPY --from by digest; `base` and `files` name no stage nor image.
    let ctx = Ctx::new("ctx-layout", "FROM base\nRUN cat /layout.txt > /seen.txt\nCOPY --from=files /layout.txt /copied.txt\n");
    let by_tag = format!("base=oci-layout://{}:v1", path_str(&layout));
    let by_digest = format!("files=oci-layout://{}@{digest}", path_str(&layout));
    ctx.build_ok("ctx-layout", &["--build-context", &by_tag, "--build-context", &by_digest]);
    assert_eq!(
        sh("ctx-layout", "cat /seen.txt /copied.txt; echo $LAYOUT"),
        "from-layout\nfrom-layout\n1\n",
        "the layout's files and config"
    );

    // A tag the layout lacks fails, naming the flag.
    let missing = format!("base=oci-layout://{}:nope", path_str(&layout));
    let run = ctx.build("ctx-layout-missing", &["--build-context", &missing, "--build-context", &by_digest]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.stderr.contains("--build-context base") && run.stderr.contains("nope"), "{}", run.describe());
    assert_untagged("ctx-layout-missing");
}

#[test]
fn docker_image_context_replaces_an_image_and_a_stage() {
    if skip("docker_image_context_replaces_an_image_and_a_stage") {
        return;
    }
    let marker = Ctx::new("ctx-image-marker", "FROM busybox\nRUN echo marker > /marker.txt\n");
    marker.build_ok("ctx-image-marker", &[]);
    // `alpine` is not in the store: only the context can make FROM alpine work,
    // and `deps` fails if its own steps run.
    let ctx = Ctx::new(
        "ctx-image",
        "FROM busybox AS deps\n\
         RUN exit 1\n\
         FROM docker.io/library/alpine:latest\n\
         RUN cat /marker.txt > /from.txt\n\
         COPY --from=deps /marker.txt /deps.txt\n",
    );
    let image = "docker-image://ctx-image-marker";
    let flags = ["--pull=never", "--build-context", &format!("alpine={image}"), "--build-context", &format!("deps={image}")];
    ctx.build_ok("ctx-image", &flags);
    assert_eq!(sh("ctx-image", "cat /from.txt /deps.txt"), "marker\nmarker\n");

    // Without the contexts, the same Dockerfile runs `deps` and fails there.
    let run = ctx.build("ctx-image-without", &["--pull=never"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
}

#[test]
fn bad_build_context_values_are_refused() {
    if skip("bad_build_context_values_are_refused") {
        return;
    }
    let ctx = Ctx::new("ctx-bad", "FROM busybox\nCOPY --from=src / /x/\n");
    let missing = scratch("ctx-bad-missing").join("nope");
    let file = ctx.join("Dockerfile");
    let cases = [
        ("no-equals".to_string(), "expected NAME=VALUE".to_string()),
        (format!("src={}", path_str(&missing)), path_str(&missing)),
        (format!("src={}", path_str(&file)), "not a directory".to_string()),
        ("Src=/tmp".to_string(), "invalid context name".to_string()),
        ("src=https://example.com/repo.git".to_string(), "only a directory".to_string()),
        ("src=oci-layout:///tmp".to_string(), "not an OCI image layout".to_string()),
        ("scratch=/tmp".to_string(), "cannot name a build context".to_string()),
    ];
    for (value, needle) in &cases {
        let run = ctx.build("ctx-bad", &["--build-context", value]);
        assert_eq!(run.code, Some(1), "{}", run.describe());
        assert!(run.stderr.contains("--build-context") && run.stderr.contains(needle.as_str()), "{value}: {}", run.describe());
    }
    // An image the store lacks, with pulling forbidden: the build fails at the step.
    let run = ctx.build("ctx-bad", &["--pull=never", "--build-context", "src=docker-image://ctx-no-such-image"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.stderr.contains("--build-context src") && run.stderr.contains("ctx-no-such-image"), "{}", run.describe());
    assert_untagged("ctx-bad");
}

#[test]
fn run_mounts_take_from_a_named_context() {
    if skip("run_mounts_take_from_a_named_context") {
        return;
    }
    let src = scratch("ctx-mount-src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/b.txt"), "bravo\n").unwrap();
    fs::write(src.join("hidden.txt"), "ignored\n").unwrap();
    fs::write(src.join(".dockerignore"), "hidden.txt\n").unwrap();
    let layout = scratch("ctx-mount-layout").join("layout");
    let maker = Ctx::new("ctx-mount-maker", "FROM busybox\nRUN mkdir /data && echo from-layout > /data/f\n");
    maker.build_ok("ctx-mount-maker", &["--output", &format!("oci:{}:v1", path_str(&layout))]);

    // A directory context binds (its ignore file applied, rw writes thrown away)
    // and seeds a cache; an image context binds from its tree.
    let ctx = Ctx::new(
        "ctx-mount",
        "FROM busybox\n\
         RUN --mount=type=bind,from=src,target=/src,rw sh -c 'cat /src/sub/b.txt > /bound.txt; (test -e /src/hidden.txt && echo leaked || echo clean) > /listing.txt; echo x > /src/sub/b.txt'\n\
         RUN --mount=type=bind,from=img,source=/data,target=/img cat /img/f > /img.txt\n\
         RUN --mount=type=cache,from=src,source=sub,target=/seeded,id=ctx-mount-seed cp /seeded/b.txt /seed.txt\n",
    );
    let flags =
        ["--build-context", &format!("src={}", path_str(&src)), "--build-context", &format!("img=oci-layout://{}:v1", path_str(&layout))];
    let first = ctx.build_ok("ctx-mount", &flags);
    assert_eq!(sh("ctx-mount", "cat /bound.txt /listing.txt /img.txt /seed.txt"), "bravo\nclean\nfrom-layout\nbravo\n", "{}", first.stderr);
    assert_eq!(fs::read_to_string(src.join("sub/b.txt")).unwrap(), "bravo\n", "an rw bind never writes into the directory");

    // The key follows the directory's content.
    let again = ctx.build_ok("ctx-mount", &flags);
    assert!(cached_steps(&again).iter().any(|s| s.contains("from=src,target=/src")), "an unchanged dir is a hit: {}", again.stderr);
    fs::write(src.join("sub/b.txt"), "bravo two\n").unwrap();
    let changed = ctx.build_ok("ctx-mount", &flags);
    assert!(!cached_steps(&changed).iter().any(|s| s.contains("from=src,target=/src")), "a changed dir misses: {}", changed.stderr);
    assert_eq!(sh("ctx-mount", "cat /bound.txt"), "bravo two\n");
}
