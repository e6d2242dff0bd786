//! Read-only and index-only image commands: images, inspect, rmi, tag.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Args;

use super::format::{ago, fit, human_size};
use crate::oci::{self, ImageName, ImageSummary, Store};
use crate::platform::Platform;
use crate::store::{remove_image, Containers, Removal};

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print only image ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show full image ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: table (default) or json.
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct FsckArgs {}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Image name or id.
    pub image: String,
    /// Do not truncate the CREATED BY column.
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image names or ids.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Of a manifest list, show this platform's image (os/arch[/variant]); without
    /// it a manifest list is shown as the index it is.
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub platform: Option<Platform>,
}

/// clap's parser for one `--platform` value.
pub(crate) fn parse_platform(text: &str) -> Result<Platform, String> {
    Platform::parse(text)
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove an image given by id even when several names refer to it (all of
    /// them go), and even when a container uses it (the container keeps its layers).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Image names or ids.
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: Vec<String>,
}

pub fn images(store: &Store, args: ImagesArgs) -> Result<ExitCode> {
    let listing = store.list()?;
    for (name, error) in &listing.unreadable {
        eprintln!("strata: warning: skipping image {name}: {error}");
    }
    let list = listing.images;
    if args.format == "json" {
        let sizes = content_sizes(store, &list);
        let rows: Vec<serde_json::Value> = list
            .iter()
            .zip(&sizes)
            .map(|(img, (size, shared))| {
                serde_json::json!({
                    "Id": img.id.hex(),
                    "Digest": img.manifest.to_string(),
                    "Names": img.name.iter().collect::<Vec<_>>(),
                    "Created": img.created.map(|c| c.to_rfc3339()),
                    "Size": size,
                    "SharedSize": shared,
                    "UniqueSize": size - shared,
                    "StoredSize": img.size,
                    "ManifestList": !img.platforms.is_empty(),
                    "Platforms": img.platforms,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if args.quiet {
        let mut seen = Vec::new();
        for img in &list {
            let id = if args.no_trunc { img.id.hex().to_string() } else { img.id.short().to_string() };
            if !seen.contains(&id) {
                println!("{id}");
                seen.push(id);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Not for -q above: counting a layer the first time streams it.
    let sizes = content_sizes(store, &list);
    let mut rows = vec![["REPOSITORY".to_string(), "TAG".into(), "IMAGE ID".into(), "CREATED".into(), "SIZE".into(), "SHARED".into()]];
    for (img, (size, shared)) in list.iter().zip(&sizes) {
        let (repo, tag) = match img.name.as_deref().map(ImageName::parse) {
            Some(Ok(n)) => (n.repository(), n.tag().unwrap_or("<none>").to_string()),
            _ => ("<none>".to_string(), "<none>".to_string()),
        };
        let id = if args.no_trunc { img.id.to_string() } else { img.id.short().to_string() };
        let created = img.created.map(|c| ago(Utc::now().signed_duration_since(c))).unwrap_or_else(|| "unknown".into());
        let shared = match img.platforms.len() {
            0 => human_size(*shared),
            n => format!("{} (manifest list: {n} platforms: {})", human_size(*shared), img.platforms.join(", ")),
        };
        rows.push([repo, tag, id, created, human_size(*size), shared]);
    }
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    for r in rows {
        let line: Vec<String> =
            r.iter().enumerate().map(|(i, c)| if i < 5 { format!("{c:<w$}", w = widths[i]) } else { c.clone() }).collect();
        println!("{}", line.join("  "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a JSON array with one document per image, as docker and podman do: the
/// image config as stored, with the image id, the manifest digest and the manifest
/// beside it (upper-case keys, as docker and podman name them, so they cannot
/// collide with the config's own lower-case fields). Images not found are reported
/// on stderr after the others are printed, and make the exit status 1.
pub fn inspect(store: &Store, args: InspectArgs) -> Result<ExitCode> {
    let mut docs = Vec::new();
    let mut missing = Vec::new();
    for reference in &args.images {
        let Some(found) = store.resolve(reference)? else {
            missing.push(reference);
            continue;
        };
        if oci::is_index_descriptor(&found) && args.platform.is_none() {
            docs.push(index_document(store, &found)?);
            continue;
        }
        let manifest = store.select_manifest(&found, args.platform.as_ref())?;
        let m = store.read_manifest(&oci::descriptor_digest(&manifest)?)?;
        let config_digest = oci::descriptor_digest(m.config())?;
        let config = store.read_config(&config_digest)?;
        let mut value = serde_json::to_value(&config)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("Id".into(), serde_json::Value::String(config_digest.hex().to_string()));
            obj.insert("Digest".into(), serde_json::Value::String(manifest.digest().to_string()));
            obj.insert("Manifest".into(), serde_json::to_value(&m)?);
        }
        docs.push(value);
    }
    println!("{}", serde_json::to_string_pretty(&docs)?);
    for reference in &missing {
        eprintln!("strata: error: image {reference:?} not found in the local store");
    }
    Ok(if missing.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// What `inspect` shows of a manifest list: its digest, media type, each
/// platform's manifest, and the index as stored.
fn index_document(store: &Store, found: &oci::Descriptor) -> Result<serde_json::Value> {
    let digest = oci::descriptor_digest(found)?;
    let index = store.read_image_index(&digest)?;
    let manifests: Vec<serde_json::Value> = store
        .index_manifests(found)?
        .iter()
        .map(|e| serde_json::json!({"Platform": e.platform.to_string(), "Digest": e.manifest.digest().to_string()}))
        .collect();
    Ok(serde_json::json!({
        "Id": digest.hex(),
        "Digest": digest.to_string(),
        "MediaType": found.media_type().to_string(),
        "ManifestList": manifests,
        "Index": index,
    }))
}

pub fn fsck(store: &Store, _args: FsckArgs) -> Result<ExitCode> {
    let report = store.fsck()?;
    for d in &report.missing {
        println!("missing blob {d}");
    }
    for c in &report.corrupt {
        println!("corrupt blob {}: content hashes to {} ({} bytes, expected {})", c.digest, c.found, c.found_size, c.expected_size);
    }
    for d in &report.invalid {
        println!("unreadable manifest or index {d}");
    }
    for t in &report.stale_temps {
        println!(
            "leftover temp file {} ({} bytes) of writer pid {}, which is gone: removed on the next open",
            t.path.display(),
            t.bytes,
            t.pid
        );
    }
    if report.is_clean() {
        println!("{}: {} blobs verified, no problems", store.root().display(), report.checked);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("strata: error: the store at {} has problems (see above)", store.root().display());
        Ok(ExitCode::from(1))
    }
}

pub fn history(store: &Store, args: HistoryArgs) -> Result<ExitCode> {
    let found = store.resolve(&args.image)?.with_context(|| format!("image {:?} not found in the local store", args.image))?;
    let manifest = store.select_manifest(&found, None)?;
    let m = store.read_manifest(&oci::descriptor_digest(&manifest)?)?;
    let config = store.read_config(&oci::descriptor_digest(m.config())?)?;
    // Content sizes, as docker shows them: a blob's own size is compressed.
    let mut sizes = m.layers().iter().map(|l| {
        store.content_size(l).unwrap_or_else(|e| {
            eprintln!("strata: warning: {e}");
            0
        })
    });
    println!("{:<28}  {:<48}  {:>10}  COMMENT", "CREATED", "CREATED BY", "SIZE");
    let mut rows = Vec::new();
    for h in &config.history {
        let size = if h.empty_layer { 0 } else { sizes.next().unwrap_or(0) };
        let created = h.created.as_deref().and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
        let created = created.map(|c| ago(Utc::now().signed_duration_since(c))).unwrap_or_default();
        let by = h.created_by.clone().unwrap_or_default();
        let by = if args.no_trunc { by.replace('\n', " ") } else { fit(&by, 48) };
        rows.push(format!("{created:<28}  {by:<48}  {:>10}  {}", human_size(size), h.comment.clone().unwrap_or_default()));
    }
    // Newest first, as docker and podman list it.
    for r in rows.iter().rev() {
        println!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes names or images (see `store::remove_image`) and says what went.
pub fn rmi(store: &Store, args: RmiArgs) -> Result<ExitCode> {
    let mut failed = false;
    let in_use = Containers::open(store.root().parent().unwrap_or(store.root())).images_in_use()?;
    for reference in &args.images {
        match remove_image(store, reference, args.force, &in_use)? {
            Removal::Untagged(names) => names.iter().for_each(|n| println!("Untagged: {n}")),
            Removal::InUse { container: user } => {
                eprintln!("strata: error: image {reference:?} is in use by container {user}: remove the container first (strata rm {user}) or use rmi -f");
                failed = true;
            }
            Removal::MultipleNames(names) => {
                eprintln!(
                    "strata: error: unable to delete {reference} (must be forced): image is referenced in multiple repositories: {}",
                    names.join(", ")
                );
                failed = true;
            }
            Removal::NotFound => {
                eprintln!("strata: error: image {reference:?} not found in the local store");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn tag(store: &Store, args: TagArgs) -> Result<ExitCode> {
    if args.target.is_empty() {
        bail!("tag needs a source image and at least one new name");
    }
    let manifest = store.resolve(&args.source)?.with_context(|| format!("image {:?} not found in the local store", args.source))?;
    let names =
        args.target.iter().map(|t| ImageName::parse_tag(t).with_context(|| format!("invalid tag {t:?}"))).collect::<Result<Vec<_>>>()?;
    let mut plain = manifest.clone();
    plain.set_annotations(None);
    store.tag_all(&names, &plain)?;
    Ok(ExitCode::SUCCESS)
}

/// Each listed image's content bytes (its layers' regular files, as docker's SIZE),
/// and how many of them are in layers another image (another id) has too.
fn content_sizes(store: &Store, list: &[ImageSummary]) -> Vec<(u64, u64)> {
    let mut size_of: HashMap<String, u64> = HashMap::new();
    let mut holders: HashMap<String, HashSet<String>> = HashMap::new();
    for img in list {
        for layer in &img.layers {
            let blob = layer.digest().to_string();
            holders.entry(blob.clone()).or_default().insert(img.id.to_string());
            size_of.entry(blob).or_insert_with(|| {
                store.content_size(layer).unwrap_or_else(|e| {
                    eprintln!("strata: warning: {e}");
                    0
                })
            });
        }
    }
    list.iter()
        .map(|img| {
            let mut seen = HashSet::new();
            let (mut total, mut shared) = (0, 0);
            for blob in img.layers.iter().map(|l| l.digest().to_string()).filter(|b| seen.insert(b.clone())) {
                total += size_of[&blob];
                if holders[&blob].len() > 1 {
                    shared += size_of[&blob];
                }
            }
            (total, shared)
        })
        .collect()
}
