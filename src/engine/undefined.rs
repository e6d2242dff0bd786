//! UndefinedVar, judged as BuildKit judges it, while the build expands words: a
//! variable a step's words use that neither the image's ENV (the base image's
//! included, which only the build knows) nor a declared ARG defines. RUN, CMD,
//! ENTRYPOINT, SHELL and HEALTHCHECK are left alone: their words are the shell's.

use std::cell::RefCell;
use std::collections::BTreeSet;

use anyhow::{bail, Result};

use super::Build;
use crate::dockerfile::{Instruction, Located};
use crate::lint::{self, Finding, Rule};

/// The names a stage's expansions looked up and found nowhere, since last taken.
#[derive(Default)]
pub(super) struct Undefined(RefCell<BTreeSet<String>>);

impl Undefined {
    pub fn note(&self, name: &str) {
        self.0.borrow_mut().insert(name.to_string());
    }

    /// Reports what `step`'s words used undefined (`known` are the names defined,
    /// for BuildKit's "did you mean"); under `error=true` a finding stops the build.
    pub fn report(&self, b: &Build, step: &Located, known: &[String]) -> Result<()> {
        let names = std::mem::take(&mut *self.0.borrow_mut());
        let shells = matches!(
            step.instr,
            Instruction::Run(_) | Instruction::Cmd(_) | Instruction::Entrypoint(_) | Instruction::Shell(_) | Instruction::Healthcheck(_)
        );
        if shells || names.is_empty() || !b.checks.runs(Rule::UndefinedVar) {
            return Ok(());
        }
        let options: Vec<&String> = known.iter().collect();
        let findings: Vec<Finding> = names
            .iter()
            .map(|name| {
                let mut message = format!("Usage of undefined variable '${name}'");
                if let Some(near) = lint::suggest(name, &options) {
                    message.push_str(&format!(" (did you mean ${near}?)"));
                }
                Finding { rule: Rule::UndefinedVar, line: step.line, message }
            })
            .collect();
        for f in &findings {
            b.report.warn(&f.render(b.file));
        }
        if b.checks.error {
            bail!("{}", lint::violation_error(&findings));
        }
        Ok(())
    }
}
