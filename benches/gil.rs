//! GIL costs: `with_gil` enter+exit against a parking_lot mutex lock+unlock
//! (same run), a GIL hand-off between two threads, `checkpoint()` and
//! `Interpreter::current()`.
//!
//! `cargo bench --bench gil`

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use subinterp::{Interpreter, InterpreterConfig, Runtime, RuntimeConfig};

fn bench_enter_exit(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let mut g = c.benchmark_group("gil_enter_exit_uncontended");
    g.bench_function("subinterp_with_gil", |b| b.iter(|| interp.with_gil(|g| black_box(g.id())).unwrap()));
    let m = parking_lot::Mutex::new(0u64);
    g.bench_function("baseline_parking_lot_mutex", |b| {
        b.iter(|| {
            let guard = m.lock();
            black_box(*guard)
        })
    });
    let sm = std::sync::Mutex::new(0u64);
    g.bench_function("baseline_std_mutex", |b| b.iter(|| black_box(*sm.lock().unwrap())));
    g.finish();

    let mut g = c.benchmark_group("gil_inside");
    interp
        .with_gil(|gil| {
            g.bench_function("checkpoint_nothing_pending", |b| b.iter(|| black_box(gil.checkpoint()).unwrap()));
            g.bench_function("reenter_same_interpreter", |b| {
                b.iter(|| gil.interpreter().with_gil(|g2| black_box(g2.id())).unwrap())
            });
            g.bench_function("current", |b| b.iter(|| black_box(Interpreter::current())));
        })
        .unwrap();
    g.bench_function("current_outside", |b| b.iter(|| black_box(Interpreter::current())));
    g.finish();
}

/// One hand-off = the holder yields at a checkpoint and another thread that
/// returned from `allow_threads` takes the GIL. Measured as the round trip of
/// a ping-pong between two threads of one interpreter, divided by two.
fn bench_handoff(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    c.bench_function("gil_handoff_two_threads", |b| {
        b.iter_custom(|iters| {
            let turn = Arc::new(AtomicU64::new(0));
            let done = Arc::new(AtomicBool::new(false));
            let (i2, t2, d2) = (interp.clone(), turn.clone(), done.clone());
            // The partner waits (detached) for its turn, then comes back for the GIL.
            let partner = thread::spawn(move || {
                i2.with_gil(move |g| {
                    let mut k = 1u64;
                    while !d2.load(Ordering::Relaxed) {
                        let target = k;
                        g.allow_threads(|| {
                            while t2.load(Ordering::Acquire) < target && !d2.load(Ordering::Relaxed) {
                                std::hint::spin_loop();
                            }
                        });
                        t2.store(k + 1, Ordering::Release);
                        k += 2;
                    }
                })
                .unwrap();
            });
            let elapsed = interp
                .with_gil(|g| {
                    let t0 = Instant::now();
                    let mut k = 0u64;
                    for _ in 0..iters {
                        // Our turn: hand over, and spin at checkpoints until the partner ran.
                        turn.store(k + 1, Ordering::Release);
                        while turn.load(Ordering::Acquire) < k + 2 {
                            g.checkpoint().unwrap();
                        }
                        k += 2;
                    }
                    t0.elapsed()
                })
                .unwrap();
            done.store(true, Ordering::Relaxed);
            partner.join().unwrap();
            elapsed / 2
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_enter_exit, bench_handoff
}
criterion_main!(benches);
