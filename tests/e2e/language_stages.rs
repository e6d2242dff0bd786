//! Multi-stage builds (`--target`, skipped stages, COPY --from a stage, an index or an
//! image), Docker's config extensions (Healthcheck, Shell, OnBuild) through an
//! oci-archive and back as a base, and the failure modes of the language: each a clear
//! error, exit status 1 and nothing tagged (see `language.rs` for the helpers).

use crate::language::{assert_build_fails, assert_env, assert_untagged, sh, skip, Ctx};
use crate::layout::Layout;
use crate::support::{inspect_config, path_str, scratch, strata, strings};

const STAGES: &str = r#"FROM busybox AS base
RUN echo base > /base.txt
FROM base AS builder
RUN echo built > /built.txt
FROM busybox AS unused
RUN exit 1
FROM busybox AS second
RUN echo second > /second.txt
ENV SECOND_ENV=1
FROM builder AS final
COPY --from=builder /built.txt /from-name.txt
COPY --from=3 /second.txt /from-index.txt
COPY --from=busybox /etc/group /from-image-group
LABEL stage=final
FROM final AS after
RUN exit 1
"#;

#[test]
fn multi_stage_target_and_skipped_stages() {
    if skip("multi_stage_target_and_skipped_stages") {
        return;
    }
    let ctx = Ctx::new("lang-stages", STAGES);
    // `final` needs base, builder and second; `unused` and `after` (both failing) never run.
    ctx.build_ok("lang-stages", &["--target", "final"]);
    let out = sh("lang-stages", "cat /base.txt /built.txt /from-name.txt /from-index.txt; test -e /second.txt || echo no-second");
    assert_eq!(out, "base\nbuilt\nbuilt\nsecond\nno-second\n", "FROM an earlier stage, COPY --from by name and by index");
    assert_eq!(
        sh("lang-stages", "cat /from-image-group"),
        std::fs::read_to_string(crate::support::fixtures().join("busybox/group")).expect("group")
    );
    let config = inspect_config("lang-stages");
    assert_eq!(config["Labels"]["stage"], "final", "{config:#}");
    assert!(!strings(&config["Env"]).iter().any(|e| e.starts_with("SECOND_ENV=")), "COPY --from takes no config: {config:#}");

    // --target naming an intermediate stage stops there.
    ctx.build_ok("lang-stages-builder", &["--target", "builder"]);
    let out = sh("lang-stages-builder", "cat /base.txt /built.txt; test -e /from-name.txt || echo not-final");
    assert_eq!(out, "base\nbuilt\nnot-final\n");

    // Without --target the last stage is built, and its RUN exit 1 fails the build.
    let run = ctx.build("lang-stages-last", &[]);
    assert_build_fails(&run, "lang-stages-last", &["Dockerfile:16"]);

    // Stage names are case-insensitive in FROM and --from (BuildKit lowercases them).
    let ctx =
        Ctx::new("lang-stages-case", "FROM busybox AS Maker\nRUN echo made > /made.txt\nFROM busybox\nCOPY --from=maker /made.txt /\n");
    ctx.build_ok("lang-stages-case", &[]);
    assert_eq!(sh("lang-stages-case", "cat /made.txt"), "made\n");
}

#[test]
fn copy_from_expands_args_to_pick_the_stage() {
    if skip("copy_from_expands_args_to_pick_the_stage") {
        return;
    }
    // The stages are needed only through an expanded --from: the plan must build them.
    let dockerfile = "ARG SRC=maker\n\
        FROM busybox AS maker\n\
        RUN echo made > /made.txt\n\
        FROM busybox AS other\n\
        RUN echo other > /other.txt\n\
        FROM busybox AS skipped\n\
        RUN exit 1\n\
        FROM busybox\n\
        ARG SRC\n\
        ARG STAGE=skipped\n\
        COPY --from=$SRC /made.txt /\n\
        COPY --from=${STAGE} /other.txt /\n";
    let ctx = Ctx::new("lang-from-var", dockerfile);
    ctx.build_ok("lang-from-var", &["--build-arg", "STAGE=other"]);
    assert_eq!(sh("lang-from-var", "cat /made.txt /other.txt"), "made\nother\n", "meta ARG and stage ARG (build arg) in --from");
    // With the default, --from names the failing stage, which is then built.
    let run = ctx.build("lang-from-var-default", &[]);
    assert_build_fails(&run, "lang-from-var-default", &["Dockerfile:7"]);
}

#[test]
fn from_platform_and_automatic_platform_args() {
    if skip("from_platform_and_automatic_platform_args") {
        return;
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let dockerfile = "FROM --platform=$BUILDPLATFORM busybox AS build\n\
        ARG TARGETOS\n\
        ARG TARGETARCH\n\
        ARG BUILDPLATFORM\n\
        RUN echo \"$TARGETOS/$TARGETARCH $BUILDPLATFORM\" > /plat.txt\n\
        FROM --platform=linux/@ARCH@ busybox\n\
        COPY --from=build /plat.txt /\n"
        .replace("@ARCH@", arch);
    let ctx = Ctx::new("lang-platform", &dockerfile);
    ctx.build_ok("lang-platform", &[]);
    assert_eq!(sh("lang-platform", "cat /plat.txt"), format!("linux/{arch} linux/{arch}\n"), "automatic platform ARGs");
}

#[test]
fn config_extensions_survive_oci_archive_and_reimport() {
    if skip("config_extensions_survive_oci_archive_and_reimport") {
        return;
    }
    let out = scratch("lang-archive");
    let archive = out.join("parent.tar");
    let parent = Ctx::new(
        "lang-archive-parent",
        "FROM busybox\n\
         SHELL [\"/bin/sh\", \"-ec\"]\n\
         HEALTHCHECK --interval=7s --timeout=3s --retries=2 CMD [\"true\"]\n\
         ONBUILD RUN echo \"trigger flags $-\" > /trigger.txt\n\
         ONBUILD LABEL from-trigger=yes\n",
    );
    parent.build_ok("lang-archive-parent", &["--output", &format!("oci-archive:{}", path_str(&archive))]);

    // The archive itself holds the extension fields.
    let layout = Layout::from_archive(&archive, &out.join("unpacked"));
    let config = layout.config(&layout.manifest(None));
    let inner = &config["config"];
    assert_eq!(strings(&inner["Shell"]), ["/bin/sh", "-ec"], "{config:#}");
    assert_eq!(strings(&inner["Healthcheck"]["Test"]), ["CMD", "true"], "{config:#}");
    assert_eq!(inner["Healthcheck"]["Interval"], 7_000_000_000u64, "{config:#}");
    assert_eq!(inner["Healthcheck"]["Retries"], 2, "{config:#}");
    assert_eq!(strings(&inner["OnBuild"]), ["RUN echo \"trigger flags $-\" > /trigger.txt", "LABEL from-trigger=yes"], "{config:#}");

    // Forget the store's copy; the child builds FROM the archive.
    strata(["rmi", "lang-archive-parent"]).ok();
    let child =
        Ctx::new("lang-archive-child", &format!("FROM oci-archive:{}\nRUN echo \"child flags $-\" > /child.txt\n", path_str(&archive)));
    child.build_ok("lang-archive-child", &[]);
    let config = inspect_config("lang-archive-child");
    assert_eq!(strings(&config["Shell"]), ["/bin/sh", "-ec"], "Shell inherited: {config:#}");
    assert_eq!(strings(&config["Healthcheck"]["Test"]), ["CMD", "true"], "Healthcheck inherited: {config:#}");
    assert_eq!(config["Healthcheck"]["Timeout"], 3_000_000_000u64, "{config:#}");
    assert!(strings(&config["OnBuild"]).is_empty(), "triggers are consumed: {config:#}");
    assert_eq!(config["Labels"]["from-trigger"], "yes", "the LABEL trigger ran: {config:#}");
    let out = sh("lang-archive-child", "cat /trigger.txt /child.txt");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // `$-` is the shell's option letters: `e` only under the inherited SHELL -ec.
    let flags = |line: &str, prefix: &str| line.strip_prefix(prefix).map(str::to_owned);
    let trigger = flags(lines[0], "trigger flags ").unwrap_or_else(|| panic!("the trigger's line: {out}"));
    let child = flags(lines[1], "child flags ").unwrap_or_else(|| panic!("the child's line: {out}"));
    assert!(trigger.contains('e'), "the RUN trigger ran with the inherited SHELL -ec (flags {trigger:?}): {out}");
    assert!(child.contains('e'), "the child's RUN uses the inherited SHELL -ec (flags {child:?}): {out}");
}

#[test]
fn failures_are_clear_and_tag_nothing() {
    if skip("failures_are_clear_and_tag_nothing") {
        return;
    }
    // Each: (name, Dockerfile, extra args, needles in stderr).
    let cases: [(&str, &str, &[&str], &[&str]); 17] = [
        ("unknown-instr", "FROM busybox\nRUN true\n\nFROBNICATE now\n", &[], &["Dockerfile:4", "FROBNICATE"]),
        ("unknown-flag", "FROM busybox\nADD --nope a.txt /\n", &[], &["Dockerfile:2", "nope"]),
        ("bad-json", "FROM busybox\nSHELL [\"sh\" \"-c\"]\n", &[], &["Dockerfile:2"]),
        ("missing-src", "FROM busybox\nRUN true\nCOPY missing.txt /\n", &[], &["Dockerfile:3", "missing.txt"]),
        ("unknown-from", "FROM busybox\nCOPY --from=nosuchstage /x /x\n", &[], &["nosuchstage"]),
        ("required-var", "FROM busybox\nENV HINT=where-is-needed\nWORKDIR ${WHERE:?$HINT}\n", &[], &["where-is-needed"]),
        ("no-from", "RUN true\n", &[], &["Dockerfile:1"]),
        ("blank-from", "ARG NOPE\nFROM ${NOPE}\n", &[], &["Dockerfile:2"]),
        ("dup-stage", "FROM busybox AS a\nRUN true\nFROM busybox AS a\n", &[], &["Dockerfile:3", "a"]),
        ("bad-stage-name", "FROM busybox AS 1bad!\n", &[], &["Dockerfile:1", "1bad!"]),
        ("onbuild-from", "FROM busybox\nONBUILD FROM busybox\n", &[], &["Dockerfile:2"]),
        ("onbuild-onbuild", "FROM busybox\nONBUILD ONBUILD RUN true\n", &[], &["Dockerfile:2"]),
        ("unknown-user", "FROM busybox\nUSER nosuchuser\nRUN true\n", &[], &["nosuchuser"]),
        ("unknown-chown", "FROM busybox\nCOPY --chown=nosuchowner a.txt /\n", &[], &["nosuchowner"]),
        ("bad-duration", "FROM busybox\nHEALTHCHECK --interval=soon CMD true\n", &[], &["Dockerfile:2", "soon"]),
        ("run-insecure", "FROM busybox\nRUN --security=insecure true\n", &[], &["Dockerfile:2", "insecure"]),
        ("run-device", "FROM busybox\nRUN --device=/dev/fuse true\n", &[], &["Dockerfile:2", "--device"]),
    ];
    for (name, dockerfile, extra, needles) in cases {
        let tag = format!("lang-fail-{name}");
        let ctx = Ctx::new(&tag, dockerfile);
        ctx.file("a.txt", "A\n");
        let run = ctx.build(&tag, extra);
        assert_build_fails(&run, &tag, needles);
    }

    // --target naming no stage.
    let ctx = Ctx::new("lang-fail-target", "FROM busybox AS one\nRUN true\n");
    let run = ctx.build("lang-fail-target", &["--target", "nosuch"]);
    assert!(matches!(run.code, Some(1) | Some(2)), "non-zero exit: {}", run.describe());
    assert!(run.stderr.contains("nosuch"), "the error names the missing target: {}", run.describe());
    assert_untagged("lang-fail-target");

    // A failing build with a previously built tag leaves the old image in place.
    let ctx = Ctx::new("lang-fail-keep", "FROM busybox\nLABEL version=1\n");
    ctx.build_ok("lang-fail-keep", &[]);
    ctx.file("Dockerfile", "FROM busybox\nLABEL version=2\nRUN exit 5\n");
    let run = ctx.build("lang-fail-keep", &[]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert_eq!(inspect_config("lang-fail-keep")["Labels"]["version"], "1", "the tag still names the old image");
    assert_env(&inspect_config("lang-fail-keep"), &format!("PATH={}", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
}
