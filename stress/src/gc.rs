//! The `gc` stress scenario: in several interpreters at once (one thread
//! each), allocation churn that builds two-object cyclic garbage beside a
//! growing surviving old generation, with automatic collection scheduled by
//! allocation and run at each checkpoint. Pauses are timed by start/stop
//! callbacks; the loop time is the whole measured phase.
//!
//! Before the churn, one interpreter alone (no other thread running) runs
//! the pause-share loop: 1,000,000 new lists appended to one kept
//! list with automatic collection on (a checkpoint after each), timing every
//! collection (`survivors_*` keys). When a CPython is found (see
//! `cpython.rs`), `stress/py/cpython_gc.py` runs both loops in it in the same
//! run (`reference.*` keys, and CPython's series in the plots).
//!
//! Control: the same allocations as plain `Box`es on plain threads, no
//! runtime and no collector (`control.churn_iterations_per_s_per_thread`,
//! `control.survivors_1e6_loop_ms`); the busy-machine check is
//! `control::probe`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::Value;
use subinterp::{CollectResult, GcPhase, Gil, InterpreterConfig, Runtime, RuntimeConfig};

use crate::control;
use crate::cpython;
use crate::plot::{GcPauses, Plot};
use crate::{percentile, rss_bytes, Opts, Progress, Reference, Report, Summary};

/// Progress steps of the scenario.
pub const STEPS: u64 = 5;

/// Collections of one loop: (start in s since the loop began, length in ms), and what they collected.
#[derive(Default)]
struct Pauses {
    t0: Option<Instant>,
    started: Option<Instant>,
    pauses: Vec<(f64, f64)>,
    collected: usize,
}

/// Registers a callback that records every collection into the returned cell.
fn record(g: Gil<'_>) -> (Rc<RefCell<Pauses>>, u64) {
    let p = Rc::new(RefCell::new(Pauses::default()));
    let q = p.clone();
    let id = g.gc_add_callback(move |_, phase, _, r: CollectResult| {
        let mut q = q.borrow_mut();
        match phase {
            GcPhase::Start => q.started = Some(Instant::now()),
            GcPhase::Stop => {
                if let (Some(s), Some(t0)) = (q.started.take(), q.t0) {
                    let at = s.duration_since(t0).as_secs_f64();
                    q.pauses.push((at, s.elapsed().as_secs_f64() * 1e3));
                }
                q.collected += r.collected;
            }
        }
    });
    (p, id)
}

/// One loop's result.
struct LoopResult {
    pauses: Vec<(f64, f64)>,
    /// The interpreter's own pause statistics (`Gil::gc_pause_stats`), for
    /// our loops: automatic collections only.
    stats: Option<subinterp::PauseHistogram>,
    collected: usize,
    loop_s: f64,
    iterations: u64,
    rss_peak: u64,
}

/// Allocates `n` lists that all survive (appended to one kept list), with
/// automatic collection at a checkpoint after each.
fn survivors(g: Gil<'_>, n: usize) -> LoopResult {
    g.gc_reset_pause_stats();
    let (p, id) = record(g);
    let kept = g.list(&[]).expect("alloc");
    let start = Instant::now();
    p.borrow_mut().t0 = Some(start);
    for _ in 0..n {
        kept.list_append(&g.list(&[]).expect("alloc")).expect("append");
        g.checkpoint().expect("checkpoint");
    }
    let loop_s = start.elapsed().as_secs_f64();
    let stats = Some(g.gc_pause_stats().automatic);
    g.gc_remove_callback(id);
    drop(kept);
    g.gc_collect(2).expect("collect");
    let p = p.borrow();
    LoopResult { pauses: p.pauses.clone(), stats, collected: p.collected, loop_s, iterations: n as u64, rss_peak: 0 }
}

fn worker(rt: &Runtime, duration: Duration) -> LoopResult {
    let interp = rt.create(InterpreterConfig::isolated()).expect("create an interpreter");
    let w = interp
        .with_gil(|g| {
            let (p, id) = record(g);
            let old = g.list(&[]).expect("alloc");
            let start = Instant::now();
            p.borrow_mut().t0 = Some(start);
            let mut rss_peak = 0;
            let mut i = 0u64;
            while start.elapsed() < duration {
                for _ in 0..1000 {
                    let a = g.list(&[]).expect("alloc");
                    let b = g.list(std::slice::from_ref(&a)).expect("alloc");
                    a.list_append(&b).expect("append");
                    if i % 8 == 0 && old.len().expect("list") < 200_000 {
                        old.list_append(&g.list(&[]).expect("alloc")).expect("append");
                    }
                    i += 1;
                    g.checkpoint().expect("checkpoint");
                }
                rss_peak = rss_peak.max(rss_bytes());
            }
            let loop_s = start.elapsed().as_secs_f64();
            g.gc_remove_callback(id);
            let p = p.borrow();
            let stats = Some(g.gc_pause_stats().automatic);
            LoopResult { pauses: p.pauses.clone(), stats, collected: p.collected, loop_s, iterations: i, rss_peak }
        })
        .expect("enter the interpreter");
    interp.close().expect("close");
    w
}

/// The churn's allocations as plain boxes: two an iteration (dropped at once,
/// no cycle: nothing to collect), the old generation growing alike.
fn control_churn(duration: Duration) -> f64 {
    let mut old: Vec<Box<Vec<usize>>> = Vec::new();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < duration {
        for _ in 0..1000 {
            let a: Box<Vec<usize>> = Box::new(Vec::with_capacity(1));
            let b = Box::new(vec![&*a as *const Vec<usize> as usize]);
            std::hint::black_box((&a, &b));
            if i % 8 == 0 && old.len() < 200_000 {
                old.push(Box::default());
            }
            i += 1;
        }
    }
    i as f64 / start.elapsed().as_secs_f64()
}

/// The survivors loop as plain boxes, in ms.
fn control_survivors(n: usize) -> f64 {
    let start = Instant::now();
    let mut kept: Vec<Box<Vec<usize>>> = Vec::new();
    for _ in 0..n {
        kept.push(Box::default());
    }
    std::hint::black_box(&kept);
    start.elapsed().as_secs_f64() * 1e3
}

fn share_pct(r: &LoopResult) -> f64 {
    100.0 * r.pauses.iter().map(|p| p.1).sum::<f64>() / 1e3 / r.loop_s.max(1e-9)
}

fn ms(r: &LoopResult) -> Vec<f64> {
    r.pauses.iter().map(|p| p.1).collect()
}

/// CPython's two loops, parsed.
fn py_loop(v: &Value) -> Option<LoopResult> {
    let pauses = v["pauses"].as_array()?.iter().filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?))).collect();
    Some(LoopResult {
        pauses,
        stats: None,
        collected: v["collected"].as_u64()? as usize,
        loop_s: v["loop_s"].as_f64()?,
        iterations: 0,
        rss_peak: 0,
    })
}

/// Runs the scenario.
pub fn report(opts: &Opts, progress: &Progress) -> Report {
    let threads = opts.threads.max(1);
    let mut report = Report::default();
    progress.step("control: plain threads, no runtime (load probe)");
    let probe_dur = (opts.phase / 4).clamp(Duration::from_millis(100), Duration::from_millis(500));
    let load = control::probe(threads, opts.cores, probe_dur);

    progress.step("1,000,000 surviving lists in one interpreter alone");
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let alone = rt.create(InterpreterConfig::isolated()).expect("create an interpreter");
    let surv = alone.with_gil(|g| survivors(g, 1_000_000)).expect("enter the interpreter");
    alone.close().expect("close");

    progress.step(format!("cyclic garbage in {threads} interpreter(s)"));
    let workers: Vec<LoopResult> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(|| worker(&rt, opts.phase))).collect();
        hs.into_iter().map(|h| h.join().expect("worker panicked")).collect()
    });
    progress.step(format!("the same allocations as plain boxes on {threads} plain thread(s) (control)"));
    let ctl_surv_ms = control_survivors(1_000_000);
    let ctl_rates: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(|| control_churn(opts.phase))).collect();
        hs.into_iter().map(|h| h.join().expect("control thread")).collect()
    });
    let ctl_rate = ctl_rates.iter().sum::<f64>() / threads as f64;

    let py = cpython::find();
    let py_dur = opts.phase.as_secs_f64().min(2.0);
    progress.step(match py {
        Some(p) => format!("CPython {}: both loops (stress/py/cpython_gc.py, churn {py_dur} s)", p.version),
        None => "CPython: none found".into(),
    });
    let py_out = py.and_then(|p| {
        match p.run("stress/py/cpython_gc.py", cpython::GC_PY, &["--duration".into(), py_dur.to_string()]) {
            Ok(v) => Some((p, v)),
            Err(e) => {
                report.notes.push(format!("CPython reference not measured: {e}"));
                None
            }
        }
    });
    let py_surv = py_out.as_ref().and_then(|(_, v)| py_loop(&v["survivors"]));
    let py_churn = py_out.as_ref().and_then(|(_, v)| py_loop(&v["churn"]));
    let reference = |r: &Option<LoopResult>, f: &dyn Fn(&LoopResult) -> f64| match (r, &py_out) {
        (Some(r), Some((p, _))) => Reference::measured(f(r), p),
        _ => Reference::none(cpython::missing("gc.callbacks")),
    };

    // Our churn: all workers together.
    let churn = LoopResult {
        pauses: workers.iter().flat_map(|w| w.pauses.iter().copied()).collect(),
        stats: None,
        collected: workers.iter().map(|w| w.collected).sum(),
        loop_s: workers.iter().map(|w| w.loop_s).sum(),
        iterations: workers.iter().map(|w| w.iterations).sum(),
        rss_peak: workers.iter().map(|w| w.rss_peak).max().unwrap_or(0),
    };
    let pmax = |r: &LoopResult| percentile(&mut ms(r), 100.0);
    let p = |q: f64| move |r: &LoopResult| percentile(&mut ms(r), q);
    let r = &mut report;
    let mut s = Summary::new(format!(
        "Summary (survivors: one interpreter alone; churn: {threads} interpreter(s) for {:.1} s, CPython one thread for {py_dur} s)",
        opts.phase.as_secs_f64()
    ));
    s.add(r, "survivors_1e6_pause_share_pct", "%", 2, share_pct(&surv), None, Some(reference(&py_surv, &share_pct)));
    s.add(r, "survivors_1e6_pause_ms_max", "ms", 3, pmax(&surv), None, Some(reference(&py_surv, &pmax)));
    // The interpreter's own pause histogram (`Gil::gc_pause_stats`): the
    // same pauses as the callbacks' timing, from inside the collector.
    let hist = surv.stats.clone().unwrap_or_default();
    let ms_of = |d: Duration| d.as_secs_f64() * 1e3;
    s.add(r, "survivors_1e6_gc_stats_pause_ms_p50", "ms", 3, ms_of(hist.p50()), None, None);
    s.add(r, "survivors_1e6_gc_stats_pause_ms_p99", "ms", 3, ms_of(hist.p99()), None, None);
    s.add(r, "survivors_1e6_gc_stats_pause_ms_max", "ms", 3, ms_of(hist.max()), None, None);
    s.add(r, "survivors_1e6_gc_stats_pause_ms_total", "ms", 2, ms_of(hist.total()), None, None);
    s.add(
        r,
        "survivors_1e6_collections",
        "count",
        0,
        surv.pauses.len() as f64,
        None,
        Some(reference(&py_surv, &|r| r.pauses.len() as f64)),
    );
    s.add(
        r,
        "survivors_1e6_loop_ms",
        "ms",
        2,
        surv.loop_s * 1e3,
        Some(ctl_surv_ms),
        Some(reference(&py_surv, &|r| r.loop_s * 1e3)),
    );
    s.add(r, "pause_ms_p50", "ms", 3, p(50.0)(&churn), None, Some(reference(&py_churn, &p(50.0))));
    s.add(r, "pause_ms_p99", "ms", 3, p(99.0)(&churn), None, Some(reference(&py_churn, &p(99.0))));
    s.add(r, "pause_ms_max", "ms", 3, pmax(&churn), None, Some(reference(&py_churn, &pmax)));
    s.add(r, "pause_share_pct", "%", 2, share_pct(&churn), None, Some(reference(&py_churn, &share_pct)));
    let per_s = |r: &LoopResult| r.collected as f64 / r.loop_s.max(1e-9);
    s.add(r, "collected_per_s_per_thread", "objects/s", 0, per_s(&churn), None, Some(reference(&py_churn, &per_s)));
    s.add(
        r,
        "churn_iterations_per_s_per_thread",
        "iter/s",
        0,
        churn.iterations as f64 / churn.loop_s.max(1e-9),
        Some(ctl_rate),
        None,
    );
    s.add(
        r,
        "collections",
        "count",
        0,
        churn.pauses.len() as f64,
        None,
        Some(reference(&py_churn, &|r| r.pauses.len() as f64)),
    );
    s.add(r, "rss_peak_mb", "MiB", 2, churn.rss_peak as f64 / (1024.0 * 1024.0), None, None);
    s.finish(r);
    report.notes.push(
        "survivors: 10^6 new lists appended to one kept list, automatic collection at a checkpoint after each; churn: two-list \
         cycles dropped at once beside an old generation growing to 200,000 lists. control: the same allocations as plain Boxes, \
         no collector. CPython: the same loops on one thread (stress/py/cpython_gc.py), pauses from gc.callbacks."
            .to_string(),
    );

    let mut runs = vec![("subinterp: survivors loop".to_string(), surv.pauses.clone())];
    if let Some(w) = workers.first() {
        runs.push(("subinterp: churn (interpreter 1)".to_string(), w.pauses.clone()));
    }
    if let (Some((p, _)), Some(r)) = (&py_out, &py_surv) {
        runs.push((format!("CPython {}: survivors loop", p.version), r.pauses.clone()));
    }
    if let (Some((p, _)), Some(r)) = (&py_out, &py_churn) {
        runs.push((format!("CPython {}: churn", p.version), r.pauses.clone()));
    }
    report.plots.push(Plot::GcPauses(GcPauses { runs }));
    report.set_load(load);
    report
}
