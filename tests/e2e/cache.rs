//! The build cache: a no-op rebuild is all CACHED with the identical image id, an
//! edit re-runs exactly the steps after it (even when size and mtime are kept and
//! the memo knows the file), `--no-cache` re-runs everything, a step that re-ran
//! (ADD of a URL, `--no-cache-filter`) never lets a later step hit an entry made over
//! its old result, keys see expanded words, SOURCE_DATE_EPOCH is in the key, and
//! `ADD --checksum` is keyed on the checksum: a hit downloads nothing.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::support::{inspect_config, path_str, run, scratch, skip_without_sandbox, strata, with_base, world};

const DOCKERFILE: &str = "FROM busybox\nARG FLAVOUR=plain\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy-a\nCOPY b.txt /b.txt\nRUN echo $FLAVOUR > /flavour\nENV DONE=1\nRUN od -An -tx1 -N16 /dev/urandom > /stamp\n";

fn context(name: &str) -> std::path::PathBuf {
    let ctx = scratch(name);
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    // Unique content: tests share one store, and equal inputs would share cache hits.
    fs::write(ctx.join("a.txt"), format!("alpha {name} {}\n", std::process::id())).unwrap();
    fs::write(ctx.join("b.txt"), "bravo\n").unwrap();
    ctx
}

/// What a build printed: every step's instruction, the ones marked CACHED, and the
/// image id.
struct Built {
    steps: Vec<String>,
    cached: Vec<String>,
    id: String,
}

fn build(ctx: &Path, tag: &str, extra: &[&str]) -> Built {
    let mut args = vec!["build", "-t", tag];
    args.extend_from_slice(extra);
    let ctx_s = path_str(ctx);
    args.push(&ctx_s);
    let out = strata(args).ok();
    let (mut steps, mut cached) = (Vec::new(), Vec::new());
    for line in out.stderr.lines() {
        if let Some((_, instr)) = line.split_once(": ").filter(|_| line.contains("STEP ")) {
            if !instr.starts_with("FROM ") {
                steps.push(instr.to_string());
            }
        } else if line.trim_end().ends_with("--> CACHED") {
            cached.push(steps.last().cloned().unwrap_or_default());
        }
    }
    Built { steps, cached, id: out.stdout.trim().to_string() }
}

fn cat(image: &str, path: &str) -> String {
    strata(["run", "--rm", image, "cat", path]).ok().stdout
}

#[test]
fn noop_rebuild_is_all_cached_with_the_same_id() {
    if skip_without_sandbox("noop_rebuild_is_all_cached_with_the_same_id") {
        return;
    }
    with_base();
    let ctx = context("cache-noop");
    let first = build(&ctx, "cache-noop", &[]);
    // The ARG right after FROM busybox is the same step in every test of this file.
    assert!(first.cached.iter().all(|s| s == "ARG FLAVOUR=plain"), "a fresh context hits nothing: {:?}", first.cached);
    assert_eq!(first.steps.len(), 7);
    let stamp = cat("cache-noop", "/stamp");
    let second = build(&ctx, "cache-noop", &[]);
    assert_eq!(second.cached, second.steps, "every step, metadata ones too, is CACHED");
    assert_eq!(first.id, second.id, "a no-op rebuild gives the identical image id");
    let none = build(&ctx, "cache-noop", &["--no-cache"]);
    assert!(none.cached.is_empty(), "--no-cache marks nothing CACHED: {:?}", none.cached);
    assert_ne!(none.id, first.id, "--no-cache made a new image");
    assert_ne!(cat("cache-noop", "/stamp"), stamp, "the RUN steps really ran again");
}

/// The hash memo's (inode, hex SHA-256) records: after its 19-byte magic, 76-byte
/// records of dev, ino, size, mtime, ctime (little-endian 8 bytes each), the hash,
/// and the day it was last used (4 bytes).
fn memo_records() -> Vec<(u64, String)> {
    let bytes = fs::read(world().root.join("cache/hash-memo.bin")).unwrap();
    assert!(bytes.starts_with(b"strata hash memo 1\n"), "the memo file starts with its magic");
    let records = bytes[19..].chunks_exact(76);
    records.map(|r| (u64::from_le_bytes(r[8..16].try_into().unwrap()), r[40..72].iter().map(|b| format!("{b:02x}")).collect())).collect()
}

#[test]
fn an_edit_reruns_exactly_the_dependent_steps() {
    if skip_without_sandbox("an_edit_reruns_exactly_the_dependent_steps") {
        return;
    }
    with_base();
    let ctx = context("cache-edit");
    build(&ctx, "cache-edit", &[]);
    // Files settled for more than 3 s are remembered by the memo on the next hash.
    thread::sleep(Duration::from_millis(3500));
    let again = build(&ctx, "cache-edit", &[]);
    assert_eq!(again.cached, again.steps);
    // Same size, same mtime, other content: the memo must not answer for it.
    let b = ctx.join("b.txt");
    let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&b).unwrap());
    let bravo = run("sha256sum", [path_str(&b)]).ok().stdout.split_whitespace().next().unwrap().to_string();
    let known = memo_records().iter().any(|(i, hash)| *i == ino && *hash == bravo);
    assert!(known, "the memo remembers the settled b.txt (ino {ino}, {bravo})");
    let reference = scratch("cache-edit-ref").join("ref");
    fs::write(&reference, "").unwrap();
    run("touch", ["-r", &path_str(&b), &path_str(&reference)]).ok();
    fs::write(&b, "BRAVO\n").unwrap();
    run("touch", ["-r", &path_str(&reference), &path_str(&b)]).ok();
    let edited = build(&ctx, "cache-edit", &[]);
    assert_eq!(edited.cached, ["ARG FLAVOUR=plain", "COPY a.txt /a.txt", "RUN cat /a.txt > /copy-a"], "steps before the edit stay cached");
    assert_eq!(cat("cache-edit", "/b.txt"), "BRAVO\n", "the new content is in the image");
    // A build arg used by a later RUN re-runs from the first RUN that sees it.
    let spicy = build(&ctx, "cache-edit", &["--build-arg", "FLAVOUR=spicy"]);
    assert_eq!(spicy.cached, ["ARG FLAVOUR=plain", "COPY a.txt /a.txt"], "ARG values are part of every later RUN key");
    assert_eq!(cat("cache-edit", "/flavour"), "spicy\n");
    // Proxy args never cause a miss.
    let proxied = build(&ctx, "cache-edit", &["--build-arg", "FLAVOUR=spicy", "--build-arg", "HTTP_PROXY=http://127.0.0.1:9"]);
    assert_eq!(proxied.cached, proxied.steps);
    assert_eq!(proxied.id, spicy.id);
}

#[test]
fn keys_see_expanded_words_and_never_a_proxy_for_run() {
    if skip_without_sandbox("keys_see_expanded_words_and_never_a_proxy_for_run") {
        return;
    }
    with_base();
    let ctx = scratch("cache-expand");
    let unique = format!("{}-{}", std::process::id(), path_str(&ctx).len());
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nARG HTTP_PROXY\nARG DIR=one\nRUN echo {unique} > /u\nLABEL proxy=$HTTP_PROXY\nWORKDIR /w/$DIR\nENV WHERE=/w/$DIR\nCOPY $DIR.txt ./\n"),
    )
    .unwrap();
    fs::write(ctx.join("one.txt"), "1\n").unwrap();
    fs::write(ctx.join("two.txt"), "1\n").unwrap();
    build(&ctx, "cache-expand", &["--build-arg", "HTTP_PROXY=http://a:1"]);
    let b = build(&ctx, "cache-expand", &["--build-arg", "HTTP_PROXY=http://b:2"]);
    assert_eq!(
        b.cached,
        ["ARG HTTP_PROXY", "ARG DIR=one", &format!("RUN echo {unique} > /u")],
        "a proxy change re-runs only what expands it"
    );
    let labels = &inspect_config("cache-expand")["Labels"];
    assert_eq!(labels["proxy"], "http://b:2", "{labels}");
    let two = build(&ctx, "cache-expand", &["--build-arg", "HTTP_PROXY=http://b:2", "--build-arg", "DIR=two"]);
    assert_eq!(two.cached, ["ARG HTTP_PROXY", "ARG DIR=one"], "the RUN sees DIR, the rest expands it");
    let config = inspect_config("cache-expand");
    assert_eq!(config["WorkingDir"], "/w/two");
    assert!(crate::support::strings(&config["Env"]).contains(&"WHERE=/w/two".to_string()), "{config}");
    assert_eq!(strata(["run", "--rm", "cache-expand", "ls"]).ok().stdout, "two.txt\n");
}

/// An HTTP/1.0 server on 127.0.0.1 whose one file can change between requests;
/// it counts the requests it answered.
struct Server {
    port: u16,
    body: Arc<Mutex<Vec<u8>>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(body: &[u8]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (body, stop) = (Arc::new(Mutex::new(body.to_vec())), Arc::new(AtomicBool::new(false)));
        let requests = Arc::new(AtomicUsize::new(0));
        let (b, s, n) = (Arc::clone(&body), Arc::clone(&stop), Arc::clone(&requests));
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        n.fetch_add(1, Ordering::SeqCst);
                        answer(stream, &b.lock().unwrap())
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Server { port, body, requests, stop, thread: Some(thread) }
    }
}

fn answer(mut stream: TcpStream, body: &[u8]) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let (mut request, mut buf) = (Vec::new(), [0u8; 1024]);
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body));
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_changed_download_reruns_every_later_step() {
    if skip_without_sandbox("a_changed_download_reruns_every_later_step") {
        return;
    }
    with_base();
    let server = Server::start(b"version one\n");
    let ctx = scratch("cache-url");
    let df = format!("FROM busybox\nADD http://127.0.0.1:{}/f.txt /dl/f.txt\nRUN cat /dl/f.txt > /seen\n", server.port);
    fs::write(ctx.join("Dockerfile"), df).unwrap();
    let first = build(&ctx, "cache-url", &[]);
    assert_eq!(cat("cache-url", "/seen"), "version one\n");
    // Without Last-Modified the file is dated at the epoch, as Docker dates it.
    let mtime = strata(["run", "--rm", "cache-url", "stat", "-c", "%Y", "/dl/f.txt"]).ok().stdout;
    assert_eq!(mtime.trim(), "0");
    // A later second must not matter: the key holds the content, not the fetch time.
    thread::sleep(Duration::from_millis(1100));
    let same = build(&ctx, "cache-url", &[]);
    assert_eq!(same.cached, same.steps, "the same download is a hit, and so is every later step");
    assert_eq!(same.id, first.id);
    *server.body.lock().unwrap() = b"version two\n".to_vec();
    let changed = build(&ctx, "cache-url", &[]);
    assert!(changed.cached.is_empty(), "a new download is a new parent for every later step: {:?}", changed.cached);
    assert_eq!(cat("cache-url", "/seen"), "version two\n", "the RUN saw the new download");
}

#[test]
fn a_checksum_keys_the_download_so_a_hit_fetches_nothing() {
    if skip_without_sandbox("a_checksum_keys_the_download_so_a_hit_fetches_nothing") {
        return;
    }
    with_base();
    let body = format!("pinned {}\n", std::process::id());
    let server = Server::start(body.as_bytes());
    let sum = run("sh", ["-c", &format!("printf '{body}' | sha256sum")]).ok().stdout.split_whitespace().next().unwrap().to_string();
    let ctx = scratch("cache-checksum");
    let df = format!("FROM busybox\nADD --checksum=sha256:{sum} http://127.0.0.1:{}/p.txt /dl/\nRUN cat /dl/p.txt > /seen\n", server.port);
    fs::write(ctx.join("Dockerfile"), df).unwrap();
    let first = build(&ctx, "cache-checksum", &[]);
    assert!(first.cached.is_empty(), "{:?}", first.cached);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1, "a miss downloads once, for the step");
    assert_eq!(cat("cache-checksum", "/seen"), body);
    // What the server now sends does not matter: the checksum is the content.
    *server.body.lock().unwrap() = b"changed\n".to_vec();
    let again = build(&ctx, "cache-checksum", &[]);
    assert_eq!(again.cached, again.steps, "the checksum is unchanged: every step hits");
    assert_eq!(again.id, first.id);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1, "a hit makes no request");
    // A miss (another destination) downloads and checks: the new bytes do not match.
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nADD --checksum=sha256:{sum} http://127.0.0.1:{}/p.txt /other/\n", server.port),
    )
    .unwrap();
    let out = strata(["build", &path_str(&ctx)]);
    assert!(!out.success());
    let url = format!("http://127.0.0.1:{}/p.txt", server.port);
    assert!(out.stderr.contains(&url) && out.stderr.contains(&format!("expected sha256:{sum}")), "{}", out.stderr);
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[test]
fn no_cache_filter_reaches_stages_built_on_the_filtered_one() {
    if skip_without_sandbox("no_cache_filter_reaches_stages_built_on_the_filtered_one") {
        return;
    }
    with_base();
    let ctx = scratch("cache-filter");
    let unique = format!("{}-{}", std::process::id(), path_str(&ctx).len());
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM busybox AS a\nRUN echo {unique} > /u && od -An -tx1 -N16 /dev/urandom > /stamp\n\
             FROM a AS b\nRUN cp /stamp /b-stamp\n\
             FROM busybox\nCOPY --from=a /stamp /a-stamp\nCOPY --from=b /b-stamp /b-stamp\n"
        ),
    )
    .unwrap();
    build(&ctx, "cache-filter", &[]);
    let old = cat("cache-filter", "/a-stamp");
    assert_eq!(cat("cache-filter", "/b-stamp"), old);
    let again = build(&ctx, "cache-filter", &[]);
    assert_eq!(again.cached, again.steps);
    let filtered = build(&ctx, "cache-filter", &["--no-cache-filter", "a"]);
    assert!(filtered.cached.is_empty(), "stage a re-ran, so nothing built on it may hit: {:?}", filtered.cached);
    let new = cat("cache-filter", "/a-stamp");
    assert_ne!(new, old, "stage a re-ran");
    assert_eq!(cat("cache-filter", "/b-stamp"), new, "FROM a saw the new result");
}

#[test]
fn source_date_epoch_is_part_of_the_key() {
    if skip_without_sandbox("source_date_epoch_is_part_of_the_key") {
        return;
    }
    with_base();
    let ctx = context("cache-epoch");
    let plain = build(&ctx, "cache-epoch", &[]);
    let pinned = build(&ctx, "cache-epoch", &["--source-date-epoch", "1700000000"]);
    assert!(pinned.cached.is_empty(), "an epoch build never reuses unclamped results: {:?}", pinned.cached);
    assert_ne!(pinned.id, plain.id);
    let out = scratch("cache-epoch-out").join("image.tar");
    let pinned_again =
        build(&ctx, "cache-epoch", &["--source-date-epoch", "1700000000", "--output", &format!("oci-archive:{}", path_str(&out))]);
    assert_eq!(pinned_again.cached, pinned_again.steps, "the same epoch hits");
    assert_eq!(pinned_again.id, pinned.id);
    let created = strata(["inspect", "cache-epoch"]).ok().json();
    let created = created[0]["created"].as_str().or(created["created"].as_str()).unwrap_or_default().to_string();
    assert!(created.starts_with("2023-11-14T22:13:20"), "created is the epoch: {created}");
    // Every layer strata wrote has its entries clamped to the epoch.
    let base = strata(["inspect", "busybox"]).ok().json();
    let base = if base.is_array() { base[0].clone() } else { base };
    let base_layers: Vec<String> =
        base["Manifest"]["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().replace("sha256:", "")).collect();
    let dir = scratch("cache-epoch-unpacked");
    run("tar", ["-xf", &path_str(&out), "-C", &path_str(&dir)]).ok();
    let mut layers = 0;
    for blob in fs::read_dir(dir.join("blobs/sha256")).unwrap().flatten() {
        if base_layers.contains(&blob.file_name().to_string_lossy().into_owned()) {
            continue;
        }
        let listing = run("tar", ["--full-time", "-tvzf", &path_str(&blob.path())]);
        if !listing.success() {
            continue; // a config or manifest
        }
        layers += 1;
        for line in listing.stdout.lines() {
            let date = line.split_whitespace().nth(3).unwrap_or_default();
            assert!(date <= "2023-11-14", "entry newer than the epoch: {line}");
        }
    }
    assert!(layers >= 4, "the build's own layers were checked: {layers}");
}
