//! Reading single files of the build context: the ignore file (`ignore_for`) and a
//! Dockerfile found in the context.
//!
//! The context may come from anyone (a cloned repository), so its files are read
//! the way BuildKit reads them through the context's filesystem: a symlink is
//! resolved inside the context (a link to `/home/me/.ssh/id_rsa` names the context's
//! `home/me/.ssh/id_rsa`), and the file is opened through directory descriptors, so
//! a path swapped for a symlink after that check is refused rather than followed.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::dockerfile::Ignore;
use crate::rootfs::RootfsError;
use crate::rootfs::{open_file_below, resolve_in, Last};

/// `path` resolved inside `context` (which it must lie below), as a path below it.
pub fn resolve(context: &Path, path: &Path) -> io::Result<PathBuf> {
    let rel = path.strip_prefix(context).map_err(|_| io::Error::other(format!("{} is not inside the context", path.display())))?;
    resolve_in(context, rel, Last::Follow).map_err(to_io)
}

/// Reads the file `path` of the context; NotFound when it (or what a symlink names
/// inside the context) does not exist.
pub fn read_to_string(context: &Path, path: &Path) -> io::Result<String> {
    let resolved = resolve(context, path)?;
    let rel = resolved.strip_prefix(context).unwrap_or(Path::new(""));
    let mut text = String::new();
    open_file_below(context, rel).map_err(to_io)?.read_to_string(&mut text)?;
    Ok(text)
}

/// The build's ignore file (see [`Ignore::for_build`]): one inside the context is
/// read as the context's files are, one beside a `-f` Dockerfile elsewhere as the
/// user named it.
pub fn ignore_for(context: &Path, dockerfile: &Path) -> anyhow::Result<Ignore> {
    use anyhow::Context as _;
    let read = |p: &Path| if p.starts_with(context) { read_to_string(context, p) } else { std::fs::read_to_string(p) };
    Ignore::for_build(context, dockerfile, read).context("reading the ignore file")
}

fn to_io(e: RootfsError) -> io::Error {
    match e {
        RootfsError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_context() {
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("ignore"), "secret\n").unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let ctx = ctx.path();
        symlink(host.path().join("ignore"), ctx.join(".dockerignore")).unwrap();
        let err = read_to_string(ctx, &ctx.join(".dockerignore")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "the host file is never read: {err}");
        // The same link, resolved inside the context, finds the context's copy.
        let inside = ctx.join(host.path().strip_prefix("/").unwrap());
        fs::create_dir_all(&inside).unwrap();
        fs::write(inside.join("ignore"), "inside\n").unwrap();
        assert_eq!(read_to_string(ctx, &ctx.join(".dockerignore")).unwrap(), "inside\n");
        fs::write(ctx.join("real"), "real\n").unwrap();
        symlink("real", ctx.join("rel-link")).unwrap();
        assert_eq!(read_to_string(ctx, &ctx.join("rel-link")).unwrap(), "real\n");
    }
}
