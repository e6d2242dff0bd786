//! Build progress and step output.
//!
//! Progress goes to stderr so that stdout carries only what scripts consume (the
//! image id, a command's own output). `-q` silences everything but errors.

use std::io::Write;

/// Where progress lines go.
#[derive(Clone, Debug)]
pub struct Reporter {
    quiet: bool,
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        Reporter { quiet }
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// A progress line (`STEP 2/5: RUN make`, `COMMIT name`).
    pub fn line(&self, text: &str) {
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{text}");
        }
    }

    /// A warning, shown even in quiet mode.
    pub fn warn(&self, text: &str) {
        eprintln!("strata: warning: {text}");
    }
}
