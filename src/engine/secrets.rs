//! Build secrets and SSH agents given on the command line (`--secret`, `--ssh`),
//! taken as docker buildx and buildah take them. A secret held as a value is
//! never printed: its Debug form names only the kind of source. An agent for key
//! files is started per step that mounts it and killed after.

use std::fmt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::clean_path::base_name;

/// Where a secret's bytes come from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Read when a RUN mounts it.
    File(PathBuf),
    /// An environment variable's value, read when the command line was parsed.
    Value(Vec<u8>),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "File({})", p.display()),
            SecretSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl SecretSource {
    pub(super) fn read(&self, id: &str) -> Result<Vec<u8>> {
        match self {
            SecretSource::File(p) => std::fs::read(p).with_context(|| format!("secret {id}: reading {}", p.display())),
            SecretSource::Value(v) => Ok(v.clone()),
        }
    }
}

/// Parses `--secret id=NAME[,src=FILE|,env=VAR][,type=file|env]`. With neither
/// `src` nor `env`, an environment variable named like the id is used when it is
/// set, else a file of that name, as buildx does. `env` looks variables up.
pub fn parse_secret(spec: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, SecretSource)> {
    let (mut id, mut src, mut var, mut kind) = (String::new(), String::new(), String::new(), "file");
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| anyhow!("--secret {spec}: {field:?} is not KEY=VALUE"))?;
        match k.to_ascii_lowercase().as_str() {
            "id" => id = v.to_string(),
            "src" | "source" => src = v.to_string(),
            "env" => {
                var = v.to_string();
                kind = "env";
            }
            "type" if v == "file" || v == "env" => kind = if v == "env" { "env" } else { kind },
            "type" => bail!("--secret {spec}: type must be file or env, not {v:?}"),
            other => bail!("--secret {spec}: unexpected key {other:?} (expected id, src, env or type)"),
        }
    }
    if kind == "env" && var.is_empty() {
        var = std::mem::take(&mut src);
    }
    if id.is_empty() {
        id = if !src.is_empty() { base_name(&src) } else { var.clone() };
    }
    if id.is_empty() {
        bail!("--secret {spec}: an id is required");
    }
    if var.is_empty() && src.is_empty() {
        match env(&id) {
            Some(v) if kind != "file" || !Path::new(&id).exists() => return Ok((id, SecretSource::Value(v.into_bytes()))),
            _ => src = id.clone(),
        }
    }
    if !var.is_empty() {
        let value = env(&var).ok_or_else(|| anyhow!("--secret {spec}: environment variable {var} is not set"))?;
        return Ok((id, SecretSource::Value(value.into_bytes())));
    }
    let path = PathBuf::from(&src);
    if !path.is_file() {
        bail!("--secret {spec}: {} is not a file", path.display());
    }
    let path = std::fs::canonicalize(&path).with_context(|| format!("--secret {spec}: {}", path.display()))?;
    Ok((id, SecretSource::File(path)))
}

/// Parses `--ssh default`, `--ssh default=PATH[,PATH]` or `--ssh ID=PATH[,PATH]`:
/// an agent's socket or private key files. A bare `default` is `$SSH_AUTH_SOCK`.
pub fn parse_ssh(spec: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, Vec<PathBuf>)> {
    let (id, paths) = match spec.split_once('=') {
        Some((id, paths)) => (id, paths.split(',').filter(|p| !p.is_empty()).map(PathBuf::from).collect::<Vec<_>>()),
        None => (spec, Vec::new()),
    };
    if id.is_empty() || id.contains(',') {
        bail!("--ssh {spec}: expected default, ID or ID=SOCKET|KEY[,KEY...]");
    }
    let paths = if paths.is_empty() {
        let sock = env("SSH_AUTH_SOCK").filter(|s| !s.is_empty());
        vec![PathBuf::from(sock.ok_or_else(|| anyhow!("--ssh {spec}: SSH_AUTH_SOCK is not set; start an agent or name a socket or key"))?)]
    } else {
        paths
    };
    let paths = paths
        .iter()
        .map(|p| std::fs::canonicalize(p).with_context(|| format!("--ssh {spec}: {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    Ok((id.to_string(), paths))
}

/// An agent socket for one RUN: the one given, or an agent strata started for
/// key files (killed when this is dropped).
pub(super) struct SshSocket {
    pub path: PathBuf,
    agent: Option<Child>,
}

impl SshSocket {
    /// Whether strata started the agent (so its socket's mode and owner are ours to set).
    pub fn started(&self) -> bool {
        self.agent.is_some()
    }
}

impl Drop for SshSocket {
    fn drop(&mut self) {
        if let Some(child) = self.agent.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The socket for `--ssh id=paths`: a socket path as it is; key files loaded
/// into a new `ssh-agent` listening in `dir`.
pub(super) fn ssh_socket(id: &str, paths: &[PathBuf], dir: &Path) -> Result<SshSocket> {
    if let [only] = paths {
        if std::fs::metadata(only).is_ok_and(|m| m.file_type().is_socket()) {
            return Ok(SshSocket { path: only.clone(), agent: None });
        }
    }
    let path = dir.join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("--ssh {id}: starting ssh-agent for key files (install openssh-client)"))?;
    let socket = SshSocket { path: path.clone(), agent: Some(child) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("--ssh {id}: ssh-agent did not create {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for key in paths {
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &path)
            .env("SSH_ASKPASS_REQUIRE", "never")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("--ssh {id}: running ssh-add (install openssh-client)"))?;
        if !out.status.success() {
            bail!("--ssh {id}: ssh-add {} failed: {}", key.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("from-env".into()),
            "SSH_AUTH_SOCK" => Some("/".into()),
            _ => None,
        }
    }

    #[test]
    fn secrets_take_buildx_forms() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let src = file.path().to_str().unwrap();
        let canonical = std::fs::canonicalize(file.path()).unwrap();
        assert_eq!(parse_secret(&format!("id=a,src={src}"), &env).unwrap(), ("a".into(), SecretSource::File(canonical.clone())));
        assert_eq!(parse_secret(&format!("id=a,source={src},type=file"), &env).unwrap().1, SecretSource::File(canonical));
        assert_eq!(parse_secret("id=a,env=TOKEN", &env).unwrap(), ("a".into(), SecretSource::Value(b"from-env".to_vec())));
        assert_eq!(parse_secret("id=a,type=env,src=TOKEN", &env).unwrap().1, SecretSource::Value(b"from-env".to_vec()));
        assert_eq!(parse_secret("id=TOKEN", &env).unwrap().1, SecretSource::Value(b"from-env".to_vec()));
        assert_eq!(parse_secret("env=TOKEN", &env).unwrap().0, "TOKEN");
        assert!(parse_secret("id=a,env=MISSING", &env).unwrap_err().to_string().contains("MISSING"));
        assert!(parse_secret("id=a,src=/no/such/file", &env).unwrap_err().to_string().contains("/no/such/file"));
        assert!(parse_secret("id=a,type=ssh", &env).is_err());
        assert!(parse_secret("id=a,bogus=1", &env).is_err());
    }

    #[test]
    fn a_secret_value_is_never_printed() {
        let s = SecretSource::Value(b"hunter2".to_vec());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn ssh_takes_default_and_named_paths() {
        assert_eq!(parse_ssh("default", &env).unwrap(), ("default".into(), vec![PathBuf::from("/")]));
        assert_eq!(parse_ssh("key=/", &env).unwrap(), ("key".into(), vec![PathBuf::from("/")]));
        assert!(parse_ssh("default", &|_| None).unwrap_err().to_string().contains("SSH_AUTH_SOCK"));
        assert!(parse_ssh("k=/no/such/key", &env).is_err());
    }
}
