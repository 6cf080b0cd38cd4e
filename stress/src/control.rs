//! The control: the scenarios' CPU-bound work on plain OS threads, without
//! the runtime (no interpreter, no GIL, no checkpoint), measured in the same
//! run, and the busy-machine check built on it.
//!
//! The machine is called busy (a `WARNING: machine busy …` line is printed
//! and `machine_busy` is true in the JSON) when any of these holds:
//!
//! 1. **speedup**: N control threads (N ≥ 2) reach less than
//!    [`SPEEDUP_FLOOR`] (0.8) × min(N, cores) times one control thread's
//!    throughput;
//! 2. **CPU share**: a control thread was on a CPU for less than
//!    [`CPU_SHARE_FLOOR`] (80 %) of the wall time it ran
//!    (`/proc/thread-self/schedstat`: the kernel's on-CPU nanoseconds of the
//!    thread; the rest it spent waiting in a run queue, i.e. other work held
//!    the cores); only phases with no more threads than cores count;
//! 3. **spread**: the one-thread control, run at the start and at the end of
//!    the scenario, differs by more than [`SPREAD_LIMIT`] (20 %).
//!
//! Seen on the 2-core project machine: with other builds holding both cores
//! (load average 4-7) the control's speedup was 0.76-1.11x at 2 threads and
//! its least CPU share 22-34 %; with a busy loop per core added, 12 %.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::round;

/// Criterion 1: the least control speedup, as a fraction of min(N, cores).
pub const SPEEDUP_FLOOR: f64 = 0.8;
/// Criterion 2: the least share of wall time a control thread spends on a CPU.
pub const CPU_SHARE_FLOOR: f64 = 0.8;
/// Criterion 3: the largest relative difference between one-thread control runs.
pub const SPREAD_LIMIT: f64 = 0.2;

/// A unit of CPU-bound "bytecode": the same integer work the interpreters
/// run between two checkpoints in the `scaling` scenario.
#[inline]
pub fn work(state: &mut u64) {
    for _ in 0..32 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
    }
}

/// Nanoseconds this thread has spent on a CPU (`/proc/thread-self/schedstat`), if readable.
pub fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// One control measurement: `threads` plain threads running [`work`].
#[derive(Clone, Debug)]
pub struct Phase {
    /// Threads.
    pub threads: usize,
    /// Total work units per second.
    pub rate: f64,
    /// The smallest share of its wall time a thread spent on a CPU (None if unreadable).
    pub cpu_share_min: Option<f64>,
}

/// Runs `threads` plain threads of [`work`] for `dur`.
pub fn cpu_phase(threads: usize, dur: Duration) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            let (stop, start) = (stop.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let (t0, c0) = (Instant::now(), thread_cpu_ns());
                let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ k as u64;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    work(&mut state);
                    n += 1;
                }
                std::hint::black_box(state);
                let share = match (c0, thread_cpu_ns()) {
                    (Some(a), Some(b)) => Some((b - a) as f64 / 1e9 / t0.elapsed().as_secs_f64()),
                    _ => None,
                };
                (n, share)
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let res: Vec<(u64, Option<f64>)> = handles.into_iter().map(|h| h.join().expect("control thread")).collect();
    let total: u64 = res.iter().map(|r| r.0).sum();
    let cpu_share_min =
        res.iter().map(|r| r.1).collect::<Option<Vec<f64>>>().map(|v| v.into_iter().fold(f64::INFINITY, f64::min));
    Phase { threads, rate: total as f64 / t0.elapsed().as_secs_f64(), cpu_share_min }
}

/// The busy-machine verdict of a scenario's control runs.
#[derive(Clone, Debug)]
pub struct LoadCheck {
    /// Control threads at most.
    pub threads: usize,
    /// Cores.
    pub cores: usize,
    /// N-thread control rate ÷ one-thread control rate (None with one thread).
    pub speedup: Option<f64>,
    /// min(threads, cores).
    pub ideal: f64,
    /// The smallest CPU share of any control thread.
    pub cpu_share_min: Option<f64>,
    /// Largest relative difference between the one-thread runs.
    pub spread: f64,
    /// The warning line, if busy.
    pub warning: Option<String>,
}

impl LoadCheck {
    /// Judges `one` (one-thread runs, at least one) and `many` (the N-thread run, if N ≥ 2).
    pub fn judge(one: &[Phase], many: Option<&Phase>, cores: usize) -> LoadCheck {
        let r1 = one.iter().map(|p| p.rate).sum::<f64>() / one.len().max(1) as f64;
        let (lo, hi) = one.iter().fold((f64::INFINITY, 0.0f64), |(l, h), p| (l.min(p.rate), h.max(p.rate)));
        let spread = if one.len() > 1 && hi > 0.0 { (hi - lo) / hi } else { 0.0 };
        let threads = many.map_or(1, |m| m.threads);
        let ideal = threads.min(cores) as f64;
        let speedup = many.map(|m| m.rate / r1);
        let cpu_share_min = one
            .iter()
            .chain(many)
            .filter(|p| p.threads <= cores)
            .filter_map(|p| p.cpu_share_min)
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.min(x))));
        let mut why = Vec::new();
        if let Some(s) = speedup {
            if s < SPEEDUP_FLOOR * ideal {
                why.push(format!(
                    "the control (plain threads, no runtime) reached {s:.2}x with {threads} threads, below {SPEEDUP_FLOOR} x {ideal} = {:.2}x",
                    SPEEDUP_FLOOR * ideal
                ));
            }
        }
        if let Some(c) = cpu_share_min {
            if c < CPU_SHARE_FLOOR {
                why.push(format!(
                    "a control thread was on a CPU only {:.0} % of its wall time (limit {:.0} %): other work held the cores",
                    100.0 * c,
                    100.0 * CPU_SHARE_FLOOR
                ));
            }
        }
        if spread > SPREAD_LIMIT {
            why.push(format!(
                "the one-thread control varied {:.0} % between the start and the end of the run (limit {:.0} %)",
                100.0 * spread,
                100.0 * SPREAD_LIMIT
            ));
        }
        let warning = (!why.is_empty()).then(|| {
            format!(
                "WARNING: machine busy: {}; the figures above are not representative, rerun on an idle machine",
                why.join("; ")
            )
        });
        LoadCheck { threads, cores, speedup, ideal, cpu_share_min, spread, warning }
    }

    /// The check as JSON (`load` object).
    pub fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("control_threads".into(), Value::from(self.threads));
        m.insert("cores".into(), Value::from(self.cores));
        m.insert("control_speedup".into(), self.speedup.map_or(Value::Null, |s| Value::from(round(s, 3))));
        m.insert("ideal_speedup".into(), Value::from(self.ideal));
        m.insert("control_cpu_share_min".into(), self.cpu_share_min.map_or(Value::Null, |s| Value::from(round(s, 3))));
        m.insert("control_one_thread_spread".into(), Value::from(round(self.spread, 3)));
        m.insert("machine_busy".into(), Value::from(self.warning.is_some()));
        m.insert("warning".into(), self.warning.clone().map_or(Value::Null, Value::from));
        Value::Object(m)
    }
}

/// A short probe for scenarios whose own work has no plain-thread twin:
/// the control at one thread, at `threads`, and at one thread again, each
/// for `dur`.
pub fn probe(threads: usize, cores: usize, dur: Duration) -> LoadCheck {
    let a = cpu_phase(1, dur);
    let many = (threads > 1).then(|| cpu_phase(threads, dur));
    let b = cpu_phase(1, dur);
    LoadCheck::judge(&[a, b], many.as_ref(), cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(threads: usize, rate: f64, share: f64) -> Phase {
        Phase { threads, rate, cpu_share_min: Some(share) }
    }

    #[test]
    fn quiet_machine_gives_no_warning() {
        let c = LoadCheck::judge(&[p(1, 10.0, 0.99), p(1, 10.2, 1.0)], Some(&p(2, 19.8, 0.99)), 2);
        assert!(c.warning.is_none(), "{:?}", c.warning);
        assert!((c.speedup.unwrap() - 19.8 / 10.1).abs() < 1e-9);
    }

    #[test]
    fn each_criterion_alone_warns() {
        let slow = LoadCheck::judge(&[p(1, 10.0, 0.99)], Some(&p(2, 15.0, 0.99)), 2);
        assert!(slow.warning.as_deref().unwrap().contains("reached 1.50x with 2 threads"), "{:?}", slow.warning);
        let starved = LoadCheck::judge(&[p(1, 10.0, 0.6)], Some(&p(2, 20.0, 0.99)), 2);
        assert!(starved.warning.as_deref().unwrap().contains("only 60 %"), "{:?}", starved.warning);
        let drift = LoadCheck::judge(&[p(1, 10.0, 0.99), p(1, 7.0, 0.99)], None, 2);
        assert!(drift
            .warning
            .as_deref()
            .unwrap()
            .starts_with("WARNING: machine busy: the one-thread control varied 30 %"));
        // More threads than cores: the ideal is the core count.
        let over = LoadCheck::judge(&[p(1, 10.0, 0.99)], Some(&p(4, 19.0, 0.99)), 2);
        assert_eq!(over.ideal, 2.0);
        assert!(over.warning.is_none(), "{:?}", over.warning);
    }

    #[test]
    fn the_control_runs_and_reads_its_cpu_time() {
        let ph = cpu_phase(1, Duration::from_millis(50));
        assert!(ph.rate > 0.0);
        if let Some(s) = ph.cpu_share_min {
            assert!((0.0..=1.1).contains(&s), "CPU share {s}");
        }
    }
}
