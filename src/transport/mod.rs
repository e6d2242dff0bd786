//! Images crossing the store's edge: locations outside it (`oci:`, `oci-archive:`,
//! `docker-archive:`, `dir:`, `docker://`) parsed in one place (`reference`), images
//! written there or read from there (`exchange`), images found by reference, pulled
//! from a registry when the pull policy allows, and `pull` itself (`pull`), and the
//! registry's other commands: push, login and logout (`registry`); archives
//! saved from the store or loaded into it (`archive`); and `strata manifest`'s
//! lists, kept in the store and pushed with their images (`manifest_list`).

mod archive;
mod exchange;
pub mod manifest_list;
mod pull;
mod reference;
mod registry;

pub use archive::{load, load_from, Loaded, SaveFormat, SaveSource};
pub use exchange::{docker_repo_tags, export, import};
pub use pull::{find_image, pull, pull_all, Pulled};
pub use reference::Location;
pub use registry::{login, logout, push, registry_name};

use crate::registry::Credentials;
use crate::registry::TlsOptions;
use crate::report::TransferView;

/// `--pull`: when a base image comes from its registry rather than the local store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Only when the store lacks it (podman's and docker's default).
    #[default]
    Missing,
    /// Every time, so a moved tag is followed.
    Always,
    /// Never: a base the store lacks is an error.
    Never,
}

impl PullPolicy {
    /// `--pull`'s values as podman and docker spell them (`true` = always).
    pub fn from_name(name: &str) -> Option<PullPolicy> {
        match name {
            "always" | "true" => Some(PullPolicy::Always),
            "never" => Some(PullPolicy::Never),
            "missing" | "false" => Some(PullPolicy::Missing),
            _ => None,
        }
    }
}

/// How one command reaches registries: when to pull, which certificates to trust
/// (`--tls-verify`, `--cert-dir`), which credentials to use (`--creds`; None: the
/// ones stored for each registry), how transfers show progress, and which
/// platform's manifest a pull takes from an index (None: the host's).
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    pub pull: PullPolicy,
    pub tls: TlsOptions,
    pub creds: Option<Credentials>,
    pub view: TransferView,
    pub platform: Option<crate::platform::Platform>,
}
