//! strata: a daemonless, rootless container image builder.
//!
//! Layering (each arrow means "may use"; nothing else is allowed):
//! - `dockerfile`: Dockerfile text -> typed instructions; uses no other strata module.
//! - `oci`: content store, image config/manifest types, archives; uses no other module
//!   but the leaves `durable` and `platform`.
//! - `plan` -> `dockerfile`: stages, their dependencies and build order.
//! - `rootfs` -> `oci`: layer dirs, tar unpacking and diffing.
//! - `registry` -> `oci`: the OCI distribution API (pull, push, credentials).
//! - `sandbox`: namespaces, mounts, the container's pid 1; uses neither oci nor rootfs.
//! - `build` -> everything above: the only module that combines them.
//! - `cli` -> `build` (and the modules it needs for read-only commands): only it
//!   knows clap.
//! - `report`: progress output, used by `build` and `cli`.
//! - `owner`: file ownership that survives a single-id namespace (used by `rootfs`,
//!   `sandbox` and `build`; uses only `durable`).
//! - `durable`: replacing a file whole and durably (a leaf: uses nothing in strata, and
//!   every module that replaces a file does it through here).
//! - `platform`: the host's OS/architecture/variant in images' names (a leaf, used by
//!   `oci`, `registry`, `plan`, `sandbox` and `cli`).
//! - `overlay_marks`: the names overlayfs and fuse-overlayfs write on disk (a leaf,
//!   used by `rootfs` and `store`).
//!
//! Data flow of `strata build` is described in ARCHITECTURE.md.

pub mod cli;
pub mod container;
pub mod dockerfile;
pub mod durable;
pub mod engine;
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
pub mod transport;
