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
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use super::chmod::Chmod;
use super::copy_files::{copy_xattrs, set_times, write_file, FileJob, FileWriters};
use super::source_match::{match_sources, Source};
use crate::dockerfile::Ignore;
use crate::rootfs::{file_type, resolve_in, DirFd, Entry, Last};
use nix::sys::stat::SFlag;

/// Ownership and mode overrides from `--chown` and `--chmod`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyOwnership {
    pub owner: Option<(u32, u32)>,
    pub mode: Option<Chmod>,
}

/// Who owns a copied entry when `--chown` does not say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceOwners {
    /// Root (0:0): the build context and inline files, whose owners on the
    /// builder's host mean nothing in the image.
    #[default]
    Root,
    /// The owner it has in its source: `COPY --from` a stage or an image, as
    /// BuildKit keeps it (moby/moby#38599). A recorded owner (single-id mode) is
    /// the owner.
    Kept,
}

/// How one COPY/ADD treats its sources.
#[derive(Clone, Copy)]
pub struct CopyOptions<'a> {
    pub own: CopyOwnership,
    /// Owners without `--chown`.
    pub source_owners: SourceOwners,
    /// The build's ignore file, for paths relative to the source root (empty for
    /// stage sources).
    pub ignore: &'a Ignore,
    /// `--exclude` patterns, matched relative to each source (a file's own name, or
    /// paths inside a source directory).
    pub exclude: &'a Ignore,
    /// `--parents`: keep each source's path below the root under the destination.
    pub parents: bool,
    /// How owners are set (recorded in single-id mode).
    pub owners: &'a crate::owner::Owners,
}

/// Copies `patterns` from `src_root` to `dest` (absolute, in the image) below `tree`.
pub fn copy(tree: &Path, src_root: &Path, patterns: &[String], dest: &str, opts: CopyOptions<'_>, what: &str) -> Result<()> {
    let sources = match_sources(src_root, patterns, opts.ignore, what)?;
    copy_sources(tree, src_root, &sources, dest, opts, what)
}

/// Copies matched `sources` to `dest` (absolute, in the image) below `tree`. The
/// destination is a directory when it ends with `/`, already is one, or
/// `--parents` is given; otherwise a single file is copied to that path (`COPY
/// target/*.jar app.jar` makes the file /app.jar, as BuildKit does) and several
/// directories are merged into it, but several files are an error, as the
/// reference says (BuildKit would overwrite one with the next).
pub fn copy_sources(tree: &Path, src_root: &Path, sources: &[Source], dest: &str, opts: CopyOptions<'_>, what: &str) -> Result<()> {
    let sources: Vec<&Source> = sources.iter().filter(|s| s.is_dir || !opts.exclude.excluded(&s.name)).collect();
    if sources.is_empty() {
        return Ok(());
    }
    let dest_host = resolve_in(tree, Path::new(dest), Last::Follow)?;
    let dest_exists_as_dir = fs::metadata(&dest_host).map(|m| m.is_dir()).unwrap_or(false);
    let into_dir = dest.ends_with('/') || dest_exists_as_dir || opts.parents;
    if !into_dir && sources.len() > 1 && sources.iter().any(|s| !s.is_dir) {
        let names: Vec<String> = sources.iter().map(|s| s.matched.display().to_string()).collect();
        bail!(
            "when using {what} with more than one source file, the destination must be a directory and end with a /: \
             {} sources matched ({}) for {dest}",
            names.len(),
            names.join(", ")
        );
    }
    let mut copier = Copier {
        own: opts.own,
        source_owners: opts.source_owners,
        owners: opts.owners,
        links: HashMap::new(),
        ignore: opts.ignore,
        exclude: opts.exclude,
        dir_times: Vec::new(),
        files: FileWriters::start(opts.owners),
    };
    // Sources are read through descriptors from here on: a directory of the context
    // swapped for a symlink after matching is refused, never followed (see
    // `rootfs::DirFd`).
    let root = DirFd::open_root(src_root)?;
    for src in sources {
        // With --parents the source's own path below the root is kept.
        let dest_host = if opts.parents {
            let parent = src.matched.parent().unwrap_or(Path::new(""));
            resolve_in(tree, &Path::new(dest).join(parent), Last::Follow)?
        } else {
            dest_host.clone()
        };
        let rel = src.host.strip_prefix(src_root).unwrap_or(Path::new(""));
        if src.is_dir {
            let target = if opts.parents { dest_host.join(&src.name) } else { dest_host.clone() };
            copier.ensure_dir(tree, &target)?;
            let dir = root.open_below(rel)?;
            copier.copy_dir_contents(tree, &dir, rel, Path::new(""), &target)?;
            continue;
        }
        let name = rel.file_name().ok_or_else(|| anyhow::anyhow!("{what} source {} has no file name", src.matched.display()))?;
        let parent_dir = root.open_below(rel.parent().unwrap_or(Path::new("")))?;
        let entry = parent_dir.open_entry(name)?;
        if matches!(entry, Entry::Symlink(..) | Entry::Dir(..)) {
            // Matching followed every symlink: one now means the context changed.
            bail!("{what} source {}: changed while being read (now a symlink or directory); refusing to follow it", src.matched.display());
        }
        let target = if into_dir {
            copier.ensure_dir(tree, &dest_host)?;
            if src.name.is_empty() {
                bail!("{what} source {} has no file name", src.matched.display());
            }
            dest_host.join(&src.name)
        } else {
            let parent = dest_host.parent().unwrap_or(tree).to_path_buf();
            copier.ensure_dir(tree, &parent)?;
            dest_host.clone()
        };
        copier.copy_entry(entry, &src.host, &target)?;
    }
    copier.finish()
}

struct Copier<'a> {
    own: CopyOwnership,
    source_owners: SourceOwners,
    owners: &'a crate::owner::Owners,
    ignore: &'a Ignore,
    exclude: &'a Ignore,
    /// (dev, inode) of copied files -> where they went, to keep hard links linked.
    links: HashMap<(u64, u64), PathBuf>,
    /// Copied directories and their source times, set last: filling them changes them.
    dir_times: Vec<(PathBuf, i64, i64)>,
    /// Regular files are written on these threads (see `copy_files`).
    files: FileWriters,
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
                        self.chown(&cur, uid, gid)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies what is below `dir` (the source at `root_rel` below the source root;
    /// `rel` below the copied directory) into `dest`, in name order, reading every
    /// entry through `dir`'s descriptor.
    fn copy_dir_contents(&mut self, tree: &Path, dir: &DirFd, root_rel: &Path, rel: &Path, dest: &Path) -> Result<()> {
        for name in dir.names()? {
            let rel = rel.join(&name);
            let ctx_rel = root_rel.join(&rel).to_string_lossy().into_owned();
            let rel_str = rel.to_string_lossy().into_owned();
            let is_dir = || {
                nix::sys::stat::fstatat(dir.fd(), name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| file_type(&st) == SFlag::S_IFDIR)
            };
            let ignored = !self.ignore.is_empty() && self.ignore.matches(&ctx_rel);
            let excluded = !ignored && !self.exclude.is_empty() && self.exclude.matches(&rel_str);
            if ignored || excluded {
                // A directory is still walked when a `!pattern` names something
                // below it (its own entry is not copied).
                let reinclude = if ignored { self.ignore.walks_into(&ctx_rel) } else { self.exclude.walks_into(&rel_str) };
                if reinclude && is_dir() {
                    let sub = dir.open_dir(&name)?;
                    self.copy_dir_contents(tree, &sub, root_rel, &rel, dest)?;
                }
                continue;
            }
            // Parents were resolved when created; only the last component is new.
            let parent = resolve_in(
                tree,
                &Path::new("/").join(dest.strip_prefix(tree).unwrap_or(dest)).join(rel.parent().unwrap_or(Path::new(""))),
                Last::Follow,
            )?;
            let target = parent.join(&name);
            // A re-included file's excluded parents were skipped: create them now.
            self.ensure_dir(tree, &parent)?;
            let entry = dir.open_entry(&name)?;
            if let Some(sub) = self.copy_entry(entry, &dir.path().join(&name), &target)? {
                self.copy_dir_contents(tree, &sub, root_rel, &rel, dest)?;
            }
        }
        Ok(())
    }

    /// Copies one opened entry: a file from its descriptor, a symlink as a symlink,
    /// a directory itself (returned, for its contents). `shown` names the source.
    fn copy_entry(&mut self, entry: Entry, shown: &Path, target: &Path) -> Result<Option<DirFd>> {
        let st = *entry.stat();
        let is_dir = matches!(entry, Entry::Dir(..));
        let (uid, gid) = self.owner_of(&entry);
        if self.files.is_queued(target) {
            self.files.wait_idle();
        }
        if let Ok(existing) = fs::symlink_metadata(target) {
            if !(existing.is_dir() && is_dir) {
                // Nothing queued may be writing below what is removed.
                self.files.wait_idle();
                if existing.is_dir() {
                    fs::remove_dir_all(target)?;
                } else {
                    fs::remove_file(target)?;
                }
            }
        }
        let mode = st.st_mode & 0o7777;
        let mode = self.own.mode.map_or(mode, |c| c.apply(mode, is_dir));
        let opened_dir = match entry {
            Entry::Dir(d, _) => {
                if fs::symlink_metadata(target).is_err() {
                    fs::create_dir(target).with_context(|| format!("creating {}", target.display()))?;
                }
                d
            }
            Entry::Symlink(link, _) => {
                std::os::unix::fs::symlink(&link, target).with_context(|| format!("creating {}", target.display()))?;
                self.chown(target, uid, gid)?;
                set_times(target, st.st_mtime, st.st_mtime_nsec)?;
                return Ok(None);
            }
            Entry::File(from, _) => {
                let job = FileJob { from, target: target.to_path_buf(), shown: shown.to_path_buf(), st, owner: (uid, gid), mode };
                if st.st_nlink == 1 {
                    self.files.send(job)?;
                    return Ok(None);
                }
                let key = (st.st_dev, st.st_ino);
                if let Some(first) = self.links.get(&key) {
                    fs::hard_link(first, target).with_context(|| format!("linking {}", target.display()))?;
                    return Ok(None);
                }
                self.links.insert(key, target.to_path_buf());
                // Written here, not queued: the links to it that follow need it.
                write_file(job, self.owners)?;
                return Ok(None);
            }
            // Devices, fifos and sockets from a build context are not image content.
            Entry::Other(_) => return Ok(None),
        };
        self.chown(target, uid, gid)?;
        fs::set_permissions(target, fs::Permissions::from_mode(mode))?;
        copy_xattrs(opened_dir.file(), target);
        self.dir_times.push((target.to_path_buf(), st.st_mtime, st.st_mtime_nsec));
        Ok(Some(opened_dir))
    }

    /// The owner a copied entry gets: `--chown`'s, else its source's or root.
    fn owner_of(&self, entry: &Entry) -> (u32, u32) {
        if let Some(owner) = self.own.owner {
            return owner;
        }
        if self.source_owners == SourceOwners::Root {
            return (0, 0);
        }
        let recorded = match entry {
            Entry::File(f, _) => self.owners.recorded_in(f),
            Entry::Dir(d, _) => self.owners.recorded_in(d.file()),
            Entry::Symlink(..) | Entry::Other(_) => None,
        };
        let st = entry.stat();
        recorded.unwrap_or((st.st_uid, st.st_gid))
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        self.owners.set_owner(path, uid, gid).with_context(|| format!("chown {uid}:{gid} {}", path.display()))
    }

    /// Directory times last, innermost first: filling them changed them.
    fn finish(self) -> Result<()> {
        self.files.finish()?;
        for (target, secs, nsecs) in self.dir_times.into_iter().rev() {
            set_times(&target, secs, nsecs)?;
        }
        Ok(())
    }
}

fn display_in(tree: &Path, p: &Path) -> String {
    format!("/{}", p.strip_prefix(tree).unwrap_or(p).display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn opts<'a>(own: CopyOwnership, none: &'a Ignore) -> CopyOptions<'a> {
        CopyOptions {
            own,
            source_owners: SourceOwners::Root,
            ignore: none,
            exclude: none,
            parents: false,
            owners: &crate::owner::Owners::Real,
        }
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
        copy(
            tree.path(),
            ctx.path(),
            &["x".into()],
            "/e/",
            CopyOptions {
                own,
                source_owners: SourceOwners::Root,
                ignore: &none,
                exclude: &ex,
                parents: false,
                owners: &crate::owner::Owners::Real,
            },
            "COPY",
        )
        .unwrap();
        assert!(tree.path().join("e/y/a.txt").exists() && !tree.path().join("e/y/b.md").exists());
        copy(
            tree.path(),
            ctx.path(),
            &["x/y/a.txt".into()],
            "/p/",
            CopyOptions {
                own,
                source_owners: SourceOwners::Root,
                ignore: &none,
                exclude: &none,
                parents: true,
                owners: &crate::owner::Owners::Real,
            },
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
    fn sources_written_onto_one_path_land_in_order() {
        // Files go to worker threads: a later source on the same path, as a file, a
        // directory or a symlink, must still win as it does written one by one.
        let none = Ignore::default();
        let ctx = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        for (src, body) in [("one", "first"), ("two", "second")] {
            fs::create_dir_all(ctx.path().join(src)).unwrap();
            fs::write(ctx.path().join(src).join("f"), vec![b'x'; 1 << 20]).unwrap();
            fs::write(ctx.path().join(src).join("same"), body).unwrap();
        }
        fs::create_dir_all(ctx.path().join("three/f")).unwrap();
        fs::write(ctx.path().join("three/f/inside"), b"in").unwrap();
        std::os::unix::fs::symlink("elsewhere", ctx.path().join("three/same")).unwrap();
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let own = CopyOwnership { owner: Some(me), mode: None };
        for _ in 0..20 {
            copy(tree.path(), ctx.path(), &["one".into(), "two".into()], "/app/", opts(own, &none), "COPY").unwrap();
            assert_eq!(fs::read_to_string(tree.path().join("app/same")).unwrap(), "second");
            copy(tree.path(), ctx.path(), &["two".into(), "three".into()], "/app/", opts(own, &none), "COPY").unwrap();
            assert_eq!(fs::read(tree.path().join("app/f/inside")).unwrap(), b"in", "a directory replaced the queued file");
            assert_eq!(fs::read_link(tree.path().join("app/same")).unwrap(), Path::new("elsewhere"));
            fs::remove_dir_all(tree.path().join("app")).unwrap();
        }
    }

    #[test]
    fn symlinks_in_the_source_resolve_inside_its_root() {
        let none = Ignore::default();
        let ctx = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("host-secret"), b"s").unwrap();
        fs::create_dir_all(ctx.path().join(host.path().strip_prefix("/").unwrap())).unwrap();
        fs::write(ctx.path().join(host.path().strip_prefix("/").unwrap()).join("inside"), b"i").unwrap();
        std::os::unix::fs::symlink(host.path(), ctx.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../..", ctx.path().join("up")).unwrap();
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let own = CopyOwnership { owner: Some(me), mode: None };
        copy(tree.path(), ctx.path(), &["abs/*".into()], "/x/", opts(own, &none), "COPY").unwrap();
        let names: Vec<_> = fs::read_dir(tree.path().join("x")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["inside"], "the absolute link is resolved in the context, never on the host");
        copy(tree.path(), ctx.path(), &["abs".into()], "/y", opts(own, &none), "COPY").unwrap();
        assert!(tree.path().join("y/inside").exists() && !tree.path().join("y/host-secret").exists());
        // `up` clamps at the context root: up/* is the context's own top level.
        let matched = crate::engine::source_match::matched_paths(ctx.path(), &["up/*".into()], &none, "COPY").unwrap();
        assert!(matched.iter().all(|p| !p.to_string_lossy().contains("host-secret")), "{matched:?}");
        assert!(matched.contains(&host.path().strip_prefix("/").unwrap().to_path_buf()), "abs resolved in the context: {matched:?}");
        assert!(matched.iter().all(|p| p.is_relative() && !p.to_string_lossy().contains("..")), "{matched:?}");
        // A link to a missing path is not found, never looked up on the host.
        std::os::unix::fs::symlink("/etc", ctx.path().join("etc-link")).unwrap();
        let err = copy(tree.path(), ctx.path(), &["etc-link/*".into()], "/z/", opts(own, &none), "COPY").unwrap_err();
        assert!(format!("{err:#}").contains("not found"), "{err:#}");
        assert!(copy(tree.path(), ctx.path(), &["etc-link/passwd".into()], "/z/", opts(own, &none), "COPY").is_err());
    }

    #[test]
    fn wildcards_may_match_nothing_and_one_match_names_the_destination() {
        let none = Ignore::default();
        let ctx = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        fs::create_dir_all(ctx.path().join("target")).unwrap();
        fs::write(ctx.path().join("target/app-1.0.jar"), b"jar").unwrap();
        fs::write(ctx.path().join("a.txt"), b"a").unwrap();
        fs::write(ctx.path().join("b.txt"), b"b").unwrap();
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let own = CopyOwnership { owner: Some(me), mode: None };
        copy(tree.path(), ctx.path(), &["*.none".into()], "/empty/", opts(own, &none), "COPY").unwrap();
        assert!(!tree.path().join("empty").exists(), "nothing matched, nothing created");
        copy(tree.path(), ctx.path(), &["target/*.jar".into()], "/app.jar", opts(own, &none), "COPY").unwrap();
        assert_eq!(fs::read(tree.path().join("app.jar")).unwrap(), b"jar", "one match to a path without a slash is that file");
        let err = copy(tree.path(), ctx.path(), &["*.txt".into()], "/notdir", opts(own, &none), "COPY").unwrap_err();
        assert!(format!("{err:#}").contains("end with a /"), "{err:#}");
        copy(tree.path(), ctx.path(), &["*.txt".into()], "/dir/", opts(own, &none), "COPY").unwrap();
        assert!(tree.path().join("dir/a.txt").exists() && tree.path().join("dir/b.txt").exists());
        let err = copy(tree.path(), ctx.path(), &["nodir/*.txt".into()], "/x/", opts(own, &none), "COPY").unwrap_err();
        assert!(format!("{err:#}").contains("nodir"), "the directory before the wildcard must exist: {err:#}");
        let err = copy(tree.path(), ctx.path(), &["../missing".into()], "/x/", opts(own, &none), "COPY").unwrap_err();
        assert!(format!("{err:#}").contains("cannot leave it"), "{err:#}");
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
        copy(tree.path(), ctx.path(), &[".".into()], "/app/", CopyOptions { ignore: &ig, ..opts(own, &none) }, "COPY").unwrap();
        assert!(tree.path().join("app/main.c").exists());
        assert!(tree.path().join("app/docs/keep.md").exists());
        assert!(!tree.path().join("app/docs/drop.md").exists());
        assert!(!tree.path().join("app/secret.key").exists());
        assert!(
            copy(tree.path(), ctx.path(), &["secret.key".into()], "/x", CopyOptions { ignore: &ig, ..opts(own, &none) }, "COPY").is_err()
        );
    }

    #[test]
    fn a_directory_swapped_for_a_host_symlink_mid_copy_is_not_followed() {
        use crate::rootfs::{BEFORE_OPEN, HOOK_LOCK};
        let _serial = HOOK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let none = Ignore::default();
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("host-secret"), b"s").unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        fs::create_dir_all(ctx.path().join("d/sub")).unwrap();
        fs::write(ctx.path().join("d/sub/f"), b"f").unwrap();
        // Matching saw a real directory; the swap strikes right before its open.
        let (sub, host_dir) = (ctx.path().join("d/sub"), host.path().to_path_buf());
        *BEFORE_OPEN.lock().unwrap() = Some(Box::new(move |p: &Path| {
            if p == sub && fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                fs::rename(p, p.with_file_name("moved")).unwrap();
                std::os::unix::fs::symlink(&host_dir, p).unwrap();
            }
        }));
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let own = CopyOwnership { owner: Some(me), mode: None };
        let result = copy(tree.path(), ctx.path(), &["d".into()], "/x/", opts(own, &none), "COPY");
        *BEFORE_OPEN.lock().unwrap() = None;
        let err = result.unwrap_err();
        assert!(format!("{err:#}").contains("changed while being read"), "{err:#}");
        let copied: Vec<_> = walkdir::WalkDir::new(tree.path()).into_iter().map(|e| e.unwrap().file_name().to_os_string()).collect();
        assert!(!copied.iter().any(|n| n == "host-secret"), "a host file was copied: {copied:?}");
    }

    #[test]
    fn a_stage_source_keeps_its_owner_and_a_context_source_becomes_root() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: giving a file to another owner needs root (the e2e tests cover it unprivileged)");
            return;
        }
        let none = Ignore::default();
        let (src, tree) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir(src.path().join("d")).unwrap();
        fs::write(src.path().join("d/f"), b"f").unwrap();
        for p in ["d", "d/f"] {
            nix::unistd::chown(&src.path().join(p), Some(1234.into()), Some(5678.into())).unwrap();
        }
        let owner_of = |p: &str| fs::symlink_metadata(tree.path().join(p)).map(|m| (m.uid(), m.gid())).unwrap();
        let kept = CopyOptions { source_owners: SourceOwners::Kept, ..opts(CopyOwnership::default(), &none) };
        copy(tree.path(), src.path(), &["d".into(), "d/f".into()], "/kept/", kept, "COPY").unwrap();
        assert_eq!((owner_of("kept"), owner_of("kept/f")), ((0, 0), (1234, 5678)), "created dest dir is root's, sources keep theirs");
        let chowned = CopyOptions { own: CopyOwnership { owner: Some((7, 8)), mode: None }, ..kept };
        copy(tree.path(), src.path(), &["d/f".into()], "/chowned", chowned, "COPY").unwrap();
        assert_eq!(owner_of("chowned"), (7, 8), "--chown still wins");
        copy(tree.path(), src.path(), &["d/f".into()], "/context", opts(CopyOwnership::default(), &none), "COPY").unwrap();
        assert_eq!(owner_of("context"), (0, 0), "a context file is root's");
    }

    #[test]
    fn a_sparse_file_is_copied_with_its_holes() {
        use std::io::{Read, Seek, SeekFrom, Write};
        use std::os::unix::fs::MetadataExt;
        let none = Ignore::default();
        let (src, tree) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut f = File::create(src.path().join("lastlog")).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(1 << 30)).unwrap();
        f.write_all(b"tail").unwrap();
        drop(f);
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let own = CopyOwnership { owner: Some(me), mode: None };
        copy(tree.path(), src.path(), &["lastlog".into()], "/x", opts(own, &none), "COPY").unwrap();
        let m = fs::metadata(tree.path().join("x")).unwrap();
        assert_eq!(m.len(), (1 << 30) + 4);
        assert!(m.blocks() * 512 <= 1 << 20, "1 GiB of holes took {} bytes", m.blocks() * 512);
        let mut content = File::open(tree.path().join("x")).unwrap();
        let mut buf = [0u8; 4];
        content.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"head");
        content.seek(SeekFrom::Start(1 << 29)).unwrap();
        content.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [0; 4], "a hole reads as zeros");
        content.seek(SeekFrom::Start(1 << 30)).unwrap();
        content.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"tail");
        let mut rest = Vec::new();
        content.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "nothing past the end");
    }
}
