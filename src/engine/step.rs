//! Steps through the build cache: computing a step's key and answering it from
//! `cache` when every input is unchanged (see `cache` for what a key covers).
//!
//! A local hit hands the next step the key its entry recorded, a hit from a
//! `--cache-from` registry the key recomputed from what was pulled; a step that
//! actually ran hands on a key derived from what it produced (its layers and
//! config), so nothing after a re-run step can hit an entry that was built on top of
//! an older result.

use anyhow::Result;

use super::copy_step::{download, is_url, Prefetched};
use super::source_digest::content_digest;
use super::stage::StageBuilder;
use super::step_key as cache;
use super::{base, is_proxy_arg};
use crate::dockerfile::{CopySource, Instruction, Located};
use crate::sandbox::seccomp::SeccompPolicy;
use crate::store::ImageState;

impl StageBuilder<'_> {
    /// Applies one instruction through the build cache. Filesystem steps are looked
    /// up before running; metadata steps always run (they are cheap and update the
    /// stage's ARG scope) and then take a cached result's identical timestamps.
    pub(super) fn step(&mut self, step: &Located, n: usize, total: usize) -> Result<()> {
        self.downloads.borrow_mut().clear();
        let key = self.step_key(step)?;
        let fs_step = matches!(step.instr, Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_));
        if fs_step && !self.no_cache {
            if let Some(hit) = self.lookup(&key) {
                self.b.report.line(&format!("{}--> CACHED", self.label));
                self.image = hit;
                self.remember(&key);
                return Ok(());
            }
        }
        self.execute(step, n, total)?;
        if !self.no_cache && !fs_step {
            // A metadata step: the recorded result differs at most in its
            // timestamps, and taking it keeps the steps after it cached.
            if let Some(hit) = self.lookup(&key).filter(|hit| same_layers(hit, &self.image)) {
                self.b.report.line(&format!("{}--> CACHED", self.label));
                self.image = hit;
                self.remember(&key);
                return Ok(());
            }
        }
        self.image.cache_key = cache::result_key(&key, &self.image);
        self.b.cache.put(&key, &self.image);
        self.remember(&key);
        Ok(())
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
        if let Some(remote) = self.b.remote.as_ref() {
            remote.record(key, &self.image);
        }
    }

    /// Everything a step's result depends on beyond its parent state.
    fn step_key(&self, step: &Located) -> Result<String> {
        let args = self.arg_values(false);
        let mut extra = String::new();
        let mut seen_args = String::new();
        let heredocs = match &step.instr {
            Instruction::Run(r) => {
                // The shell expands RUN's text, so its key holds the values it sees
                // instead (proxy args excepted: they never cause a miss).
                // The network it resolved to, not the one asked for: see `cache_key`.
                extra.push_str(crate::sandbox::network::cache_key(self.run_network(r)?));
                // A step run under another seccomp profile may have done what the
                // default profile refuses: it must not stand in for a default run.
                // (Runs under the default profile add nothing here, so they keep the
                // keys they had before profiles existed.)
                if self.b.req.seccomp != SeccompPolicy::DockerDefault {
                    let policy = serde_json::to_vec(&self.b.req.seccomp).expect("a policy serialises");
                    extra.push_str(&format!("/seccomp={}", crate::oci::Digest::of_bytes(&policy).hex()));
                }
                seen_args = args;
                r.heredocs.as_slice()
            }
            Instruction::Copy(c) => {
                extra.push_str(&self.sources_key(&c.sources, c.from.as_deref())?);
                if c.heredocs.iter().any(|h| h.expand) {
                    seen_args = self.arg_values(true);
                }
                c.heredocs.as_slice()
            }
            Instruction::Add(a) => {
                extra.push_str(&self.sources_key(&a.sources, None)?);
                extra.push_str(&self.downloads_key(&a.sources, a.checksum.as_deref())?);
                if a.heredocs.iter().any(|h| h.expand) {
                    seen_args = self.arg_values(true);
                }
                a.heredocs.as_slice()
            }
            _ => &[],
        };
        let expanded = self.expanded_words(&step.instr)?.join("\0");
        let docs: Vec<String> = heredocs.iter().map(|h| format!("{}\0{}\0{}", h.name, h.expand, h.content)).collect();
        // The layer format and the clamped times are part of the result: a zstd
        // layer never answers a gzip build, nor an unclamped one a reproducible one.
        let format = format!("{:?}/epoch={:?}", self.b.req.layers.compression, self.b.req.layers.source_date_epoch);
        Ok(cache::key_of(&[&self.image.cache_key, &step.original, &expanded, &docs.join("\0"), &seen_args, &extra, &format]))
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

    /// COPY/ADD inputs: the content of context sources, or the source stage's key
    /// (which, like every key, names the result that stage produced).
    fn sources_key(&self, sources: &[CopySource], from: Option<&str>) -> Result<String> {
        if let Some(f) = from {
            let f = self.expand(f)?;
            return Ok(match self.b.plan.find_stage(&f, self.stage.index) {
                Some(i) => self.built.get(&i).map(|s| s.cache_key.clone()).unwrap_or_default(),
                None => base::resolve(self.b.store, &f, &self.b.req.registry)?.cache_key,
            });
        }
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
}

impl StageBuilder<'_> {
    /// ADD's URLs: their content is only known by fetching it, as BuildKit keys
    /// them, so they are fetched now (once: the step itself uses these files) and
    /// the key holds each one's name, digest and date.
    fn downloads_key(&self, sources: &[CopySource], checksum: Option<&str>) -> Result<String> {
        let mut key = String::new();
        for p in path_sources(sources) {
            let url = self.expand(p)?;
            if !is_url(&url) {
                continue;
            }
            let dir = self.b.store.layers.scratch()?;
            let got = download(&url, dir.path(), checksum)?;
            key.push_str(&format!("url={url}\0{}\0{}\0{:?}\0", got.name, got.digest, got.modified));
            self.downloads.borrow_mut().insert(url, Prefetched { dir, name: got.name });
        }
        Ok(key)
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
