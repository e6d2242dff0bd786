//! `strata build`: docker/podman-compatible flags mapped onto a build request.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::engine::{self, BuildRequest, NamedContexts};
use crate::oci::{LayerCompression, ManifestFormat};
use crate::registry::TlsOptions;
use crate::report::{Reporter, TransferView};
use crate::sandbox::Network;
use crate::store::{LayerFormat, LocalStore};
use crate::transport::{PullPolicy, RegistryOptions};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name of the Dockerfile (default: CONTEXT/Containerfile, else CONTEXT/Dockerfile);
    /// `-` reads it from standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Name and optionally a tag (NAME[:TAG]); may be repeated.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Also write the image to oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    #[arg(short = 'o', long = "output", value_name = "DEST")]
    pub output: Option<String>,
    /// Build up to this stage.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output style: plain, for CI logs, also prints each step's duration, a closing
    /// summary and a failed RUN's last lines after its error, and draws no transfer
    /// bars on a terminal; quiet is -q. auto and tty print lines, with bars on a
    /// terminal.
    #[arg(long, value_name = "TYPE", default_value = "auto", value_parser = ["auto", "plain", "tty", "quiet"])]
    pub progress: String,
    /// Network for RUN instructions: private (its own namespace with outbound access
    /// through pasta or slirp4netns, not the host's loopback; an error without
    /// either), host, none, or pasta/slirp4netns to pick the helper. The default is
    /// private, falling back to host with a warning where no helper is usable.
    #[arg(long, value_name = "MODE", default_value = "default", value_parser = Network::NAMES)]
    pub network: String,
    /// Clamp file times and set created times to this Unix time, for reproducible
    /// images (default: $SOURCE_DATE_EPOCH).
    #[arg(long, value_name = "SECONDS")]
    pub source_date_epoch: Option<u64>,
    /// Do not use the build cache (results are still recorded for later builds).
    #[arg(long)]
    pub no_cache: bool,
    /// buildah's flag: strata always caches each step as a layer, so `--layers` (or
    /// `=true`) changes nothing and `--layers=false` runs every step, as --no-cache.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub layers: Option<bool>,
    /// Manifest and config media types: oci (default) or docker (Docker schema 2,
    /// for registries and tools that want it); default: $BUILDAH_FORMAT, else oci.
    #[arg(long, value_name = "FORMAT", env = "BUILDAH_FORMAT", default_value = "oci", value_parser = ["oci", "docker"])]
    pub format: String,
    /// Platforms to build for: os/arch[/variant], arch, or local, comma-separated or
    /// repeated; several give an image index under the tags. Default:
    /// $BUILDAH_PLATFORM, else $DOCKER_DEFAULT_PLATFORM, else the host's. A foreign
    /// architecture's RUN steps need its qemu-user-static binfmt_misc handler.
    #[arg(long, value_name = "PLATFORM", env = "BUILDAH_PLATFORM")]
    pub platform: Vec<String>,
    /// Do not use the build cache for these stages (by name or index).
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Look steps up in this registry repository (REPO, or type=registry,ref=REPO);
    /// may be repeated.
    #[arg(long = "cache-from", value_name = "REPO")]
    pub cache_from: Vec<String>,
    /// Push every step's result to this registry repository, tagged with its cache
    /// key, for other runners' --cache-from; may be repeated.
    #[arg(long = "cache-to", value_name = "REPO")]
    pub cache_to: Vec<String>,
    /// Layer compression: gzip (default), zstd or none.
    #[arg(long, value_name = "ALGO", default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    pub compression: String,
    /// Compression level (gzip 0-9, default 6; zstd 1-19, default 3).
    #[arg(long, value_name = "N")]
    pub compression_level: Option<i32>,
    /// When FROM pulls from its registry: missing (default), always, never;
    /// `--pull` alone means always.
    #[arg(long, value_name = "POLICY", num_args = 0..=1, default_missing_value = "always", default_value = "missing", value_parser = ["missing", "always", "never", "true", "false"])]
    pub pull: String,
    /// Check registries' TLS certificates (false: also allow plain HTTP).
    #[arg(long, value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Certificates for the registries FROM pulls from (*.crt CAs, NAME.cert +
    /// NAME.key), instead of certs.d/REGISTRY.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Security options for RUN: seccomp=unconfined, seccomp=FILE (a profile in
    /// Docker's JSON format; default: Docker's default profile), no-new-privileges
    /// (always on).
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// A secret for `RUN --mount=type=secret`: `id=NAME,src=FILE` or
    /// `id=NAME,env=VAR` (`type=file|env` also taken); never stored in the image.
    #[arg(long, value_name = "id=ID,src=FILE|env=VAR")]
    pub secret: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` ($SSH_AUTH_SOCK), or
    /// `ID=SOCKET|KEY[,KEY...]`.
    #[arg(long, value_name = "default|ID=SOCKET|KEY")]
    pub ssh: Vec<String>,
    /// A named context for FROM NAME and COPY --from=NAME: NAME=DIR,
    /// NAME=oci-layout://DIR[:TAG][@DIGEST] or NAME=docker-image://REF; it replaces
    /// a stage or an image of that name. May be repeated.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// Set a label in the image's config (KEY=VALUE), over a Dockerfile LABEL of the
    /// same key; may be repeated.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Add an annotation to the image manifest ([manifest:]KEY=VALUE); may be repeated.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Write the image id (sha256:...) to FILE.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write BuildKit's build result metadata (digests, names) to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Write the digest of the manifest pushed by `--output docker://...` to FILE.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// How many stages may build at once (default: the number of CPUs; 0: no limit,
    /// as buildah's). Independent stages run side by side; the image is the same.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Run the build checks (BuildKit's Dockerfile lint rules) and build nothing;
    /// exits 1 when a rule is broken. `# check=skip=RULE,...` and the
    /// BUILDKIT_DOCKERFILE_CHECK build argument choose the rules.
    #[arg(long)]
    pub check: bool,
    /// Merge the layers this Dockerfile adds into one, above the base image's
    /// (buildah's flag); the steps are still cached one by one.
    #[arg(long, conflicts_with = "squash_all")]
    pub squash: bool,
    /// Merge every layer, the base image's too, into one.
    #[arg(long)]
    pub squash_all: bool,
    /// Build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
}

fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in raw {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => bail!("--build-arg {a:?}: missing name"),
            // Docker takes a bare name's value from the environment, and drops it
            // when the environment does not have it.
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl BuildArgs {
    /// `-q` or `--progress=quiet`.
    pub fn quiet(&self) -> bool {
        self.quiet || self.progress == "quiet"
    }

    /// The output style `-q` and `--progress` ask for.
    pub fn view(&self) -> TransferView {
        match (self.quiet(), self.progress.as_str()) {
            (true, _) => TransferView::Quiet,
            (false, "plain") => TransferView::Plain,
            _ => TransferView::Auto,
        }
    }
}

/// Builds as `args` say; `report` is the command's (see [`BuildArgs::quiet`]).
pub fn run(store: &LocalStore, args: BuildArgs, report: &Reporter) -> Result<ExitCode> {
    let (iidfile, metadata_file, digestfile) = (args.iidfile.clone(), args.metadata_file.clone(), args.digestfile.clone());
    let req = request(args)?;
    // As docker does for --iidfile: a failed build must not leave an earlier
    // build's id or digest where a script will read it.
    for path in [&iidfile, &metadata_file, &digestfile].into_iter().flatten() {
        super::outputs::remove_stale(path)?;
    }
    let outcome = engine::build(store, &req, report)?;
    if let Some(path) = &iidfile {
        super::outputs::write_iidfile(path, &outcome)?;
    }
    if let Some(path) = &metadata_file {
        super::outputs::write_metadata_file(path, &outcome)?;
    }
    if let (Some(path), Some(digest)) = (&digestfile, &outcome.pushed) {
        super::outputs::write_digestfile(path, digest)?;
    }
    println!("{}", outcome.image_id.hex());
    Ok(ExitCode::SUCCESS)
}

/// `build --check`: the findings on standard output, then BuildKit's closing line;
/// exit 1 when there are any. Nothing is built, and the store is only read (for
/// the base images' ENV), without entering the user namespace.
pub fn check(args: BuildArgs, images: &crate::oci::Store) -> Result<ExitCode> {
    let checked = engine::check(&request(args)?, images)?;
    for line in checked.rendered() {
        println!("{line}");
    }
    for note in &checked.notes {
        println!("note: {}: {note}", checked.file);
    }
    match checked.findings.len() {
        0 => {
            println!("Check complete, no warnings found.");
            Ok(ExitCode::SUCCESS)
        }
        n => {
            println!("Check complete, {n} warning{} found!", if n == 1 { " has been" } else { "s have been" });
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The build request `args` describe, with the flags checked against each other.
fn request(args: BuildArgs) -> Result<BuildRequest> {
    let view = args.view();
    if args.digestfile.is_some() && !args.output.as_deref().is_some_and(|o| o.starts_with("docker://")) {
        bail!("--digestfile needs a push: --output docker://REGISTRY/REPOSITORY[:TAG]");
    }
    let format = ManifestFormat::from_name(&args.format).expect("clap checked the name");
    if format == ManifestFormat::Docker && args.compression == "zstd" {
        bail!("--compression zstd needs --format oci: Docker's image format has no zstd layers");
    }
    // `-f -`, as docker takes it: the Dockerfile comes from standard input and the
    // context is still the directory named.
    let (file, file_text) = match args.file {
        Some(f) if f.as_os_str() == "-" => {
            let text = std::io::read_to_string(std::io::stdin()).context("reading the Dockerfile from standard input")?;
            (None, Some(text))
        }
        other => (other, None),
    };
    let mut platform_text = args.platform.join(",");
    if platform_text.is_empty() {
        platform_text = std::env::var("DOCKER_DEFAULT_PLATFORM").unwrap_or_default();
    }
    let platforms = if platform_text.trim().is_empty() {
        Vec::new()
    } else {
        crate::platform::Platform::parse_list(&platform_text).map_err(|e| anyhow::anyhow!("--platform: {e}"))?
    };
    let req = BuildRequest {
        platforms,
        context: args.context,
        file,
        file_text,
        format,
        tags: args.tags,
        build_args: parse_build_args(&args.build_args)?,
        output: args.output,
        target: args.target,
        network: Network::from_name(&args.network).expect("clap checked the name"),
        seccomp: super::security::seccomp_policy(&args.security_opt)?,
        no_cache: args.no_cache || args.layers == Some(false),
        no_cache_filter: args.no_cache_filter,
        cache_from: args.cache_from,
        cache_to: args.cache_to,
        contexts: NamedContexts::parse(&args.build_contexts)?,
        layers: LayerFormat {
            compression: LayerCompression::from_name(&args.compression, args.compression_level).expect("clap checked the name"),
            source_date_epoch: args.source_date_epoch.or_else(super::source_date_epoch),
        },
        registry: RegistryOptions {
            pull: PullPolicy::from_name(&args.pull).expect("clap checked the name"),
            tls: TlsOptions::from_flags(args.tls_verify, args.cert_dir),
            creds: None,
            view,
            // Each FROM pulls for the platform it builds (`engine::base`).
            platform: None,
        },
        secrets: args.secret.iter().map(|s| engine::parse_secret(s, &env_var)).collect::<Result<_>>()?,
        ssh: args.ssh.iter().map(|s| engine::parse_ssh(s, &env_var)).collect::<Result<_>>()?,
        labels: super::outputs::parse_labels(&args.labels)?,
        annotations: super::outputs::parse_annotations(&args.annotations)?,
        jobs: match args.jobs {
            None => std::thread::available_parallelism().map_or(1, usize::from),
            Some(0) => usize::MAX,
            Some(n) => n,
        },
        squash: match (args.squash, args.squash_all) {
            (_, true) => Some(engine::Squash::All),
            (true, false) => Some(engine::Squash::New),
            _ => None,
        },
    };
    Ok(req)
}
