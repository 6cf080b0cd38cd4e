//! The `soak` stress scenario (issue 10, item 6): everything at once for a
//! given duration, checking invariants as it goes and failing loudly (a
//! message on stderr, a non-zero exit) when one breaks.
//!
//! * **Workers** (`--threads`, default the number of cores), each in a loop:
//!   create an interpreter (isolated; 1 in 8 legacy: main's GIL and heap),
//!   enter it for a few sessions, close it. A session builds two-list cyclic
//!   garbage beside a surviving list that grows to a random size (automatic
//!   collections at each checkpoint, an explicit one of a random generation
//!   now and then), allocates and frees heap blocks, keeps tracked objects as
//!   `Owned` handles (dropped under the GIL, after the close, or sent to the
//!   disturber to be dropped without a GIL, which queues the release as a
//!   pending call of the owner), and adds pending calls to its own
//!   interpreter and to others (1 in 16 panics on purpose).
//! * **A disturber thread**: interrupts random interpreters, adds pending
//!   calls (main included), enters random interpreters for a checkpoint,
//!   tries to close them under the workers' feet (by handle and by id),
//!   drops the handles the workers send it, at a bounded rate.
//! * **Invariants**: every close reports no leaked block, no collector or
//!   teardown error, and only planted pending-call panics; every error is a
//!   typed `Error` of an expected variant (counted by variant), and no panic
//!   escapes the library; every accepted pending call runs exactly once (at
//!   a checkpoint or at close); RSS of the last minute stays within ±10 % of
//!   the first minute's (runs under 3 minutes compare the first and last
//!   20 %; medians of samples every 250 ms, from `/proc/self/statm`), both
//!   counted after a warm-up of 30 % of the run, at most 10 s; interpreter
//!   records not yet freed and deferred registry frees are reported.
//!
//! The first failure stops the run; `exit_if_failed` (called by `main` after
//! the report is printed) exits with status 1.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::plot::{Plot, RssTimeline, Series};
use crate::{round, rss_bytes, Opts, Progress, Report};
use serde_json::{Map, Value};
use subinterp::{CloseReport, Error, Gil, Interpreter, InterpreterConfig, Owned, Runtime, RuntimeConfig};

/// The payload of every panic the soak plants (a pending call that panics).
const PLANTED: &str = "soak: planted panic in a pending call";
/// RSS may move this much between the first and the last window.
const RSS_TOLERANCE: f64 = 0.10;
/// Handles the disturber holds at most before it drops the oldest.
const HELD_HANDLES: usize = 256;
/// A close refused because another thread is inside is retried this often
/// before the soak calls it a hang.
const CLOSE_RETRIES: u32 = 1_000_000;

/// Set once a run has failed; read by [`exit_if_failed`].
static FAILED: AtomicBool = AtomicBool::new(false);

/// Exits with status 1 if the soak failed (after its report is printed).
pub fn exit_if_failed() {
    if FAILED.load(Ordering::SeqCst) {
        eprintln!("soak: FAILED (see the messages above)");
        std::process::exit(1);
    }
}

/// splitmix64: a small deterministic generator per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// Counters every thread adds to.
#[derive(Default)]
struct Counts {
    created: AtomicU64,
    created_legacy: AtomicU64,
    closed_by_owner: AtomicU64,
    closed_by_disturber: AtomicU64,
    sessions: AtomicU64,
    garbage_cycles: AtomicU64,
    survivors: AtomicU64,
    blocks: AtomicU64,
    explicit_collections: AtomicU64,
    collections: AtomicU64,
    collected: AtomicU64,
    kept: AtomicU64,
    dropped_under_gil: AtomicU64,
    sent_to_disturber: AtomicU64,
    dropped_after_close: AtomicU64,
    pending_accepted: AtomicU64,
    pending_refused: AtomicU64,
    pending_ran: Arc<AtomicU64>,
    planted_panics_seen: AtomicU64,
    interrupts_sent: AtomicU64,
    close_attempts: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

struct Shared {
    rt: Runtime,
    counts: Counts,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
    deadline: Instant,
}

/// The variant name of an error, for counting.
fn variant(e: &Error) -> &'static str {
    match e {
        Error::InterpreterNotFound { .. } => "InterpreterNotFound",
        Error::InterpreterClosed { .. } => "InterpreterClosed",
        Error::InterpreterRunning { .. } => "InterpreterRunning",
        Error::CannotCloseCurrent { .. } => "CannotCloseCurrent",
        Error::MainHasSubinterpreters { .. } => "MainHasSubinterpreters",
        Error::GilHeldByOtherInterpreter { .. } => "GilHeldByOtherInterpreter",
        Error::Interrupted { .. } => "Interrupted",
        Error::CallbackPanicked { .. } => "CallbackPanicked",
        Error::MemoryError { .. } => "MemoryError",
        Error::MmapFailed { .. } => "MmapFailed",
        Error::InvalidFree { .. } => "InvalidFree",
        _ => "other",
    }
}

impl Shared {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    fn fail(&self, msg: String) {
        eprintln!("soak: invariant broken: {msg}");
        FAILED.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() < 20 {
            f.push(msg);
        }
    }

    /// Counts an error; fails the run unless it is one the soak expects
    /// where it happened (`allowed` lists the variants).
    fn error(&self, where_: &str, e: &Error, allowed: &[&str]) {
        let v = variant(e);
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()).entry(v).or_default() += 1;
        let planted = matches!(e, Error::CallbackPanicked { message, .. } if message == PLANTED);
        if planted {
            add(&self.counts.planted_panics_seen, 1);
        }
        let ok = allowed.contains(&v) && (v != "CallbackPanicked" || planted);
        if !ok {
            self.fail(format!("{where_}: unexpected error {e:?} ({e})"));
        }
    }

    /// Checks what a close reported.
    fn report(&self, where_: &str, r: &CloseReport) {
        if r.leaked.live_blocks != 0 {
            self.fail(format!(
                "{where_}: close leaked {} blocks ({} bytes)",
                r.leaked.live_blocks, r.leaked.live_bytes
            ));
        }
        if !r.gc_errors.is_empty() || !r.teardown_errors.is_empty() {
            self.fail(format!("{where_}: close reported errors: {:?} {:?}", r.gc_errors, r.teardown_errors));
        }
        for e in &r.pending_call_errors {
            self.error(where_, e, &["CallbackPanicked"]);
        }
    }

    /// Adds a pending call (1 in 16 panics after it counted its run).
    fn pending(&self, interp: &Interpreter, rng: &mut Rng, where_: &str) {
        let ran = self.counts.pending_ran.clone();
        let panics = rng.one_in(16);
        match interp.add_pending_call(move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
            if panics {
                std::panic::panic_any(PLANTED);
            }
        }) {
            Ok(()) => add(&self.counts.pending_accepted, 1),
            Err(e) => {
                add(&self.counts.pending_refused, 1);
                self.error(where_, &e, &["InterpreterClosed"]);
            }
        }
    }

    /// A checkpoint: interrupts and planted panics are expected.
    fn checkpoint(&self, g: Gil<'_>, where_: &str) {
        if let Err(e) = g.checkpoint() {
            self.error(where_, &e, &["Interrupted", "CallbackPanicked"]);
        }
    }
}

/// One session inside a worker's interpreter.
fn session(sh: &Shared, g: Gil<'_>, rng: &mut Rng, st: &mut WorkerState) -> subinterp::Result<()> {
    let survivors = match &st.survivors {
        Some(o) => o.bind(g)?,
        None => {
            let l = g.list(&[])?;
            st.survivors = Some(l.to_owned());
            l
        }
    };
    let before: usize = g.gc_stats().iter().map(|s| s.collections).sum();
    let collected_before: usize = g.gc_stats().iter().map(|s| s.collected).sum();
    let iters = 500 + rng.below(3000);
    for i in 0..iters {
        let a = g.list(&[])?;
        let b = g.list(std::slice::from_ref(&a))?;
        a.list_append(&b)?;
        drop((a, b));
        add(&sh.counts.garbage_cycles, 1);
        if i % 4 == 0 && survivors.len()? < st.survivor_cap {
            let x = g.int(i as i64)?;
            survivors.list_append(&g.list(&[x])?)?;
            add(&sh.counts.survivors, 1);
        }
        if i % 64 == 0 {
            let keep = g.list(&[g.int(7)?])?;
            add(&sh.counts.kept, 1);
            match rng.below(4) {
                // Sent to the disturber: dropped there without a GIL.
                0 => {
                    add(&sh.counts.sent_to_disturber, 1);
                    let _ = st.to_disturber.send(keep.to_owned());
                }
                // Kept past this session (maybe past the close).
                1 | 2 => st.kept.push(keep.to_owned()),
                _ => {}
            }
            if st.kept.len() > 32 {
                // Dropped under this GIL: released at once.
                st.kept.drain(..16);
                add(&sh.counts.dropped_under_gil, 16);
            }
        }
        if i % 128 == 0 {
            for k in 0..8 {
                let size = if k == 7 { 600 + rng.below(4000) as usize } else { 16 + rng.below(497) as usize };
                let mut blk = g.alloc(size)?;
                blk.as_mut_slice()[size - 1] = k as u8;
                add(&sh.counts.blocks, 1);
            }
        }
        if i % 256 == 0 {
            sh.pending(g.interpreter(), rng, "worker: pending call to its own interpreter");
            if rng.one_in(4) {
                // Another live interpreter (perhaps closed by now).
                let id = rng.below(g.id() + 1);
                match sh.rt.get(id) {
                    Ok(other) => sh.pending(&other, rng, "worker: pending call to another interpreter"),
                    Err(e) => sh.error("worker: lookup", &e, &["InterpreterNotFound"]),
                }
            }
        }
        if i % 1000 == 999 {
            g.gc_collect(rng.below(3) as usize)?;
            add(&sh.counts.explicit_collections, 1);
        }
        sh.checkpoint(g, "worker: checkpoint");
    }
    let stats = g.gc_stats();
    add(&sh.counts.collections, (stats.iter().map(|s| s.collections).sum::<usize>() - before) as u64);
    add(&sh.counts.collected, (stats.iter().map(|s| s.collected).sum::<usize>() - collected_before) as u64);
    add(&sh.counts.sessions, 1);
    Ok(())
}

struct WorkerState {
    survivors: Option<Owned>,
    survivor_cap: usize,
    kept: Vec<Owned>,
    to_disturber: Sender<Owned>,
}

/// One interpreter's life in a worker: create, a few sessions, close.
fn one_interpreter(sh: &Shared, rng: &mut Rng, to_disturber: &Sender<Owned>) {
    let legacy = rng.one_in(8);
    let config = if legacy { InterpreterConfig::legacy() } else { InterpreterConfig::isolated() };
    let interp = match sh.rt.create(config) {
        Ok(i) => i,
        Err(e) => return sh.error("worker: create", &e, &[]),
    };
    add(&sh.counts.created, 1);
    if legacy {
        add(&sh.counts.created_legacy, 1);
    }
    let mut st = WorkerState {
        survivors: None,
        survivor_cap: 1000 + rng.below(20_000) as usize,
        kept: Vec::new(),
        to_disturber: to_disturber.clone(),
    };
    for _ in 0..1 + rng.below(5) {
        match interp.with_gil(|g| session(sh, g, rng, &mut st)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => sh.error("worker: session", &e, &["InterpreterClosed"]),
            // The disturber closed it between two sessions.
            Err(e) => {
                sh.error("worker: enter", &e, &["InterpreterClosed"]);
                break;
            }
        }
        if !sh.running() {
            break;
        }
    }
    // Half the time the handles outlive the interpreter (their drop is then
    // a no-op), half the time they are dropped before the close (queued).
    let late = rng.one_in(2);
    if !late {
        st.kept.clear();
        st.survivors = None;
    }
    let mut tries = 0u32;
    loop {
        match interp.close() {
            Ok(r) => {
                add(&sh.counts.closed_by_owner, 1);
                sh.report("worker: close", &r);
                break;
            }
            // The disturber is inside for a checkpoint: try again.
            Err(Error::InterpreterRunning { .. }) if tries < CLOSE_RETRIES => {
                tries += 1;
                std::thread::yield_now();
            }
            Err(e) => {
                sh.error("worker: close", &e, &["InterpreterClosed"]);
                break;
            }
        }
    }
    if late {
        add(&sh.counts.dropped_after_close, st.kept.len() as u64);
    }
}

fn worker(sh: &Shared, k: usize, to_disturber: Sender<Owned>) {
    let mut rng = Rng(0x5EED_0000 + k as u64);
    while sh.running() {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| one_interpreter(sh, &mut rng, &to_disturber))) {
            sh.fail(format!("worker {k}: a panic escaped: {}", panic_text(p.as_ref())));
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}

/// Interrupts, pending calls, checkpoints, close attempts and handle drops
/// against whatever is live, at a bounded rate.
fn disturber(sh: &Shared, handles: Receiver<Owned>) {
    let mut rng = Rng(0xD157_0000);
    let mut held: VecDeque<Owned> = VecDeque::new();
    let mut live: Vec<Interpreter> = Vec::new();
    let mut step = 0u64;
    while sh.running() {
        let r = catch_unwind(AssertUnwindSafe(|| {
            if step % 64 == 0 {
                live = sh.rt.interpreters();
            }
            step += 1;
            while let Ok(h) = handles.try_recv() {
                held.push_back(h);
            }
            while held.len() > HELD_HANDLES || (!held.is_empty() && rng.one_in(3)) {
                drop(held.pop_front()); // no GIL: the release is queued
            }
            let Some(target) = live.get(rng.below(live.len() as u64) as usize).cloned() else { return };
            match rng.below(100) {
                0..=29 => {
                    add(&sh.counts.interrupts_sent, 1);
                    if let Err(e) = target.interrupt_handle().interrupt() {
                        sh.error("disturber: interrupt", &e, &["InterpreterClosed"]);
                    }
                }
                30..=59 => sh.pending(&target, &mut rng, "disturber: pending call"),
                60..=74 => {
                    // Enter (waits for the GIL: the holder yields at a checkpoint).
                    match target.with_gil(|g| sh.checkpoint(g, "disturber: checkpoint")) {
                        Ok(()) => {}
                        Err(e) => sh.error("disturber: enter", &e, &["InterpreterClosed"]),
                    }
                }
                75..=79 if !target.is_main() => {
                    add(&sh.counts.close_attempts, 1);
                    let r = if rng.one_in(2) { target.close() } else { sh.rt.close(target.id()) };
                    match r {
                        Ok(rep) => {
                            add(&sh.counts.closed_by_disturber, 1);
                            sh.report("disturber: close", &rep);
                        }
                        Err(e) => sh.error(
                            "disturber: close",
                            &e,
                            &["InterpreterRunning", "InterpreterClosed", "InterpreterNotFound"],
                        ),
                    }
                }
                _ => {
                    // Main's pending calls run here (and at its close).
                    match sh.rt.main().with_gil(|g| sh.checkpoint(g, "disturber: checkpoint of main")) {
                        Ok(()) => {}
                        Err(e) => sh.error("disturber: enter main", &e, &[]),
                    }
                }
            }
        }));
        if let Err(p) = r {
            sh.fail(format!("disturber: a panic escaped: {}", panic_text(p.as_ref())));
        }
        std::thread::sleep(Duration::from_micros(200)); // pacing, not a wait for a race
    }
    // Whatever is left is dropped here, after (or before) the owners closed.
    drop(held);
    while let Ok(h) = handles.try_recv() {
        drop(h);
    }
}

/// The start of a run that the RSS check leaves out: the first seconds page
/// in code, touch thread stacks and fill the allocators' first arenas.
/// (Later jumps are tombstones: a closed interpreter that still has a handle
/// keeps its collector's buffers; see docs/performance.md, "Soak".)
fn warm_up(duration: Duration) -> f64 {
    (0.3 * duration.as_secs_f64()).min(10.0)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn mb(bytes: f64) -> f64 {
    round(bytes / (1024.0 * 1024.0), 2)
}

/// What [`run`] returns: the figures, the failures, the RSS samples (s since the start, bytes).
pub type SoakResult = (Map<String, Value>, Vec<String>, Vec<(f64, f64)>);

/// Runs the soak with `threads` workers for `duration`.
pub fn run(threads: usize, duration: Duration) -> SoakResult {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&PLANTED) {
            default(info);
        }
    }));
    let rt = match Runtime::new(RuntimeConfig::default()) {
        Ok(rt) => rt,
        Err(e) => {
            FAILED.store(true, Ordering::SeqCst);
            return (Map::new(), vec![format!("runtime: {e}")], Vec::new());
        }
    };
    let started = Instant::now();
    let sh = Shared {
        rt,
        counts: Counts::default(),
        errors: Mutex::new(BTreeMap::new()),
        failures: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        deadline: started + duration,
    };
    let period = Duration::from_millis(250).min(duration / 50).max(Duration::from_millis(1));
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut records: Vec<(u64, u64)> = Vec::new();
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let sh = &sh;
        let mut hs: Vec<_> = (0..threads.max(1))
            .map(|k| {
                let tx = tx.clone();
                s.spawn(move || worker(sh, k, tx))
            })
            .collect();
        drop(tx);
        hs.push(s.spawn(move || disturber(sh, rx)));
        while sh.running() {
            std::thread::sleep(period); // the sampling period
            samples.push((started.elapsed().as_secs_f64(), rss_bytes() as f64));
            let st = sh.rt.stats();
            records.push((st.created - st.records_freed as u64, st.deferred_frees as u64));
        }
        sh.stop.store(true, Ordering::SeqCst);
        for h in hs {
            if h.join().is_err() {
                sh.fail("a soak thread panicked".into());
            }
        }
    });
    let soak_s = started.elapsed().as_secs_f64();

    // Everything is closed by its owner; close what is left, then main.
    for interp in sh.rt.interpreters() {
        if interp.is_main() {
            continue;
        }
        match interp.close() {
            Ok(r) => sh.report("final close", &r),
            Err(e) => sh.error("final close", &e, &["InterpreterClosed"]),
        }
    }
    match sh.rt.main().close() {
        Ok(r) => sh.report("close of main", &r),
        Err(e) => sh.error("close of main", &e, &[]),
    }
    let c = &sh.counts;
    let accepted = c.pending_accepted.load(Ordering::SeqCst);
    let ran = c.pending_ran.load(Ordering::SeqCst);
    if accepted != ran {
        sh.fail(format!("{accepted} pending calls were accepted but {ran} ran"));
    }

    // RSS: the first and the last minute of the steady state (20 % of it in
    // a run under 3 minutes), after the warm-up.
    let end = samples.last().map_or(0.0, |s| s.0);
    let warm = warm_up(duration).min(end);
    let window = if duration >= Duration::from_secs(180) { 60.0 } else { 0.2 * (end - warm) };
    let mut first: Vec<f64> = samples.iter().filter(|s| s.0 >= warm && s.0 <= warm + window).map(|s| s.1).collect();
    let mut last: Vec<f64> = samples.iter().filter(|s| s.0 >= end - window).map(|s| s.1).collect();
    let (rss_first, rss_last) = (median(&mut first), median(&mut last));
    let ratio = rss_last / rss_first;
    if samples.len() >= 4 && (ratio - 1.0).abs() > RSS_TOLERANCE {
        sh.fail(format!(
            "RSS moved {:+.1} % between the first {window:.1} s after the {warm:.1} s warm-up and the last {window:.1} s \
             (median {:.1} -> {:.1} MiB; limit ±10 %)",
            100.0 * (ratio - 1.0),
            rss_first / 1048576.0,
            rss_last / 1048576.0
        ));
    }
    let rss_all: Vec<f64> = samples.iter().map(|s| s.1).collect();
    // The trajectory: the median of each tenth of the run.
    let tenths: Vec<Value> = (0..10)
        .map(|k| {
            let (lo, hi) = (end * k as f64 / 10.0, end * (k + 1) as f64 / 10.0);
            let mut v: Vec<f64> = samples.iter().filter(|s| s.0 > lo && s.0 <= hi).map(|s| s.1).collect();
            Value::from(mb(median(&mut v)))
        })
        .collect();

    let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
    let mut m = Map::new();
    m.insert("soak_s".into(), Value::from(round(soak_s, 1)));
    m.insert("workers".into(), Value::from(threads.max(1)));
    m.insert("interpreters_created".into(), Value::from(get(&c.created)));
    m.insert("interpreters_created_legacy".into(), Value::from(get(&c.created_legacy)));
    m.insert("closed_by_owner".into(), Value::from(get(&c.closed_by_owner)));
    m.insert("closed_by_disturber".into(), Value::from(get(&c.closed_by_disturber)));
    m.insert("close_attempts_by_disturber".into(), Value::from(get(&c.close_attempts)));
    m.insert("sessions".into(), Value::from(get(&c.sessions)));
    m.insert("garbage_cycles".into(), Value::from(get(&c.garbage_cycles)));
    m.insert("survivors".into(), Value::from(get(&c.survivors)));
    m.insert("heap_blocks".into(), Value::from(get(&c.blocks)));
    m.insert("collections".into(), Value::from(get(&c.collections)));
    m.insert("explicit_collections".into(), Value::from(get(&c.explicit_collections)));
    m.insert("objects_collected".into(), Value::from(get(&c.collected)));
    m.insert("owned_kept".into(), Value::from(get(&c.kept)));
    m.insert("owned_dropped_under_gil".into(), Value::from(get(&c.dropped_under_gil)));
    m.insert("owned_sent_across_threads".into(), Value::from(get(&c.sent_to_disturber)));
    m.insert("owned_dropped_after_close".into(), Value::from(get(&c.dropped_after_close)));
    m.insert("pending_calls_accepted".into(), Value::from(accepted));
    m.insert("pending_calls_ran".into(), Value::from(ran));
    m.insert("pending_calls_refused".into(), Value::from(get(&c.pending_refused)));
    m.insert("planted_panics_reported".into(), Value::from(get(&c.planted_panics_seen)));
    m.insert("interrupts_sent".into(), Value::from(get(&c.interrupts_sent)));
    let errors = sh.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    m.insert(
        "errors_by_variant".into(),
        Value::Object(errors.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect()),
    );
    m.insert("rss_warm_up_s".into(), Value::from(round(warm, 1)));
    m.insert("rss_window_s".into(), Value::from(round(window, 1)));
    m.insert("rss_samples".into(), Value::from(samples.len()));
    m.insert("rss_first_mb".into(), Value::from(mb(rss_first)));
    m.insert("rss_last_mb".into(), Value::from(mb(rss_last)));
    m.insert("rss_last_over_first".into(), Value::from(round(ratio, 3)));
    m.insert("rss_mb_by_tenth".into(), Value::from(tenths));
    m.insert("records_unfreed_max".into(), Value::from(records.iter().map(|r| r.0).max().unwrap_or(0)));
    m.insert("deferred_frees_max".into(), Value::from(records.iter().map(|r| r.1).max().unwrap_or(0)));
    m.insert("rss_min_mb".into(), Value::from(mb(rss_all.iter().copied().fold(f64::INFINITY, f64::min))));
    m.insert("rss_max_mb".into(), Value::from(mb(rss_all.iter().copied().fold(0.0, f64::max))));
    let failures = sh.failures.lock().unwrap_or_else(|p| p.into_inner()).clone();
    m.insert("ok".into(), Value::from(failures.is_empty()));
    m.insert("failures".into(), Value::from(failures.clone()));
    (m, failures, samples)
}

/// Progress steps of the scenario.
pub const STEPS: u64 = 2;

/// The unit of a soak figure, from its key.
fn unit(key: &str) -> &'static str {
    if key.ends_with("_mb") {
        "MiB"
    } else if key.ends_with("_s") {
        "s"
    } else if key.ends_with("_over_first") {
        "x"
    } else {
        "count"
    }
}

/// The `soak` scenario for the harness: `--duration` is the whole run.
pub fn report(opts: &Opts, progress: &Progress) -> Report {
    progress.step("control: plain threads, no runtime (load probe)");
    let load = crate::control::probe(opts.threads.max(1), opts.cores, Duration::from_millis(250));
    progress
        .step(format!("soak for {:.0} s: churn, collections, pending calls, handle drops", opts.phase.as_secs_f64()));
    let (values, failures, samples) = run(opts.threads, opts.phase);
    let mut report = Report { values: values.clone(), ..Report::default() };
    let mut s = crate::Summary::bare(
        "Soak: churn + GC + pending calls + handle drops, invariants checked (a pass/fail run: no control or reference per figure)",
    );
    for (k, v) in &values {
        if let Some(x) = v.as_f64() {
            let digits = if v.is_f64() { 2 } else { 0 };
            s.add(&mut report, k, unit(k), digits, x, None, None);
        }
    }
    s.finish(&mut report);
    report.values = values; // the soak's own keys and rounding, unchanged
    report.values.insert("machine_busy".into(), Value::from(load.warning.is_some()));
    report.values.insert("load".into(), load.json());
    report.load = Some(load);
    if let Some(Value::Object(e)) = report.values.get("errors_by_variant") {
        let list: Vec<String> = e.iter().map(|(k, v)| format!("{k} {v}")).collect();
        report.notes.push(format!(
            "typed errors by variant (all expected): {}",
            if list.is_empty() { "none".into() } else { list.join(", ") }
        ));
    }
    if failures.is_empty() {
        report.notes.push("soak: every invariant held (no leak at any close, only expected typed errors, every accepted pending call ran once, RSS within ±10 %)".to_string());
    } else {
        report.notes.extend(failures.iter().map(|f| format!("soak FAILED: {f}")));
    }
    report.plots.push(Plot::Rss(
        "soak",
        RssTimeline {
            title: format!(
                "soak: process RSS over {:.0} s ({} workers)",
                opts.phase.as_secs_f64(),
                opts.threads.max(1)
            ),
            series: vec![Series::new(
                "RSS (sampled every 250 ms at most)",
                samples.iter().map(|&(t, b)| (t, b / 1048576.0)).collect(),
            )],
        },
    ));
    report
}
