//! `strata manifest`: create, add, annotate, inspect, remove, rm and push of
//! manifest lists, as podman and buildah spell them; the work is
//! `transport::manifest_list`'s.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::images::parse_platform;
use super::registry::RegistryFlags;
use crate::oci::Store;
use crate::platform::Platform;
use crate::report::TransferView;
use crate::transport::manifest_list::{self as lists, EntryEdit};

#[derive(Debug, Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    pub command: ManifestCommand,
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Create a manifest list, optionally with images in it.
    Create(CreateArgs),
    /// Add an image (local, or docker://REF) to a manifest list.
    Add(AddArgs),
    /// Set the platform or annotations of a list's entry.
    Annotate(AnnotateArgs),
    /// Show a manifest list (or a registry's docker://REF) as JSON.
    Inspect(InspectArgs),
    /// Take an entry out of a manifest list.
    Remove(RemoveArgs),
    /// Remove manifest lists (the images they list stay).
    Rm(RmArgs),
    /// Push a manifest list and its images to a registry.
    Push(PushListArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: RegistryFlags,
    /// When LIST already exists as a list, add to it instead of failing.
    #[arg(long)]
    pub amend: bool,
    pub list: String,
    /// Images to add, as `manifest add` takes them.
    pub images: Vec<String>,
}

/// `--platform`, `--os`, `--arch`, `--variant` and `--annotation`, as podman has them.
#[derive(Debug, Args)]
pub struct EntryFlags {
    /// The entry's platform (os/arch[/variant]); for a docker:// index, the one to add.
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub platform: Option<Platform>,
    #[arg(long)]
    pub os: Option<String>,
    #[arg(long)]
    pub arch: Option<String>,
    #[arg(long)]
    pub variant: Option<String>,
    /// KEY=VALUE annotation of the entry (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub flags: RegistryFlags,
    #[command(flatten)]
    pub entry: EntryFlags,
    /// When IMAGE is a manifest list, add each of its images (else: one platform's).
    #[arg(long)]
    pub all: bool,
    pub list: String,
    /// A local image, or docker://REGISTRY/REPOSITORY[:TAG|@DIGEST].
    pub image: String,
}

#[derive(Debug, Args)]
pub struct AnnotateArgs {
    #[command(flatten)]
    pub entry: EntryFlags,
    pub list: String,
    /// The entry: its manifest digest, or a local image.
    pub target: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub flags: RegistryFlags,
    /// A local list, or docker://REF.
    pub list: String,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    pub list: String,
    /// The entry's manifest digest (or a local image).
    pub digest: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true)]
    pub lists: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PushListArgs {
    #[command(flatten)]
    pub flags: RegistryFlags,
    /// Push every listed image too (podman's default); false: the list alone.
    #[arg(long, value_name = "BOOL", default_value = "true", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub all: bool,
    /// Write the digest of the pushed list to FILE.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<std::path::PathBuf>,
    pub list: String,
    /// REGISTRY/REPOSITORY[:TAG] or docker://... (default: the list's name).
    pub destination: Option<String>,
}

impl EntryFlags {
    fn edit(&self) -> Result<EntryEdit> {
        let annotations = self
            .annotations
            .iter()
            .map(|a| {
                a.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .with_context(|| format!("--annotation {a:?}: want KEY=VALUE"))
            })
            .collect::<Result<_>>()?;
        Ok(EntryEdit {
            platform: self.platform.clone(),
            os: self.os.clone(),
            arch: self.arch.clone(),
            variant: self.variant.clone(),
            annotations,
        })
    }
}

pub fn manifest(store: &Store, args: ManifestArgs) -> Result<ExitCode> {
    match args.command {
        ManifestCommand::Create(a) => {
            let opts = a.flags.options(TransferView::Auto)?;
            println!("{}", lists::create(store, &a.list, &a.images, a.amend, &opts)?);
        }
        ManifestCommand::Add(a) => {
            let opts = a.flags.options(TransferView::Auto)?;
            for digest in lists::add(store, &a.list, &a.image, &a.entry.edit()?, a.all, &opts)? {
                println!("{digest}");
            }
        }
        ManifestCommand::Annotate(a) => {
            println!("{}", lists::annotate(store, &a.list, &a.target, &a.entry.edit()?)?);
        }
        ManifestCommand::Inspect(a) => {
            let opts = a.flags.options(TransferView::Quiet)?;
            println!("{}", serde_json::to_string_pretty(&lists::inspect(store, &a.list, &opts)?)?);
        }
        ManifestCommand::Remove(a) => println!("{}", lists::remove(store, &a.list, &a.digest)?),
        ManifestCommand::Rm(a) => return rm(store, &a.lists),
        ManifestCommand::Push(a) => {
            let opts = a.flags.options(TransferView::Auto)?;
            let digest = lists::push(store, &a.list, a.destination.as_deref(), a.all, &opts)?;
            if let Some(path) = &a.digestfile {
                super::outputs::write_digestfile(path, &digest)?;
            }
            println!("{digest}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes each list; one that fails is reported and the others still go.
fn rm(store: &Store, lists_named: &[String]) -> Result<ExitCode> {
    let mut failed = false;
    for list in lists_named {
        match lists::delete(store, list) {
            Ok(()) => println!("Untagged: {list}"),
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
