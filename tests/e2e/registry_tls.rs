//! Registries as podman users meet them: a docker-registry serving HTTPS only, with a
//! certificate from a test CA that only `--cert-dir` or certs.d makes trusted (an
//! untrusted certificate is an error, never a quiet switch to plain HTTP, which this
//! server could not answer anyway: every success here went over TLS), and short
//! names resolved through a registries.conf named by `CONTAINERS_REGISTRIES_CONF`.
//!
//! Each command runs with its own HOME, XDG_CONFIG_HOME and auth file, so nothing
//! the test runner's user has configured takes part.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::registry_server::{Registry, RegistryOptions};
use crate::support::{hello_image, path_str, run, run_command, scratch, skip_without_sandbox, strata, strata_bin, Run};

/// A fresh directory for a registry's files.
fn registry_dir(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    fs::create_dir_all(&d).unwrap();
    d
}

/// A test CA and a server certificate for IP 127.0.0.1 signed by it.
pub(crate) struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

pub(crate) fn make_certs(dir: &Path) -> Certs {
    fs::create_dir_all(dir).unwrap();
    let p = |name: &str| path_str(&dir.join(name));
    run(
        "openssl",
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=strata e2e CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.crt"),
        ],
    )
    .ok();
    run(
        "openssl",
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", &p("server.key"), "-out", &p("server.csr")],
    )
    .ok();
    fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    run(
        "openssl",
        [
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &p("server.ext"),
            "-out",
            &p("server.crt"),
        ],
    )
    .ok();
    Certs { ca: dir.join("ca.crt"), server_cert: dir.join("server.crt"), server_key: dir.join("server.key") }
}

/// A private user environment for strata: HOME, XDG_CONFIG_HOME, the auth file and
/// optionally a registries.conf.
struct UserEnv {
    home: PathBuf,
    config: Option<PathBuf>,
    auth_file: PathBuf,
    registries_conf: Option<PathBuf>,
}

impl UserEnv {
    fn new(dir: &Path) -> UserEnv {
        let home = dir.join("home");
        fs::create_dir_all(&home).unwrap();
        UserEnv { home, config: None, auth_file: dir.join("auth.json"), registries_conf: None }
    }

    fn command(&self, store: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(strata_bin());
        cmd.env_remove("STRATA_STORAGE_DRIVER")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CONTAINERS_REGISTRIES_CONF")
            .env("HOME", &self.home)
            .env("REGISTRY_AUTH_FILE", &self.auth_file);
        if let Some(c) = &self.config {
            cmd.env("XDG_CONFIG_HOME", c);
        }
        if let Some(r) = &self.registries_conf {
            cmd.env("CONTAINERS_REGISTRIES_CONF", r);
        }
        cmd.arg("--root").arg(store).args(args);
        cmd
    }

    #[track_caller]
    fn strata(&self, store: &Path, args: &[&str]) -> Run {
        run_command(self.command(store, args))
    }

    /// `args` with `line` on standard input (`login --password-stdin`).
    #[track_caller]
    fn strata_stdin(&self, store: &Path, args: &[&str], line: &str) -> Run {
        let inner = self.command(store, args);
        let mut sh = Command::new("sh");
        sh.arg("-c").arg("printf '%s\\n' \"$0\" | \"$@\"").arg(line).arg(inner.get_program()).args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        run_command(sh)
    }
}

#[track_caller]
fn assert_certificate_error(r: &Run, registry: &str) {
    assert_eq!(r.code, Some(1), "{}", r.describe());
    for expected in [registry, "certificate is not trusted", "--cert-dir", "--tls-verify=false"] {
        assert!(r.stderr.contains(expected), "{expected:?} missing: {}", r.describe());
    }
    // What the registry answers plain HTTP on its TLS port (Go's 400 text): had strata
    // fallen back, this would be the error instead.
    assert!(!r.stderr.contains("HTTPS server"), "strata fell back to plain HTTP: {}", r.describe());
}

#[test]
fn tls_registry_is_trusted_through_cert_dir_only() {
    if skip_without_sandbox("tls_registry_is_trusted_through_cert_dir_only") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("registry-tls");
    let certs = make_certs(&dir.join("pki"));
    let options = RegistryOptions {
        htpasswd: Some(("tester".into(), "s3cret".into())),
        tls: Some((certs.server_cert.clone(), certs.server_key.clone())),
    };
    let registry = Registry::start_with(&registry_dir(&dir, "registry"), &options);
    let user = UserEnv::new(&dir);
    let shared = crate::support::world().root.clone();
    let dest = format!("{}/e2e/secure:1", registry.addr);

    // Loopback allows plain HTTP, but this server speaks TLS: its certificate must
    // fail loudly, for push and login alike.
    let push = user.strata(&shared, &["push", hello, &dest]);
    assert_certificate_error(&push, &registry.addr);
    let login = user.strata_stdin(&shared, &["login", "-u", "tester", "--password-stdin", &registry.addr], "s3cret");
    assert_certificate_error(&login, &registry.addr);
    assert!(!user.auth_file.exists(), "a failed login stores nothing");

    let cert_dir = dir.join("certs");
    fs::create_dir_all(&cert_dir).unwrap();
    fs::copy(&certs.ca, cert_dir.join("ca.crt")).unwrap();
    let cd = path_str(&cert_dir);

    let login = user.strata_stdin(&shared, &["login", "--cert-dir", &cd, "-u", "tester", "--password-stdin", &registry.addr], "s3cret");
    assert!(login.success() && login.stdout.contains("Login Succeeded"), "{}", login.describe());
    let pushed = user.strata(&shared, &["push", "--cert-dir", &cd, hello, &dest]).ok();
    let digest = pushed.stdout.trim().to_string();
    assert!(digest.starts_with("sha256:"), "{}", pushed.describe());

    // A fresh store pulls it over TLS and runs it.
    let other = dir.join("pull-store");
    user.strata(&other, &["pull", "--cert-dir", &cd, &dest]).ok();
    let inspect = user.strata(&other, &["inspect", &dest]).ok().json();
    assert_eq!(inspect[0]["Digest"], digest, "{inspect:#}");
    let ran = user.strata(&other, &["run", "--rm", &dest]).ok();
    assert!(ran.stdout.contains("Hello from strata!"), "{}", ran.describe());

    // FROM pulls its base the same way; without the CA the build fails on it.
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), format!("FROM {dest}\nRUN echo over-tls > /tmp/marker\n")).unwrap();
    let untrusted = user.strata(&dir.join("untrusted-store"), &["build", &path_str(&ctx)]);
    assert_certificate_error(&untrusted, &registry.addr);
    let build_store = dir.join("build-store");
    let built = user.strata(&build_store, &["build", "--cert-dir", &cd, "-t", "e2e-over-tls", &path_str(&ctx)]).ok();
    assert!(built.stderr.contains("Copying blob"), "the base came from the registry: {}", built.describe());
    let ran = user.strata(&build_store, &["run", "--rm", "e2e-over-tls", "cat", "/tmp/marker"]).ok();
    assert_eq!(ran.stdout, "over-tls\n", "{}", ran.describe());
    user.strata(&build_store, &["fsck"]).ok();
}

#[test]
fn certs_d_dirs_and_tls_verify_false() {
    if skip_without_sandbox("certs_d_dirs_and_tls_verify_false") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("registry-certs-d");
    let certs = make_certs(&dir.join("pki"));
    let options = RegistryOptions { htpasswd: None, tls: Some((certs.server_cert.clone(), certs.server_key.clone())) };
    let registry = Registry::start_with(&registry_dir(&dir, "registry"), &options);
    let shared = crate::support::world().root.clone();
    let dest = format!("{}/e2e/certs-d:1", registry.addr);

    // --tls-verify=false needs no CA (and still speaks TLS: the server has no HTTP).
    let mut user = UserEnv::new(&dir.join("insecure"));
    let pushed = user.strata(&shared, &["push", "--tls-verify=false", hello, &dest]).ok();
    assert!(pushed.stdout.trim().starts_with("sha256:"), "{}", pushed.describe());
    user.strata(&dir.join("insecure-store"), &["pull", "--tls-verify=false", &dest]).ok();
    assert_certificate_error(&user.strata(&dir.join("insecure-store"), &["pull", &dest]), &registry.addr);

    // ~/.config/containers/certs.d/HOST:PORT/ca.crt, found through HOME.
    let host_dir = user.home.join(".config/containers/certs.d").join(&registry.addr);
    fs::create_dir_all(&host_dir).unwrap();
    fs::copy(&certs.ca, host_dir.join("ca.crt")).unwrap();
    let home_store = dir.join("home-store");
    user.strata(&home_store, &["pull", &dest]).ok();
    let ran = user.strata(&home_store, &["run", "--rm", &dest]).ok();
    assert!(ran.stdout.contains("Hello from strata!"), "{}", ran.describe());

    // $XDG_CONFIG_HOME/containers/certs.d/HOST:PORT when it is set.
    let config = dir.join("xdg-config");
    let xdg_dir = config.join("containers/certs.d").join(&registry.addr);
    fs::create_dir_all(&xdg_dir).unwrap();
    user.config = Some(config);
    let xdg_store = dir.join("xdg-store");
    assert_certificate_error(&user.strata(&xdg_store, &["pull", &dest]), &registry.addr);
    fs::copy(&certs.ca, xdg_dir.join("ca.crt")).unwrap();
    user.strata(&xdg_store, &["pull", &dest]).ok();
}

#[test]
fn short_names_resolve_through_registries_conf() {
    if skip_without_sandbox("short_names_resolve_through_registries_conf") {
        return;
    }
    let hello = hello_image();
    let dir = scratch("registry-short-names");
    // The first search registry lacks the image, the second has it.
    let empty = Registry::start(&registry_dir(&dir, "empty"), None);
    let full = Registry::start(&registry_dir(&dir, "full"), None);
    strata(["push", hello, &format!("{}/e2e/thing:latest", full.addr)]).ok();
    let conf = dir.join("registries.conf");
    fs::write(
        &conf,
        format!(
            "unqualified-search-registries = [\"{}\", \"{}\"]\n\n[aliases]\n\"handy\" = \"{}/e2e/thing\"\n",
            empty.addr, full.addr, full.addr
        ),
    )
    .unwrap();
    let mut user = UserEnv::new(&dir);
    user.registries_conf = Some(conf);
    let qualified = format!("{}/e2e/thing:latest", full.addr);

    // strata pull e2e/thing: each search registry in order, the first that has it.
    let store = dir.join("pull-store");
    let pulled = user.strata(&store, &["pull", "e2e/thing"]).ok();
    let first = pulled.stderr.find(&format!("Trying to pull {}/e2e/thing:latest", empty.addr));
    let second = pulled.stderr.find(&format!("Trying to pull {qualified}"));
    assert!(first.is_some() && second.is_some() && first < second, "{}", pulled.describe());
    assert!(empty.log_text().contains("/v2/e2e/thing/manifests/latest"), "the first registry was asked: {}", empty.log_text());
    let inspect = user.strata(&store, &["inspect", &qualified]).ok().json();
    assert_eq!(inspect[0]["Id"].as_str().map(|s| s.trim_start_matches("sha256:")), Some(pulled.stdout.trim()), "{inspect:#}");

    // A name no search registry has lists every one tried.
    let missing = user.strata(&store, &["pull", "e2e/nowhere:1"]);
    assert_eq!(missing.code, Some(1), "{}", missing.describe());
    for tried in [&empty.addr, &full.addr] {
        assert!(missing.stderr.contains(&format!("{tried}/e2e/nowhere:1")), "{}", missing.describe());
    }

    // An alias is its only candidate: the first search registry is not asked.
    let alias_store = dir.join("alias-store");
    let asked = empty.log_text().matches("/manifests/").count();
    let aliased = user.strata(&alias_store, &["pull", "handy"]).ok();
    assert!(aliased.stderr.contains(&format!("Trying to pull {qualified}")), "{}", aliased.describe());
    assert_eq!(empty.log_text().matches("/manifests/").count(), asked, "an alias skips the search list");
    user.strata(&alias_store, &["inspect", &qualified]).ok();

    // FROM with a short name that the store lacks pulls it the same way, and FROM
    // an alias too; a second build finds the pulled image in the store.
    for (from, marker) in [("e2e/thing", "searched"), ("handy", "aliased")] {
        let ctx = dir.join(format!("ctx-{marker}"));
        fs::create_dir_all(&ctx).unwrap();
        fs::write(ctx.join("Dockerfile"), format!("FROM {from}\nRUN echo {marker} > /tmp/marker\n")).unwrap();
        let build_store = dir.join(format!("build-{marker}"));
        let built = user.strata(&build_store, &["build", "-t", "e2e-short", &path_str(&ctx)]).ok();
        assert!(built.stderr.contains(&format!("Trying to pull {qualified}")), "{}", built.describe());
        let ran = user.strata(&build_store, &["run", "--rm", "e2e-short", "cat", "/tmp/marker"]).ok();
        assert_eq!(ran.stdout, format!("{marker}\n"), "{}", ran.describe());
        let again = user.strata(&build_store, &["build", "--pull=never", &path_str(&ctx)]).ok();
        assert!(!again.stderr.contains("Trying to pull"), "the pulled base is used: {}", again.describe());
    }
    let never = user.strata(&dir.join("never-store"), &["build", "--pull=never", &path_str(&dir.join("ctx-searched"))]);
    assert_eq!(never.code, Some(1), "{}", never.describe());
    assert!(never.stderr.contains("--pull=never") && never.stderr.contains(&qualified), "{}", never.describe());

    // A local image keeps precedence over the search registries: FROM busybox is
    // the store's localhost/busybox, nothing is pulled.
    let ctx = dir.join("ctx-local");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN true\n").unwrap();
    let local = user.strata(&crate::support::world().root, &["build", &path_str(&ctx)]).ok();
    assert!(!local.stderr.contains("Trying to pull"), "{}", local.describe());
}
