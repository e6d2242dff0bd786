//! `strata run` (a container from an image, kept until `rm` unless `--rm`) and
//! `strata unshare`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::container::{self, RunRequest};
use crate::sandbox::{Network, Privilege};
use crate::store::LocalStore;

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
    /// Of a manifest list, run this platform's image (os/arch[/variant]; default:
    /// the host's). A foreign architecture runs through a binfmt_misc emulator.
    #[arg(long, value_name = "PLATFORM", value_parser = super::images::parse_platform)]
    pub platform: Option<crate::platform::Platform>,
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
    let req = RunRequest {
        seccomp: super::security::seccomp_policy(&args.security_opt)?,
        network: Network::from_name(&args.network).expect("clap checked the name"),
        image: args.image,
        platform: args.platform,
        command: args.command,
        entrypoint: args.entrypoint,
        name: args.name,
        remove: args.rm,
        interactive: args.interactive,
        tty: args.tty,
        volumes: args.volumes,
        env: args.env,
        user: args.user,
        workdir: args.workdir,
        publish: args.publish,
        hostname: args.hostname,
    };
    let code = container::run(store, &req)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Writes an OCI runtime bundle of an image for runc or crun.
pub fn bundle(store: &LocalStore, args: BundleArgs) -> Result<ExitCode> {
    let dir = container::bundle(store, &args.image, &args.command, &args.dir)?;
    println!("{}", dir.display());
    Ok(ExitCode::SUCCESS)
}

pub fn unshare(args: UnshareArgs, privilege: Privilege) -> Result<ExitCode> {
    let mut argv = args.command;
    if argv.is_empty() {
        argv.push(std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into()));
    }
    let mut command = std::process::Command::new(&argv[0]);
    command.args(&argv[1..]);
    if let Privilege::Namespaced(_) = privilege {
        // Let scripts know where they are, as buildah unshare does: set on the child
        // only, since changing this process's environment is unsound once threads
        // may exist (only `sandbox::userns` does it, before any are started).
        command.env("STRATA_UNSHARED", "1");
    }
    let status = command.status().with_context(|| format!("running {}", PathBuf::from(&argv[0]).display()))?;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}
