//! The terminal of `strata run -t`: a pty whose slave side becomes the container's
//! stdin, stdout and stderr, and whose master side strata relays to its own.
//!
//! When strata's own stdin is a terminal it is put in raw mode for the duration, so
//! keys (Ctrl-C included) travel to the container's terminal and its line discipline
//! acts on them there, as with `docker run -it`. The pty starts with the size of
//! strata's terminal and follows it: on SIGWINCH (which the terminal sends strata's
//! process group when resized) the new size is set on the pty, and the kernel then
//! sends SIGWINCH to the container's foreground process group.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;

use nix::pty::{openpty, Winsize};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use super::SandboxError;

/// The master side and what runs on it.
pub struct Relay {
    master: File,
    forward_stdin: bool,
    saved: Option<Termios>,
    output: Mutex<Option<JoinHandle<()>>>,
}

impl Relay {
    /// Opens a pty and hands its slave to `cmd` as stdin, stdout and stderr.
    pub fn attach(cmd: &mut Command, forward_stdin: bool) -> Result<Relay, SandboxError> {
        let size = terminal_size();
        let pty = openpty(size.as_ref(), None).map_err(|e| SandboxError::sys("openpty", e))?;
        let slave: OwnedFd = pty.slave;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| SandboxError::io("/dev/ptmx", e));
        cmd.stdin(Stdio::from(dup(&slave)?)).stdout(Stdio::from(dup(&slave)?)).stderr(Stdio::from(slave));
        Ok(Relay { master: File::from(pty.master), forward_stdin, saved: None, output: Mutex::new(None) })
    }

    /// Starts relaying (after the helper was spawned and holds the slave).
    pub fn start(&self) {
        follow_resizes(self.master.as_raw_fd());
        if let Ok(mut out) = self.master.try_clone() {
            *self.output.lock().expect("relay lock") = Some(std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let stdout = io::stdout();
                // EIO once every slave descriptor is closed: the container is gone.
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut lock = stdout.lock();
                    if lock.write_all(&buf[..n]).and_then(|()| lock.flush()).is_err() {
                        break;
                    }
                }
            }));
        }
        if self.forward_stdin {
            if let Ok(mut input) = self.master.try_clone() {
                // Never joined: it may sit in read(2) on our stdin when the container ends.
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut stdin = io::stdin();
                    while let Ok(n) = stdin.read(&mut buf) {
                        if n == 0 || input.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        }
    }

    /// Waits for the output to drain and gives the terminal back as it was.
    pub fn finish(self) {
        if let Some(h) = self.output.lock().expect("relay lock").take() {
            let _ = h.join();
        }
        drop(self);
    }

    /// Raw mode for strata's own terminal, restored on drop.
    pub fn raw_input(&mut self) {
        let stdin = io::stdin();
        if let Ok(mut t) = tcgetattr(stdin.as_fd()) {
            self.saved = Some(t.clone());
            cfmakeraw(&mut t);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &t);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        stop_following();
        if let Some(t) = self.saved.take() {
            let _ = tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &t);
        }
    }
}

/// The size of the terminal on strata's stdout (or stdin), if either is one.
fn terminal_size() -> Option<Winsize> {
    for fd in [1, 0] {
        let mut ws = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ fills a plain struct we own.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            return Some(ws);
        }
    }
    None
}

/// The pty master the SIGWINCH handler resizes; -1 when there is none.
static MASTER: AtomicI32 = AtomicI32::new(-1);

extern "C" fn resize(_: libc::c_int) {
    // SAFETY: only ioctl(2) runs here (async-signal-safe); errno is put back so the
    // interrupted code never sees ours.
    unsafe {
        let errno = *libc::__errno_location();
        let master = MASTER.load(Ordering::SeqCst);
        if master >= 0 {
            if let Some(size) = terminal_size() {
                libc::ioctl(master, libc::TIOCSWINSZ, &size);
            }
        }
        *libc::__errno_location() = errno;
    }
}

/// Copies strata's terminal size to `master` on every SIGWINCH. SA_RESTART: the relay
/// threads sit in read(2), which must not fail with EINTR on a resize.
fn follow_resizes(master: RawFd) {
    MASTER.store(master, Ordering::SeqCst);
    let action = SigAction::new(SigHandler::Handler(resize), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler reads an atomic and calls ioctl(2).
    let _ = unsafe { sigaction(Signal::SIGWINCH, &action) };
    // A resize between openpty and now sent its SIGWINCH to nobody: catch up once.
    resize(libc::SIGWINCH);
}

/// Back to SIGWINCH's default (ignored) before the master is closed.
fn stop_following() {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_DFL runs no handler code.
    let _ = unsafe { sigaction(Signal::SIGWINCH, &default) };
    MASTER.store(-1, Ordering::SeqCst);
}
