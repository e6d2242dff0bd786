//! Build checks: BuildKit's Dockerfile lint rules, under its names and with its
//! meanings, found in the parsed Dockerfile (and its ignore file) before anything
//! is built. `strata build --check` reports them and builds nothing; every build
//! prints them as warnings, and fails on them under `# check=error=true`.
//!
//! Two rules need what only a build has: WastedLayerSpace, strata's own, the
//! layers (`engine::wasted` judges it after each RUN), and UndefinedVar, the base
//! images' ENV (`engine::undefined` notes it as words are expanded; `--check`
//! follows each stage's names with the base image's ENV from the local store,
//! `undefined_vars`). `--check` cannot judge WastedLayerSpace.
//!
//! Which rules run is BuildKit's `check` setting ([`CheckConfig`]): the
//! `# check=` parser directive, or the `BUILDKIT_DOCKERFILE_CHECK` build
//! argument in its place.

mod config;
mod from_args;
mod rules;
#[cfg(test)]
mod tests;
mod undefined_vars;

pub use config::CheckConfig;
pub use from_args::{suggest, GlobalArgs};
pub use undefined_vars::BaseEnv;

use crate::dockerfile::{Dockerfile, Ignore};

/// A check, by BuildKit's name for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    JsonArgsRecommended,
    StageNameCasing,
    FromAsCasing,
    DuplicateStageName,
    ReservedStageName,
    MultipleInstructionsDisallowed,
    WorkdirRelativePath,
    SecretsUsedInArgOrEnv,
    ConsistentInstructionCasing,
    LegacyKeyValueFormat,
    MaintainerDeprecated,
    CopyIgnoredFile,
    UndefinedArgInFrom,
    InvalidDefaultArgInFrom,
    RedundantTargetPlatform,
    FromPlatformFlagConstDisallowed,
    /// strata's own: a RUN deletes what an earlier step added (judged by the
    /// build, which has the layers; see `engine::wasted`).
    WastedLayerSpace,
    /// Judged by the build, which knows the base images' ENV (`engine::undefined`).
    UndefinedVar,
}

impl Rule {
    /// BuildKit's name, which `# check=skip=` takes.
    pub fn name(self) -> &'static str {
        self.facts().0
    }

    /// The page Docker's documentation keeps for the rule.
    pub fn url(self) -> String {
        match self.facts().1 {
            "" => "strata's own rule; BuildKit has none like it".to_string(),
            slug => format!("https://docs.docker.com/go/dockerfile/rule/{slug}/"),
        }
    }

    /// What to write instead, in one line.
    pub fn fix(self) -> &'static str {
        self.facts().2
    }

    /// (name, documentation slug, fix).
    fn facts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Rule::JsonArgsRecommended => (
                "JSONArgsRecommended",
                "json-args-recommended",
                "write it as a JSON array, e.g. CMD [\"app\", \"--flag\"], so the program is PID 1 and gets signals",
            ),
            Rule::StageNameCasing => ("StageNameCasing", "stage-name-casing", "name the stage in lowercase"),
            Rule::FromAsCasing => ("FromAsCasing", "from-as-casing", "write AS in the same case as FROM (FROM x AS y, or from x as y)"),
            Rule::DuplicateStageName => ("DuplicateStageName", "duplicate-stage-name", "give each stage a name of its own"),
            Rule::ReservedStageName => {
                ("ReservedStageName", "reserved-stage-name", "rename the stage: 'scratch' and 'context' are reserved")
            }
            Rule::MultipleInstructionsDisallowed => (
                "MultipleInstructionsDisallowed",
                "multiple-instructions-disallowed",
                "keep only the last one: the earlier ones have no effect",
            ),
            Rule::WorkdirRelativePath => {
                ("WorkdirRelativePath", "workdir-relative-path", "make the stage's first WORKDIR absolute, e.g. WORKDIR /app")
            }
            Rule::SecretsUsedInArgOrEnv => (
                "SecretsUsedInArgOrEnv",
                "secrets-used-in-arg-or-env",
                "pass it with RUN --mount=type=secret: ARG and ENV values stay in the image",
            ),
            Rule::ConsistentInstructionCasing => {
                ("ConsistentInstructionCasing", "consistent-instruction-casing", "write every instruction in the same case as most of them")
            }
            Rule::LegacyKeyValueFormat => {
                ("LegacyKeyValueFormat", "legacy-key-value-format", "write key=value, quoting a value with spaces")
            }
            Rule::MaintainerDeprecated => {
                ("MaintainerDeprecated", "maintainer-deprecated", "use LABEL org.opencontainers.image.authors=\"name <email>\"")
            }
            Rule::CopyIgnoredFile => ("CopyIgnoredFile", "copy-ignored-file", "remove the path from the ignore file, or stop copying it"),
            Rule::UndefinedArgInFrom => {
                ("UndefinedArgInFrom", "undefined-arg-in-from", "declare it with ARG before the first FROM, e.g. ARG NAME=default")
            }
            Rule::InvalidDefaultArgInFrom => (
                "InvalidDefaultArgInFrom",
                "invalid-default-arg-in-from",
                "give the ARG a default that names an image, e.g. ARG BASE=alpine",
            ),
            Rule::RedundantTargetPlatform => (
                "RedundantTargetPlatform",
                "redundant-target-platform",
                "drop --platform=$TARGETPLATFORM: FROM already pulls for the target",
            ),
            Rule::FromPlatformFlagConstDisallowed => (
                "FromPlatformFlagConstDisallowed",
                "from-platform-flag-const-disallowed",
                "use a variable ($BUILDPLATFORM), or name the stage after its platform",
            ),
            Rule::UndefinedVar => {
                ("UndefinedVar", "undefined-var", "define it first (ARG NAME, ENV NAME=value), or give it a default: ${NAME:-value}")
            }
            Rule::WastedLayerSpace => {
                ("WastedLayerSpace", "", "delete files in the RUN that makes them, or COPY --from a build stage only what is kept")
            }
        }
    }

    /// Every rule, for names in `# check=skip=`.
    pub const ALL: [Rule; 18] = [
        Rule::JsonArgsRecommended,
        Rule::StageNameCasing,
        Rule::FromAsCasing,
        Rule::DuplicateStageName,
        Rule::ReservedStageName,
        Rule::MultipleInstructionsDisallowed,
        Rule::WorkdirRelativePath,
        Rule::SecretsUsedInArgOrEnv,
        Rule::ConsistentInstructionCasing,
        Rule::LegacyKeyValueFormat,
        Rule::MaintainerDeprecated,
        Rule::CopyIgnoredFile,
        Rule::UndefinedArgInFrom,
        Rule::InvalidDefaultArgInFrom,
        Rule::RedundantTargetPlatform,
        Rule::FromPlatformFlagConstDisallowed,
        Rule::WastedLayerSpace,
        Rule::UndefinedVar,
    ];
}

/// One rule broken at one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    /// 1-based line of the instruction the finding is about.
    pub line: usize,
    /// BuildKit's message for it.
    pub message: String,
}

impl Finding {
    /// `FILE:LINE: RULE: message`, then the fix on a line of its own.
    pub fn render(&self, file: &str) -> String {
        format!("{file}:{}: {}: {}\n  fix: {} ({})", self.line, self.rule.name(), self.message, self.rule.fix(), self.rule.url())
    }
}

/// Runs every rule `config` keeps over `df`, whose context's ignore file is
/// `ignore`, built with `args`; the findings come in line order.
pub fn check(df: &Dockerfile, ignore: &Ignore, args: &GlobalArgs, config: &CheckConfig) -> Vec<Finding> {
    let mut findings = rules::all(df, ignore);
    from_args::check(df, args, &mut findings);
    findings.retain(|f| config.runs(f.rule));
    // Stable: two findings on one line keep the order the rules ran in.
    findings.sort_by_key(|f| f.line);
    findings
}

/// UndefinedVar over `df` without building it, the base images' ENV from
/// `base_env` (see [`BaseEnv`]); the findings in line order, and a note for each
/// stage it could not judge.
pub fn check_undefined_vars(
    df: &Dockerfile,
    args: &GlobalArgs,
    base_env: BaseEnv<'_>,
    config: &CheckConfig,
) -> (Vec<Finding>, Vec<String>) {
    if !config.runs(Rule::UndefinedVar) {
        return (Vec::new(), Vec::new());
    }
    let mut findings = Vec::new();
    let notes = undefined_vars::check(df, args, base_env, &mut findings);
    findings.sort_by_key(|f| f.line);
    (findings, notes)
}

/// BuildKit's error for a build that `# check=error=true` stops: the rules
/// broken, each named once.
pub fn violation_error(findings: &[Finding]) -> String {
    let mut names: Vec<&str> = findings.iter().map(|f| f.rule.name()).collect();
    names.sort_unstable();
    names.dedup();
    format!("lint violation found for rules: {}", names.join(", "))
}
