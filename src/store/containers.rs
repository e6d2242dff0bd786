//! Containers that outlive `strata run`: their records and the dirs of their
//! writable layers. Running and committing them is `container`'s job.
//!
//! A container is a directory `containers/<id>/` in the store holding its record
//! (`container.json`, rewritten whole through `durable`) and the overlay dirs of its
//! writable layer (`upper`, `work`, `merged`). Names are claimed with a symlink
//! `containers/names/<name> -> <id>`: symlink(2) fails when the name exists, so two
//! `run --name x` at once cannot both get it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::durable::{self, Mode};
use crate::oci::{self, Digest};

/// What a container is doing, as `ps` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ContainerState {
    /// `pid` is the `strata run` process that owns the container.
    Running {
        pid: u32,
    },
    Exited {
        code: i32,
        finished: String,
    },
}

/// One container's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits, as docker's ids.
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The image's id (config digest) and manifest, so the container still has its
    /// layers after the name was moved or removed.
    pub image_id: String,
    pub manifest: oci::Descriptor,
    pub command: Vec<String>,
    pub created: String,
    #[serde(flatten)]
    pub state: ContainerState,
}

impl ContainerRecord {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// Running for real: the owning process still exists (a killed `strata run`
    /// leaves a record that says running, and it is not).
    pub fn is_running(&self) -> bool {
        match self.state {
            ContainerState::Running { pid } => Path::new("/proc").join(pid.to_string()).exists(),
            ContainerState::Exited { .. } => false,
        }
    }

    pub fn created_time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.created).ok().map(|t| t.with_timezone(&Utc))
    }
}

/// The containers of one store.
pub struct Containers {
    dir: PathBuf,
}

impl Containers {
    pub fn open(root: &Path) -> Containers {
        Containers { dir: root.join("containers") }
    }

    /// The directory of container `id`: its record and its writable layer.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Makes a new container for `image`, claiming `name` (or a generated one).
    pub fn create(
        &self,
        name: Option<&str>,
        image: &str,
        manifest: &oci::Descriptor,
        image_id: &Digest,
        command: &[String],
    ) -> Result<ContainerRecord> {
        let names = self.dir.join("names");
        fs::create_dir_all(&names).with_context(|| format!("creating {}", names.display()))?;
        let id = random_id()?;
        let name = match name {
            Some(n) => {
                check_name(n)?;
                n.to_string()
            }
            None => generated_name(&id),
        };
        std::os::unix::fs::symlink(&id, names.join(&name)).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                let holder = fs::read_link(names.join(&name)).map(|p| p.display().to_string()).unwrap_or_default();
                anyhow::anyhow!("the container name {name:?} is already in use by container {holder:?}: remove it (strata rm {name}) or choose another name")
            }
            _ => anyhow::Error::new(e).context(format!("claiming the name {name:?}")),
        })?;
        let record = ContainerRecord {
            id: id.clone(),
            name,
            image: image.to_string(),
            image_id: image_id.to_string(),
            manifest: manifest.clone(),
            command: command.to_vec(),
            created: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            state: ContainerState::Running { pid: std::process::id() },
        };
        let dir = self.dir_of(&id);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.save(&record)?;
        Ok(record)
    }

    /// Rewrites a container's record atomically.
    pub fn save(&self, record: &ContainerRecord) -> Result<()> {
        let path = self.dir_of(&record.id).join("container.json");
        let bytes = serde_json::to_vec_pretty(record)?;
        durable::replace(&path, &bytes, Mode::Umask).with_context(|| format!("writing {}", path.display()))
    }

    /// Every container, newest first; a directory without a readable record (a
    /// create cut short) is skipped.
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.dir.display())),
        };
        for e in entries.flatten() {
            let path = e.path().join("container.json");
            if let Ok(bytes) = fs::read(&path) {
                if let Ok(r) = serde_json::from_slice::<ContainerRecord>(&bytes) {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// A container by name, full id or unique id prefix.
    pub fn find(&self, reference: &str) -> Result<ContainerRecord> {
        let all = self.list()?;
        if let Some(r) = all.iter().find(|r| r.name == reference || r.id == reference) {
            return Ok(r.clone());
        }
        let hits: Vec<&ContainerRecord> = all.iter().filter(|r| !reference.is_empty() && r.id.starts_with(reference)).collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => bail!("no such container: {reference}"),
            _ => bail!(
                "container id prefix {reference:?} is ambiguous: matches {}",
                hits.iter().map(|r| r.short_id()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Removes a container's directory and name. The caller is inside strata's
    /// namespace: the writable layer holds files of mapped ids.
    pub fn remove(&self, record: &ContainerRecord) -> Result<()> {
        let dir = self.dir_of(&record.id);
        // The record goes first: a half-removed container is no longer listed.
        let _ = fs::remove_file(dir.join("container.json"));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let link = self.dir.join("names").join(&record.name);
        if fs::read_link(&link).is_ok_and(|to| to == Path::new(&record.id)) {
            let _ = fs::remove_file(&link);
        }
        Ok(())
    }

    /// Image ids that some container still stands on, each with that container's
    /// name (rmi refuses to remove them without -f).
    pub fn images_in_use(&self) -> Result<Vec<(Digest, String)>> {
        Ok(self.list()?.into_iter().filter_map(|r| Digest::parse(&r.image_id).ok().map(|d| (d, r.name))).collect())
    }
}

/// Docker's rule for container names.
fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok_first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok_first || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        bail!("invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
    }
    Ok(())
}

fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A docker-style `adjective_noun` name picked by the id's first bytes.
fn generated_name(id: &str) -> String {
    const ADJECTIVES: [&str; 16] = [
        "brave", "calm", "eager", "fervent", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nifty", "quirky", "sharp", "tender",
        "vibrant", "zealous",
    ];
    const NAMES: [&str; 16] = [
        "babbage", "curie", "dijkstra", "euler", "fermi", "galois", "hopper", "knuth", "lovelace", "noether", "pascal", "ritchie",
        "shannon", "thompson", "turing", "wozniak",
    ];
    let byte = |i: usize| usize::from_str_radix(&id[i..i + 2], 16).unwrap_or(0);
    format!("{}_{}_{}", ADJECTIVES[byte(0) % 16], NAMES[byte(2) % 16], &id[4..8])
}
