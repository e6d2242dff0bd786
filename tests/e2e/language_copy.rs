//! COPY and ADD (sources, wildcards, destination rules, --chown/--chmod/--link, local
//! archives, URLs with --checksum against a local HTTP server) and `.dockerignore`, with
//! BuildKit's semantics (see `language.rs` for the helpers).

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::language::{assert_build_fails, sh, skip, sorted_lines, Ctx};
use crate::layout::Layout;
use crate::support::{path_str, run, scratch};

#[test]
fn copy_sources_wildcards_and_destinations() {
    if skip("copy_sources_wildcards_and_destinations") {
        return;
    }
    let dockerfile = r#"FROM busybox
RUN mkdir /existing-dir
COPY a.txt b.txt /multi/
COPY *.txt /glob/
COPY file?.dat /q/
COPY [ab].txt /class/
COPY dir /contents
COPY dir/ /contents2/
COPY a.txt /newname
COPY a.txt /existing-dir/
COPY a.txt /existing-dir
COPY --link a.txt /linked/
COPY ["b.txt", "/json form/"]
WORKDIR /wd
COPY a.txt rel/
COPY b.txt .
"#;
    let ctx = Ctx::new("lang-copy", dockerfile);
    ctx.file("a.txt", "A\n").file("b.txt", "B\n").file("c.md", "C\n");
    ctx.file("file1.dat", "1").file("file2.dat", "2").file("file10.dat", "10");
    ctx.file("dir/top.txt", "top\n").file("dir/sub/inner.txt", "inner\n");
    ctx.build_ok("lang-copy", &[]);
    let out = sh(
        "lang-copy",
        "find /multi /glob /q /class /contents /contents2 /newname /existing-dir /linked '/json form' /wd -print; \
         echo ---; cat /newname /existing-dir/a.txt /contents/sub/inner.txt",
    );
    let (listing, contents) = out.split_once("---\n").unwrap_or((&out, ""));
    let expected = [
        "/multi",
        "/multi/a.txt",
        "/multi/b.txt",
        "/glob",
        "/glob/a.txt",
        "/glob/b.txt",
        "/q",
        "/q/file1.dat",
        "/q/file2.dat",
        "/class",
        "/class/a.txt",
        "/class/b.txt",
        "/contents",
        "/contents/top.txt",
        "/contents/sub",
        "/contents/sub/inner.txt",
        "/contents2",
        "/contents2/top.txt",
        "/contents2/sub",
        "/contents2/sub/inner.txt",
        "/newname",
        "/existing-dir",
        "/existing-dir/a.txt",
        "/linked",
        "/linked/a.txt",
        "/json form",
        "/json form/b.txt",
        "/wd",
        "/wd/rel",
        "/wd/rel/a.txt",
        "/wd/b.txt",
    ];
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort_unstable();
    assert_eq!(sorted_lines(listing), expected, "{out}");
    assert_eq!(contents, "A\nA\ninner\n", "/newname is a file; COPY into an existing dir without a slash");
}

#[test]
fn copy_chown_chmod_in_layer_headers() {
    if skip("copy_chown_chmod_in_layer_headers") {
        return;
    }
    let dockerfile = r#"FROM busybox
COPY --chown=app:nobody a.txt /owned/names.txt
COPY --chown=1000:1000 a.txt /owned/numeric.txt
COPY --chown=nobody a.txt /owned/user-only.txt
COPY --chown=app:app dir /owned/dir/
COPY --chmod=0640 a.txt /modes/a.txt
COPY --chmod=755 --chown=1000 a.txt /modes/b.txt
COPY a.txt /modes/default.txt
COPY script.sh /modes/
USER app
COPY a.txt /modes/after-user.txt
COPY --chmod=u=rwX,go=rX dir script.sh /symbolic/
COPY --chmod=+x a.txt /symbolic/plus-x.txt
COPY --chmod=g=u script.sh /symbolic/g-is-u.sh
"#;
    let ctx = Ctx::new("lang-chown", dockerfile);
    ctx.file("a.txt", "A\n").file("dir/inner.txt", "inner\n").file("script.sh", "#!/bin/sh\n");
    for (rel, mode) in [("a.txt", 0o644), ("dir/inner.txt", 0o644), ("script.sh", 0o750)] {
        fs::set_permissions(ctx.join(rel), fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let out = scratch("lang-chown-out");
    let layout_dir = out.join("layout");
    ctx.build_ok("lang-chown", &["--output", &format!("oci:{}:chown", path_str(&layout_dir))]);
    let layout = Layout::open(&layout_dir);
    let manifest = layout.manifest(Some("chown"));
    let entries: Vec<_> = Layout::layers(&manifest).iter().flat_map(|l| layout.layer_entries(l)).collect();
    let find = |path: &str| {
        entries.iter().rev().find(|e| e.path == path).unwrap_or_else(|| panic!("no {path} in the layers: {entries:#?}")).clone()
    };
    let owner = |path: &str| {
        let e = find(path);
        (e.uid, e.gid, e.mode & 0o7777)
    };
    assert_eq!(owner("owned/names.txt"), (1000, 65534, 0o644), "--chown=app:nobody resolves names");
    assert_eq!(owner("owned/numeric.txt"), (1000, 1000, 0o644), "--chown=1000:1000");
    assert_eq!(owner("owned/user-only.txt"), (65534, 65534, 0o644), "--chown=user: gid = uid");
    assert_eq!(owner("owned/dir/inner.txt"), (1000, 1000, 0o644), "--chown on a directory's contents");
    assert_eq!(owner("modes/a.txt"), (0, 0, 0o640), "--chmod=0640");
    assert_eq!(owner("modes/b.txt"), (1000, 1000, 0o755), "--chmod=755 --chown=1000");
    assert_eq!(owner("modes/default.txt"), (0, 0, 0o644), "COPY without --chown: root");
    assert_eq!(owner("modes/script.sh"), (0, 0, 0o750), "COPY keeps the source's permissions");
    assert_eq!(owner("modes/after-user.txt"), (0, 0, 0o644), "BuildKit's COPY ignores USER: root");
    // Symbolic --chmod (chmod(1) syntax): X only for directories and executables.
    assert_eq!(owner("symbolic/inner.txt"), (0, 0, 0o644), "u=rwX,go=rX on a 0644 file");
    assert_eq!(owner("symbolic/script.sh"), (0, 0, 0o755), "u=rwX,go=rX keeps an executable executable");
    assert_eq!(owner("symbolic/plus-x.txt"), (0, 0, 0o755), "+x");
    assert_eq!(owner("symbolic/g-is-u.sh"), (0, 0, 0o770), "g=u on 0750");
}

/// Creates `ctx/NAME` from the tree `archive-src` with the host's tar and `flag`.
fn host_tar(ctx: &Ctx, name: &str, flag: &str) {
    run("tar", [flag, &path_str(&ctx.join(name)), "-C", &path_str(&ctx.join("archive-src")), "."]).ok();
}

#[test]
fn add_local_archives_are_extracted() {
    if skip("add_local_archives_are_extracted") {
        return;
    }
    let dockerfile = r#"FROM busybox
ADD arch.tar.gz /gz/
ADD arch.tar.bz2 /bz2/
ADD arch.tar.xz /xz
ADD arch.tar /plain/
ADD not-really.tar.gz /odd/
COPY arch.tar.gz /copied/
ADD a.txt /added.txt
"#;
    let ctx = Ctx::new("lang-add-tar", dockerfile);
    ctx.file("archive-src/top.txt", "top\n").file("archive-src/nested/deep.txt", "deep\n");
    ctx.file("a.txt", "A\n").file("not-really.tar.gz", "just text\n");
    host_tar(&ctx, "arch.tar.gz", "-czf");
    host_tar(&ctx, "arch.tar.bz2", "-cjf");
    host_tar(&ctx, "arch.tar.xz", "-cJf");
    host_tar(&ctx, "arch.tar", "-cf");
    fs::remove_dir_all(ctx.join("archive-src")).expect("remove archive-src");
    ctx.build_ok("lang-add-tar", &[]);
    let out = sh(
        "lang-add-tar",
        "for d in gz bz2 xz plain; do cat /$d/top.txt /$d/nested/deep.txt; done; \
         cat /odd/not-really.tar.gz /added.txt; test -f /copied/arch.tar.gz && echo copied-not-extracted",
    );
    assert_eq!(out, "top\ndeep\n".repeat(4) + "just text\nA\ncopied-not-extracted\n", "ADD extracts gzip, bzip2, xz and plain tars");
}

/// A tiny HTTP/1.0 server on 127.0.0.1 serving fixed files; stops when dropped.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(files: Vec<(String, Vec<u8>)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => Self::answer(stream, &files),
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Server { port, stop, thread: Some(thread) }
    }

    fn answer(mut stream: TcpStream, files: &[(String, Vec<u8>)]) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&request);
        let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let found = files.iter().find(|(p, _)| *p == path);
        let _ = match found {
            Some((_, body)) => {
                let head = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body))
            }
            None => stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        };
        let _ = stream.flush();
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn add_url_with_checksum() {
    if skip("add_url_with_checksum") {
        return;
    }
    // A real gzip tarball served over HTTP: ADD of a URL never extracts it.
    let src = scratch("lang-add-url-src");
    fs::create_dir_all(src.join("tree")).expect("mkdir");
    fs::write(src.join("tree/in-archive.txt"), "in archive\n").expect("write");
    let tarball = src.join("remote.tar.gz");
    run("tar", ["-czf", &path_str(&tarball), "-C", &path_str(&src.join("tree")), "."]).ok();
    let body = b"downloaded content\n".to_vec();
    let sha = run(
        "sha256sum",
        [path_str(&{
            let p = src.join("file.txt");
            fs::write(&p, &body).expect("write");
            p
        })],
    )
    .ok()
    .stdout
    .split_whitespace()
    .next()
    .expect("sha256sum output")
    .to_owned();
    let server = Server::start(vec![("/file.txt".into(), body), ("/dir/remote.tar.gz".into(), fs::read(&tarball).expect("read tarball"))]);

    let dockerfile = format!(
        "FROM busybox\n\
         ADD {file} /dl/\n\
         ADD --checksum=sha256:{sha} {file} /dl/checked.txt\n\
         ADD {tar} /dl/\n\
         ADD --chmod=0644 {file} /dl/mode.txt\n",
        file = server.url("/file.txt"),
        tar = server.url("/dir/remote.tar.gz"),
    );
    let ctx = Ctx::new("lang-add-url", &dockerfile);
    ctx.build_ok("lang-add-url", &[]);
    let out = sh(
        "lang-add-url",
        "cat /dl/file.txt /dl/checked.txt; stat -c %a /dl/file.txt /dl/mode.txt; \
         test -f /dl/remote.tar.gz && echo not-extracted; test -e /dl/in-archive.txt || echo no-member",
    );
    assert_eq!(out, "downloaded content\ndownloaded content\n600\n644\nnot-extracted\nno-member\n", "ADD of URLs");

    let wrong = "0".repeat(64);
    let ctx = Ctx::new("lang-add-url-bad", &format!("FROM busybox\nADD --checksum=sha256:{wrong} {} /dl/\n", server.url("/file.txt")));
    let run = ctx.build("lang-add-url-bad", &[]);
    assert_build_fails(&run, "lang-add-url-bad", &["Dockerfile:2"]);
    let lower = run.stderr.to_lowercase();
    assert!(lower.contains("checksum") || lower.contains("digest"), "the error names the checksum mismatch: {}", run.describe());
    assert!(run.stderr.contains(&sha), "the error shows the actual digest {sha}: {}", run.describe());

    let ctx = Ctx::new("lang-add-url-404", &format!("FROM busybox\nADD {} /dl/\n", server.url("/missing.txt")));
    let run = ctx.build("lang-add-url-404", &[]);
    assert_build_fails(&run, "lang-add-url-404", &["404"]);
    drop(server);
}

#[test]
fn copy_errors_missing_source_slash_rule_and_outside_context() {
    if skip("copy_errors_missing_source_slash_rule_and_outside_context") {
        return;
    }
    let ctx = Ctx::new("lang-copy-missing", "FROM busybox\nCOPY a.txt nope.txt /dest/\n");
    ctx.file("a.txt", "A\n");
    let run = ctx.build("lang-copy-missing", &[]);
    assert_build_fails(&run, "lang-copy-missing", &["nope.txt", "Dockerfile:2"]);

    let ctx = Ctx::new("lang-copy-noslash", "FROM busybox\nCOPY a.txt b.txt /notdir\n");
    ctx.file("a.txt", "A\n").file("b.txt", "B\n");
    let run = ctx.build("lang-copy-noslash", &[]);
    assert_build_fails(&run, "lang-copy-noslash", &["Dockerfile:2"]);
    assert!(run.stderr.contains("/notdir") || run.stderr.contains("end with a /"), "{}", run.describe());

    // BuildKit allows a wildcard that matches nothing (AllowEmptyWildcard): nothing
    // is copied and the destination is not created; a plain missing path still fails.
    let ctx = Ctx::new("lang-copy-noglob-match", "FROM busybox\nCOPY *.none /x/\nCOPY a.txt *.none /y/\n");
    ctx.file("a.txt", "A\n");
    ctx.build_ok("lang-copy-noglob-match", &[]);
    assert_eq!(sh("lang-copy-noglob-match", "test -e /x || echo no-x; ls /y"), "no-x\na.txt\n");
    // ... but the directory before the wildcard must exist, as in BuildKit.
    let ctx = Ctx::new("lang-copy-noglob-dir", "FROM busybox\nCOPY nodir/*.txt /x/\n");
    let run = ctx.build("lang-copy-noglob-dir", &[]);
    assert_build_fails(&run, "lang-copy-noglob-dir", &["Dockerfile:2", "nodir"]);

    // A file outside the context is never read.
    let outer = scratch("lang-copy-outside");
    fs::write(outer.join("outside-secret.txt"), "secret\n").expect("write outside file");
    fs::create_dir_all(outer.join("ctx")).expect("mkdir ctx");
    fs::write(outer.join("ctx/Dockerfile"), "FROM busybox\nCOPY ../outside-secret.txt /\n").expect("write Dockerfile");
    let run = crate::support::strata(["build", "-t", "lang-copy-outside", &path_str(&outer.join("ctx"))]);
    assert_build_fails(&run, "lang-copy-outside", &["outside-secret.txt", "cannot leave"]);
}

#[test]
fn copy_symlinks_resolve_inside_the_context_and_stages() {
    if skip("copy_symlinks_resolve_inside_the_context_and_stages") {
        return;
    }
    // A host directory the symlinks below name by its absolute path: none of its
    // files may ever reach an image.
    let host = scratch("lang-symlink-host");
    fs::write(host.join("host-secret.txt"), "host\n").expect("write host file");
    let host_abs = path_str(&host);
    let host_rel = host_abs.trim_start_matches('/');
    let dockerfile = format!(
        "FROM busybox AS s\n\
         RUN mkdir -p /target {host_abs} && echo staged > /target/marker && echo stage > {host_abs}/stage-file.txt \\\n\
         \x20   && ln -s /target /abs-link && ln -s {host_abs} /host-link && ln -s ../../../../../../.. /up-link\n\
         FROM busybox\n\
         COPY etc-link/* /x/\n\
         COPY host-link/* /h/\n\
         COPY --from=s /abs-link/* /from-abs/\n\
         COPY --from=s /host-link/* /from-host/\n\
         COPY --from=s /host-link /from-host-dir\n\
         COPY --from=s /up-link/target/* /from-up/\n"
    );
    let ctx = Ctx::new("lang-copy-symlinks", &dockerfile);
    // etc-link -> /etc resolves to the context's own etc/, never the host's /etc.
    ctx.file("etc/only-in-context.txt", "ctx\n");
    std::os::unix::fs::symlink("/etc", ctx.join("etc-link")).expect("symlink");
    ctx.file(&format!("{host_rel}/ctx-file.txt"), "ctx\n");
    std::os::unix::fs::symlink(&host, ctx.join("host-link")).expect("symlink");
    let out = scratch("lang-copy-symlinks-out");
    let layout_dir = out.join("layout");
    ctx.build_ok("lang-copy-symlinks", &["--output", &format!("oci:{}:symlinks", path_str(&layout_dir))]);
    let layout = Layout::open(&layout_dir);
    let manifest = layout.manifest(Some("symlinks"));
    let entries: Vec<String> = Layout::layers(&manifest).iter().flat_map(|l| layout.layer_entries(l)).map(|e| e.path).collect();
    let below = |dir: &str| -> Vec<String> {
        let prefix = format!("{dir}/");
        let mut found: Vec<String> = entries.iter().filter_map(|p| p.strip_prefix(&prefix)).map(str::to_owned).collect();
        found.sort_unstable();
        found.dedup();
        found
    };
    assert_eq!(below("x"), ["only-in-context.txt"], "COPY etc-link/* reads the context's etc/: {entries:#?}");
    assert_eq!(below("h"), ["ctx-file.txt"], "an absolute link resolves inside the context");
    assert_eq!(below("from-abs"), ["marker"], "an absolute link resolves inside the --from stage");
    assert_eq!(below("from-host"), ["stage-file.txt"], "the stage's own {host_abs}, not the host's");
    assert_eq!(below("from-host-dir"), ["stage-file.txt"]);
    assert_eq!(below("from-up"), ["marker"], "`..` clamps at the stage's root");
    assert!(!entries.iter().any(|p| p.contains("host-secret")), "{entries:#?}");

    // A link whose target is not in the context is not found: the host is never read.
    let ctx = Ctx::new("lang-copy-symlink-out", "FROM busybox\nCOPY away/* /y/\n");
    std::os::unix::fs::symlink(&host, ctx.join("away")).expect("symlink");
    let run = ctx.build("lang-copy-symlink-out", &[]);
    assert_build_fails(&run, "lang-copy-symlink-out", &["Dockerfile:2", "not found"]);
    assert!(!run.stderr.contains("host-secret"), "{}", run.describe());
}

#[test]
fn copy_wildcard_destinations_follow_the_match_count() {
    if skip("copy_wildcard_destinations_follow_the_match_count") {
        return;
    }
    let dockerfile = "FROM busybox\n\
        COPY target/*.jar app.jar\n\
        WORKDIR /srv\n\
        COPY target/*.jar ./\n\
        COPY conf-* /merged\n\
        COPY [t]arget/*.jar /one/app.jar\n";
    let ctx = Ctx::new("lang-copy-onematch", dockerfile);
    ctx.file("target/app-1.0.jar", "jar\n").file("target/notes.txt", "n\n");
    ctx.file("conf-a/a.conf", "a\n").file("conf-b/b.conf", "b\n");
    ctx.build_ok("lang-copy-onematch", &[]);
    let out = sh("lang-copy-onematch", "test -f /app.jar && cat /app.jar; ls /srv; ls /merged; test -f /one/app.jar && cat /one/app.jar");
    assert_eq!(out, "jar\napp-1.0.jar\na.conf\nb.conf\njar\n", "one wildcard match to a path without / is that file; dirs merge");

    let ctx = Ctx::new("lang-copy-manymatch", "FROM busybox\nCOPY *.txt /notdir\n");
    ctx.file("a.txt", "a").file("b.txt", "b");
    let run = ctx.build("lang-copy-manymatch", &[]);
    assert_build_fails(&run, "lang-copy-manymatch", &["Dockerfile:2", "end with a /", "a.txt", "b.txt"]);
}

#[test]
fn add_expansion_ignore_and_checksum_rules() {
    if skip("add_expansion_ignore_and_checksum_rules") {
        return;
    }
    let dockerfile = "FROM busybox\n\
        ARG SRC=a.txt\n\
        ARG DEST=/added\n\
        ARG OWNER=app\n\
        ADD $SRC ${DEST}/\n\
        ADD --chown=${OWNER}:nobody a.txt /owned-add.txt\n\
        COPY --chown=$OWNER a.txt /owned-copy.txt\n\
        ADD . /all/\n\
        COPY . /copied/\n";
    let ctx = Ctx::new("lang-add-expand", dockerfile);
    ctx.file(".dockerignore", "ignored.txt\nfile?.log\n");
    ctx.file("a.txt", "A\n").file("ignored.txt", "i").file("file1.log", "1").file("fileX.log", "x").file("file10.log", "10");
    ctx.build_ok("lang-add-expand", &["--build-arg", "DEST=/from-build-arg"]);
    let out = sh(
        "lang-add-expand",
        "cat /from-build-arg/a.txt; stat -c %u:%g /owned-add.txt /owned-copy.txt; cd /all && find . -type f | sort; \
         cd /copied && find . -type f | sort",
    );
    let kept = "./.dockerignore\n./Dockerfile\n./a.txt\n./file10.log\n";
    assert_eq!(
        out,
        format!("A\n1000:65534\n1000:1000\n{kept}{kept}"),
        "ADD expands src, dest and --chown; .dockerignore and `?` apply to ADD"
    );

    let ctx = Ctx::new("lang-add-ignored", "FROM busybox\nADD ignored.txt /x\n");
    ctx.file(".dockerignore", "ignored.txt\n").file("ignored.txt", "i");
    let run = ctx.build("lang-add-ignored", &[]);
    assert_build_fails(&run, "lang-add-ignored", &["Dockerfile:2", "excluded by .dockerignore"]);

    // --checksum only verifies downloads (BuildKit refuses it for local sources).
    let ctx = Ctx::new("lang-add-checksum-local", &format!("FROM busybox\nADD --checksum=sha256:{} a.txt /c.txt\n", "0".repeat(64)));
    ctx.file("a.txt", "A\n");
    let run = ctx.build("lang-add-checksum-local", &[]);
    assert_build_fails(&run, "lang-add-checksum-local", &["Dockerfile:2", "--checksum", "URL"]);
}

#[test]
fn copy_source_paths_are_anchored_at_the_context_root() {
    if skip("copy_source_paths_are_anchored_at_the_context_root") {
        return;
    }
    // BuildKit strips a leading slash and `../` from sources: both name context files.
    let outer = scratch("lang-copy-anchored");
    fs::write(outer.join("a.txt"), "outside\n").expect("write outside file");
    let ctx = Ctx { dir: outer.join("ctx") };
    ctx.file("Dockerfile", "FROM busybox\nCOPY /a.txt /abs.txt\nCOPY ../a.txt /dotdot.txt\n");
    ctx.file("a.txt", "inside\n");
    ctx.build_ok("lang-copy-anchored", &[]);
    assert_eq!(sh("lang-copy-anchored", "cat /abs.txt /dotdot.txt"), "inside\ninside\n");
}

#[test]
fn dockerignore_patterns_and_reinclusion() {
    if skip("dockerignore_patterns_and_reinclusion") {
        return;
    }
    let ctx = Ctx::new("lang-ignore", "FROM busybox\nCOPY . /ctx/\n");
    ctx.file(
        ".dockerignore",
        "# comment\nsecret.txt\nlogs\n!logs/keep.log\nbuild/\n!build/important.txt\n**/*.md\n*.tmp\nre*/\n!readme.keep\n/rootonly.txt\n\n",
    );
    for (path, content) in [
        ("keep.txt", "k"),
        ("secret.txt", "s"),
        ("logs/a.log", "a"),
        ("logs/keep.log", "k"),
        ("build/out.bin", "o"),
        ("build/important.txt", "i"),
        ("README.md", "r"),
        ("docs/x.md", "x"),
        ("deep/a/b/c.md", "c"),
        ("deep/a/notes.txt", "n"),
        ("root.tmp", "t"),
        ("sub/nested.tmp", "t"),
        ("res/x.txt", "x"),
        ("readme.keep", "k"),
        ("rootonly.txt", "r"),
        ("sub/rootonly.txt", "r"),
    ] {
        ctx.file(path, content);
    }
    ctx.build_ok("lang-ignore", &[]);
    let out = sh("lang-ignore", "cd /ctx && find . -type f");
    let expected = [
        "./.dockerignore",
        "./Dockerfile",
        "./build/important.txt",
        "./deep/a/notes.txt",
        "./keep.txt",
        "./logs/keep.log",
        "./readme.keep",
        "./sub/nested.tmp",
        "./sub/rootonly.txt",
    ];
    assert_eq!(sorted_lines(&out), expected, "the files .dockerignore lets through");

    // <Dockerfile>.dockerignore next to the Dockerfile wins over the context's.
    let ctx = Ctx::new("lang-ignore-specific", "unused");
    fs::remove_file(ctx.join("Dockerfile")).expect("rm Dockerfile");
    ctx.file(".dockerignore", "a.txt\n").file("a.txt", "a").file("b.txt", "b").file("c.txt", "c");
    ctx.file("build/app.Dockerfile", "FROM busybox\nCOPY *.txt /files/\n").file("build/app.Dockerfile.dockerignore", "b.txt\nbuild\n");
    let dockerfile = path_str(&ctx.join("build/app.Dockerfile"));
    ctx.build_ok("lang-ignore-specific", &["-f", &dockerfile]);
    assert_eq!(sorted_lines(&sh("lang-ignore-specific", "ls /files")), ["a.txt", "c.txt"], "app.Dockerfile.dockerignore is used");

    // Ignoring the Dockerfile and .dockerignore keeps them out of COPY, not out of the build.
    let ctx = Ctx::new("lang-ignore-self", "FROM busybox\nCOPY . /ctx/\n");
    ctx.file(".dockerignore", "Dockerfile\n.dockerignore\n").file("kept.txt", "k");
    ctx.build_ok("lang-ignore-self", &[]);
    assert_eq!(sorted_lines(&sh("lang-ignore-self", "cd /ctx && find . -type f")), ["./kept.txt"]);

    // .containerignore too.
    let ctx = Ctx::new("lang-ignore-container", "FROM busybox\nCOPY *.txt /files/\n");
    ctx.file(".containerignore", "c.txt\n").file("a.txt", "a").file("c.txt", "c");
    ctx.build_ok("lang-ignore-container", &[]);
    assert_eq!(sorted_lines(&sh("lang-ignore-container", "ls /files")), ["a.txt"], ".containerignore is used");
}
