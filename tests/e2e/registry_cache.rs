//! The build cache shared through a registry: runner A builds with `--cache-to`,
//! runner B (an empty store) builds the same context with `--cache-from` and every
//! step is a hit, down to the same image id and the bytes a RUN made at random;
//! an edited file re-runs its COPY and what follows, nothing before.

use std::fs;
use std::path::Path;

use crate::drivers::strata_at;
use crate::registry_server::Registry;
use crate::support::{hello_image, path_str, scratch, skip_without_sandbox, strata, Run};

/// The steps a build printed (FROM aside) and the ones marked CACHED.
struct Steps {
    all: Vec<String>,
    cached: Vec<String>,
}

fn steps(run: &Run) -> Steps {
    let (mut all, mut cached) = (Vec::new(), Vec::new());
    for line in run.stderr.lines() {
        if let Some((_, instr)) = line.split_once(": ").filter(|_| line.contains("STEP ")) {
            if !instr.starts_with("FROM ") {
                all.push(instr.to_string());
            }
        } else if line.trim_end().ends_with("--> CACHED") {
            cached.push(all.last().cloned().unwrap_or_default());
        }
    }
    Steps { all, cached }
}

/// Whether a RUN printed `marker` (its output lines are `[stage] n/m | text`).
fn ran(run: &Run, marker: &str) -> bool {
    run.stdout.lines().chain(run.stderr.lines()).any(|l| !l.contains("STEP ") && l.trim_end().ends_with(&format!(" | {marker}")))
}

fn build(store: &Path, ctx: &Path, extra: &[&str]) -> Run {
    let ctx = path_str(ctx);
    let mut args = vec!["build", "-t", "e2e-remote-cache"];
    args.extend_from_slice(extra);
    args.push(&ctx);
    strata_at(store, None, &[], &args).ok()
}

#[test]
fn a_fresh_runner_hits_every_step_from_the_registry_cache() {
    if skip_without_sandbox("a_fresh_runner_hits_every_step_from_the_registry_cache") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("registry-cache");
    let registry = Registry::start(&dir, None);
    let base = format!("{}/e2e/base:1", registry.addr);
    strata(["push", hello, &base]).ok();
    let cache_repo = format!("{}/e2e/cache", registry.addr);

    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("input.txt"), "first input\n").unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base} AS tool\n\
             USER root\n\
             RUN head -c 16 /dev/urandom | od -An -tx1 > /tool-random && echo tool-step-ran\n\
             FROM {base}\n\
             USER root\n\
             ENV GREETING=hi\n\
             RUN head -c 16 /dev/urandom | od -An -tx1 > /random && echo main-step-ran\n\
             COPY input.txt /work/\n\
             WORKDIR /work\n\
             RUN cat input.txt > copied.txt && echo after-copy-ran\n\
             COPY --from=tool /tool-random /work/\n\
             LABEL stage=final\n\
             CMD [\"cat\", \"/random\"]\n"
        ),
    )
    .unwrap();

    let runner_a = dir.join("runner-a");
    let a = build(&runner_a, &ctx, &["--cache-to", &cache_repo]);
    assert!(ran(&a, "main-step-ran") && ran(&a, "tool-step-ran"), "runner A ran its steps: {}", a.describe());
    assert!(a.stderr.contains("exported") && a.stderr.contains("cache entries"), "{}", a.describe());
    let id_a = a.stdout.lines().last().unwrap_or_default().to_string();

    // Runner B: an empty store, the same context; the base comes from the registry.
    let runner_b = dir.join("runner-b");
    let b = build(&runner_b, &ctx, &["--cache-from", &format!("type=registry,ref={cache_repo}")]);
    let seen = steps(&b);
    assert_eq!(seen.cached, seen.all, "every step is a hit from the registry: {}", b.describe());
    assert!(["tool-step-ran", "main-step-ran", "after-copy-ran"].iter().all(|m| !ran(&b, m)), "no RUN ran on runner B: {}", b.describe());
    assert_eq!(b.stdout.lines().last().unwrap_or_default(), id_a, "the same image, byte for byte");
    let random = |store: &Path, path: &str| strata_at(store, None, &[], &["run", "--rm", "e2e-remote-cache", "cat", path]).ok().stdout;
    assert_eq!(random(&runner_b, "/random"), random(&runner_a, "/random"));
    assert_eq!(random(&runner_b, "/work/tool-random"), random(&runner_a, "/work/tool-random"));
    strata_at(&runner_b, None, &[], &["fsck"]).ok();

    // The hits are now in B's own cache: without --cache-from it is still all cached.
    let again = steps(&build(&runner_b, &ctx, &[]));
    assert_eq!(again.cached, again.all);

    // Runner C edits the input: what comes before the COPY is a hit, the COPY and
    // the steps after it run.
    fs::write(ctx.join("input.txt"), "second input\n").unwrap();
    let runner_c = dir.join("runner-c");
    let c = build(&runner_c, &ctx, &["--cache-from", &cache_repo]);
    let seen = steps(&c);
    let copy_at = seen.all.iter().position(|s| s.starts_with("COPY input.txt")).expect("the COPY step");
    assert_eq!(seen.cached.len(), copy_at, "the tool stage's RUN and the steps before the COPY hit: {}", c.describe());
    assert!(seen.cached.iter().all(|s| !s.starts_with("COPY input.txt")), "{}", c.describe());
    assert!(ran(&c, "after-copy-ran") && !ran(&c, "main-step-ran"), "{}", c.describe());
    assert!(!c.stderr.contains("warning"), "a miss is no failure: {}", c.describe());
    assert_eq!(random(&runner_c, "/random"), random(&runner_a, "/random"));

    // Exporting back what the same repository answered rewrites nothing.
    let both = build(&runner_b, &ctx, &["--no-cache", "--cache-from", &cache_repo, "--cache-to", &cache_repo]);
    assert!(both.stderr.contains("exported") && both.stderr.contains(&format!("to {cache_repo}")), "{}", both.describe());
    let back = build(&dir.join("runner-d"), &ctx, &["--cache-from", &cache_repo, "--cache-to", &cache_repo]);
    assert!(back.stderr.contains("exported 0 cache entries"), "{}", back.describe());

    // A cache registry that is gone fails the export, unless ignore-error=true.
    let gone = format!("127.0.0.1:{}/e2e/cache", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let failed = strata_at(&runner_b, None, &[], &["build", "-t", "e2e-gone", "--cache-to", &gone, &path_str(&ctx)]);
    assert_eq!(failed.code, Some(1), "{}", failed.describe());
    assert!(failed.stderr.contains("exporting the build cache"), "{}", failed.describe());
    let ignored = build(&runner_b, &ctx, &["--cache-to", &format!("type=registry,ref={gone},ignore-error=true")]);
    assert!(ignored.stderr.contains("ignore-error=true"), "{}", ignored.describe());

    // Bad repository names are refused before anything is built.
    let tagged = strata_at(&runner_c, None, &[], &["build", "--cache-to", &format!("{cache_repo}:v1"), &path_str(&ctx)]);
    assert_eq!(tagged.code, Some(1), "{}", tagged.describe());
    assert!(tagged.stderr.contains("must not have a tag"), "{}", tagged.describe());
}

/// Whether `needle` is in any file below `dir`, gzip members decompressed.
fn found_below(dir: &Path, needle: &str) -> bool {
    let script = "find \"$1\" -type f -exec sh -c 'zcat -f \"$1\" 2>/dev/null | grep -aqF \"$2\"' _ {} \"$2\" \\; -print | grep -q .";
    crate::support::run("sh", ["-c", script, "sh", &path_str(dir), needle]).success()
}

#[test]
fn a_secret_never_reaches_the_registry_cache_or_the_pushed_image() {
    if skip_without_sandbox("a_secret_never_reaches_the_registry_cache_or_the_pushed_image") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("registry-cache-secret");
    let registry = Registry::start(&dir, None);
    let base = format!("{}/e2e/base:1", registry.addr);
    strata(["push", hello, &base]).ok();
    let cache_repo = format!("{}/e2e/secret-cache", registry.addr);
    let marker = format!("marker-{}-{}", std::process::id(), dir.display().to_string().len());
    let secret = dir.join("token");
    fs::write(&secret, &marker).unwrap();
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base}\nUSER root\n\
             RUN --mount=type=secret,id=tok,required wc -c < /run/secrets/tok > /length\n\
             RUN --mount=type=secret,id=tok,env=TOK,required sh -c 'echo ${{#TOK}} > /env-length'\n"
        ),
    )
    .unwrap();
    let flag = format!("id=tok,src={}", path_str(&secret));
    let runner_a = dir.join("runner-a");
    let a = build(&runner_a, &ctx, &["--secret", &flag, "--cache-to", &cache_repo]);
    assert!(a.stderr.contains("exported"), "{}", a.describe());
    let pushed = format!("{}/e2e/with-secret:1", registry.addr);
    strata_at(&runner_a, None, &[], &["push", "e2e-remote-cache", &pushed]).ok();
    assert!(!a.stdout.contains(&marker) && !a.stderr.contains(&marker), "not in the build log");
    assert!(!found_below(&dir.join("data"), &marker), "no blob, manifest or cache entry in the registry holds the secret");

    // The cache answers a runner that has no secret at all: the key never held it.
    let b = build(&dir.join("runner-b"), &ctx, &["--cache-from", &cache_repo]);
    let seen = steps(&b);
    assert_eq!(seen.cached, seen.all, "every step is a hit, no secret needed: {}", b.describe());
    let length = strata_at(&dir.join("runner-b"), None, &[], &["run", "--rm", "e2e-remote-cache", "cat", "/length", "/env-length"]).ok();
    assert_eq!(length.stdout.split_whitespace().collect::<Vec<_>>(), [marker.len().to_string(), marker.len().to_string()]);
}
