//! Dockerfile text to typed instructions with source spans.
//!
//! Parsing happens in three layers, each usable on its own:
//!
//! 1. [`lines`]: physical lines to logical lines (parser directives,
//!    comments, continuations, heredoc bodies);
//! 2. [`node`]: a logical line to a [`Node`], the syntax tree BuildKit's parser
//!    builds (its printout, [`Tree::dump`], matches BuildKit's golden files);
//! 3. [`instruction`]: a node to a typed [`Instruction`], rejecting unknown
//!    instructions and flags.
//!
//! Words are never expanded here: `$VAR` references stay as written because
//! their values depend on the build stage's ARG/ENV state at execution time.
//! `words` holds the pure expansion functions the build uses later ([`expand_word`],
//! [`expand_words`]).
//!
//! Layering: this module imports no other strata module.

mod flags;
mod glob;
mod ignore;
mod instruction;
mod lines;
mod mount;
mod node;
mod pattern;
mod words;

#[cfg(test)]
mod conformance_tests;

pub use glob::{glob_below, has_meta, matches as glob_matches, split_wildcards};
pub use ignore::Ignore;
pub use instruction::{is_signal, AddArgs, CommandForm, CopyArgs, CopySource, HealthTest, Healthcheck, Instruction, Located, RunArgs};
pub use lines::Directives;
pub use mount::{mount_from, parse_mount, MountError, MountKind, RunMount, Sharing};
pub use node::{Heredoc, Node};
pub(crate) use words::Lexer;
pub use words::{expand_word, expand_words, ExpandError, ExpandErrorKind, Lookup};

use lines::{heredocs_in_line, LineReader};

/// What went wrong while parsing, without the location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("file with no instructions")]
    NoInstructions,
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
    #[error("unterminated heredoc {0}")]
    UnterminatedHeredoc(String),
    #[error("invalid heredoc: {0}")]
    Heredoc(ExpandError),
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    #[error("{0} must have two arguments")]
    NeedsTwoArguments(String),
    #[error("syntax error - can't find = in {0:?}, must be of the form: name=value")]
    MissingEquals(String),
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    #[error("unknown flag: {flag} for {instruction}")]
    UnknownFlag { instruction: String, flag: String },
    #[error("duplicate flag specified: {0}")]
    DuplicateFlag(String),
    #[error("missing a value on flag: {0}")]
    FlagNeedsValue(String),
    #[error("invalid value {value:?} for flag {flag}: {reason}")]
    BadFlagValue { flag: String, value: String, reason: String },
    #[error("{0} requires at least one argument")]
    AtLeastOneArgument(String),
    #[error("{0} requires exactly one argument")]
    ExactlyOneArgument(String),
    #[error("{0} requires at least two arguments, but only one was provided: destination could not be determined")]
    NoDestination(String),
    #[error("FROM requires either one or three arguments")]
    BadFromArguments,
    #[error("invalid name for build stage: {0:?}, name can't start with a number or contain symbols")]
    BadStageName(String),
    #[error("{0} requires the arguments to be in JSON form")]
    NeedsJson(String),
    #[error("{0}")]
    Healthcheck(String),
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    BadOnbuildTrigger(String),
    #[error("{0} specified can not be an empty string")]
    EmptyValue(String),
    #[error("invalid signal: {0} (expected a signal name such as SIGTERM or TERM, or a number)")]
    InvalidSignal(String),
}

/// A parse failure located in the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {kind}{}", show_line(.text))]
pub struct ParseError {
    pub file: String,
    /// 1-based first line of the offending instruction (0 for an empty file).
    pub line: usize,
    pub end_line: usize,
    /// The offending logical line, continuations joined.
    pub text: String,
    /// Boxed to keep `Result<_, ParseError>` small.
    pub kind: Box<ParseErrorKind>,
}

fn show_line(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" (line: {text:?})")
    }
}

/// The syntax tree of a whole Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub directives: Directives,
    pub nodes: Vec<Node>,
}

impl Tree {
    /// One `(node)` line per instruction: BuildKit's golden test format.
    pub fn dump(&self) -> String {
        self.nodes.iter().map(|n| format!("({})\n", n.dump())).collect()
    }
}

/// A parsed and validated Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub tree: Tree,
    pub instructions: Vec<Located>,
}

impl Dockerfile {
    /// The escape character in effect (`\` or a backtick), needed to expand words.
    pub fn escape(&self) -> char {
        self.tree.directives.escape
    }

    pub fn dump(&self) -> String {
        self.tree.dump()
    }
}

/// Parses and validates a Dockerfile. `file` names it in error messages.
pub fn parse(text: &str, file: &str) -> Result<Dockerfile, ParseError> {
    let tree = parse_tree(text, file)?;
    let instructions = tree
        .nodes
        .iter()
        .map(|n| {
            Located::from_node(n).map_err(|kind| ParseError {
                file: file.to_string(),
                line: n.start_line,
                end_line: n.end_line,
                text: n.original.clone(),
                kind: Box::new(kind),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Dockerfile { tree, instructions })
}

/// Builds the syntax tree only, accepting whatever BuildKit's parser accepts
/// (unknown instructions and flags included).
pub fn parse_tree(text: &str, file: &str) -> Result<Tree, ParseError> {
    let mut reader = LineReader::new(text);
    let mut nodes = Vec::new();
    let err = |line: usize, end_line: usize, text: &str, kind| ParseError {
        file: file.to_string(),
        line,
        end_line,
        text: text.to_string(),
        kind: Box::new(kind),
    };
    loop {
        let logical = match reader.next_logical() {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => return Err(err(e.line, e.end_line, "", e.kind)),
        };
        let escape = reader.directives.escape;
        let fail = |kind| err(logical.start_line, logical.end_line, &logical.text, kind);
        let mut node = node::node_from_line(&logical.text, escape).map_err(fail)?;
        node.start_line = logical.start_line;
        if node.can_contain_heredoc() {
            for mut doc in heredocs_in_line(&logical.text).map_err(fail)? {
                doc.content = reader
                    .read_heredoc(&doc.name, doc.chomp)
                    .map_err(|kind| err(logical.start_line, reader.line_number(), &logical.text, kind))?;
                node.heredocs.push(doc);
            }
        }
        node.end_line = reader.line_number();
        if let Some(sub) = node.onbuild.as_deref_mut() {
            sub.start_line = node.start_line;
            sub.end_line = node.end_line;
        }
        nodes.push(node);
    }
    if nodes.is_empty() {
        let line = reader.line_number();
        return Err(err(line, line, "", ParseErrorKind::NoInstructions));
    }
    Ok(Tree { directives: reader.directives.clone(), nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_file_line_and_text() {
        let e = parse("FROM x\n\nFOO bar\n", "Dockerfile").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.to_string(), "Dockerfile:3: unknown instruction: FOO (line: \"FOO bar\")");
    }

    #[test]
    fn heredocs_are_attached_with_lines() {
        let text = "FROM x\nRUN <<EOF cat <<-'B'\necho $A\nEOF\n\tliteral $B\n\tB\nCOPY <<X /x\nhi\nX\n";
        let df = parse(text, "Dockerfile").unwrap();
        let run = &df.tree.nodes[1];
        assert_eq!((run.start_line, run.end_line), (2, 6));
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[0].content, "echo $A\n");
        assert!(run.heredocs[0].expand);
        assert!(!run.heredocs[1].expand && run.heredocs[1].chomp);
        assert_eq!(df.tree.nodes[2].start_line, 7);
        match &df.instructions[1].instr {
            Instruction::Run(r) => assert_eq!(r.heredocs[1].content, "literal $B\n"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unterminated_heredoc_fails() {
        assert!(parse("FROM x\nRUN <<EOF\necho\n", "Dockerfile").is_err());
    }

    #[test]
    fn json_form_has_no_heredocs() {
        let df = parse("FROM x\nRUN [\"<<EOF\"]\nEOF\n", "Dockerfile");
        assert!(df.is_err(), "EOF is then an unknown instruction");
    }
}
