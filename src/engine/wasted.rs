//! WastedLayerSpace, the build check BuildKit lacks: a RUN that deletes what an
//! earlier step of this Dockerfile added. The bytes still ship, in the earlier
//! step's layer, so the warning names both lines and the bytes. It is judged when
//! the RUN has run, from its upper dir's whiteouts and the layer dirs below: each
//! deleted path is charged to the topmost layer that had it, and only a layer a
//! step of this build wrote (not the base image's) counts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};

use super::Build;
use crate::lint::{self, Finding, Rule};
use crate::overlay_marks::{is_whiteout, OPAQUE_XATTRS};
use crate::rootfs::LowerView;
use crate::store::ImageState;

/// Warns about the bytes the RUN at `line` deleted from earlier steps' layers;
/// under `# check=error=true` that stops the build.
pub(super) fn check_deletions(b: &Build, upper: &Path, below: &ImageState, line: usize) -> Result<()> {
    if !b.checks.runs(Rule::WastedLayerSpace) {
        return Ok(());
    }
    let lowers = b.store.layer_dirs(below)?;
    let view = LowerView { lowers: &lowers, opaque: &OPAQUE_XATTRS };
    // Per earlier line: bytes, and the paths deleted.
    let mut by_line: BTreeMap<usize, (u64, Vec<String>)> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(upper).min_depth(1).follow_links(false).sort_by_file_name() {
        let Ok(entry) = entry else { continue };
        if !entry.path().symlink_metadata().is_ok_and(|m| is_whiteout(&m)) {
            continue;
        }
        let rel = entry.path().strip_prefix(upper).expect("below the walk's root");
        let Some((host, _)) = view.find(rel) else { continue };
        let Some(layer) = lowers.iter().find(|l| host.starts_with(l)) else { continue };
        let Some(added) = layer.file_name().and_then(|hex| b.layer_line(&hex.to_string_lossy())) else { continue };
        let bytes = bytes_below(&host);
        if bytes > 0 {
            let slot = by_line.entry(added).or_default();
            slot.0 += bytes;
            slot.1.push(format!("/{}", rel.display()));
        }
    }
    let findings: Vec<Finding> = by_line
        .into_iter()
        .map(|(added, (bytes, paths))| {
            let shown = if paths.len() > 3 { format!("{} and {} more", paths[..3].join(", "), paths.len() - 3) } else { paths.join(", ") };
            let message = format!("{} ({shown}) added at line {added} and deleted here still ship in line {added}'s layer", size(bytes));
            Finding { rule: Rule::WastedLayerSpace, line, message }
        })
        .collect();
    for f in &findings {
        b.report.warn(&f.render(b.file));
    }
    if b.checks.error && !findings.is_empty() {
        bail!("{}", lint::violation_error(&findings));
    }
    Ok(())
}

/// The bytes of the regular files at or below `path`, without following links.
fn bytes_below(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// `10.0 MiB`, `512 KiB`, `12 bytes`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}
