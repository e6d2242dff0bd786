//! Images between a registry and the local store: pull and push.
//!
//! Every blob streams straight from the socket into the store's temp file (or from
//! the store's file onto the socket) with its digest computed on the way: memory
//! stays flat whatever the layer size, and a blob whose content does not match its
//! digest never enters the store (the error names the blob and the registry, not
//! the temp file). A download cut short leaves no temp file and is fetched again
//! within the retry budget. The manifest goes in last, so the store never names a
//! blob it lacks. A push asks the registry first and skips blobs it has; one it
//! lacks but another repository of the same registry had (see `sources`) is
//! mounted from there.
//!
//! Image indexes: a pull takes one platform's manifest (`pull_for`), or every
//! manifest and then the index (`pull_all`); a push sends each manifest an index
//! lists, by digest, before the index itself.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::io::{BufReader, Read};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::client::Client;
use super::progress::{Counted, Progress};
use super::sources::BlobSources;
use super::{RegistryError, Result};
use crate::oci::{descriptor, descriptor_digest, is_index_descriptor, platform_of, Digest, ImageName, OciError, Store};
use crate::platform::Platform;

const INDEX_TYPES: [&str; 2] = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/// The repository path and the tag or digest to ask the registry for.
fn repo_and_reference(name: &ImageName) -> (String, String) {
    let reference = match (name.digest(), name.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    (name.path().to_string(), reference)
}

/// Pulls `name` (for this host's platform, when it is an index) into `store` and
/// returns the manifest's descriptor; tagging is the caller's. `progress` is told
/// of every blob and its bytes.
pub fn pull(store: &Store, client: &Client, name: &ImageName, progress: &dyn Progress) -> Result<Descriptor> {
    pull_for(store, client, name, None, progress)
}

/// [`pull`] of `platform`'s manifest (default: the host's) when `name` is an
/// index. The stored manifest is the registry's, byte for byte, so its digest is
/// the one the index lists.
pub fn pull_for(
    store: &Store,
    client: &Client,
    name: &ImageName,
    platform: Option<&Platform>,
    progress: &dyn Progress,
) -> Result<Descriptor> {
    let (repo, reference) = repo_and_reference(name);
    let mut fetched = client.get_manifest(&repo, &reference)?;
    if INDEX_TYPES.contains(&fetched.media_type.as_str()) || is_index_json(&fetched.bytes) {
        let index: ImageIndex = serde_json::from_slice(&fetched.bytes).map_err(|e| bad(name, format!("index: {e}")))?;
        let wanted = platform.cloned().unwrap_or_else(Platform::host);
        let chosen = index.manifests().iter().find(|d| platform_of(d).is_some_and(|p| wanted.matches(&p))).ok_or_else(|| {
            RegistryError::NoPlatform {
                wanted: wanted.to_string(),
                available: index.manifests().iter().filter_map(|d| d.platform().as_ref()).map(platform_name).collect(),
            }
        })?;
        let digest = descriptor_digest(chosen)?;
        progress.line(&format!("Resolved {wanted} to {digest}"));
        fetched = client.get_manifest(&repo, &digest.to_string())?;
    }
    let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes).map_err(|e| bad(name, format!("manifest: {e}")))?;
    let sources = BlobSources::of(store);
    for blob in manifest.layers().iter().chain(std::iter::once(manifest.config())) {
        let digest = descriptor_digest(blob)?;
        if store.has_blob(&digest) {
            progress.line(&format!("Copying blob {} skipped: already exists", digest.short()));
        } else {
            let bar = progress.blob(&digest, blob.size());
            let notice = |line: &str| progress.line(line);
            client.fetch_blob(&repo, &digest, &notice, |body| {
                // A retried download starts from the first byte again.
                bar.restart();
                let body = BufReader::with_capacity(1 << 20, Counted::new(body, bar.as_ref()));
                store.put_blob_verified(body, &digest, Some(blob.size())).map_err(|e| from_registry(e, client, &repo))
            })?;
            bar.finish();
        }
        sources.note(&digest, client.registry(), &repo);
    }
    let size = fetched.bytes.len() as u64;
    store.put_blob_verified(&fetched.bytes[..], &fetched.digest, Some(size))?;
    let media_type = if fetched.media_type.is_empty() {
        manifest.media_type().as_ref().map(ToString::to_string).unwrap_or_else(|| crate::oci::MEDIA_TYPE_MANIFEST.to_string())
    } else {
        fetched.media_type.clone()
    };
    progress.line(&format!("Writing manifest {}", fetched.digest));
    Ok(descriptor(&media_type, &fetched.digest, size))
}

/// [`pull_for`], then names the image in the store as it was pulled (`name:tag`); a
/// pull by digest stays unnamed, as podman keeps it.
pub fn pull_into_store(
    store: &Store,
    client: &Client,
    name: &ImageName,
    platform: Option<&Platform>,
    progress: &dyn Progress,
) -> Result<Descriptor> {
    let manifest = pull_for(store, client, name, platform, progress)?;
    name_pulled(store, name, &manifest)?;
    Ok(manifest)
}

/// Names what was pulled as `name` (a pull by digest stays unnamed, as podman
/// keeps it).
pub fn name_pulled(store: &Store, name: &ImageName, pulled: &Descriptor) -> Result<()> {
    if name.digest().is_none() {
        store.tag(name, pulled)?;
    } else {
        store.add_unnamed(pulled)?;
    }
    Ok(())
}

/// `pull --all-platforms`: every manifest of the index `name` names, each as
/// [`pull_for`] pulls it, then the index itself, byte for byte, as `skopeo copy
/// --all` copies it; returns the index's descriptor. A name that is one image is
/// pulled as [`pull`] pulls it.
pub fn pull_all(store: &Store, client: &Client, name: &ImageName, progress: &dyn Progress) -> Result<Descriptor> {
    let (repo, reference) = repo_and_reference(name);
    let fetched = client.get_manifest(&repo, &reference)?;
    if !INDEX_TYPES.contains(&fetched.media_type.as_str()) && !is_index_json(&fetched.bytes) {
        return pull_for(store, client, name, None, progress);
    }
    let index: ImageIndex = serde_json::from_slice(&fetched.bytes).map_err(|e| bad(name, format!("index: {e}")))?;
    for entry in index.manifests() {
        if is_index_descriptor(entry) {
            return Err(bad(name, format!("the index lists another index {}: nested indexes are not pulled", entry.digest())));
        }
        let one = ImageName::parse(&format!("{}/{repo}@{}", name.domain(), entry.digest()))?;
        pull_for(store, client, &one, None, progress)?;
    }
    let size = fetched.bytes.len() as u64;
    store.put_blob_verified(&fetched.bytes[..], &fetched.digest, Some(size))?;
    let media_type = match fetched.media_type.as_str() {
        "" => index.media_type().as_ref().map_or_else(|| crate::oci::MEDIA_TYPE_INDEX.to_string(), ToString::to_string),
        known => known.to_string(),
    };
    progress.line(&format!("Writing manifest list {}", fetched.digest));
    Ok(descriptor(&media_type, &fetched.digest, size))
}

/// The store's verdict on a downloaded blob, said about the registry it came from:
/// the store path a mismatch names was never written.
fn from_registry(e: OciError, client: &Client, repo: &str) -> RegistryError {
    let (registry, repo) = (client.registry().to_string(), repo.to_string());
    match e {
        OciError::DigestMismatch { expected, found, .. } => RegistryError::BlobDigest { registry, repo, digest: expected, found },
        OciError::SizeMismatch { digest, expected, found } => RegistryError::BlobSize { registry, repo, digest, expected, found },
        other => other.into(),
    }
}

/// `linux/arm64/v8`, as podman names platforms.
fn platform_name(p: &oci_spec::image::Platform) -> String {
    match p.variant() {
        Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
        None => format!("{}/{}", p.os(), p.architecture()),
    }
}

/// Pulls the first of a short name's `candidates` that can be pulled, trying them
/// in order, and names it in the store as pulled. `connect` makes the client for a
/// registry. One candidate fails with its own error; several with every one tried
/// and what it answered, as podman reports them.
pub fn pull_first(
    store: &Store,
    short: &str,
    candidates: &[ImageName],
    connect: &dyn Fn(&str) -> Result<Client>,
    platform: Option<&Platform>,
    progress: &dyn Progress,
) -> Result<(ImageName, Descriptor)> {
    let mut tried = Vec::new();
    for name in candidates {
        progress.line(&format!("Trying to pull {name}..."));
        match connect(name.domain()).and_then(|client| pull_into_store(store, &client, name, platform, progress)) {
            Ok(manifest) => return Ok((name.clone(), manifest)),
            Err(e) if candidates.len() == 1 => return Err(e),
            Err(e) => tried.push((name.to_string(), super::describe(&e))),
        }
    }
    Err(RegistryError::ShortNameNotFound { name: short.to_string(), tried })
}

fn is_index_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| v.get("manifests").is_some() && v.get("layers").is_none())
}

fn bad(name: &ImageName, reason: String) -> RegistryError {
    RegistryError::Protocol { what: name.to_string(), reason }
}

/// What a push did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    pub uploaded: usize,
    /// Blobs the registry linked from another of its repositories.
    pub mounted: usize,
    pub skipped: usize,
    pub manifest: Option<Digest>,
}

/// Pushes the stored image `manifest` to `dest` on `client`'s registry; an image
/// index goes with every manifest it lists (see [`push_known`]).
pub fn push(store: &Store, client: &Client, manifest: &Descriptor, dest: &ImageName, progress: &dyn Progress) -> Result<PushReport> {
    push_known(store, client, manifest, dest, &mut HashSet::new(), progress)
}

/// [`push`] for several images to one repository: `known` holds the blobs already
/// there (checked or uploaded by an earlier call), which are not asked about again.
/// An image index is pushed as `podman manifest push --all` pushes it: each
/// manifest with its blobs, by digest, then the index under `dest`'s tag, so the
/// registry never holds an index naming a manifest it lacks.
pub fn push_known(
    store: &Store,
    client: &Client,
    manifest: &Descriptor,
    dest: &ImageName,
    known: &mut HashSet<Digest>,
    progress: &dyn Progress,
) -> Result<PushReport> {
    let (repo, reference) = repo_and_reference(dest);
    let mut report = PushReport::default();
    if is_index_descriptor(manifest) {
        let index = store.read_image_index(&descriptor_digest(manifest)?)?;
        for entry in index.manifests() {
            if is_index_descriptor(entry) {
                return Err(bad(
                    dest,
                    format!("index {} lists another index {}: nested indexes are not pushed", manifest.digest(), entry.digest()),
                ));
            }
            let digest = descriptor_digest(entry)?;
            push_blobs(store, client, &repo, &digest, known, &mut report, progress)?;
            put_stored_manifest(store, client, &repo, &digest.to_string(), entry, progress)?;
        }
    } else {
        push_blobs(store, client, &repo, &descriptor_digest(manifest)?, known, &mut report, progress)?;
    }
    report.manifest = Some(put_stored_manifest(store, client, &repo, &reference, manifest, progress)?);
    Ok(report)
}

/// `manifest push --all=false`: only the stored index `index`, under `dest`; the
/// registry must already hold every manifest it lists.
pub fn push_index_only(store: &Store, client: &Client, index: &Descriptor, dest: &ImageName, progress: &dyn Progress) -> Result<Digest> {
    let (repo, reference) = repo_and_reference(dest);
    put_stored_manifest(store, client, &repo, &reference, index, progress)
}

/// Sends the stored manifest or index `desc` to `repo` under `reference` (a tag
/// or its digest), as stored, byte for byte; returns its digest.
fn put_stored_manifest(
    store: &Store,
    client: &Client,
    repo: &str,
    reference: &str,
    desc: &Descriptor,
    progress: &dyn Progress,
) -> Result<Digest> {
    let digest = descriptor_digest(desc)?;
    let mut bytes = Vec::new();
    store.open_blob(&digest)?.read_to_end(&mut bytes).map_err(|source| RegistryError::Io {
        op: "read",
        path: store.blob_path(&digest),
        source,
    })?;
    client.put_manifest(repo, reference, &bytes, desc.media_type().as_ref())?;
    progress.line(&format!("Writing manifest {digest} to {}/{repo}:{reference}", client.registry()));
    Ok(digest)
}

/// Sends the layers and config of the stored manifest `digest` that `repo` lacks.
fn push_blobs(
    store: &Store,
    client: &Client,
    repo: &str,
    digest: &Digest,
    known: &mut HashSet<Digest>,
    report: &mut PushReport,
    progress: &dyn Progress,
) -> Result<()> {
    let m = store.read_manifest(digest)?;
    let sources = BlobSources::of(store);
    for blob in m.layers().iter().chain(std::iter::once(m.config())) {
        let d = descriptor_digest(blob)?;
        if known.contains(&d) || client.has_blob(repo, &d)? {
            progress.line(&format!("Copying blob {} skipped: already exists", d.short()));
            report.skipped += 1;
        } else {
            // Another repository of this registry that had the blob: the registry can
            // link it there instead of receiving it again (it falls back to an upload
            // when it cannot, e.g. without read access to that repository).
            let seen = sources.of_blob(&d);
            let mount_from = seen.iter().find(|(r, p)| r == client.registry() && p != repo).map(|(_, p)| p.as_str());
            // The bar starts with the upload (a mount sends nothing); the body is
            // re-opened for every attempt, so a retry starts from the first byte.
            let bar = OnceCell::new();
            let mut open = || -> Result<Box<dyn Read + '_>> {
                let bar = bar.get_or_init(|| progress.blob(&d, blob.size()));
                bar.restart();
                Ok(Box::new(Counted::new(BufReader::with_capacity(1 << 20, store.open_blob(&d)?), bar.as_ref())))
            };
            let notice = |line: &str| progress.line(line);
            if client.upload_blob(repo, &d, blob.size(), mount_from, &mut open, &notice)? {
                bar.get().inspect(|b| b.finish());
                report.uploaded += 1;
            } else {
                progress.line(&format!("Copying blob {} skipped: mounted from {}", d.short(), mount_from.unwrap_or_default()));
                report.mounted += 1;
            }
        }
        sources.note(&d, client.registry(), repo);
        known.insert(d);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tls::TlsOptions;

    #[test]
    fn a_bad_download_is_named_by_its_registry() {
        let client = Client::new("127.0.0.1:5000", &TlsOptions::default(), None).unwrap();
        let (expected, found) = (Digest::of_bytes(b"right"), Digest::of_bytes(b"wrong"));
        let e = OciError::DigestMismatch { path: "/store/blobs/sha256/x".into(), expected: expected.clone(), found: found.clone() };
        assert_eq!(
            from_registry(e, &client, "e2e/a").to_string(),
            format!("blob {expected} from 127.0.0.1:5000/e2e/a: content has digest {found}")
        );
        let e = OciError::SizeMismatch { digest: expected.clone(), expected: 5, found: 4 };
        assert_eq!(
            from_registry(e, &client, "e2e/a").to_string(),
            format!("blob {expected} from 127.0.0.1:5000/e2e/a: 4 bytes, the manifest says 5")
        );
    }

    #[test]
    fn a_missing_platform_names_the_ones_there_are() {
        let e = RegistryError::NoPlatform { wanted: "linux/amd64".into(), available: vec!["linux/arm64/v8".into(), "linux/s390x".into()] };
        assert_eq!(e.to_string(), "the image index has no manifest for linux/amd64, only for linux/arm64/v8, linux/s390x");
    }
}
