//! Containers from images: `run` (a command in a new container, kept or removed),
//! `commit` (a container's changes as an image), `diff` (those changes listed as
//! `docker diff` lists them) and `bundle` (an OCI runtime bundle for runc or crun). Their records on disk are the store's (`store::Containers`).

mod bundle;
mod commit;
mod diff;
mod run;

pub use bundle::{bundle, write_bundle, BundleProcess};
pub use commit::{apply_changes, commit, commit_layer, shell_words, CommitRequest};
pub use diff::{container_changes, container_sizes};
pub use run::{remove, run, RunRequest};
