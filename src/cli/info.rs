//! `strata info`: what this host offers and how strata will use it.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::sandbox::{which, Privilege};
use crate::store::LocalStore;

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON instead of aligned text.
    #[arg(long)]
    pub json: bool,
}

fn first_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8_lossy(if out.stdout.is_empty() { &out.stderr } else { &out.stdout }).into_owned();
    text.lines().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string())
}

pub fn info(store: &LocalStore, args: InfoArgs) -> Result<ExitCode> {
    let uname = nix::sys::utsname::uname()?;
    let (mode, mapping) = match &store.privilege {
        Privilege::RealRoot => ("real root (no user namespace)".to_string(), "host ids".to_string()),
        Privilege::Namespaced(m) if m.is_single_id() => ("rootless, single id (no subuid range)".to_string(), m.to_string()),
        Privilege::Namespaced(m) => ("rootless, user namespace with subordinate ids".to_string(), m.to_string()),
        Privilege::Chroot(m) => ("root without namespaces (RUN chrooted, not isolated)".to_string(), m.to_string()),
    };
    let fuse = which("fuse-overlayfs")
        .and_then(|p| first_line(&p.display().to_string(), &["--version"]))
        .unwrap_or_else(|| "not installed".into());
    let newuidmap = which("newuidmap").map(|p| p.display().to_string()).unwrap_or_else(|| "not installed".into());
    let rows: Vec<(&str, String)> = vec![
        ("strata", env!("CARGO_PKG_VERSION").to_string()),
        (
            "kernel",
            format!("{} {} {}", uname.sysname().to_string_lossy(), uname.release().to_string_lossy(), uname.machine().to_string_lossy()),
        ),
        ("platform", crate::platform::Platform::host().to_string()),
        (
            "platforms",
            crate::sandbox::runnable_platforms().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                + " (host, then each with an enabled qemu binfmt_misc handler)",
        ),
        ("storage driver", store.driver.name().to_string()),
        ("privilege", mode),
        ("setup", crate::sandbox::setup_entry().map_or("unknown", |e| e.describe()).to_string()),
        ("container", crate::sandbox::detect_container()),
        ("/proc for RUN", crate::sandbox::proc_source().to_string()),
        ("id mapping", mapping),
        ("store", store.root.display().to_string()),
        ("newuidmap", newuidmap),
        ("fuse-overlayfs", fuse),
    ];
    if args.json {
        let map: serde_json::Map<String, serde_json::Value> =
            rows.into_iter().map(|(k, v)| (k.replace(' ', "_"), serde_json::Value::String(v))).collect();
        println!("{}", serde_json::to_string_pretty(&map)?);
    } else {
        for (k, v) in rows {
            println!("{:<16}{v}", format!("{k}:"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
