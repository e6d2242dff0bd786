//! The Dockerfile language with BuildKit's semantics (issue 3), checked end to end
//! through the built images' files and configs: the parser (continuations, directives,
//! forms, flags, parse errors) and heredocs here; word expansion, ARG scoping and the
//! config of every instruction in `language_config.rs`; COPY/ADD and `.dockerignore` in
//! `language_copy.rs`; multi-stage builds, the oci-archive round trip of Docker's config
//! extensions and the failure modes in `language_stages.rs`.
//!
//! Every test writes its own context into a scratch dir and tags with a `lang-` prefix.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::support::{inspect_config, path_str, scratch, skip_without_sandbox, strata, strings, with_base, Run};

/// A build context written into a fresh scratch dir.
pub struct Ctx {
    pub dir: PathBuf,
}

impl Ctx {
    /// A context holding only `Dockerfile` with `dockerfile` as its text.
    pub fn new(name: &str, dockerfile: &str) -> Ctx {
        let ctx = Ctx { dir: scratch(name) };
        ctx.file("Dockerfile", dockerfile);
        ctx
    }

    /// Writes `rel` (creating its parents) and returns self for chaining.
    pub fn file(&self, rel: &str, content: &str) -> &Ctx {
        let path = self.dir.join(rel);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create context dir");
        fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self
    }

    pub fn path(&self) -> String {
        path_str(&self.dir)
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// `strata build -t TAG EXTRA... CONTEXT`.
    #[track_caller]
    pub fn build(&self, tag: &str, extra: &[&str]) -> Run {
        let mut args = vec!["build".to_owned(), "-t".to_owned(), tag.to_owned()];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.push(self.path());
        strata(args)
    }

    /// Builds and panics unless the build succeeded.
    #[track_caller]
    pub fn build_ok(&self, tag: &str, extra: &[&str]) -> Run {
        self.build(tag, extra).ok()
    }
}

/// True (after printing why) when the test must return early; see support.
pub fn skip(test: &str) -> bool {
    if skip_without_sandbox(test) {
        return true;
    }
    with_base();
    false
}

/// Runs `sh -c SCRIPT` as root in a container of `image` (ENTRYPOINT cleared) and returns
/// its stdout.
#[track_caller]
pub fn sh(image: &str, script: &str) -> String {
    strata(["run", "--rm", "--user", "0", "--entrypoint", "", image, "/bin/sh", "-c", script]).ok().stdout
}

/// The whole `strata inspect` document (config, author, history, ...).
#[track_caller]
pub fn inspect_full(image: &str) -> Value {
    match strata(["inspect", image]).ok().json() {
        Value::Array(mut items) if items.len() == 1 => items.remove(0),
        other => other,
    }
}

/// The Env of an image as (name, value) lookups.
pub fn env_of(config: &Value) -> Vec<String> {
    strings(&config["Env"])
}

#[track_caller]
pub fn assert_env(config: &Value, want: &str) {
    let env = env_of(config);
    assert!(env.iter().any(|e| e == want), "expected {want:?} in Env {env:?}");
}

#[track_caller]
pub fn assert_no_env(config: &Value, name: &str) {
    let env = env_of(config);
    let prefix = format!("{name}=");
    assert!(!env.iter().any(|e| e.starts_with(&prefix)), "{name} must not be in Env {env:?}");
}

/// Asserts that `tag` names no image in the store.
#[track_caller]
pub fn assert_untagged(tag: &str) {
    let inspect = strata(["inspect", tag]);
    assert!(!inspect.success(), "a failed build must tag nothing, but {tag} exists: {}", inspect.describe());
    let images = strata(["images"]).ok();
    assert!(!images.stdout.contains(tag), "a failed build must tag nothing: {}", images.stdout);
}

/// Asserts a failed build: exit status 1, every needle in stderr, nothing tagged.
#[track_caller]
pub fn assert_build_fails(run: &Run, tag: &str, needles: &[&str]) {
    assert_eq!(run.code, Some(1), "the build must fail with exit status 1: {}", run.describe());
    for needle in needles {
        assert!(run.stderr.contains(needle), "stderr should mention {needle:?}: {}", run.describe());
    }
    assert_untagged(tag);
}

/// Lines of `text`, trimmed, sorted.
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect();
    lines.sort_unstable();
    lines
}

#[test]
fn parser_continuations_directives_case_and_forms() {
    if skip("parser_continuations_directives_case_and_forms") {
        return;
    }
    let ctx = Ctx::new(
        "lang-parser",
        "# syntax=docker/dockerfile:1\n\
         # check=skip=JSONArgsRecommended\n\
         \n\
         # a comment before FROM\n\
         from busybox\n\
         run echo one \\\n\
         # a comment inside the continuation\n\
         \x20   two \\\n\
         \n\
         \x20   three > /cont.txt\n\
         Label \"k 1\"=\"v 1\" \\\n\
         \x20     k2=v2\n\
         eNv X=1\n\
         Copy --chmod=0600 a.txt /flagged.txt\n\
         RUN [\"/bin/sh\", \"-c\", \"echo json-$X > /json.txt\"]\n\
         RUN echo shell-$X > /shell.txt\n\
         RUN [\"/bin/sh\", \"-c\", \"echo '$X' > /exec-literal.txt\"]\n\
         EntryPoint echo hi\n\
         cmd [\"echo\", \"exec\"]\n",
    );
    ctx.file("a.txt", "a\n");
    ctx.build_ok("lang-parser", &[]);
    let out = sh("lang-parser", "cat /cont.txt /json.txt /shell.txt /exec-literal.txt; stat -c %a /flagged.txt");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["one two three", "json-1", "shell-1", "$X", "600"],
        "continuation with a comment and an empty line inside, JSON and shell RUN, COPY --chmod"
    );
    let config = inspect_config("lang-parser");
    assert_eq!(config["Labels"]["k 1"], "v 1", "{config:#}");
    assert_eq!(config["Labels"]["k2"], "v2", "{config:#}");
    assert_env(&config, "X=1");
    assert_eq!(strings(&config["Entrypoint"]), ["/bin/sh", "-c", "echo hi"], "shell-form ENTRYPOINT: {config:#}");
    assert_eq!(strings(&config["Cmd"]), ["echo", "exec"], "exec-form CMD after ENTRYPOINT stays: {config:#}");

    // Not valid JSON: BuildKit falls back to the shell form for CMD/RUN/ENTRYPOINT.
    let ctx = Ctx::new("lang-parser-notjson", "FROM busybox\nCMD ['single', 'quotes']\n");
    ctx.build_ok("lang-parser-notjson", &[]);
    let config = inspect_config("lang-parser-notjson");
    assert_eq!(strings(&config["Cmd"]), ["/bin/sh", "-c", "['single', 'quotes']"], "{config:#}");
}

#[test]
fn parser_escape_directive_backtick() {
    if skip("parser_escape_directive_backtick") {
        return;
    }
    let ctx = Ctx::new(
        "lang-escape",
        "# escape=`\n\
         FROM busybox\n\
         ENV WINPATH=C:\\tools\\bin\n\
         RUN echo first `\n\
         \x20   second > /escaped.txt\n\
         LABEL quoted=`\"q`\" dollar=`$NOT\n",
    );
    ctx.build_ok("lang-escape", &[]);
    assert_eq!(sh("lang-escape", "cat /escaped.txt"), "first second\n", "backtick continues the line");
    let config = inspect_config("lang-escape");
    assert_env(&config, "WINPATH=C:\\tools\\bin");
    assert_eq!(config["Labels"]["quoted"], "\"q\"", "{config:#}");
    assert_eq!(config["Labels"]["dollar"], "$NOT", "{config:#}");
}

#[test]
fn parse_errors_name_the_line_and_run_nothing() {
    if skip("parse_errors_name_the_line_and_run_nothing") {
        return;
    }
    // An unknown instruction on line 3: nothing runs, not even the RUN before it.
    let ctx = Ctx::new("lang-perr-unknown", "FROM busybox\nRUN echo marker-$((6*7))\nFOO bar\n");
    let run = ctx.build("lang-perr-unknown", &[]);
    assert_build_fails(&run, "lang-perr-unknown", &["Dockerfile:3", "FOO bar"]);
    assert!(run.stderr.to_lowercase().contains("unknown instruction"), "{}", run.describe());
    assert!(!run.stdout.contains("marker-42") && !run.stderr.contains("marker-42"), "parsing fails before any step: {}", run.describe());

    // An unknown flag.
    let ctx = Ctx::new("lang-perr-flag", "FROM busybox\n\nCOPY --bogus=1 a b\n");
    ctx.file("a", "a");
    let run = ctx.build("lang-perr-flag", &[]);
    assert_build_fails(&run, "lang-perr-flag", &["Dockerfile:3", "bogus"]);

    // SHELL requires JSON; a malformed array is an error.
    let ctx = Ctx::new("lang-perr-json", "FROM busybox\nRUN true\nSHELL [\"/bin/sh\", \"-c\"\n");
    let run = ctx.build("lang-perr-json", &[]);
    assert_build_fails(&run, "lang-perr-json", &["Dockerfile:3"]);
    assert!(run.stderr.contains("JSON") || run.stderr.contains("json"), "the error says JSON is required: {}", run.describe());

    // A flag an instruction does not take.
    let ctx = Ctx::new("lang-perr-flag2", "FROM busybox\nRUN --chown=1 true\n");
    let run = ctx.build("lang-perr-flag2", &[]);
    assert_build_fails(&run, "lang-perr-flag2", &["Dockerfile:2", "chown"]);
}

#[test]
fn heredocs_in_run_and_copy() {
    if skip("heredocs_in_run_and_copy") {
        return;
    }
    let dockerfile = "FROM busybox\n\
        ENV WHO=world\n\
        ARG VERSION=1.2.3\n\
        RUN <<EOF\n\
        echo \"hello $WHO\" > /simple.txt\n\
        echo '$WHO' >> /simple.txt\n\
        EOF\n\
        RUN <<EOF\n\
        #!/bin/awk -f\n\
        BEGIN { print \"from awk\" > \"/shebang.txt\" }\n\
        EOF\n\
        RUN <<-EOF cat > /tabs.txt\n\
        \tindented\n\
        \t\ttwo tabs\n\
        \tEOF\n\
        RUN <<'EOF' cat > /quoted.txt\n\
        $WHO stays\n\
        EOF\n\
        RUN <<EOF cat > /unquoted.txt\n\
        $WHO expanded\n\
        EOF\n\
        RUN <<A cat > /a.txt && <<B cat > /b.txt\n\
        first\n\
        A\n\
        second\n\
        B\n\
        COPY <<EOF /etc/app.conf\n\
        version=${VERSION}\n\
        who=$WHO\n\
        EOF\n\
        COPY <<'EOF' /etc/raw.conf\n\
        version=${VERSION}\n\
        EOF\n\
        COPY --chmod=0755 <<EOF /usr/local/bin/hi\n\
        #!/bin/sh\n\
        echo \"hi from $WHO\"\n\
        EOF\n\
        RUN hi > /hi.txt && stat -c %a /usr/local/bin/hi >> /hi.txt\n\
        COPY <<\"EOF\" /etc/dq.conf\n\
        who=$WHO\n\
        EOF\n\
        COPY <<-EOF /chomped.txt\n\
        \talpha\n\
        \t\tbeta\n\
        \tEOF\n\
        WORKDIR /w\n\
        COPY <<EOF rel.txt\n\
        relative to the workdir\n\
        EOF\n\
        RUN echo after-heredocs > /after.txt\n";
    let ctx = Ctx::new("lang-heredoc", dockerfile);
    ctx.build_ok("lang-heredoc", &[]);
    let files = [
        ("/simple.txt", "hello world\n$WHO\n"),
        ("/shebang.txt", "from awk\n"),
        ("/tabs.txt", "indented\ntwo tabs\n"),
        ("/quoted.txt", "$WHO stays\n"),
        ("/unquoted.txt", "world expanded\n"),
        ("/a.txt", "first\n"),
        ("/b.txt", "second\n"),
        ("/etc/app.conf", "version=1.2.3\nwho=world\n"),
        ("/etc/raw.conf", "version=${VERSION}\n"),
        ("/etc/dq.conf", "who=$WHO\n"),
        ("/chomped.txt", "alpha\nbeta\n"),
        ("/hi.txt", "hi from world\n755\n"),
        ("/w/rel.txt", "relative to the workdir\n"),
        ("/after.txt", "after-heredocs\n"),
    ];
    let script: Vec<String> = files.iter().map(|(path, _)| format!("echo '=== {path}'; cat {path}")).collect();
    let out = sh("lang-heredoc", &script.join("; "));
    let expected: String = files.iter().map(|(path, content)| format!("=== {path}\n{content}")).collect();
    assert_eq!(out, expected, "heredoc results");
    let config = inspect_config("lang-heredoc");
    assert_no_env(&config, "VERSION");
}
