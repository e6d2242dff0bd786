//! Paths cleaned lexically, as Go's `path.Clean` cleans an absolute path: the one
//! rule BuildKit and runc apply to WORKDIR, COPY destinations, mount targets and
//! sources, and git subdirectories, before anything on disk is looked at.

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
}
