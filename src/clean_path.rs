//! Paths cleaned lexically, as Go's `path.Clean` cleans an absolute path: the one
//! rule BuildKit and runc apply to WORKDIR, COPY destinations, mount targets and
//! sources, and git subdirectories, before anything on disk is looked at; and a
//! path's last name, as Go's `path.Base` gives it.

/// `/a/./b/../c` -> `/a/c`; `..` stops at `/`; the result is absolute and has no
/// trailing `/` (but `/` itself). A relative path is taken as below `/`.
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

/// The last name of a `/`-separated path (`/a/b/` -> `b`), empty for `/` or "".
pub fn base_name(path: &str) -> String {
    path.rsplit('/').find(|c| !c.is_empty()).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_as_go_path_clean_does_for_absolute_paths() {
        assert_eq!(clean_abs("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_abs("/../../x"), "/x");
        assert_eq!(clean_abs("a/b/.."), "/a");
        assert_eq!(clean_abs(""), "/");
        assert_eq!(clean_abs("//x//y"), "/x/y");
    }

    #[test]
    fn base_names_ignore_trailing_slashes() {
        assert_eq!(base_name("/run/secrets/tok"), "tok");
        assert_eq!(base_name("dir/sub/"), "sub");
        assert_eq!(base_name("plain"), "plain");
        assert_eq!(base_name("/"), "");
    }
}
