//! Collector benches: the heap shapes of `benches/gc_cpython.py`, so the two
//! can be compared.
//!
//! ```text
//! cargo bench --bench gc -- --warm-up-time 1 --measurement-time 3
//! SUBINTERP_CPYTHON=~/.pyenv/versions/3.13.0/bin/python3 cargo bench --bench gc
//! ```
//!
//! Before the criterion groups, the side-by-side table: when a CPython is
//! found (`SUBINTERP_CPYTHON`, else `python3` on `PATH`), the script runs the
//! same shapes in it, and this bench measures its own with the script's
//! method (best of 5 runs; 50 for the young collections), in the same run,
//! and prints both with their ratio and the issue's target.

use std::time::Instant;

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use subinterp::{Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

const N: usize = 1_000_000;

/// `n` objects as two-list cycles; when `keep`, one of each pair is
/// appended to a heap list, which is returned (the script's `kept`: the
/// roots have CPython's shape, one list object the collector traverses).
fn cycles<'i>(g: Gil<'i>, n: usize, keep: bool) -> Obj<'i> {
    let kept = g.list(&[]).unwrap();
    for _ in 0..n / 2 {
        let a = g.list(&[]).unwrap();
        let b = g.list(std::slice::from_ref(&a)).unwrap();
        a.list_append(&b).unwrap();
        if keep {
            kept.list_append(&a).unwrap();
        }
    }
    kept
}

/// The same with the roots in a Rust `Vec` of handles (external references,
/// which the collector never traverses): an extra line, not CPython's shape.
fn cycles_rust_roots<'i>(g: Gil<'i>, n: usize) -> Vec<Obj<'i>> {
    let mut kept = Vec::with_capacity(n / 2);
    for _ in 0..n / 2 {
        let a = g.list(&[]).unwrap();
        let b = g.list(std::slice::from_ref(&a)).unwrap();
        a.list_append(&b).unwrap();
        kept.push(a);
    }
    kept
}

/// Best of `reps` runs of `run` after `setup` (milliseconds), as the script's `timed`.
fn best_ms(reps: usize, mut setup: impl FnMut(), mut run: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            setup();
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

/// A closure collecting generation `gen`.
fn collect(g: Gil<'_>, gen: usize) -> impl FnMut() + '_ {
    move || {
        g.gc_collect(gen).unwrap();
    }
}

/// Our figures for the four shapes, measured as the script measures them,
/// and the alive shape with Rust-held roots.
fn ours(g: Gil<'_>) -> ([f64; 4], f64) {
    g.gc_disable();
    let garbage = best_ms(5, || drop(cycles(g, N, false)), collect(g, 2));
    let kept = cycles(g, N, true);
    let alive = best_ms(5, || {}, collect(g, 2));
    g.gc_collect(2).unwrap();
    let young_old = best_ms(50, || drop(cycles(g, 1000, false)), collect(g, 0));
    drop(kept);
    g.gc_collect(2).unwrap();
    let young_empty = best_ms(50, || drop(cycles(g, 1000, false)), collect(g, 0));
    let kept = cycles_rust_roots(g, N);
    let alive_rust_roots = best_ms(5, || {}, collect(g, 2));
    drop(kept);
    g.gc_collect(2).unwrap();
    ([garbage, alive, young_old, young_empty], alive_rust_roots)
}

fn side_by_side(g: Gil<'_>) {
    let load = common::load_average();
    side_by_side_table(g);
    eprintln!("  {}", common::load_note(load));
}

fn side_by_side_table(g: Gil<'_>) {
    let (mine, alive_rust_roots) = ours(g);
    let Some(py) = common::cpython("gc") else {
        eprintln!("gc side by side: no CPython found (set SUBINTERP_CPYTHON); ours: {mine:.3?} ms");
        eprintln!("  full_1e6_in_2cycles_all_alive with the roots in a Rust Vec: {alive_rust_roots:.3} ms");
        return;
    };
    let version = py["python"].as_str().unwrap_or("?");
    eprintln!("gc side by side (best of 5, young best of 50), CPython {version}:");
    let rows = [
        ("full_1e6_in_2cycles_all_garbage", "full_1e6_in_2cycles_all_garbage_ms", ">= 5x"),
        ("full_1e6_in_2cycles_all_alive", "full_1e6_in_2cycles_all_alive_ms", ">= 4x"),
        ("young_1000_with_1e6_old", "young_1000_with_1e6_old_ms", "within 20 % of the next row"),
        ("young_1000_with_0_old", "young_1000_with_0_old_ms", ""),
    ];
    for ((name, key, target), ms) in rows.iter().zip(mine) {
        let theirs = py[key].as_f64().unwrap_or(f64::NAN);
        eprintln!("  {name:34} ours {ms:10.4} ms  CPython {theirs:10.4} ms  {:6.2}x  target {target}", theirs / ms);
    }
    eprintln!("  young with 1e6 old / with 0 old: {:.3}", mine[2] / mine[3]);
    eprintln!(
        "  extra: all_alive with the roots in a Rust Vec (not CPython's shape): {alive_rust_roots:.4} ms ({:.2}x)",
        py["full_1e6_in_2cycles_all_alive_ms"].as_f64().unwrap_or(f64::NAN) / alive_rust_roots
    );
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp.with_gil(side_by_side).unwrap();
    let mut group = c.benchmark_group("gc");
    group.sample_size(10);
    interp
        .with_gil(|g| {
            g.gc_disable();
            group.bench_function("full_1e6_in_2cycles_all_garbage", |b| {
                b.iter_batched(|| drop(cycles(g, N, false)), |_| g.gc_collect(2).unwrap(), BatchSize::PerIteration)
            });
            let kept = cycles(g, N, true);
            group.bench_function("full_1e6_in_2cycles_all_alive", |b| b.iter(|| g.gc_collect(2).unwrap()));
            g.gc_collect(2).unwrap();
            // An increment (issue 14) in the same heap: 1,000 old pairs
            // replaced by new ones (1,000 suspects whose closures are
            // garbage, 2,000 young survivors), then `gc_collect(1)`; its
            // baseline is the young collection below, and the full
            // collection above on the same heap.
            let mut next = 0usize;
            group.bench_function("increment_1000_suspects_with_1e6_old", |b| {
                b.iter_batched(
                    || {
                        for _ in 0..1000 {
                            let a = g.list(&[]).unwrap();
                            let b = g.list(std::slice::from_ref(&a)).unwrap();
                            a.list_append(&b).unwrap();
                            kept.list_set(next % (N / 2), &a).unwrap();
                            next = next.wrapping_add(7919);
                        }
                    },
                    |_| g.gc_collect(1).unwrap(),
                    BatchSize::PerIteration,
                )
            });
            g.gc_collect(2).unwrap();
            group.bench_function("young_1000_with_1e6_old", |b| {
                b.iter_batched(|| drop(cycles(g, 1000, false)), |_| g.gc_collect(0).unwrap(), BatchSize::PerIteration)
            });
            drop(kept);
            g.gc_collect(2).unwrap();
            group.bench_function("young_1000_with_0_old", |b| {
                b.iter_batched(|| drop(cycles(g, 1000, false)), |_| g.gc_collect(0).unwrap(), BatchSize::PerIteration)
            });
        })
        .unwrap();
    group.finish();
    interp.close().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
