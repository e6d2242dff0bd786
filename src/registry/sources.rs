//! Where blobs were last seen in registries, so a push can ask the registry to
//! mount a blob from another of its repositories instead of uploading it again
//! (containers/image keeps the same memory in its blob-info cache).
//!
//! One small file per blob, `blob-sources/<hex>` in the store's layout directory,
//! holding `registry/repository` lines, newest last. Notes are hints: a missing or
//! unreadable one costs an upload, never correctness, since the registry checks
//! what it mounts. Each note is rewritten whole through `durable`, so concurrent
//! writers lose at most a line, never leave a torn file.

use std::fs;
use std::path::PathBuf;

use crate::durable::{self, Mode};
use crate::oci::{Digest, Store};

/// Lines kept per blob: enough for the repositories one store moves a blob between.
const KEPT: usize = 8;

/// The notes of one store.
pub struct BlobSources {
    dir: PathBuf,
}

impl BlobSources {
    pub fn of(store: &Store) -> BlobSources {
        BlobSources { dir: store.root().join("blob-sources") }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// The `(registry, repository)` pairs known to hold `digest`, newest first.
    pub fn of_blob(&self, digest: &Digest) -> Vec<(String, String)> {
        let text = fs::read_to_string(self.path(digest)).unwrap_or_default();
        text.lines().rev().filter_map(|l| l.split_once('/')).map(|(r, p)| (r.to_string(), p.to_string())).collect()
    }

    /// Notes that `registry/repo` holds `digest` (best effort).
    pub fn note(&self, digest: &Digest, registry: &str, repo: &str) {
        let line = format!("{registry}/{repo}");
        let path = self.path(digest);
        let old = fs::read_to_string(&path).unwrap_or_default();
        if old.lines().last() == Some(line.as_str()) {
            return;
        }
        let mut lines: Vec<&str> = old.lines().filter(|l| *l != line).collect();
        lines.push(&line);
        let start = lines.len().saturating_sub(KEPT);
        let text = lines[start..].join("\n") + "\n";
        let _ = fs::create_dir_all(&self.dir).and_then(|()| durable::replace(&path, text.as_bytes(), Mode::Umask));
    }

    /// Drops the notes of blobs the store no longer has (prune), and temp files.
    pub fn retain_present(&self, store: &Store) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let present = Digest::parse(&format!("sha256:{name}")).is_ok_and(|d| store.has_blob(&d));
            if !present {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_keep_the_newest_source_first_and_go_with_their_blob() {
        let dir = std::env::temp_dir().join(format!("strata-sources-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let blob = store.put_blob(&b"layer"[..]).unwrap().digest;
        let sources = BlobSources::of(&store);
        sources.note(&blob, "127.0.0.1:5000", "a/app");
        sources.note(&blob, "quay.io", "me/app");
        sources.note(&blob, "127.0.0.1:5000", "a/app");
        assert_eq!(
            sources.of_blob(&blob),
            vec![("127.0.0.1:5000".to_string(), "a/app".to_string()), ("quay.io".to_string(), "me/app".to_string())]
        );
        for n in 0..20 {
            sources.note(&blob, "r", &format!("repo{n}"));
        }
        assert_eq!(sources.of_blob(&blob).len(), KEPT);
        sources.retain_present(&store);
        assert_eq!(sources.of_blob(&blob).len(), KEPT, "the blob is still there");
        fs::remove_file(store.blob_path(&blob)).unwrap();
        sources.retain_present(&store);
        assert!(sources.of_blob(&blob).is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
