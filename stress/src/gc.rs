//! The `gc` stress scenario: in several interpreters at once (one thread
//! each), allocation churn that builds two-object cyclic garbage beside a
//! growing surviving old generation, with automatic collection scheduled by
//! allocation and run at each checkpoint. Pauses are timed by start/stop
//! callbacks; the loop time is the whole measured phase.
//!
//! Before the churn, one interpreter alone (no other thread running) runs
//! the pause-share loop: 1,000,000 new lists appended to one kept
//! list with automatic collection on (a checkpoint after each), timing every
//! collection (`survivors_*` keys). When a CPython is found
//! (`SUBINTERP_CPYTHON`, else `python3` on `PATH`), `benches/gc_cpython.py`
//! runs the same loop in it in the same run (`cpython_survivors_*` keys).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::{percentile, round, rss_bytes};
use serde_json::{Map, Value};
use subinterp::{GcPhase, InterpreterConfig, Runtime, RuntimeConfig};

/// The pause-share loop's result in one interpreter.
struct Survivors {
    pauses_ms: Vec<f64>,
    loop_s: f64,
}

/// Allocates `n` lists that all survive (appended to one kept list), with
/// automatic collection at a checkpoint after each; pauses timed by gc
/// callbacks.
fn survivors(g: subinterp::Gil<'_>, n: usize) -> Survivors {
    let pauses = Rc::new(RefCell::new(Vec::new()));
    let started = Rc::new(RefCell::new(None::<Instant>));
    let (p, s) = (pauses.clone(), started.clone());
    let id = g.gc_add_callback(move |_, phase, _, _| match phase {
        GcPhase::Start => *s.borrow_mut() = Some(Instant::now()),
        GcPhase::Stop => {
            if let Some(t) = s.borrow_mut().take() {
                p.borrow_mut().push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    });
    let kept = g.list(&[]).expect("alloc");
    let start = Instant::now();
    for _ in 0..n {
        kept.list_append(&g.list(&[]).expect("alloc")).expect("append");
        g.checkpoint().expect("checkpoint");
    }
    let loop_s = start.elapsed().as_secs_f64();
    g.gc_remove_callback(id);
    drop(kept);
    g.gc_collect(2).expect("collect");
    let pauses_ms = pauses.borrow().clone();
    Survivors { pauses_ms, loop_s }
}

struct Worker {
    pauses_ms: Vec<f64>,
    collected: usize,
    loop_s: f64,
    rss_peak: u64,
}

fn worker(rt: &Runtime, duration: Duration) -> Worker {
    let interp = rt.create(InterpreterConfig::isolated()).expect("create an interpreter");
    let w = interp
        .with_gil(|g| {
            let pauses = Rc::new(RefCell::new(Vec::new()));
            let collected = Rc::new(RefCell::new(0usize));
            let started = Rc::new(RefCell::new(None::<Instant>));
            let (p, c, s) = (pauses.clone(), collected.clone(), started.clone());
            g.gc_add_callback(move |_, phase, _, r| match phase {
                GcPhase::Start => *s.borrow_mut() = Some(Instant::now()),
                GcPhase::Stop => {
                    if let Some(t) = s.borrow_mut().take() {
                        p.borrow_mut().push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    *c.borrow_mut() += r.collected;
                }
            });
            let old = g.list(&[]).expect("alloc");
            let start = Instant::now();
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
            let pauses_ms = pauses.borrow().clone();
            let collected = *collected.borrow();
            Worker { pauses_ms, collected, loop_s, rss_peak }
        })
        .expect("enter the interpreter");
    interp.close().expect("close");
    w
}

/// The pause-share loop in CPython (`benches/gc_cpython.py --survivors --json`), if one is found.
fn cpython_survivors() -> Option<Value> {
    let python = std::env::var("SUBINTERP_CPYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/gc_cpython.py");
    let out = std::process::Command::new(python).args([script, "--survivors", "--json"]).output().ok()?;
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

/// Runs the scenario with `threads` interpreters for `duration`.
pub fn run(threads: usize, duration: Duration) -> Map<String, Value> {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let alone = rt.create(InterpreterConfig::isolated()).expect("create an interpreter");
    let surv = alone.with_gil(|g| survivors(g, 1_000_000)).expect("enter the interpreter");
    alone.close().expect("close");
    let workers: Vec<Worker> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads.max(1)).map(|_| s.spawn(|| worker(&rt, duration))).collect();
        hs.into_iter().map(|h| h.join().expect("worker panicked")).collect()
    });
    let mut pauses: Vec<f64> = workers.iter().flat_map(|w| w.pauses_ms.iter().copied()).collect();
    let total_pause_s: f64 = pauses.iter().sum::<f64>() / 1e3;
    let loop_s: f64 = workers.iter().map(|w| w.loop_s).sum();
    let collected: usize = workers.iter().map(|w| w.collected).sum();
    let mut m = Map::new();
    let mut sp = surv.pauses_ms;
    let s_pause: f64 = sp.iter().sum::<f64>() / 1e3;
    m.insert("survivors_1e6_collections".into(), Value::from(sp.len()));
    m.insert("survivors_1e6_loop_ms".into(), Value::from(round(1e3 * surv.loop_s, 2)));
    m.insert("survivors_1e6_pause_share_pct".into(), Value::from(round(100.0 * s_pause / surv.loop_s.max(1e-9), 2)));
    m.insert("survivors_1e6_pause_ms_max".into(), Value::from(round(percentile(&mut sp, 100.0), 3)));
    if let Some(py) = cpython_survivors() {
        m.insert("cpython_version".into(), py["python"].clone());
        for key in ["pause_share_pct", "pause_ms_max", "loop_ms"] {
            let v = py[format!("survivors_1e6_{key}")].as_f64().map_or(Value::Null, |x| Value::from(round(x, 2)));
            m.insert(format!("cpython_survivors_1e6_{key}"), v);
        }
        m.insert("cpython_survivors_1e6_collections".into(), py["survivors_1e6_collections"].clone());
    }
    m.insert("collections".into(), Value::from(pauses.len()));
    m.insert("pause_ms_p50".into(), Value::from(round(percentile(&mut pauses, 50.0), 3)));
    m.insert("pause_ms_p99".into(), Value::from(round(percentile(&mut pauses, 99.0), 3)));
    m.insert("pause_ms_max".into(), Value::from(round(percentile(&mut pauses, 100.0), 3)));
    m.insert("pause_share_pct".into(), Value::from(round(100.0 * total_pause_s / loop_s.max(1e-9), 2)));
    m.insert("collected_per_s".into(), Value::from(round(collected as f64 / (loop_s / threads.max(1) as f64), 0)));
    let peak = workers.iter().map(|w| w.rss_peak).max().unwrap_or(0);
    m.insert("rss_peak_mb".into(), Value::from(round(peak as f64 / (1024.0 * 1024.0), 2)));
    m
}
