//! `--security-opt` of `run` and `build`, with podman's spelling: `seccomp=unconfined`,
//! `seccomp=FILE` (a profile in Docker's JSON format) and `no-new-privileges`.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::sandbox::{SeccompPolicy, SeccompProfile};

/// The seccomp policy the options ask for (Docker's default when none names one).
/// A profile file is read and checked here, so a bad one fails before any container
/// exists, with the file named.
pub fn seccomp_policy(opts: &[String]) -> Result<SeccompPolicy> {
    let mut policy = SeccompPolicy::DockerDefault;
    for opt in opts {
        // podman and docker also take the older `key:value` form.
        let (key, value) = opt.split_once('=').or_else(|| opt.split_once(':')).unwrap_or((opt.as_str(), ""));
        match (key, value) {
            ("seccomp", "unconfined") => policy = SeccompPolicy::Unconfined,
            ("seccomp", "") => bail!("--security-opt {opt:?}: expected seccomp=unconfined or seccomp=FILE"),
            ("seccomp", file) => policy = SeccompPolicy::Custom(read_profile(Path::new(file))?),
            // Always set for the command: asking for it changes nothing.
            ("no-new-privileges", "" | "true") => {}
            ("no-new-privileges", _) => bail!("--security-opt {opt:?}: no_new_privs is always set and cannot be turned off"),
            _ => bail!("invalid --security-opt {opt:?}: strata supports seccomp=unconfined, seccomp=FILE and no-new-privileges"),
        }
    }
    Ok(policy)
}

fn read_profile(path: &Path) -> Result<SeccompProfile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("seccomp profile {}", path.display()))?;
    SeccompProfile::parse(&text).with_context(|| format!("seccomp profile {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_map_to_policies() {
        assert_eq!(seccomp_policy(&[]).unwrap(), SeccompPolicy::DockerDefault);
        assert_eq!(seccomp_policy(&opts(&["seccomp=unconfined"])).unwrap(), SeccompPolicy::Unconfined);
        assert_eq!(seccomp_policy(&opts(&["no-new-privileges", "no-new-privileges=true"])).unwrap(), SeccompPolicy::DockerDefault);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(&file, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        let custom = seccomp_policy(&opts(&[&format!("seccomp={}", file.display())])).unwrap();
        assert!(matches!(custom, SeccompPolicy::Custom(p) if p.default_action == "SCMP_ACT_ALLOW"));
    }

    #[test]
    fn bad_options_and_files_are_named() {
        let err = |list: &[&str]| format!("{:#}", seccomp_policy(&opts(list)).unwrap_err());
        assert!(err(&["apparmor=unconfined"]).contains("invalid --security-opt \"apparmor=unconfined\""));
        assert!(err(&["no-new-privileges=false"]).contains("always set"));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let e = err(&[&format!("seccomp={}", missing.display())]);
        assert!(e.contains(&missing.display().to_string()) && e.contains("No such file"), "{e}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).unwrap();
        let e = err(&[&format!("seccomp={}", bad.display())]);
        assert!(e.contains(&bad.display().to_string()) && e.contains("unknown action \"SCMP_ACT_NOPE\""), "{e}");
    }
}
