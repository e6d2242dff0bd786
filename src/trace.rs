//! `STRATA_TRACE=1`: where a build step's time goes, phase by phase, so performance
//! work starts from figures (after each step one `TRACE` line on stderr, and a
//! build total).
//!
//! A step's accumulator ([`step`]) belongs to the thread that runs the step: it is
//! carried in a thread-local for the step's length, so two stages built in parallel
//! on two threads never mix. A thread the step starts for its own work (the gzip
//! workers) takes it over with [`current`] and [`Handle::enter`]. Code marks a phase
//! with a [`Span`]; spans nest and count exclusively per thread (the hash inside a
//! tar write is hash, not tar), so the phases of the step's own thread add up to at
//! most its wall time, and what they leave is printed as `other`. Phases on other
//! threads (compress) are busy time summed over those threads, with how many ran.
//! Time measured elsewhere (the RUN's command, in another process) is added with
//! [`add`].
//!
//! The build total sums the steps of every build in the process since [`build`]
//! was called: the CLI runs one build per process; two concurrent builds in one
//! process would share it (their steps never mix).
//!
//! Off (the default) it costs one relaxed atomic load per span. The output is a
//! debug aid printed straight to stderr, also under `-q`.
//!
//! A leaf: uses nothing in strata (std only), so every module may use it.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The environment variable that turns tracing on (any value but empty or `0`).
pub const ENV: &str = "STRATA_TRACE";

/// Where a step spends its time. Names are single words for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// RUN: from the sandbox helper's spawn until the command execs (namespaces,
    /// overlay mount, pid 1's setup).
    Sandbox,
    /// RUN: the command, from its exec until pid 1 exits.
    Command,
    /// RUN: after pid 1 exits until the helper is reaped (unmount, outcome file).
    Teardown,
    /// COPY/ADD: hashing the sources for the cache key.
    Key,
    /// COPY/ADD: copying the sources into the step's tree.
    Copy,
    /// A base layer unpacked into a layer dir (decompression included).
    Unpack,
    /// Walking the upper dir in sorted order.
    Walk,
    /// Building the tar stream: metadata, xattrs and reading file data.
    Tar,
    /// gzip members compressed (worker threads).
    Compress,
    /// The step's thread blocked on the compressor (a full pipeline).
    Wait,
    /// sha256 of the diff id and of the blob.
    Hash,
    /// Compressed members written to the blob's temp file.
    Write,
    /// fsync of files and directories.
    Fsync,
    /// Publishing: renames and links of blobs, index, layer dirs.
    Rename,
}

const PHASES: [Phase; 14] = [
    Phase::Sandbox,
    Phase::Command,
    Phase::Teardown,
    Phase::Key,
    Phase::Copy,
    Phase::Unpack,
    Phase::Walk,
    Phase::Tar,
    Phase::Compress,
    Phase::Wait,
    Phase::Hash,
    Phase::Write,
    Phase::Fsync,
    Phase::Rename,
];
const N: usize = PHASES.len();

impl Phase {
    /// The word the TRACE line uses.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Sandbox => "sandbox",
            Phase::Command => "command",
            Phase::Teardown => "teardown",
            Phase::Key => "key",
            Phase::Copy => "copy",
            Phase::Unpack => "unpack",
            Phase::Walk => "walk",
            Phase::Tar => "tar",
            Phase::Compress => "compress",
            Phase::Wait => "wait",
            Phase::Hash => "hash",
            Phase::Write => "write",
            Phase::Fsync => "fsync",
            Phase::Rename => "rename",
        }
    }
}

/// 0: not read yet, 1: off, 2: on.
static STATE: AtomicU8 = AtomicU8::new(0);

/// True when `STRATA_TRACE` asks for tracing (read once per process).
#[inline]
pub fn enabled() -> bool {
    match STATE.load(Relaxed) {
        0 => {
            let on = std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0");
            set_enabled(on);
            on
        }
        s => s == 2,
    }
}

/// Overrides the environment (tests, or a library user).
pub fn set_enabled(on: bool) {
    STATE.store(if on { 2 } else { 1 }, Relaxed);
}

/// Small per-process thread numbers, for counting the threads of a phase.
static NEXT_THREAD: AtomicU32 = AtomicU32::new(0);

/// Sums of one step, shared by the threads working for it.
struct Acc {
    nanos: [AtomicU64; N],
    /// Thread numbers (mod 64) that spent time in each phase.
    threads: [AtomicU64; N],
    /// Time recorded by the step's own thread, all phases.
    own: AtomicU64,
    owner: u32,
}

impl Acc {
    fn new(owner: u32) -> Acc {
        Acc { nanos: Default::default(), threads: Default::default(), own: AtomicU64::new(0), owner }
    }

    fn record(&self, phase: Phase, thread: u32, d: Duration) {
        let ns = d.as_nanos() as u64;
        let i = phase as usize;
        self.nanos[i].fetch_add(ns, Relaxed);
        self.threads[i].fetch_or(1 << (thread % 64), Relaxed);
        if thread == self.owner {
            self.own.fetch_add(ns, Relaxed);
        }
    }

    fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for i in 0..N {
            t.nanos[i] = self.nanos[i].load(Relaxed);
            t.threads[i] = self.threads[i].load(Relaxed).count_ones();
        }
        t
    }
}

/// A step's (or a build's) phase sums.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    nanos: [u64; N],
    threads: [u32; N],
}

impl Totals {
    /// Time spent in `phase`, summed over threads.
    pub fn get(&self, phase: Phase) -> Duration {
        Duration::from_nanos(self.nanos[phase as usize])
    }

    /// How many threads spent time in `phase` (in a build total: the most in one step).
    pub fn threads(&self, phase: Phase) -> u32 {
        self.threads[phase as usize]
    }

    fn add(&mut self, other: &Totals) {
        for i in 0..N {
            self.nanos[i] += other.nanos[i];
            self.threads[i] = self.threads[i].max(other.threads[i]);
        }
    }

    /// `walk 0.90 tar 4.10 compress 19.80 (2 threads)`: the phases that took time.
    pub fn phases_text(&self) -> String {
        let mut out = String::new();
        for p in PHASES {
            let (ns, threads) = (self.nanos[p as usize], self.threads[p as usize]);
            if ns == 0 {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            let _ = write!(out, "{} {:.2}", p.name(), ns as f64 / 1e9);
            if threads > 1 {
                let _ = write!(out, " ({threads} threads)");
            }
        }
        out
    }
}

/// What a thread is accounting to: the step and the phase under way.
struct Frame {
    acc: Arc<Acc>,
    phase: Option<Phase>,
    since: Instant,
}

thread_local! {
    static THREAD: u32 = NEXT_THREAD.fetch_add(1, Relaxed);
    static CURRENT: RefCell<Option<Frame>> = const { RefCell::new(None) };
}

fn thread_number() -> u32 {
    THREAD.with(|t| *t)
}

/// Puts `frame` in place for this thread, returning what was there.
fn swap_frame(frame: Option<Frame>) -> Option<Frame> {
    CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), frame))
}

/// Time in one phase, counted until dropped; inert when tracing is off or the
/// thread works for no step.
#[must_use = "the span measures until it is dropped"]
pub struct Span {
    /// The phase this span interrupted (restored on drop); None when inert.
    outer: Option<Option<Phase>>,
}

impl Span {
    /// Starts counting `phase` on this thread, pausing the phase under way.
    #[inline]
    pub fn new(phase: Phase) -> Span {
        if !enabled() {
            return Span { outer: None };
        }
        Span { outer: switch(Some(phase)) }
    }
}

/// Charges the time since the last switch to the phase under way and makes `to`
/// the current one. Returns the phase it replaced, None if the thread has no step.
fn switch(to: Option<Phase>) -> Option<Option<Phase>> {
    let thread = thread_number();
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let frame = c.as_mut()?;
        let now = Instant::now();
        if let Some(p) = frame.phase {
            frame.acc.record(p, thread, now - frame.since);
        }
        let was = frame.phase;
        frame.phase = to;
        frame.since = now;
        Some(was)
    })
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(outer) = self.outer {
            switch(outer);
        }
    }
}

/// Shorthand for [`Span::new`].
#[inline]
pub fn span(phase: Phase) -> Span {
    Span::new(phase)
}

/// Runs `f` as one span of `phase`.
#[inline]
pub fn timed<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    let _span = Span::new(phase);
    f()
}

/// Adds `d` to `phase` of this thread's step (time measured elsewhere, as in
/// another process).
pub fn add(phase: Phase, d: Duration) {
    if !enabled() {
        return;
    }
    let thread = thread_number();
    CURRENT.with(|c| {
        if let Some(frame) = c.borrow().as_ref() {
            frame.acc.record(phase, thread, d);
        }
    });
}

/// The step this thread works for, to hand to a helper thread.
#[derive(Clone)]
pub struct Handle(Arc<Acc>);

/// This thread's step, if tracing is on and it has one.
pub fn current() -> Option<Handle> {
    if !enabled() {
        return None;
    }
    CURRENT.with(|c| c.borrow().as_ref().map(|f| Handle(f.acc.clone())))
}

impl Handle {
    /// Makes this thread work for the handle's step until the guard is dropped.
    pub fn enter(self) -> Entered {
        Entered { outer: swap_frame(Some(Frame { acc: self.0, phase: None, since: Instant::now() })) }
    }
}

/// A thread working for a step; restores what it worked for before on drop.
pub struct Entered {
    outer: Option<Frame>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        swap_frame(self.outer.take());
    }
}

/// [`Handle::enter`] for an optional handle, so callers need no branch.
pub fn enter(handle: Option<Handle>) -> Option<Entered> {
    handle.map(Handle::enter)
}

/// `f`, to run on another thread, working for `handle`'s step (a thread's body).
pub fn within<T>(handle: Option<Handle>, f: impl FnOnce() -> T) -> impl FnOnce() -> T {
    move || {
        let _in_step = enter(handle);
        f()
    }
}

/// One step's accounting on this thread; prints its TRACE line when dropped.
pub struct Step {
    label: String,
    started: Instant,
    acc: Arc<Acc>,
    /// None once finished.
    entered: Option<Entered>,
}

/// Starts a step on this thread, named by `label` (called only when tracing is on).
/// None when tracing is off.
pub fn step(label: impl FnOnce() -> String) -> Option<Step> {
    if !enabled() {
        return None;
    }
    let acc = Arc::new(Acc::new(thread_number()));
    Some(Step { label: label(), started: Instant::now(), entered: Some(Handle(acc.clone()).enter()), acc })
}

impl Step {
    /// Ends the step without printing: its wall time and phase sums.
    pub fn finish(mut self) -> (Duration, Totals) {
        self.entered = None;
        (self.started.elapsed(), self.acc.totals())
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if self.entered.take().is_none() {
            return;
        }
        let wall = self.started.elapsed();
        let totals = self.acc.totals();
        if let Some(build) = BUILD.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            build.add(&totals);
        }
        let own = Duration::from_nanos(self.acc.own.load(Relaxed));
        eprintln!("{}", line(&format!("TRACE {}", self.label), wall, &totals, Some(own)));
    }
}

/// `PREFIX: wall 26.70s | walk 0.90 tar 4.10 ... | other 0.20`.
fn line(prefix: &str, wall: Duration, totals: &Totals, own: Option<Duration>) -> String {
    let mut s = format!("{prefix}: wall {:.2}s", wall.as_secs_f64());
    let phases = totals.phases_text();
    if !phases.is_empty() {
        let _ = write!(s, " | {phases}");
    }
    if let Some(own) = own {
        let _ = write!(s, " | other {:.2}", wall.saturating_sub(own).as_secs_f64());
    }
    s
}

/// The build total: the sums of every step ended since [`build`] started it.
static BUILD: Mutex<Option<Totals>> = Mutex::new(None);

/// The whole build's accounting; prints `TRACE build total` when dropped.
pub struct Build {
    started: Instant,
}

/// Starts the build total; None when tracing is off.
pub fn build() -> Option<Build> {
    if !enabled() {
        return None;
    }
    *BUILD.lock().unwrap_or_else(|e| e.into_inner()) = Some(Totals::default());
    Some(Build { started: Instant::now() })
}

impl Drop for Build {
    fn drop(&mut self) {
        let totals = BUILD.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
        eprintln!("{}", line("TRACE build total", self.started.elapsed(), &totals, None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(d: Duration) {
        let t = Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn phases_sum_per_step_across_threads_and_nest_exclusively() {
        set_enabled(true);
        let step = step(|| "STEP 1/1: COPY . /".to_string()).expect("tracing is on");
        {
            let _tar = span(Phase::Tar);
            busy(Duration::from_millis(20));
            {
                let _hash = span(Phase::Hash);
                busy(Duration::from_millis(10));
            }
            busy(Duration::from_millis(5));
        }
        // Two helper threads working for the step, as the gzip workers do.
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let h = current();
                std::thread::spawn(move || {
                    let _in = enter(h);
                    let _c = span(Phase::Compress);
                    busy(Duration::from_millis(15));
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        add(Phase::Command, Duration::from_millis(7));
        let (wall, t) = step.finish();
        let ms = |p| t.get(p).as_millis();
        assert!((25..60).contains(&ms(Phase::Tar)), "tar excludes the nested hash: {t:?}");
        assert!((10..30).contains(&ms(Phase::Hash)), "{t:?}");
        assert!(ms(Phase::Compress) >= 30, "summed over both workers: {t:?}");
        assert_eq!(t.threads(Phase::Compress), 2);
        assert_eq!(t.threads(Phase::Tar), 1);
        assert_eq!(ms(Phase::Command), 7);
        assert_eq!(t.get(Phase::Walk), Duration::ZERO);
        assert!(wall >= t.get(Phase::Tar) + t.get(Phase::Hash));
        let text = t.phases_text();
        assert!(text.starts_with("command 0.01 tar 0."), "{text}");
        assert!(text.contains("compress 0.0") && text.contains("(2 threads)"), "{text}");
        assert!(!text.contains("walk"), "{text}");
    }

    #[test]
    fn parallel_steps_keep_their_own_sums() {
        set_enabled(true);
        let run = |phase: Phase, ms: u64| {
            std::thread::spawn(move || {
                let step = step(|| "STEP".to_string()).unwrap();
                let _s = span(phase);
                busy(Duration::from_millis(ms));
                drop(_s);
                step.finish().1
            })
        };
        let (a, b) = (run(Phase::Walk, 10), run(Phase::Fsync, 10));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a.get(Phase::Walk) >= Duration::from_millis(10) && a.get(Phase::Fsync).is_zero(), "{a:?}");
        assert!(b.get(Phase::Fsync) >= Duration::from_millis(10) && b.get(Phase::Walk).is_zero(), "{b:?}");
    }
}
