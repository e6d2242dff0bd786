//! One build stage: its steps applied in order to an image state, each one a
//! straight walk (see [`StageBuilder::step`]): gather its inputs, compute its key,
//! answer it from the build cache or run it, record the result.
//!
//! Metadata instructions change the config and add an `empty_layer` history entry
//! (`metadata`); RUN runs in the sandbox (`run_step`); COPY/ADD (`copy_step`) and
//! WORKDIR (`layer`) write through an overlay the builder mounts. Each filesystem
//! step's upper dir becomes the next layer (none when it changed nothing, as
//! BuildKit does). A local hit hands the next step the key its entry recorded, a
//! hit from a `--cache-from` registry the key recomputed from what was pulled; a
//! step that ran hands on a key derived from what it produced, so nothing after a
//! re-run step can hit an entry built on top of an older result.
//!
//! Each step also has a lineage: where it is (platform, context, Dockerfile, stage,
//! the instructions up to it as written), never what its sources hold. The layer
//! it writes copies the unchanged gzip members of the blob its lineage wrote last
//! (`layer::commit_step`), so editing one file of a large COPY recompresses only
//! the chunks around that file.

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, Context, Result};

use super::copy_step::{copy_step, CopyRequest};
use super::layer::workdir_step;
use super::metadata::{apply_metadata, Applied, MetadataScope};
use super::named_context::{context_image, named_context};
use super::run_step::{run_step, RunInputs};
use super::step_inputs::{gather, Fetched, StepSite};
use super::undefined::Undefined;
use super::vars::Vars;
use super::{base, record_step, step_key, Build};
use crate::dockerfile::{Instruction, Located};
use crate::plan::Stage;
use crate::store::{ImageState, LayerRef};

/// Builds one stage of a plan.
pub struct StageBuilder<'a> {
    b: &'a Build<'a>,
    stage: &'a Stage,
    /// Stages built so far, by index (FROM and `--from` may name them).
    built: &'a HashMap<usize, ImageState>,
    /// `[n/m] ` before each line when the build has several stages.
    label: String,
    image: ImageState,
    /// ARGs declared in this stage so far; `None` = declared without a value.
    args: BTreeMap<String, Option<String>>,
    /// What metadata rules remember within the stage (a CMD set here survives
    /// ENTRYPOINT).
    meta: MetadataScope,
    /// `--no-cache`, or this stage in `--no-cache-filter`: run every step (results
    /// are still recorded).
    no_cache: bool,
    /// The step under way was answered from the build cache.
    hit: bool,
    /// The step under way's lineage (see the module doc).
    lineage: step_key::Key,
    /// What the step's words used undefined (UndefinedVar).
    undefined: Undefined,
}

impl<'a> StageBuilder<'a> {
    pub fn new(b: &'a Build<'a>, stage: &'a Stage, built: &'a HashMap<usize, ImageState>, label: String) -> StageBuilder<'a> {
        let req = b.req;
        let filtered = req
            .no_cache_filter
            .iter()
            .any(|f| stage.name.as_deref() == Some(f.to_ascii_lowercase().as_str()) || f.parse::<usize>().ok() == Some(stage.index));
        StageBuilder {
            b,
            stage,
            built,
            label,
            image: ImageState::scratch(),
            args: BTreeMap::new(),
            meta: MetadataScope::default(),
            no_cache: req.no_cache || filtered,
            hit: false,
            lineage: String::new(),
            undefined: Undefined::default(),
        }
    }

    /// Build args this stage declared (so the build can warn about unused ones).
    pub fn used_args(&self) -> Vec<String> {
        self.args.keys().cloned().collect()
    }

    fn at(&self, step: &Located) -> String {
        format!("{}:{}", self.b.file, step.line)
    }

    /// Runs the stage and returns the image it produced.
    pub fn run(&mut self) -> Result<ImageState> {
        let total = self.stage.steps.len() + 1;
        let from = &self.stage.from;
        self.start(from, 1, total);
        let trace = crate::trace::step(|| self.trace_label(from, 1, total));
        let b = self.b;
        let base = match self.stage.base_stage {
            Some(i) => stage_base(b, i, self.built),
            None => named_context(b, &self.stage.base).and_then(|found| match found {
                Some(source) => context_image(b, &self.stage.base, source),
                None => base::resolve(b.store, &self.stage.base, &b.req.registry, self.stage.platform.as_ref().unwrap_or(&b.platform)),
            }),
        };
        self.image = base.with_context(|| self.name(from, 1, total))?;
        // A stage built on another inherits what that one inherited; any other base is
        // from outside the Dockerfile, layers and all.
        let inherited = self.stage.base_stage.and_then(|i| b.inherited_layers(i)).unwrap_or(self.image.layers.len());
        b.set_inherited_layers(self.stage.index, inherited);
        let platform = self.stage.platform.as_ref().unwrap_or(&b.platform).to_string();
        let stage = format!("{}/{}", self.stage.index, self.stage.name.as_deref().unwrap_or(""));
        let context = b.context.to_string_lossy();
        self.lineage = step_key::key_of(&["lineage", &context, b.file, &platform, &stage, &from.original]);
        self.run_triggers(from, total)?;
        // FROM ran even when an ONBUILD trigger of its base hit the cache.
        self.b.report.end_step(&self.label, false);
        drop(trace);
        for (i, step) in self.stage.steps.iter().enumerate() {
            if self.b.cancelled.load(std::sync::atomic::Ordering::SeqCst) {
                anyhow::bail!("{}stopped before step {}/{total}: another stage failed", self.label, i + 2);
            }
            self.start(step, i + 2, total);
            let _trace = crate::trace::step(|| self.trace_label(step, i + 2, total));
            self.step(step, i + 2, total).with_context(|| self.name(step, i + 2, total))?;
            self.b.report.end_step(&self.label, self.hit);
        }
        Ok(self.image.clone())
    }

    /// `[1/2] step 3/7 (Dockerfile:5): RUN make`, as errors and an interrupt name it.
    fn name(&self, step: &Located, n: usize, total: usize) -> String {
        format!("{}step {n}/{total} ({}): {}", self.label, self.at(step), step.original)
    }

    /// `[1/2] STEP 3/7: RUN make`, as `STRATA_TRACE`'s lines name the step.
    fn trace_label(&self, step: &Located, n: usize, total: usize) -> String {
        format!("{}STEP {n}/{total}: {}", self.label, step.original)
    }

    fn start(&mut self, step: &Located, n: usize, total: usize) {
        self.hit = false;
        self.b.report.start_step(&self.label, &format!("{}STEP {n}/{total}: {}", self.label, step.original), self.name(step, n, total));
    }

    /// Runs the base image's ONBUILD triggers right after FROM, as Docker does; they
    /// are consumed, not inherited by this image.
    fn run_triggers(&mut self, from: &Located, total: usize) -> Result<()> {
        let triggers = self.image.config.config.as_mut().and_then(|c| c.on_build.take()).unwrap_or_default();
        for trigger in triggers {
            let parsed = crate::dockerfile::parse(&trigger, "ONBUILD")
                .with_context(|| format!("{}: base image ONBUILD trigger {trigger:?}", self.at(from)))?;
            for step in &parsed.instructions {
                check_trigger(&step.instr).with_context(|| format!("{}: base image ONBUILD trigger {trigger:?}", self.at(from)))?;
                self.b.report.line(&format!("{}--> ONBUILD {}", self.label, step.original));
                self.step(step, 1, total)
                    .with_context(|| format!("{}step 1/{total} ({}): ONBUILD {}", self.label, self.at(from), step.original))?;
            }
        }
        Ok(())
    }

    /// The stage's variables as they stand.
    fn vars(&self) -> Vars<'_> {
        let env = self.image.config.config.as_ref().and_then(|c| c.env.as_deref()).unwrap_or(&[]);
        Vars { env, args: &self.args, escape: self.b.escape, undefined: Some(&self.undefined) }
    }

    /// One step through the build cache. Filesystem steps are looked up before
    /// running; metadata steps always run (they are cheap and update the stage's
    /// ARG scope) and then take a cached result's identical timestamps.
    fn step(&mut self, step: &Located, n: usize, total: usize) -> Result<()> {
        let layers_before = self.image.layers.len();
        self.stepped(step, n, total)?;
        self.undefined.report(self.b, step, &self.known_names())?;
        if self.image.layers.len() > layers_before {
            let written = self.image.layers.last().expect("a layer was added");
            self.b.set_layer_line(written.diff_id.digest().hex(), step.line);
        }
        Ok(())
    }

    /// The names the stage defines now: its image's ENV and its ARGs with a value.
    fn known_names(&self) -> Vec<String> {
        let env = self.image.config.config.as_ref().and_then(|c| c.env.as_deref()).unwrap_or(&[]);
        let from_env = env.iter().filter_map(|e| e.split_once('=').map(|(k, _)| k.to_string()));
        from_env.chain(self.args.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| k.clone())).collect()
    }

    /// [`step`](Self::step) itself.
    fn stepped(&mut self, step: &Located, n: usize, total: usize) -> Result<()> {
        self.lineage = step_key::key_of(&[&self.lineage, &step.original]);
        let site = StepSite { b: self.b, image: &self.image, vars: self.vars(), stage: self.stage.index, built: self.built };
        let (inputs, fetched) = gather(&site, step)?;
        let key = step_key::step_key(&inputs);
        let fs_step = matches!(step.instr, Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_));
        if fs_step && !self.no_cache {
            if let Some(hit) = self.lookup(&key) {
                self.take_hit(&key, hit);
                return Ok(());
            }
        }
        self.execute(step, fetched, n, total)?;
        if !self.no_cache && !fs_step {
            // A metadata step: the recorded result differs at most in its
            // timestamps, and taking it keeps the steps after it cached.
            if let Some(hit) = self.lookup(&key).filter(|hit| same_layers(hit, &self.image)) {
                self.take_hit(&key, hit);
                return Ok(());
            }
        }
        self.image.cache_key = step_key::result_key(&key, &self.image);
        self.b.cache.put(&key, &self.image);
        self.remember(&key);
        Ok(())
    }

    fn take_hit(&mut self, key: &str, hit: ImageState) {
        self.b.report.line(&format!("{}--> CACHED", self.label));
        self.hit = true;
        self.image = hit;
        self.remember(key);
    }

    /// The recorded result of `key`: the local cache's, else a `--cache-from`
    /// repository's (then kept locally too, so the next build asks nobody).
    fn lookup(&self, key: &str) -> Option<ImageState> {
        if let Some(hit) = self.b.cache.get(self.b.store, key) {
            return Some(hit);
        }
        let hit = self.b.remote.as_ref()?.fetch(self.b.store, key, self.b.report)?;
        self.b.cache.put(key, &hit);
        Some(hit)
    }

    /// Hands the step's result to `--cache-to`, if the build exports its cache.
    fn remember(&self, key: &str) {
        if let Some(remote) = &self.b.remote {
            remote.record(key, &self.image);
        }
    }

    /// Runs one instruction (the cache missed, or metadata): ARG here, metadata in
    /// `metadata` (WORKDIR's directory in `layer`), RUN and COPY/ADD in their files.
    fn execute(&mut self, step: &Located, fetched: Fetched, n: usize, total: usize) -> Result<()> {
        let layer = match &step.instr {
            Instruction::From { .. } => unreachable!("the plan splits stages at FROM"),
            Instruction::Arg(pairs) => {
                self.declare_args(pairs)?;
                None
            }
            Instruction::Run(run) => {
                let prefix = if self.b.report.is_quiet() { String::new() } else { format!("{}{n}/{total} | ", self.label) };
                let network = fetched.network.expect("gather resolves a RUN's network");
                let inputs = RunInputs { network, mounts: &fetched.mounts, lineage: &self.lineage, line: step.line };
                run_step(self.b, &self.image, &self.vars(), run, inputs, prefix)?
            }
            Instruction::Copy(c) => copy_step(self.b, &self.image, &self.vars(), CopyRequest::copy(c), fetched, &self.lineage)?,
            Instruction::Add(a) => copy_step(self.b, &self.image, &self.vars(), CopyRequest::add(a), fetched, &self.lineage)?,
            instr => {
                // The config changes under the instruction: words expand with a copy
                // of its Env from before it.
                let env = self.vars().env.to_vec();
                let vars = Vars { env: &env, args: &self.args, escape: self.b.escape, undefined: Some(&self.undefined) };
                match apply_metadata(&mut self.image.config, instr, &mut self.meta, &|w| vars.expand(w))? {
                    Applied::Workdir(path) => workdir_step(self.b, &self.image, &path, &self.lineage)?,
                    Applied::Config => None,
                    Applied::NotMetadata => unreachable!("every instruction has an arm: {instr:?}"),
                }
            }
        };
        self.history(step, layer);
        Ok(())
    }

    /// ARG: a build arg's value, else the default (expanded), else the value of
    /// an ARG of that name before the first FROM.
    fn declare_args(&mut self, pairs: &[(String, Option<String>)]) -> Result<()> {
        for (name, default) in pairs {
            let value = match self.b.req.build_args.get(name) {
                Some(v) => Some(v.clone()),
                None => match default {
                    Some(d) => Some(self.vars().expand(d)?),
                    None => self.b.plan.meta_args.get(name).cloned().flatten(),
                },
            };
            self.args.insert(name.clone(), value);
        }
        Ok(())
    }

    /// Adds the step's layer, if it made one, and its history entry.
    fn history(&mut self, step: &Located, layer: Option<LayerRef>) {
        record_step(&mut self.image, layer, step.original.clone(), self.b.req.layers.source_date_epoch);
    }
}

/// The image FROM (or the target) gets from stage `index`: what it built, or,
/// for a stage a named context replaces, the context's image.
pub(super) fn stage_base(b: &Build, index: usize, built: &HashMap<usize, ImageState>) -> Result<ImageState> {
    let stage = &b.plan.stages[index];
    if let (true, Some(name)) = (stage.context, stage.name.as_deref()) {
        let source = named_context(b, name)?.ok_or_else(|| anyhow!("build context {name} is not defined"))?;
        return context_image(b, name, source);
    }
    built.get(&index).cloned().ok_or_else(|| anyhow!("stage {index} was not built"))
}

/// A trigger is one instruction of a later build; FROM, ONBUILD and MAINTAINER are
/// refused there, as BuildKit refuses them (a base image is any file, so its
/// triggers are input like a Dockerfile).
fn check_trigger(instr: &Instruction) -> Result<()> {
    let name = match instr {
        Instruction::From { .. } => "FROM",
        Instruction::Onbuild { .. } => "ONBUILD",
        Instruction::Maintainer(_) => "MAINTAINER",
        _ => return Ok(()),
    };
    anyhow::bail!("{name} isn't allowed as an ONBUILD trigger")
}

/// True when two states have the same layers (their configs may differ in times).
fn same_layers(a: &ImageState, b: &ImageState) -> bool {
    a.layers.len() == b.layers.len() && a.layers.iter().zip(&b.layers).all(|(x, y)| x.diff_id == y.diff_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_that_would_start_or_nest_a_build_are_refused() {
        let parse = |t: &str| crate::dockerfile::parse(t, "ONBUILD").unwrap().instructions.remove(0).instr;
        for bad in ["FROM busybox", "ONBUILD RUN true", "MAINTAINER me"] {
            let err = check_trigger(&parse(bad)).unwrap_err().to_string();
            assert!(err.contains("isn't allowed as an ONBUILD trigger"), "{bad}: {err}");
        }
        assert!(check_trigger(&parse("RUN true")).is_ok());
    }
}
