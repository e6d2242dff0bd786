//! `RUN --mount` (BuildKit's syntax), end to end with busybox tools inside the RUN:
//! cache mounts (kept across builds in the store's `mounts/`, shared by id, `sharing=`
//! private and locked under concurrent builds, `uid`/`gid`/`mode`, seeded `from` a
//! stage, emptied by `prune --mounts`), bind mounts from stages, images and the context
//! (read-only unless `rw`, whose writes are discarded) and tmpfs. Secrets and ssh are in
//! `mounts_secrets.rs`, the security guards in `mounts_guards.rs`.
//!
//! Every check reads what the build left in the image (files the RUN wrote, layer tar
//! headers via `strata save --format oci-dir`), never strata's own account of it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::language::{skip, Ctx};
use crate::layout::Layout;
use crate::store::{private_store, strata_at};
use crate::support::{path_str, scratch, world, Run};

/// A name no other test (or earlier run on a kept store) uses.
pub fn unique(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").subsec_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// `strata --root ROOT build -t TAG EXTRA... CONTEXT` with extra environment.
#[track_caller]
pub fn build_in(root: &Path, ctx: &Ctx, tag: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["build", "-t", tag];
    args.extend_from_slice(extra);
    let dir = ctx.path();
    args.push(&dir);
    strata_at(root, &args, env)
}

/// `strata --root ROOT run --rm IMAGE cat PATH`.
#[track_caller]
pub fn cat_in(root: &Path, image: &str, path: &str) -> String {
    strata_at(root, &["run", "--rm", image, "cat", path], &[]).ok().stdout
}

/// Every path in every layer of `image` (exported with `strata save --format oci-dir`),
/// without a leading `/`.
#[track_caller]
pub fn layer_paths(root: &Path, image: &str) -> Vec<String> {
    let dir = scratch("mounts-layers").join("layout");
    strata_at(root, &["save", "--format", "oci-dir", "-o", &path_str(&dir), image], &[]).ok();
    let layout = Layout::open(&dir);
    let manifest = layout.manifest(None);
    Layout::layers(&manifest).iter().flat_map(|l| layout.layer_entries(l)).map(|e| e.path).collect()
}

/// Panics if any layer path is `top` or lies below it.
#[track_caller]
pub fn assert_not_in_layers(paths: &[String], top: &str) {
    let below = format!("{top}/");
    let found: Vec<&String> = paths.iter().filter(|p| *p == top || p.starts_with(&below)).collect();
    assert!(found.is_empty(), "{top} must not be in any layer, found {found:?}");
}

/// Files named `name` anywhere below `dir` (unreadable dirs are skipped).
pub fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_name() == name {
                found.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            }
        }
    }
    found
}

#[test]
fn cache_mount_persists_by_id_stays_out_of_the_image_and_prune_mounts_empties_it() {
    if skip("cache_mount_persists_by_id_stays_out_of_the_image_and_prune_mounts_empties_it") {
        return;
    }
    // A store of its own: `prune --mounts` there cannot empty other tests' caches.
    let root = private_store("mounts-cache");
    let seen = unique("seen");
    let write = Ctx::new(
        "mounts-cache-write",
        &format!(
            "FROM base\nRUN --mount=type=cache,id=shared-id,target=/cache --mount=type=cache,target=/var/deflt \
             sh -c 'echo one > /cache/{seen} && echo two > /var/deflt/{seen} && ls -A /cache > /listing'\n"
        ),
    );
    let first = build_in(&root, &write, "cache-write", &[], &[]).ok();
    assert_eq!(cat_in(&root, "cache-write", "/listing"), format!("{seen}\n"), "a new cache dir starts empty");
    let paths = layer_paths(&root, "cache-write");
    assert_not_in_layers(&paths, "cache");
    assert_not_in_layers(&paths, "var");
    let in_store = find_named(&root.join("mounts"), &seen);
    assert_eq!(in_store.len(), 2, "both cache dirs live under the store's mounts/: {in_store:?}");

    // A plain prune keeps cache mounts.
    strata_at(&root, &["prune"], &[]).ok();
    // Another step (no build-cache hit), the same id at another target, the default id
    // (= target) again.
    let read = |name: &str, out: &str| {
        Ctx::new(
            name,
            &format!(
                "FROM base\nRUN --mount=type=cache,id=shared-id,target=/other/place --mount=type=cache,target=/var/deflt \
                 sh -c 'ls -A /other/place /var/deflt > /{out}; cat /other/place/* /var/deflt/* >> /{out} 2>/dev/null; true'\n"
            ),
        )
    };
    build_in(&root, &read("mounts-cache-read", "got"), "cache-read", &[], &[]).ok();
    let got = cat_in(&root, "cache-read", "/got");
    assert_eq!(got, format!("/other/place:\n{seen}\n\n/var/deflt:\n{seen}\none\ntwo\n"), "the second build sees the first one's cache");
    let paths = layer_paths(&root, "cache-read");
    assert_not_in_layers(&paths, "other");
    assert_not_in_layers(&paths, "var");

    // --mounts removes the cache mounts and nothing else: the build cache still hits.
    let prune = strata_at(&root, &["prune", "--mounts"], &[]).ok();
    assert!(find_named(&root.join("mounts"), &seen).is_empty(), "prune --mounts left the cache files: {}", prune.describe());
    let again = build_in(&root, &write, "cache-write", &[], &[]).ok();
    assert!(again.stderr.contains("CACHED"), "prune --mounts must keep the build cache: {}", again.describe());
    assert_eq!(again.stdout.trim(), first.stdout.trim(), "the same image id after prune --mounts");
    build_in(&root, &read("mounts-cache-after-prune", "after"), "cache-after", &[], &[]).ok();
    assert_eq!(cat_in(&root, "cache-after", "/after"), "/other/place:\n\n/var/deflt:\n", "prune --mounts emptied both caches");

    // --all removes them too.
    build_in(&root, &write, "cache-write", &["--no-cache"], &[]).ok();
    assert_eq!(find_named(&root.join("mounts"), &seen).len(), 2);
    strata_at(&root, &["prune", "--all"], &[]).ok();
    assert!(find_named(&root.join("mounts"), &seen).is_empty(), "prune --all removes cache mounts");
}

#[test]
fn cache_mount_owner_mode_and_seed_from_a_stage() {
    if skip("cache_mount_owner_mode_and_seed_from_a_stage") {
        return;
    }
    let id = unique("owned");
    let ctx = Ctx::new(
        "mounts-cache-owner",
        &format!(
            "FROM busybox AS seed\nRUN mkdir -p /seed/dir && echo seeded > /seed/dir/file\n\
             FROM busybox\n\
             RUN --mount=type=cache,id={id},target=/c,uid=1000,gid=1001,mode=0750 stat -c '%u %g %a' /c > /own\n\
             RUN --mount=type=cache,id={id}-default,target=/d stat -c '%u %g %a' /d > /default\n\
             RUN --mount=type=cache,id={id}-seed,target=/s,from=seed,source=/seed/dir \
             sh -c 'cat /s/file > /seeded && echo more > /s/added'\n\
             COPY --from=seed /seed/dir /seedcheck\n"
        ),
    );
    let root = &world().root;
    build_in(root, &ctx, "mounts-cache-owner", &[], &[]).ok();
    assert_eq!(cat_in(root, "mounts-cache-owner", "/own"), "1000 1001 750\n", "uid, gid and mode of a new cache dir");
    assert_eq!(cat_in(root, "mounts-cache-owner", "/default"), "0 0 755\n", "BuildKit's defaults: root, 0755");
    assert_eq!(cat_in(root, "mounts-cache-owner", "/seeded"), "seeded\n", "from=seed,source=/seed/dir seeds a new cache");
    let check = strata_at(root, &["run", "--rm", "mounts-cache-owner", "ls", "-A", "/seedcheck"], &[]).ok().stdout;
    assert_eq!(check, "file\n", "writes into a seeded cache never reach the seed stage");
    let paths = layer_paths(root, "mounts-cache-owner");
    for top in ["c", "d", "s"] {
        assert_not_in_layers(&paths, top);
    }
}

/// Runs two builds of one Dockerfile at once on the shared store (`--build-arg WHO=a`
/// and `WHO=b`, so their RUN keys differ) and returns both outputs.
fn two_at_once(ctx: &Ctx, tag: &str) -> [Run; 2] {
    std::thread::scope(|s| {
        let spawn = |who: &'static str| {
            let tag = format!("{tag}-{who}");
            let arg = format!("WHO={who}");
            s.spawn(move || build_in(&world().root, ctx, &tag, &["--build-arg", &arg], &[]))
        };
        let (a, b) = (spawn("a"), spawn("b"));
        [a.join().expect("build a"), b.join().expect("build b")]
    })
}

/// Shell for two concurrent RUNs (`$WHO` a and b) that share the cache mounted at
/// /sync: each marks `point` and waits (two minutes at most) for the other's mark.
fn rendezvous(point: &str) -> String {
    format!(
        "touch /sync/$WHO-{point}; i=0; while [ ! -e /sync/a-{point} ] || [ ! -e /sync/b-{point} ]; do \
         i=$((i+1)); [ $i -gt 1200 ] && break; sleep 0.1; done"
    )
}

/// What `cat /c/log` shows in a later build using cache id `id`.
fn cache_log(id: &str) -> String {
    let ctx = Ctx::new("mounts-cache-log", &format!("FROM busybox\nRUN --mount=type=cache,id={id},target=/c cat /c/log > /log\n"));
    build_in(&world().root, &ctx, &format!("{id}-log"), &[], &[]).ok();
    cat_in(&world().root, &format!("{id}-log"), "/log")
}

#[test]
fn cache_mount_sharing_locked_serialises_concurrent_builds() {
    if skip("cache_mount_sharing_locked_serialises_concurrent_builds") {
        return;
    }
    let log_of = |sharing: &str| {
        let id = unique(sharing);
        // Locked: each RUN sleeps inside its lease, so an overlap would show. The
        // shared control meets the other RUN first (see `rendezvous`), so its
        // overlap never hangs on how fast a loaded machine starts the second build.
        let (sync, meet) = if sharing == "shared" {
            (format!(" --mount=type=cache,id={id}-sync,target=/sync"), rendezvous("start"))
        } else {
            (String::new(), "sleep 3".to_string())
        };
        let ctx = Ctx::new(
            &format!("mounts-{sharing}"),
            &format!(
                "FROM busybox\nARG WHO\nRUN --mount=type=cache,id={id},target=/c,sharing={sharing}{sync} \
                 sh -c 'echo start >> /c/log; {meet}; echo end >> /c/log'\n"
            ),
        );
        for run in two_at_once(&ctx, &id) {
            run.ok();
        }
        cache_log(&id)
    };
    assert_eq!(log_of("locked"), "start\nend\nstart\nend\n", "sharing=locked makes the second writer wait for the first");
    // The control: with sharing=shared the same two RUNs overlap, so the case above
    // proved the lock and not a lucky schedule.
    assert_eq!(log_of("shared"), "start\nstart\nend\nend\n", "sharing=shared lets two concurrent writers overlap");
}

#[test]
fn cache_mount_sharing_private_gives_concurrent_writers_their_own_dir() {
    if skip("cache_mount_sharing_private_gives_concurrent_writers_their_own_dir") {
        return;
    }
    let seen_by = |sharing: &str| {
        let id = unique(sharing);
        // Both RUNs meet, holding their cache leases, before and after writing, so
        // each lists its dir while the other RUN has written its own file.
        let ctx = Ctx::new(
            &format!("mounts-{sharing}"),
            &format!(
                "FROM busybox\nARG WHO\nRUN --mount=type=cache,id={id},target=/c,sharing={sharing} \
                 --mount=type=cache,id={id}-sync,target=/sync \
                 sh -c '{}; echo $WHO > /c/$WHO; {}; ls -A /c | grep -v sync > /seen'\n",
                rendezvous("in"),
                rendezvous("wrote")
            ),
        );
        for run in two_at_once(&ctx, &id) {
            run.ok();
        }
        ["a", "b"].map(|who| cat_in(&world().root, &format!("{id}-{who}"), "/seen"))
    };
    assert_eq!(seen_by("private"), ["a\n", "b\n"], "sharing=private: a concurrent writer gets a dir of its own");
    // The control: shared writers overlap and see each other, so the case above proved
    // the private dirs and not a lucky schedule.
    assert_eq!(seen_by("shared"), ["a\nb\n", "a\nb\n"], "sharing=shared: concurrent writers see each other");
}

#[test]
fn bind_from_a_stage_an_image_and_an_index_is_read_only_and_rw_writes_are_discarded() {
    if skip("bind_from_a_stage_an_image_and_an_index_is_read_only_and_rw_writes_are_discarded") {
        return;
    }
    let ctx = Ctx::new(
        "mounts-bind-stage",
        "FROM busybox AS stage\nRUN mkdir /data && echo original > /data/f\n\
         FROM busybox\n\
         RUN --mount=type=bind,from=stage,source=/data,target=/mnt cat /mnt/f > /ro-read\n\
         RUN --mount=type=bind,from=stage,source=/data,target=/mnt \
         sh -c 'if echo x > /mnt/try 2>/dev/null; then echo writable; else echo read-only; fi > /ro-write'\n\
         RUN --mount=type=bind,from=stage,source=/data,target=/mnt,rw \
         sh -c 'echo new > /mnt/new && echo changed > /mnt/f && cat /mnt/f > /rw-saw'\n\
         RUN --mount=type=bind,from=stage,source=/data,target=/mnt sh -c 'ls -A /mnt > /after-rw; cat /mnt/f >> /after-rw'\n\
         RUN --mount=type=bind,from=0,source=/data/f,target=/single cat /single > /by-index\n\
         RUN --mount=from=busybox,source=/etc,target=/img-etc cat /img-etc/group > /from-image\n\
         COPY --from=stage /data /check\n",
    );
    let root = &world().root;
    build_in(root, &ctx, "mounts-bind-stage", &[], &[]).ok();
    let image = "mounts-bind-stage";
    assert_eq!(cat_in(root, image, "/ro-read"), "original\n");
    assert_eq!(cat_in(root, image, "/ro-write"), "read-only\n", "a bind mount is read-only by default");
    assert_eq!(cat_in(root, image, "/rw-saw"), "changed\n", "rw allows writes in the RUN");
    assert_eq!(cat_in(root, image, "/after-rw"), "f\noriginal\n", "rw writes are discarded after the step");
    assert_eq!(cat_in(root, image, "/by-index"), "original\n", "from=0 names the first stage; a file onto a file");
    let group = fs::read_to_string(crate::support::fixtures().join("busybox/group")).expect("fixtures/busybox/group");
    assert_eq!(cat_in(root, image, "/from-image"), group, "type defaults to bind; from= an image");
    let check = strata_at(root, &["run", "--rm", image, "sh", "-c", "ls -A /check; cat /check/f"], &[]).ok().stdout;
    assert_eq!(check, "f\noriginal\n", "the stage itself never saw the rw writes");
    let paths = layer_paths(root, image);
    for top in ["mnt", "single", "img-etc"] {
        assert_not_in_layers(&paths, top);
    }
}

#[test]
fn bind_from_the_context_sees_its_files_and_rw_never_reaches_the_host() {
    if skip("bind_from_the_context_sees_its_files_and_rw_never_reaches_the_host") {
        return;
    }
    let ctx = Ctx::new(
        "mounts-bind-context",
        "FROM busybox\n\
         RUN --mount=target=/ctx sh -c 'ls -A /ctx > /listing; cat /ctx/sub/inner.txt >> /listing'\n\
         RUN --mount=type=bind,source=sub,target=/sub,readwrite \
         sh -c 'echo w > /sub/written && echo changed > /sub/inner.txt && rm /sub/gone.txt && cat /sub/inner.txt > /rw-saw'\n\
         RUN --mount=type=bind,source=a.txt,target=/etc/a.txt cat /etc/a.txt > /file-bind\n",
    );
    ctx.file("a.txt", "A\n").file("sub/inner.txt", "inner\n").file("sub/gone.txt", "still here\n");
    let root = &world().root;
    build_in(root, &ctx, "mounts-bind-context", &[], &[]).ok();
    let image = "mounts-bind-context";
    assert_eq!(cat_in(root, image, "/listing"), "Dockerfile\na.txt\nsub\ninner\n", "the default source is the context root");
    assert_eq!(cat_in(root, image, "/rw-saw"), "changed\n");
    assert_eq!(cat_in(root, image, "/file-bind"), "A\n", "a single context file onto a missing file target");
    assert_eq!(fs::read_to_string(ctx.join("sub/inner.txt")).unwrap(), "inner\n", "rw writes never reach the context on the host");
    assert_eq!(fs::read_to_string(ctx.join("sub/gone.txt")).unwrap(), "still here\n", "nor do rw removals");
    assert!(!ctx.join("sub/written").exists(), "a file made under an rw bind appeared in the host's context");
    let paths = layer_paths(root, image);
    assert_not_in_layers(&paths, "ctx");
    assert_not_in_layers(&paths, "sub");
    assert!(!paths.iter().any(|p| p == "etc/a.txt"), "the file target strata made stays out of the layer: {paths:?}");
}

#[test]
fn tmpfs_mount_is_a_tmpfs_of_the_given_size_and_leaves_nothing() {
    if skip("tmpfs_mount_is_a_tmpfs_of_the_given_size_and_leaves_nothing") {
        return;
    }
    let ctx = Ctx::new(
        "mounts-tmpfs",
        "FROM busybox\n\
         RUN --mount=type=tmpfs,target=/t sh -c 'mount | grep \" /t \" > /tmounts && echo x > /t/f && ls /t > /tls'\n\
         RUN --mount=type=tmpfs,target=/small,size=1048576 \
         sh -c 'if dd if=/dev/zero of=/small/big bs=1024 count=2048 2>/dev/null; then echo fit; else echo full; fi > /small-result'\n",
    );
    let root = &world().root;
    build_in(root, &ctx, "mounts-tmpfs", &[], &[]).ok();
    let mounts = cat_in(root, "mounts-tmpfs", "/tmounts");
    assert!(mounts.contains(" /t type tmpfs ") || mounts.contains(" /t tmpfs "), "the RUN sees a tmpfs at /t: {mounts:?}");
    assert_eq!(cat_in(root, "mounts-tmpfs", "/tls"), "f\n");
    assert_eq!(cat_in(root, "mounts-tmpfs", "/small-result"), "full\n", "size=1048576 caps the tmpfs at 1 MiB");
    let paths = layer_paths(root, "mounts-tmpfs");
    assert_not_in_layers(&paths, "t");
    assert_not_in_layers(&paths, "small");
}

#[test]
fn an_rw_bind_of_a_context_symlink_to_a_directory_binds_what_it_names() {
    if skip("an_rw_bind_of_a_context_symlink_to_a_directory_binds_what_it_names") {
        return;
    }
    // rw makes the bind a copy; the copy follows the link inside the context, so
    // the bind is the directory it names.
    let ctx = Ctx::new(
        "mounts-bind-symlink",
        "FROM busybox\nRUN --mount=type=bind,source=link,target=/m,rw sh -c 'cat /m/f > /saw && echo w > /m/f'\n",
    );
    ctx.file("real/f", "in real\n");
    std::os::unix::fs::symlink("real", ctx.join("link")).unwrap();
    let root = &world().root;
    build_in(root, &ctx, "mounts-bind-symlink", &[], &[]).ok();
    assert_eq!(cat_in(root, "mounts-bind-symlink", "/saw"), "in real\n");
    assert_eq!(fs::read_to_string(ctx.join("real/f")).unwrap(), "in real\n", "rw writes never reach the context");
}
