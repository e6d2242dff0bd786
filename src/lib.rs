//! strata: a daemonless, rootless container image builder.
//!
//! The library is the whole program; `main.rs` only hands its arguments to
//! [`cli::run`]. Folders own one job each, and a module uses only the ones below
//! it (ARCHITECTURE.md has the table, `tests/architecture` checks it):
//! - Leaves: [`dockerfile`] (text -> instructions), [`oci`] (image layout, configs,
//!   layer writer, archives), [`owner`] (owners that survive a single-id
//!   namespace), [`fault`] (test hooks, only with the `fault-injection` feature),
//!   [`durable`] (replacing a file whole and durably), [`platform`] (the host's
//!   OS and architecture), [`overlay_marks`] (names overlay drivers write on disk),
//!   [`clean_path`] (paths cleaned lexically, as Go's path.Clean), [`trace`]
//!   (`STRATA_TRACE`'s per-step phase times).
//! - [`registry`] (the distribution API), [`report`] (progress and warnings),
//!   [`lint`] (the build checks: BuildKit's Dockerfile lint rules) and [`analysis`]
//!   (what an image's layers add, change, remove and waste).
//! - [`plan`] (stages and their order), [`rootfs`] (layer dirs: unpack, diff, vfs),
//!   [`sandbox`] (namespaces, mounts, the container's pid 1; the only code that
//!   forks or mounts).
//! - [`store`]: the local store that was opened ([`store::LocalStore`]), its image
//!   stacks, build cache entries, container records and garbage collection.
//! - [`transport`]: images crossing the store's edge (`oci:`, archives, `dir:`,
//!   registries), for import and export alike.
//! - [`engine`]: runs a build ([`engine::build`] with an [`engine::BuildRequest`]):
//!   stages, one straight walk per step, pure step keys, RUN, COPY/ADD, metadata.
//! - [`container`]: run, commit and bundle containers from images.
//! - [`cli`]: clap types and printing only.
//!
//! docs/build-walkthrough.md follows one `strata build` from `main` to a blob on
//! disk.

pub mod analysis;
pub mod clean_path;
pub mod cli;
pub mod container;
pub mod dockerfile;
pub mod durable;
pub mod engine;
pub mod fault;
pub mod lint;
pub mod oci;
pub mod overlay_marks;
pub mod owner;
pub mod plan;
pub mod platform;
pub mod registry;
pub mod report;
pub mod rootfs;
pub mod sandbox;
pub mod store;
pub mod trace;
pub mod transport;
