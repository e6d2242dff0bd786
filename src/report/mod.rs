//! Build progress and step output.
//!
//! Progress and warnings go to stderr so that stdout carries only what scripts
//! consume (the image id, a command's own output). `-q` silences everything but
//! errors. Library code prints no warning of its own: it is handed the command's
//! reporter, or a closure over it below the layers that may use this module.
//! Registry transfers draw indicatif bars when stderr is a terminal.

use std::io::{IsTerminal, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::oci::Digest;
use crate::registry::{BlobProgress, Progress};

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

    /// A warning (`strata: warning: TEXT`). `-q` silences it as it silences
    /// progress: what went wrong enough to matter is an error, never a warning.
    /// Lower layers, which may not use this module, take `&|w| report.warn(w)`.
    pub fn warn(&self, text: &str) {
        if !self.quiet {
            eprintln!("strata: warning: {text}");
        }
    }
}

/// How registry transfers show themselves (`--progress`, `-q`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransferView {
    /// Bars on a terminal, lines otherwise.
    #[default]
    Auto,
    /// Lines even on a terminal (`--progress=plain`).
    Plain,
    /// Nothing (`-q`).
    Quiet,
}

/// How registry transfers show their progress: bars per blob on a terminal (not a
/// dumb one), the
/// plain `Copying blob …` lines otherwise (CI logs), nothing when `quiet`.
pub fn transfer_progress(view: TransferView) -> Box<dyn Progress> {
    if view == TransferView::Quiet {
        Box::new(|_: &str| {})
    } else if view == TransferView::Auto
        && std::io::stderr().is_terminal()
        && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb")
    {
        // indicatif draws nothing on a dumb terminal (or without TERM): lines then.
        Box::new(Bars { multi: MultiProgress::new() })
    } else {
        Box::new(|line: &str| eprintln!("{line}"))
    }
}

/// indicatif bars, one per blob, on stderr.
struct Bars {
    multi: MultiProgress,
}

impl Progress for Bars {
    fn line(&self, text: &str) {
        // Above the bars, so a line never tears one.
        if self.multi.println(text).is_err() {
            eprintln!("{text}");
        }
    }

    fn blob(&self, digest: &Digest, size: u64) -> Box<dyn BlobProgress + '_> {
        let bar = self.multi.add(ProgressBar::new(size));
        let style = ProgressStyle::with_template("Copying blob {prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}")
            .expect("a valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(digest.short().to_string());
        Box::new(Bar(bar))
    }
}

struct Bar(ProgressBar);

impl BlobProgress for Bar {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }

    fn restart(&self) {
        self.0.set_position(0);
    }

    fn finish(&self) {
        self.0.finish_with_message("done");
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // A transfer that failed leaves its bar where it stopped, not a live one.
        if !self.0.is_finished() {
            self.0.abandon();
        }
    }
}
