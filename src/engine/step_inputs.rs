//! A step's inputs gathered for its key: the words it will see, the ARG values,
//! RUN's network and seccomp profile, the content of COPY/ADD sources, ADD's URLs
//! (fetched, as BuildKit keys them, unless `--checksum` names their digest), ADD's
//! git repositories (their refs resolved to commits, nothing cloned) and
//! `--from`'s image (resolved once). What was fetched or resolved is handed to the
//! step as a value, so nothing is fetched twice.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

use super::download::{download, file_name, is_url, parse_checksum, Prefetched};
use super::git_source::{self, Resolved};
use super::git_url::{self, is_git};
use super::named_context::{named_context, ContextSource};
use super::run_mounts::{plan_mounts, MountSite, PlannedMount};
use super::run_step::run_network;
use super::source_digest::content_digest;
use super::step_key::{Download, GitKey, StepInputs};
use super::vars::Vars;
use super::{base, is_proxy_arg, Build};
use crate::dockerfile::{AddArgs, CopySource, Heredoc, Ignore, Instruction, Located};
use crate::sandbox::{Network, SeccompPolicy};
use crate::store::ImageState;

/// What gathering a step's inputs fetched, handed to the step so that nothing is
/// fetched or resolved twice.
#[derive(Default)]
pub(super) struct Fetched {
    /// ADD's URLs, downloaded for the key, by URL.
    pub downloads: HashMap<String, Prefetched>,
    /// ADD's git sources' commits, by the source as written (expanded).
    pub git: HashMap<String, Resolved>,
    /// COPY `--from`: the stage's or image's state, or a directory context.
    pub from: Option<ContextSource>,
    /// RUN: the network it resolved to (the key holds its kind).
    pub network: Option<Network>,
    /// RUN: its `--mount`s, parsed and their sources found.
    pub mounts: Vec<PlannedMount>,
}

/// Where a step stands: the build, the stage's state and variables, and the
/// stages built before it.
pub(super) struct StepSite<'a> {
    pub b: &'a Build<'a>,
    pub image: &'a ImageState,
    pub vars: Vars<'a>,
    /// The stage's index, for `--from` look-ups.
    pub stage: usize,
    pub built: &'a HashMap<usize, ImageState>,
}

/// Everything the step's result depends on, and what was fetched to know it.
pub(super) fn gather(s: &StepSite, step: &Located) -> Result<(StepInputs, Fetched)> {
    let mut inputs = StepInputs {
        parent: s.image.cache_key.clone(),
        text: step.original.clone(),
        words: expanded_words(&s.vars, &step.instr)?,
        format: s.b.req.layers,
        ..Default::default()
    };
    let mut fetched = Fetched::default();
    let heredocs: &[Heredoc] = match &step.instr {
        Instruction::Run(r) => {
            // The shell expands RUN's text, so its key holds the values it sees
            // instead (proxy args excepted: they never cause a miss).
            // The network it resolved to, not the one asked for: see `cache_key`.
            let network = run_network(s.b.req.network, r, &s.b.store.privilege, s.b.report)?;
            inputs.network = Some(crate::sandbox::network_cache_key(network));
            fetched.network = Some(network);
            inputs.seccomp = seccomp_key(s.b);
            inputs.args = arg_values(s, false);
            let (mounts, key) = run_mounts(s, &r.mounts)?;
            inputs.sources = key;
            fetched.mounts = mounts;
            &r.heredocs
        }
        Instruction::Copy(c) => {
            match &c.from {
                Some(from) => {
                    let source = copy_from(s, &s.vars.expand(from)?)?;
                    inputs.sources = match &source {
                        // Marked: entries made before `--from` kept its sources' owners
                        // (all root) must not answer.
                        ContextSource::Image(image) => format!("owners-kept:{}", image.cache_key),
                        ContextSource::Dir(dir) => format!("context-dir={}", sources_digest(s, &c.sources, &dir.path, &dir.ignore)?),
                    };
                    fetched.from = Some(source);
                }
                None => inputs.sources = sources_digest(s, &c.sources, s.b.context, s.b.ignore)?,
            }
            &c.heredocs
        }
        Instruction::Add(a) => {
            inputs.sources = sources_digest(s, &a.sources, s.b.context, s.b.ignore)?;
            inputs.downloads = fetch_urls(s, &a.sources, a.checksum.as_deref(), &mut fetched)?;
            inputs.git = resolve_git(s, a, &mut fetched)?;
            &a.heredocs
        }
        _ => &[],
    };
    if !matches!(step.instr, Instruction::Run(_)) && heredocs.iter().any(|h| h.expand) {
        inputs.args = arg_values(s, true);
    }
    inputs.heredocs = heredocs.iter().map(|h| (h.name.clone(), h.expand, h.content.clone())).collect();
    Ok((inputs, fetched))
}

/// A step run under another seccomp profile may have done what the default
/// profile refuses: it must not stand in for a default run. (Runs under the
/// default profile add nothing, so they keep the keys they had before profiles
/// existed.)
fn seccomp_key(b: &Build) -> Option<String> {
    let policy = &b.req.seccomp;
    (*policy != SeccompPolicy::DockerDefault)
        .then(|| crate::oci::Digest::of_bytes(&serde_json::to_vec(policy).expect("a policy serialises")).hex().to_string())
}

/// `K=V` lines of the stage's ARGs (`\0` for declared without a value); with
/// `proxies`, the proxy build args too, for text strata itself expands.
fn arg_values(s: &StepSite, proxies: bool) -> String {
    let mut lines: Vec<String> =
        s.vars.args.iter().filter(|(k, _)| !is_proxy_arg(k)).map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("\u{0}"))).collect();
    if proxies {
        lines.extend(s.b.req.build_args.iter().filter(|(k, _)| is_proxy_arg(k)).map(|(k, v)| format!("{k}={v}")));
    }
    lines.join("\0")
}

/// The words of a non-RUN instruction as the step will see them, so an edit of
/// a variable they use is a miss even when the Dockerfile text is unchanged.
fn expanded_words(vars: &Vars, instr: &Instruction) -> Result<Vec<String>> {
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
    raw.into_iter().map(|w| vars.expand(w)).collect()
}

/// RUN's mounts, planned with this step's variables, WORKDIR and stages.
fn run_mounts(s: &StepSite, values: &[String]) -> Result<(Vec<PlannedMount>, String)> {
    if values.is_empty() {
        return Ok((Vec::new(), String::new()));
    }
    let workdir = s.image.config.config.as_ref().and_then(|c| c.working_dir.clone()).unwrap_or_default();
    let dir_digest = |root: &Path, ignore: &Ignore, rel: &str| -> Result<String> {
        let matched = super::source_match::matched_paths(root, &[rel.to_string()], ignore, "RUN --mount")?;
        let digest = content_digest(root, &matched, ignore, &s.b.memo);
        s.b.memo.save();
        digest
    };
    let site = MountSite {
        vars: &s.vars,
        workdir: &workdir,
        resolve_from: &|from| copy_from(s, from),
        dir_digest: &dir_digest,
        context: (s.b.context, s.b.ignore),
    };
    plan_mounts(&site, values)
}

/// COPY `--from`: an earlier stage's result, else a named context
/// (`--build-context`, which also stands in for a stage of its name), else an
/// image (by name or transport), resolved once for both the key and the copy.
fn copy_from(s: &StepSite, from: &str) -> Result<ContextSource> {
    let found = s.b.plan.find_stage(from, s.stage);
    if let Some(i) = found.filter(|i| !s.b.plan.stages[*i].context) {
        let built = s.built.get(&i).cloned().ok_or_else(|| anyhow!("stage {from} was not built"))?;
        return Ok(ContextSource::Image(Box::new(built)));
    }
    // A stage a context replaces is found by the stage's name (`--from=0` too).
    let name = found.and_then(|i| s.b.plan.stages[i].name.as_deref()).unwrap_or(from);
    match named_context(s.b, name)? {
        Some(source) => Ok(source),
        None => Ok(ContextSource::Image(Box::new(
            base::resolve(s.b.store, from, &s.b.req.registry, s.b.plan.stages[s.stage].platform.as_ref().unwrap_or(&s.b.platform))
                .with_context(|| format!("--from={from}: not a stage of this Dockerfile nor a known image"))?,
        ))),
    }
}

/// The content digest of what COPY/ADD keeps of its sources below `root` (the
/// context, or a directory context), `ignore` applied; empty when it has none.
fn sources_digest(s: &StepSite, sources: &[CopySource], root: &Path, ignore: &Ignore) -> Result<String> {
    let mut patterns = Vec::new();
    for p in path_sources(sources) {
        let p = s.vars.expand(p)?;
        if !is_url(&p) && !is_git(&p) {
            patterns.push(p);
        }
    }
    if patterns.is_empty() {
        return Ok(String::new());
    }
    let matched = super::source_match::matched_paths(root, &patterns, ignore, "COPY")?;
    let digest = content_digest(root, &matched, ignore, &s.b.memo);
    s.b.memo.save();
    digest
}

/// ADD's URLs: their content is only known by fetching it, as BuildKit keys
/// them, so they are fetched now (once: the step itself uses these files). With
/// `--checksum` the checksum is the content: nothing is fetched unless the step
/// runs, and then the download is checked against it.
fn fetch_urls(s: &StepSite, sources: &[CopySource], checksum: Option<&str>, fetched: &mut Fetched) -> Result<Vec<Download>> {
    let mut keys = Vec::new();
    for p in path_sources(sources) {
        let url = s.vars.expand(p)?;
        if !is_url(&url) {
            continue;
        }
        if let Some(c) = checksum {
            let digest = parse_checksum(c)?;
            keys.push(Download { name: file_name(&url), url, digest, modified: None, pinned: true });
            continue;
        }
        let dir = s.b.store.layers.scratch()?;
        let got = download(&url, dir.path(), checksum)?;
        keys.push(Download { url: url.clone(), name: got.name.clone(), digest: got.digest, modified: got.modified, pinned: false });
        fetched.downloads.insert(url, Prefetched { dir, name: got.name });
    }
    Ok(keys)
}

/// ADD's git sources: each ref resolved to its commit with `ls-remote`, which is
/// all the key needs; the clone waits for a miss.
fn resolve_git(s: &StepSite, a: &AddArgs, fetched: &mut Fetched) -> Result<Vec<GitKey>> {
    let mut keys = Vec::new();
    for p in path_sources(&a.sources) {
        let src = s.vars.expand(p)?;
        let Some(git) = git_url::parse(&src)? else {
            continue;
        };
        let keep = git_source::keep_git_dir(&git, a.keep_git_dir)?;
        let resolved = git_source::resolve(&git, a.checksum.as_deref())?;
        keys.push(git_source::key(&git, &resolved, keep));
        fetched.git.insert(src, resolved);
    }
    Ok(keys)
}

fn path_sources(sources: &[CopySource]) -> impl Iterator<Item = &str> {
    sources.iter().filter_map(|s| match s {
        CopySource::Path(p) => Some(p.as_str()),
        CopySource::Heredoc(_) => None,
    })
}
