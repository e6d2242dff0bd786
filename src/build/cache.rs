//! The build cache: step key -> the image state the step produced.
//!
//! A key chains the parent's key with everything the step's result depends on: the
//! instruction as written and its words after expansion, heredoc bodies, for RUN
//! the stage's ARG values (proxy ARGs excluded), the kind of network the step gets
//! (host, none or private) and a non-default seccomp
//! profile, for COPY/ADD a hash of
//! what the copy keeps of its sources (see [`content_digest`]) or the key of the
//! `--from` stage, for ADD the name, digest and date of each URL's download (fetched
//! to compute the key, as BuildKit does), the layer compression and SOURCE_DATE_EPOCH. Environment, SHELL,
//! USER and WORKDIR are part of the parent's state, hence of its key.
//!
//! The parent's key is the key of its *result*: an entry records the key it hands
//! on, and a step that ran hands on [`result_key`] (its input key with its layers and
//! config, times aside), so a step that re-ran (`--no-cache-filter`, `--no-cache`) never lets a
//! later step or a stage built on it hit an entry made over an older result.
//!
//! Look-up is one file read (`cache/<key>.json`), never a scan of images; an entry
//! whose blobs are gone is a miss. Entries and the memo are written temp -> fsync ->
//! rename, so a crash leaves none half-written.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::workspace::{ImageState, LayerRef, Workspace};
use crate::dockerfile::ignore::Ignore;
use crate::oci::{self, DiffId, Digest, HashingWriter, ImageConfig};

/// One stored result.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// The key this result hands on to the next step.
    key: Key,
    layers: Vec<(DiffId, oci::Descriptor)>,
    config: ImageConfig,
}

/// The cache directory of a store.
pub struct Cache {
    dir: PathBuf,
}

/// Hex key of the chain so far.
pub type Key = String;

/// Hashes text into a key.
pub fn key_of(parts: &[&str]) -> Key {
    let mut text = String::new();
    for p in parts {
        text.push_str(&p.len().to_string());
        text.push(':');
        text.push_str(p);
        text.push('\n');
    }
    Digest::of_bytes(text.as_bytes()).hex().to_string()
}

/// The key a step that ran hands on: its input key and what it produced, the
/// config's timestamps left out. A re-run that produced the same layers and config
/// (a metadata step under `--no-cache`, a COPY of unchanged files) then keeps the
/// entries after it valid; anything else it produced gives a new key.
pub fn result_key(input: &str, state: &ImageState) -> Key {
    let layers: Vec<String> = state.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let mut config = serde_json::to_value(&state.config).unwrap_or_default();
    // `retain`, not `remove`: with serde_json's preserve_order, remove swaps the
    // last field into the hole and the text would depend on whether one was there.
    if let Some(obj) = config.as_object_mut() {
        // rootfs is left out too: the layers above cover it, and a state in the
        // middle of a stage does not keep it up to date while one loaded from a
        // registry cache does.
        obj.retain(|k, _| k != "created" && k != "rootfs");
        for entry in obj.get_mut("history").and_then(|h| h.as_array_mut()).into_iter().flatten() {
            if let Some(e) = entry.as_object_mut() {
                e.retain(|k, _| k != "created");
            }
        }
    }
    key_of(&["ran", input, &layers.join(","), &config.to_string()])
}

/// Writes `bytes` to `path` durably: temp file, fsync, rename (best effort).
fn write_durably(path: &Path, tmp: &Path, bytes: &[u8]) {
    let written = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        fs::rename(tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(tmp);
    }
}

/// The key of a base image: its layers and config, as stored.
pub fn base_key(image: &ImageState) -> Key {
    let layers: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let config = serde_json::to_string(&image.config).unwrap_or_default();
    key_of(&["base", &layers.join(","), &config])
}

impl Cache {
    pub fn open(ws: &Workspace) -> Result<Cache> {
        let dir = ws.root.join("cache");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Cache { dir })
    }

    /// A cache that finds nothing and keeps nothing (the store's cache dir could not
    /// be created; builds still work, uncached).
    pub fn disabled() -> Cache {
        Cache { dir: PathBuf::from("/nonexistent/strata-cache") }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The cached result for `key`, if it and all its blobs are present.
    pub fn get(&self, ws: &Workspace, key: &str) -> Option<ImageState> {
        let bytes = fs::read(self.path(key)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        for (_, blob) in &entry.layers {
            let digest = oci::descriptor_digest(blob).ok()?;
            if !ws.store.has_blob(&digest) {
                return None;
            }
        }
        let layers = entry.layers.into_iter().map(|(diff_id, blob)| LayerRef { diff_id, blob }).collect();
        Some(ImageState { layers, config: entry.config, cache_key: entry.key })
    }

    /// Records `state` as the result of `key` (best effort: a cache that cannot be
    /// written only costs a rebuild).
    pub fn put(&self, key: &str, state: &ImageState) {
        let entry = Entry {
            key: state.cache_key.clone(),
            layers: state.layers.iter().map(|l| (l.diff_id.clone(), l.blob.clone())).collect(),
            config: state.config.clone(),
        };
        let Ok(bytes) = serde_json::to_vec(&entry) else { return };
        let tmp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        write_durably(&self.path(key), &tmp, &bytes);
    }
}

/// One walked entry: its description, and the file whose content follows it.
type Item = (Vec<u8>, Option<(PathBuf, MemoKey)>);

/// A digest of the files below `root` at `paths` (relative, already matched):
/// everything COPY keeps of them. Per entry: name, type and mode bits, device
/// number, link target, the first name of its hard-link group, non-private xattrs,
/// and content. Owners are not covered: COPY sets them from `--chown` (part of the
/// step's expanded words) or to root. Nor are mtimes, as in BuildKit: a checkout
/// that only touches files keeps its hits. Every field ends in `\0`, so no two
/// different trees give the same text. Content is always read (in parallel, one
/// thread per core) unless the memo knows the file, so a change that keeps size and
/// mtime is seen.
pub fn content_digest(root: &Path, paths: &[PathBuf], ignore: &Ignore, memo: &Memo) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let mut items: Vec<Item> = Vec::new();
    let mut link_groups: std::collections::HashMap<(u64, u64), Vec<u8>> = std::collections::HashMap::new();
    for top in paths {
        let walker = walkdir::WalkDir::new(root.join(top)).follow_links(false).sort_by_file_name();
        for entry in walker {
            let entry = entry.with_context(|| format!("reading {}", root.join(top).display()))?;
            let meta = entry.metadata().with_context(|| format!("reading {}", entry.path().display()))?;
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            if !ignore.is_empty() && ignore.excluded(&rel.to_string_lossy()) {
                continue;
            }
            let name = rel.as_os_str().as_encoded_bytes().to_vec();
            let mut line = name.clone();
            line.push(0);
            line.extend_from_slice(format!("{:o}\0{}\0", meta.mode(), meta.rdev()).as_bytes());
            let mut file = None;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(entry.path()).with_context(|| format!("reading {}", entry.path().display()))?;
                line.extend_from_slice(target.as_os_str().as_encoded_bytes());
            } else if meta.is_file() {
                file = Some((entry.path().to_path_buf(), MemoKey::of(&meta)));
            }
            line.push(0);
            if meta.is_file() && meta.nlink() > 1 {
                line.extend_from_slice(link_groups.entry((meta.dev(), meta.ino())).or_insert(name));
            }
            line.push(0);
            if !meta.file_type().is_symlink() {
                line.extend_from_slice(&xattr_text(entry.path()));
            }
            line.push(0);
            items.push((line, file));
        }
    }
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
    let mut hashes: Vec<Option<Result<String>>> = (0..items.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let items = &items;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for (i, (_, file)) in items.iter().enumerate().skip(w).step_by(workers) {
                        if let Some((path, key)) = file {
                            let known = memo.get(key);
                            let digest = match known {
                                Some(d) => Ok(d),
                                None => file_digest(path).inspect(|d| memo.remember(key, d)),
                            };
                            out.push((i, digest));
                        }
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            for (i, d) in h.join().expect("hashing thread") {
                hashes[i] = Some(d);
            }
        }
    });
    let mut out = HashingWriter::new(std::io::sink());
    for ((line, _), hash) in items.iter().zip(hashes) {
        std::io::Write::write_all(&mut out, line)?;
        if let Some(h) = hash {
            std::io::Write::write_all(&mut out, h?.as_bytes())?;
        }
        std::io::Write::write_all(&mut out, b"\0")?;
    }
    Ok(out.finish().1.hex().to_string())
}

/// The xattrs COPY carries over, sorted, as `name\0hex(value)\0` pairs.
fn xattr_text(path: &Path) -> Vec<u8> {
    let mut names: Vec<std::ffi::OsString> = xattr::list(path).map(|l| l.collect()).unwrap_or_default();
    names.retain(|n| {
        let n = n.to_string_lossy();
        !crate::rootfs::is_private_xattr(&n) && !n.starts_with("security.selinux")
    });
    names.sort();
    let mut text = Vec::new();
    for name in names {
        if let Ok(Some(value)) = xattr::get(path, &name) {
            text.extend_from_slice(name.as_encoded_bytes());
            text.push(0);
            for b in value {
                text.extend_from_slice(format!("{b:02x}").as_bytes());
            }
            text.push(0);
        }
    }
    text
}

/// What identifies a file's content without reading it: device, inode, size, and
/// both mtime and ctime in nanoseconds. ctime cannot be set by users (touch -d
/// changes mtime only, and bumps ctime), so an edit that restores size and mtime
/// still changes the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemoKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i128,
    ctime: i128,
}

impl MemoKey {
    fn of(meta: &fs::Metadata) -> MemoKey {
        use std::os::unix::fs::MetadataExt;
        MemoKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// File content hashes remembered between builds (`cache/hash-memo.json`). It can
/// only skip reading a file whose identity is unchanged, and files changed in the
/// last few seconds are never remembered: the kernel's coarse clock could give a
/// second edit within the same tick the same times ("racy git").
pub struct Memo {
    path: PathBuf,
    map: std::sync::Mutex<std::collections::HashMap<MemoKey, String>>,
    dirty: std::sync::atomic::AtomicBool,
}

impl Memo {
    /// Loads the memo of the store at `root` (empty when absent or unreadable).
    pub fn load(root: &Path) -> Memo {
        let path = root.join("cache").join("hash-memo.json");
        let entries: Vec<(MemoKey, String)> = fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Memo { path, map: std::sync::Mutex::new(entries.into_iter().collect()), dirty: Default::default() }
    }

    fn get(&self, key: &MemoKey) -> Option<String> {
        self.map.lock().ok()?.get(key).cloned()
    }

    fn remember(&self, key: &MemoKey, digest: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0);
        if now - key.ctime.max(key.mtime) < 3_000_000_000 {
            return;
        }
        if let Ok(mut m) = self.map.lock() {
            m.insert(*key, digest.to_string());
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Writes the memo back (temp + rename) if it learned anything.
    pub fn save(&self) {
        if !self.dirty.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let Ok(map) = self.map.lock() else { return };
        let entries: Vec<(&MemoKey, &String)> = map.iter().collect();
        let Ok(bytes) = serde_json::to_vec(&entries) else { return };
        let tmp = self.path.with_extension(format!("{}.tmp", std::process::id()));
        write_durably(&self.path, &tmp, &bytes);
    }
}

fn file_digest(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = HashingWriter::new(std::io::sink());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut out, &buf[..n])?;
    }
    Ok(out.finish().1.hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_remembers_only_settled_files_and_keys_on_ctime() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("cache")).unwrap();
        let memo = Memo::load(d.path());
        let old = MemoKey { dev: 1, ino: 2, size: 3, mtime: 1_000_000_000, ctime: 1_000_000_000 };
        memo.remember(&old, "abc");
        assert_eq!(memo.get(&old).as_deref(), Some("abc"));
        let touched = MemoKey { ctime: 2_000_000_000, ..old };
        assert_eq!(memo.get(&touched), None, "a changed ctime is another key");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i128;
        let fresh = MemoKey { ctime: now, mtime: now, ..old };
        memo.remember(&fresh, "def");
        assert_eq!(memo.get(&fresh), None, "files changed just now are never remembered");
        memo.save();
        assert_eq!(Memo::load(d.path()).get(&old).as_deref(), Some("abc"), "saved and loaded");
    }

    #[test]
    fn content_digest_sees_content_not_just_metadata() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("cache")).unwrap();
        fs::write(d.path().join("f"), b"one").unwrap();
        let memo = Memo::load(d.path());
        let a = content_digest(d.path(), &[PathBuf::from("f")], &Ignore::default(), &memo).unwrap();
        fs::write(d.path().join("f"), b"two").unwrap();
        let b = content_digest(d.path(), &[PathBuf::from("f")], &Ignore::default(), &memo).unwrap();
        assert_ne!(a, b);
    }

    fn digest_of(d: &Path) -> String {
        content_digest(d, &[PathBuf::from("t")], &Ignore::default(), &Memo::load(d)).unwrap()
    }

    #[test]
    fn content_digest_covers_what_copy_keeps() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("cache")).unwrap();
        fs::create_dir(root.join("t")).unwrap();
        fs::write(root.join("t/a"), b"x").unwrap();
        fs::write(root.join("t/b"), b"x").unwrap();
        symlink("a", root.join("t/l")).unwrap();
        let plain = digest_of(root);
        // A hard link in place of an equal copy.
        fs::remove_file(root.join("t/b")).unwrap();
        fs::hard_link(root.join("t/a"), root.join("t/b")).unwrap();
        let linked = digest_of(root);
        assert_ne!(plain, linked, "hard-link grouping");
        // Another symlink target.
        fs::remove_file(root.join("t/l")).unwrap();
        symlink("b", root.join("t/l")).unwrap();
        let retargeted = digest_of(root);
        assert_ne!(linked, retargeted, "symlink target");
        fs::set_permissions(root.join("t/a"), fs::Permissions::from_mode(0o600)).unwrap();
        let moded = digest_of(root);
        assert_ne!(retargeted, moded, "mode");
        if xattr::set(root.join("t/a"), "user.strata-test", b"1").is_ok() {
            let tagged = digest_of(root);
            assert_ne!(moded, tagged, "xattr");
            xattr::set(root.join("t/a"), "user.overlay.opaque", b"y").unwrap();
            assert_eq!(tagged, digest_of(root), "overlay-private xattrs are not copied, so not hashed");
        }
    }

    #[test]
    fn result_keys_name_what_a_step_produced() {
        let mut state = ImageState::scratch();
        let a = result_key("k", &state);
        assert_eq!(a, result_key("k", &state), "deterministic");
        state.config.history.push(oci::History { created: Some("2024-01-01T00:00:00Z".into()), ..Default::default() });
        let b = result_key("k", &state);
        assert_ne!(a, b, "another result, another key");
        state.config.history[0].created = Some("2025-01-01T00:00:00Z".into());
        state.config.set_created(chrono::Utc::now());
        assert_eq!(b, result_key("k", &state), "times are not part of a result");
        assert_ne!(a, result_key("j", &state));
    }
}
