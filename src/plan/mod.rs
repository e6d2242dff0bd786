//! Dockerfile + build args + target -> a build plan: the stages, which of them the
//! target needs, and the order to build them in.
//!
//! Only FROM lines are expanded here (with the ARGs declared before the first FROM),
//! because stage dependencies must be known before anything runs. Everything else
//! stays unexpanded for the build, which expands with each stage's own state.

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerfile::{expand_word, mount_from, Dockerfile, Instruction, Located};
use crate::platform::Platform;

/// Why a plan could not be made; each names the Dockerfile line.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{file}:{line}: {message}")]
    At { file: String, line: usize, message: String },
    #[error("{file}: no FROM instruction: a Dockerfile must start its first stage with FROM")]
    NoStage { file: String },
    #[error("target stage {target:?} could not be found (stages: {known})")]
    UnknownTarget { target: String, known: String },
}

/// One stage: its FROM and the instructions after it.
#[derive(Clone, Debug)]
pub struct Stage {
    pub index: usize,
    pub name: Option<String>,
    /// The FROM image reference after meta-ARG expansion.
    pub base: String,
    /// `FROM --platform`, expanded and parsed: the stage's platform when it is not
    /// the build's target (`--platform=$BUILDPLATFORM` stages run natively).
    pub platform: Option<Platform>,
    pub from: Located,
    pub steps: Vec<Located>,
    /// Index of the earlier stage this one is FROM, if any.
    pub base_stage: Option<usize>,
    /// Earlier stages its `COPY --from` and `RUN --mount=from=` name, `--from` expanded.
    pub copies_from: Vec<usize>,
    /// A `COPY --from` holds a variable the plan could not expand to a stage (it
    /// may come from the base image's ENV): the stage may name any stage before it,
    /// so all of them are built first.
    pub from_unknown: bool,
    /// A `--build-context` has this stage's name: the context replaces the stage,
    /// whose FROM and steps never run (BuildKit's rule), so it depends on nothing.
    pub context: bool,
}

/// What to build and in which order.
#[derive(Clone, Debug)]
pub struct BuildPlan {
    /// ARGs declared before the first FROM with their resolved values (build args
    /// override defaults); stages may import them with a bare `ARG NAME`.
    pub meta_args: BTreeMap<String, Option<String>>,
    pub stages: Vec<Stage>,
    /// Stage indexes to build, dependencies first; the last one is the target.
    pub order: Vec<usize>,
}

impl BuildPlan {
    pub fn target(&self) -> &Stage {
        &self.stages[*self.order.last().expect("a plan has at least one stage")]
    }

    /// Finds a stage by name (case-insensitive) or index, as `--from` and FROM refer
    /// to them; only stages before `before` count.
    pub fn find_stage(&self, reference: &str, before: usize) -> Option<usize> {
        let lower = reference.to_ascii_lowercase();
        if let Some(s) = self.stages[..before].iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
            return Some(s.index);
        }
        reference.parse::<usize>().ok().filter(|i| *i < before)
    }
}

/// Builds the plan for `target` (default: the last stage) on the host's platform.
/// `contexts` are the names of the build's named contexts (`--build-context`), in
/// BuildKit's short form: a stage of such a name is replaced by its context.
pub fn plan(
    df: &Dockerfile,
    file: &str,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
    contexts: &BTreeSet<String>,
) -> Result<BuildPlan, PlanError> {
    plan_for(df, file, build_args, target, contexts, &Platform::host())
}

/// [`plan`] for the target platform `platform`: TARGET* ARGs name it, BUILD* the
/// host's.
pub fn plan_for(
    df: &Dockerfile,
    file: &str,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
    contexts: &BTreeSet<String>,
    platform: &Platform,
) -> Result<BuildPlan, PlanError> {
    let escape = df.escape();
    // BuildKit's automatic platform ARGs: in the global scope, and in a stage once
    // it declares them with a bare `ARG NAME`.
    let mut meta_args: BTreeMap<String, Option<String>> = platform_args(platform).into_iter().map(|(k, v)| (k, Some(v))).collect();
    let mut stages: Vec<Stage> = Vec::new();
    let at = |line: usize, message: String| PlanError::At { file: file.to_string(), line, message };

    for located in &df.instructions {
        match (&located.instr, stages.last_mut()) {
            (Instruction::From { image, alias, platform }, _) => {
                let lookup = |name: &str| meta_args.get(name).cloned().flatten();
                let base = expand_word(image, &lookup, escape).map_err(|e| at(located.line, format!("FROM {image}: {e}")))?;
                let platform = platform
                    .as_deref()
                    .map(|p| expand_word(p, &lookup, escape).map_err(|e| at(located.line, format!("FROM --platform={p}: {e}"))))
                    .transpose()?
                    .map(|p| Platform::parse(&p).map_err(|e| at(located.line, format!("FROM --platform: {e}"))))
                    .transpose()?;
                if base.is_empty() {
                    return Err(at(located.line, format!("FROM {image}: base name expands to an empty string")));
                }
                let index = stages.len();
                let mut stage = Stage {
                    index,
                    name: alias.clone(),
                    base,
                    platform,
                    from: located.clone(),
                    steps: Vec::new(),
                    base_stage: None,
                    copies_from: Vec::new(),
                    from_unknown: false,
                    context: alias.as_ref().is_some_and(|a| contexts.contains(a)),
                };
                // FROM refers to earlier stages by name only; a bare number is an image.
                let lower = stage.base.to_ascii_lowercase();
                stage.base_stage = stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())).map(|s| s.index);
                if let Some(name) = &stage.name {
                    if stages.iter().any(|s| s.name.as_deref() == Some(name.as_str())) {
                        return Err(at(located.line, format!("duplicate stage name {name:?}")));
                    }
                }
                stages.push(stage);
            }
            (Instruction::Arg(pairs), None) => {
                for (name, default) in pairs {
                    let lookup = |n: &str| meta_args.get(n).cloned().flatten();
                    let value = match build_args.get(name) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => Some(expand_word(d, &lookup, escape).map_err(|e| at(located.line, format!("ARG {name}: {e}")))?),
                            None => None,
                        },
                    };
                    meta_args.insert(name.clone(), value);
                }
            }
            (_, None) => return Err(at(located.line, format!("{}: only ARG may come before the first FROM", keyword(&located.original)))),
            (_, Some(stage)) => stage.steps.push(located.clone()),
        }
    }
    if stages.is_empty() {
        return Err(PlanError::NoStage { file: file.to_string() });
    }
    let mut plan = BuildPlan { meta_args, stages, order: Vec::new() };
    for i in 0..plan.stages.len() {
        (plan.stages[i].copies_from, plan.stages[i].from_unknown) = copy_sources(&plan, &plan.stages[i], build_args, escape);
    }
    let target_index = match target {
        None => plan.stages.len() - 1,
        Some(t) => plan
            .find_stage(t, plan.stages.len())
            .filter(|i| plan.stages[*i].name.is_some() || t.parse::<usize>().is_ok())
            .ok_or_else(|| PlanError::UnknownTarget {
                target: t.to_string(),
                known: plan.stages.iter().map(|s| s.name.clone().unwrap_or_else(|| s.index.to_string())).collect::<Vec<_>>().join(", "),
            })?,
    };
    let mut needed = BTreeSet::new();
    collect(&plan, target_index, &mut needed);
    Ok(BuildPlan { order: needed.into_iter().collect(), ..plan })
}

/// The earlier stages `stage`'s `COPY --from` and `RUN --mount=from=` name. Each `--from` is
/// expanded as the build will expand it: with the stage's ENV and ARG values at
/// that point (a build arg wins over an ARG default; a bare `ARG NAME` imports the
/// meta ARG). The base image's ENV is not known yet; a `--from` that needs it, or
/// that fails to expand, is left to the build to resolve, and the second value
/// says so (the stage then needs every stage before it).
fn copy_sources(plan: &BuildPlan, stage: &Stage, build_args: &BTreeMap<String, String>, escape: char) -> (Vec<usize>, bool) {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut args: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut deps = Vec::new();
    let mut unknown = false;
    for step in &stage.steps {
        let lookup = |name: &str| env.get(name).cloned().or_else(|| args.get(name).cloned().flatten());
        match &step.instr {
            Instruction::Arg(pairs) => {
                for (name, default) in pairs {
                    let lookup = |n: &str| env.get(n).cloned().or_else(|| args.get(n).cloned().flatten());
                    let value = match build_args.get(name) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => expand_word(d, &lookup, escape).ok(),
                            None => plan.meta_args.get(name).cloned().flatten(),
                        },
                    };
                    args.insert(name.clone(), value);
                }
            }
            Instruction::Env(pairs) => {
                let values: Vec<(String, String)> = pairs
                    .iter()
                    .filter_map(|(k, v)| Some((expand_word(k, &lookup, escape).ok()?, expand_word(v, &lookup, escape).ok()?)))
                    .collect();
                env.extend(values);
            }
            Instruction::Copy(c) => {
                let Some(written) = c.from.as_deref() else { continue };
                // A variable the plan does not know may come from the base image's ENV.
                let missed = std::cell::Cell::new(false);
                let watched = |name: &str| {
                    lookup(name).or_else(|| {
                        missed.set(true);
                        None
                    })
                };
                let found = expand_word(written, &watched, escape).ok().and_then(|from| plan.find_stage(&from, stage.index));
                deps.extend(found);
                unknown |= found.is_none() && missed.get();
            }
            // A mount's `from` is never expanded (BuildKit refuses variables there).
            Instruction::Run(r) => {
                for from in r.mounts.iter().filter_map(|m| mount_from(m)) {
                    deps.extend(plan.find_stage(&from, stage.index));
                }
            }
            _ => {}
        }
    }
    (deps, unknown)
}

/// Adds `index` and every stage it depends on (FROM and COPY --from) to `needed`;
/// a stage a named context replaces depends on nothing.
fn collect(plan: &BuildPlan, index: usize, needed: &mut BTreeSet<usize>) {
    if !needed.insert(index) {
        return;
    }
    let stage = &plan.stages[index];
    if stage.context {
        return;
    }
    if let Some(b) = stage.base_stage {
        collect(plan, b, needed);
    }
    for &dep in &stage.copies_from {
        collect(plan, dep, needed);
    }
    if stage.from_unknown {
        for earlier in 0..index {
            collect(plan, earlier, needed);
        }
    }
}

/// TARGETPLATFORM, TARGETOS, ... for `target`; BUILDPLATFORM ... BUILDVARIANT for
/// the host, as BuildKit sets them.
pub fn platform_args(target: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [("TARGET", target.clone()), ("BUILD", Platform::host())] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default()));
    }
    out
}

fn keyword(original: &str) -> String {
    original.split_whitespace().next().unwrap_or("").to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    fn plan_of(text: &str, target: Option<&str>) -> Result<BuildPlan, PlanError> {
        let df = parse(text, "Dockerfile").unwrap();
        plan(&df, "Dockerfile", &BTreeMap::new(), target, &BTreeSet::new())
    }

    #[test]
    fn a_from_the_plan_cannot_expand_needs_every_earlier_stage() {
        let unknown = "FROM busybox AS slow\nFROM busybox AS other\nFROM busybox AS env\nENV SRC=slow\nFROM env\nCOPY --from=$SRC /a /a\n";
        let p = plan_of(unknown, None).unwrap();
        assert!(p.stages[3].from_unknown);
        assert_eq!(p.order, vec![0, 1, 2, 3], "its base's ENV may name any earlier stage");
        let known = "FROM busybox AS slow\nFROM busybox AS other\nFROM busybox\nENV SRC=slow\nCOPY --from=$SRC /a /a\n";
        let p = plan_of(known, None).unwrap();
        assert!(!p.stages[2].from_unknown);
        assert_eq!(p.order, vec![0, 2], "the stage's own ENV names the stage");
    }

    #[test]
    fn only_stages_the_target_needs_are_planned() {
        let text = "FROM busybox AS a\nRUN true\nFROM busybox AS unused\nRUN exit 1\nFROM a AS b\nCOPY --from=0 /x /y\nFROM busybox\nCOPY --from=b /y /z\n";
        let p = plan_of(text, None).unwrap();
        assert_eq!(p.order, vec![0, 2, 3]);
        let p = plan_of(text, Some("b")).unwrap();
        assert_eq!(p.order, vec![0, 2]);
        assert!(matches!(plan_of(text, Some("nope")), Err(PlanError::UnknownTarget { .. })));
    }

    #[test]
    fn run_mounts_from_a_stage_make_it_needed() {
        let text = "FROM busybox AS tools\nRUN true\nFROM busybox AS unused\nFROM busybox\nRUN --mount=type=bind,from=tools,target=/t --mount=type=cache,target=/c true\n";
        let plan = plan_of(text, None).unwrap();
        assert_eq!(plan.order, vec![0, 2]);
    }

    #[test]
    fn copy_from_is_expanded_to_find_the_stages_needed() {
        let text = "ARG SRC=one\nFROM busybox AS one\nFROM busybox AS two\nFROM busybox AS three\nFROM busybox AS four\n\
                    FROM busybox\nARG SRC\nARG OTHER=two\nENV THIRD=three\n\
                    COPY --from=$SRC /a /a\nCOPY --from=${OTHER} /b /b\nCOPY --from=${THIRD} /c /c\nCOPY --from=${NOPE:-3} /d /d\n";
        let p = plan_of(text, None).unwrap();
        assert_eq!(p.order, vec![0, 1, 2, 3, 4], "meta ARG, stage ARG default, ENV and a default value");
        let df = parse(text, "Dockerfile").unwrap();
        let args = BTreeMap::from([("OTHER".to_string(), "four".to_string())]);
        let p = plan(&df, "Dockerfile", &args, None, &BTreeSet::new()).unwrap();
        assert_eq!(p.order, vec![0, 2, 3, 4], "a build arg overrides the ARG default");
    }

    #[test]
    fn meta_args_expand_from_and_platform_args_exist() {
        let df =
            parse("ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG:-latest} AS x\nFROM --platform=$BUILDPLATFORM x\n", "Dockerfile").unwrap();
        let mut args = BTreeMap::new();
        args.insert("TAG".to_string(), "1.36".to_string());
        let p = plan(&df, "Dockerfile", &args, None, &BTreeSet::new()).unwrap();
        assert_eq!(p.stages[0].base, "busybox:1.36");
        assert_eq!(p.stages[1].base_stage, Some(0));
        assert_eq!(p.meta_args.get("TARGETOS").cloned().flatten().as_deref(), Some("linux"));
    }

    #[test]
    fn a_named_context_replaces_the_stage_of_its_name() {
        let text = "FROM busybox AS deps\nRUN exit 1\nFROM deps AS tools\nCOPY --from=0 /a /a\n\
                    FROM busybox\nCOPY --from=tools /b /b\nCOPY --from=extra /c /c\n";
        let df = parse(text, "Dockerfile").unwrap();
        let none = BTreeSet::new();
        assert_eq!(plan(&df, "Dockerfile", &BTreeMap::new(), None, &none).unwrap().order, vec![0, 1, 2]);
        let contexts = BTreeSet::from(["tools".to_string(), "extra".to_string()]);
        let p = plan(&df, "Dockerfile", &BTreeMap::new(), None, &contexts).unwrap();
        assert!(p.stages[1].context && !p.stages[0].context);
        assert_eq!(p.order, vec![1, 2], "the replaced stage's own FROM and --from are not needed");
    }

    #[test]
    fn target_and_build_platforms_reach_args_and_from() {
        let df = parse("FROM --platform=$BUILDPLATFORM busybox AS b\nFROM --platform=linux/s390x busybox\n", "Dockerfile").unwrap();
        let arm = Platform::parse("linux/arm64").unwrap();
        let p = plan_for(&df, "Dockerfile", &BTreeMap::new(), Some("b"), &BTreeSet::new(), &arm).unwrap();
        assert_eq!(p.stages[0].platform, Some(Platform::host()));
        assert_eq!(p.stages[1].platform, Some(Platform::parse("linux/s390x").unwrap()));
        assert_eq!(p.meta_args.get("TARGETARCH").cloned().flatten().as_deref(), Some("arm64"));
        assert_eq!(p.meta_args.get("TARGETPLATFORM").cloned().flatten().as_deref(), Some("linux/arm64"));
        assert_eq!(p.meta_args.get("BUILDPLATFORM").cloned().flatten(), Some(Platform::host().to_string()));
        let err = plan_of("FROM --platform=linux/ busybox\n", None).unwrap_err().to_string();
        assert!(err.contains("Dockerfile:1") && err.contains("invalid platform"), "{err}");
    }

    #[test]
    fn instructions_before_from_are_refused() {
        let err = plan_of("RUN true\nFROM busybox\n", None).unwrap_err().to_string();
        assert!(err.contains("Dockerfile:1"), "{err}");
    }
}
