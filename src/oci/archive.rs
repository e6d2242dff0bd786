//! Import and export of images as `oci:` directories and `oci-archive:` tarballs
//! (`docker_archive` reuses the tar helpers here for docker's format).
//!
//! Export writes what `skopeo copy … oci:DIR:TAG` writes: the image's blobs plus an
//! index entry whose `org.opencontainers.image.ref.name` is the bare tag (`save
//! --format oci-archive` passes the whole name instead, as podman does). An oci-archive
//! is a plain tar of such a layout, streamed blob by blob from the store into a temp
//! file that is renamed into place, so a reader never sees half an archive.
//!
//! Import verifies every blob against its descriptor before it enters the store, so a
//! damaged or hostile layout can waste time but never plant a blob under a false name.
//! Archive members are extracted only as plain files and directories below a private
//! temp dir; absolute paths, `..` and links are refused outright.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::de::DeserializeOwned;

use super::image::{descriptor_digest, host_manifest, ANNOTATION_REF_NAME};
use super::store::{is_index, is_manifest, ref_name_of, PUBLIC};
use super::{Digest, HashingReader, ImageName, OciError, Result, Store};
use crate::durable;
use crate::platform::Platform;

/// Indexes nested deeper than this are refused rather than followed forever.
const MAX_INDEX_DEPTH: usize = 4;

/// How blobs travel from a source layout into the store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Transfer {
    /// The source belongs to someone else: copy (and verify while copying).
    Copy,
    /// The source is our private extraction dir: hash in place, then rename.
    Move,
}

/// Adds the image behind `manifest` to the OCI layout at `dest_dir` (created if
/// missing), naming it `ref_name` in the layout's index (replacing an entry of that
/// name), or adding it unnamed.
pub fn export_oci_dir(store: &Store, manifest: &Descriptor, dest_dir: &Path, ref_name: Option<&str>) -> Result<()> {
    let dest = Store::open(dest_dir)?;
    for (digest, size) in image_blobs(store, manifest)? {
        if !dest.has_blob(&digest) {
            dest.put_blob_verified(store.open_blob(&digest)?, &digest, Some(size))?;
        }
    }
    let entry = plain_descriptor(manifest);
    match ref_name {
        Some(name) => dest.set_ref_name(name, &entry),
        None => dest.add_unnamed(&entry),
    }
}

/// Writes the image behind `manifest` as an uncompressed oci-archive tar at `dest_file`
/// (temp file, fsync, rename: a reader never sees half an archive).
pub fn export_oci_archive(store: &Store, manifest: &Descriptor, dest_file: &Path, ref_name: Option<&str>) -> Result<()> {
    let tmp = tar_temp_file(dest_file)?;
    let tmp_path = tmp.path().to_path_buf();
    let buf = write_oci_archive(store, manifest, BufWriter::with_capacity(256 * 1024, tmp), ref_name, &tmp_path)?;
    let tmp = buf.into_inner().map_err(|e| OciError::io("write archive", &tmp_path)(e.into_error()))?;
    finish_tar_file(tmp, dest_file)
}

/// Streams the oci-archive of `manifest` into `out` (a file or standard output);
/// `label` names the destination in errors.
pub fn write_oci_archive<W: Write>(store: &Store, manifest: &Descriptor, out: W, ref_name: Option<&str>, label: &Path) -> Result<W> {
    let blobs = image_blobs(store, manifest)?;
    let mut entry = plain_descriptor(manifest);
    if let Some(name) = ref_name {
        entry.set_annotations(Some([(ANNOTATION_REF_NAME.to_string(), name.to_string())].into()));
    }
    let mut index = ImageIndex::default();
    index.set_manifests(vec![entry]);
    let index_json = serde_json::to_vec(&index).map_err(|source| OciError::Serialize { what: "index.json", source })?;

    let io_err = || OciError::io("write archive", label);
    let mut tar = tar::Builder::new(out);
    for dir in ["blobs/", "blobs/sha256/"] {
        let h = header(dir, tar::EntryType::Directory, 0o755, 0);
        tar.append(&h, io::empty()).map_err(io_err())?;
    }
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let h = header("oci-layout", tar::EntryType::Regular, 0o644, layout.len() as u64);
    tar.append(&h, &layout[..]).map_err(io_err())?;
    let h = header("index.json", tar::EntryType::Regular, 0o644, index_json.len() as u64);
    tar.append(&h, &index_json[..]).map_err(io_err())?;
    for (digest, size) in &blobs {
        let path = format!("blobs/sha256/{}", digest.hex());
        let h = header(&path, tar::EntryType::Regular, 0o644, *size);
        // Verify while streaming: a corrupt store blob must not be exported as valid.
        let mut r = HashingReader::new(store.open_blob(digest)?.take(*size));
        tar.append(&h, &mut r).map_err(io_err())?;
        let (_, found, n) = r.finish();
        if &found != digest || n != *size {
            return Err(OciError::DigestMismatch { path: store.blob_path(digest), expected: digest.clone(), found });
        }
    }
    tar.into_inner().map_err(io_err())
}

/// A temp file beside `dest_file` (same filesystem, so the final rename is atomic).
pub(super) fn tar_temp_file(dest_file: &Path) -> Result<tempfile::NamedTempFile> {
    durable::temp_beside(dest_file, PUBLIC).map_err(OciError::io("create temp file beside", dest_file))
}

/// Makes a finished archive temp file `dest_file`, readable by others: an exported
/// archive is meant for other tools and users.
pub(super) fn finish_tar_file(tmp: tempfile::NamedTempFile, dest_file: &Path) -> Result<()> {
    durable::persist(tmp, dest_file, PUBLIC, || {}).map_err(OciError::io("write archive", dest_file))
}

/// Copies the image named `ref_name` (or the only image) from the OCI layout at `dir`
/// into `store`, returning its manifest descriptor. Tagging it is left to the caller.
pub fn import_oci_dir(store: &Store, dir: &Path, ref_name: Option<&str>, platform: Option<&Platform>) -> Result<Descriptor> {
    import_layout(store, dir, ref_name, Transfer::Copy, Pick::One(platform))
}

/// Imports from an oci-archive tar; see [`import_oci_dir`].
pub fn import_oci_archive(store: &Store, file: &Path, ref_name: Option<&str>, platform: Option<&Platform>) -> Result<Descriptor> {
    // Extract inside the store so adopting blobs is a rename, not a second copy.
    let tmp = super::temps::create_dir(store.root(), "import-")?;
    let reader = File::open(file).map_err(OciError::io("open", file))?;
    extract(reader, file, tmp.path(), LinkPolicy::Refuse)?;
    import_layout(store, tmp.path(), ref_name, Transfer::Move, Pick::One(platform)).map_err(|e| in_archive(e, tmp.path(), file))
}

/// Names the archive and its member, not strata's temp dir, in an error about a
/// member extracted to `tmp`.
pub(super) fn in_archive(e: OciError, tmp: &Path, archive: &Path) -> OciError {
    let member = |p: PathBuf| match p.strip_prefix(tmp) {
        Ok(rel) => PathBuf::from(format!("{}:{}", archive.display(), rel.display())),
        Err(_) => p,
    };
    match e {
        OciError::BlobNotFound { digest, layout } => OciError::BlobNotFound { digest, layout: member(layout) },
        OciError::DigestMismatch { path, expected, found } => OciError::DigestMismatch { path: member(path), expected, found },
        OciError::Json { path, source } => OciError::Json { path: member(path), source },
        OciError::InvalidLayout { path, reason } => OciError::InvalidLayout { path: member(path), reason },
        OciError::ManifestNotFound { layout, ref_name, available } => {
            OciError::ManifestNotFound { layout: member(layout), ref_name, available }
        }
        OciError::AmbiguousManifest { layout, available } => OciError::AmbiguousManifest { layout: member(layout), available },
        other => other,
    }
}

/// (digest, size) of every blob of an image: layers, config, then the manifest;
/// of an index, every platform's image's, then the index, so the export keeps
/// every platform.
fn image_blobs(store: &Store, manifest: &Descriptor) -> Result<Vec<(Digest, u64)>> {
    let digest = descriptor_digest(manifest)?;
    if super::is_index_descriptor(manifest) {
        let mut out = Vec::new();
        for entry in store.read_image_index(&digest)?.manifests() {
            for blob in image_blobs(store, entry)? {
                if !out.contains(&blob) {
                    out.push(blob);
                }
            }
        }
        out.push((digest, manifest.size()));
        return Ok(out);
    }
    let m = store.read_manifest(&digest)?;
    let mut out = Vec::with_capacity(m.layers().len() + 2);
    for d in m.layers().iter().chain(std::iter::once(m.config())) {
        out.push((descriptor_digest(d)?, d.size()));
    }
    out.push((digest, manifest.size()));
    Ok(out)
}

/// A descriptor stripped to media type, digest, size and platform: annotations (our
/// tag names, or a source layout's) do not belong in the other layout.
pub(super) fn plain_descriptor(d: &Descriptor) -> Descriptor {
    let mut out = Descriptor::new(d.media_type().clone(), d.size(), d.digest().clone());
    out.set_platform(d.platform().clone());
    out
}

pub(super) fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    // Paths here are short ASCII (`blobs/sha256/<64 hex>` is 77 bytes): cannot fail.
    h.set_path(path).expect("short archive path");
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h.set_cksum();
    h
}

/// Symlinks and hard links inside an archive are followed at most this many times.
const MAX_LINK_HOPS: usize = 16;

/// Links found while extracting: member path -> the member it names, both relative.
#[derive(Debug, Default)]
pub(super) struct Links(HashMap<PathBuf, PathBuf>);

impl Links {
    /// The member that `member` names once links are followed (relative to the root).
    pub(super) fn member(&self, member: &str) -> std::result::Result<PathBuf, String> {
        let mut rel = normalise(Path::new(member), Path::new("")).ok_or_else(|| format!("unsafe member name {member:?}"))?;
        for _ in 0..MAX_LINK_HOPS {
            match self.0.get(&rel) {
                Some(target) => rel = target.clone(),
                None => return Ok(rel),
            }
        }
        Err(format!("member {member:?}: too many links"))
    }

    /// The extracted file behind archive member `member`.
    pub(super) fn resolve(&self, dir: &Path, member: &str) -> std::result::Result<PathBuf, String> {
        let path = dir.join(self.member(member)?);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("member {member:?} is missing"))
        }
    }
}

/// `path` made relative to the archive root without `..` escaping it; `base` is the
/// directory a relative symlink is read from. `None` when it would escape.
fn normalise(path: &Path, base: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = if path.is_absolute() { Vec::new() } else { base.iter().collect() };
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out.iter().collect())
}

/// What [`extract`] does with symlink and hard-link members.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkPolicy {
    /// An OCI layout has no business with links: one is an unsafe member.
    Refuse,
    /// Old `docker save` repeats layers as links: note them, to follow by name.
    Record,
}

/// Extracts plain files and directories of `reader` below the empty dir `dest`,
/// refusing absolute paths, `..` and device members. Links are never made on disk:
/// refused, or recorded and resolved inside the archive, per `links`.
pub(super) fn extract(reader: impl Read, label: &Path, dest: &Path, policy: LinkPolicy) -> Result<Links> {
    let io_err = || OciError::io("read archive", label);
    let mut links = Links::default();
    let mut tar = tar::Archive::new(BufReader::with_capacity(256 * 1024, reader));
    for entry in tar.entries().map_err(io_err())? {
        let mut entry = entry.map_err(io_err())?;
        let raw = entry.path().map_err(io_err())?.into_owned();
        let unsafe_member = || OciError::UnsafeArchivePath { archive: label.to_path_buf(), member: raw.display().to_string() };
        if raw.is_absolute() || raw.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(unsafe_member());
        }
        let rel = normalise(&raw, Path::new("")).ok_or_else(unsafe_member)?;
        let target = dest.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&target).map_err(OciError::io("create", &target))?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if rel.as_os_str().is_empty() {
                    return Err(unsafe_member());
                }
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(OciError::io("create", parent))?;
                }
                let mut out = File::create(&target).map_err(OciError::io("create", &target))?;
                io::copy(&mut entry, &mut out).map_err(OciError::io("write", &target))?;
            }
            kind @ (tar::EntryType::Symlink | tar::EntryType::Link) if policy == LinkPolicy::Record => {
                let name = entry.link_name().map_err(io_err())?.ok_or_else(unsafe_member)?;
                // A symlink is read from its own directory; a hard link names a member.
                let base = if kind == tar::EntryType::Symlink { rel.parent().unwrap_or(Path::new("")) } else { Path::new("") };
                let to = normalise(&name, base).ok_or_else(unsafe_member)?;
                links.0.insert(rel, to);
            }
            // Pax and GNU long-name records are consumed by the tar crate itself.
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            _ => return Err(unsafe_member()),
        }
    }
    Ok(links)
}

/// Of an index in a layout: one platform's image (the host's when none is named), or
/// all of them and the index itself (`strata load` of a multi-platform `save`).
#[derive(Clone, Copy, Debug)]
pub(super) enum Pick<'a> {
    One(Option<&'a Platform>),
    Whole,
}

/// Imports the image `ref_name` names in the layout at `dir`, an index picked from
/// as `pick` says; with [`Pick::Whole`] the index's descriptor is returned.
pub(super) fn import_layout(store: &Store, dir: &Path, ref_name: Option<&str>, transfer: Transfer, pick: Pick) -> Result<Descriptor> {
    if !dir.join("oci-layout").is_file() {
        return Err(OciError::InvalidLayout { path: dir.to_path_buf(), reason: "missing oci-layout file".to_string() });
    }
    let index: ImageIndex = read_json_file(&dir.join("index.json"))?;
    let mut chosen = select_entry(dir, &index, ref_name)?;
    let wanted = match pick {
        Pick::Whole if is_index(chosen.media_type()) => return import_whole_index(store, dir, &chosen, transfer),
        Pick::Whole => None,
        Pick::One(platform) => platform,
    };
    let mut depth = 0;
    while is_index(chosen.media_type()) {
        depth += 1;
        if depth > MAX_INDEX_DEPTH {
            return Err(OciError::InvalidLayout {
                path: dir.to_path_buf(),
                reason: format!("image indexes nested deeper than {MAX_INDEX_DEPTH}"),
            });
        }
        let digest = descriptor_digest(&chosen)?;
        let nested: ImageIndex = read_source_json(dir, &digest, chosen.size())?;
        chosen = select_platform(&digest, &nested, wanted)?;
    }
    import_manifest(store, dir, &chosen, transfer)?;
    Ok(plain_descriptor(&chosen))
}

/// One image manifest of the layout and its blobs, checked whole.
fn import_manifest(store: &Store, dir: &Path, chosen: &Descriptor, transfer: Transfer) -> Result<()> {
    let digest = descriptor_digest(chosen)?;
    if !is_manifest(chosen.media_type()) {
        return Err(OciError::UnsupportedMediaType { digest, media_type: chosen.media_type().to_string() });
    }
    let manifest: ImageManifest = read_source_json(dir, &digest, chosen.size())?;
    for d in manifest.layers().iter().chain(std::iter::once(manifest.config())) {
        transfer_blob(store, dir, &descriptor_digest(d)?, d.size(), transfer)?;
    }
    // The manifest goes in last so it never names blobs the store lacks.
    transfer_blob(store, dir, &digest, chosen.size(), transfer)?;
    super::validate::check_image(store, &digest, &manifest)
}

/// Every image an index lists, then the index's own bytes (its digest kept), so
/// no platform of a saved multi-platform image is lost on the way back in.
fn import_whole_index(store: &Store, dir: &Path, chosen: &Descriptor, transfer: Transfer) -> Result<Descriptor> {
    let digest = descriptor_digest(chosen)?;
    let index: ImageIndex = read_source_json(dir, &digest, chosen.size())?;
    for entry in index.manifests() {
        if is_index(entry.media_type()) {
            return Err(OciError::InvalidLayout {
                path: dir.to_path_buf(),
                reason: format!("{digest} lists another index; only one level is kept"),
            });
        }
        import_manifest(store, dir, entry, transfer)?;
    }
    transfer_blob(store, dir, &digest, chosen.size(), transfer)?;
    Ok(plain_descriptor(chosen))
}

/// The index entry `ref_name` names: a tag (`ref.name` annotation), `@DIGEST`
/// for a manifest or index by digest (buildx's `oci-layout://DIR@DIGEST`), or the
/// only entry.
fn select_entry(dir: &Path, index: &ImageIndex, ref_name: Option<&str>) -> Result<Descriptor> {
    if let Some(digest) = ref_name.and_then(|r| r.strip_prefix('@')) {
        return select_digest(dir, index, digest);
    }
    let available: Vec<String> = index.manifests().iter().filter_map(|d| ref_name_of(d).map(str::to_string)).collect();
    match ref_name {
        Some(want) => {
            // Accept the exact annotation, or the same image name spelled differently
            // (`hello` for a layout that says `localhost/hello:latest`).
            let normal = ImageName::parse(want).ok().map(|n| n.to_string());
            index
                .manifests()
                .iter()
                .find(|d| ref_name_of(d) == Some(want))
                .or_else(|| {
                    let normal = normal.as_deref()?;
                    index
                        .manifests()
                        .iter()
                        .find(|d| ref_name_of(d).and_then(|n| ImageName::parse(n).ok()).is_some_and(|n| n.to_string() == normal))
                })
                .cloned()
                .ok_or_else(|| OciError::ManifestNotFound { layout: dir.to_path_buf(), ref_name: want.to_string(), available })
        }
        None => match index.manifests().as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(OciError::InvalidLayout { path: dir.to_path_buf(), reason: "index.json lists no manifests".to_string() }),
            _ => Err(OciError::AmbiguousManifest { layout: dir.to_path_buf(), available }),
        },
    }
}

/// Picks the manifest for `wanted` (the platform we run on when None) from a
/// multi-platform index.
fn select_platform(digest: &Digest, index: &ImageIndex, wanted: Option<&Platform>) -> Result<Descriptor> {
    let found = match wanted {
        None => host_manifest(index),
        Some(w) => index.manifests().iter().find(|d| super::platform_of(d).is_some_and(|p| w.matches(&p))),
    };
    found.cloned().ok_or_else(|| {
        let available = index.manifests().iter().filter_map(super::platform_of).map(|p| p.to_string()).collect();
        let wanted = wanted.cloned().unwrap_or_else(Platform::host).to_string();
        OciError::NoPlatformMatch { digest: digest.clone(), wanted, available }
    })
}

fn source_blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join(digest.algorithm()).join(digest.hex())
}

/// A manifest or index by digest: an entry of index.json, else any blob of the
/// layout (a platform's manifest below an index), its media type read from it.
fn select_digest(dir: &Path, index: &ImageIndex, digest: &str) -> Result<Descriptor> {
    let digest = Digest::parse(digest)?;
    if let Some(d) = index.manifests().iter().find(|d| descriptor_digest(d).is_ok_and(|x| x == digest)) {
        return Ok(d.clone());
    }
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let (file, path) = open_source_blob(dir, &digest)?;
    let size = file.metadata().map_err(OciError::io("stat", &path))?.len();
    if size > 4 << 20 {
        return Err(OciError::InvalidLayout { path, reason: format!("{digest} is too large for a manifest") });
    }
    let typed: Typed = read_source_json(dir, &digest, size)?;
    let media_type = typed.media_type.ok_or_else(|| OciError::InvalidLayout { path, reason: format!("{digest} has no mediaType") })?;
    Ok(Descriptor::new(media_type.as_str().into(), size, digest.to_oci()))
}

fn open_source_blob(dir: &Path, digest: &Digest) -> Result<(File, PathBuf)> {
    let path = source_blob_path(dir, digest);
    match File::open(&path) {
        Ok(f) => Ok((f, path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(OciError::BlobNotFound { digest: digest.clone(), layout: dir.to_path_buf() }),
        Err(e) => Err(OciError::io("open", path)(e)),
    }
}

fn transfer_blob(store: &Store, dir: &Path, digest: &Digest, size: u64, transfer: Transfer) -> Result<()> {
    if store.has_blob(digest) {
        return Ok(());
    }
    let (file, path) = open_source_blob(dir, digest)?;
    match transfer {
        Transfer::Copy => store.put_blob_verified(file, digest, Some(size)).map(drop),
        Transfer::Move => {
            drop(file);
            store.adopt_file(&path, digest, size).map(drop)
        }
    }
}

/// Reads a small JSON blob from a source layout, verifying digest and size.
fn read_source_json<T: DeserializeOwned>(dir: &Path, digest: &Digest, size: u64) -> Result<T> {
    let (file, path) = open_source_blob(dir, digest)?;
    let mut bytes = Vec::new();
    // Bounded read: a descriptor's size is the most we will buffer for a JSON blob.
    file.take(size.saturating_add(1)).read_to_end(&mut bytes).map_err(OciError::io("read", &path))?;
    let found = Digest::of_bytes(&bytes);
    if &found != digest {
        return Err(OciError::DigestMismatch { path, expected: digest.clone(), found });
    }
    if bytes.len() as u64 != size {
        return Err(OciError::SizeMismatch { digest: digest.clone(), expected: size, found: bytes.len() as u64 });
    }
    serde_json::from_slice(&bytes).map_err(|source| OciError::Json { path, source })
}

fn read_json_file<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(OciError::io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| OciError::Json { path: path.to_path_buf(), source })
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
