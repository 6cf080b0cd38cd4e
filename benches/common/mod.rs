//! What the side-by-side benches share: the machine-load control.
//!
//! A ratio to CPython measured in the same run survives a busy machine
//! better than an absolute figure, but neither is worth much when other work
//! competes for the cores. Each side-by-side table prints the 1-minute load
//! average before and after it and a warning when, less the bench's own
//! thread, it exceeds half the cores (`/proc/loadavg`; elsewhere the line says it is unknown).

/// The 1-minute load average, if the OS reports it.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// One line on the machine's load: `before` and now, against the cores.
pub fn load_note(before: Option<f64>) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match (before, load_average()) {
        (Some(b), Some(a)) => {
            // The bench's own thread is one unit of load: more than half the
            // cores busy besides it is a busy machine.
            let busy = b.max(a) - 1.0 > cores as f64 / 2.0;
            format!(
                "machine load: {b:.2} before, {a:.2} after, {cores} cores{}",
                if busy { " -- WARNING: machine busy, figures are not idle-machine figures" } else { " (idle)" }
            )
        }
        _ => format!("machine load: unknown (no /proc/loadavg), {cores} cores"),
    }
}

/// Runs `benches/<name>_cpython.py --json` in the CPython named by
/// `SUBINTERP_CPYTHON` (else `python3` on `PATH`) and parses its JSON; `None`
/// (with the reason on stderr) when there is no such CPython or it failed.
pub fn cpython(name: &str) -> Option<serde_json::Value> {
    let python = std::env::var("SUBINTERP_CPYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!("{}/benches/{name}_cpython.py", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(&python).args([script.as_str(), "--json"]).output().ok()?;
    if !out.status.success() {
        eprintln!("{name} side by side: {python} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
