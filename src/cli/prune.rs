//! `strata prune`: the flags and the one line that says what went; the collector is
//! the store's (`LocalStore::prune`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::store::LocalStore;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove the build cache.
    #[arg(short = 'a', long)]
    pub all: bool,
}

pub fn prune(store: &LocalStore, args: PruneArgs) -> Result<ExitCode> {
    let r = store.prune(args.all)?;
    println!(
        "removed {} dangling images, {} blobs ({} MB), {} layer dirs, {} leftover temp files{}",
        r.dangling,
        r.blobs,
        r.bytes / 1_000_000,
        r.layer_dirs,
        r.leftovers,
        if r.cache { ", the build cache" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}
