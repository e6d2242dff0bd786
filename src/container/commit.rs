//! `strata commit`: a container's writable layer as a new image, with `--change`
//! instructions applied to its config.

use anyhow::{bail, Context, Result};

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
    /// Dockerfile instructions applied to the config (see [`apply_change`]).
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
    for change in &req.changes {
        apply_change(&mut state.config, change)?;
    }
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

/// The instructions `commit --change` accepts (docker's list).
const CHANGE_INSTRUCTIONS: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// Applies one `--change` Dockerfile instruction to `config`, with words expanded in
/// the config's environment as a build step would.
pub fn apply_change(config: &mut oci::ImageConfig, change: &str) -> Result<()> {
    use crate::dockerfile::{expand_word, CommandForm, Instruction};
    let df = crate::dockerfile::parse(change, "--change").with_context(|| format!("invalid --change {change:?}"))?;
    let [step] = df.instructions.as_slice() else { bail!("--change {change:?}: give exactly one instruction per --change") };
    let cfg = config.config.get_or_insert_with(Default::default);
    let env: std::collections::HashMap<String, String> =
        cfg.env.iter().flatten().filter_map(|e| e.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let expand = |w: &str| expand_word(w, &env, df.escape()).with_context(|| format!("--change {change:?}"));
    let shell = cfg.shell.clone().unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
    let argv = |form: &CommandForm| match form {
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(s) => shell.iter().cloned().chain(std::iter::once(s.clone())).collect(),
    };
    match &step.instr {
        Instruction::Cmd(form) => cfg.cmd = Some(argv(form)),
        Instruction::Entrypoint(form) => cfg.entrypoint = Some(argv(form)),
        Instruction::Env(pairs) => {
            let values = pairs.iter().map(|(k, v)| Ok((expand(k)?, expand(v)?))).collect::<Result<Vec<_>>>()?;
            let env = cfg.env.get_or_insert_with(Vec::new);
            for (k, v) in values {
                crate::engine::env_set(env, &k, &v);
            }
        }
        Instruction::Label(pairs) => {
            let values = pairs.iter().map(|(k, v)| Ok((expand(k)?, expand(v)?))).collect::<Result<Vec<_>>>()?;
            cfg.labels.get_or_insert_with(Default::default).extend(values);
        }
        Instruction::Expose(ports) => {
            for p in ports {
                for word in expand(p)?.split_whitespace() {
                    for port in crate::engine::normalize_port(word)? {
                        cfg.expose_port(&port);
                    }
                }
            }
        }
        Instruction::Volume(paths) => {
            for p in paths {
                let p = expand(p)?;
                if !p.is_empty() {
                    cfg.add_volume(&p);
                }
            }
        }
        Instruction::User(u) => cfg.user = Some(expand(u)?),
        Instruction::StopSignal(s) => cfg.stop_signal = Some(expand(s)?),
        Instruction::Workdir(w) => {
            let w = expand(w)?;
            cfg.working_dir = Some(crate::engine::join_workdir(cfg.working_dir.as_deref().unwrap_or("/"), &w));
        }
        Instruction::Onbuild { expression, .. } => cfg.on_build.get_or_insert_with(Vec::new).push(expression.clone()),
        _ => bail!(
            "--change {change:?}: {} cannot be changed by commit (allowed: {CHANGE_INSTRUCTIONS})",
            step.original.split_whitespace().next().unwrap_or("")
        ),
    }
    Ok(())
}
