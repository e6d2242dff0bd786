//! One build stage: its instructions applied in order to an image state.
//!
//! Metadata instructions change the config and add an `empty_layer` history entry.
//! RUN runs in the sandbox over the current layer dirs; COPY/ADD and WORKDIR write
//! through an overlay mounted by the builder itself. Each filesystem step's upper dir
//! becomes the next layer (no layer when it changed nothing, as BuildKit does).
//! Words are expanded here, with the stage's ENV and ARG values at that point.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};

use super::copy_step::{AddOptions, CopyRequest, Prefetched};
use super::{base, is_proxy_arg, Build};
use crate::dockerfile::{expand_word, CommandForm, HealthTest, Heredoc, Instruction, Located, RunArgs};
use crate::oci::{self, ContainerConfig, History};
use crate::plan::Stage;
use crate::sandbox::{self, overlay, Network, RunSpec, Stdin};
use crate::store::ImageState;

/// The shell for shell-form commands when SHELL never set one.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Builds one stage of a plan.
pub struct StageBuilder<'a> {
    pub(super) b: &'a Build<'a>,
    pub(super) stage: &'a Stage,
    /// Stages built so far, by index (FROM and `--from` may name them).
    pub(super) built: &'a HashMap<usize, ImageState>,
    /// `[n/m] ` before each line when the build has several stages.
    pub(super) label: String,
    pub(super) image: ImageState,
    /// ARGs declared in this stage so far; `None` = declared without a value.
    pub(super) args: BTreeMap<String, Option<String>>,
    /// True once this stage set CMD itself (ENTRYPOINT then keeps it).
    cmd_set_here: bool,
    /// `--no-cache`, or this stage in `--no-cache-filter`: run every step (results
    /// are still recorded).
    pub(super) no_cache: bool,
    /// ADD's URLs fetched for the current step's cache key, by URL.
    pub(super) downloads: RefCell<HashMap<String, Prefetched>>,
}

impl<'a> StageBuilder<'a> {
    pub fn new(b: &'a Build<'a>, stage: &'a Stage, built: &'a HashMap<usize, ImageState>, label: String) -> StageBuilder<'a> {
        let req = b.req;
        let filtered = req
            .no_cache_filter
            .iter()
            .any(|f| stage.name.as_deref() == Some(f.to_ascii_lowercase().as_str()) || f.parse::<usize>().ok() == Some(stage.index));
        StageBuilder {
            b,
            stage,
            built,
            label,
            image: ImageState::scratch(),
            args: BTreeMap::new(),
            cmd_set_here: false,
            no_cache: req.no_cache || filtered,
            downloads: RefCell::new(HashMap::new()),
        }
    }

    /// Build args this stage declared (so the build can warn about unused ones).
    pub fn used_args(&self) -> Vec<String> {
        self.args.keys().cloned().collect()
    }

    fn at(&self, step: &Located) -> String {
        format!("{}:{}", self.b.file, step.line)
    }

    /// Runs the stage and returns the image it produced.
    pub fn run(&mut self) -> Result<ImageState> {
        let total = self.stage.steps.len() + 1;
        let from = &self.stage.from;
        self.b.report.line(&format!("{}STEP 1/{total}: {}", self.label, from.original));
        self.image = match self.stage.base_stage {
            Some(i) => self.built.get(&i).cloned().ok_or_else(|| anyhow!("stage {i} was not built"))?,
            None => base::resolve(self.b.store, &self.stage.base, &self.b.req.registry)
                .with_context(|| format!("{}step 1/{total} ({}): {}", self.label, self.at(from), from.original))?,
        };
        self.run_triggers(from, total)?;
        for (i, step) in self.stage.steps.iter().enumerate() {
            self.b.report.line(&format!("{}STEP {}/{total}: {}", self.label, i + 2, step.original));
            self.step(step, i + 2, total)
                .with_context(|| format!("{}step {}/{total} ({}): {}", self.label, i + 2, self.at(step), step.original))?;
        }
        Ok(self.image.clone())
    }

    /// A variable's value for expansion: ENV wins over ARG. The predefined proxy
    /// ARGs are not variables of the Dockerfile until an `ARG` declares them, as in
    /// BuildKit: undeclared, they reach only RUN's environment ([`Self::run_env`]).
    pub(super) fn lookup_var(&self, name: &str) -> Option<String> {
        if let Some(v) = env_get(self.config_ro().env.as_deref().unwrap_or(&[]), name) {
            return Some(v);
        }
        self.args.get(name).cloned().flatten()
    }

    /// Runs the base image's ONBUILD triggers right after FROM, as Docker does; they
    /// are consumed, not inherited by this image.
    fn run_triggers(&mut self, from: &Located, total: usize) -> Result<()> {
        let triggers = self.image.config.config.as_mut().and_then(|c| c.on_build.take()).unwrap_or_default();
        for trigger in triggers {
            let parsed = crate::dockerfile::parse(&trigger, "ONBUILD")
                .with_context(|| format!("{}: base image ONBUILD trigger {trigger:?}", self.at(from)))?;
            for step in &parsed.instructions {
                self.b.report.line(&format!("{}--> ONBUILD {}", self.label, step.original));
                self.step(step, 1, total)
                    .with_context(|| format!("{}step 1/{total} ({}): ONBUILD {}", self.label, self.at(from), step.original))?;
            }
        }
        Ok(())
    }

    pub(super) fn expand(&self, word: &str) -> Result<String> {
        let lookup = |name: &str| self.lookup_var(name);
        expand_word(word, &lookup, self.b.escape).map_err(|e| anyhow!("{e}"))
    }

    pub(super) fn config_ro(&self) -> ContainerConfig {
        self.image.config.config.clone().unwrap_or_default()
    }

    fn config(&mut self) -> &mut ContainerConfig {
        self.image.config.config.get_or_insert_with(ContainerConfig::default)
    }

    pub(super) fn execute(&mut self, step: &Located, n: usize, total: usize) -> Result<()> {
        match &step.instr {
            Instruction::From { .. } => unreachable!("the plan splits stages at FROM"),
            Instruction::Arg(pairs) => {
                for (name, default) in pairs {
                    let value = match self.b.req.build_args.get(name) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => Some(self.expand(d)?),
                            None => self.b.plan.meta_args.get(name).cloned().flatten(),
                        },
                    };
                    self.args.insert(name.clone(), value);
                }
                self.history(step, true);
            }
            Instruction::Env(pairs) => {
                // Every value is expanded with the environment from before this
                // instruction: `ENV a=1 b=$a` sees the old a.
                let values = pairs.iter().map(|(k, v)| Ok((self.expand(k)?, self.expand(v)?))).collect::<Result<Vec<_>>>()?;
                let cfg = self.config();
                let env = cfg.env.get_or_insert_with(Vec::new);
                for (k, v) in values {
                    env_set(env, &k, &v);
                }
                self.history(step, true);
            }
            Instruction::Label(pairs) => {
                let values = pairs.iter().map(|(k, v)| Ok((self.expand(k)?, self.expand(v)?))).collect::<Result<Vec<_>>>()?;
                let labels = self.config().labels.get_or_insert_with(BTreeMap::new);
                labels.extend(values);
                self.history(step, true);
            }
            Instruction::Maintainer(who) => {
                self.image.config.author = Some(who.clone());
                self.history(step, true);
            }
            Instruction::Expose(ports) => {
                let mut expanded = Vec::new();
                for p in ports {
                    for word in self.expand(p)?.split_whitespace() {
                        expanded.extend(normalize_port(word)?);
                    }
                }
                for p in expanded {
                    self.config().expose_port(&p);
                }
                self.history(step, true);
            }
            Instruction::Volume(paths) => {
                let expanded = paths.iter().map(|p| self.expand(p)).collect::<Result<Vec<_>>>()?;
                for p in expanded.iter().filter(|p| !p.is_empty()) {
                    self.config().add_volume(p);
                }
                self.history(step, true);
            }
            Instruction::User(user) => {
                let u = self.expand(user)?;
                self.config().user = Some(u);
                self.history(step, true);
            }
            Instruction::StopSignal(sig) => {
                let s = self.expand(sig)?;
                if !crate::dockerfile::is_signal(&s) {
                    bail!("invalid signal: {s:?} (expected a signal name such as SIGTERM or TERM, or a number)");
                }
                self.config().stop_signal = Some(s);
                self.history(step, true);
            }
            Instruction::Shell(shell) => {
                self.config().shell = Some(shell.clone());
                self.history(step, true);
            }
            Instruction::Cmd(form) => {
                let argv = self.command_argv(form);
                self.config().cmd = Some(argv);
                self.cmd_set_here = true;
                self.history(step, true);
            }
            Instruction::Entrypoint(form) => {
                let argv = self.command_argv(form);
                let keep_cmd = self.cmd_set_here;
                let cfg = self.config();
                cfg.entrypoint = Some(argv);
                // An ENTRYPOINT resets a CMD inherited from the base image.
                if !keep_cmd {
                    cfg.cmd = None;
                }
                self.history(step, true);
            }
            Instruction::Healthcheck(h) => {
                let test = match &h.test {
                    HealthTest::None => vec!["NONE".to_string()],
                    HealthTest::Cmd(CommandForm::Exec(v)) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
                    HealthTest::Cmd(CommandForm::Shell(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
                };
                let nanos = |d: Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64).filter(|n| *n != 0);
                let hc = oci::Healthcheck {
                    test: Some(test),
                    interval: nanos(h.interval),
                    timeout: nanos(h.timeout),
                    start_period: nanos(h.start_period),
                    start_interval: nanos(h.start_interval),
                    retries: h.retries.map(i64::from).filter(|r| *r != 0),
                    extra: Default::default(),
                };
                self.config().healthcheck = Some(hc);
                self.history(step, true);
            }
            Instruction::Onbuild { expression, .. } => {
                self.config().on_build.get_or_insert_with(Vec::new).push(expression.clone());
                self.history(step, true);
            }
            Instruction::Workdir(dir) => {
                let dir = self.expand(dir)?;
                let current = self.config_ro().working_dir.unwrap_or_default();
                let path = clean_abs(&join_workdir(&current, &dir));
                self.config().working_dir = Some(path.clone());
                let user = self.config_ro().user.filter(|u| !u.is_empty());
                // BuildKit creates a missing WORKDIR owned by the current USER.
                let layer = self.fs_step(|tree| {
                    let owner = user.as_deref().map(|u| super::copy_step::resolve_owner(tree, u)).transpose()?;
                    make_workdir(tree, &path, owner)
                })?;
                self.history(step, !layer);
            }
            Instruction::Run(run) => {
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
                let layer = self.run_step(argv, pipes, network, n, total)?;
                self.history(step, !layer);
            }
            Instruction::Copy(c) => {
                let from = c.from.as_deref().map(|f| self.expand(f)).transpose()?;
                let req = CopyRequest {
                    sources: &c.sources,
                    dest: &c.dest,
                    from,
                    chown: c.chown.as_deref(),
                    chmod: c.chmod.as_deref(),
                    add: None,
                    exclude: &c.exclude,
                    parents: c.parents,
                };
                let layer = self.copy_step(req)?;
                self.history(step, !layer);
            }
            Instruction::Add(a) => {
                let add = AddOptions { checksum: a.checksum.as_deref(), unpack: a.unpack };
                let req = CopyRequest {
                    sources: &a.sources,
                    dest: &a.dest,
                    from: None,
                    chown: a.chown.as_deref(),
                    chmod: a.chmod.as_deref(),
                    add: Some(add),
                    exclude: &a.exclude,
                    parents: false,
                };
                let layer = self.copy_step(req)?;
                self.history(step, !layer);
            }
        }
        Ok(())
    }

    /// Shell form runs through the stage's SHELL; exec form runs as written.
    fn command_argv(&self, form: &CommandForm) -> Vec<String> {
        match form {
            CommandForm::Exec(v) => v.clone(),
            CommandForm::Shell(cmd) => {
                let mut argv = self.shell();
                argv.push(cmd.clone());
                argv
            }
        }
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

    fn shell(&self) -> Vec<String> {
        self.config_ro().shell.filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
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
        Ok(sandbox::network::resolve(requested, &[], &|w| self.b.report.warn(w))?)
    }

    fn run_step(&mut self, argv: Vec<String>, pipes: Vec<(String, String)>, network: Network, n: usize, total: usize) -> Result<bool> {
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

    /// Runs `write` against the mounted tree of a new step and commits the result.
    pub(super) fn fs_step(&mut self, write: impl FnOnce(&Path) -> Result<()>) -> Result<bool> {
        let scratch = self.b.store.layers.scratch()?;
        let spec = self.b.store.overlay_for(&self.image, scratch.path(), false)?;
        {
            let mount = overlay::mount_overlay(&spec)?;
            write(mount.merged())?;
        }
        self.b.store.settle(&spec)?;
        self.commit(&spec.upper)
    }

    fn commit(&mut self, upper: &Path) -> Result<bool> {
        match self.b.store.commit_upper(upper, &self.image, self.b.req.layers)? {
            Some(layer) => {
                self.image.layers.push(layer);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn history(&mut self, step: &Located, empty_layer: bool) {
        let created = now(self.b.req.layers.source_date_epoch);
        let entry = History {
            created: Some(created.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            created_by: Some(step.original.clone()),
            comment: Some("strata.dockerfile.v0".into()),
            empty_layer,
            ..Default::default()
        };
        self.image.config.history.push(entry);
        self.image.config.set_created(created);
    }
}

/// The build's clock: SOURCE_DATE_EPOCH when set, for reproducible configs.
pub(super) fn now(source_date_epoch: Option<u64>) -> DateTime<Utc> {
    match source_date_epoch {
        Some(s) => DateTime::from_timestamp(s as i64, 0).unwrap_or_else(Utc::now),
        None => Utc::now(),
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

fn env_get(env: &[String], key: &str) -> Option<String> {
    env.iter().find_map(|e| e.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()))
}

pub fn env_set(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| e.split_once('=').map(|(k, _)| k) == Some(key)) {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

pub fn join_workdir(current: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        let base = if current.is_empty() { "/" } else { current };
        format!("{}/{}", base.trim_end_matches('/'), path)
    }
}

/// Creates the missing components of `path` inside `tree`, 0755, owned by `owner`.
fn make_workdir(tree: &Path, path: &str, owner: Option<(u32, u32)>) -> Result<()> {
    use crate::rootfs::resolve::{resolve_in, Last};
    let mut cur = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        cur.push('/');
        cur.push_str(part);
        let host = resolve_in(tree, Path::new(&cur), Last::Follow)?;
        if host.is_dir() {
            continue;
        }
        std::fs::create_dir(&host).with_context(|| format!("creating working directory {cur}"))?;
        std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(&host, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)))
                .with_context(|| format!("chown {uid}:{gid} {cur}"))?;
        }
    }
    Ok(())
}

/// Lexically cleans an absolute path (`/a/./b/../c` -> `/a/c`).
fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

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
mod tests {
    use super::*;

    #[test]
    fn workdir_paths_chain_and_clean() {
        assert_eq!(clean_abs(&join_workdir("/a", "b")), "/a/b");
        assert_eq!(clean_abs(&join_workdir("/a", "/c")), "/c");
        assert_eq!(clean_abs(&join_workdir("", "x/../y")), "/y");
    }

    #[test]
    fn heredoc_only_commands_are_recognised() {
        assert!(is_only_heredoc("<<EOF", "EOF"));
        assert!(is_only_heredoc("<<-'EOF' ", "EOF"));
        assert!(is_only_heredoc("<<\"EOT\"", "EOT"));
        assert!(!is_only_heredoc("<<EOF bash", "EOF"));
        assert!(!is_only_heredoc("cat <<EOF", "EOF"));
    }

    #[test]
    fn ports_get_a_protocol() {
        assert_eq!(normalize_port("80").unwrap(), ["80/tcp"]);
        assert_eq!(normalize_port("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(normalize_port("8000-8002/tcp").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert_eq!(normalize_port("7-7/sctp").unwrap(), ["7/sctp"]);
        assert!(normalize_port("http").is_err());
        assert!(normalize_port("9-8").is_err());
        assert!(normalize_port("80/icmp").is_err());
    }

    #[test]
    fn env_set_replaces_in_place() {
        let mut env = vec!["A=1".to_string(), "B=2".to_string()];
        env_set(&mut env, "A", "3");
        env_set(&mut env, "C", "x=y");
        assert_eq!(env, vec!["A=3", "B=2", "C=x=y"]);
        assert_eq!(env_get(&env, "C").as_deref(), Some("x=y"));
    }
}
