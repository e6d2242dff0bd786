//! `pull`, `push`, `login` and `logout`, as podman spells them: their flags, the
//! password read for login, and what they print; the work is `transport`'s.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::oci::Store;
use crate::registry::Credentials;
use crate::registry::TlsOptions;
use crate::report::TransferView;
use crate::transport::{self, PullPolicy, RegistryOptions};

/// Flags every registry command shares.
#[derive(Debug, Args)]
pub struct RegistryFlags {
    /// Check the registry's TLS certificate (false: also allow plain HTTP).
    #[arg(long, value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Trust the CA certificates (*.crt) in DIR and present the client certificate
    /// (NAME.cert + NAME.key) there, instead of certs.d/REGISTRY.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<std::path::PathBuf>,
    /// Credentials USER:PASSWORD instead of the stored ones.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub flags: RegistryFlags,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Of a manifest list, pull this platform's image (os/arch[/variant]; default:
    /// the host's).
    #[arg(long, value_name = "PLATFORM", value_parser = super::images::parse_platform)]
    pub platform: Option<crate::platform::Platform>,
    /// Of a manifest list, pull every platform's image and keep the list.
    #[arg(long, conflicts_with = "platform")]
    pub all_platforms: bool,
    /// Image to pull: REGISTRY/REPOSITORY[:TAG|@DIGEST] (or docker://...), or a
    /// short name resolved through registries.conf.
    pub image: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub flags: RegistryFlags,
    /// Write the digest of the pushed manifest (of a manifest list: the index) to FILE.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<std::path::PathBuf>,
    /// Local image name or id.
    pub image: String,
    /// Where to push (default: the image's own name): REGISTRY/REPOSITORY[:TAG] or docker://...
    pub destination: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Check the registry's TLS certificate (false: also allow plain HTTP).
    #[arg(long, value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Certificates for the registry, as for pull and push.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<std::path::PathBuf>,
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The registry, e.g. 127.0.0.1:5000 or quay.io.
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    pub registry: String,
}

impl RegistryFlags {
    /// The options these flags ask for; `--creds` is split here, so a bad one fails
    /// before anything is contacted.
    pub(super) fn options(&self, view: TransferView) -> Result<RegistryOptions> {
        let creds = match &self.creds {
            Some(c) => {
                let (user, password) = c.split_once(':').context("--creds takes USER:PASSWORD")?;
                Some(Credentials { user: user.into(), password: password.into() })
            }
            None => None,
        };
        let tls = TlsOptions::from_flags(self.tls_verify, self.cert_dir.clone());
        Ok(RegistryOptions { pull: PullPolicy::Always, tls, creds, view, platform: None })
    }
}

/// Pulls `args.image`; returns the exit code and the id pulled.
pub fn pull(store: &Store, args: PullArgs) -> Result<(ExitCode, String)> {
    let mut opts = args.flags.options(if args.quiet { TransferView::Quiet } else { TransferView::Auto })?;
    opts.platform = args.platform;
    let pulled =
        if args.all_platforms { transport::pull_all(store, &args.image, &opts)? } else { transport::pull(store, &args.image, &opts)? };
    println!("{}", pulled.id.hex());
    Ok((ExitCode::SUCCESS, pulled.id.to_string()))
}

pub fn push(store: &Store, args: PushArgs) -> Result<ExitCode> {
    let opts = args.flags.options(TransferView::Auto)?;
    let report = transport::push(store, &args.image, args.destination.as_deref(), &opts)?;
    eprintln!("{} blobs uploaded, {} mounted, {} already there", report.uploaded, report.mounted, report.skipped);
    if let Some(d) = report.manifest {
        if let Some(path) = &args.digestfile {
            super::outputs::write_digestfile(path, &d)?;
        }
        println!("{d}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn login(args: LoginArgs) -> Result<ExitCode> {
    let user = match args.username {
        Some(u) => u,
        None => bail!("login needs --username (strata never prompts)"),
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) if std::io::stdin().is_terminal() => bail!("give the password with --password-stdin (or -p)"),
        (None, false) => bail!("no password: use --password-stdin or -p"),
    };
    let tls = TlsOptions::from_flags(args.tls_verify, args.cert_dir);
    transport::login(&args.registry, &tls, Credentials { user, password })?;
    println!("Login Succeeded!");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(args: LogoutArgs) -> Result<ExitCode> {
    if transport::logout(&args.registry)? {
        println!("Removed login credentials for {}", args.registry);
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("not logged into {}", args.registry)
    }
}
