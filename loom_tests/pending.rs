//! Pending calls: added from other threads while the holder drains; close vs add.
//!
//! A queued node's data is in a loom cell: the consumer's read of it must
//! happen after the producer's write, which only the push's Release CAS and
//! the consumer's Acquire swap provide.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use subinterp::{InterpreterConfig, Runtime, RuntimeConfig};

#[test]
fn calls_added_while_draining_run_exactly_once() {
    // Kills `pending_relaxed_push` (a causality violation on the node's cell).
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let (a, ran) = (a.clone(), ran.clone());
                thread::spawn(move || {
                    a.add_pending_call(move |_| {
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap();
                })
            })
            .collect();
        // Drain concurrently with the producers.
        a.with_gil(|g| g.checkpoint()).unwrap().unwrap();
        for p in producers {
            p.join().unwrap();
        }
        // Whatever the first drain missed, the next one runs; nothing twice.
        a.with_gil(|g| g.checkpoint()).unwrap().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn a_call_racing_close_either_runs_or_is_refused() {
    // Kills `pending_close_no_sentinel` (an accepted call that never runs).
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let (a2, r2) = (a.clone(), ran.clone());
        let producer = thread::spawn(move || {
            a2.add_pending_call(move |_| {
                r2.fetch_add(1, Ordering::SeqCst);
            })
            .is_ok()
        });
        let report = a.close().unwrap();
        let accepted = producer.join().unwrap();
        // Never lost: accepted calls ran during close; refused ones did not run.
        assert_eq!(ran.load(Ordering::SeqCst), usize::from(accepted));
        assert_eq!(report.pending_calls_run, usize::from(accepted));
    });
}
