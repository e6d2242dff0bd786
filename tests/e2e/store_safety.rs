//! The store against hostile and broken input (issue 11): setuid files out of other
//! users' reach, sparse entries that would fill the disk, umoci's `.` symlink
//! (CVE-2021-29136) through every import, parent-dir symlinks that real images ship,
//! temp blobs of killed writers, and `strata load` checking an archive whole.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::drivers::sha256_hex;
use crate::hostile::{hostile_layout, RawTar};
use crate::layout::Layout;
use crate::store::{private_store, strata_at};
use crate::support::{abort_at_env, path_str, run, scratch, skip_without_sandbox, strata, with_base, world};

/// strata's own dirs below a store root, each 0700.
const PRIVATE_DIRS: [&str; 6] = ["oci", "layers", "tmp", "init", "containers", "cache"];

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).mode() & 0o7777
}

/// An old-GNU sparse entry ('S') with its data blocks: `extents` are (offset, data),
/// all but the last a multiple of 512 bytes; the map ends at `size`.
fn sparse_entry(name: &str, size: u64, extents: &[(u64, &[u8])]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(extents.iter().map(|(_, d)| d.len() as u64).sum());
    let gnu = h.as_gnu_mut().expect("a GNU header");
    gnu.set_real_size(size);
    let map: Vec<(u64, u64)> = extents.iter().map(|(o, d)| (*o, d.len() as u64)).chain([(size, 0)]).collect();
    for (slot, (off, len)) in gnu.sparse.iter_mut().zip(&map) {
        slot.set_offset(*off);
        slot.set_length(*len);
    }
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    for (_, d) in extents {
        out.extend_from_slice(d);
    }
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// `tar -cf archive -C dir .`
fn tar_dir(dir: &Path, archive: &Path) {
    run("tar", ["-cf", &path_str(archive), "-C", &path_str(dir), "."]).ok();
}

/// Builds `dockerfile` as `tag` in the shared store.
fn build(name: &str, tag: &str, dockerfile: &str) -> crate::support::Run {
    let ctx = scratch(name);
    fs::write(ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    strata(["build", "-t", tag, &path_str(&ctx)])
}

#[test]
fn setuid_files_in_the_store_are_out_of_other_users_reach() {
    if skip_without_sandbox("setuid_files_in_the_store_are_out_of_other_users_reach") {
        return;
    }
    with_base();
    build("suid", "store-safety-suid", "FROM busybox\nRUN cp /bin/busybox /suid-copy && chmod 4755 /suid-copy\n").ok();
    let root = &world().root;
    assert_eq!(mode(root) & 0o777, 0o700, "the store root strata created is private");
    for d in PRIVATE_DIRS {
        assert_eq!(mode(&root.join(d)) & 0o077, 0, "{d}/ is private");
    }
    let mut found = Vec::new();
    for e in walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok) {
        let Ok(m) = fs::symlink_metadata(e.path()) else { continue };
        if m.is_file() && m.mode() & 0o4000 != 0 {
            // Another account needs search (o+x) on every dir from / down to reach it.
            let blocked = e.path().ancestors().skip(1).take_while(|a| a.starts_with(root)).any(|a| mode(a) & 0o001 == 0);
            assert!(blocked, "setuid file {} is reachable by other users", e.path().display());
            found.push(e.path().to_path_buf());
        }
    }
    assert!(found.iter().any(|p| p.ends_with("suid-copy")), "the RUN's setuid file is in the store: {found:?}");
}

#[test]
fn an_existing_store_is_tightened_on_open() {
    if skip_without_sandbox("an_existing_store_is_tightened_on_open") {
        return;
    }
    let root = scratch("tighten").join("store");
    strata_at(&root, &["images"], &[]).ok();
    assert_eq!(mode(&root) & 0o777, 0o700, "a root strata creates is 0700");
    // What an older strata left: everything 0755.
    for d in std::iter::once(root.clone()).chain(PRIVATE_DIRS.iter().map(|d| root.join(d))) {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    }
    strata_at(&root, &["info"], &[]).ok();
    for d in PRIVATE_DIRS {
        assert_eq!(mode(&root.join(d)) & 0o777, 0o700, "{d}/ was tightened on open");
    }
    // An existing root keeps its mode, as podman keeps an existing --root's.
    assert_eq!(mode(&root) & 0o777, 0o755);
    strata_at(&root, &["images"], &[]).ok();
    assert_eq!(mode(&root.join("oci")) & 0o777, 0o700);
}

#[test]
fn a_sparse_layer_takes_the_disk_its_data_takes() {
    if skip_without_sandbox("a_sparse_layer_takes_the_disk_its_data_takes") {
        return;
    }
    let dir = scratch("sparse");
    let size = 50u64 << 30;
    let layer = RawTar::default()
        .raw(&sparse_entry("huge", size, &[(size - 512, &[b'z'; 512])]))
        .raw(&sparse_entry("small", 3 << 20, &[(0, &[b'a'; 512]), (1 << 20, b"xyz")]))
        .finish();
    assert!(layer.len() < 8192, "the layer is {} bytes", layer.len());
    let layout = dir.join("layout");
    hostile_layout(&layout, &[layer], true);
    let check = [
        "stat -c %s /huge /small",
        "head -c 512 /small | tr -d a | wc -c",
        "head -c 1048576 /small | tail -c +513 | tr -d '\\000' | wc -c",
        "tail -c +1048577 /small | head -c 3; echo",
        "tail -c +1048580 /small | tr -d '\\000' | wc -c",
    ]
    .join(" && ");
    let dockerfile = format!("FROM oci:{}:hostile\nRUN ({check}) > /result\n", path_str(&layout));
    build("sparse-ctx", "store-safety-sparse", &dockerfile).ok();
    let out = strata(["run", "--rm", "store-safety-sparse", "cat", "/result"]).ok();
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(words, ["53687091200", "3145728", "0", "0", "xyz", "0"], "sizes, data and holes: {}", out.describe());
    // The copying driver copies the layer stack for the step: holes stay holes there.
    let ctx = scratch("sparse-vfs");
    fs::write(ctx.join("Dockerfile"), format!("{dockerfile}RUN stat -c %s /huge > /vfs\n")).expect("write Dockerfile");
    let vfs = strata(["--storage-driver", "vfs", "build", "-t", "store-safety-sparse-vfs", &path_str(&ctx)]).ok();
    let out = strata(["run", "--rm", "store-safety-sparse-vfs", "cat", "/vfs"]).ok();
    assert_eq!(out.stdout.trim(), "53687091200", "{}\n{}", vfs.describe(), out.describe());
    let mut huge = Vec::new();
    for e in fs::read_dir(world().root.join("layers")).expect("read layers/").flatten() {
        if let Ok(m) = fs::symlink_metadata(e.path().join("huge")) {
            huge.push((e.path(), m.len(), m.blocks() * 512));
        }
    }
    assert!(!huge.is_empty(), "the sparse file is in a layer dir");
    for (dir, len, used) in huge {
        assert_eq!(len, size, "{}", dir.display());
        assert!(used <= 1 << 20, "a 50 GiB sparse file of a 2 KB layer takes {used} bytes of disk in {}", dir.display());
    }
}

#[test]
fn a_dot_symlink_layer_is_refused_on_every_import() {
    if skip_without_sandbox("a_dot_symlink_layer_is_refused_on_every_import") {
        return;
    }
    for (i, root_name) in [".", "./"].into_iter().enumerate() {
        let marker = scratch("dot-marker");
        let dir = scratch("dot-symlink");
        let layer =
            RawTar::default().symlink(root_name, &path_str(&marker)).file("pwned", "pwned\n").dir("sub").file("sub/deeper", "x\n").finish();
        let layout = dir.join("layout");
        hostile_layout(&layout, &[layer], false);
        let oci_archive = dir.join("oci.tar");
        tar_dir(&layout, &oci_archive);
        // The same layout read as a docker-archive: manifest.json naming its blobs.
        let l = Layout::open(&layout);
        let manifest = l.manifest(Some("hostile"));
        let blob = |d: &Value| format!("blobs/sha256/{}", d["digest"].as_str().expect("digest").trim_start_matches("sha256:"));
        let entry = json!([{
            "Config": blob(&manifest["config"]),
            "RepoTags": [format!("localhost/dot-docker-{i}:latest")],
            "Layers": Layout::layers(&manifest).iter().map(blob).collect::<Vec<_>>(),
        }]);
        fs::write(layout.join("manifest.json"), serde_json::to_vec(&entry).expect("JSON")).expect("write manifest.json");
        let docker_archive = dir.join("docker.tar");
        tar_dir(&layout, &docker_archive);
        fs::remove_file(layout.join("manifest.json")).expect("remove manifest.json");

        let imports = [
            ("oci", build("dot-oci", &format!("dot-oci-{i}"), &format!("FROM oci:{}:hostile\nRUN true\n", path_str(&layout)))),
            (
                "docker-archive",
                build("dot-docker", &format!("dot-da-{i}"), &format!("FROM docker-archive:{}\nRUN true\n", path_str(&docker_archive))),
            ),
            ("load", strata(["load", "-i", &path_str(&oci_archive)])),
        ];
        for (how, r) in imports {
            assert!(!r.success(), "{root_name:?} via {how}: a symlink as the layer root must be refused: {}", r.describe());
            assert!(r.stderr.contains("layer root"), "{root_name:?} via {how}: the error says why: {}", r.describe());
            assert!(!r.stderr.contains("panicked"), "{}", r.describe());
            let outside: Vec<_> = fs::read_dir(&marker).expect("read marker").collect();
            assert!(outside.is_empty(), "{root_name:?} via {how}: files appeared outside the store: {outside:?}");
        }
    }
}

#[test]
fn parent_dir_symlinks_of_real_images_unpack_and_read() {
    if skip_without_sandbox("parent_dir_symlinks_of_real_images_unpack_and_read") {
        return;
    }
    let busybox = fs::read(std::env::var("STRATA_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".into())).expect("read busybox");
    let mut merged_usr = RawTar::default().dir("usr").dir("usr/bin").file_bytes("usr/bin/busybox", &busybox, 0o755);
    for applet in ["sh", "cat", "readlink", "echo"] {
        merged_usr = merged_usr.symlink(&format!("usr/bin/{applet}"), "busybox");
    }
    let first = merged_usr
        .symlink("bin", "usr/bin")
        .dir("etc/ssl/certs/java")
        .file("etc/ssl/certs/java/cacerts", "CERTS\n")
        .dir("usr/lib/jvm/java-17/lib/security")
        .symlink("usr/lib/jvm/java-17/lib/security/cacerts", "/etc/ssl/certs/java/cacerts")
        .dir("usr/lib/jvm/java-11/lib/security")
        .symlink("usr/lib/jvm/java-11/lib/security/cacerts", "../../../../../../etc/ssl/certs/java/cacerts")
        .finish();
    // A file written through /bin in a later step: the diff records it under usr/bin.
    let second = RawTar::default().dir("usr").dir("usr/bin").file("usr/bin/later", "later\n").finish();
    let layout = scratch("links").join("layout");
    hostile_layout(&layout, &[first, second], true);
    let dockerfile = format!(
        "FROM oci:{}:hostile\nRUN cat /usr/lib/jvm/java-17/lib/security/cacerts /usr/lib/jvm/java-11/lib/security/cacerts /bin/later > /result && readlink /bin >> /result && echo through > /bin/run-wrote\nRUN cat /usr/bin/run-wrote >> /result\n",
        path_str(&layout)
    );
    build("links-ctx", "store-safety-links", &dockerfile).ok();
    let out = strata(["run", "--rm", "store-safety-links", "cat", "/result"]).ok();
    assert_eq!(out.stdout, "CERTS\nCERTS\nlater\nusr/bin\nthrough\n", "{}", out.describe());
}

#[test]
fn a_dead_writers_temp_blob_is_reported_then_removed() {
    if skip_without_sandbox("a_dead_writers_temp_blob_is_reported_then_removed") {
        return;
    }
    let root = private_store("temps");
    let ctx = scratch("temps-ctx");
    fs::write(ctx.join("Dockerfile"), "FROM base\nRUN echo x > /x\n").expect("write Dockerfile");
    let killed = strata_at(&root, &["build", "-t", "temps", &path_str(&ctx)], &abort_at_env("commit"));
    assert_eq!(killed.code, Some(137), "killed mid-blob: {}", killed.describe());
    let blobs = root.join("oci/blobs/sha256");
    let temps = || -> Vec<PathBuf> {
        fs::read_dir(&blobs).expect("read blobs").flatten().map(|e| e.path()).filter(|p| path_str(p).contains("/.tmp-")).collect()
    };
    let dead = temps();
    assert!(!dead.is_empty(), "the killed writer left its temp blob");
    // A writer still running keeps its temp file, even in another pid namespace
    // (a container sharing the store): its pid means nothing here, its lock does.
    // flock(1) holds the lock until its `cat` sees the end of its input.
    let live = blobs.join(".tmp-4999999-live");
    fs::write(&live, b"being written").expect("write live temp");
    let mut writer = Command::new("flock")
        .args([&path_str(&live), "sh", "-c", "echo locked; exec cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run flock");
    let mut ready = String::new();
    BufReader::new(writer.stdout.take().expect("flock's stdout")).read_line(&mut ready).expect("read flock");
    assert_eq!(ready, "locked\n");
    let fsck = strata_at(&root, &["fsck"], &[]);
    assert!(fsck.success(), "{}", fsck.describe());
    for d in &dead {
        assert!(fsck.stdout.contains(&path_str(d)), "fsck names {}: {}", d.display(), fsck.describe());
    }
    assert!(fsck.stdout.contains("which is gone"), "{}", fsck.describe());
    assert!(!fsck.stdout.contains("-live"), "a live writer's temp file is no leftover: {}", fsck.describe());
    strata_at(&root, &["images"], &[]).ok();
    assert_eq!(temps(), vec![live.clone()], "the next open removed the dead writer's temp blob, and only it");
    drop(writer.stdin.take());
    writer.wait().expect("wait for flock");
    strata_at(&root, &["images"], &[]).ok();
    assert_eq!(temps(), Vec::<PathBuf>::new(), "once its writer is gone, it goes too");
}

/// A one-layer OCI layout named `localhost/NAME:latest`; returns the layer blob's
/// path and hex.
fn small_layout(dir: &Path, name: &str, media_type: &str, diff_id: Option<&str>) -> (PathBuf, String) {
    // Content of its own: a blob the store already holds is not copied again.
    let layer = RawTar::default().file("hello", &format!("{name}\n")).finish();
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("create blobs");
    let put = |data: &[u8]| {
        let hex = sha256_hex(data);
        fs::write(blobs.join(&hex), data).expect("write blob");
        hex
    };
    let layer_hex = put(&layer);
    let diff = diff_id.map(str::to_owned).unwrap_or_else(|| format!("sha256:{layer_hex}"));
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff]}}))
        .expect("config JSON");
    let config_hex = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": [{"mediaType": media_type, "digest": format!("sha256:{layer_hex}"), "size": layer.len()}],
    }))
    .expect("manifest JSON");
    let manifest_hex = put(&manifest);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{manifest_hex}"),
        "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": format!("localhost/{name}:latest")},
    }]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).expect("index JSON")).expect("write index.json");
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");
    (blobs.join(&layer_hex), layer_hex)
}

#[test]
fn load_checks_a_whole_archive_before_tagging() {
    if skip_without_sandbox("load_checks_a_whole_archive_before_tagging") {
        return;
    }
    let root = scratch("load-check").join("store");
    let tar = "application/vnd.oci.image.layer.v1.tar";
    let wrong_diff = format!("sha256:{}", "0".repeat(64));
    for case in ["wrong-digest", "media-type", "missing-blob", "diff-id", "dotdot", "sound"] {
        let dir = scratch(&format!("load-{case}"));
        let layout = dir.join("layout");
        let media = if case == "media-type" { "application/x-bogus" } else { tar };
        let (layer, hex) = small_layout(&layout, case, media, (case == "diff-id").then_some(wrong_diff.as_str()));
        let expect = match case {
            "wrong-digest" => {
                fs::write(&layer, b"tampered").expect("tamper");
                hex
            }
            "missing-blob" => {
                fs::remove_file(&layer).expect("remove blob");
                hex
            }
            "media-type" => "application/x-bogus".to_owned(),
            "diff-id" => wrong_diff.clone(),
            _ => "../evil".to_owned(),
        };
        let archive = dir.join(format!("{case}.tar"));
        tar_dir(&layout, &archive);
        if case == "dotdot" {
            let mut bytes = fs::read(&archive).expect("read archive");
            // Drop the end-of-archive blocks (tar pads to 10 KiB records), then add a member.
            while bytes.len() >= 512 && bytes[bytes.len() - 512..].iter().all(|&b| b == 0) {
                bytes.truncate(bytes.len() - 512);
            }
            let extra = RawTar::default().file("../evil", "pwned\n").finish();
            bytes.extend_from_slice(&extra);
            fs::write(&archive, bytes).expect("write archive");
        }
        let r = strata_at(&root, &["load", "-i", &path_str(&archive)], &[]);
        let images = strata_at(&root, &["images"], &[]).ok();
        if case == "sound" {
            assert!(r.success() && images.stdout.contains("localhost/sound"), "a sound archive loads: {}", r.describe());
            continue;
        }
        assert_eq!(r.code, Some(1), "{case}: refused: {}", r.describe());
        assert!(r.stderr.contains(&path_str(&archive)), "{case}: the error names the archive: {}", r.describe());
        assert!(r.stderr.contains(&expect), "{case}: the error names {expect}: {}", r.describe());
        assert!(!images.stdout.contains(&format!("localhost/{case}")), "{case}: nothing was tagged: {}", images.describe());
        assert!(!dir.parent().expect("parent").join("evil").exists() && !root.join("oci/evil").exists(), "{case}: ../evil was written");
    }
    let fsck = strata_at(&root, &["fsck"], &[]);
    assert!(fsck.success() && fsck.stdout.contains("no problems"), "{}", fsck.describe());
}

#[test]
fn a_run_that_fills_the_disk_says_so() {
    if skip_without_sandbox("a_run_that_fills_the_disk_says_so") {
        return;
    }
    with_base();
    let dir = scratch("enospc");
    let base_ctx = dir.join("base");
    fs::create_dir_all(&base_ctx).expect("create context");
    fs::write(base_ctx.join("Dockerfile"), "FROM busybox\n").expect("write Dockerfile");
    let layout = dir.join("layout");
    strata(["build", "-q", "--output", &format!("oci:{}:latest", path_str(&layout)), &path_str(&base_ctx)]).ok();
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).expect("create context");
    // The RUN itself succeeds with the disk full; the step's layer (incompressible)
    // then has no room.
    let dockerfile = format!("FROM oci:{}:latest\nRUN dd if=/dev/urandom of=/fill bs=1M count=64 2>/dev/null; true\n", path_str(&layout));
    fs::write(ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    // A store of its own on a 12 MiB tmpfs, mounted in strata's namespace (where the
    // nested strata runs as its root, under the same id mapping).
    let root = dir.join("store");
    fs::create_dir_all(&root).expect("create store dir");
    let script = format!(
        "mount -t tmpfs -o size=12m tmpfs {root} && exec {strata} --root {root} build -t enospc {ctx}",
        root = path_str(&root),
        strata = path_str(&crate::support::strata_bin()),
        ctx = path_str(&ctx)
    );
    let r = strata(["unshare", "sh", "-c", &script]);
    assert!(!r.success(), "a build on a full disk fails: {}", r.describe());
    let err = r.stderr.to_lowercase();
    assert!(err.contains("no space left on device"), "the error says the disk is full: {}", r.describe());
    assert!(err.contains(&path_str(&root).to_lowercase()), "the error names a path in the store: {}", r.describe());
    assert!(!err.contains("eof"), "no parser's EOF: {}", r.describe());
    eprintln!("{}", r.stderr);
}
