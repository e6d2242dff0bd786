//! RUN's `--mount`s, in three moments. When the step's key is gathered, each
//! value is expanded and parsed, its target made absolute, its source found (a
//! stage, an image, the context) and described for the key: what a bind shows is
//! keyed by content, while a cache's content and a secret's bytes never are. When
//! the step runs, each mount is made ready on disk for the sandbox ([`attach`]):
//! a cache leased from the store, a stage's tree mounted over a throwaway upper
//! dir, a secret written to the step's private scratch dir. After it ran, the
//! store takes the targets the sandbox had to create out of the step's upper dir
//! (`LocalStore::remove_mount_stubs`), so a mount leaves no trace in the layer.

use std::any::Any;
use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::copy::{copy, CopyOptions, CopyOwnership, SourceOwners};
use super::layer::step_overlay;
use super::metadata::{clean_abs, join_workdir};
use super::named_context::{ContextSource, LocalDir};
use super::secrets::ssh_socket;
use super::vars::Vars;
use super::Build;
use crate::clean_path::base_name;
use crate::dockerfile::{parse_mount, Ignore, MountKind, RunMount, Sharing};
use crate::rootfs::{resolve_in, Last};
use crate::sandbox::{mount_overlay, StepMount};
use crate::store::{CacheSharing, ImageState};

/// Where a bind's or a cache's seed comes from.
#[derive(Clone)]
pub(super) enum MountSource {
    /// No source: tmpfs, secrets, ssh, a cache without `from`.
    None,
    /// The build context.
    Context,
    /// A named context's directory (`--build-context NAME=DIR`), its own ignore file applied.
    Dir(LocalDir),
    /// A stage's result or an image.
    Image(Box<ImageState>),
}

/// One `--mount`, expanded, with its absolute target and its source found.
#[derive(Clone)]
pub(super) struct PlannedMount {
    pub spec: RunMount,
    /// Absolute and clean; empty for a secret that only sets a variable.
    pub target: String,
    /// cache: the cache id; secret and ssh: the id asked for.
    pub id: String,
    pub source: MountSource,
}

/// What the gathering of a mount's key may ask of the step's site.
pub(super) struct MountSite<'a> {
    pub vars: &'a Vars<'a>,
    pub workdir: &'a str,
    /// A `from=` name: a stage's result, a named context or an image.
    pub resolve_from: &'a dyn Fn(&str) -> Result<ContextSource>,
    /// The content digest of a path (clean, relative) below a directory, its
    /// ignore file applied: the build context's, or a named context's.
    pub dir_digest: &'a dyn Fn(&Path, &Ignore, &str) -> Result<String>,
    /// The build context and its ignore file.
    pub context: (&'a Path, &'a Ignore),
}

/// Parses and resolves `values`; returns the mounts and their text for the key.
pub(super) fn plan_mounts(site: &MountSite, values: &[String]) -> Result<(Vec<PlannedMount>, String)> {
    let mut planned = Vec::new();
    let mut key = String::new();
    let mut ssh_count = 0;
    for raw in values {
        let spec = parse_mount(raw, &|w| site.vars.expand(w).map_err(|e| e.to_string())).map_err(|e| anyhow!("--mount={raw}: {e}"))?;
        let (target, id) = target_and_id(&spec, site.workdir, &mut ssh_count).with_context(|| format!("--mount={raw}"))?;
        let (source, source_key) = find_source(site, &spec).with_context(|| format!("--mount={raw}"))?;
        key.push_str(&describe(&spec, &target, &id, &source_key));
        planned.push(PlannedMount { spec, target, id, source });
    }
    Ok((planned, key))
}

/// BuildKit's defaults: a relative target is below WORKDIR; a cache's id is its
/// target; a secret's id is its source, else its id, else its target's name, and
/// it lands in /run/secrets unless it only sets a variable; ssh's id is
/// `default` and its socket /run/buildkit/ssh_agent.N.
fn target_and_id(m: &RunMount, workdir: &str, ssh_count: &mut usize) -> Result<(String, String)> {
    let absolute = |t: &str| -> Result<String> {
        let t = clean_abs(&join_workdir(workdir, t));
        if t == "/" {
            bail!("invalid mount target \"/\"");
        }
        Ok(t)
    };
    Ok(match m.kind {
        MountKind::Secret => {
            let id = [&m.source, &m.id].into_iter().find(|s| !s.is_empty()).cloned().unwrap_or_else(|| base_name(&m.target));
            let target = match (m.target.is_empty(), m.env.is_some()) {
                (false, _) => absolute(&m.target)?,
                (true, true) => String::new(),
                (true, false) => format!("/run/secrets/{}", base_name(&id)),
            };
            (target, id)
        }
        MountKind::Ssh => {
            let target = if m.target.is_empty() { format!("/run/buildkit/ssh_agent.{ssh_count}") } else { absolute(&m.target)? };
            *ssh_count += 1;
            (target, if m.id.is_empty() { "default".into() } else { m.id.clone() })
        }
        MountKind::Cache => {
            let target = absolute(&m.target)?;
            let id = if m.id.is_empty() { target.clone() } else { m.id.clone() };
            (target, id)
        }
        MountKind::Bind | MountKind::Tmpfs => (absolute(&m.target)?, String::new()),
    })
}

/// A source path as BuildKit takes it: joined to `/` and cleaned, so `..` stops at
/// the root of what is mounted; relative to that root.
fn source_rel(source: &str) -> String {
    clean_abs(&format!("/{source}")).trim_start_matches('/').to_string()
}

/// A relative path, `.` for the root itself.
fn dot(rel: &str) -> String {
    if rel.is_empty() {
        ".".into()
    } else {
        rel.into()
    }
}

/// The mount's source, and what the key holds of it.
fn find_source(site: &MountSite, m: &RunMount) -> Result<(MountSource, String)> {
    match (m.kind, m.from.is_empty()) {
        (MountKind::Bind, true) => {
            let (root, ignore) = site.context;
            Ok((MountSource::Context, (site.dir_digest)(root, ignore, &dot(&source_rel(&m.source)))?))
        }
        (MountKind::Bind | MountKind::Cache, false) => match (site.resolve_from)(&m.from)? {
            ContextSource::Image(image) => {
                let key = image.cache_key.clone();
                Ok((MountSource::Image(image), key))
            }
            ContextSource::Dir(dir) => {
                let digest = (site.dir_digest)(&dir.path, &dir.ignore, &dot(&source_rel(&m.source)))?;
                Ok((MountSource::Dir(dir), format!("dir:{digest}")))
            }
        },
        (MountKind::Tmpfs, false) => bail!("a tmpfs mount takes no from"),
        _ => Ok((MountSource::None, String::new())),
    }
}

/// The key's text for one mount: every option that changes what the RUN sees,
/// never a cache's content nor a secret's bytes.
fn describe(m: &RunMount, target: &str, id: &str, source_key: &str) -> String {
    format!(
        "mount:{}|{target}|{id}|{}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{source_key}\n",
        m.kind.name(),
        m.source,
        m.sharing,
        m.read_only,
        m.mode,
        m.uid,
        m.gid,
        m.size,
        m.env,
        m.required
    )
}

/// The mounts made ready for the sandbox, the variables they add, and what must
/// stay alive (leases, mounts, agents, scratch dirs) until the step is over.
pub(super) struct Attached {
    pub mounts: Vec<StepMount>,
    pub env: Vec<String>,
    /// Cache ids this RUN leased already: a second mount of one id uses the same
    /// lease (a second lock would wait for the first).
    caches: Vec<(String, PathBuf)>,
    _keep: Vec<Box<dyn Any>>,
}

/// Makes every mount ready on disk, in `scratch` (the step's own dir).
pub(super) fn attach(b: &Build, planned: &[PlannedMount], scratch: &Path) -> Result<Attached> {
    let mut out = Attached { mounts: Vec::new(), env: Vec::new(), caches: Vec::new(), _keep: Vec::new() };
    for (n, p) in planned.iter().enumerate() {
        let dir = scratch.join(format!("mount-{n}"));
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let what = || format!("--mount type={} target={}", p.spec.kind.name(), p.target);
        attach_one(b, p, &dir, &mut out).with_context(what)?;
    }
    // Parents first: a mount inside another's target lands on top of it.
    out.mounts.sort_by_key(depth);
    Ok(out)
}

fn depth(m: &StepMount) -> usize {
    let target = match m {
        StepMount::Bind { target, .. } | StepMount::Tmpfs { target, .. } => target,
    };
    target.split('/').filter(|c| !c.is_empty()).count()
}

fn attach_one(b: &Build, p: &PlannedMount, dir: &Path, out: &mut Attached) -> Result<()> {
    let m = &p.spec;
    let bind = |root: PathBuf, source: String, read_only: bool| StepMount::Bind { root, source, target: p.target.clone(), read_only };
    match m.kind {
        MountKind::Tmpfs => out.mounts.push(StepMount::Tmpfs { target: p.target.clone(), size: m.size }),
        MountKind::Bind => {
            let rel = source_rel(&m.source);
            match &p.source {
                MountSource::Image(image) => {
                    // Over a throwaway upper dir: `rw` writes never reach the stage.
                    let spec = step_overlay(b, image, dir, false)?;
                    let mounted = mount_overlay(&spec)?;
                    out.mounts.push(bind(mounted.merged().to_path_buf(), rel, m.read_only));
                    out._keep.push(Box::new(mounted));
                }
                MountSource::Dir(local) => out.mounts.push(dir_bind(b, &local.path, &local.ignore, &rel, dir, p)?),
                _ => out.mounts.push(dir_bind(b, b.context, b.ignore, &rel, dir, p)?),
            }
        }
        MountKind::Cache => attach_cache(b, p, dir, out)?,
        MountKind::Secret => attach_secret(b, p, dir, out)?,
        MountKind::Ssh => {
            let Some(paths) = b.req.ssh.get(&p.id) else {
                if m.required {
                    bail!("ssh agent {} is required but was not given (--ssh {}=SOCKET|KEY)", p.id, p.id);
                }
                return Ok(());
            };
            let socket = ssh_socket(&p.id, paths, dir)?;
            if socket.started() {
                fs::set_permissions(&socket.path, fs::Permissions::from_mode(m.mode.unwrap_or(0o600)))?;
                let (uid, gid) = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
                if (uid, gid) != (0, 0) {
                    b.store
                        .owners
                        .set_owner(&socket.path, uid, gid)
                        .with_context(|| format!("setting the owner of ssh agent {} to {uid}:{gid}", p.id))?;
                }
            }
            let (root, name) = split_path(&socket.path)?;
            out.mounts.push(bind(root, name, false));
            out.env.push(format!("SSH_AUTH_SOCK={}", p.target));
            out._keep.push(Box::new(socket));
        }
    }
    Ok(())
}

/// Whether the ignore file leaves out anything at or below `rel` of the context:
/// only then must a read-only bind be a filtered copy instead of the context itself.
fn ignores_below(context: &Path, ignore: &Ignore, rel: &str) -> bool {
    if ignore.is_empty() {
        return false;
    }
    walkdir::WalkDir::new(context.join(rel)).follow_links(false).into_iter().any(|e| match e {
        Ok(e) => e.path().strip_prefix(context).is_ok_and(|r| ignore.excluded(&r.to_string_lossy())),
        // Unreadable: copying would fail on it too; say it is left out, so the copy reports it.
        Err(_) => true,
    })
}

/// A bind of `rel` below a directory on the host (the context, a named one): in
/// place when read-only and nothing below it is ignored, else a copy, so writes
/// are thrown away and ignored files are not there.
fn dir_bind(b: &Build, root: &Path, ignore: &Ignore, rel: &str, dir: &Path, p: &PlannedMount) -> Result<StepMount> {
    let read_only = p.spec.read_only;
    let (root, source) = if read_only && !ignores_below(root, ignore, rel) {
        (root.to_path_buf(), rel.to_string())
    } else {
        copy_out(b, root, ignore, rel, dir)?
    };
    Ok(StepMount::Bind { root, source, target: p.target.clone(), read_only })
}

fn split_path(p: &Path) -> Result<(PathBuf, String)> {
    let parent = p.parent().ok_or_else(|| anyhow!("{} has no parent directory", p.display()))?;
    let name = p.file_name().ok_or_else(|| anyhow!("{} has no file name", p.display()))?;
    Ok((parent.to_path_buf(), name.to_string_lossy().into_owned()))
}

/// Copies `rel` of `root` (files `ignore` excludes left out) into `dir/tree`;
/// returns the copy's root and the source below it.
fn copy_out(b: &Build, root: &Path, ignore: &Ignore, rel: &str, dir: &Path) -> Result<(PathBuf, String)> {
    let tree = dir.join("tree");
    fs::create_dir(&tree).with_context(|| format!("creating {}", tree.display()))?;
    let pattern = if rel.is_empty() { ".".to_string() } else { rel.to_string() };
    let no_exclude = Ignore::default();
    let opts = CopyOptions {
        own: CopyOwnership::default(),
        source_owners: SourceOwners::Root,
        ignore,
        exclude: &no_exclude,
        parents: false,
        owners: &b.store.owners,
    };
    copy(&tree, root, std::slice::from_ref(&pattern), "/src/", opts, "RUN --mount")?;
    // What the copy made of the source: a directory's contents in `src/`, a
    // file (or a link to one) as `src/NAME`; asked inside the root, as the copy asked.
    let resolved = resolve_in(root, Path::new(rel), Last::Follow)?;
    let source = if fs::metadata(&resolved).is_ok_and(|m| m.is_dir()) { "src".to_string() } else { format!("src/{}", base_name(rel)) };
    Ok((tree, source))
}

fn attach_cache(b: &Build, p: &PlannedMount, dir: &Path, out: &mut Attached) -> Result<()> {
    let m = &p.spec;
    let sharing = match m.sharing {
        Sharing::Shared => CacheSharing::Shared,
        Sharing::Private => CacheSharing::Private,
        Sharing::Locked => CacheSharing::Locked,
    };
    let seeded = !matches!(p.source, MountSource::None);
    let init = |new: &Path| -> Result<()> {
        seed_cache(b, &p.source, &source_rel(&m.source), new, &dir.join("seed"))?;
        fs::set_permissions(new, fs::Permissions::from_mode(m.mode.unwrap_or(0o755)))?;
        let (uid, gid) = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
        if (uid, gid) != (0, 0) {
            b.store.owners.set_owner(new, uid, gid).with_context(|| format!("setting the owner of cache {} to {uid}:{gid}", p.id))?;
        }
        Ok(())
    };
    let path = match out.caches.iter().find(|(id, _)| *id == p.id) {
        Some((_, path)) => path.clone(),
        None => {
            let lease = b.store.cache_mount(&p.id, sharing, &init)?;
            let path = lease.path.clone();
            out.caches.push((p.id.clone(), path.clone()));
            out._keep.push(Box::new(lease));
            path
        }
    };
    let source = if seeded { String::new() } else { source_rel(&m.source) };
    out.mounts.push(StepMount::Bind { root: path, source, target: p.target.clone(), read_only: m.read_only });
    Ok(())
}

/// Fills a new cache dir from its `from` (a stage, an image, a named context's
/// directory), as BuildKit bases the cache on that source.
fn seed_cache(b: &Build, source: &MountSource, rel: &str, new: &Path, scratch: &Path) -> Result<()> {
    let no_ignore = Ignore::default();
    let copy_from = |root: &Path, ignore: &Ignore, source_owners| {
        let opts = CopyOptions {
            own: CopyOwnership::default(),
            source_owners,
            ignore,
            exclude: &no_ignore,
            parents: false,
            owners: &b.store.owners,
        };
        copy(new, root, &[dot(rel)], "/", opts, "RUN --mount=type=cache,from")
    };
    match source {
        MountSource::Image(image) => {
            fs::create_dir_all(scratch)?;
            let mounted = mount_overlay(&step_overlay(b, image, scratch, false)?)?;
            copy_from(mounted.merged(), &no_ignore, SourceOwners::Kept)
        }
        MountSource::Dir(local) => copy_from(&local.path, &local.ignore, SourceOwners::Root),
        MountSource::Context | MountSource::None => Ok(()),
    }
}

/// A secret as a file in the step's private dir (bound read-only), or as a
/// variable; never in the upper dir, so never in a layer.
fn attach_secret(b: &Build, p: &PlannedMount, dir: &Path, out: &mut Attached) -> Result<()> {
    let m = &p.spec;
    let Some(source) = b.req.secrets.get(&p.id) else {
        if m.required {
            bail!("secret {} is required but was not given (--secret id={},src=FILE)", p.id, p.id);
        }
        return Ok(());
    };
    let value = source.read(&p.id)?;
    if let Some(var) = &m.env {
        let text = String::from_utf8(value.clone())
            .map_err(|_| anyhow!("secret {} is not UTF-8 text, so it cannot be the variable {var}", p.id))?;
        out.env.push(format!("{var}={text}"));
    }
    if p.target.is_empty() {
        return Ok(());
    }
    let file = dir.join("secret");
    let mode = m.mode.unwrap_or(0o400);
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&file)?;
        f.write_all(&value)?;
    }
    fs::set_permissions(&file, fs::Permissions::from_mode(mode))?;
    let (uid, gid) = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
    if (uid, gid) != (0, 0) {
        b.store.owners.set_owner(&file, uid, gid).with_context(|| format!("setting the owner of secret {} to {uid}:{gid}", p.id))?;
    }
    out.mounts.push(StepMount::Bind { root: dir.to_path_buf(), source: "secret".into(), target: p.target.clone(), read_only: true });
    Ok(())
}
