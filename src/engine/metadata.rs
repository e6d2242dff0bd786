//! Metadata instructions applied to an image config: the rules the build and
//! `commit --change` share (ENV, WORKDIR paths, EXPOSE ports).

use anyhow::{anyhow, Result};

pub fn env_set(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| e.split_once('=').map(|(k, _)| k) == Some(key)) {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

pub fn join_workdir(current: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        let base = if current.is_empty() { "/" } else { current };
        format!("{}/{}", base.trim_end_matches('/'), path)
    }
}

/// Lexically cleans an absolute path (`/a/./b/../c` -> `/a/c`).
pub fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `EXPOSE 80` means 80/tcp; protocols are lower-cased as Docker stores them, and
/// a range (`8000-8002/tcp`) is one port per number, as BuildKit's
/// `nat.ParsePortSpecs` expands it.
pub fn normalize_port(word: &str) -> Result<Vec<String>> {
    let (port, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let bad = || anyhow!("invalid port {word:?}: expected PORT[-END][/tcp|udp|sctp]");
    let (first, last) = match port.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().map_err(|_| bad())?, b.parse::<u16>().map_err(|_| bad())?),
        None => {
            let p = port.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if first > last || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    Ok((first..=last).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::vars::env_get;

    #[test]
    fn workdir_paths_chain_and_clean() {
        assert_eq!(clean_abs(&join_workdir("/a", "b")), "/a/b");
        assert_eq!(clean_abs(&join_workdir("/a", "/c")), "/c");
        assert_eq!(clean_abs(&join_workdir("", "x/../y")), "/y");
    }

    #[test]
    fn ports_get_a_protocol() {
        assert_eq!(normalize_port("80").unwrap(), ["80/tcp"]);
        assert_eq!(normalize_port("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(normalize_port("8000-8002/tcp").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert_eq!(normalize_port("7-7/sctp").unwrap(), ["7/sctp"]);
        assert!(normalize_port("http").is_err());
        assert!(normalize_port("9-8").is_err());
        assert!(normalize_port("80/icmp").is_err());
    }

    #[test]
    fn env_set_replaces_in_place() {
        let mut env = vec!["A=1".to_string(), "B=2".to_string()];
        env_set(&mut env, "A", "3");
        env_set(&mut env, "C", "x=y");
        assert_eq!(env, vec!["A=3", "B=2", "C=x=y"]);
        assert_eq!(env_get(&env, "C").as_deref(), Some("x=y"));
    }
}
