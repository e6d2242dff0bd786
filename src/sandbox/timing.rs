//! `STRATA_TRACE`'s figures for a RUN, which happens in other processes: the
//! sandbox helper notes when pid 1's setup pipe closed (the command's exec) and
//! when pid 1 was reaped, on the system-wide monotonic clock, and leaves both in
//! its scratch dir; the builder, which noted when it started the helper and when
//! the helper ended, splits the RUN into sandbox start, command and teardown.
//! Nothing is noted or written when tracing is off.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::trace::{self, Phase};

/// The file in the run's scratch dir: `EXEC_NS END_NS`.
const FILE: &str = "timing";

/// In the helper (single-threaded): when the command exec'd, when pid 1 ended.
static EXEC: AtomicU64 = AtomicU64::new(0);
static END: AtomicU64 = AtomicU64::new(0);

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the host
/// (strata makes no time namespace).
fn now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The helper: the command has exec'd (pid 1's setup pipe closed without an error).
pub(super) fn exec_started() {
    if trace::enabled() {
        EXEC.store(now(), Relaxed);
    }
}

/// The helper: pid 1 was reaped.
pub(super) fn pid1_ended() {
    if trace::enabled() {
        END.store(now(), Relaxed);
    }
}

/// The helper, before it exits: leaves what it noted for the builder.
pub(super) fn save(scratch: &Path) {
    let (exec, end) = (EXEC.load(Relaxed), END.load(Relaxed));
    if trace::enabled() && exec != 0 && end != 0 {
        let _ = std::fs::write(scratch.join(FILE), format!("{exec} {end}"));
    }
}

/// The builder: when it started the helper, if tracing.
pub(super) fn started() -> Option<u64> {
    trace::enabled().then(now)
}

/// The builder, once the helper ended: adds the RUN's phases to the step. Without
/// the helper's notes (setup failed) the whole run counts as sandbox start.
pub(super) fn report(started: Option<u64>, scratch: &Path) {
    let Some(t0) = started else { return };
    let t3 = now();
    let noted = std::fs::read_to_string(scratch.join(FILE)).ok().and_then(|s| {
        let _ = std::fs::remove_file(scratch.join(FILE));
        let (a, b) = s.trim().split_once(' ')?;
        Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
    });
    let ns = |a: u64, b: u64| Duration::from_nanos(b.saturating_sub(a));
    match noted {
        Some((exec, end)) if t0 <= exec && exec <= end && end <= t3 => {
            trace::add(Phase::Sandbox, ns(t0, exec));
            trace::add(Phase::Command, ns(exec, end));
            trace::add(Phase::Teardown, ns(end, t3));
        }
        _ => trace::add(Phase::Sandbox, ns(t0, t3)),
    }
}
