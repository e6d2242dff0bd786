//! `strata prune`: the flags and the one line that says what went; the collector is
//! the store's (`LocalStore::prune`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::store::LocalStore;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove the build cache and the cache mounts.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Remove only the cache mounts (`RUN --mount=type=cache`).
    #[arg(long, conflicts_with = "all")]
    pub mounts: bool,
}

pub fn prune(store: &LocalStore, args: PruneArgs) -> Result<ExitCode> {
    if args.mounts {
        let m = store.prune_cache_mounts()?;
        println!("removed {} cache mounts", m.caches);
        return Ok(ExitCode::SUCCESS);
    }
    let r = store.prune(args.all)?;
    println!(
        "removed {} dangling images, {} blobs ({} MB), {} layer dirs, {} leftover temp files{}",
        r.dangling,
        r.blobs,
        r.bytes / 1_000_000,
        r.layer_dirs,
        r.leftovers,
        if r.cache { format!(", the build cache and {} cache mounts", r.mounts) } else { String::new() }
    );
    Ok(ExitCode::SUCCESS)
}
