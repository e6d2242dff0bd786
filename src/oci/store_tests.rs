//! Tests for the store: atomic blob writes, tags, resolution, listing, locking, fsck.

use super::*;
use crate::oci::layer_writer::tiny_image;
use crate::oci::{MEDIA_TYPE_CONFIG, MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_MANIFEST};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn leftover_temps(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for dir in [store.root().to_path_buf(), store.blob_dir()] {
        for e in fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                out.push(name);
            }
        }
    }
    out
}

fn config_only_image(store: &Store, n: usize) -> Descriptor {
    let mut config = ImageConfig::for_host();
    config.created = Some(format!("2024-01-01T00:00:{:02}Z", n % 60));
    config.author = Some(format!("author {n}"));
    store.put_image(&config, &[]).unwrap()
}

#[test]
fn open_creates_a_valid_layout_and_reopens() {
    let (_dir, store) = temp_store();
    let layout = fs::read_to_string(store.root().join("oci-layout")).unwrap();
    assert_eq!(layout, r#"{"imageLayoutVersion":"1.0.0"}"#);
    let index: serde_json::Value = serde_json::from_slice(&fs::read(store.root().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"], serde_json::json!([]));
    assert!(store.root().join("blobs/sha256").is_dir());
    Store::open(store.root()).unwrap();
}

#[test]
fn open_rejects_a_foreign_layout_version() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("oci-layout"), r#"{"imageLayoutVersion":"9.0"}"#).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("not an OCI image layout"), "{err}");
}

#[test]
fn put_blob_is_atomic_and_idempotent() {
    let (_dir, store) = temp_store();
    let info = store.put_blob(&b"hello blob"[..]).unwrap();
    assert_eq!(info.digest, Digest::of_bytes(b"hello blob"));
    assert_eq!(info.size, 10);
    let path = store.blob_path(&info.digest);
    assert_eq!(fs::read(&path).unwrap(), b"hello blob");
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
    let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
    let again = store.put_blob(&b"hello blob"[..]).unwrap();
    assert_eq!(again, info);
    // The existing file was kept, not replaced.
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap()), ino);
    assert!(leftover_temps(&store).is_empty());
    assert!(store.has_blob(&info.digest));
}

#[test]
fn put_blob_verified_refuses_wrong_content() {
    let (_dir, store) = temp_store();
    let want = Digest::of_bytes(b"expected");
    let err = store.put_blob_verified(&b"other"[..], &want, None).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
    assert!(!store.has_blob(&want));
    assert!(!store.has_blob(&Digest::of_bytes(b"other")));
    let err = store.put_blob_verified(&b"expected"[..], &want, Some(3)).unwrap_err();
    assert!(matches!(err, OciError::SizeMismatch { .. }), "{err}");
    assert!(leftover_temps(&store).is_empty());
    let ok = store.put_blob_verified(&b"expected"[..], &want, Some(8)).unwrap();
    assert_eq!(ok.digest, want);
}

#[test]
fn json_round_trip_and_corruption_detection() {
    let (_dir, store) = temp_store();
    let mut config = ImageConfig::for_host();
    config.author = Some("me".into());
    let desc = store.put_json(MEDIA_TYPE_CONFIG, &config).unwrap();
    let digest = descriptor_digest(&desc).unwrap();
    assert_eq!(store.read_config(&digest).unwrap(), config);
    assert_eq!(desc.media_type().to_string(), MEDIA_TYPE_CONFIG);
    fs::write(store.blob_path(&digest), b"{}").unwrap();
    let err = store.read_config(&digest).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
    let missing = Digest::of_bytes(b"nope");
    let err = store.open_blob(&missing).unwrap_err();
    assert!(err.to_string().contains(missing.as_str()), "{err}");
}

#[test]
fn tag_resolve_list_untag() {
    let (_dir, store) = temp_store();
    let (m1, layer) = tiny_image(&store, b"one");
    let (m2, _) = tiny_image(&store, b"two");
    let hello = ImageName::parse("hello").unwrap();
    store.tag(&hello, &m1).unwrap();
    store.tag(&ImageName::parse("quay.io/a/b:1").unwrap(), &m2).unwrap();

    let index = store.read_index().unwrap();
    let names: Vec<_> = index.manifests().iter().filter_map(ref_name_of).collect();
    assert_eq!(names, ["localhost/hello:latest", "quay.io/a/b:1"]);

    let found = store.resolve("hello").unwrap().unwrap();
    assert_eq!(found.digest(), m1.digest());
    assert_eq!(store.resolve("localhost/hello:latest").unwrap().unwrap().digest(), m1.digest());
    assert!(store.resolve("hello:v2").unwrap().is_none());
    assert!(store.resolve("nothere").unwrap().is_none());

    let manifest = store.read_manifest(&descriptor_digest(&m1).unwrap()).unwrap();
    let id = descriptor_digest(manifest.config()).unwrap();
    for r in [id.short().to_string(), id.hex().to_string(), id.to_string()] {
        assert_eq!(store.resolve(&r).unwrap().unwrap().digest(), m1.digest(), "{r}");
    }
    let by_digest = format!("hello@{}", descriptor_digest(&m1).unwrap());
    assert_eq!(store.resolve(&by_digest).unwrap().unwrap().digest(), m1.digest());

    let list = store.list().unwrap().images;
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].name.as_deref(), Some("localhost/hello:latest"));
    assert_eq!(list[0].id, id);
    assert_eq!(list[0].manifest, descriptor_digest(&m1).unwrap());
    assert_eq!(list[0].size, manifest.config().size() + layer.size);
    assert_eq!(list[0].created.unwrap().to_rfc3339(), "2024-01-02T03:04:05+00:00");

    // Re-tagging replaces the entry instead of adding a second one.
    store.tag(&hello, &m2).unwrap();
    let entries = store.read_index().unwrap().manifests().clone();
    assert_eq!(entries.len(), 2);
    assert_eq!(store.resolve("hello").unwrap().unwrap().digest(), m2.digest());

    assert!(store.untag(&hello).unwrap());
    assert!(!store.untag(&hello).unwrap());
    assert!(store.resolve("hello").unwrap().is_none());
    assert_eq!(store.list().unwrap().images.len(), 1);
}

#[test]
fn ambiguous_id_prefix_is_an_error() {
    let (_dir, store) = temp_store();
    // 17 distinct ids over 16 possible first hex digits: two must share one.
    for n in 0..17 {
        let m = config_only_image(&store, n);
        store.tag(&ImageName::parse(&format!("img{n}")).unwrap(), &m).unwrap();
    }
    let ids: Vec<Digest> = store.list().unwrap().images.into_iter().map(|s| s.id).collect();
    let shared = ids.iter().find(|a| ids.iter().filter(|b| b.hex()[..1] == a.hex()[..1]).count() > 1).unwrap();
    // A one-letter hex name like "a" is also a valid image name; no such tag exists.
    let err = store.resolve(&shared.hex()[..1]).unwrap_err();
    assert!(matches!(err, OciError::AmbiguousImageId { .. }), "{err}");
    assert!(err.to_string().contains("ambiguous"));
}

#[test]
fn concurrent_tagging_loses_no_entries() {
    let (_dir, store) = temp_store();
    let m = config_only_image(&store, 0);
    let stop = Arc::new(AtomicBool::new(false));
    // A reader racing the writers must always see a complete, parseable index.
    let reader = {
        let store = store.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                store.read_index().unwrap();
                reads += 1;
            }
            reads
        })
    };
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let root = store.root().to_path_buf();
            let m = m.clone();
            std::thread::spawn(move || {
                // Each thread opens its own handle, as separate processes would.
                let store = Store::open(root).unwrap();
                for i in 0..10 {
                    let name = ImageName::parse(&format!("t{t}/img:{i}")).unwrap();
                    store.tag(&name, &m).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let entries = store.read_index().unwrap().manifests().clone();
    assert_eq!(entries.len(), 80);
    for t in 0..8 {
        for i in 0..10 {
            assert!(store.resolve(&format!("t{t}/img:{i}")).unwrap().is_some());
        }
    }
    assert!(leftover_temps(&store).is_empty());
}

#[test]
fn fsck_catches_corrupt_and_missing_blobs() {
    let (_dir, store) = temp_store();
    let (m, layer) = tiny_image(&store, b"payload");
    store.tag(&ImageName::parse("x").unwrap(), &m).unwrap();
    let report = store.fsck().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.checked, 3);

    // Flip one byte of the layer: same size, different digest.
    let path = store.blob_path(&layer.digest);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let report = store.fsck().unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].digest, layer.digest);
    assert!(store.verify_blob(&layer.digest).is_err());

    fs::remove_file(&path).unwrap();
    let report = store.fsck().unwrap();
    assert_eq!(report.missing, vec![layer.digest.clone()]);
}

#[test]
fn tag_all_writes_every_name_in_one_update() {
    let (_dir, store) = temp_store();
    let a = config_only_image(&store, 1);
    let b = config_only_image(&store, 2);
    let names: Vec<ImageName> = ["x:1", "y:2"].iter().map(|n| ImageName::parse(n).unwrap()).collect();
    store.tag_all(&names, &a).unwrap();
    store.tag_all(&names[..1], &b).unwrap();
    let index = store.read_index().unwrap();
    assert_eq!(index.manifests().len(), 2, "a re-tag replaces the old entry");
    assert_eq!(store.resolve("x:1").unwrap().unwrap().digest(), b.digest());
    assert_eq!(store.resolve("y:2").unwrap().unwrap().digest(), a.digest());
}

#[test]
fn reachable_names_configs_and_refuses_an_unreadable_manifest() {
    let (_dir, store) = temp_store();
    let a = config_only_image(&store, 3);
    store.tag(&ImageName::parse("ok").unwrap(), &a).unwrap();
    let reach = store.reachable().unwrap();
    let digest = descriptor_digest(&a).unwrap();
    let manifest = store.read_manifest(&digest).unwrap();
    assert_eq!(reach.configs, vec![descriptor_digest(manifest.config()).unwrap()]);
    assert!(reach.blobs.contains(&digest));
    fs::write(store.blob_path(&digest), b"garbage").unwrap();
    let err = store.reachable().unwrap_err().to_string();
    assert!(err.contains(&digest.to_string()), "{err}");
}

mod temps {
    //! Dead writers' temps, seen through the store that has them.
    use super::*;
    use crate::oci::temps::{create_dir, create_file};
    use crate::oci::StaleTemp;
    use nix::fcntl::{Flock, FlockArg};
    use std::fs::File;

    #[test]
    fn only_dead_writers_temps_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let blobs = d.path().join("blobs/sha256");
        // pid_max is at most 2^22: this pid cannot run.
        let dead = blobs.join(".tmp-4999999-dead01");
        fs::write(&dead, vec![0u8; 1000]).unwrap();
        let dead_dir = d.path().join(".tmp-import-4999999-dead02");
        fs::create_dir(&dead_dir).unwrap();
        fs::write(dead_dir.join("blob"), b"12345").unwrap();
        let live = store.temp_blob().unwrap();
        let old_style = blobs.join(".tmp-Ab12Cd");
        fs::write(&old_style, b"x").unwrap();

        let stale = store.stale_temps();
        assert_eq!(
            stale.iter().map(|t| (&t.path, t.pid, t.bytes)).collect::<Vec<_>>(),
            vec![(&dead_dir, 4999999, 5), (&dead, 4999999, 1000)]
        );
        store.remove_stale_temps().unwrap();
        assert!(!dead.exists() && !dead_dir.exists());
        assert!(live.path().exists(), "a live writer's temp file stays");
        assert!(old_style.exists(), "a name without a pid is left to prune");
    }

    /// A temp whose writer runs in another pid namespace: its pid means nothing here,
    /// its lock is all we see.
    fn held_by_another_namespace(path: &Path) -> Flock<File> {
        Flock::lock(File::open(path).unwrap(), FlockArg::LockExclusive).unwrap()
    }

    #[test]
    fn a_temp_locked_by_a_writer_we_cannot_see_stays() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let blobs = d.path().join("blobs/sha256");
        let held = blobs.join(".tmp-4999998-held01");
        fs::write(&held, b"being written").unwrap();
        let held_dir = d.path().join(".tmp-import-4999998-held02");
        fs::create_dir(&held_dir).unwrap();
        let abandoned = blobs.join(".tmp-4999998-gone01");
        fs::write(&abandoned, b"x").unwrap();
        let writer = held_by_another_namespace(&held);
        let dir_writer = held_by_another_namespace(&held_dir);

        let paths = |ts: Vec<StaleTemp>| ts.into_iter().map(|t| t.path).collect::<Vec<_>>();
        assert_eq!(paths(store.stale_temps()), vec![abandoned.clone()]);
        assert_eq!(paths(store.remove_stale_temps().unwrap()), vec![abandoned.clone()]);
        assert!(held.exists() && held_dir.exists(), "a temp whose lock is held stays");
        assert!(!abandoned.exists(), "one nobody holds the lock of goes");
        drop((writer, dir_writer));
        assert_eq!(paths(store.remove_stale_temps().unwrap()), vec![held_dir, held]);
    }

    #[test]
    fn every_writer_holds_its_temps_lock() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let file = store.temp_blob().unwrap();
        let dir = create_dir(d.path(), "import-").unwrap();
        let export = create_file(d.path(), "export-").unwrap();
        // Renamed to a pid that does not run here: only the lock keeps them now.
        for (i, p) in [file.path(), dir.path(), export.path()].into_iter().enumerate() {
            let parent = p.parent().unwrap();
            fs::rename(p, parent.join(format!(".tmp-4999997-moved{i}"))).unwrap();
        }
        assert_eq!(store.stale_temps(), vec![]);
        drop((file, dir, export));
        assert_eq!(store.remove_stale_temps().unwrap().len(), 3, "closed, they are a dead writer's");
    }
}

#[test]
fn annotations_are_written_in_key_order_so_the_digest_is_stable() {
    let (_dir, store) = temp_store();
    let config = ImageConfig::for_host();
    let keys: Vec<String> = (0..20).map(|i| format!("k{:02}", (i * 7) % 20)).collect();
    let annotations: BTreeMap<String, String> = keys.iter().map(|k| (k.clone(), format!("v-{k}"))).collect();
    let first = store.put_image_annotated(&config, &[], &annotations).unwrap();
    let second = store.put_image_annotated(&config, &[], &annotations).unwrap();
    assert_eq!(first.digest(), second.digest());
    let bytes = fs::read(store.blob_path(&descriptor_digest(&first).unwrap())).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.ends_with(r#""annotations":{"k00":"v-k00","k01":"v-k01","k02":"v-k02","k03":"v-k03","k04":"v-k04","k05":"v-k05","k06":"v-k06","k07":"v-k07","k08":"v-k08","k09":"v-k09","k10":"v-k10","k11":"v-k11","k12":"v-k12","k13":"v-k13","k14":"v-k14","k15":"v-k15","k16":"v-k16","k17":"v-k17","k18":"v-k18","k19":"v-k19"}}"#), "{text}");
    let manifest = store.read_manifest(&descriptor_digest(&first).unwrap()).unwrap();
    assert_eq!(manifest.annotations().as_ref().map(|a| a.len()), Some(20));
    // No annotations: the manifest put_image always wrote.
    let plain = store.put_image_annotated(&config, &[], &BTreeMap::new()).unwrap();
    assert_eq!(plain.digest(), store.put_image(&config, &[]).unwrap().digest());
    assert!(store.read_manifest(&descriptor_digest(&plain).unwrap()).unwrap().annotations().is_none());
}

#[test]
fn a_docker_format_image_shares_the_config_and_names_itself_docker() {
    let (_d, store) = temp_store();
    let config = ImageConfig::for_host();
    let oci = store.put_image_as(ManifestFormat::Oci, &config, &[], &BTreeMap::new()).unwrap();
    let docker = store.put_image_as(ManifestFormat::Docker, &config, &[], &BTreeMap::new()).unwrap();
    assert_eq!(oci.media_type().to_string(), MEDIA_TYPE_MANIFEST);
    assert_eq!(docker.media_type().to_string(), MEDIA_TYPE_DOCKER_MANIFEST, "the index entry names the type too");
    assert_ne!(oci.digest(), docker.digest());
    let (o, d) = (
        store.read_manifest(&descriptor_digest(&oci).unwrap()).unwrap(),
        store.read_manifest(&descriptor_digest(&docker).unwrap()).unwrap(),
    );
    assert_eq!(o.config().digest(), d.config().digest(), "one config blob: the same image id");
    assert_eq!(o.config().media_type().to_string(), MEDIA_TYPE_CONFIG);
    assert_eq!(d.config().media_type().to_string(), MEDIA_TYPE_DOCKER_CONFIG);
    assert!(is_manifest(d.media_type().as_ref().unwrap()));
}
