//! The build cache: a no-op rebuild is all CACHED with the identical image id, an
//! edit re-runs exactly the steps after it (even when size and mtime are kept), and
//! `--no-cache` re-runs everything.

use std::fs;
use std::path::Path;

use crate::support::{path_str, scratch, skip_without_sandbox, strata, with_base};

const DOCKERFILE: &str = "FROM busybox\nARG FLAVOUR=plain\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy-a\nCOPY b.txt /b.txt\nRUN echo $FLAVOUR > /flavour\nENV DONE=1\n";

fn context(name: &str) -> std::path::PathBuf {
    let ctx = scratch(name);
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    // Unique content: tests share one store, and equal inputs would share cache hits.
    fs::write(ctx.join("a.txt"), format!("alpha {name} {}\n", std::process::id())).unwrap();
    fs::write(ctx.join("b.txt"), "bravo\n").unwrap();
    ctx
}

/// The steps (by instruction) a build printed as CACHED, and the image id.
fn build(ctx: &Path, tag: &str, extra: &[&str]) -> (Vec<String>, String) {
    let mut args = vec!["build", "-t", tag];
    args.extend_from_slice(extra);
    let ctx_s = path_str(ctx);
    args.push(&ctx_s);
    let out = strata(args).ok();
    let mut cached = Vec::new();
    let mut last_step = String::new();
    for line in out.stderr.lines() {
        if let Some((_, instr)) = line.split_once(": ").filter(|_| line.contains("STEP ")) {
            last_step = instr.to_string();
        } else if line.trim_end().ends_with("--> CACHED") {
            cached.push(last_step.clone());
        }
    }
    (cached, out.stdout.trim().to_string())
}

#[test]
fn noop_rebuild_is_all_cached_with_the_same_id() {
    if skip_without_sandbox("noop_rebuild_is_all_cached_with_the_same_id") {
        return;
    }
    with_base();
    let ctx = context("cache-noop");
    let (first, id1) = build(&ctx, "cache-noop", &[]);
    assert!(first.is_empty(), "a fresh context hits nothing: {first:?}");
    let (second, id2) = build(&ctx, "cache-noop", &[]);
    assert_eq!(second.len(), 4, "every filesystem step is CACHED: {second:?}");
    assert_eq!(id1, id2, "a no-op rebuild gives the identical image id");
    let (none, id3) = build(&ctx, "cache-noop", &["--no-cache"]);
    assert!(none.is_empty(), "--no-cache runs everything: {none:?}");
    assert!(!id3.is_empty());
}

#[test]
fn an_edit_reruns_exactly_the_dependent_steps() {
    if skip_without_sandbox("an_edit_reruns_exactly_the_dependent_steps") {
        return;
    }
    with_base();
    let ctx = context("cache-edit");
    build(&ctx, "cache-edit", &[]);
    // Same size, same mtime, other content: only content hashing can see it.
    let b = ctx.join("b.txt");
    let mtime = fs::metadata(&b).unwrap().modified().unwrap();
    fs::write(&b, "BRAVO\n").unwrap();
    fs::File::options().write(true).open(&b).unwrap().set_modified(mtime).unwrap();
    let (cached, _) = build(&ctx, "cache-edit", &[]);
    assert_eq!(cached, vec!["COPY a.txt /a.txt", "RUN cat /a.txt > /copy-a"], "steps before the edit stay cached");
    let out = strata(["run", "--rm", "cache-edit", "cat", "/b.txt"]).ok();
    assert_eq!(out.stdout, "BRAVO\n", "the new content is in the image");
    // A build arg used by a later RUN re-runs from the first step that sees it.
    let (cached, _) = build(&ctx, "cache-edit", &["--build-arg", "FLAVOUR=spicy"]);
    assert!(cached.is_empty(), "ARG values are part of every later key: {cached:?}");
    // Proxy args never cause a miss.
    let (cached, _) = build(&ctx, "cache-edit", &["--build-arg", "FLAVOUR=spicy", "--build-arg", "HTTP_PROXY=http://127.0.0.1:9"]);
    assert_eq!(cached.len(), 4, "{cached:?}");
}
