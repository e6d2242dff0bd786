//! ADD's URLs: fetched into a scratch dir with their name, digest and date, once
//! per step (the key needs their content; the step then uses the same file).

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::git_url::is_git;
use crate::oci::{Digest, HashingWriter};
use crate::registry::{http_agent_config, Stalled};

/// True for the sources ADD downloads: HTTP(S) URLs that are not git
/// repositories (see `git_url`).
pub(super) fn is_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && !is_git(s)
}

/// The name a download of `url` gets: its last path segment, as Docker names it.
pub(super) fn file_name(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).rsplit('/').find(|s| !s.is_empty() && !s.contains(':')).unwrap_or("download").to_string()
}

/// `--checksum`'s digest, checked before anything is fetched.
pub(super) fn parse_checksum(checksum: &str) -> Result<Digest> {
    Digest::parse(checksum).map_err(|e| anyhow!("--checksum={checksum}: {e}"))
}

/// Downloads `url` into `dir`, checking `--checksum` when given; returns the file
/// name (see [`file_name`]).
pub(super) fn download(url: &str, dir: &Path, checksum: Option<&str>) -> Result<Downloaded> {
    let want = checksum.map(parse_checksum).transpose()?;
    let name = file_name(url);
    // A server that goes silent fails the step after the idle timeout, as a registry does.
    let agent: ureq::Agent = http_agent_config().build().into();
    let resp = agent.get(url).call().map_err(|e| stalled_or(Stalled::of(&e), e)).with_context(|| format!("ADD {url}: download failed"))?;
    let modified = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp());
    let mut body = resp.into_body();
    let path = dir.join(&name);
    let file = fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
    let mut writer = HashingWriter::new(std::io::BufWriter::new(file));
    let mut reader = body.as_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| stalled_or(Stalled::of_io(&e), e))
            .with_context(|| format!("ADD {url}: reading the response"))?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n])?;
    }
    let (mut inner, digest, _) = writer.finish();
    inner.flush()?;
    drop(inner);
    // The reference: a downloaded file is 0600, dated by Last-Modified when sent;
    // without it Docker and BuildKit date it at the epoch, so the same bytes give
    // the same layer whenever they were fetched.
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let t = nix::sys::time::TimeSpec::new(modified.unwrap_or(0), 0);
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, &path, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .with_context(|| format!("dating {}", path.display()))?;
    if let Some(want) = want {
        if want != digest {
            bail!("ADD {url}: checksum mismatch: expected {want}, got {digest}");
        }
    }
    Ok(Downloaded { name, digest, modified })
}

/// `stalled` when the request timed out (it says so plainly), else `e` itself.
fn stalled_or(stalled: Option<Stalled>, e: impl std::error::Error + Send + Sync + 'static) -> anyhow::Error {
    match stalled {
        Some(s) => s.into(),
        None => e.into(),
    }
}

/// A file ADD fetched: its name in the download dir, content digest and date.
pub(super) struct Downloaded {
    pub name: String,
    pub digest: Digest,
    pub modified: Option<i64>,
}

/// A download made for a step's cache key, kept for the step itself.
pub(super) struct Prefetched {
    /// Holds the file until the step moves it (removed with the dir otherwise).
    pub dir: crate::oci::TempDir,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised() {
        assert!(is_url("http://127.0.0.1:8000/a.tar"));
        assert!(!is_url("file.tar"));
        assert!(!is_url("https://h/repo.git#main"), "a git repository, not a download");
        assert_eq!(file_name("http://h/a/b.tar.gz?x=1#f"), "b.tar.gz");
    }
}
