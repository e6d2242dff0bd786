//! Typed instructions built from syntax-tree nodes.
//!
//! This is where a Dockerfile becomes strict: unknown instructions, unknown or
//! malformed flags and wrong argument counts are errors. Words stay exactly
//! as written (quotes, `$VAR`s and escapes included); the build expands them
//! with [`super::words`] once it knows the stage's environment.

use std::time::Duration;

use super::flags::{parse_go_duration, Flags, Kind};
use super::lines::parse_heredoc_marker;
use super::{Heredoc, Node, ParseErrorKind};

/// Exec form (`["a", "b"]`, run directly) or shell form (run by the SHELL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    Shell(String),
    Exec(Vec<String>),
}

/// RUN with its options; flag values are kept raw for the build to interpret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    pub command: CommandForm,
    pub heredocs: Vec<Heredoc>,
    /// `--mount=` values, in order.
    pub mounts: Vec<String>,
    pub network: Option<String>,
    pub security: Option<String>,
    pub devices: Vec<String>,
}

/// A COPY/ADD source: a path or URL pattern, or inline heredoc content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    Path(String),
    Heredoc(Heredoc),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    pub sources: Vec<CopySource>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddArgs {
    pub sources: Vec<CopySource>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    pub unpack: Option<bool>,
    pub exclude: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

/// What a HEALTHCHECK runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTest {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    Cmd(CommandForm),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    pub test: HealthTest,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// One Dockerfile instruction, words unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From {
        image: String,
        /// The stage name, lower-cased as BuildKit does.
        alias: Option<String>,
        platform: Option<String>,
    },
    Run(RunArgs),
    Cmd(CommandForm),
    Entrypoint(CommandForm),
    /// (name, raw value) pairs; values keep their quotes until expansion.
    Env(Vec<(String, String)>),
    /// (name, default) pairs.
    Arg(Vec<(String, Option<String>)>),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Workdir(String),
    User(String),
    Shell(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// The trigger, validated, plus its text as stored in the image config.
    Onbuild {
        trigger: Box<Instruction>,
        expression: String,
    },
    Maintainer(String),
    Copy(CopyArgs),
    Add(AddArgs),
}

/// An instruction with its place in the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub instr: Instruction,
    /// 1-based first and last line.
    pub line: usize,
    pub end_line: usize,
    /// The logical line as written (continuations joined).
    pub original: String,
}

impl Located {
    pub fn from_node(node: &Node) -> Result<Located, ParseErrorKind> {
        Ok(Located {
            instr: Instruction::from_node(node)?,
            line: node.start_line,
            end_line: node.end_line,
            original: node.original.clone(),
        })
    }
}

fn chomped(heredocs: &[Heredoc]) -> Vec<Heredoc> {
    heredocs
        .iter()
        .map(|h| {
            let mut h = h.clone();
            if h.chomp {
                h.content = h.content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect();
            }
            h
        })
        .collect()
}

fn pairs(args: &[String]) -> Vec<(String, String)> {
    args.chunks(3).map(|c| (c[0].clone(), c[1].clone())).collect()
}

fn command_form(node: &Node) -> CommandForm {
    if node.json_form {
        CommandForm::Exec(node.args.clone())
    } else {
        CommandForm::Shell(node.args.join(" "))
    }
}

fn exactly_one(node: &Node, name: &str) -> Result<String, ParseErrorKind> {
    match node.args.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(ParseErrorKind::ExactlyOneArgument(name.to_string())),
    }
}

fn at_least_one(node: &Node, name: &str) -> Result<(), ParseErrorKind> {
    if node.args.is_empty() {
        return Err(ParseErrorKind::AtLeastOneArgument(name.to_string()));
    }
    Ok(())
}

/// Splits COPY/ADD arguments into sources and destination, resolving
/// `<<NAME` sources to their heredocs.
fn sources_and_dest(node: &Node, name: &str, heredocs: &[Heredoc]) -> Result<(Vec<CopySource>, String), ParseErrorKind> {
    let Some((dest, srcs)) = node.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(ParseErrorKind::NoDestination(name.to_string()));
    };
    let mut sources = Vec::new();
    for src in srcs {
        let doc = if node.json_form {
            None
        } else {
            parse_heredoc_marker(src)?.and_then(|m| heredocs.iter().find(|h| h.name == m.name).cloned())
        };
        sources.push(match doc {
            Some(h) => CopySource::Heredoc(h),
            None => CopySource::Path(src.clone()),
        });
    }
    Ok((sources, dest.clone()))
}

/// Signal names moby's `signal.ParseSignal` knows on Linux (without `SIG`).
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT",
    "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

/// True for a STOPSIGNAL BuildKit accepts: a non-zero number, or a signal name
/// with or without `SIG`, in any case (`SIGTERM`, `term`, `RTMIN+3`).
pub fn is_signal(sig: &str) -> bool {
    if let Ok(n) = sig.parse::<i64>() {
        return n != 0;
    }
    let upper = sig.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |base: &str, sign: char| {
        name.strip_prefix(base).is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix(sign)
                    .and_then(|n| n.parse::<u8>().ok())
                    .is_some_and(|n| (1..=if sign == '+' { 15 } else { 14 }).contains(&n))
        })
    };
    SIGNALS.contains(&name) || realtime("RTMIN", '+') || realtime("RTMAX", '-')
}

fn is_stage_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase()) && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn health_duration(flags: &Flags, name: &str) -> Result<Option<Duration>, ParseErrorKind> {
    let Some(v) = flags.string(name) else {
        return Ok(None);
    };
    let bad = |reason: &str| ParseErrorKind::BadFlagValue { flag: name.to_string(), value: v.clone(), reason: reason.to_string() };
    let d = parse_go_duration(&v).ok_or_else(|| bad("not a duration"))?;
    if !d.is_zero() && d < Duration::from_millis(1) {
        return Err(bad("cannot be less than 1ms"));
    }
    Ok(Some(d))
}

fn healthcheck(node: &Node) -> Result<Healthcheck, ParseErrorKind> {
    let Some((typ, rest)) = node.args.split_first() else {
        return Err(ParseErrorKind::AtLeastOneArgument("HEALTHCHECK".into()));
    };
    let typ = typ.to_uppercase();
    // BuildKit never parses the flags of HEALTHCHECK NONE: they are ignored.
    let raw_flags: &[String] = if typ == "NONE" { &[] } else { &node.flags };
    let specs: &[(&str, Kind)] = &[
        ("interval", Kind::Str),
        ("timeout", Kind::Str),
        ("start-period", Kind::Str),
        ("start-interval", Kind::Str),
        ("retries", Kind::Str),
    ];
    let flags = Flags::parse("HEALTHCHECK", raw_flags, specs)?;
    let test = match typ.as_str() {
        "NONE" if rest.is_empty() => HealthTest::None,
        "NONE" => return Err(ParseErrorKind::Healthcheck("HEALTHCHECK NONE takes no arguments".into())),
        "CMD" if rest.is_empty() => return Err(ParseErrorKind::Healthcheck("missing command after HEALTHCHECK CMD".into())),
        "CMD" if node.json_form => HealthTest::Cmd(CommandForm::Exec(rest.to_vec())),
        "CMD" => HealthTest::Cmd(CommandForm::Shell(rest.join(" "))),
        other => return Err(ParseErrorKind::Healthcheck(format!("unknown type {other:?} in HEALTHCHECK (try CMD)"))),
    };
    let retries = match flags.string("retries") {
        None => None,
        Some(v) => Some(v.parse::<u32>().map_err(|_| ParseErrorKind::BadFlagValue {
            flag: "retries".into(),
            value: v.clone(),
            reason: "expecting a non-negative integer".into(),
        })?),
    };
    Ok(Healthcheck {
        test,
        interval: health_duration(&flags, "interval")?,
        timeout: health_duration(&flags, "timeout")?,
        start_period: health_duration(&flags, "start-period")?,
        start_interval: health_duration(&flags, "start-interval")?,
        retries,
    })
}

impl Instruction {
    /// Validates a node and converts it. Heredoc bodies of `<<-` markers get
    /// their leading tabs removed here.
    pub fn from_node(node: &Node) -> Result<Instruction, ParseErrorKind> {
        let upper = node.keyword.to_uppercase();
        match node.keyword.as_str() {
            "from" => from(node, &upper),
            "run" => run(node, &upper),
            "cmd" | "entrypoint" => command(node, &upper),
            "env" | "label" | "arg" => assignments(node, &upper),
            "expose" | "volume" | "shell" => lists(node, &upper),
            "workdir" | "user" | "stopsignal" | "maintainer" => single_word(node, &upper),
            "healthcheck" => Ok(Instruction::Healthcheck(healthcheck(node)?)),
            "onbuild" => onbuild(node, &upper),
            "copy" => copy(node, &upper),
            "add" => add(node, &upper),
            _ => {
                let word = node.original.split_whitespace().next().unwrap_or_default();
                Err(ParseErrorKind::UnknownInstruction(word.to_string()))
            }
        }
    }
}

/// Most instructions take no flags; parsing an empty spec rejects any given.
fn no_flags(node: &Node, upper: &str) -> Result<(), ParseErrorKind> {
    Flags::parse(upper, &node.flags, &[]).map(drop)
}

fn from(node: &Node, upper: &str) -> Result<Instruction, ParseErrorKind> {
    let flags = Flags::parse(upper, &node.flags, &[("platform", Kind::Str)])?;
    let alias = match node.args.as_slice() {
        [_] => None,
        [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            let name = name.to_lowercase();
            if !is_stage_name(&name) {
                return Err(ParseErrorKind::BadStageName(name));
            }
            Some(name)
        }
        _ => return Err(ParseErrorKind::BadFromArguments),
    };
    Ok(Instruction::From { image: node.args[0].clone(), alias, platform: flags.string("platform") })
}

fn run(node: &Node, upper: &str) -> Result<Instruction, ParseErrorKind> {
    let flags = Flags::parse(
        upper,
        &node.flags,
        &[("mount", Kind::Multi), ("network", Kind::Str), ("security", Kind::Str), ("device", Kind::Multi)],
    )?;
    at_least_one(node, upper)?;
    Ok(Instruction::Run(RunArgs {
        command: command_form(node),
        heredocs: chomped(&node.heredocs),
        mounts: flags.multi("mount"),
        network: flags.string("network"),
        security: flags.string("security"),
        devices: flags.multi("device"),
    }))
}

/// CMD and ENTRYPOINT.
fn command(node: &Node, upper: &str) -> Result<Instruction, ParseErrorKind> {
    no_flags(node, upper)?;
    Ok(if upper == "CMD" { Instruction::Cmd(command_form(node)) } else { Instruction::Entrypoint(command_form(node)) })
}

/// ENV, LABEL and ARG: `name=value` words (ARG's value optional).
fn assignments(node: &Node, upper: &str) -> Result<Instruction, ParseErrorKind> {
    no_flags(node, upper)?;
    at_least_one(node, upper)?;
    Ok(match upper {
        "ENV" => Instruction::Env(pairs(&node.args)),
        "LABEL" => Instruction::Label(pairs(&node.args)),
        _ => Instruction::Arg(
            node.args
                .iter()
                .map(|w| match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (w.clone(), None),
                })
                .collect(),
        ),
    })
}

/// EXPOSE, VOLUME and SHELL: one or more words.
fn lists(node: &Node, upper: &str) -> Result<Instruction, ParseErrorKind> {
    no_flags(node, upper)?;
    if upper == "SHELL" && !node.args.is_empty() && !node.json_form {
        return Err(ParseErrorKind::NeedsJson(upper.to_string()));
    }
    at_least_one(node, upper)?;
    Ok(match upper {
        "EXPOSE" => Instruction::Expose(node.args.clone()),
        "VOLUME" if node.args.iter().any(|v| v.trim().is_empty()) => return Err(ParseErrorKind::EmptyValue(upper.to_string())),
        "VOLUME" => Instruction::Volume(node.args.clone()),
        _ => Instruction::Shell(node.args.clone()),
    })
}

/// WORKDIR, USER, STOPSIGNAL and MAINTAINER: exactly one word.
fn single_word(node: &Node, upper: &str) -> Result<Instruction, ParseErrorKind> {
    no_flags(node, upper)?;
    let word = exactly_one(node, upper)?;
    Ok(match upper {
        "WORKDIR" => Instruction::Workdir(word),
        "USER" => Instruction::User(word),
        // A literal signal is checked now; one with variables after expansion.
        "STOPSIGNAL" if !word.contains('$') && !is_signal(&word) => return Err(ParseErrorKind::InvalidSignal(word)),
        "STOPSIGNAL" => Instruction::StopSignal(word),
        _ => Instruction::Maintainer(word),
    })
}

fn onbuild(node: &Node, upper: &str) -> Result<Instruction, ParseErrorKind> {
    no_flags(node, upper)?;
    let Some(sub) = node.onbuild.as_deref() else {
        return Err(ParseErrorKind::AtLeastOneArgument(upper.to_string()));
    };
    if matches!(sub.keyword.as_str(), "onbuild" | "from" | "maintainer") {
        return Err(ParseErrorKind::BadOnbuildTrigger(sub.keyword.to_uppercase()));
    }
    // The trigger's heredocs were read for the ONBUILD line.
    let mut sub = sub.clone();
    sub.heredocs = node.heredocs.clone();
    Ok(Instruction::Onbuild { trigger: Box::new(Instruction::from_node(&sub)?), expression: onbuild_expression(node) })
}

/// The trigger as BuildKit stores it: its heredoc bodies and terminators follow
/// the line, so the child build parses the whole instruction.
fn onbuild_expression(node: &Node) -> String {
    let trimmed = node.original.trim_start();
    let mut expression = trimmed[node.keyword.len().min(trimmed.len())..].trim().to_string();
    for doc in &node.heredocs {
        expression.push('\n');
        expression.push_str(&doc.content);
        expression.push_str(&doc.name);
    }
    expression
}

fn copy(node: &Node, upper: &str) -> Result<Instruction, ParseErrorKind> {
    let specs = [
        ("from", Kind::Str),
        ("chown", Kind::Str),
        ("chmod", Kind::Str),
        ("link", Kind::Bool),
        ("parents", Kind::Bool),
        ("exclude", Kind::Multi),
    ];
    let flags = Flags::parse(upper, &node.flags, &specs)?;
    let heredocs = chomped(&node.heredocs);
    let (sources, dest) = sources_and_dest(node, upper, &heredocs)?;
    Ok(Instruction::Copy(CopyArgs {
        sources,
        dest,
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        exclude: flags.multi("exclude"),
        heredocs,
    }))
}

fn add(node: &Node, upper: &str) -> Result<Instruction, ParseErrorKind> {
    let specs = [
        ("chown", Kind::Str),
        ("chmod", Kind::Str),
        ("link", Kind::Bool),
        ("keep-git-dir", Kind::Bool),
        ("checksum", Kind::Str),
        ("unpack", Kind::Bool),
        ("exclude", Kind::Multi),
    ];
    let flags = Flags::parse(upper, &node.flags, &specs)?;
    let heredocs = chomped(&node.heredocs);
    let (sources, dest) = sources_and_dest(node, upper, &heredocs)?;
    Ok(Instruction::Add(AddArgs {
        sources,
        dest,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        keep_git_dir: flags.bool("keep-git-dir"),
        checksum: flags.string("checksum"),
        unpack: flags.string("unpack").map(|v| v == "true"),
        exclude: flags.multi("exclude"),
        heredocs,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn one(line: &str) -> Result<Instruction, ParseErrorKind> {
        parse(line, "Dockerfile").map(|mut d| d.instructions.remove(0).instr).map_err(|e| *e.kind)
    }

    #[test]
    fn from_forms() {
        assert_eq!(
            one("FROM --platform=$P img:1 AS Build").unwrap(),
            Instruction::From { image: "img:1".into(), alias: Some("build".into()), platform: Some("$P".into()) }
        );
        assert!(one("FROM a b").is_err());
        assert!(one("FROM a AS 1x").is_err());
    }

    #[test]
    fn copy_with_flags_and_heredoc() {
        let i = one("COPY --from=b --link --chmod=644 <<-EOF a /dst/\n\thi\n\tEOF\n").unwrap();
        let Instruction::Copy(c) = i else { panic!() };
        assert_eq!(c.dest, "/dst/");
        assert_eq!(c.from.as_deref(), Some("b"));
        assert!(c.link && !c.parents);
        assert_eq!(c.sources.len(), 2);
        let CopySource::Heredoc(h) = &c.sources[0] else { panic!() };
        assert_eq!(h.content, "hi\n");
        assert_eq!(c.sources[1], CopySource::Path("a".into()));
        assert!(matches!(one("COPY onlyone"), Err(ParseErrorKind::NoDestination(_))));
        assert!(matches!(one("COPY --user=me a b"), Err(ParseErrorKind::UnknownFlag { .. })));
    }

    #[test]
    fn run_and_cmd() {
        let Instruction::Run(r) = one("RUN --mount=type=cache,target=/c --network=none make").unwrap() else { panic!() };
        assert_eq!(r.command, CommandForm::Shell("make".into()));
        assert_eq!(r.mounts, ["type=cache,target=/c"]);
        assert_eq!(r.network.as_deref(), Some("none"));
        assert_eq!(one("CMD [\"a\"]").unwrap(), Instruction::Cmd(CommandForm::Exec(vec!["a".into()])));
        assert!(one("CMD --doit a").is_err());
    }

    #[test]
    fn healthcheck_options() {
        let Instruction::Healthcheck(h) = one("HEALTHCHECK --interval=5s --retries=3 --start-interval=1s CMD curl x").unwrap() else {
            panic!()
        };
        assert_eq!(h.interval, Some(Duration::from_secs(5)));
        assert_eq!(h.retries, Some(3));
        assert_eq!(h.test, HealthTest::Cmd(CommandForm::Shell("curl x".into())));
        assert_eq!(
            one("HEALTHCHECK NONE").unwrap(),
            Instruction::Healthcheck(Healthcheck {
                test: HealthTest::None,
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
            })
        );
        let Instruction::Healthcheck(none) = one("HEALTHCHECK --interval=5s --bogus NONE").unwrap() else { panic!() };
        assert_eq!((none.test, none.interval), (HealthTest::None, None), "flags of NONE are ignored, as BuildKit does");
        assert!(one("HEALTHCHECK CONNECT TCP 7000").is_err());
        assert!(one("HEALTHCHECK CMD").is_err());
        assert!(one("HEALTHCHECK --interval=5 CMD x").is_err());
    }

    #[test]
    fn env_arg_label_onbuild() {
        assert_eq!(one("ENV a=\"x y\" b c").map_err(|_| ()), Err(()), "mixing forms is an error");
        assert_eq!(one("ENV a b c").unwrap(), Instruction::Env(vec![("a".into(), "b c".into())]));
        assert_eq!(one("ARG a b=1").unwrap(), Instruction::Arg(vec![("a".into(), None), ("b".into(), Some("1".into()))]));
        let Instruction::Onbuild { trigger, expression } = one("onbuild RUN echo hi").unwrap() else { panic!() };
        assert_eq!(expression, "RUN echo hi");
        assert!(matches!(*trigger, Instruction::Run(_)));
        assert!(one("ONBUILD FROM x").is_err());
        let Instruction::Onbuild { expression, .. } = one("ONBUILD RUN <<EOF cat > /x\nhello\nEOF\n").unwrap() else { panic!() };
        assert_eq!(expression, "RUN <<EOF cat > /x\nhello\nEOF");
        let child = parse(&expression, "ONBUILD").unwrap();
        let Instruction::Run(r) = &child.instructions[0].instr else { panic!() };
        assert_eq!(r.heredocs[0].content, "hello\n", "the child parse sees the body");
        assert!(one("SHELL /bin/sh").is_err());
        assert!(one("WORKDIR").is_err());
    }

    #[test]
    fn stopsignal_names_and_numbers() {
        for ok in ["SIGTERM", "term", "SigKill", "9", "37", "SIGRTMIN+3", "RTMAX-14", "rtmin", "$SIG", "${S:-TERM}"] {
            assert!(one(&format!("STOPSIGNAL {ok}")).is_ok(), "{ok}");
        }
        for bad in ["SIGFOO", "0", "TERMINATE", "RTMIN+16", "SIG", "-"] {
            assert_eq!(one(&format!("STOPSIGNAL {bad}")), Err(ParseErrorKind::InvalidSignal(bad.into())), "{bad}");
        }
    }
}
