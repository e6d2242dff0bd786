//! Where a build is, as `--progress=plain` shows it and an interrupt tells it: the
//! step under way, how long each took, how many ran or came from the cache.

use std::time::{Duration, Instant};

/// A build's progress, shared by the reporter's clones and the interrupt watcher.
#[derive(Debug)]
pub(super) struct Steps {
    started: Instant,
    /// The steps under way, one per stage building (several with `--jobs`): the
    /// stage's label, `at step 3/7 (Dockerfile:5): RUN make`, and when it started.
    under_way: Vec<(String, String, Instant)>,
    /// The step that ended last, where the build is between steps.
    last: Option<String>,
    /// What the build does after its steps, as it finishes "stopped …": `while
    /// exporting to oci:out`.
    pub current: Option<String>,
    pub run: usize,
    pub cached: usize,
    pub phase: Phase,
}

/// Whether an interrupt can still leave nothing tagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Steps and exports: an interrupt stops the build, and no tag was written.
    Building,
    /// The tags are being written in one index update: an interrupt waits for it
    /// (`pending`) so it never leaves some names moved and others not.
    Tagging { pending: Option<i32> },
    /// The image is stored and named.
    Done,
}

impl Steps {
    pub fn new() -> Steps {
        let now = Instant::now();
        Steps { started: now, under_way: Vec::new(), last: None, current: None, run: 0, cached: 0, phase: Phase::Building }
    }

    /// The stage labelled `label` starts step `name`.
    pub fn start(&mut self, label: &str, name: String) {
        // Steps again after `finishing` (the next platform of a multi-platform build).
        self.current = None;
        self.under_way.retain(|(l, ..)| l != label);
        self.under_way.push((label.to_string(), format!("at {name}"), Instant::now()));
    }

    /// Counts the step of stage `label` that ends; returns how long it took.
    pub fn end(&mut self, label: &str, cached: bool) -> Duration {
        if cached {
            self.cached += 1;
        } else {
            self.run += 1;
        }
        let Some(pos) = self.under_way.iter().position(|(l, ..)| l == label) else { return Duration::ZERO };
        let (_, name, started) = self.under_way.remove(pos);
        self.last = Some(name);
        started.elapsed()
    }

    /// Where the build is, for an interrupt: what it does after its steps, else the
    /// steps under way; None before the first step.
    pub fn where_now(&self) -> Option<String> {
        if self.current.is_some() {
            return self.current.clone();
        }
        if self.under_way.is_empty() {
            return self.last.clone();
        }
        Some(self.under_way.iter().map(|(_, name, _)| name.as_str()).collect::<Vec<_>>().join(" and "))
    }

    pub fn total(&self) -> Duration {
        self.started.elapsed()
    }
}

/// `0.42s`, `12.30s`, `2m05.10s`: seconds with two decimals, minutes past one.
pub fn format_duration(d: Duration) -> String {
    let centis = d.as_millis().div_ceil(10);
    let (minutes, centis) = (centis / 6000, centis % 6000);
    if minutes == 0 {
        format!("{}.{:02}s", centis / 100, centis % 100)
    } else {
        format!("{minutes}m{:02}.{:02}s", centis / 100, centis % 100)
    }
}

/// The last line of a plain build log: what ran, what was cached, how long it all
/// took, and the digest `strata inspect` calls the image's (its manifest's).
pub(super) fn summary_line(run: usize, cached: usize, total: Duration, digest: &str) -> String {
    let steps = run + cached;
    let noun = if steps == 1 { "step" } else { "steps" };
    format!("BUILD DONE: {steps} {noun} ({run} run, {cached} cached) in {}; digest {digest}", format_duration(total))
}

/// What an interrupt says, by signal name, where the build stopped and its phase.
pub(super) fn interrupt_message(signal: &str, current: Option<&str>, phase: Phase) -> String {
    match phase {
        Phase::Building => {
            let at = current.unwrap_or("before the first step");
            format!("strata: interrupted by {signal}: stopped {at}; nothing was tagged")
        }
        Phase::Tagging { .. } | Phase::Done => {
            format!("strata: interrupted by {signal} as the build finished: the image is stored and tagged")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_seconds_then_minutes() {
        assert_eq!(format_duration(Duration::from_millis(0)), "0.00s");
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.24s", "rounded up: never 0.00s for work done");
        assert_eq!(format_duration(Duration::from_millis(59_990)), "59.99s");
        assert_eq!(format_duration(Duration::from_millis(125_100)), "2m05.10s");
    }

    #[test]
    fn steps_are_counted_as_run_or_cached() {
        let mut s = Steps::new();
        s.start("", "step 1/3 (Dockerfile:1): FROM busybox".into());
        assert_eq!(s.where_now().as_deref(), Some("at step 1/3 (Dockerfile:1): FROM busybox"));
        s.end("", false);
        s.end("", true);
        s.end("", false);
        assert_eq!((s.run, s.cached), (2, 1));
        let line = summary_line(s.run, s.cached, Duration::from_millis(1500), "sha256:abc");
        assert_eq!(line, "BUILD DONE: 3 steps (2 run, 1 cached) in 1.50s; digest sha256:abc");
    }

    #[test]
    fn stages_building_side_by_side_are_each_where_the_build_is() {
        let mut s = Steps::new();
        s.start("[1/3] ", "[1/3] step 2/2 (Dockerfile:2): RUN a".into());
        s.start("[2/3] ", "[2/3] step 2/2 (Dockerfile:4): RUN b".into());
        assert_eq!(s.where_now().as_deref(), Some("at [1/3] step 2/2 (Dockerfile:2): RUN a and at [2/3] step 2/2 (Dockerfile:4): RUN b"));
        s.end("[1/3] ", false);
        assert_eq!(s.where_now().as_deref(), Some("at [2/3] step 2/2 (Dockerfile:4): RUN b"));
        s.end("[2/3] ", false);
        assert_eq!(s.where_now().as_deref(), Some("at [2/3] step 2/2 (Dockerfile:4): RUN b"), "between steps: the last one");
        s.current = Some("while exporting to oci:out".into());
        assert_eq!(s.where_now().as_deref(), Some("while exporting to oci:out"));
        s.start("", "step 2/2 (Dockerfile:2): RUN a".into());
        assert_eq!(s.where_now().as_deref(), Some("at step 2/2 (Dockerfile:2): RUN a"), "the next platform's steps");
    }

    #[test]
    fn an_interrupt_says_where_it_stopped_and_whether_anything_was_tagged() {
        let at = Some("at step 2/3 (Dockerfile:2): RUN sleep 30");
        assert_eq!(
            interrupt_message("SIGINT", at, Phase::Building),
            "strata: interrupted by SIGINT: stopped at step 2/3 (Dockerfile:2): RUN sleep 30; nothing was tagged"
        );
        assert!(interrupt_message("SIGTERM", None, Phase::Building).contains("stopped before the first step; nothing was tagged"));
        assert!(!interrupt_message("SIGINT", at, Phase::Done).contains("nothing was tagged"));
    }
}
