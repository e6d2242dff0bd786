//! `strata commit`: a container's writable layer as a new image, with `--change`
//! instructions applied to its config.

use anyhow::{bail, Context, Result};

use crate::dockerfile::{expand_word, Instruction, Located};
use crate::engine::{apply_metadata, config_env, MetadataScope};
use crate::oci;
use crate::store::{ContainerRecord, Containers, ImageState, LayerFormat, LocalStore};

/// Turns a stopped container's writable layer into a new image over `image`:
/// the layer is written from the upper dir (which stays the container's), and one
/// history entry records the commit.
pub fn commit_layer(
    store: &LocalStore,
    containers: &Containers,
    record: &ContainerRecord,
    image: &ImageState,
    format: LayerFormat,
) -> Result<ImageState> {
    let upper = containers.dir_of(&record.id).join("upper");
    let mut state = image.clone();
    if let Some(layer) = store.layer_from_upper(&upper, image, format)? {
        state.layers.push(layer);
    }
    Ok(state)
}

/// What one `commit` asks for.
#[derive(Clone, Debug, Default)]
pub struct CommitRequest {
    /// The container, by name, id or unique id prefix.
    pub container: String,
    /// The new image's name (default: untagged).
    pub image: Option<String>,
    /// Dockerfile instructions applied to the config (see [`apply_changes`]).
    pub changes: Vec<String>,
    /// Kept in the image's history.
    pub message: Option<String>,
    pub author: Option<String>,
    /// Clamps file times in the layer (`$SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<u64>,
}

/// Commits an exited container as a new image, named or untagged; returns the
/// image id.
pub fn commit(store: &LocalStore, req: &CommitRequest) -> Result<oci::Digest> {
    let containers = Containers::open(&store.root);
    let record = containers.find(&req.container)?;
    if record.is_running() {
        bail!("container {} is still running: commit it once it has exited", record.name);
    }
    let name = req.image.as_deref().map(|n| oci::ImageName::parse(n).with_context(|| format!("invalid image name {n:?}"))).transpose()?;
    let image = store.load_image(&record.manifest).with_context(|| format!("loading the image of container {}", record.name))?;
    let format = LayerFormat { source_date_epoch: req.source_date_epoch, ..Default::default() };
    let mut state = commit_layer(store, &containers, &record, &image, format)?;
    apply_changes(&mut state.config, &req.changes)?;
    if let Some(author) = &req.author {
        state.config.author = Some(author.clone());
    }
    let created = chrono::Utc::now();
    state.config.set_created(created);
    state.config.history.push(oci::History {
        created: Some(created.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        created_by: Some(shell_words(&record.command)),
        author: req.author.clone(),
        comment: req.message.clone(),
        empty_layer: state.layers.len() == image.layers.len(),
        ..Default::default()
    });
    let manifest = store.save_image(&state)?;
    match &name {
        Some(n) => store.images.tag(n, &manifest)?,
        None => store.images.add_unnamed(&manifest)?,
    }
    store.image_id(&manifest)
}

/// An argv as a shell would read it back: the history's CREATED BY of a commit,
/// and `ps`'s COMMAND.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The instructions `commit --change` accepts: the docker daemon's list
/// (`validCommitCommands`), which has HEALTHCHECK and STOPSIGNAL although docker's
/// documentation leaves them out; SHELL and MAINTAINER are refused there too.
const CHANGE_INSTRUCTIONS: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// Applies `commit --change` Dockerfile instructions to `config`, in order, with the
/// build's rules for each (`engine::apply_metadata`). They share one scope as the
/// steps of a stage do: `ENTRYPOINT` drops the image's CMD unless a `--change` set
/// CMD before it. Words are expanded with the config's environment at that point.
pub fn apply_changes(config: &mut oci::ImageConfig, changes: &[String]) -> Result<()> {
    // All are checked before any is applied, as docker does.
    let parsed = changes.iter().map(|c| parse_change(c)).collect::<Result<Vec<_>>>()?;
    let mut scope = MetadataScope::default();
    for (change, (step, escape)) in changes.iter().zip(&parsed) {
        let env = config_env(config);
        let expand = |w: &str| expand_word(w, &env, *escape).map_err(anyhow::Error::from);
        apply_metadata(config, &step.instr, &mut scope, &expand).with_context(|| format!("--change {change:?}"))?;
    }
    Ok(())
}

/// One `--change` as an instruction commit allows, with its escape character.
fn parse_change(change: &str) -> Result<(Located, char)> {
    let df = crate::dockerfile::parse(change, "--change").with_context(|| format!("invalid --change {change:?}"))?;
    let [step] = df.instructions.as_slice() else { bail!("--change {change:?}: give exactly one instruction per --change") };
    let allowed = matches!(
        step.instr,
        Instruction::Cmd(_)
            | Instruction::Entrypoint(_)
            | Instruction::Env(_)
            | Instruction::Expose(_)
            | Instruction::Healthcheck(_)
            | Instruction::Label(_)
            | Instruction::Onbuild { .. }
            | Instruction::StopSignal(_)
            | Instruction::User(_)
            | Instruction::Volume(_)
            | Instruction::Workdir(_)
    );
    if !allowed {
        bail!(
            "--change {change:?}: {} cannot be changed by commit (allowed: {CHANGE_INSTRUCTIONS})",
            step.original.split_whitespace().next().unwrap_or("")
        );
    }
    Ok((step.clone(), df.escape()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image config whose CMD came from its base, as a container's image has it.
    fn image_with_cmd() -> oci::ImageConfig {
        let cfg = oci::ContainerConfig { cmd: Some(vec!["sh".into()]), ..Default::default() };
        oci::ImageConfig { config: Some(cfg), ..Default::default() }
    }

    fn changes(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn entrypoint_alone_drops_the_images_cmd() {
        let mut config = image_with_cmd();
        apply_changes(&mut config, &changes(&["ENTRYPOINT [\"x\"]"])).unwrap();
        let cfg = config.config.unwrap();
        assert_eq!((cfg.entrypoint, cfg.cmd), (Some(vec!["x".to_string()]), None));
    }

    #[test]
    fn a_cmd_changed_before_entrypoint_is_kept() {
        let mut config = image_with_cmd();
        apply_changes(&mut config, &changes(&["CMD [\"a\"]", "ENTRYPOINT [\"x\"]"])).unwrap();
        assert_eq!(config.config.unwrap().cmd, Some(vec!["a".to_string()]));
    }

    #[test]
    fn later_changes_see_earlier_ones() {
        let mut config = image_with_cmd();
        apply_changes(&mut config, &changes(&["ENV D=/srv S=TERM", "WORKDIR $D/./app/../www", "STOPSIGNAL $S"])).unwrap();
        let cfg = config.config.unwrap();
        assert_eq!((cfg.working_dir.as_deref(), cfg.stop_signal.as_deref()), (Some("/srv/./app/../www"), Some("TERM")));
        let err = apply_changes(&mut image_with_cmd(), &changes(&["ENV S=NOPE", "STOPSIGNAL $S"])).unwrap_err();
        assert!(format!("{err:#}").contains("invalid signal: \"NOPE\""), "{err:#}");
    }

    #[test]
    fn instructions_commit_does_not_allow_are_refused_first() {
        let mut config = image_with_cmd();
        let err = apply_changes(&mut config, &changes(&["ENV A=1", "RUN echo no"])).unwrap_err();
        assert!(err.to_string().contains("RUN cannot be changed by commit"), "{err}");
        assert_eq!(config, image_with_cmd(), "nothing applied");
        for other in ["SHELL [\"/bin/bash\", \"-c\"]", "MAINTAINER me", "ARG A", "COPY a b"] {
            let err = apply_changes(&mut config, &changes(&[other])).unwrap_err();
            assert!(err.to_string().contains("cannot be changed by commit"), "{other}: {err}");
        }
        let err = apply_changes(&mut config, &changes(&["ENV A=1\nENV B=2"])).unwrap_err();
        assert!(err.to_string().contains("exactly one instruction"), "{err}");
    }

    #[test]
    fn healthcheck_is_allowed_as_docker_allows_it() {
        let mut config = image_with_cmd();
        apply_changes(&mut config, &changes(&["HEALTHCHECK --interval=5s CMD true"])).unwrap();
        let hc = config.config.unwrap().healthcheck.unwrap();
        assert_eq!(hc.test, Some(vec!["CMD-SHELL".to_string(), "true".to_string()]));
        assert_eq!(hc.interval, Some(5_000_000_000));
    }
}
