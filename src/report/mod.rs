//! Build progress and step output.
//!
//! Progress and warnings go to stderr so that stdout carries only what scripts
//! consume (the image id, a command's own output). `-q` silences everything but
//! errors. Library code prints no warning of its own: it is handed the command's
//! reporter, or a closure over it below the layers that may use this module.
//! Registry transfers draw indicatif bars when stderr is a terminal.
//!
//! A build tells its reporter where it is (`start_step`, `end_step`, `finishing`,
//! `tagging`): `--progress=plain` then prints each step's duration and a closing
//! summary (`steps`), and an interrupt says where the build stopped (`interrupt`).

mod interrupt;
mod steps;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::oci::Digest;
use crate::registry::{BlobProgress, Progress};
pub use steps::format_duration;
use steps::{Phase, Steps};

/// Where progress lines go.
#[derive(Clone, Debug)]
pub struct Reporter {
    view: TransferView,
    steps: Arc<Mutex<Steps>>,
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        Reporter::with_view(if quiet { TransferView::Quiet } else { TransferView::Auto })
    }

    /// A reporter in the style `--progress` chose.
    pub fn with_view(view: TransferView) -> Reporter {
        Reporter { view, steps: Arc::new(Mutex::new(Steps::new())) }
    }

    pub fn is_quiet(&self) -> bool {
        self.view == TransferView::Quiet
    }

    /// `--progress=plain`: step durations, a summary, a failed step's last lines.
    pub fn is_plain(&self) -> bool {
        self.view == TransferView::Plain
    }

    /// A progress line (`STEP 2/5: RUN make`, `COMMIT name`).
    pub fn line(&self, text: &str) {
        if !self.is_quiet() {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{text}");
        }
    }

    /// A warning (`strata: warning: TEXT`). `-q` silences it as it silences
    /// progress: what went wrong enough to matter is an error, never a warning.
    /// Lower layers, which may not use this module, take `&|w| report.warn(w)`.
    pub fn warn(&self, text: &str) {
        if !self.is_quiet() {
            eprintln!("strata: warning: {text}");
        }
    }

    /// A step of the stage labelled `label` (`[2/3] `, empty for a one-stage
    /// build) starts: prints `line` (`STEP 3/7: RUN make`) and remembers `name`
    /// (`step 3/7 (Dockerfile:5): RUN make`) for an interrupt.
    pub fn start_step(&self, label: &str, line: &str, name: String) {
        self.line(line);
        self.steps().start(label, name);
    }

    /// The step under way ended (`cached`: its result came from the build cache,
    /// which `--> CACHED` said): with `--progress=plain`, a step that ran prints
    /// `LABEL--> done in 1.23s`.
    pub fn end_step(&self, label: &str, cached: bool) {
        let took = self.steps().end(label, cached);
        if self.is_plain() && !cached {
            self.line(&format!("{label}--> done in {}", format_duration(took)));
        }
    }

    /// The steps are over and the build writes what it made: `what` ("while
    /// exporting to oci:out") is where an interrupt now stops it.
    pub fn finishing(&self, what: String) {
        self.steps().current = Some(what);
    }

    /// The tags are about to be written: an interrupt now waits for [`tagged`](Self::tagged).
    pub fn tagging(&self) {
        self.steps().phase = Phase::Tagging { pending: None };
    }

    /// The tags are written (`ok`), or none was; an interrupt that came meanwhile
    /// ends the process here.
    pub fn tagged(&self, ok: bool) {
        interrupt::tagged(&self.steps, ok);
    }

    /// `--progress=plain`'s last line: steps run and cached, the total time, and the
    /// image's (manifest) digest.
    pub fn summary(&self, digest: &Digest) {
        if self.is_plain() {
            let s = self.steps();
            let line = steps::summary_line(s.run, s.cached, s.total(), &digest.to_string());
            drop(s);
            self.line(&line);
        }
    }

    /// From now on SIGINT, SIGTERM and SIGHUP end this process with a line saying
    /// where the build stopped and that nothing was tagged, and exit code 128 +
    /// the signal. Call it once, in the process that builds (after the fork into the
    /// user namespace: it starts a thread).
    pub fn watch_interrupts(&self) -> std::io::Result<()> {
        interrupt::watch(self.steps.clone())
    }

    fn steps(&self) -> MutexGuard<'_, Steps> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner())
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
