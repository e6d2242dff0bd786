//! The image config JSON and manifest assembly.
//!
//! We own the config type instead of using oci-spec's because oci-spec drops Docker's
//! `Healthcheck`, `Shell` and `OnBuild` and every unknown field: building FROM an image
//! would then silently lose its HEALTHCHECK. Every object level here carries a flattened
//! `extra` map so fields we do not model survive a read-modify-write unchanged.
//!
//! Manifests, indexes and descriptors do use oci-spec's types: they round-trip the fields
//! the spec defines, and nothing we care about lives outside the spec there.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{DiffId, Digest, OciError};
use crate::platform::Platform;

/// OCI image manifest media type.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Gzip-compressed OCI layer media type (the only layer type we write).
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// An OCI layer compressed with zstd.
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// An uncompressed OCI layer.
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker schema 2 manifest, accepted on import.
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list, accepted on import like an OCI index.
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 2's name for an image config (the same JSON as OCI's).
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// A gzip-compressed layer in Docker schema 2.
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// An uncompressed layer in Docker schema 2.
pub const MEDIA_TYPE_DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// The annotation that names a manifest inside an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The image config (`application/vnd.oci.image.config.v1+json`, which Docker shares).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time, kept as text so a round trip is byte-faithful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields we do not model (`os.version`, `container_config`, `docker_version`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The runtime defaults of an image (Docker's `config` object, PascalCase keys).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Keys like `80/tcp`; values are always `{}` but kept as JSON to stay lossless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Keys are paths; values are always `{}` as for `ExposedPorts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, rename = "OnBuild", skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ContainerConfig {
    /// Adds `port` (e.g. `8080/tcp`) to `ExposedPorts`.
    pub fn expose_port(&mut self, port: &str) {
        self.exposed_ports.get_or_insert_with(BTreeMap::new).insert(port.to_string(), Value::Object(Map::new()));
    }

    /// Adds `path` to `Volumes`.
    pub fn add_volume(&mut self, path: &str) {
        self.volumes.get_or_insert_with(BTreeMap::new).insert(path.to_string(), Value::Object(Map::new()));
    }
}

/// Docker's HEALTHCHECK settings; durations are nanoseconds as Docker stores them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `rootfs`: the ordered diff ids of the image's layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers` in practice.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<DiffId>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs { kind: "layers".to_string(), diff_ids: Vec::new(), extra: Map::new() }
    }
}

/// One `history` entry; `empty_layer` marks steps that produced no layer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageConfig {
    /// An empty config for the platform we run on (what `FROM scratch` starts from).
    pub fn for_host() -> Self {
        let host = Platform::host();
        ImageConfig { architecture: host.architecture, os: host.os, variant: host.variant, ..Default::default() }
    }

    /// The creation time, if present and valid RFC 3339.
    pub fn created_time(&self) -> Option<DateTime<Utc>> {
        let text = self.created.as_deref()?;
        DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
    }

    /// Sets `created` in the RFC 3339 form Docker writes (UTC, `Z`, nanoseconds trimmed).
    pub fn set_created(&mut self, when: DateTime<Utc>) {
        self.created = Some(format_time(when));
    }
}

/// The manifest `index` lists for the platform we run on. Only os and architecture
/// are compared, as pulls and imports always have: an index rarely lists variants of
/// one architecture, and then the first is taken.
pub fn host_manifest(index: &ImageIndex) -> Option<&Descriptor> {
    let host = Platform::host();
    index.manifests().iter().find(|d| platform_of(d).is_some_and(|p| host.matches(&p)))
}

/// The platform an index entry names, normalised; `None` when it names none.
pub fn platform_of(desc: &Descriptor) -> Option<Platform> {
    let p = desc.platform().as_ref()?;
    Some(Platform::new(&p.os().to_string(), &p.architecture().to_string(), p.variant().as_deref()))
}

/// Formats a timestamp the way Docker and buildah write `created`.
pub fn format_time(when: DateTime<Utc>) -> String {
    when.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A reader of a layer's uncompressed tar, chosen by the layer's media type (OCI
/// or docker, gzip, zstd or plain); `digest` names the layer in errors.
pub fn layer_decoder<'a, R: std::io::BufRead + 'a>(
    media_type: &str,
    digest: &Digest,
    reader: R,
) -> Result<Box<dyn std::io::Read + 'a>, OciError> {
    const GZIP: [&str; 2] = [MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_DOCKER_LAYER_GZIP];
    const PLAIN: [&str; 2] = [MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_DOCKER_LAYER_TAR];
    if GZIP.contains(&media_type) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else if media_type == MEDIA_TYPE_LAYER_ZSTD {
        let decoder = zstd::stream::read::Decoder::with_buffer(reader).map_err(|source| OciError::Io {
            op: "start zstd for layer",
            path: std::path::PathBuf::from(digest.to_string()),
            source,
        })?;
        Ok(Box::new(decoder))
    } else if PLAIN.contains(&media_type) {
        Ok(Box::new(reader))
    } else {
        Err(OciError::UnsupportedMediaType { digest: digest.clone(), media_type: media_type.to_string() })
    }
}

/// A descriptor with just media type, digest and size.
pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor::new(MediaType::from(media_type), size, digest.to_oci())
}

/// Our validated digest of a descriptor (oci-spec accepts algorithms we do not).
pub fn descriptor_digest(desc: &Descriptor) -> Result<Digest, OciError> {
    Digest::try_from(desc.digest())
}

/// Assembles an OCI manifest from a config descriptor and layer descriptors (base first).
pub fn build_manifest(config: &Descriptor, layers: &[Descriptor]) -> ImageManifest {
    manifest_of(MediaType::ImageManifest, config.clone(), layers.to_vec())
}

fn manifest_of(media_type: MediaType, config: Descriptor, layers: Vec<Descriptor>) -> ImageManifest {
    ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(media_type)
        .config(config)
        .layers(layers)
        .build()
        // Cannot fail: every required field is set above.
        .expect("manifest with all required fields")
}

/// The media types a written image uses (`build --format`, buildah's flag): OCI's,
/// or Docker schema 2's for registries and tools that take nothing else. The blobs
/// are the same bytes either way; only the names in the manifest differ, so the
/// image id (the config digest) is the same too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ManifestFormat {
    #[default]
    Oci,
    Docker,
}

impl ManifestFormat {
    /// `oci` or `docker`, as buildah names them.
    pub fn from_name(name: &str) -> Option<ManifestFormat> {
        match name {
            "oci" => Some(ManifestFormat::Oci),
            "docker" => Some(ManifestFormat::Docker),
            _ => None,
        }
    }

    pub fn manifest_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => MEDIA_TYPE_MANIFEST,
            ManifestFormat::Docker => MEDIA_TYPE_DOCKER_MANIFEST,
        }
    }

    pub fn config_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => MEDIA_TYPE_CONFIG,
            ManifestFormat::Docker => MEDIA_TYPE_DOCKER_CONFIG,
        }
    }

    /// The name this format gives a layer of type `media_type`: Docker's gzip and tar
    /// layers by their OCI names and back. An OCI manifest keeps a type it has no
    /// rename for as it was; `None` when Docker's has no name for it (zstd).
    pub fn layer_type(self, media_type: &str) -> Option<&str> {
        let gzip = [MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_DOCKER_LAYER_GZIP].contains(&media_type);
        let plain = [MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_DOCKER_LAYER_TAR].contains(&media_type);
        match (self, gzip, plain) {
            (ManifestFormat::Oci, true, _) => Some(MEDIA_TYPE_LAYER_GZIP),
            (ManifestFormat::Oci, _, true) => Some(MEDIA_TYPE_LAYER_TAR),
            (ManifestFormat::Oci, ..) => Some(media_type),
            (ManifestFormat::Docker, true, _) => Some(MEDIA_TYPE_DOCKER_LAYER_GZIP),
            (ManifestFormat::Docker, _, true) => Some(MEDIA_TYPE_DOCKER_LAYER_TAR),
            (ManifestFormat::Docker, ..) => None,
        }
    }

    /// A manifest of this format over `config` and `layers` (base first), each
    /// descriptor renamed to the format's media type.
    pub fn manifest(self, config: &Descriptor, layers: &[Descriptor]) -> Result<ImageManifest, OciError> {
        let mut config = config.clone();
        config.set_media_type(MediaType::from(self.config_type()));
        let layers = layers
            .iter()
            .map(|l| {
                let found = l.media_type().to_string();
                let Some(wanted) = self.layer_type(&found) else {
                    return Err(OciError::UnsupportedMediaType {
                        digest: descriptor_digest(l)?,
                        media_type: format!("{found} (the {} image format has no name for it)", self.name()),
                    });
                };
                let mut layer = l.clone();
                if wanted != found {
                    layer.set_media_type(MediaType::from(wanted));
                }
                Ok(layer)
            })
            .collect::<Result<Vec<_>, OciError>>()?;
        let media_type = match self {
            ManifestFormat::Oci => MediaType::ImageManifest,
            ManifestFormat::Docker => MediaType::from(MEDIA_TYPE_DOCKER_MANIFEST),
        };
        Ok(manifest_of(media_type, config, layers))
    }

    pub fn name(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "oci",
            ManifestFormat::Docker => "docker",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_we_do_not_model_survive_a_round_trip() {
        // Found by fuzz/oci: without serde_json's float_roundtrip, a large number in
        // an unknown field was read as a neighbouring float, so building FROM the
        // image rewrote the base image's config.
        let big = "1044444444444444444444444444444444444444444444444444440";
        let text = format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"x":{big},"y":0.1e-310}}"#);
        let config: ImageConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(config.extra["x"].as_f64(), Some(big.parse::<f64>().unwrap()));
        let again: ImageConfig = serde_json::from_slice(&serde_json::to_vec(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    fn sample() -> Value {
        json!({
            "created": "2024-05-01T12:34:56.123456789Z",
            "author": "someone",
            "architecture": "amd64",
            "os": "linux",
            "os.version": "1.0",
            "docker_version": "24.0.0",
            "config": {
                "User": "app",
                "ExposedPorts": {"80/tcp": {}},
                "Env": ["PATH=/usr/bin"],
                "Entrypoint": ["/bin/sh", "-c"],
                "Cmd": ["echo hi"],
                "Volumes": {"/data": {}},
                "WorkingDir": "/app",
                "Labels": {"a": "b"},
                "StopSignal": "SIGTERM",
                "ArgsEscaped": true,
                "Healthcheck": {
                    "Test": ["CMD-SHELL", "curl -f localhost"],
                    "Interval": 30000000000i64,
                    "Timeout": 5000000000i64,
                    "StartPeriod": 1000000000,
                    "StartInterval": 2000000000,
                    "Retries": 3,
                    "FutureHealthField": 1
                },
                "Shell": ["/bin/bash", "-c"],
                "OnBuild": ["RUN echo child"],
                "Domainname": "",
                "Unknown": {"nested": [1, 2]}
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
                "rootfs_extra": true
            },
            "history": [
                {"created": "2024-05-01T12:34:56Z", "created_by": "/bin/sh -c #(nop) ADD file", "comment": "c"},
                {"created_by": "ENV A=b", "empty_layer": true, "author": "x", "history_extra": "y"}
            ],
            "container_config": {"Hostname": "abc"}
        })
    }

    #[test]
    fn config_round_trips_docker_extensions_and_unknown_fields() {
        let value = sample();
        let cfg: ImageConfig = serde_json::from_value(value.clone()).unwrap();
        let c = cfg.config.as_ref().unwrap();
        let hc = c.healthcheck.as_ref().unwrap();
        assert_eq!(hc.retries, Some(3));
        assert_eq!(hc.interval, Some(30_000_000_000));
        assert_eq!(c.shell.as_deref().unwrap(), ["/bin/bash", "-c"]);
        assert_eq!(c.on_build.as_deref().unwrap(), ["RUN echo child"]);
        assert_eq!(cfg.extra["docker_version"], "24.0.0");
        assert_eq!(cfg.rootfs.diff_ids.len(), 1);
        assert!(cfg.history[1].empty_layer);
        let back = serde_json::to_value(&cfg).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn empty_fields_are_omitted() {
        let cfg = ImageConfig { config: Some(ContainerConfig::default()), history: vec![History::default()], ..ImageConfig::for_host() };
        let v = serde_json::to_value(&cfg).unwrap();
        assert_eq!(v["config"], json!({}));
        assert_eq!(v["history"], json!([{}]));
        assert_eq!(v["rootfs"], json!({"type": "layers", "diff_ids": []}));
        assert!(v.get("created").is_none());
        assert!(v.get("author").is_none());
        assert_eq!(v["os"], "linux");
    }

    #[test]
    fn created_time_round_trips() {
        let mut cfg = ImageConfig::default();
        let t = DateTime::parse_from_rfc3339("2020-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        cfg.set_created(t);
        assert_eq!(cfg.created.as_deref(), Some("2020-01-02T03:04:05Z"));
        assert_eq!(cfg.created_time(), Some(t));
    }

    #[test]
    fn helpers_add_ports_and_volumes() {
        let mut c = ContainerConfig::default();
        c.expose_port("80/tcp");
        c.add_volume("/data");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v, json!({"ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}}));
    }

    #[test]
    fn manifest_has_oci_media_types() {
        let cfg = descriptor(MEDIA_TYPE_CONFIG, &Digest::of_bytes(b"{}"), 2);
        let layer = descriptor(MEDIA_TYPE_LAYER_GZIP, &Digest::of_bytes(b"l"), 1);
        let m = build_manifest(&cfg, &[layer]);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], MEDIA_TYPE_MANIFEST);
        assert_eq!(v["config"]["mediaType"], MEDIA_TYPE_CONFIG);
        assert_eq!(v["layers"][0]["mediaType"], MEDIA_TYPE_LAYER_GZIP);
        assert_eq!(v["layers"][0]["size"], 1);
        assert_eq!(descriptor_digest(&m.layers()[0]).unwrap(), Digest::of_bytes(b"l"));
    }

    #[test]
    fn docker_format_renames_every_media_type_and_oci_renames_docker_layers_back() {
        let cfg = descriptor(MEDIA_TYPE_CONFIG, &Digest::of_bytes(b"{}"), 2);
        let gzip = descriptor(MEDIA_TYPE_LAYER_GZIP, &Digest::of_bytes(b"g"), 1);
        let plain = descriptor(MEDIA_TYPE_LAYER_TAR, &Digest::of_bytes(b"p"), 1);
        let m = ManifestFormat::Docker.manifest(&cfg, &[gzip, plain]).unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["mediaType"], MEDIA_TYPE_DOCKER_MANIFEST);
        assert_eq!(v["config"]["mediaType"], MEDIA_TYPE_DOCKER_CONFIG);
        assert_eq!(v["layers"][0]["mediaType"], MEDIA_TYPE_DOCKER_LAYER_GZIP);
        assert_eq!(v["layers"][1]["mediaType"], MEDIA_TYPE_DOCKER_LAYER_TAR);
        assert_eq!(v["config"]["digest"], Digest::of_bytes(b"{}").to_string(), "the same config blob");
        let back = ManifestFormat::Oci.manifest(m.config(), m.layers()).unwrap();
        assert_eq!(
            back,
            build_manifest(
                &cfg,
                &[
                    descriptor(MEDIA_TYPE_LAYER_GZIP, &Digest::of_bytes(b"g"), 1),
                    descriptor(MEDIA_TYPE_LAYER_TAR, &Digest::of_bytes(b"p"), 1)
                ]
            )
        );
    }

    #[test]
    fn docker_format_refuses_what_it_cannot_name_and_oci_keeps_it() {
        let cfg = descriptor(MEDIA_TYPE_CONFIG, &Digest::of_bytes(b"{}"), 2);
        let zstd = descriptor(MEDIA_TYPE_LAYER_ZSTD, &Digest::of_bytes(b"z"), 1);
        let err = ManifestFormat::Docker.manifest(&cfg, std::slice::from_ref(&zstd)).unwrap_err().to_string();
        assert!(err.contains(MEDIA_TYPE_LAYER_ZSTD) && err.contains("docker"), "{err}");
        let odd = descriptor("application/x-odd", &Digest::of_bytes(b"o"), 1);
        let m = ManifestFormat::Oci.manifest(&cfg, &[zstd, odd]).unwrap();
        assert_eq!(m.layers()[0].media_type().to_string(), MEDIA_TYPE_LAYER_ZSTD);
        assert_eq!(m.layers()[1].media_type().to_string(), "application/x-odd");
        assert_eq!(ManifestFormat::from_name("docker"), Some(ManifestFormat::Docker));
        assert_eq!(ManifestFormat::from_name("v2s2"), None);
    }
}
