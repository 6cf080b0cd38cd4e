//! Under `ulimit -v` (the OS refusing memory, not the interpreter's budget)
//! growing objects is a `MemoryError`, never an abort, and the interpreter
//! stays usable. Each case runs in a child process (this test binary again,
//! one case selected by an environment variable) started by `sh` after
//! `ulimit -v`, so the limit never touches the test harness itself.

use std::process::Command;

use subinterp::{Gil, InterpreterConfig, Runtime, RuntimeConfig};

const CHILD: &str = "SUBINTERP_ULIMIT_CHILD";

/// Address space for the child beyond what it has at start (KiB): room for
/// the harness and the runtime, far less than the case asks for.
const HEADROOM_KIB: u64 = 256 * 1024;

/// Runs `case` in a child under `ulimit -v`; returns its stdout.
fn run_limited(case: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    // The child's own size: the virtual size of a fresh run of this binary
    // that only lists its tests (read from /proc after a spawn would race).
    let vm_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmSize:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(1 << 20);
    let limit = vm_kib + HEADROOM_KIB;
    let script = format!("ulimit -v {limit} && exec \"$0\" --exact {case} --nocapture --test-threads 1");
    let out = Command::new("sh").arg("-c").arg(script).arg(&exe).env(CHILD, case).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child {case} under ulimit -v {limit} KiB failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// In the child: runs `grow` until it errs; checks the error and that the
/// interpreter still works.
fn child(grow: impl for<'i> FnOnce(Gil<'i>) -> subinterp::Error) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    i.with_gil(|g| {
        let e = grow(g);
        assert!(e.is_memory_error(), "a MemoryError, not {e}");
        println!("REFUSED: {e}");
        // Usable afterwards: small objects still work, and a collection.
        let l = g.list(&[g.int(1).unwrap()]).unwrap();
        assert_eq!(l.len().unwrap(), 1);
        g.gc_collect(2).unwrap();
    })
    .unwrap();
    i.close().unwrap();
    println!("CHILD OK");
}

macro_rules! limited_case {
    ($name:ident, $grow:expr) => {
        #[test]
        fn $name() {
            if std::env::var_os(CHILD).is_some() {
                child($grow);
                return;
            }
            if !cfg!(target_os = "linux") || cfg!(miri) {
                return; // `ulimit -v` and /proc are Linux's
            }
            let out = run_limited(stringify!($name));
            assert!(out.contains("REFUSED: MemoryError"), "{out}");
            assert!(out.contains("CHILD OK"), "{out}");
        }
    };
}

limited_case!(a_list_growing_under_ulimit_is_a_memory_error, |g| {
    let l = g.list(&[]).unwrap();
    let x = g.none().unwrap();
    loop {
        if let Err(e) = l.list_append(&x) {
            return e;
        }
    }
});

limited_case!(many_small_objects_under_ulimit_are_a_memory_error, |g| {
    let keep = g.list(&[]).unwrap();
    loop {
        match g.list(&[]) {
            Ok(o) => {
                if let Err(e) = keep.list_append(&o) {
                    return e;
                }
            }
            Err(e) => return e,
        }
    }
});

limited_case!(a_huge_str_under_ulimit_is_a_memory_error, |g| {
    // One request larger than the headroom: the large-object path.
    let big = "x".repeat(64 << 20);
    let mut held = Vec::new();
    loop {
        match g.str(&big) {
            Ok(s) => held.push(s),
            Err(e) => return e,
        }
    }
});
limited_case!(a_dict_growing_under_ulimit_is_a_memory_error, |g| {
    let d = g.dict().unwrap();
    let v = g.none().unwrap();
    let mut i = 0i64;
    loop {
        let k = match g.int(i) {
            Ok(k) => k,
            Err(e) => return e,
        };
        if let Err(e) = d.dict_set(&k, &v) {
            return e;
        }
        i += 1;
    }
});

limited_case!(an_instance_namespace_growing_under_ulimit_is_a_memory_error, |g| {
    // Attribute names are interned: the intern table grows with them.
    let o = g.instance("Namespace").unwrap();
    let v = g.none().unwrap();
    let mut i = 0u64;
    loop {
        if let Err(e) = o.setattr(&format!("a{i}"), &v) {
            return e;
        }
        i += 1;
    }
});

/// Takes what memory is left in small blocks (a chain of one-item lists,
/// no buffers): afterwards a worklist of a big container's references could
/// not be allocated.
fn exhaust<'i>(g: Gil<'i>) -> subinterp::Obj<'i> {
    let mut chain = g.list(&[]).unwrap();
    while let Ok(next) = g.list(std::slice::from_ref(&chain)) {
        chain = next;
    }
    chain
}

limited_case!(a_full_list_and_dict_are_cleared_under_ulimit, |g| {
    // Filled until the system refuses, the rest of memory taken, then
    // cleared: `clear` releases the references from the moved-out buffer
    // and table, with no worklist of all of them to allocate.
    let l = g.list(&[]).unwrap();
    let d = g.dict().unwrap();
    let x = g.none().unwrap();
    let e = loop {
        if let Err(e) = l.list_append(&x) {
            break e;
        }
    };
    let mut i = 0i64;
    loop {
        let Ok(k) = g.int(i) else { break };
        if d.dict_set(&k, &x).is_err() {
            break;
        }
        i += 1;
    }
    let rest = exhaust(g);
    l.clear().unwrap();
    assert_eq!(l.len().unwrap(), 0);
    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);
    drop(rest);
    e
});
