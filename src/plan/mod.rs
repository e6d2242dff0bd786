//! Dockerfile + build args + target -> a build plan: the stages, which of them the
//! target needs, and the order to build them in.
//!
//! Only FROM lines are expanded here (with the ARGs declared before the first FROM),
//! because stage dependencies must be known before anything runs. Everything else
//! stays unexpanded for the build, which expands with each stage's own state.

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerfile::{expand_word, Dockerfile, Instruction, Located};

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
    pub from: Located,
    pub steps: Vec<Located>,
    /// Index of the earlier stage this one is FROM, if any.
    pub base_stage: Option<usize>,
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

/// Builds the plan for `target` (default: the last stage).
pub fn plan(df: &Dockerfile, file: &str, build_args: &BTreeMap<String, String>, target: Option<&str>) -> Result<BuildPlan, PlanError> {
    let escape = df.escape();
    let mut meta_args: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    let at = |line: usize, message: String| PlanError::At { file: file.to_string(), line, message };

    for located in &df.instructions {
        match (&located.instr, stages.last_mut()) {
            (Instruction::From { image, alias, .. }, _) => {
                let lookup = |name: &str| meta_args.get(name).cloned().flatten();
                let base = expand_word(image, &lookup, escape).map_err(|e| at(located.line, format!("FROM {image}: {e}")))?;
                if base.is_empty() {
                    return Err(at(located.line, format!("FROM {image}: base name expands to an empty string")));
                }
                let index = stages.len();
                let mut stage = Stage { index, name: alias.clone(), base, from: located.clone(), steps: Vec::new(), base_stage: None };
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
    let plan = BuildPlan { meta_args, stages, order: Vec::new() };
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

/// Adds `index` and every stage it depends on (FROM and COPY --from) to `needed`.
fn collect(plan: &BuildPlan, index: usize, needed: &mut BTreeSet<usize>) {
    if !needed.insert(index) {
        return;
    }
    let stage = &plan.stages[index];
    if let Some(b) = stage.base_stage {
        collect(plan, b, needed);
    }
    for step in &stage.steps {
        if let Instruction::Copy(c) = &step.instr {
            if let Some(from) = &c.from {
                if let Some(dep) = plan.find_stage(from, index) {
                    collect(plan, dep, needed);
                }
            }
        }
    }
}

fn keyword(original: &str) -> String {
    original.split_whitespace().next().unwrap_or("").to_ascii_uppercase()
}
