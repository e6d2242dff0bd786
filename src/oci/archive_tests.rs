//! Tests for oci-dir / oci-archive export and import, including checks with skopeo.

use super::*;
use crate::oci::image::{MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use crate::oci::layer_writer::tiny_image;
use oci_spec::image::{Arch, MediaType, Os, Platform};
use std::process::Command;

fn temp_store(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open(dir.path().join(name)).unwrap()
}

fn index_names(dir: &Path) -> Vec<String> {
    let index: ImageIndex = read_json_file(&dir.join("index.json")).unwrap();
    index.manifests().iter().filter_map(|d| ref_name_of(d).map(str::to_string)).collect()
}

#[test]
fn oci_dir_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = temp_store(&tmp, "src");
    let (m1, _) = tiny_image(&src, b"one");
    let (m2, _) = tiny_image(&src, b"two");
    src.tag(&ImageName::parse("hello").unwrap(), &m1).unwrap();
    let out = tmp.path().join("out");
    export_oci_dir(&src, &m1, &out, Some("v1")).unwrap();
    export_oci_dir(&src, &m2, &out, Some("v2")).unwrap();
    // Same tag again: replaced, not duplicated.
    export_oci_dir(&src, &m2, &out, Some("v1")).unwrap();
    assert_eq!(index_names(&out), ["v2", "v1"]);
    // The store's own tag annotation does not leak into the export.
    let exported: ImageIndex = read_json_file(&out.join("index.json")).unwrap();
    assert!(exported.manifests().iter().all(|d| d.annotations().as_ref().unwrap().len() == 1));
    assert!(Store::open(&out).unwrap().fsck().unwrap().is_clean());

    let dst = temp_store(&tmp, "dst");
    let got = import_oci_dir(&dst, &out, Some("v2"), None).unwrap();
    assert_eq!(got.digest(), m2.digest());
    assert_eq!(got.size(), m2.size());
    assert!(got.annotations().is_none());
    dst.tag(&ImageName::parse("imported").unwrap(), &got).unwrap();
    let report = dst.fsck().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.checked, 3);
}

#[test]
fn oci_archive_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = temp_store(&tmp, "src");
    let (m, layer) = tiny_image(&src, b"archived");
    let file = tmp.path().join("img.tar");
    export_oci_archive(&src, &m, &file, Some("latest")).unwrap();

    let mut names = Vec::new();
    let mut ar = tar::Archive::new(File::open(&file).unwrap());
    for e in ar.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert_eq!(&names[..4], ["blobs/", "blobs/sha256/", "oci-layout", "index.json"]);
    assert_eq!(names.len(), 7);
    assert!(names.contains(&format!("blobs/sha256/{}", layer.digest.hex())));
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let dst = temp_store(&tmp, "dst");
    let got = import_oci_archive(&dst, &file, None, None).unwrap();
    assert_eq!(got.digest(), m.digest());
    dst.tag(&ImageName::parse("x").unwrap(), &got).unwrap();
    assert!(dst.fsck().unwrap().is_clean());
    // The extraction dir is gone; only the layout's own files remain.
    let mut root: Vec<_> = fs::read_dir(dst.root()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    root.sort();
    assert_eq!(root, ["blobs", "index.json", "oci-layout"]);
}

#[test]
fn export_refuses_a_corrupt_store_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let src = temp_store(&tmp, "src");
    let (m, layer) = tiny_image(&src, b"x");
    let path = src.blob_path(&layer.digest);
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 1;
    fs::write(&path, bytes).unwrap();
    let file = tmp.path().join("img.tar");
    let err = export_oci_archive(&src, &m, &file, None).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
    assert!(!file.exists());
    let err = export_oci_dir(&src, &m, &tmp.path().join("out"), None).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
}

#[test]
fn import_picks_by_name_and_explains_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let src = temp_store(&tmp, "src");
    let (m1, _) = tiny_image(&src, b"1");
    let (m2, _) = tiny_image(&src, b"2");
    let out = tmp.path().join("out");
    export_oci_dir(&src, &m1, &out, Some("localhost/a:latest")).unwrap();
    export_oci_dir(&src, &m2, &out, Some("b")).unwrap();
    let dst = temp_store(&tmp, "dst");

    let err = import_oci_dir(&dst, &out, None, None).unwrap_err();
    assert!(matches!(err, OciError::AmbiguousManifest { .. }), "{err}");
    assert!(err.to_string().contains("localhost/a:latest, b"), "{err}");
    let err = import_oci_dir(&dst, &out, Some("c"), None).unwrap_err();
    assert!(err.to_string().contains("\"c\""), "{err}");
    assert!(err.to_string().contains("available: localhost/a:latest, b"), "{err}");
    // A short name matches its normalised spelling.
    assert_eq!(import_oci_dir(&dst, &out, Some("a"), None).unwrap().digest(), m1.digest());
    assert_eq!(import_oci_dir(&dst, &out, Some("b"), None).unwrap().digest(), m2.digest());

    let err = import_oci_dir(&dst, &tmp.path().join("nope"), None, None).unwrap_err();
    assert!(matches!(err, OciError::InvalidLayout { .. }), "{err}");
}

#[test]
fn import_verifies_source_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = temp_store(&tmp, "src");
    let (m, layer) = tiny_image(&src, b"verify me");
    let out = tmp.path().join("out");
    export_oci_dir(&src, &m, &out, Some("t")).unwrap();
    let bad = out.join("blobs/sha256").join(layer.digest.hex());
    let mut bytes = fs::read(&bad).unwrap();
    bytes[5] ^= 0x55;
    fs::write(&bad, bytes).unwrap();

    let dst = temp_store(&tmp, "dst");
    let err = import_oci_dir(&dst, &out, None, None).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
    assert!(!dst.has_blob(&layer.digest));
    assert!(!dst.has_blob(&descriptor_digest(&m).unwrap()));

    fs::remove_file(&bad).unwrap();
    let err = import_oci_dir(&dst, &out, None, None).unwrap_err();
    assert!(matches!(err, OciError::BlobNotFound { .. }), "{err}");
}

#[test]
fn import_follows_an_index_to_the_host_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = temp_store(&tmp, "multi");
    let (host, _) = tiny_image(&layout, b"host");
    let (other, _) = tiny_image(&layout, b"other");
    let with_platform = |d: &Descriptor, os: Os, arch: Arch| {
        let mut d = d.clone();
        let mut p = Platform::default();
        p.set_os(os);
        p.set_architecture(arch);
        d.set_platform(Some(p));
        d
    };
    let here = crate::platform::Platform::host();
    let (host_os, host_arch) = (Os::from(here.os.as_str()), Arch::from(here.architecture.as_str()));
    let foreign_arch = if host_arch == Arch::s390x { Arch::ARM64 } else { Arch::s390x };
    let mut index = ImageIndex::default();
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(vec![with_platform(&other, Os::Linux, foreign_arch.clone()), with_platform(&host, host_os, host_arch)]);
    let index_desc = layout.put_json(MEDIA_TYPE_INDEX, &index).unwrap();
    layout.set_ref_name("multi", &index_desc).unwrap();

    let dst = temp_store(&tmp, "dst");
    let got = import_oci_dir(&dst, layout.root(), Some("multi"), None).unwrap();
    assert_eq!(got.digest(), host.digest());
    assert_eq!(got.media_type().to_string(), MEDIA_TYPE_MANIFEST);
    assert!(got.platform().is_some());
    assert!(!dst.has_blob(&descriptor_digest(&other).unwrap()));

    // An index without our platform is an error naming the platform.
    let mut only_other = ImageIndex::default();
    only_other.set_manifests(vec![with_platform(&other, Os::Linux, foreign_arch)]);
    let d = layout.put_json(MEDIA_TYPE_INDEX, &only_other).unwrap();
    layout.set_ref_name("foreign", &d).unwrap();
    let err = import_oci_dir(&dst, layout.root(), Some("foreign"), None).unwrap_err();
    assert!(matches!(err, OciError::NoPlatformMatch { .. }), "{err}");
}

/// Builds a tar whose single member has a raw, unchecked name and type.
fn raw_tar(path: &Path, name: &[u8], kind: tar::EntryType) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(if kind == tar::EntryType::Regular { 4 } else { 0 });
    h.set_mode(0o644);
    if kind == tar::EntryType::Symlink {
        h.set_link_name("/etc").unwrap();
    }
    h.set_cksum();
    let mut b = tar::Builder::new(File::create(path).unwrap());
    let data: &[u8] = if kind == tar::EntryType::Regular { b"evil" } else { b"" };
    b.append(&h, data).unwrap();
    b.finish().unwrap();
}

#[test]
fn archive_import_refuses_unsafe_members() {
    let tmp = tempfile::tempdir().unwrap();
    let dst = temp_store(&tmp, "dst");
    let cases: [(&[u8], tar::EntryType); 4] = [
        (b"../evil", tar::EntryType::Regular),
        (b"blobs/../../evil", tar::EntryType::Regular),
        (b"/tmp/evil", tar::EntryType::Regular),
        (b"blobs", tar::EntryType::Symlink),
    ];
    for (i, (name, kind)) in cases.into_iter().enumerate() {
        let file = tmp.path().join(format!("bad{i}.tar"));
        raw_tar(&file, name, kind);
        let err = import_oci_archive(&dst, &file, None, None).unwrap_err();
        assert!(matches!(err, OciError::UnsafeArchivePath { .. }), "{err}");
        assert!(err.to_string().contains("unsafe member"), "{err}");
    }
    assert!(!tmp.path().join("evil").exists());
    assert!(!Path::new("/tmp/evil").exists());
}

fn skopeo() -> Option<PathBuf> {
    let out = Command::new("which").arg("skopeo").output().ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn skopeo_inspect(skopeo: &Path, reference: &str) -> serde_json::Value {
    let out = Command::new(skopeo).args(["inspect", reference]).output().unwrap();
    assert!(out.status.success(), "skopeo inspect {reference}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn skopeo_reads_our_exports_and_we_read_its_copies() {
    let Some(skopeo) = skopeo() else {
        eprintln!("skipping: skopeo is not installed");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = temp_store(&tmp, "src");
    let (m, layer) = tiny_image(&src, b"for skopeo");
    let dir = tmp.path().join("dir");
    let file = tmp.path().join("img.tar");
    export_oci_dir(&src, &m, &dir, Some("v1")).unwrap();
    export_oci_archive(&src, &m, &file, Some("v1")).unwrap();

    for reference in
        [format!("oci:{}:v1", dir.display()), format!("oci-archive:{}:v1", file.display()), format!("oci-archive:{}", file.display())]
    {
        let v = skopeo_inspect(&skopeo, &reference);
        assert_eq!(v["Layers"], serde_json::json!([layer.digest.to_string()]), "{reference}");
        assert_eq!(v["Os"], crate::platform::Platform::host().os, "{reference}");
    }

    // skopeo's own copy of our image must import back to the same manifest.
    let copy = tmp.path().join("copy");
    let out = Command::new(&skopeo)
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:v1", dir.display()))
        .arg(format!("oci:{}:again", copy.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dst = temp_store(&tmp, "dst");
    let got = import_oci_dir(&dst, &copy, Some("again"), None).unwrap();
    assert_eq!(got.digest(), m.digest());
    assert!(dst.has_blob(&layer.digest));
}

#[test]
fn import_picks_a_manifest_by_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let src = temp_store(&tmp, "src");
    let (m1, _) = tiny_image(&src, b"1");
    let (m2, _) = tiny_image(&src, b"2");
    let out = tmp.path().join("out");
    export_oci_dir(&src, &m1, &out, Some("a")).unwrap();
    export_oci_dir(&src, &m2, &out, Some("b")).unwrap();
    let dst = temp_store(&tmp, "dst");
    let by_digest = |d: &Descriptor| import_oci_dir(&dst, &out, Some(&format!("@{}", d.digest())), None);
    assert_eq!(by_digest(&m2).unwrap().digest(), m2.digest(), "an index.json entry");

    // A manifest index.json does not list (one platform's, below an index) is
    // found as a blob of the layout, its media type read from it.
    let (nested, _) = tiny_image(&src, b"nested");
    let other = tmp.path().join("other");
    export_oci_dir(&src, &nested, &other, Some("n")).unwrap();
    for blob in fs::read_dir(other.join("blobs/sha256")).unwrap() {
        let blob = blob.unwrap();
        let _ = fs::copy(blob.path(), out.join("blobs/sha256").join(blob.file_name()));
    }
    assert!(!fs::read_to_string(out.join("index.json")).unwrap().contains(nested.digest().as_ref() as &str));
    let got = by_digest(&nested).unwrap();
    assert_eq!(got.digest(), nested.digest());
    assert_eq!(got.media_type().to_string(), MEDIA_TYPE_MANIFEST);

    let missing = format!("@sha256:{}", "0".repeat(64));
    let err = import_oci_dir(&dst, &out, Some(&missing), None).unwrap_err();
    assert!(matches!(err, OciError::BlobNotFound { .. }), "{err}");
}
