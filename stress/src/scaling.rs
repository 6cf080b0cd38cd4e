//! The `scaling` scenario (see `main.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use subinterp::{Interpreter, InterpreterConfig, Runtime, RuntimeConfig};

use crate::{percentile, round, rss_bytes, Opts, Progress, Report};

/// Live interpreters during the lookup phase.
const LIVE_FOR_LOOKUP: usize = 1_000;
/// Lookups timed together (one clock read per batch).
const LOOKUP_BATCH: usize = 1_000;

/// Progress steps this scenario reports.
pub fn steps(opts: &Opts) -> u64 {
    2 * opts.threads as u64 + 3
}

/// A unit of CPU-bound "bytecode": some integer work, then a checkpoint.
#[inline]
fn work(state: &mut u64) {
    for _ in 0..32 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
    }
}

/// Runs one CPU-bound thread per entry of `interps` for `dur`; returns total
/// work units per second.
fn cpu_phase(interps: &[Interpreter], dur: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(interps.len() + 1));
    let handles: Vec<_> = interps
        .iter()
        .enumerate()
        .map(|(k, interp)| {
            let (interp, stop, start) = (interp.clone(), stop.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                interp
                    .with_gil(|g| {
                        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ k as u64;
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            work(&mut state);
                            n += 1;
                            g.checkpoint().expect("no interrupts in this scenario");
                        }
                        std::hint::black_box(state);
                        n
                    })
                    .expect("interpreter is open")
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let total: u64 = handles.into_iter().map(|h| h.join().expect("worker panicked")).sum();
    total as f64 / t0.elapsed().as_secs_f64()
}

/// Runs the scenario.
pub fn run(opts: &Opts, progress: &Progress) -> Report {
    let rt = Runtime::new(RuntimeConfig::default()).expect("default config is valid");
    let mut report = Report::default();
    let t_max = opts.threads;

    // 1. Own GIL vs shared GIL, 1..=threads.
    let mut rows = vec![vec![
        "threads".to_string(),
        "own GIL Mops/s".into(),
        "own speedup".into(),
        "shared GIL Mops/s".into(),
        "shared speedup".into(),
    ]];
    let (mut own1, mut shared1) = (0.0, 0.0);
    let (mut own_speedup, mut shared_speedup) = (1.0, 1.0);
    for t in 1..=t_max {
        progress.step(format!("{t} thread(s), one interpreter each"));
        let own: Vec<_> = (0..t).map(|_| rt.create(InterpreterConfig::isolated()).expect("create")).collect();
        let own_rate = cpu_phase(&own, opts.phase);
        for i in own {
            i.close().expect("close");
        }
        progress.step(format!("{t} thread(s), one shared interpreter"));
        let shared = rt.create(InterpreterConfig::isolated()).expect("create");
        let shared_rate = cpu_phase(&vec![shared.clone(); t], opts.phase);
        shared.close().expect("close");
        if t == 1 {
            own1 = own_rate;
            shared1 = shared_rate;
        }
        own_speedup = own_rate / own1;
        shared_speedup = shared_rate / shared1;
        rows.push(vec![
            t.to_string(),
            format!("{:.2}", own_rate / 1e6),
            format!("{own_speedup:.2}x"),
            format!("{:.2}", shared_rate / 1e6),
            format!("{shared_speedup:.2}x"),
        ]);
    }
    report.tables.push(("CPU-bound threads: own GIL per interpreter vs one shared GIL".into(), rows));
    report.values.insert("own_gil_speedup".into(), Value::from(round(own_speedup, 3)));
    report.values.insert("shared_gil_speedup".into(), Value::from(round(shared_speedup, 3)));

    // 2. Churn: create + close in a loop while other threads look up among 1,000 live.
    progress.step(format!("create/close churn beside lookups among {LIVE_FOR_LOOKUP} live interpreters"));
    let live: Vec<_> =
        (0..LIVE_FOR_LOOKUP).map(|_| rt.create(InterpreterConfig::isolated()).expect("create")).collect();
    let ids: Arc<Vec<u64>> = Arc::new(live.iter().map(|i| i.id()).collect());
    let rt = Arc::new(rt);
    let lookup_threads = t_max.saturating_sub(1).max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(lookup_threads + 2));
    let churn = {
        let (rt, stop, start) = (rt.clone(), stop.clone(), start.clone());
        thread::spawn(move || {
            start.wait();
            let mut lat_us = Vec::with_capacity(1 << 16);
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let i = rt.create(InterpreterConfig::isolated()).expect("create");
                i.close().expect("close");
                lat_us.push(t0.elapsed().as_secs_f64() * 1e6);
            }
            lat_us
        })
    };
    let lookups: Vec<_> = (0..lookup_threads)
        .map(|k| {
            let (rt, stop, start, ids) = (rt.clone(), stop.clone(), start.clone(), ids.clone());
            thread::spawn(move || {
                start.wait();
                let mut per_lookup_ns = Vec::with_capacity(1 << 14);
                let mut x = 0x2545_F491_4F6C_DD1Du64 ^ k as u64;
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    for _ in 0..LOOKUP_BATCH {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let id = ids[(x % ids.len() as u64) as usize];
                        std::hint::black_box(rt.get(id).expect("live interpreter"));
                    }
                    per_lookup_ns.push(t0.elapsed().as_secs_f64() * 1e9 / LOOKUP_BATCH as f64);
                }
                per_lookup_ns
            })
        })
        .collect();
    start.wait();
    thread::sleep(opts.phase);
    stop.store(true, Ordering::Relaxed);
    let mut churn_us = churn.join().expect("churn thread");
    let mut lookup_ns: Vec<f64> = lookups.into_iter().flat_map(|h| h.join().expect("lookup thread")).collect();
    let cc_p50 = percentile(&mut churn_us, 50.0);
    let cc_p99 = percentile(&mut churn_us, 99.0);
    let lk_p50 = percentile(&mut lookup_ns, 50.0);
    let lk_p99 = percentile(&mut lookup_ns, 99.0);
    drop(live);
    report.tables.push((
        format!("Interpreter churn beside {lookup_threads} lookup thread(s), {LIVE_FOR_LOOKUP} live interpreters"),
        vec![
            vec!["measure".into(), "p50".into(), "p99".into(), "count".into()],
            vec![
                "create+close".into(),
                format!("{cc_p50:.1} us"),
                format!("{cc_p99:.1} us"),
                churn_us.len().to_string(),
            ],
            vec![
                "lookup by id".into(),
                format!("{lk_p50:.1} ns"),
                format!("{lk_p99:.1} ns"),
                (lookup_ns.len() * LOOKUP_BATCH).to_string(),
            ],
        ],
    ));
    report.values.insert("create_close_us_p50".into(), Value::from(round(cc_p50, 2)));
    report.values.insert("create_close_us_p99".into(), Value::from(round(cc_p99, 2)));
    report.values.insert("lookup_ns_p50_1000".into(), Value::from(round(lk_p50, 1)));
    report.values.insert("lookup_ns_p99_1000".into(), Value::from(round(lk_p99, 1)));

    // 3. Wake latency of a thread returning from a blocking call beside a CPU-bound holder.
    progress.step("CPU-bound thread alone (baseline)");
    let x = rt.create(InterpreterConfig::isolated()).expect("create");
    let alone = cpu_phase(std::slice::from_ref(&x), opts.phase);
    progress.step("CPU-bound thread beside a thread doing 1 ms blocking calls");
    let stop = Arc::new(AtomicBool::new(false));
    let io = {
        let (x, stop) = (x.clone(), stop.clone());
        thread::spawn(move || {
            x.with_gil(move |g| {
                let mut lat_us = Vec::with_capacity(4096);
                while !stop.load(Ordering::Relaxed) {
                    let back = g.allow_threads(|| {
                        thread::sleep(Duration::from_millis(1));
                        Instant::now()
                    });
                    lat_us.push(back.elapsed().as_secs_f64() * 1e6);
                    g.checkpoint().expect("no interrupts");
                }
                lat_us
            })
            .expect("interpreter is open")
        })
    };
    let beside = cpu_phase(std::slice::from_ref(&x), opts.phase);
    stop.store(true, Ordering::Relaxed);
    let mut wake_us = io.join().expect("io thread");
    let stats = x.gil_stats();
    x.close().expect("close");
    let w50 = percentile(&mut wake_us, 50.0);
    let w99 = percentile(&mut wake_us, 99.0);
    let wmax = percentile(&mut wake_us, 100.0);
    let loss = (1.0 - beside / alone) * 100.0;
    report.tables.push((
        "GIL wake latency: thread returning from a 1 ms blocking call beside a CPU-bound holder".into(),
        vec![
            vec!["p50".into(), "p99".into(), "max".into(), "samples".into(), "CPU thread loss".into()],
            vec![
                format!("{w50:.1} us"),
                format!("{w99:.1} us"),
                format!("{wmax:.1} us"),
                wake_us.len().to_string(),
                format!("{loss:.2} %"),
            ],
        ],
    ));
    report.values.insert("wake_latency_us_p50".into(), Value::from(round(w50, 1)));
    report.values.insert("wake_latency_us_p99".into(), Value::from(round(w99, 1)));
    report.values.insert("wake_latency_us_max".into(), Value::from(round(wmax, 1)));
    report.values.insert("cpu_throughput_loss_pct".into(), Value::from(round(loss, 2)));
    report.values.insert("gil_forced_switches".into(), Value::from(stats.forced_switches));

    // 4. Memory per idle interpreter, with 1,000 alive.
    progress.step("memory per idle interpreter (1,000 alive)");
    let rss0 = rss_bytes();
    let idle: Vec<_> = (0..1_000).map(|_| rt.create(InterpreterConfig::isolated()).expect("create")).collect();
    let rss1 = rss_bytes();
    let per_idle_kib = rss1.saturating_sub(rss0) as f64 / 1_000.0 / 1024.0;
    drop(idle);
    report.values.insert("idle_interpreter_kib".into(), Value::from(round(per_idle_kib, 2)));
    report.notes.push(format!(
        "memory per idle interpreter (1,000 alive): {per_idle_kib:.2} KiB RSS (CPython 3.14: ~2.28 MiB)"
    ));
    report.notes.push(
        "reference: CPython 3.14 sub-interpreters 1.90x own-GIL speedup at 2 threads, 13.7 ms create+close, \
         5.2 ms median convoy wake latency"
            .to_string(),
    );
    report
}
