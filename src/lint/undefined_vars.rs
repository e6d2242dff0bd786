//! UndefinedVar for `build --check`, which builds nothing: each stage's names
//! followed through the Dockerfile (its base image's ENV, then its ARGs and ENVs)
//! and each expanded word's variables checked against them, as BuildKit checks
//! them. A build judges the rule itself as it expands (`engine::undefined`).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use super::from_args::{expand_in, suggest, GlobalArgs};
use super::{Finding, Rule};
use crate::dockerfile::{expand_word, CopySource, Dockerfile, Instruction};

/// The names a base image's config defines (its ENV keys), by the FROM reference
/// as expanded; None when the image is not at hand.
pub type BaseEnv<'a> = &'a dyn Fn(&str) -> Option<Vec<String>>;

/// The findings, and a note for each stage whose base image was not at hand.
pub fn check(df: &Dockerfile, args: &GlobalArgs, base_env: BaseEnv<'_>, out: &mut Vec<Finding>) -> Vec<String> {
    let escape = df.escape();
    let global = args.scope(df);
    let mut stages: HashMap<String, Option<BTreeSet<String>>> = HashMap::new();
    let mut current: Option<BTreeSet<String>> = None;
    let mut name: Option<String> = None;
    let mut notes = Vec::new();
    for l in df.instructions.iter().skip_while(|l| !matches!(l.instr, Instruction::From { .. })) {
        if let Instruction::From { image, alias, .. } = &l.instr {
            if let Some(done) = name.take() {
                stages.insert(done, current.take());
            }
            let base = expand_in(image, &global, escape);
            current = match stages.get(&base.to_lowercase()) {
                Some(known) => known.clone(),
                None if base.eq_ignore_ascii_case("scratch") => Some(BTreeSet::from(["PATH".to_string()])),
                None => base_env(&base).map(|env| env.into_iter().collect()),
            };
            if current.is_none() {
                notes.push(format!("line {}: UndefinedVar not judged in this stage: {base} is not in the local store", l.line));
            }
            name = alias.clone();
            continue;
        }
        let Some(known) = current.as_mut() else { continue };
        for word in expanded_words(&l.instr) {
            for missing in unknown_in(word, known, escape) {
                let options: Vec<&String> = known.iter().collect();
                let mut message = format!("Usage of undefined variable '${missing}'");
                if let Some(near) = suggest(&missing, &options) {
                    message.push_str(&format!(" (did you mean ${near}?)"));
                }
                out.push(Finding { rule: Rule::UndefinedVar, line: l.line, message });
            }
        }
        match &l.instr {
            Instruction::Env(pairs) => known.extend(pairs.iter().map(|(k, _)| k.clone())),
            Instruction::Arg(pairs) => known.extend(pairs.iter().map(|(k, _)| k.clone())),
            _ => {}
        }
    }
    notes
}

/// The words BuildKit expands in an instruction: not RUN's, CMD's, ENTRYPOINT's,
/// SHELL's or HEALTHCHECK's, which are the shell's.
fn expanded_words(instr: &Instruction) -> Vec<&str> {
    match instr {
        Instruction::Env(pairs) | Instruction::Label(pairs) => pairs.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]).collect(),
        Instruction::Arg(pairs) => pairs.iter().filter_map(|(_, d)| d.as_deref()).collect(),
        Instruction::Copy(c) => {
            let mut w = paths(&c.sources);
            w.push(&c.dest);
            w.extend(c.chown.as_deref().into_iter().chain(c.chmod.as_deref()));
            w
        }
        Instruction::Add(a) => {
            let mut w = paths(&a.sources);
            w.push(&a.dest);
            w.extend(a.chown.as_deref().into_iter().chain(a.chmod.as_deref()));
            w
        }
        Instruction::Expose(items) | Instruction::Volume(items) => items.iter().map(String::as_str).collect(),
        Instruction::Workdir(s) | Instruction::User(s) | Instruction::StopSignal(s) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

/// The context paths among COPY's or ADD's sources (heredocs are not words).
fn paths(sources: &[CopySource]) -> Vec<&str> {
    sources.iter().filter_map(|s| if let CopySource::Path(p) = s { Some(p.as_str()) } else { None }).collect()
}

/// The variables `word` uses that are not in `known`.
fn unknown_in(word: &str, known: &BTreeSet<String>, escape: char) -> BTreeSet<String> {
    let missing = RefCell::new(BTreeSet::new());
    let lookup = |n: &str| {
        if known.contains(n) {
            Some(String::new())
        } else {
            missing.borrow_mut().insert(n.to_string());
            None
        }
    };
    let _ = expand_word(word, &lookup, escape);
    missing.into_inner()
}
