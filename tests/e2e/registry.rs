//! Against a real registry (Debian's docker-registry, started on 127.0.0.1 by each
//! test and stopped after): push then pull with equal digests, blobs the registry has
//! are not sent again (nor to another repository: they are mounted), FROM pulls a base, `--output docker://` pushes, and htpasswd
//! basic auth through `strata login`.

use std::fs;
use std::process::Command;

use crate::drivers::strata_at;
use crate::registry_server::Registry;
use crate::support::{hello_image, path_str, run, scratch, skip_without_sandbox, strata, strata_bin};

#[test]
fn push_then_pull_round_trips_and_skips_known_blobs() {
    if skip_without_sandbox("push_then_pull_round_trips_and_skips_known_blobs") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("registry-plain");
    let registry = Registry::start(&dir, None);
    let dest = format!("{}/e2e/hello:v1", registry.addr);
    let pushed = strata(["push", hello, &dest]).ok();
    let digest = pushed.stdout.trim().to_string();
    assert!(digest.starts_with("sha256:"), "push prints the manifest digest: {}", pushed.describe());
    let uploads = registry.finished_uploads();
    assert!(uploads >= 8, "every blob went up once ({uploads}): {}", registry.log_text());

    // Again: the registry has every blob, nothing is uploaded.
    let again = strata(["push", hello, &format!("docker://{dest}")]).ok();
    assert!(again.stderr.contains("0 blobs uploaded"), "{}", again.describe());
    assert_eq!(registry.finished_uploads(), uploads, "no blob uploaded twice");

    // Another repository of the same registry: every blob is mounted, none sent.
    let copy = strata(["push", hello, &format!("{}/e2e/copy:v1", registry.addr)]).ok();
    assert!(copy.stderr.contains("0 blobs uploaded") && !copy.stderr.contains(" 0 mounted"), "{}", copy.describe());
    assert_eq!(registry.finished_uploads(), uploads, "mounted, not uploaded");
    assert!(registry.log_text().contains("mount=sha256"), "the registry was asked to mount: {}", registry.log_text());

    // A runner with an empty store pulls the same manifest and runs it.
    let other = dir.join("other-store");
    strata_at(&other, None, &[], &["pull", &dest]).ok();
    let inspect = strata_at(&other, None, &[], &["inspect", &dest]).ok().json();
    assert_eq!(inspect[0]["Digest"], digest, "{inspect:#}");
    let ran = strata_at(&other, None, &[], &["run", "--rm", &dest]).ok();
    assert!(ran.stdout.contains("Hello from strata!"), "{}", ran.describe());
    strata_at(&other, None, &[], &["fsck"]).ok();
    // On a terminal the pull draws a bar per blob; a log gets plain lines only.
    let tty_store = dir.join("tty-store");
    let cmd = format!("TERM=xterm '{}' --root '{}' pull '{dest}'", path_str(&strata_bin()), path_str(&tty_store));
    let tty = run("script", ["-qefc", cmd.as_str(), "/dev/null"]).ok();
    assert!(tty.stdout.contains("Copying blob") && tty.stdout.contains("====") && tty.stdout.contains("done"), "{}", tty.describe());
    assert!(!pushed.stderr.contains('\x1b') && !pushed.stderr.contains("===="), "{}", pushed.describe());

    // What it pulled from one repository it can promote to another without uploads.
    let promoted = strata_at(&other, None, &[], &["push", &dest, &format!("{}/e2e/promoted:v1", registry.addr)]).ok();
    assert!(promoted.stderr.contains("0 blobs uploaded"), "{}", promoted.describe());
    assert_eq!(registry.finished_uploads(), uploads, "mounted, not uploaded");
    let skopeo = run("skopeo", ["inspect", "--tls-verify=false", &format!("docker://{dest}")]).ok().json();
    assert_eq!(skopeo["Digest"], digest);

    // A name the registry lacks is a clear error.
    let missing = strata_at(&other, None, &[], &["pull", &format!("{}/e2e/nothing:here", registry.addr)]);
    assert_eq!(missing.code, Some(1), "{}", missing.describe());
    assert!(missing.stderr.contains("e2e/nothing:here"), "{}", missing.describe());
}

#[test]
fn from_pulls_the_base_and_output_pushes_the_result() {
    if skip_without_sandbox("from_pulls_the_base_and_output_pushes_the_result") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("registry-build");
    let registry = Registry::start(&dir, None);
    let base = format!("{}/e2e/base:1", registry.addr);
    strata(["push", hello, &base]).ok();

    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), format!("FROM {base}\nRUN echo built-on-pulled > /tmp/marker\n")).unwrap();
    let store = dir.join("runner");
    let result = format!("{}/e2e/result:1", registry.addr);
    let built =
        strata_at(&store, None, &[], &["build", "-t", "e2e-built", "--output", &format!("docker://{result}"), &path_str(&ctx)]).ok();
    assert!(built.stderr.contains("Copying blob"), "the base came from the registry: {}", built.describe());
    let never = strata_at(&dir.join("never-store"), None, &[], &["build", "--pull=never", &path_str(&ctx)]);
    assert_eq!(never.code, Some(1), "{}", never.describe());
    assert!(never.stderr.contains("--pull=never"), "{}", never.describe());

    let third = dir.join("third");
    let ran = strata_at(&third, None, &[], &["pull", &result]).ok();
    assert!(!ran.stdout.trim().is_empty());
    let ran = strata_at(&third, None, &[], &["run", "--rm", &result, "cat", "/tmp/marker"]).ok();
    assert_eq!(ran.stdout, "built-on-pulled\n", "{}", ran.describe());
}

#[test]
fn login_with_basic_auth() {
    if skip_without_sandbox("login_with_basic_auth") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("registry-auth");
    let registry = Registry::start(&dir, Some(("tester", "s3cret")));
    let auth_file = dir.join("auth.json");
    let with_auth = |args: &[&str], stdin: &str| {
        let mut cmd = Command::new(strata_bin());
        cmd.arg("--root").arg(&crate::support::world().root).args(args).env("REGISTRY_AUTH_FILE", &auth_file);
        let script = format!("printf '%s\\n' '{stdin}' | \"$@\"");
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(script).arg("sh").arg(cmd.get_program()).args(cmd.get_args()).env("REGISTRY_AUTH_FILE", &auth_file);
        crate::support::run_command(sh)
    };
    let dest = format!("{}/e2e/private:1", registry.addr);
    let denied = with_auth(&["push", hello, &dest], "");
    assert_eq!(denied.code, Some(1), "{}", denied.describe());
    assert!(denied.stderr.contains("log in first"), "{}", denied.describe());

    let wrong = with_auth(&["login", "-u", "tester", "--password-stdin", &registry.addr], "nope");
    assert_eq!(wrong.code, Some(1), "{}", wrong.describe());
    assert!(wrong.stderr.contains("authentication failed for tester"), "{}", wrong.describe());
    assert!(!auth_file.exists(), "a failed login stores nothing");

    let ok = with_auth(&["login", "-u", "tester", "--password-stdin", &registry.addr], "s3cret");
    assert!(ok.stdout.contains("Login Succeeded"), "{}", ok.describe());
    let stored: serde_json::Value = serde_json::from_slice(&fs::read(&auth_file).unwrap()).unwrap();
    assert!(stored["auths"][&registry.addr]["auth"].is_string(), "{stored:#}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&auth_file).unwrap().permissions().mode() & 0o777, 0o600, "credentials are private");

    with_auth(&["push", hello, &dest], "").ok();
    let pulled = with_auth(&["pull", &dest], "").ok();
    assert!(!pulled.stdout.trim().is_empty(), "{}", pulled.describe());
    with_auth(&["logout", &registry.addr], "").ok();
    let after = with_auth(&["pull", &dest], "");
    assert_eq!(after.code, Some(1), "logged out: {}", after.describe());
}
