//! Container commands, docker style: `ps`, `rm`, `commit` and `diff`.

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use clap::Args;

use super::format::{ago, human_size};
use crate::container::{self, shell_words, CommitRequest};
use crate::store::LocalStore;
use crate::store::{ContainerRecord, ContainerState, Containers};

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: running ones only).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print only container ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show full container ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show each container's size: its writable layer, and with its image (virtual).
    #[arg(short = 's', long)]
    pub size: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// A container (its changes to its image), or with a second argument an image.
    pub first: String,
    /// A second image: what differs from the first to it.
    pub second: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove running containers too (their `strata run` is killed first).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Container names or ids.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Apply a Dockerfile instruction to the image's config (CMD, ENTRYPOINT, ENV,
    /// EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR);
    /// repeatable.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message, kept in the image's history.
    #[arg(short = 'm', long, value_name = "MESSAGE")]
    pub message: Option<String>,
    /// Author of the image.
    #[arg(short = 'a', long, value_name = "AUTHOR")]
    pub author: Option<String>,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The container to commit.
    pub container: String,
    /// Name of the new image (default: untagged).
    pub image: Option<String>,
}

/// `store` is given (and entered) for `--size` only: sizes read the layer dirs.
pub fn ps(root: &std::path::Path, args: PsArgs, store: Option<&LocalStore>) -> Result<ExitCode> {
    let list: Vec<ContainerRecord> = Containers::open(root).list()?.into_iter().filter(|c| args.all || c.is_running()).collect();
    if args.quiet {
        for c in &list {
            println!("{}", if args.no_trunc { &c.id } else { c.short_id() });
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = Utc::now();
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|c| {
            let id = if args.no_trunc { c.id.clone() } else { c.short_id().to_string() };
            let mut command = shell_words(&c.command);
            if !args.no_trunc && command.chars().count() > 20 {
                command = format!("{}…", command.chars().take(19).collect::<String>());
            }
            let created = c.created_time().map(|t| ago(now - t)).unwrap_or_default();
            let size = store.map(|s| size_column(s, c)).unwrap_or_default();
            [id, c.image.clone(), format!("\"{command}\""), created, status(c, now), c.name.clone(), size]
        })
        .collect();
    let header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES", if store.is_some() { "SIZE" } else { "" }];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    Ok(ExitCode::SUCCESS)
}

/// docker's SIZE column: `12 B (virtual 4.26 MB)`.
fn size_column(store: &LocalStore, c: &ContainerRecord) -> String {
    match container::container_sizes(store, c) {
        Ok((writable, image)) => format!("{} (virtual {})", human_size(writable), human_size(writable + image)),
        Err(e) => {
            eprintln!("strata: warning: container {}: {e:#}", c.name);
            "unknown".into()
        }
    }
}

/// docker's STATUS column: `Up 3 minutes`, `Exited (0) 2 seconds ago`.
fn status(c: &ContainerRecord, now: chrono::DateTime<Utc>) -> String {
    let ago = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| ago(now - t.with_timezone(&Utc))).unwrap_or_default();
    match &c.state {
        ContainerState::Running { .. } if c.is_running() => format!("Up {}", ago(&c.created).trim_end_matches(" ago")),
        // Its `strata run` died without recording an exit (killed, or the machine went down).
        ContainerState::Running { .. } => "Exited (unknown)".to_string(),
        ContainerState::Exited { code, finished } => format!("Exited ({code}) {}", ago(finished)),
    }
}

pub fn rm(store: &LocalStore, args: RmArgs) -> Result<ExitCode> {
    let mut failed = false;
    for reference in &args.containers {
        match container::remove(store, reference, args.force) {
            Ok(()) => println!("{reference}"),
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub fn commit(store: &LocalStore, args: CommitArgs) -> Result<ExitCode> {
    let req = CommitRequest {
        container: args.container,
        image: args.image,
        changes: args.changes,
        message: args.message,
        author: args.author,
        source_date_epoch: super::source_date_epoch(),
    };
    let id = container::commit(store, &req)?;
    println!("{}", if args.quiet { id.hex().to_string() } else { id.to_string() });
    Ok(ExitCode::SUCCESS)
}

/// `diff CONTAINER`: the container's changes, one `KIND /path` line each.
pub fn diff_container(store: &LocalStore, container: &str) -> Result<ExitCode> {
    for (kind, path) in container::container_changes(store, container)? {
        println!("{kind} {path}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `diff IMAGE IMAGE`: the paths that differ from the first image to the second.
pub fn diff_images(store: &crate::oci::Store, from: &str, to: &str) -> Result<ExitCode> {
    let tree = |reference: &str| -> Result<crate::analysis::Visible> {
        let found = store.resolve(reference)?.ok_or_else(|| anyhow::anyhow!("image {reference:?} not found in the local store"))?;
        let manifest = crate::oci::descriptor_digest(&store.select_manifest(&found, None)?)?;
        crate::analysis::final_tree(store, &manifest)
    };
    for (kind, path) in crate::analysis::compare(&tree(from)?, &tree(to)?) {
        println!("{kind} {path}");
    }
    Ok(ExitCode::SUCCESS)
}
