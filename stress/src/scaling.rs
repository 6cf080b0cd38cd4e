//! The `scaling` scenario (see `main.rs`).
//!
//! Each timed part has its control, measured in the same run:
//!
//! * CPU-bound throughput: the same [`work`] loop on plain threads (no
//!   interpreter, no GIL, no checkpoint), at each thread count;
//! * create + close and lookup by id: the same traffic on a plain
//!   `RwLock<HashMap<u64, Arc<record>>>` (insert + remove of a 512-byte
//!   record; `get` + `Arc` clone);
//! * wake-up after a 1 ms blocking call beside a CPU-bound thread: two plain
//!   threads doing the same (the OS's share of the latency);
//!
//! and CPython's figures come from `stress/py/cpython_scaling.py`, run in the
//! CPython found (`cpython.rs`), in this run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use subinterp::{GilMode, Interpreter, InterpreterConfig, Runtime, RuntimeConfig};

use crate::control::{self, work, LoadCheck};
use crate::cpython::{self, Python};
use crate::plot::{Plot, Series, Throughput, WakeLatency};
use crate::{percentile, round, rss_bytes, Opts, Progress, Reference, Report, Summary, Table};

/// Live interpreters during the lookup phase.
const LIVE_FOR_LOOKUP: usize = 1_000;
/// Lookups timed together (one clock read per batch).
const LOOKUP_BATCH: usize = 1_000;
/// The blocking call of the wake-latency part.
const BLOCK: Duration = Duration::from_millis(1);

/// Progress steps this scenario reports.
pub fn steps(opts: &Opts) -> u64 {
    4 * opts.threads as u64 + 8
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

/// Latencies of one churn phase: create+close in µs, lookups in ns.
struct Churn {
    create_close_us: Vec<f64>,
    lookup_ns: Vec<f64>,
}

/// One thread runs `create_close` in a loop while `lookup_threads` threads
/// run `lookup` on random ids of `ids`, for `dur`.
fn churn_phase<C, L>(create_close: C, lookup: L, ids: Arc<Vec<u64>>, lookup_threads: usize, dur: Duration) -> Churn
where
    C: Fn() + Send + Sync + 'static,
    L: Fn(u64) + Send + Sync + 'static,
{
    let (create_close, lookup) = (Arc::new(create_close), Arc::new(lookup));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(lookup_threads + 2));
    let churn = {
        let (stop, start) = (stop.clone(), start.clone());
        thread::spawn(move || {
            start.wait();
            let mut lat_us = Vec::with_capacity(1 << 16);
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                create_close();
                lat_us.push(t0.elapsed().as_secs_f64() * 1e6);
            }
            lat_us
        })
    };
    let lookups: Vec<_> = (0..lookup_threads)
        .map(|k| {
            let (stop, start, ids, lookup) = (stop.clone(), start.clone(), ids.clone(), lookup.clone());
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
                        lookup(ids[(x % ids.len() as u64) as usize]);
                    }
                    per_lookup_ns.push(t0.elapsed().as_secs_f64() * 1e9 / LOOKUP_BATCH as f64);
                }
                per_lookup_ns
            })
        })
        .collect();
    start.wait();
    thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let create_close_us = churn.join().expect("churn thread");
    let lookup_ns = lookups.into_iter().flat_map(|h| h.join().expect("lookup thread")).collect();
    Churn { create_close_us, lookup_ns }
}

/// The control's stand-in for an interpreter record.
struct Record {
    _body: Box<[u64; 64]>,
}

/// Wake-up samples: `overshoot_us` is how much later than 1 ms the thread
/// was running again (with the GIL, for ours); `gil_us` the GIL's part.
struct Wake {
    overshoot_us: Vec<f64>,
    gil_us: Vec<f64>,
    cpu_loss_pct: f64,
}

/// The control of the wake-up part: a plain thread sleeping 1 ms in a loop
/// beside a plain CPU-bound thread.
fn wake_control(dur: Duration) -> Wake {
    let alone = control::cpu_phase(1, dur).rate;
    let stop = Arc::new(AtomicBool::new(false));
    let io = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut v = Vec::with_capacity(4096);
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                thread::sleep(BLOCK);
                v.push((t0.elapsed().saturating_sub(BLOCK)).as_secs_f64() * 1e6);
            }
            v
        })
    };
    let beside = control::cpu_phase(1, dur).rate;
    stop.store(true, Ordering::Relaxed);
    let overshoot_us = io.join().expect("control io thread");
    Wake { overshoot_us, gil_us: Vec::new(), cpu_loss_pct: (1.0 - beside / alone) * 100.0 }
}

fn speedup(v: &[f64]) -> f64 {
    match (v.first(), v.last()) {
        (Some(a), Some(b)) if *a > 0.0 => b / a,
        _ => f64::NAN,
    }
}

fn floats(v: &Value) -> Option<Vec<f64>> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect())
}

/// Runs the scenario.
pub fn run(opts: &Opts, progress: &Progress) -> Report {
    let rt = Runtime::new(RuntimeConfig::default()).expect("default config is valid");
    let mut report = Report::default();
    let t_max = opts.threads;
    let shared_cfg = InterpreterConfig { gil: GilMode::Shared, ..InterpreterConfig::isolated() };

    // 1. Throughput at 1..=threads: own GIL, one interpreter, shared GIL, control.
    let (mut own, mut one, mut shared, mut ctl) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut control_phases = Vec::new();
    for t in 1..=t_max {
        progress.step(format!("{t} plain thread(s), no runtime (control)"));
        let c = control::cpu_phase(t, opts.phase);
        ctl.push(c.rate);
        control_phases.push(c);
        progress.step(format!("{t} thread(s), one interpreter each (own GIL)"));
        let is: Vec<_> = (0..t).map(|_| rt.create(InterpreterConfig::isolated()).expect("create")).collect();
        own.push(cpu_phase(&is, opts.phase));
        is.into_iter().for_each(|i| drop(i.close().expect("close")));
        progress.step(format!("{t} thread(s) in one interpreter"));
        let i = rt.create(InterpreterConfig::isolated()).expect("create");
        one.push(cpu_phase(&vec![i.clone(); t], opts.phase));
        i.close().expect("close");
        progress.step(format!("{t} thread(s), one interpreter each, all on main's GIL (shared GIL)"));
        let is: Vec<_> = (0..t).map(|_| rt.create(shared_cfg.clone()).expect("create")).collect();
        shared.push(cpu_phase(&is, opts.phase));
        is.into_iter().for_each(|i| drop(i.close().expect("close")));
    }
    let mut rows = Vec::new();
    for t in 0..t_max {
        let cells = [own[t], one[t], shared[t], ctl[t]];
        let mut row = vec![(t + 1).to_string()];
        row.extend(cells.iter().map(|r| format!("{:.2}", r / 1e6)));
        row.extend([&own, &one, &shared, &ctl].iter().map(|v| format!("{:.2}", v[t] / v[0])));
        rows.push(row);
    }
    report.tables.push(Table {
        title: "CPU-bound throughput by thread count (Mops/s: 10^6 work units per second; speedup: over 1 thread of the same column)"
            .into(),
        columns: [
            "threads",
            "own_gil_mops",
            "one_interp_mops",
            "shared_gil_mops",
            "control_mops",
            "own_gil_speedup",
            "one_interp_speedup",
            "shared_gil_speedup",
            "control_speedup",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    });
    let curves: Vec<Value> = (0..t_max)
        .map(|t| {
            serde_json::json!({
                "threads": t + 1,
                "own_gil_mops": round(own[t] / 1e6, 3),
                "one_interp_mops": round(one[t] / 1e6, 3),
                "shared_gil_mops": round(shared[t] / 1e6, 3),
                "control_mops": round(ctl[t] / 1e6, 3),
            })
        })
        .collect();
    report.values.insert("throughput".into(), Value::from(curves));

    // 2. Churn: create + close in a loop while other threads look up among 1,000 live.
    progress.step(format!("create/close churn beside lookups among {LIVE_FOR_LOOKUP} live interpreters"));
    let live: Vec<_> =
        (0..LIVE_FOR_LOOKUP).map(|_| rt.create(InterpreterConfig::isolated()).expect("create")).collect();
    let ids: Arc<Vec<u64>> = Arc::new(live.iter().map(|i| i.id()).collect());
    let rt = Arc::new(rt);
    let lookup_threads = t_max.saturating_sub(1).max(1);
    let (r1, r2) = (rt.clone(), rt.clone());
    let mut ours = churn_phase(
        move || r1.create(InterpreterConfig::isolated()).expect("create").close().map(drop).expect("close"),
        move |id| drop(std::hint::black_box(r2.get(id).expect("live interpreter"))),
        ids.clone(),
        lookup_threads,
        opts.phase,
    );
    drop(live);
    progress.step("the same churn on a RwLock<HashMap> of plain records (control)");
    let map: Arc<RwLock<HashMap<u64, Arc<Record>>>> = Arc::new(RwLock::new(
        (0..LIVE_FOR_LOOKUP as u64).map(|id| (id, Arc::new(Record { _body: Box::new([id; 64]) }))).collect(),
    ));
    let (m1, m2) = (map.clone(), map.clone());
    let next = std::sync::atomic::AtomicU64::new(LIVE_FOR_LOOKUP as u64);
    let mut ctl_churn = churn_phase(
        move || {
            let id = next.fetch_add(1, Ordering::Relaxed);
            m1.write().expect("lock").insert(id, Arc::new(Record { _body: Box::new([id; 64]) }));
            drop(m1.write().expect("lock").remove(&id));
        },
        move |id| drop(std::hint::black_box(m2.read().expect("lock").get(&id).cloned().expect("live record"))),
        Arc::new((0..LIVE_FOR_LOOKUP as u64).collect()),
        lookup_threads,
        opts.phase,
    );

    // 3. Wake-up after a 1 ms blocking call beside a CPU-bound holder.
    progress.step("CPU-bound thread alone (baseline)");
    let x = rt.create(InterpreterConfig::isolated()).expect("create");
    let alone = cpu_phase(std::slice::from_ref(&x), opts.phase);
    progress.step("CPU-bound thread beside a thread doing 1 ms blocking calls");
    let stop = Arc::new(AtomicBool::new(false));
    let io = {
        let (x, stop) = (x.clone(), stop.clone());
        thread::spawn(move || {
            x.with_gil(move |g| {
                let (mut over, mut gil) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let back = g.allow_threads(|| {
                        thread::sleep(BLOCK);
                        Instant::now()
                    });
                    gil.push(back.elapsed().as_secs_f64() * 1e6);
                    over.push(t0.elapsed().saturating_sub(BLOCK).as_secs_f64() * 1e6);
                    g.checkpoint().expect("no interrupts");
                }
                (over, gil)
            })
            .expect("interpreter is open")
        })
    };
    let beside = cpu_phase(std::slice::from_ref(&x), opts.phase);
    stop.store(true, Ordering::Relaxed);
    let (overshoot_us, gil_us) = io.join().expect("io thread");
    let mut wake = Wake { overshoot_us, gil_us, cpu_loss_pct: (1.0 - beside / alone) * 100.0 };
    let stats = x.gil_stats();
    x.close().expect("close");
    progress.step("the same on two plain threads (control)");
    let mut wake_ctl = wake_control(opts.phase);

    // 4. Memory per idle interpreter, with 1,000 alive.
    progress.step("memory per idle interpreter (1,000 alive)");
    let rss0 = rss_bytes();
    let idle: Vec<_> = (0..1_000).map(|_| rt.create(InterpreterConfig::isolated()).expect("create")).collect();
    let per_idle_kib = rss_bytes().saturating_sub(rss0) as f64 / 1_000.0 / 1024.0;
    drop(idle);

    // 5. The one-thread control again: did the machine's load change?
    progress.step("1 plain thread again (control drift)");
    let again = control::cpu_phase(1, opts.phase);
    let load = LoadCheck::judge(
        &[control_phases[0].clone(), again],
        control_phases.last().filter(|p| p.threads > 1),
        opts.cores,
    );

    // 6. CPython, in this run.
    let py = cpython::find();
    let py_dur = opts.phase.as_secs_f64().min(1.0);
    progress.step(match py {
        Some(p) => format!("CPython {}: the same loops (stress/py/cpython_scaling.py, {py_dur} s a phase)", p.version),
        None => "CPython: none found".to_string(),
    });
    let py_out: Option<(&Python, Value)> = py.and_then(|p| {
        let args = vec!["--threads".into(), t_max.to_string(), "--duration".into(), py_dur.to_string()];
        match p.run("stress/py/cpython_scaling.py", cpython::SCALING_PY, &args) {
            Ok(v) => Some((p, v)),
            Err(e) => {
                report.notes.push(format!("CPython reference not measured: {e}"));
                None
            }
        }
    });
    let py_curve = |key: &str| py_out.as_ref().and_then(|(_, v)| floats(&v[key])).filter(|v| v.len() == t_max);
    // A CPython figure: `f` of the script's array (or number) under `key`.
    let py_ref = |key: &str, needs: &str, f: &dyn Fn(&[f64]) -> f64| -> Reference {
        let vals = py_out.as_ref().and_then(|(p, v)| {
            let v = &v[key];
            floats(v).or_else(|| v.as_f64().map(|x| vec![x])).filter(|v| !v.is_empty()).map(|v| (p, v))
        });
        match vals {
            Some((p, v)) => Reference::measured(f(&v), p),
            None => Reference::none(cpython::missing(needs)),
        }
    };
    let interp_api = "_interpreters (3.13+)";
    let pct = |p: f64| move |v: &[f64]| percentile(&mut v.to_vec(), p);

    // The summary: ours, control and reference side by side.
    let mut s = Summary::new(format!(
        "Summary ({t_max} thread(s); speedups at {t_max} threads over 1; latencies beside {lookup_threads} lookup thread(s) and {LIVE_FOR_LOOKUP} live interpreters)"
    ));
    let r = &mut report;
    let sp = |v: &[f64]| speedup(v);
    s.add(
        r,
        "own_gil_speedup",
        "x",
        2,
        speedup(&own),
        Some(speedup(&ctl)),
        Some(py_ref("own_gil_ops", interp_api, &sp)),
    );
    s.add(
        r,
        "one_interp_speedup",
        "x",
        2,
        speedup(&one),
        Some(speedup(&ctl)),
        Some(py_ref("one_interp_ops", "threads", &sp)),
    );
    s.add(
        r,
        "shared_gil_speedup",
        "x",
        2,
        speedup(&shared),
        Some(speedup(&ctl)),
        Some(py_ref("shared_gil_ops", interp_api, &sp)),
    );
    let cc = &mut ours.create_close_us;
    let ccc = &mut ctl_churn.create_close_us;
    s.add(
        r,
        "create_close_us_p50",
        "us",
        2,
        percentile(cc, 50.0),
        Some(percentile(ccc, 50.0)),
        Some(py_ref("create_close_us", interp_api, &pct(50.0))),
    );
    s.add(
        r,
        "create_close_us_p99",
        "us",
        2,
        percentile(cc, 99.0),
        Some(percentile(ccc, 99.0)),
        Some(py_ref("create_close_us", interp_api, &pct(99.0))),
    );
    let (lk, lkc) = (&mut ours.lookup_ns, &mut ctl_churn.lookup_ns);
    s.add(r, "lookup_ns_p50_1000", "ns", 1, percentile(lk, 50.0), Some(percentile(lkc, 50.0)), None);
    s.add(r, "lookup_ns_p99_1000", "ns", 1, percentile(lk, 99.0), Some(percentile(lkc, 99.0)), None);
    let (wo, wc) = (&mut wake.overshoot_us, &mut wake_ctl.overshoot_us);
    s.add(
        r,
        "wake_overshoot_us_p50",
        "us",
        1,
        percentile(wo, 50.0),
        Some(percentile(wc, 50.0)),
        Some(py_ref("wake_latency_us", "threads", &pct(50.0))),
    );
    s.add(
        r,
        "wake_overshoot_us_p99",
        "us",
        1,
        percentile(wo, 99.0),
        Some(percentile(wc, 99.0)),
        Some(py_ref("wake_latency_us", "threads", &pct(99.0))),
    );
    let wg = &mut wake.gil_us;
    s.add(r, "wake_latency_us_p50", "us", 1, percentile(wg, 50.0), None, None);
    s.add(r, "wake_latency_us_p99", "us", 1, percentile(wg, 99.0), None, None);
    s.add(r, "wake_latency_us_max", "us", 1, percentile(wg, 100.0), None, None);
    s.add(r, "cpu_throughput_loss_pct", "%", 2, wake.cpu_loss_pct, Some(wake_ctl.cpu_loss_pct), None);
    s.add(
        r,
        "idle_interpreter_kib",
        "KiB",
        2,
        per_idle_kib,
        None,
        Some(py_ref("idle_interpreter_kib", interp_api, &|v| v[0])),
    );
    s.finish(r);
    report.values.insert("gil_forced_switches".into(), Value::from(stats.forced_switches));
    report.values.insert("wake_samples".into(), Value::from(wake.gil_us.len()));
    report.values.insert("create_close_samples".into(), Value::from(ours.create_close_us.len()));
    report.notes.push(
        "own_gil: N threads, one interpreter each; one_interp: N threads in one interpreter (one GIL); shared_gil: N interpreters \
         on main's GIL (GilMode::Shared); control: the same loop on N plain threads, no runtime. Control of create/close and \
         lookup: the same traffic on a RwLock<HashMap> of 512-byte records. wake_overshoot: how much later than 1 ms a thread \
         returning from a 1 ms sleep runs again beside a CPU-bound thread (ours with the GIL, the control on plain threads, \
         CPython with its GIL); wake_latency: the GIL's part of ours (sleep return to GIL held)."
            .to_string(),
    );
    if let Some((p, _)) = &py_out {
        report.notes.push(format!(
            "CPython {} ({}): the same xorshift loop in Python (stress/py/cpython_scaling.py, {py_dur} s a phase); its speedups compare, \
             its rates are in its own units",
            p.version, p.exe
        ));
    }

    // Plots.
    let pts = |v: &[f64]| v.iter().enumerate().map(|(t, r)| ((t + 1) as f64, r / 1e6)).collect();
    let py_speedup = |key: &str, label: &str| {
        py_curve(key).map(|v| {
            Series::new(
                format!("CPython {} {label}", py.map_or("", |p| p.version.as_str())),
                v.iter().enumerate().map(|(t, r)| ((t + 1) as f64, r / v[0])).collect(),
            )
        })
    };
    let load_note = match (&load.warning, load.speedup) {
        (Some(_), Some(sp)) => format!("machine BUSY: control {sp:.2}x of {:.0}x ideal", load.ideal),
        (Some(_), None) => "machine BUSY (see the run's warning)".to_string(),
        (None, Some(sp)) => format!("machine quiet: control {sp:.2}x of {:.0}x ideal", load.ideal),
        (None, None) => "machine quiet".to_string(),
    };
    report.plots.push(Plot::Throughput(Throughput {
        load_note,
        series: vec![
            Series::new("own GIL (N interpreters)", pts(&own)),
            Series::new("one interpreter (N threads)", pts(&one)),
            Series::new("shared GIL (N interpreters on main's GIL)", pts(&shared)),
            Series::new("control (plain threads, no runtime)", pts(&ctl)),
        ],
        cpython_speedup: [
            py_speedup("own_gil_ops", "own GIL"),
            py_speedup("one_interp_ops", "one interpreter"),
            py_speedup("shared_gil_ops", "shared GIL"),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }));
    let mut samples = vec![
        ("subinterp: overshoot (OS + GIL)".to_string(), wake.overshoot_us.clone()),
        ("subinterp: GIL re-acquire only".to_string(), wake.gil_us.clone()),
        ("control: plain threads (OS only)".to_string(), wake_ctl.overshoot_us.clone()),
    ];
    if let (Some((p, _)), Some(v)) = (&py_out, py_out.as_ref().and_then(|(_, v)| floats(&v["wake_latency_us"]))) {
        samples.push((format!("CPython {}: overshoot (OS + GIL)", p.version), v));
    }
    report.plots.push(Plot::WakeLatency(WakeLatency { samples }));
    report.set_load(load);
    report
}
