//! Docker's seccomp profile format: parsing, checking, and resolving its conditions.
//!
//! A profile (Docker's `default.json`, or a user's `--security-opt seccomp=FILE`) is
//! conditional: rules are included or excluded by the container's capabilities, the
//! host's architecture and kernel version. [`Profile::resolve`] applies those
//! conditions the way moby's `profiles/seccomp` does and leaves a flat list of
//! [`Rule`]s that `seccomp::compile` hands to libseccomp. Everything here is pure, so
//! the condition logic is unit-tested without loading a filter.

use serde::{Deserialize, Serialize};

use crate::platform::Platform;

/// Why a profile cannot be used; the caller adds which file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("not a seccomp profile: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown action {action:?}{}", for_names(.names))]
    UnknownAction { action: String, names: Vec<String> },
    #[error("unknown comparison {op:?}{}", for_names(.names))]
    UnknownOp { op: String, names: Vec<String> },
    #[error("argument index {index} is out of range (0-5){}", for_names(.names))]
    ArgIndex { index: u32, names: Vec<String> },
    #[error("errno {errno} is out of range (1-4095){}", for_names(.names))]
    Errno { errno: u32, names: Vec<String> },
    #[error("a syscall entry has both \"name\" and \"names\"; use one")]
    NameAndNames,
    #[error("a syscall entry has no \"names\"")]
    NoNames,
    #[error("both \"architectures\" and \"archMap\" are given; use one")]
    ArchitecturesAndArchMap,
    #[error("unknown architecture {0:?} (expected SCMP_ARCH_*)")]
    UnknownArch(String),
    #[error("bad minKernel {0:?} (expected MAJOR.MINOR)")]
    MinKernel(String),
    #[error("unsupported flag {0:?}")]
    Flag(String),
    #[error("SCMP_ACT_NOTIFY and listenerPath are not supported (strata has no seccomp agent)")]
    Notify,
}

fn for_names(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" for {}", names.join(", "))
    }
}

/// A profile in Docker's JSON format (moby `profiles/seccomp`'s `Seccomp` type).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch_map: Option<Vec<ArchMap>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    #[serde(default)]
    pub syscalls: Option<Vec<SyscallEntry>>,
}

/// A native architecture and the sub-architectures its processes may also use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

/// One `syscalls` entry: names, an action, argument tests and conditions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyscallEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub names: Option<Vec<String>>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Option<Vec<ArgEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Condition>,
}

/// `includes`/`excludes`: capabilities, architectures (Go's names) and a kernel version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    #[serde(default)]
    pub arches: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// One argument test of a rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgEntry {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// What a rule (or the default) does with a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u16),
    KillThread,
    KillProcess,
    Trap,
    Trace(u16),
    Log,
    /// Handed to pid 1 (only strata's own chown rules use it).
    Notify,
}

/// An argument comparison, as libseccomp takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    NotEqual,
    Less,
    LessOrEqual,
    Equal,
    GreaterEqual,
    Greater,
    /// `(arg & mask) == value`
    MaskedEqual {
        mask: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arg {
    pub index: u32,
    pub op: Op,
    pub value: u64,
}

/// A rule that applies on this host: these syscalls, when all `args` hold, get `action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    pub args: Vec<Arg>,
}

/// A profile with its conditions applied for one host and capability set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub default: Action,
    /// libseccomp architecture names (`SCMP_ARCH_*`) the filter covers.
    pub arches: Vec<String>,
    pub rules: Vec<Rule>,
    /// `SECCOMP_FILTER_FLAG_LOG`: log every action but allow.
    pub log: bool,
    /// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: leave speculative store bypass mitigation off.
    pub spec_allow: bool,
}

/// What the conditions of a profile are tested against.
#[derive(Clone, Debug)]
pub struct Host {
    /// Go's name of the architecture (`amd64`, `arm64`...), as profiles use it.
    pub go_arch: String,
    /// libseccomp's name of the native architecture (`SCMP_ARCH_X86_64`...).
    pub scmp_arch: String,
    /// The running kernel's major and minor version.
    pub kernel: (u32, u32),
    /// The container's bounding capabilities (`CAP_CHOWN`...).
    pub caps: Vec<String>,
}

impl Host {
    /// This machine, for a container with `caps`.
    pub fn current(caps: Vec<String>) -> Host {
        // Profiles name architectures as images do (`amd64`); libseccomp has its own.
        let go_arch = Platform::host().architecture;
        let scmp_arch = match std::env::consts::ARCH {
            "x86_64" => "SCMP_ARCH_X86_64",
            "x86" => "SCMP_ARCH_X86",
            "aarch64" => "SCMP_ARCH_AARCH64",
            "arm" => "SCMP_ARCH_ARM",
            "riscv64" => "SCMP_ARCH_RISCV64",
            "s390x" => "SCMP_ARCH_S390X",
            "powerpc64" => "SCMP_ARCH_PPC64LE",
            "loongarch64" => "SCMP_ARCH_LOONGARCH64",
            _ => "SCMP_ARCH_NATIVE",
        };
        let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
        let kernel = parse_kernel(&release).unwrap_or((0, 0));
        Host { go_arch, scmp_arch: scmp_arch.into(), kernel, caps }
    }
}

/// `6.1.0-18-amd64` -> (6, 1); also takes a profile's `4.8`.
fn parse_kernel(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().filter(|m| !m.is_empty()).map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

const ARCHES: [&str; 24] = [
    "SCMP_ARCH_NATIVE",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_SHEB",
    "SCMP_ARCH_SH",
];

impl Profile {
    /// Parses and checks a profile, so a bad one is refused before any container starts.
    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        let profile: Profile = serde_json::from_str(text)?;
        profile.check()?;
        Ok(profile)
    }

    fn check(&self) -> Result<(), ProfileError> {
        if self.listener_path.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(ProfileError::Notify);
        }
        if self.architectures.as_ref().is_some_and(|a| !a.is_empty()) && self.arch_map.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(ProfileError::ArchitecturesAndArchMap);
        }
        let listed = self.architectures.iter().flatten();
        let mapped =
            self.arch_map.iter().flatten().flat_map(|m| std::iter::once(&m.architecture).chain(m.sub_architectures.iter().flatten()));
        if let Some(bad) = listed.chain(mapped).find(|a| !ARCHES.contains(&a.as_str())) {
            return Err(ProfileError::UnknownArch(bad.clone()));
        }
        self.flags()?;
        action(&self.default_action, self.default_errno_ret, &[])?;
        for entry in self.syscalls.iter().flatten() {
            let names = entry.all_names()?;
            action(&entry.action, entry.errno_ret, &names)?;
            for arg in entry.args.iter().flatten() {
                op(arg, &names)?;
            }
            for cond in [&entry.includes, &entry.excludes].into_iter().flatten() {
                if let Some(k) = &cond.min_kernel {
                    parse_kernel(k).filter(|_| k.split('.').count() == 2).ok_or_else(|| ProfileError::MinKernel(k.clone()))?;
                }
            }
        }
        Ok(())
    }

    /// (log, spec_allow) from `flags`.
    fn flags(&self) -> Result<(bool, bool), ProfileError> {
        let (mut log, mut spec_allow) = (false, false);
        for flag in self.flags.iter().flatten() {
            match flag.as_str() {
                "SECCOMP_FILTER_FLAG_LOG" => log = true,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => spec_allow = true,
                other => return Err(ProfileError::Flag(other.to_string())),
            }
        }
        Ok((log, spec_allow))
    }

    /// The rules that apply on `host`, with moby's semantics: an entry is dropped
    /// when the host's arch is in `excludes.arches`, when any of `excludes.caps` is
    /// held, or when the kernel is at least `excludes.minKernel`; and kept only if the
    /// arch is in `includes.arches` (when given), every one of `includes.caps` is
    /// held, and the kernel is at least `includes.minKernel`.
    pub fn resolve(&self, host: &Host) -> Result<Resolved, ProfileError> {
        let (log, spec_allow) = self.flags()?;
        let mut rules = Vec::new();
        for entry in self.syscalls.iter().flatten() {
            if !applies(entry, host) {
                continue;
            }
            let names = entry.all_names()?;
            let action = action(&entry.action, entry.errno_ret, &names)?;
            let args = entry.args.iter().flatten().map(|a| op(a, &names)).collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule { names, action, args });
        }
        Ok(Resolved {
            default: action(&self.default_action, self.default_errno_ret, &[])?,
            arches: self.arches_for(&host.scmp_arch),
            rules,
            log,
            spec_allow,
        })
    }

    /// The native arch and, from `archMap`, its sub-architectures (or `architectures`).
    fn arches_for(&self, native: &str) -> Vec<String> {
        let mut arches = vec![native.to_string()];
        if let Some(map) = &self.arch_map {
            for m in map.iter().filter(|m| m.architecture == native) {
                arches.extend(m.sub_architectures.iter().flatten().cloned());
            }
        } else {
            arches.extend(self.architectures.iter().flatten().cloned());
        }
        let mut unique: Vec<String> = Vec::new();
        for a in arches {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        unique
    }
}

impl SyscallEntry {
    fn all_names(&self) -> Result<Vec<String>, ProfileError> {
        match (&self.name, &self.names) {
            (Some(n), Some(ns)) if !n.is_empty() && !ns.is_empty() => Err(ProfileError::NameAndNames),
            (Some(n), _) if !n.is_empty() => Ok(vec![n.clone()]),
            (_, Some(ns)) if !ns.is_empty() => Ok(ns.clone()),
            _ => Err(ProfileError::NoNames),
        }
    }
}

fn applies(entry: &SyscallEntry, host: &Host) -> bool {
    let has_cap = |c: &String| host.caps.iter().any(|h| h.eq_ignore_ascii_case(c));
    let kernel_at_least = |k: &Option<String>| k.as_deref().and_then(parse_kernel).map(|v| host.kernel >= v);
    if let Some(ex) = &entry.excludes {
        if ex.arches.iter().flatten().any(|a| *a == host.go_arch)
            || ex.caps.iter().flatten().any(has_cap)
            || kernel_at_least(&ex.min_kernel) == Some(true)
        {
            return false;
        }
    }
    if let Some(inc) = &entry.includes {
        let arches = inc.arches.as_deref().unwrap_or_default();
        if !arches.is_empty() && !arches.contains(&host.go_arch)
            || !inc.caps.iter().flatten().all(has_cap)
            || kernel_at_least(&inc.min_kernel) == Some(false)
        {
            return false;
        }
    }
    true
}

/// An action name with its errno; errno actions default to EPERM, as runc does.
fn action(name: &str, errno: Option<u32>, names: &[String]) -> Result<Action, ProfileError> {
    let code = || match errno {
        None => Ok(libc::EPERM as u16),
        Some(e) if (1..4096).contains(&e) => Ok(e as u16),
        Some(e) => Err(ProfileError::Errno { errno: e, names: names.to_vec() }),
    };
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(code()?),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_TRACE" => Action::Trace(code()?),
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_NOTIFY" => return Err(ProfileError::Notify),
        other => return Err(ProfileError::UnknownAction { action: other.to_string(), names: names.to_vec() }),
    })
}

fn op(arg: &ArgEntry, names: &[String]) -> Result<Arg, ProfileError> {
    if arg.index > 5 {
        return Err(ProfileError::ArgIndex { index: arg.index, names: names.to_vec() });
    }
    let (op, value) = match arg.op.as_str() {
        "SCMP_CMP_NE" => (Op::NotEqual, arg.value),
        "SCMP_CMP_LT" => (Op::Less, arg.value),
        "SCMP_CMP_LE" => (Op::LessOrEqual, arg.value),
        "SCMP_CMP_EQ" => (Op::Equal, arg.value),
        "SCMP_CMP_GE" => (Op::GreaterEqual, arg.value),
        "SCMP_CMP_GT" => (Op::Greater, arg.value),
        // OCI's form: `value` is the mask, `valueTwo` what the masked argument must equal.
        "SCMP_CMP_MASKED_EQ" => (Op::MaskedEqual { mask: arg.value }, arg.value_two),
        other => return Err(ProfileError::UnknownOp { op: other.to_string(), names: names.to_vec() }),
    };
    Ok(Arg { index: arg.index, op, value })
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
