//! The harness as a user runs it: `--json --plot DIR` on the default
//! scenario, piped (so progress comes as lines on stderr), without CPython.

use std::process::Command;

#[test]
fn scaling_json_plots_and_piped_progress() {
    let dir = std::env::temp_dir().join(format!("subinterp-stress-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_stress"))
        .args(["--duration", "0.05", "--threads", "2", "--json", "--plot"])
        .arg(&dir)
        .env("SUBINTERP_CPYTHON", "/nonexistent/python3")
        .output()
        .expect("run the harness");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness failed: {stderr}");

    // Piped: one line per phase with the elapsed time, then "done".
    let steps: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[') && l.contains(" s] ")).collect();
    assert!(steps.len() >= 10, "expected a line per phase on stderr, got:\n{stderr}");
    assert!(steps.last().is_some_and(|l| l.ends_with("done")), "{stderr}");
    assert!(stderr.contains("no python3 found"), "{stderr}");

    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    for key in
        ["own_gil_speedup", "one_interp_speedup", "shared_gil_speedup", "create_close_us_p50", "wake_latency_us_p50"]
    {
        assert!(v[key].is_number(), "{key} missing: {v}");
    }
    for key in ["own_gil_speedup", "create_close_us_p50", "wake_overshoot_us_p50"] {
        assert!(v["control"][key].is_number(), "control.{key} missing");
        let src = v["reference"][key]["source"].as_str().expect("reference with a source");
        assert!(src.starts_with("not measured: no python3"), "{key}: {src}");
        assert!(v["reference"][key]["value"].is_null());
    }
    assert!(v["machine_busy"].is_boolean() && v["load"]["control_speedup"].is_number(), "{}", v["load"]);
    assert_eq!(v["throughput"].as_array().map(Vec::len), Some(2));

    for (file, label) in [
        ("scaling_throughput.svg", "control (plain threads, no runtime)"),
        ("scaling_wake_latency.svg", "control: plain threads"),
    ] {
        let svg = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let doc = roxmltree::Document::parse(&svg).expect("SVG parses");
        assert!(doc.descendants().any(|n| n.text().is_some_and(|t| t.contains(label))), "{file} lacks {label:?}");
        assert!(v["plots"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().ends_with(file)));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
