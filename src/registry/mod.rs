//! Registries: the OCI distribution API, enough to pull base images and push results.
//!
//! `client` speaks HTTP to one registry (scheme choice, auth challenges), `tls`
//! decides which certificates it trusts (system roots and certs.d), `retry`
//! bounds how often and how long one operation tries again, `auth` finds
//! credentials the way podman and docker keep them (and writes them for `strata
//! login`), `shortnames` turns `alpine` into the registries to try
//! (registries.conf), `progress` is how transfers report bytes moving, `sources`
//! remembers which repositories held a blob (for cross-repository mounts),
//! `timeout` bounds how long a silent server is waited for (ADD of a URL uses it
//! too), `transfer` moves images between a registry and the local store, streaming every
//! blob with its digest checked on the way.
//!
//! Layering: uses `oci` only.

mod auth;
mod client;
mod progress;
mod retry;
mod shortnames;
mod sources;
mod timeout;
mod tls;
mod transfer;

use std::path::PathBuf;

pub use auth::{forget as forget_credentials, lookup as lookup_credentials, save as save_credentials, Credentials};
#[doc(hidden)]
pub use auth::{stored_in as stored_credentials_in, Stored as StoredCredentials};
pub use client::Client;
pub use progress::{BlobProgress, Progress};
pub use shortnames::{is_short as is_short_name, ShortNames};
pub use sources::BlobSources;
pub use timeout::{agent_config as http_agent_config, set_idle as set_idle_timeout, Stalled};
pub use tls::TlsOptions;
pub use transfer::{name_pulled, pull, pull_all, pull_first, pull_for, pull_into_store, push, push_index_only, push_known, PushReport};

/// Everything that can go wrong talking to a registry; each names the registry,
/// repository or blob involved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request for `what` failed without an answer (the cause is the source).
    #[error("{registry}: {what}")]
    Http {
        registry: String,
        what: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// The server stopped answering for `what` (see `timeout`).
    #[error("{registry}: {what}")]
    TimedOut {
        registry: String,
        what: String,
        #[source]
        source: timeout::Stalled,
    },
    /// A download's connection broke in the middle of the body.
    #[error("{registry}: {what}: the connection broke after {received} bytes")]
    Interrupted {
        registry: String,
        what: String,
        received: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {digest} from {registry}/{repo}: content has digest {found}")]
    BlobDigest { registry: String, repo: String, digest: crate::oci::Digest, found: crate::oci::Digest },
    #[error("blob {digest} from {registry}/{repo}: {found} bytes, the manifest says {expected}")]
    BlobSize { registry: String, repo: String, digest: crate::oci::Digest, expected: u64, found: u64 },
    #[error("the image index has no manifest for {wanted}, only for {}", if available.is_empty() { "no platform".to_string() } else { available.join(", ") })]
    NoPlatform { wanted: String, available: Vec<String> },
    #[error("{registry}: {what} answered {status}: {body}")]
    Status { registry: String, what: String, status: u16, body: String },
    #[error("{registry}: authentication failed for {user}: check the user name and password (strata login {registry})")]
    Unauthorized { registry: String, user: String },
    #[error("{registry}: access denied to {what}: log in first (strata login {registry})")]
    NoCredentials { registry: String, what: String },
    #[error("{registry}: its TLS certificate is not trusted ({reason}): give its CA certificate with --cert-dir DIR (a directory of *.crt files) or as {suggested}/ca.crt, or skip the check with --tls-verify=false")]
    CertificateRejected { registry: String, reason: String, suggested: String },
    #[error("{registry}: the registry refused our TLS connection ({reason}): if it wants a client certificate, put NAME.cert and NAME.key in --cert-dir DIR or in {suggested}/")]
    ClientCertificateRefused { registry: String, reason: String, suggested: String },
    #[error("certificates in {path}: {reason}")]
    Certificates { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    RegistriesConf { path: PathBuf, reason: String },
    #[error("short name {name:?} resolves to no registry: no alias for it and no unqualified-search-registries in {}; name the registry (e.g. docker.io/{name}) or add one", .searched.join(", "))]
    NoSearchRegistries { name: String, searched: Vec<String> },
    #[error("{name:?} was found in none of the registries tried:{}", .tried.iter().map(|(n, e)| format!("\n  {n}: {e}")).collect::<String>())]
    ShortNameNotFound { name: String, tried: Vec<(String, String)> },
    #[error("{registry}: bad authentication challenge {challenge:?}")]
    BadChallenge { registry: String, challenge: String },
    #[error("{what}: {reason}")]
    Protocol { what: String, reason: String },
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// An error with its causes, `a: b: c`, for a one-line warning or list entry
/// (`RegistryError::Http` keeps the network's reason as its source).
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// A client for `registry` with the credentials stored for it (see [`lookup_credentials`]).
pub fn connect(registry: &str, tls: &tls::TlsOptions) -> Result<client::Client> {
    client::Client::new(registry, tls, auth::lookup(registry)?)
}
