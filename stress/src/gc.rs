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
use subinterp::{CollectResult, GcPhase, Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

use crate::control;
use crate::cpython;
use crate::plot::{GcPauses, Plot};
use crate::{percentile, rss_bytes, Opts, Progress, Reference, Report, Summary};

/// Progress steps of the scenario.
pub const STEPS: u64 = 10;

/// Collections of one loop: (start in s since the loop began, length in ms), and what they collected.
#[derive(Default)]
struct Pauses {
    t0: Option<Instant>,
    started: Option<(Instant, i64)>,
    pauses: Vec<(f64, f64)>,
    /// Per pause: whether the OS preempted the thread during it (an
    /// involuntary context switch: the pause then holds another process's
    /// time, not only the collector's).
    preempted: Vec<bool>,
    collected: usize,
}

/// Involuntary context switches of the calling thread so far (Linux
/// `getrusage(RUSAGE_THREAD)`), or 0 where that is not available.
fn involuntary_switches() -> i64 {
    #[cfg(target_os = "linux")]
    {
        let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `getrusage` writes a `rusage` into the pointer it is given,
        // which points to one (zeroed, so initialized whatever it writes).
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, u.as_mut_ptr()) } == 0 {
            // SAFETY: zero-initialized above and filled by the call.
            return unsafe { u.assume_init() }.ru_nivcsw;
        }
    }
    0
}

/// Registers a callback that records every collection into the returned cell.
fn record(g: Gil<'_>) -> (Rc<RefCell<Pauses>>, u64) {
    let p = Rc::new(RefCell::new(Pauses::default()));
    let q = p.clone();
    let id = g.gc_add_callback(move |_, phase, _, r: CollectResult| {
        let mut q = q.borrow_mut();
        match phase {
            // The switch count is read outside the timed interval.
            GcPhase::Start => {
                let n = involuntary_switches();
                q.started = Some((Instant::now(), n));
            }
            GcPhase::Stop => {
                if let (Some((s, n)), Some(t0)) = (q.started.take(), q.t0) {
                    let at = s.duration_since(t0).as_secs_f64();
                    q.pauses.push((at, s.elapsed().as_secs_f64() * 1e3));
                    q.preempted.push(involuntary_switches() != n);
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
    /// Per pause, whether it was preempted (ours; empty for CPython's).
    preempted: Vec<bool>,
    /// The interpreter's own pause statistics (`Gil::gc_pause_stats`), for
    /// our loops: automatic collections only.
    stats: Option<subinterp::PauseHistogram>,
    collected: usize,
    loop_s: f64,
    iterations: u64,
    rss_peak: u64,
}

impl LoopResult {
    /// A loop of ours: what its callback recorded, with the rest measured.
    fn recorded(
        p: &Pauses,
        stats: Option<subinterp::PauseHistogram>,
        loop_s: f64,
        iterations: u64,
        rss_peak: u64,
    ) -> Self {
        LoopResult {
            pauses: p.pauses.clone(),
            preempted: p.preempted.clone(),
            stats,
            collected: p.collected,
            loop_s,
            iterations,
            rss_peak,
        }
    }
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
    LoopResult::recorded(&p, stats, loop_s, n as u64, 0)
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
            LoopResult::recorded(&p, Some(g.gc_pause_stats().automatic), loop_s, i, rss_peak)
        })
        .expect("enter the interpreter");
    interp.close().expect("close");
    w
}

/// Two-list cycles of the live heap of the `garbage_live` and `request`
/// loops: 10^6 lists, and the list that holds them.
const LIVE_PAIRS: usize = 500_000;
/// The stride of the slots `garbage_live` replaces: `live[(i * STRIDE) % LIVE_PAIRS]`
/// (a prime, so every slot is replaced once every `LIVE_PAIRS` iterations).
const STRIDE: usize = 7919;
/// `garbage_live` samples RSS and the pending garbage every this many iterations.
const SAMPLE_EVERY: usize = 10_000;
/// Untimed requests before the timed ones (first-touch page faults).
const WARMUP_REQUESTS: usize = 5_000;

/// All tracked objects of the interpreter.
fn tracked(g: Gil<'_>) -> usize {
    g.gc_generation_sizes().iter().sum()
}

/// A new two-list cycle (a = [], b = [a], a.append(b)); returns `a`.
fn cycle<'i>(g: Gil<'i>) -> Obj<'i> {
    let a = g.list(&[]).expect("alloc");
    let b = g.list(std::slice::from_ref(&a)).expect("alloc");
    a.list_append(&b).expect("append");
    a
}

/// The live heap: `pairs` two-list cycles in one kept list, automatic
/// collection on while it is built, then a full collection (CPython's
/// script does the same).
fn build_live<'i>(g: Gil<'i>, pairs: usize) -> Obj<'i> {
    let live = g.list(&[]).expect("alloc");
    for _ in 0..pairs {
        live.list_append(&cycle(g)).expect("append");
        g.checkpoint().expect("checkpoint");
    }
    g.gc_collect(2).expect("collect");
    live
}

/// The `garbage_live` loop's result.
struct GarbageLive {
    run: LoopResult,
    /// RSS right before the live heap was built, and right after.
    rss_before: u64,
    rss_built: u64,
    /// Garbage objects tracked at the end of the loop (before any explicit
    /// collection), and the most seen at a sample.
    left: f64,
    pending_max: f64,
    /// Full (generation-2) collections during the loop.
    full: f64,
    /// The loop's pauses by the generation collected (generation 1: the
    /// increments in incremental mode).
    by_gen: [subinterp::GenPauses; 3],
    /// The incremental collector's counters after the loop.
    inc: subinterp::IncrementalStats,
}

/// A live heap of `pairs` two-list cycles, then `n` iterations each putting
/// a new cycle in place of an old one (which becomes garbage among old
/// objects), a checkpoint after each.
fn garbage_live(g: Gil<'_>, pairs: usize, n: usize) -> GarbageLive {
    g.gc_collect(2).expect("collect");
    let baseline = tracked(g);
    let rss_before = rss_bytes();
    let live = build_live(g, pairs);
    let live_objects = tracked(g) - baseline;
    let rss_built = rss_bytes();
    let mut rss_peak = rss_built;
    let mut pending_max = 0;
    g.gc_reset_pause_stats();
    let (p, id) = record(g);
    let start = Instant::now();
    p.borrow_mut().t0 = Some(start);
    for i in 0..n {
        live.list_set((i * STRIDE) % pairs, &cycle(g)).expect("set");
        g.checkpoint().expect("checkpoint");
        if i % SAMPLE_EVERY == SAMPLE_EVERY - 1 {
            rss_peak = rss_peak.max(rss_bytes());
            pending_max = pending_max.max(tracked(g).saturating_sub(baseline + live_objects));
        }
    }
    let loop_s = start.elapsed().as_secs_f64();
    let left = tracked(g).saturating_sub(baseline + live_objects);
    rss_peak = rss_peak.max(rss_bytes());
    let pause_stats = g.gc_pause_stats();
    let inc = g.gc_incremental_stats();
    g.gc_remove_callback(id);
    drop(live);
    g.gc_collect(2).expect("collect");
    let p = p.borrow();
    GarbageLive {
        run: LoopResult::recorded(&p, Some(pause_stats.automatic), loop_s, n as u64, rss_peak),
        rss_before,
        rss_built,
        left: left as f64,
        pending_max: pending_max.max(left) as f64,
        full: pause_stats.by_generation[2].count as f64,
        by_gen: pause_stats.by_generation,
        inc,
    }
}

/// Runs `garbage_live` in a fresh interpreter, stop-the-world if `stw`.
fn garbage_live_alone(rt: &Runtime, pairs: usize, n: usize, stw: bool) -> GarbageLive {
    let interp = rt.create(InterpreterConfig::isolated()).expect("create an interpreter");
    let r = interp
        .with_gil(|g| {
            if stw {
                g.gc_set_pause_budget(None).expect("stop-the-world");
            }
            garbage_live(g, pairs, n)
        })
        .expect("enter the interpreter");
    interp.close().expect("close");
    r
}

/// How the collector runs in a `request` loop.
#[derive(Clone, Copy, PartialEq)]
enum Collector {
    Incremental,
    StopTheWorld,
    Off,
}

/// The `request` loop's result: latencies in µs (sorted), RSS growth over
/// the timed requests, and the collections during them.
struct Requests {
    lat_us: Vec<f64>,
    rss_growth: u64,
    pauses: Vec<(f64, f64)>,
}

impl Requests {
    fn q(&self, p: f64) -> f64 {
        percentile(&mut self.lat_us.clone(), p)
    }
}

/// The constant strings of a request (CPython's are code constants).
struct RequestConsts<'i> {
    keys: [Obj<'i>; 7],
    path: Obj<'i>,
}

/// One request: a request dict and a response dict that refer to each other
/// (a cycle the collector must find), a few str/int entries and a list of 8
/// small lists; all dropped at the end.
fn request<'i>(g: Gil<'i>, c: &RequestConsts<'i>, i: usize) {
    let [k_path, k_id, k_user, k_status, k_items, k_request, k_response] = &c.keys;
    let req = g.dict().expect("alloc");
    req.dict_set(k_path, &c.path).expect("set");
    req.dict_set(k_id, &g.int(i as i64).expect("alloc")).expect("set");
    req.dict_set(k_user, &g.str(&format!("user-{}", i % 1000)).expect("alloc")).expect("set");
    let items = g.list(&[]).expect("alloc");
    for j in 0..8 {
        items.list_append(&g.list(&[g.int(j).expect("alloc")]).expect("alloc")).expect("append");
    }
    let resp = g.dict().expect("alloc");
    resp.dict_set(k_status, &g.int(200).expect("alloc")).expect("set");
    resp.dict_set(k_items, &items).expect("set");
    resp.dict_set(k_request, &req).expect("set");
    req.dict_set(k_response, &resp).expect("set");
}

/// A live heap of `pairs` two-list cycles, then `warmup` untimed and `r`
/// timed requests, each followed by a checkpoint (collections inline, in
/// the request's time), in a fresh interpreter.
fn requests_alone(rt: &Runtime, pairs: usize, r: usize, collector: Collector) -> Requests {
    let interp = rt.create(InterpreterConfig::isolated()).expect("create an interpreter");
    let out = interp
        .with_gil(|g| {
            if collector == Collector::StopTheWorld {
                g.gc_set_pause_budget(None).expect("stop-the-world");
            }
            let live = build_live(g, pairs);
            if collector == Collector::Off {
                g.gc_disable();
            }
            let c = RequestConsts {
                keys: ["path", "id", "user", "status", "items", "request", "response"]
                    .map(|k| g.str(k).expect("alloc")),
                path: g.str("/items").expect("alloc"),
            };
            for i in 0..WARMUP_REQUESTS {
                request(g, &c, i);
                g.checkpoint().expect("checkpoint");
            }
            let (p, id) = record(g);
            let rss0 = rss_bytes();
            let mut lat_us = Vec::with_capacity(r);
            let start = Instant::now();
            p.borrow_mut().t0 = Some(start);
            for i in 0..r {
                let t = Instant::now();
                request(g, &c, i);
                g.checkpoint().expect("checkpoint");
                lat_us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let rss_growth = rss_bytes().saturating_sub(rss0);
            g.gc_remove_callback(id);
            g.gc_enable();
            drop(c);
            drop(live);
            g.gc_collect(2).expect("collect");
            lat_us.sort_by(|a, b| a.total_cmp(b));
            let pauses = p.borrow().pauses.clone();
            Requests { lat_us, rss_growth, pauses }
        })
        .expect("enter the interpreter");
    interp.close().expect("close");
    out
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

/// The longest pause the OS did not preempt (ms; 0 without any), and how
/// many pauses it preempted.
fn unpreempted(r: &LoopResult) -> (f64, f64) {
    let max = r.pauses.iter().zip(&r.preempted).filter(|(_, &p)| !p).map(|(p, _)| p.1).fold(0.0, f64::max);
    (max, r.preempted.iter().filter(|&&p| p).count() as f64)
}

/// CPython's two loops, parsed.
fn py_loop(v: &Value) -> Option<LoopResult> {
    let pauses = v["pauses"].as_array()?.iter().filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?))).collect();
    Some(LoopResult {
        pauses,
        preempted: Vec::new(),
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
    // The same loop with the stop-the-world collector (CPython 3.13's
    // automatic full collections), in a fresh interpreter.
    let alone = rt.create(InterpreterConfig::isolated()).expect("create an interpreter");
    let surv_stw = alone
        .with_gil(|g| {
            g.gc_set_pause_budget(None).expect("stop-the-world");
            survivors(g, 1_000_000)
        })
        .expect("enter the interpreter");
    alone.close().expect("close");

    // The live-heap loops: 10^6 live lists whatever the duration, the
    // iterations scaled with it (full at --duration 1).
    let scale = opts.phase.as_secs_f64().min(1.0);
    let n_replace = ((1e6 * scale) as usize).max(100_000);
    let n_requests = ((2e5 * scale) as usize).max(20_000);
    progress.step(format!("garbage among 10^6 live lists: {n_replace} replacements, incremental collector"));
    let gl_inc = garbage_live_alone(&rt, LIVE_PAIRS, n_replace, false);
    progress.step(format!("garbage among 10^6 live lists: {n_replace} replacements, stop-the-world collector"));
    let gl_stw = garbage_live_alone(&rt, LIVE_PAIRS, n_replace, true);
    progress.step(format!("{n_requests} requests beside 10^6 live lists, incremental collector"));
    let rq_inc = requests_alone(&rt, LIVE_PAIRS, n_requests, Collector::Incremental);
    progress.step(format!("{n_requests} requests beside 10^6 live lists, stop-the-world collector"));
    let rq_stw = requests_alone(&rt, LIVE_PAIRS, n_requests, Collector::StopTheWorld);
    progress.step(format!("{n_requests} requests beside 10^6 live lists, collector off"));
    let rq_off = requests_alone(&rt, LIVE_PAIRS, n_requests, Collector::Off);

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
        Some(p) => format!("CPython {}: every loop (stress/py/cpython_gc.py, churn {py_dur} s)", p.version),
        None => "CPython: none found".into(),
    });
    let py_out = py.and_then(|p| {
        let args = [
            "--duration".into(),
            py_dur.to_string(),
            "--pairs".into(),
            LIVE_PAIRS.to_string(),
            "--replace".into(),
            n_replace.to_string(),
            "--requests".into(),
            n_requests.to_string(),
            "--warmup".into(),
            WARMUP_REQUESTS.to_string(),
        ];
        match p.run("stress/py/cpython_gc.py", cpython::GC_PY, &args) {
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
        preempted: workers.iter().flat_map(|w| w.preempted.iter().copied()).collect(),
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
    s.add(r, "survivors_1e6_pause_ms_max_unpreempted", "ms", 3, unpreempted(&surv).0, None, None);
    s.add(r, "survivors_1e6_pauses_preempted", "count", 0, unpreempted(&surv).1, None, None);
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
    s.add(
        r,
        "survivors_1e6_stw_pause_share_pct",
        "%",
        2,
        share_pct(&surv_stw),
        None,
        Some(reference(&py_surv, &share_pct)),
    );
    s.add(r, "survivors_1e6_stw_pause_ms_max", "ms", 3, pmax(&surv_stw), None, Some(reference(&py_surv, &pmax)));
    s.add(
        r,
        "survivors_1e6_stw_loop_ms",
        "ms",
        2,
        surv_stw.loop_s * 1e3,
        Some(ctl_surv_ms),
        Some(reference(&py_surv, &|r| r.loop_s * 1e3)),
    );
    s.add(r, "pause_ms_p50", "ms", 3, p(50.0)(&churn), None, Some(reference(&py_churn, &p(50.0))));
    s.add(r, "pause_ms_p99", "ms", 3, p(99.0)(&churn), None, Some(reference(&py_churn, &p(99.0))));
    s.add(r, "pause_ms_max", "ms", 3, pmax(&churn), None, Some(reference(&py_churn, &pmax)));
    s.add(r, "pause_ms_max_unpreempted", "ms", 3, unpreempted(&churn).0, None, None);
    s.add(r, "pauses_preempted", "count", 0, unpreempted(&churn).1, None, None);
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

    // Garbage among a large live heap, ours in both modes beside CPython's.
    let pyv = |path: &[&str]| -> Option<f64> {
        let v = path.iter().try_fold(&py_out.as_ref()?.1, |v, k| v.get(*k))?;
        v.as_f64()
    };
    let measured = |v: Option<f64>| match (v, &py_out) {
        (Some(v), Some((p, _))) => Reference::measured(v, p),
        _ => Reference::none(cpython::missing("gc.callbacks")),
    };
    let py_gl = py_out.as_ref().and_then(|(_, v)| py_loop(&v["garbage_live"]));
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let py_gl_growth = match (pyv(&["garbage_live", "rss_peak"]), pyv(&["garbage_live", "rss_before"])) {
        (Some(a), Some(b)) => Some(mib(a - b)),
        _ => None,
    };
    let py_gl_heap = match (pyv(&["garbage_live", "rss_built"]), pyv(&["garbage_live", "rss_before"])) {
        (Some(a), Some(b)) => Some(mib(a - b)),
        _ => None,
    };
    let py_gl_loop = match (pyv(&["garbage_live", "rss_peak"]), pyv(&["garbage_live", "rss_built"])) {
        (Some(a), Some(b)) => Some(mib(a - b)),
        _ => None,
    };
    s.add(r, "garbage_live_iterations", "count", 0, n_replace as f64, None, None);
    for (pfx, gl) in [("garbage_live", &gl_inc), ("garbage_live_stw", &gl_stw)] {
        let run = &gl.run;
        let k = |name: &str| format!("{pfx}_{name}");
        s.add(r, &k("loop_ms"), "ms", 2, run.loop_s * 1e3, None, Some(reference(&py_gl, &|r| r.loop_s * 1e3)));
        s.add(r, &k("pause_share_pct"), "%", 2, share_pct(run), None, Some(reference(&py_gl, &share_pct)));
        s.add(r, &k("pause_ms_max"), "ms", 3, pmax(run), None, Some(reference(&py_gl, &pmax)));
        s.add(r, &k("pause_ms_max_unpreempted"), "ms", 3, unpreempted(run).0, None, None);
        s.add(r, &k("pauses_preempted"), "count", 0, unpreempted(run).1, None, None);
        s.add(r, &k("pause_ms_p50"), "ms", 3, p(50.0)(run), None, Some(reference(&py_gl, &p(50.0))));
        s.add(r, &k("pause_ms_p99"), "ms", 3, p(99.0)(run), None, Some(reference(&py_gl, &p(99.0))));
        s.add(
            r,
            &k("collections"),
            "count",
            0,
            run.pauses.len() as f64,
            None,
            Some(reference(&py_gl, &|r| r.pauses.len() as f64)),
        );
        s.add(r, &k("full_collections"), "count", 0, gl.full, None, Some(measured(pyv(&["garbage_live", "full"]))));
        let [_, g1, g2] = gl.by_gen;
        let mean = |g: subinterp::GenPauses| ms_of(g.total) / g.count.max(1) as f64;
        for (name, ours) in [
            ("gen1_pause_ms_mean", mean(g1)),
            ("gen1_pause_ms_max", ms_of(g1.max)),
            ("full_pause_ms_max", ms_of(g2.max)),
        ] {
            s.add(r, &k(name), "ms", 3, ours, None, Some(measured(pyv(&["garbage_live", name]))));
        }
        let growth = mib(run.rss_peak.saturating_sub(gl.rss_before) as f64);
        s.add(r, &k("rss_growth_mb"), "MiB", 1, growth, None, Some(measured(py_gl_growth)));
        let heap = mib(gl.rss_built.saturating_sub(gl.rss_before) as f64);
        s.add(r, &k("rss_heap_mb"), "MiB", 1, heap, None, Some(measured(py_gl_heap)));
        let in_loop = mib(run.rss_peak.saturating_sub(gl.rss_built) as f64);
        s.add(r, &k("rss_loop_growth_mb"), "MiB", 1, in_loop, None, Some(measured(py_gl_loop)));
        s.add(r, &k("left_objects"), "objects", 0, gl.left, None, Some(measured(pyv(&["garbage_live", "left"]))));
        s.add(
            r,
            &k("pending_max_objects"),
            "objects",
            0,
            gl.pending_max,
            None,
            Some(measured(pyv(&["garbage_live", "pending_max"]))),
        );
    }
    // What the incremental collector did in the incremental run.
    s.add(r, "garbage_live_increments", "count", 0, gl_inc.inc.increments as f64, None, None);
    s.add(r, "garbage_live_suspects_examined", "objects", 0, gl_inc.inc.suspects_examined as f64, None, None);
    s.add(r, "garbage_live_deferred", "objects", 0, gl_inc.inc.deferred as f64, None, None);

    // The request server: latency of every request, collections included.
    s.add(r, "request_count", "count", 0, n_requests as f64, None, None);
    for (pfx, rq, py_key) in [
        ("request", &rq_inc, "request_gc"),
        ("request_stw", &rq_stw, "request_gc"),
        ("request_nogc", &rq_off, "request_nogc"),
    ] {
        let k = |name: &str| format!("{pfx}_{name}");
        for (name, q, py_name) in [
            ("us_p50", 50.0, "p50_us"),
            ("us_p99", 99.0, "p99_us"),
            ("us_p999", 99.9, "p999_us"),
            ("us_max", 100.0, "max_us"),
        ] {
            s.add(r, &k(name), "us", 2, rq.q(q), None, Some(measured(pyv(&[py_key, py_name]))));
        }
        let py_growth = pyv(&[py_key, "rss_growth"]).map(mib);
        s.add(r, &k("rss_growth_mb"), "MiB", 1, mib(rq.rss_growth as f64), None, Some(measured(py_growth)));
        let py_n = pyv(&[py_key, "collections"]);
        s.add(r, &k("collections"), "count", 0, rq.pauses.len() as f64, None, Some(measured(py_n)));
        let rq_pmax = rq.pauses.iter().map(|p| p.1).fold(0.0, f64::max);
        s.add(r, &k("pause_ms_max"), "ms", 3, rq_pmax, None, Some(measured(pyv(&[py_key, "pause_ms_max"]))));
    }
    let py_ratio = match (pyv(&["request_gc", "p99_us"]), pyv(&["request_nogc", "p99_us"])) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let nogc_p99 = rq_off.q(99.0);
    s.add(r, "request_p99_ratio", "x", 2, rq_inc.q(99.0) / nogc_p99, None, Some(measured(py_ratio)));
    s.add(r, "request_stw_p99_ratio", "x", 2, rq_stw.q(99.0) / nogc_p99, None, Some(measured(py_ratio)));
    let py_ratio999 = match (pyv(&["request_gc", "p999_us"]), pyv(&["request_nogc", "p999_us"])) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    s.add(r, "request_p999_ratio", "x", 2, rq_inc.q(99.9) / rq_off.q(99.9), None, Some(measured(py_ratio999)));
    s.finish(r);
    report.notes.push(
        "survivors: 10^6 new lists appended to one kept list, automatic collection at a checkpoint after each (_stw: the same with gc_set_pause_budget(None), stop-the-world as CPython 3.13); churn: two-list \
         cycles dropped at once beside an old generation growing to 200,000 lists. control: the same allocations as plain Boxes, \
         no collector. CPython: the same loops on one thread (stress/py/cpython_gc.py), pauses from gc.callbacks."
            .to_string(),
    );

    report.notes.push(format!(
        "garbage_live: a live heap of {LIVE_PAIRS} two-list cycles (10^6 lists) in one kept list, then {n_replace} iterations \
         each putting a new cycle at live[(i * {STRIDE}) % {LIVE_PAIRS}] (the old one becomes garbage among old objects), a \
         checkpoint after each, in a fresh interpreter: incremental collector (default budget) and stop-the-world \
         (_stw); rss growth: peak RSS over the loop minus RSS before the heap was built (heap: after it was built minus before; \
         loop growth: peak minus after, the steadier figure: the same heap's RSS was seen anywhere from 30 to 52 MiB \
         between runs, in either mode and order, as the allocator reuses what the earlier loops freed); left/pending: tracked objects beyond \
         the live ones at the end and at most at a sample every {SAMPLE_EVERY} iterations (CPython: 2 per iteration minus \
         what gc.callbacks reported collected)."
    ));
    report.notes.push(format!(
        "request: the same live heap, then {WARMUP_REQUESTS} untimed and {n_requests} timed requests (a request dict and a \
         response dict referring to each other, 3 str/int entries, a list of 8 one-int lists, all dropped; a checkpoint \
         after each, in the request's time), in a fresh interpreter each: incremental, stop-the-world (_stw), collector off \
         (_nogc, its cyclic garbage accumulates: the RSS growth; its slower p99 is probably that growth's cost); ratio: \
         p99 (p99.9) over _nogc's. CPython: gc enabled / gc.disable(), perf_counter_ns around each request."
    ));

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
    runs.push(("subinterp: garbage among live (incremental)".to_string(), gl_inc.run.pauses.clone()));
    runs.push(("subinterp: garbage among live (stop-the-world)".to_string(), gl_stw.run.pauses.clone()));
    if let (Some((p, _)), Some(r)) = (&py_out, &py_gl) {
        runs.push((format!("CPython {}: garbage among live", p.version), r.pauses.clone()));
    }
    report.plots.push(Plot::GcPauses(GcPauses { runs }));
    report.set_load(load);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_unpreempted_pause_leaves_the_preempted_ones_out() {
        let r = LoopResult {
            pauses: vec![(0.0, 1.0), (0.1, 5.0), (0.2, 2.0)],
            preempted: vec![false, true, false],
            stats: None,
            collected: 0,
            loop_s: 1.0,
            iterations: 0,
            rss_peak: 0,
        };
        assert_eq!(unpreempted(&r), (2.0, 1.0));
    }
}
