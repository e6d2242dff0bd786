//! File ownership that survives a single-id user namespace.
//!
//! Without a subuid range only container uid/gid 0 exist on disk, so chown to any
//! other id fails with EINVAL. The true owner is then recorded in the
//! `user.containers.override_stat` xattr (the convention of containers/storage and
//! fuse-overlayfs: `UID:GID:MODE`, mode in octal) on a root-owned file, and the
//! layer writer puts the recorded owner in the tar header. Symlinks cannot carry
//! user xattrs; their owner is rarely meaningful and is left as root.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{AtFlags, AT_FDCWD};
use nix::unistd::{fchownat, Gid, Uid};

/// The xattr that records an owner the namespace cannot represent.
pub const OVERRIDE_XATTR: &str = "user.containers.override_stat";

/// The owner recorded on `path`, if any.
pub fn recorded_owner(path: &Path) -> Option<(u32, u32)> {
    let value = xattr::get(path, OVERRIDE_XATTR).ok().flatten()?;
    let text = String::from_utf8_lossy(&value);
    let mut parts = text.split(':');
    let uid = parts.next()?.trim().parse().ok()?;
    let gid = parts.next()?.trim().parse().ok()?;
    Some((uid, gid))
}

/// Sets `path`'s owner (not following a final symlink): for real when the ids are
/// mapped, else recorded in [`OVERRIDE_XATTR`] on a file owned by root.
pub fn set_owner(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    match fchownat(AT_FDCWD, path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(()) => {
            if xattr::get(path, OVERRIDE_XATTR).ok().flatten().is_some() {
                let _ = xattr::remove(path, OVERRIDE_XATTR);
            }
            Ok(())
        }
        Err(nix::errno::Errno::EINVAL) => record(path, uid, gid),
        Err(e) => Err(e.into()),
    }
}

fn record(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    // Root owns it on disk; the xattr says who owns it in the image.
    fchownat(AT_FDCWD, path, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)), AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let value = format!("{uid}:{gid}:0{:o}", meta.mode() & 0o7777);
    xattr::set(path, OVERRIDE_XATTR, value.as_bytes())
}

/// Changes the recorded or real owner after a chown request where `u32::MAX` means
/// "unchanged", as chown(2) takes it. Used by the sandbox's chown supervisor.
pub fn chown_request(path: &Path, follow: bool, uid: u32, gid: u32) -> io::Result<()> {
    let target = if follow { fs::canonicalize(path)? } else { path.to_path_buf() };
    let meta = fs::symlink_metadata(&target)?;
    let (cur_uid, cur_gid) = recorded_owner(&target).unwrap_or((meta.uid(), meta.gid()));
    let uid = if uid == u32::MAX { cur_uid } else { uid };
    let gid = if gid == u32::MAX { cur_gid } else { gid };
    set_owner(&target, uid, gid)?;
    // chown(2) drops setuid/setgid on regular files; keep that semantics.
    if meta.is_file() && meta.mode() & 0o6000 != 0 {
        let mode = meta.mode() & 0o1777;
        fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        if let Some((u, g)) = recorded_owner(&target) {
            xattr::set(&target, OVERRIDE_XATTR, format!("{u}:{g}:0{mode:o}").as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_owner_parses_the_convention() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"x").unwrap();
        if xattr::set(&f, OVERRIDE_XATTR, b"1000:100:0644").is_err() {
            eprintln!("skipping: no user xattrs on this filesystem");
            return;
        }
        assert_eq!(recorded_owner(&f), Some((1000, 100)));
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        set_owner(&f, me.0, me.1).unwrap();
        assert_eq!(recorded_owner(&f), None, "a real chown clears the record");
    }
}
