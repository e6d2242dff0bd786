//! RUN as a build step: its argv (SHELL, heredocs), environment and network, run
//! in the sandbox over the stage's layers; the upper dir becomes the next layer.

use anyhow::{bail, Result};

use super::is_proxy_arg;
use super::stage::{env_get, StageBuilder};
use crate::dockerfile::{CommandForm, Heredoc, RunArgs};
use crate::sandbox::{self, Network, RunSpec, Stdin};

impl StageBuilder<'_> {
    /// Runs one RUN; returns whether it produced a layer.
    pub(super) fn run_step(&mut self, run: &RunArgs, n: usize, total: usize) -> Result<bool> {
        if !run.mounts.is_empty() {
            bail!("RUN --mount is not supported yet");
        }
        match run.security.as_deref() {
            None | Some("sandbox") => {}
            Some("insecure") => bail!("RUN --security=insecure is not allowed: strata grants no insecure entitlement"),
            Some(other) => bail!("RUN --security={other}: expected sandbox or insecure"),
        }
        if !run.devices.is_empty() {
            bail!("RUN --device is not supported");
        }
        let network = self.run_network(run)?;
        let (argv, pipes) = self.run_argv(&run.command, &run.heredocs);
        self.run_in_sandbox(argv, pipes, network, n, total)
    }

    /// RUN's argv and any /dev/pipes scripts, with BuildKit's heredoc rules: a
    /// command that is only a heredoc runs its body with the shell (or, with a
    /// shebang, as an executable file); anything else gets the bodies appended so
    /// the shell reads them as ordinary here-documents.
    fn run_argv(&self, form: &CommandForm, heredocs: &[Heredoc]) -> (Vec<String>, Vec<(String, String)>) {
        let CommandForm::Shell(cmd) = form else { return (self.command_argv(form), Vec::new()) };
        if heredocs.is_empty() {
            return (self.command_argv(form), Vec::new());
        }
        let mut argv = self.shell();
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
    fn run_env(&self) -> Vec<String> {
        let mut env = self.config_ro().env.unwrap_or_default();
        for (k, v) in &self.args {
            if let Some(v) = v {
                if env_get(&env, k).is_none() {
                    env.push(format!("{k}={v}"));
                }
            }
        }
        for (k, v) in &self.b.req.build_args {
            if is_proxy_arg(k) && env_get(&env, k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        env
    }

    /// The network a RUN step gets, resolved (the cache key holds its kind).
    pub(super) fn run_network(&self, run: &RunArgs) -> Result<Network> {
        let requested = match run.network.as_deref() {
            None | Some("default") => self.b.req.network,
            Some("host") => Network::Host,
            Some("none") => Network::None,
            Some(other) => bail!("RUN --network={other}: expected default, none or host"),
        };
        Ok(sandbox::network::resolve(requested, &[])?)
    }

    fn run_in_sandbox(
        &mut self,
        argv: Vec<String>,
        pipes: Vec<(String, String)>,
        network: Network,
        n: usize,
        total: usize,
    ) -> Result<bool> {
        let scratch = self.b.store.layers.scratch()?;
        let rootfs = self.b.store.overlay_for(&self.image, scratch.path(), true)?;
        let cfg = self.config_ro();
        let spec = RunSpec {
            rootfs: rootfs.clone(),
            argv: argv.clone(),
            env: self.run_env(),
            cwd: cfg.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
            user: cfg.user.clone().unwrap_or_default(),
            hostname: "strata-build".into(),
            stdin: Stdin::Null,
            pipes,
            network,
            fake_chown: self.b.store.single_id(),
            owner_key: self.b.store.owners.key().cloned(),
            binds: Vec::new(),
            tty: false,
            seccomp: self.b.req.seccomp.clone(),
            publish: Vec::new(),
        };
        let prefix = if self.b.report.is_quiet() { None } else { Some(format!("{}{n}/{total} | ", self.label)) };
        let outcome = sandbox::run(&spec, scratch.path(), prefix.as_deref())?;
        self.b.store.settle(&rootfs)?;
        match outcome {
            sandbox::Outcome::Exited(0) => {}
            sandbox::Outcome::Exited(code) => bail!("command `{}` failed with exit status {code}", describe(&argv)),
            sandbox::Outcome::Signaled(sig) => bail!("command `{}` was killed by signal {sig}", describe(&argv)),
            sandbox::Outcome::SetupFailed(msg) => bail!("command `{}` could not start: {msg}", describe(&argv)),
        }
        self.commit(&rootfs.upper)
    }
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
}
