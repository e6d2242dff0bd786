//! The rules themselves, each as BuildKit words and places it: the whole file's
//! (instruction casing, stage names), and each stage's, walked in order with what
//! a stage inherits from the stage it is built on (a SHELL, a WORKDIR).

use std::collections::HashMap;

use super::{Finding, Rule};
use crate::dockerfile::{CommandForm, CopySource, Dockerfile, Ignore, Instruction, Node};

/// Every rule's findings, unfiltered, in no particular order.
pub fn all(df: &Dockerfile, ignore: &Ignore) -> Vec<Finding> {
    let mut out = Vec::new();
    let first_from = df.tree.nodes.iter().position(|n| n.keyword == "from").unwrap_or(df.tree.nodes.len());
    let staged: Vec<(&Node, &Instruction)> =
        df.tree.nodes.iter().zip(&df.instructions).skip(first_from).map(|(n, l)| (n, &l.instr)).collect();
    instruction_casing(&staged, &mut out);
    stage_names(&staged, &mut out);
    let mut walk = StageWalk::default();
    for (node, instr) in staged {
        walk.step(node, instr, ignore, &mut out);
    }
    out
}

fn finding(rule: Rule, line: usize, message: String) -> Finding {
    Finding { rule, line, message }
}

/// The instruction's name as written (`RUN`, `run`, `Run`).
fn written_keyword(node: &Node) -> &str {
    node.original.split_whitespace().next().unwrap_or(&node.keyword)
}

fn is_one_case(s: &str) -> bool {
    s == s.to_lowercase() || s == s.to_uppercase()
}

/// ConsistentInstructionCasing: each instruction is written in the case most of
/// them are; one in mixed case (`Run`) is always a finding. A tie counts as
/// upper case, as in BuildKit.
fn instruction_casing(staged: &[(&Node, &Instruction)], out: &mut Vec<Finding>) {
    let (mut lower, mut upper) = (0, 0);
    for (node, _) in staged {
        let name = written_keyword(node);
        if is_one_case(name) {
            if name == name.to_lowercase() {
                lower += 1;
            } else {
                upper += 1;
            }
        }
    }
    let majority_lower = lower > upper;
    for (node, _) in staged {
        let name = written_keyword(node);
        let wanted = match majority_lower {
            true if name != name.to_lowercase() => "lowercase",
            false if name != name.to_uppercase() => "uppercase",
            _ => continue,
        };
        let message = format!("Command '{name}' should match the case of the command majority ({wanted})");
        out.push(finding(Rule::ConsistentInstructionCasing, node.start_line, message));
    }
}

/// StageNameCasing, FromAsCasing, ReservedStageName and DuplicateStageName, on
/// each `FROM image AS name`.
fn stage_names(staged: &[(&Node, &Instruction)], out: &mut Vec<Finding>) {
    let mut seen = std::collections::HashSet::new();
    for (node, _) in staged.iter().filter(|(n, _)| n.keyword == "from") {
        let [_, as_word, name] = node.args.as_slice() else { continue };
        let line = node.start_line;
        if name != &name.to_lowercase() {
            out.push(finding(Rule::StageNameCasing, line, format!("Stage name '{name}' should be lowercase")));
        }
        let from = written_keyword(node);
        // A FROM in mixed case is ConsistentInstructionCasing's finding alone.
        let as_matches = if from == from.to_lowercase() {
            as_word == &as_word.to_lowercase()
        } else {
            from != from.to_uppercase() || as_word == &as_word.to_uppercase()
        };
        if !as_matches {
            out.push(finding(Rule::FromAsCasing, line, format!("'{as_word}' and '{from}' keywords' casing do not match")));
        }
        let name = name.to_lowercase();
        if name == "context" || name == "scratch" {
            let message = format!("Stage name should not use the same name as reserved stage {name:?}");
            out.push(finding(Rule::ReservedStageName, line, message));
        }
        if !seen.insert(name.clone()) {
            out.push(finding(Rule::DuplicateStageName, line, format!("Duplicate stage name {name:?}, stage names should be unique")));
        }
    }
}

/// What a stage has set so far that later rules ask about.
#[derive(Clone, Default)]
struct StageState {
    /// A SHELL is in effect (then CMD's shell form is what the author chose).
    shell_set: bool,
    /// A WORKDIR was set in this Dockerfile, here or in the stage built on.
    workdir_set: bool,
    /// The line of the stage's last CMD, ENTRYPOINT and HEALTHCHECK.
    last: HashMap<&'static str, usize>,
}

/// The stages walked in order, named ones kept for the stages built on them.
#[derive(Default)]
struct StageWalk {
    current: StageState,
    named: HashMap<String, StageState>,
    name: Option<String>,
}

impl StageWalk {
    fn step(&mut self, node: &Node, instr: &Instruction, ignore: &Ignore, out: &mut Vec<Finding>) {
        let line = node.start_line;
        let name = written_keyword(node);
        match instr {
            Instruction::From { image, alias, .. } => self.begin(image, alias.as_deref()),
            Instruction::Shell(_) => self.current.shell_set = true,
            Instruction::Cmd(form) | Instruction::Entrypoint(form) => {
                self.used_once(node, out);
                if matches!(form, CommandForm::Shell(_)) && !self.current.shell_set {
                    let message = format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals");
                    out.push(finding(Rule::JsonArgsRecommended, line, message));
                }
            }
            Instruction::Healthcheck(_) => self.used_once(node, out),
            Instruction::Workdir(path) => {
                // A path that starts with a variable may well be absolute: BuildKit
                // judges the expanded path, which is not known here.
                let path = path.trim_matches(|c| c == '"' || c == '\'');
                if !self.current.workdir_set && !path.starts_with('/') && !path.starts_with('$') {
                    let message = format!("Relative workdir {path:?} can have unexpected results if the base image changes");
                    out.push(finding(Rule::WorkdirRelativePath, line, message));
                }
                self.current.workdir_set = true;
            }
            Instruction::Env(pairs) => {
                legacy_key_value(node, out);
                for (key, _) in pairs {
                    secret_key("ENV", key, line, out);
                }
            }
            Instruction::Label(_) => legacy_key_value(node, out),
            Instruction::Arg(args) => args.iter().for_each(|(key, _)| secret_key("ARG", key, line, out)),
            Instruction::Maintainer(_) => {
                let message = "Maintainer instruction is deprecated in favor of using label".to_string();
                out.push(finding(Rule::MaintainerDeprecated, line, message));
            }
            Instruction::Copy(c) if c.from.is_none() => copied_ignored("Copy", &c.sources, ignore, line, out),
            Instruction::Add(a) => copied_ignored("Add", &a.sources, ignore, line, out),
            _ => {}
        }
    }

    /// A new stage: it starts from the named stage it is built on, if any.
    fn begin(&mut self, image: &str, alias: Option<&str>) {
        if let Some(name) = self.name.take() {
            self.named.insert(name, std::mem::take(&mut self.current));
        }
        let base = self.named.get(&image.to_lowercase()).cloned().unwrap_or_default();
        // CMD and the rest are counted per stage; what the base stage had is not "used" here.
        self.current = StageState { last: HashMap::new(), ..base };
        self.name = alias.map(str::to_lowercase);
    }

    /// MultipleInstructionsDisallowed: the earlier of two is the one reported,
    /// since it is the one without effect.
    fn used_once(&mut self, node: &Node, out: &mut Vec<Finding>) {
        let key = match node.keyword.as_str() {
            "cmd" => "cmd",
            "entrypoint" => "entrypoint",
            _ => "healthcheck",
        };
        if let Some(earlier) = self.current.last.insert(key, node.start_line) {
            let name = written_keyword(node);
            let message =
                format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used");
            out.push(finding(Rule::MultipleInstructionsDisallowed, earlier, message));
        }
    }
}

/// LegacyKeyValueFormat: `ENV key value` (and LABEL's) instead of `key=value`.
/// The node holds (name, value, separator) triples, the separator empty there.
fn legacy_key_value(node: &Node, out: &mut Vec<Finding>) {
    if node.args.chunks(3).any(|t| t.get(2).is_some_and(|sep| sep.is_empty())) {
        let name = written_keyword(node);
        let message = format!("\"{name} key=value\" should be used instead of legacy \"{name} key value\" format");
        out.push(finding(Rule::LegacyKeyValueFormat, node.start_line, message));
    }
}

/// SecretsUsedInArgOrEnv: a name with a word of BuildKit's secret list in it
/// (`_`-separated, any case), and no word of its allow list.
fn secret_key(instruction: &str, key: &str, line: usize, out: &mut Vec<Finding>) {
    const DENY: [&str; 10] = ["apikey", "auth", "credential", "credentials", "key", "password", "pword", "passwd", "secret", "token"];
    const ALLOW: [&str; 3] = ["public", "file", "version"];
    let has = |list: &[&str]| key.split('_').any(|w| list.iter().any(|t| w.eq_ignore_ascii_case(t)));
    if has(&DENY) && !has(&ALLOW) {
        let message = format!("Do not use ARG or ENV instructions for sensitive data ({instruction} {key:?})");
        out.push(finding(Rule::SecretsUsedInArgOrEnv, line, message));
    }
}

/// CopyIgnoredFile: a context source the ignore file excludes. As BuildKit, only
/// with an ignore file that has no `!` exceptions (those make the answer depend
/// on what is below a directory), and `.` only when everything is ignored.
fn copied_ignored(cmd: &str, sources: &[CopySource], ignore: &Ignore, line: usize, out: &mut Vec<Finding>) {
    if ignore.is_empty() || ignore.has_exceptions() {
        return;
    }
    for source in sources {
        let CopySource::Path(src) = source else { continue };
        // URLs and git sources are not in the context; a variable's value is not known here.
        if src.contains("://") || src.starts_with("git@") || src.contains('$') {
            continue;
        }
        let cleaned = crate::clean_path::clean_abs(src);
        let rel = cleaned.trim_start_matches('/');
        let excluded = if rel.is_empty() { ignore.ignores_everything() } else { ignore.matches(rel) };
        if excluded {
            let shown = if rel.is_empty() { "." } else { rel };
            let message = format!("Attempting to {cmd} file {shown:?} that is excluded by .dockerignore");
            out.push(finding(Rule::CopyIgnoredFile, line, message));
        }
    }
}
