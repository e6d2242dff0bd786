//! What the driver matrix expects of each layer: the entries, the changes, every
//! kind of file, and xattrs copied up; one function per layer so a failure says
//! which layer broke.

use super::*;

/// The expected entries of each matrix layer.
#[track_caller]
pub(super) fn check_expected(driver: &str, layers: &[Vec<Rich>]) {
    for (i, entries) in layers.iter().enumerate() {
        check_clean(driver, &format!("L{}", i + 1), entries);
    }
    check_entry_sets(driver, layers);
    check_new_files(driver, &layers[0]);
    check_changes(driver, &layers[1]);
    check_every_kind(driver, &layers[2]);
    check_xattr_copy(driver, &layers[3], &layers[4]);
}

/// Each layer holds exactly the paths [`expected_paths`] lists.
#[track_caller]
fn check_entry_sets(driver: &str, layers: &[Vec<Rich>]) {
    for (i, (entries, want)) in layers.iter().zip(expected_paths()).enumerate() {
        let got: BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
        let extra: Vec<&&str> = got.difference(&want).collect();
        let missing: Vec<&&str> = want.difference(&got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{driver} L{}: unexpected entries {extra:?}, missing entries {missing:?}:\n{}",
            i + 1,
            dump(entries)
        );
    }
}

/// L1: plain new files and dirs.
#[track_caller]
fn check_new_files(driver: &str, l1: &[Rich]) {
    for (path, content) in
        [("t/gone", "gone\n"), ("t/gonedir/sub/x", "x\n"), ("t/opq/old", "old\n"), ("t/lower", "lower\n"), ("t/ren/file", "r\n")]
    {
        let e = find(driver, "L1", l1, path);
        assert!(e.kind == b'0' && e.content_is(content.as_bytes()), "{driver} L1: {}", e.key());
    }
}

/// L2: whiteouts, an opaque dir, file<->dir, a hard link to a lower file, chown/chmod
/// of a lower file, a renamed dir.
#[track_caller]
fn check_changes(driver: &str, l2: &[Rich]) {
    let name = "L2";
    assert!(l2.iter().all(|e| e.path == "t" || e.path.starts_with("t/")), "{driver} L2 holds only changes under /t:\n{}", dump(l2));
    for wh in ["t/.wh.gone", "t/.wh.gonedir", "t/.wh.ren"] {
        find(driver, name, l2, wh);
    }
    assert!(!l2.iter().any(|e| e.path.starts_with("t/gonedir/")), "{driver} L2: nothing under a deleted dir:\n{}", dump(l2));
    let under_opq: Vec<&str> = l2.iter().filter_map(|e| e.path.strip_prefix("t/opq/")).collect();
    assert_eq!(
        under_opq.iter().filter(|n| **n == ".wh..wh..opq").count(),
        1,
        "{driver} L2: the replaced dir t/opq needs exactly one opaque marker:\n{}",
        dump(l2)
    );
    let mut sorted = under_opq.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [".wh..wh..opq", "new"], "{driver} L2: t/opq holds only its opaque marker and the new file:\n{}", dump(l2));
    assert_eq!(find(driver, name, l2, "t/opq").kind, b'5', "{driver} L2: t/opq is a dir");
    assert_eq!(find(driver, name, l2, "t/f2d").kind, b'5', "{driver} L2: t/f2d became a dir");
    assert!(find(driver, name, l2, "t/f2d/n").content_is(b"n\n"), "{driver} L2: t/f2d/n");
    let d2f = find(driver, name, l2, "t/d2f");
    assert!(d2f.kind == b'0' && d2f.content_is(b"file\n"), "{driver} L2: t/d2f became a file: {}", d2f.key());
    assert!(!l2.iter().any(|e| e.path.starts_with("t/d2f/")), "{driver} L2: nothing under t/d2f:\n{}", dump(l2));
    assert_link_group(driver, name, l2, &["t/lower", "t/lowerlink"], b"lower\n");
    let meta = find(driver, name, l2, "t/meta");
    assert_eq!(
        (meta.kind, meta.uid, meta.gid, meta.mode & 0o7777),
        (b'0', 1000, 1000, 0o600),
        "{driver} L2: chown/chmod of a lower file: {}",
        meta.key()
    );
    assert!(meta.content_is(b"meta\n"), "{driver} L2: {}", meta.key());
    assert!(find(driver, name, l2, "t/ren2/file").content_is(b"r\n"), "{driver} L2: renamed dir content");
    assert!(!l2.iter().any(|e| e.path.starts_with("t/ren/")), "{driver} L2: nothing under the renamed-away dir:\n{}", dump(l2));
}

/// L3: every kind of new file.
#[track_caller]
fn check_every_kind(driver: &str, l3: &[Rich]) {
    let name = "L3";
    let emptydir = find(driver, name, l3, "n/emptydir");
    assert_eq!(emptydir.kind, b'5', "{driver} L3: {}", emptydir.key());
    assert!(!l3.iter().any(|e| e.path.starts_with("n/emptydir/")), "{driver} L3: n/emptydir is empty:\n{}", dump(l3));
    assert_link_group(driver, name, l3, &["n/h1", "n/h2", "n/h3"], b"h\n");
    for (path, target) in [("n/relsym", "../t/lower"), ("n/abssym", "/nonexistent/target")] {
        let e = find(driver, name, l3, path);
        assert_eq!((e.kind, e.link.as_deref()), (b'2', Some(target)), "{driver} L3: symlink {}", e.key());
    }
    for (path, kind, mode) in [("n/suid", b'0', 0o4755), ("n/sgid", b'0', 0o2711), ("n/sticky", b'5', 0o1777), ("n/sgiddir", b'5', 0o2775)]
    {
        let e = find(driver, name, l3, path);
        assert_eq!((e.kind, e.mode & 0o7777), (kind, mode), "{driver} L3: special bits of {}", e.key());
    }
    for (path, uid, gid) in
        [("n/u1000", 1000, 1000), ("n/nobody", 65534, 65534), ("n/u65535", 65535, 65535), ("n/mixed", 1000, 65534), ("n/h1", 0, 0)]
    {
        let e = find(driver, name, l3, path);
        assert_eq!((e.uid, e.gid), (uid, gid), "{driver} L3: owner of {}", e.key());
    }
    let long = find(driver, name, l3, &format!("n/{}", long_name()));
    assert!(long.content_is(b"long\n"), "{driver} L3: {}", long.key());
    let deep = find(driver, name, l3, &format!("{}/file", deep_dir()));
    assert!(deep.path.len() > 100 && deep.content_is(b"deep\n"), "{driver} L3: {}", deep.key());
    let non_ascii = find(driver, name, l3, &format!("n/{NON_ASCII}"));
    assert!(non_ascii.content_is(b"nonascii\n"), "{driver} L3: {}", non_ascii.key());
    let big = find(driver, name, l3, "n/big");
    assert_eq!((big.kind, big.size), (b'0', BIG as u64), "{driver} L3: {}", big.key());
    assert!(big.content_is(&big_content()), "{driver} L3: content of n/big: {}", big.key());
    let sparse = find(driver, name, l3, "n/sparse");
    assert_eq!((sparse.kind, sparse.size), (b'0', SPARSE as u64), "{driver} L3: {}", sparse.key());
    assert!(sparse.content_is(&vec![0u8; SPARSE]), "{driver} L3: content of n/sparse: {}", sparse.key());
}

/// L4: COPY keeps the context file's user xattr. L5: a chmod copies the file up: the
/// xattr is kept, nothing else changes.
#[track_caller]
fn check_xattr_copy(driver: &str, l4: &[Rich], l5: &[Rich]) {
    let x = find(driver, "L4", l4, "n/xattr-file");
    assert_eq!(x.xattrs.get("test").map(Vec::as_slice), None, "{driver} L4: xattr names are full names");
    assert_eq!(
        x.xattrs.get("user.test").map(Vec::as_slice),
        Some(&b"hello"[..]),
        "{driver} L4: COPY should keep user.test=hello as SCHILY.xattr.user.test: {}",
        x.key()
    );
    assert!(x.content_is(b"has an xattr\n"), "{driver} L4: {}", x.key());

    let x = find(driver, "L5", l5, "n/xattr-file");
    assert_eq!(x.mode & 0o7777, 0o640, "{driver} L5: {}", x.key());
    assert_eq!(x.xattrs.get("user.test").map(Vec::as_slice), Some(&b"hello"[..]), "{driver} L5: copy-up keeps user.test: {}", x.key());
    assert!(x.content_is(b"has an xattr\n"), "{driver} L5: {}", x.key());
    assert!(
        l5.iter().all(|e| e.path == "n" || e.path == "n/xattr-file"),
        "{driver} L5 holds only n/xattr-file (and its parent):\n{}",
        dump(l5)
    );
}
