//! The build checks every build runs before its first step: the Dockerfile and
//! ignore file read as the build reads them, the `check` setting taken from the
//! `BUILDKIT_DOCKERFILE_CHECK` build argument or else the `# check=` directive,
//! and the findings printed as warnings, or the build stopped under
//! `error=true`. `strata build --check` stops after them.

use std::path::Path;

use anyhow::{anyhow, bail, Result};

use super::{read_dockerfile, BuildRequest};
use crate::dockerfile;
use crate::lint::{self, CheckConfig, Finding, GlobalArgs};
use crate::oci;
use crate::report::Reporter;

/// The build argument that replaces the directive, as in BuildKit.
pub const CHECK_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// What the checks found in one Dockerfile.
pub struct Checked {
    /// The Dockerfile as messages name it.
    pub file: String,
    pub findings: Vec<Finding>,
    pub config: CheckConfig,
    /// What the checks could not judge, and why.
    pub notes: Vec<String>,
}

impl Checked {
    /// Each finding as `FILE:LINE: RULE: message` with its fix.
    pub fn rendered(&self) -> Vec<String> {
        self.findings.iter().map(|f| f.render(&self.file)).collect()
    }
}

/// Runs the checks on the request's Dockerfile, building nothing (`build --check`).
/// A Dockerfile that does not parse, or a `check` setting that does not, is an
/// error, as in BuildKit. UndefinedVar takes each base image's ENV from `images`
/// (the local store, read only: nothing is pulled).
pub fn check(req: &BuildRequest, images: &oci::Store) -> Result<Checked> {
    let context = super::canonical_context(req)?;
    let (mut checked, df) = check_in(req, &context)?;
    let platform = target_platform(req);
    let base_env = |reference: &str| -> Option<Vec<String>> {
        let found = images.resolve(reference).ok()??;
        let manifest = images.select_manifest(&found, Some(&platform)).ok()?;
        let m = images.read_manifest(&oci::descriptor_digest(&manifest).ok()?).ok()?;
        let config = images.read_config(&oci::descriptor_digest(m.config()).ok()?).ok()?;
        let env = config.config.and_then(|c| c.env).unwrap_or_default();
        Some(env.iter().filter_map(|e| e.split_once('=').map(|(k, _)| k.to_string())).collect())
    };
    let (found, notes) = lint::check_undefined_vars(&df, &global_args(req), &base_env, &checked.config);
    checked.findings.extend(found);
    checked.findings.sort_by_key(|f| f.line);
    checked.notes = notes;
    Ok(checked)
}

/// The platform the checks judge FROM lines for: the first asked, else the host's.
fn target_platform(req: &BuildRequest) -> crate::platform::Platform {
    req.platforms.first().cloned().unwrap_or_else(crate::platform::Platform::host)
}

fn global_args(req: &BuildRequest) -> GlobalArgs {
    GlobalArgs { given: req.build_args.clone(), automatic: crate::plan::platform_args(&target_platform(req)) }
}

/// The rules [`lint::check`] judges, with the context already resolved; the
/// parsed Dockerfile comes back too.
fn check_in(req: &BuildRequest, context: &Path) -> Result<(Checked, dockerfile::Dockerfile)> {
    let (path, text, file) = read_dockerfile(req, context)?;
    let df = dockerfile::parse(&text, &file)?;
    let config = config(req, &df).map_err(|e| anyhow!("{file}: {e}"))?;
    let ignore = super::context::ignore_for(context, &path)?;
    let findings = lint::check(&df, &ignore, &global_args(req), &config);
    Ok((Checked { file, findings, config, notes: Vec::new() }, df))
}

/// The checks as a build runs them: findings are warnings, and under
/// `error=true` they stop the build before its first step.
pub fn before_build(req: &BuildRequest, context: &Path, report: &Reporter) -> Result<()> {
    let (checked, _) = check_in(req, context)?;
    for line in checked.rendered() {
        report.warn(&line);
    }
    if checked.config.error && !checked.findings.is_empty() {
        bail!("{}", lint::violation_error(&checked.findings));
    }
    Ok(())
}

/// The `check` setting: the build argument's, else the directive's.
pub fn config(req: &BuildRequest, df: &dockerfile::Dockerfile) -> Result<CheckConfig> {
    let setting = req.build_args.get(CHECK_ARG).cloned().or_else(|| df.tree.directives.check.clone()).unwrap_or_default();
    CheckConfig::parse(&setting).map_err(|e| anyhow!("failed to parse check options: {e}"))
}
