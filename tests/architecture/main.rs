//! Structure rules of the source tree, checked by reading it (no build of strata
//! is involved). Each rule is one test whose failure lists every violation as
//! `file:line: what`, so one run shows all the work there is.
//!
//! - `no_file_over_700_lines`: every `.rs` file under `src/` and `tests/` has at
//!   most 700 lines. A file that long holds more than one idea; split it by idea
//!   (a `*_tests.rs` file beside it for long unit tests).
//! - `no_function_over_120_lines`: every `fn` with a body (free, method, nested;
//!   `src/` and `tests/`) spans at most 120 lines from its `fn` line to its closing
//!   brace. Longer functions hide their steps; name the steps as functions. Braces
//!   are counted on tokens (see `lexer`), so braces in strings, raw strings, chars
//!   and comments do not count, and a lifetime is not a char literal.
//! - `no_set_var_outside_namespace_entry`: `std::env::set_var` (and `remove_var`)
//!   appears in `src/` only in `src/sandbox/userns.rs`. Changing the environment
//!   races with every thread reading it (it is `unsafe` from edition 2024); only the
//!   namespace entry, which runs before any thread exists, may do it. Others should
//!   pass values explicitly (or set them on a `Command`).
//! - `no_import_cycle_between_files`: the graph of which file of the library uses
//!   which has no cycle. Two files that need each other are one unit split in two:
//!   neither can be understood, tested or moved alone. An edge goes from a file to
//!   the file that *defines* what it names through a path: `use crate::..`,
//!   `use super::..`, `use self::..`, `use child::..` (with `{..}` groups), and paths
//!   in code such as `crate::oci::Digest::of_bytes(..)`, `super::cache::key_of(..)`
//!   or `oci::Store::open(..)` after `use crate::oci`. A name a module re-exports is
//!   followed to its definition (`crate::oci::Digest` -> `src/oci/digest.rs`). Not
//!   edges: `mod x;` (declaring a child is not using it), and a `pub use` of an item
//!   from the module's own subtree (`pub use digest::Digest;` in `oci/mod.rs`): that
//!   is how a folder exposes its API, and its users get an edge to the defining file
//!   instead. Nor is any use a folder's `mod.rs` makes of its own folder: a mod.rs is
//!   the folder's front door, which declares, re-exports and wires its children;
//!   children sharing a type their mod.rs defines is the folder's shape, not a cycle
//!   between peers (two sibling files using each other still is). Comments and strings are not code; `src/main.rs` is
//!   another crate (it sees the library as `strata::`) and cannot be in a cycle.
//!   `#[cfg(test)]` modules count like any code: their `use super::*` is a self-edge.
//!   Set `STRATA_ARCH_DUMP=1` to print every edge (`cargo test --test architecture
//!   -- --nocapture no_import_cycle`).
//! - `imports_follow_the_layering_table`: ARCHITECTURE.md's table under "Modules
//!   and who may use whom" is the layering; code must not drift from it. Every
//!   top-level module under `src/` needs a row (and every row a module). A path
//!   written from a file of module `x` that starts at another top-level module `z`
//!   (`crate::z::..`, or `super::..` reaching it) needs `z` in `x`'s "may use"
//!   column: its backticked names (`registry::progress` counts as `registry`),
//!   "everything above" (every earlier row), "everything"; backticks inside
//!   parentheses are commentary. `lib.rs` and `main.rs` wire modules together and
//!   are exempt. A path through a `use` binding (`oci::Store` after
//!   `use crate::oci`) is not reported again: the `use` line was.
//!
//! The checks are std-only: a small tokenizer (`lexer`) and a resolver that maps
//! module paths to files the way rustc does (`modules`), instead of a parser crate.

mod cycles;
mod layering;
mod lexer;
mod modules;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use modules::{Crate, Edge};

const MAX_FILE_LINES: usize = 700;
const MAX_FN_LINES: usize = 120;
/// The only file that may change the process environment.
const NAMESPACE_ENTRY: &str = "src/sandbox/userns.rs";

fn package_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir` (a directory of the package), sorted: its path
/// relative to the package root, and its text.
fn rust_files(dir: &str) -> Vec<(String, String)> {
    let root = package_root();
    let mut paths = Vec::new();
    collect_rs(&root.join(dir), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.strip_prefix(&root).unwrap_or(&p).to_string_lossy().into_owned(), text)
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Fails with every violation, one per line, under `rule`.
fn assert_no_violations(rule: &str, violations: Vec<String>) {
    if !violations.is_empty() {
        panic!("{rule}: {} violation(s):\n  {}\n", violations.len(), violations.join("\n  "));
    }
}

#[test]
fn no_file_over_700_lines() {
    let mut violations = Vec::new();
    for (rel, text) in rust_files("src").into_iter().chain(rust_files("tests")) {
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            violations.push(format!("{rel}: {lines} lines (at most {MAX_FILE_LINES})"));
        }
    }
    assert_no_violations("files over 700 lines", violations);
}

#[test]
fn no_function_over_120_lines() {
    let mut violations = Vec::new();
    for (rel, text) in rust_files("src").into_iter().chain(rust_files("tests")) {
        let tokens = lexer::tokenize(&text);
        // Unbalanced braces would mean the tokenizer misread the file and every
        // length after the error is wrong: say so rather than report nonsense.
        if !lexer::balanced(&tokens) {
            violations.push(format!("{rel}: braces do not balance as tokenized; the checks cannot read this file"));
            continue;
        }
        for f in lexer::functions(&tokens) {
            if f.lines() > MAX_FN_LINES {
                violations.push(format!("{rel}:{}: fn {} is {} lines (at most {MAX_FN_LINES})", f.first_line, f.name, f.lines()));
            }
        }
    }
    assert_no_violations("functions over 120 lines", violations);
}

#[test]
fn no_set_var_outside_namespace_entry() {
    let mut violations = Vec::new();
    for (rel, text) in rust_files("src") {
        if rel == NAMESPACE_ENTRY {
            continue;
        }
        let tokens = lexer::tokenize(&text);
        for (i, t) in tokens.iter().enumerate() {
            if t.kind == lexer::Kind::Ident && (t.text == "set_var" || t.text == "remove_var") {
                violations.push(format!(
                    "{rel}:{}: {} (only {NAMESPACE_ENTRY} may change the environment)",
                    t.line,
                    path_ending_at(&tokens, i)
                ));
            }
        }
    }
    assert_no_violations("environment changed outside the namespace entry", violations);
}

/// `std::env::set_var` from the tokens ending at `end`.
fn path_ending_at(tokens: &[lexer::Token], end: usize) -> String {
    let mut start = end;
    while start >= 2 && tokens[start - 1].is_punct("::") && tokens[start - 2].kind == lexer::Kind::Ident {
        start -= 2;
    }
    tokens[start..=end].iter().map(|t| t.text.as_str()).collect()
}

fn load_crate() -> Crate {
    Crate::load(&package_root())
}

#[test]
fn no_import_cycle_between_files() {
    let krate = load_crate();
    let edges: Vec<Edge> = krate.edges().into_iter().filter(|e| e.from != e.to && !e.reexport).collect();
    if std::env::var_os("STRATA_ARCH_DUMP").is_some_and(|v| v == "1") {
        for e in &edges {
            println!("{}:{} -> {} ({})", krate.files[e.from].rel, e.line, krate.files[e.to].rel, e.path);
        }
    }
    // The first line (and path) where each file uses each other one, as evidence.
    let mut first: BTreeMap<(usize, usize), &Edge> = BTreeMap::new();
    for e in &edges {
        first
            .entry((e.from, e.to))
            .and_modify(|old| {
                if e.line < old.line {
                    *old = e
                }
            })
            .or_insert(e);
    }
    let mut graph: cycles::Graph = vec![BTreeSet::new(); krate.files.len()];
    for &(from, to) in first.keys() {
        graph[from].insert(to);
    }
    let mut violations = Vec::new();
    for members in cycles::components(&graph) {
        let names: Vec<&str> = members.iter().map(|&m| krate.files[m].rel.as_str()).collect();
        let mut report = format!("{} files depend on each other: {}", members.len(), names.join(", "));
        for cycle in cycles::cycles_covering(&graph, &members) {
            let steps: Vec<String> = cycle
                .iter()
                .zip(cycle.iter().cycle().skip(1))
                .map(|(&a, &b)| {
                    let e = first[&(a, b)];
                    format!("{}:{} ({})", krate.files[a].rel, e.line, e.path)
                })
                .collect();
            report.push_str(&format!("\n      cycle: {} -> {}", steps.join(" -> "), krate.files[cycle[0]].rel));
        }
        violations.push(report);
    }
    assert_no_violations("import cycles between files", violations);
}

#[test]
fn imports_follow_the_layering_table() {
    let root = package_root();
    let markdown = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md at the package root");
    let rows = layering::parse(&markdown).unwrap_or_else(|e| panic!("{e}"));
    let may_use: BTreeMap<&str, &BTreeSet<String>> = rows.iter().map(|r| (r.module.as_str(), &r.may_use)).collect();
    let mut violations = Vec::new();

    let modules = top_level_modules(&root.join("src"));
    for m in &modules {
        if !may_use.contains_key(m.as_str()) {
            violations.push(format!("src/{m}: no row in ARCHITECTURE.md's table \"{}\"", &layering::HEADING[3..]));
        }
    }
    for row in &rows {
        if !modules.contains(&row.module) {
            violations.push(format!("ARCHITECTURE.md: the row for `{}` names no module under src/", row.module));
        }
    }

    let krate = load_crate();
    // By file and line, each (file, line, module) once.
    let mut uses = BTreeSet::new();
    for r in krate.refs.iter().filter(|r| r.explicit()) {
        let file = &krate.files[r.file];
        // lib.rs (module path []) declares the modules; main.rs is not loaded.
        let Some(from) = file.module.first() else { continue };
        let Some(to) = krate.absolute(r).and_then(|abs| abs.first().cloned()) else { continue };
        // A module without a row was reported above.
        let Some(allowed) = may_use.get(from.as_str()) else { continue };
        if &to != from && !allowed.contains(&to) {
            uses.insert((file.rel.as_str(), r.line, from.as_str(), to));
        }
    }
    for (rel, line, from, to) in uses {
        violations.push(format!("{rel}:{line} uses crate::{to} ({to} is not in {from}'s \"may use\" column)"));
    }
    assert_no_violations("imports against ARCHITECTURE.md's layering", violations);
}

/// Directories and `.rs` files directly under `src/`, but lib.rs and main.rs.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let entries = fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_string_lossy().into_owned();
            if path.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").filter(|n| *n != "lib" && *n != "main").map(str::to_string)
            }
        })
        .collect()
}
