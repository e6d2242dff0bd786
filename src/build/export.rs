//! Transport references (`oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `docker-archive:FILE[:NAME[:TAG]]`, `dir:PATH`) and `--output`.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::workspace::Workspace;
use crate::oci;

/// An image location outside the store, as skopeo spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
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

impl Destination {
    /// Parses an output: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
    /// `docker-archive:FILE[:NAME[:TAG]]`, `dir:PATH`, BuildKit's
    /// `type=local|oci|docker,dest=PATH[,name=NAME]`, or a bare PATH (docker's
    /// `-o PATH`: the files).
    pub fn parse(reference: &str) -> Result<Destination> {
        if reference.starts_with("type=") {
            return parse_buildkit_output(reference);
        }
        match Self::parse_transport(reference) {
            Some(d) => d,
            None if !reference.is_empty() && !reference.contains(':') => Ok(Destination::RootfsDir { path: reference.into() }),
            None => bail!(
                "unsupported output {reference:?}: use oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME[:TAG]], dir:PATH or type=local,dest=PATH"
            ),
        }
    }

    /// Like [`Destination::parse`], but `None` when `reference` names no transport
    /// (it is then an image name).
    pub fn parse_transport(reference: &str) -> Option<Result<Destination>> {
        let (kind, rest) = reference.split_once(':')?;
        let d = match kind {
            "oci" | "oci-archive" => {
                let (path, tag) = split_path_tag(rest);
                if kind == "oci" {
                    Destination::OciDir { path, tag }
                } else {
                    Destination::OciArchive { path, tag }
                }
            }
            // As skopeo reads it: the path ends at the first colon, since the image
            // reference after it has a colon of its own.
            "docker-archive" => match rest.split_once(':') {
                Some((path, r)) if !r.is_empty() => Destination::DockerArchive { path: path.into(), reference: Some(r.to_string()) },
                _ => Destination::DockerArchive { path: rest.trim_end_matches(':').into(), reference: None },
            },
            "dir" => Destination::RootfsDir { path: rest.into() },
            "docker" if rest.starts_with("//") => Destination::Registry { path: rest.trim_start_matches('/').into() },
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
            Destination::OciDir { path, .. }
            | Destination::OciArchive { path, .. }
            | Destination::DockerArchive { path, .. }
            | Destination::RootfsDir { path }
            | Destination::Registry { path } => path,
        }
    }

    /// The tag or image reference after the path, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Destination::OciDir { tag, .. } | Destination::OciArchive { tag, .. } => tag.as_deref(),
            Destination::DockerArchive { reference, .. } => reference.as_deref(),
            Destination::RootfsDir { .. } | Destination::Registry { .. } => None,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, path, tag) = match self {
            Destination::OciDir { path, tag } => ("oci", path, tag),
            Destination::OciArchive { path, tag } => ("oci-archive", path, tag),
            Destination::DockerArchive { path, reference } => ("docker-archive", path, reference),
            Destination::RootfsDir { path } => ("dir", path, &None),
            Destination::Registry { path } => return write!(f, "docker://{}", path.display()),
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

/// Writes the stored image `manifest` to `dest`. An oci layout names it by the
/// destination's tag, else by `name`'s tag (the build's first -t); a docker-archive by
/// the destination's reference, else by `name` in full.
pub fn export(ws: &Workspace, manifest: &oci::Descriptor, dest: &Destination, name: Option<&oci::ImageName>) -> Result<()> {
    let default_tag = name.and_then(|n| n.tag().map(str::to_string));
    let tag = dest.tag().or(default_tag.as_deref());
    let store = &ws.store;
    match dest {
        Destination::RootfsDir { path } => export_rootfs(ws, manifest, path),
        Destination::Registry { path } => {
            let name =
                oci::ImageName::parse(&path.to_string_lossy()).with_context(|| format!("invalid registry reference {}", path.display()))?;
            let client = crate::registry::connect(name.domain(), &ws.tls)?;
            let progress = crate::report::transfer_progress(ws.transfer_view);
            crate::registry::transfer::push(store, &client, manifest, &name, progress.as_ref()).map(drop).map_err(anyhow::Error::from)
        }
        Destination::OciDir { path, .. } => Ok(oci::export_oci_dir(store, manifest, path, tag)?),
        Destination::OciArchive { path, .. } => Ok(oci::export_oci_archive(store, manifest, path, tag)?),
        Destination::DockerArchive { path, reference } => {
            let tags = docker_repo_tags(reference.as_deref(), name)?;
            oci::export_docker_archive(store, manifest, path, &tags).map_err(anyhow::Error::from)
        }
    }
    .with_context(|| format!("exporting to {dest}"))
}

/// Writes the image's files into `path` (missing or empty), all owned by the user who
/// runs strata (container root here), as BuildKit's local exporter gives them.
fn export_rootfs(ws: &Workspace, manifest: &oci::Descriptor, path: &Path) -> Result<()> {
    if path.exists() && std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?.next().is_some() {
        bail!("output directory {} is not empty", path.display());
    }
    let image = ws.load_image(manifest)?;
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    ws.flatten_image(&image, path)?;
    // Subordinate owners would leave files the user cannot remove: hand them all over.
    for entry in walkdir::WalkDir::new(path).follow_links(false) {
        let entry = entry.with_context(|| format!("walking {}", path.display()))?;
        std::os::unix::fs::lchown(entry.path(), Some(0), Some(0)).with_context(|| format!("chown {}", entry.path().display()))?;
    }
    Ok(())
}

/// BuildKit's `--output type=TYPE,dest=PATH[,name=NAME]`.
fn parse_buildkit_output(spec: &str) -> Result<Destination> {
    let mut fields = std::collections::HashMap::new();
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').with_context(|| format!("output {spec:?}: {part:?} is not KEY=VALUE"))?;
        fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let dest = fields.get("dest").filter(|d| !d.is_empty()).with_context(|| format!("output {spec:?}: dest=PATH is missing"))?;
    let path = PathBuf::from(dest);
    Ok(match fields["type"].as_str() {
        "local" => Destination::RootfsDir { path },
        "oci" => Destination::OciArchive { path, tag: fields.get("name").cloned() },
        "docker" => Destination::DockerArchive { path, reference: fields.get("name").cloned() },
        other => bail!("output {spec:?}: type {other:?} is not supported (use local, oci or docker)"),
    })
}

/// The RepoTags of a docker-archive: the reference given with the destination, else
/// the image's own name, normalised as podman shows names (`localhost/hello:latest`).
pub fn docker_repo_tags(reference: Option<&str>, name: Option<&oci::ImageName>) -> Result<Vec<String>> {
    match (reference, name) {
        (Some(r), _) => {
            let n = oci::ImageName::parse(r).with_context(|| format!("invalid docker-archive reference {r:?}"))?;
            if n.digest().is_some() {
                bail!("docker-archive reference {r:?}: a digest cannot name an image in an archive");
            }
            Ok(vec![n.to_string()])
        }
        (None, Some(n)) => Ok(vec![n.to_string()]),
        (None, None) => Ok(Vec::new()),
    }
}

/// Copies the image at `source` into the store and returns its manifest descriptor.
pub fn import(ws: &Workspace, source: &Destination) -> Result<oci::Descriptor> {
    match source {
        Destination::OciDir { path, tag } => oci::import_oci_dir(&ws.store, path, tag.as_deref()),
        Destination::OciArchive { path, tag } => oci::import_oci_archive(&ws.store, path, tag.as_deref()),
        Destination::DockerArchive { path, reference } => oci::load_archive(&ws.store, path, reference.as_deref()).map(|l| l.manifest),
        Destination::RootfsDir { path } => {
            bail!("dir:{} is an output only: an image cannot start from a plain directory", path.display())
        }
        Destination::Registry { path } => bail!("FROM docker://{}: name the image without docker:// to pull it", path.display()),
    }
    .with_context(|| format!("importing {source}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_references_split_path_and_tag() {
        assert_eq!(Destination::parse("oci:/tmp/x:v1").unwrap(), Destination::OciDir { path: "/tmp/x".into(), tag: Some("v1".into()) });
        assert_eq!(Destination::parse("oci-archive:/tmp/x.tar").unwrap(), Destination::OciArchive { path: "/tmp/x.tar".into(), tag: None });
        assert_eq!(Destination::parse("oci:rel/dir").unwrap().tag(), None);
        assert!(Destination::parse("tar:/x").is_err());
        assert!(Destination::parse_transport("busybox:latest").is_none());
        assert!(Destination::parse_transport("localhost/busybox").is_none());
        assert_eq!(
            Destination::parse("docker-archive:/tmp/x.tar:hello:v1").unwrap(),
            Destination::DockerArchive { path: "/tmp/x.tar".into(), reference: Some("hello:v1".into()) }
        );
        assert_eq!(
            Destination::parse("docker-archive:x.tar").unwrap(),
            Destination::DockerArchive { path: "x.tar".into(), reference: None }
        );
        assert_eq!(Destination::parse("docker-archive:x.tar:@1").unwrap().tag(), Some("@1"));
        assert_eq!(Destination::parse("dir:/tmp/out").unwrap(), Destination::RootfsDir { path: "/tmp/out".into() });
        assert_eq!(Destination::parse("out").unwrap(), Destination::RootfsDir { path: "out".into() });
        assert_eq!(Destination::parse("type=local,dest=o").unwrap(), Destination::RootfsDir { path: "o".into() });
        assert_eq!(
            Destination::parse("type=docker,dest=i.tar,name=hello:v2").unwrap(),
            Destination::DockerArchive { path: "i.tar".into(), reference: Some("hello:v2".into()) }
        );
        assert!(Destination::parse("type=registry,dest=x").is_err());
        assert!(Destination::parse("type=local").is_err());
        let pushed = Destination::parse("docker://127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(pushed, Destination::Registry { path: "127.0.0.1:5000/team/app:v1".into() });
        assert_eq!(pushed.to_string(), "docker://127.0.0.1:5000/team/app:v1");
    }
}
