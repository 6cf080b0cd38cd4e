//! The `memory` stress scenario: allocation churn in several interpreters at
//! once, each on its own thread, with a live set that rises and falls.
//!
//! Each worker repeats: rise to `TARGET_LIVE` bytes of mixed blocks (mostly
//! small, some large, with random frees along the way), then fall to 5 % of
//! that, oldest first with local shuffling (a sliding window, as a program's
//! temporary data). At the end the live set falls to zero and RSS is read
//! again while the interpreters are still open: it shows what the heaps gave
//! back, not what `close()` unmapped.
//!
//! `rss_before` is read after one warm-up rise and fall, with every worker
//! thread alive and parked at a barrier: thread stacks, the system
//! allocator's per-thread arenas (large blocks come from it) and the
//! harness's own vectors are then in both readings, so the ratio measures
//! the heaps. Workers meet at barriers; nothing sleeps to wait.
//!
//! Control: the same churn (same sizes, same order) with `Box<[u8]>` from
//! the system allocator on plain threads, no runtime, measured after ours in
//! the same run (`control.*` keys; its RSS beside ours in `memory_rss.svg`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::control;
use crate::plot::{Plot, RssTimeline, Series};
use crate::{rss_bytes, Opts, Progress, Report, Summary};
use serde_json::{Map, Value};
use subinterp::{Block, Gil, Interpreter, InterpreterConfig, Runtime, RuntimeConfig};

/// Live bytes each worker rises to.
const TARGET_LIVE: usize = 24 << 20;
/// Fraction of the target it falls back to (1/20 = 5 %).
const FALL_DIVISOR: usize = 20;

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 100.0).round() / 100.0
}

/// xorshift64: cheap, deterministic per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Mostly small sizes (16..=512), 1 in 32 large (513..=8192).
    fn size(&mut self) -> usize {
        if self.below(32) == 0 {
            513 + self.below(7680)
        } else {
            16 + self.below(497)
        }
    }
}

/// What one worker did.
struct WorkerResult {
    allocs: u64,
    elapsed: Duration,
    arenas_returned: u64,
    error: Option<String>,
}

/// Rises and falls until `deadline` (at least one cycle); ends with the live
/// set at zero. Returns the number of allocations.
fn churn<'i>(g: &Gil<'i>, live: &mut Vec<Block<'i>>, rng: &mut Rng, deadline: Instant) -> subinterp::Result<u64> {
    let mut live_bytes = 0usize;
    let mut allocs = 0u64;
    loop {
        // Rise, with a random free now and then.
        while live_bytes < TARGET_LIVE {
            let mut b = g.alloc(rng.size())?;
            b[0] = allocs as u8;
            live_bytes += b.len();
            live.push(b);
            allocs += 1;
            if allocs & 7 == 0 {
                let k = rng.below(live.len());
                live_bytes -= live.swap_remove(k).len();
            }
            if allocs & 4095 == 0 {
                g.checkpoint()?;
            }
        }
        // Fall to 5 %: oldest first, shuffled within windows of 1,024.
        for w in live.chunks_mut(1024) {
            for i in (1..w.len()).rev() {
                w.swap(i, rng.below(i + 1));
            }
        }
        let keep = live.len() / FALL_DIVISOR;
        for b in live.drain(..live.len() - keep) {
            live_bytes -= b.len();
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    live.clear(); // the live set falls to zero (the vector keeps its capacity)
    Ok(allocs)
}

/// The barriers a worker meets: warmed up, start, fallen, done.
struct Phases {
    warmed: Barrier,
    start: Barrier,
    fallen: Barrier,
    done: Barrier,
}

fn worker(interp: &Interpreter, seed: u64, duration: Duration, phases: &Phases) -> WorkerResult {
    let r = interp.with_gil(|g| {
        let mut rng = Rng(seed | 1);
        let mut live = Vec::new();
        let warm = churn(&g, &mut live, &mut rng, Instant::now());
        let reclaimed_before = g.memory_stats().arenas_reclaimed;
        phases.warmed.wait();
        phases.start.wait();
        let start = Instant::now();
        let allocs = warm.and_then(|_| churn(&g, &mut live, &mut rng, start + duration));
        let elapsed = start.elapsed();
        phases.fallen.wait();
        phases.done.wait();
        (allocs, elapsed, g.memory_stats().arenas_reclaimed - reclaimed_before)
    });
    match r {
        Ok((Ok(allocs), elapsed, arenas_returned)) => WorkerResult { allocs, elapsed, arenas_returned, error: None },
        Ok((Err(e), elapsed, arenas_returned)) => {
            WorkerResult { allocs: 0, elapsed, arenas_returned, error: Some(e.to_string()) }
        }
        Err(e) => {
            // Never entered: meet the barriers anyway so the others go on.
            for b in [&phases.warmed, &phases.start, &phases.fallen, &phases.done] {
                b.wait();
            }
            WorkerResult { allocs: 0, elapsed: Duration::ZERO, arenas_returned: 0, error: Some(e.to_string()) }
        }
    }
}

/// Runs the `memory` scenario with `threads` interpreters (one thread each)
/// for about `duration`; returns `rss_before_mb`, `rss_peak_mb`,
/// `rss_after_mb`, `rss_after_over_before`, `arenas_returned`,
/// `allocs_per_s_per_thread` (plus `threads`, `seconds`, and `error` if a
/// worker failed), and the RSS timeline (s since the start, MiB). Never prints.
pub fn run(threads: usize, duration: Duration) -> (Map<String, Value>, Vec<(f64, f64)>) {
    let threads = threads.max(1);
    let mut out = Map::new();
    let rt = match Runtime::new(RuntimeConfig::default()) {
        Ok(rt) => rt,
        Err(e) => {
            out.insert("error".into(), Value::from(e.to_string()));
            return (out, Vec::new());
        }
    };
    let interps: Vec<Interpreter> = match (0..threads).map(|_| rt.create(InterpreterConfig::isolated())).collect() {
        Ok(v) => v,
        Err(e) => {
            out.insert("error".into(), Value::from(e.to_string()));
            return (out, Vec::new());
        }
    };
    let phases = Phases {
        warmed: Barrier::new(threads + 1),
        start: Barrier::new(threads + 1),
        fallen: Barrier::new(threads + 1),
        done: Barrier::new(threads + 1),
    };
    let peak = AtomicU64::new(0);
    let sampling = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let t_start = Instant::now();
    let (results, rss_before, rss_after, seconds, timeline) = std::thread::scope(|s| {
        let monitor = s.spawn(|| {
            let mut timeline = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if sampling.load(Ordering::Relaxed) {
                    let r = rss_bytes();
                    peak.fetch_max(r, Ordering::Relaxed);
                    timeline.push((t_start.elapsed().as_secs_f64(), mb(r)));
                }
                std::thread::sleep(Duration::from_millis(2)); // sampling period, not a wait for a race
            }
            timeline
        });
        let phases = &phases;
        let workers: Vec<_> = interps
            .iter()
            .enumerate()
            .map(|(k, interp)| {
                s.spawn(move || worker(interp, 0x9E37_79B9_7F4A_7C15 ^ (k as u64 + 1), duration, phases))
            })
            .collect();
        phases.warmed.wait();
        let rss_before = rss_bytes();
        peak.store(rss_before, Ordering::Relaxed);
        let started = Instant::now();
        sampling.store(true, Ordering::Relaxed);
        phases.start.wait();
        phases.fallen.wait();
        let seconds = started.elapsed().as_secs_f64();
        sampling.store(false, Ordering::Relaxed);
        // Every live set is back to zero; the interpreters are still open.
        let rss_after = rss_bytes();
        phases.done.wait();
        let results: Vec<WorkerResult> = workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| WorkerResult {
                    allocs: 0,
                    elapsed: Duration::ZERO,
                    arenas_returned: 0,
                    error: Some("worker panicked".into()),
                })
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        let timeline = monitor.join().unwrap_or_default();
        let t0 = started.duration_since(t_start).as_secs_f64();
        let timeline: Vec<(f64, f64)> = timeline.into_iter().map(|(t, r)| (t - t0, r)).collect();
        (results, rss_before, rss_after, seconds, timeline)
    });
    let rss_peak = peak.load(Ordering::Relaxed).max(rss_before);
    for interp in interps {
        let _ = interp.close();
    }

    let allocs: u64 = results.iter().map(|r| r.allocs).sum();
    let busy: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum::<f64>().max(1e-9);
    out.insert("threads".into(), Value::from(threads));
    out.insert("seconds".into(), Value::from((seconds * 100.0).round() / 100.0));
    out.insert("rss_before_mb".into(), Value::from(mb(rss_before)));
    out.insert("rss_peak_mb".into(), Value::from(mb(rss_peak)));
    out.insert("rss_after_mb".into(), Value::from(mb(rss_after)));
    let ratio = if rss_before == 0 { 0.0 } else { rss_after as f64 / rss_before as f64 };
    out.insert("rss_after_over_before".into(), Value::from((ratio * 1000.0).round() / 1000.0));
    out.insert("arenas_returned".into(), Value::from(results.iter().map(|r| r.arenas_returned).sum::<u64>()));
    out.insert("allocs_per_s_per_thread".into(), Value::from((allocs as f64 / busy).round()));
    if let Some(e) = results.iter().find_map(|r| r.error.clone()) {
        out.insert("error".into(), Value::from(e));
    }
    (out, timeline)
}

/// The control's churn: the same rise and fall with `Box<[u8]>` from the
/// system allocator.
fn churn_boxes(live: &mut Vec<Box<[u8]>>, rng: &mut Rng, deadline: Instant) -> u64 {
    let mut live_bytes = 0usize;
    let mut allocs = 0u64;
    loop {
        while live_bytes < TARGET_LIVE {
            let mut b = vec![0u8; rng.size()].into_boxed_slice();
            b[0] = allocs as u8;
            live_bytes += b.len();
            live.push(b);
            allocs += 1;
            if allocs & 7 == 0 {
                let k = rng.below(live.len());
                live_bytes -= live.swap_remove(k).len();
            }
        }
        for w in live.chunks_mut(1024) {
            for i in (1..w.len()).rev() {
                w.swap(i, rng.below(i + 1));
            }
        }
        let keep = live.len() / FALL_DIVISOR;
        for b in live.drain(..live.len() - keep) {
            live_bytes -= b.len();
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    live.clear();
    allocs
}

/// What the control measured.
struct Control {
    allocs_per_s_per_thread: f64,
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
    timeline: Vec<(f64, f64)>,
}

/// The control: `threads` plain threads run [`churn_boxes`] (a warm-up rise
/// and fall, then `duration`), RSS read as in [`run`].
fn control_run(threads: usize, duration: Duration) -> Control {
    let warmed = Barrier::new(threads + 1);
    let start = Barrier::new(threads + 1);
    let fallen = Barrier::new(threads + 1);
    let done = Barrier::new(threads + 1);
    let sampler_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let ws: Vec<_> = (0..threads)
            .map(|k| {
                let (warmed, start, fallen, done) = (&warmed, &start, &fallen, &done);
                s.spawn(move || {
                    let mut rng = Rng((0x9E37_79B9_7F4A_7C15 ^ (k as u64 + 1)) | 1);
                    let mut live = Vec::new();
                    churn_boxes(&mut live, &mut rng, Instant::now());
                    warmed.wait();
                    start.wait();
                    let t0 = Instant::now();
                    let allocs = churn_boxes(&mut live, &mut rng, t0 + duration);
                    let el = t0.elapsed().as_secs_f64();
                    fallen.wait();
                    done.wait();
                    allocs as f64 / el.max(1e-9)
                })
            })
            .collect();
        warmed.wait();
        let rss_before = rss_bytes();
        let t0 = Instant::now();
        start.wait();
        // Sample until every thread is back at zero (the `fallen` barrier).
        let mut timeline = vec![(0.0, mb(rss_before))];
        let mut peak = rss_before;
        let sampler_done = &sampler_done;
        let sampler = s.spawn(move || {
            let mut v = Vec::new();
            while !sampler_done.load(Ordering::Relaxed) {
                let r = rss_bytes();
                v.push((t0.elapsed().as_secs_f64(), r));
                std::thread::sleep(Duration::from_millis(2)); // sampling period
            }
            v
        });
        fallen.wait();
        let rss_after = rss_bytes();
        sampler_done.store(true, Ordering::Relaxed);
        for (t, r) in sampler.join().unwrap_or_default() {
            peak = peak.max(r);
            timeline.push((t, mb(r)));
        }
        done.wait();
        let rates: Vec<f64> = ws.into_iter().map(|w| w.join().expect("control thread")).collect();
        Control {
            allocs_per_s_per_thread: rates.iter().sum::<f64>() / threads as f64,
            rss_before,
            rss_peak: peak,
            rss_after,
            timeline,
        }
    })
}

/// Progress steps of the scenario.
pub const STEPS: u64 = 3;

/// The `memory` scenario for the harness.
pub fn report(opts: &Opts, progress: &Progress) -> Report {
    let threads = opts.threads.max(1);
    let mut report = Report::default();
    progress.step("control: plain threads, no runtime (load probe)");
    let probe_dur = (opts.phase / 4).clamp(Duration::from_millis(100), Duration::from_millis(500));
    let load = control::probe(threads, opts.cores, probe_dur);
    progress.step(format!("allocation churn in {threads} interpreter(s)"));
    let (values, timeline) = run(threads, opts.phase);
    progress.step(format!("the same churn with the system allocator on {threads} plain thread(s) (control)"));
    let c = control_run(threads, opts.phase);
    let f = |k: &str| values.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let r = &mut report;
    for k in ["threads", "seconds", "error"] {
        if let Some(v) = values.get(k) {
            r.values.insert(k.into(), v.clone());
        }
    }
    let none = || Some(crate::Reference::none("no CPython counterpart (its allocator is not exposed to Python)"));
    let mut s = Summary::new(format!(
        "Summary (heap churn in {threads} interpreter(s), live set rising to 24 MiB and falling to 5 % per thread; control: the system allocator)"
    ));
    let ratio = |a: u64, b: u64| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
    s.add(r, "rss_before_mb", "MiB", 2, f("rss_before_mb"), Some(mb(c.rss_before)), none());
    s.add(r, "rss_peak_mb", "MiB", 2, f("rss_peak_mb"), Some(mb(c.rss_peak)), none());
    s.add(r, "rss_after_mb", "MiB", 2, f("rss_after_mb"), Some(mb(c.rss_after)), none());
    s.add(
        r,
        "rss_after_over_before",
        "x",
        3,
        f("rss_after_over_before"),
        Some(ratio(c.rss_after, c.rss_before)),
        none(),
    );
    s.add(r, "arenas_returned", "count", 0, f("arenas_returned"), None, none());
    s.add(
        r,
        "allocs_per_s_per_thread",
        "allocs/s",
        0,
        f("allocs_per_s_per_thread"),
        Some(c.allocs_per_s_per_thread),
        none(),
    );
    s.finish(r);
    if let Some(e) = values.get("error") {
        report.notes.push(format!("error: {e}"));
    }
    report.plots.push(Plot::Rss(
        "memory",
        RssTimeline {
            title: format!("memory scenario: process RSS during the churn ({threads} thread(s))"),
            series: vec![
                Series::new("subinterp heaps (interpreters)", timeline),
                Series::new("control (system allocator, plain threads)", c.timeline),
            ],
        },
    ));
    report.set_load(load);
    report
}
