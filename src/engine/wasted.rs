//! WastedLayerSpace, the build check BuildKit lacks: a RUN that deletes what an
//! earlier step of this Dockerfile added. The bytes still ship, in the earlier
//! step's layer, so the warning names both lines and the bytes. It is judged once
//! the RUN's layer is written, from the whiteouts the layer writer met and the
//! layer dirs below: each deleted path is charged to the topmost layer that had
//! it, and only a layer a step of this build wrote (not the base image's) counts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};

use super::Build;
use crate::lint::{self, Finding, Rule};
use crate::overlay_marks::OPAQUE_XATTRS;
use crate::rootfs::{regular_bytes_below, LowerView};
use crate::store::ImageState;

/// Warns about the bytes the RUN at `line` deleted (`whiteouts`, relative paths)
/// from earlier steps' layers; under `# check=error=true` that stops the build.
pub(super) fn check_deletions(b: &Build, whiteouts: &[PathBuf], below: &ImageState, line: usize) -> Result<()> {
    if whiteouts.is_empty() || !b.checks.runs(Rule::WastedLayerSpace) {
        return Ok(());
    }
    let lowers = b.store.layer_dirs(below)?;
    let view = LowerView { lowers: &lowers, opaque: &OPAQUE_XATTRS };
    // Per earlier line: bytes, and the paths deleted.
    let mut by_line: BTreeMap<usize, (u64, Vec<String>)> = BTreeMap::new();
    for rel in whiteouts {
        let Some((host, _)) = view.find(rel) else { continue };
        let Some(layer) = lowers.iter().find(|l| host.starts_with(l)) else { continue };
        let Some(added) = layer.file_name().and_then(|hex| b.layer_line(&hex.to_string_lossy())) else { continue };
        let bytes = regular_bytes_below(&host);
        if bytes > 0 {
            let slot = by_line.entry(added).or_default();
            slot.0 += bytes;
            slot.1.push(format!("/{}", rel.display()));
        }
    }
    report(b, by_line, line)
}

/// One finding per earlier line, warned, or an error under `error=true`.
fn report(b: &Build, by_line: BTreeMap<usize, (u64, Vec<String>)>, line: usize) -> Result<()> {
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

/// `10.0 MiB`, `512 KiB`, `12 bytes`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}
