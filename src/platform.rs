//! Platforms in the names images use: Go's GOOS/GOARCH and the variant, as the OCI
//! image spec and containerd spell them.
//!
//! One type answers for every module that asks: an empty image config (`oci`),
//! which manifest of an index to pull, import or run (`oci`, `registry`), `build
//! --platform`, `FROM --platform` and the TARGET*/BUILD* ARGs (`plan`), `info`, and
//! the architecture conditions of a seccomp profile (`sandbox`). libseccomp's own
//! architecture names are another vocabulary and stay with the sandbox.
//!
//! What users write is parsed and normalised as containerd's `platforms` package
//! does: `x86_64` is `amd64`, `aarch64` is `arm64` (whose `v8` variant is implied
//! and dropped), `arm` alone is `arm/v7`, an architecture alone is Linux's.
//!
//! A leaf: uses nothing in strata, so every module may use it.

use std::fmt;

/// An OS, architecture and variant, as an image's config and an index name them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine.
    pub fn host() -> Platform {
        let (architecture, variant) = go_arch(std::env::consts::ARCH);
        // strata runs on Linux only: namespaces and overlayfs are what it is made of.
        Platform { os: "linux".into(), architecture: architecture.into(), variant: variant.map(String::from) }
    }

    /// A platform from its parts, normalised (see [`Platform::parse`]).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let (architecture, variant) = normalize_arch(&architecture.to_ascii_lowercase(), variant.map(str::to_ascii_lowercase));
        let os = match os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            o => o.to_string(),
        };
        Platform { os, architecture, variant }
    }

    /// `os/arch[/variant]`, `arch` alone (Linux's) or `local` (the host), normalised
    /// as containerd normalises them.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("local") {
            return Ok(Platform::host());
        }
        let bad = |why: &str| format!("invalid platform {text:?}: {why} (want os/arch[/variant], e.g. linux/arm64)");
        let parts: Vec<&str> = t.split('/').collect();
        if parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')) {
            return Err(bad("empty or unexpected characters in a part"));
        }
        match parts.as_slice() {
            [arch] if is_known_os(arch) => Ok(Platform::new(arch, &Platform::host().architecture, None)),
            [arch] => Ok(Platform::new("linux", arch, None)),
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(bad("too many parts")),
        }
    }

    /// A comma-separated list (`linux/amd64,linux/arm64`), duplicates dropped,
    /// in the order given.
    pub fn parse_list(text: &str) -> Result<Vec<Platform>, String> {
        let mut out: Vec<Platform> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let p = Platform::parse(part)?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.is_empty() {
            return Err(format!("invalid platform list {text:?}: no platform named"));
        }
        Ok(out)
    }

    /// Whether an image for `other` (as an index or a config names it) is one for
    /// this platform. Both sides are normalised first; a missing variant on either
    /// side matches any, as containerd's matcher lets `arm64` match `arm64/v8`.
    pub fn matches(&self, other: &Platform) -> bool {
        let other = Platform::new(&other.os, &other.architecture, other.variant.as_deref());
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// Whether this platform is the machine's own: its RUN steps need no emulator.
    pub fn is_host(&self) -> bool {
        let host = Platform::host();
        self.os == host.os && self.architecture == host.architecture
    }
}

/// `os/architecture[/variant]`, as podman and BuildKit write a platform.
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

fn is_known_os(word: &str) -> bool {
    matches!(word.to_ascii_lowercase().as_str(), "linux" | "windows" | "darwin" | "freebsd" | "macos")
}

/// containerd's normalisation of an architecture and its variant.
fn normalize_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    let v = variant.as_deref();
    let (a, v): (&str, Option<&str>) = match (arch, v) {
        ("i386", _) => ("386", None),
        ("x86_64" | "x86-64" | "amd64", Some("v1") | None) => ("amd64", None),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", Some("8" | "v8") | None) => ("arm64", None),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", Some("v7")),
        ("armel", _) => ("arm", Some("v6")),
        ("arm", None | Some("7")) => ("arm", Some("v7")),
        ("arm", Some("5")) => ("arm", Some("v5")),
        ("arm", Some("6")) => ("arm", Some("v6")),
        (a, v) => (a, v),
    };
    (a.to_string(), v.map(String::from))
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

/// The name `uname -m` and qemu's binfmt handlers (`qemu-NAME`) give a Go
/// architecture: what the emulator for `platform` is called.
pub fn qemu_name(platform: &Platform) -> String {
    match (platform.architecture.as_str(), platform.variant.as_deref()) {
        ("amd64", _) => "x86_64".into(),
        ("386", _) => "i386".into(),
        ("arm64", _) => "aarch64".into(),
        ("arm", _) => "arm".into(),
        ("ppc64le", _) => "ppc64le".into(),
        ("ppc64", _) => "ppc64".into(),
        ("mips64le", _) => "mips64el".into(),
        ("mipsle", _) => "mipsel".into(),
        ("loong64", _) => "loongarch64".into(),
        (other, _) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform { os: os.into(), architecture: arch.into(), variant: variant.map(String::from) }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn this_x86_64_machine_is_linux_amd64() {
        let host = Platform::host();
        assert_eq!(host, p("linux", "amd64", None));
        assert_eq!(host.to_string(), "linux/amd64");
        assert_eq!(Platform::parse("local").unwrap(), host);
        assert!(host.is_host());
    }

    #[test]
    fn rust_architectures_get_go_names() {
        assert_eq!(go_arch("x86_64"), ("amd64", None));
        assert_eq!(go_arch("aarch64"), ("arm64", None));
        assert_eq!(go_arch("x86"), ("386", None));
        assert_eq!(go_arch("arm"), ("arm", Some("v7")));
        assert_eq!(go_arch("s390x"), ("s390x", None));
        assert_eq!(p("linux", "arm", Some("v7")).to_string(), "linux/arm/v7");
    }

    #[test]
    fn written_platforms_are_normalised_as_containerd_does() {
        let cases = [
            ("linux/amd64", p("linux", "amd64", None)),
            ("linux/x86_64", p("linux", "amd64", None)),
            ("amd64", p("linux", "amd64", None)),
            ("linux/amd64/v1", p("linux", "amd64", None)),
            ("linux/amd64/v3", p("linux", "amd64", Some("v3"))),
            ("linux/arm64", p("linux", "arm64", None)),
            ("linux/aarch64", p("linux", "arm64", None)),
            ("linux/arm64/v8", p("linux", "arm64", None)),
            ("arm64", p("linux", "arm64", None)),
            ("Linux/ARM64", p("linux", "arm64", None)),
            ("linux/arm", p("linux", "arm", Some("v7"))),
            ("linux/arm/v6", p("linux", "arm", Some("v6"))),
            ("linux/armhf", p("linux", "arm", Some("v7"))),
            ("linux/i386", p("linux", "386", None)),
            ("linux/s390x", p("linux", "s390x", None)),
        ];
        for (text, want) in cases {
            assert_eq!(Platform::parse(text).unwrap(), want, "{text}");
        }
        for bad in ["", "linux/", "/amd64", "linux/amd64/v8/x", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lists_keep_order_and_drop_duplicates() {
        let list = Platform::parse_list("linux/amd64, linux/arm64,linux/x86_64").unwrap();
        assert_eq!(list, vec![p("linux", "amd64", None), p("linux", "arm64", None)]);
        assert!(Platform::parse_list(" , ").is_err());
        assert!(Platform::parse_list("linux/amd64,linux//x").is_err());
    }

    #[test]
    fn a_missing_variant_matches_any_and_names_are_normalised() {
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(arm64.matches(&p("linux", "arm64", Some("v8"))));
        assert!(arm64.matches(&p("linux", "aarch64", None)));
        assert!(!arm64.matches(&p("linux", "amd64", None)));
        let v6 = Platform::parse("linux/arm/v6").unwrap();
        assert!(!v6.matches(&p("linux", "arm", Some("v7"))));
        assert_eq!(qemu_name(&arm64), "aarch64");
        assert_eq!(qemu_name(&Platform::parse("linux/amd64").unwrap()), "x86_64");
    }
}
