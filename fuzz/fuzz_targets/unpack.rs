//! A layer tar unpacked into a fresh directory: it may fail, but must never panic,
//! and must never create, change or follow anything outside that directory.
//!
//! Safe to run as root: the process drops CAP_MKNOD first (device entries then take
//! the "not permitted here" path they take in a user namespace; whiteouts, 0:0
//! character devices, need no capability), caps every file it writes at
//! `FILE_LIMIT` bytes, and works in a private temp dir. After every input it checks
//! that the dir holding the layer root contains only the root, and that a sentinel
//! dir beside it is unchanged. Header checksums are fixed up first, so mutated
//! headers reach the unpacker instead of failing the checksum.
#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata::rootfs::{unpack, UnpackOptions};

/// The largest file an input may write: bounds what a sparse or lying header could
/// put on disk (the write then fails with EFBIG rather than filling the machine).
const FILE_LIMIT: u64 = 16 << 20;

struct Sandbox {
    _dir: tempfile::TempDir,
    /// `layers/`, which holds the root being unpacked and nothing else.
    layers: PathBuf,
    outside: PathBuf,
    snapshot: Vec<String>,
}

fn harden() {
    // SAFETY: plain syscalls on this process's own limits and signal disposition.
    unsafe {
        let limit = libc::rlimit { rlim_cur: FILE_LIMIT, rlim_max: FILE_LIMIT };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    if let Ok(true) = caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_MKNOD) {
        for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
            caps::drop(None, set, caps::Capability::CAP_MKNOD).expect("dropping CAP_MKNOD");
        }
    }
}

/// Every entry below `dir` with what identifies its state, sorted.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| {
            let e = e.expect("walking the sentinel dir");
            let m = e.metadata().expect("lstat");
            let xattrs: Vec<_> = xattr::list(e.path()).map(|l| l.collect()).unwrap_or_default();
            format!("{:?} {:o} {}:{} {} {} {} {xattrs:?}", e.path(), m.mode(), m.uid(), m.gid(), m.size(), m.mtime(), m.nlink())
        })
        .collect();
    out.sort();
    out
}

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        harden();
        let dir = tempfile::Builder::new().prefix("strata-fuzz-unpack.").tempdir().expect("temp dir");
        let layers = dir.path().join("layers");
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("etc")).expect("mkdir");
        fs::create_dir(&layers).expect("mkdir");
        fs::write(outside.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").expect("write");
        std::os::unix::fs::symlink("../outside", layers.join("../outside-link")).expect("symlink");
        let snapshot = snapshot(&outside);
        Sandbox { _dir: dir, layers, outside, snapshot }
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).expect("read_dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Gives every header block a valid checksum (walking the entries by their sizes):
/// otherwise almost every mutation fails the checksum and never reaches unpack.
fn fix_checksums(data: &mut [u8]) {
    let mut off: usize = 0;
    while off.checked_add(512).is_some_and(|end| end <= data.len()) {
        let block = &mut data[off..off + 512];
        if block.iter().all(|b| *b == 0) {
            break;
        }
        let mut header = tar::Header::new_old();
        header.as_mut_bytes().copy_from_slice(block);
        header.set_cksum();
        block.copy_from_slice(header.as_bytes());
        let size = header.entry_size().unwrap_or(0);
        off = match size.checked_add(511).and_then(|s| (s / 512 * 512).checked_add(512)).and_then(|s| usize::try_from(s).ok()) {
            Some(step) => off.saturating_add(step),
            None => break,
        };
    }
}

fuzz_target!(|data: &[u8]| {
    let mut data = data.to_vec();
    fix_checksums(&mut data);
    let data = &data[..];
    let sb = sandbox();
    let root = sb.layers.join("root");
    fs::create_dir(&root).expect("fresh layer root");
    let opts = UnpackOptions {
        opaque_xattr: "user.overlay.opaque".into(),
        owners: strata::owner::Owners::Real,
        warn: strata::rootfs::Warn::ignore(),
    };
    let _ = unpack(data, &root, &opts);

    let top = sb.layers.parent().expect("sandbox");
    assert_eq!(names(top), ["layers", "outside", "outside-link"], "something was created beside the layer dir");
    assert_eq!(names(&sb.layers), ["root"], "something was created beside the layer root");
    assert!(fs::symlink_metadata(&root).expect("layer root").is_dir(), "the layer root is no longer a directory");
    assert_eq!(snapshot(&sb.outside), sb.snapshot, "the sentinel dir outside the layer root changed");
    fs::remove_dir_all(&root).expect("removing the layer root");
});
