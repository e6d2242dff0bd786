//! Storage drivers (issue 4, acceptance 1): the same diff-fidelity Dockerfile is
//! built with `--storage-driver overlay`, `fuse-overlayfs` and `vfs`, each in its own
//! store, and the layer tar entries (path, type, mode, uid, gid, size, link target,
//! xattrs, content hash) must match an expected list (every path of every layer, and
//! nothing else) and be identical across drivers;
//! `strata info` reports a forced driver. (More driver cases: `driver_cases.rs`;
//! reproducibility: `reproducible.rs`.)
//!
//! Also the helpers the hostile-layer tests (`hostile.rs`) share: running strata with its
//! own store, driver and environment, and a richer layer reader than `layout.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::layout::Layout;
use crate::support::{path_str, run_command, sandbox_required, scratch, skip_without_sandbox, stage_busybox_context, strata_bin, Run};

pub const DRIVERS: [&str; 3] = ["overlay", "fuse-overlayfs", "vfs"];

#[path = "drivers_checks.rs"]
mod checks;
use checks::check_expected;

// ---------------------------------------------------------------------------------------
// Running strata with its own store, a forced driver and extra environment variables.

/// Runs `[ENV...] strata --root ROOT [--storage-driver DRIVER] ARGS...`.
#[track_caller]
pub fn strata_at(root: &Path, driver: Option<&str>, envs: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(strata_bin());
    // A driver chosen by the environment of the test runner must not leak in.
    cmd.env_remove("STRATA_STORAGE_DRIVER").env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.arg("--root").arg(root);
    if let Some(driver) = driver {
        cmd.args(["--storage-driver", driver]);
    }
    cmd.args(args);
    run_command(cmd)
}

/// Builds `busybox:latest` into the store at `root` (with `driver` and `envs`).
pub fn build_busybox_in(root: &Path, driver: Option<&str>, envs: &[(&str, &str)]) -> Result<(), String> {
    let ctx = scratch("busybox-context");
    stage_busybox_context(&ctx)?;
    let run = strata_at(root, driver, envs, &["build", "-t", "busybox:latest", &path_str(&ctx)]);
    if run.success() {
        Ok(())
    } else {
        Err(format!("building busybox:latest in {} failed: {}", root.display(), run.describe()))
    }
}

/// Why the fuse-overlayfs driver cannot work here, if it cannot.
fn fuse_missing() -> Option<String> {
    let has_binary =
        ["/usr/bin/fuse-overlayfs", "/bin/fuse-overlayfs", "/usr/local/bin/fuse-overlayfs"].iter().any(|p| Path::new(p).exists());
    if !has_binary {
        return Some("fuse-overlayfs is not installed (Debian package fuse-overlayfs)".into());
    }
    match fs::metadata("/dev/fuse") {
        Err(e) => Some(format!("/dev/fuse is missing ({e})")),
        Ok(meta) if meta.permissions().mode() & 0o666 != 0o666 => Some(format!(
            "/dev/fuse has mode {:o}, not 0666 as distributions ship it (scripts/test.sh should chmod 0666 /dev/fuse)",
            meta.permissions().mode() & 0o7777
        )),
        Ok(_) => None,
    }
}

/// True when a test of `driver` must return early (after printing why); panics instead
/// when `STRATA_REQUIRE_SANDBOX=1`.
pub fn skip_driver(test: &str, driver: &str) -> bool {
    if skip_without_sandbox(test) {
        return true;
    }
    if driver != "fuse-overlayfs" {
        return false;
    }
    match fuse_missing() {
        None => false,
        Some(reason) if sandbox_required() => panic!("{test}: STRATA_REQUIRE_SANDBOX=1 but {reason}"),
        Some(reason) => {
            eprintln!("skipped {test}: {reason}");
            true
        }
    }
}

// ---------------------------------------------------------------------------------------
// A richer layer reader: everything acceptance 1 compares, plus the mtime.

pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// One layer tar entry with everything the driver matrix compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rich {
    pub path: String,
    /// The tar type flag byte ('0' file, '1' hard link, '2' symlink, '3' char, '5' dir...).
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub link: Option<String>,
    /// `SCHILY.xattr.NAME` records, by NAME.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// sha256 of the content (regular files only).
    pub sha256: Option<String>,
    pub mtime: u64,
    /// Every PAX record, for checks on extension keys.
    pub pax: BTreeMap<String, Vec<u8>>,
}

impl Rich {
    /// The line compared across drivers: everything but the mtime.
    pub fn key(&self) -> String {
        let xattrs: Vec<String> = self.xattrs.iter().map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v).escape_debug())).collect();
        format!(
            "{} type={} mode={:o} uid={} gid={} size={} link={:?} xattrs=[{}] sha256={}",
            self.path,
            self.kind as char,
            self.mode,
            self.uid,
            self.gid,
            self.size,
            self.link,
            xattrs.join(","),
            self.sha256.as_deref().unwrap_or("-")
        )
    }

    pub fn content_is(&self, data: &[u8]) -> bool {
        self.sha256.as_deref() == Some(sha256_hex(data).as_str())
    }
}

fn normalize(raw: &str) -> String {
    raw.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/').to_owned()
}

/// The entries of one layer of `layout` (gzip or plain tar).
#[track_caller]
pub fn rich_entries(layout: &Layout, layer: &Value) -> Vec<Rich> {
    let digest = layer["digest"].as_str().expect("layer digest");
    let media_type = layer["mediaType"].as_str().unwrap_or_default();
    let file = BufReader::new(File::open(layout.blob_path(digest)).unwrap_or_else(|e| panic!("open {digest}: {e}")));
    let reader: Box<dyn Read> = if media_type.ends_with("+gzip") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        assert!(media_type.ends_with("tar"), "unexpected layer media type {media_type} (this reader knows gzip and plain tar)");
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    let mut entries = Vec::new();
    for entry in archive.entries().expect("layer tar") {
        let mut entry = entry.unwrap_or_else(|e| panic!("layer {digest}: bad tar entry: {e}"));
        let mut pax = BTreeMap::new();
        if let Some(exts) = entry.pax_extensions().unwrap_or_else(|e| panic!("layer {digest}: bad PAX records: {e}")) {
            for ext in exts {
                let ext = ext.unwrap_or_else(|e| panic!("layer {digest}: bad PAX record: {e}"));
                pax.insert(String::from_utf8_lossy(ext.key_bytes()).into_owned(), ext.value_bytes().to_vec());
            }
        }
        let pax_num =
            |key: &str| pax.get(key).and_then(|v| std::str::from_utf8(v).ok()).and_then(|s| s.split('.').next()?.parse::<u64>().ok());
        let header = entry.header().clone();
        let path = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
        let link = entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned());
        let kind = header.entry_type().as_byte();
        let uid = pax_num("uid").unwrap_or_else(|| header.uid().expect("uid"));
        let gid = pax_num("gid").unwrap_or_else(|| header.gid().expect("gid"));
        let mtime = pax_num("mtime").unwrap_or_else(|| header.mtime().expect("mtime"));
        let size = entry.size();
        let xattrs = pax.iter().filter_map(|(k, v)| k.strip_prefix("SCHILY.xattr.").map(|n| (n.to_owned(), v.clone()))).collect();
        let sha256 = if header.entry_type().is_file() || header.entry_type() == tar::EntryType::GNUSparse {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap_or_else(|e| panic!("read {path}: {e}"));
            Some(sha256_hex(&data))
        } else {
            None
        };
        entries.push(Rich {
            path,
            kind,
            mode: header.mode().expect("mode"),
            uid,
            gid,
            size,
            link: link.map(|l| if kind == b'1' { normalize(&l) } else { l }),
            xattrs,
            sha256,
            mtime,
            pax,
        });
    }
    entries
}

// ---------------------------------------------------------------------------------------
// The diff-fidelity matrix.

const LONG_NAME_LEN: usize = 150;

fn long_name() -> String {
    "a".repeat(LONG_NAME_LEN)
}

fn deep_dir() -> String {
    format!("n/{}/{}", "b".repeat(60), "c".repeat(60))
}

const NON_ASCII: &str = "héllo wörld 日本語 ✓";
const BIG: usize = 10 * 1024 * 1024;
const SPARSE: usize = 17 * 1024 * 1024;

fn big_content() -> Vec<u8> {
    vec![b's'; BIG]
}

/// The Dockerfile of the matrix: five layers on top of busybox (see the expectations in
/// `check_expected`).
fn matrix_dockerfile() -> String {
    let long = long_name();
    let deep = deep_dir();
    format!(
        r#"FROM busybox:latest
# L1: the lower state the next step changes
RUN mkdir -p /t/gonedir/sub /t/opq/keep /t/d2f /t/ren && \
    echo gone > /t/gone && echo x > /t/gonedir/sub/x && echo old > /t/opq/old && \
    echo k > /t/opq/keep/k && echo f > /t/f2d && echo in > /t/d2f/in && \
    echo lower > /t/lower && echo meta > /t/meta && echo r > /t/ren/file
# L2: deletions, a dir replaced whole, file<->dir, a hard link to a lower file,
# metadata-only changes, a renamed lower dir
RUN rm /t/gone && rm -rf /t/gonedir && \
    rm -rf /t/opq && mkdir /t/opq && touch /t/opq/new && \
    rm /t/f2d && mkdir /t/f2d && echo n > /t/f2d/n && \
    rm -rf /t/d2f && echo file > /t/d2f && \
    ln /t/lower /t/lowerlink && \
    chown 1000:1000 /t/meta && chmod 0600 /t/meta && \
    mv /t/ren /t/ren2
# L3: new files of every kind
RUN mkdir -p /n/emptydir /{deep} && \
    echo h > /n/h1 && ln /n/h1 /n/h2 && ln /n/h1 /n/h3 && \
    ln -s ../t/lower /n/relsym && ln -s /nonexistent/target /n/abssym && \
    touch /n/suid /n/sgid && chmod 4755 /n/suid && chmod 2711 /n/sgid && \
    mkdir /n/sticky /n/sgiddir && chmod 1777 /n/sticky && chmod 2775 /n/sgiddir && \
    echo u > /n/u1000 && chown 1000:1000 /n/u1000 && \
    echo n > /n/nobody && chown 65534:65534 /n/nobody && \
    echo m > /n/u65535 && chown 65535:65535 /n/u65535 && \
    mkdir /n/mixed && chown 1000:65534 /n/mixed && \
    echo long > /n/{long} && echo deep > /{deep}/file && \
    echo nonascii > '/n/{NON_ASCII}' && \
    head -c {BIG} /dev/zero | tr '\0' s > /n/big && \
    dd if=/dev/zero of=/n/sparse bs=1048576 seek=16 count=1 2>/dev/null
# L4: a file with a user xattr from the context
COPY xattr-file /n/xattr-file
# L5: a copy-up keeps the xattr
RUN chmod 0640 /n/xattr-file
"#
    )
}

static MATRIX: [OnceLock<Result<PathBuf, String>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];

/// Builds the matrix with `driver` in a store of its own (once per test binary) and
/// returns the OCI layout it was written to (tag `matrix`).
#[track_caller]
fn matrix_layout(driver: &str) -> Layout {
    let slot = DRIVERS.iter().position(|d| *d == driver).expect("a known driver");
    let built = MATRIX[slot].get_or_init(|| {
        let dir = scratch(&format!("matrix-{driver}"));
        let root = dir.join("store");
        build_busybox_in(&root, Some(driver), &[])?;
        let ctx = dir.join("context");
        fs::create_dir_all(&ctx).map_err(|e| e.to_string())?;
        fs::write(ctx.join("Dockerfile"), matrix_dockerfile()).map_err(|e| e.to_string())?;
        let xfile = ctx.join("xattr-file");
        fs::write(&xfile, "has an xattr\n").map_err(|e| e.to_string())?;
        xattr::set(&xfile, "user.test", b"hello").map_err(|e| format!("set user.test on {}: {e}", xfile.display()))?;
        let out = dir.join("layout");
        let run = strata_at(
            &root,
            Some(driver),
            &[],
            &["build", "-t", "matrix:latest", "--output", &format!("oci:{}:matrix", path_str(&out)), &path_str(&ctx)],
        );
        if !run.success() {
            return Err(format!("the matrix build with --storage-driver {driver} failed: {}", run.describe()));
        }
        for other in DRIVERS.iter().filter(|d| **d != driver) {
            if run.stderr.contains(&format!("using {other}")) {
                return Err(format!("--storage-driver {driver} was forced but strata fell back to {other}: {}", run.describe()));
            }
        }
        Ok(out)
    });
    match built {
        Ok(out) => Layout::open(out),
        Err(e) => panic!("{e}"),
    }
}

/// The five matrix layers (L1..L5) of `driver`'s build.
#[track_caller]
fn matrix_layers(driver: &str) -> Vec<Vec<Rich>> {
    let layout = matrix_layout(driver);
    let manifest = layout.manifest(Some("matrix"));
    let layers = Layout::layers(&manifest);
    assert!(layers.len() >= 5, "{driver}: expected busybox layers plus 5: {manifest:#}");
    layers[layers.len() - 5..].iter().map(|l| rich_entries(&layout, l)).collect()
}

pub fn dump(entries: &[Rich]) -> String {
    entries.iter().map(Rich::key).collect::<Vec<_>>().join("\n")
}

#[track_caller]
fn find<'a>(driver: &str, layer: &str, entries: &'a [Rich], path: &str) -> &'a Rich {
    entries.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("{driver}: no {path} in {layer}:\n{}", dump(entries)))
}

/// Asserts `paths` form one hard-link group: exactly one regular file holding `content`,
/// every other path a hard link to it.
#[track_caller]
fn assert_link_group(driver: &str, layer: &str, entries: &[Rich], paths: &[&str], content: &[u8]) {
    let group: Vec<&Rich> = paths.iter().map(|p| find(driver, layer, entries, p)).collect();
    let files: Vec<&&Rich> = group.iter().filter(|e| e.kind == b'0').collect();
    assert_eq!(
        files.len(),
        1,
        "{driver} {layer}: exactly one of {paths:?} should be the regular file, the others hard links:\n{}",
        dump(entries)
    );
    let file = files[0];
    assert!(file.content_is(content), "{driver} {layer}: {} content: {}", file.path, file.key());
    for e in group.iter().filter(|e| e.path != file.path) {
        assert_eq!(e.kind, b'1', "{driver} {layer}: {} should be a hard link: {}", e.path, e.key());
        assert_eq!(e.link.as_deref(), Some(file.path.as_str()), "{driver} {layer}: {} should link to {}: {}", e.path, file.path, e.key());
    }
}

/// Checks that hold for every layer strata writes.
#[track_caller]
pub fn check_clean(driver: &str, layer: &str, entries: &[Rich]) {
    let mut seen = BTreeSet::new();
    for e in entries {
        assert!(seen.insert(e.path.clone()), "{driver} {layer}: {} appears twice:\n{}", e.path, dump(entries));
        assert!(
            !matches!(e.kind, b'3' | b'4'),
            "{driver} {layer}: device entry {} (overlay whiteouts must become .wh. files):\n{}",
            e.key(),
            dump(entries)
        );
        let name = e.path.rsplit('/').next().unwrap_or_default();
        assert!(name != ".wh..opq", "{driver} {layer}: fuse-overlayfs's .wh..opq marker leaked: {}", e.key());
        if let Some(hidden) = name.strip_prefix(".wh.") {
            assert!(e.kind == b'0' && e.size == 0, "{driver} {layer}: a whiteout must be an empty regular file: {}", e.key());
            assert!(!hidden.is_empty(), "{driver} {layer}: bad whiteout {}", e.key());
        }
        for key in e.xattrs.keys() {
            let private = ["trusted.overlay.", "user.overlay.", "user.fuseoverlayfs.", "user.containers.", "security.selinux"];
            assert!(!private.iter().any(|p| key.starts_with(p)), "{driver} {layer}: overlay-private xattr {key} leaked into {}", e.key());
        }
        assert_ne!(e.kind, b'S', "{driver} {layer}: GNU sparse entries are not portable in OCI layers: {}", e.key());
    }
}

/// Every path each matrix layer holds, and nothing else: a stray entry (a leaked
/// marker, a file a driver touched in passing) fails as surely as a missing one.
fn expected_paths() -> [Vec<String>; 5] {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let l1 = own(&[
        "t",
        "t/d2f",
        "t/d2f/in",
        "t/f2d",
        "t/gone",
        "t/gonedir",
        "t/gonedir/sub",
        "t/gonedir/sub/x",
        "t/lower",
        "t/meta",
        "t/opq",
        "t/opq/keep",
        "t/opq/keep/k",
        "t/opq/old",
        "t/ren",
        "t/ren/file",
    ]);
    let l2 = own(&[
        "t",
        "t/.wh.gone",
        "t/.wh.gonedir",
        "t/.wh.ren",
        "t/d2f",
        "t/f2d",
        "t/f2d/n",
        "t/lower",
        "t/lowerlink",
        "t/meta",
        "t/opq",
        "t/opq/.wh..wh..opq",
        "t/opq/new",
        "t/ren2",
        "t/ren2/file",
    ]);
    let deep = deep_dir();
    let (deep_b, _) = deep.rsplit_once('/').expect("deep dir has parents");
    let mut l3 = own(&[
        "n",
        "n/abssym",
        "n/big",
        "n/emptydir",
        "n/h1",
        "n/h2",
        "n/h3",
        "n/mixed",
        "n/nobody",
        "n/relsym",
        "n/sgid",
        "n/sgiddir",
        "n/sparse",
        "n/sticky",
        "n/suid",
        "n/u1000",
        "n/u65535",
    ]);
    l3.extend([deep_b.to_string(), deep.clone(), format!("{deep}/file"), format!("n/{}", long_name()), format!("n/{NON_ASCII}")]);
    let l4 = own(&["n", "n/xattr-file"]);
    [l1, l2, l3, l4.clone(), l4]
}

fn matrix_for(test: &str, driver: &str) {
    if skip_driver(test, driver) {
        return;
    }
    let layers = matrix_layers(driver);
    check_expected(driver, &layers);
}

#[test]
fn drivers_matrix_overlay() {
    matrix_for("drivers_matrix_overlay", "overlay");
}

#[test]
fn drivers_matrix_fuse_overlayfs() {
    matrix_for("drivers_matrix_fuse_overlayfs", "fuse-overlayfs");
}

#[test]
fn drivers_matrix_vfs() {
    matrix_for("drivers_matrix_vfs", "vfs");
}

#[test]
fn drivers_matrix_identical_across_drivers() {
    let test = "drivers_matrix_identical_across_drivers";
    if DRIVERS.iter().any(|d| skip_driver(test, d)) {
        return;
    }
    let all: Vec<(&str, Vec<Vec<String>>)> = DRIVERS
        .iter()
        .map(|d| {
            let layers = matrix_layers(d);
            let keys = layers
                .iter()
                .map(|l| {
                    let mut keys: Vec<String> = l.iter().map(Rich::key).collect();
                    keys.sort();
                    keys
                })
                .collect();
            (*d, keys)
        })
        .collect();
    let (first, reference) = &all[0];
    let mut report = String::new();
    for (driver, layers) in &all[1..] {
        for (i, (want, got)) in reference.iter().zip(layers).enumerate() {
            if want != got {
                let want_set: BTreeSet<&String> = want.iter().collect();
                let got_set: BTreeSet<&String> = got.iter().collect();
                report.push_str(&format!("L{} {first} vs {driver}:\n", i + 1));
                for only in want_set.difference(&got_set) {
                    report.push_str(&format!("  only {first}: {only}\n"));
                }
                for only in got_set.difference(&want_set) {
                    report.push_str(&format!("  only {driver}: {only}\n"));
                }
            }
        }
    }
    assert!(report.is_empty(), "layer entries differ between drivers:\n{report}");
}

// ---------------------------------------------------------------------------------------
// The sandbox: RUN processes start with default signal dispositions, as under docker.
// (strata is a Rust program: std ignores SIGPIPE, and an ignored signal survives exec, so
// `yes | head -c 1` in a RUN step would spin forever unless the sandbox resets it.)

#[test]
fn sandbox_run_steps_have_default_signal_dispositions() {
    if skip_without_sandbox("sandbox_run_steps_have_default_signal_dispositions") {
        return;
    }
    crate::support::with_base();
    let out = crate::support::strata(["run", "--rm", "busybox:latest", "sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status"]).ok();
    let mask = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no {name} in {}", out.describe()))
    };
    // SIGPIPE is signal 13: bit 12. (Other ignored signals may be inherited from whatever
    // started the test, e.g. SIGQUIT from a non-interactive shell's background job.)
    assert_eq!(mask("SigIgn:") & (1 << 12), 0, "`strata run`: SIGPIPE must not be ignored in the container: {}", out.describe());
    assert_eq!(mask("SigBlk:"), 0, "`strata run`: no signal may be blocked in the container: {}", out.describe());
    let ctx = scratch("sigpipe-context");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\nRUN grep -E '^Sig(Ign|Blk)' /proc/self/status && start=$(date +%s) && timeout 20 yes | head -c 1 >/dev/null && test $(( $(date +%s) - start )) -lt 10\n",
    )
    .expect("write Dockerfile");
    let build = crate::support::strata(["build", "-t", "drivers-sigpipe:latest", &path_str(&ctx)]);
    assert!(
        build.success(),
        "a RUN step must start with SIGPIPE at its default (`yes | head -c 1` must end at once, not after `timeout 20`): {}",
        build.describe()
    );
}

// ---------------------------------------------------------------------------------------
// `strata info` reports the forced driver.

#[test]
fn drivers_info_reports_forced_driver() {
    let test = "drivers_info_reports_forced_driver";
    if skip_without_sandbox(test) {
        return;
    }
    for driver in DRIVERS {
        if driver == "fuse-overlayfs" && skip_driver(test, driver) {
            continue;
        }
        let root = scratch(&format!("info-{driver}")).join("store");
        let text = strata_at(&root, Some(driver), &[], &["info"]).ok();
        let line = text
            .stdout
            .lines()
            .find(|l| l.starts_with("storage driver:"))
            .unwrap_or_else(|| panic!("no `storage driver:` line: {}", text.describe()));
        assert_eq!(line.trim_start_matches("storage driver:").trim(), driver, "{}", text.describe());
        let json = strata_at(&root, Some(driver), &[], &["info", "--json"]).ok().json();
        assert_eq!(json["storage_driver"], driver, "info --json: {json:#}");
        let by_env = strata_at(&root, None, &[("STRATA_STORAGE_DRIVER", driver)], &["info", "--json"]).ok().json();
        assert_eq!(by_env["storage_driver"], driver, "STRATA_STORAGE_DRIVER={driver} info --json: {by_env:#}");
        assert_eq!(json["store"], path_str(&root), "info --json names the store: {json:#}");
    }
    // Unforced, the probe picks one of the three.
    let root = scratch("info-probed").join("store");
    let json = strata_at(&root, None, &[], &["info", "--json"]).ok().json();
    let probed = json["storage_driver"].as_str().unwrap_or_default();
    assert!(DRIVERS.contains(&probed), "probed driver: {json:#}");
    for key in ["kernel", "id_mapping", "store"] {
        assert!(json[key].as_str().is_some_and(|v| !v.is_empty()), "info --json lacks {key}: {json:#}");
    }
}
