//! How long strata waits on a silent server: registries and `ADD <url>` alike.
//!
//! A registry that stops answering (a frozen process whose kernel still accepts
//! connections, a proxy that stalls mid-body) must not hang a pull, a push or a
//! build. A whole-request deadline would cut large layers off on slow links, so the
//! limit is on idleness instead: every socket read and write (TLS handshakes
//! included) may wait at most [`idle`] (60 s unless `--registry-timeout` says
//! otherwise), however long the transfer as a whole takes. A timeout is a network
//! fault like a broken connection: retried within the operation's budget (see
//! `retry`), so a frozen registry costs at most about 4 x the timeout plus the backoff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ureq::config::ConfigBuilder;
use ureq::typestate::AgentScope;

/// The idle timeout when none is given.
pub const DEFAULT_SECONDS: u64 = 60;

/// The longest a connection attempt waits, whatever the idle timeout: a host that
/// drops our SYNs is not a slow link.
const CONNECT_SECONDS: u64 = 15;

static IDLE_SECONDS: AtomicU64 = AtomicU64::new(DEFAULT_SECONDS);

/// Sets the idle timeout for every connection made from now on (the
/// `--registry-timeout` flag); zero is taken as one second.
pub fn set_idle(seconds: u64) {
    IDLE_SECONDS.store(seconds.max(1), Ordering::Relaxed);
}

/// How long one socket read or write may wait.
pub fn idle() -> Duration {
    Duration::from_secs(IDLE_SECONDS.load(Ordering::Relaxed))
}

/// An agent configuration with the idle and connect timeouts set; callers add
/// their own choices (TLS, status handling) before building it.
pub fn agent_config() -> ConfigBuilder<AgentScope> {
    config_for(idle())
}

fn connect() -> Duration {
    connect_for(idle())
}

fn connect_for(idle: Duration) -> Duration {
    idle.min(Duration::from_secs(CONNECT_SECONDS))
}

fn config_for(idle: Duration) -> ConfigBuilder<AgentScope> {
    ureq::Agent::config_builder().timeout_connect(Some(connect_for(idle))).timeout_per_read(Some(idle)).timeout_per_write(Some(idle))
}

/// A request that timed out, as the cause of an error naming the server. The
/// TCP connect, the TLS handshake and every read or write of the exchange all
/// count: to the user each is a server that went silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out: no answer for {seconds} s (see --registry-timeout)")]
pub struct Stalled {
    pub seconds: u64,
}

impl Stalled {
    /// The stall behind `e`, when `e` is one of ureq's timeouts (or wraps one).
    pub fn of(e: &ureq::Error) -> Option<Stalled> {
        match e {
            ureq::Error::Timeout(ureq::Timeout::Connect) => Some(Stalled { seconds: connect().as_secs() }),
            ureq::Error::Timeout(_) => Some(Stalled { seconds: idle().as_secs() }),
            // TLS reads and writes pass ureq's own errors through `io::Error`.
            ureq::Error::Io(io) => Stalled::of_io(io),
            _ => None,
        }
    }

    /// The stall behind an I/O error from a response body (ureq wraps its own
    /// errors in `io::Error` there).
    pub fn of_io(e: &std::io::Error) -> Option<Stalled> {
        if e.kind() == std::io::ErrorKind::TimedOut {
            return Some(Stalled { seconds: idle().as_secs() });
        }
        e.get_ref().and_then(|inner| inner.downcast_ref::<ureq::Error>()).and_then(Stalled::of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    /// A server on 127.0.0.1 that accepts one connection, sends `reply` and then
    /// stays silent, holding the connection open until the test ends.
    fn silent_server(reply: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(reply).unwrap();
            std::thread::sleep(Duration::from_secs(30));
            drop::<TcpStream>(conn);
        });
        format!("http://{addr}/blob")
    }

    fn agent() -> ureq::Agent {
        config_for(Duration::from_millis(300)).build().into()
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let url = silent_server(b"");
        let started = Instant::now();
        let err = agent().get(&url).call().unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        assert!(matches!(Stalled::of(&err), Some(Stalled { .. })), "{err:?}");
    }

    #[test]
    fn a_body_that_stalls_times_out() {
        let url = silent_server(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nfirst bytes");
        let resp = agent().get(&url).call().unwrap();
        let mut body = resp.into_body().into_reader();
        let mut got = Vec::new();
        let err = body.read_to_end(&mut got).unwrap_err();
        assert_eq!(got, b"first bytes");
        assert!(matches!(Stalled::of_io(&err), Some(Stalled { .. })), "{err:?}");
    }

    #[test]
    fn other_failures_are_no_stall() {
        let err = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "Peer disconnected");
        assert_eq!(Stalled::of_io(&err), None);
        assert_eq!(Stalled::of(&ureq::Error::ConnectionFailed), None);
        assert_eq!(Stalled { seconds: 60 }.to_string(), "timed out: no answer for 60 s (see --registry-timeout)");
    }
}
