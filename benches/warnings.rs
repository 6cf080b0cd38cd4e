//! `warn` on its two fast paths beside CPython's `warnings.warn`
//! (`benches/warnings_cpython.py`, run in the same bench).
//!
//! ```text
//! SUBINTERP_CPYTHON=~/.pyenv/versions/3.13.0/bin/python3 cargo bench --bench warnings -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Before the criterion groups, the side-by-side table: when a CPython is
//! found (`SUBINTERP_CPYTHON`, else `python3` on `PATH`), the script measures
//! `warnings.warn` from one line of a module with an `ignore` filter first and
//! with a registry hit; this bench measures `Gil::warn_in` from one line of a
//! module object the same way (best of 5 runs of 200 000 calls, ns per call),
//! and prints both with their ratio and the issue's target (ignored ≥ 5×).

use std::rc::Rc;
use std::time::Instant;

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use subinterp::{Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

const N: usize = 200_000;

/// The script's method: a scope with `setup`'s filter, 10 warm-up calls
/// (the first may be shown), then best of 5 runs of `N` calls, ns per call.
fn best_ns<'i>(g: Gil<'i>, m: &Obj<'i>, setup: impl Fn(Gil<'i>)) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        g.catch_warnings(false, |g| {
            setup(g);
            for _ in 0..10 {
                g.warn_in("x", None, m, 27).unwrap();
            }
            let t = Instant::now();
            for _ in 0..N {
                g.warn_in(std::hint::black_box("x"), None, m, 27).unwrap();
            }
            best = best.min(t.elapsed().as_secs_f64());
        })
        .unwrap();
    }
    best / N as f64 * 1e9
}

fn side_by_side<'a>(g: Gil<'a>, m: &Obj<'a>) {
    let load = common::load_average();
    let uw = g.warning_category("UserWarning").unwrap();
    let ignored = best_ns(g, m, |g| g.simplefilter("ignore", Some(&uw), 0, false).unwrap());
    let hit = best_ns(g, m, |g| g.simplefilter("default", None, 0, false).unwrap());
    match common::cpython("warnings") {
        Some(py) => {
            let version = py["python"].as_str().unwrap_or("?");
            eprintln!("warnings side by side (best of 5 x {N} calls), CPython {version}:");
            for (name, key, ours, target) in
                [("warn, ignored", "ignored_ns", ignored, ">= 5x"), ("warn, registry hit", "registry_hit_ns", hit, "")]
            {
                let theirs = py[key].as_f64().unwrap_or(f64::NAN);
                eprintln!(
                    "  {name:20} ours {ours:8.1} ns  CPython {theirs:8.1} ns  {:6.2}x  target {target}",
                    theirs / ours
                );
            }
        }
        None => eprintln!(
            "warnings side by side: no CPython found (set SUBINTERP_CPYTHON); ours: ignored {ignored:.1} ns, registry hit {hit:.1} ns"
        ),
    }
    eprintln!("  {}", common::load_note(load));
}

/// Iterations per second with `threads` threads, each in its own
/// interpreter (own GIL), over the same wall time; an iteration is an
/// ignored warning and a cached codec lookup (issue 12's "warning and
/// looking up codecs at once").
fn throughput(rt: &Runtime, threads: usize) -> f64 {
    let interps: Vec<_> = (0..threads).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
    let barrier = std::sync::Barrier::new(threads);
    let t = Instant::now();
    std::thread::scope(|s| {
        for i in &interps {
            let barrier = &barrier;
            s.spawn(move || {
                i.with_gil(|g| {
                    let m = g.new_module("bench").unwrap();
                    g.simplefilter("ignore", None, 0, false).unwrap();
                    barrier.wait();
                    for _ in 0..N * 5 {
                        g.warn_in(std::hint::black_box("x"), None, &m, 27).unwrap();
                        std::hint::black_box(g.codec_lookup(std::hint::black_box("utf-8")).unwrap());
                    }
                })
                .unwrap();
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    interps.into_iter().for_each(|i| drop(i.close().unwrap()));
    (threads * N * 5) as f64 / secs
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let load = common::load_average();
    let (one, two) = (throughput(&rt, 1), throughput(&rt, 2));
    eprintln!(
        "warnings + codecs scaling: 2 threads in 2 interpreters, each an ignored warn and a cached codec lookup per iteration: {:.2}x one thread's throughput (target >= 1.8x)",
        two / one
    );
    eprintln!("  {}", common::load_note(load));
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp
        .with_gil(|g| {
            g.set_warning_output(Some(Rc::new(|_: &str| {}))).unwrap();
            let m = g.new_module("bench").unwrap();
            side_by_side(g, &m);
            let uw = g.warning_category("UserWarning").unwrap();
            let mut group = c.benchmark_group("warnings");
            g.simplefilter("ignore", Some(&uw), 0, false).unwrap();
            group.bench_function("warn_in_ignored", |b| b.iter(|| g.warn_in("x", None, &m, 27).unwrap()));
            group.bench_function("warn_no_module_ignored", |b| b.iter(|| g.warn("x", None).unwrap()));
            g.simplefilter("default", None, 0, false).unwrap();
            group.bench_function("warn_in_registry_hit", |b| b.iter(|| g.warn_in("x", None, &m, 27).unwrap()));
            group.finish();
        })
        .unwrap();
    interp.close().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
