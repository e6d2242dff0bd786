//! The platform strata runs on, and so builds for, in the names images use: Go's
//! GOOS/GOARCH and the variant, as the OCI image spec and containerd spell them.
//!
//! One function answers for every module that asks: an empty image config
//! (`oci`), which manifest of an index to pull or import (`oci`, `registry`), `FROM
//! --platform` and the TARGET*/BUILD* ARGs (`plan`), `info`, and the architecture
//! conditions of a seccomp profile (`sandbox`). libseccomp's own architecture names
//! are another vocabulary and stay with the sandbox.
//!
//! A leaf: uses nothing in strata, so every module may use it.

use std::fmt;

/// An OS, architecture and variant, as an image's config and an index name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: &'static str,
    pub architecture: &'static str,
    pub variant: Option<&'static str>,
}

impl Platform {
    /// The platform of this machine.
    pub fn host() -> Platform {
        let (architecture, variant) = go_arch(std::env::consts::ARCH);
        // strata runs on Linux only: namespaces and overlayfs are what it is made of.
        Platform { os: "linux", architecture, variant }
    }
}

/// `os/architecture[/variant]`, as podman and BuildKit write a platform.
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

/// Go's name for a Rust target architecture, with the variant it implies. Names
/// not listed are the same in both (riscv64, s390x).
fn go_arch(rust: &'static str) -> (&'static str, Option<&'static str>) {
    let little = cfg!(target_endian = "little");
    match rust {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", None),
        // What Debian's armhf and most 32-bit ARM images are built for.
        "arm" => ("arm", Some("v7")),
        "powerpc64" if little => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "mips64" if little => ("mips64le", None),
        "mips" if little => ("mipsle", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn this_x86_64_machine_is_linux_amd64() {
        let host = Platform::host();
        assert_eq!(host, Platform { os: "linux", architecture: "amd64", variant: None });
        assert_eq!(host.to_string(), "linux/amd64");
    }

    #[test]
    fn rust_architectures_get_go_names() {
        assert_eq!(go_arch("x86_64"), ("amd64", None));
        assert_eq!(go_arch("aarch64"), ("arm64", None));
        assert_eq!(go_arch("x86"), ("386", None));
        assert_eq!(go_arch("arm"), ("arm", Some("v7")));
        assert_eq!(go_arch("s390x"), ("s390x", None));
        let arm = Platform { os: "linux", architecture: "arm", variant: Some("v7") };
        assert_eq!(arm.to_string(), "linux/arm/v7");
    }
}
