//! Pull and push when things go wrong, against Debian's docker-registry: an image
//! index (OCI and Docker's manifest list) resolves to the host's platform or fails
//! naming it; a registry killed in the middle of a push or a pull; a proxy that
//! corrupts one byte of a layer. After each fault the store must pass `strata fsck`
//! and name nothing it did not fully receive, and a rerun must succeed.
//!
//! Faults are timed by conditions, not sleeps: once the registry's upload file (or
//! strata's temp blob) has grown past a few MiB of a much bigger layer, the registry
//! is frozen (so the transfer cannot finish in the meantime), then killed.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::drivers::{sha256_hex, strata_at};
use crate::registry_server::Registry;
use crate::support::{hello_image, path_str, run, scratch, skip_without_sandbox, strata, with_base, Run};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The registry is killed once this much of the big layer has moved.
pub(crate) const IN_FLIGHT: u64 = 8 << 20;

/// The host's architecture as image configs spell it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An architecture the host is not.
fn foreign_arch() -> &'static str {
    if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// The registry's HTTP API through curl, for what strata never does itself (a
/// hand-made manifest, an index).
struct Hub {
    base: String,
    files: PathBuf,
}

impl Hub {
    fn new(registry: &Registry, dir: &Path) -> Hub {
        let files = dir.join("hub");
        fs::create_dir_all(&files).unwrap();
        Hub { base: format!("http://{}", registry.addr), files }
    }

    fn get(&self, repo: &str, what: &str, accept: &str) -> Vec<u8> {
        let url = format!("{}/v2/{repo}/{what}", self.base);
        run("curl", ["-sS", "--fail-with-body", "-H", &format!("Accept: {accept}"), &url]).ok().stdout.into_bytes()
    }

    /// Uploads `bytes` as a blob (POST, then a monolithic PUT); returns its digest.
    fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        let file = self.files.join(&digest[7..]);
        fs::write(&file, bytes).unwrap();
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let started = run("curl", ["-sS", "--fail-with-body", "-X", "POST", "-D", "-", "-o", "/dev/null", &url]).ok();
        let location = started
            .stdout
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no Location: {}", started.describe()));
        let location = if location.starts_with('/') { format!("{}{location}", self.base) } else { location };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let body = format!("@{}", path_str(&file));
        run("curl", ["-sS", "--fail-with-body", "-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary", &body, &put])
            .ok();
        digest
    }

    /// PUTs a manifest or index under `reference`; returns its digest and size.
    fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, value: &Value) -> (String, usize) {
        let bytes = serde_json::to_vec(value).unwrap();
        let digest = format!("sha256:{}", sha256_hex(&bytes));
        let file = self.files.join(format!("manifest-{}", &digest[7..]));
        fs::write(&file, &bytes).unwrap();
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let body = format!("@{}", path_str(&file));
        run("curl", ["-sS", "--fail-with-body", "-X", "PUT", "-H", &format!("Content-Type: {media_type}"), "--data-binary", &body, &url])
            .ok();
        (digest, bytes.len())
    }
}

/// The same image as a Docker schema 2 manifest: same blobs, Docker's media types.
fn as_docker(oci: &Value) -> Value {
    let mut m = oci.clone();
    m["mediaType"] = DOCKER_MANIFEST.into();
    m["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json".into();
    for layer in m["layers"].as_array_mut().expect("layers") {
        layer["mediaType"] = match layer["mediaType"].as_str() {
            Some("application/vnd.oci.image.layer.v1.tar+gzip") => "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
            Some("application/vnd.oci.image.layer.v1.tar") => "application/vnd.docker.image.rootfs.diff.tar".into(),
            other => panic!("no Docker media type for layer type {other:?}"),
        };
    }
    if let Some(obj) = m.as_object_mut() {
        obj.remove("annotations");
    }
    m
}

/// An index (or manifest list) naming `(digest, size, architecture)` entries.
fn index_of(media_type: &str, manifest_type: &str, entries: &[(&str, usize, &str)]) -> Value {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(digest, size, arch)| json!({"mediaType": manifest_type, "digest": digest, "size": size, "platform": {"architecture": arch, "os": "linux"}}))
        .collect();
    json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests})
}

#[test]
fn pull_of_an_index_picks_the_host_platform() {
    if skip_without_sandbox("pull_of_an_index_picks_the_host_platform") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("faults-index");
    let registry = Registry::start(&dir, None);
    let hub = Hub::new(&registry, &dir);
    let (host, foreign, repo) = (host_arch(), foreign_arch(), "e2e/multi");

    // The host's image as strata pushes it, and the same layers under a config that
    // claims another architecture (strata builds for the host only).
    let pushed = strata(["push", hello, &format!("{}/{repo}:host", registry.addr)]).ok().stdout.trim().to_string();
    let host_bytes = hub.get(repo, "manifests/host", OCI_MANIFEST);
    assert_eq!(format!("sha256:{}", sha256_hex(&host_bytes)), pushed);
    let host_oci: Value = serde_json::from_slice(&host_bytes).unwrap();
    let config_digest = host_oci["config"]["digest"].as_str().unwrap();
    let mut config: Value = serde_json::from_slice(&hub.get(repo, &format!("blobs/{config_digest}"), "*/*")).unwrap();
    assert_eq!(config["architecture"], host, "{config:#}");
    config["architecture"] = foreign.into();
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let mut foreign_oci = host_oci.clone();
    foreign_oci["config"]["digest"] = hub.put_blob(repo, &config_bytes).into();
    foreign_oci["config"]["size"] = config_bytes.len().into();
    let (foreign_digest, foreign_size) = hub.put_manifest(repo, "foreign", OCI_MANIFEST, &foreign_oci);
    let (host_docker, host_docker_size) = hub.put_manifest(repo, "host-docker", DOCKER_MANIFEST, &as_docker(&host_oci));
    let (foreign_docker, foreign_docker_size) = hub.put_manifest(repo, "foreign-docker", DOCKER_MANIFEST, &as_docker(&foreign_oci));

    // The foreign entry first: taking the first entry would be wrong.
    let oci_index = index_of(OCI_INDEX, OCI_MANIFEST, &[(&foreign_digest, foreign_size, foreign), (&pushed, host_bytes.len(), host)]);
    hub.put_manifest(repo, "index", OCI_INDEX, &oci_index);
    let docker_list =
        index_of(DOCKER_LIST, DOCKER_MANIFEST, &[(&foreign_docker, foreign_docker_size, foreign), (&host_docker, host_docker_size, host)]);
    hub.put_manifest(repo, "list", DOCKER_LIST, &docker_list);

    for (tag, want) in [("index", &pushed), ("list", &host_docker)] {
        let store = dir.join(format!("store-{tag}"));
        let name = format!("{}/{repo}:{tag}", registry.addr);
        let pulled = strata_at(&store, None, &[], &["pull", &name]).ok();
        assert!(pulled.stderr.contains(&format!("linux/{host}")), "says which platform it took: {}", pulled.describe());
        let inspect = strata_at(&store, None, &[], &["inspect", &name]).ok().json();
        assert_eq!(&inspect[0]["Digest"], want, "{tag}: the host's manifest, not the index or the other one: {inspect:#}");
        assert_eq!(inspect[0]["architecture"], host, "{inspect:#}");
        let ran = strata_at(&store, None, &[], &["run", "--rm", &name]).ok();
        assert!(ran.stdout.contains("Hello from strata!"), "{}", ran.describe());
        strata_at(&store, None, &[], &["fsck"]).ok();
    }

    // An index without the host's platform: a clear error, and nothing stored by name.
    let other_only =
        index_of(OCI_INDEX, OCI_MANIFEST, &[(&foreign_digest, foreign_size, foreign), (&foreign_digest, foreign_size, "s390x")]);
    hub.put_manifest(repo, "elsewhere", OCI_INDEX, &other_only);
    let store = dir.join("store-elsewhere");
    let refused = strata_at(&store, None, &[], &["pull", &format!("{}/{repo}:elsewhere", registry.addr)]);
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    for needle in [format!("linux/{host}"), format!("linux/{foreign}"), "linux/s390x".to_string(), format!("{repo}:elsewhere")] {
        assert!(refused.stderr.contains(&needle), "the error names {needle}: {}", refused.describe());
    }
    assert_eq!(strata_at(&store, None, &[], &["images", "--format", "json"]).ok().json(), json!([]));
}

static BIG: OnceLock<Result<(), String>> = OnceLock::new();

/// An image whose top layer is 128 MiB of random bytes (stored, not compressed), built
/// once into the shared store: big enough that a transfer is caught in flight.
pub(crate) fn big_image() -> &'static str {
    const TAG: &str = "e2e-faults-big";
    with_base();
    let built = BIG.get_or_init(|| {
        let ctx = scratch("faults-big");
        fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN dd if=/dev/urandom of=/big bs=1048576 count=128 2>/dev/null\n").unwrap();
        let run = strata(["build", "-t", TAG, &path_str(&ctx)]);
        if run.success() {
            Ok(())
        } else {
            Err(format!("building the big image failed: {}", run.describe()))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    TAG
}

/// The digest of the biggest layer of `manifest` (JSON).
pub(crate) fn biggest_layer(manifest: &Value) -> String {
    let layers = manifest["layers"].as_array().expect("layers");
    let big = layers.iter().max_by_key(|l| l["size"].as_u64().unwrap()).expect("a layer");
    big["digest"].as_str().unwrap().to_string()
}

/// Files under `dir` (recursively) whose name satisfies `name` and which hold at
/// least `size` bytes.
pub(crate) fn has_file_at_least(dir: &Path, name: &dyn Fn(&str) -> bool, size: u64) -> bool {
    let Ok(entries) = fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => has_file_at_least(&path, name, size),
            Ok(t) if t.is_file() => name(&e.file_name().to_string_lossy()) && e.metadata().is_ok_and(|m| m.len() >= size),
            _ => false,
        }
    })
}

/// Waits until `cond` holds while `job` still runs; panics when `job` ends first or
/// nothing happens within a minute.
pub(crate) fn while_running(job: &JoinHandle<Run>, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(!job.is_finished(), "the command ended before {what}");
        assert!(Instant::now() < deadline, "no sign of {what} within a minute");
        thread::sleep(Duration::from_millis(2));
    }
}

/// The names in a store's blob directory that are not finished blobs.
pub(crate) fn temp_files(store: &Path) -> Vec<String> {
    let blobs = store.join("oci/blobs/sha256");
    let names = fs::read_dir(&blobs).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect());
    names.unwrap_or_else(|_: std::io::Error| Vec::new()).into_iter().filter(|n| n.len() != 64).collect()
}

#[test]
fn a_registry_killed_mid_push_comes_back_and_the_push_completes() {
    if skip_without_sandbox("a_registry_killed_mid_push_comes_back_and_the_push_completes") {
        return;
    }
    let big = big_image();
    let dir = scratch("faults-push");
    let mut registry = Registry::start(&dir, None);
    let dest = format!("{}/e2e/big:1", registry.addr);
    let layer = biggest_layer(&strata(["inspect", big]).ok().json()[0]["Manifest"]);
    let job = {
        let args = vec!["push".to_string(), big.to_string(), dest.clone()];
        thread::spawn(move || strata(args))
    };
    let uploads = dir.join("data/docker/registry/v2/repositories/e2e/big/_uploads");
    while_running(&job, "the big layer's upload", || has_file_at_least(&uploads, &|n| n == "data", IN_FLIGHT));
    registry.freeze();
    let stored = dir.join(format!("data/docker/registry/v2/blobs/sha256/{}/{}", &layer[7..9], &layer[7..]));
    assert!(!stored.exists(), "the upload was still in flight when the registry froze");
    registry.kill();
    let restarting = Instant::now();
    registry.restart();
    let restart_took = restarting.elapsed();
    let first = job.join().expect("push thread");
    assert!(first.stderr.contains(&format!("Retrying upload of {layer}")), "the retry is reported: {}", first.describe());

    // The upload Location died with the registry: the retry must start a new upload.
    // It has a few seconds for that; should the registry take longer to come back,
    // the push fails clearly and a rerun completes.
    let pushed = if first.success() {
        first
    } else {
        assert!(restart_took > Duration::from_secs(2), "the registry was back after {restart_took:?}: {}", first.describe());
        assert_eq!(first.code, Some(1), "{}", first.describe());
        assert!(first.stderr.contains(&format!("pushing to {dest}")), "{}", first.describe());
        strata(["push", big, &dest]).ok()
    };
    let digest = pushed.stdout.trim().to_string();
    assert!(digest.starts_with("sha256:"), "{}", pushed.describe());

    let store = dir.join("puller");
    strata_at(&store, None, &[], &["pull", &dest]).ok();
    let inspect = strata_at(&store, None, &[], &["inspect", &dest]).ok().json();
    assert_eq!(inspect[0]["Digest"], digest, "{inspect:#}");
    strata_at(&store, None, &[], &["fsck"]).ok();
    strata(["fsck"]).ok();
}

#[test]
fn a_registry_killed_mid_pull_fails_cleanly_and_the_rerun_completes() {
    if skip_without_sandbox("a_registry_killed_mid_pull_fails_cleanly_and_the_rerun_completes") {
        return;
    }
    let big = big_image();
    let dir = scratch("faults-pull");
    let mut registry = Registry::start(&dir, None);
    let dest = format!("{}/e2e/big:1", registry.addr);
    let digest = strata(["push", big, &dest]).ok().stdout.trim().to_string();
    let manifest: Value = serde_json::from_slice(&Hub::new(&registry, &dir).get("e2e/big", "manifests/1", OCI_MANIFEST)).unwrap();
    let layer = biggest_layer(&manifest);

    let store = dir.join("puller");
    let job = {
        let (store, args) = (store.clone(), ["pull".to_string(), dest.clone()]);
        thread::spawn(move || strata_at(&store, None, &[], &[args[0].as_str(), args[1].as_str()]))
    };
    let blobs = store.join("oci/blobs/sha256");
    while_running(&job, "the big layer's download", || has_file_at_least(&blobs, &|n| n.starts_with(".tmp-"), IN_FLIGHT));
    registry.freeze();
    registry.kill();
    let failed = job.join().expect("pull thread");
    assert_eq!(failed.code, Some(1), "{}", failed.describe());
    for needle in [format!("pulling {dest}"), format!("blob {layer}"), registry.addr.clone()] {
        assert!(failed.stderr.contains(&needle), "the error names {needle}: {}", failed.describe());
    }
    assert!(!failed.stderr.contains(".tmp-"), "the error is about the registry, not a temp file: {}", failed.describe());
    assert_eq!(temp_files(&store), Vec::<String>::new(), "no temp file is left behind");
    assert!(!blobs.join(&layer[7..]).exists(), "half a layer is never a blob");
    assert_eq!(strata_at(&store, None, &[], &["images", "--format", "json"]).ok().json(), json!([]));
    strata_at(&store, None, &[], &["fsck"]).ok();

    registry.restart();
    strata_at(&store, None, &[], &["pull", &dest]).ok();
    let inspect = strata_at(&store, None, &[], &["inspect", &dest]).ok().json();
    assert_eq!(inspect[0]["Digest"], digest, "{inspect:#}");
    strata_at(&store, None, &[], &["fsck"]).ok();
}

/// A proxy on 127.0.0.1 in front of a registry, one request per connection, that
/// flips one byte in the middle of every GET response body for one blob.
struct CorruptingProxy {
    addr: String,
    corrupted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CorruptingProxy {
    fn start(upstream: &str, blob: &str) -> CorruptingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let (corrupted, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (c, s, upstream, target) = (Arc::clone(&corrupted), Arc::clone(&stop), upstream.to_string(), format!("/blobs/{blob}"));
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (c, upstream, target) = (Arc::clone(&c), upstream.clone(), target.clone());
                        thread::spawn(move || relay(stream, &upstream, &target, &c));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        CorruptingProxy { addr, corrupted, stop, thread: Some(thread) }
    }

    /// How many responses it has corrupted.
    fn corrupted(&self) -> usize {
        self.corrupted.load(Ordering::SeqCst)
    }
}

impl Drop for CorruptingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Forwards one request with `Connection: close`, so the whole response is what the
/// registry sends before closing; corrupts it when it is a GET of `target`.
fn relay(mut client: TcpStream, upstream: &str, target: &str, corrupted: &AtomicUsize) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut buf) {
            // Not HTTP (strata's https probe): hang up so it falls back to http.
            Ok(n) if n > 0 && (request.is_empty() && !buf[0].is_ascii_uppercase()) => return,
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut forwarded = format!("{request_line}\r\n");
    for line in lines.filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:")) {
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let Ok(mut up) = TcpStream::connect(upstream) else { return };
    // Pulls send no request bodies: what followed the head is all there is.
    if up.write_all(forwarded.as_bytes()).and_then(|()| up.write_all(&request[head_end..])).is_err() {
        return;
    }
    let mut response = Vec::new();
    if up.read_to_end(&mut response).is_err() {
        return;
    }
    let mut words = request_line.split(' ');
    let (method, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let body_start = response.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    if let Some(start) =
        body_start.filter(|&s| method == "GET" && path.ends_with(target) && response.starts_with(b"HTTP/1.1 200") && s < response.len())
    {
        let middle = start + (response.len() - start) / 2;
        response[middle] ^= 0xff;
        corrupted.fetch_add(1, Ordering::SeqCst);
    }
    let _ = client.write_all(&response);
}

#[test]
fn a_corrupted_layer_is_refused_by_digest() {
    if skip_without_sandbox("a_corrupted_layer_is_refused_by_digest") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("faults-corrupt");
    let registry = Registry::start(&dir, None);
    let direct = format!("{}/e2e/corrupt:1", registry.addr);
    let digest = strata(["push", hello, &direct]).ok().stdout.trim().to_string();
    let manifest: Value = serde_json::from_slice(&Hub::new(&registry, &dir).get("e2e/corrupt", "manifests/1", OCI_MANIFEST)).unwrap();
    let layer = biggest_layer(&manifest);
    let proxy = CorruptingProxy::start(&registry.addr, &layer);

    let store = dir.join("puller");
    let via_proxy = format!("{}/e2e/corrupt:1", proxy.addr);
    let refused = strata_at(&store, None, &[], &["pull", &via_proxy]);
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    let expected = format!("blob {layer} from {}/e2e/corrupt: content has digest sha256:", proxy.addr);
    assert!(refused.stderr.contains(&expected), "the error says which blob and where from: {}", refused.describe());
    // A mismatch is the content, not the connection: asking again would get the same.
    assert_eq!(proxy.corrupted(), 1, "a mismatch is not retried: {}", refused.describe());
    assert_eq!(temp_files(&store), Vec::<String>::new(), "no temp file is left behind");
    assert!(!store.join("oci/blobs/sha256").join(&layer[7..]).exists(), "the bad content is not stored");
    assert_eq!(strata_at(&store, None, &[], &["images", "--format", "json"]).ok().json(), json!([]));
    strata_at(&store, None, &[], &["fsck"]).ok();

    // Straight from the registry the same pull works: nothing bad was kept.
    strata_at(&store, None, &[], &["pull", &direct]).ok();
    let inspect = strata_at(&store, None, &[], &["inspect", &direct]).ok().json();
    assert_eq!(inspect[0]["Digest"], digest, "{inspect:#}");
    strata_at(&store, None, &[], &["fsck"]).ok();
}
