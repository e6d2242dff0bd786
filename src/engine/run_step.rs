//! RUN as a build step: its argv (SHELL, heredocs), environment and network, run
//! in the sandbox over the stage's layers; the upper dir becomes the next layer.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Result};

use super::layer::{commit_step, step_overlay};
use super::metadata::{command_argv, shell};
use super::run_mounts::{attach, PlannedMount};
use super::vars::{env_get, Vars};
use super::{is_proxy_arg, Build};
use crate::dockerfile::{CommandForm, Heredoc, RunArgs};
use crate::oci::ContainerConfig;
use crate::report::Reporter;
use crate::sandbox::{self, Isolation, Network, OutputTail, Privilege, RunSpec, Stdin};
use crate::store::{ImageState, LayerRef};

/// What gathering a RUN's key resolved, handed on so nothing is resolved twice.
pub(super) struct RunInputs<'a> {
    pub network: Network,
    pub mounts: &'a [PlannedMount],
    /// The step's lineage, for reusing its last layer's members (`layer::commit_step`).
    pub lineage: &'a str,
    /// The step's Dockerfile line, for WastedLayerSpace (`wasted`).
    pub line: usize,
}

/// Refuses to run an image of a foreign architecture this machine has no enabled
/// emulator for, before anything starts, so it never runs (or fails) as something
/// else; the error names qemu-user-static and the binfmt_misc handler.
fn check_emulator(image: &ImageState) -> Result<()> {
    let c = &image.config;
    if c.architecture.is_empty() {
        return Ok(());
    }
    let platform = crate::platform::Platform::new(&c.os, &c.architecture, c.variant.as_deref());
    sandbox::check_runnable(&platform).map_err(anyhow::Error::msg)
}

/// Runs one RUN over `image` with what its key's gathering resolved; returns the
/// layer it produced, if any. `prefix` goes before each line of its output (empty
/// with `-q`); with `--progress=plain` a failure's error ends with the last lines.
pub(super) fn run_step(
    b: &Build,
    image: &ImageState,
    vars: &Vars,
    run: &RunArgs,
    inputs: RunInputs,
    prefix: String,
) -> Result<Option<LayerRef>> {
    match run.security.as_deref() {
        None | Some("sandbox") => {}
        Some("insecure") => bail!("RUN --security=insecure is not allowed: strata grants no insecure entitlement"),
        Some(other) => bail!("RUN --security={other}: expected sandbox or insecure"),
    }
    if !run.devices.is_empty() {
        bail!("RUN --device is not supported");
    }
    check_emulator(image)?;
    let cfg = image.config.config.clone().unwrap_or_default();
    let (argv, pipes) = run_argv(&cfg, &run.command, &run.heredocs);
    let scratch = b.store.layers.scratch()?;
    let rootfs = step_overlay(b, image, scratch.path(), true)?;
    // Leases, mounts and agents stay alive until the step is over.
    let attached = attach(b, inputs.mounts, scratch.path())?;
    let mut env = run_env(vars, &b.req.build_args);
    for var in &attached.env {
        let name = var.split_once('=').map_or(var.as_str(), |(k, _)| k);
        if !(name == "SSH_AUTH_SOCK" && env_get(&env, name).is_some()) {
            env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != name);
            env.push(var.clone());
        }
    }
    let spec = RunSpec {
        rootfs: rootfs.clone(),
        argv: argv.clone(),
        env,
        cwd: cfg.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
        user: cfg.user.clone().unwrap_or_default(),
        hostname: "strata-build".into(),
        stdin: Stdin::Null,
        pipes,
        network: inputs.network,
        fake_chown: b.store.single_id(),
        owner_key: b.store.owners.key().cloned(),
        binds: Vec::new(),
        tty: false,
        seccomp: b.req.seccomp.clone(),
        publish: Vec::new(),
        mounts: attached.mounts.clone(),
        isolation: Isolation::for_privilege(&b.store.privilege),
    };
    let tail = b.report.is_plain().then(|| Arc::new(OutputTail::new(TAIL_LINES)));
    let outcome = sandbox::run(&spec, scratch.path(), sandbox::Output::Step { prefix: &prefix, tail: tail.clone() })?;
    drop(attached);
    b.store.settle(&rootfs)?;
    b.store.remove_mount_stubs(&rootfs, scratch.path())?;
    let failure = match outcome {
        sandbox::Outcome::Exited(0) => None,
        sandbox::Outcome::Exited(code) => Some(format!("command `{}` failed with exit status {code}", describe(&argv))),
        sandbox::Outcome::Signaled(sig) => Some(format!("command `{}` was killed by signal {sig}", describe(&argv))),
        sandbox::Outcome::SetupFailed(msg) => Some(format!("command `{}` could not start: {msg}", describe(&argv))),
    };
    if let Some(failure) = failure {
        bail!("{}", with_tail(failure, &tail.map(|t| t.lines()).unwrap_or_default()));
    }
    commit_step(b, &rootfs.upper, image, Some(inputs.lineage), Some(inputs.line))
}

/// The network a RUN step gets, resolved (the cache key holds its kind).
pub(super) fn run_network(default: Network, run: &RunArgs, privilege: &Privilege, report: &Reporter) -> Result<Network> {
    let requested = match run.network.as_deref() {
        None | Some("default") => default,
        Some("host") => Network::Host,
        Some("none") => Network::None,
        Some(other) => bail!("RUN --network={other}: expected default, none or host"),
    };
    // Without namespaces the build's own network is all there is: the trade-off
    // was said once at start, so the default network says nothing more.
    if Isolation::for_privilege(privilege) == Isolation::Chroot && requested == Network::default() {
        return Ok(Network::Host);
    }
    Ok(sandbox::resolve_network(requested, &[], &|w| report.warn(w))?)
}

/// RUN's argv and any /dev/pipes scripts, with BuildKit's heredoc rules: a
/// command that is only a heredoc runs its body with the shell (or, with a
/// shebang, as an executable file); anything else gets the bodies appended so
/// the shell reads them as ordinary here-documents.
fn run_argv(cfg: &ContainerConfig, form: &CommandForm, heredocs: &[Heredoc]) -> (Vec<String>, Vec<(String, String)>) {
    let CommandForm::Shell(cmd) = form else { return (command_argv(cfg, form), Vec::new()) };
    if heredocs.is_empty() {
        return (command_argv(cfg, form), Vec::new());
    }
    let mut argv = shell(cfg);
    if is_only_heredoc(cmd, &heredocs[0].name) {
        let doc = &heredocs[0];
        if doc.content.starts_with("#!") {
            return (vec![format!("/dev/pipes/{}", doc.name)], vec![(doc.name.clone(), doc.content.clone())]);
        }
        argv.push(doc.content.clone());
        return (argv, Vec::new());
    }
    let mut script = cmd.clone();
    for h in heredocs {
        script.push('\n');
        script.push_str(&h.content);
        if !h.content.ends_with('\n') {
            script.push('\n');
        }
        script.push_str(&h.name);
    }
    argv.push(script);
    (argv, Vec::new())
}

/// The environment a RUN sees: the image's Env plus this stage's ARG values
/// (an ENV of the same name wins), never written into the image.
fn run_env(vars: &Vars, build_args: &BTreeMap<String, String>) -> Vec<String> {
    let mut env = vars.env.to_vec();
    for (k, v) in vars.args {
        if let Some(v) = v {
            if env_get(&env, k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
    }
    for (k, v) in build_args {
        if is_proxy_arg(k) && env_get(&env, k).is_none() {
            env.push(format!("{k}={v}"));
        }
    }
    env
}

/// True when a shell-form command is nothing but the marker of heredoc `name`
/// (`<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`).
fn is_only_heredoc(cmd: &str, name: &str) -> bool {
    let Some(rest) = cmd.trim().strip_prefix("<<") else { return false };
    let rest = rest.strip_prefix('-').unwrap_or(rest).trim();
    let unquoted = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(rest);
    unquoted == name
}

/// How many of a failed command's last output lines its error repeats.
const TAIL_LINES: usize = 20;

/// A failed command's error, then the last lines it printed: this error is the
/// innermost of the chain, so they close the log (`--progress=plain`).
fn with_tail(failure: String, tail: &[String]) -> String {
    if tail.is_empty() {
        return failure;
    }
    let mut text = format!("{failure}\n--- the last {} lines of its output ---", tail.len());
    for line in tail {
        text.push('\n');
        text.push_str(line);
    }
    text
}

fn describe(argv: &[String]) -> String {
    argv.iter().map(|a| if a.contains(' ') { format!("{a:?}") } else { a.clone() }).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_only_commands_are_recognised() {
        assert!(is_only_heredoc("<<EOF", "EOF"));
        assert!(is_only_heredoc("<<-'EOF' ", "EOF"));
        assert!(is_only_heredoc("<<\"EOT\"", "EOT"));
        assert!(!is_only_heredoc("<<EOF bash", "EOF"));
        assert!(!is_only_heredoc("cat <<EOF", "EOF"));
    }

    #[test]
    fn a_failure_ends_with_the_tail_of_its_output() {
        assert_eq!(with_tail("failed".into(), &[]), "failed");
        let text = with_tail("failed".into(), &["2/3 | a".into(), "2/3 | b".into()]);
        assert_eq!(text, "failed\n--- the last 2 lines of its output ---\n2/3 | a\n2/3 | b");
    }
}
