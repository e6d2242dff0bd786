//! ADD of a git repository through the system `git`: the ref resolved to a commit
//! with `ls-remote` (all the cache key needs, so an unmoved branch is a hit without
//! a clone), then, on a miss, that commit fetched shallowly and checked out.
//!
//! git runs as BuildKit runs it: no system or user config (a `url.insteadOf` or
//! credential helper of the caller's must not change what a Dockerfile fetches),
//! never prompting, in the C locale, with the proxy variables and the ssh agent
//! passed on. A branch is resolved the way BuildKit does (`refs/NAME`, then a
//! branch, then a tag); a full commit sha is itself. Files get the checkout's
//! times, as BuildKit's default `mtime=checkout`; `.git` is kept only with
//! `--keep-git-dir` and no subdir: a shallow repository at the commit, its
//! `origin` the URL without credentials.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use super::git_url::GitUrl;
use super::step_key::GitKey;

/// A git source's ref as the remote has it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Resolved {
    /// The object the ref names: the commit, or an annotated tag's tag object.
    pub object: String,
    /// The commit it is, tags peeled.
    pub commit: String,
    /// The full ref name (`refs/heads/main`), None for a commit given by sha.
    pub reference: Option<String>,
}

/// What the step's key holds of a git source: the commit (an annotated tag's object
/// and the ref's name too when `.git` is kept, since they are then in the tree).
pub(super) fn key(git: &GitUrl, r: &Resolved, keep_git_dir: bool) -> GitKey {
    GitKey {
        remote: git.shown.clone(),
        commit: if keep_git_dir { r.object.clone() } else { r.commit.clone() },
        reference: if keep_git_dir { r.reference.clone() } else { None },
        subdir: git.subdir.clone(),
        keep_git_dir,
    }
}

/// Whether `.git` is kept: `--keep-git-dir` or the URL's `?keep-git-dir`, which
/// must not contradict each other.
pub(super) fn keep_git_dir(git: &GitUrl, flag: bool) -> Result<bool> {
    match git.keep_git_dir {
        Some(false) if flag => bail!("ADD {}: inconsistent keep-git-dir configuration", git.shown),
        Some(q) => Ok(q || flag),
        None => Ok(flag),
    }
}

/// The commit `git`'s ref names now, checked against `--checksum` (and the URL's
/// `?checksum=`), which are hex prefixes of the commit as in BuildKit.
pub(super) fn resolve(git: &GitUrl, checksum: Option<&str>) -> Result<Resolved> {
    let shown = &git.shown;
    let checksum = match (checksum, git.checksum.as_deref()) {
        (Some(a), Some(b)) if a != b => bail!("ADD {shown}: checksum mismatch {a:?} != {b:?}"),
        (a, b) => a.or(b),
    };
    if let Some(c) = checksum {
        if c.is_empty() || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("ADD {shown}: invalid checksum {c} for a git source, expected a hex commit hash");
        }
    }
    let resolved = match git.reference.as_deref() {
        Some(sha) if is_commit_sha(sha) => Resolved { object: sha.to_string(), commit: sha.to_string(), reference: None },
        Some(r) => ls_remote(git, r)?,
        None => ls_remote(git, &default_branch(git)?)?,
    };
    if let Some(c) = checksum {
        let c = c.to_ascii_lowercase();
        if !resolved.commit.starts_with(&c) && !resolved.object.starts_with(&c) {
            bail!("ADD {shown}: expected checksum to match {c}, got {}", resolved.commit);
        }
    }
    Ok(resolved)
}

/// BuildKit's `gitutil.IsCommitSHA`: 40 (sha1) or 64 (sha256) lowercase hex digits.
fn is_commit_sha(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The remote's HEAD branch, for a URL without a ref.
fn default_branch(git: &GitUrl) -> Result<String> {
    let out = run_git(git, None, &["ls-remote", "--symref", "--", &git.remote, "HEAD"])?;
    out.lines()
        .find_map(|l| l.strip_prefix("ref: ").and_then(|l| l.split_whitespace().next()))
        .and_then(|r| r.strip_prefix("refs/heads/"))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("ADD {}: could not find the repository's default branch", git.shown))
}

/// `ls-remote` of `name` and its peeled form, chosen as BuildKit chooses: an exact
/// `refs/NAME`, then the branch, then the tag (and an annotated tag's commit).
fn ls_remote(git: &GitUrl, name: &str) -> Result<Resolved> {
    let out = run_git(git, None, &["ls-remote", "--", &git.remote, name, &format!("{name}^{{}}")])?;
    let bare = name.strip_prefix("refs/").unwrap_or(name);
    let partial = format!("refs/{bare}");
    let head = format!("refs/heads/{}", name.strip_prefix("refs/heads/").unwrap_or(name));
    let tag = format!("refs/tags/{}", name.strip_prefix("refs/tags/").unwrap_or(name));
    let find = |want: &str| out.lines().find_map(|l| l.split_once('\t').filter(|(_, r)| *r == want).map(|(sha, _)| sha.to_string()));
    let Some((object, reference)) = [partial, head, tag].into_iter().find_map(|r| find(&r).map(|sha| (sha, r))) else {
        bail!("ADD {}: the repository has no ref {name:?} (no branch, tag or ref of that name)", git.shown);
    };
    if !is_commit_sha(&object) {
        bail!("ADD {}: the remote gave an invalid sha {object:?} for {name}", git.shown);
    }
    // An annotated tag names a tag object; `^{}` is the commit it points at.
    let commit = find(&format!("{reference}^{{}}")).unwrap_or_else(|| object.clone());
    Ok(Resolved { object, commit, reference: Some(reference) })
}

/// Checks the resolved commit out into `dir` (empty): the repository's files, and
/// `.git` when `keep_git_dir`. The caller copies `dir/SUBDIR` from there.
pub(super) fn checkout(git: &GitUrl, r: &Resolved, keep_git_dir: bool, dir: &Path) -> Result<()> {
    let shown = &git.shown;
    run_git(git, Some(dir), &["init", "-q"])?;
    // Protocol v2 servers hand out any commit they hold; an older one only what
    // its refs advertise, so then everything is fetched and the commit looked up.
    let by_sha = run_git(git, Some(dir), &["fetch", "-q", "--depth=1", "--no-tags", "--", &git.remote, &r.object]);
    if by_sha.is_err() {
        run_git(git, Some(dir), &["fetch", "-q", "--tags", "--", &git.remote, "+refs/*:refs/strata-fetched/*"])
            .and_then(|_| run_git(git, Some(dir), &["cat-file", "-e", &format!("{}^{{commit}}", r.object)]))
            .with_context(|| format!("ADD {shown}: commit {} could not be fetched", r.object))?;
    }
    run_git(git, Some(dir), &["checkout", "-q", "--detach", &r.object])
        .with_context(|| format!("ADD {shown}: checking out {}", r.object))?;
    let dot_git = dir.join(".git");
    if !keep_git_dir || !git.subdir.is_empty() {
        return std::fs::remove_dir_all(&dot_git).with_context(|| format!("removing {}", dot_git.display()));
    }
    if let Some(reference) = &r.reference {
        run_git(git, Some(dir), &["update-ref", reference, &r.object])?;
    }
    run_git(git, Some(dir), &["remote", "add", "origin", shown])?;
    run_git(git, Some(dir), &["reflog", "expire", "--all", "--expire=now"])?;
    let _ = std::fs::remove_file(dot_git.join("FETCH_HEAD"));
    Ok(())
}

/// Runs git in `dir` (a clean environment, see the module doc); its stdout, or an
/// error with its stderr. The URL's credentials never appear in a message.
fn run_git(git: &GitUrl, dir: Option<&Path>, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", "/dev/null")
        .env("LC_ALL", "C")
        .env("GIT_SSH_COMMAND", ssh_command());
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy", "SSH_AUTH_SOCK"]
    {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    // The builder is root in its namespace, the store's dirs its own; safe.directory
    // only spares a surprise on odd setups. file:// submodules stay refused. A
    // stalled HTTP transfer fails after a minute without progress, as ADD <url> does.
    cmd.args(["-c", "safe.directory=*", "-c", "protocol.file.allow=user", "-c", "init.defaultBranch=master"])
        .args(["-c", "advice.detachedHead=false", "-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=60"])
        .args(args)
        .stdin(Stdio::null());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    // SAFETY: umask is async-signal-safe and only sets the child's own mask, so the
    // checkout's modes (0644, 0755) do not depend on the caller's umask.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow!("ADD {}: git is not installed: strata runs the system git to fetch repositories (install the `git` package)", git.shown)
        }
        _ => anyhow!("ADD {}: running git: {e}", git.shown),
    })?;
    let redact = |s: &[u8]| String::from_utf8_lossy(s).replace(&git.remote, &git.shown);
    if !out.status.success() {
        let stderr = redact(&out.stderr);
        bail!("ADD {}: git {} failed ({}): {}", git.shown, args[0], out.status, stderr.trim());
    }
    Ok(redact(&out.stdout))
}

/// ssh as BuildKit runs it for git (no ssh config; keys from the agent), but
/// checking host keys against the caller's known_hosts when there is one.
fn ssh_command() -> String {
    let known = std::env::var_os("HOME").map(|h| Path::new(&h).join(".ssh/known_hosts")).filter(|p| p.is_file());
    match known.as_ref().and_then(|p| p.to_str()).filter(|p| !p.contains('\'')) {
        Some(path) => format!("ssh -F /dev/null -o BatchMode=yes -o UserKnownHostsFile='{path}'"),
        None => "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_shas_are_full_lowercase_hex() {
        assert!(is_commit_sha(&"a".repeat(40)));
        assert!(is_commit_sha(&"0".repeat(64)));
        assert!(!is_commit_sha(&"A".repeat(40)));
        assert!(!is_commit_sha("abc123"));
        assert!(!is_commit_sha("main"));
    }

    #[test]
    fn keep_git_dir_flag_and_query_must_agree() {
        let mut g = super::super::git_url::parse("git://h/r").unwrap().unwrap();
        assert!(!keep_git_dir(&g, false).unwrap());
        assert!(keep_git_dir(&g, true).unwrap());
        g.keep_git_dir = Some(true);
        assert!(keep_git_dir(&g, false).unwrap());
        g.keep_git_dir = Some(false);
        assert!(keep_git_dir(&g, true).is_err());
    }

    #[test]
    fn checksums_must_be_hex() {
        let g = super::super::git_url::parse(&format!("git://h/r#{}", "a".repeat(40))).unwrap().unwrap();
        assert!(resolve(&g, Some("sha256:abc")).is_err());
        assert!(resolve(&g, Some("aaaa")).is_ok(), "a prefix of the commit");
        let err = resolve(&g, Some("bbbb")).unwrap_err().to_string();
        assert!(err.contains("expected checksum to match bbbb") && err.contains(&"a".repeat(40)), "{err}");
    }
}
