//! The stress harness: the crate's main job (`cargo run --release`).
//!
//! ```text
//! cargo run --release                         # the default `scaling` scenario
//! cargo run --release -- --json               # one JSON object on stdout
//! cargo run --release -- --scenario scaling --threads 2 --duration 2
//! cargo run --release -- --scenario all --plot docs/img --duration 2   # scaling, memory, gc; SVGs
//! ```
//!
//! `scaling` shows the point of the crate in under a minute:
//! 1. CPU-bound threads, each in its own interpreter (own GIL), in one
//!    interpreter (N threads, one GIL), and in N interpreters sharing main's
//!    GIL, against the control (the same loop on plain threads), 1..=threads;
//! 2. interpreter churn (create + close in a loop) while other threads look
//!    interpreters up among 1,000 live ones;
//! 3. GIL wake latency of a thread returning from a blocking call beside a
//!    CPU-bound one, and what that costs the CPU-bound thread.
//!
//! Every scenario prints one summary table (figure, unit, ours, control,
//! reference and its provenance), whose `figure` column holds the JSON keys,
//! and the busy-machine verdict of its control (see `control.rs`).

mod control;
mod cpython;
mod gc;
mod memory;
mod plot;
mod scaling;
mod soak;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{value_parser, Arg, ArgAction, Command};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value};

/// Options shared by every scenario.
pub struct Opts {
    /// Worker threads at most.
    pub threads: usize,
    /// Cores of the machine.
    pub cores: usize,
    /// Length of each measured phase.
    pub phase: Duration,
}

/// Progress on stderr: a bar on a terminal; otherwise (piped, CI) one line
/// per phase with the elapsed time, and indicatif's draw target hidden.
pub struct Progress {
    bar: ProgressBar,
    tty: bool,
    start: Instant,
    steps: u64,
    done: AtomicU64,
}

impl Progress {
    fn new(steps: u64) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            let pb = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
            pb.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            pb.enable_steady_tick(Duration::from_millis(200));
            pb
        } else {
            ProgressBar::hidden()
        };
        Progress { bar, tty, start: Instant::now(), steps, done: AtomicU64::new(0) }
    }

    /// Starts the next step, named `msg`.
    pub fn step(&self, msg: impl Into<std::borrow::Cow<'static, str>>) {
        let msg = msg.into();
        let k = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.tty {
            eprintln!("[{:7.1} s] {k}/{} {msg}", self.start.elapsed().as_secs_f64(), self.steps.max(k));
        }
        self.bar.set_message(msg);
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
        if !self.tty {
            eprintln!("[{:7.1} s] done", self.start.elapsed().as_secs_f64());
        }
    }
}

/// A table: title, column names, rows of cells.
pub struct Table {
    /// Printed above the table.
    pub title: String,
    /// Column names (the JSON keys where the table mirrors JSON).
    pub columns: Vec<String>,
    /// Rows, as many cells as columns.
    pub rows: Vec<Vec<String>>,
}

/// Where a reference figure comes from.
pub struct Reference {
    /// The figure, if there is one.
    pub value: Option<f64>,
    /// "measured: Python 3.13.0", "published: <source>", or "not measured: why".
    pub source: String,
}

impl Reference {
    /// A figure measured in this run by `py`.
    pub fn measured(value: f64, py: &cpython::Python) -> Self {
        Reference { value: Some(value), source: py.provenance() }
    }
    /// No figure, and why.
    pub fn none(why: impl Into<String>) -> Self {
        Reference { value: None, source: why.into() }
    }
}

/// A scenario's summary: one row per figure (ours, control, reference side
/// by side), mirrored into the JSON as `<figure>` (ours, flat, as before),
/// `control.<figure>` and `reference.<figure>` = {value, source}.
pub struct Summary {
    title: String,
    /// Only figure, unit, ours (a scenario with no control or reference per figure).
    bare: bool,
    rows: Vec<Vec<String>>,
    control: Map<String, Value>,
    reference: Map<String, Value>,
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite()).map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn num(v: Option<f64>, digits: i32) -> Value {
    match v.filter(|x| x.is_finite()) {
        None => Value::Null,
        Some(x) if digits <= 1 && x.fract() == 0.0 && x.abs() < 9e15 => Value::from(x as i64),
        Some(x) => Value::from(round(x, digits)),
    }
}

impl Summary {
    /// An empty summary titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Summary { title: title.into(), bare: false, rows: Vec::new(), control: Map::new(), reference: Map::new() }
    }

    /// A summary with only the figure, unit and ours columns.
    pub fn bare(title: impl Into<String>) -> Self {
        Summary { bare: true, ..Summary::new(title) }
    }

    /// Adds figure `key` (its unit in `unit`), shown with `digits` decimals.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        report: &mut Report,
        key: &str,
        unit: &str,
        digits: usize,
        ours: f64,
        control: Option<f64>,
        reference: Option<Reference>,
    ) {
        let d = digits as i32 + 1;
        report.values.insert(key.into(), num(Some(ours), d));
        if let Some(c) = control {
            self.control.insert(key.into(), num(Some(c), d));
        }
        let (rv, rs) = match &reference {
            Some(r) => (r.value, r.source.clone()),
            None => (None, "-".into()),
        };
        if let Some(r) = reference {
            let mut m = Map::new();
            m.insert("value".into(), num(r.value, d));
            m.insert("source".into(), Value::from(r.source));
            self.reference.insert(key.into(), Value::Object(m));
        }
        self.rows.push(vec![
            key.into(),
            unit.into(),
            cell(Some(ours), digits),
            cell(control, digits),
            cell(rv, digits),
            rs,
        ]);
    }

    /// Puts the table first among the report's tables and the maps into its JSON.
    pub fn finish(self, report: &mut Report) {
        let mut columns =
            ["figure", "unit", "ours", "control", "reference", "reference_source"].map(String::from).to_vec();
        let mut rows = self.rows;
        if self.bare {
            columns.truncate(3);
            rows.iter_mut().for_each(|r| r.truncate(3));
        }
        report.tables.insert(0, Table { title: self.title, columns, rows });
        merge(&mut report.values, "control", self.control);
        merge(&mut report.values, "reference", self.reference);
    }
}

fn merge(values: &mut Map<String, Value>, key: &str, m: Map<String, Value>) {
    match values.get_mut(key) {
        Some(Value::Object(o)) => o.extend(m),
        _ => {
            values.insert(key.into(), Value::Object(m));
        }
    }
}

/// What a scenario produced.
#[derive(Default)]
pub struct Report {
    /// Key → value pairs for `--json`.
    pub values: Map<String, Value>,
    /// Tables, the summary first.
    pub tables: Vec<Table>,
    /// Lines printed after the tables.
    pub notes: Vec<String>,
    /// Plots for `--plot`.
    pub plots: Vec<plot::Plot>,
    /// The busy-machine verdict.
    pub load: Option<control::LoadCheck>,
}

impl Report {
    /// Records the load check (JSON `load`, `machine_busy`).
    pub fn set_load(&mut self, load: control::LoadCheck) {
        self.values.insert("machine_busy".into(), Value::from(load.warning.is_some()));
        self.values.insert("load".into(), load.json());
        self.load = Some(load);
    }
}

fn print_report(r: &Report) {
    for t in &r.tables {
        println!("{}", t.title);
        let widths: Vec<usize> = (0..t.columns.len())
            .map(|c| t.rows.iter().map(|row| row[c].chars().count()).chain([t.columns[c].len()]).max().unwrap_or(0))
            .collect();
        let line = |cells: &[String]| {
            let v: Vec<String> =
                cells
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(i, (c, w))| {
                        if i == 0 || t.columns[i] == "reference_source" {
                            format!("{c:<w$}")
                        } else {
                            format!("{c:>w$}")
                        }
                    })
                    .collect();
            println!("  {}", v.join("  ").trim_end());
        };
        line(&t.columns);
        println!("  {}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        for row in &t.rows {
            line(row);
        }
        println!();
    }
    for line in &r.notes {
        println!("{line}");
    }
    if let Some(l) = &r.load {
        match &l.warning {
            Some(w) => println!("{w}"),
            None => println!(
                "machine load: quiet (control speedup {}, least CPU share of a control thread {}, one-thread spread {:.0} %)",
                l.speedup.map_or("n/a (1 thread)".into(), |s| format!("{s:.2}x of {:.0}x ideal", l.ideal)),
                l.cpu_share_min.map_or("n/a".into(), |c| format!("{:.0} %", 100.0 * c)),
                100.0 * l.spread
            ),
        }
    }
}

/// A scenario's entry point.
type Scenario = fn(&Opts, &Progress) -> Report;

fn main() {
    let m = Command::new("stress")
        .about(
            "subinterp stress harness: parallel interpreters, GIL hand-off, interpreter churn, heap, collector, soak",
        )
        .arg(
            Arg::new("scenario")
                .long("scenario")
                .default_value("scaling")
                .value_parser(["scaling", "memory", "gc", "soak", "all"])
                .help("which scenario to run (all = scaling, memory and gc)"),
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
                .help("seconds per measured phase (soak: the whole run)"),
        )
        .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("print one JSON object instead of tables"))
        .arg(Arg::new("plot").long("plot").value_name("DIR").help("write SVG plots of the results into DIR"))
        .get_matches();

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = m.get_one::<u64>("threads").map(|&t| t as usize).unwrap_or(cores);
    let secs = *m.get_one::<f64>("duration").expect("has a default");
    if !(0.01..=3600.0).contains(&secs) {
        eprintln!("error: --duration must be between 0.01 and 3600 seconds");
        std::process::exit(2);
    }
    let opts = Opts { threads, cores, phase: Duration::from_secs_f64(secs) };
    let json = m.get_flag("json");
    let plot_dir = m.get_one::<String>("plot").map(std::path::PathBuf::from);
    let scenario = m.get_one::<String>("scenario").expect("has a default").clone();
    if let Some(dir) = &plot_dir {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("error: --plot {}: {e}", dir.display());
            std::process::exit(2);
        }
    }

    let names: Vec<&str> = if scenario == "all" { vec!["scaling", "memory", "gc"] } else { vec![scenario.as_str()] };
    let runs: Vec<(&str, u64, Scenario)> = names
        .iter()
        .map(|&n| match n {
            "scaling" => (n, scaling::steps(&opts), scaling::run as Scenario),
            "memory" => (n, memory::STEPS, memory::report as Scenario),
            "gc" => (n, gc::STEPS, gc::report as Scenario),
            "soak" => (n, soak::STEPS, soak::report as Scenario),
            other => unreachable!("clap admits only known scenarios, got {other}"),
        })
        .collect();
    let progress = Progress::new(runs.iter().map(|r| r.1).sum());
    let wants_cpython = names.iter().any(|n| matches!(*n, "scaling" | "gc"));
    if wants_cpython {
        match cpython::find() {
            Some(py) => eprintln!("reference: CPython {} ({}), measured in this run", py.version, py.exe),
            None => eprintln!("reference: no python3 found (set SUBINTERP_CPYTHON): CPython figures are not measured"),
        }
    }
    let reports: Vec<(&str, Report)> = runs.iter().map(|(n, _, run)| (*n, run(&opts, &progress))).collect();
    progress.finish();

    let mut written = Vec::new();
    if let Some(dir) = &plot_dir {
        for p in reports.iter().flat_map(|(_, r)| &r.plots) {
            for (name, svg) in plot::render(p) {
                let path = dir.join(name);
                if let Err(e) = std::fs::write(&path, svg) {
                    eprintln!("error: writing {}: {e}", path.display());
                    std::process::exit(2);
                }
                written.push(path.display().to_string());
            }
        }
    }

    let header = |obj: &mut Map<String, Value>, name: &str| {
        obj.insert("scenario".into(), Value::from(name));
        obj.insert("threads".into(), Value::from(threads));
        obj.insert("cores".into(), Value::from(cores));
        obj.insert("phase_s".into(), Value::from(secs));
        obj.insert(
            "cpython".into(),
            wants_cpython
                .then(cpython::find)
                .flatten()
                .map_or(Value::Null, |p| Value::from(format!("{} ({})", p.version, p.exe))),
        );
    };
    if json {
        let mut obj = Map::new();
        if let [(name, r)] = &reports[..] {
            header(&mut obj, name);
            obj.extend(r.values.clone());
        } else {
            header(&mut obj, "all");
            obj.insert(
                "machine_busy".into(),
                Value::from(reports.iter().any(|(_, r)| r.load.as_ref().is_some_and(|l| l.warning.is_some()))),
            );
            for (name, r) in &reports {
                obj.insert(name.to_string(), Value::Object(r.values.clone()));
            }
        }
        if plot_dir.is_some() {
            obj.insert("plots".into(), Value::from(written.clone()));
        }
        println!("{}", Value::Object(obj));
    } else {
        for (name, r) in &reports {
            println!("subinterp stress: scenario {name}, {threads} thread(s) on {cores} core(s), {secs} s per phase\n");
            print_report(r);
            println!();
        }
        for w in &written {
            println!("plot: {w}");
        }
    }
    // A busy machine is said on stderr too, where a piped run's reader looks.
    for (name, r) in &reports {
        if let Some(w) = r.load.as_ref().and_then(|l| l.warning.as_ref()) {
            eprintln!("{name}: {w}");
        }
    }
    soak::exit_if_failed();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_mirrors_rows_into_json() {
        let mut r = Report::default();
        let mut s = Summary::new("t");
        let py = cpython::Python { exe: "python3".into(), version: "3.13.0".into() };
        s.add(&mut r, "create_close_us_p50", "us", 2, 1.234, Some(0.5), Some(Reference::measured(23000.0, &py)));
        s.add(&mut r, "idle_interpreter_kib", "KiB", 1, 3.0, None, Some(Reference::none("not measured: x")));
        s.finish(&mut r);
        assert_eq!(r.values["create_close_us_p50"], 1.234);
        assert_eq!(r.values["control"]["create_close_us_p50"], 0.5);
        assert_eq!(r.values["reference"]["create_close_us_p50"]["source"], "measured: Python 3.13.0");
        assert_eq!(r.values["reference"]["idle_interpreter_kib"]["value"], Value::Null);
        let t = &r.tables[0];
        assert_eq!(t.columns, ["figure", "unit", "ours", "control", "reference", "reference_source"]);
        assert_eq!(t.rows[0], ["create_close_us_p50", "us", "1.23", "0.50", "23000.00", "measured: Python 3.13.0"]);
        assert_eq!(t.rows[1][3], "-");
    }
}
