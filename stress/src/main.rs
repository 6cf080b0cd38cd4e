//! The stress harness: the crate's main job (`cargo run --release`).
//!
//! ```text
//! cargo run --release                         # the default `scaling` scenario
//! cargo run --release -- --json               # one JSON object on stdout
//! cargo run --release -- --scenario scaling --threads 2 --duration 2
//! ```
//!
//! `scaling` shows the point of the crate in under a minute:
//! 1. CPU-bound threads, each in its own interpreter (own GIL), against the
//!    same threads sharing one interpreter (one GIL), for 1..=threads;
//! 2. interpreter churn (create + close in a loop) while other threads look
//!    interpreters up among 1,000 live ones;
//! 3. GIL wake latency of a thread returning from a blocking call beside a
//!    CPU-bound one, and what that costs the CPU-bound thread.

mod gc;
mod memory;
mod scaling;
mod soak;

use std::time::Duration;

use clap::{value_parser, Arg, ArgAction, Command};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value};

/// Options shared by every scenario.
pub struct Opts {
    /// Worker threads at most.
    pub threads: usize,
    /// Length of each measured phase.
    pub phase: Duration,
}

/// A progress line on stderr (hidden when stderr is not a terminal).
pub struct Progress(ProgressBar);

impl Progress {
    fn new(steps: u64) -> Self {
        let pb = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        Progress(pb)
    }

    /// Starts the next step, named `msg`.
    pub fn step(&self, msg: impl Into<std::borrow::Cow<'static, str>>) {
        self.0.set_message(msg);
        self.0.inc(1);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn main() {
    let m = Command::new("stress")
        .about("subinterp stress harness: parallel interpreters, GIL hand-off, interpreter churn")
        .arg(
            Arg::new("scenario")
                .long("scenario")
                .default_value("scaling")
                .value_parser(["scaling", "memory", "gc", "soak"])
                .help("which scenario to run"),
        )
        .arg(
            Arg::new("threads")
                .long("threads")
                .value_parser(value_parser!(u64).range(1..=1024))
                .help("worker threads at most (default: the number of cores)"),
        )
        .arg(
            Arg::new("duration")
                .long("duration")
                .value_parser(value_parser!(f64))
                .default_value("2")
                .help("seconds per measured phase"),
        )
        .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("print one JSON object instead of a table"))
        .get_matches();

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = m.get_one::<u64>("threads").map(|&t| t as usize).unwrap_or(cores);
    let secs = *m.get_one::<f64>("duration").expect("has a default");
    if !(0.01..=3600.0).contains(&secs) {
        eprintln!("error: --duration must be between 0.01 and 3600 seconds");
        std::process::exit(2);
    }
    let opts = Opts { threads, phase: Duration::from_secs_f64(secs) };
    let json = m.get_flag("json");
    let scenario = m.get_one::<String>("scenario").expect("has a default").clone();

    let (steps, run): (u64, fn(&Opts, &Progress) -> Report) = match scenario.as_str() {
        "scaling" => (scaling::steps(&opts), scaling::run),
        "memory" => (1, run_memory),
        "gc" => (1, run_gc),
        "soak" => (1, soak::report),
        other => unreachable!("clap admits only known scenarios, got {other}"),
    };
    let progress = Progress::new(steps);
    let report = run(&opts, &progress);
    progress.finish();

    if json {
        let mut obj = Map::new();
        obj.insert("scenario".into(), Value::from(scenario));
        obj.insert("threads".into(), Value::from(threads));
        obj.insert("cores".into(), Value::from(cores));
        obj.insert("phase_s".into(), Value::from(secs));
        obj.extend(report.values);
        println!("{}", Value::Object(obj));
    } else {
        println!("subinterp stress: scenario {scenario}, {threads} thread(s) on {cores} core(s), {secs} s per phase\n");
        for (title, rows) in &report.tables {
            println!("{title}");
            let widths: Vec<usize> =
                (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
            for (i, row) in rows.iter().enumerate() {
                let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:>w$}")).collect();
                println!("  {}", line.join("  "));
                if i == 0 {
                    println!("  {}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
                }
            }
            println!();
        }
        for line in &report.notes {
            println!("{line}");
        }
    }
    soak::exit_if_failed();
}

/// The `memory` scenario (see `memory.rs`): allocation churn in several
/// interpreters at once with a live set that rises and falls.
fn run_memory(opts: &Opts, progress: &Progress) -> Report {
    progress.step(format!("allocation churn in {} interpreter(s)", opts.threads));
    let values = memory::run(opts.threads, opts.phase);
    let mut rows = vec![vec!["measure".to_string(), "value".to_string()]];
    for (k, v) in &values {
        rows.push(vec![k.clone(), v.to_string()]);
    }
    let mut notes = Vec::new();
    if let Some(e) = values.get("error") {
        notes.push(format!("error: {e}"));
    }
    Report { values, tables: vec![("Heap churn: RSS before, at peak and after the fall".into(), rows)], notes }
}

/// The `gc` scenario (see `gc.rs`): cyclic garbage and a surviving old
/// generation in several interpreters at once, collected automatically.
fn run_gc(opts: &Opts, progress: &Progress) -> Report {
    progress.step(format!("cyclic garbage in {} interpreter(s)", opts.threads));
    let values = gc::run(opts.threads, opts.phase);
    let mut rows = vec![vec!["measure".to_string(), "value".to_string()]];
    for (k, v) in &values {
        rows.push(vec![k.clone(), v.to_string()]);
    }
    Report { values, tables: vec![("Cycle collection under allocation churn".into(), rows)], notes: Vec::new() }
}

/// What a scenario produced: JSON values and human-readable tables.
#[derive(Default)]
pub struct Report {
    /// Flat key → value pairs for `--json`.
    pub values: Map<String, Value>,
    /// (title, rows); the first row is the header.
    pub tables: Vec<(String, Vec<Vec<String>>)>,
    /// Lines printed after the tables.
    pub notes: Vec<String>,
}

/// The `p`-th percentile (0..=100) of `v`, which it sorts.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// Resident set size of this process in bytes, from `/proc/self/statm`
/// (pages of 4 KiB on x86-64 Linux); 0 where unavailable.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// Rounds for display and JSON.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
