//! The real workload: a Debian minbase made rootlessly with debootstrap (inside
//! `strata unshare`), imported with `ADD rootfs.tar /`, and a RUN that does
//! `apt-get update && apt-get install -y python3`. apt drops to the `_apt` user
//! (uid 42) for downloads, so a passing build proves the multi-id mapping; the
//! test also finds that owner in the layer tar.
//!
//! debootstrap takes minutes, so its tarball is cached in `STRATA_CACHE`
//! (scripts/test.sh points it at a directory that survives test runs) and rebuilt
//! only when missing. The Debian mirror is `STRATA_DEBIAN_MIRROR`
//! (default http://deb.debian.org/debian).

use std::fs;
use std::path::{Path, PathBuf};

use crate::layout::Layout;
use crate::support::{path_str, scratch, skip_without_sandbox, strata, world};

const SUITE: &str = "bookworm";

fn mirror() -> String {
    std::env::var("STRATA_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

fn cache_dir() -> PathBuf {
    std::env::var_os("STRATA_CACHE").map(PathBuf::from).unwrap_or_else(|| world().work.join("cache"))
}

/// The cached minbase tarball, made with debootstrap in strata's user namespace when
/// missing. `container=lxc` makes debootstrap bind-mount /dev nodes instead of
/// mknod, which a user namespace refuses.
pub(crate) fn minbase_tarball() -> PathBuf {
    let cache = cache_dir();
    fs::create_dir_all(&cache).expect("create the cache dir");
    let tarball = cache.join(format!("debian-{SUITE}-minbase.tar"));
    if tarball.is_file() {
        return tarball;
    }
    let work = scratch("debootstrap");
    let rootfs = work.join("rootfs");
    let partial = cache.join(format!("debian-{SUITE}-minbase.tar.partial"));
    strata([
        "unshare",
        "env",
        "container=lxc",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "debootstrap",
        "--variant=minbase",
        SUITE,
        &path_str(&rootfs),
        &mirror(),
    ])
    .ok();
    strata(["unshare", "tar", "--numeric-owner", "--xattrs", "-C", &path_str(&rootfs), "-cf", &path_str(&partial), "."]).ok();
    strata(["unshare", "rm", "-rf", &path_str(&rootfs)]).ok();
    fs::rename(&partial, &tarball).expect("publish the cached tarball");
    tarball
}

pub(crate) fn link_or_copy(src: &Path, dest: &Path) {
    if fs::hard_link(src, dest).is_err() {
        fs::copy(src, dest).expect("copy the tarball into the context");
    }
}

#[test]
fn debian_minbase_then_apt_get_install_python3() {
    if skip_without_sandbox("debian_minbase_then_apt_get_install_python3") {
        return;
    }
    let tarball = minbase_tarball();

    let base_ctx = scratch("debian-base");
    link_or_copy(&tarball, &base_ctx.join("rootfs.tar"));
    fs::write(base_ctx.join("Dockerfile"), "FROM scratch\nADD rootfs.tar /\nCMD [\"bash\"]\n").unwrap();
    strata(["build", "-q", "-t", "e2e-debian:minbase", &path_str(&base_ctx)]).ok();
    let os = strata(["run", "--rm", "e2e-debian:minbase", "cat", "/etc/debian_version"]).ok();
    assert!(os.stdout.trim().starts_with("12"), "expected Debian 12, got {:?}", os.stdout);

    let py_ctx = scratch("debian-python");
    fs::write(
        py_ctx.join("Dockerfile"),
        "FROM e2e-debian:minbase\nRUN apt-get update && apt-get install -y --no-install-recommends python3\nCMD [\"python3\"]\n",
    )
    .unwrap();
    let out = scratch("debian-python-out").join("layout");
    strata(["build", "-t", "e2e-debian:python3", "--output", &format!("oci:{}:python3", path_str(&out)), &path_str(&py_ctx)]).ok();
    let py = strata(["run", "--rm", "e2e-debian:python3", "python3", "-c", "import sys; print(sys.version_info[0] * 10 + 2)"]).ok();
    assert_eq!(py.stdout.trim(), "32", "python3 runs in the built image");

    // apt's download dirs belong to _apt (uid 42): an owner other than root and the
    // invoking user made it into the layer exactly.
    let layout = Layout::open(&out);
    let manifest = layout.manifest(Some("python3"));
    let top = Layout::layers(&manifest).last().cloned().expect("the RUN made a layer");
    let entries = layout.layer_entries(&top);
    let partial = entries
        .iter()
        .find(|e| e.path == "var/cache/apt/archives/partial")
        .unwrap_or_else(|| panic!("no var/cache/apt/archives/partial in the RUN layer ({} entries)", entries.len()));
    assert_eq!(partial.uid, 42, "apt's partial dir should be owned by _apt (uid 42): {partial:?}");
}
