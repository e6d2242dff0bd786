//! A stage's variables at one step: the image's ENV and the stage's ARGs, and word
//! expansion with them (ENV wins over ARG).

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};

use crate::dockerfile::expand_word;
use crate::dockerfile::Lexer;

use super::undefined::Undefined;

/// The variables a step sees, borrowed from the stage.
pub(super) struct Vars<'a> {
    /// The image's Env (`K=V`).
    pub env: &'a [String],
    /// ARGs declared in the stage so far; `None` = declared without a value.
    pub args: &'a BTreeMap<String, Option<String>>,
    /// The Dockerfile's escape character.
    pub escape: char,
    /// Where names expansion found nowhere are noted (UndefinedVar), if anywhere.
    pub undefined: Option<&'a Undefined>,
}

impl Vars<'_> {
    /// A variable's value for expansion: ENV wins over ARG. The predefined proxy
    /// ARGs are not variables of the Dockerfile until an `ARG` declares them, as in
    /// BuildKit: undeclared, they reach only RUN's environment.
    pub fn lookup(&self, name: &str) -> Option<String> {
        env_get(self.env, name).or_else(|| self.args.get(name).cloned().flatten())
    }

    /// [`lookup`](Self::lookup) for expansion: a name found nowhere, not even as an
    /// ARG declared without a value, is noted.
    fn lookup_noting(&self, name: &str) -> Option<String> {
        let value = self.lookup(name);
        if let (None, Some(undefined)) = (&value, self.undefined) {
            if !self.args.contains_key(name) {
                undefined.note(name);
            }
        }
        value
    }

    pub fn expand(&self, word: &str) -> Result<String> {
        let lookup = |name: &str| self.lookup_noting(name);
        expand_word(word, &lookup, self.escape).map_err(|e| anyhow!("{e}"))
    }

    /// Heredoc bodies expand like a shell here-document: variables, but quotes are
    /// kept as written.
    pub fn expand_heredoc(&self, body: &str) -> Result<String> {
        let mut lexer = Lexer::new(self.escape);
        lexer.raw_quotes = true;
        lexer.raw_escapes = true;
        let lookup = |name: &str| self.lookup_noting(name);
        Ok(lexer.process(body, &lookup).map_err(|e| anyhow!("{e}"))?.0)
    }
}

/// The value of `key` in a `K=V` list.
pub(super) fn env_get(env: &[String], key: &str) -> Option<String> {
    env.iter().find_map(|e| e.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_wins_over_arg_and_undeclared_is_empty() {
        let env = vec!["A=env".to_string()];
        let args = BTreeMap::from([("A".to_string(), Some("arg".to_string())), ("B".to_string(), Some("b".to_string()))]);
        let vars = Vars { env: &env, args: &args, escape: '\\', undefined: None };
        assert_eq!(vars.expand("$A-$B-${C:-c}").unwrap(), "env-b-c");
        assert_eq!(vars.expand_heredoc("\"$B\"").unwrap(), "\"b\"");
    }
}
