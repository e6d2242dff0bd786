//! Hostile base layers (issue 4, acceptance 2): OCI layouts crafted by hand (busybox's
//! layers plus layers with path traversal, symlink-then-write, hard links out of the
//! root and absolute symlink chains) used as `FROM oci:DIR:hostile` + `RUN true`. The
//! build must fail with an error naming the entry, or succeed with everything contained;
//! in every case nothing may appear outside the root: each test watches a marker
//! directory outside the store that the hostile entries aim at.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::drivers::sha256_hex;
use crate::layout::Layout;
use crate::support::{path_str, scratch, skip_without_sandbox, strata, with_base, world, Run};

// ---------------------------------------------------------------------------------------
// Hand-made tar streams: raw names (`..`, absolute paths) that the tar crate's own
// builder would refuse, with PAX `path`/`linkpath` records for long ones.

#[derive(Default)]
pub struct RawTar(Vec<u8>);

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    assert_eq!(rec.len(), len);
    rec
}

impl RawTar {
    fn block(&mut self, header: &tar::Header, data: &[u8]) {
        self.0.extend_from_slice(header.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
    }

    fn entry(&mut self, kind: tar::EntryType, path: &str, link: &str, data: &[u8], mode: u32) {
        self.entry_with(kind, path, link, data, mode, &[]);
    }

    /// An entry with extra PAX records (`SCHILY.xattr.NAME` and the like).
    fn entry_with(&mut self, kind: tar::EntryType, path: &str, link: &str, data: &[u8], mode: u32, extra: &[(&str, &[u8])]) {
        let (path, link) = (path.as_bytes(), link.as_bytes());
        let mut records = Vec::new();
        for (key, value) in extra {
            records.extend(pax_record(key, value));
        }
        if path.len() > 100 {
            records.extend(pax_record("path", path));
        }
        if link.len() > 100 {
            records.extend(pax_record("linkpath", link));
        }
        if !records.is_empty() {
            let mut pax = tar::Header::new_ustar();
            pax.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            pax.set_entry_type(tar::EntryType::XHeader);
            pax.set_mode(0o644);
            pax.set_uid(0);
            pax.set_gid(0);
            pax.set_mtime(1_700_000_000);
            pax.set_size(records.len() as u64);
            pax.set_cksum();
            self.block(&pax, &records);
        }
        let mut h = tar::Header::new_ustar();
        let n = path.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&path[..n]);
        let n = link.len().min(100);
        h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.block(&h, data);
    }

    /// A regular file with mode `mode` and one xattr.
    pub fn file_with_xattr(mut self, path: &str, data: &str, mode: u32, name: &str, value: &[u8]) -> Self {
        self.entry_with(tar::EntryType::Regular, path, "", data.as_bytes(), mode, &[(&format!("SCHILY.xattr.{name}"), value)]);
        self
    }

    pub fn file(mut self, path: &str, data: &str) -> Self {
        self.entry(tar::EntryType::Regular, path, "", data.as_bytes(), 0o644);
        self
    }

    pub fn dir(mut self, path: &str) -> Self {
        self.entry(tar::EntryType::Directory, path, "", b"", 0o755);
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entry(tar::EntryType::Symlink, path, target, b"", 0o777);
        self
    }

    fn hardlink(mut self, path: &str, target: &str) -> Self {
        self.entry(tar::EntryType::Link, path, target, b"", 0o644);
        self
    }

    /// Appends ready-made header and data blocks (entries this builder cannot make).
    pub fn raw(mut self, blocks: &[u8]) -> Self {
        assert_eq!(blocks.len() % 512, 0, "tar blocks are 512 bytes");
        self.0.extend_from_slice(blocks);
        self
    }

    /// A regular file from bytes (a binary).
    pub fn file_bytes(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        self.entry(tar::EntryType::Regular, path, "", data, mode);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

// ---------------------------------------------------------------------------------------
// Hand-made OCI layouts: busybox's blobs plus hostile layers.

static BASE_LAYOUT: OnceLock<PathBuf> = OnceLock::new();

/// busybox:latest of the shared store written once as an OCI layout (tag `bb`).
#[track_caller]
fn base_layout() -> &'static Path {
    BASE_LAYOUT.get_or_init(|| {
        with_base();
        let dir = scratch("hostile-base");
        let ctx = dir.join("context");
        fs::create_dir_all(&ctx).expect("create context");
        fs::write(ctx.join("Dockerfile"), "FROM busybox:latest\nLABEL hostile-base=1\n").expect("write Dockerfile");
        let out = dir.join("layout");
        strata(["build", "-t", "hostile-base:latest", "--output", &format!("oci:{}:bb", path_str(&out)), &path_str(&ctx)]).ok();
        out
    })
}

fn write_blob(dir: &Path, data: &[u8]) -> String {
    let hex = sha256_hex(data);
    fs::write(dir.join("blobs/sha256").join(&hex), data).expect("write blob");
    format!("sha256:{hex}")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// Writes an OCI layout at `dir` (tag `hostile`): busybox's layers, then `layers` (tar
/// streams, gzip-compressed when `gzipped`).
#[track_caller]
pub fn hostile_layout(dir: &Path, layers: &[Vec<u8>], gzipped: bool) {
    let base = Layout::open(base_layout());
    let manifest = base.manifest(Some("bb"));
    let mut config = base.config(&manifest);
    fs::create_dir_all(dir.join("blobs/sha256")).expect("create blobs dir");
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");
    let mut descriptors = Layout::layers(&manifest);
    for layer in &descriptors {
        let digest = layer["digest"].as_str().expect("digest");
        fs::copy(base.blob_path(digest), dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).expect("copy base blob");
    }
    for tar in layers {
        let diff_id = format!("sha256:{}", sha256_hex(tar));
        let (blob, media_type) = if gzipped {
            (gzip(tar), "application/vnd.oci.image.layer.v1.tar+gzip")
        } else {
            (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        let digest = write_blob(dir, &blob);
        descriptors.push(json!({"mediaType": media_type, "digest": digest, "size": blob.len()}));
        config["rootfs"]["diff_ids"].as_array_mut().expect("diff_ids").push(Value::String(diff_id));
        if let Some(history) = config["history"].as_array_mut() {
            history.push(json!({"created": "2023-11-14T22:13:20Z", "created_by": "a hostile layer"}));
        }
    }
    let config_bytes = serde_json::to_vec(&config).expect("config JSON");
    let config_digest = write_blob(dir, &config_bytes);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": descriptors,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest JSON");
    let manifest_digest = write_blob(dir, &manifest_bytes);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "hostile"},
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index).expect("index JSON")).expect("write index.json");
}

/// One hostile case: a marker dir outside the store, and the path that reaches it from
/// `/` through `..` (enough of them to climb out of any store depth).
struct Case {
    name: &'static str,
    dir: PathBuf,
    marker: PathBuf,
}

impl Case {
    fn new(name: &'static str) -> Case {
        let dir = scratch(&format!("hostile-{name}"));
        let marker = scratch(&format!("outside-{name}"));
        Case { name, dir, marker }
    }

    fn marker_abs(&self) -> String {
        path_str(&self.marker)
    }

    /// `../../..(x40)/<marker without its leading slash>`.
    fn marker_climb(&self) -> String {
        format!("{}{}", "../".repeat(40), self.marker_abs().trim_start_matches('/'))
    }

    /// Writes the layout and builds `FROM oci:DIR:hostile` + `RUN true`.
    #[track_caller]
    fn build(&self, layers: &[Vec<u8>], gzipped: bool) -> (String, Run) {
        let layout = self.dir.join("layout");
        hostile_layout(&layout, layers, gzipped);
        let ctx = self.dir.join("context");
        fs::create_dir_all(&ctx).expect("create context");
        fs::write(ctx.join("Dockerfile"), format!("FROM oci:{}:hostile\nRUN true\n", path_str(&layout))).expect("write Dockerfile");
        let tag = format!("hostile-{}:latest", self.name);
        let run = strata(["build", "-t", &tag, &path_str(&ctx)]);
        let outcome = if run.success() {
            "succeeded (contained?)".to_owned()
        } else {
            format!("was rejected: {}", run.stderr.trim().lines().last().unwrap_or_default())
        };
        eprintln!("{}: the build {outcome}", self.name);
        (tag, run)
    }

    /// The marker dir holds exactly `expected` (what the test put there).
    #[track_caller]
    fn assert_outside_untouched(&self, run: &Run, expected: &[&str]) {
        let mut found: Vec<String> = fs::read_dir(&self.marker)
            .unwrap_or_else(|e| panic!("{}: the marker dir {} is gone: {e}", self.name, self.marker.display()))
            .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        assert_eq!(
            found,
            expected,
            "{}: something appeared in {} outside the store (build {}):\n{}",
            self.name,
            self.marker.display(),
            if run.success() { "succeeded" } else { "failed" },
            run.describe()
        );
    }
}

/// A failed build must say what was wrong: which entry (as the archive names it, e.g.
/// `link/pwned`, not a path in strata's store), and no panic.
#[track_caller]
fn assert_clear_rejection(case: &str, run: &Run, names: &[&str]) {
    assert!(!run.stderr.contains("panicked"), "{case}: strata panicked: {}", run.describe());
    assert!(
        names.iter().any(|n| run.stderr.contains(n)),
        "{case}: the build failed but its error names none of the hostile entries {names:?}: {}",
        run.describe()
    );
}

/// Every file named `name` under `top` must sit beside `sibling` (inside an image root).
fn assert_only_inside_roots(case: &str, top: &Path, name: &str, sibling: &str) {
    for entry in walkdir::WalkDir::new(top).into_iter().filter_map(Result::ok) {
        if entry.file_name().to_string_lossy() == name {
            let parent = entry.path().parent().expect("a parent");
            assert!(
                parent.join(sibling).exists(),
                "{case}: {} escaped its root ({} has no {sibling})",
                entry.path().display(),
                parent.display()
            );
        }
    }
}

#[test]
fn hostile_path_traversal_is_contained() {
    if skip_without_sandbox("hostile_path_traversal_is_contained") {
        return;
    }
    let case = Case::new("traversal");
    let unique = format!("{}-{}", std::process::id(), case.dir.file_name().unwrap().to_string_lossy());
    let (ok, escape, escape2) = (format!("ok-{unique}"), format!("escape-{unique}"), format!("escape2-{unique}"));
    let layer = RawTar::default()
        .file(&ok, "ok\n")
        .dir("sub")
        .file(&format!("../../{escape}"), "pwned\n")
        .file(&format!("sub/../../../{escape2}"), "pwned\n")
        .file(&format!("{}/deep", case.marker_climb()), "pwned\n")
        .file(&format!("{}/abs", case.marker_abs()), "pwned\n")
        .finish();
    let (_, run) = case.build(&[layer], true);
    case.assert_outside_untouched(&run, &[]);
    let work = &world().work;
    for name in [&escape, &escape2] {
        assert_only_inside_roots("traversal", work, name, &ok);
        if let Some(parent) = work.parent() {
            assert!(!parent.join(name).exists(), "traversal: {name} escaped to {}", parent.display());
        }
    }
    if !run.success() {
        assert_clear_rejection("traversal", &run, &[&escape, &escape2, "/deep", "/abs"]);
    }
}

#[test]
fn hostile_symlink_then_write_is_contained() {
    if skip_without_sandbox("hostile_symlink_then_write_is_contained") {
        return;
    }
    // In one layer: an absolute and a climbing symlink, then files written through them.
    let case = Case::new("symlink-write");
    let layer = RawTar::default()
        .symlink("link", &case.marker_abs())
        .file("link/pwned", "pwned\n")
        .symlink("rel", &case.marker_climb())
        .file("rel/pwned-rel", "pwned\n")
        .finish();
    let (_, run) = case.build(&[layer], false);
    case.assert_outside_untouched(&run, &[]);
    if !run.success() {
        assert_clear_rejection("symlink-write", &run, &["link/pwned", "rel/pwned-rel"]);
    }

    // Across layers: the symlink in one, the write through it in the next.
    let case = Case::new("symlink-write-2");
    let first = RawTar::default().symlink("link2", &case.marker_abs()).symlink("rel2", &case.marker_climb()).finish();
    let second = RawTar::default().file("link2/pwned2", "pwned\n").file("rel2/pwned-rel2", "pwned\n").finish();
    let (_, run) = case.build(&[first, second], true);
    case.assert_outside_untouched(&run, &[]);
    if !run.success() {
        assert_clear_rejection("symlink-write-2", &run, &["link2/pwned2", "rel2/pwned-rel2"]);
    }
}

#[test]
fn hostile_hardlink_escape_is_refused() {
    if skip_without_sandbox("hostile_hardlink_escape_is_refused") {
        return;
    }
    let case = Case::new("hardlink");
    let target = case.marker.join("x-target");
    fs::write(&target, "outside\n").expect("write the outside target");
    let passwd_links = fs::metadata("/etc/passwd").expect("stat /etc/passwd").nlink();
    let layer = RawTar::default()
        .hardlink("pw", "/etc/passwd")
        .hardlink("hx", &format!("{}/x-target", case.marker_climb()))
        .hardlink("hxabs", &format!("{}/x-target", case.marker_abs()))
        .hardlink("dotdot", "../../x")
        .finish();
    let (tag, run) = case.build(&[layer], false);
    case.assert_outside_untouched(&run, &["x-target"]);
    let meta = fs::metadata(&target).expect("stat the outside target");
    assert_eq!(meta.nlink(), 1, "hardlink: a hard link to {} was made: {}", target.display(), run.describe());
    assert_eq!(fs::read_to_string(&target).expect("read the outside target"), "outside\n");
    assert_eq!(fs::metadata("/etc/passwd").expect("stat /etc/passwd").nlink(), passwd_links, "hardlink: /etc/passwd got a new link");
    if run.success() {
        // Contained: whatever the links became, they hold nothing from the host.
        let out = strata([
            "run",
            "--rm",
            "--user",
            "0",
            "--entrypoint",
            "",
            &tag,
            "/bin/sh",
            "-c",
            "cat /pw /hx /hxabs /dotdot 2>/dev/null; true",
        ])
        .ok();
        assert!(!out.stdout.contains("outside"), "hardlink: the image holds the outside file's content: {}", out.describe());
        let host_passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let image_passwd = fs::read_to_string(crate::support::fixtures().join("busybox/passwd")).unwrap_or_default();
        if host_passwd != image_passwd {
            assert!(!out.stdout.contains(host_passwd.trim()), "hardlink: the image holds the host's /etc/passwd: {}", out.describe());
        }
    } else {
        assert_clear_rejection("hardlink", &run, &["/etc/passwd", "x-target", "../../x"]);
    }
}

#[test]
fn hostile_absolute_symlink_chain_is_contained() {
    if skip_without_sandbox("hostile_absolute_symlink_chain_is_contained") {
        return;
    }
    let case = Case::new("symlink-chain");
    let layer = RawTar::default()
        .symlink("a", "/b")
        .symlink("b", &case.marker_abs())
        .file("a/x", "pwned\n")
        .symlink("d", "/e/.")
        .symlink("e", &case.marker_climb())
        .file("d/y", "pwned\n")
        .symlink("f", "d")
        .dir("f/z")
        .finish();
    let (_, run) = case.build(&[layer], true);
    case.assert_outside_untouched(&run, &[]);
    if !run.success() {
        assert_clear_rejection("symlink-chain", &run, &["a/x", "d/y", "f/z"]);
    }
}

#[test]
fn hostile_dot_whiteouts_remove_nothing() {
    if skip_without_sandbox("hostile_dot_whiteouts_remove_nothing") {
        return;
    }
    // `.wh.` + "", "." or ".." names the whiteout's own directory or the one above it:
    // applied naively, the unpacker deletes that directory whole.
    let layers_dir = world().root.join("layers");
    for (i, bad) in [".wh...", "sub/.wh..", "sub/.wh...", ".wh."].into_iter().enumerate() {
        let case = Case::new(["dotdot-top", "dot-sub", "dotdot-sub", "empty-top"][i]);
        let layer = RawTar::default().dir("sub").file("sub/keep", "keep\n").file(bad, "").finish();
        let before: Vec<String> = list(&layers_dir);
        let (_, run) = case.build(&[layer], false);
        assert!(!run.success(), "{bad}: a whiteout naming no file must be refused: {}", run.describe());
        assert_clear_rejection(bad, &run, &[bad]);
        let after = list(&layers_dir);
        let lost: Vec<&String> = before.iter().filter(|d| !after.contains(d)).collect();
        assert!(lost.is_empty(), "{bad}: layer dirs of the store were removed: {lost:?}");
        assert!(world().root.join("tmp").is_dir(), "{bad}: the store's tmp/ dir is gone");
        // The base's layer dirs still stack: busybox runs.
        let out = strata(["run", "--rm", "busybox:latest", "cat", "/etc/passwd"]).ok();
        assert!(out.stdout.starts_with("root:"), "{bad}: busybox after the rejected layer: {}", out.describe());
    }
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
