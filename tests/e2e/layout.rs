//! A small, independent reader of OCI image layouts (and oci-archive tarballs), so the
//! tests check strata's output without trusting strata's own reader: index.json ->
//! manifest -> config and layer blobs -> tar headers.

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{path_str, run};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of a layer tarball, as its header says.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path without a leading `./` or `/` and without a trailing `/`.
    pub path: String,
    pub uid: u64,
    pub gid: u64,
    pub mode: u32,
    pub kind: tar::EntryType,
}

pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    #[track_caller]
    pub fn open(dir: &Path) -> Layout {
        assert!(dir.join("oci-layout").is_file(), "{} has no oci-layout file", dir.display());
        Layout { dir: dir.to_owned() }
    }

    /// Unpacks an oci-archive with the host's tar into `dest` and opens it.
    #[track_caller]
    pub fn from_archive(archive: &Path, dest: &Path) -> Layout {
        fs::create_dir_all(dest).expect("create unpack dir");
        run("tar", ["-xf", &path_str(archive), "-C", &path_str(dest)]).ok();
        Layout::open(dest)
    }

    #[track_caller]
    fn read_json(&self, path: &Path) -> Value {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    }

    pub fn index(&self) -> Value {
        self.read_json(&self.dir.join("index.json"))
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let (algo, hex) = digest.split_once(':').unwrap_or_else(|| panic!("bad digest {digest}"));
        self.dir.join("blobs").join(algo).join(hex)
    }

    #[track_caller]
    pub fn blob_json(&self, descriptor: &Value) -> Value {
        let digest = descriptor["digest"].as_str().expect("descriptor digest");
        self.read_json(&self.blob_path(digest))
    }

    /// The image manifest tagged `tag`, or the only one when `tag` is None.
    #[track_caller]
    pub fn manifest(&self, tag: Option<&str>) -> Value {
        let index = self.index();
        let manifests = index["manifests"].as_array().expect("index.json manifests");
        let chosen = match tag {
            Some(tag) => manifests
                .iter()
                .find(|m| m["annotations"][REF_NAME].as_str() == Some(tag))
                .unwrap_or_else(|| panic!("no manifest tagged {tag} in {index:#}")),
            None => {
                assert_eq!(manifests.len(), 1, "expected one manifest: {index:#}");
                &manifests[0]
            }
        };
        let manifest = self.blob_json(chosen);
        let media_type = manifest["mediaType"].as_str().unwrap_or_default();
        if media_type.ends_with("image.index.v1+json") {
            let nested = manifest["manifests"].as_array().expect("nested manifests");
            assert_eq!(nested.len(), 1, "expected one platform: {manifest:#}");
            return self.blob_json(&nested[0]);
        }
        manifest
    }

    #[track_caller]
    pub fn config(&self, manifest: &Value) -> Value {
        self.blob_json(&manifest["config"])
    }

    pub fn layers(manifest: &Value) -> Vec<Value> {
        manifest["layers"].as_array().cloned().unwrap_or_default()
    }

    /// The entries of one layer, decompressing gzip layers (possibly several gzip
    /// members, as parallel compressors write).
    #[track_caller]
    pub fn layer_entries(&self, layer: &Value) -> Vec<Entry> {
        let digest = layer["digest"].as_str().expect("layer digest");
        let media_type = layer["mediaType"].as_str().unwrap_or_default();
        let file = BufReader::new(File::open(self.blob_path(digest)).unwrap_or_else(|e| panic!("open {digest}: {e}")));
        let reader: Box<dyn Read> = if media_type.ends_with("+gzip") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            assert!(media_type.ends_with(".tar") || media_type.ends_with("tar"), "unexpected layer media type {media_type}");
            Box::new(file)
        };
        let mut archive = tar::Archive::new(reader);
        let mut entries = Vec::new();
        for entry in archive.entries().expect("layer tar") {
            let entry = entry.unwrap_or_else(|e| panic!("layer {digest}: bad tar entry: {e}"));
            let header = entry.header();
            let raw = entry.path().expect("entry path").to_string_lossy().into_owned();
            let path = raw.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/').to_owned();
            entries.push(Entry {
                path,
                uid: header.uid().expect("uid"),
                gid: header.gid().expect("gid"),
                mode: header.mode().expect("mode"),
                kind: header.entry_type(),
            });
        }
        entries
    }
}

/// The history entries of an image config that made a layer.
pub fn layer_history_count(config: &Value) -> usize {
    config["history"].as_array().map(|h| h.iter().filter(|e| !e["empty_layer"].as_bool().unwrap_or(false)).count()).unwrap_or(0)
}
