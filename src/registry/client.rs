//! HTTP to one registry: the `/v2/` endpoints strata needs, auth challenges
//! (basic and bearer token), plain HTTP where it is allowed, retries.
//!
//! Plain HTTP is used for loopback registries (as docker allows) and with
//! `--tls-verify=false`, after HTTPS failed because the server does not speak TLS
//! at all. A server that does speak TLS but whose certificate is not trusted is an
//! error naming the registry, never a quiet switch to plain HTTP: only
//! `--tls-verify=false` skips the check (see [`super::tls`] for what is trusted).
//! A 401 is answered once:
//! with basic credentials, or with a bearer token fetched from the realm the
//! challenge names, for the scope it names. Server errors (5xx) and broken
//! connections are retried with backoff within one budget per operation (see
//! `retry`); a request body is re-opened for each try, so nothing is buffered in
//! memory. A blob upload that fails starts over with a new upload session, and a
//! blob download whose connection breaks mid-body is fetched again. A registry that
//! goes silent (frozen, or stalled mid-body) times out as [`super::timeout`] says,
//! and that counts as a broken connection.

use std::io::Read;
use std::sync::Mutex;

use ureq::http::{Response, StatusCode};
use ureq::Body;

use super::auth::Credentials;
use super::retry::{is_transient, reason, Retry, WatchedBody};
use super::timeout::{self, Stalled};
pub use super::tls::TlsVerify;
use super::tls::{self, TlsOptions};
use super::{RegistryError, Result};
use crate::oci::Digest;

/// Media types strata accepts for a manifest, most specific first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A manifest as the registry sent it.
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// A connection to one registry, e.g. `127.0.0.1:5000` or `quay.io`.
pub struct Client {
    registry: String,
    /// Where requests go: `registry`, except Docker Hub's API host for docker.io.
    endpoint: String,
    agent: ureq::Agent,
    insecure_allowed: bool,
    scheme: Mutex<Option<&'static str>>,
    creds: Option<Credentials>,
    authorization: Mutex<Option<String>>,
}

/// Produces a request body, again for each retry; `'r` is what the body borrows.
pub type BodyOpener<'r> = dyn FnMut() -> Result<Box<dyn Read + 'r>> + 'r;

impl Client {
    /// A client trusting what `tls` says for this registry; fails on unreadable
    /// certificate files.
    pub fn new(registry: &str, tls: &TlsOptions, creds: Option<Credentials>) -> Result<Client> {
        let tls_config = tls::config(registry, tls)?;
        let agent: ureq::Agent = timeout::agent_config().http_status_as_error(false).tls_config(tls_config).build().into();
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        let loopback = host == "localhost" || host.starts_with("127.") || host == "[::1]";
        // docker.io names Docker Hub, whose API is served from another host.
        let endpoint = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        Ok(Client {
            registry: registry.to_string(),
            endpoint: endpoint.to_string(),
            agent,
            insecure_allowed: loopback || tls.verify == TlsVerify::No,
            scheme: Mutex::new(None),
            creds,
            authorization: Mutex::new(None),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Checks that the registry answers and accepts our credentials (`login`).
    pub fn ping(&self) -> Result<()> {
        let resp = self.send("GET", "/v2/", "the API check", &[], None)?;
        self.expect(resp, &[StatusCode::OK], "the API check").map(drop)
    }

    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        let what = format!("manifest {repo}:{reference}");
        let resp = self.send("GET", &format!("/v2/{repo}/manifests/{reference}"), &what, &[("Accept", MANIFEST_ACCEPT)], None)?;
        let mut resp = self.expect(resp, &[StatusCode::OK], &what)?;
        let media_type = header(&resp, "content-type").unwrap_or_default();
        let bytes = resp.body_mut().with_config().limit(4 << 20).read_to_vec().map_err(|e| self.http(&what, e))?;
        let digest = Digest::of_bytes(&bytes);
        if let Ok(d) = Digest::parse(reference) {
            if d != digest {
                return Err(RegistryError::Protocol { what, reason: format!("the registry sent content with digest {digest}") });
            }
        }
        Ok(FetchedManifest { bytes, media_type: media_type.split(';').next().unwrap_or_default().trim().to_string(), digest })
    }

    /// Streams a blob's content into `sink`, which checks its digest while storing
    /// it. When the connection breaks mid-body the blob is fetched again from the
    /// start (the sink drops what it had), within one retry budget; an error of the
    /// sink's own (a full disk, a digest mismatch) ends the download at once, since
    /// fetching the same content again would not change it. Retries go to `notice`.
    pub fn fetch_blob<T>(
        &self,
        repo: &str,
        digest: &Digest,
        notice: &dyn Fn(&str),
        mut sink: impl FnMut(&mut dyn Read) -> Result<T>,
    ) -> Result<T> {
        let mut retry = Retry::reported(format!("blob {digest} of {repo}"), notice);
        loop {
            let resp = self.send_with(&mut retry, "GET", &format!("/v2/{repo}/blobs/{digest}"), &[], None)?;
            let resp = self.expect(resp, &[StatusCode::OK], retry.what())?;
            let mut body = WatchedBody::new(resp.into_body().into_reader());
            let stored = sink(&mut body);
            let Some(source) = body.take_broken().filter(|_| stored.is_err()) else { return stored };
            let broken = match Stalled::of_io(&source) {
                Some(stalled) => RegistryError::TimedOut {
                    registry: self.registry.clone(),
                    what: format!("{} (after {} bytes)", retry.what(), body.received()),
                    source: stalled,
                },
                None => RegistryError::Interrupted {
                    registry: self.registry.clone(),
                    what: retry.what().to_string(),
                    received: body.received(),
                    source,
                },
            };
            if !retry.again(&format!("the connection broke after {} bytes: {}", body.received(), reason(&broken))) {
                return Err(broken);
            }
        }
    }

    pub fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let what = format!("blob {digest} of {repo}");
        let resp = self.send("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &what, &[], None)?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => self.expect(resp, &[StatusCode::OK], &what).map(|_| true),
        }
    }

    /// Uploads a blob unless the registry can mount it from `mount_from` (another
    /// repository of the same registry that has it). Returns false when mounted.
    ///
    /// The PUT is never retried on its own: its Location names an upload session
    /// that may not have survived the failure (a restarted registry has forgotten
    /// it, and answers a retried PUT by closing the connection mid-body). A failed
    /// PUT starts over with a new POST, within the same budget. Retries go to `notice`.
    pub fn upload_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        mount_from: Option<&str>,
        body: &mut BodyOpener<'_>,
        notice: &dyn Fn(&str),
    ) -> Result<bool> {
        let what = format!("upload of {digest} to {repo}");
        let start = match mount_from {
            Some(from) => format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
            None => format!("/v2/{repo}/blobs/uploads/"),
        };
        let length = size.to_string();
        let headers = [("Content-Type", "application/octet-stream"), ("Content-Length", length.as_str())];
        let mut retry = Retry::reported(what.as_str(), notice);
        loop {
            let resp = self.send_with(&mut retry, "POST", &start, &[("Content-Length", "0")], None)?;
            if resp.status() == StatusCode::CREATED && mount_from.is_some() {
                return Ok(false);
            }
            let resp = self.expect(resp, &[StatusCode::ACCEPTED], &what)?;
            let location = header(&resp, "location")
                .ok_or_else(|| RegistryError::Protocol { what: what.clone(), reason: "no Location for the upload".into() })?;
            let sep = if location.contains('?') { '&' } else { '?' };
            let url = format!("{location}{sep}digest={digest}");
            let failed = match self.send_with(&mut Retry::once(what.as_str()), "PUT", &url, &headers, Some(body)) {
                Ok(resp) if resp.status() == StatusCode::CREATED => return Ok(true),
                // A server error, or the session is unknown: a new session may work.
                Ok(resp) if resp.status().is_server_error() || resp.status() == StatusCode::NOT_FOUND => {
                    match self.expect(resp, &[StatusCode::CREATED], &what) {
                        Ok(_) => return Ok(true),
                        Err(e) => e,
                    }
                }
                Ok(resp) => return self.expect(resp, &[StatusCode::CREATED], &what).map(|_| true),
                Err(e) if is_transient(&e) => e,
                Err(e) => return Err(e),
            };
            if !retry.again(&reason(&failed)) {
                return Err(failed);
            }
        }
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, bytes: &[u8], media_type: &str) -> Result<()> {
        let what = format!("manifest {repo}:{reference}");
        let mut body = || Ok(Box::new(bytes) as Box<dyn Read>);
        let length = bytes.len().to_string();
        let resp = self.send(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &what,
            &[("Content-Type", media_type), ("Content-Length", &length)],
            Some(&mut body),
        )?;
        self.expect(resp, &[StatusCode::CREATED, StatusCode::OK], &what).map(drop)
    }

    fn expect(&self, mut resp: Response<Body>, ok: &[StatusCode], what: &str) -> Result<Response<Body>> {
        if ok.contains(&resp.status()) {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(match &self.creds {
                Some(c) => RegistryError::Unauthorized { registry: self.registry.clone(), user: c.user.clone() },
                None => RegistryError::NoCredentials { registry: self.registry.clone(), what: what.to_string() },
            });
        }
        let body = resp.body_mut().with_config().limit(64 << 10).read_to_string().unwrap_or_default();
        Err(RegistryError::Status {
            registry: self.registry.clone(),
            what: what.to_string(),
            status,
            body: body.trim().chars().take(500).collect(),
        })
    }

    /// One request with a retry budget of its own; `what` names it in errors.
    fn send(
        &self,
        method: &str,
        path: &str,
        what: &str,
        headers: &[(&str, &str)],
        body: Option<&mut BodyOpener<'_>>,
    ) -> Result<Response<Body>> {
        self.send_with(&mut Retry::new(what), method, path, headers, body)
    }

    /// One request with auth and the scheme fallback, retried within `retry`'s
    /// budget. `path` is absolute (`/v2/...`) or a full URL the registry gave (an
    /// upload Location). A 5xx left over when the budget is spent is returned as is.
    fn send_with(
        &self,
        retry: &mut Retry<'_>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        mut body: Option<&mut BodyOpener<'_>>,
    ) -> Result<Response<Body>> {
        let mut answered_challenge = false;
        loop {
            let result = self.url(path).and_then(|url| self.once(method, &url, retry.what(), headers, body.as_deref_mut()));
            match result {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !answered_challenge => {
                    answered_challenge = true;
                    let challenge = header(&resp, "www-authenticate").unwrap_or_default();
                    self.answer(&challenge)?;
                }
                Ok(resp) if resp.status().is_server_error() && retry.again(&format!("the registry answered {}", resp.status())) => {}
                Ok(resp) => return Ok(resp),
                Err(e) if is_transient(&e) && retry.again(&reason(&e)) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// `path` as a full URL: absolute (`/v2/...`), relative to the registry's
    /// root (an upload Location), or already a URL.
    fn url(&self, path: &str) -> Result<String> {
        Ok(if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else if path.starts_with('/') {
            format!("{}://{}{path}", self.scheme()?, self.endpoint)
        } else {
            format!("{}://{}/{path}", self.scheme()?, self.endpoint)
        })
    }

    fn once(
        &self,
        method: &str,
        url: &str,
        what: &str,
        headers: &[(&str, &str)],
        body: Option<&mut BodyOpener<'_>>,
    ) -> Result<Response<Body>> {
        let http = |e| self.http(what, e);
        let auth = self.authorization.lock().expect("auth lock").clone();
        macro_rules! with_headers {
            ($req:expr) => {{
                let mut req = $req;
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                if let Some(a) = &auth {
                    req = req.header("Authorization", a.as_str());
                }
                req
            }};
        }
        match (method, body) {
            ("GET", _) => with_headers!(self.agent.get(url)).call().map_err(http),
            ("HEAD", _) => with_headers!(self.agent.head(url)).call().map_err(http),
            ("POST", _) => with_headers!(self.agent.post(url)).send_empty().map_err(http),
            ("PUT", Some(open)) => {
                let mut reader = open()?;
                with_headers!(self.agent.put(url)).send(ureq::SendBody::from_reader(&mut reader)).map_err(http)
            }
            ("PUT", None) => with_headers!(self.agent.put(url)).send_empty().map_err(http),
            _ => unreachable!("no other methods are used"),
        }
    }

    /// A failed request for `what` as an error naming the registry; a certificate
    /// that was not trusted says how to trust it (and is not worth a retry).
    fn http(&self, what: &str, source: ureq::Error) -> RegistryError {
        let suggested = || tls::default_cert_dirs(&self.registry)[0].display().to_string();
        if let Some(stalled) = Stalled::of(&source) {
            return RegistryError::TimedOut { registry: self.registry.clone(), what: what.to_string(), source: stalled };
        }
        match tls_failure(&source) {
            Some(tls) if is_certificate_problem(tls) => {
                RegistryError::CertificateRejected { registry: self.registry.clone(), reason: tls.to_string(), suggested: suggested() }
            }
            Some(tls @ rustls::Error::AlertReceived(alert)) if is_certificate_alert(*alert) => {
                RegistryError::ClientCertificateRefused { registry: self.registry.clone(), reason: tls.to_string(), suggested: suggested() }
            }
            _ => RegistryError::Http { registry: self.registry.clone(), what: what.to_string(), source: Box::new(source) },
        }
    }

    /// Picks https, or http when allowed and the server does not speak TLS;
    /// decided once.
    fn scheme(&self) -> Result<&'static str> {
        if let Some(s) = *self.scheme.lock().expect("scheme lock") {
            return Ok(s);
        }
        let chosen = match self.agent.get(&format!("https://{}/v2/", self.endpoint)).call() {
            Ok(_) => "https",
            // A server that does not answer says nothing about TLS: try again later.
            Err(e) if Stalled::of(&e).is_some() => return Err(self.http("the HTTPS check", e)),
            Err(e) if self.insecure_allowed && !speaks_tls(&e) => "http",
            Err(e) => return Err(self.http("the HTTPS check", e)),
        };
        *self.scheme.lock().expect("scheme lock") = Some(chosen);
        Ok(chosen)
    }

    /// Answers a 401: basic credentials, or a bearer token from the named realm.
    fn answer(&self, challenge: &str) -> Result<()> {
        let bad = || RegistryError::BadChallenge { registry: self.registry.clone(), challenge: challenge.to_string() };
        let (kind, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if kind.eq_ignore_ascii_case("basic") {
            let creds = self
                .creds
                .as_ref()
                .ok_or_else(|| RegistryError::NoCredentials { registry: self.registry.clone(), what: "the registry".into() })?;
            *self.authorization.lock().expect("auth lock") = Some(creds.basic_header());
            return Ok(());
        }
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(bad());
        }
        let params = parse_challenge(params);
        let realm = params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v.clone()).ok_or_else(bad)?;
        let mut query: Vec<String> = Vec::new();
        for key in ["service", "scope"] {
            if let Some((_, v)) = params.iter().find(|(k, _)| k == key) {
                query.push(format!("{key}={}", url_escape(v)));
            }
        }
        let url = if query.is_empty() { realm } else { format!("{realm}?{}", query.join("&")) };
        let mut req = self.agent.get(&url);
        if let Some(c) = &self.creds {
            req = req.header("Authorization", c.basic_header());
        }
        let mut resp = req.call().map_err(|e| self.http("the token request", e))?;
        if !resp.status().is_success() {
            return Err(match &self.creds {
                Some(c) => RegistryError::Unauthorized { registry: self.registry.clone(), user: c.user.clone() },
                None => RegistryError::NoCredentials { registry: self.registry.clone(), what: "a token".into() },
            });
        }
        let bytes = resp.body_mut().with_config().limit(1 << 20).read_to_vec().map_err(|e| self.http("the token request", e))?;
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::Protocol { what: format!("token from {url}"), reason: e.to_string() })?;
        let token = json.get("token").or_else(|| json.get("access_token")).and_then(|t| t.as_str()).ok_or_else(bad)?;
        *self.authorization.lock().expect("auth lock") = Some(format!("Bearer {token}"));
        Ok(())
    }
}

/// The TLS error behind a failed request, if TLS is what failed. rustls reports
/// through the socket's `io::Error`, which ureq passes on as it is.
fn tls_failure(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(t) => Some(t),
        ureq::Error::Io(io) => io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }
}

fn is_certificate_problem(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_)
            | rustls::Error::UnsupportedNameType
    )
}

/// An alert by which a server refuses the certificate we presented, or our lack of one.
fn is_certificate_alert(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::CertificateRequired
            | A::UnsupportedCertificate
            | A::CertificateUnknown
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::UnknownCA
            | A::AccessDenied
    )
}

/// Whether the https attempt reached a TLS server: anything but a connection that
/// failed or a reply that was not TLS records (a plain HTTP server answering the
/// handshake) means the server speaks TLS, so plain HTTP is no way around it.
fn speaks_tls(e: &ureq::Error) -> bool {
    tls_failure(e).is_some_and(|t| !matches!(t, rustls::Error::InvalidMessage(_)))
}

fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// `realm="https://auth",service="registry",scope="repository:a:pull"` as pairs.
fn parse_challenge(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.push((key, value.to_string()));
        rest = next.trim_start_matches(',');
    }
    out
}

fn url_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~:/".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse() {
        let p = parse_challenge(r#"realm="https://auth.example/token",service="registry.example",scope="repository:lib/a:pull,push""#);
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[1], ("service".into(), "registry.example".into()));
        assert_eq!(p[2], ("scope".into(), "repository:lib/a:pull,push".into()));
        assert_eq!(url_escape("repository:lib/a:pull,push"), "repository:lib/a:pull%2Cpush");
    }
}
