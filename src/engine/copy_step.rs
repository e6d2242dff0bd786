//! COPY and ADD as build steps: expanding their words, gathering sources (context
//! paths, another stage or image, heredocs, ADD's URLs, git repositories and local
//! archives) and writing them through the step's overlay.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::chown::resolve_owner;
use super::copy::{self, Chmod, CopyOptions, CopyOwnership, SourceOwners};
use super::download::{download, is_url, Prefetched};
use super::git_source;
use super::git_url;
use super::layer::{fs_step, step_overlay};
use super::metadata::{clean_abs, join_workdir};
use super::named_context::ContextSource;
use super::source_match;
use super::step_inputs::Fetched;
use super::vars::Vars;
use super::Build;
use crate::dockerfile::Ignore;
use crate::dockerfile::{AddArgs, CopyArgs, CopySource, Heredoc};
use crate::oci::TempDir;
use crate::rootfs::{self, resolve_in, DirFd, Entry, Last};
use crate::sandbox::mount_overlay;
use crate::store::{ImageState, LayerRef};

/// ADD's own options.
#[derive(Clone, Copy, Debug)]
pub struct AddOptions<'a> {
    pub checksum: Option<&'a str>,
    /// `--unpack`: None = Docker's default (local archives are extracted, URLs not).
    pub unpack: Option<bool>,
    /// `--keep-git-dir`: git sources keep their `.git`.
    pub keep_git_dir: bool,
}

/// One COPY or ADD, words unexpanded.
#[derive(Clone, Debug)]
pub struct CopyRequest<'a> {
    pub sources: &'a [CopySource],
    pub dest: &'a str,
    pub chown: Option<&'a str>,
    pub chmod: Option<&'a str>,
    /// Some for ADD.
    pub add: Option<AddOptions<'a>>,
    pub exclude: &'a [String],
    pub parents: bool,
}

impl<'a> CopyRequest<'a> {
    pub fn copy(c: &'a CopyArgs) -> CopyRequest<'a> {
        let (chown, chmod) = (c.chown.as_deref(), c.chmod.as_deref());
        CopyRequest { sources: &c.sources, dest: &c.dest, chown, chmod, add: None, exclude: &c.exclude, parents: c.parents }
    }

    pub fn add(a: &'a AddArgs) -> CopyRequest<'a> {
        let (chown, chmod) = (a.chown.as_deref(), a.chmod.as_deref());
        let add = Some(AddOptions { checksum: a.checksum.as_deref(), unpack: a.unpack, keep_git_dir: a.keep_git_dir });
        CopyRequest { sources: &a.sources, dest: &a.dest, chown, chmod, add, exclude: &a.exclude, parents: false }
    }
}

/// Where a COPY's or ADD's sources wait: context (or `--from`) paths still to be
/// matched, and inline files (heredocs, downloads) in a scratch dir of their own.
struct Gathered {
    paths: Vec<String>,
    inline: TempDir,
    inline_names: Vec<String>,
    /// Which inline files are downloads (ADD `--unpack=true` extracts those).
    url_names: Vec<String>,
    /// Git checkouts, each with the path below it whose contents are copied.
    git: Vec<(TempDir, String)>,
}

/// Everything one COPY or ADD writes, resolved before the step's overlay is
/// mounted, so that the write itself is one short walk.
struct CopyPlan<'a> {
    what: &'static str,
    /// The destination, absolute, with the trailing `/` kept.
    dest: String,
    src_root: PathBuf,
    /// Kept for `--from`, root for the context.
    source_owners: SourceOwners,
    ignore: &'a Ignore,
    exclude: Ignore,
    chown: Option<String>,
    mode: Option<Chmod>,
    parents: bool,
    unpack_local: bool,
    unpack_urls: bool,
    sources: &'a Gathered,
    owners: crate::owner::Owners,
}

/// Runs a COPY or ADD; returns whether it produced a layer. `fetched` holds
/// what gathering its key fetched: ADD's downloads, `--from`'s image or directory;
/// `lineage` names the step for reusing its last layer's members (`layer::commit_step`).
pub(super) fn copy_step(
    b: &Build,
    image: &ImageState,
    vars: &Vars,
    req: CopyRequest<'_>,
    fetched: Fetched,
    lineage: &str,
) -> Result<Option<LayerRef>> {
    let what = if req.add.is_some() { "ADD" } else { "COPY" };
    let dest = copy_dest(image, vars, req.dest, req.sources.len(), what)?;
    // --chmod and --chown are checked before any source is looked at.
    let mode = req.chmod.map(|c| vars.expand(c)).transpose()?.map(|m| Chmod::parse(&m)).transpose()?;
    let chown = req.chown.map(|c| vars.expand(c)).transpose()?;
    let add = req.add.unwrap_or(AddOptions { checksum: None, unpack: None, keep_git_dir: false });
    let sources = gather_sources(b, vars, &req, add, (fetched.downloads, fetched.git))?;
    // --from: an earlier stage's or an image's tree, mounted for reading; a
    // directory context is read where it is, its own ignore file applied.
    let from_image = match &fetched.from {
        Some(ContextSource::Image(img)) => Some(img),
        _ => None,
    };
    let from_scratch = from_image.map(|_| b.store.layers.scratch()).transpose()?;
    let from_mount = match (from_image, &from_scratch) {
        (Some(img), Some(s)) => Some(mount_overlay(&step_overlay(b, img, s.path(), false)?)?),
        _ => None,
    };
    let no_ignore = Ignore::default();
    let (src_root, ignore) = match (&from_mount, &fetched.from) {
        (Some(m), _) => (m.merged().to_path_buf(), &no_ignore),
        (None, Some(ContextSource::Dir(dir))) => (dir.path.clone(), &*dir.ignore),
        _ => (b.context.to_path_buf(), b.ignore),
    };
    let excluded = req.exclude.iter().map(|p| vars.expand(p)).collect::<Result<Vec<_>>>()?;
    let plan = CopyPlan {
        what,
        dest,
        src_root,
        source_owners: if from_mount.is_some() { SourceOwners::Kept } else { SourceOwners::Root },
        ignore,
        exclude: Ignore::parse(&excluded.join("\n")),
        chown,
        mode,
        parents: req.parents,
        unpack_local: req.add.is_some() && add.unpack != Some(false),
        unpack_urls: add.unpack == Some(true),
        sources: &sources,
        owners: b.store.owners.clone(),
    };
    fs_step(b, image, Some(lineage), |tree| crate::trace::timed(crate::trace::Phase::Copy, || plan.write(tree)))
}

/// The destination as an absolute path in the image (see [`dest_in_image`]).
fn copy_dest(image: &ImageState, vars: &Vars, dest: &str, sources: usize, what: &str) -> Result<String> {
    let dest = vars.expand(dest)?;
    if sources > 1 && !dest.ends_with('/') {
        bail!("when using {what} with more than one source file, the destination must be a directory and end with a /");
    }
    let workdir = image.config.config.as_ref().and_then(|c| c.working_dir.clone()).unwrap_or_default();
    Ok(dest_in_image(&workdir, &dest))
}

/// `dest` relative to the working dir, cleaned lexically before anything in the
/// image is looked at, as BuildKit cleans it: `/a/../b/` is `/b/` even where `/a`
/// is a symlink. It ends in `/` when `dest` names a directory (`x/`, `x/.`, `.`).
fn dest_in_image(workdir: &str, dest: &str) -> String {
    let mut abs = clean_abs(&join_workdir(workdir, dest));
    let names_dir = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    if names_dir && !abs.ends_with('/') {
        abs.push('/');
    }
    abs
}

/// What gathering the step's key fetched: downloads by URL, git sources resolved.
type Prepared = (HashMap<String, Prefetched>, HashMap<String, git_source::Resolved>);

/// Sorts the sources by root: context paths, URLs, git repositories and heredocs.
/// Heredocs are written and downloads moved into the inline dir; repositories are
/// checked out.
fn gather_sources(b: &Build, vars: &Vars, req: &CopyRequest<'_>, add: AddOptions<'_>, prepared: Prepared) -> Result<Gathered> {
    let (mut downloads, mut resolved) = prepared;
    let mut paths = Vec::new();
    let mut urls = Vec::new();
    let mut gits = Vec::new();
    let mut docs: Vec<&Heredoc> = Vec::new();
    for s in req.sources {
        match s {
            CopySource::Heredoc(h) => docs.push(h),
            CopySource::Path(p) => {
                let p = vars.expand(p)?;
                if let Some(git) = git_url::parse(&p)? {
                    if req.add.is_none() {
                        bail!("source can't be a git ref for COPY: {}", git.shown);
                    }
                    gits.push((resolved.remove(&p), git));
                    continue;
                }
                match is_url(&p) {
                    true if req.add.is_none() => bail!("source can't be a URL for COPY: {p}"),
                    true => urls.push(p),
                    false => paths.push(p),
                }
            }
        }
    }
    if let (Some(_), Some(p)) = (add.checksum, paths.first()) {
        bail!("ADD --checksum can only be used with an HTTP(S) URL or a git source, not with the local path {p:?}");
    }
    if add.checksum.is_some() && urls.len() + paths.len() + gits.len() != 1 {
        bail!("ADD --checksum needs exactly one source");
    }
    let mut git = Vec::new();
    for (done, url) in gits {
        // Resolved once already, for the step's cache key: the same commit goes in.
        let r = match done {
            Some(r) => r,
            None => git_source::resolve(&url, add.checksum)?,
        };
        let keep = git_source::keep_git_dir(&url, add.keep_git_dir)?;
        let dir = b.store.layers.scratch()?;
        git_source::checkout(&url, &r, keep, dir.path())?;
        git.push((dir, url.subdir));
    }
    let inline = b.store.layers.scratch()?;
    let mut inline_names = Vec::new();
    for doc in docs {
        let content = if doc.expand { vars.expand_heredoc(&doc.content)? } else { doc.content.clone() };
        let path = inline.path().join(&doc.name);
        fs::write(&path, content).with_context(|| format!("writing heredoc {}", doc.name))?;
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        inline_names.push(doc.name.clone());
    }
    let mut url_names = Vec::new();
    for url in &urls {
        // Fetched once already, for the step's cache key: the same bytes go in.
        let name = match downloads.remove(url) {
            Some(done) => {
                let (from, to) = (done.dir.path().join(&done.name), inline.path().join(&done.name));
                fs::rename(&from, &to).with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
                done.name
            }
            None => download(url, inline.path(), add.checksum)?.name,
        };
        url_names.push(name);
    }
    inline_names.extend(url_names.iter().cloned());
    Ok(Gathered { paths, inline, inline_names, url_names, git })
}

impl CopyPlan<'_> {
    /// Writes the sources into `tree`, the step's merged view: context (or
    /// `--from`) matches, local archives extracted (ADD), then inline files.
    fn write(&self, tree: &Path) -> Result<()> {
        let owner = self.chown.as_deref().map(|spec| resolve_owner(tree, spec)).transpose()?;
        let own = CopyOwnership { owner, mode: self.mode };
        let (what, dest, owners) = (self.what, self.dest.as_str(), &self.owners);
        let source_owners = self.source_owners;
        let opts = CopyOptions { own, source_owners, ignore: self.ignore, exclude: &self.exclude, parents: self.parents, owners };
        let matched = source_match::match_sources(&self.src_root, &self.sources.paths, self.ignore, what)?;
        let (archives, plain) = if self.unpack_local { split_archives(&self.src_root, matched)? } else { (Vec::new(), matched) };
        copy::copy_sources(tree, &self.src_root, &plain, dest, opts, what)?;
        for (file, compression, shown) in archives {
            extract_into(tree, dest, (file, &shown), compression, owner, owners)?;
        }
        let no_ignore = Ignore::default();
        for (checkout, subdir) in &self.sources.git {
            // BuildKit's rule: the subdir's components are directories, never links.
            DirFd::open_root(checkout.path())?.open_below(Path::new(subdir)).with_context(|| format!("git source subdir {subdir:?}"))?;
            let git_opts =
                CopyOptions { own, source_owners: SourceOwners::Root, ignore: &no_ignore, exclude: &self.exclude, parents: false, owners };
            // Named as it is, never matched as a pattern: a `*` there is a character.
            let (host, matched) = (checkout.path().join(subdir), PathBuf::from(subdir));
            let source = source_match::Source { host, matched, name: String::new(), is_dir: true };
            copy::copy_sources(tree, checkout.path(), &[source], dest, git_opts, what)?;
        }
        let inline_dir = self.sources.inline.path();
        for name in &self.sources.inline_names {
            let path = inline_dir.join(name);
            if self.unpack_urls && self.sources.url_names.contains(name) {
                let mut file = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                if let Some(c) = rootfs::detect_compression(&mut file)? {
                    extract_into(tree, dest, (file, &path), c, owner, owners)?;
                    continue;
                }
            }
            let inline_opts =
                CopyOptions { own, source_owners: SourceOwners::Root, ignore: &no_ignore, exclude: &no_ignore, parents: false, owners };
            copy::copy(tree, inline_dir, std::slice::from_ref(name), dest, inline_opts, what)?;
        }
        Ok(())
    }
}

fn extract_into(
    tree: &Path,
    dest: &str,
    (archive, shown): (fs::File, &Path),
    compression: rootfs::Compression,
    owner: Option<(u32, u32)>,
    owners: &crate::owner::Owners,
) -> Result<()> {
    let dir = resolve_in(tree, Path::new(dest), Last::Follow)?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {dest}"))?;
    let archive_name = shown.display();
    let input = rootfs::open_archive_file(archive, compression).with_context(|| format!("opening archive {archive_name}"))?;
    rootfs::extract_archive(input, &dir, owner, owners).with_context(|| format!("extracting {archive_name} into {dest}"))
}

/// A local archive to extract: the file opened beneath the source root, how it is
/// compressed, and its path for messages.
type Archive = (fs::File, rootfs::Compression, PathBuf);

/// Separates local archives (to be extracted) from other sources; each wildcard
/// match is classified on its own. An archive is read from the descriptor opened
/// here, so a context path swapped for a symlink meanwhile is never followed.
fn split_archives(src_root: &Path, sources: Vec<source_match::Source>) -> Result<(Vec<Archive>, Vec<source_match::Source>)> {
    let mut archives = Vec::new();
    let mut plain = Vec::new();
    let root = DirFd::open_root(src_root)?;
    for source in sources {
        let rel = source.host.strip_prefix(src_root).unwrap_or(&source.host);
        let (Some(name), false) = (rel.file_name(), source.is_dir) else {
            plain.push(source);
            continue;
        };
        // Not a regular file (a device, a fifo): copy_sources decides.
        let Entry::File(mut file, _) = root.open_below(rel.parent().unwrap_or(Path::new("")))?.open_entry(name)? else {
            plain.push(source);
            continue;
        };
        match rootfs::detect_compression(&mut file)? {
            Some(c) => archives.push((file, c, source.host)),
            None => plain.push(source),
        }
    }
    Ok((archives, plain))
}

#[cfg(test)]
mod tests {
    use super::dest_in_image;

    #[test]
    fn destinations_are_cleaned_before_they_are_resolved() {
        assert_eq!(dest_in_image("/", "/a/../b/"), "/b/");
        assert_eq!(dest_in_image("/w", "../x"), "/x");
        assert_eq!(dest_in_image("/w/", "sub/./f"), "/w/sub/f");
        assert_eq!(dest_in_image("/x/../y/", "f"), "/y/f", "a recorded working dir may hold ..");
        assert_eq!(dest_in_image("/w", "."), "/w/");
        assert_eq!(dest_in_image("/w", "d/."), "/w/d/");
        assert_eq!(dest_in_image("", "/../../"), "/");
    }
}
