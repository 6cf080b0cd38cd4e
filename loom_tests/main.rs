//! Loom models of every lock-free protocol, run against the production code.
//!
//! ```text
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS=3 \
//!     CARGO_TARGET_DIR=target/loom cargo test --release --test loom
//! ```
//!
//! Under `--cfg loom` the crate's sync facade (`src/sync.rs`) swaps std's
//! atomics, locks, condition variables, `Arc`s and thread-locals for loom's,
//! and crossbeam-epoch runs in its loom mode, so these models explore the
//! interleavings of the code that ships. Timed waits really block (a model
//! grants modelled timeouts explicitly), and `SUBINTERP_LOOM_MUTATION`
//! switches on one known-bad change at run time: `loom_tests/mutations.sh`
//! checks that each is killed. See `docs/verification.md`.
#![cfg(loom)]

mod audit;
mod gil;
mod module;
mod pending;
mod registry;

/// A model builder with the preemption bound from `LOOM_MAX_PREEMPTIONS`
/// (default 2) and a generous branch budget.
pub fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    run(None, f)
}

/// [`model`] for an expensive model: its preemption bound is at most `cap`
/// unless `LOOM_UNCAPPED=1` (the full run documented in
/// `docs/verification.md`), so that CI stays within its time budget.
pub fn model_capped<F: Fn() + Sync + Send + 'static>(cap: usize, f: F) {
    run(Some(cap), f)
}

fn run<F: Fn() + Sync + Send + 'static>(cap: Option<usize>, f: F) {
    let mut b = loom::model::Builder::new();
    let bound = b.preemption_bound.unwrap_or(2);
    let uncapped = std::env::var("LOOM_UNCAPPED").is_ok_and(|v| v == "1");
    b.preemption_bound = Some(match cap {
        Some(cap) if !uncapped => bound.min(cap),
        _ => bound,
    });
    b.max_branches = 100_000;
    b.check(f);
}
