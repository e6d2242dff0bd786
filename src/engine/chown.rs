//! `--chown=USER[:GROUP]` (and a missing WORKDIR's owner, the current USER)
//! resolved in the destination image's own passwd and group files.

use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, Result};

use crate::rootfs::{resolve_in, Last};

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
}
