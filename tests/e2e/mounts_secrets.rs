//! `RUN --mount=type=secret` and `type=ssh` with `strata build --secret` / `--ssh`: the
//! RUN reads the secret (as a file, an env var, at a custom target with its mode and
//! owner) and talks to a real ssh-agent, and afterwards the secret's value is nowhere:
//! not in the exported archives, the store's files (gzip blobs decompressed), history,
//! inspect or the build log. Missing secrets and agents fail only when `required`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::language::{assert_build_fails, skip, Ctx};
use crate::layout::Layout;
use crate::mounts::{assert_not_in_layers, build_in, cat_in, layer_paths, unique};
use crate::store::{private_store, strata_at};
use crate::support::{path_str, run, scratch, world};

/// The files below `dir` whose bytes, or whose gunzipped bytes, contain `needle`.
/// Runs inside strata's user namespace (`strata unshare`) so files owned by subordinate
/// ids are read too.
fn files_containing(root: &Path, dir: &Path, needle: &str) -> Vec<String> {
    let script = r#"find "$1" -type f | while IFS= read -r f; do
        if grep -qF -- "$2" "$f" || { gzip -t "$f" 2>/dev/null && zcat "$f" | grep -qF -- "$2"; }; then echo "$f"; fi
    done"#;
    let found = strata_at(root, &["unshare", "sh", "-c", script, "sh", &path_str(dir), needle], &[]).ok();
    found.stdout.lines().map(str::to_owned).collect()
}

/// Unpacks a tar archive (an oci- or docker-archive) into a fresh dir.
fn untar(archive: &Path) -> PathBuf {
    let dest = scratch("mounts-untar");
    run("tar", ["-xf", &path_str(archive), "-C", &path_str(&dest)]).ok();
    dest
}

#[test]
fn secret_is_readable_in_the_run_and_found_nowhere_afterwards() {
    if skip("secret_is_readable_in_the_run_and_found_nowhere_afterwards") {
        return;
    }
    // A store of its own keeps the search below small and free of other tests' files.
    let root = private_store("mounts-secret");
    let marker = unique("s3cr3t-value");
    let host = scratch("mounts-secret-host");
    let src = host.join("token");
    fs::write(&src, &marker).unwrap();
    // The search must find the marker where it is, plain or gzipped.
    run("sh", ["-c", &format!("gzip -c '{0}' > '{0}.gz'", path_str(&src))]).ok();
    assert_eq!(files_containing(&root, &host, &marker).len(), 2, "the search finds a plain and a gzipped marker");

    let ctx = Ctx::new(
        "mounts-secret",
        "FROM base\n\
         RUN --mount=type=secret,id=tok sh -c 'wc -c < /run/secrets/tok > /len && stat -c \"%a %u %g\" /run/secrets/tok >> /len'\n\
         RUN --mount=type=secret,id=tok,target=/etc/app/token,mode=0440,uid=1000,gid=1001 \
         sh -c 'stat -c \"%a %u %g\" /etc/app/token > /custom && wc -c < /etc/app/token >> /custom'\n\
         RUN --mount=type=secret,id=tok,env=TOK sh -c 'echo ${#TOK} > /env-only; test -e /run/secrets/tok && echo file >> /env-only || echo no-file >> /env-only'\n\
         RUN --mount=type=secret,id=tok,env=TOK,target=/both sh -c 'echo ${#TOK} > /env-and-file; wc -c < /both >> /env-and-file'\n\
         RUN --mount=type=secret,id=fromenv sh -c 'wc -c < /run/secrets/fromenv > /fromenv'\n\
         RUN --mount=type=secret,id=synonyms sh -c 'wc -c < /run/secrets/synonyms > /synonyms'\n\
         RUN --mount=type=secret,id=absent sh -c 'if test -e /run/secrets/absent; then echo present; else echo absent; fi > /absent'\n",
    );
    let out = scratch("mounts-secret-out");
    let archive = out.join("image.tar");
    let secret = format!("id=tok,src={}", path_str(&src));
    let synonyms = format!("type=file,id=synonyms,source={}", path_str(&src));
    let args = [
        "--secret",
        &secret,
        "--secret",
        "type=env,id=fromenv,env=MOUNTS_E2E_SECRET",
        "--secret",
        &synonyms,
        "--output",
        &format!("oci-archive:{}", path_str(&archive)),
    ];
    let build = build_in(&root, &ctx, "secret", &args, &[("MOUNTS_E2E_SECRET", &marker)]).ok();
    let len = marker.len();
    assert_eq!(cat_in(&root, "secret", "/len"), format!("{len}\n400 0 0\n"), "the default target, mode 0400, root's");
    assert_eq!(cat_in(&root, "secret", "/custom"), format!("440 1000 1001\n{len}\n"), "target, mode, uid and gid");
    assert_eq!(cat_in(&root, "secret", "/env-only"), format!("{len}\nno-file\n"), "env= alone: a variable, no file");
    assert_eq!(cat_in(&root, "secret", "/env-and-file"), format!("{len}\n{len}\n"), "env= and target=: both");
    assert_eq!(cat_in(&root, "secret", "/fromenv"), format!("{len}\n"), "--secret id=..,env=VAR reads the host's VAR");
    assert_eq!(cat_in(&root, "secret", "/synonyms"), format!("{len}\n"), "type=file and source=");
    assert_eq!(cat_in(&root, "secret", "/absent"), "absent\n", "a missing secret that is not required: no mount");
    let config = &strata_at(&root, &["inspect", "secret"], &[]).ok().json()[0]["config"];
    assert!(!config.to_string().contains("TOK"), "env= secrets never reach the image config: {config}");
    let paths = layer_paths(&root, "secret");
    assert_not_in_layers(&paths, "run");
    assert_not_in_layers(&paths, "both");
    assert_not_in_layers(&paths, "etc/app");

    // Nowhere: the build log, history, inspect, exported archives, the store.
    let mut leaks = Vec::new();
    for (what, text) in [
        ("the build's stdout", build.stdout),
        ("the build's stderr", build.stderr),
        ("history", strata_at(&root, &["history", "--no-trunc", "secret"], &[]).ok().stdout),
        ("inspect", strata_at(&root, &["inspect", "secret"], &[]).ok().stdout),
    ] {
        if text.contains(&marker) {
            leaks.push(what.to_owned());
        }
    }
    let saved = out.join("saved");
    strata_at(&root, &["save", "-o", &path_str(&out.join("docker.tar")), "secret"], &[]).ok();
    strata_at(&root, &["save", "--format", "oci-dir", "-o", &path_str(&saved), "secret"], &[]).ok();
    Layout::open(&saved);
    for dir in [untar(&archive), untar(&out.join("docker.tar")), saved, root.clone()] {
        leaks.extend(files_containing(&root, &dir, &marker));
    }
    assert!(leaks.is_empty(), "the secret's value leaked into: {leaks:?}");
}

#[test]
fn a_required_secret_or_agent_that_is_missing_fails_the_build_naming_it() {
    if skip("a_required_secret_or_agent_that_is_missing_fails_the_build_naming_it") {
        return;
    }
    let id = unique("needed");
    for kind in ["secret", "ssh"] {
        let instruction = format!("RUN --mount=type={kind},id={id},required=true true");
        let ctx = Ctx::new(&format!("mounts-{kind}-required"), &format!("FROM busybox\n{instruction}\n"));
        let tag = format!("mounts-{kind}-required");
        let failed = build_in(&world().root, &ctx, &tag, &[], &[]);
        assert_build_fails(&failed, &tag, &[]);
        // The error quotes the instruction; the id must be named beside that quote.
        let message = failed.stderr.replace(&instruction, "");
        assert!(message.contains(&id), "the error names the missing {kind} {id}: {}", failed.describe());
        assert!(!message.contains("not supported"), "{}", failed.describe());
    }
}

/// An ssh-agent listening on a socket in a scratch dir, killed (by its pid) on drop.
struct Agent {
    pid: i32,
    sock: PathBuf,
}

impl Agent {
    fn start(name: &str) -> Agent {
        let sock = scratch(name).join("agent.sock");
        let started = run("ssh-agent", ["-s", "-a", &path_str(&sock)]).ok();
        let pid = started
            .stdout
            .split("SSH_AGENT_PID=")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no SSH_AGENT_PID from ssh-agent: {}", started.describe()));
        Agent { pid, sock }
    }

    /// Adds a new ed25519 key; returns its SHA256 fingerprint.
    fn add_key(&self, name: &str) -> String {
        let key = new_key(name);
        let mut cmd = std::process::Command::new("ssh-add");
        cmd.arg(&key).env("SSH_AUTH_SOCK", &self.sock);
        crate::support::run_command(cmd).ok();
        fingerprint(&key)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: signalling the agent this test started, by its own pid.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
    }
}

/// A new passphrase-less ed25519 private key file.
fn new_key(name: &str) -> PathBuf {
    let key = scratch(name).join("id_ed25519");
    run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", &path_str(&key)]).ok();
    key
}

/// `SHA256:...` of a key, as `ssh-keygen -lf` prints it.
fn fingerprint(key: &Path) -> String {
    let listed = run("ssh-keygen", ["-lf", &path_str(key)]).ok();
    listed.stdout.split_whitespace().nth(1).unwrap_or_else(|| panic!("{}", listed.describe())).to_owned()
}

/// Copies the host's ssh-add and the libraries `ldd` names into `ctx/sshroot/` at
/// their own paths, for `COPY sshroot/ /` into busybox (which has no ssh-add).
fn stage_ssh_add(ctx: &Ctx) {
    let ssh_add = run("sh", ["-c", "command -v ssh-add"]).ok().stdout.trim().to_owned();
    let ldd = run("ldd", [&ssh_add]).ok();
    let libs = ldd.stdout.lines().filter_map(|line| line.split_whitespace().find(|w| w.starts_with('/')).map(str::to_owned));
    for file in std::iter::once(ssh_add.clone()).chain(libs) {
        let dest = ctx.join("sshroot").join(file.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&file, &dest).unwrap_or_else(|e| panic!("copy {file} into the context: {e}"));
    }
}

#[test]
fn ssh_mounts_forward_agents_and_key_files() {
    if skip("ssh_mounts_forward_agents_and_key_files") {
        return;
    }
    let (named, default) = (Agent::start("mounts-agent-named"), Agent::start("mounts-agent-default"));
    let named_fp = named.add_key("mounts-named-key");
    let default_fp = default.add_key("mounts-default-key");
    let key_file = new_key("mounts-file-key");
    let ctx = Ctx::new(
        "mounts-ssh",
        "FROM busybox\nCOPY sshroot/ /\n\
         RUN --mount=type=ssh,id=named sh -c 'echo $SSH_AUTH_SOCK > /named; stat -c \"%a %u\" $SSH_AUTH_SOCK >> /named; ssh-add -l >> /named'\n\
         RUN --mount=type=ssh sh -c 'ssh-add -l > /default'\n\
         RUN --mount=type=ssh,id=deploy,target=/tmp/deploy.sock sh -c 'echo $SSH_AUTH_SOCK > /deploy; ssh-add -l >> /deploy'\n",
    );
    stage_ssh_add(&ctx);
    let named_arg = format!("named={}", path_str(&named.sock));
    let key_arg = format!("deploy={}", path_str(&key_file));
    let args = ["--ssh", &named_arg, "--ssh", "default", "--ssh", &key_arg];
    let default_sock = path_str(&default.sock);
    build_in(&world().root, &ctx, "mounts-ssh", &args, &[("SSH_AUTH_SOCK", &default_sock)]).ok();

    let named_out = cat_in(&world().root, "mounts-ssh", "/named");
    let mut lines = named_out.lines();
    let sock = lines.next().unwrap_or_default();
    assert!(sock.starts_with("/run/buildkit/ssh_agent."), "SSH_AUTH_SOCK is the default target: {named_out}");
    assert_eq!(lines.next(), Some("600 0"), "the socket's default mode and owner: {named_out}");
    let listed: Vec<&str> = lines.collect();
    assert!(listed.len() == 1 && listed[0].contains(&named_fp), "ssh-add -l lists the named agent's key {named_fp}: {named_out}");
    let default_out = cat_in(&world().root, "mounts-ssh", "/default");
    assert!(
        default_out.contains(&default_fp) && !default_out.contains(&named_fp),
        "--ssh default is $SSH_AUTH_SOCK's agent ({default_fp}): {default_out}"
    );
    let deploy_out = cat_in(&world().root, "mounts-ssh", "/deploy");
    assert!(deploy_out.starts_with("/tmp/deploy.sock\n"), "target= sets SSH_AUTH_SOCK: {deploy_out}");
    assert!(deploy_out.contains(&fingerprint(&key_file)), "--ssh ID=KEYFILE serves that key: {deploy_out}");
    let config = crate::support::inspect_config("mounts-ssh");
    assert!(!config.to_string().contains("SSH_AUTH_SOCK"), "SSH_AUTH_SOCK is the RUN's only: {config}");
    let paths = layer_paths(&world().root, "mounts-ssh");
    assert_not_in_layers(&paths, "run");
    assert!(!paths.iter().any(|p| p == "tmp/deploy.sock"), "the socket target stays out of the layer: {paths:?}");
}
