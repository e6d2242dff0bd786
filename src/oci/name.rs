//! Image names: parsing, validation and normalisation of references.
//!
//! Local images are named the way podman and buildah name them: a reference without a
//! registry domain lives under `localhost/`, a missing tag means `latest`, and Docker
//! Hub names get their canonical `docker.io/library/` form. Validation follows the
//! distribution reference grammar so every name we store can be pushed or exported
//! unchanged by other tools.

use std::fmt;
use std::str::FromStr;

use super::{Digest, OciError};

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;
const DEFAULT_TAG: &str = "latest";
const LOCAL_DOMAIN: &str = "localhost";
const DOCKER_HUB: &str = "docker.io";

/// A normalised image reference: `domain/path[:tag][@digest]`, with a tag unless only a
/// digest was given.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageName {
    /// Parses and normalises `reference`; errors name the reference and the rule broken.
    pub fn parse(reference: &str) -> Result<Self, OciError> {
        let bad = |reason| OciError::InvalidReference { reference: reference.to_string(), reason };
        if reference.is_empty() {
            return Err(bad("empty reference"));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, d)) => (rest, Some(Digest::parse(d).map_err(|_| bad("invalid digest"))?)),
            None => (reference, None),
        };
        // A ':' after the last '/' starts the tag; one before it is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(bad)?;
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad("name longer than 255 characters"));
        }
        let (domain, path) = split_domain(name);
        let domain = match domain {
            Some(d) => {
                validate_domain(d).map_err(bad)?;
                d.to_string()
            }
            None => LOCAL_DOMAIN.to_string(),
        };
        if path.is_empty() {
            return Err(bad("missing repository path"));
        }
        for component in path.split('/') {
            validate_component(component).map_err(bad)?;
        }
        let path = if domain == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_string() };
        // The limit holds for the normalised name too (as distribution checks it after
        // adding the domain): a short name that fits only without `localhost/` would
        // print as a reference that no longer parses.
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(bad("name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(ImageName { domain, path, tag, digest })
    }

    /// Parses a name to give an image (`tag`, `build -t`): like [`parse`](Self::parse),
    /// but a digest cannot be given (it names content, not a tag) and, as in Docker,
    /// a 64-hex name is refused because it reads as an image id.
    pub fn parse_tag(reference: &str) -> Result<Self, OciError> {
        let bad = |reason| OciError::InvalidReference { reference: reference.to_string(), reason };
        let name = Self::parse(reference)?;
        if name.digest.is_some() {
            return Err(bad("a digest cannot be given as a tag"));
        }
        let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
        let bare = reference[last_slash..].split(':').next().unwrap_or_default();
        if last_slash == 0 && bare.len() == 64 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("a 64-character hexadecimal name reads as an image id"));
        }
        Ok(name)
    }

    /// The registry domain (`localhost` for local names).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The path below the domain, e.g. `library/alpine`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, e.g. `localhost/hello`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag; `None` only for digest references given without a tag.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The manifest digest of a `name@sha256:…` reference.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self, OciError> {
        validate_tag(tag).map_err(|reason| OciError::InvalidReference { reference: format!("{}:{tag}", self.repository()), reason })?;
        Ok(ImageName { tag: Some(tag.to_string()), digest: None, ..self.clone() })
    }
}

/// Splits off the first component when it is a registry: it contains `.` or `:`, is
/// `localhost`, or has uppercase (which a path component cannot), as Docker decides.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == LOCAL_DOMAIN || first.bytes().any(|b| b.is_ascii_uppercase()) => {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn validate_tag(tag: &str) -> Result<(), &'static str> {
    let mut bytes = tag.bytes();
    let first = bytes.next().ok_or("empty tag")?;
    if tag.len() > MAX_TAG_LEN {
        return Err("tag longer than 128 characters");
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if !word(first) || !bytes.all(|b| word(b) || b == b'.' || b == b'-') {
        return Err("tag must match [A-Za-z0-9_][A-Za-z0-9_.-]*");
    }
    Ok(())
}

fn validate_domain(domain: &str) -> Result<(), &'static str> {
    // Bracketed IPv6 hosts contain ':' themselves, so find the port after the ']'.
    let (host, port) = if domain.starts_with('[') {
        let end = domain.find(']').ok_or("invalid IPv6 registry address")?;
        let (host, rest) = domain.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':').ok_or("invalid registry port")?)),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err("registry port must be digits");
        }
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("invalid IPv6 registry address");
        }
        return Ok(());
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err("invalid registry domain");
        }
    }
    Ok(())
}

/// A path component: lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn validate_component(component: &str) -> Result<(), &'static str> {
    const MSG: &str = "repository path components must be lowercase [a-z0-9] joined by '.', '_', '__' or '-'";
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return Err("empty repository path component");
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(MSG);
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(MSG);
        }
    }
    Ok(())
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageName({self})")
    }
}

impl FromStr for ImageName {
    type Err = OciError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageName::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        ImageName::parse(s).unwrap().to_string()
    }

    #[test]
    fn tags_refuse_digests_and_image_ids() {
        let hex = "a".repeat(64);
        assert!(ImageName::parse_tag(&format!("x@sha256:{hex}")).is_err());
        assert!(ImageName::parse_tag(&hex).is_err());
        assert!(ImageName::parse_tag(&format!("{hex}:v1")).is_err());
        assert!(ImageName::parse_tag(&format!("localhost/{hex}")).is_ok(), "a path component may be hex");
        assert_eq!(ImageName::parse_tag("hello").unwrap().to_string(), "localhost/hello:latest");
    }

    #[test]
    fn normalises_like_podman() {
        assert_eq!(norm("hello"), "localhost/hello:latest");
        assert_eq!(norm("hello:v1"), "localhost/hello:v1");
        assert_eq!(norm("a/b"), "localhost/a/b:latest");
        assert_eq!(norm("localhost/x:1"), "localhost/x:1");
        assert_eq!(norm("quay.io/a/b:1"), "quay.io/a/b:1");
        assert_eq!(norm("docker.io/library/x"), "docker.io/library/x:latest");
        assert_eq!(norm("docker.io/x"), "docker.io/library/x:latest");
        assert_eq!(norm("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(norm("reg.example.com:5000/a/b:t"), "reg.example.com:5000/a/b:t");
        assert_eq!(norm("a__b/c-d.e_f---g:_T.1-x"), "localhost/a__b/c-d.e_f---g:_T.1-x");
        assert_eq!(norm("[::1]:5000/x:y"), "[::1]:5000/x:y");
        assert_eq!(norm("[fe80::1]/x"), "[fe80::1]/x:latest");
    }

    #[test]
    fn digest_references() {
        let n = ImageName::parse(&format!("hello@{D}")).unwrap();
        assert_eq!(n.tag(), None);
        assert_eq!(n.digest().unwrap().as_str(), D);
        assert_eq!(n.to_string(), format!("localhost/hello@{D}"));
        let n = ImageName::parse(&format!("quay.io/a/b:1@{D}")).unwrap();
        assert_eq!(n.tag(), Some("1"));
        assert_eq!(n.to_string(), format!("quay.io/a/b:1@{D}"));
    }

    #[test]
    fn accessors() {
        let n = ImageName::parse("quay.io/a/b:1").unwrap();
        assert_eq!(n.repository(), "quay.io/a/b");
        assert_eq!(n.domain(), "quay.io");
        assert_eq!(n.path(), "a/b");
        assert_eq!(n.tag(), Some("1"));
        assert_eq!(n.with_tag("2").unwrap().to_string(), "quay.io/a/b:2");
        assert!(n.with_tag("-bad").is_err());
    }

    #[test]
    fn rejects_invalid_references() {
        let long_tag = format!("x:{}", "a".repeat(129));
        for bad in [
            "",
            "Hello",
            "hello:",
            "hello:-x",
            "hello:a/b",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "a/B",
            "hello@sha256:abc",
            "quay.io/",
            "ex ample",
            "reg:port/x",
            long_tag.as_str(),
        ] {
            let err = ImageName::parse(bad).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{bad}: {msg}");
        }
        assert!(ImageName::parse(&format!("x:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn the_length_limit_holds_for_the_normalised_name() {
        // Found by fuzz/registry_config: 250 characters parsed, but printed with
        // `localhost/` (260) the name no longer parsed back.
        let err = ImageName::parse(&"a".repeat(250)).unwrap_err().to_string();
        assert!(err.contains("longer than 255"), "{err}");
        assert!(ImageName::parse(&format!("docker.io/{}", "a".repeat(240))).is_err(), "library/ counts");
        let longest = ImageName::parse(&"a".repeat(245)).unwrap();
        assert_eq!(ImageName::parse(&longest.to_string()).unwrap(), longest);
    }
}
