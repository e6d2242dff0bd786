//! `docker save` archives (`docker-archive:`): export, import, and telling archives apart.
//!
//! The format is what `docker load` and `podman load` read: `manifest.json` (a list of
//! `{Config, RepoTags, Layers}`), a legacy `repositories` map, the config JSON as
//! `<hex>.json` and every layer as an UNCOMPRESSED tar named `<diff id hex>.tar`.
//! Docker checks each layer against the config's diff ids, so our gzip or zstd blobs are
//! decompressed on the way out; a tar header needs the size first, so each layer goes
//! through a temp file (one layer at a time: memory stays flat, disk holds one layer).
//!
//! Import accepts the archives docker and podman write, old and new: layers as
//! `<id>/layer.tar`, `<hex>.tar` or `blobs/sha256/<hex>` (docker 25+), plain or
//! compressed, and the symlinks old `docker save` used for repeated layers. Links are
//! never created on disk: they are resolved by name inside the archive, so no member
//! can make a later one land outside the extraction dir. Every layer is checked
//! against the config's diff id before the image becomes visible.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};

use super::archive::{extract, finish_tar_file, header, import_layout, plain_descriptor, tar_temp_file, LinkPolicy, Links, Pick, Transfer};
use super::image::{
    build_manifest, descriptor_digest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD,
};
use super::image::{layer_decoder, MEDIA_TYPE_MANIFEST};
use super::store::ref_name_of;
use super::{DiffId, HashingReader, HashingWriter, ImageConfig, ImageName, OciError, Result, Store};

/// One image of `manifest.json`, with docker's capitalised field names.
#[derive(Debug, Serialize, Deserialize)]
struct ArchiveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// What an archive file turned out to be, found by its members rather than its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save` / `podman save --format docker-archive` (also docker 25+'s hybrid).
    Docker,
    /// An OCI image layout in a tar (`oci-archive:`).
    Oci,
}

/// An image read from an archive: its manifest in the store and the names it carried.
#[derive(Debug)]
pub struct LoadedImage {
    pub manifest: Descriptor,
    /// Normalised names (`localhost/hello:latest`) from RepoTags or ref.name annotations.
    pub names: Vec<ImageName>,
}

/// Writes the image behind `manifest` as a docker-archive to `dest_file` (temp file,
/// fsync, rename), naming it `repo_tags` (none gives an image docker loads by id).
pub fn export_docker_archive(store: &Store, manifest: &Descriptor, dest_file: &Path, repo_tags: &[String]) -> Result<()> {
    let tmp = tar_temp_file(dest_file)?;
    let tmp_path = tmp.path().to_path_buf();
    let tmp = write_docker_archive(store, manifest, BufWriter::with_capacity(256 * 1024, tmp), repo_tags, &tmp_path)?;
    let tmp = tmp.into_inner().map_err(|e| OciError::io("write archive", &tmp_path)(e.into_error()))?;
    finish_tar_file(tmp, dest_file)
}

/// Streams the docker-archive of `manifest` into `out` (a file or standard output);
/// `label` names the destination in errors.
pub fn write_docker_archive<W: Write>(store: &Store, manifest: &Descriptor, out: W, repo_tags: &[String], label: &Path) -> Result<W> {
    let io_err = || OciError::io("write archive", label);
    let digest = descriptor_digest(manifest)?;
    let m = store.read_manifest(&digest)?;
    let config_digest = descriptor_digest(m.config())?;
    let config = store.read_config(&config_digest)?;
    if config.rootfs.diff_ids.len() != m.layers().len() {
        return Err(OciError::InvalidLayout {
            path: store.blob_path(&digest),
            reason: format!("manifest has {} layers but its config lists {} diff ids", m.layers().len(), config.rootfs.diff_ids.len()),
        });
    }

    let mut tar = tar::Builder::new(out);
    let mut layer_names = Vec::with_capacity(m.layers().len());
    for (layer, diff_id) in m.layers().iter().zip(&config.rootfs.diff_ids) {
        let name = format!("{}.tar", diff_id.digest().hex());
        if !layer_names.contains(&name) {
            append_plain_layer(store, layer, diff_id, &name, &mut tar, label)?;
        }
        layer_names.push(name);
    }
    let config_name = format!("{}.json", config_digest.hex());
    let mut config_blob = store.open_blob(&config_digest)?;
    let h = header(&config_name, tar::EntryType::Regular, 0o644, m.config().size());
    tar.append(&h, &mut config_blob).map_err(io_err())?;

    let entries =
        [ArchiveEntry { config: config_name, repo_tags: (!repo_tags.is_empty()).then(|| repo_tags.to_vec()), layers: layer_names.clone() }];
    let manifest_json = serde_json::to_vec(&entries).map_err(|source| OciError::Serialize { what: "manifest.json", source })?;
    let h = header("manifest.json", tar::EntryType::Regular, 0o644, manifest_json.len() as u64);
    tar.append(&h, &manifest_json[..]).map_err(io_err())?;
    // `repositories` is the pre-1.10 index; old loaders still read it. It maps each
    // repository's tag to the top layer's id, which here is its diff id hex.
    if let Some(top) = config.rootfs.diff_ids.last() {
        let mut repos: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
        for tag in repo_tags {
            let (repo, t) = split_repo_tag(tag);
            let entry = repos.entry(repo.to_string()).or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(tags) = entry {
                tags.insert(t.to_string(), serde_json::Value::String(top.digest().hex().to_string()));
            }
        }
        if !repos.is_empty() {
            let bytes = serde_json::to_vec(&repos).map_err(|source| OciError::Serialize { what: "repositories", source })?;
            let h = header("repositories", tar::EntryType::Regular, 0o644, bytes.len() as u64);
            tar.append(&h, &bytes[..]).map_err(io_err())?;
        }
    }
    tar.into_inner().map_err(io_err())
}

/// `repo:tag` split at the tag's colon (a registry port's colon comes before a '/').
fn split_repo_tag(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (name, "latest"),
    }
}

/// Decompresses one layer blob into a temp file (verifying it against `diff_id`),
/// then appends it to `tar` as `name`.
fn append_plain_layer<W: Write>(
    store: &Store,
    layer: &Descriptor,
    diff_id: &DiffId,
    name: &str,
    tar: &mut tar::Builder<W>,
    label: &Path,
) -> Result<()> {
    let blob = descriptor_digest(layer)?;
    let blob_path = store.blob_path(&blob);
    let reader = BufReader::with_capacity(1 << 20, store.open_blob(&blob)?);
    let mut plain = layer_decoder(layer.media_type().as_ref(), &blob, reader)?;
    let tmp = super::temps::create_file(store.root(), "export-")?;
    let tmp_path = tmp.path().to_path_buf();
    let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp));
    io::copy(&mut plain, &mut w).map_err(OciError::io("decompress layer", &blob_path))?;
    let (buf, found, size) = w.finish();
    if &found != diff_id.digest() {
        return Err(OciError::DigestMismatch { path: blob_path, expected: diff_id.digest().clone(), found });
    }
    let mut file = buf.into_inner().map_err(|e| OciError::io("write", &tmp_path)(e.into_error()))?;
    file.as_file_mut().rewind().map_err(OciError::io("rewind", &tmp_path))?;
    let h = header(name, tar::EntryType::Regular, 0o644, size);
    tar.append(&h, BufReader::with_capacity(1 << 20, file.as_file())).map_err(OciError::io("write archive", label))?;
    Ok(())
}

/// Imports an oci-archive or docker-archive `file` (told apart by its members) into
/// `store`. `reference` picks one image: a ref name / RepoTag, or `@N` for the Nth
/// image of a docker-archive; without it the archive must hold exactly one.
pub fn load_archive(store: &Store, file: &Path, reference: Option<&str>) -> Result<LoadedImage> {
    let reader = File::open(file).map_err(OciError::io("open", file))?;
    load_archive_from(store, reader, file, reference)
}

/// [`load_archive`] from any reader (standard input for `strata load`).
pub fn load_archive_from(store: &Store, reader: impl Read, label: &Path, reference: Option<&str>) -> Result<LoadedImage> {
    let tmp = super::temps::create_dir(store.root(), "import-")?;
    let links = extract(reader, label, tmp.path(), LinkPolicy::Record)?;
    let in_archive = |e| super::archive::in_archive(e, tmp.path(), label);
    match detect(tmp.path()) {
        Some(ArchiveFormat::Docker) => import_docker_dir(store, tmp.path(), &links, label, reference).map_err(in_archive),
        Some(ArchiveFormat::Oci) => {
            let names = oci_names(tmp.path(), reference);
            let manifest = import_layout(store, tmp.path(), reference, Transfer::Move, Pick::Whole).map_err(in_archive)?;
            Ok(LoadedImage { manifest, names })
        }
        None => Err(OciError::InvalidLayout {
            path: label.to_path_buf(),
            reason: "neither a docker-archive (no manifest.json) nor an oci-archive (no oci-layout)".to_string(),
        }),
    }
}

/// The name an oci-archive gives its image: the chosen ref.name when it is a whole
/// image name (`localhost/hello:latest`); a bare tag (`latest`) names no repository.
fn oci_names(dir: &Path, reference: Option<&str>) -> Vec<ImageName> {
    let ref_name = match reference {
        Some(r) => Some(r.to_string()),
        None => fs::read(dir.join("index.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<oci_spec::image::ImageIndex>(&b).ok())
            .and_then(|index| match index.manifests().as_slice() {
                [only] => ref_name_of(only).map(str::to_string),
                _ => None,
            }),
    };
    ref_name.filter(|r| r.contains('/') || r.contains(':')).and_then(|r| ImageName::parse(&r).ok()).into_iter().collect()
}

/// Docker's `manifest.json` wins over `oci-layout`: docker 25+ writes both, and only
/// manifest.json carries the image's names.
fn detect(dir: &Path) -> Option<ArchiveFormat> {
    if dir.join("manifest.json").is_file() {
        Some(ArchiveFormat::Docker)
    } else if dir.join("oci-layout").is_file() {
        Some(ArchiveFormat::Oci)
    } else {
        None
    }
}

fn import_docker_dir(store: &Store, dir: &Path, links: &Links, label: &Path, reference: Option<&str>) -> Result<LoadedImage> {
    let bad = |reason: String| OciError::InvalidLayout { path: label.to_path_buf(), reason };
    let manifest_path = dir.join("manifest.json");
    let bytes = fs::read(&manifest_path).map_err(OciError::io("read", &manifest_path))?;
    let entries: Vec<ArchiveEntry> =
        serde_json::from_slice(&bytes).map_err(|source| OciError::Json { path: manifest_path.clone(), source })?;
    let entry = select_entry(&entries, reference).map_err(&bad)?;

    let config_path = links.resolve(dir, &entry.config).map_err(&bad)?;
    let config_bytes = fs::read(&config_path).map_err(OciError::io("read", &config_path))?;
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|source| OciError::Json { path: config_path.clone(), source })?;
    if config.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(bad(format!(
            "{} lists {} layers but its config {} has {} diff ids",
            "manifest.json",
            entry.layers.len(),
            entry.config,
            config.rootfs.diff_ids.len()
        )));
    }

    let mut layers: Vec<Descriptor> = Vec::with_capacity(entry.layers.len());
    // A layer listed twice is one file, moved into the store the first time.
    let mut adopted: HashMap<PathBuf, (DiffId, Descriptor)> = HashMap::new();
    for (member, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
        let rel = links.member(member).map_err(&bad)?;
        let desc = match adopted.get(&rel) {
            Some((seen, desc)) if seen == diff_id => desc.clone(),
            Some(_) => return Err(bad(format!("layer {member:?} is listed for two different diff ids"))),
            None => {
                let path = links.resolve(dir, member).map_err(&bad)?;
                let desc = adopt_layer(store, &path, diff_id)?;
                adopted.insert(rel, (diff_id.clone(), desc.clone()));
                desc
            }
        };
        layers.push(desc);
    }
    // The config goes in byte for byte, so the image id is the one docker shows.
    let config_desc = store.put_blob(&config_bytes[..])?.descriptor(MEDIA_TYPE_CONFIG);
    let manifest = build_manifest(&config_desc, &layers);
    let manifest_desc = store.put_json(MEDIA_TYPE_MANIFEST, &manifest)?;
    // Diff ids were checked as layers came in; this adds their tar structure.
    super::validate::check_image(store, &descriptor_digest(&manifest_desc)?, &manifest)?;
    let manifest = manifest_desc;

    let names = entry.repo_tags.iter().flatten().filter_map(|t| ImageName::parse(t).ok()).collect();
    Ok(LoadedImage { manifest: plain_descriptor(&manifest), names })
}

fn select_entry<'a>(entries: &'a [ArchiveEntry], reference: Option<&str>) -> std::result::Result<&'a ArchiveEntry, String> {
    let tags = || entries.iter().flat_map(|e| e.repo_tags.iter().flatten().cloned()).collect::<Vec<_>>().join(", ");
    match reference {
        None => match entries {
            [only] => Ok(only),
            [] => Err("manifest.json lists no images".to_string()),
            _ => {
                Err(format!("the archive holds {} images: name one (docker-archive:FILE:NAME:TAG or @INDEX) of: {}", entries.len(), tags()))
            }
        },
        Some(r) => {
            if let Some(n) = r.strip_prefix('@') {
                let i: usize = n.parse().map_err(|_| format!("bad image index {r:?}"))?;
                return entries.get(i).ok_or_else(|| format!("image index {i} out of range: the archive holds {}", entries.len()));
            }
            let want = ImageName::parse(r).map(|n| n.to_string()).map_err(|e| e.to_string())?;
            entries
                .iter()
                .find(|e| e.repo_tags.iter().flatten().any(|t| ImageName::parse(t).is_ok_and(|n| n.to_string() == want)))
                .ok_or_else(|| format!("no image named {r:?} in the archive; it holds: {}", tags()))
        }
    }
}

/// Moves one extracted layer file into the store after checking it against `diff_id`;
/// plain tars keep their bytes (digest = diff id), compressed ones keep their type.
fn adopt_layer(store: &Store, path: &Path, diff_id: &DiffId) -> Result<Descriptor> {
    let mut file = File::open(path).map_err(OciError::io("open", path))?;
    let mut magic = [0u8; 4];
    let n = read_prefix(&mut file, &mut magic).map_err(OciError::io("read", path))?;
    let media_type = match &magic[..n] {
        [0x1f, 0x8b, ..] => MEDIA_TYPE_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => MEDIA_TYPE_LAYER_ZSTD,
        _ => MEDIA_TYPE_LAYER_TAR,
    };
    file.rewind().map_err(OciError::io("rewind", path))?;
    let (blob, size) = if media_type == MEDIA_TYPE_LAYER_TAR {
        let mut r = HashingReader::new(BufReader::with_capacity(1 << 20, file));
        io::copy(&mut r, &mut io::sink()).map_err(OciError::io("read", path))?;
        let (_, digest, size) = r.finish();
        if &digest != diff_id.digest() {
            return Err(OciError::DigestMismatch { path: path.to_path_buf(), expected: diff_id.digest().clone(), found: digest });
        }
        (digest, size)
    } else {
        let mut outer = HashingReader::new(BufReader::with_capacity(1 << 20, file));
        let mut plain = HashingReader::new(layer_decoder(media_type, diff_id.digest(), BufReader::new(&mut outer))?);
        io::copy(&mut plain, &mut io::sink()).map_err(OciError::io("decompress", path))?;
        let (_, found, _) = plain.finish();
        if &found != diff_id.digest() {
            return Err(OciError::DigestMismatch { path: path.to_path_buf(), expected: diff_id.digest().clone(), found });
        }
        // Count whatever the decoder left unread (trailing padding) into the blob hash.
        io::copy(&mut outer, &mut io::sink()).map_err(OciError::io("read", path))?;
        let (_, digest, size) = outer.finish();
        (digest, size)
    };
    store.adopt_file(path, &blob, size)?;
    Ok(super::image::descriptor(media_type, &blob, size))
}

fn read_prefix(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
#[path = "docker_archive_tests.rs"]
mod tests;
