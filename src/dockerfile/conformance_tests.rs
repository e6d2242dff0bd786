//! Conformance against BuildKit's own test data, read in place from
//! `../shared/conformance/buildkit` (see its README for the formats).
//!
//! Each test counts passes, prints the tally and lists every failure before
//! asserting, so one run shows the whole picture rather than the first miss.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{expand_word, expand_words, parse, parse_tree};

fn corpus(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/conformance/buildkit")).join(rel)
}

fn case_dirs(rel: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(corpus(rel))
        .unwrap_or_else(|e| panic!("conformance corpus {rel} missing: {e}"))
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn report(name: &str, passed: usize, total: usize, failures: &[String]) {
    println!("{name} {passed}/{total}");
    for f in failures {
        println!("  FAIL {f}");
    }
    assert!(total > 0, "{name}: no cases found");
    assert!(failures.is_empty(), "{name}: {} of {total} failed", failures.len());
}

#[test]
fn parser_testfiles_dump_to_result() {
    let dirs = case_dirs("parser/testfiles");
    let mut failures = Vec::new();
    for dir in &dirs {
        let text = fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        let expected = fs::read_to_string(dir.join("result")).expect("result");
        match parse_tree(&text, "Dockerfile") {
            Ok(tree) if tree.dump() == expected => {}
            Ok(tree) => failures.push(format!("{}:\n--- got\n{}--- want\n{}", dir.display(), tree.dump(), expected)),
            Err(e) => failures.push(format!("{}: {e}", dir.display())),
        }
    }
    report("parser", dirs.len() - failures.len(), dirs.len(), &failures);
}

#[test]
fn parser_negative_testfiles_fail() {
    let dirs = case_dirs("parser/testfiles-negative");
    let mut failures = Vec::new();
    for dir in &dirs {
        let text = fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        if parse_tree(&text, "Dockerfile").is_ok() || parse(&text, "Dockerfile").is_ok() {
            failures.push(format!("{}: accepted", dir.display()));
        }
    }
    report("parser-negative", dirs.len() - failures.len(), dirs.len(), &failures);
}

#[test]
fn env_var_test() {
    let text = fs::read_to_string(corpus("shell/envVarTest")).expect("envVarTest");
    let env: HashMap<String, String> = [("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (mut total, mut failures) = (0, Vec::new());
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.splitn(3, '|').map(str::trim).collect();
        let [platform, input, expected] = fields[..] else {
            panic!("bad envVarTest line {line:?}");
        };
        if platform == "W" {
            continue;
        }
        total += 1;
        let got = expand_word(input, &env, '\\');
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(g), e) => g == e,
            _ => false,
        };
        if !ok {
            failures.push(format!("{input:?}: got {got:?}, want {expected:?}"));
        }
    }
    report("envVarTest", total - failures.len(), total, &failures);
}

#[test]
fn words_test() {
    let text = fs::read_to_string(corpus("shell/wordsTest")).expect("wordsTest");
    let mut env: HashMap<String, String> = HashMap::new();
    let (mut total, mut failures) = (0, Vec::new());
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(assign) = line.strip_prefix("ENV ") {
            let (k, v) = assign.split_once('=').expect("ENV name=value");
            env.insert(k.to_string(), v.to_string());
            continue;
        }
        let (input, expected) = line.split_once('|').expect("INPUT | EXPECTED");
        let (input, expected) = (input.trim(), expected.trim_start());
        total += 1;
        let got = expand_words(input, &env, '\\');
        let ok = match &got {
            Err(_) => expected == "error",
            Ok(words) => words.join(",") == expected,
        };
        if !ok {
            failures.push(format!("{input:?}: got {got:?}, want {expected:?}"));
        }
    }
    report("wordsTest", total - failures.len(), total, &failures);
}
