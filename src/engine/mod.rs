//! The build engine: Dockerfile -> plan -> stages -> steps -> a stored, tagged image.
//!
//! [`build`] reads the Dockerfile (`dockerfile`), orders the stages (`plan`) and
//! builds them, independent ones side by side up to `--jobs` (`schedule`), each a
//! walk of its steps (`stage`); each step goes through the build cache once
//! (`StageBuilder::step`): its inputs are gathered (`step_inputs`), its key
//! computed by a pure function (`step_key`), and on a miss it runs as RUN (`run_step`), COPY/ADD (`copy_step`) or a metadata
//! instruction (`metadata`). Images come from and go to the store (`store`) and
//! other locations (`transport`). Tags are written only after the whole build
//! succeeded, so a failed build never leaves a name pointing at a half-built image.

mod base;
mod checks;
mod chmod;
mod chown;
mod context;
mod copy;
mod copy_files;
mod copy_step;
mod download;
mod git_source;
mod git_url;
mod hash_memo;
mod layer;
mod metadata;
mod named_context;
mod ordered_lines;
mod remote_cache;
mod run_mounts;
mod run_step;
mod schedule;
mod secrets;
mod source_digest;
mod source_match;
mod stage;
mod step_inputs;
mod step_key;
mod undefined;
mod vars;
mod wasted;

pub use checks::{check, Checked, CHECK_ARG};
pub use metadata::{apply_metadata, config_env, env_set, join_workdir, normalize_port, Applied, MetadataScope};
pub use named_context::{ContextValue, NamedContexts};
pub use secrets::{parse_secret, parse_ssh, SecretSource};
pub use step_key::{base_key, key_of, result_key, Key};

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::dockerfile::{self, Ignore};
use crate::oci::{self, Digest, ImageName};
use crate::plan::{self, BuildPlan};
use crate::platform::Platform;
use crate::report::Reporter;
use crate::store::{Cache, ImageState, LayerFormat, LocalStore};
use crate::transport::{self, Location, RegistryOptions};
use hash_memo::Memo;
use remote_cache::RemoteCache;

/// What the user asked `strata build` for.
#[derive(Clone, Debug, Default)]
pub struct BuildRequest {
    pub context: PathBuf,
    /// `-f`; default: Containerfile, else Dockerfile, in the context.
    pub file: Option<PathBuf>,
    /// `-f -`: the Dockerfile's text, read from standard input (`file` is then None).
    pub file_text: Option<String>,
    /// `--format`: the media types of the image's manifest (OCI's or Docker's).
    pub format: oci::ManifestFormat,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    /// `--output` destination (`oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`).
    pub output: Option<String>,
    pub target: Option<String>,
    /// Network for RUN steps (`--network`): private (the default), the host's, or none.
    pub network: crate::sandbox::Network,
    /// `--security-opt seccomp=...`: the seccomp profile of RUN steps.
    pub seccomp: crate::sandbox::SeccompPolicy,
    /// `--no-cache`: run every step.
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (names or indexes) whose steps all run.
    pub no_cache_filter: Vec<String>,
    /// `--cache-from`: registry repositories to look steps up in.
    pub cache_from: Vec<String>,
    /// `--cache-to`: registry repositories to export every step's result to.
    pub cache_to: Vec<String>,
    /// How new layers are written (`--compression`, SOURCE_DATE_EPOCH).
    pub layers: LayerFormat,
    /// `--build-context NAME=VALUE`: directories and images FROM, `--from` and
    /// `RUN --mount=from=` may name.
    pub contexts: NamedContexts,
    /// How FROM pulls and `--output docker://` pushes (`--pull`, `--tls-verify`, progress).
    pub registry: RegistryOptions,
    /// `--secret`: what `RUN --mount=type=secret` mounts, by id.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh`: agent sockets or key files `RUN --mount=type=ssh` mounts, by id.
    pub ssh: BTreeMap<String, Vec<PathBuf>>,
    /// `--label`: set in the final image's config over the Dockerfile's LABELs. Only
    /// the saved image gets them, so no step's cache key depends on them.
    pub labels: BTreeMap<String, String>,
    /// `--annotation`: the final image manifest's annotations.
    pub annotations: BTreeMap<String, String>,
    /// `--platform`: the platforms to build, each in turn. None: the host's, as one
    /// image; one: that platform's image; several: an image index over them.
    pub platforms: Vec<Platform>,
    /// `--jobs`: how many stages may build at once (0 counts as 1).
    pub jobs: usize,
    /// `--squash` or `--squash-all`: the target's layers merged after the build.
    pub squash: Option<Squash>,
}

/// Which layers `--squash` and `--squash-all` merge, as buildah's flags do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Squash {
    /// `--squash`: the layers this Dockerfile added, above its base image's.
    New,
    /// `--squash-all`: every layer, the base image's too.
    All,
}

/// What every stage of one build shares: the store, the request, and what was read
/// and opened for it.
pub(crate) struct Build<'a> {
    store: &'a LocalStore,
    req: &'a BuildRequest,
    plan: &'a BuildPlan,
    /// The Dockerfile's escape character.
    escape: char,
    /// The Dockerfile's name, for `FILE:LINE` in errors.
    file: &'a str,
    /// The context dir, canonical.
    context: &'a Path,
    ignore: &'a Ignore,
    report: &'a Reporter,
    cache: Cache,
    memo: Memo,
    remote: Option<RemoteCache>,
    /// Named contexts resolved so far (see `named_context`).
    contexts: named_context::Resolved,
    /// The platform this pass builds for (stages without `FROM --platform`).
    platform: Platform,
    /// A stage failed: the stages beside it start no further step.
    cancelled: std::sync::atomic::AtomicBool,
    /// Per stage, how many of its layers came from outside the Dockerfile (its
    /// base image's, through the stages it is built on): what `--squash` keeps.
    inherited: std::sync::Mutex<BTreeMap<usize, usize>>,
    /// The build checks' setting, for the rule judged while building (`wasted`).
    checks: crate::lint::CheckConfig,
    /// The Dockerfile line of each layer a step of this build wrote or took from
    /// the cache, by diff id hex: WastedLayerSpace names it.
    layer_lines: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// The result of a successful build.
#[derive(Clone, Debug)]
pub struct BuildOutcome {
    /// The config digest, which podman and docker call the image id.
    pub image_id: Digest,
    pub manifest: oci::Descriptor,
    /// The image's names: the tags, normalised, then a `docker://` output's.
    pub names: Vec<String>,
    /// The manifest digest the registry holds, when the output was `docker://`.
    pub pushed: Option<Digest>,
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

/// The Dockerfile's path (empty for standard input, which has no ignore file of its
/// own), its text, and the name `FILE:LINE` in errors gives it: `<stdin>` for `-f -`.
fn read_dockerfile(req: &BuildRequest, context: &Path) -> Result<(PathBuf, String, String)> {
    if let Some(text) = &req.file_text {
        return Ok((PathBuf::new(), text.clone(), STDIN_LABEL.to_string()));
    }
    let path = find_dockerfile(context, req.file.as_deref())?;
    let text = if req.file.is_some() { fs::read_to_string(&path) } else { context::read_to_string(context, &path) };
    let text = text.with_context(|| format!("reading {}", path.display()))?;
    let label = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
    Ok((path, text, label))
}

/// What errors call a Dockerfile read from standard input (`-f -`).
const STDIN_LABEL: &str = "<stdin>";

/// The context directory, which must exist, as an absolute path without links.
fn canonical_context(req: &BuildRequest) -> Result<PathBuf> {
    if !req.context.is_dir() {
        bail!("context directory {} does not exist", req.context.display());
    }
    req.context.canonicalize().with_context(|| format!("resolving context {}", req.context.display()))
}

/// Builds the request's target stage, stores and tags the image, and exports it.
pub fn build(store: &LocalStore, req: &BuildRequest, report: &Reporter) -> Result<BuildOutcome> {
    let _trace = crate::trace::build();
    let tags =
        req.tags.iter().map(|t| ImageName::parse_tag(t).with_context(|| format!("invalid tag {t:?}"))).collect::<Result<Vec<_>>>()?;
    let output = req.output.as_deref().map(Location::parse).transpose()?;
    let context = canonical_context(req)?;
    checks::before_build(req, &context, report)?;
    if req.format == oci::ManifestFormat::Docker {
        if !req.annotations.is_empty() {
            bail!("--annotation needs --format oci: Docker's image manifest has no annotations");
        }
        // containers/image (skopeo, podman) reads only OCI manifests from a layout, so
        // a Docker manifest there would be an image nothing else can see.
        if let Some(dest @ (Location::OciDir { .. } | Location::OciArchive { .. })) = &output {
            bail!("--output {dest} holds OCI manifests: use --format oci for it, or push the docker format (docker://) or save it as docker-archive:");
        }
    }
    if req.platforms.len() > 1 && req.format == oci::ManifestFormat::Docker {
        bail!("--format docker with several platforms: strata writes a multi-platform image as an OCI image index; use --format oci");
    }
    let manifest = match req.platforms.as_slice() {
        [] => build_platform(store, req, &context, &Platform::host(), report)?,
        [one] => build_platform(store, req, &context, one, report)?,
        several => {
            let mut entries = Vec::new();
            for p in several {
                report.line(&format!("building for {p}"));
                let manifest = build_platform(store, req, &context, p, report)?;
                entries.push(oci::PlatformManifest { platform: p.clone(), manifest });
            }
            store.images.put_index(&entries)?
        }
    };
    let image_id = if oci::is_index_descriptor(&manifest) { oci::descriptor_digest(&manifest)? } else { store.image_id(&manifest)? };
    // The output first: a build whose --output fails tags nothing (the store lock we
    // hold keeps prune off the untagged blobs meanwhile).
    let mut names: Vec<String> = tags.iter().map(ToString::to_string).collect();
    let mut pushed = None;
    if let Some(dest) = output {
        report.finishing(format!("while exporting to {dest}"));
        pushed = transport::export(store, &manifest, &dest, tags.first(), &req.registry)?;
        if let Location::Registry { path } = &dest {
            let name = path.to_string_lossy();
            names.push(ImageName::parse(&name).map_or_else(|_| name.to_string(), |n| n.to_string()));
        }
        report.line(&format!("exported to {}", dest));
    }
    report.tagging();
    let named = if tags.is_empty() { store.images.add_unnamed(&manifest) } else { store.images.tag_all(&tags, &manifest) };
    report.tagged(named.is_ok());
    named?;
    for tag in &tags {
        report.line(&format!("COMMIT {tag}"));
    }
    report.line(&format!("--> {}", image_id.short()));
    report.summary(&oci::descriptor_digest(&manifest)?);
    Ok(BuildOutcome { image_id, manifest, names, pushed })
}

/// Builds the request's target stage for `platform` and stores the image (and
/// exports its steps to `--cache-to`); returns its manifest, not yet tagged.
fn build_platform(
    store: &LocalStore,
    req: &BuildRequest,
    context: &Path,
    platform: &Platform,
    report: &Reporter,
) -> Result<oci::Descriptor> {
    let context = context.to_path_buf();
    let (path, text, file_label) = read_dockerfile(req, &context)?;
    let df = dockerfile::parse(&text, &file_label)?;
    let context_names: BTreeSet<String> = req.contexts.names().map(str::to_string).collect();
    let plan = plan::plan_for(&df, &file_label, &req.build_args, req.target.as_deref(), &context_names, platform)?;
    let ignore = context::ignore_for(&context, &path)?;
    let parse_repos = |specs: &[String]| specs.iter().map(|s| remote_cache::parse_repo(s)).collect::<Result<Vec<_>>>();
    let remote = RemoteCache::new(&req.registry.tls, &parse_repos(&req.cache_from)?, &parse_repos(&req.cache_to)?)?;
    let cache = Cache::open(&store.root).unwrap_or_else(|_| Cache::disabled());
    let memo = Memo::load(&store.root);
    let b = Build {
        store,
        req,
        plan: &plan,
        escape: df.escape(),
        file: &file_label,
        context: &context,
        ignore: &ignore,
        report,
        cache,
        memo,
        remote,
        contexts: Default::default(),
        platform: platform.clone(),
        cancelled: Default::default(),
        inherited: Default::default(),
        checks: checks::config(req, &df)?,
        layer_lines: Default::default(),
    };

    let schedule::Built { images: mut built, used_args } = schedule::build_stages(&b, req.jobs)?;
    let target = match plan.target() {
        t if t.context => stage::stage_base(&b, t.index, &built)?,
        t => built.remove(&t.index).expect("target stage was built"),
    };

    let unused: Vec<&String> = req
        .build_args
        .keys()
        .filter(|k| !used_args.contains(k) && !plan.meta_args.contains_key(*k) && !is_proxy_arg(k) && *k != CHECK_ARG)
        .collect();
    if !unused.is_empty() {
        report.warn(&format!("one or more build-args {unused:?} were not consumed"));
    }

    report.finishing("after the last step, while writing the image".into());
    let mut target = match req.squash {
        None => target,
        Some(how) => {
            let from = if how == Squash::All { 0 } else { b.inherited_layers(plan.target().index).unwrap_or(target.layers.len()) };
            report.finishing("while squashing the image's layers".into());
            let what = if how == Squash::All { "--squash-all" } else { "--squash" };
            store.squash(&target, from, req.layers, what)?
        }
    };
    if !req.labels.is_empty() {
        let config = target.config.config.get_or_insert_with(Default::default);
        config.labels.get_or_insert_with(BTreeMap::new).extend(req.labels.clone());
    }
    let manifest = store.save_image_as(&target, &req.annotations, req.format)?;
    if let Some(remote) = &b.remote {
        report.finishing("while pushing the build cache (--cache-to)".into());
        remote.export(store, report)?;
    }
    Ok(manifest)
}

/// The build's clock: SOURCE_DATE_EPOCH when set, for reproducible configs.
fn now(source_date_epoch: Option<u64>) -> chrono::DateTime<chrono::Utc> {
    match source_date_epoch {
        Some(s) => chrono::DateTime::from_timestamp(s as i64, 0).unwrap_or_else(chrono::Utc::now),
        None => chrono::Utc::now(),
    }
}

/// Adds a step's layer, if it made one, and its history entry to `image`, dated
/// by the build's clock (a Dockerfile step, or the layer a directory context
/// becomes for FROM).
fn record_step(image: &mut ImageState, layer: Option<crate::store::LayerRef>, created_by: String, source_date_epoch: Option<u64>) {
    let empty_layer = layer.is_none();
    image.layers.extend(layer);
    let created = now(source_date_epoch);
    image.config.history.push(oci::History {
        created: Some(created.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        created_by: Some(created_by),
        comment: Some("strata.dockerfile.v0".into()),
        empty_layer,
        ..Default::default()
    });
    image.config.set_created(created);
}

/// Proxy variables are predefined ARGs: usable without a declaration, never
/// reported as unused, never written into the image.
pub fn is_proxy_arg(name: &str) -> bool {
    matches!(name.to_ascii_uppercase().as_str(), "HTTP_PROXY" | "HTTPS_PROXY" | "FTP_PROXY" | "NO_PROXY" | "ALL_PROXY")
}

impl Build<'_> {
    /// How many of stage `index`'s layers came from outside the Dockerfile, once
    /// the stage has started.
    fn inherited_layers(&self, index: usize) -> Option<usize> {
        self.inherited.lock().unwrap_or_else(|p| p.into_inner()).get(&index).copied()
    }

    fn set_inherited_layers(&self, index: usize, count: usize) {
        self.inherited.lock().unwrap_or_else(|p| p.into_inner()).insert(index, count);
    }

    /// The Dockerfile line that wrote the layer with this diff id hex, if a step did.
    fn layer_line(&self, hex: &str) -> Option<usize> {
        self.layer_lines.lock().unwrap_or_else(|p| p.into_inner()).get(hex).copied()
    }

    fn set_layer_line(&self, hex: &str, line: usize) {
        self.layer_lines.lock().unwrap_or_else(|p| p.into_inner()).insert(hex.to_string(), line);
    }
}
