//! Runs a build: Dockerfile -> plan -> stages -> a stored, tagged image.
//!
//! The only module that combines the others: it reads the Dockerfile
//! (`dockerfile`), orders the stages (`plan`), resolves bases and writes images
//! (`oci` through [`workspace::Workspace`]), runs RUN steps (`sandbox`) and turns
//! upper dirs into layers (`rootfs`). Tags are written only after the whole build
//! succeeded, so a failed build never leaves a name pointing at a half-built image.

pub mod base;
pub mod bundle;
pub mod cache;
pub mod cached;
pub mod chmod;
pub mod container;
pub mod context;
pub mod copy;
pub mod export;
pub mod remote_cache;
pub mod source_digest;
pub mod source_match;
pub mod stage;
pub mod transfer;
pub mod workspace;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::dockerfile::{self, ignore::Ignore};
use crate::oci::{self, Digest, ImageName};
use crate::plan;
use crate::report::Reporter;
use stage::StageBuilder;
use workspace::{ImageState, Workspace};

/// What the user asked `strata build` for.
#[derive(Clone, Debug, Default)]
pub struct BuildRequest {
    pub context: PathBuf,
    /// `-f`; default: Containerfile, else Dockerfile, in the context.
    pub file: Option<PathBuf>,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    /// `--output` destination (`oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`).
    pub output: Option<String>,
    pub target: Option<String>,
    /// Network for RUN steps (`--network`): private (the default), the host's, or none.
    pub network: crate::sandbox::Network,
    /// `--security-opt seccomp=...`: the seccomp profile of RUN steps.
    pub seccomp: crate::sandbox::seccomp::SeccompPolicy,
    /// `--no-cache`: run every step.
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (names or indexes) whose steps all run.
    pub no_cache_filter: Vec<String>,
    /// `--cache-from`: registry repositories to look steps up in.
    pub cache_from: Vec<String>,
    /// `--cache-to`: registry repositories to export every step's result to.
    pub cache_to: Vec<String>,
}

/// The result of a successful build.
#[derive(Clone, Debug)]
pub struct BuildOutcome {
    pub image_id: Digest,
    pub manifest: oci::Descriptor,
}

/// Finds the Dockerfile: `-f` as given (relative to the working directory, as docker
/// does), else `Containerfile`, else `Dockerfile` in the context, a symlink there
/// resolved inside the context (see `context`).
pub fn find_dockerfile(context: &Path, file: Option<&Path>) -> Result<PathBuf> {
    if let Some(f) = file {
        if !f.is_file() {
            bail!("{}: no such Dockerfile", f.display());
        }
        return Ok(f.to_path_buf());
    }
    for name in ["Containerfile", "Dockerfile"] {
        let p = context.join(name);
        if fs::symlink_metadata(self::context::resolve(context, &p)?).is_ok_and(|m| m.is_file()) {
            return Ok(p);
        }
    }
    bail!("no Containerfile or Dockerfile found in context directory {}", context.display())
}

/// Builds the request's target stage, stores and tags the image, and exports it.
pub fn build(ws: &Workspace, req: &BuildRequest, report: &Reporter) -> Result<BuildOutcome> {
    let tags =
        req.tags.iter().map(|t| ImageName::parse_tag(t).with_context(|| format!("invalid tag {t:?}"))).collect::<Result<Vec<_>>>()?;
    let output = req.output.as_deref().map(export::Destination::parse).transpose()?;
    if !req.context.is_dir() {
        bail!("context directory {} does not exist", req.context.display());
    }
    let context = req.context.canonicalize().with_context(|| format!("resolving context {}", req.context.display()))?;
    let path = find_dockerfile(&context, req.file.as_deref())?;
    let text = if req.file.is_some() { fs::read_to_string(&path) } else { context::read_to_string(&context, &path) };
    let text = text.with_context(|| format!("reading {}", path.display()))?;
    let file_label = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
    let df = dockerfile::parse(&text, &file_label)?;
    let plan = plan::plan(&df, &file_label, &req.build_args, req.target.as_deref())?;
    // The ignore file is the context's: read inside it even beside a `-f` Dockerfile
    // that lies in the context; one elsewhere was named by the user.
    let read_ignore = |p: &Path| if p.starts_with(&context) { context::read_to_string(&context, p) } else { fs::read_to_string(p) };
    let ignore = Ignore::for_build(&context, &path, read_ignore).context("reading the ignore file")?;
    let parse_repos = |specs: &[String]| specs.iter().map(|s| remote_cache::parse_repo(s)).collect::<Result<Vec<_>>>();
    let remote = remote_cache::RemoteCache::new(ws, &parse_repos(&req.cache_from)?, &parse_repos(&req.cache_to)?)?;

    let mut built: HashMap<usize, ImageState> = HashMap::new();
    let mut used_args: Vec<String> = Vec::new();
    let stage_count = plan.order.len();
    for (n, &index) in plan.order.iter().enumerate() {
        let stage = &plan.stages[index];
        let label = if stage_count > 1 { format!("[{}/{}] ", n + 1, stage_count) } else { String::new() };
        let mut builder = StageBuilder::new(ws, &plan, stage, &df, &file_label, &context, &ignore, &req.build_args, &built, report, label);
        builder.network = req.network;
        builder.seccomp = req.seccomp.clone();
        let filtered = req
            .no_cache_filter
            .iter()
            .any(|f| stage.name.as_deref() == Some(f.to_ascii_lowercase().as_str()) || f.parse::<usize>().ok() == Some(index));
        builder.no_cache = req.no_cache || filtered;
        builder.remote = remote.as_ref();
        let image = builder.run()?;
        used_args.extend(builder.used_args());
        built.insert(index, image);
    }
    let target = built.remove(&plan.target().index).expect("target stage was built");

    let unused: Vec<&String> =
        req.build_args.keys().filter(|k| !used_args.contains(k) && !plan.meta_args.contains_key(*k) && !is_proxy_arg(k)).collect();
    if !unused.is_empty() {
        report.warn(&format!("one or more build-args {unused:?} were not consumed"));
    }

    let manifest = ws.save_image(&target)?;
    if let Some(remote) = &remote {
        remote.export(ws, report)?;
    }
    let image_id = ws.image_id(&manifest)?;
    // The output first: a build whose --output fails tags nothing (the store lock we
    // hold keeps prune off the untagged blobs meanwhile).
    if let Some(dest) = output {
        export::export(ws, &manifest, &dest, tags.first())?;
        report.line(&format!("exported to {}", dest));
    }
    if tags.is_empty() {
        ws.store.add_unnamed(&manifest)?;
    } else {
        ws.store.tag_all(&tags, &manifest)?;
    }
    for tag in &tags {
        report.line(&format!("COMMIT {tag}"));
    }
    report.line(&format!("--> {}", image_id.short()));
    Ok(BuildOutcome { image_id, manifest })
}

/// Proxy variables are predefined ARGs: usable without a declaration, never
/// reported as unused, never written into the image.
pub fn is_proxy_arg(name: &str) -> bool {
    matches!(name.to_ascii_uppercase().as_str(), "HTTP_PROXY" | "HTTPS_PROXY" | "FTP_PROXY" | "NO_PROXY" | "ALL_PROXY")
}
