//! The image store: an OCI image layout directory that strata reads and writes.
//!
//! Layout: `oci-layout`, `index.json` and `blobs/sha256/<hex>`, exactly what `skopeo`
//! and `umoci` read as `oci:DIR`, so the store itself is inspectable with standard tools.
//! Tags are index entries annotated with `org.opencontainers.image.ref.name` holding the
//! full normalised name (`localhost/hello:latest`).
//!
//! Concurrency: blob writes need no lock (same content, same name, atomic rename).
//! `index.json` updates take an exclusive `flock` on the layout directory itself, re-read
//! the index inside the lock and replace it by rename. The directory is locked rather
//! than a lock file so that layouts we export stay free of strata-specific files.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tempfile::NamedTempFile;

use super::image::{descriptor, descriptor_digest, ManifestFormat, ANNOTATION_REF_NAME};
use super::image::{MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST};
use super::temps;
use super::{Digest, HashingReader, HashingWriter, ImageConfig, ImageName};
use super::{OciError, Result};
use crate::durable::{self, Mode};

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_JSON: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";

/// The mode of blobs, layout files and archives: public content (temp files are made
/// 0600), which exported layouts must show to other users' tools.
pub(super) const PUBLIC: Mode = Mode::Exact(0o644);

/// Digest and size of a stored blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

impl BlobInfo {
    /// A descriptor for this blob with the given media type.
    pub fn descriptor(&self, media_type: &str) -> Descriptor {
        descriptor(media_type, &self.digest, self.size)
    }
}

/// One row of `strata images`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// The ref.name annotation; `None` for an untagged entry.
    pub name: Option<String>,
    /// The config digest, which is what docker and podman call the image id.
    pub id: Digest,
    pub manifest: Digest,
    pub created: Option<DateTime<Utc>>,
    /// Compressed layers plus config, as stored (every platform's, for an index).
    pub size: u64,
    /// The layers (every platform's, for an index), for their content sizes.
    pub layers: Vec<Descriptor>,
    /// For an image index (a manifest list): the platforms it holds, in its order
    /// (`id` is then the index's digest). Empty for one image.
    pub platforms: Vec<String>,
}

/// An OCI image layout on disk.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the layout at `dir`, creating the directory and layout files if missing.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        let root = dir.as_ref().to_path_buf();
        let store = Store { root };
        let blobs = store.blob_dir();
        fs::create_dir_all(&blobs).map_err(OciError::io("create", &blobs))?;
        let layout = store.root.join(LAYOUT_FILE);
        if layout.exists() {
            store.check_layout_file(&layout)?;
        } else {
            write_atomic(&store.root, LAYOUT_FILE, LAYOUT_JSON, || {})?;
        }
        if !store.index_path().exists() {
            // Under the lock: a concurrent opener may be tagging into a fresh store.
            let _lock = store.lock()?;
            if !store.index_path().exists() {
                store.write_index(&ImageIndex::default())?;
            }
        }
        Ok(store)
    }

    fn check_layout_file(&self, path: &Path) -> Result<()> {
        let text = fs::read(path).map_err(OciError::io("read", path))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|source| OciError::Json { path: path.to_path_buf(), source })?;
        match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some(v) if v.starts_with("1.") => Ok(()),
            other => Err(OciError::InvalidLayout { path: self.root.clone(), reason: format!("unsupported imageLayoutVersion {other:?}") }),
        }
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    /// Whether the blob is present (not whether it is intact: see `verify_blob`).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OciError::BlobNotFound { digest: digest.clone(), layout: self.root.clone() },
            _ => OciError::io("open", path)(e),
        })
    }

    /// A temp file beside the blobs, so the final rename never crosses filesystems.
    /// Where writers keep temps: the layout dir and beside the blobs.
    fn temp_dirs(&self) -> [PathBuf; 2] {
        [self.root().to_path_buf(), self.root().join("blobs").join("sha256")]
    }

    /// Temp files and dirs of dead writers: those whose lock nobody holds.
    pub fn stale_temps(&self) -> Vec<temps::StaleTemp> {
        temps::stale_in(&self.temp_dirs())
    }

    /// Removes dead writers' temps, each while holding its lock, so no writer can have
    /// it; returns what went. Safe beside live writers in any pid namespace.
    pub fn remove_stale_temps(&self) -> Result<Vec<temps::StaleTemp>> {
        temps::remove_stale_in(&self.temp_dirs())
    }

    pub(crate) fn temp_blob(&self) -> Result<NamedTempFile> {
        let dir = self.blob_dir();
        temps::create_file(&dir, "")
    }

    /// Makes a fully written temp file the blob `digest`: fsync, rename, fsync the dir.
    /// If the blob already exists the temp file is dropped: same name, same content.
    pub(crate) fn commit_blob(&self, tmp: NamedTempFile, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        if dest.exists() {
            return Ok(());
        }
        durable::persist(tmp, &dest, PUBLIC, || crate::fault::abort_if_asked("commit")).map_err(OciError::io("store blob", &dest))
    }

    /// Streams `reader` into a temp blob, returning it with its digest and size.
    fn write_temp(&self, reader: &mut dyn Read) -> Result<(NamedTempFile, Digest, u64)> {
        let tmp = self.temp_blob()?;
        let path = tmp.path().to_path_buf();
        let mut w = HashingWriter::new(BufWriter::new(tmp));
        io::copy(reader, &mut w).map_err(OciError::io("write", &path))?;
        let (buf, digest, size) = w.finish();
        let tmp = buf.into_inner().map_err(|e| OciError::io("write", &path)(e.into_error()))?;
        Ok((tmp, digest, size))
    }

    /// Stores everything `reader` yields as a blob named by its digest.
    pub fn put_blob(&self, mut reader: impl Read) -> Result<BlobInfo> {
        let (tmp, digest, size) = self.write_temp(&mut reader)?;
        self.commit_blob(tmp, &digest)?;
        Ok(BlobInfo { digest, size })
    }

    /// Stores a blob that must hash to `expected` (and be `expected_size` bytes when
    /// given); on mismatch nothing is stored. An already present blob is not re-read.
    pub fn put_blob_verified(&self, mut reader: impl Read, expected: &Digest, expected_size: Option<u64>) -> Result<BlobInfo> {
        if self.has_blob(expected) {
            let size = fs::metadata(self.blob_path(expected)).map_err(OciError::io("stat", self.blob_path(expected)))?.len();
            return Ok(BlobInfo { digest: expected.clone(), size });
        }
        let (tmp, digest, size) = self.write_temp(&mut reader)?;
        check_blob(self.blob_path(expected), expected, expected_size, &digest, size)?;
        self.commit_blob(tmp, &digest)?;
        Ok(BlobInfo { digest, size })
    }

    /// Moves the file at `path` into the store as blob `expected` after hashing it; used
    /// on import so an extracted archive member is read once and never copied.
    pub(crate) fn adopt_file(&self, path: &Path, expected: &Digest, expected_size: u64) -> Result<BlobInfo> {
        let file = File::open(path).map_err(OciError::io("open", path))?;
        let mut r = HashingReader::new(file);
        io::copy(&mut r, &mut io::sink()).map_err(OciError::io("read", path))?;
        let (file, digest, size) = r.finish();
        check_blob(path.to_path_buf(), expected, Some(expected_size), &digest, size)?;
        if !self.has_blob(expected) {
            let dest = self.blob_path(expected);
            durable::move_into(&file, path, &dest, PUBLIC).map_err(OciError::io("store blob", &dest))?;
        }
        Ok(BlobInfo { digest, size })
    }

    /// Serialises `value` compactly, stores it and returns its descriptor.
    pub fn put_json<T: Serialize>(&self, media_type: &str, value: &T) -> Result<Descriptor> {
        let bytes = serde_json::to_vec(value).map_err(|source| OciError::Serialize { what: "blob", source })?;
        Ok(self.put_blob(&bytes[..])?.descriptor(media_type))
    }

    /// Reads a JSON blob, checking its digest first (JSON blobs are small, and a
    /// corrupt manifest must not be trusted to point at layers).
    pub fn read_json<T: DeserializeOwned>(&self, digest: &Digest) -> Result<T> {
        let path = self.blob_path(digest);
        let mut bytes = Vec::new();
        self.open_blob(digest)?.read_to_end(&mut bytes).map_err(OciError::io("read", &path))?;
        let found = Digest::of_bytes(&bytes);
        if &found != digest {
            return Err(OciError::DigestMismatch { path, expected: digest.clone(), found });
        }
        serde_json::from_slice(&bytes).map_err(|source| OciError::Json { path, source })
    }

    /// Reads an image manifest blob.
    pub fn read_manifest(&self, digest: &Digest) -> Result<ImageManifest> {
        self.read_json(digest)
    }

    /// Reads an image config blob.
    pub fn read_config(&self, digest: &Digest) -> Result<ImageConfig> {
        self.read_json(digest)
    }

    /// Stores `config` and a manifest over `layers`; returns the manifest descriptor
    /// (ready for `tag`).
    pub fn put_image(&self, config: &ImageConfig, layers: &[Descriptor]) -> Result<Descriptor> {
        self.put_image_annotated(config, layers, &BTreeMap::new())
    }

    /// [`put_image`](Self::put_image) with `annotations` in the manifest (`build
    /// --annotation`). They are written in key order, so the same annotations always
    /// give the same manifest digest (oci-spec keeps them in a HashMap).
    pub fn put_image_annotated(
        &self,
        config: &ImageConfig,
        layers: &[Descriptor],
        annotations: &BTreeMap<String, String>,
    ) -> Result<Descriptor> {
        self.put_image_as(ManifestFormat::Oci, config, layers, annotations)
    }

    /// [`put_image_annotated`](Self::put_image_annotated) with the media types of
    /// `format`. Docker's manifest has no annotations: the caller refuses them.
    pub fn put_image_as(
        &self,
        format: ManifestFormat,
        config: &ImageConfig,
        layers: &[Descriptor],
        annotations: &BTreeMap<String, String>,
    ) -> Result<Descriptor> {
        let config_desc = self.put_json(format.config_type(), config)?;
        let manifest = format.manifest(&config_desc, layers)?;
        if annotations.is_empty() {
            return self.put_json(format.manifest_type(), &manifest);
        }
        let mut value = serde_json::to_value(&manifest).map_err(|source| OciError::Serialize { what: "manifest", source })?;
        let sorted = annotations.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        value.as_object_mut().expect("a manifest is a JSON object").insert("annotations".into(), serde_json::Value::Object(sorted));
        self.put_json(format.manifest_type(), &value)
    }

    /// Re-hashes one blob; errors if it is missing or its content does not match.
    pub fn verify_blob(&self, digest: &Digest) -> Result<BlobInfo> {
        let path = self.blob_path(digest);
        let mut r = HashingReader::new(self.open_blob(digest)?);
        io::copy(&mut r, &mut io::sink()).map_err(OciError::io("read", &path))?;
        let (_, found, size) = r.finish();
        check_blob(path, digest, None, &found, size)?;
        Ok(BlobInfo { digest: found, size })
    }

    /// The current index. Lock-free: index.json is only ever replaced by rename.
    pub fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(OciError::io("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|source| OciError::Json { path, source })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(index).map_err(|source| OciError::Serialize { what: "index.json", source })?;
        write_atomic(&self.root, INDEX_FILE, &bytes, || crate::fault::abort_if_asked("index"))
    }

    fn lock(&self) -> Result<Flock<File>> {
        let dir = File::open(&self.root).map_err(OciError::io("open", &self.root))?;
        Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, source)| OciError::Lock { path: self.root.clone(), source })
    }

    /// Read-modify-write of index.json under the layout lock; `f`'s error aborts the
    /// update and leaves the index untouched.
    pub fn update_index<R>(&self, f: impl FnOnce(&mut ImageIndex) -> Result<R>) -> Result<R> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let out = f(&mut index)?;
        self.write_index(&index)?;
        Ok(out)
    }

    /// Points the normalised `name` at `manifest`, replacing any previous entry.
    pub fn tag(&self, name: &ImageName, manifest: &Descriptor) -> Result<()> {
        self.set_ref_name(&name.to_string(), manifest)
    }

    /// Points every name in `names` at `manifest` in one index update, so readers
    /// and a crash see all of a build's tags or none.
    pub fn tag_all(&self, names: &[ImageName], manifest: &Descriptor) -> Result<()> {
        let refs: Vec<String> = names.iter().map(ImageName::to_string).collect();
        self.update_index(|index| {
            let mut entries = index.manifests().clone();
            entries.retain(|d| !ref_name_of(d).is_some_and(|r| refs.iter().any(|n| n == r)));
            for r in &refs {
                let mut entry = manifest.clone();
                let mut annotations = entry.annotations().clone().unwrap_or_default();
                annotations.insert(ANNOTATION_REF_NAME.to_string(), r.clone());
                entry.set_annotations(Some(annotations));
                entries.push(entry);
            }
            index.set_manifests(entries);
            Ok(())
        })
    }

    /// Points the raw ref.name `ref_name` at `manifest` (for exported layouts, where
    /// the name is a bare tag as `skopeo copy … oci:DIR:TAG` writes it).
    pub fn set_ref_name(&self, ref_name: &str, manifest: &Descriptor) -> Result<()> {
        let mut entry = manifest.clone();
        let mut annotations = entry.annotations().clone().unwrap_or_default();
        annotations.insert(ANNOTATION_REF_NAME.to_string(), ref_name.to_string());
        entry.set_annotations(Some(annotations));
        self.update_index(|index| {
            let mut entries = index.manifests().clone();
            entries.retain(|d| ref_name_of(d) != Some(ref_name));
            entries.push(entry);
            index.set_manifests(entries);
            Ok(())
        })
    }

    /// Adds `manifest` without a name unless an entry for it already exists.
    pub(crate) fn add_unnamed(&self, manifest: &Descriptor) -> Result<()> {
        self.update_index(|index| {
            if !index.manifests().iter().any(|d| d.digest() == manifest.digest()) {
                let mut entries = index.manifests().clone();
                entries.push(manifest.clone());
                index.set_manifests(entries);
            }
            Ok(())
        })
    }

    /// Removes the tag `name`; returns whether it existed.
    pub fn untag(&self, name: &ImageName) -> Result<bool> {
        let name = name.to_string();
        self.update_index(|index| {
            let mut entries = index.manifests().clone();
            let before = entries.len();
            entries.retain(|d| ref_name_of(d) != Some(name.as_str()));
            let removed = entries.len() != before;
            index.set_manifests(entries);
            Ok(removed)
        })
    }

    /// Finds an image by name (normalised as podman does) or by image id prefix (the
    /// config digest hex, optionally with `sha256:`), names first as docker does.
    pub fn resolve(&self, reference: &str) -> Result<Option<Descriptor>> {
        let index = self.read_index()?;
        if let Ok(name) = ImageName::parse(reference) {
            let found = match name.digest() {
                Some(digest) => index.manifests().iter().find(|d| {
                    descriptor_digest(d).ok().as_ref() == Some(digest)
                        && ref_name_of(d).and_then(|n| ImageName::parse(n).ok()).is_some_and(|n| n.repository() == name.repository())
                }),
                None => {
                    let full = name.to_string();
                    index.manifests().iter().find(|d| ref_name_of(d) == Some(full.as_str()))
                }
            };
            if let Some(d) = found {
                return Ok(Some(d.clone()));
            }
        }
        let prefix = reference.strip_prefix("sha256:").unwrap_or(reference);
        if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let prefix = prefix.to_ascii_lowercase();
        let mut hits: Vec<(Digest, &Descriptor)> = Vec::new();
        for d in index.manifests().iter().filter(|d| is_manifest(d.media_type())) {
            let manifest = self.read_manifest(&descriptor_digest(d)?)?;
            let id = descriptor_digest(manifest.config())?;
            if id.hex().starts_with(&prefix) && !hits.iter().any(|(h, _)| h == &id) {
                hits.push((id, d));
            }
        }
        match hits.len() {
            0 => Ok(None),
            1 => Ok(Some(hits[0].1.clone())),
            _ => Err(OciError::AmbiguousImageId {
                prefix: reference.to_string(),
                candidates: hits.iter().map(|(h, _)| h.short().to_string()).collect(),
            }),
        }
    }

    /// Every image manifest and image index in the index, sorted by name (untagged
    /// last). An entry
    /// whose manifest or config cannot be read is left out and reported beside the
    /// list, so one damaged image does not hide the others.
    pub fn list(&self) -> Result<ImageList> {
        let index = self.read_index()?;
        let mut out = ImageList::default();
        for d in index.manifests().iter().filter(|d| is_manifest(d.media_type()) || is_index(d.media_type())) {
            let name = ref_name_of(d).map(str::to_string);
            match self.summary(d, name.clone()) {
                Ok(s) => out.images.push(s),
                Err(error) => out.unreadable.push((name.unwrap_or_else(|| d.digest().to_string()), error)),
            }
        }
        out.images.sort_by(|a, b| (a.name.is_none(), &a.name).cmp(&(b.name.is_none(), &b.name)));
        Ok(out)
    }

    fn summary(&self, d: &Descriptor, name: Option<String>) -> Result<ImageSummary> {
        if is_index(d.media_type()) {
            return self.index_summary(d, name);
        }
        let manifest_digest = descriptor_digest(d)?;
        let manifest = self.read_manifest(&manifest_digest)?;
        let id = descriptor_digest(manifest.config())?;
        let config = self.read_config(&id)?;
        let size = manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
        let layers = manifest.layers().to_vec();
        Ok(ImageSummary { name, id, manifest: manifest_digest, created: config.created_time(), size, layers, platforms: Vec::new() })
    }

    /// One row for an index: its digest as the id, the newest of its images'
    /// creation times, all of their sizes.
    fn index_summary(&self, d: &Descriptor, name: Option<String>) -> Result<ImageSummary> {
        let digest = descriptor_digest(d)?;
        let (mut size, mut created, mut platforms, mut layers) = (0, None, Vec::new(), Vec::new());
        for entry in self.index_manifests(d)? {
            let one = self.summary(&entry.manifest, None)?;
            size += one.size;
            created = created.max(one.created);
            platforms.push(entry.platform.to_string());
            layers.extend(one.layers);
        }
        Ok(ImageSummary { name, id: digest.clone(), manifest: digest, created, size, layers, platforms })
    }

    /// The names in index.json pointing at the manifest `digest`.
    pub fn names_of(&self, digest: &Digest) -> Result<Vec<String>> {
        let index = self.read_index()?;
        Ok(index
            .manifests()
            .iter()
            .filter(|d| descriptor_digest(d).ok().as_ref() == Some(digest))
            .filter_map(|d| ref_name_of(d).map(str::to_string))
            .collect())
    }
}

/// What [`Store::list`] found.
#[derive(Debug, Default)]
pub struct ImageList {
    pub images: Vec<ImageSummary>,
    /// Entries that could not be read: the name (or manifest digest) and why.
    pub unreadable: Vec<(String, OciError)>,
}

/// The ref.name annotation of an index entry.
pub(crate) fn ref_name_of(desc: &Descriptor) -> Option<&str> {
    desc.annotations().as_ref()?.get(ANNOTATION_REF_NAME).map(String::as_str)
}

/// OCI image manifest or Docker schema 2 manifest.
pub(crate) fn is_manifest(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageManifest => true,
        MediaType::Other(s) => s == MEDIA_TYPE_DOCKER_MANIFEST,
        _ => false,
    }
}

/// OCI image index or Docker manifest list.
pub(crate) fn is_index(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(s) => s == MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        _ => false,
    }
}

fn check_blob(path: PathBuf, expected: &Digest, expected_size: Option<u64>, found: &Digest, size: u64) -> Result<()> {
    if found != expected {
        return Err(OciError::DigestMismatch { path, expected: expected.clone(), found: found.clone() });
    }
    match expected_size {
        Some(want) if want != size => Err(OciError::SizeMismatch { digest: expected.clone(), expected: want, found: size }),
        _ => Ok(()),
    }
}

/// Replaces `dir/name` with `bytes` so readers see the old or the new file, never a mix.
/// The temp is one of the store's own (see `temps`), so clean-up knows whose it is.
/// `before_rename` runs once the temp file is durable (the crash tests' hook).
fn write_atomic(dir: &Path, name: &str, bytes: &[u8], before_rename: impl FnOnce()) -> Result<()> {
    let mut tmp = temps::create_file(dir, "")?;
    let dest = dir.join(name);
    tmp.write_all(bytes).map_err(OciError::io("write", tmp.path()))?;
    durable::persist(tmp, &dest, PUBLIC, before_rename).map_err(OciError::io("write", &dest))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
