//! `strata layers IMAGE`: each layer's size, what it adds, changes and removes,
//! and the bytes it ships that a later layer hides; `--tree N` lists one layer's
//! changes as a tree. The text fits an 80-column terminal; `--format json` has
//! every figure.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::format::{fit, human_size};
use crate::analysis::{self, ImageFigures};
use crate::oci::{self, Store};

#[derive(Debug, Args)]
pub struct LayersArgs {
    /// Image name or id.
    pub image: String,
    /// table (the default) or json.
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// List the changes of layer N (1 is the bottom one) as a tree with sizes.
    #[arg(long, value_name = "N")]
    pub tree: Option<usize>,
}

pub fn layers(store: &Store, args: LayersArgs) -> Result<ExitCode> {
    let found = store.resolve(&args.image)?.with_context(|| format!("image {:?} not found in the local store", args.image))?;
    let manifest = oci::descriptor_digest(&store.select_manifest(&found, None)?)?;
    if let Some(n) = args.tree {
        let changes = analysis::layer_changes(store, &manifest, n)?;
        match args.format.as_str() {
            "json" => {
                let rows: Vec<_> = changes
                    .iter()
                    .map(|(op, path, bytes, dir)| serde_json::json!({"op": op.to_string(), "path": path, "bytes": bytes, "dir": dir}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            }
            _ => print_tree(&changes),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let figures = analysis::figures(store, &manifest)?;
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&figures)?),
        _ => print_table(&figures),
    }
    Ok(ExitCode::SUCCESS)
}

/// Width of the text output: an 80-column terminal.
const WIDTH: usize = 80;

fn print_table(f: &ImageFigures) {
    println!(
        "{:<3} {:<12} {:>8} {:>8} {:>6} {:>7} {:>6} {:>8}  CREATED BY",
        "#", "LAYER", "SIZE", "CONTENT", "ADDED", "CHANGED", "GONE", "WASTED"
    );
    for l in &f.layers {
        let short = l.digest.trim_start_matches("sha256:").chars().take(12).collect::<String>();
        let row = format!(
            "{:<3} {:<12} {:>8} {:>8} {:>6} {:>7} {:>6} {:>8}  ",
            l.index,
            short,
            human_size(l.size),
            human_size(l.uncompressed),
            l.added.files,
            l.modified.files,
            l.removed.files,
            human_size(l.wasted_bytes)
        );
        println!("{row}{}", fit(&l.created_by, WIDTH.saturating_sub(row.chars().count())));
    }
    println!();
    println!(
        "total {} in {} layers, {} wasted, efficiency {:.1}%",
        human_size(f.total_bytes),
        f.layers.len(),
        human_size(f.wasted_bytes),
        f.efficiency * 100.0
    );
    if !f.wasted_paths.is_empty() {
        println!("largest wasted paths:");
        for w in &f.wasted_paths {
            let left = format!("  {:>8}  layer {:>2} -> {:>2}  ", human_size(w.bytes), w.layer, w.hidden_by);
            println!("{left}{}", fit(&w.path, WIDTH.saturating_sub(left.chars().count())));
        }
    }
}

/// One layer's changes, each path under its parent with the bytes below it.
fn print_tree(changes: &[(char, String, u64, bool)]) {
    // Each entry's bytes added to every directory above it: one pass, not one per directory.
    let mut below: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (_, path, bytes, _) in changes {
        let mut at = path.as_str();
        while let Some((parent, _)) = at.rsplit_once('/') {
            *below.entry(if parent.is_empty() { "/" } else { parent }).or_default() += bytes;
            at = parent;
        }
    }
    let mut sorted: Vec<&(char, String, u64, bool)> = changes.iter().collect();
    sorted.sort_by(|a, b| a.1.cmp(&b.1));
    for (op, path, bytes, dir) in sorted {
        let total = if *dir { bytes + below.get(path.as_str()).copied().unwrap_or(0) } else { *bytes };
        let depth = path.matches('/').count().saturating_sub(1);
        let name = path.rsplit('/').next().unwrap_or(path);
        let shown = format!("{}{}{}", "  ".repeat(depth), if name.is_empty() { "/" } else { name }, if *dir { "/" } else { "" });
        let left = format!("{op} {:>9}  ", human_size(total));
        println!("{left}{}", fit(&shown, WIDTH.saturating_sub(left.chars().count())));
    }
}
