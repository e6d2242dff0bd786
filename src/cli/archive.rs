//! `save` and `load`: images to and from archive files, as docker and podman do it;
//! their flags, standard input and output, and what they print (the work is
//! `transport::archive`'s).
//!
//! Both work on the image store alone (no namespace): an archive holds blobs, and
//! layer dirs are made later, by the first build or run that needs them.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::oci::Store;
use crate::transport::{self, SaveFormat, SaveSource};

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
    let format = SaveFormat::from_name(&args.format).expect("clap checked the name");
    let source = SaveSource::find(store, &args.image)?;
    match &args.output {
        Some(path) => source.save(store, format, path).with_context(|| format!("saving {}", args.image))?,
        None if format == SaveFormat::OciDir => bail!("--format oci-dir needs -o DIR"),
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect standard output");
            }
            let out = io::BufWriter::with_capacity(256 * 1024, stdout.lock());
            let mut out = source.write(store, format, out, Path::new("standard output"))?;
            out.flush().context("writing to standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads an archive; returns the exit code and the id loaded.
pub fn load(store: &Store, args: LoadArgs) -> Result<(ExitCode, String)> {
    let loaded = match &args.input {
        Some(path) => transport::load(store, path)?,
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                bail!("no archive on standard input: use -i FILE or redirect standard input");
            }
            transport::load_from(store, stdin.lock(), Path::new("standard input"))?
        }
    };
    if args.quiet {
        println!("{}", loaded.id);
    } else if loaded.names.is_empty() {
        println!("Loaded image ID: {}", loaded.id);
    } else {
        for name in &loaded.names {
            println!("Loaded image: {name}");
        }
    }
    Ok((ExitCode::SUCCESS, loaded.id.to_string()))
}
