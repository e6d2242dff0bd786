//! Which certificates a registry is trusted with, as containers/image decides.
//!
//! The system's CA store (through `rustls-native-certs`: `$SSL_CERT_FILE`,
//! `$SSL_CERT_DIR`, else the distribution's bundle such as
//! /etc/ssl/certs/ca-certificates.crt) plus one directory of per-registry files:
//! `--cert-dir DIR`, else the first of `$XDG_CONFIG_HOME/containers/certs.d/HOST:PORT`
//! (`~/.config/...` without it), `/etc/containers/certs.d/HOST:PORT` and
//! `/etc/docker/certs.d/HOST:PORT` that exists. In that directory every `*.crt` is
//! a CA certificate, and `NAME.cert` with `NAME.key` is a client certificate and its
//! key; a half pair is an error rather than a silently anonymous connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use super::{RegistryError, Result};

/// Whether a registry's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVerify {
    Yes,
    No,
}

/// The TLS choices of one command: `--tls-verify` and `--cert-dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    pub verify: TlsVerify,
    /// Replaces the per-registry certs.d look-up when given.
    pub cert_dir: Option<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions { verify: TlsVerify::Yes, cert_dir: None }
    }
}

impl TlsOptions {
    /// From the `--tls-verify` and `--cert-dir` flags.
    pub fn from_flags(tls_verify: bool, cert_dir: Option<PathBuf>) -> TlsOptions {
        TlsOptions { verify: if tls_verify { TlsVerify::Yes } else { TlsVerify::No }, cert_dir }
    }
}

/// The per-registry directories looked in when no `--cert-dir` is given, in order.
pub fn default_cert_dirs(registry: &str) -> Vec<PathBuf> {
    let env = |var| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    let user = env("XDG_CONFIG_HOME").or_else(|| env("HOME").map(|h| h.join(".config")));
    let mut dirs: Vec<PathBuf> = user.map(|c| c.join("containers/certs.d")).into_iter().collect();
    dirs.push(PathBuf::from("/etc/containers/certs.d"));
    dirs.push(PathBuf::from("/etc/docker/certs.d"));
    dirs.into_iter().map(|d| d.join(registry)).collect()
}

/// The directory whose files apply to `registry`, if any: containers/image uses
/// only the first that exists, never a merge of several.
fn cert_dir_for(registry: &str, options: &TlsOptions) -> Option<PathBuf> {
    match &options.cert_dir {
        Some(dir) => Some(dir.clone()),
        None => default_cert_dirs(registry).into_iter().find(|d| d.is_dir()),
    }
}

/// What one certificate directory holds.
#[derive(Default)]
struct DirCerts {
    cas: Vec<Certificate<'static>>,
    client: Option<ClientCert>,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError {
    let path = path.to_path_buf();
    move |source| RegistryError::Io { op, path, source }
}

/// Reads `dir`'s `*.crt`, `*.cert` and `*.key` files (other files are ignored, as
/// containers/image ignores them).
fn load_dir(dir: &Path) -> Result<DirCerts> {
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(io("reading certificate directory", dir))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    let bad = |path: &Path, reason: String| RegistryError::Certificates { path: path.to_path_buf(), reason };
    let mut out = DirCerts::default();
    for path in &names {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        match ext {
            "crt" => {
                let pem = std::fs::read(path).map_err(io("reading", path))?;
                let certs = pem_certs(&pem).map_err(|e| bad(path, e))?;
                if certs.is_empty() {
                    return Err(bad(path, "no PEM certificate in it".into()));
                }
                out.cas.extend(certs);
            }
            "cert" => {
                let key = path.with_extension("key");
                if !key.exists() {
                    return Err(bad(path, format!("client certificate without its key {}", key.display())));
                }
                if out.client.is_some() {
                    return Err(bad(path, "a second client certificate: strata uses one per registry".into()));
                }
                let chain = pem_certs(&std::fs::read(path).map_err(io("reading", path))?).map_err(|e| bad(path, e))?;
                if chain.is_empty() {
                    return Err(bad(path, "no PEM certificate in it".into()));
                }
                let key_pem = std::fs::read(&key).map_err(io("reading", &key))?;
                let key = PrivateKey::from_pem(&key_pem).map_err(|e| bad(&key, format!("not a PEM private key: {e}")))?;
                out.client = Some(ClientCert::new_with_certs(&chain, key));
            }
            "key" => {
                let cert = path.with_extension("cert");
                if !cert.exists() {
                    return Err(bad(path, format!("client key without its certificate {}", cert.display())));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Every certificate in a PEM file (other PEM items, such as keys, are skipped).
fn pem_certs(pem: &[u8]) -> std::result::Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item.map_err(|e| format!("invalid PEM: {e}"))? {
            ureq::tls::PemItem::Certificate(c) => certs.push(c),
            _ => continue,
        }
    }
    Ok(certs)
}

/// The system's CA certificates, read once per process (unreadable ones are
/// skipped, as Go's crypto/x509 skips them).
fn system_roots() -> &'static [Certificate<'static>] {
    static ROOTS: OnceLock<Vec<Certificate<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        rustls_native_certs::load_native_certs().certs.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect()
    })
}

/// The TLS configuration for connections to `registry`.
pub fn config(registry: &str, options: &TlsOptions) -> Result<TlsConfig> {
    let builder = TlsConfig::builder();
    if options.verify == TlsVerify::No {
        // Podman still presents a client certificate without verification.
        let client = cert_dir_for(registry, options).filter(|d| d.is_dir()).map(|d| load_dir(&d)).transpose()?.and_then(|d| d.client);
        return Ok(builder.disable_verification(true).client_cert(client).build());
    }
    let dir = match cert_dir_for(registry, options) {
        Some(d) if !d.is_dir() => return Err(RegistryError::Certificates { path: d, reason: "no such directory".into() }),
        Some(d) => load_dir(&d)?,
        None => DirCerts::default(),
    };
    let mut roots = system_roots().to_vec();
    roots.extend(dir.cas);
    // A system without a CA store (no ca-certificates package) still reaches public
    // registries through the Mozilla roots ureq carries.
    let roots = if roots.is_empty() { RootCerts::WebPki } else { RootCerts::Specific(Arc::new(roots)) };
    Ok(builder.root_certs(roots).client_cert(dir.client).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dirs_follow_containers_image_order() {
        let dirs = default_cert_dirs("127.0.0.1:5000");
        let n = dirs.len();
        assert_eq!(dirs[n - 2], PathBuf::from("/etc/containers/certs.d/127.0.0.1:5000"));
        assert_eq!(dirs[n - 1], PathBuf::from("/etc/docker/certs.d/127.0.0.1:5000"));
        if n == 3 {
            assert!(dirs[0].ends_with("containers/certs.d/127.0.0.1:5000"), "{dirs:?}");
        }
    }

    #[test]
    fn half_client_pairs_and_empty_crt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("client.key"), "").unwrap();
        let err = load_dir(dir.path()).err().unwrap().to_string();
        assert!(err.contains("client.key") && err.contains("without its certificate"), "{err}");
        std::fs::remove_file(dir.path().join("client.key")).unwrap();
        std::fs::write(dir.path().join("ca.crt"), "not pem").unwrap();
        let err = load_dir(dir.path()).err().unwrap().to_string();
        assert!(err.contains("ca.crt") && err.contains("no PEM certificate"), "{err}");
        std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        assert!(load_dir(dir.path()).unwrap().cas.is_empty());
    }
}
