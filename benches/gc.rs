//! Collector benches: the heap shapes of `benches/gc_cpython.py`, so the two
//! can be compared (run that script in the same session).
//!
//! ```text
//! CARGO_TARGET_DIR=target-gc cargo bench --bench gc -- --warm-up-time 1 --measurement-time 3
//! ```

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use subinterp::{Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

const N: usize = 1_000_000;

/// `n` objects as two-list cycles; returns the lists when `keep`.
fn cycles<'i>(g: Gil<'i>, n: usize, keep: bool) -> Vec<Obj<'i>> {
    let mut kept = Vec::new();
    for _ in 0..n / 2 {
        let a = g.list(&[]).unwrap();
        let b = g.list(std::slice::from_ref(&a)).unwrap();
        a.list_append(&b).unwrap();
        if keep {
            kept.push(a);
        }
    }
    kept
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
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
