//! Dockerfile semantics strata once got wrong, each checked against what docker
//! build (BuildKit) does: owners `COPY --from` keeps, the directories WORKDIR
//! creates and the path it records, `.dockerignore` exceptions as the context
//! transfer applies them, archives ADD keeps inside their destination, and
//! destinations cleaned before they are resolved (see `language.rs` for helpers).

use std::fs;

use crate::language::{assert_build_fails, sh, skip, sorted_lines, Ctx};
use crate::layout::Layout;
use crate::support::{inspect_config, path_str, scratch};

#[test]
fn copy_from_keeps_the_owners_files_have_in_their_stage() {
    if skip("copy_from_keeps_the_owners_files_have_in_their_stage") {
        return;
    }
    let dockerfile = "FROM busybox AS src\n\
        RUN echo s > /f && chown 1234:5678 /f && mkdir /d && echo q > /d/q && chown -R 42:43 /d\n\
        FROM busybox\n\
        COPY --from=src /f /g\n\
        COPY --from=src /d /dd/\n\
        COPY --from=src --chown=7:8 /f /h\n\
        COPY f /ctx\n";
    let ctx = Ctx::new("sem-from-owners", dockerfile);
    ctx.file("f", "context file\n");
    ctx.build_ok("sem-from-owners", &[]);
    let out = sh("sem-from-owners", "stat -c '%n %u:%g' /g /dd /dd/q /h /ctx");
    // As docker build gives: the stage's owners, a created destination root's,
    // --chown over both, the context's files root's.
    assert_eq!(out, "/g 1234:5678\n/dd 0:0\n/dd/q 42:43\n/h 7:8\n/ctx 0:0\n");
}

#[test]
fn workdir_owners_and_the_recorded_path() {
    if skip("workdir_owners_and_the_recorded_path") {
        return;
    }
    let dockerfile = "FROM busybox\n\
        RUN mkdir -p /exist && chmod 0700 /exist && chown 1:2 /exist\n\
        USER ghost\n\
        WORKDIR /w1/sub\n\
        USER app:ghostgrp\n\
        WORKDIR /w2\n\
        USER 4321\n\
        WORKDIR /exist\n\
        USER root\n\
        WORKDIR /p/../q/\n\
        RUN pwd > /pwd.txt\n\
        WORKDIR /x/y/\n";
    let ctx = Ctx::new("sem-workdir", dockerfile);
    ctx.build_ok("sem-workdir", &[]);
    let out = sh("sem-workdir", "stat -c '%n %u:%g %a' /w1 /w1/sub /w2 /exist /q; cat /pwd.txt; ls -d /p 2>&1 || true");
    // docker build: a USER the image's passwd lacks creates root-owned dirs (no
    // error); a group it lacks keeps the user's; an existing dir is left alone.
    let want = "/w1 0:0 755\n/w1/sub 0:0 755\n/w2 1000:1000 755\n/exist 1:2 700\n/q 0:0 755\n/q\nls: /p: No such file or directory\n";
    assert_eq!(out, want);
    let config = inspect_config("sem-workdir");
    assert_eq!(config["WorkingDir"], "/x/y/", "an absolute WORKDIR is recorded as written: {config:#}");
}

/// Builds `dockerfile` with `ignore` as the context's .dockerignore over a context
/// of `dir/file`, `dir/other`, `a/b`, `a/c` and `top`.
fn ignore_ctx(name: &str, ignore: &str, dockerfile: &str) -> Ctx {
    let ctx = Ctx::new(name, dockerfile);
    ctx.file(".dockerignore", ignore);
    for f in ["dir/file", "dir/other", "a/b", "a/c", "top"] {
        ctx.file(f, f);
    }
    ctx
}

#[test]
fn dockerignore_reincluded_files_bring_their_directories() {
    if skip("dockerignore_reincluded_files_bring_their_directories") {
        return;
    }
    let ctx = ignore_ctx("sem-ignore-parents", "**\n!dir/file\n", "FROM busybox\nCOPY dir /d/\nADD dir /e/\n");
    ctx.build_ok("sem-ignore-parents", &[]);
    assert_eq!(sorted_lines(&sh("sem-ignore-parents", "find /d /e")), ["/d", "/d/file", "/e", "/e/file"]);
}

#[test]
fn dockerignore_wildcard_exceptions_do_not_enter_excluded_directories() {
    if skip("dockerignore_wildcard_exceptions_do_not_enter_excluded_directories") {
        return;
    }
    for (n, ignore) in ["**/a\n!**/b\n", "a\n!*/b*\n"].into_iter().enumerate() {
        let tag = format!("sem-ignore-wild{n}");
        let ctx = ignore_ctx(&tag, ignore, "FROM busybox\nCOPY . /ctx/\n");
        ctx.build_ok(&tag, &[]);
        let want = ["./.dockerignore", "./Dockerfile", "./dir/file", "./dir/other", "./top"];
        assert_eq!(sorted_lines(&sh(&tag, "cd /ctx && find . -type f")), want, "{ignore:?}: a/b stays out");
        let ctx = ignore_ctx(&format!("{tag}-named"), ignore, "FROM busybox\nCOPY a/b /b\n");
        let run = ctx.build(&format!("{tag}-named"), &[]);
        assert_build_fails(&run, &format!("{tag}-named"), &["a/b", "excluded by .dockerignore"]);
    }
}

/// A tar of symlinks leading up (`up -> ../..`, `sub/in -> ../..`) and out
/// (`root -> /`) with files below each, and a hard link through one.
fn escaping_archive() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut append = |name: &str, kind: tar::EntryType, link: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1);
        h.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_gnu_mut().expect("gnu").linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, data).expect("append");
    };
    append("up", tar::EntryType::Symlink, "../..", b"");
    append("up/x", tar::EntryType::Regular, "", b"x");
    append("root", tar::EntryType::Symlink, "/", b"");
    append("root/y", tar::EntryType::Regular, "", b"y");
    append("sub/in", tar::EntryType::Symlink, "../..", b"");
    append("sub/in/w", tar::EntryType::Regular, "", b"w");
    append("hard", tar::EntryType::Link, "up/x", b"");
    b.into_inner().expect("tar")
}

#[test]
fn add_keeps_an_archive_inside_its_destination() {
    if skip("add_keeps_an_archive_inside_its_destination") {
        return;
    }
    let ctx = Ctx::new("sem-add-confined", "FROM busybox\nRUN mkdir /dest\nADD evil.tar /dest/\n");
    fs::write(ctx.join("evil.tar"), escaping_archive()).expect("write archive");
    let out = scratch("sem-add-confined-out").join("layout");
    ctx.build_ok("sem-add-confined", &["--output", &format!("oci:{}:t", path_str(&out))]);
    let layout = Layout::open(&out);
    let manifest = layout.manifest(Some("t"));
    let top = Layout::layers(&manifest).last().cloned().expect("ADD made a layer");
    let mut paths: Vec<String> = layout.layer_entries(&top).into_iter().map(|e| e.path.trim_end_matches('/').to_string()).collect();
    paths.sort();
    // Docker's chrooted untar: every member lands under /dest, as here.
    let want = ["dest", "dest/hard", "dest/root", "dest/sub", "dest/sub/in", "dest/up", "dest/w", "dest/x", "dest/y"];
    assert_eq!(paths, want, "nothing beside or above /dest");
}

#[test]
fn copy_destinations_are_cleaned_before_symlinks_are_followed() {
    if skip("copy_destinations_are_cleaned_before_symlinks_are_followed") {
        return;
    }
    let dockerfile = "FROM busybox\nRUN mkdir -p /tmp/elsewhere && ln -s /tmp/elsewhere /a\nCOPY f /a/../b/\n";
    let ctx = Ctx::new("sem-dest-clean", dockerfile);
    ctx.file("f", "f\n");
    ctx.build_ok("sem-dest-clean", &[]);
    let out = sh("sem-dest-clean", "cat /b/f; ls /tmp/elsewhere; ls -d /tmp/b 2>&1 || true");
    assert_eq!(out, "f\nls: /tmp/b: No such file or directory\n", "/a/../b/ is /b/, not /tmp/b/");
}
