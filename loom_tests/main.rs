//! Loom models of every lock-free protocol, run against the production code.
//!
//! ```text
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test --release --test loom
//! ```
//!
//! Under `--cfg loom` the crate's sync facade (`src/sync.rs`) swaps std's
//! atomics, locks, condition variables and thread-locals for loom's, and
//! crossbeam-epoch runs in its loom mode, so these models explore the
//! interleavings of the code that ships.
#![cfg(loom)]

mod gil;
mod module;
mod pending;
mod registry;

/// A model builder with the preemption bound from `LOOM_MAX_PREEMPTIONS`
/// (default 2) and a generous branch budget.
pub fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.max_branches = 100_000;
    b.check(f);
}
