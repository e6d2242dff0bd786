//! Servers that stop answering: a registry frozen with SIGSTOP (its kernel still
//! accepts connections, so only an idle timeout notices), before a pull or a push
//! and in the middle of a big layer either way, and an `ADD <url>` server that never
//! answers or stalls mid-body. Each command must fail with exit 1 within the
//! timeout (`--registry-timeout 2`) times the retry budget, naming the server and
//! saying it timed out, and leave a store that passes `strata fsck`. A TLS
//! registry frozen mid-body shows that the timeout holds through TLS too.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::drivers::strata_at;
use crate::registry_faults::{big_image, biggest_layer, has_file_at_least, temp_files, while_running, IN_FLIGHT};
use crate::registry_server::{Registry, RegistryOptions};
use crate::registry_tls::make_certs;
use crate::support::{hello_image, path_str, scratch, skip_without_sandbox, strata, Run};

/// The idle timeout the tests give strata, in seconds.
const TIMEOUT: &str = "2";

/// How long a command may take once its server froze: four tries of 2 s and 3.5 s
/// of backoff, with ample slack for a loaded machine (a hang would last forever).
const BOUND: Duration = Duration::from_secs(45);

/// Checks that `run` (which took `took` since the server froze) failed in time,
/// with exit 1 and an error naming `server` and the timeout.
#[track_caller]
fn timed_out(run: &Run, took: Duration, server: &str) {
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(took < BOUND, "it took {took:?} to give up: {}", run.describe());
    for needle in [server, "timed out"] {
        assert!(run.stderr.contains(needle), "the error says {needle:?}: {}", run.describe());
    }
}

/// Runs strata with the short timeout in the store at `root`, on a thread.
fn spawn_at(root: &Path, args: &[&str]) -> JoinHandle<Run> {
    let root = root.to_path_buf();
    let args: Vec<String> = ["--registry-timeout", TIMEOUT].iter().chain(args).map(|a| a.to_string()).collect();
    thread::spawn(move || strata_at(&root, None, &[], &args.iter().map(String::as_str).collect::<Vec<_>>()))
}

#[test]
fn a_frozen_registry_times_out_a_pull_and_a_push() {
    if skip_without_sandbox("a_frozen_registry_times_out_a_pull_and_a_push") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("stalls-frozen");
    let registry = Registry::start(&dir, None);
    let dest = format!("{}/e2e/hello:1", registry.addr);
    strata(["push", hello, &dest]).ok();
    registry.freeze();

    // The environment's spelling of the timeout, for once.
    let store = dir.join("puller");
    let started = Instant::now();
    let pull = strata_at(&store, None, &[("STRATA_REGISTRY_TIMEOUT", TIMEOUT)], &["pull", &dest]);
    timed_out(&pull, started.elapsed(), &registry.addr);
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited for the timeout: {}", pull.describe());
    strata_at(&store, None, &[], &["fsck"]).ok();

    let started = Instant::now();
    let push = strata(["--registry-timeout", TIMEOUT, "push", hello, &format!("{}/e2e/hello:2", registry.addr)]);
    timed_out(&push, started.elapsed(), &registry.addr);
    strata(["fsck"]).ok();
}

#[test]
fn a_registry_frozen_mid_pull_times_out_cleanly() {
    if skip_without_sandbox("a_registry_frozen_mid_pull_times_out_cleanly") {
        return;
    }
    let big = big_image();
    let dir = scratch("stalls-pull");
    let registry = Registry::start(&dir, None);
    let dest = format!("{}/e2e/big:1", registry.addr);
    strata(["push", big, &dest]).ok();
    let layer = biggest_layer(&strata(["inspect", big]).ok().json()[0]["Manifest"]);

    let store = dir.join("puller");
    let job = spawn_at(&store, &["pull", &dest]);
    let blobs = store.join("oci/blobs/sha256");
    while_running(&job, "the big layer's download", || has_file_at_least(&blobs, &|n| n.starts_with(".tmp-"), IN_FLIGHT));
    registry.freeze();
    let frozen = Instant::now();
    let failed = job.join().expect("pull thread");
    timed_out(&failed, frozen.elapsed(), &registry.addr);
    assert!(failed.stderr.contains(&format!("blob {layer}")), "the error names the layer: {}", failed.describe());
    assert_eq!(temp_files(&store), Vec::<String>::new(), "no temp file is left behind");
    assert!(!blobs.join(&layer[7..]).exists(), "half a layer is never a blob");
    strata_at(&store, None, &[], &["fsck"]).ok();
}

#[test]
fn a_registry_frozen_mid_push_times_out_cleanly() {
    if skip_without_sandbox("a_registry_frozen_mid_push_times_out_cleanly") {
        return;
    }
    let big = big_image();
    let dir = scratch("stalls-push");
    let registry = Registry::start(&dir, None);
    let dest = format!("{}/e2e/big:1", registry.addr);
    let job = {
        let args = ["--registry-timeout", TIMEOUT, "push", big, &dest].map(str::to_string);
        thread::spawn(move || strata(args))
    };
    let uploads = dir.join("data/docker/registry/v2/repositories/e2e/big/_uploads");
    while_running(&job, "the big layer's upload", || has_file_at_least(&uploads, &|n| n == "data", IN_FLIGHT));
    registry.freeze();
    let frozen = Instant::now();
    let failed = job.join().expect("push thread");
    timed_out(&failed, frozen.elapsed(), &registry.addr);
    assert!(failed.stderr.contains(&format!("pushing to {dest}")), "{}", failed.describe());
    strata(["fsck"]).ok();
}

#[test]
fn a_tls_registry_frozen_mid_pull_times_out() {
    if skip_without_sandbox("a_tls_registry_frozen_mid_pull_times_out") {
        return;
    }
    let big = big_image();
    let dir = scratch("stalls-tls");
    let certs = make_certs(&dir.join("pki"));
    let options = RegistryOptions { htpasswd: None, tls: Some((certs.server_cert.clone(), certs.server_key.clone())) };
    fs::create_dir_all(dir.join("registry")).unwrap();
    let registry = Registry::start_with(&dir.join("registry"), &options);
    let cert_dir = dir.join("certs");
    fs::create_dir_all(&cert_dir).unwrap();
    fs::copy(&certs.ca, cert_dir.join("ca.crt")).unwrap();
    let cd = path_str(&cert_dir);
    let dest = format!("{}/e2e/big:1", registry.addr);
    strata(["push", "--cert-dir", &cd, big, &dest]).ok();

    // Over TLS the stall is seen through rustls, which ureq's errors pass through.
    let store = dir.join("puller");
    let job = spawn_at(&store, &["pull", "--cert-dir", &cd, &dest]);
    let blobs = store.join("oci/blobs/sha256");
    while_running(&job, "the big layer's download", || has_file_at_least(&blobs, &|n| n.starts_with(".tmp-"), IN_FLIGHT));
    registry.freeze();
    let frozen = Instant::now();
    let failed = job.join().expect("pull thread");
    timed_out(&failed, frozen.elapsed(), &registry.addr);
    assert_eq!(temp_files(&store), Vec::<String>::new(), "no temp file is left behind");
    strata_at(&store, None, &[], &["fsck"]).ok();
}

/// An HTTP server on 127.0.0.1 that answers every connection with `reply` (maybe
/// nothing) and then stays silent, the connection open, until dropped.
struct StallingServer {
    addr: String,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl StallingServer {
    fn start(reply: &'static [u8]) -> StallingServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (stopped, holder) = (stop.clone(), held.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request);
                let _ = conn.write_all(reply);
                holder.lock().unwrap().push(conn);
            }
        });
        StallingServer { addr, stop, held }
    }
}

impl Drop for StallingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        self.held.lock().unwrap().clear();
    }
}

#[test]
fn add_of_a_url_whose_server_stalls_times_out() {
    if skip_without_sandbox("add_of_a_url_whose_server_stalls_times_out") {
        return;
    }
    let mute = StallingServer::start(b"");
    let midway = StallingServer::start(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\nthe first bytes of many");
    for (server, case) in [(&mute, "never answers"), (&midway, "stalls mid-body")] {
        let ctx = scratch("stalls-add");
        let url = format!("http://{}/file.bin", server.addr);
        fs::write(ctx.join("Dockerfile"), format!("FROM scratch\nADD {url} /file.bin\n")).unwrap();
        let started = Instant::now();
        let build = strata(["--registry-timeout", TIMEOUT, "build", "-t", "e2e-stalled-add", &path_str(&ctx)]);
        assert!(started.elapsed() < BOUND, "{case}: it took {:?} to give up: {}", started.elapsed(), build.describe());
        assert_eq!(build.code, Some(1), "{case}: {}", build.describe());
        for needle in [url.as_str(), "timed out"] {
            assert!(build.stderr.contains(needle), "{case}: the error says {needle:?}: {}", build.describe());
        }
    }
    let images: Value = strata(["images", "--format", "json"]).ok().json();
    assert!(!images.to_string().contains("e2e-stalled-add"), "no image was made: {images}");
    strata(["fsck"]).ok();
}
