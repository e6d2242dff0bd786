//! The standard streams of `strata run` without `-t`: pipes strata relays, never the
//! caller's own descriptors.
//!
//! A descriptor handed into the container can be reopened there through
//! `/proc/self/fd/N`: the caller's `> out.log` would let the command read what the file
//! held before, or truncate it, and the caller's terminal would let it push keystrokes
//! (TIOCSTI) or change its modes. So the container writes into pipes and strata copies
//! the bytes out unchanged as they come; with `-i`, strata copies its stdin into a pipe
//! and closes it at end of input, which the command sees as its own end of input.

use std::io::{self, Read, Write};
use std::thread::JoinHandle;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Where a relay copies to.
#[derive(Clone, Copy, Debug)]
pub enum Sink {
    Stdout,
    Stderr,
}

/// Copies `pipe` to our stdout or stderr byte for byte, flushing each read, until the
/// container's end of the pipe closes. If our side is gone (`strata run ... | head`),
/// the relay stops and drops the pipe, so the command gets EPIPE/SIGPIPE itself, as it
/// would have writing there directly.
pub fn relay(pipe: impl Read + Send + 'static, sink: Sink) -> JoinHandle<()> {
    std::thread::spawn(move || {
        quiet_sigpipe();
        let mut pipe = pipe;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let written = match sink {
                Sink::Stdout => {
                    let mut out = io::stdout().lock();
                    out.write_all(&buf[..n]).and_then(|()| out.flush())
                }
                Sink::Stderr => io::stderr().lock().write_all(&buf[..n]),
            };
            if written.is_err() {
                break;
            }
        }
    })
}

/// Copies our stdin into `pipe` until end of input (then closes it) or until the
/// container stops reading. Never joined: it may sit in read(2) on a terminal when the
/// container ends, and the process exit ends it.
pub fn feed(mut pipe: impl Write + Send + 'static) {
    std::thread::spawn(move || {
        quiet_sigpipe();
        let mut buf = vec![0u8; 64 * 1024];
        let mut stdin = io::stdin().lock();
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if pipe.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
}

/// strata dies of SIGPIPE (as command-line tools do); a relay thread must not: a
/// closed reader on either side ends only that relay. SIGPIPE is sent to the thread
/// that wrote, so blocking it here turns it into EPIPE for this thread alone.
fn quiet_sigpipe() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGPIPE);
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}
