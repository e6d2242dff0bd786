//! End-to-end tests: the real `strata` binary builds, exports and runs images in a
//! throw-away store, and real tools (skopeo, umoci, tar) check what it made.
//!
//! `scripts/test.sh` runs this binary as an unprivileged user with subordinate id ranges
//! and `STRATA_REQUIRE_SANDBOX=1`, so a machine that cannot sandbox fails instead of
//! skipping. Both this binary and strata are built with `--features fault-injection`:
//! the crash and single-id tests use its hooks (`STRATA_TEST_*`, through
//! `support::abort_at_env` and `support::single_id_env`) and fail, saying so, when the
//! strata under test lacks them. Environment:
//! - `STRATA_BIN`: the strata binary (default: the one cargo built with the tests);
//! - `STRATA_FIXTURES`: the fixtures directory (default: the repository's `fixtures/`);
//! - `STRATA_BUSYBOX`: the static busybox of the base image (default `/bin/busybox`);
//! - `STRATA_E2E_KEEP=1`: keep the work dir and store; `STRATA_E2E_TIMEOUT`: seconds
//!   allowed per command (default 600).
//!
//! The modules live in `tests/e2e/` (named with `#[path]`: this file is the crate root).

#[path = "e2e/acceptance.rs"]
mod acceptance;
#[path = "e2e/add_git.rs"]
mod add_git;
#[path = "e2e/cache.rs"]
mod cache;
#[path = "e2e/checks.rs"]
mod checks;
#[path = "e2e/ci_image.rs"]
mod ci_image;
#[path = "e2e/ci_output.rs"]
mod ci_output;
#[path = "e2e/ci_setups.rs"]
mod ci_setups;
#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/containers.rs"]
mod containers;
#[path = "e2e/diff.rs"]
mod diff;
#[path = "e2e/dockerfile.rs"]
mod dockerfile;
#[path = "e2e/driver_cases.rs"]
mod driver_cases;
#[path = "e2e/drivers.rs"]
mod drivers;
#[path = "e2e/escapes.rs"]
mod escapes;
#[path = "e2e/hardening.rs"]
mod hardening;
#[path = "e2e/hostile.rs"]
mod hostile;
#[path = "e2e/interop.rs"]
mod interop;
#[path = "e2e/jobs.rs"]
mod jobs;
#[path = "e2e/language.rs"]
mod language;
#[path = "e2e/language_config.rs"]
mod language_config;
#[path = "e2e/language_copy.rs"]
mod language_copy;
#[path = "e2e/language_semantics.rs"]
mod language_semantics;
#[path = "e2e/language_stages.rs"]
mod language_stages;
#[path = "e2e/layers.rs"]
mod layers;
#[path = "e2e/layout.rs"]
mod layout;
#[path = "e2e/manifests.rs"]
mod manifests;
#[path = "e2e/member_reuse.rs"]
mod member_reuse;
#[path = "e2e/mounts.rs"]
mod mounts;
#[path = "e2e/mounts_guards.rs"]
mod mounts_guards;
#[path = "e2e/mounts_secrets.rs"]
mod mounts_secrets;
#[path = "e2e/mounts_workload.rs"]
mod mounts_workload;
#[path = "e2e/named_contexts.rs"]
mod named_contexts;
#[path = "e2e/network.rs"]
mod network;
#[path = "e2e/outputs.rs"]
mod outputs;
#[path = "e2e/owners.rs"]
mod owners;
#[path = "e2e/platforms.rs"]
mod platforms;
#[path = "e2e/registry.rs"]
mod registry;
#[path = "e2e/registry_cache.rs"]
mod registry_cache;
#[path = "e2e/registry_faults.rs"]
mod registry_faults;
#[path = "e2e/registry_server.rs"]
mod registry_server;
#[path = "e2e/registry_tls.rs"]
mod registry_tls;
#[path = "e2e/reproducible.rs"]
mod reproducible;
#[path = "e2e/seccomp.rs"]
mod seccomp;
#[path = "e2e/session.rs"]
mod session;
#[path = "e2e/single_id.rs"]
mod single_id;
#[path = "e2e/stalls.rs"]
mod stalls;
#[path = "e2e/store.rs"]
mod store;
#[path = "e2e/store_safety.rs"]
mod store_safety;
#[path = "e2e/support.rs"]
mod support;
#[path = "e2e/workload.rs"]
mod workload;
