//! `pull`, `push`, `login` and `logout`, as podman spells them.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::oci::{ImageName, Store};
use crate::registry::auth::{self, Credentials};
use crate::registry::client::Client;
use crate::registry::shortnames::{self, ShortNames};
use crate::registry::tls::TlsOptions;
use crate::registry::transfer;
use crate::report::TransferView;

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
    /// Image to pull: REGISTRY/REPOSITORY[:TAG|@DIGEST] (or docker://...), or a
    /// short name resolved through registries.conf.
    pub image: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub flags: RegistryFlags,
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

/// A registry reference with an optional `docker://` in front, as skopeo writes it.
pub fn registry_name(reference: &str) -> Result<ImageName> {
    // skopeo's docker://NAME is a Docker reference: a name without a registry is
    // Docker Hub's, never a search.
    if let Some(bare) = reference.strip_prefix("docker://").filter(|b| shortnames::is_short(b)) {
        return ImageName::parse(&format!("docker.io/{bare}")).with_context(|| format!("invalid image reference {reference:?}"));
    }
    let bare = reference.strip_prefix("docker://").unwrap_or(reference);
    let name = ImageName::parse(bare).with_context(|| format!("invalid image reference {reference:?}"))?;
    if name.domain() == "localhost" && !bare.starts_with("localhost") {
        bail!("{reference:?} names no registry: write it as REGISTRY/REPOSITORY[:TAG], e.g. 127.0.0.1:5000/{bare} or docker.io/library/{bare}");
    }
    Ok(name)
}

/// Makes clients with the given flags' TLS choice and credentials: `--creds` for
/// every registry, else the ones stored for each.
fn connector(flags: &RegistryFlags) -> Result<impl Fn(&str) -> crate::registry::Result<Client> + '_> {
    let explicit = match &flags.creds {
        Some(c) => {
            let (user, password) = c.split_once(':').context("--creds takes USER:PASSWORD")?;
            Some(Credentials { user: user.into(), password: password.into() })
        }
        None => None,
    };
    let tls = TlsOptions::from_flags(flags.tls_verify, flags.cert_dir.clone());
    Ok(move |registry: &str| {
        let creds = match &explicit {
            Some(c) => Some(c.clone()),
            None => auth::lookup(registry)?,
        };
        Client::new(registry, &tls, creds)
    })
}

/// Prints what registries.conf files were skipped; the command goes on without them.
fn warn_skipped(names: &ShortNames) {
    for w in &names.warnings {
        eprintln!("warning: {w}");
    }
}

pub fn pull(store: &Store, args: PullArgs) -> Result<ExitCode> {
    let connect = connector(&args.flags)?;
    let progress = crate::report::transfer_progress(if args.quiet { TransferView::Quiet } else { TransferView::Auto });
    let bare = args.image.strip_prefix("docker://").unwrap_or(&args.image);
    let manifest = if shortnames::is_short(&args.image) {
        let names = ShortNames::load()?;
        warn_skipped(&names);
        let candidates = names.candidates(bare)?;
        transfer::pull_first(store, bare, &candidates, &connect, progress.as_ref()).with_context(|| format!("pulling {bare}"))?.1
    } else {
        let name = registry_name(&args.image)?;
        let client = connect(name.domain())?;
        transfer::pull_into_store(store, &client, &name, progress.as_ref()).with_context(|| format!("pulling {name}"))?
    };
    let config = store.read_manifest(&crate::oci::descriptor_digest(&manifest)?)?;
    println!("{}", crate::oci::descriptor_digest(config.config())?.hex());
    Ok(ExitCode::SUCCESS)
}

pub fn push(store: &Store, args: PushArgs) -> Result<ExitCode> {
    let manifest = store.resolve(&args.image)?.with_context(|| format!("image {:?} not found in the local store", args.image))?;
    let dest = registry_name(args.destination.as_deref().unwrap_or(&args.image))?;
    let client = connector(&args.flags)?(dest.domain())?;
    let progress = crate::report::transfer_progress(TransferView::Auto);
    let report = transfer::push(store, &client, &manifest, &dest, progress.as_ref()).with_context(|| format!("pushing to {dest}"))?;
    eprintln!("{} blobs uploaded, {} mounted, {} already there", report.uploaded, report.mounted, report.skipped);
    if let Some(d) = report.manifest {
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
    let creds = Credentials { user, password };
    let client = Client::new(&args.registry, &TlsOptions::from_flags(args.tls_verify, args.cert_dir), Some(creds.clone()))?;
    client.ping().with_context(|| format!("logging in to {}", args.registry))?;
    auth::save(&args.registry, &creds)?;
    println!("Login Succeeded!");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(args: LogoutArgs) -> Result<ExitCode> {
    if auth::forget(&args.registry)? {
        println!("Removed login credentials for {}", args.registry);
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("not logged into {}", args.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_transport_names_are_docker_references() {
        assert_eq!(registry_name("docker://alpine").unwrap().to_string(), "docker.io/library/alpine:latest");
        assert_eq!(registry_name("docker://me/app:1").unwrap().to_string(), "docker.io/me/app:1");
        assert_eq!(registry_name("docker://127.0.0.1:5000/a/b:2").unwrap().to_string(), "127.0.0.1:5000/a/b:2");
        assert!(registry_name("alpine").is_err(), "a bare short name is for the search list, not a push target");
    }
}
