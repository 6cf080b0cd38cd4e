//! Module-table costs: `find_module` (cached, guard-based, and `Arc`-cloning
//! forms) on one thread and on two threads at once, against an
//! `RwLock<Vec<_>>` and a `DashMap` lookup in the same run; `import` of an
//! already imported module; interpreter create + close (which builds the
//! module tables and the `builtins` / `sys` records).
//!
//! `cargo bench --bench module`
//!
//! Each group reports throughput in lookups per second: the one-thread and
//! two-thread rows of a method give its scaling, and the rows of one group
//! compare the methods. Two-thread rows time `iters` lookups on each of two
//! threads started together (the slower thread's time).

use std::hint::black_box;
use std::sync::{Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dashmap::DashMap;
use subinterp::{InitError, InterpreterConfig, ModuleDef, ModuleInit, MultiInterp, Runtime, RuntimeConfig};

struct State {
    value: u64,
}

fn init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    m.set_state(State { value: 42 });
    Ok(())
}

fn filler(_: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    Ok(())
}

static TARGET: ModuleDef = ModuleDef::new("bench_target", init).with_multi_interp(MultiInterp::PerInterpreterGil);
const fn filler_def(name: &'static str) -> ModuleDef {
    ModuleDef::new(name, filler).with_multi_interp(MultiInterp::PerInterpreterGil)
}

static FILLERS: [ModuleDef; 8] = [
    filler_def("bench_f0"),
    filler_def("bench_f1"),
    filler_def("bench_f2"),
    filler_def("bench_f3"),
    filler_def("bench_f4"),
    filler_def("bench_f5"),
    filler_def("bench_f6"),
    filler_def("bench_f7"),
];

/// Runs `iters` calls of a per-thread closure on each of `threads` threads
/// started together; returns the slowest thread's time.
fn parallel<F, L>(threads: usize, iters: u64, make: &F) -> Duration
where
    F: Fn() -> L + Sync,
    L: FnMut(),
{
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut f = make();
                    barrier.wait();
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        f();
                    }
                    t0.elapsed()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).max().unwrap()
    })
}

fn bench_find_module(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    for d in FILLERS.iter().chain([&TARGET]) {
        rt.register_builtin(d).unwrap();
    }
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    // Fillers first, so the target's slot is not the first one.
    for d in &FILLERS {
        interp.import(d.name()).unwrap();
    }
    interp.import(TARGET.name()).unwrap();
    let index = TARGET.index().unwrap();

    // Baselines holding the same records at the same index.
    let modules: Vec<Option<subinterp::Module>> = (0..=index)
        .map(|i| FILLERS.iter().chain([&TARGET]).find(|d| d.index() == Some(i)).and_then(|d| interp.find_module(d)))
        .collect();
    let raw_swap = arc_swap::ArcSwap::from_pointee(index);
    let rwlock = RwLock::new(modules.clone());
    let dashmap: DashMap<usize, subinterp::Module> =
        modules.iter().enumerate().filter_map(|(i, m)| Some((i, m.clone()?))).collect();

    for threads in [1usize, 2] {
        let mut g = c.benchmark_group(format!("find_module_{threads}_thread"));
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function("subinterp_cached", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, &|| {
                    let mut cache = interp.module_cache();
                    move || {
                        black_box(cache.find(black_box(&TARGET)).map(|m| m as *const _));
                    }
                })
            })
        });
        g.bench_function("subinterp_cached_state", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, &|| {
                    let mut cache = interp.module_cache();
                    move || {
                        black_box(cache.find_state::<State>(black_box(&TARGET)).map(|s| s.value));
                    }
                })
            })
        });
        g.bench_function("subinterp_with_module", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, &|| {
                    || {
                        black_box(interp.with_module(black_box(&TARGET), |m| m.is_some()));
                    }
                })
            })
        });
        g.bench_function("subinterp_find_module_arc", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, &|| {
                    || {
                        black_box(interp.find_module(black_box(&TARGET)));
                    }
                })
            })
        });
        // Controls: the raw arc-swap `Cache::load` (the floor of the cached
        // form), and thread-private work (how much parallelism the machine
        // gave this run: the two-thread row of a method is only meaningful
        // next to this one's).
        g.bench_function("control_arc_swap_cache_load", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, &|| {
                    let mut cache = arc_swap::Cache::new(&raw_swap);
                    move || {
                        black_box(**cache.load());
                    }
                })
            })
        });
        g.bench_function("control_thread_private", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, &|| {
                    let mut x = 0u64;
                    move || {
                        x = black_box(x.wrapping_add(1));
                    }
                })
            })
        });
        g.bench_function("baseline_rwlock_vec", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, &|| {
                    || {
                        let v = rwlock.read().unwrap();
                        black_box(v[black_box(index)].as_ref().map(|m| m as *const _));
                    }
                })
            })
        });
        g.bench_function("baseline_dashmap", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, &|| {
                    || {
                        let r = dashmap.get(&black_box(index));
                        black_box(r.as_ref().map(|m| m.value() as *const _));
                    }
                })
            })
        });
        g.finish();
    }
}

fn bench_import(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    rt.register_builtin(&TARGET).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp.import("bench_target").unwrap();
    let mut g = c.benchmark_group("import");
    g.bench_function("already_imported", |b| b.iter(|| black_box(interp.import(black_box("bench_target")).unwrap())));
    g.bench_function("get_module_by_name", |b| b.iter(|| black_box(interp.get_module(black_box("bench_target")))));
    g.finish();

    // Interpreter creation builds the module tables with builtins and sys.
    let mut g = c.benchmark_group("interpreter");
    g.bench_function("create_close", |b| {
        b.iter(|| {
            let i = rt.create(InterpreterConfig::isolated()).unwrap();
            i.close().unwrap();
        })
    });
    g.bench_function("create_import_close", |b| {
        b.iter(|| {
            let i = rt.create(InterpreterConfig::isolated()).unwrap();
            black_box(i.import("bench_target").unwrap());
            i.close().unwrap();
        })
    });
    g.finish();
}

/// The acceptance ratios, measured outside criterion's statistics: for each
/// method, the best of several alternating one-thread and two-thread runs.
/// Taking the best filters out time stolen by other processes, which on a
/// shared machine otherwise hides the scaling (the thread-private control
/// row shows how much parallelism the machine gave).
fn scaling_summary(_: &mut Criterion) {
    const ITERS: u64 = 10_000_000;
    const ROUNDS: usize = 5;
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    rt.register_builtin(&TARGET).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let module = interp.import(TARGET.name()).unwrap();
    let index = TARGET.index().unwrap();
    let mut slots = vec![None; index + 1];
    slots[index] = Some(module);
    let rwlock = RwLock::new(slots);
    let best = |body: &dyn Fn(u64) -> Duration| -> f64 {
        (0..ROUNDS).map(|_| body(ITERS)).min().unwrap().as_secs_f64() * 1e9 / ITERS as f64
    };
    let report = |label: &str, one: f64, two: f64| {
        println!(
            "scaling {label:<22} 1 thread {one:6.2} ns/lookup; 2 threads {two:6.2} ns/lookup each; throughput x{:.2}",
            2.0 * one / two
        );
        two
    };
    let cached_make = || {
        let mut cache = interp.module_cache();
        move || {
            black_box(cache.find(black_box(&TARGET)).map(|m| m as *const _));
        }
    };
    let rw_make = || {
        || {
            let v = rwlock.read().unwrap();
            black_box(v[black_box(index)].as_ref().map(|m| m as *const _));
        }
    };
    let private_make = || {
        let mut x = 0u64;
        move || x = black_box(x.wrapping_add(1))
    };
    let (mut c1, mut c2, mut r1, mut r2, mut p1, mut p2) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..2 {
        c1 = c1.min(best(&|n| parallel(1, n, &cached_make)));
        c2 = c2.min(best(&|n| parallel(2, n, &cached_make)));
        r1 = r1.min(best(&|n| parallel(1, n, &rw_make)));
        r2 = r2.min(best(&|n| parallel(2, n, &rw_make)));
        p1 = p1.min(best(&|n| parallel(1, n, &private_make)));
        p2 = p2.min(best(&|n| parallel(2, n, &private_make)));
    }
    let cached2 = report("module_cache.find", c1, c2);
    let rw2 = report("baseline RwLock<Vec>", r1, r2);
    report("control thread-private", p1, p2);
    println!("scaling module_cache.find vs RwLock<Vec> with 2 reader threads: x{:.1} faster", rw2 / cached2);
}

criterion_group!(benches, bench_find_module, bench_import, scaling_summary);
criterion_main!(benches);
