//! The Dockerfile's metadata instructions (ENV, LABEL, MAINTAINER, EXPOSE, VOLUME,
//! USER, STOPSIGNAL, SHELL, CMD, ENTRYPOINT, HEALTHCHECK, ONBUILD and WORKDIR's
//! config change) as one pure function over an image config.
//!
//! The build applies them step by step and `commit --change` applies the user's
//! changes with the same function, so the two cannot drift apart again: ENTRYPOINT
//! resetting an inherited CMD, STOPSIGNAL validation, WORKDIR's joining and the SHELL
//! of shell-form commands are written down once, here. Nothing here touches the
//! store or the filesystem: WORKDIR's directory is created by the engine, which
//! gets the recorded path back in [`Applied::Workdir`].

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail, Result};

use crate::dockerfile::{is_signal, CommandForm, HealthTest, Healthcheck, Instruction};
use crate::oci::{self, ContainerConfig, ImageConfig};

/// The shell for shell-form commands when SHELL never set one.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// State the rules need beyond the config, kept for one build stage (or one
/// `commit`, across all its `--change`s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetadataScope {
    /// CMD was set in this scope: a later ENTRYPOINT keeps it instead of dropping it
    /// as an inherited one (BuildKit's `cmdSet`).
    cmd_set_here: bool,
}

/// What [`apply_metadata`] did with an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// FROM, ARG, RUN, COPY or ADD: the config is untouched; the caller handles it.
    NotMetadata,
    /// The config changed, and that is all the instruction does.
    Config,
    /// WORKDIR: the config's working dir is now this absolute path (as recorded, so
    /// maybe with `..` or a trailing `/`), which a build must also create in the image.
    Workdir(String),
}

/// Applies one metadata instruction to `config`.
///
/// `expand` expands a word (with the ENV and ARG values of the caller's scope); it
/// cannot borrow `config`, so it sees the state from before this instruction and
/// `ENV a=1 b=$a` gets the old a, as in BuildKit. Words of MAINTAINER, SHELL, CMD,
/// ENTRYPOINT, HEALTHCHECK and ONBUILD are kept as written, as Docker keeps them.
pub fn apply_metadata(
    config: &mut ImageConfig,
    instr: &Instruction,
    scope: &mut MetadataScope,
    expand: &dyn Fn(&str) -> Result<String>,
) -> Result<Applied> {
    match instr {
        Instruction::From { .. } | Instruction::Arg(_) | Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => {
            return Ok(Applied::NotMetadata)
        }
        Instruction::Maintainer(who) => config.author = Some(who.clone()),
        Instruction::Env(pairs) => {
            let values = expand_pairs(pairs, expand)?;
            let env = container(config).env.get_or_insert_with(Vec::new);
            for (k, v) in values {
                env_set(env, &k, &v);
            }
        }
        Instruction::Label(pairs) => {
            let values = expand_pairs(pairs, expand)?;
            container(config).labels.get_or_insert_with(BTreeMap::new).extend(values);
        }
        Instruction::Expose(ports) => {
            for port in expose_ports(ports, expand)? {
                container(config).expose_port(&port);
            }
        }
        Instruction::Volume(paths) => {
            let paths = paths.iter().map(|p| expand(p)).collect::<Result<Vec<_>>>()?;
            for p in paths.iter().filter(|p| !p.is_empty()) {
                container(config).add_volume(p);
            }
        }
        Instruction::User(user) => container(config).user = Some(expand(user)?),
        Instruction::StopSignal(sig) => container(config).stop_signal = Some(stop_signal(expand(sig)?)?),
        Instruction::Shell(shell) => container(config).shell = Some(shell.clone()),
        Instruction::Cmd(form) => {
            let cfg = container(config);
            cfg.cmd = Some(command_argv(cfg, form));
            scope.cmd_set_here = true;
        }
        Instruction::Entrypoint(form) => set_entrypoint(container(config), form, scope),
        Instruction::Healthcheck(h) => container(config).healthcheck = Some(healthcheck(h)),
        Instruction::Onbuild { expression, .. } => container(config).on_build.get_or_insert_with(Vec::new).push(expression.clone()),
        Instruction::Workdir(dir) => return Ok(Applied::Workdir(set_workdir(container(config), &expand(dir)?))),
    }
    Ok(Applied::Config)
}

/// The container config, created on first change (an image that never had one keeps
/// none until an instruction sets something in it).
fn container(config: &mut ImageConfig) -> &mut ContainerConfig {
    config.config.get_or_insert_with(ContainerConfig::default)
}

/// ENTRYPOINT resets a CMD inherited from the base image (or from the committed
/// container's image): it was meant for the old entrypoint. A CMD set in this scope
/// was meant for the new one and stays.
fn set_entrypoint(cfg: &mut ContainerConfig, form: &CommandForm, scope: &MetadataScope) {
    cfg.entrypoint = Some(command_argv(cfg, form));
    if !scope.cmd_set_here {
        cfg.cmd = None;
    }
}

/// WORKDIR `dir` (expanded) as BuildKit records it: an absolute path as written
/// (`/x/y/` keeps its slash, `/a/../b` its `..`), a relative one joined to the
/// current working dir and cleaned (Go's `path.Join`), an empty one the current
/// dir. Returns the new working dir.
fn set_workdir(cfg: &mut ContainerConfig, dir: &str) -> String {
    let current = cfg.working_dir.as_deref().filter(|c| !c.is_empty()).unwrap_or("/");
    let path = match dir {
        "" => clean_abs(current),
        abs if abs.starts_with('/') => abs.to_string(),
        rel => clean_abs(&format!("{current}/{rel}")),
    };
    cfg.working_dir = Some(path.clone());
    path
}

/// Keys and values of ENV or LABEL, all expanded before any is set.
fn expand_pairs(pairs: &[(String, String)], expand: &dyn Fn(&str) -> Result<String>) -> Result<Vec<(String, String)>> {
    pairs.iter().map(|(k, v)| Ok((expand(k)?, expand(v)?))).collect()
}

/// EXPOSE's words, expanded (a variable may hold several ports) and normalised.
fn expose_ports(words: &[String], expand: &dyn Fn(&str) -> Result<String>) -> Result<Vec<String>> {
    let mut ports = Vec::new();
    for w in words {
        for word in expand(w)?.split_whitespace() {
            ports.extend(normalize_port(word)?);
        }
    }
    Ok(ports)
}

/// STOPSIGNAL's value, refused at build (or commit) time rather than when a runtime
/// finally tries to stop the container with it.
fn stop_signal(sig: String) -> Result<String> {
    if !is_signal(&sig) {
        bail!("invalid signal: {sig:?} (expected a signal name such as SIGTERM or TERM, or a number)");
    }
    Ok(sig)
}

/// HEALTHCHECK as Docker stores it: the test with its CMD/CMD-SHELL/NONE marker,
/// durations in nanoseconds, zeros (the defaults) left out.
fn healthcheck(h: &Healthcheck) -> oci::Healthcheck {
    let test = match &h.test {
        HealthTest::None => vec!["NONE".to_string()],
        HealthTest::Cmd(CommandForm::Exec(v)) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
        HealthTest::Cmd(CommandForm::Shell(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
    };
    let nanos = |d: Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64).filter(|n| *n != 0);
    oci::Healthcheck {
        test: Some(test),
        interval: nanos(h.interval),
        timeout: nanos(h.timeout),
        start_period: nanos(h.start_period),
        start_interval: nanos(h.start_interval),
        retries: h.retries.map(i64::from).filter(|r| *r != 0),
        extra: Default::default(),
    }
}

/// The shell of shell-form commands: the config's SHELL, else `/bin/sh -c`.
/// The config's Env as a map, for expanding `commit --change` words (a build
/// expands with the stage's ARGs too, see `vars`).
pub fn config_env(config: &ImageConfig) -> HashMap<String, String> {
    config
        .config
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn shell(config: &ContainerConfig) -> Vec<String> {
    config.shell.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
}

/// Shell form runs through the config's SHELL; exec form runs as written.
pub(super) fn command_argv(config: &ContainerConfig, form: &CommandForm) -> Vec<String> {
    match form {
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(cmd) => {
            let mut argv = shell(config);
            argv.push(cmd.clone());
            argv
        }
    }
}

/// Sets `key` in a `K=V` list, in place when it is already there (so the order of
/// an inherited Env is kept).
pub fn env_set(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| e.split_once('=').map(|(k, _)| k) == Some(key)) {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// `path` relative to the working dir `current` (`/` when unset); not cleaned.
pub fn join_workdir(current: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        let base = if current.is_empty() { "/" } else { current };
        format!("{}/{}", base.trim_end_matches('/'), path)
    }
}

pub(super) use crate::clean_path::clean_abs;

/// `EXPOSE 80` means 80/tcp; protocols are lower-cased as Docker stores them, and
/// a range (`8000-8002/tcp`) is one port per number, as BuildKit's
/// `nat.ParsePortSpecs` expands it.
pub fn normalize_port(word: &str) -> Result<Vec<String>> {
    let (port, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let bad = || anyhow!("invalid port {word:?}: expected PORT[-END][/tcp|udp|sctp]");
    let (first, last) = match port.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().map_err(|_| bad())?, b.parse::<u16>().map_err(|_| bad())?),
        None => {
            let p = port.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if first > last || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    Ok((first..=last).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
#[path = "metadata_tests.rs"]
mod tests;
