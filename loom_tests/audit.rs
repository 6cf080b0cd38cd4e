//! Audit hooks and code-extra indexes: a hook appended while another thread
//! dispatches an event (the dispatcher sees a prefix of the hooks, in
//! registration order, each whole), and code-extra indexes requested from
//! two threads at once (distinct, none past the last usable one).
//!
//! The hook list is the production `services::audit::HookList`: each hook
//! sits in a loom `UnsafeCell`, so a dispatcher that reached a node whose
//! hook it cannot see (a publication without release) is a causality
//! violation.

use std::sync::Mutex;

use loom::thread;
use subinterp::{Error, Runtime, RuntimeConfig, MAX_CODE_EXTRA_INDEXES};

#[test]
fn audit_hook_append_races_dispatch() {
    // Kills `audit_relaxed_publish` (a node published without release: the
    // dispatcher reads a hook it has no happens-before edge to).
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let seen: &'static Mutex<Vec<u32>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let hook = move |n: u32| {
            move |_g: subinterp::Gil<'_>, event: &str, _args: &[subinterp::Obj<'_>]| {
                if event == "probe" {
                    seen.lock().unwrap().push(n);
                }
                Ok(())
            }
        };
        assert!(rt.add_audit_hook(hook(1)).unwrap());
        let rt = std::sync::Arc::new(rt);
        let writer = {
            let rt = rt.clone();
            thread::spawn(move || {
                // No interpreter on this thread: the adds are not audited.
                assert!(rt.add_audit_hook(hook(2)).unwrap());
                assert!(rt.add_audit_hook(hook(3)).unwrap());
            })
        };
        rt.main().with_gil(|g| g.audit("probe", &[]).unwrap()).unwrap();
        let first = std::mem::take(&mut *seen.lock().unwrap());
        writer.join().unwrap();
        assert!(
            [&[1][..], &[1, 2], &[1, 2, 3]].contains(&first.as_slice()),
            "a dispatch saw {first:?}, not a prefix of [1, 2, 3]"
        );
        // After the join every hook is seen, in order.
        rt.main().with_gil(|g| g.audit("probe", &[]).unwrap()).unwrap();
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
    });
}

#[test]
fn code_extra_indexes_from_two_threads() {
    // Kills `code_extra_racy_index` (CPython's unlocked `count++`: two
    // threads get the same index).
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let main = rt.main();
        // Two indexes left.
        for n in 0..MAX_CODE_EXTRA_INDEXES - 2 {
            assert_eq!(main.request_code_extra_index(None).unwrap(), n);
        }
        let other = main.clone();
        let t = thread::spawn(move || [other.request_code_extra_index(None), other.request_code_extra_index(None)]);
        let mine = [main.request_code_extra_index(Some(|_| {})), main.request_code_extra_index(None)];
        let theirs = t.join().unwrap();
        let mut got = Vec::new();
        let mut refused = 0;
        for r in mine.into_iter().chain(theirs) {
            match r {
                Ok(i) => got.push(i),
                Err(Error::CodeExtraExhausted { limit, .. }) => {
                    assert_eq!(limit, MAX_CODE_EXTRA_INDEXES);
                    refused += 1
                }
                Err(e) => panic!("{e}"),
            }
        }
        got.sort_unstable();
        assert_eq!(got, [MAX_CODE_EXTRA_INDEXES - 2, MAX_CODE_EXTRA_INDEXES - 1], "distinct, none past the last");
        assert_eq!(refused, 2);
        assert_eq!(main.code_extra_index_count(), MAX_CODE_EXTRA_INDEXES);
    });
}
