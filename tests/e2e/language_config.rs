//! Word expansion, ARG scoping and the config every instruction leaves in the image,
//! with BuildKit's semantics (see `language.rs` for the helpers).

use serde_json::Value;

use crate::language::{assert_build_fails, assert_env, assert_no_env, inspect_full, sh, skip, Ctx};
use crate::support::{inspect_config, strata, strings};

#[test]
fn word_expansion_modifiers_and_escapes() {
    if skip("word_expansion_modifiers_and_escapes") {
        return;
    }
    let dockerfile = r#"FROM busybox
ARG SET=val
ARG EMPTY=
ENV A1=${SET:-x} A2=${EMPTY:-x} A3=${UNSET:-x} \
    B1=${SET-x} B2=${EMPTY-x} B3=${UNSET-x} \
    C1=${SET:+x} C2=${EMPTY:+x} C3=${UNSET:+x} \
    D1=${SET+x} D2=${EMPTY+x} D3=${UNSET+x} \
    E1=\$SET E2='$SET' E3="$SET" E4=pre${SET}post E5="${SET:?must be set}" E6=\${SET} \
    F1=${UNSET:-$SET} F2=${SET:+[$SET]}
ENV abc=hello
ENV abc=bye def=$abc
ENV ghi=$abc
ENV A=1
RUN echo '$A' > /literal.txt && echo "$A" > /shell.txt
"#;
    let ctx = Ctx::new("lang-expand", dockerfile);
    ctx.build_ok("lang-expand", &[]);
    let config = inspect_config("lang-expand");
    for want in [
        "A1=val",
        "A2=x",
        "A3=x",
        "B1=val",
        "B2=",
        "B3=x",
        "C1=x",
        "C2=",
        "C3=",
        "D1=x",
        "D2=x",
        "D3=",
        "E1=$SET",
        "E2=$SET",
        "E3=val",
        "E4=prevalpost",
        "E5=val",
        "E6=${SET}",
        "F1=val",
        "F2=[val]",
        "def=hello",
        "ghi=bye",
        "abc=bye",
    ] {
        assert_env(&config, want);
    }
    assert_no_env(&config, "SET");
    assert_no_env(&config, "EMPTY");
    let out = sh("lang-expand", "cat /literal.txt /shell.txt");
    assert_eq!(out, "$A\n1\n", "shell-form RUN is expanded by the shell, not the builder");
}

#[test]
fn word_expansion_in_every_expanding_instruction() {
    if skip("word_expansion_in_every_expanding_instruction") {
        return;
    }
    let dockerfile = r#"FROM busybox
ENV DIR=/opt/app PORT=8080 PROTO=udp WHO=app SIG=SIGUSR1 VOL=/data
LABEL lbl=${DIR} "key-$PORT"=v escaped=\$DIR
WORKDIR ${DIR}/sub
COPY f.txt ${DIR}/copied/
COPY f.txt $PORT.txt
COPY \$lit.txt /lit-copied.txt
EXPOSE $PORT ${PORT}/$PROTO
VOLUME $VOL ${DIR}/cache
STOPSIGNAL $SIG
USER ${WHO}:${WHO}
"#;
    let ctx = Ctx::new("lang-expand-instr", dockerfile);
    ctx.file("f.txt", "f\n").file("$lit.txt", "dollar file\n");
    ctx.build_ok("lang-expand-instr", &[]);
    let config = inspect_config("lang-expand-instr");
    assert_eq!(config["Labels"]["lbl"], "/opt/app", "{config:#}");
    assert_eq!(config["Labels"]["key-8080"], "v", "{config:#}");
    assert_eq!(config["Labels"]["escaped"], "$DIR", "{config:#}");
    assert_eq!(config["WorkingDir"], "/opt/app/sub", "{config:#}");
    assert!(config["ExposedPorts"]["8080/tcp"].is_object(), "{config:#}");
    assert!(config["ExposedPorts"]["8080/udp"].is_object(), "{config:#}");
    assert!(config["Volumes"]["/data"].is_object(), "{config:#}");
    assert!(config["Volumes"]["/opt/app/cache"].is_object(), "{config:#}");
    assert_eq!(config["StopSignal"], "SIGUSR1", "{config:#}");
    assert_eq!(config["User"], "app:app", "{config:#}");
    let out = sh("lang-expand-instr", "cat /opt/app/copied/f.txt /opt/app/sub/8080.txt /lit-copied.txt");
    assert_eq!(out, "f\nf\ndollar file\n", "COPY destinations expanded (and relative to WORKDIR); \\$ is a literal $");

    // ${V:?msg} with V unset fails the build with the (expanded) message.
    let ctx = Ctx::new("lang-expand-required", "FROM busybox\nENV MSG=expanded-message\nRUN true\nENV X=\"${NOPE:?$MSG}\"\n");
    let run = ctx.build("lang-expand-required", &[]);
    assert_build_fails(&run, "lang-expand-required", &["expanded-message", "NOPE"]);
    // Set but empty: `:?` fails too, `?` does not.
    let ctx = Ctx::new(
        "lang-expand-required-empty",
        "FROM busybox\nARG EMPTY=\nARG HINT=empty-is-an-error\nENV Y=${EMPTY?unused} X=${EMPTY:?$HINT}\n",
    );
    let run = ctx.build("lang-expand-required-empty", &[]);
    assert_build_fails(&run, "lang-expand-required-empty", &["empty-is-an-error"]);
}

#[test]
fn arg_defaults_scopes_and_build_args() {
    if skip("arg_defaults_scopes_and_build_args") {
        return;
    }
    let dockerfile = r#"ARG BASE=busybox
ARG GLOBAL=global-default
ARG SHADOW=outer
FROM ${BASE} AS first
RUN echo "global=[$GLOBAL]" > /before.txt
ARG GLOBAL
RUN echo "global=[$GLOBAL]" > /after.txt
ARG STAGE1=one
ARG SHADOW=inner
RUN echo "stage1=[$STAGE1] shadow=[$SHADOW]" > /stage1.txt
FROM $BASE
COPY --from=first /before.txt /after.txt /stage1.txt /
RUN echo "stage1=[$STAGE1] global=[$GLOBAL]" > /stage2.txt
ARG WITHDEFAULT=dflt
ARG OVERRIDDEN=dflt
ARG NOVALUE
RUN echo "[$WITHDEFAULT][$OVERRIDDEN][$NOVALUE][$HTTP_PROXY][$no_proxy][$UNDECLARED]" > /args.txt
ARG CHAIN=${WITHDEFAULT}-chained
RUN echo "$CHAIN" > /chain.txt
ARG FROMENV=arg
ENV FROMENV=env
RUN echo "$FROMENV" > /envwins.txt
ARG GLOBAL
ENV LABELLED=$GLOBAL
"#;
    let ctx = Ctx::new("lang-args", dockerfile);
    let run = ctx.build_ok(
        "lang-args",
        &[
            "--build-arg",
            "OVERRIDDEN=cli",
            "--build-arg",
            "GLOBAL=cli-global",
            "--build-arg",
            "HTTP_PROXY=http://proxy.invalid:3128",
            "--build-arg",
            "no_proxy=localhost",
            "--build-arg",
            "FROMENV=cliarg",
            "--build-arg",
            "UNDECLARED=never-seen",
        ],
    );
    let out = sh("lang-args", "cat /before.txt /after.txt /stage1.txt /stage2.txt /args.txt /chain.txt /envwins.txt");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "global=[]",
            "global=[cli-global]",
            "stage1=[one] shadow=[inner]",
            "stage1=[] global=[]",
            "[dflt][cli][][http://proxy.invalid:3128][localhost][]",
            "dflt-chained",
            "env",
        ],
        "ARG scopes: global ARGs only after a bare redeclaration, per-stage ARGs, proxy ARGs predefined, undeclared build args \
         invisible, ENV beats ARG"
    );
    let full = inspect_full("lang-args");
    let config = &full["config"];
    assert_env(config, "FROMENV=env");
    assert_env(config, "LABELLED=cli-global");
    for name in ["BASE", "GLOBAL", "WITHDEFAULT", "OVERRIDDEN", "NOVALUE", "HTTP_PROXY", "no_proxy", "STAGE1"] {
        assert_no_env(config, name);
    }
    let history = full["history"].to_string();
    assert!(!history.contains("proxy.invalid"), "proxy build args never reach the history: {history}");
    for line in run.stderr.lines().chain(run.stdout.lines()) {
        let lower = line.to_lowercase();
        if line.contains("HTTP_PROXY") || line.contains("no_proxy") {
            assert!(
                !lower.contains("unused") && !lower.contains("not consumed"),
                "predefined proxy ARGs are never reported as unused: {line}"
            );
        }
    }
}

/// A CMD/ENTRYPOINT case: name, Dockerfile body, expected Entrypoint and Cmd.
type Combination = (&'static str, &'static str, Option<&'static [&'static str]>, Option<&'static [&'static str]>);

#[test]
fn cmd_and_entrypoint_combinations() {
    if skip("cmd_and_entrypoint_combinations") {
        return;
    }
    // (name, instructions after FROM busybox, expected Entrypoint, expected Cmd)
    let cases: [Combination; 6] = [
        ("exec-exec", "ENTRYPOINT [\"echo\", \"ep\"]\nCMD [\"arg\"]\n", Some(&["echo", "ep"]), Some(&["arg"])),
        ("shell-cmd", "CMD echo shell-cmd\n", None, Some(&["/bin/sh", "-c", "echo shell-cmd"])),
        // ENTRYPOINT resets the CMD inherited from busybox (["sh"]).
        ("ep-resets", "ENTRYPOINT [\"echo\"]\n", Some(&["echo"]), None),
        ("ep-then-cmd", "ENTRYPOINT [\"echo\"]\nCMD [\"kept\"]\n", Some(&["echo"]), Some(&["kept"])),
        // A CMD set in this stage survives a later ENTRYPOINT.
        ("cmd-then-ep", "CMD [\"kept-too\"]\nENTRYPOINT [\"echo\"]\n", Some(&["echo"]), Some(&["kept-too"])),
        ("shell-ep", "ENTRYPOINT echo from shell\n", Some(&["/bin/sh", "-c", "echo from shell"]), None),
    ];
    for (name, body, entrypoint, cmd) in cases {
        let tag = format!("lang-cmd-{name}");
        let ctx = Ctx::new(&tag, &format!("FROM busybox\n{body}"));
        ctx.build_ok(&tag, &[]);
        let config = inspect_config(&tag);
        let got = |key: &str| -> Option<Vec<String>> {
            match &config[key] {
                Value::Null => None,
                Value::Array(items) if items.is_empty() => None,
                other => Some(strings(other)),
            }
        };
        assert_eq!(got("Entrypoint"), entrypoint.map(|e| e.iter().map(|s| s.to_string()).collect()), "{name}: Entrypoint in {config:#}");
        assert_eq!(got("Cmd"), cmd.map(|c| c.iter().map(|s| s.to_string()).collect()), "{name}: Cmd in {config:#}");
    }
    let out = strata(["run", "--rm", "lang-cmd-exec-exec"]).ok();
    assert_eq!(out.stdout, "ep arg\n", "{}", out.describe());
    let out = strata(["run", "--rm", "lang-cmd-exec-exec", "other"]).ok();
    assert_eq!(out.stdout, "ep other\n", "{}", out.describe());
}

#[test]
fn env_label_expose_volume_workdir_stopsignal() {
    if skip("env_label_expose_volume_workdir_stopsignal") {
        return;
    }
    let dockerfile = r#"FROM busybox
ENV PATH=$PATH:/extra
ENV LEGACY value with  spaces
ENV Q="quoted value" R=Rex\ The\ Dog S='single $x' \
    T=plain
LABEL one=1 "two words"="2" three="3"
LABEL one=overridden
EXPOSE 80 53/udp 443/tcp
VOLUME ["/v1", "/v2"]
VOLUME /v3 /v4
WORKDIR /a
WORKDIR b
RUN pwd > /pwd.txt
WORKDIR c/d
STOPSIGNAL SIGQUIT
"#;
    let ctx = Ctx::new("lang-meta", dockerfile);
    ctx.build_ok("lang-meta", &[]);
    let config = inspect_config("lang-meta");
    for want in ["LEGACY=value with  spaces", "Q=quoted value", "R=Rex The Dog", "S=single $x", "T=plain"] {
        assert_env(&config, want);
    }
    let paths: Vec<String> = strings(&config["Env"]).into_iter().filter(|e| e.starts_with("PATH=")).collect();
    assert_eq!(paths, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/extra"], "PATH extended in place: {config:#}");
    assert_eq!(config["Labels"]["one"], "overridden", "{config:#}");
    assert_eq!(config["Labels"]["two words"], "2", "{config:#}");
    assert_eq!(config["Labels"]["three"], "3", "{config:#}");
    let mut ports: Vec<&String> = config["ExposedPorts"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    ports.sort_unstable();
    assert_eq!(ports, ["443/tcp", "53/udp", "80/tcp"], "{config:#}");
    let mut volumes: Vec<&String> = config["Volumes"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    volumes.sort_unstable();
    assert_eq!(volumes, ["/v1", "/v2", "/v3", "/v4"], "{config:#}");
    assert_eq!(config["WorkingDir"], "/a/b/c/d", "{config:#}");
    assert_eq!(config["StopSignal"], "SIGQUIT", "{config:#}");
    let out = sh("lang-meta", "cat /pwd.txt; test -d /a/b/c/d && echo dir-exists; pwd");
    assert_eq!(out, "/a/b\ndir-exists\n/a/b/c/d\n", "WORKDIR chains relative paths and creates the dirs");
}

#[test]
fn user_applies_to_run() {
    if skip("user_applies_to_run") {
        return;
    }
    let dockerfile = r#"FROM busybox
USER app
RUN id -u > /tmp/u1 && id -g > /tmp/g1 && id -un > /tmp/n1
USER 1000:65534
RUN id -u > /tmp/u2 && id -g > /tmp/g2
USER nobody
RUN id -u > /tmp/u3
USER root
RUN cat /tmp/u1 /tmp/g1 /tmp/n1 /tmp/u2 /tmp/g2 /tmp/u3 > /ids.txt && stat -c %u:%g /tmp/u1 >> /ids.txt
USER app
"#;
    let ctx = Ctx::new("lang-user", dockerfile);
    ctx.build_ok("lang-user", &[]);
    assert_eq!(sh("lang-user", "cat /ids.txt"), "1000\n1000\napp\n1000\n65534\n65534\n1000:1000\n");

    // BuildKit creates a missing WORKDIR (each missing component) owned by USER.
    let ctx = Ctx::new("lang-user-workdir", "FROM busybox\nUSER app\nWORKDIR /srv/app\nUSER root\nWORKDIR /root-owned\n");
    ctx.build_ok("lang-user-workdir", &[]);
    assert_eq!(sh("lang-user-workdir", "stat -c %u:%g:%a /srv /srv/app /root-owned"), "1000:1000:755\n1000:1000:755\n0:0:755\n");
    assert_eq!(inspect_config("lang-user")["User"], "app");
    let out = strata(["run", "--rm", "lang-user", "id", "-u"]).ok();
    assert_eq!(out.stdout, "1000\n", "the image's User applies to run: {}", out.describe());
}

#[test]
fn shell_changes_shell_form() {
    if skip("shell_changes_shell_form") {
        return;
    }
    let dockerfile = r#"FROM busybox
COPY --chmod=0755 myshell /bin/myshell
SHELL ["/bin/sh", "-ec"]
RUN echo "$-" > /flags.txt
SHELL ["/bin/myshell", "-c"]
RUN echo via-custom > /custom.txt
RUN ["/bin/sh", "-c", "echo exec-form > /exec.txt"]
CMD run me
ENTRYPOINT also shell
"#;
    let ctx = Ctx::new("lang-shell", dockerfile);
    ctx.file("myshell", "#!/bin/sh\necho \"myshell got: $*\" >> /shell.log\nexec /bin/sh \"$@\"\n");
    ctx.build_ok("lang-shell", &[]);
    let out = sh("lang-shell", "cat /flags.txt /custom.txt /exec.txt /shell.log");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() == 4, "{out}");
    assert!(lines[0].contains('e'), "SHELL [\"/bin/sh\",\"-ec\"] gives set -e: $- = {:?}", lines[0]);
    assert_eq!(&lines[1..], ["via-custom", "exec-form", "myshell got: -c echo via-custom > /custom.txt"], "exec-form RUN ignores SHELL");
    let config = inspect_config("lang-shell");
    assert_eq!(strings(&config["Shell"]), ["/bin/myshell", "-c"], "{config:#}");
    assert_eq!(strings(&config["Cmd"]), ["/bin/myshell", "-c", "run me"], "{config:#}");
    assert_eq!(strings(&config["Entrypoint"]), ["/bin/myshell", "-c", "also shell"], "{config:#}");
}

#[test]
fn healthcheck_options_and_none() {
    if skip("healthcheck_options_and_none") {
        return;
    }
    let ctx = Ctx::new(
        "lang-health",
        "FROM busybox\nHEALTHCHECK --interval=30s --timeout=5s --start-period=10s --start-interval=2s --retries=4 CMD [\"true\"]\n",
    );
    ctx.build_ok("lang-health", &[]);
    let config = inspect_config("lang-health");
    let health = &config["Healthcheck"];
    assert_eq!(strings(&health["Test"]), ["CMD", "true"], "{config:#}");
    assert_eq!(health["Interval"], 30_000_000_000u64, "{config:#}");
    assert_eq!(health["Timeout"], 5_000_000_000u64, "{config:#}");
    assert_eq!(health["StartPeriod"], 10_000_000_000u64, "{config:#}");
    assert_eq!(health["StartInterval"], 2_000_000_000u64, "{config:#}");
    assert_eq!(health["Retries"], 4, "{config:#}");

    // Shell form: CMD-SHELL; a later HEALTHCHECK replaces an earlier one.
    let ctx = Ctx::new("lang-health-shell", "FROM lang-health\nHEALTHCHECK --interval=1m30s CMD test -f /ok || exit 1\n");
    ctx.build_ok("lang-health-shell", &[]);
    let health = inspect_config("lang-health-shell")["Healthcheck"].clone();
    assert_eq!(strings(&health["Test"]), ["CMD-SHELL", "test -f /ok || exit 1"], "{health:#}");
    assert_eq!(health["Interval"], 90_000_000_000u64, "{health:#}");

    // NONE disables the inherited check.
    let ctx = Ctx::new("lang-health-none", "FROM lang-health\nHEALTHCHECK NONE\n");
    ctx.build_ok("lang-health-none", &[]);
    let health = inspect_config("lang-health-none")["Healthcheck"].clone();
    assert_eq!(strings(&health["Test"]), ["NONE"], "{health:#}");

    // BuildKit never parses the flags of NONE: they are accepted and ignored.
    let ctx = Ctx::new("lang-health-none-flags", "FROM lang-health\nHEALTHCHECK --interval=5s --retries=9 NONE\n");
    ctx.build_ok("lang-health-none-flags", &[]);
    let health = inspect_config("lang-health-none-flags")["Healthcheck"].clone();
    assert_eq!(strings(&health["Test"]), ["NONE"], "{health:#}");
    assert!(health["Interval"].is_null() && health["Retries"].is_null(), "the flags are not recorded: {health:#}");
}

#[test]
fn onbuild_triggers_run_in_the_child() {
    if skip("onbuild_triggers_run_in_the_child") {
        return;
    }
    let parent = Ctx::new(
        "lang-onbuild-parent",
        "FROM busybox\n\
         ONBUILD RUN echo triggered > /onbuild.txt\n\
         ONBUILD COPY child.txt /from-child-context.txt\n\
         ONBUILD ENV TRIGGER_ENV=${PARENT_ENV}-x\n\
         ONBUILD RUN <<EOF\n\
         echo from-heredoc-trigger > /heredoc.txt\n\
         EOF\n\
         ENV PARENT_ENV=p\n\
         LABEL parent=yes\n",
    );
    parent.build_ok("lang-onbuild-parent", &[]);
    let config = inspect_config("lang-onbuild-parent");
    assert_eq!(
        strings(&config["OnBuild"]),
        [
            "RUN echo triggered > /onbuild.txt",
            "COPY child.txt /from-child-context.txt",
            "ENV TRIGGER_ENV=${PARENT_ENV}-x",
            "RUN <<EOF\necho from-heredoc-trigger > /heredoc.txt\nEOF"
        ],
        "{config:#}"
    );
    assert_eq!(sh("lang-onbuild-parent", "test -e /onbuild.txt && echo ran || echo not-run"), "not-run\n", "triggers wait for a child");

    let child = Ctx::new("lang-onbuild-child", "FROM lang-onbuild-parent\nRUN cat /onbuild.txt > /seen.txt\n");
    child.file("child.txt", "child context\n");
    child.build_ok("lang-onbuild-child", &[]);
    assert_eq!(
        sh("lang-onbuild-child", "cat /seen.txt /from-child-context.txt /heredoc.txt"),
        "triggered\nchild context\nfrom-heredoc-trigger\n",
        "a trigger keeps its heredoc body, as BuildKit stores it"
    );
    let config = inspect_config("lang-onbuild-child");
    assert!(strings(&config["OnBuild"]).is_empty(), "a child does not inherit the triggers: {config:#}");
    assert_eq!(config["Labels"]["parent"], "yes", "{config:#}");
    // The payload is expanded when the trigger runs, with the child's env.
    assert_env(&config, "TRIGGER_ENV=p-x");

    // A grandchild runs no trigger again: its context has no child.txt for the COPY.
    let grandchild = Ctx::new("lang-onbuild-grandchild", "FROM lang-onbuild-child\nRUN echo grandchild > /g.txt\n");
    grandchild.build_ok("lang-onbuild-grandchild", &[]);
    assert_eq!(sh("lang-onbuild-grandchild", "cat /g.txt /seen.txt"), "grandchild\ntriggered\n");

    // Triggers also fire when a stage of the same Dockerfile is the base.
    let stages = Ctx::new(
        "lang-onbuild-stages",
        "FROM busybox AS parent\nONBUILD RUN echo in-stage-trigger > /t.txt\nRUN test ! -e /t.txt\nFROM parent\nRUN cat /t.txt > /seen.txt\n",
    );
    stages.build_ok("lang-onbuild-stages", &[]);
    assert_eq!(sh("lang-onbuild-stages", "cat /seen.txt"), "in-stage-trigger\n");
}

#[test]
fn maintainer_sets_author() {
    if skip("maintainer_sets_author") {
        return;
    }
    let ctx = Ctx::new("lang-maintainer", "FROM busybox\nMAINTAINER Jane Doe <jane@example.com>\n");
    ctx.build_ok("lang-maintainer", &[]);
    let full = inspect_full("lang-maintainer");
    assert_eq!(full["author"], "Jane Doe <jane@example.com>", "{full:#}");
}

#[test]
fn expose_ranges_and_stopsignal_forms() {
    if skip("expose_ranges_and_stopsignal_forms") {
        return;
    }
    let ctx = Ctx::new("lang-expose-range", "FROM busybox\nEXPOSE 8000-8002/tcp 9000/UDP 7-7\nSTOPSIGNAL rtmin+3\n");
    ctx.build_ok("lang-expose-range", &[]);
    let config = inspect_config("lang-expose-range");
    let mut ports: Vec<&String> = config["ExposedPorts"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    ports.sort_unstable();
    assert_eq!(ports, ["7/tcp", "8000/tcp", "8001/tcp", "8002/tcp", "9000/udp"], "a range is one key per port: {config:#}");
    assert_eq!(config["StopSignal"], "rtmin+3", "kept as written: {config:#}");

    for (name, body, needles) in [
        ("name", "STOPSIGNAL SIGFOO\n", &["Dockerfile:2", "SIGFOO"][..]),
        ("zero", "RUN true\nSTOPSIGNAL 0\n", &["Dockerfile:3", "invalid signal"][..]),
        ("expanded", "ARG SIG=NOPE\nSTOPSIGNAL $SIG\n", &["Dockerfile:3", "NOPE"][..]),
    ] {
        let tag = format!("lang-stopsignal-{name}");
        let ctx = Ctx::new(&tag, &format!("FROM busybox\n{body}"));
        let run = ctx.build(&tag, &[]);
        assert_build_fails(&run, &tag, needles);
    }
    for (i, ok) in ["SIGKILL", "kill", "9", "SigUsr1"].iter().enumerate() {
        let tag = format!("lang-stopsignal-ok-{i}");
        Ctx::new(&tag, &format!("FROM busybox\nARG S={ok}\nSTOPSIGNAL $S\n")).build_ok(&tag, &[]);
        assert_eq!(inspect_config(&tag)["StopSignal"], *ok);
    }
}

#[test]
fn shell_form_cmd_and_entrypoint_keep_variables_literally() {
    if skip("shell_form_cmd_and_entrypoint_keep_variables_literally") {
        return;
    }
    let ctx = Ctx::new("lang-cmd-literal", "FROM busybox\nENV GREETING=hi\nARG WHO=you\nENTRYPOINT echo $GREETING\nCMD echo ${WHO}\n");
    ctx.build_ok("lang-cmd-literal", &[]);
    let config = inspect_config("lang-cmd-literal");
    assert_eq!(strings(&config["Entrypoint"]), ["/bin/sh", "-c", "echo $GREETING"], "the shell expands it at run time: {config:#}");
    assert_eq!(strings(&config["Cmd"]), ["/bin/sh", "-c", "echo ${WHO}"], "{config:#}");
}

#[test]
fn proxy_args_reach_run_only() {
    if skip("proxy_args_reach_run_only") {
        return;
    }
    let proxy = "http://user:secret@proxy.invalid:3128";
    let dockerfile = "FROM busybox\n\
        ENV P=\"[$HTTP_PROXY]\"\n\
        LABEL proxy=\"[${HTTP_PROXY}]\"\n\
        RUN echo \"run sees $HTTP_PROXY\" > /run.txt\n";
    let ctx = Ctx::new("lang-proxy", dockerfile);
    ctx.build_ok("lang-proxy", &["--build-arg", &format!("HTTP_PROXY={proxy}")]);
    assert_eq!(sh("lang-proxy", "cat /run.txt"), format!("run sees {proxy}\n"), "RUN's environment has the predefined ARG");
    let config = inspect_config("lang-proxy");
    assert_env(&config, "P=[]");
    assert_eq!(config["Labels"]["proxy"], "[]", "an undeclared proxy ARG is not a Dockerfile variable: {config:#}");
    let full = inspect_full("lang-proxy");
    assert!(!full.to_string().contains("secret@proxy"), "the proxy is in no config or history: {full:#}");
    let history = strata(["history", "lang-proxy"]).ok();
    assert!(!history.stdout.contains("secret@proxy"), "{}", history.describe());

    // Declared with ARG, it is an ordinary ARG.
    let ctx = Ctx::new("lang-proxy-declared", "FROM busybox\nARG HTTP_PROXY\nENV P=\"[$HTTP_PROXY]\"\n");
    ctx.build_ok("lang-proxy-declared", &["--build-arg", "HTTP_PROXY=http://declared.invalid"]);
    assert_env(&inspect_config("lang-proxy-declared"), "P=[http://declared.invalid]");
}
