//! COPY (and ADD of local files): sources from the context or another stage's tree
//! into a mounted image tree, with Docker's rules for globs, directories and
//! destinations.
//!
//! Source paths are confined to their root (the context dir or a stage's merged
//! tree): a pattern may not climb out with `..`, and symlinks are resolved inside the
//! root. Destination paths are resolved inside the image tree the same way, so a
//! symlink in the image (`/bin -> usr/bin`) is followed as the container would, and
//! nothing is ever written to the host outside it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::dockerfile::glob as pattern;
use crate::dockerfile::ignore::Ignore;
use crate::rootfs::is_private_xattr;
use crate::rootfs::resolve::{resolve_in, Last};

/// Ownership and mode overrides from `--chown` and `--chmod`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyOwnership {
    pub owner: Option<(u32, u32)>,
    pub mode: Option<u32>,
}

/// One matched source: its host path and the name it was matched by.
#[derive(Debug)]
struct Source {
    host: PathBuf,
    is_dir: bool,
}

/// Expands source patterns (already variable-expanded) against `root`.
/// The sources `patterns` match below `root`, relative to it (for the build cache).
pub fn matched_paths(root: &Path, patterns: &[String], ignore: &Ignore, what: &str) -> Result<Vec<PathBuf>> {
    Ok(match_sources(root, patterns, ignore, what)?
        .into_iter()
        .map(|s| s.host.strip_prefix(root).unwrap_or(&s.host).to_path_buf())
        .collect())
}

fn match_sources(root: &Path, patterns: &[String], ignore: &Ignore, what: &str) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for pat in patterns {
        let clean = clean_relative(pat);
        let hosts: Vec<PathBuf> = if pattern::has_meta(&clean) {
            let found = pattern::glob(root, &clean).with_context(|| format!("{what} source pattern {pat:?}"))?;
            if found.is_empty() {
                bail!("{what} source {pat:?}: no files match the pattern in the build context{}", outside_hint(pat));
            }
            found.into_iter().filter(|rel| !ignore.excluded(&rel.to_string_lossy())).map(|rel| root.join(rel)).collect()
        } else {
            let host = resolve_in(root, Path::new(&clean), Last::Follow)?;
            let rel = host.strip_prefix(root).unwrap_or(&host).to_string_lossy().into_owned();
            if fs::symlink_metadata(&host).is_err() || ignore.excluded(&rel) {
                bail!(
                    "{what} source {pat:?}: not found in the build context{}",
                    if ignore.excluded(&rel) { " (excluded by .dockerignore)" } else { "" }
                );
            }
            vec![host]
        };
        for host in hosts {
            let meta = fs::metadata(&host).with_context(|| format!("{what} source {}", host.display()))?;
            out.push(Source { is_dir: meta.is_dir(), host });
        }
    }
    Ok(out)
}

/// Cleans a source path lexically and anchors it at the source root, as the
/// reference specifies: a leading `/` and any `../` that would climb above the root
/// are removed, so nothing outside the context can ever be named.
fn clean_relative(p: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// Explains a missing source whose `../` was removed, so a user who meant a file
/// outside the context learns why it was not found.
fn outside_hint(pattern: &str) -> &'static str {
    if Path::new(pattern).components().any(|c| c == Component::ParentDir) {
        " (sources are relative to the build context: \"../\" cannot leave it)"
    } else {
        ""
    }
}

/// Copies `patterns` from `src_root` to `dest` (absolute, in the image) below `tree`.
/// How one COPY/ADD treats its sources.
#[derive(Clone, Copy)]
pub struct CopyOptions<'a> {
    pub own: CopyOwnership,
    /// The build's ignore file, for paths relative to the source root (empty for
    /// stage sources).
    pub ignore: &'a Ignore,
    /// `--exclude` patterns, matched relative to each source (a file's own name, or
    /// paths inside a source directory).
    pub exclude: &'a Ignore,
    /// `--parents`: keep each source's path below the root under the destination.
    pub parents: bool,
}

/// Copies `patterns` from `src_root` to `dest` (absolute, in the image) below `tree`.
pub fn copy(tree: &Path, src_root: &Path, patterns: &[String], dest: &str, opts: CopyOptions<'_>, what: &str) -> Result<()> {
    let sources = match_sources(src_root, patterns, opts.ignore, what)?;
    let sources: Vec<Source> = sources.into_iter().filter(|s| s.is_dir || !opts.exclude.excluded(&name_of(&s.host))).collect();
    let dest_is_dir_hint = dest.ends_with('/') || sources.len() > 1 || patterns.iter().any(|p| pattern::has_meta(p)) || opts.parents;
    let dest_host = resolve_in(tree, Path::new(dest), Last::Follow)?;
    let dest_exists_as_dir = fs::metadata(&dest_host).map(|m| m.is_dir()).unwrap_or(false);
    let mut copier = Copier { own: opts.own, links: HashMap::new(), ignore: opts.ignore, exclude: opts.exclude, src_root };
    for src in &sources {
        // With --parents the source's own path below the root is kept.
        let dest_host = if opts.parents {
            let rel = src.host.strip_prefix(src_root).unwrap_or(Path::new(""));
            let parent = rel.parent().unwrap_or(Path::new(""));
            resolve_in(tree, &Path::new(dest).join(parent), Last::Follow)?
        } else {
            dest_host.clone()
        };
        if src.is_dir {
            let target = if opts.parents { dest_host.join(name_of(&src.host)) } else { dest_host.clone() };
            copier.ensure_dir(tree, &target)?;
            copier.copy_dir_contents(tree, &src.host, &target)?;
        } else if dest_is_dir_hint || dest_exists_as_dir {
            copier.ensure_dir(tree, &dest_host)?;
            let name = src.host.file_name().context("source has no file name")?;
            copier.copy_entry(&src.host, &dest_host.join(name))?;
        } else {
            let parent = dest_host.parent().unwrap_or(tree).to_path_buf();
            copier.ensure_dir(tree, &parent)?;
            copier.copy_entry(&src.host, &dest_host)?;
        }
    }
    Ok(())
}

fn name_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

struct Copier<'a> {
    own: CopyOwnership,
    ignore: &'a Ignore,
    exclude: &'a Ignore,
    src_root: &'a Path,
    /// (dev, inode) of copied files -> where they went, to keep hard links linked.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Copier<'_> {
    /// Creates `dir` and missing parents (root-owned 0755, as Docker does).
    fn ensure_dir(&self, tree: &Path, dir: &Path) -> Result<()> {
        if fs::metadata(dir).map(|m| m.is_dir()).unwrap_or(false) {
            return Ok(());
        }
        let rel = dir.strip_prefix(tree).unwrap_or(dir);
        let mut cur = tree.to_path_buf();
        for c in rel.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => bail!("cannot create directory {}: a file is in the way", display_in(tree, &cur)),
                Err(_) => {
                    fs::create_dir(&cur).with_context(|| format!("creating {}", display_in(tree, &cur)))?;
                    fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))?;
                    if let Some((uid, gid)) = self.own.owner {
                        chown(&cur, uid, gid)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn copy_dir_contents(&mut self, tree: &Path, src: &Path, dest: &Path) -> Result<()> {
        let mut walker = walkdir::WalkDir::new(src).min_depth(1).follow_links(false).sort_by_file_name().into_iter();
        let mut dirs = Vec::new();
        while let Some(entry) = walker.next() {
            let entry = entry.with_context(|| format!("reading {}", src.display()))?;
            let rel = entry.path().strip_prefix(src).expect("below the walk root");
            if !self.ignore.is_empty() {
                let ctx_rel = entry.path().strip_prefix(self.src_root).unwrap_or(entry.path()).to_string_lossy().into_owned();
                if self.ignore.excluded(&ctx_rel) {
                    if entry.file_type().is_dir() && !self.ignore.may_reinclude(&ctx_rel) {
                        walker.skip_current_dir();
                    }
                    continue;
                }
            }
            if !self.exclude.is_empty() && self.exclude.excluded(&rel.to_string_lossy()) {
                if entry.file_type().is_dir() && !self.exclude.may_reinclude(&rel.to_string_lossy()) {
                    walker.skip_current_dir();
                }
                continue;
            }
            // Parents were resolved when created; only the last component is new.
            let parent = resolve_in(
                tree,
                &Path::new("/").join(dest.strip_prefix(tree).unwrap_or(dest)).join(rel.parent().unwrap_or(Path::new(""))),
                Last::Follow,
            )?;
            let target = parent.join(entry.file_name());
            // A re-included file's excluded parents were skipped: create them now.
            self.ensure_dir(tree, &parent)?;
            self.copy_entry(entry.path(), &target)?;
            if entry.file_type().is_dir() {
                dirs.push((entry.path().to_path_buf(), target));
            }
        }
        // Directory times last: filling them changed them.
        for (src, target) in dirs.into_iter().rev() {
            let m = fs::symlink_metadata(&src)?;
            set_times(&target, m.mtime(), m.mtime_nsec())?;
        }
        Ok(())
    }

    /// Copies one file, symlink, directory (itself, not its contents) or special file.
    fn copy_entry(&mut self, src: &Path, target: &Path) -> Result<()> {
        let meta = fs::symlink_metadata(src).with_context(|| format!("reading {}", src.display()))?;
        let ft = meta.file_type();
        if let Ok(existing) = fs::symlink_metadata(target) {
            if !(existing.is_dir() && ft.is_dir()) {
                if existing.is_dir() {
                    fs::remove_dir_all(target)?;
                } else {
                    fs::remove_file(target)?;
                }
            }
        }
        if ft.is_dir() {
            if fs::symlink_metadata(target).is_err() {
                fs::create_dir(target).with_context(|| format!("creating {}", target.display()))?;
            }
        } else if ft.is_symlink() {
            let link = fs::read_link(src)?;
            std::os::unix::fs::symlink(&link, target).with_context(|| format!("creating {}", target.display()))?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    fs::hard_link(first, target).with_context(|| format!("linking {}", target.display()))?;
                    return Ok(());
                }
                self.links.insert(key, target.to_path_buf());
            }
            let mut from = File::open(src).with_context(|| format!("reading {}", src.display()))?;
            let mut to = File::create(target).with_context(|| format!("creating {}", target.display()))?;
            io::copy(&mut from, &mut to).with_context(|| format!("copying {} to {}", src.display(), target.display()))?;
        } else {
            // Devices, fifos and sockets from a build context are not image content.
            return Ok(());
        }
        let (uid, gid) = self.own.owner.unwrap_or((0, 0));
        chown(target, uid, gid)?;
        if !ft.is_symlink() {
            let mode = self.own.mode.unwrap_or(meta.mode() & 0o7777);
            fs::set_permissions(target, fs::Permissions::from_mode(mode))?;
            copy_xattrs(src, target);
        }
        set_times(target, meta.mtime(), meta.mtime_nsec())?;
        Ok(())
    }
}

fn copy_xattrs(src: &Path, target: &Path) {
    if let Ok(names) = xattr::list(src) {
        for name in names {
            let n = name.to_string_lossy();
            if is_private_xattr(&n) || n.starts_with("security.selinux") {
                continue;
            }
            if let Ok(Some(v)) = xattr::get(src, &name) {
                let _ = xattr::set(target, &name, &v);
            }
        }
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    crate::owner::set_owner(path, uid, gid).with_context(|| format!("chown {uid}:{gid} {}", path.display()))
}

fn set_times(path: &Path, secs: i64, nsecs: i64) -> Result<()> {
    let t = TimeSpec::new(secs, nsecs);
    utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .with_context(|| format!("setting times of {}", path.display()))
}

fn display_in(tree: &Path, p: &Path) -> String {
    format!("/{}", p.strip_prefix(tree).unwrap_or(p).display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_may_not_leave_the_context() {
        assert_eq!(clean_relative("../etc/passwd"), "etc/passwd");
        assert_eq!(clean_relative("a/../../b"), "b");
        assert_eq!(clean_relative("./a/./b/../c"), "a/c");
        assert_eq!(clean_relative("/abs/x"), "abs/x");
        assert_eq!(clean_relative("."), ".");
    }

    fn opts<'a>(own: CopyOwnership, none: &'a Ignore) -> CopyOptions<'a> {
        CopyOptions { own, ignore: none, exclude: none, parents: false }
    }

    #[test]
    fn exclude_and_parents() {
        let ctx = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        fs::create_dir_all(ctx.path().join("x/y")).unwrap();
        fs::write(ctx.path().join("x/y/a.txt"), b"a").unwrap();
        fs::write(ctx.path().join("x/y/b.md"), b"b").unwrap();
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let own = CopyOwnership { owner: Some(me), mode: None };
        let none = Ignore::default();
        let ex = Ignore::parse("**/*.md\n");
        copy(tree.path(), ctx.path(), &["x".into()], "/e/", CopyOptions { own, ignore: &none, exclude: &ex, parents: false }, "COPY")
            .unwrap();
        assert!(tree.path().join("e/y/a.txt").exists() && !tree.path().join("e/y/b.md").exists());
        copy(
            tree.path(),
            ctx.path(),
            &["x/y/a.txt".into()],
            "/p/",
            CopyOptions { own, ignore: &none, exclude: &none, parents: true },
            "COPY",
        )
        .unwrap();
        assert!(tree.path().join("p/x/y/a.txt").exists());
    }

    #[test]
    fn copies_files_dirs_and_globs_into_a_tree() {
        let none = Ignore::default();
        let ctx = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        fs::create_dir_all(ctx.path().join("dir/sub")).unwrap();
        fs::write(ctx.path().join("dir/sub/f"), b"f").unwrap();
        fs::write(ctx.path().join("a.txt"), b"a").unwrap();
        fs::write(ctx.path().join("b.txt"), b"b").unwrap();
        fs::create_dir_all(tree.path().join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", tree.path().join("bin")).unwrap();
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let own = CopyOwnership { owner: Some(me), mode: None };
        copy(tree.path(), ctx.path(), &["dir".into()], "/app", opts(own, &none), "COPY").unwrap();
        assert_eq!(fs::read(tree.path().join("app/sub/f")).unwrap(), b"f");
        copy(tree.path(), ctx.path(), &["*.txt".into()], "/bin", opts(own, &none), "COPY").unwrap();
        assert_eq!(fs::read(tree.path().join("usr/bin/a.txt")).unwrap(), b"a");
        assert!(fs::symlink_metadata(tree.path().join("bin")).unwrap().file_type().is_symlink());
        copy(tree.path(), ctx.path(), &["a.txt".into()], "/renamed", opts(own, &none), "COPY").unwrap();
        assert_eq!(fs::read(tree.path().join("renamed")).unwrap(), b"a");
        let err = copy(tree.path(), ctx.path(), &["missing".into()], "/x", opts(own, &none), "COPY").unwrap_err();
        assert!(format!("{err:#}").contains("missing"));
    }

    #[test]
    fn dockerignore_hides_files_but_negation_brings_them_back() {
        let none = Ignore::default();
        let ctx = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        fs::create_dir_all(ctx.path().join("docs")).unwrap();
        fs::write(ctx.path().join("docs/keep.md"), b"k").unwrap();
        fs::write(ctx.path().join("docs/drop.md"), b"d").unwrap();
        fs::write(ctx.path().join("secret.key"), b"s").unwrap();
        fs::write(ctx.path().join("main.c"), b"m").unwrap();
        let ig = Ignore::parse("docs\n!docs/keep.md\n*.key\n");
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let own = CopyOwnership { owner: Some(me), mode: None };
        copy(tree.path(), ctx.path(), &[".".into()], "/app/", CopyOptions { own, ignore: &ig, exclude: &none, parents: false }, "COPY")
            .unwrap();
        assert!(tree.path().join("app/main.c").exists());
        assert!(tree.path().join("app/docs/keep.md").exists());
        assert!(!tree.path().join("app/docs/drop.md").exists());
        assert!(!tree.path().join("app/secret.key").exists());
        assert!(copy(
            tree.path(),
            ctx.path(),
            &["secret.key".into()],
            "/x",
            CopyOptions { own, ignore: &ig, exclude: &none, parents: false },
            "COPY"
        )
        .is_err());
    }
}
