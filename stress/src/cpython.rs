//! Finding a CPython and running the reference scripts (`stress/py/`) in it,
//! so that every CPython figure the harness prints is measured in the same
//! run, with its version ("measured: Python 3.13.0"), or says why it is not.
//!
//! The interpreter is `SUBINTERP_CPYTHON` if set, else the first of
//! `python3.14`, `python3.13`, `python3` on `PATH` that runs. Set
//! `SUBINTERP_CPYTHON=/nonexistent` to skip CPython altogether.

use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// A CPython that answered.
#[derive(Clone, Debug)]
pub struct Python {
    /// The command.
    pub exe: String,
    /// `sys.version`'s first word, e.g. `3.13.0`.
    pub version: String,
}

impl Python {
    /// "measured: Python 3.13.0".
    pub fn provenance(&self) -> String {
        format!("measured: Python {}", self.version)
    }

    /// (major, minor).
    pub fn minor(&self) -> (u32, u32) {
        let mut it = self.version.split('.').map(|p| p.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// Runs `script` (a file under `stress/py/`, given as its text) with
    /// `args`; returns its JSON on stdout, or why not.
    pub fn run(&self, name: &str, script: &str, args: &[String]) -> Result<Value, String> {
        let out = Command::new(&self.exe)
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .map_err(|e| format!("{} {name}: {e}", self.exe))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!("{} {name} failed: {}", self.exe, err.lines().last().unwrap_or("")));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{} {name}: bad JSON: {e}", self.exe))
    }
}

/// The CPython to compare with, found once per process.
pub fn find() -> Option<&'static Python> {
    static FOUND: OnceLock<Option<Python>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let candidates: Vec<String> = match std::env::var("SUBINTERP_CPYTHON") {
                Ok(p) => vec![p],
                Err(_) => ["python3.14", "python3.13", "python3"].iter().map(|s| s.to_string()).collect(),
            };
            candidates.into_iter().find_map(|exe| {
                let out = Command::new(&exe).args(["-c", "import sys; print(sys.version.split()[0])"]).output().ok()?;
                let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
                (out.status.success() && version.starts_with('3')).then_some(Python { exe, version })
            })
        })
        .as_ref()
}

/// Why a CPython figure is missing: no CPython, or one too old for it.
pub fn missing(needs: &str) -> String {
    match find() {
        None => "not measured: no python3 found (set SUBINTERP_CPYTHON)".into(),
        Some(p) => format!("not measured: Python {} lacks {needs}", p.version),
    }
}

/// `stress/py/cpython_scaling.py`.
pub const SCALING_PY: &str = include_str!("../py/cpython_scaling.py");
/// `stress/py/cpython_gc.py`.
pub const GC_PY: &str = include_str!("../py/cpython_gc.py");
