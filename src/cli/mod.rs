//! Command-line interface: clap types and one function per command.
//!
//! Commands that touch layer directories (build, run, unshare) first enter
//! strata's user namespace; image commands (images, inspect, rmi, tag, history,
//! fsck, save, load, manifest) work on the image store directly, need no namespace, and hold
//! the store lock shared so they wait for a running prune.

mod archive;
mod build;
mod completion;
mod container;
mod format;
mod images;
mod info;
mod layers;
mod manifest;
mod outputs;
mod prune;
mod registry;
mod run;
mod security;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::report::Reporter;
use crate::sandbox::{enter_user_namespace, Driver};
use crate::store::{default_root, LocalStore};

/// A daemonless, rootless container image builder.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
pub struct Cli {
    /// Storage root (default: $XDG_DATA_HOME/strata or ~/.local/share/strata).
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Storage driver: overlay, fuse-overlayfs or vfs (default: the best the host allows).
    #[arg(long, global = true, env = "STRATA_STORAGE_DRIVER", value_name = "NAME", value_parser = ["overlay", "fuse-overlayfs", "vfs"])]
    pub storage_driver: Option<String>,
    /// Seconds a registry (or the server of an ADD URL) may stay silent before the
    /// request fails or is retried (default 60).
    #[arg(long, global = true, env = "STRATA_REGISTRY_TIMEOUT", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub registry_timeout: Option<u64>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile or Containerfile.
    #[command(alias = "bud")]
    Build(Box<build::BuildArgs>),
    /// Run a command in a new container from an image.
    Run(Box<run::RunArgs>),
    /// List images in the local store.
    Images(images::ImagesArgs),
    /// Show an image's configuration as JSON.
    Inspect(images::InspectArgs),
    /// Remove images from the local store.
    Rmi(images::RmiArgs),
    /// Add a name to an image.
    Tag(images::TagArgs),
    /// Run a command inside strata's user namespace (like `buildah unshare`).
    Unshare(run::UnshareArgs),
    /// Show the host's capabilities and strata's configuration.
    Info(info::InfoArgs),
    /// Verify every blob and reference of the image store.
    Fsck(images::FsckArgs),
    /// Show the history of an image.
    History(images::HistoryArgs),
    /// Show what each layer of an image adds, changes and removes, and the bytes
    /// it ships that a later layer hides.
    Layers(layers::LayersArgs),
    /// Remove dangling images, unused layers and blobs (and with --all, the build cache).
    Prune(prune::PruneArgs),
    /// Write an image to a docker-archive, oci-archive or OCI layout.
    Save(archive::SaveArgs),
    /// Load an image from a docker-archive or oci-archive.
    Load(archive::LoadArgs),
    /// List containers.
    Ps(container::PsArgs),
    /// Remove containers.
    Rm(container::RmArgs),
    /// Create an image from a container's changes.
    Commit(container::CommitArgs),
    /// Show a container's changes to its image (A, C, D), or the paths that differ
    /// between two images.
    Diff(container::DiffArgs),
    /// Write an image as an OCI runtime bundle (rootfs + config.json) for runc/crun.
    Bundle(run::BundleArgs),
    /// Copy an image from a registry into the local store.
    Pull(registry::PullArgs),
    /// Copy an image from the local store to a registry.
    Push(registry::PushArgs),
    /// Store credentials for a registry.
    Login(registry::LoginArgs),
    /// Forget the credentials of a registry.
    Logout(registry::LogoutArgs),
    /// Create, edit and push manifest lists (multi-platform images).
    Manifest(manifest::ManifestArgs),
    /// Print a shell completion script: bash, zsh or fish.
    Completion(completion::CompletionArgs),
    /// Print strata's man page, or write every command's into a directory.
    Man(completion::ManArgs),
    /// Unpacks images' layers into layer dirs (what `pull` and `load` run after
    /// they stored an image).
    #[command(hide = true, name = "unpack-image")]
    UnpackImage(UnpackImageArgs),
}

#[derive(Debug, clap::Args)]
pub struct UnpackImageArgs {
    /// Images by name or id; an index unpacks the host's image.
    #[arg(required = true)]
    images: Vec<String>,
}

/// Parses `args` and runs the command.
pub fn run(args: Vec<OsString>) -> Result<ExitCode> {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let e = without_dash_dash_tip(e);
            let _ = e.print();
            return Ok(ExitCode::from(if e.use_stderr() { 2 } else { 0 }));
        }
    };
    let root = match &cli.root {
        Some(r) => std::path::absolute(r)?,
        None => default_root()?,
    };
    let driver = cli.storage_driver.as_deref().and_then(Driver::from_name);
    if let Some(seconds) = cli.registry_timeout {
        crate::registry::set_idle_timeout(seconds);
    }
    // Warnings go where the command's progress goes: `build -q` silences both. Other
    // commands' -q trims what they print on stdout (and `pull -q`, whose transfer
    // view is quiet, the registries.conf warnings of its short-name look-up).
    let report = match &cli.command {
        Command::Build(a) => Reporter::with_view(a.view()),
        _ => Reporter::new(false),
    };
    match cli.command {
        Command::Completion(a) => completion::completion(a),
        Command::Man(a) => completion::man(a),
        // The checks read the Dockerfile and the store's image configs: no namespace.
        Command::Build(a) if a.check => build::check(*a, &shared_store(&root, &report)?.0),
        Command::Build(a) => {
            let store = enter_store(&root, driver, &report)?;
            // Here, in the process that builds: it knows the step an interrupt stops.
            report.watch_interrupts().context("watching for interrupts")?;
            let _writers = store.lock(false)?;
            build::run(&store, *a, &report)
        }
        Command::Run(a) => {
            let store = enter_store(&root, driver, &report)?;
            let _users = store.lock(false)?;
            run::run(&store, *a)
        }
        Command::Unshare(a) => {
            let privilege = enter_user_namespace(&|w| report.warn(w))?;
            crate::store::secure_root(&root, &report)?;
            run::unshare(a, privilege)
        }
        Command::Images(a) => images::images(&shared_store(&root, &report)?.0, a),
        Command::Inspect(a) => images::inspect(&shared_store(&root, &report)?.0, a),
        Command::Rmi(a) => images::rmi(&shared_store(&root, &report)?.0, a),
        Command::Tag(a) => images::tag(&shared_store(&root, &report)?.0, a),
        Command::Fsck(a) => {
            // As found: fsck reports dead writers' temp files that any other open removes.
            let store = LocalStore::open_images_as_found(&root, &report)?;
            let _readers = crate::store::lock_root(&root, false)?;
            images::fsck(&store, a)
        }
        Command::History(a) => images::history(&shared_store(&root, &report)?.0, a),
        Command::Layers(a) => layers::layers(&shared_store(&root, &report)?.0, a),
        Command::Pull(a) => {
            let (code, id) = registry::pull(&shared_store(&root, &report)?.0, a)?;
            unpack_after_import(&root, cli.storage_driver.as_deref(), &id);
            Ok(code)
        }
        Command::Push(a) => registry::push(&shared_store(&root, &report)?.0, a),
        Command::Login(a) => registry::login(a),
        Command::Logout(a) => registry::logout(a),
        Command::Manifest(a) => manifest::manifest(&shared_store(&root, &report)?.0, a),
        Command::Save(a) => archive::save(&shared_store(&root, &report)?.0, a),
        Command::Load(a) => {
            let (code, id) = archive::load(&shared_store(&root, &report)?.0, a)?;
            unpack_after_import(&root, cli.storage_driver.as_deref(), &id);
            Ok(code)
        }
        Command::UnpackImage(a) => {
            let store = enter_store(&root, driver, &report)?;
            let _users = store.lock(false)?;
            for image in &a.images {
                store.unpack_image(image)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune(a) => {
            let store = enter_store(&root, driver, &report)?;
            prune::prune(&store, a)
        }
        Command::Ps(a) if a.size => container::ps(&root, a, Some(&enter_store(&root, driver, &report)?)),
        Command::Ps(a) => container::ps(&root, a, None),
        Command::Rm(a) => container::rm(&enter_store(&root, driver, &report)?, a),
        Command::Diff(a) => match &a.second {
            Some(second) => container::diff_images(&shared_store(&root, &report)?.0, &a.first, second),
            // Layer dirs are read as the namespace's root sees them.
            None => container::diff_container(&enter_store(&root, driver, &report)?, &a.first),
        },
        Command::Commit(a) => {
            let store = enter_store(&root, driver, &report)?;
            let _writers = store.lock(false)?;
            container::commit(&store, a)
        }
        Command::Bundle(a) => {
            let store = enter_store(&root, driver, &report)?;
            let _users = store.lock(false)?;
            run::bundle(&store, a)
        }
        Command::Info(a) => {
            let store = enter_store(&root, driver, &report)?;
            info::info(&store, a)
        }
    }
}

/// clap's error for an unknown flag, without its tip "to pass '--foo' as a value, use
/// '-- --foo'": a command with a positional argument (build's context, run's command)
/// gets it for every misspelt flag, and no strata command takes `--foo` as a value
/// that way. The error, its usage line and exit code 2 stay clap's.
fn without_dash_dash_tip(mut e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    if let Some(ContextValue::StyledStrs(tips)) = e.get(ContextKind::Suggested) {
        let kept: Vec<_> = tips.iter().filter(|t| !is_dash_dash_tip(&t.to_string())).cloned().collect();
        if kept.is_empty() {
            e.remove(ContextKind::Suggested);
        } else {
            e.insert(ContextKind::Suggested, ContextValue::StyledStrs(kept));
        }
    }
    e
}

fn is_dash_dash_tip(text: &str) -> bool {
    text.starts_with("to pass '") && text.contains("' as a value, use '")
}

/// The image store with `store.lock` held shared for as long as the pair lives.
fn shared_store(root: &std::path::Path, report: &Reporter) -> Result<(crate::oci::Store, nix::fcntl::Flock<std::fs::File>)> {
    let store = LocalStore::open_images(root, report)?;
    let lock = crate::store::lock_root(root, false)?;
    Ok((store, lock))
}

/// Unpacks the image `id` just pulled or loaded, as podman and buildah do at pull:
/// the first build or `run` on it then starts at once. Unpacking needs the user
/// namespace, which `pull` and `load` do not enter, so a child strata does it. Best
/// effort: where it cannot (no namespace here), the first use unpacks as before.
fn unpack_after_import(root: &std::path::Path, driver: Option<&str>, id: &str) {
    let Ok(exe) = std::env::current_exe() else { return };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root").arg(root);
    if let Some(d) = driver {
        cmd.arg("--storage-driver").arg(d);
    }
    cmd.arg("unpack-image").arg(id);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let _ = cmd.status();
}

fn enter_store(root: &std::path::Path, driver: Option<Driver>, report: &Reporter) -> Result<LocalStore> {
    let privilege = enter_user_namespace(&|w| report.warn(w))?;
    LocalStore::open(root, privilege, driver, report)
}

/// $SOURCE_DATE_EPOCH, read once here: the build and commit get it in their request
/// (a value that is not a number is ignored, as before the flag existed).
fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_error(args: &[&str]) -> String {
        let e = Cli::try_parse_from(args).expect_err("a usage error");
        assert_eq!(e.exit_code(), 2);
        without_dash_dash_tip(e).render().to_string()
    }

    #[test]
    fn unknown_flags_get_no_dash_dash_tip() {
        for args in [&["strata", "build", "--zzzzqqq", "."][..], &["strata", "build", "-Z"], &["strata", "run", "--zzzzqqq", "busybox"]] {
            let text = usage_error(args);
            assert!(text.contains("unexpected argument"), "{text}");
            assert!(!text.contains("-- "), "{args:?}: {text}");
            assert!(text.contains("Usage: strata "), "the usage line stays: {text}");
        }
        // A similar flag is still suggested.
        let text = usage_error(&["strata", "build", "--no-cach", "."]);
        assert!(text.contains("a similar argument exists: '--no-cache'"), "{text}");
    }
}
