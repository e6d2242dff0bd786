//! `--jobs`: independent stages build side by side, and what they make does not
//! depend on it. Concurrency is shown without timing: two stages meet through a
//! shared cache mount, which only stages running at once can do. A failing stage
//! stops the stage beside it, whose RUN would otherwise sleep for a minute.

use std::time::{Duration, Instant};

use crate::language::{skip, Ctx};
use crate::mounts::{build_in, unique};
use crate::store::{private_store, strata_at};

/// Four stages, two of them deep, joined by the last: `--jobs` must not change it.
const FOUR_STAGES: &str = "\
FROM base AS a
RUN echo a > /a && mkdir -p /out && cp /a /out/
FROM a AS a2
RUN echo a2 >> /out/a
FROM base AS b
RUN echo b > /b
FROM base AS c
COPY c.txt /c
FROM base
COPY --from=a2 /out/a /a
COPY --from=b /b /b
COPY --from=c /c /c
RUN cat /a /b /c > /all
";

#[test]
fn jobs_one_and_two_give_the_same_image_digests() {
    if skip("jobs_one_and_two_give_the_same_image_digests") {
        return;
    }
    let ctx = Ctx::new("jobs-digests", FOUR_STAGES);
    ctx.file("c.txt", "c\n");
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let mut digests = Vec::new();
    for jobs in ["1", "2"] {
        // A fresh store each: every step runs, nothing comes from the other's cache.
        let root = private_store(&format!("jobs-digests-{jobs}"));
        build_in(&root, &ctx, "four", &["--jobs", jobs], &epoch).ok();
        let inspect = strata_at(&root, &["inspect", "four"], &[]).ok().json();
        let all = strata_at(&root, &["run", "--rm", "four", "cat", "/all"], &[]).ok().stdout;
        assert_eq!(all, "a\na2\nb\nc\n", "--jobs {jobs}: every stage's file reached the last stage");
        digests.push((inspect[0]["Digest"].clone(), inspect[0]["Id"].clone()));
    }
    assert_eq!(digests[0], digests[1], "--jobs 1 and --jobs 2 give the same manifest digest and image id");
}

/// Two stages that each wait for a file the other writes into one shared cache
/// mount: built one after the other, the first would wait in vain.
fn rendezvous(cache_id: &str) -> String {
    let wait = |mine: &str, theirs: &str| {
        format!(
            "RUN --mount=type=cache,id={cache_id},target=/meet,sharing=shared \
             touch /meet/{mine} && i=0; until [ -e /meet/{theirs} ]; do i=$((i+1)); \
             [ $i -lt 150 ] || {{ echo no {theirs} after 15s; exit 1; }}; sleep 0.1; done; echo {mine} > /{mine}\n"
        )
    };
    format!(
        "FROM base AS left\n{}FROM base AS right\n{}FROM base\nCOPY --from=left /left /left\nCOPY --from=right /right /right\n",
        wait("left", "right"),
        wait("right", "left")
    )
}

#[test]
fn independent_stages_run_at_the_same_time() {
    if skip("independent_stages_run_at_the_same_time") {
        return;
    }
    let root = private_store("jobs-meet");
    let ctx = Ctx::new("jobs-meet", &rendezvous(&unique("meet")));
    let run = build_in(&root, &ctx, "met", &["--jobs", "2", "--progress=plain"], &[]).ok();
    // Each stage's lines carry its label, whatever order they came in.
    assert!(run.stderr.contains("[1/3] STEP 2/2: RUN") && run.stderr.contains("[2/3] STEP 2/2: RUN"), "{}", run.stderr);
    assert_eq!(strata_at(&root, &["run", "--rm", "met", "cat", "/left", "/right"], &[]).ok().stdout, "left\nright\n");
    // The default is one job per CPU; with one job the stages cannot meet.
    let ctx = Ctx::new("jobs-alone", &rendezvous(&unique("alone")));
    let alone = build_in(&root, &ctx, "alone", &["--jobs", "1"], &[]);
    assert!(!alone.success(), "one job builds the stages in turn: {}", alone.describe());
    assert!(alone.stderr.contains("no right after 15s"), "{}", alone.stderr);
}

#[test]
fn a_failing_stage_stops_the_stages_beside_it() {
    if skip("a_failing_stage_stops_the_stages_beside_it") {
        return;
    }
    let root = private_store("jobs-fail");
    let id = unique("fail");
    let dockerfile = format!(
        "FROM base AS slow\n\
         RUN --mount=type=cache,id={id},target=/meet,sharing=shared touch /meet/slow && sleep 60\n\
         RUN echo never > /never\n\
         FROM base AS broken\n\
         RUN --mount=type=cache,id={id},target=/meet,sharing=shared until [ -e /meet/slow ]; do sleep 0.1; done; echo broken on purpose; exit 3\n\
         FROM base\n\
         COPY --from=slow /never /never\n\
         COPY --from=broken /etc/passwd /p\n"
    );
    let ctx = Ctx::new("jobs-fail", &dockerfile);
    let started = Instant::now();
    let run = build_in(&root, &ctx, "failed", &["--jobs", "2"], &[]);
    let took = started.elapsed();
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.stderr.contains("failed with exit status 3"), "the broken stage's error: {}", run.stderr);
    assert!(run.stderr.contains(":5"), "the error names the failing line: {}", run.stderr);
    assert!(!run.stderr.contains("echo never"), "the slow stage started no further step: {}", run.stderr);
    assert!(took < Duration::from_secs(45), "the slow stage's sleep was killed, not waited for ({took:?})");
    assert!(strata_at(&root, &["inspect", "failed"], &[]).code != Some(0), "nothing was tagged");
}

#[test]
fn a_from_only_the_base_images_env_names_waits_for_that_stage() {
    if skip("a_from_only_the_base_images_env_names_waits_for_that_stage") {
        return;
    }
    // The plan cannot expand `$SRC` (it comes from the base stage's ENV), so the last
    // stage must wait for every stage before it, the slow one included.
    let dockerfile = "FROM base AS slow\nRUN sleep 2 && echo slow > /slow\nFROM base AS withenv\nENV SRC=slow\nFROM withenv\nCOPY --from=$SRC /slow /slow\n";
    let root = private_store("jobs-env-from");
    let ctx = Ctx::new("jobs-env-from", dockerfile);
    build_in(&root, &ctx, "envfrom", &["--jobs", "2"], &[]).ok();
    assert_eq!(strata_at(&root, &["run", "--rm", "envfrom", "cat", "/slow"], &[]).ok().stdout, "slow\n");
}
