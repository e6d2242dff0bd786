//! Passing signals down the process chain of `strata run`: strata -> the sandbox
//! helper -> the container's pid 1 (which hands them to the command).
//!
//! Without this, the helper and the builder die of a Ctrl-C or SIGTERM themselves and
//! the container is SIGKILLed behind them: a command's own SIGINT or SIGTERM handler
//! never gets to run. docker's `run` proxies signals the same way (`--sig-proxy`).

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Signals a user sends to stop or poke a foreground container.
pub const PROXIED: [Signal; 6] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// Where the handler sends what it catches; 0 while nobody is there.
static TARGET: AtomicI32 = AtomicI32::new(0);

extern "C" fn pass_on(sig: libc::c_int) {
    let pid = TARGET.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes plain integers.
        unsafe { libc::kill(pid, sig) };
    }
}

/// From now on, [`PROXIED`] signals sent to this process go to `pid` instead. Signals
/// this process already ignored (a background job's SIGINT) stay ignored.
pub fn forward_to(pid: i32) {
    TARGET.store(pid, Ordering::SeqCst);
    let action = SigAction::new(SigHandler::Handler(pass_on), SaFlags::SA_RESTART, SigSet::empty());
    for sig in PROXIED {
        // SAFETY: the handler only reads an atomic and calls kill(2).
        let previous = unsafe { sigaction(sig, &action) };
        if let Ok(old) = previous {
            if old.handler() == SigHandler::SigIgn {
                // SAFETY: restoring the disposition we found.
                let _ = unsafe { sigaction(sig, &old) };
            }
        }
    }
}

/// Stops forwarding: the target is gone, and its pid may soon name another process.
pub fn stop() {
    TARGET.store(0, Ordering::SeqCst);
}
