//! Who the command runs as: its user and groups, resolved in the container's own
//! /etc/passwd and /etc/group as Docker resolves them, and the privileges it keeps
//! (no_new_privs, Docker's default capabilities and nothing above them).
//!
//! Kept apart from the rest of pid 1's setup because it is also what `strata
//! bundle` needs to write an OCI runtime config: the same user, the same caps.

use std::fs;

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};

/// Docker's default capability set for containers.
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// A user as the container's passwd and group files define it.
#[derive(Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

pub(super) fn resolve_user(spec: &str) -> Result<ResolvedUser, String> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    resolve_user_in(spec, &passwd, &group)
}

/// Resolves `user[:group]` the way Docker does: names must exist, numeric ids need
/// not; a numeric uid without a passwd entry gets gid 0 and HOME=/.
pub fn resolve_user_in(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entries: Vec<Vec<&str>> = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 7).collect();
    let found = entries.iter().find(|f| f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user));
    let (uid, mut gid, home, name) = match (found, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse().map_err(|_| format!("bad uid in /etc/passwd for {user}"))?,
            f[3].parse().unwrap_or(0),
            f[5].to_string(),
            Some(f[0]),
        ),
        (None, Ok(n)) => (n, 0, "/".to_string(), None),
        (None, Err(_)) => return Err(format!("unable to find user {user}: no matching entries in passwd file")),
    };
    let groups_tab: Vec<Vec<&str>> = group.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 3).collect();
    if let Some(g) = grp {
        gid = match groups_tab.iter().find(|f| f[0] == g) {
            Some(f) => f[2].parse().map_err(|_| format!("bad gid in /etc/group for {g}"))?,
            None => g.parse().map_err(|_| format!("unable to find group {g}: no matching entries in group file"))?,
        };
    }
    let mut groups = vec![gid];
    if let (Some(name), None) = (name, grp) {
        for f in &groups_tab {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser { uid, gid, groups, home })
}

pub(super) fn drop_privileges(user: &ResolvedUser) -> Result<(), String> {
    // The command's privileges, in order: no_new_privs, a bounding set cut to
    // Docker's defaults, its groups and ids, then (for root) only the default caps.
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("prctl(PR_SET_NO_NEW_PRIVS): {}", std::io::Error::last_os_error()));
    }
    // Only what we hold can be kept: a container runtime may have given us fewer
    // than Docker's defaults (podman leaves out MKNOD, AUDIT_WRITE and NET_RAW).
    let held = caps::read(None, CapSet::Permitted).unwrap_or_default();
    let keep: CapsHashSet = DEFAULT_CAPS.iter().copied().filter(|c| held.contains(c)).collect();
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| format!("drop {cap} from bounding set: {e}"))?;
        }
    }
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    // Only the image's groups (buildah's CVE-2022-2990): the caller's supplementary
    // groups must not follow the command in. setgroups is denied in a single-id
    // namespace (the kernel demands that before an unprivileged gid_map is written, and
    // newgidmap does the same without a subgid range), so there the caller's groups
    // stay, shown as 65534; `userns::enter` warns when there are any.
    if fs::read_to_string("/proc/self/setgroups").map(|s| s.trim() != "deny").unwrap_or(true) {
        setgroups(&groups).map_err(|e| format!("setgroups {:?}: {e}", user.groups))?;
    }
    setgid(Gid::from_raw(user.gid)).map_err(|e| format!("setgid {}: {e}", user.gid))?;
    setuid(Uid::from_raw(user.uid)).map_err(|e| format!("setuid {}: {e}", user.uid))?;
    if user.uid == 0 {
        let _ = caps::clear(None, CapSet::Ambient);
        caps::set(None, CapSet::Inheritable, &CapsHashSet::new()).map_err(|e| format!("set inheritable caps: {e}"))?;
        caps::set(None, CapSet::Effective, &keep).map_err(|e| format!("set effective caps: {e}"))?;
        caps::set(None, CapSet::Permitted, &keep).map_err(|e| format!("set permitted caps: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app\napp:x:1000:\n";

    #[test]
    fn names_and_ids_resolve_like_docker() {
        let app = resolve_user_in("app", PASSWD, GROUP).unwrap();
        assert_eq!((app.uid, app.gid, app.home.as_str()), (1000, 1000, "/home/app"));
        assert_eq!(app.groups, vec![1000, 10]);
        let numeric = resolve_user_in("4242", PASSWD, GROUP).unwrap();
        assert_eq!((numeric.uid, numeric.gid, numeric.home.as_str()), (4242, 0, "/"));
        let with_group = resolve_user_in("app:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((with_group.uid, with_group.gid), (1000, 10));
        assert_eq!(resolve_user_in("1000:77", PASSWD, GROUP).unwrap().gid, 77);
        assert!(resolve_user_in("nobody", PASSWD, GROUP).unwrap_err().contains("unable to find user nobody"));
        assert!(resolve_user_in("app:staff", PASSWD, GROUP).is_err());
    }
}
