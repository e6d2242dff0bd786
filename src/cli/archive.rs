//! `save` and `load`: images to and from archive files, as docker and podman do it.
//!
//! Both work on the image store alone (no namespace): an archive holds blobs, and
//! layer dirs are made later, by the first build or run that needs them.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::oci::{self, ImageName, Store};
use crate::transport::docker_repo_tags;

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to FILE (a directory for oci-dir) instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive format: docker-archive (what `docker load` reads), oci-archive or oci-dir.
    #[arg(long, value_name = "FORMAT", default_value = "docker-archive", value_parser = ["docker-archive", "oci-archive", "oci-dir"])]
    pub format: String,
    /// Image name or id.
    pub image: String,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from FILE (an oci-archive or docker-archive, told apart by content)
    /// instead of standard input.
    #[arg(short = 'i', long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print only the loaded image's id.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

pub fn save(store: &Store, args: SaveArgs) -> Result<ExitCode> {
    let manifest = store.resolve(&args.image)?.with_context(|| format!("image {:?} not found in the local store", args.image))?;
    // Saved by name, the archive carries the name; saved by id, none (as docker does).
    let name =
        ImageName::parse(&args.image).ok().filter(|n| n.digest().is_none() && store.resolve(&n.to_string()).ok().flatten().is_some());
    let tags = docker_repo_tags(None, name.as_ref())?;
    let tag = name.as_ref().and_then(|n| n.tag().map(str::to_string));
    match (&args.output, args.format.as_str()) {
        (Some(path), "docker-archive") => oci::export_docker_archive(store, &manifest, path, &tags),
        (Some(path), "oci-archive") => oci::export_oci_archive(store, &manifest, path, tag.as_deref()),
        (Some(path), _) => oci::export_oci_dir(store, &manifest, path, tag.as_deref()),
        (None, "oci-dir") => bail!("--format oci-dir needs -o DIR"),
        (None, format) => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect standard output");
            }
            let out = io::BufWriter::with_capacity(256 * 1024, stdout.lock());
            let label = Path::new("standard output");
            let mut out = if format == "docker-archive" {
                oci::write_docker_archive(store, &manifest, out, &tags, label)?
            } else {
                oci::write_oci_archive(store, &manifest, out, tag.as_deref(), label)?
            };
            out.flush().context("writing to standard output")?;
            Ok(())
        }
    }
    .with_context(|| format!("saving {}", args.image))?;
    Ok(ExitCode::SUCCESS)
}

pub fn load(store: &Store, args: LoadArgs) -> Result<ExitCode> {
    let loaded = match &args.input {
        Some(path) => oci::load_archive(store, path, None).with_context(|| format!("loading {}", path.display()))?,
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                bail!("no archive on standard input: use -i FILE or redirect standard input");
            }
            oci::load_archive_from(store, stdin.lock(), Path::new("standard input"), None).context("loading from standard input")?
        }
    };
    let config = store.read_manifest(&oci::descriptor_digest(&loaded.manifest)?)?;
    let id = oci::descriptor_digest(config.config())?;
    if loaded.names.is_empty() {
        store.add_unnamed(&loaded.manifest)?;
    }
    for name in &loaded.names {
        store.tag(name, &loaded.manifest)?;
    }
    if args.quiet {
        println!("{id}");
    } else if loaded.names.is_empty() {
        println!("Loaded image ID: {id}");
    } else {
        for name in &loaded.names {
            println!("Loaded image: {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
