//! The GIL: mutual exclusion, hand-off, the convoy fix, re-entry, panics,
//! pending calls and interrupts.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

use subinterp::{Error, Interpreter, InterpreterConfig, Runtime, RuntimeConfig};

fn rt() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

fn fast_switching() -> InterpreterConfig {
    InterpreterConfig { switch_interval: Some(Duration::from_micros(200)), ..InterpreterConfig::isolated() }
}

/// Runs `threads` threads in `interps[i % len]`, each doing `iters` iterations
/// that flag themselves "inside", bump a counter with a plain load + store (an
/// update lost if two threads were ever inside at once) and checkpoint; fails
/// if two were ever inside at once. No thread leaves before every thread has
/// started, so the first one in can only leave after the GIL was taken from
/// it: the switching, not only the exclusion, is exercised.
fn assert_exclusion(interps: Vec<Interpreter>, threads: usize, iters: usize) {
    let inside = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let interp = interps[t % interps.len()].clone();
            let (inside, violations, total, started, start) =
                (inside.clone(), violations.clone(), total.clone(), started.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                interp
                    .with_gil(|g| {
                        started.fetch_add(1, Ordering::SeqCst);
                        let mut i = 0;
                        // The hang guard: a GIL that never switches fails
                        // here instead of hanging the test.
                        let deadline = std::time::Instant::now() + Duration::from_secs(60);
                        while i < iters || started.load(Ordering::SeqCst) < threads {
                            if inside.swap(true, Ordering::SeqCst) {
                                violations.fetch_add(1, Ordering::SeqCst);
                            }
                            total.store(total.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                            inside.store(false, Ordering::SeqCst);
                            g.checkpoint().unwrap();
                            i += 1;
                            if i % 1024 == 0 {
                                assert!(std::time::Instant::now() < deadline, "the GIL never switched");
                            }
                        }
                        i
                    })
                    .unwrap()
            })
        })
        .collect();
    let ran: u64 = hs.into_iter().map(|h| h.join().unwrap() as u64).sum();
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert_eq!(total.load(Ordering::SeqCst), ran, "an update made under the GIL was lost");
}

#[test]
fn one_gil_excludes_threads_of_one_interpreter() {
    let rt = rt();
    let a = rt.create(fast_switching()).unwrap();
    assert_exclusion(vec![a.clone()], 4, 20_000);
    let s = a.gil_stats();
    // Every thread but the last to start was made to yield at least once
    // (each yield is a forced switch), and every yield is one more
    // acquisition on top of the four entries.
    assert!(s.forced_switches >= 3, "{s:?}");
    assert_eq!(s.acquisitions, 4 + s.forced_switches, "{s:?}");
    assert!(s.contended_acquisitions >= 3 && s.contended_acquisitions <= s.acquisitions, "{s:?}");
    assert!(s.switches >= 4 && s.switches <= s.acquisitions, "{s:?}");
}

#[test]
fn shared_gil_excludes_main_and_legacy_interpreters() {
    let rt = rt();
    rt.main().set_switch_interval(Duration::from_micros(200)).unwrap();
    let legacy = rt.create(InterpreterConfig::legacy()).unwrap();
    assert_exclusion(vec![rt.main(), legacy.clone()], 4, 20_000);
    // Same GIL: the statistics are main's, and threads of both interpreters
    // were switched on it.
    assert_eq!(legacy.gil_stats(), rt.main().gil_stats());
    assert!(legacy.gil_stats().forced_switches >= 3);
}

#[test]
fn own_gils_run_in_parallel() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    // Both threads must be inside their with_gil at the same time to pass the
    // barrier; with one GIL between them this would never complete.
    let (tx, rx) = mpsc::channel();
    let barrier = Arc::new(Barrier::new(2));
    for interp in [a, b] {
        let (barrier, tx) = (barrier.clone(), tx.clone());
        thread::spawn(move || {
            interp.with_gil(|_| barrier.wait()).unwrap();
            tx.send(()).unwrap();
        });
    }
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(30)).expect("own-GIL interpreters did not run at the same time");
    }
}

#[test]
fn waiter_gets_the_gil_from_a_cpu_bound_holder_through_a_drop_request() {
    let rt = rt();
    let a = rt.create(fast_switching()).unwrap();
    let holder_in = Arc::new(Barrier::new(2));
    let done = Arc::new(AtomicBool::new(false));
    let (a2, h2, d2) = (a.clone(), holder_in.clone(), done.clone());
    let holder = thread::spawn(move || {
        a2.with_gil(|g| {
            h2.wait();
            // CPU-bound: only leaves when the waiter got the GIL and said so.
            while !d2.load(Ordering::SeqCst) {
                g.checkpoint().unwrap();
            }
        })
        .unwrap();
    });
    holder_in.wait();
    a.with_gil(|_| done.store(true, Ordering::SeqCst)).unwrap();
    holder.join().unwrap();
    let s = a.gil_stats();
    assert!(s.forced_switches >= 1, "{s:?}");
    assert!(s.contended_acquisitions >= 1, "{s:?}");
}

#[test]
fn a_thread_returning_from_allow_threads_does_not_wait_a_switch_interval() {
    // With a 10 s switch interval, a plain waiter would wait 10 s for its drop
    // request. A thread coming back from a blocking call asks at once.
    let rt = rt();
    let cfg = InterpreterConfig { switch_interval: Some(Duration::from_secs(10)), ..InterpreterConfig::isolated() };
    let a = rt.create(cfg).unwrap();
    let detached = Arc::new(Barrier::new(2));
    let holder_in = Arc::new(Barrier::new(2));
    let done = Arc::new(AtomicBool::new(false));
    let (a2, det2, hin2, d2) = (a.clone(), detached.clone(), holder_in.clone(), done.clone());
    let io = thread::spawn(move || {
        a2.with_gil(move |g| {
            g.allow_threads(move || {
                det2.wait(); // the CPU-bound thread may take the GIL now
                hin2.wait(); // it holds the GIL: our "blocking call" returns
            });
            d2.store(true, Ordering::SeqCst);
        })
        .unwrap();
    });
    detached.wait();
    let cpu = {
        let (a, done) = (a.clone(), done.clone());
        thread::spawn(move || {
            a.with_gil(|g| {
                holder_in.wait();
                while !done.load(Ordering::SeqCst) {
                    g.checkpoint().unwrap();
                }
            })
            .unwrap();
        })
    };
    io.join().unwrap();
    cpu.join().unwrap();
    let s = a.gil_stats();
    assert!(s.wait_max < Duration::from_secs(5), "the returning thread waited {:?}", s.wait_max);
    assert!(s.forced_switches >= 1, "{s:?}");
}

#[test]
fn reentering_the_held_interpreter_is_allowed_and_takes_no_gil() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let before = a.gil_stats().acquisitions;
    let v = a
        .with_gil(|g| {
            let inner = g.interpreter().with_gil(|g2| g2.interpreter().with_gil(|_| 7).unwrap()).unwrap();
            inner + 1
        })
        .unwrap();
    assert_eq!(v, 8);
    assert_eq!(a.gil_stats().acquisitions, before + 1);
}

#[test]
fn entering_another_interpreter_while_holding_a_gil_is_refused_but_allowed_from_allow_threads() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    let b2 = b.clone();
    let r = a.with_gil(|_| b2.with_gil(|_| ())).unwrap();
    assert!(matches!(r, Err(Error::GilHeldByOtherInterpreter { held: 1, requested: 2 })));
    // Even a shared-GIL pair: one interpreter at a time per thread.
    let legacy = rt.create(InterpreterConfig::legacy()).unwrap();
    let l2 = legacy.clone();
    assert!(matches!(
        rt.main().with_gil(|_| l2.with_gil(|_| ())).unwrap(),
        Err(Error::GilHeldByOtherInterpreter { held: 0, requested: 3 })
    ));
    // The supported hop: release a's GIL, then enter b.
    let b3 = b.clone();
    let id = a
        .with_gil(move |g| {
            let inner = g.allow_threads(move || b3.with_gil(|g| g.id()).unwrap());
            assert_eq!(Interpreter::current().unwrap().id(), 1);
            inner
        })
        .unwrap();
    assert_eq!(id, 2);
}

#[test]
fn current_tracks_the_held_interpreter() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    assert!(Interpreter::current().is_none());
    a.with_gil(|g| {
        assert_eq!(Interpreter::current().unwrap(), *g.interpreter());
        g.allow_threads(|| assert!(Interpreter::current().is_none()));
        assert_eq!(Interpreter::current().unwrap().id(), 1);
    })
    .unwrap();
    assert!(Interpreter::current().is_none());
}

#[test]
fn a_panic_inside_with_gil_releases_the_gil_and_detaches() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| a.with_gil(|_| panic!("boom")).unwrap()));
    assert!(r.is_err());
    assert!(!a.is_running(), "GIL still held after the panic");
    assert!(Interpreter::current().is_none(), "thread still attached after the panic");
    // Another thread can take the GIL, and so can this one.
    let a2 = a.clone();
    thread::spawn(move || a2.with_gil(|_| ()).unwrap()).join().unwrap();
    a.with_gil(|_| ()).unwrap();
    // A panic inside allow_threads re-takes the GIL, then unwinds through with_gil.
    let r = catch_unwind(AssertUnwindSafe(|| a.with_gil(|g| g.allow_threads(|| panic!("inner"))).unwrap()));
    assert!(r.is_err());
    assert!(!a.is_running());
    a.close().unwrap();
}

#[test]
fn pending_calls_from_any_thread_run_in_order_at_the_next_checkpoint() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let (a, log) = (a.clone(), log.clone());
            thread::spawn(move || {
                for i in 0..500 {
                    let log = log.clone();
                    a.add_pending_call(move |g| {
                        assert_eq!(g.id(), 1);
                        log.lock().unwrap().push((p, i));
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    assert!(log.lock().unwrap().is_empty(), "nothing runs before a checkpoint");
    a.with_gil(|g| g.checkpoint()).unwrap().unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 2000, "no call lost, none run twice (no ring to fill up)");
    for p in 0..4 {
        let mine: Vec<_> = log.iter().filter(|(q, _)| *q == p).map(|(_, i)| *i).collect();
        assert_eq!(mine, (0..500).collect::<Vec<_>>(), "per-producer FIFO order");
    }
}

#[test]
fn a_panicking_pending_call_is_reported_and_the_rest_still_run() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r1 = ran.clone();
    a.add_pending_call(move |_| {
        r1.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    a.add_pending_call(|_| panic!("bad call")).unwrap();
    let r2 = ran.clone();
    a.add_pending_call(move |_| {
        r2.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    let first = a.with_gil(|g| g.checkpoint()).unwrap();
    match first {
        Err(Error::CallbackPanicked { context, message }) => {
            assert_eq!(context, "pending call");
            assert_eq!(message, "bad call");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(!a.is_running(), "the GIL was released");
    a.with_gil(|g| g.checkpoint()).unwrap().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

#[test]
fn close_runs_pending_calls_and_later_adds_are_refused() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let r = ran.clone();
        a.add_pending_call(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    a.add_pending_call(|_| panic!("during close")).unwrap();
    let report = a.close().unwrap();
    assert_eq!(report.pending_calls_run, 4);
    assert_eq!(report.pending_call_errors.len(), 1);
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    assert!(matches!(a.add_pending_call(|_| ()), Err(Error::InterpreterClosed { .. })));
}

#[test]
fn interrupt_stops_a_busy_interpreter_at_its_next_checkpoint() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let handle = a.interrupt_handle();
    assert_eq!(handle.interpreter_id(), 1);
    let started = Arc::new(Barrier::new(2));
    let iterations = Arc::new(AtomicU64::new(0));
    let (a2, s2, it2) = (a.clone(), started.clone(), iterations.clone());
    let worker = thread::spawn(move || {
        a2.with_gil(|g| {
            s2.wait();
            loop {
                it2.fetch_add(1, Ordering::Relaxed);
                g.checkpoint()?;
            }
        })
        .unwrap()
    });
    started.wait();
    handle.interrupt().unwrap();
    let r: Result<(), Error> = worker.join().unwrap();
    assert!(matches!(r, Err(Error::Interrupted { id: 1 })));
    // One-shot: the next run is not interrupted.
    a.with_gil(|g| g.checkpoint()).unwrap().unwrap();
    // cancel() withdraws a request nobody saw.
    handle.interrupt().unwrap();
    assert!(handle.cancel());
    assert!(!handle.cancel());
    a.with_gil(|g| g.checkpoint()).unwrap().unwrap();
}

#[test]
fn switch_interval_is_per_gil_and_validated() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    assert_eq!(a.switch_interval(), Duration::from_millis(5));
    a.set_switch_interval(Duration::from_millis(1)).unwrap();
    assert_eq!(a.switch_interval(), Duration::from_millis(1));
    assert_eq!(rt.main().switch_interval(), Duration::from_millis(5));
    assert!(matches!(a.set_switch_interval(Duration::ZERO), Err(Error::InvalidConfig { .. })));
    // Shared GIL: setting it changes main's, as sys.setswitchinterval does.
    let legacy = rt.create(InterpreterConfig::legacy()).unwrap();
    legacy.set_switch_interval(Duration::from_millis(2)).unwrap();
    assert_eq!(rt.main().switch_interval(), Duration::from_millis(2));
}
