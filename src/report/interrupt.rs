//! A build stopped by SIGINT, SIGTERM or SIGHUP says where it stopped.
//!
//! The builder is the process that knows the step (in the rootless case a forked
//! child, to which the waiting parent passes these signals on; a Ctrl-C reaches both,
//! so the builder may get it twice). Its handler only writes the signal's number to
//! a pipe; a thread reads it, prints one line, where the build stopped and that
//! nothing was tagged, and exits with 128 + the signal, as dying of it would have.
//! The handler stays installed until then, so a second signal changes nothing. A
//! RUN's sandbox helper dies with the builder (its parent-death signal).
//!
//! Tags are written in one index update: an interrupt that comes while they are
//! written waits for it and then says the image is tagged (see `Phase`).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::steps::{interrupt_message, Phase, Steps};

/// The signals that stop a build.
const STOPPING: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The pipe's write end the handler reports to; -1 until [`watch`] ran.
static WAKE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WAKE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is one byte on our stack.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// From now on the stopping signals end the process through [`stop`]. A signal
/// ignored since strata started (a `cmd &` of a non-interactive shell) stays ignored.
pub(super) fn watch(steps: Arc<Mutex<Steps>>) -> io::Result<()> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // The write end lives as long as the process: the handler may use it any time.
    WAKE.store(write.into_raw_fd(), Ordering::SeqCst);
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in STOPPING {
        // SAFETY: the handler only reads an atomic and calls write(2).
        let old = unsafe { sigaction(sig, &action) }.map_err(io::Error::from)?;
        if old.handler() == SigHandler::SigIgn {
            // SAFETY: restoring the disposition we found.
            unsafe { sigaction(sig, &old) }.map_err(io::Error::from)?;
        }
    }
    std::thread::Builder::new().name("interrupts".into()).spawn(move || {
        let mut pipe = File::from(read);
        let mut byte = [0u8; 1];
        loop {
            match pipe.read(&mut byte) {
                Ok(1) => stop(&steps, i32::from(byte[0])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => return,
            }
        }
    })?;
    Ok(())
}

/// Ends the build on signal `sig`, unless the tags are being written: then it is
/// noted, and [`tagged`] ends it once they are.
fn stop(steps: &Mutex<Steps>, sig: i32) {
    let mut s = steps.lock().unwrap_or_else(|e| e.into_inner());
    if let Phase::Tagging { pending } = &mut s.phase {
        pending.get_or_insert(sig);
        return;
    }
    // The lock stays held: the build cannot start tagging behind this message.
    eprintln!("{}", interrupt_message(&signal_name(sig), s.where_now().as_deref(), s.phase));
    std::process::exit(128 + sig);
}

/// The tags are written (`ok`), or failed to be and none was: an interrupt that
/// waited for them ends the process now.
pub(super) fn tagged(steps: &Mutex<Steps>, ok: bool) {
    let mut s = steps.lock().unwrap_or_else(|e| e.into_inner());
    let pending = match s.phase {
        Phase::Tagging { pending } => pending,
        _ => None,
    };
    s.phase = if ok { Phase::Done } else { Phase::Building };
    if let Some(sig) = pending {
        eprintln!("{}", interrupt_message(&signal_name(sig), s.where_now().as_deref(), s.phase));
        std::process::exit(128 + sig);
    }
}

fn signal_name(sig: i32) -> String {
    Signal::try_from(sig).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {sig}"))
}
