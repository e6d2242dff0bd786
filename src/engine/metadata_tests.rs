//! Tests for the metadata instructions: each rule on a bare config, no store.

use super::*;
use crate::dockerfile::{expand_word, parse};

/// Applies the instructions of `text` in order with one scope, each word expanded
/// with the config's Env from before its instruction (as the build and commit do).
fn apply_text(config: &mut ImageConfig, scope: &mut MetadataScope, text: &str) -> Result<Vec<Applied>> {
    let df = parse(text, "test").expect("the test Dockerfile parses");
    let mut applied = Vec::new();
    for step in &df.instructions {
        let env = config_env(config);
        let expand = |w: &str| expand_word(w, &env, '\\').map_err(|e| anyhow!("{e}"));
        applied.push(apply_metadata(config, &step.instr, scope, &expand)?);
    }
    Ok(applied)
}

/// A config built by `text` from nothing, in a fresh scope.
fn built(text: &str) -> ContainerConfig {
    let mut config = ImageConfig::default();
    apply_text(&mut config, &mut MetadataScope::default(), text).unwrap();
    config.config.unwrap_or_default()
}

/// An image config as a base image (or a committed container's image) has it.
fn inherited(cfg: ContainerConfig) -> ImageConfig {
    ImageConfig { config: Some(cfg), ..Default::default() }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn entrypoint_resets_an_inherited_cmd() {
    let mut config = inherited(ContainerConfig { cmd: Some(strings(&["sh"])), ..Default::default() });
    apply_text(&mut config, &mut MetadataScope::default(), "ENTRYPOINT [\"x\"]").unwrap();
    let cfg = config.config.unwrap();
    assert_eq!(cfg.entrypoint, Some(strings(&["x"])));
    assert_eq!(cfg.cmd, None, "the base's CMD was meant for the base's entrypoint");
}

#[test]
fn cmd_then_entrypoint_keeps_cmd() {
    let mut config = inherited(ContainerConfig { cmd: Some(strings(&["sh"])), ..Default::default() });
    let mut scope = MetadataScope::default();
    apply_text(&mut config, &mut scope, "CMD [\"a\"]").unwrap();
    // A later instruction in the same scope (the next --change, the next step).
    apply_text(&mut config, &mut scope, "ENTRYPOINT [\"x\"]").unwrap();
    let cfg = config.config.unwrap();
    assert_eq!(cfg.cmd, Some(strings(&["a"])));
    assert_eq!(cfg.entrypoint, Some(strings(&["x"])));
    // ENTRYPOINT first, then CMD: both stay.
    let cfg = built("ENTRYPOINT [\"x\"]\nCMD [\"b\"]");
    assert_eq!((cfg.entrypoint, cfg.cmd), (Some(strings(&["x"])), Some(strings(&["b"]))));
}

#[test]
fn stopsignal_is_validated_after_expansion() {
    assert_eq!(built("STOPSIGNAL SIGKILL").stop_signal.as_deref(), Some("SIGKILL"));
    assert_eq!(built("ENV S=9\nSTOPSIGNAL $S").stop_signal.as_deref(), Some("9"));
    // The parser refuses a literal bad signal; one from a variable reaches here.
    let mut config = ImageConfig::default();
    let err = apply_text(&mut config, &mut MetadataScope::default(), "ENV S=NOPE\nSTOPSIGNAL $S").unwrap_err();
    assert!(err.to_string().contains("invalid signal: \"NOPE\""), "{err}");
    let bare = Instruction::StopSignal("SIGNOPE".into());
    let err = apply_metadata(&mut config, &bare, &mut MetadataScope::default(), &|w| Ok(w.to_string())).unwrap_err();
    assert!(err.to_string().contains("invalid signal"), "{err}");
    assert_eq!(config.config.unwrap().stop_signal, None, "a refused signal changes nothing");
}

#[test]
fn workdir_records_absolute_paths_as_written_and_joins_relative_ones() {
    // What BuildKit (Docker 20.10) records in WorkingDir, checked against it.
    let mut config = inherited(ContainerConfig { working_dir: Some("/a".into()), ..Default::default() });
    let mut scope = MetadataScope::default();
    let applied = apply_text(&mut config, &mut scope, "WORKDIR b/./c/../d\nWORKDIR ..\nWORKDIR /x/../y/\nWORKDIR z/").unwrap();
    let want = ["/a/b/d", "/a/b", "/x/../y/", "/y/z"].map(|w| Applied::Workdir(w.into()));
    assert_eq!(applied, want, "absolute: as written; relative: joined and cleaned");
    assert_eq!(config.config.unwrap().working_dir.as_deref(), Some("/y/z"));
    assert_eq!(built("WORKDIR /x/y/").working_dir.as_deref(), Some("/x/y/"), "the trailing slash is kept");
    assert_eq!(built("WORKDIR /x/y/\nWORKDIR ..").working_dir.as_deref(), Some("/x"));
    assert_eq!(built("WORKDIR /x\nWORKDIR a/").working_dir.as_deref(), Some("/x/a"));
    assert_eq!(built("WORKDIR x/../y").working_dir.as_deref(), Some("/y"), "relative to / when unset");
    assert_eq!(built("ENV D=/srv\nWORKDIR $D/app/..").working_dir.as_deref(), Some("/srv/app/.."));
    assert_eq!(built("WORKDIR /x\nENV E=\nWORKDIR $E").working_dir.as_deref(), Some("/x"), "empty: the current one");
}

#[test]
fn shell_form_commands_use_the_configs_shell() {
    let cfg = built("SHELL [\"/bin/bash\", \"-eo\", \"pipefail\", \"-c\"]\nCMD echo $HOME\nENTRYPOINT exec run");
    assert_eq!(cfg.cmd, Some(strings(&["/bin/bash", "-eo", "pipefail", "-c", "echo $HOME"])), "words kept as written");
    assert_eq!(cfg.entrypoint, Some(strings(&["/bin/bash", "-eo", "pipefail", "-c", "exec run"])));
    let cfg = built("CMD echo hi");
    assert_eq!(cfg.cmd, Some(strings(&["/bin/sh", "-c", "echo hi"])), "the default shell");
    // An inherited SHELL counts too.
    let mut config = inherited(ContainerConfig { shell: Some(strings(&["pwsh", "-c"])), ..Default::default() });
    apply_text(&mut config, &mut MetadataScope::default(), "CMD dir").unwrap();
    assert_eq!(config.config.unwrap().cmd, Some(strings(&["pwsh", "-c", "dir"])));
}

#[test]
fn expose_normalises_ranges_and_protocols() {
    let cfg = built("ENV P=\"9000 9001/udp\"\nEXPOSE 8000-8002/TCP 53/UDP $P");
    let ports: Vec<&str> = cfg.exposed_ports.as_ref().unwrap().keys().map(String::as_str).collect();
    assert_eq!(ports, ["53/udp", "8000/tcp", "8001/tcp", "8002/tcp", "9000/tcp", "9001/udp"]);
    let mut config = ImageConfig::default();
    assert!(apply_text(&mut config, &mut MetadataScope::default(), "EXPOSE 80/icmp").is_err());
}

#[test]
fn env_values_see_the_env_from_before_the_instruction() {
    let mut config = inherited(ContainerConfig { env: Some(strings(&["A=old", "PATH=/bin"])), ..Default::default() });
    apply_text(&mut config, &mut MetadataScope::default(), "ENV A=new B=$A\nENV C=$A").unwrap();
    let env = config.config.unwrap().env.unwrap();
    assert_eq!(env, ["A=new", "PATH=/bin", "B=old", "C=new"], "in place, then appended; the next ENV sees the new A");
}

#[test]
fn labels_user_and_volumes_are_expanded() {
    let cfg = built("ENV V=1 U=app D=/data\nLABEL version=$V \"the name\"=x\nUSER $U:$U\nVOLUME $D \"\" /logs");
    let labels = cfg.labels.unwrap();
    assert_eq!((labels["version"].as_str(), labels["the name"].as_str()), ("1", "x"));
    assert_eq!(cfg.user.as_deref(), Some("app:app"));
    let volumes: Vec<&String> = cfg.volumes.as_ref().unwrap().keys().collect();
    assert_eq!(volumes, ["/data", "/logs"], "an empty path is no volume");
}

#[test]
fn maintainer_sets_the_author_only() {
    let mut config = ImageConfig::default();
    let applied = apply_text(&mut config, &mut MetadataScope::default(), "MAINTAINER Jo <jo@example.com>").unwrap();
    assert_eq!(applied, [Applied::Config]);
    assert_eq!(config.author.as_deref(), Some("Jo <jo@example.com>"));
    assert_eq!(config.config, None, "no container config appears for it");
}

#[test]
fn healthcheck_onbuild_and_shell_are_stored_as_written() {
    let cfg = built("HEALTHCHECK --interval=5s --retries=0 CMD curl -f $URL\nONBUILD RUN echo $X\nSHELL [\"/bin/ash\", \"-c\"]");
    let hc = cfg.healthcheck.unwrap();
    assert_eq!(hc.test, Some(strings(&["CMD-SHELL", "curl -f $URL"])));
    assert_eq!((hc.interval, hc.retries), (Some(5_000_000_000), None), "zero means the default and is left out");
    assert_eq!(cfg.on_build, Some(strings(&["RUN echo $X"])));
    assert_eq!(cfg.shell, Some(strings(&["/bin/ash", "-c"])));
    assert_eq!(built("HEALTHCHECK NONE").healthcheck.unwrap().test, Some(strings(&["NONE"])));
}

#[test]
fn other_instructions_are_left_to_the_caller() {
    let mut config = ImageConfig::default();
    let applied = apply_text(&mut config, &mut MetadataScope::default(), "ARG A=1\nRUN echo\nCOPY a b\nADD c d").unwrap();
    assert_eq!(applied, vec![Applied::NotMetadata; 4]);
    assert_eq!(config, ImageConfig::default());
}

#[test]
fn workdir_paths_chain_and_clean() {
    assert_eq!(clean_abs(&join_workdir("/a", "b")), "/a/b");
    assert_eq!(clean_abs(&join_workdir("/a", "/c")), "/c");
    assert_eq!(clean_abs(&join_workdir("", "x/../y")), "/y");
    assert_eq!(clean_abs("/a/./b/../c"), "/a/c");
    assert_eq!(clean_abs("/../.."), "/");
}

#[test]
fn ports_get_a_protocol() {
    assert_eq!(normalize_port("80").unwrap(), ["80/tcp"]);
    assert_eq!(normalize_port("53/UDP").unwrap(), ["53/udp"]);
    assert_eq!(normalize_port("8000-8002/tcp").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
    assert_eq!(normalize_port("7-7/sctp").unwrap(), ["7/sctp"]);
    assert!(normalize_port("http").is_err());
    assert!(normalize_port("9-8").is_err());
    assert!(normalize_port("80/icmp").is_err());
}

#[test]
fn env_set_replaces_in_place() {
    let mut env = vec!["A=1".to_string(), "B=2".to_string()];
    env_set(&mut env, "A", "3");
    env_set(&mut env, "C", "x=y");
    assert_eq!(env, vec!["A=3", "B=2", "C=x=y"]);
}
