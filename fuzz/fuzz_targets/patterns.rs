//! `.dockerignore` patterns and COPY globs. The input is `PATTERNS\0PATH`: the
//! ignore file is parsed and asked about PATH and its parents; PATH's last component
//! is matched against each pattern line; each line is also globbed against a small
//! fixed tree, whose matches must stay inside it.
#![no_main]

use std::path::{Component, Path};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata::dockerfile::{glob_below, glob_matches, has_meta, split_wildcards, Ignore};

/// A tree made once per process: dirs, files, a symlink out of it (never to be
/// descended into) and names with pattern characters.
fn tree() -> &'static Path {
    static TREE: OnceLock<tempfile::TempDir> = OnceLock::new();
    TREE.get_or_init(|| {
        let d = tempfile::tempdir().expect("temp dir");
        for dir in ["a/b/c", "src/x", "[x]", "sp ace"] {
            std::fs::create_dir_all(d.path().join(dir)).expect("mkdir");
        }
        for file in ["a/f.txt", "a/b/g.rs", "src/x/*.rs", "[x]/?", "top", "sp ace/\\"] {
            std::fs::write(d.path().join(file), b"").expect("write");
        }
        std::os::unix::fs::symlink("/", d.path().join("a/out")).expect("symlink");
        d
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (patterns, path) = text.split_once('\0').unwrap_or((text, "a/b/c"));
    let ignore = Ignore::parse(patterns);
    let _ = ignore.is_empty();
    let mut rel = path;
    loop {
        let _ = ignore.excluded(rel);
        let _ = ignore.matches(rel);
        let _ = ignore.walks_into(rel);
        match rel.rsplit_once('/') {
            Some((parent, _)) => rel = parent,
            None => break,
        }
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    for line in patterns.lines().take(16) {
        let _ = has_meta(line);
        let _ = glob_matches(line, name);
        let (prefix, parts) = split_wildcards(line);
        // The COPY caller cleans `..` away and resolves the prefix itself.
        if prefix.split('/').any(|p| p == "..") || parts.iter().any(|p| p == "..") {
            continue;
        }
        let base = tree().join(&prefix);
        if let Ok(found) = glob_below(&base, &parts) {
            for f in found {
                assert!(
                    f.components().all(|c| matches!(c, Component::Normal(_))),
                    "glob {line:?} matched {f:?}, which is not a plain relative path"
                );
            }
        }
    }
});
