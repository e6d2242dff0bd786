//! `strata run` (a container from an image, kept until `rm` unless `--rm`) and
//! `strata unshare`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::container::{write_bundle, BundleProcess};
use crate::sandbox::network::PortMapping;
use crate::sandbox::seccomp::SeccompPolicy;
use crate::sandbox::userns::Privilege;
use crate::sandbox::{self, BindMount, Network, RunSpec, Stdin};
use crate::store::{ContainerState, Containers};
use crate::store::{ImageState, LocalStore};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container when it exits (otherwise it stays for `ps -a`, `commit`
    /// and `rm`).
    #[arg(long)]
    pub rm: bool,
    /// Name the container (default: a generated adjective_name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Keep standard input open and connected to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a terminal (a pty strata relays; with -i, keys typed here).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Bind a host path into the container: SOURCE:TARGET[:ro].
    #[arg(short = 'v', long = "volume", value_name = "SOURCE:TARGET[:ro]")]
    pub volumes: Vec<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Run as this user (name or uid, with an optional :group).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Override the image's ENTRYPOINT.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Network: private (its own namespace with outbound access through pasta or
    /// slirp4netns, not the host's loopback; an error without either), host, none,
    /// or pasta/slirp4netns to pick the helper. The default is private, falling back
    /// to host with a warning where no helper is usable.
    #[arg(long, value_name = "MODE", default_value = "default", value_parser = Network::NAMES)]
    pub network: String,
    /// Publish a container port on the host: [IP:]HOST:CONTAINER[/tcp|udp], ports or
    /// equal-length ranges (A-B); may be repeated.
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CONTAINER")]
    pub publish: Vec<String>,
    /// Container host name.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Security options: seccomp=unconfined, seccomp=FILE (a profile in Docker's JSON
    /// format; default: Docker's default profile), no-new-privileges (always on).
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Image name or id.
    pub image: String,
    /// Command and arguments (default: the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Image name or id.
    pub image: String,
    /// The bundle directory to create (missing or empty): rootfs/ and config.json.
    pub dir: PathBuf,
    /// Command and arguments instead of the image's CMD.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UnshareArgs {
    /// Command to run (default: $SHELL).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(store: &LocalStore, args: RunArgs) -> Result<ExitCode> {
    let manifest = store.images.resolve(&args.image)?.with_context(|| format!("image {:?} not found in the local store", args.image))?;
    let image = store.load_image(&manifest)?;
    let cfg = image.config.config.clone().unwrap_or_default();
    let entrypoint = match &args.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => cfg.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = if args.command.is_empty() {
        if args.entrypoint.is_some() {
            Vec::new()
        } else {
            cfg.cmd.clone().unwrap_or_default()
        }
    } else {
        args.command.clone()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        bail!("no command specified: the image has no CMD or ENTRYPOINT and none was given");
    }
    let mut env = cfg.env.clone().unwrap_or_default();
    for e in &args.env {
        let entry = match e.split_once('=') {
            Some(_) => e.clone(),
            None => match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            },
        };
        let key = entry.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(entry);
    }
    let seccomp = super::security::seccomp_policy(&args.security_opt)?;
    let containers = Containers::open(&store.root);
    let image_id = store.image_id(&manifest)?;
    let mut record = containers.create(args.name.as_deref(), &args.image, &manifest, &image_id, &argv)?;
    let dir = containers.dir_of(&record.id);
    let result = run_container(store, &args, &image, &cfg, (argv, env, seccomp), &dir);
    // Recorded whatever happened, so `ps -a` tells how the container ended.
    let code = match &result {
        Ok(code) => *code,
        Err(_) => 125,
    };
    record.state = ContainerState::Exited { code, finished: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true) };
    if args.rm {
        containers.remove(&record)?;
    } else {
        containers.save(&record)?;
    }
    let code = result?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Runs the container whose writable layer lives in `dir`; returns its exit code.
fn run_container(
    store: &LocalStore,
    args: &RunArgs,
    image: &ImageState,
    cfg: &crate::oci::ContainerConfig,
    (argv, env, seccomp): (Vec<String>, Vec<String>, SeccompPolicy),
    dir: &std::path::Path,
) -> Result<i32> {
    let publish = args.publish.iter().map(|p| PortMapping::parse(p)).collect::<Result<Vec<_>, _>>()?;
    let rootfs = store.overlay_for(image, dir, true)?;
    let spec = RunSpec {
        rootfs,
        argv,
        env,
        cwd: args.workdir.clone().or(cfg.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
        user: args.user.clone().or(cfg.user.clone()).unwrap_or_default(),
        hostname: args.hostname.clone().unwrap_or_else(|| manifest_host(&image.config)),
        // As docker: without -i the command reads an empty stdin.
        stdin: if args.interactive { Stdin::Inherit } else { Stdin::Null },
        pipes: Vec::new(),
        network: sandbox::network::resolve(Network::from_name(&args.network).expect("clap checked the name"), &publish, &|w| {
            crate::report::Reporter::new(false).warn(w)
        })?,
        fake_chown: store.single_id(),
        owner_key: store.owners.key().cloned(),
        binds: args.volumes.iter().map(|v| BindMount::parse(v)).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?,
        tty: args.tty,
        seccomp,
        publish,
    };
    let outcome = sandbox::run(&spec, dir, None)?;
    if let sandbox::Outcome::SetupFailed(msg) = &outcome {
        bail!("cannot start container: {msg}");
    }
    // The vfs driver worked on a copy: find what the container changed, for commit.
    store.settle(&spec.rootfs)?;
    Ok(outcome.code())
}

/// A short host name derived from the image, like docker's container-id host names.
fn manifest_host(config: &crate::oci::ImageConfig) -> String {
    let seed = config.created.clone().unwrap_or_default();
    let digest = crate::oci::Digest::of_bytes(seed.as_bytes());
    digest.hex()[..12].to_string()
}

/// Writes an OCI runtime bundle of an image for runc or crun.
pub fn bundle(store: &LocalStore, args: BundleArgs) -> Result<ExitCode> {
    let manifest = store.images.resolve(&args.image)?.with_context(|| format!("image {:?} not found in the local store", args.image))?;
    let image = store.load_image(&manifest)?;
    let process = BundleProcess::from_image(&image, &args.command)?;
    let dir = std::path::absolute(&args.dir)?;
    write_bundle(store, &image, &process, &dir)?;
    println!("{}", dir.display());
    Ok(ExitCode::SUCCESS)
}

pub fn unshare(args: UnshareArgs, privilege: Privilege) -> Result<ExitCode> {
    let mut argv = args.command;
    if argv.is_empty() {
        argv.push(std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into()));
    }
    if let Privilege::Namespaced(_) = privilege {
        // Let scripts know where they are, as buildah unshare does.
        std::env::set_var("STRATA_UNSHARED", "1");
    }
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .with_context(|| format!("running {}", PathBuf::from(&argv[0]).display()))?;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}
