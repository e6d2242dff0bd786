//! `strata run`: a command in a new container from a stored image. The container
//! is recorded before it starts and its end afterwards, so `ps -a`, `commit` and
//! `rm` find it; with `remove` it goes as soon as the command exits.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::oci::{ContainerConfig, Digest, ImageConfig};
use crate::sandbox::{self, BindMount, Network, PortMapping, RunSpec, SeccompPolicy, Stdin};
use crate::store::{ContainerState, Containers, ImageState, LocalStore};

/// What one `run` asks for. Volumes, ports and variables are kept as docker spells
/// them (`-v`, `-p`, `-e`): they are read once the container exists, so one that is
/// wrong is recorded as that container's failure, as it always was.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// Image name or id in the local store.
    pub image: String,
    /// Replaces the image's CMD when not empty.
    pub command: Vec<String>,
    /// Replaces the image's ENTRYPOINT (empty: none, and no CMD either).
    pub entrypoint: Option<String>,
    /// The container's name (default: a generated adjective_name).
    pub name: Option<String>,
    /// Remove the container when the command exits (`--rm`).
    pub remove: bool,
    /// Connect standard input to the command; without it the command reads nothing.
    pub interactive: bool,
    /// Give the command a terminal.
    pub tty: bool,
    /// `SOURCE:TARGET[:ro]` host paths to bind in.
    pub volumes: Vec<String>,
    /// `KEY=VALUE`, or `KEY` to copy it from this process's environment.
    pub env: Vec<String>,
    /// `user[:group]`, replacing the image's USER.
    pub user: Option<String>,
    /// Replaces the image's WORKDIR.
    pub workdir: Option<String>,
    pub network: Network,
    /// `[IP:]HOST:CONTAINER[/tcp|udp]` ports to publish.
    pub publish: Vec<String>,
    /// Default: one derived from the image.
    pub hostname: Option<String>,
    pub seccomp: SeccompPolicy,
    /// `--platform`: which image of a manifest list to run (default: the host's).
    pub platform: Option<crate::platform::Platform>,
}

/// Runs `req` in a new container and returns the command's exit code (125 is
/// recorded when the container could not run).
pub fn run(store: &LocalStore, req: &RunRequest) -> Result<i32> {
    let manifest = store
        .images
        .resolve_for(&req.image, req.platform.as_ref())?
        .with_context(|| format!("image {:?} not found in the local store", req.image))?;
    let image = store.load_image(&manifest)?;
    if !image.config.architecture.is_empty() {
        let c = &image.config;
        crate::sandbox::check_runnable(&crate::platform::Platform::new(&c.os, &c.architecture, c.variant.as_deref()))
            .map_err(anyhow::Error::msg)?;
    }
    let cfg = image.config.config.clone().unwrap_or_default();
    let argv = command_line(&cfg, req)?;
    let env = environment(&cfg, &req.env);
    let containers = Containers::open(&store.root);
    let image_id = store.image_id(&manifest)?;
    let mut record = containers.create(req.name.as_deref(), &req.image, &manifest, &image_id, &argv)?;
    let dir = containers.dir_of(&record.id);
    let result = run_container(store, req, &image, &cfg, (argv, env), &dir);
    // Recorded whatever happened, so `ps -a` tells how the container ended.
    let code = match &result {
        Ok(code) => *code,
        Err(_) => 125,
    };
    record.state = ContainerState::Exited { code, finished: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true) };
    if req.remove {
        containers.remove(&record)?;
    } else {
        containers.save(&record)?;
    }
    result
}

/// Removes a container by name, id or unique id prefix: its record, name and
/// writable layer. A running one only with `force`, and its `strata run` is killed
/// first.
pub fn remove(store: &LocalStore, reference: &str, force: bool) -> Result<()> {
    let containers = Containers::open(&store.root);
    let c = containers.find(reference)?;
    if c.is_running() {
        let ContainerState::Running { pid } = c.state else { unreachable!("running means a pid") };
        if !force {
            bail!("container {} is running: stop it first or use rm -f", c.name);
        }
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    containers.remove(&c)
}

/// The entrypoint and command after the request's overrides, as docker combines
/// them: a new entrypoint drops the image's CMD.
fn command_line(cfg: &ContainerConfig, req: &RunRequest) -> Result<Vec<String>> {
    let entrypoint = match &req.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => cfg.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = match (req.command.is_empty(), &req.entrypoint) {
        (false, _) => req.command.clone(),
        (true, Some(_)) => Vec::new(),
        (true, None) => cfg.cmd.clone().unwrap_or_default(),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        bail!("no command specified: the image has no CMD or ENTRYPOINT and none was given");
    }
    Ok(argv)
}

/// The image's environment with `-e` entries set over it; a bare `KEY` takes this
/// process's value and is skipped when it has none.
fn environment(cfg: &ContainerConfig, overrides: &[String]) -> Vec<String> {
    let mut env = cfg.env.clone().unwrap_or_default();
    for e in overrides {
        let entry = match e.split_once('=') {
            Some(_) => e.clone(),
            None => match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            },
        };
        let key = entry.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(entry);
    }
    env
}

/// Runs the container whose writable layer lives in `dir`; returns its exit code.
fn run_container(
    store: &LocalStore,
    req: &RunRequest,
    image: &ImageState,
    cfg: &ContainerConfig,
    (argv, env): (Vec<String>, Vec<String>),
    dir: &Path,
) -> Result<i32> {
    let publish = req.publish.iter().map(|p| PortMapping::parse(p)).collect::<Result<Vec<_>, _>>()?;
    let rootfs = store.overlay_for(image, dir, true)?;
    let spec = RunSpec {
        rootfs,
        argv,
        env,
        cwd: req.workdir.clone().or(cfg.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
        user: req.user.clone().or(cfg.user.clone()).unwrap_or_default(),
        hostname: req.hostname.clone().unwrap_or_else(|| manifest_host(&image.config)),
        // As docker: without -i the command reads an empty stdin.
        stdin: if req.interactive { Stdin::Inherit } else { Stdin::Null },
        pipes: Vec::new(),
        network: run_network(req.network, &publish, &store.privilege)?,
        fake_chown: store.single_id(),
        owner_key: store.owners.key().cloned(),
        binds: req.volumes.iter().map(|v| BindMount::parse(v)).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?,
        tty: req.tty,
        seccomp: req.seccomp.clone(),
        publish,
        mounts: Vec::new(),
        isolation: sandbox::Isolation::for_privilege(&store.privilege),
    };
    let outcome = sandbox::run(&spec, dir, sandbox::Output::Attached)?;
    if let sandbox::Outcome::SetupFailed(msg) = &outcome {
        bail!("cannot start container: {msg}");
    }
    // The vfs driver worked on a copy: find what the container changed, for commit.
    store.settle(&spec.rootfs)?;
    Ok(outcome.code())
}

/// A short host name derived from the image, like docker's container-id host names.
fn manifest_host(config: &ImageConfig) -> String {
    let seed = config.created.clone().unwrap_or_default();
    Digest::of_bytes(seed.as_bytes()).hex()[..12].to_string()
}

/// The container's network; without namespaces (setup C) the default is the
/// build's own network, as for RUN, the trade-off said once at start.
fn run_network(requested: sandbox::Network, publish: &[sandbox::PortMapping], privilege: &sandbox::Privilege) -> Result<sandbox::Network> {
    if sandbox::Isolation::for_privilege(privilege) == sandbox::Isolation::Chroot && requested == sandbox::Network::default() {
        return Ok(sandbox::Network::Host);
    }
    Ok(sandbox::resolve_network(requested, publish, &|w| crate::report::Reporter::new(false).warn(w))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overrides_combine_as_docker_does() {
        let cfg = ContainerConfig {
            entrypoint: Some(words(&["/init"])),
            cmd: Some(words(&["serve"])),
            env: Some(words(&["A=1", "B=2"])),
            ..Default::default()
        };
        let req = |entrypoint: Option<&str>, command: &[&str]| RunRequest {
            entrypoint: entrypoint.map(str::to_string),
            command: words(command),
            ..Default::default()
        };
        assert_eq!(command_line(&cfg, &req(None, &[])).unwrap(), words(&["/init", "serve"]));
        assert_eq!(command_line(&cfg, &req(None, &["sh"])).unwrap(), words(&["/init", "sh"]));
        assert_eq!(command_line(&cfg, &req(Some("/bin/ls"), &[])).unwrap(), words(&["/bin/ls"]));
        assert!(command_line(&cfg, &req(Some(""), &[])).is_err(), "no entrypoint and no CMD leaves nothing to run");
        assert_eq!(environment(&cfg, &words(&["B=3", "C=4"])), words(&["A=1", "B=3", "C=4"]));
    }
}
