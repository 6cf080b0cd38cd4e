//! Interpreter services: `audit` with 0 and 1 hooks beside CPython's
//! `sys.audit` (measured by `benches/services_cpython.py` in the same run),
//! and code-extra get / set.
//!
//! ```text
//! cargo bench --bench services
//! SUBINTERP_CPYTHON=~/.pyenv/versions/3.13.0/bin/python3 cargo bench --bench services
//! ```
//!
//! Before the criterion groups, the side-by-side table: when a CPython is
//! found (`SUBINTERP_CPYTHON`, else `python3` on `PATH`), the script times
//! `sys.audit("bench.event", 1)` with no hook and with one (`def hook(e, a):
//! pass`), best of 5 runs of 10^6 calls, its loop's cost subtracted; this
//! bench times `g.audit("bench.event", &[one])` the same way (best of 5 runs
//! of 10^6 calls, its loop included: the conservative side; the hook is a
//! closure that does nothing) and prints both with the ratio and the issue's
//! target, and the cost of our loop alone for reference.

mod common;

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use subinterp::{Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

const N: usize = 1_000_000;

/// ns per `audit` call (its loop included): best of 5 runs of `N` calls; and
/// the same loop's cost without the call (its arguments still passed through
/// `black_box`), for reference.
fn time_audit<'i>(g: Gil<'i>, args: &[Obj<'i>]) -> (f64, f64) {
    let best = |f: &dyn Fn()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e9 / N as f64
            })
            .fold(f64::INFINITY, f64::min)
    };
    let with_call = best(&|| {
        for _ in 0..N {
            g.audit(black_box("bench.event"), black_box(args)).unwrap();
        }
    });
    let loop_only = best(&|| {
        for _ in 0..N {
            let _ = (black_box("bench.event"), black_box(args));
        }
    });
    (with_call, loop_only)
}

fn hook(_g: Gil<'_>, _event: &str, args: &[Obj<'_>]) -> subinterp::Result<()> {
    black_box(args);
    Ok(())
}

fn bench(c: &mut Criterion) {
    let load = common::load_average();
    let py = common::cpython("services");
    // Each hook count in a runtime of its own (hooks cannot be removed); no
    // hook in the process until the no-hook figures are taken.
    let rt0 = Runtime::new(RuntimeConfig::default()).unwrap();
    let i0 = rt0.create(InterpreterConfig::isolated()).unwrap();
    let (zero_raw, loop_ns) = i0.with_gil(|g| time_audit(g, &[g.int(1).unwrap()])).unwrap();
    // Ours with its loop included (the conservative side: CPython's figure
    // has its loop subtracted); the loop alone is printed for reference.
    let zero = zero_raw;
    let mut group = c.benchmark_group("services");
    i0.with_gil(|g| {
        let args = [g.int(1).unwrap()];
        group.bench_function("audit_0_hooks", |b| b.iter(|| g.audit(black_box("bench.event"), black_box(&args))));
    })
    .unwrap();
    let rt1 = Runtime::new(RuntimeConfig::default()).unwrap();
    let i1 = rt1.create(InterpreterConfig::isolated()).unwrap();
    i1.with_gil(|g| g.add_audit_hook(hook).unwrap()).unwrap();
    let zero_elsewhere = i0.with_gil(|g| time_audit(g, &[g.int(1).unwrap()])).unwrap().0;
    let one = i1.with_gil(|g| time_audit(g, &[g.int(1).unwrap()])).unwrap().0;
    match &py {
        Some(py) => {
            let version = py["python"].as_str().unwrap_or("?");
            eprintln!(
                "services side by side (best of 5 x 10^6 calls; ours with its loop, whose cost alone is \
                 {loop_ns:.3} ns; CPython's loop, {:.2} ns, subtracted), CPython {version}:",
                py["loop_ns"].as_f64().unwrap_or(f64::NAN)
            );
            for (name, ours, key, target) in [
                ("audit, no hook", zero, "audit_0_hooks_ns", "<= 2 ns and >= 20x"),
                ("audit, one hook", one, "audit_1_hook_ns", "faster (> 1x)"),
            ] {
                let theirs = py[key].as_f64().unwrap_or(f64::NAN);
                eprintln!(
                    "  {name:16} ours {ours:8.3} ns  CPython {theirs:8.2} ns  {:7.1}x  target {target}",
                    theirs / ours
                );
            }
        }
        None => {
            eprintln!("services side by side: no CPython found (set SUBINTERP_CPYTHON); ours: {zero:.3} / {one:.3} ns")
        }
    }
    eprintln!("  audit, no hook in this runtime, one in another runtime: ours {zero_elsewhere:.3} ns");
    eprintln!("  {}", common::load_note(load));

    i1.with_gil(|g| {
        let args = [g.int(1).unwrap()];
        group.bench_function("audit_1_hook", |b| b.iter(|| g.audit(black_box("bench.event"), black_box(&args))));
    })
    .unwrap();
    let idx = i0.request_code_extra_index(None).unwrap();
    i0.with_gil(|g| {
        let code = g.code("f", &[], 0).unwrap();
        let mut v = 0usize;
        code.set_extra(idx, std::ptr::without_provenance_mut(1)).unwrap();
        group.bench_function("code_extra_get", |b| b.iter(|| code.get_extra(black_box(idx)).unwrap()));
        group.bench_function("code_extra_set", |b| {
            b.iter(|| {
                v = v.wrapping_add(1) | 1;
                code.set_extra(black_box(idx), std::ptr::without_provenance_mut(v)).unwrap()
            })
        });
    })
    .unwrap();
    group.finish();
    i0.close().unwrap();
    i1.close().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
