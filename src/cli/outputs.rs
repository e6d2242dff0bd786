//! What a build or push leaves beside the image for scripts: `--iidfile`,
//! `--metadata-file` (BuildKit's keys) and `--digestfile`, each written whole and
//! durably as docker, buildx and podman write them (no trailing newline); and the
//! `--label`/`--annotation` values, parsed as docker and buildx parse them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::durable::{self, Mode};
use crate::engine::BuildOutcome;
use crate::oci::Digest;

/// `--label K=V` (repeatable; the last of a key wins); `K` alone is an empty value,
/// as docker and buildah take it.
pub fn parse_labels(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in raw {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("--label {l:?}: missing name");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// `--annotation [TYPE:]K=V` as buildx writes them: no type, or `manifest`, is the
/// image manifest's. strata writes one manifest and no index: `index` and
/// `index-descriptor` are refused as BuildKit refuses them for a single-platform
/// export; `manifest-descriptor` (annotations on the manifest's descriptor, not in
/// the manifest) and platform qualifiers (`manifest[linux/amd64]:`) are refused as
/// unsupported rather than dropped.
pub fn parse_annotations(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in raw {
        let Some((k, v)) = a.split_once('=') else { bail!("--annotation {a:?}: expected KEY=VALUE") };
        let key = match k.split_once(':') {
            // BuildKit's rule: the part before the first colon is a type list only
            // when it looks like one (lower-case words, an optional [platform]).
            Some((types, key)) if looks_like_types(types) => {
                for t in types.split(',') {
                    match t {
                        "manifest" => {}
                        "index" | "index-descriptor" => bail!(
                            "--annotation {a:?}: index annotations are not supported for a single-platform image; only manifest annotations are supported"
                        ),
                        "manifest-descriptor" => bail!(
                            "--annotation {a:?}: manifest-descriptor annotations are not supported; only manifest annotations are supported"
                        ),
                        t if t.contains('[') => {
                            bail!("--annotation {a:?}: per-platform annotations need a multi-platform build, which strata does not do")
                        }
                        t => bail!("--annotation {a:?}: unknown annotation type {t:?}"),
                    }
                }
                key
            }
            _ => k,
        };
        if key.is_empty() {
            bail!("--annotation {a:?}: missing name");
        }
        out.insert(key.to_string(), v.to_string());
    }
    Ok(out)
}

/// Lower-case words and dashes, comma-separated, each maybe with a `[platform]`.
fn looks_like_types(s: &str) -> bool {
    s.split(',').all(|t| {
        let word = t.split_once('[').map_or(t, |(w, rest)| if rest.ends_with(']') { w } else { "" });
        !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '-')
    })
}

/// `--iidfile`: `sha256:HEX`, as docker and buildah write it.
pub fn write_iidfile(path: &Path, outcome: &BuildOutcome) -> Result<()> {
    write(path, outcome.image_id.to_string().as_bytes())
}

/// `--digestfile`: the manifest digest the registry holds, as podman writes it.
pub fn write_digestfile(path: &Path, digest: &Digest) -> Result<()> {
    write(path, digest.to_string().as_bytes())
}

/// `--metadata-file`: the JSON object buildx writes for an image export, its keys
/// in Go's (sorted) order, indented by two spaces.
pub fn write_metadata_file(path: &Path, outcome: &BuildOutcome) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(&metadata(outcome)).context("serialising the build metadata")?;
    write(path, &bytes)
}

fn metadata(outcome: &BuildOutcome) -> Value {
    let m = &outcome.manifest;
    let mut out = Map::new();
    out.insert("containerimage.config.digest".into(), json!(outcome.image_id.to_string()));
    out.insert(
        "containerimage.descriptor".into(),
        json!({"mediaType": m.media_type().to_string(), "digest": m.digest().to_string(), "size": m.size()}),
    );
    out.insert("containerimage.digest".into(), json!(m.digest().to_string()));
    if !outcome.names.is_empty() {
        out.insert("image.name".into(), json!(outcome.names.join(",")));
    }
    Value::Object(out)
}

/// Removes what an earlier build left at `path`, before this one starts.
pub fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", path.display())),
        _ => Ok(()),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    durable::replace(path, bytes, Mode::Umask).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_take_the_last_value_and_a_bare_name_is_empty() {
        let l = parse_labels(&strings(&["a=1", "b", "a=2=3"])).unwrap();
        assert_eq!(l, BTreeMap::from([("a".into(), "2=3".into()), ("b".into(), String::new())]));
        assert!(parse_labels(&strings(&["=x"])).is_err());
    }

    #[test]
    fn annotations_default_to_the_manifest_and_keep_colons_in_values() {
        let a = parse_annotations(&strings(&["org.opencontainers.image.source=https://x/y", "manifest:k=v", "A:b=c"])).unwrap();
        assert_eq!(
            a,
            BTreeMap::from([
                ("org.opencontainers.image.source".into(), "https://x/y".into()),
                ("k".into(), "v".into()),
                ("A:b".into(), "c".into()),
            ])
        );
    }

    #[test]
    fn index_and_platform_annotations_are_refused_not_dropped() {
        for a in [
            "index:k=v",
            "manifest,index:k=v",
            "index-descriptor:k=v",
            "manifest-descriptor:k=v",
            "manifest[linux/amd64]:k=v",
            "bogus:k=v",
            "k",
            "manifest:=v",
        ] {
            assert!(parse_annotations(&strings(&[a])).is_err(), "{a}");
        }
    }
}
