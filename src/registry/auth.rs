//! Registry credentials where podman and docker keep them: `$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`, then
//! docker's `config.json` (with its credential helpers). `strata login` writes the
//! first of podman's places, as `podman login` does.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Map, Value};

use super::{RegistryError, Result};
use crate::durable::{self, Mode};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ user: {:?}, password: <hidden> }}", self.user)
    }
}

impl Credentials {
    /// The value of an HTTP basic `Authorization` header.
    pub fn basic_header(&self) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.password)))
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Where `strata login` writes: `$REGISTRY_AUTH_FILE`, else podman's runtime file,
/// else `~/.config/containers/auth.json`.
pub fn login_file() -> Option<PathBuf> {
    env_path("REGISTRY_AUTH_FILE")
        .or_else(|| env_path("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")))
        .or_else(|| env_path("HOME").map(|h| h.join(".config/containers/auth.json")))
}

/// Every file credentials are read from, in order.
fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = env_path("REGISTRY_AUTH_FILE") {
        files.push(f);
    }
    if let Some(d) = env_path("XDG_RUNTIME_DIR") {
        files.push(d.join("containers/auth.json"));
    }
    if let Some(h) = env_path("HOME") {
        files.push(h.join(".config/containers/auth.json"));
    }
    match env_path("DOCKER_CONFIG") {
        Some(d) => files.push(d.join("config.json")),
        None => {
            if let Some(h) = env_path("HOME") {
                files.push(h.join(".docker/config.json"));
            }
        }
    }
    files
}

/// `https://index.docker.io/v1/` and `registry:5000/path` both name a host.
fn host_of(key: &str) -> &str {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    if host == "index.docker.io" || host == "registry-1.docker.io" {
        "docker.io"
    } else {
        host
    }
}

/// The credentials stored for `registry`, if any file or helper has them.
pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    for file in auth_files() {
        let Ok(bytes) = fs::read(&file) else { continue };
        match stored_in(&file, &bytes, registry)? {
            Some(Stored::Credentials(creds)) => return Ok(Some(creds)),
            Some(Stored::Helper(helper)) => return helper_get(&helper, registry).map(Some),
            None => {}
        }
    }
    Ok(None)
}

/// What one auth file says about a registry.
#[doc(hidden)]
#[derive(Debug)]
pub enum Stored {
    Credentials(Credentials),
    /// The credential helper to ask (`docker-credential-NAME`).
    Helper(String),
}

/// Reads the auth file `bytes` (named `file` in errors) for `registry`: its own
/// credentials first, else the helper it names. Runs nothing; public for the fuzz
/// targets.
#[doc(hidden)]
pub fn stored_in(file: &Path, bytes: &[u8], registry: &str) -> Result<Option<Stored>> {
    let json: Value = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Protocol { what: file.display().to_string(), reason: format!("not valid JSON: {e}") })?;
    if let Some(auths) = json.get("auths").and_then(Value::as_object) {
        for (key, entry) in auths {
            if host_of(key) != registry {
                continue;
            }
            if let Some(creds) = entry.get("auth").and_then(Value::as_str).and_then(decode_auth) {
                return Ok(Some(Stored::Credentials(creds)));
            }
        }
    }
    let helper = json
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| h.iter().find(|(k, _)| host_of(k) == registry).map(|(_, v)| v.clone()))
        .or_else(|| json.get("credsStore").cloned());
    Ok(match helper {
        Some(Value::String(helper)) => Some(Stored::Helper(helper)),
        _ => None,
    })
}

fn decode_auth(text: &str) -> Option<Credentials> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials { user: user.to_string(), password: password.to_string() })
}

/// Asks `docker-credential-HELPER get` (docker's protocol: the server on stdin, JSON
/// with Username and Secret on stdout).
fn helper_get(helper: &str, registry: &str) -> Result<Credentials> {
    let program = format!("docker-credential-{helper}");
    let io_err = |source| RegistryError::Io { op: "run", path: PathBuf::from(&program), source };
    let mut child =
        Command::new(&program).arg("get").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(io_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(registry.as_bytes()).map_err(io_err)?;
    }
    let out = child.wait_with_output().map_err(io_err)?;
    if !out.status.success() {
        return Err(RegistryError::Protocol { what: program, reason: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    let json: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| RegistryError::Protocol { what: program.clone(), reason: e.to_string() })?;
    let field = |k: &str| json.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(Credentials { user: field("Username"), password: field("Secret") })
}

/// Records `creds` for `registry` in `login_file` (0600, temp file then rename).
pub fn save(registry: &str, creds: &Credentials) -> Result<PathBuf> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.user, creds.password));
    update(registry, Some(encoded))
}

/// Forgets `registry` in `login_file`; true when there was something to forget.
pub fn forget(registry: &str) -> Result<bool> {
    let file =
        login_file().ok_or_else(|| RegistryError::Protocol { what: "logout".into(), reason: "no HOME or XDG_RUNTIME_DIR".into() })?;
    let had = fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|j| j.get("auths").and_then(Value::as_object).map(|a| a.keys().any(|k| host_of(k) == registry)))
        .unwrap_or(false);
    if had {
        update(registry, None)?;
    }
    Ok(had)
}

fn update(registry: &str, auth: Option<String>) -> Result<PathBuf> {
    let file = login_file().ok_or_else(|| RegistryError::Protocol { what: "login".into(), reason: "no HOME or XDG_RUNTIME_DIR".into() })?;
    fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError {
        let path = path.to_path_buf();
        move |source| RegistryError::Io { op, path, source }
    }
    let mut json: Value = match fs::read(&file) {
        Ok(b) => {
            serde_json::from_slice(&b).map_err(|e| RegistryError::Protocol { what: file.display().to_string(), reason: e.to_string() })?
        }
        Err(_) => Value::Object(Map::new()),
    };
    let auths = json.as_object_mut().map(|o| o.entry("auths").or_insert_with(|| Value::Object(Map::new())));
    if let Some(Value::Object(auths)) = auths {
        let keys: Vec<String> = auths.keys().filter(|k| host_of(k) == registry).cloned().collect();
        for k in keys {
            auths.remove(&k);
        }
        if let Some(a) = auth {
            let entry: BTreeMap<&str, String> = [("auth", a)].into();
            auths.insert(registry.to_string(), serde_json::to_value(entry).expect("a string map serialises"));
        }
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    // Credentials: readable by their owner only.
    let bytes = serde_json::to_vec_pretty(&json).expect("json serialises");
    durable::replace(&file, &bytes, Mode::Exact(0o600)).map_err(io("write", &file))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_auth_keys() {
        assert_eq!(host_of("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(host_of("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(host_of("http://reg.example:443/some/path"), "reg.example:443");
        let c = decode_auth("dXNlcjpwYTpzcw==").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("user", "pa:ss"));
        assert!(format!("{c:?}").contains("<hidden>"));
    }

    #[test]
    fn auth_file_entries_then_helpers() {
        let file = Path::new("/x/auth.json");
        let json = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},"bad:1":{"auth":"!"}},
                        "credHelpers":{"bad:1":"one"},"credsStore":"store"}"#;
        match stored_in(file, json, "docker.io").unwrap() {
            Some(Stored::Credentials(c)) => assert_eq!((c.user.as_str(), c.password.as_str()), ("user", "pass")),
            other => panic!("{other:?}"),
        }
        // An entry that does not decode falls through to the helpers.
        assert!(matches!(stored_in(file, json, "bad:1").unwrap(), Some(Stored::Helper(h)) if h == "one"));
        assert!(matches!(stored_in(file, json, "quay.io").unwrap(), Some(Stored::Helper(h)) if h == "store"));
        assert!(stored_in(file, b"{}", "quay.io").unwrap().is_none());
        let err = stored_in(file, b"{", "quay.io").unwrap_err().to_string();
        assert!(err.contains("/x/auth.json"), "{err}");
    }
}
