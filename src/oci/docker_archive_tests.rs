//! Tests for docker-archive export and import, and for telling archives apart.

use super::*;
use crate::oci::layer_writer::tiny_image;
use crate::oci::{export_oci_archive, Digest};

fn temp_store(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open(dir.path().join(name)).unwrap()
}

/// (path, type, size) of every member, in order.
fn members(file: &Path) -> Vec<(String, tar::EntryType, u64)> {
    let mut ar = tar::Archive::new(File::open(file).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().display().to_string(), e.header().entry_type(), e.header().size().unwrap())
        })
        .collect()
}

fn member_bytes(file: &Path, name: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(File::open(file).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut out = Vec::new();
            e.read_to_end(&mut out).unwrap();
            return out;
        }
    }
    panic!("no member {name} in {}", file.display());
}

/// A hand-made docker-archive: `files` are (name, bytes), `links` (name, target, kind).
fn write_archive(path: &Path, files: &[(&str, &[u8])], links: &[(&str, &str, tar::EntryType)]) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    for (name, data) in files {
        let h = header(name, tar::EntryType::Regular, 0o644, data.len() as u64);
        b.append(&h, *data).unwrap();
    }
    for (name, target, kind) in links {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, name, target).unwrap();
    }
    b.finish().unwrap();
}

fn plain_layer(content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let h = header("file.txt", tar::EntryType::Regular, 0o644, content.len() as u64);
    b.append(&h, content).unwrap();
    b.into_inner().unwrap()
}

fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let mut config = ImageConfig::for_host();
    for l in layers {
        config.rootfs.diff_ids.push(DiffId::new(Digest::of_bytes(l)));
    }
    serde_json::to_vec(&config).unwrap()
}

#[test]
fn export_writes_docker_save_layout_with_plain_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = temp_store(&tmp, "src");
    let (m, layer) = tiny_image(&store, b"docker");
    let file = tmp.path().join("img.tar");
    export_docker_archive(&store, &m, &file, &["localhost/hello:v1".to_string()]).unwrap();

    let list = members(&file);
    let names: Vec<&str> = list.iter().map(|(n, _, _)| n.as_str()).collect();
    let layer_name = format!("{}.tar", layer.diff_id.digest().hex());
    let manifest = store.read_manifest(&descriptor_digest(&m).unwrap()).unwrap();
    let config_digest = descriptor_digest(manifest.config()).unwrap();
    let config_name = format!("{}.json", config_digest.hex());
    assert_eq!(names, [layer_name.as_str(), config_name.as_str(), "manifest.json", "repositories"]);

    // The layer is the uncompressed tar whose sha256 is the diff id.
    let plain = member_bytes(&file, &layer_name);
    assert_eq!(&Digest::of_bytes(&plain), layer.diff_id.digest());
    assert_eq!(Digest::of_bytes(&member_bytes(&file, &config_name)), config_digest);
    let entries: serde_json::Value = serde_json::from_slice(&member_bytes(&file, "manifest.json")).unwrap();
    assert_eq!(entries, serde_json::json!([{"Config": config_name, "RepoTags": ["localhost/hello:v1"], "Layers": [layer_name]}]));
    let repos: serde_json::Value = serde_json::from_slice(&member_bytes(&file, "repositories")).unwrap();
    assert_eq!(repos, serde_json::json!({"localhost/hello": {"v1": layer.diff_id.digest().hex()}}));
    let leftovers: Vec<_> =
        fs::read_dir(store.root()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn round_trip_keeps_image_id_and_names() {
    let tmp = tempfile::tempdir().unwrap();
    let src = temp_store(&tmp, "src");
    let (m, _) = tiny_image(&src, b"round trip");
    let file = tmp.path().join("img.tar");
    export_docker_archive(&src, &m, &file, &["localhost/hello:latest".to_string()]).unwrap();

    let dst = temp_store(&tmp, "dst");
    let loaded = load_archive(&dst, &file, None).unwrap();
    assert_eq!(loaded.names.iter().map(ToString::to_string).collect::<Vec<_>>(), ["localhost/hello:latest"]);
    let id = |s: &Store, d: &Descriptor| descriptor_digest(s.read_manifest(&descriptor_digest(d).unwrap()).unwrap().config()).unwrap();
    assert_eq!(id(&dst, &loaded.manifest), id(&src, &m), "the config is kept byte for byte");
    let manifest = dst.read_manifest(&descriptor_digest(&loaded.manifest).unwrap()).unwrap();
    assert_eq!(manifest.layers()[0].media_type().to_string(), MEDIA_TYPE_LAYER_TAR);
    dst.tag(&loaded.names[0], &loaded.manifest).unwrap();
    assert!(dst.fsck().unwrap().is_clean());
    // A name picks the image; an unknown one says what the archive holds.
    assert!(load_archive(&dst, &file, Some("hello")).is_ok());
    let err = load_archive(&dst, &file, Some("other:1")).unwrap_err().to_string();
    assert!(err.contains("localhost/hello:latest"), "{err}");
}

#[test]
fn load_tells_oci_archives_from_docker_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let src = temp_store(&tmp, "src");
    let (m, _) = tiny_image(&src, b"oci");
    let file = tmp.path().join("oci.tar");
    export_oci_archive(&src, &m, &file, Some("localhost/named:v2")).unwrap();
    let dst = temp_store(&tmp, "dst");
    let loaded = load_archive(&dst, &file, None).unwrap();
    assert_eq!(loaded.manifest.digest(), m.digest());
    assert_eq!(loaded.names.iter().map(ToString::to_string).collect::<Vec<_>>(), ["localhost/named:v2"]);
    // A bare tag as ref.name names no repository.
    export_oci_archive(&src, &m, &file, Some("latest")).unwrap();
    assert!(load_archive(&dst, &file, None).unwrap().names.is_empty());

    let junk = tmp.path().join("junk.tar");
    write_archive(&junk, &[("hello.txt", b"hi")], &[]);
    let err = load_archive(&dst, &junk, None).unwrap_err().to_string();
    assert!(err.contains("neither a docker-archive"), "{err}");
}

#[test]
fn legacy_layer_symlinks_and_compressed_layers_load() {
    let tmp = tempfile::tempdir().unwrap();
    let l1 = plain_layer(b"one");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&l1).unwrap();
    let l1_gz = gz.finish().unwrap();
    let config = config_for(&[&l1, &l1]);
    let manifest = serde_json::json!([{"Config": "c.json", "RepoTags": ["old:1"], "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]);
    let file = tmp.path().join("old.tar");
    write_archive(
        &file,
        &[("c.json", &config), ("manifest.json", manifest.to_string().as_bytes()), ("aaa/layer.tar", &l1_gz)],
        // Old docker save repeats a layer as a symlink to the first copy.
        &[("bbb/layer.tar", "../aaa/layer.tar", tar::EntryType::Symlink)],
    );
    let store = temp_store(&tmp, "s");
    let loaded = load_archive(&store, &file, None).unwrap();
    let m = store.read_manifest(&descriptor_digest(&loaded.manifest).unwrap()).unwrap();
    assert_eq!(m.layers().len(), 2);
    assert_eq!(m.layers()[0].media_type().to_string(), MEDIA_TYPE_LAYER_GZIP, "a gzip layer keeps its compression");
    assert_eq!(loaded.names[0].to_string(), "localhost/old:1");
}

#[test]
fn hostile_or_damaged_archives_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = temp_store(&tmp, "s");
    let layer = plain_layer(b"real");
    let config = config_for(&[&plain_layer(b"claimed")]);
    let manifest = serde_json::json!([{"Config": "c.json", "Layers": ["l.tar"]}]).to_string();

    // A layer that is not what the config's diff id says.
    let file = tmp.path().join("wrong.tar");
    write_archive(&file, &[("c.json", &config), ("manifest.json", manifest.as_bytes()), ("l.tar", &layer)], &[]);
    let err = load_archive(&store, &file, None).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");

    // Members and links that point outside the archive.
    let file = tmp.path().join("escape.tar");
    write_archive(&file, &[("manifest.json", manifest.as_bytes())], &[("l.tar", "../../outside", tar::EntryType::Symlink)]);
    let err = load_archive(&store, &file, None).unwrap_err();
    assert!(matches!(err, OciError::UnsafeArchivePath { .. }), "{err}");
    let file = tmp.path().join("abs.tar");
    write_archive(&file, &[("manifest.json", manifest.as_bytes())], &[("l.tar", "/etc/passwd", tar::EntryType::Symlink)]);
    let err = load_archive(&store, &file, None).unwrap_err().to_string();
    // An absolute link is read inside the archive, where nothing is at etc/passwd.
    assert!(err.contains("missing"), "{err}");

    // Nothing of the failed loads stays behind.
    let names: Vec<_> = fs::read_dir(store.root()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.starts_with(".tmp")), "{names:?}");
    assert!(store.list().unwrap().images.is_empty());
}
