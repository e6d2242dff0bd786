//! Transport references (`oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`) and `--output`.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::workspace::Workspace;
use crate::oci;

/// An image location outside the store, as skopeo spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    OciDir { path: PathBuf, tag: Option<String> },
    OciArchive { path: PathBuf, tag: Option<String> },
}

impl Destination {
    /// Parses `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]`.
    pub fn parse(reference: &str) -> Result<Destination> {
        match Self::parse_transport(reference) {
            Some(d) => d,
            None => bail!("unsupported output {reference:?}: use oci:DIR[:TAG] or oci-archive:FILE[:TAG]"),
        }
    }

    /// Like [`Destination::parse`], but `None` when `reference` names no transport
    /// (it is then an image name).
    pub fn parse_transport(reference: &str) -> Option<Result<Destination>> {
        let (kind, rest) = reference.split_once(':')?;
        let (path, tag) = split_path_tag(rest);
        let d = match kind {
            "oci" => Destination::OciDir { path, tag },
            "oci-archive" => Destination::OciArchive { path, tag },
            "docker-archive" | "docker" | "dir" | "containers-storage" | "docker-daemon" => {
                return Some(Err(anyhow::anyhow!("transport {kind}: is not supported yet (use oci: or oci-archive:)")))
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
            Destination::OciDir { path, .. } | Destination::OciArchive { path, .. } => path,
        }
    }

    pub fn tag(&self) -> Option<&str> {
        match self {
            Destination::OciDir { tag, .. } | Destination::OciArchive { tag, .. } => tag.as_deref(),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, path, tag) = match self {
            Destination::OciDir { path, tag } => ("oci", path, tag),
            Destination::OciArchive { path, tag } => ("oci-archive", path, tag),
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

/// Writes the stored image `manifest` to `dest`; the ref name is the destination's
/// tag, else `default_tag` (the build's first -t tag).
pub fn export(ws: &Workspace, manifest: &oci::Descriptor, dest: &Destination, default_tag: Option<&str>) -> Result<()> {
    let tag = dest.tag().or(default_tag);
    match dest {
        Destination::OciDir { path, .. } => oci::export_oci_dir(&ws.store, manifest, path, tag),
        Destination::OciArchive { path, .. } => oci::export_oci_archive(&ws.store, manifest, path, tag),
    }
    .with_context(|| format!("exporting to {dest}"))
}

/// Copies the image at `source` into the store and returns its manifest descriptor.
pub fn import(ws: &Workspace, source: &Destination) -> Result<oci::Descriptor> {
    match source {
        Destination::OciDir { path, tag } => oci::import_oci_dir(&ws.store, path, tag.as_deref()),
        Destination::OciArchive { path, tag } => oci::import_oci_archive(&ws.store, path, tag.as_deref()),
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
    }
}
