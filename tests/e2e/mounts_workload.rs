//! The acceptance workload of `RUN --mount=type=cache`: pip on the Debian minbase of
//! `workload.rs` keeps its download cache in a cache mount, so a rebuild after a new
//! requirement takes the old packages from the cache (pip says "Using cached") and
//! downloads only the new one, while no cache file enters the image.
//!
//! The packages come from an index the test runs on 127.0.0.1 (`pip_index.py`, reached
//! with `--network host`) serving wheels the test makes, with the caching headers PyPI
//! sends: pip's HTTP cache then behaves as against PyPI, and no proxy between this
//! machine and PyPI can strip those headers. Only the Debian mirror is needed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::language::Ctx;
use crate::layout::Layout;
use crate::mounts::assert_not_in_layers;
use crate::support::{path_str, scratch, skip_without_sandbox, strata};
use crate::workload::{link_or_copy, minbase_tarball};

/// `--trusted-host` is what gives plain http:// pip's caching adapter; without it pip
/// downloads from 127.0.0.1 every time, cache mount or not.
const DOCKERFILE: &str = "FROM scratch\nADD rootfs.tar /\n\
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip\n\
WORKDIR /app\nCOPY requirements.txt .\nARG INDEX\n\
RUN --mount=type=cache,target=/root/.cache/pip \
pip install --break-system-packages --disable-pip-version-check --no-index \
--trusted-host 127.0.0.1 --find-links $INDEX -r requirements.txt \
&& echo \"pip cache files: $(find /root/.cache/pip -type f | wc -l)\"\n";

const SCRIPT: &str = include_str!("pip_index.py");

/// The wheels the index holds: the first build wants two, the rebuild adds the third.
const PACKAGES: [(&str, &str); 3] = [("alpha", "1.0"), ("beta", "2.0"), ("gamma", "3.0")];

/// `pip_index.py serve` on a port of its choosing; killed when dropped, so a failing
/// test leaves no server behind.
struct Index {
    child: Child,
    url: String,
    requests: PathBuf,
    dir: PathBuf,
}

impl Index {
    fn start() -> Index {
        let dir = scratch("pip-index");
        let script = dir.join("pip_index.py");
        fs::write(&script, SCRIPT).expect("write pip_index.py");
        let wheels = dir.join("wheels");
        fs::create_dir(&wheels).expect("create the wheel dir");
        let specs = PACKAGES.iter().map(|(name, version)| format!("{name}=={version}"));
        python(Command::new("python3").arg(&script).arg("wheels").arg(&wheels).args(specs));
        let (requests, port_file) = (dir.join("requests.log"), dir.join("port"));
        let child = Command::new("python3")
            .arg(&script)
            .arg("serve")
            .args([&wheels, &requests, &port_file])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("server.err")).expect("create server.err"))
            .spawn()
            .expect("start python3 pip_index.py serve (package python3)");
        let mut index = Index { child, url: String::new(), requests, dir };
        let port = index.port(&port_file);
        index.url = format!("http://127.0.0.1:{port}/");
        index
    }

    fn port(&mut self, port_file: &Path) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(port) = fs::read_to_string(port_file) {
                return port.trim().parse().unwrap_or_else(|e| panic!("port file {port:?}: {e}"));
            }
            let exited = self.child.try_wait().expect("poll the index");
            let err = || fs::read_to_string(self.dir.join("server.err")).unwrap_or_default();
            assert!(exited.is_none(), "the index exited with {exited:?}:\n{}", err());
            assert!(Instant::now() < deadline, "the index wrote no port in 20s:\n{}", err());
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every request so far, one "METHOD PATH STATUS" a line.
    fn requests(&self) -> Vec<String> {
        fs::read_to_string(&self.requests).unwrap_or_default().lines().map(str::to_owned).collect()
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python(cmd: &mut Command) {
    let out = cmd.output().expect("run python3 (package python3)");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn wheel(name: &str) -> String {
    let version = PACKAGES.iter().find(|(n, _)| *n == name).expect("a known package").1;
    format!("{name}-{version}-py3-none-any.whl")
}

fn requirements(names: &[&str]) -> String {
    PACKAGES.iter().filter(|(n, _)| names.contains(n)).map(|(n, v)| format!("{n}=={v}\n")).collect()
}

/// Builds the pip image with `requirements`; returns the build log and every path in
/// the image's layers.
fn build(ctx: &Ctx, index: &Index, requirements: &str) -> (String, Vec<String>) {
    ctx.file("requirements.txt", requirements);
    let layout = scratch("mounts-pip-out").join("layout");
    let output = format!("oci:{}:pip", path_str(&layout));
    let arg = format!("INDEX={}", index.url);
    let built = ctx.build_ok("mounts-pip", &["--network", "host", "--build-arg", &arg, "--output", &output]);
    let layout = Layout::open(&layout);
    let manifest = layout.manifest(Some("pip"));
    let paths = Layout::layers(&manifest).iter().flat_map(|l| layout.layer_entries(l)).map(|e| e.path).collect();
    (format!("{}\n{}", built.stdout, built.stderr), paths)
}

/// True when `requests` holds a 200 (a body sent) for `name`'s wheel.
fn served(requests: &[String], name: &str) -> bool {
    let line = format!("GET /{} 200", wheel(name));
    requests.contains(&line)
}

#[test]
fn pip_reuses_its_cache_mount_and_downloads_only_the_new_package() {
    if skip_without_sandbox("pip_reuses_its_cache_mount_and_downloads_only_the_new_package") {
        return;
    }
    let index = Index::start();
    let ctx = Ctx::new("mounts-pip", DOCKERFILE);
    link_or_copy(&minbase_tarball(), &ctx.join("rootfs.tar"));
    let url = &index.url;

    let (first, paths) = build(&ctx, &index, &requirements(&["alpha", "beta"]));
    let before = index.requests();
    for name in ["alpha", "beta"] {
        let wheel = wheel(name);
        assert!(first.contains(&format!("Downloading {url}{wheel}")), "the first build downloads {wheel}:\n{first}");
        assert!(served(&before, name), "the index never sent {wheel}: {before:?}");
    }
    assert_not_in_layers(&paths, "root/.cache");
    assert!(!first.contains("pip cache files: 0\n"), "pip cached nothing in the mount:\n{first}");

    let (second, paths) = build(&ctx, &index, &requirements(&["alpha", "beta", "gamma"]));
    let rebuild = index.requests().split_off(before.len());
    for name in ["alpha", "beta"] {
        let wheel = wheel(name);
        assert!(second.contains(&format!("Using cached {url}{wheel}")), "the rebuild takes {wheel} from the cache mount:\n{second}");
        assert!(!second.contains(&format!("Downloading {url}{wheel}")), "the rebuild downloaded {wheel} again:\n{second}");
        // pip's own words aside, the index is the witness: a revalidation would be a
        // 304, a download a 200.
        assert!(!served(&rebuild, name), "the rebuild fetched {wheel} from the index again: {rebuild:?}");
    }
    let gamma = wheel("gamma");
    assert!(second.contains(&format!("Downloading {url}{gamma}")), "the new requirement is downloaded:\n{second}");
    assert!(served(&rebuild, "gamma"), "the index never sent {gamma}: {rebuild:?}");
    assert_not_in_layers(&paths, "root/.cache");

    let script = "import alpha, beta, gamma; print(alpha.__version__, beta.__version__, gamma.__version__)";
    let versions = strata(["run", "--rm", "mounts-pip", "python3", "-c", script]).ok();
    assert_eq!(versions.stdout, "1.0 2.0 3.0\n", "the packages are installed in the image");
    fs::remove_file(ctx.join("rootfs.tar")).ok();
}
