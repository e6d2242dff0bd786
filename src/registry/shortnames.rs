//! Short names (`alpine`, `library/alpine`, `user/app:1`): the fully-qualified
//! names they may mean, as containers-registries.conf(5) says.
//!
//! The configuration is `$CONTAINERS_REGISTRIES_CONF`, else
//! `~/.config/containers/registries.conf` (`$XDG_CONFIG_HOME` when set), else
//! `/etc/containers/registries.conf`, then the `*.conf` drop-ins in alphanumeric
//! order: only the user's `registries.conf.d` beside a user file, else the system's
//! then the user's (the order containers/image loads them in). A setting in a later
//! file replaces an earlier one; aliases merge, and an empty alias erases one. Only
//! `unqualified-search-registries` (or version 1's `[registries.search]`) and
//! `[aliases]` are read; the rest of the file concerns what strata does not do.
//!
//! An alias is the one candidate of the short names it names; otherwise each search
//! registry is tried in order (`docker.io` alone when no file says). strata never
//! prompts, so `short-name-mode` is read as `permissive` without a terminal is:
//! every search registry, first that has the image wins. A missing main file is
//! not an error, an unreadable one is; a broken drop-in is skipped with a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{RegistryError, Result};
use crate::oci::ImageName;

/// The search list when no configuration names one, as containers/image defaults.
const DEFAULT_SEARCH: &str = "docker.io";

/// What the registries.conf files say about short names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortNames {
    search: Vec<String>,
    aliases: BTreeMap<String, String>,
    /// The files that were read, for error messages.
    read: Vec<PathBuf>,
    /// Drop-ins that were skipped, and why.
    pub warnings: Vec<String>,
}

/// The keys strata reads from one file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct File {
    #[serde(rename = "unqualified-search-registries")]
    unqualified_search_registries: Option<Vec<String>>,
    aliases: BTreeMap<String, String>,
    registries: Option<V1Registries>,
}

/// Version 1's `[registries.search] registries = [...]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct V1Registries {
    search: Option<V1List>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct V1List {
    registries: Vec<String>,
}

/// Whether `reference` is a short name: it names no registry (nor `localhost`), so
/// [`ImageName::parse`] would put it under `localhost/`.
pub fn is_short(reference: &str) -> bool {
    ImageName::parse(reference).is_ok_and(|n| n.domain() == "localhost") && !reference.starts_with("localhost/")
}

/// Where the configuration lives: the main file and the drop-in dirs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub main: PathBuf,
    pub drop_in_dirs: Vec<PathBuf>,
}

impl Sources {
    /// From the environment (`env` looks a variable up) and which files exist.
    pub fn locate(env: impl Fn(&str) -> Option<String>, exists: impl Fn(&Path) -> bool) -> Sources {
        let env = |v: &str| env(v).filter(|s| !s.is_empty());
        let config_home = env("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")));
        let user_file = config_home.as_ref().map(|c| c.join("containers/registries.conf"));
        let user_dir = config_home.as_ref().map(|c| c.join("containers/registries.conf.d"));
        let system_dir = PathBuf::from("/etc/containers/registries.conf.d");
        if let Some(main) = env("CONTAINERS_REGISTRIES_CONF") {
            return Sources { main: PathBuf::from(main), drop_in_dirs: [Some(system_dir), user_dir].into_iter().flatten().collect() };
        }
        match user_file {
            Some(f) if exists(&f) => Sources { main: f, drop_in_dirs: user_dir.into_iter().collect() },
            _ => Sources {
                main: PathBuf::from("/etc/containers/registries.conf"),
                drop_in_dirs: [Some(system_dir), user_dir].into_iter().flatten().collect(),
            },
        }
    }
}

impl Default for ShortNames {
    fn default() -> Self {
        ShortNames { search: vec![DEFAULT_SEARCH.to_string()], aliases: BTreeMap::new(), read: Vec::new(), warnings: Vec::new() }
    }
}

impl ShortNames {
    /// Reads the configuration the environment points to.
    pub fn load() -> Result<ShortNames> {
        let sources = Sources::locate(|v| std::env::var(v).ok(), Path::exists);
        ShortNames::load_from(&sources)
    }

    /// Reads `sources`: the main file (when it exists), then each drop-in.
    pub fn load_from(sources: &Sources) -> Result<ShortNames> {
        let mut names = ShortNames::default();
        match std::fs::read_to_string(&sources.main) {
            Ok(text) => names.apply(&sources.main, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(RegistryError::Io { op: "reading", path: sources.main.clone(), source }),
        }
        for dir in &sources.drop_in_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
                .collect();
            files.sort();
            for file in files {
                let applied = std::fs::read_to_string(&file)
                    .map_err(|e| RegistryError::Io { op: "reading", path: file.clone(), source: e })
                    .and_then(|text| names.apply(&file, &text));
                if let Err(e) = applied {
                    names.warnings.push(format!("skipping {e}"));
                }
            }
        }
        Ok(names)
    }

    /// The configuration of one file's `text` (named `path` in errors) over the
    /// defaults: what [`ShortNames::load_from`] does for each file, without the
    /// filesystem. For the fuzz targets.
    #[doc(hidden)]
    pub fn from_text(path: &Path, text: &str) -> Result<ShortNames> {
        let mut names = ShortNames::default();
        names.apply(path, text)?;
        Ok(names)
    }

    /// Lays one file's settings over what earlier files said.
    fn apply(&mut self, path: &Path, text: &str) -> Result<()> {
        let bad = |reason: String| RegistryError::RegistriesConf { path: path.to_path_buf(), reason };
        let file: File = toml::from_str(text).map_err(|e| bad(e.to_string().trim().to_string()))?;
        let search = file.unqualified_search_registries.or_else(|| file.registries.and_then(|r| r.search).map(|s| s.registries));
        if let Some(search) = search {
            for registry in &search {
                if registry.is_empty()
                    || registry.contains('/')
                    || ImageName::parse(&format!("{registry}/x")).map_or(true, |n| n.domain() != registry)
                {
                    return Err(bad(format!("unqualified-search-registries: {registry:?} is not a registry host[:port]")));
                }
            }
            self.search = search;
        }
        let mut aliases = self.aliases.clone();
        for (name, value) in file.aliases {
            if !is_short(&name) || name.contains([':', '@']) {
                return Err(bad(format!("alias {name:?}: the name must be a short name without a tag or digest")));
            }
            if value.is_empty() {
                aliases.remove(&name);
                continue;
            }
            let valid = !is_short(&value)
                && !value.contains('@')
                && !value.rsplit('/').next().unwrap_or_default().contains(':')
                && ImageName::parse(&value).is_ok_and(|n| n.domain() != "localhost");
            if !valid {
                return Err(bad(format!(
                    "alias {name:?} = {value:?}: the value must be a fully-qualified name (registry/repository) without a tag or digest"
                )));
            }
            aliases.insert(name, value);
        }
        self.aliases = aliases;
        self.read.push(path.to_path_buf());
        Ok(())
    }

    /// The fully-qualified names `short` may mean, to try in order: its alias alone,
    /// else one per search registry. The tag or digest given is kept.
    pub fn candidates(&self, short: &str) -> Result<Vec<ImageName>> {
        let parsed = ImageName::parse(short).map_err(RegistryError::Oci)?;
        let suffix = match (parsed.tag(), parsed.digest()) {
            (Some(t), Some(d)) => format!(":{t}@{d}"),
            (Some(t), None) => format!(":{t}"),
            (None, Some(d)) => format!("@{d}"),
            (None, None) => String::new(),
        };
        let path = parsed.path();
        let full = |text: String| ImageName::parse(&text).map_err(RegistryError::Oci);
        if let Some(target) = self.aliases.get(path) {
            return Ok(vec![full(format!("{target}{suffix}"))?]);
        }
        if self.search.is_empty() {
            return Err(RegistryError::NoSearchRegistries {
                name: short.to_string(),
                searched: self.read.iter().map(|p| p.display().to_string()).collect(),
            });
        }
        self.search.iter().map(|registry| full(format!("{registry}/{path}{suffix}"))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(files: &[&str]) -> ShortNames {
        let mut n = ShortNames::default();
        for (i, text) in files.iter().enumerate() {
            n.apply(Path::new(&format!("/conf/{i}.conf")), text).unwrap();
        }
        n
    }

    fn strings(v: Vec<ImageName>) -> Vec<String> {
        v.into_iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn short_names_are_those_without_a_registry() {
        for short in ["alpine", "alpine:3", "library/alpine", "user/app:1", "a/b/c"] {
            assert!(is_short(short), "{short}");
        }
        let digest = format!("alpine@sha256:{}", "a".repeat(64));
        assert!(is_short(&digest));
        for full in ["docker.io/alpine", "quay.io/a/b:1", "localhost/x", "localhost:5000/x", "127.0.0.1:5000/e2e/thing", "Bad Name"] {
            assert!(!is_short(full), "{full}");
        }
    }

    #[test]
    fn without_configuration_docker_hub_is_searched_with_library() {
        let n = ShortNames::default();
        assert_eq!(strings(n.candidates("alpine").unwrap()), ["docker.io/library/alpine:latest"]);
        assert_eq!(strings(n.candidates("library/alpine:3").unwrap()), ["docker.io/library/alpine:3"]);
        assert_eq!(strings(n.candidates("user/app:1").unwrap()), ["docker.io/user/app:1"]);
    }

    #[test]
    fn search_registries_are_tried_in_order() {
        let n = names(&[r#"unqualified-search-registries = ["127.0.0.1:5000", "quay.io", "docker.io"]"#]);
        assert_eq!(
            strings(n.candidates("e2e/thing").unwrap()),
            ["127.0.0.1:5000/e2e/thing:latest", "quay.io/e2e/thing:latest", "docker.io/e2e/thing:latest"]
        );
        let d = format!("sha256:{}", "b".repeat(64));
        assert_eq!(strings(n.candidates(&format!("x@{d}")).unwrap())[2], format!("docker.io/library/x@{d}"));
    }

    #[test]
    fn aliases_win_and_keep_the_tag() {
        let n = names(&[r#"
unqualified-search-registries = ["quay.io"]
[aliases]
"thing" = "127.0.0.1:5000/e2e/thing"
"team/tool" = "reg.example.com/tools/tool"
"#]);
        assert_eq!(strings(n.candidates("thing:v2").unwrap()), ["127.0.0.1:5000/e2e/thing:v2"]);
        assert_eq!(strings(n.candidates("team/tool").unwrap()), ["reg.example.com/tools/tool:latest"]);
        assert_eq!(strings(n.candidates("other").unwrap()), ["quay.io/other:latest"]);
    }

    #[test]
    fn later_files_replace_settings_and_merge_aliases() {
        let n = names(&[
            "unqualified-search-registries = [\"a.example\"]\n[aliases]\n\"x\" = \"a.example/x\"\n\"y\" = \"a.example/y\"\n",
            "[aliases]\n\"y\" = \"b.example/y\"\n\"x\" = \"\"\n",
            "unqualified-search-registries = [\"c.example\"]\n",
        ]);
        assert_eq!(strings(n.candidates("x").unwrap()), ["c.example/x:latest"], "an empty alias erases it");
        assert_eq!(strings(n.candidates("y").unwrap()), ["b.example/y:latest"]);
    }

    #[test]
    fn version_one_search_lists_are_read() {
        let n = names(&["[registries.search]\nregistries = ['r1.example', 'r2.example:5000']\n"]);
        assert_eq!(strings(n.candidates("z").unwrap()), ["r1.example/z:latest", "r2.example:5000/z:latest"]);
    }

    #[test]
    fn an_empty_search_list_is_a_clear_error() {
        let n = names(&["unqualified-search-registries = []\n"]);
        let err = n.candidates("alpine").unwrap_err().to_string();
        assert!(err.contains("\"alpine\"") && err.contains("/conf/0.conf") && err.contains("unqualified-search-registries"), "{err}");
    }

    #[test]
    fn bad_files_name_the_file_and_the_setting() {
        let mut n = ShortNames::default();
        for (text, expect) in [
            ("unqualified-search-registries = \"docker.io\"", "/conf/bad.conf"),
            ("unqualified-search-registries = [\"docker.io/library\"]", "not a registry"),
            ("[aliases]\n\"quay.io/x\" = \"quay.io/x\"", "must be a short name"),
            ("[aliases]\n\"x:1\" = \"quay.io/x\"", "must be a short name"),
            ("[aliases]\n\"x\" = \"x\"", "fully-qualified"),
            ("[aliases]\n\"x\" = \"quay.io/x:1\"", "fully-qualified"),
        ] {
            let err = n.apply(Path::new("/conf/bad.conf"), text).unwrap_err().to_string();
            assert!(err.contains(expect) && err.contains("/conf/bad.conf"), "{text}: {err}");
        }
        assert_eq!(n, ShortNames::default(), "a refused file changes nothing");
    }

    #[test]
    fn sources_follow_containers_image() {
        let env =
            |vars: &'static [(&'static str, &'static str)]| move |v: &str| vars.iter().find(|(k, _)| *k == v).map(|(_, x)| x.to_string());
        let none = |_: &Path| false;
        let s = Sources::locate(env(&[("HOME", "/h"), ("CONTAINERS_REGISTRIES_CONF", "/t/r.conf")]), none);
        assert_eq!(s.main, PathBuf::from("/t/r.conf"));
        assert_eq!(
            s.drop_in_dirs,
            [PathBuf::from("/etc/containers/registries.conf.d"), PathBuf::from("/h/.config/containers/registries.conf.d")]
        );
        let s = Sources::locate(env(&[("HOME", "/h")]), none);
        assert_eq!(s.main, PathBuf::from("/etc/containers/registries.conf"));
        let s =
            Sources::locate(env(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")]), |p: &Path| p == Path::new("/x/containers/registries.conf"));
        assert_eq!(s.main, PathBuf::from("/x/containers/registries.conf"));
        assert_eq!(s.drop_in_dirs, [PathBuf::from("/x/containers/registries.conf.d")], "a user file reads the user's drop-ins only");
    }

    #[test]
    fn drop_ins_load_in_order_and_broken_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("registries.conf");
        std::fs::write(&main, "unqualified-search-registries = [\"main.example\"]\n").unwrap();
        let d = dir.path().join("registries.conf.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("10-a.conf"), "unqualified-search-registries = [\"a.example\"]\n").unwrap();
        std::fs::write(d.join("20-b.conf"), "unqualified-search-registries = [\"b.example\"]\n").unwrap();
        std::fs::write(d.join("30-broken.conf"), "unqualified-search-registries = [").unwrap();
        std::fs::write(d.join("40-ignored.txt"), "unqualified-search-registries = [\"txt.example\"]\n").unwrap();
        let n = ShortNames::load_from(&Sources { main, drop_in_dirs: vec![d.clone(), dir.path().join("missing")] }).unwrap();
        assert_eq!(strings(n.candidates("q").unwrap()), ["b.example/q:latest"]);
        assert_eq!(n.warnings.len(), 1, "{:?}", n.warnings);
        assert!(n.warnings[0].contains("30-broken.conf"), "{:?}", n.warnings);

        let absent = ShortNames::load_from(&Sources { main: dir.path().join("none.conf"), drop_in_dirs: vec![] }).unwrap();
        assert_eq!(absent, ShortNames::default());
        std::fs::write(dir.path().join("bad.conf"), "[aliases\n").unwrap();
        let err = ShortNames::load_from(&Sources { main: dir.path().join("bad.conf"), drop_in_dirs: vec![] }).unwrap_err().to_string();
        assert!(err.contains("bad.conf"), "{err}");
    }
}
