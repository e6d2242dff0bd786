//! Runs a plan's stages, up to `--jobs` of them at once, each as soon as the stages
//! it needs (its FROM, `COPY --from`, `RUN --mount=from=`) are built, as BuildKit's
//! solver and `buildah --jobs` do.
//!
//! A stage's result depends only on its inputs, never on what ran beside it, so the
//! image digests are the same for every `--jobs`. Workers take the next ready stage
//! in the plan's order, so `--jobs 1` builds exactly the sequential order. When a
//! stage fails, no further stage or step starts, the RUN commands under way are
//! killed (`sandbox::stop_steps`), and the first failure is the build's error.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};

use anyhow::{Error, Result};

use super::stage::StageBuilder;
use super::Build;
use crate::store::ImageState;

/// What the stages of one build left behind.
pub(super) struct Built {
    pub images: HashMap<usize, ImageState>,
    /// Build args any stage declared (for the unused-arg warning).
    pub used_args: Vec<String>,
}

/// Shared by the workers, under one lock.
#[derive(Default)]
struct Board {
    images: HashMap<usize, ImageState>,
    used_args: Vec<String>,
    /// Positions in the plan's order taken by a worker.
    started: Vec<bool>,
    running: usize,
    failure: Option<Error>,
}

/// Builds every stage in `b.plan.order` (bar those a named context replaces) with up
/// to `jobs` workers.
pub(super) fn build_stages(b: &Build, jobs: usize) -> Result<Built> {
    let order = &b.plan.order;
    // A stage a named context replaces never runs: FROM and `--from` ask for that.
    let started = order.iter().map(|&i| b.plan.stages[i].context).collect();
    let board = Mutex::new(Board { started, ..Board::default() });
    let changed = Condvar::new();
    let workers = jobs.clamp(1, order.len().max(1));
    crate::sandbox::start_steps();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| worker(b, &board, &changed));
        }
    });
    let board = board.into_inner().unwrap_or_else(|e| e.into_inner());
    match board.failure {
        Some(e) => Err(e),
        None => Ok(Built { images: board.images, used_args: board.used_args }),
    }
}

/// Takes ready stages until none is left or one failed.
fn worker(b: &Build, board: &Mutex<Board>, changed: &Condvar) {
    let lock = || board.lock().unwrap_or_else(|e| e.into_inner());
    let mut state = lock();
    loop {
        if state.failure.is_some() {
            return;
        }
        let Some(pos) = next_ready(b, &state) else {
            if state.started.iter().all(|s| *s) {
                return;
            }
            if state.running == 0 {
                // The order lists dependencies first, so this cannot happen; if it
                // did, waiting would hang the build.
                state.failure = Some(anyhow::anyhow!("no stage can start: the plan's order misses a dependency"));
                changed.notify_all();
                return;
            }
            state = changed.wait(state).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        state.started[pos] = true;
        state.running += 1;
        let deps = state.images.clone();
        drop(state);
        // A panicking stage must still wake the workers waiting on it: as an error,
        // it fails the build the way any stage's error does.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build_one(b, pos, &deps)))
            .unwrap_or_else(|panic| Err(anyhow::anyhow!("internal error: a stage panicked: {}", panic_text(&*panic))));
        state = lock();
        state.running -= 1;
        match result {
            Ok((index, image, args)) => {
                state.images.insert(index, image);
                state.used_args.extend(args);
            }
            Err(e) if state.failure.is_none() => {
                state.failure = Some(e);
                b.cancelled.store(true, Ordering::SeqCst);
                crate::sandbox::stop_steps();
            }
            // A stage stopped because another failed: the first error says why.
            Err(_) => {}
        }
        changed.notify_all();
    }
}

/// A panic's message, as the default hook would print it.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default()
}

/// The first position in the plan's order that is not started and whose stages are
/// all built (stages a named context replaces count as built: they never run).
fn next_ready(b: &Build, state: &Board) -> Option<usize> {
    let plan = b.plan;
    let done = |i: usize| plan.stages[i].context || state.images.contains_key(&i);
    plan.order.iter().enumerate().position(|(pos, &index)| {
        let stage = &plan.stages[index];
        let named = stage.base_stage.into_iter().chain(stage.copies_from.iter().copied()).all(done);
        // A `--from` the plan could not expand may name any stage before it.
        let earlier = !stage.from_unknown || plan.order[..pos].iter().all(|&i| done(i));
        !state.started[pos] && named && earlier
    })
}

/// Builds the stage at `pos` of the plan's order against the stages built so far.
fn build_one(b: &Build, pos: usize, built: &HashMap<usize, ImageState>) -> Result<(usize, ImageState, Vec<String>)> {
    let index = b.plan.order[pos];
    let stage = &b.plan.stages[index];
    let count = b.plan.order.len();
    let label = if count > 1 { format!("[{}/{}] ", pos + 1, count) } else { String::new() };
    let mut builder = StageBuilder::new(b, stage, built, label);
    let image = builder.run()?;
    Ok((index, image, builder.used_args()))
}
