//! The rules about FROM's words, judged as BuildKit judges them: each FROM's image
//! and `--platform` expanded with the global scope (the ARGs before the first FROM,
//! `--build-arg` values for them, and the automatic TARGET*/BUILD* ones), noting
//! which variables were found and which were not.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Finding, Rule};
use crate::dockerfile::{expand_word, Dockerfile, Instruction};

/// The build's arguments, as the FROM lines see them.
#[derive(Clone, Debug, Default)]
pub struct GlobalArgs {
    /// `--build-arg` values; they count only for ARGs the Dockerfile declares.
    pub given: BTreeMap<String, String>,
    /// TARGETPLATFORM, BUILDARCH, ...: always defined.
    pub automatic: Vec<(String, String)>,
}

/// A word expanded, with the names it looked up that had a value and those that had none.
struct Expanded {
    result: Option<String>,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

fn expand(word: &str, env: &HashMap<String, String>, escape: char) -> Expanded {
    let seen = RefCell::new((BTreeSet::new(), BTreeSet::new()));
    let lookup = |name: &str| {
        let value = env.get(name).cloned();
        let mut seen = seen.borrow_mut();
        (if value.is_some() { &mut seen.0 } else { &mut seen.1 }).insert(name.to_string());
        value
    };
    let result = expand_word(word, &lookup, escape).ok();
    let (matched, unmatched) = seen.into_inner();
    Expanded { result, matched, unmatched }
}

/// The global scope: with the build's values, with the Dockerfile's defaults
/// alone, and every name declared (the automatic ones included).
struct Scopes {
    env: HashMap<String, String>,
    defaults: HashMap<String, String>,
    declared: BTreeSet<String>,
}

impl GlobalArgs {
    fn scopes(&self, df: &Dockerfile) -> Scopes {
        let escape = df.escape();
        let automatic: HashMap<String, String> = self.automatic.iter().cloned().collect();
        let (mut env, mut defaults) = (automatic.clone(), automatic);
        let mut declared: BTreeSet<String> = self.automatic.iter().map(|(k, _)| k.clone()).collect();
        for l in df.instructions.iter().take_while(|l| !matches!(l.instr, Instruction::From { .. })) {
            let Instruction::Arg(pairs) = &l.instr else { continue };
            for (name, default) in pairs {
                declared.insert(name.clone());
                let default_in = |scope: &HashMap<String, String>| default.as_ref().and_then(|d| expand(d, scope, escape).result);
                if let Some(v) = self.given.get(name).cloned().or_else(|| default_in(&env)) {
                    env.insert(name.clone(), v);
                }
                if let Some(v) = default_in(&defaults) {
                    defaults.insert(name.clone(), v);
                }
            }
        }
        Scopes { env, defaults, declared }
    }

    /// The names and values FROM lines see.
    pub fn scope(&self, df: &Dockerfile) -> HashMap<String, String> {
        self.scopes(df).env
    }
}

/// `word` expanded in `scope`; empty where it cannot be.
pub fn expand_in(word: &str, scope: &HashMap<String, String>, escape: char) -> String {
    expand(word, scope, escape).result.unwrap_or_default()
}

/// UndefinedArgInFrom, InvalidDefaultArgInFrom, RedundantTargetPlatform and
/// FromPlatformFlagConstDisallowed.
pub fn check(df: &Dockerfile, args: &GlobalArgs, out: &mut Vec<Finding>) {
    let escape = df.escape();
    let Scopes { env, defaults, declared } = args.scopes(df);
    let stages = df.instructions.iter().skip_while(|l| !matches!(l.instr, Instruction::From { .. }));
    let known: Vec<&String> = declared.iter().chain(env.keys()).collect();
    for l in stages {
        let Instruction::From { image, alias, platform } = &l.instr else { continue };
        let base = expand(image, &env, escape);
        undeclared(&base.unmatched, &declared, &known, l.line, out);
        let by_default = expand(image, &defaults, escape).result;
        if by_default.is_none_or(|b| crate::oci::ImageName::parse(&b).is_err()) {
            let message = format!("Default value for ARG {image} results in empty or invalid base image name");
            out.push(Finding { rule: Rule::InvalidDefaultArgInFrom, line: l.line, message });
        }
        if let Some(p) = platform {
            let plat = expand(p, &env, escape);
            undeclared(&plat.unmatched, &declared, &known, l.line, out);
            platform_value(p, &plat, &env, alias.as_deref().unwrap_or(""), l.line, out);
        }
    }
}

/// UndefinedArgInFrom for each name neither declared nor automatic, with BuildKit's
/// suggestion of a known name at most two edits away.
fn undeclared(unmatched: &BTreeSet<String>, declared: &BTreeSet<String>, known: &[&String], line: usize, out: &mut Vec<Finding>) {
    for name in unmatched.iter().filter(|n| !declared.contains(*n)) {
        let mut message = format!("FROM argument '{name}' is not declared");
        if let Some(near) = suggest(name, known) {
            message.push_str(&format!(" (did you mean {near}?)"));
        }
        out.push(Finding { rule: Rule::UndefinedArgInFrom, line, message });
    }
}

/// RedundantTargetPlatform (`--platform=$TARGETPLATFORM`, the default anyway) and
/// FromPlatformFlagConstDisallowed (a platform written as a constant, unless the
/// stage's name says which).
fn platform_value(written: &str, plat: &Expanded, env: &HashMap<String, String>, stage: &str, line: usize, out: &mut Vec<Finding>) {
    let Some(result) = &plat.result else { return };
    if plat.unmatched.is_empty() && plat.matched.len() == 1 && plat.matched.contains("TARGETPLATFORM") {
        if env.get("TARGETPLATFORM") == Some(result) {
            let message = format!("Setting platform to predefined {written} in FROM is redundant as this is the default behavior");
            out.push(Finding { rule: Rule::RedundantTargetPlatform, line, message });
        }
        return;
    }
    if !plat.matched.is_empty() || !plat.unmatched.is_empty() {
        return;
    }
    let Ok(p) = crate::platform::Platform::parse(result) else { return };
    if !stage.contains(&p.os) && !stage.contains(&p.architecture) {
        let message = format!("FROM --platform flag should not use constant value {result:?}");
        out.push(Finding { rule: Rule::FromPlatformFlagConstDisallowed, line, message });
    }
}

/// The option closest to `name` by edit distance, if two edits or fewer reach it
/// and it is not `name` itself (BuildKit's suggest.Search, case-sensitive).
pub fn suggest<'a>(name: &str, options: &[&'a String]) -> Option<&'a str> {
    if options.iter().any(|o| o.as_str() == name) {
        return None;
    }
    let mut best: Option<(usize, &str)> = None;
    for o in options {
        let d = levenshtein(name, o);
        if d < 3 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, o.as_str()));
        }
    }
    best.map(|(_, o)| o)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (row[j + 1] + 1).min(row[j] + 1).min(prev + usize::from(ca != *cb));
            prev = cur;
        }
    }
    row[b.len()]
}
