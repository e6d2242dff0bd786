//! Test hooks, compiled only with the `fault-injection` cargo feature (off by default).
//!
//! Every hook is an environment variable named `STRATA_TEST_*`, read here and nowhere
//! else, so `grep -rn STRATA_TEST_ src` finds them all. Without the feature each
//! function below is an inline no-op whose answer is fixed, and the variable names
//! are not in the binary: `scripts/test.sh` checks the release binary with
//! `strings target/release/strata | grep STRATA_TEST_`. The end-to-end tests that use
//! a hook need a binary built with `--features fault-injection` and fail, saying so,
//! without one (`tests/e2e/support.rs`, `require_fault_injection`).
//!
//! A leaf: uses no other strata module.

/// `STRATA_TEST_ABORT_AT=<point>`: the process SIGKILLs itself when it reaches `point`,
/// so each crash point of the crash tests is hit exactly, not by timing. The points:
/// - `start`: first thing in `main`; the e2e tests run `strata --version` with it to
///   learn whether the binary under test has the hooks (killed) or not (prints);
/// - `run`: a step's upper dir is full, nothing committed;
/// - `commit`: a blob is written and synced but not yet renamed;
/// - `index`: a new index.json is written but not yet renamed.
#[cfg(feature = "fault-injection")]
pub fn abort_if_asked(point: &str) {
    if std::env::var_os("STRATA_TEST_ABORT_AT").is_some_and(|v| v == point) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn abort_if_asked(_point: &str) {}

/// `STRATA_TEST_IGNORE_SUBIDS=1`: behave as a host without /etc/subuid and /etc/subgid
/// ranges (single-id mode), for the tests of that mode on a host that has them.
/// `Some(reason)` (for the single-id warning) when set.
#[cfg(feature = "fault-injection")]
pub fn subids_ignored() -> Option<&'static str> {
    std::env::var("STRATA_TEST_IGNORE_SUBIDS").is_ok_and(|v| v == "1").then_some("STRATA_TEST_IGNORE_SUBIDS=1")
}

/// Without the `fault-injection` feature: never.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn subids_ignored() -> Option<&'static str> {
    None
}

/// `STRATA_TEST_PAUSE_AT=<point>`: the process sleeps 1.5 s when it reaches `point`,
/// so a test can run a second process inside a window a lock must close. Points:
/// - `list-edit`: a manifest list is read and not yet written back.
#[cfg(feature = "fault-injection")]
pub fn pause_if_asked(point: &str) {
    if std::env::var_os("STRATA_TEST_PAUSE_AT").is_some_and(|v| v == point) {
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
}

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn pause_if_asked(_point: &str) {}

/// `STRATA_TEST_BINFMT_DIR=<dir>`: read binfmt_misc handlers from `dir` instead of
/// /proc/sys/fs/binfmt_misc, so a test can take the emulator away (an empty dir)
/// without the privilege to disable a handler.
#[cfg(feature = "fault-injection")]
pub fn binfmt_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("STRATA_TEST_BINFMT_DIR").map(std::path::PathBuf::from)
}

/// Without the `fault-injection` feature: the real directory.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn binfmt_dir() -> Option<std::path::PathBuf> {
    None
}
