//! Unit tests of profile parsing and of moby's condition semantics.

use super::*;

fn host(arch: &str, caps: &[&str]) -> Host {
    Host { go_arch: arch.into(), scmp_arch: "SCMP_ARCH_X86_64".into(), kernel: (6, 1), caps: caps.iter().map(|c| c.to_string()).collect() }
}

fn docker_default() -> Profile {
    Profile::parse(crate::sandbox::seccomp::DOCKER_DEFAULT).expect("Docker's profile parses")
}

/// Every rule of `r` naming `name`.
fn rules_for<'a>(r: &'a Resolved, name: &str) -> Vec<&'a Rule> {
    r.rules.iter().filter(|rule| rule.names.iter().any(|n| n == name)).collect()
}

const DOCKER_CAPS: [&str; 3] = ["CAP_CHOWN", "CAP_SYS_CHROOT", "CAP_KILL"];

#[test]
fn default_profile_for_docker_caps_on_amd64() {
    let r = docker_default().resolve(&host("amd64", &DOCKER_CAPS)).unwrap();
    assert_eq!(r.default, Action::Errno(1), "defaultErrnoRet 1 is EPERM");
    assert_eq!(r.arches, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    // Plain allow-list entries, and CAP_SYS_CHROOT's include.
    for name in ["read", "chown", "fchownat", "chroot", "arch_prctl", "modify_ldt"] {
        assert!(rules_for(&r, name).iter().any(|x| x.action == Action::Allow && x.args.is_empty()), "{name} is allowed");
    }
    // CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE... are not held; other arches' calls are not ours.
    for name in ["unshare", "mount", "setns", "init_module", "keyctl", "add_key", "arm_fadvise64_64", "s390_runtime_instr"] {
        assert!(rules_for(&r, name).is_empty(), "{name} falls to the default (denied): {:?}", rules_for(&r, name));
    }
    // clone only without namespace flags; clone3 gets ENOSYS so libc falls back to clone.
    let clone = rules_for(&r, "clone");
    assert_eq!(clone.len(), 1, "{clone:?}");
    assert_eq!(clone[0].args, [Arg { index: 0, op: Op::MaskedEqual { mask: 2114060288 }, value: 0 }]);
    assert_eq!(rules_for(&r, "clone3")[0].action, Action::Errno(38));
    // personality: only the listed personas.
    let persona: Vec<u64> = rules_for(&r, "personality").iter().map(|x| x.args[0].value).collect();
    assert_eq!(persona, [0, 8, 131072, 131080, 4294967295]);
    // socket: every family but AF_ALG (38) and AF_VSOCK (40).
    let socket: Vec<(Op, u64)> = rules_for(&r, "socket").iter().map(|x| (x.args[0].op, x.args[0].value)).collect();
    assert_eq!(socket, [(Op::Less, 38), (Op::Equal, 39), (Op::Greater, 40)]);
    // ptrace from kernel 4.8 on, without CAP_SYS_PTRACE.
    assert_eq!(rules_for(&r, "ptrace").len(), 1);
}

#[test]
fn capabilities_and_arches_switch_rules() {
    let admin = docker_default().resolve(&host("amd64", &["CAP_SYS_ADMIN"])).unwrap();
    assert!(rules_for(&admin, "unshare").iter().any(|x| x.args.is_empty()), "CAP_SYS_ADMIN allows unshare");
    assert!(rules_for(&admin, "clone").iter().all(|x| x.args.is_empty()), "and clone with any flags");
    assert!(rules_for(&admin, "clone3").iter().all(|x| x.action == Action::Allow), "and clone3");

    let arm = docker_default().resolve(&host("arm64", &[])).unwrap();
    assert!(!rules_for(&arm, "arm_fadvise64_64").is_empty());
    assert!(rules_for(&arm, "arch_prctl").is_empty());

    let s390 = docker_default().resolve(&host("s390x", &[])).unwrap();
    let clone = rules_for(&s390, "clone");
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0].args[0].index, 1, "s390 passes clone's flags second");
}

#[test]
fn min_kernel_is_compared_as_major_minor() {
    let p = Profile::parse(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"6.2"}},
            {"names":["b"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"5.10"}},
            {"names":["c"],"action":"SCMP_ACT_ALLOW","excludes":{"minKernel":"6.1"}}]}"#,
    )
    .unwrap();
    let names: Vec<String> = p.resolve(&host("amd64", &[])).unwrap().rules.into_iter().flat_map(|r| r.names).collect();
    assert_eq!(names, ["b"], "6.1 >= 5.10 but < 6.2; c is excluded from 6.1 on");
    assert_eq!(parse_kernel("6.1.0-18-amd64"), Some((6, 1)));
    assert_eq!(parse_kernel("5"), Some((5, 0)));
}

#[test]
fn name_or_names_and_architectures_list() {
    let p = Profile::parse(
        r#"{"defaultAction":"SCMP_ACT_KILL_PROCESS","architectures":["SCMP_ARCH_X86"],
            "syscalls":[{"name":"read","action":"SCMP_ACT_ALLOW"},
                        {"names":["write"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let r = p.resolve(&host("amd64", &[])).unwrap();
    assert_eq!(r.default, Action::KillProcess);
    assert_eq!(r.arches, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
    assert_eq!(r.rules[0].names, ["read"]);
    assert_eq!(r.rules[1].action, Action::Errno(13));
}

#[test]
fn bad_profiles_say_what_is_wrong() {
    let err = |text: &str| Profile::parse(text).unwrap_err().to_string();
    assert!(err("{").contains("not a seccomp profile"), "{}", err("{"));
    assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","sycalls":[]}"#).contains("unknown field `sycalls`"));
    let action = err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_DENY"}]}"#);
    assert_eq!(action, "unknown action \"SCMP_ACT_DENY\" for mkdir");
    let op = err(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_LIKE"}]}]}"#,
    );
    assert_eq!(op, "unknown comparison \"SCMP_CMP_LIKE\" for x");
    let index = err(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    assert!(index.contains("index 6"), "{index}");
    assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ERRNO"}]}"#).contains("no \"names\""));
    assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_Z80"]}"#).contains("SCMP_ARCH_Z80"));
    assert!(err(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#).contains("not supported"));
    let kernel =
        err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_LOG","includes":{"minKernel":"new"}}]}"#);
    assert!(kernel.contains("minKernel \"new\""), "{kernel}");
}

#[test]
fn a_parsed_profile_survives_the_run_spec() {
    let p = docker_default();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(Profile::parse(&json).unwrap(), p);
}
