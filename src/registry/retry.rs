//! How often and how long a registry operation tries again, and how a broken
//! download is told apart from the store's own errors.
//!
//! One [`Retry`] budget belongs to one operation, not to one request: an upload's
//! POST and PUT, or a download's GET and the body after it, all draw from it. So
//! however the failures mix, an operation makes at most [`ATTEMPTS`] tries and sleeps
//! at most 0.5 + 1 + 2 s between them before it reports the last error.

use std::fmt::Display;
use std::io::{self, Read};
use std::time::Duration;

use super::RegistryError;

/// Tries per operation when the registry fails or the connection breaks.
pub const ATTEMPTS: u32 = 4;

/// The tries an operation has left, and whom to tell when it tries again.
pub struct Retry<'n> {
    what: String,
    limit: u32,
    failures: u32,
    notice: Option<&'n dyn Fn(&str)>,
}

impl<'n> Retry<'n> {
    /// A budget of [`ATTEMPTS`] tries for `what` (e.g. `manifest e2e/a:1`), silent.
    pub fn new(what: impl Into<String>) -> Retry<'n> {
        Retry { what: what.into(), limit: ATTEMPTS, failures: 0, notice: None }
    }

    /// Like [`Retry::new`], telling `notice` about every retry (a progress line).
    pub fn reported(what: impl Into<String>, notice: &'n dyn Fn(&str)) -> Retry<'n> {
        Retry { notice: Some(notice), ..Retry::new(what) }
    }

    /// A single try, for a request whose failure the caller handles itself.
    pub fn once(what: impl Into<String>) -> Retry<'n> {
        Retry { limit: 1, ..Retry::new(what) }
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    /// After a failed try: when tries are left, says why it tries again, sleeps
    /// the backoff and returns true; otherwise false.
    pub fn again(&mut self, why: &dyn Display) -> bool {
        self.failures += 1;
        if self.failures >= self.limit {
            return false;
        }
        if let Some(notice) = self.notice {
            notice(&format!("Retrying {} (try {} of {}) after: {why}", self.what, self.failures + 1, self.limit));
        }
        std::thread::sleep(Duration::from_millis(250 << self.failures.min(4)));
        true
    }
}

/// Whether `e` is worth another try: the connection failed, broke or timed out.
pub fn is_transient(e: &RegistryError) -> bool {
    match e {
        RegistryError::TimedOut { .. } => true,
        RegistryError::Http { source, .. } => {
            matches!(**source, ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed)
        }
        _ => false,
    }
}

/// The innermost cause of `e`, for a one-line retry notice.
pub fn reason(e: &dyn std::error::Error) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// A response body that remembers how it failed. Its reader and the store's writer
/// meet in one `io::copy`, whose error alone cannot say which side broke: a broken
/// connection is worth another GET, a full disk is not.
pub struct WatchedBody<R> {
    inner: R,
    received: u64,
    broken: Option<io::Error>,
}

impl<R: Read> WatchedBody<R> {
    pub fn new(inner: R) -> WatchedBody<R> {
        WatchedBody { inner, received: 0, broken: None }
    }

    /// Bytes read so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The error the connection failed with, if it did.
    pub fn take_broken(&mut self) -> Option<io::Error> {
        self.broken.take()
    }
}

impl<R: Read> Read for WatchedBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.received += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let told = io::Error::new(e.kind(), e.to_string());
                self.broken = Some(e);
                Err(told)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn a_budget_reports_each_retry_and_ends() {
        let lines = RefCell::new(Vec::new());
        let notice = |l: &str| lines.borrow_mut().push(l.to_string());
        // Two tries: one retry (one short sleep), then no more.
        let mut retry = Retry { limit: 2, ..Retry::reported("blob x", &notice) };
        assert!(retry.again(&"boom"));
        assert!(!retry.again(&"boom again"), "no try is left");
        assert_eq!(*lines.borrow(), ["Retrying blob x (try 2 of 2) after: boom"]);
        assert!(!Retry::once("manifest").again(&"boom"), "a single try never sleeps");
    }

    #[test]
    fn a_timeout_is_worth_another_try() {
        let stalled = RegistryError::TimedOut {
            registry: "127.0.0.1:5000".into(),
            what: "manifest e2e/a:1".into(),
            source: crate::registry::timeout::Stalled { seconds: 2 },
        };
        assert!(is_transient(&stalled));
        assert_eq!(
            crate::registry::describe(&stalled),
            "127.0.0.1:5000: manifest e2e/a:1: timed out: no answer for 2 s (see --registry-timeout)"
        );
        let refused = RegistryError::Status { registry: "r".into(), what: "w".into(), status: 400, body: String::new() };
        assert!(!is_transient(&refused));
    }

    #[test]
    fn a_watched_body_tells_its_own_failure() {
        struct Breaks(usize);
        impl Read for Breaks {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Peer disconnected"));
                }
                let n = self.0.min(buf.len());
                self.0 -= n;
                Ok(n)
            }
        }
        let mut body = WatchedBody::new(Breaks(10));
        let err = io::copy(&mut body, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(body.received(), 10);
        assert_eq!(body.take_broken().map(|e| e.to_string()).as_deref(), Some("Peer disconnected"));
        let mut fine = WatchedBody::new(&b"abc"[..]);
        io::copy(&mut fine, &mut io::sink()).unwrap();
        assert!(fine.take_broken().is_none());
    }
}
