//! The resolver on a small crate written to a temp dir: each file exercises one
//! way a path reaches another file, or one that must not count.

use super::*;

/// (path under the package root, content)
const CRATE: &[(&str, &str)] = &[
    ("src/lib.rs", "pub mod a;\npub mod b;\nmod c;\n// crate::c::Never is only mentioned here\n"),
    (
        "src/a/mod.rs",
        "mod x;\nmod y;\npub use x::Thing;\npub use y::*;\nuse y::helper as h;\npub enum Error { E }\n\
         pub fn run() { h(); }\n",
    ),
    ("src/a/x.rs", "use super::Error;\npub struct Thing;\n#[cfg(test)]\n#[path = \"x_tests.rs\"]\nmod tests;\n"),
    ("src/a/x_tests.rs", "use super::*;\nfn t() {\n    let _ = Thing;\n    crate::b::go();\n}\n"),
    ("src/a/y.rs", "pub fn helper() -> super::Error { loop {} }\npub fn globbed() {}\n"),
    (
        "src/b.rs",
        "mod inner;\nuse std::fs;\npub fn go() {\n    let _ = \"crate::c::Nope\";\n    crate::a::Thing::new();\n    \
         crate::a::globbed();\n    fs::read(\"x\");\n}\nmod tests {\n    use super::*;\n    fn t() {\n        go();\n        \
         super::inner::f();\n        fs::write(\"y\", \"\");\n    }\n}\n",
    ),
    ("src/b/inner.rs", "pub fn f() -> super::super::a::x::Thing { loop {} }\n"),
    ("src/c.rs", "pub struct Never;\n"),
];

/// Writes [`CRATE`] to a directory of its own per test (tests run in parallel).
fn load_example(test: &str) -> Crate {
    let root = std::env::temp_dir().join(format!("strata-architecture-{}-{test}", std::process::id()));
    for (path, text) in CRATE {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    let krate = Crate::load(&root);
    fs::remove_dir_all(&root).unwrap();
    krate
}

#[test]
fn paths_resolve_to_the_defining_file() {
    let krate = load_example("paths");
    let files: Vec<&str> = krate.files.iter().map(|f| f.rel.as_str()).collect();
    assert_eq!(
        files,
        ["src/lib.rs", "src/a/mod.rs", "src/b.rs", "src/c.rs", "src/a/x.rs", "src/a/y.rs", "src/b/inner.rs", "src/a/x_tests.rs"]
    );
    let mut edges: Vec<(&str, usize, &str, bool)> = krate
        .edges()
        .into_iter()
        .filter(|e| e.from != e.to)
        .map(|e| (krate.files[e.from].rel.as_str(), e.line, krate.files[e.to].rel.as_str(), e.reexport))
        .collect();
    edges.sort();
    let got: Vec<String> =
        edges.iter().map(|(from, line, to, re)| format!("{from}:{line} -> {to}{}", if *re { " (re-export)" } else { "" })).collect();
    assert_eq!(
        got,
        [
            // The re-exports are edges the cycle check skips; the private use is not.
            "src/a/mod.rs:3 -> src/a/x.rs (re-export)",
            "src/a/mod.rs:4 -> src/a/y.rs (re-export)",
            "src/a/mod.rs:5 -> src/a/y.rs (re-export)",
            "src/a/x.rs:1 -> src/a/mod.rs",
            // `use super::*` in a `#[path]` file is its parent, x.rs.
            "src/a/x_tests.rs:1 -> src/a/x.rs",
            "src/a/x_tests.rs:4 -> src/b.rs",
            "src/a/y.rs:1 -> src/a/mod.rs",
            // Through `pub use x::Thing` and `pub use y::*` to the definitions; the
            // string, the comment in lib.rs and `fs::` (std) are no edges.
            "src/b.rs:5 -> src/a/x.rs",
            "src/b.rs:6 -> src/a/y.rs",
            // `super` inside `mod tests { }` is b itself, so `super::inner` is b/inner.rs.
            "src/b.rs:13 -> src/b/inner.rs",
            "src/b/inner.rs:1 -> src/a/x.rs",
        ]
    );
}

#[test]
fn explicit_paths_name_the_top_level_module_they_reach() {
    let krate = load_example("explicit");
    let reached: BTreeSet<(String, Vec<String>)> = krate
        .refs
        .iter()
        .filter(|r| r.explicit())
        .filter_map(|r| Some((krate.files[r.file].rel.clone(), krate.absolute(r)?.into_iter().take(1).collect())))
        .collect();
    assert!(reached.contains(&("src/b/inner.rs".to_string(), vec!["a".to_string()])));
    assert!(reached.contains(&("src/a/x_tests.rs".to_string(), vec!["b".to_string()])));
    assert!(!reached.iter().any(|(_, m)| m == &["c".to_string()]), "a comment or string named crate::c: {reached:?}");
}
