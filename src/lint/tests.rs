//! One positive and one negative case per rule, with BuildKit's messages, and the
//! `check` setting.

use super::*;
use crate::dockerfile::parse;

/// The findings of `text` with no ignore file, as (rule name, line, message).
fn findings(text: &str) -> Vec<(&'static str, usize, String)> {
    findings_with(text, "")
}

fn findings_with(text: &str, ignore: &str) -> Vec<(&'static str, usize, String)> {
    let df = parse(text, "Dockerfile").unwrap();
    let config = CheckConfig::parse(df.tree.directives.check.as_deref().unwrap_or("")).unwrap();
    check(&df, &Ignore::parse(ignore), &GlobalArgs::default(), &config).into_iter().map(|f| (f.rule.name(), f.line, f.message)).collect()
}

fn rules(text: &str) -> Vec<&'static str> {
    findings(text).into_iter().map(|f| f.0).collect()
}

#[test]
fn a_clean_dockerfile_has_no_findings() {
    let text = "ARG BASE=busybox\nFROM $BASE AS build\nWORKDIR /src\nENV A=1 B=2\nLABEL x=y\nRUN make\nCMD [\"app\"]\n\
                FROM build AS final\nWORKDIR sub\nENTRYPOINT [\"app\"]\nHEALTHCHECK CMD [\"true\"]\n";
    assert_eq!(findings(text), vec![]);
}

#[test]
fn json_args_recommended() {
    assert_eq!(
        findings("FROM x\nCMD echo hi\n"),
        vec![("JSONArgsRecommended", 2, "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals".into())]
    );
    assert_eq!(rules("FROM x\nENTRYPOINT app --serve\n"), vec!["JSONArgsRecommended"]);
    assert_eq!(rules("FROM x\nCMD [\"app\"]\nENTRYPOINT [\"app\"]\n"), Vec::<&str>::new());
    // A SHELL, here or in the stage built on, makes the shell form a choice.
    assert_eq!(rules("FROM x AS a\nSHELL [\"/bin/bash\", \"-c\"]\nFROM a\nCMD echo hi\n"), Vec::<&str>::new());
    assert_eq!(rules("FROM x AS a\nSHELL [\"/bin/bash\", \"-c\"]\nFROM x\nCMD echo hi\n"), vec!["JSONArgsRecommended"]);
}

#[test]
fn stage_name_casing() {
    assert_eq!(findings("FROM x AS Build\n"), vec![("StageNameCasing", 1, "Stage name 'Build' should be lowercase".into())]);
    assert_eq!(rules("FROM x AS build\n"), Vec::<&str>::new());
}

#[test]
fn from_as_casing() {
    assert_eq!(findings("FROM x as build\n"), vec![("FromAsCasing", 1, "'as' and 'FROM' keywords' casing do not match".into())]);
    assert_eq!(rules("from x AS build\n"), vec!["FromAsCasing"]);
    assert_eq!(rules("FROM x AS build\nFROM y\n"), Vec::<&str>::new());
    assert_eq!(rules("from x as build\nfrom y\n"), Vec::<&str>::new());
    // A FROM in mixed case is only ConsistentInstructionCasing's.
    assert_eq!(rules("From x as build\nFROM y\n"), vec!["ConsistentInstructionCasing"]);
}

#[test]
fn duplicate_and_reserved_stage_names() {
    assert_eq!(
        findings("FROM x AS a\nFROM y AS A\n"),
        vec![
            ("StageNameCasing", 2, "Stage name 'A' should be lowercase".into()),
            ("DuplicateStageName", 2, "Duplicate stage name \"a\", stage names should be unique".into()),
        ]
    );
    assert_eq!(
        findings("FROM x AS scratch\n"),
        vec![("ReservedStageName", 1, "Stage name should not use the same name as reserved stage \"scratch\"".into())]
    );
    assert_eq!(rules("FROM x AS a\nFROM y AS b\n"), Vec::<&str>::new());
}

#[test]
fn multiple_instructions_disallowed_names_the_earlier_one() {
    let text = "FROM x\nCMD [\"a\"]\nCMD [\"b\"]\nHEALTHCHECK NONE\nHEALTHCHECK CMD [\"c\"]\nENTRYPOINT [\"e\"]\n";
    assert_eq!(
        findings(text),
        vec![
            (
                "MultipleInstructionsDisallowed",
                2,
                "Multiple CMD instructions should not be used in the same stage because only the last one will be used".into()
            ),
            (
                "MultipleInstructionsDisallowed",
                4,
                "Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used".into()
            ),
        ]
    );
    // One per stage is fine, even when a stage is built on another.
    assert_eq!(rules("FROM x AS a\nCMD [\"a\"]\nFROM a\nCMD [\"b\"]\n"), Vec::<&str>::new());
}

#[test]
fn workdir_relative_path() {
    assert_eq!(
        findings("FROM x\nWORKDIR app\n"),
        vec![("WorkdirRelativePath", 2, "Relative workdir \"app\" can have unexpected results if the base image changes".into())]
    );
    assert_eq!(rules("FROM x\nWORKDIR /app\nWORKDIR sub\n"), Vec::<&str>::new());
    assert_eq!(rules("FROM x AS a\nWORKDIR /app\nFROM a\nWORKDIR sub\n"), Vec::<&str>::new(), "inherited from the stage built on");
    assert_eq!(rules("FROM x AS a\nWORKDIR /app\nFROM x\nWORKDIR sub\n"), vec!["WorkdirRelativePath"]);
}

#[test]
fn secrets_used_in_arg_or_env() {
    assert_eq!(
        findings("FROM x\nARG GITHUB_TOKEN\nENV db_password=x\n"),
        vec![
            ("SecretsUsedInArgOrEnv", 2, "Do not use ARG or ENV instructions for sensitive data (ARG \"GITHUB_TOKEN\")".into()),
            ("SecretsUsedInArgOrEnv", 3, "Do not use ARG or ENV instructions for sensitive data (ENV \"db_password\")".into()),
        ]
    );
    assert_eq!(rules("FROM x\nENV APIKEY=1 AUTH=2\n"), vec!["SecretsUsedInArgOrEnv", "SecretsUsedInArgOrEnv"]);
    // Whole `_`-separated words only, and the allow list wins.
    assert_eq!(rules("FROM x\nARG AUTHOR\nARG MONKEY\nENV PASSWORD_FILE=/run/p PUBLIC_KEY=k KEY_VERSION=2\n"), Vec::<&str>::new());
}

#[test]
fn consistent_instruction_casing() {
    assert_eq!(
        findings("FROM x\nrun a\nRUN b\n"),
        vec![("ConsistentInstructionCasing", 2, "Command 'run' should match the case of the command majority (uppercase)".into())]
    );
    assert_eq!(rules("from x\nrun a\nRUN b\n"), vec!["ConsistentInstructionCasing"]);
    assert_eq!(findings("from x\nrun a\nRUN b\n")[0].1, 3);
    assert_eq!(rules("from x\nrun a\n"), Vec::<&str>::new());
    // ARGs before the first FROM are not counted or judged.
    assert_eq!(rules("arg A=1\nFROM x\n"), Vec::<&str>::new());
}

#[test]
fn legacy_key_value_format() {
    assert_eq!(
        findings("FROM x\nENV A 1\nLABEL k v\n"),
        vec![
            ("LegacyKeyValueFormat", 2, "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format".into()),
            ("LegacyKeyValueFormat", 3, "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format".into()),
        ]
    );
    assert_eq!(rules("FROM x\nENV A=1 B=\"two words\"\nLABEL k=v\n"), Vec::<&str>::new());
}

#[test]
fn maintainer_deprecated() {
    assert_eq!(rules("FROM x\nMAINTAINER me\n"), vec!["MaintainerDeprecated"]);
    assert_eq!(rules("FROM x\nLABEL org.opencontainers.image.authors=me\n"), Vec::<&str>::new());
}

#[test]
fn copy_ignored_file() {
    let text = "FROM x\nCOPY secret.txt ./src/../notes/a.md /dst/\nADD keep.txt /k\nCOPY --from=other secret.txt /s\n";
    assert_eq!(
        findings_with(text, "secret.txt\nnotes\n"),
        vec![
            ("CopyIgnoredFile", 2, "Attempting to Copy file \"secret.txt\" that is excluded by .dockerignore".into()),
            ("CopyIgnoredFile", 2, "Attempting to Copy file \"notes/a.md\" that is excluded by .dockerignore".into()),
        ]
    );
    assert_eq!(
        findings_with("FROM x\nADD secret.txt /s\n", "secret.txt\n")[0].2,
        "Attempting to Add file \"secret.txt\" that is excluded by .dockerignore"
    );
    // An exception makes the answer depend on the tree: BuildKit says nothing then.
    assert_eq!(findings_with(text, "secret.txt\n!keep.txt\n"), vec![]);
    // The context itself only when everything is ignored.
    assert_eq!(findings_with("FROM x\nCOPY . /app\n", "*.md\n"), vec![]);
    assert_eq!(findings_with("FROM x\nCOPY . /app\n", "**\n").len(), 1);
}

#[test]
fn the_check_directive_skips_rules_or_all() {
    assert_eq!(rules("# check=skip=JSONArgsRecommended\nFROM x\nCMD a\nWORKDIR rel\n"), vec!["WorkdirRelativePath"]);
    assert_eq!(rules("# check=skip=JSONArgsRecommended,WorkdirRelativePath\nFROM x\nCMD a\nWORKDIR rel\n"), Vec::<&str>::new());
    assert_eq!(rules("# check=skip=all\nFROM x\nCMD a\nWORKDIR rel\n"), Vec::<&str>::new());
    assert_eq!(rules("# check=skip=NoSuchRule\nFROM x\nCMD a\n"), vec!["JSONArgsRecommended"]);
}

#[test]
fn check_settings_parse_as_buildkit_parses_them() {
    let c = CheckConfig::parse("skip=A, B;error=true").unwrap();
    assert!(c.error);
    assert_eq!(c.skip.iter().map(String::as_str).collect::<Vec<_>>(), ["A", "B"]);
    assert!(!CheckConfig::parse("error=false;experimental=all").unwrap().error);
    assert_eq!(CheckConfig::parse("").unwrap(), CheckConfig::default());
    assert_eq!(CheckConfig::parse("skip").unwrap_err(), "invalid check option \"skip\"");
    assert_eq!(CheckConfig::parse("warn=true").unwrap_err(), "invalid check option \"warn\"");
    assert!(CheckConfig::parse("error=maybe").unwrap_err().contains("\"error=maybe\""));
}

#[test]
fn violations_name_each_rule_once() {
    let df = parse("FROM x\nCMD a\nCMD b\nWORKDIR rel\n", "Dockerfile").unwrap();
    let found = check(&df, &Ignore::default(), &GlobalArgs::default(), &CheckConfig::default());
    assert_eq!(
        violation_error(&found),
        "lint violation found for rules: JSONArgsRecommended, MultipleInstructionsDisallowed, WorkdirRelativePath"
    );
    let shown = found[0].render("Dockerfile");
    assert!(shown.starts_with("Dockerfile:2: "), "{shown}");
    assert!(shown.lines().count() == 2 && shown.lines().nth(1).unwrap().starts_with("  fix: "), "{shown}");
}

/// The findings of `text` built with `given` build arguments on linux/amd64.
fn from_findings(text: &str, given: &[(&str, &str)]) -> Vec<(&'static str, usize, String)> {
    let df = parse(text, "Dockerfile").unwrap();
    let automatic = [("TARGETPLATFORM", "linux/amd64"), ("TARGETARCH", "amd64"), ("BUILDPLATFORM", "linux/amd64")];
    let args = GlobalArgs {
        given: given.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        automatic: automatic.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    check(&df, &Ignore::default(), &args, &CheckConfig::default()).into_iter().map(|f| (f.rule.name(), f.line, f.message)).collect()
}

#[test]
fn undefined_arg_in_from() {
    assert_eq!(
        from_findings("ARG VERSION=3\nFROM alpine:$VERSON\n", &[]),
        vec![
            ("UndefinedArgInFrom", 2, "FROM argument 'VERSON' is not declared (did you mean VERSION?)".into()),
            ("InvalidDefaultArgInFrom", 2, "Default value for ARG alpine:$VERSON results in empty or invalid base image name".into()),
        ]
    );
    assert_eq!(from_findings("FROM $BASE_IMAGE\n", &[("BASE_IMAGE", "alpine")])[0].2, "FROM argument 'BASE_IMAGE' is not declared");
    // Declared (even without a value), or automatic: fine.
    assert_eq!(from_findings("ARG VERSION=3\nARG TAG\nFROM alpine:$VERSION$TAG\nFROM --platform=$BUILDPLATFORM alpine\n", &[]), vec![]);
}

#[test]
fn invalid_default_arg_in_from() {
    assert_eq!(
        from_findings("ARG TAG\nFROM busybox:${TAG}\n", &[("TAG", "1.36")]),
        vec![("InvalidDefaultArgInFrom", 2, "Default value for ARG busybox:${TAG} results in empty or invalid base image name".into())]
    );
    assert_eq!(from_findings("ARG BASE\nFROM ${BASE}\n", &[("BASE", "alpine")]).len(), 1);
    assert_eq!(from_findings("ARG TAG=latest\nFROM busybox:${TAG}\n", &[("TAG", "1.36")]), vec![]);
    assert_eq!(from_findings("ARG TAG\nFROM busybox:${TAG:-latest}\n", &[]), vec![]);
}

#[test]
fn redundant_target_platform_and_constant_platforms() {
    assert_eq!(
        from_findings("FROM --platform=$TARGETPLATFORM busybox\n", &[]),
        vec![(
            "RedundantTargetPlatform",
            1,
            "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior".into()
        )]
    );
    assert_eq!(rules_of(from_findings("FROM --platform=${TARGETPLATFORM} busybox\n", &[])), ["RedundantTargetPlatform"]);
    assert_eq!(from_findings("FROM --platform=$BUILDPLATFORM busybox\n", &[]), vec![]);
    assert_eq!(
        from_findings("FROM --platform=linux/arm64 busybox AS build\n", &[]),
        vec![("FromPlatformFlagConstDisallowed", 1, "FROM --platform flag should not use constant value \"linux/arm64\"".into())]
    );
    assert_eq!(from_findings("FROM --platform=linux/arm64 busybox AS build-arm64\n", &[]), vec![], "the name says which");
}

fn rules_of(found: Vec<(&'static str, usize, String)>) -> Vec<&'static str> {
    found.into_iter().map(|f| f.0).collect()
}

#[test]
fn undefined_var_is_judged_without_building_where_the_base_is_at_hand() {
    let text = "FROM base AS a\nARG DECLARED\nENV FOO=bar\nENV A=$FOOO B=$PATH C=$DECLARED\nRUN echo $NOPE\nLABEL x=${UNSET:-d}\n\
                FROM a\nCOPY $FOO /x/\nFROM other\nWORKDIR $HOME\nFROM scratch\nENV P=$PATH:$Q\n";
    let df = parse(text, "Dockerfile").unwrap();
    let base_env = |r: &str| (r == "base").then(|| vec!["PATH".to_string()]);
    let (found, notes) = check_undefined_vars(&df, &GlobalArgs::default(), &base_env, &CheckConfig::default());
    let found: Vec<(usize, String)> = found.into_iter().map(|f| (f.line, f.message)).collect();
    assert_eq!(
        found,
        [
            (4, "Usage of undefined variable '$FOOO' (did you mean $FOO?)".to_string()),
            (6, "Usage of undefined variable '$UNSET'".to_string()),
            (12, "Usage of undefined variable '$Q'".to_string()),
        ]
    );
    assert_eq!(notes, ["line 9: UndefinedVar not judged in this stage: other is not in the local store"]);
    let skip = CheckConfig::parse("skip=UndefinedVar").unwrap();
    assert_eq!(check_undefined_vars(&df, &GlobalArgs::default(), &base_env, &skip).0, vec![]);
}
