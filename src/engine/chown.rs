//! `--chown=USER[:GROUP]` and a missing WORKDIR's owner (the current USER)
//! resolved in the destination image's own passwd and group files.

use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, Result};

use crate::rootfs::{resolve_in, Last};

/// The image's passwd and group files (empty when missing).
fn id_files(tree: &Path) -> (String, String) {
    let read = |f: &str| fs::read_to_string(resolve_in(tree, Path::new(f), Last::Follow).unwrap_or_default()).unwrap_or_default();
    (read("/etc/passwd"), read("/etc/group"))
}

/// The passwd entry of `name`: (uid, gid).
fn passwd_entry(passwd: &str, name: &str) -> Option<(u32, u32)> {
    let f: Vec<&str> = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 4 && f[0] == name)?;
    Some((f[2].parse().ok()?, f[3].parse().ok()?))
}

/// The gid of the group `name`.
fn group_entry(group: &str, name: &str) -> Option<u32> {
    group.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 3 && f[0] == name).and_then(|f| f[2].parse().ok())
}

/// The owner WORKDIR gives the directories it creates: the USER `user[:group]`
/// as BuildKit's mkdir resolves it, which never fails. A number (or `root`) is
/// that id, for the group too when none is given; a name is looked up in the
/// image's passwd (its uid and primary gid), a group name in its group file, and
/// a name found in neither leaves the id it would set at 0 (root).
pub(super) fn workdir_owner(tree: &Path, user: &str) -> (u32, u32) {
    let (passwd, group) = id_files(tree);
    let number = |s: &str| if s == "root" { Some(0) } else { s.parse::<u32>().ok() };
    let (name, grp) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let (uid, mut gid) = match number(name) {
        Some(n) => (n, n),
        None => passwd_entry(&passwd, name).unwrap_or((0, 0)),
    };
    if let Some(g) = grp {
        match number(g) {
            Some(n) => gid = n,
            None => gid = group_entry(&group, g).unwrap_or(gid),
        }
    }
    (uid, gid)
}

/// `--chown=user[:group]` resolved in the destination image's passwd and group files.
pub(super) fn resolve_owner(tree: &Path, spec: &str) -> Result<(u32, u32)> {
    let (passwd, group) = id_files(tree);
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
            Err(_) => {
                group_entry(&group, g).ok_or_else(|| anyhow!("--chown={spec}: unable to find group {g} in the image's /etc/group"))?
            }
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
    fn workdir_owner_resolves_as_buildkit_and_never_fails() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n").unwrap();
        fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(workdir_owner(d.path(), "app"), (1000, 1001));
        assert_eq!(workdir_owner(d.path(), "ghost"), (0, 0), "a name not in passwd is root");
        assert_eq!(workdir_owner(d.path(), "app:ghostgrp"), (1000, 1001), "a group not found keeps the user's");
        assert_eq!(workdir_owner(d.path(), "app:staff"), (1000, 50));
        assert_eq!(workdir_owner(d.path(), "app:root"), (1000, 0));
        assert_eq!(workdir_owner(d.path(), "4321"), (4321, 4321));
        assert_eq!(workdir_owner(d.path(), "4321:7"), (4321, 7));
        assert_eq!(workdir_owner(d.path(), "ghost:staff"), (0, 50));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(workdir_owner(empty.path(), "app"), (0, 0), "no passwd file: root");
    }
}
