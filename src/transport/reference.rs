//! Image locations outside the store, as skopeo spells them (`oci:DIR[:TAG]`,
//! `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:NAME[:TAG]]`, `dir:PATH`,
//! `docker://NAME`), and BuildKit's `--output type=...` form. One type for both
//! directions: FROM and `--from` import from one, `--output` exports to one.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// An image location outside the store, as skopeo spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    OciDir {
        path: PathBuf,
        tag: Option<String>,
    },
    OciArchive {
        path: PathBuf,
        tag: Option<String>,
    },
    /// `docker save`'s format; `reference` is a name (`hello:v1`) or, on import, `@N`.
    DockerArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    /// The image's root filesystem as plain files, owned by the user (`dir:PATH`,
    /// BuildKit's `type=local,dest=PATH`, docker's `-o PATH`); an output only.
    RootfsDir {
        path: PathBuf,
    },
    /// A registry (`docker://REGISTRY/REPOSITORY[:TAG]`); `path` holds the reference.
    Registry {
        path: PathBuf,
    },
}

impl Location {
    /// Parses an output: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
    /// `docker-archive:FILE[:NAME[:TAG]]`, `dir:PATH`, BuildKit's
    /// `type=local|oci|docker,dest=PATH[,name=NAME]`, or a bare PATH (docker's
    /// `-o PATH`: the files).
    pub fn parse(reference: &str) -> Result<Location> {
        if reference.starts_with("type=") {
            return parse_buildkit_output(reference);
        }
        match Self::parse_transport(reference) {
            Some(d) => d,
            None if !reference.is_empty() && !reference.contains(':') => Ok(Location::RootfsDir { path: reference.into() }),
            None => bail!(
                "unsupported output {reference:?}: use oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME[:TAG]], dir:PATH or type=local,dest=PATH"
            ),
        }
    }

    /// Like [`Location::parse`], but `None` when `reference` names no transport
    /// (it is then an image name).
    pub fn parse_transport(reference: &str) -> Option<Result<Location>> {
        let (kind, rest) = reference.split_once(':')?;
        let d = match kind {
            "oci" | "oci-archive" => {
                let (path, tag) = split_path_tag(rest);
                if kind == "oci" {
                    Location::OciDir { path, tag }
                } else {
                    Location::OciArchive { path, tag }
                }
            }
            // As skopeo reads it: the path ends at the first colon, since the image
            // reference after it has a colon of its own.
            "docker-archive" => match rest.split_once(':') {
                Some((path, r)) if !r.is_empty() => Location::DockerArchive { path: path.into(), reference: Some(r.to_string()) },
                _ => Location::DockerArchive { path: rest.trim_end_matches(':').into(), reference: None },
            },
            "dir" => Location::RootfsDir { path: rest.into() },
            "docker" if rest.starts_with("//") => Location::Registry { path: rest.trim_start_matches('/').into() },
            "docker" | "containers-storage" | "docker-daemon" => {
                return Some(Err(anyhow::anyhow!("transport {kind}: is not supported yet (use oci:, oci-archive: or docker-archive:)")))
            }
            _ => return None,
        };
        if d.path().as_os_str().is_empty() {
            return Some(Err(anyhow::anyhow!("{reference:?}: missing path")));
        }
        Some(Ok(d))
    }

    pub fn path(&self) -> &Path {
        match self {
            Location::OciDir { path, .. }
            | Location::OciArchive { path, .. }
            | Location::DockerArchive { path, .. }
            | Location::RootfsDir { path }
            | Location::Registry { path } => path,
        }
    }

    /// The tag or image reference after the path, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Location::OciDir { tag, .. } | Location::OciArchive { tag, .. } => tag.as_deref(),
            Location::DockerArchive { reference, .. } => reference.as_deref(),
            Location::RootfsDir { .. } | Location::Registry { .. } => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, path, tag) = match self {
            Location::OciDir { path, tag } => ("oci", path, tag),
            Location::OciArchive { path, tag } => ("oci-archive", path, tag),
            Location::DockerArchive { path, reference } => ("docker-archive", path, reference),
            Location::RootfsDir { path } => ("dir", path, &None),
            Location::Registry { path } => return write!(f, "docker://{}", path.display()),
        };
        write!(f, "{kind}:{}", path.display())?;
        if let Some(t) = tag {
            write!(f, ":{t}")?;
        }
        Ok(())
    }
}

/// `PATH[:TAG]`: the tag is what follows the last colon, unless that would leave a
/// path that ends in '/' or a tag that contains '/' (then it is all path).
fn split_path_tag(rest: &str) -> (PathBuf, Option<String>) {
    match rest.rsplit_once(':') {
        Some((p, t)) if !t.is_empty() && !t.contains('/') && !p.is_empty() => (PathBuf::from(p), Some(t.to_string())),
        _ => (PathBuf::from(rest), None),
    }
}

/// BuildKit's `--output type=TYPE,dest=PATH[,name=NAME]`.
fn parse_buildkit_output(spec: &str) -> Result<Location> {
    let mut fields = std::collections::HashMap::new();
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').with_context(|| format!("output {spec:?}: {part:?} is not KEY=VALUE"))?;
        fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let dest = fields.get("dest").filter(|d| !d.is_empty()).with_context(|| format!("output {spec:?}: dest=PATH is missing"))?;
    let path = PathBuf::from(dest);
    Ok(match fields["type"].as_str() {
        "local" => Location::RootfsDir { path },
        "oci" => Location::OciArchive { path, tag: fields.get("name").cloned() },
        "docker" => Location::DockerArchive { path, reference: fields.get("name").cloned() },
        other => bail!("output {spec:?}: type {other:?} is not supported (use local, oci or docker)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_references_split_path_and_tag() {
        assert_eq!(Location::parse("oci:/tmp/x:v1").unwrap(), Location::OciDir { path: "/tmp/x".into(), tag: Some("v1".into()) });
        assert_eq!(Location::parse("oci-archive:/tmp/x.tar").unwrap(), Location::OciArchive { path: "/tmp/x.tar".into(), tag: None });
        assert_eq!(Location::parse("oci:rel/dir").unwrap().tag(), None);
        assert!(Location::parse("tar:/x").is_err());
        assert!(Location::parse_transport("busybox:latest").is_none());
        assert!(Location::parse_transport("localhost/busybox").is_none());
        assert_eq!(
            Location::parse("docker-archive:/tmp/x.tar:hello:v1").unwrap(),
            Location::DockerArchive { path: "/tmp/x.tar".into(), reference: Some("hello:v1".into()) }
        );
        assert_eq!(Location::parse("docker-archive:x.tar").unwrap(), Location::DockerArchive { path: "x.tar".into(), reference: None });
        assert_eq!(Location::parse("docker-archive:x.tar:@1").unwrap().tag(), Some("@1"));
        assert_eq!(Location::parse("dir:/tmp/out").unwrap(), Location::RootfsDir { path: "/tmp/out".into() });
        assert_eq!(Location::parse("out").unwrap(), Location::RootfsDir { path: "out".into() });
        assert_eq!(Location::parse("type=local,dest=o").unwrap(), Location::RootfsDir { path: "o".into() });
        assert_eq!(
            Location::parse("type=docker,dest=i.tar,name=hello:v2").unwrap(),
            Location::DockerArchive { path: "i.tar".into(), reference: Some("hello:v2".into()) }
        );
        assert!(Location::parse("type=registry,dest=x").is_err());
        assert!(Location::parse("type=local").is_err());
        let pushed = Location::parse("docker://127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(pushed, Location::Registry { path: "127.0.0.1:5000/team/app:v1".into() });
        assert_eq!(pushed.to_string(), "docker://127.0.0.1:5000/team/app:v1");
    }
}
