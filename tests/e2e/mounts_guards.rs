//! The security guards of `RUN --mount`: each test names the guard it checks and fails
//! if that guard were absent. Host-side evidence only: files that must stay where they
//! are, paths that must not appear, and what the RUN saw. (That concurrent builds
//! sharing a cache id with `sharing=locked` do not interleave is
//! `mounts::cache_mount_sharing_locked_serialises_concurrent_builds`.)

use std::fs;
use std::path::Path;

use crate::language::{skip, Ctx};
use crate::mounts::{build_in, cat_in, find_named, unique};
use crate::store::strata_at;
use crate::support::{path_str, scratch, world};

/// Enough `../` to climb from any rootfs on this machine to `/`.
const UP: &str = "../../../../../../../../../../../../../../../../../../../../../../../../../../../..";

/// Guard: a cache id is a name, not a path: the cache dir is found by an encoding of the
/// id under the store's cache root (or the id is refused), never by joining it to that
/// root. Without it `id=../../x` lands beside the store and `id=/ABS` on the host's
/// `/ABS`. Guard: a bind `source` is resolved inside its root (the context here), `..`
/// and symlinks clamped at that root as BuildKit does; without it `source=../..` mounts
/// the context's parents.
#[test]
fn cache_ids_and_bind_sources_cannot_leave_their_roots() {
    if skip("cache_ids_and_bind_sources_cannot_leave_their_roots") {
        return;
    }
    let x = unique("escaped");
    let host_dir = scratch("mounts-guard-abs-id");
    fs::write(host_dir.join("host-file"), "host\n").unwrap();
    let host = path_str(&host_dir);
    let ctx = Ctx::new(
        "mounts-guard-ids",
        &format!(
            "FROM busybox\n\
             RUN --mount=type=cache,id=../../{x},target=/c1 --mount=type=cache,id=../../../../../../../../{x}-deep,target=/c2 \
             sh -c 'echo in > /c1/{x}-inside && echo in > /c2/{x}-inside'\n\
             RUN --mount=type=cache,id=/etc,target=/c3 sh -c 'ls -A /c3 > /etc-id'\n\
             RUN --mount=type=cache,id={host},target=/c4 sh -c 'ls -A /c4 > /abs-id; echo in > /c4/{x}-abs'\n\
             RUN --mount=type=bind,source=../,target=/m1 --mount=type=bind,source=../../..,target=/m2 \
             --mount=type=bind,source=/..,target=/m3 --mount=type=bind,source=up,target=/m4 \
             sh -c 'for m in /m1 /m2 /m3 /m4; do ls -A $m | tr \"\\n\" \" \"; echo; done > /sources'\n"
        ),
    );
    ctx.file("in-context.txt", "ctx\n");
    std::os::unix::fs::symlink("../..", ctx.join("up")).unwrap();
    let root = &world().root;
    build_in(root, &ctx, "mounts-guard-ids", &[], &[]).ok();

    // Every file the RUN made lies under the store's mounts/, and nothing named x
    // exists at any ancestor of the store or in the temp dir.
    let mounts = root.join("mounts");
    let tmp = std::env::temp_dir();
    for name in [format!("{x}-inside"), format!("{x}-abs")] {
        let found = find_named(&tmp, &name);
        assert!(!found.is_empty(), "the cache files are somewhere under {} (the store is there)", tmp.display());
        let outside: Vec<_> = found.iter().filter(|p| !p.starts_with(&mounts)).collect();
        assert!(outside.is_empty(), "a cache file lies outside {}: {outside:?}", mounts.display());
    }
    for ancestor in mounts.ancestors() {
        for name in [x.clone(), format!("{x}-deep")] {
            assert!(!ancestor.join(&name).exists(), "cache id ../..{name} made {}", ancestor.join(&name).display());
        }
    }
    assert_eq!(cat_in(root, "mounts-guard-ids", "/etc-id"), "", "id=/etc is a new, empty cache, not the host's /etc");
    assert_eq!(cat_in(root, "mounts-guard-ids", "/abs-id"), "", "id=/ABS is a new, empty cache, not the host's dir");
    let listing: Vec<_> = fs::read_dir(&host_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(listing, ["host-file"], "id=/ABS wrote into the host dir {host}");
    let context = "Dockerfile in-context.txt up \n";
    assert_eq!(
        cat_in(root, "mounts-guard-ids", "/sources"),
        context.repeat(4),
        "../, ../../.., /.. and a symlink to ../.. are the context root"
    );
}

/// Guard: an `rw` bind gets a throw-away writable layer over its source; without it the
/// RUN writes into the stage's (or image's) files in the store, or the context on the
/// host, and later readers see the writes.
#[test]
fn an_rw_bind_never_writes_into_its_source() {
    if skip("an_rw_bind_never_writes_into_its_source") {
        return;
    }
    let root = &world().root;
    let src = Ctx::new("mounts-guard-rw-src", "FROM busybox\nRUN mkdir /data && echo original > /data/f\n");
    build_in(root, &src, "mounts-guard-rw-src", &[], &[]).ok();
    let ctx = Ctx::new(
        "mounts-guard-rw",
        "FROM mounts-guard-rw-src AS stage\n\
         FROM busybox\n\
         RUN --mount=type=bind,from=mounts-guard-rw-src,source=/data,target=/i,rw \
         --mount=type=bind,from=stage,target=/s,rw --mount=type=bind,target=/c,rw \
         sh -c 'set -e; echo mutated > /i/f; rm /s/data/f; echo new > /s/data/g; echo mutated > /c/f; mkdir /c/new'\n\
         COPY --from=stage /data /from-stage\n\
         RUN --mount=type=bind,from=mounts-guard-rw-src,source=/data,target=/i cat /i/f > /image-after\n",
    );
    ctx.file("f", "context\n");
    build_in(root, &ctx, "mounts-guard-rw", &[], &[]).ok();
    let image = "mounts-guard-rw";
    let stage = strata_at(root, &["run", "--rm", image, "sh", "-c", "ls -A /from-stage; cat /from-stage/f"], &[]).ok().stdout;
    assert_eq!(stage, "f\noriginal\n", "the stage is unchanged for a later COPY --from");
    assert_eq!(cat_in(root, image, "/image-after"), "original\n", "the image is unchanged for a later bind");
    assert_eq!(cat_in(root, "mounts-guard-rw-src", "/data/f"), "original\n", "the image's own files in the store are unchanged");
    assert_eq!(fs::read_to_string(ctx.join("f")).unwrap(), "context\n", "the context on the host is unchanged");
    assert!(!ctx.join("new").exists(), "an rw bind made a dir in the host's context");
    strata_at(root, &["fsck"], &[]).ok();
}

/// Guard: a mount target is resolved inside the rootfs, symlinks included (an absolute
/// link is relative to the rootfs, `..` stops at its root), before strata creates the
/// missing target and mounts on it. Without it `mkdir -p ROOTFS/abs/x` follows the
/// image's symlink `/abs -> HOSTDIR` to the host's HOSTDIR and the mount lands there.
/// The image has its own HOSTDIR, so the links resolve to something in the rootfs.
#[test]
fn a_mount_target_through_a_symlink_stays_in_the_rootfs() {
    if skip("a_mount_target_through_a_symlink_stays_in_the_rootfs") {
        return;
    }
    let host_dir = scratch("mounts-guard-link-host");
    fs::write(host_dir.join("host-file"), "host\n").unwrap();
    let host = path_str(&host_dir);
    let ctx = Ctx::new(
        "mounts-guard-link",
        &format!(
            "FROM busybox\n\
             RUN mkdir -p {host} && ln -s {host} /abs && ln -s {UP}{host} /rel && ln -s /etc /etc-link\n\
             RUN --mount=type=tmpfs,target=/abs/x sh -c 'echo t > /abs/x/f && cat /abs/x/f > /abs-saw'\n\
             RUN --mount=type=bind,source=f.txt,target=/rel/y/file --mount=type=tmpfs,target=/etc-link/z \
             sh -c 'cat /rel/y/file > /rel-saw && echo t > /etc-link/z/f'\n\
             RUN --mount=type=bind,target=/abs,rw sh -c 'echo w > /abs/w; ls -A /abs > /bind-on-link'\n"
        ),
    );
    ctx.file("f.txt", "F\n");
    let root = &world().root;
    build_in(root, &ctx, "mounts-guard-link", &[], &[]).ok();
    assert_eq!(cat_in(root, "mounts-guard-link", "/abs-saw"), "t\n");
    assert_eq!(cat_in(root, "mounts-guard-link", "/rel-saw"), "F\n");
    assert_eq!(cat_in(root, "mounts-guard-link", "/bind-on-link"), "Dockerfile\nf.txt\nw\n", "a bind onto a symlink target");
    let listing: Vec<_> = fs::read_dir(&host_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(listing, ["host-file"], "a mount target through a symlink reached the host dir {host}");
    assert!(!Path::new("/etc/z").exists(), "a mount target through /etc-link reached the host's /etc");
    let left = strata_at(root, &["run", "--rm", "mounts-guard-link", "sh", "-c", &format!("ls -A {host} /etc | grep -x '[xyz]'")], &[]);
    assert_eq!(left.stdout, "", "the targets strata made (x, y, z) are gone from the image: {}", left.describe());
}

/// The same guard where the link dangles inside the rootfs (nothing at HOSTDIR in the
/// image). BuildKit resolves the target in the rootfs and creates it there
/// (`/abs/x` becomes ROOTFS/HOSTDIR/x); an unguarded `mkdir -p` makes the host's
/// HOSTDIR/x instead.
#[test]
fn a_mount_target_through_a_dangling_symlink_is_made_in_the_rootfs() {
    if skip("a_mount_target_through_a_dangling_symlink_is_made_in_the_rootfs") {
        return;
    }
    let host_dir = scratch("mounts-guard-dangling-host");
    fs::write(host_dir.join("host-file"), "host\n").unwrap();
    let host = path_str(&host_dir);
    let ctx = Ctx::new(
        "mounts-guard-dangling",
        &format!(
            "FROM busybox\n\
             RUN ln -s {host} /abs && ln -s {UP}{host} /rel\n\
             RUN --mount=type=tmpfs,target=/abs/x --mount=type=tmpfs,target=/rel/y \
             sh -c 'echo t > /abs/x/f && echo t > /rel/y/f && cat /abs/x/f /rel/y/f > /saw'\n"
        ),
    );
    let root = &world().root;
    build_in(root, &ctx, "mounts-guard-dangling", &[], &[]).ok();
    assert_eq!(cat_in(root, "mounts-guard-dangling", "/saw"), "t\nt\n");
    let listing: Vec<_> = fs::read_dir(&host_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(listing, ["host-file"], "a mount target through a dangling symlink reached the host dir {host}");
}

/// Guard (BuildKit CVE-2024-23652): removing the mount targets strata created, after the
/// RUN, resolves them inside the rootfs as they are *then* (the RUN may have replaced
/// their parent with a symlink) and never follows a symlink out of it. Without it the
/// cleanup of `/a/d1`, `/a/d2` and `/a/s` follows `/a -> HOSTDIR` and removes the host's
/// HOSTDIR/d1, HOSTDIR/d2 (with its file) and HOSTDIR/s.
#[test]
fn cleaning_up_mount_targets_never_removes_host_files() {
    if skip("cleaning_up_mount_targets_never_removes_host_files") {
        return;
    }
    let (abs_dir, rel_dir) = (scratch("mounts-guard-cve-abs"), scratch("mounts-guard-cve-rel"));
    for dir in [&abs_dir, &rel_dir] {
        fs::create_dir(dir.join("d1")).unwrap();
        fs::create_dir(dir.join("d2")).unwrap();
        fs::write(dir.join("d2/keep"), "keep\n").unwrap();
        fs::write(dir.join("s"), "host file\n").unwrap();
    }
    let (abs, rel) = (path_str(&abs_dir), path_str(&rel_dir));
    let run = |parent: &str, link: &str| {
        format!(
            "RUN --mount=type=tmpfs,target={parent}/d1 --mount=type=tmpfs,target={parent}/d2 \
             --mount=type=bind,source=f.txt,target={parent}/s \
             sh -c 'set -e; mv {parent} {parent}.old; ln -s {link} {parent}; echo swapped > {parent}-swapped'\n"
        )
    };
    let ctx = Ctx::new("mounts-guard-cve", &format!("FROM busybox\n{}{}", run("/a", &abs), run("/b", &format!("{UP}{rel}"))));
    ctx.file("f.txt", "F\n");
    let root = &world().root;
    build_in(root, &ctx, "mounts-guard-cve", &[], &[]).ok();
    assert_eq!(cat_in(root, "mounts-guard-cve", "/a-swapped"), "swapped\n", "the RUN replaced /a with a symlink");
    for dir in [&abs_dir, &rel_dir] {
        assert!(dir.join("d1").is_dir(), "cleanup removed the host's empty dir {}/d1", dir.display());
        assert_eq!(fs::read_to_string(dir.join("d2/keep")).ok().as_deref(), Some("keep\n"), "cleanup removed {}/d2", dir.display());
        assert_eq!(fs::read_to_string(dir.join("s")).ok().as_deref(), Some("host file\n"), "cleanup removed {}/s", dir.display());
    }
}
