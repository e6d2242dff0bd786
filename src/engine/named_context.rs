//! `--build-context NAME=VALUE`: named contexts, as buildx passes them to BuildKit.
//!
//! A value is a local directory, `oci-layout://DIR[:TAG][@DIGEST]` (an image in an
//! OCI layout on disk) or `docker-image://REF` (an image found as FROM finds one).
//! Names are image references, kept in the short form BuildKit compares
//! (`docker.io/library/alpine:latest` is `alpine`), so a context named `alpine`
//! stands in for `FROM alpine` and `COPY --from=alpine:latest` alike.
//!
//! Who wins, as BuildKit's dockerfile frontend decides: a stage whose name is a
//! context's is replaced by the context (its FROM and steps never run; `plan`
//! leaves its dependencies out); FROM and `--from` take a stage of that name
//! first, then a context, then an image. `scratch` and `context` are never
//! contexts there, so strata refuses them as names rather than ignore them.
//!
//! A directory context gives its files, the directory's own `.dockerignore`
//! applied (as BuildKit applies it), owned by root as the main context's are; used
//! by FROM it is an image of one layer with the empty image's config. Images are
//! resolved at most once per build and kept ([`named_context`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};

use super::copy::{self, CopyOptions, CopyOwnership, SourceOwners};
use super::layer::fs_step;
use super::source_digest::content_digest;
use super::{base, step_key, Build};
use crate::dockerfile::Ignore;
use crate::oci::{self, ImageName};
use crate::store::ImageState;
use crate::transport::{self, Location};

/// What one `--build-context` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextValue {
    /// A local directory, canonical.
    Dir(PathBuf),
    /// `oci-layout://DIR[:TAG][@DIGEST]`: the image of `tag` (default `latest`), or
    /// the manifest of `digest`, in the OCI layout at `dir`.
    OciLayout { dir: PathBuf, tag: Option<String>, digest: Option<oci::Digest> },
    /// `docker-image://REF`: the image FROM REF would find.
    DockerImage(String),
}

/// The build's named contexts by name, in BuildKit's short form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamedContexts(BTreeMap<String, ContextValue>);

impl NamedContexts {
    /// Parses `--build-context` values (`NAME=VALUE`, repeatable; a later one of
    /// the same name wins, as buildx keeps the last). Errors name the flag and the
    /// name; a directory that does not exist is an error naming its path.
    pub fn parse(specs: &[String]) -> Result<NamedContexts> {
        let mut out = BTreeMap::new();
        for spec in specs {
            let (name, value) = parse_one(spec)?;
            out.insert(name, value);
        }
        Ok(NamedContexts(out))
    }

    /// The contexts' names, in BuildKit's short form.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The context `reference` (a stage name, FROM's image, `--from`'s value)
    /// names, compared in short form; None when it names none or is no reference.
    pub fn get(&self, reference: &str) -> Option<(&str, &ContextValue)> {
        if self.0.is_empty() {
            return None;
        }
        let short = short_name(reference).ok()?;
        self.0.get_key_value(&short).map(|(k, v)| (k.as_str(), v))
    }
}

/// One `NAME=VALUE`.
fn parse_one(spec: &str) -> Result<(String, ContextValue)> {
    let Some((raw_name, value)) = spec.split_once('=') else {
        bail!("--build-context {spec}: expected NAME=VALUE");
    };
    let name = short_name(raw_name).map_err(|e| anyhow!("--build-context {raw_name}: invalid context name: {e}"))?;
    if name == "scratch" || name == "context" {
        bail!("--build-context {raw_name}: {name:?} cannot name a build context (BuildKit never uses a context of that name)");
    }
    let bad = |msg: String| anyhow!("--build-context {raw_name}: {msg}");
    if let Some(reference) = value.strip_prefix("docker-image://") {
        if reference.is_empty() || Location::parse_transport(reference).is_some() {
            return Err(bad(format!("docker-image://{reference}: expected an image reference (use oci-layout://DIR for a layout)")));
        }
        if !reference.eq_ignore_ascii_case("scratch") {
            ImageName::parse(reference).map_err(|e| bad(format!("docker-image://{reference}: {e}")))?;
        }
        return Ok((name, ContextValue::DockerImage(reference.to_string())));
    }
    if let Some(rest) = value.strip_prefix("oci-layout://") {
        return Ok((name, parse_oci_layout(rest).map_err(|e| bad(format!("{value}: {e}")))?));
    }
    if value.contains("://") || value.starts_with("git@") || value.starts_with("target:") {
        return Err(bad(format!("{value}: only a directory, oci-layout:// and docker-image:// are supported")));
    }
    if value.is_empty() {
        return Err(bad("expected a directory, oci-layout://DIR[:TAG] or docker-image://REF".into()));
    }
    let path = Path::new(value);
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Err(bad(format!("{}: not a directory", path.display())));
    }
    let canonical = path.canonicalize().map_err(|e| bad(format!("{}: {e}", path.display())))?;
    Ok((name, ContextValue::Dir(canonical)))
}

/// `DIR[:TAG][@DIGEST]`, as buildx splits it: a digest after the last `@`, then a
/// tag after the last `:`; the directory must hold an OCI layout.
fn parse_oci_layout(rest: &str) -> Result<ContextValue> {
    let (mut dir, mut tag, mut digest) = (rest, None, None);
    if let Some((d, after)) = dir.rsplit_once('@') {
        if let Ok(parsed) = oci::Digest::parse(after) {
            (dir, digest) = (d, Some(parsed));
        }
    }
    if let Some((d, after)) = dir.rsplit_once(':') {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let is_tag =
            after.len() <= 128 && after.bytes().next().is_some_and(word) && after.bytes().all(|b| word(b) || b == b'.' || b == b'-');
        if is_tag {
            (dir, tag) = (d, Some(after.to_string()));
        }
    }
    if dir.is_empty() {
        bail!("missing the layout directory");
    }
    let path = Path::new(dir);
    if !path.join("oci-layout").is_file() {
        bail!("{}: not an OCI image layout (no oci-layout file)", path.display());
    }
    let dir = path.canonicalize().with_context(|| format!("resolving {}", path.display()))?;
    let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
    Ok(ContextValue::OciLayout { dir, tag, digest })
}

/// BuildKit's short form of a reference: Docker Hub's domain and `library/`
/// dropped, `:latest` dropped (`reference.FamiliarString` less the tag).
fn short_name(reference: &str) -> Result<String, oci::OciError> {
    let n = ImageName::parse(reference)?;
    let explicit_local = reference.starts_with("localhost/");
    let path = n.path();
    let mut s = match n.domain() {
        "localhost" if !explicit_local => path.to_string(),
        "docker.io" => path.strip_prefix("library/").filter(|p| !p.contains('/')).unwrap_or(path).to_string(),
        domain => format!("{domain}/{path}"),
    };
    if let Some(tag) = n.tag().filter(|t| *t != "latest") {
        s.push(':');
        s.push_str(tag);
    }
    if let Some(d) = n.digest() {
        s.push('@');
        s.push_str(&d.to_string());
    }
    Ok(s)
}

/// A directory context: its path and its own `.dockerignore`.
#[derive(Clone, Debug)]
pub(super) struct LocalDir {
    pub path: PathBuf,
    pub ignore: Arc<Ignore>,
}

/// What a named context resolved to for this build.
#[derive(Clone, Debug)]
pub(super) enum ContextSource {
    /// A directory's files (read with `ignore` applied, owned by root when copied).
    Dir(LocalDir),
    /// An image, with its build-cache key (boxed: a state is large and a
    /// directory is not).
    Image(Box<ImageState>),
}

/// The named contexts a build resolved so far, by name: each image is imported or
/// pulled once per build, however many steps name it.
#[derive(Default)]
pub(super) struct Resolved(Mutex<HashMap<String, ContextSource>>);

/// Resolves `name` (as FROM or `--from` wrote it: `alpine` and
/// `docker.io/library/alpine:latest` are one name) to its directory or image;
/// None when no `--build-context` has that name. Errors name the flag. The
/// result is kept for the rest of the build. For `RUN --mount=from=NAME` as much
/// as for COPY: a stage of that name wins, so callers look stages up first (a
/// stage the context replaces is `Stage::context`).
pub(super) fn named_context(b: &Build, name: &str) -> Result<Option<ContextSource>> {
    let Some((key, value)) = b.req.contexts.get(name) else {
        return Ok(None);
    };
    if let Some(done) = b.contexts.0.lock().map_err(|_| anyhow!("named contexts lock poisoned"))?.get(key) {
        return Ok(Some(done.clone()));
    }
    let source = resolve(b, value).with_context(|| format!("--build-context {key}"))?;
    b.contexts.0.lock().map_err(|_| anyhow!("named contexts lock poisoned"))?.insert(key.to_string(), source.clone());
    Ok(Some(source))
}

fn resolve(b: &Build, value: &ContextValue) -> Result<ContextSource> {
    Ok(match value {
        ContextValue::Dir(path) => {
            let file = path.join(".dockerignore");
            let ignore = match super::context::read_to_string(path, &file) {
                Ok(text) => Ignore::parse(&text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
            };
            ContextSource::Dir(LocalDir { path: path.clone(), ignore: Arc::new(ignore) })
        }
        ContextValue::OciLayout { dir, tag, digest } => {
            // The layout's own selection: by tag, or `@DIGEST` for a manifest.
            let tag = match digest {
                Some(d) => Some(format!("@{d}")),
                None => tag.clone(),
            };
            let manifest = transport::import(b.store, &Location::OciDir { path: dir.clone(), tag }, Some(&b.platform))?;
            let mut state = b.store.load_image(&manifest)?;
            base::refuse_other_platform(&format!("oci-layout://{}", dir.display()), &state, &b.platform)?;
            state.cache_key = step_key::key_of(&[&step_key::base_key(&state), &b.platform.to_string()]);
            ContextSource::Image(Box::new(state))
        }
        ContextValue::DockerImage(reference) => {
            ContextSource::Image(Box::new(base::resolve(b.store, reference, &b.req.registry, &b.platform)?))
        }
    })
}

/// The image FROM gets from a named context: an image as it is, a directory as
/// one layer of its files over the empty image, answered from the build cache
/// when the files are unchanged.
pub(super) fn context_image(b: &Build, name: &str, source: ContextSource) -> Result<ImageState> {
    let dir = match source {
        ContextSource::Image(state) => return Ok(*state),
        ContextSource::Dir(dir) => dir,
    };
    let all = super::source_match::matched_paths(&dir.path, &[".".to_string()], &dir.ignore, "FROM")?;
    let digest = content_digest(&dir.path, &all, &dir.ignore, &b.memo)?;
    b.memo.save();
    let format = format!("{:?}/epoch={:?}", b.req.layers.compression, b.req.layers.source_date_epoch);
    let key = step_key::key_of(&["context-dir", &digest, &format]);
    if let Some(hit) = b.cache.get(b.store, &key) {
        return Ok(hit);
    }
    let mut image = ImageState::scratch();
    let owners = b.store.owners.clone();
    let none = Ignore::default();
    // The directory's path names its lineage: an edit inside it keeps the rest of
    // the layer's members.
    let lineage = step_key::key_of(&["context-dir-lineage", &dir.path.to_string_lossy(), &format]);
    let layer = fs_step(b, &image, Some(&lineage), |tree| {
        let opts = CopyOptions {
            own: CopyOwnership::default(),
            source_owners: SourceOwners::Root,
            ignore: &dir.ignore,
            exclude: &none,
            parents: false,
            owners: &owners,
        };
        copy::copy(tree, &dir.path, &[".".to_string()], "/", opts, "FROM")
    })?;
    super::record_step(&mut image, layer, format!("build context {name}"), b.req.layers.source_date_epoch);
    image.cache_key = key.clone();
    b.cache.put(&key, &image);
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_in_buildkit_short_form() {
        for (given, short) in [
            ("alpine", "alpine"),
            ("alpine:latest", "alpine"),
            ("docker.io/library/alpine:latest", "alpine"),
            ("docker.io/user/app", "user/app"),
            ("alpine:3.19", "alpine:3.19"),
            ("localhost/app", "localhost/app"),
            ("quay.io/x/y:1", "quay.io/x/y:1"),
        ] {
            assert_eq!(short_name(given).unwrap(), short, "{given}");
        }
        assert!(short_name("Upper").is_err(), "names are lowercase references");
    }

    #[test]
    fn values_parse_as_buildx_reads_them() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        let (name, value) = parse_one(&format!("docker.io/library/base={dir}")).unwrap();
        assert_eq!((name.as_str(), value), ("base", ContextValue::Dir(d.path().canonicalize().unwrap())));
        assert_eq!(parse_one("img=docker-image://busybox:1").unwrap().1, ContextValue::DockerImage("busybox:1".into()));
        std::fs::write(d.path().join("oci-layout"), "{}").unwrap();
        let canon = d.path().canonicalize().unwrap();
        let layout = |v: &str| parse_one(&format!("x=oci-layout://{v}")).unwrap().1;
        assert_eq!(layout(dir), ContextValue::OciLayout { dir: canon.clone(), tag: Some("latest".into()), digest: None });
        assert_eq!(layout(&format!("{dir}:v1")), ContextValue::OciLayout { dir: canon.clone(), tag: Some("v1".into()), digest: None });
        let hex = "a".repeat(64);
        let digest = Some(oci::Digest::parse(&format!("sha256:{hex}")).unwrap());
        assert_eq!(layout(&format!("{dir}@sha256:{hex}")), ContextValue::OciLayout { dir: canon, tag: None, digest });
    }

    #[test]
    fn bad_values_are_errors_naming_the_flag() {
        let err = |spec: &str| parse_one(spec).unwrap_err().to_string();
        assert!(err("novalue").contains("expected NAME=VALUE"));
        assert!(err("Bad=/tmp").starts_with("--build-context Bad: invalid context name"), "{}", err("Bad=/tmp"));
        assert!(err("x=/no/such/dir/here").contains("/no/such/dir/here"));
        assert!(err("x=/etc/hostname").contains("not a directory"));
        assert!(err("x=https://example.com/repo.git").contains("only a directory"));
        assert!(err("x=docker-image://oci:/tmp/l").contains("expected an image reference"));
        assert!(err("x=oci-layout:///tmp").contains("not an OCI image layout"));
        assert!(err("scratch=/tmp").contains("cannot name a build context"));
    }

    #[test]
    fn lookups_use_the_short_form() {
        let contexts = NamedContexts::parse(&["alpine=docker-image://busybox".to_string()]).unwrap();
        assert_eq!(contexts.get("docker.io/library/alpine:latest").map(|(k, _)| k), Some("alpine"));
        assert_eq!(contexts.get("alpine:3").map(|(k, _)| k), None);
        assert_eq!(contexts.get("oci:/tmp/x"), None);
    }
}
