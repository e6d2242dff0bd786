//! Steps through the build cache: computing a step's key and answering it from
//! `cache` when every input is unchanged (see `cache` for what a key covers).

use anyhow::Result;

use super::cache;
use super::stage::StageBuilder;
use super::{base, is_proxy_arg};
use crate::dockerfile::{CopySource, Instruction, Located};

impl StageBuilder<'_> {
    /// Applies one instruction through the build cache. Filesystem steps are looked
    /// up before running; metadata steps always run (they are cheap and update the
    /// stage's ARG scope) and then take a cached result's identical timestamps.
    pub(super) fn step(&mut self, step: &Located, n: usize, total: usize) -> Result<()> {
        let key = self.step_key(step)?;
        let fs_step = matches!(step.instr, Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_));
        if fs_step && !self.no_cache && !downloads(step) {
            if let Some(hit) = self.cache.get(self.ws, &key) {
                self.report.line(&format!("{}--> CACHED", self.label));
                self.image = hit;
                return Ok(());
            }
        }
        self.execute(step, n, total)?;
        if !fs_step && !self.no_cache {
            if let Some(hit) = self.cache.get(self.ws, &key) {
                self.image = hit;
                return Ok(());
            }
        }
        self.image.cache_key = key.clone();
        self.cache.put(&key, &self.image);
        Ok(())
    }

    /// Everything a step's result depends on beyond its parent state.
    fn step_key(&self, step: &Located) -> Result<String> {
        let args: Vec<String> =
            self.args.iter().filter(|(k, _)| !is_proxy_arg(k)).map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("\u{0}"))).collect();
        let mut extra = String::new();
        let heredocs = match &step.instr {
            Instruction::Run(r) => {
                extra.push_str(&format!("net={:?}/{:?}", self.network, r.network));
                r.heredocs.as_slice()
            }
            Instruction::Copy(c) => {
                extra.push_str(&self.sources_key(&c.sources, c.from.as_deref())?);
                c.heredocs.as_slice()
            }
            Instruction::Add(a) => {
                extra.push_str(&self.sources_key(&a.sources, None)?);
                a.heredocs.as_slice()
            }
            _ => &[],
        };
        let docs: Vec<String> = heredocs.iter().map(|h| format!("{}\0{}\0{}", h.name, h.expand, h.content)).collect();
        // The layer format is part of the result: a zstd layer never answers a gzip build.
        let format = format!("{:?}", self.ws.compression);
        Ok(cache::key_of(&[&self.image.cache_key, &step.original, &docs.join("\0"), &args.join("\0"), &extra, &format]))
    }

    /// COPY/ADD inputs: the content of context sources, or the source stage's key.
    fn sources_key(&self, sources: &[CopySource], from: Option<&str>) -> Result<String> {
        if let Some(f) = from {
            let f = self.expand(f)?;
            return Ok(match self.plan.find_stage(&f, self.stage.index) {
                Some(i) => self.built.get(&i).map(|s| s.cache_key.clone()).unwrap_or_default(),
                None => cache::base_key(&base::resolve(self.ws, &f)?),
            });
        }
        let mut patterns = Vec::new();
        for s in sources {
            if let CopySource::Path(p) = s {
                let p = self.expand(p)?;
                if !p.starts_with("http://") && !p.starts_with("https://") {
                    patterns.push(p);
                }
            }
        }
        if patterns.is_empty() {
            return Ok(String::new());
        }
        let matched = super::copy::matched_paths(self.context, &patterns, self.ignore, "COPY")?;
        let digest = cache::content_digest(self.context, &matched, self.ignore, &self.memo);
        self.memo.save();
        digest
    }
}

/// True for an ADD of a URL: its content is only known by downloading it, so such a
/// step is never answered from the cache.
fn downloads(step: &Located) -> bool {
    match &step.instr {
        Instruction::Add(a) => a.sources.iter().any(|s| matches!(s, CopySource::Path(p) if p.contains("://"))),
        _ => false,
    }
}
