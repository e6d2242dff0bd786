//! The build checks from the command line: `build --check` reports BuildKit's
//! rules by file and line, builds nothing and exits 1 on a finding; an ordinary
//! build prints the same findings as warnings; `# check=error=true` stops a
//! build before its first step, and the BUILDKIT_DOCKERFILE_CHECK build argument
//! takes the directive's place.

use crate::language::{skip, Ctx};
use crate::support::{path_str, strata};

/// A stage with a shell-form CMD (JSONArgsRecommended) and a relative first
/// WORKDIR (WorkdirRelativePath), each tagged per test.
const FLAWED: &str = "FROM busybox\nWORKDIR app\nCMD echo hi\n";

#[test]
fn check_reports_each_finding_by_line_and_builds_nothing() {
    let ctx = Ctx::new("check-flawed", FLAWED);
    ctx.file(".dockerignore", "secret.txt\n");
    ctx.file("Dockerfile", &format!("{FLAWED}COPY secret.txt /s\n"));
    let tag = format!("check-flawed-{}", std::process::id());
    let run = strata(["build", "--check", "-t", &tag, &path_str(&ctx.dir)]);
    assert_eq!(run.code, Some(1), "a finding fails the check: {}", run.describe());
    let lines: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("Dockerfile:")).collect();
    assert_eq!(
        lines,
        [
            "Dockerfile:2: WorkdirRelativePath: Relative workdir \"app\" can have unexpected results if the base image changes",
            "Dockerfile:3: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
            "Dockerfile:4: CopyIgnoredFile: Attempting to Copy file \"secret.txt\" that is excluded by .dockerignore",
        ],
        "{}",
        run.describe()
    );
    assert!(run.stdout.lines().filter(|l| l.starts_with("  fix: ")).count() == 3, "each finding has its fix: {}", run.describe());
    assert!(run.stdout.contains("Check complete, 3 warnings have been found!"), "{}", run.describe());
    assert!(!strata(["inspect", &tag]).success(), "--check builds and tags nothing");
}

#[test]
fn check_passes_a_clean_dockerfile_and_honours_skip() {
    let ctx = Ctx::new("check-clean", "FROM busybox AS base\nWORKDIR /app\nCMD [\"sh\"]\n");
    let run = strata(["build", "--check", &path_str(&ctx.dir)]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert!(run.stdout.contains("Check complete, no warnings found."), "{}", run.describe());

    let skipped = Ctx::new("check-skip", &format!("# check=skip=JSONArgsRecommended,WorkdirRelativePath\n{FLAWED}"));
    let run = strata(["build", "--check", &path_str(&skipped.dir)]);
    assert_eq!(run.code, Some(0), "skipped rules find nothing: {}", run.describe());
    let all = Ctx::new("check-skip-all", &format!("# check=skip=all\n{FLAWED}"));
    assert_eq!(strata(["build", "--check", &path_str(&all.dir)]).code, Some(0));
}

#[test]
fn a_bad_check_setting_or_dockerfile_is_an_error_naming_the_file() {
    let ctx = Ctx::new("check-bad-setting", &format!("# check=skip=all;loud=yes\n{FLAWED}"));
    let run = strata(["build", "--check", &path_str(&ctx.dir)]);
    assert!(
        !run.success() && run.stderr.contains("Dockerfile: failed to parse check options: invalid check option \"loud\""),
        "{}",
        run.describe()
    );
    let broken = Ctx::new("check-bad-dockerfile", "FROM busybox\nNOPE x\n");
    let run = strata(["build", "--check", &path_str(&broken.dir)]);
    assert!(!run.success() && run.stderr.contains("Dockerfile:2: unknown instruction: NOPE"), "{}", run.describe());
}

#[test]
fn a_build_warns_and_error_true_stops_it_before_any_step() {
    if skip("a_build_warns_and_error_true_stops_it_before_any_step") {
        return;
    }
    let tag = format!("check-warns-{}", std::process::id());
    let ctx = Ctx::new("check-warns", FLAWED);
    let run = strata(["build", "-t", &tag, &path_str(&ctx.dir)]).ok();
    assert!(run.stderr.contains("warning: Dockerfile:3: JSONArgsRecommended: "), "the build warns: {}", run.describe());

    let strict = Ctx::new("check-error", &format!("# check=error=true\n{FLAWED}RUN touch /ran\n"));
    let strict_tag = format!("{tag}-strict");
    let run = strata(["build", "-t", &strict_tag, &path_str(&strict.dir)]);
    assert!(!run.success(), "{}", run.describe());
    assert!(run.stderr.contains("lint violation found for rules: JSONArgsRecommended, WorkdirRelativePath"), "{}", run.describe());
    assert!(!run.stderr.contains("RUN touch"), "no step ran: {}", run.describe());
    assert!(!strata(["inspect", &strict_tag]).success(), "nothing is tagged");

    // The build argument replaces the directive whole, as in BuildKit.
    let arg = "BUILDKIT_DOCKERFILE_CHECK=skip=JSONArgsRecommended,WorkdirRelativePath;error=true";
    let run = strata(["build", "--build-arg", arg, "-t", &strict_tag, &path_str(&strict.dir)]).ok();
    assert!(!run.stderr.contains("were not consumed"), "the check argument is the builder's own: {}", run.describe());
}

#[test]
fn wasted_layer_space_names_the_deleting_and_the_adding_line() {
    if skip("wasted_layer_space_names_the_deleting_and_the_adding_line") {
        return;
    }
    let text = "FROM busybox\nENV TEST=UNIQUE\nRUN head -c 3145728 /dev/zero > /big && echo small > /small\nRUN rm /big /small /bin/true\n";
    let tag = format!("wasted-{}", std::process::id());
    let ctx = Ctx::new("wasted", &text.replace("UNIQUE", &tag));
    let run = strata(["build", "-t", &tag, &path_str(&ctx.dir)]).ok();
    let warned: Vec<&str> = run.stderr.lines().filter(|l| l.contains("WastedLayerSpace")).collect();
    assert_eq!(
        warned,
        ["strata: warning: Dockerfile:4: WastedLayerSpace: 3.0 MiB (/big, /small) added at line 3 and deleted here still ship in line 3's layer"],
        "the base image's /bin/true is not this Dockerfile's waste: {}",
        run.describe()
    );

    // Skipped, it says nothing; under error=true it stops the build and tags nothing.
    let skipped = Ctx::new("wasted-skip", &format!("# check=skip=WastedLayerSpace\n{}", text.replace("UNIQUE", &format!("{tag}-skip"))));
    let run = strata(["build", &path_str(&skipped.dir)]).ok();
    assert!(!run.stderr.contains("WastedLayerSpace"), "{}", run.describe());
    let strict = Ctx::new("wasted-error", &format!("# check=error=true\n{}", text.replace("UNIQUE", &format!("{tag}-strict"))));
    let strict_tag = format!("{tag}-strict");
    let run = strata(["build", "-t", &strict_tag, &path_str(&strict.dir)]);
    assert!(!run.success() && run.stderr.contains("lint violation found for rules: WastedLayerSpace"), "{}", run.describe());
    assert!(!strata(["inspect", &strict_tag]).success());
}

#[test]
fn undefined_var_is_judged_with_the_base_images_env() {
    if skip("undefined_var_is_judged_with_the_base_images_env") {
        return;
    }
    // PATH comes from the base image's config; DECLARED is an ARG without a value;
    // RUN's words are the shell's.
    let text = "FROM busybox\nARG DECLARED\nENV FOO=bar\nENV A=$FOOO B=$PATH C=$DECLARED\nRUN echo $NOPE\nLABEL x=${UNSET:-default}\n";
    let ctx = Ctx::new("undefined-var", text);
    let run = strata(["build", &path_str(&ctx.dir)]).ok();
    let warned: Vec<&str> = run.stderr.lines().filter(|l| l.contains("UndefinedVar")).collect();
    assert_eq!(
        warned,
        [
            "strata: warning: Dockerfile:4: UndefinedVar: Usage of undefined variable '$FOOO' (did you mean $FOO?)",
            "strata: warning: Dockerfile:6: UndefinedVar: Usage of undefined variable '$UNSET'",
        ],
        "{}",
        run.describe()
    );
    let skipped = Ctx::new("undefined-var-skip", &format!("# check=skip=UndefinedVar\n{text}"));
    assert!(!strata(["build", &path_str(&skipped.dir)]).ok().stderr.contains("UndefinedVar"));

    // --check finds the same, with busybox's ENV read from the store.
    let run = strata(["build", "--check", &path_str(&ctx.dir)]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let found: Vec<&str> = run.stdout.lines().filter(|l| l.contains("UndefinedVar")).collect();
    assert_eq!(
        found,
        [
            "Dockerfile:4: UndefinedVar: Usage of undefined variable '$FOOO' (did you mean $FOO?)",
            "Dockerfile:6: UndefinedVar: Usage of undefined variable '$UNSET'",
        ],
        "{}",
        run.describe()
    );
}
