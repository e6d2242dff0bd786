//! One step, as one straight walk: gather its inputs (what it reads and fetches),
//! compute its key ([`step_key`], pure), answer it from the build cache when every
//! input is unchanged, and otherwise run it and record the result.
//!
//! A local hit hands the next step the key its entry recorded, a hit from a
//! `--cache-from` registry the key recomputed from what was pulled; a step that
//! actually ran hands on a key derived from what it produced (its layers and
//! config), so nothing after a re-run step can hit an entry that was built on top of
//! an older result.

use std::collections::HashMap;

use anyhow::{anyhow, Context, Result};

use super::download::{download, is_url, Prefetched};
use super::source_digest::content_digest;
use super::stage::StageBuilder;
use super::step_key::{self, Download, StepInputs};
use super::{base, is_proxy_arg};
use crate::dockerfile::{CopySource, Heredoc, Instruction, Located};
use crate::sandbox::seccomp::SeccompPolicy;
use crate::store::ImageState;

/// What gathering a step's inputs fetched, handed to the step so that nothing is
/// fetched or resolved twice.
#[derive(Default)]
pub(super) struct Fetched {
    /// ADD's URLs, downloaded for the key, by URL.
    pub downloads: HashMap<String, Prefetched>,
    /// COPY `--from`: the stage's or image's state.
    pub from: Option<ImageState>,
}

impl StageBuilder<'_> {
    /// Applies one instruction through the build cache. Filesystem steps are looked
    /// up before running; metadata steps always run (they are cheap and update the
    /// stage's ARG scope) and then take a cached result's identical timestamps.
    pub(super) fn step(&mut self, step: &Located, n: usize, total: usize) -> Result<()> {
        let (inputs, fetched) = self.gather(step)?;
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

    /// Everything the step's result depends on, and what was fetched to know it.
    fn gather(&self, step: &Located) -> Result<(StepInputs, Fetched)> {
        let mut inputs = StepInputs {
            parent: self.image.cache_key.clone(),
            text: step.original.clone(),
            words: self.expanded_words(&step.instr)?,
            format: self.b.req.layers,
            ..Default::default()
        };
        let mut fetched = Fetched::default();
        let heredocs: &[Heredoc] = match &step.instr {
            Instruction::Run(r) => {
                // The shell expands RUN's text, so its key holds the values it sees
                // instead (proxy args excepted: they never cause a miss).
                // The network it resolved to, not the one asked for: see `cache_key`.
                inputs.network = Some(crate::sandbox::network::cache_key(self.run_network(r)?));
                inputs.seccomp = self.seccomp_key();
                inputs.args = self.arg_values(false);
                &r.heredocs
            }
            Instruction::Copy(c) => {
                match &c.from {
                    Some(from) => {
                        let image = self.copy_from(&self.expand(from)?)?;
                        inputs.sources = image.cache_key.clone();
                        fetched.from = Some(image);
                    }
                    None => inputs.sources = self.sources_digest(&c.sources)?,
                }
                &c.heredocs
            }
            Instruction::Add(a) => {
                inputs.sources = self.sources_digest(&a.sources)?;
                inputs.downloads = self.fetch_urls(&a.sources, a.checksum.as_deref(), &mut fetched)?;
                &a.heredocs
            }
            _ => &[],
        };
        if !matches!(step.instr, Instruction::Run(_)) && heredocs.iter().any(|h| h.expand) {
            inputs.args = self.arg_values(true);
        }
        inputs.heredocs = heredocs.iter().map(|h| (h.name.clone(), h.expand, h.content.clone())).collect();
        Ok((inputs, fetched))
    }

    /// A step run under another seccomp profile may have done what the default
    /// profile refuses: it must not stand in for a default run. (Runs under the
    /// default profile add nothing, so they keep the keys they had before profiles
    /// existed.)
    fn seccomp_key(&self) -> Option<String> {
        let policy = &self.b.req.seccomp;
        (*policy != SeccompPolicy::DockerDefault)
            .then(|| crate::oci::Digest::of_bytes(&serde_json::to_vec(policy).expect("a policy serialises")).hex().to_string())
    }

    /// `K=V` lines of the stage's ARGs (`\0` for declared without a value); with
    /// `proxies`, the proxy build args too, for text strata itself expands.
    fn arg_values(&self, proxies: bool) -> String {
        let mut lines: Vec<String> =
            self.args.iter().filter(|(k, _)| !is_proxy_arg(k)).map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("\u{0}"))).collect();
        if proxies {
            lines.extend(self.b.req.build_args.iter().filter(|(k, _)| is_proxy_arg(k)).map(|(k, v)| format!("{k}={v}")));
        }
        lines.join("\0")
    }

    /// The words of a non-RUN instruction as the step will see them, so an edit of
    /// a variable they use is a miss even when the Dockerfile text is unchanged.
    fn expanded_words(&self, instr: &Instruction) -> Result<Vec<String>> {
        let raw: Vec<&str> = match instr {
            Instruction::Env(pairs) | Instruction::Label(pairs) => pairs.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]).collect(),
            Instruction::Expose(words) | Instruction::Volume(words) => words.iter().map(String::as_str).collect(),
            Instruction::User(w) | Instruction::StopSignal(w) | Instruction::Workdir(w) => vec![w.as_str()],
            Instruction::Copy(c) => {
                let mut w = vec![c.dest.as_str()];
                w.extend(c.from.as_deref());
                w.extend(c.chown.as_deref());
                w.extend(c.chmod.as_deref());
                w.extend(c.exclude.iter().map(String::as_str));
                w.extend(path_sources(&c.sources));
                w
            }
            Instruction::Add(a) => {
                let mut w = vec![a.dest.as_str()];
                w.extend(a.chown.as_deref());
                w.extend(a.chmod.as_deref());
                w.extend(a.exclude.iter().map(String::as_str));
                w.extend(path_sources(&a.sources));
                w
            }
            _ => Vec::new(),
        };
        raw.into_iter().map(|w| self.expand(w)).collect()
    }

    /// COPY `--from`: an earlier stage's result, else an image (by name or
    /// transport), resolved once for both the key and the copy.
    fn copy_from(&self, from: &str) -> Result<ImageState> {
        match self.b.plan.find_stage(from, self.stage.index) {
            Some(i) => self.built.get(&i).cloned().ok_or_else(|| anyhow!("stage {from} was not built")),
            None => base::resolve(self.b.store, from, &self.b.req.registry)
                .with_context(|| format!("--from={from}: not a stage of this Dockerfile nor a known image")),
        }
    }

    /// The content digest of what COPY/ADD keeps of its context sources (empty when
    /// it has none).
    fn sources_digest(&self, sources: &[CopySource]) -> Result<String> {
        let mut patterns = Vec::new();
        for p in path_sources(sources) {
            let p = self.expand(p)?;
            if !is_url(&p) {
                patterns.push(p);
            }
        }
        if patterns.is_empty() {
            return Ok(String::new());
        }
        let matched = super::source_match::matched_paths(self.b.context, &patterns, self.b.ignore, "COPY")?;
        let digest = content_digest(self.b.context, &matched, self.b.ignore, &self.b.memo);
        self.b.memo.save();
        digest
    }

    /// ADD's URLs: their content is only known by fetching it, as BuildKit keys
    /// them, so they are fetched now (once: the step itself uses these files).
    fn fetch_urls(&self, sources: &[CopySource], checksum: Option<&str>, fetched: &mut Fetched) -> Result<Vec<Download>> {
        let mut keys = Vec::new();
        for p in path_sources(sources) {
            let url = self.expand(p)?;
            if !is_url(&url) {
                continue;
            }
            let dir = self.b.store.layers.scratch()?;
            let got = download(&url, dir.path(), checksum)?;
            keys.push(Download { url: url.clone(), name: got.name.clone(), digest: got.digest, modified: got.modified });
            fetched.downloads.insert(url, Prefetched { dir, name: got.name });
        }
        Ok(keys)
    }
}

fn path_sources(sources: &[CopySource]) -> impl Iterator<Item = &str> {
    sources.iter().filter_map(|s| match s {
        CopySource::Path(p) => Some(p.as_str()),
        CopySource::Heredoc(_) => None,
    })
}

/// True when two states have the same layers (their configs may differ in times).
fn same_layers(a: &ImageState, b: &ImageState) -> bool {
    a.layers.len() == b.layers.len() && a.layers.iter().zip(&b.layers).all(|(x, y)| x.diff_id == y.diff_id)
}
