//! `strata bundle`: an image as an OCI runtime bundle (rootfs + config.json) that
//! runc or crun run directly, rootless included.
//!
//! The rootfs is copied inside strata's user namespace, so its files belong to the
//! same mapped ids as in the layer dirs; config.json then carries that very mapping
//! (container 0 = the user, 1..N = the subordinate range), so a rootless runtime sees
//! the image's owners. The process gets what `strata run` gives: the image's
//! entrypoint, command, environment, working dir and user, Docker's default
//! capabilities, no_new_privs and Docker's masked and read-only /proc paths.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::sandbox::{resolve_user_in, IdExtent, IdMapping, DEFAULT_CAPS, DEFAULT_PATH};
use crate::store::{ImageState, LocalStore};

/// What the bundle's process runs, after the image's config and the user's overrides.
pub struct BundleProcess {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
}

impl BundleProcess {
    /// The image's entrypoint + command (`command` replaces CMD when given), env,
    /// working dir and user.
    pub fn from_image(image: &ImageState, command: &[String]) -> Result<BundleProcess> {
        let cfg = image.config.config.clone().unwrap_or_default();
        let cmd = if command.is_empty() { cfg.cmd.clone().unwrap_or_default() } else { command.to_vec() };
        let argv: Vec<String> = cfg.entrypoint.clone().unwrap_or_default().into_iter().chain(cmd).collect();
        if argv.is_empty() {
            bail!("no command: the image has no CMD or ENTRYPOINT and none was given");
        }
        let mut env = cfg.env.clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        Ok(BundleProcess {
            argv,
            env,
            cwd: cfg.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
            user: cfg.user.clone().unwrap_or_default(),
        })
    }
}

/// Writes the bundle of the stored image `reference` to `dir` (missing or empty),
/// running `command` instead of its CMD when given; returns the bundle's absolute
/// path.
pub fn bundle(store: &LocalStore, reference: &str, command: &[String], dir: &Path) -> Result<PathBuf> {
    let manifest =
        store.images.resolve_for(reference, None)?.with_context(|| format!("image {reference:?} not found in the local store"))?;
    let image = store.load_image(&manifest)?;
    let process = BundleProcess::from_image(&image, command)?;
    let dir = std::path::absolute(dir)?;
    write_bundle(store, &image, &process, &dir)?;
    Ok(dir)
}

/// Writes the bundle of `image` to `dir` (missing or empty).
pub fn write_bundle(store: &LocalStore, image: &ImageState, process: &BundleProcess, dir: &Path) -> Result<()> {
    if dir.exists() && fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.next().is_some() {
        bail!("bundle directory {} is not empty", dir.display());
    }
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(&rootfs).with_context(|| format!("creating {}", rootfs.display()))?;
    store.flatten_image(image, &rootfs)?;
    let read = |f: &str| fs::read_to_string(rootfs.join(f)).unwrap_or_default();
    let user = resolve_user_in(&process.user, &read("etc/passwd"), &read("etc/group")).map_err(anyhow::Error::msg)?;
    let mapping = store.privilege.mapping().filter(|m| !m.is_initial()).cloned();
    let config = runtime_config(process, user.uid, user.gid, &user.groups, mapping.as_ref());
    let path = dir.join("config.json");
    fs::write(&path, serde_json::to_vec_pretty(&config)?).with_context(|| format!("writing {}", path.display()))
}

/// config.json as runc's `spec --rootless` lays it out, filled from the image.
fn runtime_config(process: &BundleProcess, uid: u32, gid: u32, groups: &[u32], mapping: Option<&IdMapping>) -> Value {
    let caps: Vec<String> = DEFAULT_CAPS.iter().map(ToString::to_string).collect();
    // A rootless runtime cannot call setgroups(2): supplementary groups only as root.
    let user = match mapping {
        Some(_) => json!({"uid": uid, "gid": gid}),
        None => json!({"uid": uid, "gid": gid, "additionalGids": groups}),
    };
    let extents =
        |v: &[IdExtent]| v.iter().map(|e| json!({"containerID": e.inside, "hostID": e.outside, "size": e.size})).collect::<Vec<_>>();
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "ipc"}), json!({"type": "uts"}), json!({"type": "mount"})];
    let mut linux = json!({
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
            "/sys/devices/virtual/powercap"
        ],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    });
    // A rootless runtime may not mount a fresh sysfs: bind the host's, read-only.
    let mut sys = json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]});
    let mut devpts_options = vec!["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"];
    if let Some(m) = mapping {
        namespaces.push(json!({"type": "user"}));
        linux["uidMappings"] = json!(extents(&m.uids));
        linux["gidMappings"] = json!(extents(&m.gids));
        sys = json!({"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
    } else {
        devpts_options.push("gid=5");
    }
    linux["namespaces"] = json!(namespaces);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": user,
            "args": process.argv,
            "env": process.env,
            "cwd": process.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "strata",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts_options},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            sys,
            {"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": ["rbind", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["rbind", "ro"]}
        ],
        "linux": linux
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_config_carries_the_mapping_and_docker_defaults() {
        let process = BundleProcess { argv: vec!["hello".into()], env: vec!["PATH=/bin".into()], cwd: "/app".into(), user: "app".into() };
        let mapping = IdMapping {
            uids: vec![IdExtent { inside: 0, outside: 1000, size: 1 }, IdExtent { inside: 1, outside: 100000, size: 65536 }],
            gids: vec![IdExtent { inside: 0, outside: 1000, size: 1 }],
        };
        let c = runtime_config(&process, 1000, 1000, &[1000], Some(&mapping));
        assert_eq!(c["process"]["args"], json!(["hello"]));
        assert_eq!(c["process"]["user"], json!({"uid": 1000, "gid": 1000}), "no setgroups in a rootless container");
        assert_eq!(c["process"]["capabilities"]["bounding"].as_array().map(Vec::len), Some(14));
        assert_eq!(c["linux"]["uidMappings"][1], json!({"containerID": 1, "hostID": 100000, "size": 65536}));
        assert!(c["linux"]["namespaces"].as_array().unwrap().contains(&json!({"type": "user"})));
        assert!(!c["linux"]["namespaces"].as_array().unwrap().contains(&json!({"type": "network"})), "host network, as strata run");
        let as_root = runtime_config(&process, 0, 0, &[0], None);
        assert!(as_root["linux"].get("uidMappings").is_none());
        assert_eq!(as_root["mounts"][5]["type"], "sysfs");
    }
}
