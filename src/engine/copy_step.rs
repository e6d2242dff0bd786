//! COPY and ADD as build steps: expanding their words, gathering sources (context
//! paths, another stage or image, heredocs, ADD's URLs and local archives) and
//! writing them through the step's overlay.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::base;
use super::copy::{self, Chmod, CopyOptions, CopyOwnership};
use super::source_match;
use super::stage::{join_workdir, StageBuilder};
use crate::dockerfile::ignore::Ignore;
use crate::dockerfile::words::Lexer;
use crate::dockerfile::{CopySource, Heredoc};
use crate::oci::{Digest, HashingWriter};
use crate::registry::timeout::{self, Stalled};
use crate::rootfs::extract;
use crate::rootfs::resolve::{resolve_in, DirFd, Entry, Last};
use crate::sandbox::overlay;
use crate::store::ImageState;

/// ADD's own options.
#[derive(Clone, Copy, Debug)]
pub struct AddOptions<'a> {
    pub checksum: Option<&'a str>,
    /// `--unpack`: None = Docker's default (local archives are extracted, URLs not).
    pub unpack: Option<bool>,
}

/// One COPY or ADD, words unexpanded.
#[derive(Clone, Debug)]
pub struct CopyRequest<'a> {
    pub sources: &'a [CopySource],
    pub dest: &'a str,
    /// `--from`, already expanded.
    pub from: Option<String>,
    pub chown: Option<&'a str>,
    pub chmod: Option<&'a str>,
    /// Some for ADD.
    pub add: Option<AddOptions<'a>>,
    pub exclude: &'a [String],
    pub parents: bool,
}

impl StageBuilder<'_> {
    /// Runs a COPY or ADD; returns whether it produced a layer.
    pub(super) fn copy_step(&mut self, req: CopyRequest<'_>) -> Result<bool> {
        let what = if req.add.is_some() { "ADD" } else { "COPY" };
        let dest = self.expand(req.dest)?;
        if req.sources.len() > 1 && !dest.ends_with('/') {
            bail!("when using {what} with more than one source file, the destination must be a directory and end with a /");
        }
        let workdir = self.config_ro().working_dir.unwrap_or_default();
        let mut abs = join_workdir(&workdir, &dest);
        if dest.ends_with('/') && !abs.ends_with('/') {
            abs.push('/');
        }
        let mode = req.chmod.map(|c| self.expand(c)).transpose()?.map(|m| Chmod::parse(&m)).transpose()?;
        let chown = req.chown.map(|c| self.expand(c)).transpose()?;

        // Context paths, URLs and inline content each come from their own root.
        let mut paths = Vec::new();
        let mut urls = Vec::new();
        let mut docs: Vec<&Heredoc> = Vec::new();
        for s in req.sources {
            match s {
                CopySource::Heredoc(h) => docs.push(h),
                CopySource::Path(p) => {
                    let p = self.expand(p)?;
                    if is_url(&p) {
                        if req.add.is_none() {
                            bail!("source can't be a URL for COPY: {p}");
                        }
                        urls.push(p);
                    } else {
                        paths.push(p);
                    }
                }
            }
        }
        let inline = self.b.store.layers.scratch()?;
        let mut inline_names = Vec::new();
        for doc in docs {
            let content = if doc.expand { self.expand_heredoc(&doc.content)? } else { doc.content.clone() };
            fs::write(inline.path().join(&doc.name), content).with_context(|| format!("writing heredoc {}", doc.name))?;
            fs::set_permissions(inline.path().join(&doc.name), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
            inline_names.push(doc.name.clone());
        }
        let add = req.add.unwrap_or(AddOptions { checksum: None, unpack: None });
        if let (Some(_), Some(p)) = (add.checksum, paths.first()) {
            bail!("ADD --checksum can only be used with an HTTP(S) URL source, not with the local path {p:?}");
        }
        if add.checksum.is_some() && urls.len() + paths.len() != 1 {
            bail!("ADD --checksum needs exactly one source");
        }
        for url in &urls {
            // Fetched once already, for the step's cache key: the same bytes go in.
            let name = match self.downloads.borrow_mut().remove(url) {
                Some(done) => {
                    let (from, to) = (done.dir.path().join(&done.name), inline.path().join(&done.name));
                    fs::rename(&from, &to).with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
                    done.name
                }
                None => download(url, inline.path(), add.checksum)?.name,
            };
            inline_names.push(name);
        }

        // --from: an earlier stage's or an image's tree, mounted read-only-ish.
        let from_image: Option<ImageState> = match &req.from {
            None => None,
            Some(f) => Some(match self.b.plan.find_stage(f, self.stage.index) {
                Some(i) => self.built.get(&i).cloned().ok_or_else(|| anyhow!("stage {f} was not built"))?,
                None => base::resolve(self.b.store, f, &self.b.req.registry)
                    .with_context(|| format!("--from={f}: not a stage of this Dockerfile nor a known image"))?,
            }),
        };
        let from_scratch = if from_image.is_some() { Some(self.b.store.layers.scratch()?) } else { None };
        let from_mount = match (&from_image, &from_scratch) {
            (Some(img), Some(s)) => Some(overlay::mount_overlay(&self.b.store.overlay_for(img, s.path(), false)?)?),
            _ => None,
        };
        let src_root: PathBuf = from_mount.as_ref().map(|m| m.merged().to_path_buf()).unwrap_or_else(|| self.b.context.to_path_buf());
        let no_ignore = Ignore::default();
        let ignore = if from_mount.is_some() { &no_ignore } else { self.b.ignore };
        let unpack_local = req.add.is_some() && add.unpack != Some(false);
        let unpack_urls = add.unpack == Some(true);
        let inline_dir = inline.path().to_path_buf();
        let url_names: Vec<String> = inline_names[inline_names.len() - urls.len()..].to_vec();
        let excluded = req.exclude.iter().map(|p| self.expand(p)).collect::<Result<Vec<_>>>()?;
        let exclude = Ignore::parse(&excluded.join("\n"));
        let parents = req.parents;
        let owners = &self.b.store.owners.clone();

        self.fs_step(|tree| {
            let owner = match &chown {
                Some(spec) => Some(resolve_owner(tree, spec)?),
                None => None,
            };
            let own = CopyOwnership { owner, mode };
            let opts = CopyOptions { own, ignore, exclude: &exclude, parents, owners };
            let sources = source_match::match_sources(&src_root, &paths, ignore, what)?;
            let (archives, plain) = if unpack_local { split_archives(&src_root, sources)? } else { (Vec::new(), sources) };
            copy::copy_sources(tree, &src_root, &plain, &abs, opts, what)?;
            for (file, compression, shown) in archives {
                extract_into(tree, &abs, (file, &shown), compression, owner, owners)?;
            }
            for name in &inline_names {
                let path = inline_dir.join(name);
                if unpack_urls && url_names.contains(name) {
                    let mut file = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                    if let Some(c) = extract::detect_file(&mut file)? {
                        extract_into(tree, &abs, (file, &path), c, owner, owners)?;
                        continue;
                    }
                }
                let inline_opts = CopyOptions { own, ignore: &no_ignore, exclude: &no_ignore, parents: false, owners };
                copy::copy(tree, &inline_dir, std::slice::from_ref(name), &abs, inline_opts, what)?;
            }
            Ok(())
        })
    }

    /// Heredoc bodies expand like a shell here-document: variables, but quotes are
    /// kept as written.
    fn expand_heredoc(&self, body: &str) -> Result<String> {
        let mut lexer = Lexer::new(self.b.escape);
        lexer.raw_quotes = true;
        lexer.raw_escapes = true;
        let lookup = |name: &str| self.lookup_var(name);
        Ok(lexer.process(body, &lookup).map_err(|e| anyhow!("{e}"))?.0)
    }
}

pub(super) fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn extract_into(
    tree: &Path,
    dest: &str,
    (archive, shown): (fs::File, &Path),
    compression: extract::Compression,
    owner: Option<(u32, u32)>,
    owners: &crate::owner::Owners,
) -> Result<()> {
    let dir = resolve_in(tree, Path::new(dest), Last::Follow)?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {dest}"))?;
    let archive_name = shown.display();
    let input = extract::open_archive_file(archive, compression).with_context(|| format!("opening archive {archive_name}"))?;
    extract::extract(input, tree, &dir, owner, owners).with_context(|| format!("extracting {archive_name} into {dest}"))
}

/// A local archive to extract: the file opened beneath the source root, how it is
/// compressed, and its path for messages.
type Archive = (fs::File, extract::Compression, PathBuf);

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
        match extract::detect_file(&mut file)? {
            Some(c) => archives.push((file, c, source.host)),
            None => plain.push(source),
        }
    }
    Ok((archives, plain))
}

/// Downloads `url` into `dir`, checking `--checksum` when given; returns the file
/// name (the URL's last path segment, as Docker names it).
pub(super) fn download(url: &str, dir: &Path, checksum: Option<&str>) -> Result<Downloaded> {
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .rsplit('/')
        .find(|s| !s.is_empty() && !s.contains(':'))
        .unwrap_or("download")
        .to_string();
    // A server that goes silent fails the step after the idle timeout, as a registry does.
    let agent: ureq::Agent = timeout::agent_config().build().into();
    let resp = agent.get(url).call().map_err(|e| stalled_or(Stalled::of(&e), e)).with_context(|| format!("ADD {url}: download failed"))?;
    let modified = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp());
    let mut body = resp.into_body();
    let path = dir.join(&name);
    let file = fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
    let mut writer = HashingWriter::new(std::io::BufWriter::new(file));
    let mut reader = body.as_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| stalled_or(Stalled::of_io(&e), e))
            .with_context(|| format!("ADD {url}: reading the response"))?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n])?;
    }
    let (mut inner, digest, _) = writer.finish();
    inner.flush()?;
    drop(inner);
    // The reference: a downloaded file is 0600, dated by Last-Modified when sent;
    // without it Docker and BuildKit date it at the epoch, so the same bytes give
    // the same layer whenever they were fetched.
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let t = nix::sys::time::TimeSpec::new(modified.unwrap_or(0), 0);
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, &path, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .with_context(|| format!("dating {}", path.display()))?;
    if let Some(want) = checksum {
        let want = Digest::parse(want).map_err(|e| anyhow!("--checksum={want}: {e}"))?;
        if want != digest {
            bail!("ADD {url}: checksum mismatch: expected {want}, got {digest}");
        }
    }
    Ok(Downloaded { name, digest, modified })
}

/// `stalled` when the request timed out (it says so plainly), else `e` itself.
fn stalled_or(stalled: Option<Stalled>, e: impl std::error::Error + Send + Sync + 'static) -> anyhow::Error {
    match stalled {
        Some(s) => s.into(),
        None => e.into(),
    }
}

/// A file ADD fetched: its name in the download dir, content digest and date.
pub(super) struct Downloaded {
    pub name: String,
    pub digest: Digest,
    pub modified: Option<i64>,
}

/// A download made for a step's cache key, kept for the step itself.
pub(super) struct Prefetched {
    /// Holds the file until the step moves it (removed with the dir otherwise).
    pub dir: crate::oci::TempDir,
    pub name: String,
}

/// `--chown=user[:group]` resolved in the destination image's passwd and group files.
pub(super) fn resolve_owner(tree: &Path, spec: &str) -> Result<(u32, u32)> {
    let read = |f: &str| fs::read_to_string(resolve_in(tree, Path::new(f), Last::Follow).unwrap_or_default()).unwrap_or_default();
    let (passwd, group) = (read("/etc/passwd"), read("/etc/group"));
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid_entry = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 4 && f[0] == user);
    let (uid, primary_gid) = match (user.parse::<u32>(), uid_entry) {
        (Ok(n), _) => (n, None),
        (Err(_), Some(f)) => (f[2].parse()?, f[3].parse().ok()),
        (Err(_), None) => bail!("--chown={spec}: unable to find user {user} in the image's /etc/passwd"),
    };
    let gid = match grp {
        None => primary_gid.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| anyhow!("--chown={spec}: unable to find group {g} in the image's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_resolves_names_from_the_image() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n").unwrap();
        fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_owner(d.path(), "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_owner(d.path(), "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_owner(d.path(), "42").unwrap(), (42, 42));
        assert_eq!(resolve_owner(d.path(), "42:7").unwrap(), (42, 7));
        assert!(resolve_owner(d.path(), "ghost").is_err());
    }

    #[test]
    fn urls_are_recognised() {
        assert!(is_url("http://127.0.0.1:8000/a.tar"));
        assert!(!is_url("file.tar"));
    }
}
