//! Which foreign architectures this machine can run: the kernel's binfmt_misc
//! handlers for qemu-user-static. A handler registered with the F flag has its
//! interpreter opened at registration, so it works inside any mount namespace and
//! chroot: the sandbox needs nothing of its own, only to know before a RUN whether
//! the handler is there, so nothing ever runs on (or fails cryptically for) an
//! architecture the machine cannot execute.

use std::fs;
use std::path::PathBuf;

use crate::platform::{qemu_name, Platform};

/// Where the kernel lists binfmt_misc handlers.
const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Platforms qemu handlers are looked for, for `info`.
const EMULATED: [&str; 7] = ["linux/arm64", "linux/arm/v7", "linux/amd64", "linux/386", "linux/ppc64le", "linux/s390x", "linux/riscv64"];

fn dir() -> PathBuf {
    crate::fault::binfmt_dir().unwrap_or_else(|| PathBuf::from(BINFMT_DIR))
}

/// Whether `platform`'s binaries run here: natively, or through an enabled
/// `qemu-<arch>` handler. The error says what to install or enable.
pub fn check_runnable(platform: &Platform) -> Result<(), String> {
    if platform.is_host() {
        return Ok(());
    }
    let name = format!("qemu-{}", qemu_name(platform));
    let path = dir().join(&name);
    match fs::read_to_string(&path) {
        Ok(text) if text.lines().next() == Some("enabled") && fix_binary(&text) => Ok(()),
        // Without F the kernel opens the interpreter by path when the RUN execs,
        // inside the build's root, where it is not: the step would fail with ENOENT.
        Ok(text) if text.lines().next() == Some("enabled") => Err(format!(
            "cannot run {platform} binaries in a build on this {} machine: the binfmt_misc handler {} was registered without the F (fix-binary) flag, so its interpreter is not found inside the build's root; register it with F (Debian's qemu-user-static and binfmt-support do: `update-binfmts --disable {name} && update-binfmts --enable {name}`)",
            Platform::host(),
            path.display()
        )),
        Ok(_) => Err(format!(
            "cannot run {platform} binaries on this {} machine: the binfmt_misc handler {} is disabled; enable it (`update-binfmts --enable {name}`, as root)",
            Platform::host(),
            path.display()
        )),
        Err(_) => Err(format!(
            "cannot run {platform} binaries on this {} machine: no binfmt_misc handler {} (install the package qemu-user-static, and binfmt-support to register it: `apt-get install qemu-user-static binfmt-support`, then `update-binfmts --enable {name}`)",
            Platform::host(),
            path.display()
        )),
    }
}

/// True when the handler's `flags:` line has F: its interpreter was opened when it
/// was registered, so it works in any mount namespace and chroot.
fn fix_binary(entry: &str) -> bool {
    entry.lines().find_map(|l| l.strip_prefix("flags:")).is_some_and(|f| f.contains('F'))
}

/// The platforms RUN can execute: the host's, then each with an enabled emulator.
pub fn runnable_platforms() -> Vec<Platform> {
    let mut out = vec![Platform::host()];
    for p in EMULATED.iter().filter_map(|p| Platform::parse(p).ok()) {
        if !out.iter().any(|o| o.architecture == p.architecture) && check_runnable(&p).is_ok() {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_always_runs_and_errors_name_the_package() {
        assert!(check_runnable(&Platform::host()).is_ok());
        assert_eq!(runnable_platforms()[0], Platform::host());
        // An architecture no qemu handler is named for.
        let err = check_runnable(&Platform::parse("linux/nosucharch").unwrap()).unwrap_err();
        assert!(err.contains("qemu-user-static") && err.contains("qemu-nosucharch"), "{err}");
        assert!(fix_binary("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n"));
        assert!(!fix_binary("enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OC\noffset 0\n"));
    }
}
