//! The command's seccomp filter: Docker's default profile unless the user picked
//! another (`--security-opt seccomp=unconfined|FILE`), composed with the single-id
//! mode's chown notifications, compiled by libseccomp.
//!
//! The builder has libseccomp generate the BPF program once per policy ([`program`]:
//! a build's RUN steps share it) and hands it to the sandbox with the spec; the
//! command loads it as its last step before exec ([`Program::load`]), after
//! no_new_privs and after dropping to its user, so pid 1 itself stays unfiltered and
//! free to serve the chown notifications. One filter holds both: the chown syscalls
//! the profile allows become notify rules, the rest of the profile is kept as it is.

pub mod profile;

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use serde::{Deserialize, Serialize};

use profile::{Action, Host, Op, Resolved, Rule};
pub use profile::{Profile, ProfileError};

/// Docker's default profile (moby `profiles/seccomp/default.json`, Apache-2.0; see
/// `seccomp/README.md` beside this file).
pub const DOCKER_DEFAULT: &str = include_str!("seccomp/docker-default.json");

/// The syscalls pid 1 performs for the command in single-id mode (`chown_notify`),
/// with the 32-bit-uid variants of 32-bit sub-architectures.
pub const CHOWN_CALLS: [&str; 7] = ["chown", "fchown", "lchown", "fchownat", "chown32", "fchown32", "lchown32"];

/// Which seccomp profile the command runs under.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum SeccompPolicy {
    /// Docker's default profile.
    #[default]
    DockerDefault,
    /// No profile (`seccomp=unconfined`); single-id mode still filters chown.
    Unconfined,
    /// A user's profile (`seccomp=FILE`), already parsed and checked.
    Custom(Profile),
}

/// Errors compiling or loading a filter; each names what libseccomp refused.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile: {0}")]
    Profile(#[from] ProfileError),
    #[error("seccomp: {what}: {source}")]
    Lib { what: String, source: libseccomp::error::SeccompError },
    #[error("seccomp: reading the generated program: {0}")]
    Program(std::io::Error),
    #[error("seccomp: loading the filter: {0}")]
    Load(std::io::Error),
    #[error("seccomp: the filter has {0} instructions, more than the kernel takes")]
    TooLong(usize),
}

fn lib(what: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |source| SeccompError::Lib { what, source }
}

/// A filter as libseccomp holds it.
struct Filter {
    ctx: ScmpFilterContext,
    notifies: bool,
}

/// The profile `policy` names, resolved for a container with `caps` (capability
/// names); None when there is nothing to filter (unconfined, and chown needs no help).
fn resolve(policy: &SeccompPolicy, caps: Vec<String>, chown_notify: bool) -> Result<Option<Resolved>, SeccompError> {
    let host = Host::current(caps);
    let default_profile = || Profile::parse(DOCKER_DEFAULT);
    Ok(Some(match policy {
        SeccompPolicy::DockerDefault => default_profile()?.resolve(&host)?,
        SeccompPolicy::Custom(p) => p.resolve(&host)?,
        SeccompPolicy::Unconfined if !chown_notify => return Ok(None),
        // Only the chown rules, over the same architectures as the default profile.
        SeccompPolicy::Unconfined => {
            let arches = default_profile()?.resolve(&host)?.arches;
            Resolved { default: Action::Allow, arches, rules: Vec::new(), log: false, spec_allow: false }
        }
    }))
}

/// Turns each chown syscall the profile lets through unconditionally into a notify
/// rule; one it denies or tests arguments of stays as the profile says (pid 1 must
/// never perform a call the profile refuses). True if any became a notify rule.
fn hand_chown_to_pid1(resolved: &mut Resolved) -> bool {
    let mut notify = Vec::new();
    for name in CHOWN_CALLS {
        let mut naming = resolved.rules.iter().filter(|r| r.names.iter().any(|n| n == name)).peekable();
        let allowed = match naming.peek() {
            None => resolved.default == Action::Allow,
            Some(_) => naming.all(|r| r.action == Action::Allow && r.args.is_empty()),
        };
        if allowed {
            for rule in &mut resolved.rules {
                rule.names.retain(|n| n != name);
            }
            notify.push(name.to_string());
        }
    }
    resolved.rules.retain(|r| !r.names.is_empty());
    let any = !notify.is_empty();
    if any {
        resolved.rules.push(Rule { names: notify, action: Action::Notify, args: Vec::new() });
    }
    any
}

fn scmp_action(action: Action) -> ScmpAction {
    match action {
        Action::Allow => ScmpAction::Allow,
        Action::Errno(e) => ScmpAction::Errno(e as i32),
        Action::KillThread => ScmpAction::KillThread,
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap => ScmpAction::Trap,
        Action::Trace(m) => ScmpAction::Trace(m),
        Action::Log => ScmpAction::Log,
        Action::Notify => ScmpAction::Notify,
    }
}

fn compare(arg: &profile::Arg) -> ScmpArgCompare {
    let op = match arg.op {
        Op::NotEqual => ScmpCompareOp::NotEqual,
        Op::Less => ScmpCompareOp::Less,
        Op::LessOrEqual => ScmpCompareOp::LessOrEqual,
        Op::Equal => ScmpCompareOp::Equal,
        Op::GreaterEqual => ScmpCompareOp::GreaterEqual,
        Op::Greater => ScmpCompareOp::Greater,
        Op::MaskedEqual { mask } => ScmpCompareOp::MaskedEqual(mask),
    };
    ScmpArgCompare::new(arg.index, op, arg.value)
}

/// Hands the resolved rules to libseccomp, as runc does: names libseccomp does not
/// know (newer than it, or of other architectures) are skipped; several tests of the
/// same argument become separate rules (any may match), otherwise one rule with all.
fn build(resolved: &Resolved) -> Result<ScmpFilterContext, SeccompError> {
    let mut ctx = ScmpFilterContext::new(scmp_action(resolved.default)).map_err(lib("creating a filter"))?;
    for name in &resolved.arches {
        let arch = ScmpArch::from_str(name).map_err(lib(format!("architecture {name}")))?;
        if arch != ScmpArch::Native && !ctx.is_arch_present(arch).map_err(lib(format!("architecture {name}")))? {
            ctx.add_arch(arch).map_err(lib(format!("adding architecture {name}")))?;
        }
    }
    if resolved.log {
        ctx.set_ctl_log(true).map_err(lib("SECCOMP_FILTER_FLAG_LOG"))?;
    }
    if resolved.spec_allow {
        ctx.set_ctl_ssb(true).map_err(lib("SECCOMP_FILTER_FLAG_SPEC_ALLOW"))?;
    }
    for rule in &resolved.rules {
        let action = scmp_action(rule.action);
        if action == scmp_action(resolved.default) {
            continue; // libseccomp refuses rules that repeat the default action
        }
        let conditions: Vec<ScmpArgCompare> = rule.args.iter().map(compare).collect();
        let repeated = (0..6).any(|i| rule.args.iter().filter(|a| a.index == i).count() > 1);
        for name in &rule.names {
            let Ok(syscall) = ScmpSyscall::from_name(name) else { continue };
            let what = || format!("rule for {name}");
            if conditions.is_empty() {
                ctx.add_rule(action, syscall).map_err(lib(what()))?;
            } else if repeated {
                for c in &conditions {
                    ctx.add_rule_conditional(action, syscall, std::slice::from_ref(c)).map_err(lib(what()))?;
                }
            } else {
                ctx.add_rule_conditional(action, syscall, &conditions).map_err(lib(what()))?;
            }
        }
    }
    Ok(ctx)
}

impl Filter {
    /// The BPF program libseccomp generates for this filter.
    fn program(&self, resolved: &Resolved) -> Result<Program, SeccompError> {
        // SAFETY: memfd_create with a static name; the descriptor is owned at once.
        let fd = unsafe { libc::memfd_create(c"strata-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(SeccompError::Program(std::io::Error::last_os_error()));
        }
        // SAFETY: fd was just returned to us and nothing else owns it.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        self.ctx.export_bpf(&file).map_err(lib("generating the program"))?;
        let mut bpf = Vec::new();
        file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_end(&mut bpf)).map_err(SeccompError::Program)?;
        Ok(Program { bpf, notifies: self.notifies, log: resolved.log, spec_allow: resolved.spec_allow })
    }
}

/// A filter program generated by libseccomp, as the kernel takes it: generated once
/// per policy in the builder ([`program`]), loaded by each command ([`Program::load`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// `struct sock_filter` instructions in native byte order.
    bpf: Vec<u8>,
    /// The program has notify rules: load it with a new listener.
    notifies: bool,
    log: bool,
    spec_allow: bool,
}

/// A program generated in this process: for which policy, with chown notify or not.
type Generated = (SeccompPolicy, bool, Option<Arc<Program>>);

/// The program for `policy` and a container with Docker's default capabilities, with
/// the chown syscalls handed to pid 1 when `chown_notify`; None when there is nothing
/// to filter. Generating Docker's profile costs milliseconds, so each process does
/// it once per policy: a build's RUN steps share it.
pub fn program(policy: &SeccompPolicy, chown_notify: bool) -> Result<Option<Arc<Program>>, SeccompError> {
    static MEMO: Mutex<Vec<Generated>> = Mutex::new(Vec::new());
    let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, p)) = memo.iter().find(|(pol, n, _)| pol == policy && *n == chown_notify) {
        return Ok(p.clone());
    }
    let caps = super::child::DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    let made = match resolve(policy, caps, chown_notify)? {
        None => None,
        Some(resolved) => Some(Arc::new(compile_resolved(&resolved, chown_notify)?)),
    };
    memo.push((policy.clone(), chown_notify, made.clone()));
    Ok(made)
}

fn compile_resolved(resolved: &Resolved, chown_notify: bool) -> Result<Program, SeccompError> {
    let mut resolved = resolved.clone();
    let notifies = chown_notify && hand_chown_to_pid1(&mut resolved);
    Filter { ctx: build(&resolved)?, notifies }.program(&resolved)
}

impl Program {
    /// Loads the program on the calling process (its last step before exec; the
    /// caller has set no_new_privs); returns the chown notification listener when the
    /// program has notify rules.
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let size = std::mem::size_of::<libc::sock_filter>();
        let mut filter: Vec<libc::sock_filter> = self
            .bpf
            .chunks_exact(size)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        // Never truncated: a cut program would be a different filter.
        let len = u16::try_from(filter.len()).map_err(|_| SeccompError::TooLong(filter.len()))?;
        let prog = libc::sock_fprog { len, filter: filter.as_mut_ptr() };
        let mut flags = 0;
        if self.notifies {
            flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        }
        if self.log {
            flags |= libc::SECCOMP_FILTER_FLAG_LOG;
        }
        if self.spec_allow {
            flags |= libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
        }
        // SAFETY: prog points at a live program for the duration of the call.
        let ret = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &prog as *const libc::sock_fprog) };
        if ret < 0 {
            return Err(SeccompError::Load(std::io::Error::last_os_error()));
        }
        // SAFETY: with NEW_LISTENER the kernel returned a new descriptor we now own.
        Ok(self.notifies.then(|| unsafe { OwnedFd::from_raw_fd(ret as RawFd) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instructions(p: &Program) -> usize {
        p.bpf.len() / std::mem::size_of::<libc::sock_filter>()
    }

    #[test]
    fn embedded_profile_is_dockers() {
        let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/testdata/docker-default-seccomp.json");
        let shared = std::fs::read_to_string(shared).expect("../shared/testdata/docker-default-seccomp.json beside the clone");
        assert_eq!(DOCKER_DEFAULT, shared, "src/sandbox/seccomp/docker-default.json must be a verbatim copy of Docker's profile");
    }

    #[test]
    fn default_profile_is_generated_once_per_process() {
        let started = std::time::Instant::now();
        let first = program(&SeccompPolicy::DockerDefault, false).unwrap().expect("a program");
        let took = started.elapsed();
        assert!(!first.notifies);
        eprintln!("docker's profile: {} instructions generated in {took:?}", instructions(&first));
        let started = std::time::Instant::now();
        let again = program(&SeccompPolicy::DockerDefault, false).unwrap().expect("a program");
        eprintln!("the second time: {:?}", started.elapsed());
        assert!(Arc::ptr_eq(&first, &again), "the next RUN reuses the program");
        let notify = program(&SeccompPolicy::DockerDefault, true).unwrap().expect("a program");
        assert!(notify.notifies, "the default profile allows chown, so it is handed to pid 1");
        assert!(instructions(&notify) > 0);
    }

    #[test]
    fn unconfined_filters_only_for_chown_notify() {
        assert!(program(&SeccompPolicy::Unconfined, false).unwrap().is_none());
        let p = program(&SeccompPolicy::Unconfined, true).unwrap().expect("the chown filter");
        assert!(p.notifies && instructions(&p) > 0);
    }

    /// Loads a program that denies mkdir in a forked child: mkdir of a path whose
    /// parent is missing fails with EPERM (the filter's), not ENOENT (the kernel's).
    #[test]
    fn a_loaded_program_denies_with_eperm() {
        let p = Profile::parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat","no_such_call"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let p = program(&SeccompPolicy::Custom(p), false).unwrap().expect("a program");
        let path = c"/nonexistent-strata-dir/x";
        // SAFETY: the child only makes syscalls and leaves with _exit.
        match unsafe { libc::fork() } {
            0 => unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                let code = match p.load() {
                    Err(_) => 2,
                    Ok(_) if libc::mkdir(path.as_ptr(), 0o755) == -1 && *libc::__errno_location() == libc::EPERM => 0,
                    Ok(_) => 1,
                };
                libc::_exit(code)
            },
            pid => {
                let mut status = 0;
                // SAFETY: waiting for the child we forked.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status), "the child ended by signal {status}");
                assert_eq!(libc::WEXITSTATUS(status), 0, "1: mkdir was not denied with EPERM; 2: the program did not load");
            }
        }
        // SAFETY: plain syscall; without the filter the kernel's own error comes back.
        assert_eq!(unsafe { libc::mkdir(path.as_ptr(), 0o755) }, -1);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ENOENT));
    }

    fn resolved(rules: Vec<Rule>, default: Action) -> Resolved {
        Resolved { default, arches: vec!["SCMP_ARCH_NATIVE".into()], rules, log: false, spec_allow: false }
    }

    fn rule(names: &[&str], action: Action) -> Rule {
        Rule { names: names.iter().map(|n| n.to_string()).collect(), action, args: Vec::new() }
    }

    #[test]
    fn chown_goes_to_pid1_only_where_the_profile_allows_it() {
        let mut r =
            resolved(vec![rule(&["chown", "read", "fchown"], Action::Allow), rule(&["lchown"], Action::Errno(1))], Action::Errno(1));
        assert!(hand_chown_to_pid1(&mut r));
        assert_eq!(r.rules[0].names, ["read"]);
        assert_eq!(r.rules[1], rule(&["lchown"], Action::Errno(1)), "a denied chown stays denied");
        assert_eq!(r.rules[2], rule(&["chown", "fchown"], Action::Notify));

        let mut open = resolved(vec![rule(&["mkdir"], Action::Errno(1))], Action::Allow);
        assert!(hand_chown_to_pid1(&mut open));
        assert_eq!(open.rules.last().unwrap().names.len(), CHOWN_CALLS.len(), "an allow-by-default profile lets every chown through");

        let mut closed = resolved(vec![rule(&["read"], Action::Allow)], Action::Errno(1));
        assert!(!hand_chown_to_pid1(&mut closed), "nothing allowed, nothing to serve");
    }
}
