//! Interpreter lifecycle, configs, ids and the close() error matrix.

use std::sync::{mpsc, Arc, Barrier};
use std::thread;

use subinterp::{Error, GilMode, InterpreterConfig, InterpreterState, Runtime, RuntimeConfig};

fn rt() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

#[test]
fn ids_start_at_zero_and_are_never_reused() {
    let rt = rt();
    assert_eq!(rt.main().id(), 0);
    assert!(rt.main().is_main());
    let mut last = 0;
    for _ in 0..40 {
        let i = rt.create(InterpreterConfig::isolated()).unwrap();
        assert_eq!(i.id(), last + 1);
        last = i.id();
        i.close().unwrap();
    }
    // As measured in CPython 3.12: after 40 create/destroy cycles the next id is 41.
    assert_eq!(rt.create(InterpreterConfig::isolated()).unwrap().id(), 41);
}

#[test]
fn presets_mirror_cpython_feature_flags() {
    // test_configured_settings: exact Py_RTFLAGS_* bits.
    assert_eq!(InterpreterConfig::isolated().feature_flags(), (1 << 8) | (1 << 10));
    assert_eq!(InterpreterConfig::legacy().feature_flags(), (1 << 5) | (1 << 10) | (1 << 11) | (1 << 15) | (1 << 16));
    assert_eq!(InterpreterConfig::default(), InterpreterConfig::isolated());
    assert_eq!(InterpreterConfig::isolated().gil, GilMode::Own);
    assert_eq!(InterpreterConfig::legacy().gil, GilMode::Shared);
}

#[test]
fn contradictory_configs_are_refused_with_a_reason() {
    let rt = rt();
    let cases = [
        // CPython documents but does not enforce this one.
        InterpreterConfig { use_main_obmalloc: true, ..InterpreterConfig::isolated() },
        InterpreterConfig { check_multi_interp_extensions: false, ..InterpreterConfig::isolated() },
        InterpreterConfig { allow_threads: false, allow_daemon_threads: true, ..InterpreterConfig::legacy() },
        InterpreterConfig { switch_interval: Some(std::time::Duration::from_millis(1)), ..InterpreterConfig::legacy() },
        InterpreterConfig { switch_interval: Some(std::time::Duration::ZERO), ..InterpreterConfig::isolated() },
        InterpreterConfig { memory_limit: Some(1 << 20), ..InterpreterConfig::legacy() },
    ];
    for cfg in cases {
        let before = rt.len();
        match rt.create(cfg.clone()) {
            Err(Error::InvalidConfig { reason }) => assert!(!reason.is_empty()),
            other => panic!("{cfg:?} gave {other:?}"),
        }
        assert_eq!(rt.len(), before, "a refused create leaves nothing behind");
    }
    // A refused create consumes no id.
    assert_eq!(rt.create(InterpreterConfig::isolated()).unwrap().id(), 1);
    assert!(matches!(
        Runtime::new(RuntimeConfig { switch_interval: std::time::Duration::ZERO }),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn lookup_of_unknown_and_closed_ids_is_not_found() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    assert_eq!(rt.get(a.id()).unwrap(), a);
    let e = rt.get(99).unwrap_err();
    assert_eq!(e.to_string(), "unrecognized interpreter ID 99");
    a.close().unwrap();
    assert!(matches!(rt.get(a.id()), Err(Error::InterpreterNotFound { id: 1 })));
}

#[test]
fn close_by_id_of_unknown_or_closed_ids_is_not_found() {
    let rt = rt();
    assert!(matches!(rt.close(7), Err(Error::InterpreterNotFound { id: 7 })));
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    rt.close(a.id()).unwrap();
    assert!(matches!(rt.close(a.id()), Err(Error::InterpreterNotFound { id: 1 })));
    assert!(rt.close(0).is_ok(), "main closes once it is alone");
}

#[test]
fn every_use_of_a_closed_interpreter_is_a_typed_error() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let report = a.close().unwrap();
    assert_eq!(report.pending_calls_run, 0);
    assert_eq!(a.state(), InterpreterState::Closed);
    assert!(matches!(a.with_gil(|_| ()), Err(Error::InterpreterClosed { id: 1 })));
    assert!(matches!(a.close(), Err(Error::InterpreterClosed { id: 1 })));
    assert!(matches!(a.add_pending_call(|_| ()), Err(Error::InterpreterClosed { .. })));
    assert!(matches!(a.incref_id(), Err(Error::InterpreterClosed { .. })));
    assert!(matches!(a.interrupt_handle().interrupt(), Err(Error::InterpreterClosed { .. })));
    assert!(a.with_gil(|_| ()).unwrap_err().to_string().contains("closed"));
}

#[test]
fn close_refuses_while_another_thread_is_inside() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let a2 = a.clone();
    let t = thread::spawn(move || {
        a2.with_gil(|_| {
            entered_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        })
        .unwrap();
    });
    entered_rx.recv().unwrap();
    let err = a.close().unwrap_err();
    assert!(matches!(err, Error::InterpreterRunning { id: 1, threads: 1 }), "{err:?}");
    assert!(err.to_string().starts_with("interpreter running"));
    assert_eq!(a.state(), InterpreterState::Ready, "a refused close changes nothing");
    release_tx.send(()).unwrap();
    t.join().unwrap();
    a.close().unwrap();
}

#[test]
fn close_refuses_while_a_thread_is_detached_in_allow_threads() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let a2 = a.clone();
    let t = thread::spawn(move || {
        a2.with_gil(move |g| {
            g.allow_threads(move || {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
        })
        .unwrap();
    });
    entered_rx.recv().unwrap();
    assert!(matches!(a.close(), Err(Error::InterpreterRunning { threads: 1, .. })));
    release_tx.send(()).unwrap();
    t.join().unwrap();
    a.close().unwrap();
}

#[test]
fn close_from_inside_itself_is_refused() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let r = a.with_gil(|g| g.interpreter().close().map(|_| ())).unwrap();
    assert!(matches!(r, Err(Error::CannotCloseCurrent { id: 1 })));
    // Also from inside allow_threads: the thread is still inside `a`.
    let r = a.with_gil(|g| {
        let a = g.interpreter().clone();
        g.allow_threads(move || a.close().map(|_| ()))
    });
    assert!(matches!(r.unwrap(), Err(Error::CannotCloseCurrent { id: 1 })));
    a.close().unwrap();
}

#[test]
fn close_from_a_sibling_and_from_another_thread_works() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    // From inside b (holding b's GIL), close a: allowed (test_from_sibling).
    let b2 = b.clone();
    let a2 = a.clone();
    b2.with_gil(move |_| a2.close().map(|_| ())).unwrap().unwrap();
    assert_eq!(a.state(), InterpreterState::Closed);
    // From another thread (test_from_other_thread).
    let b3 = b.clone();
    thread::spawn(move || b3.close().map(|_| ())).join().unwrap().unwrap();
    assert_eq!(rt.ids(), vec![0]);
}

#[test]
fn main_cannot_close_while_subinterpreters_live() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let err = rt.main().close().unwrap_err();
    assert!(matches!(err, Error::MainHasSubinterpreters { remaining: 1 }));
    a.close().unwrap();
    rt.main().close().unwrap();
    // The runtime is finalized: no more interpreters.
    assert!(matches!(rt.create(InterpreterConfig::isolated()), Err(Error::InterpreterClosed { id: 0 })));
}

#[test]
fn closing_marks_finalizing_and_new_entries_fail_at_once() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let (tx, rx) = mpsc::channel::<std::result::Result<(), String>>();
    let a2 = a.clone();
    // A pending call that runs during close() tries to enter from another
    // thread and must get an error, not a hang.
    a.add_pending_call(move |g| {
        assert_eq!(g.interpreter().state(), InterpreterState::Finalizing);
        let a3 = a2.clone();
        let r = thread::spawn(move || a3.with_gil(|_| ())).join().unwrap();
        tx.send(match r {
            Err(Error::InterpreterClosed { .. }) => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .unwrap();
    })
    .unwrap();
    let report = a.close().unwrap();
    assert_eq!(report.pending_calls_run, 1);
    rx.recv().unwrap().unwrap();
}

#[test]
fn id_refcount_with_requires_idref_closes_on_last_decref() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    a.incref_id().unwrap();
    a.incref_id().unwrap();
    a.decref_id().unwrap();
    a.decref_id().unwrap();
    // Without requires_idref it stays alive (CPython: create() without reqrefs).
    assert_eq!(a.state(), InterpreterState::Ready);
    assert!(matches!(a.decref_id(), Err(Error::IdRefUnderflow { id: 1 })));

    a.set_requires_idref(true);
    let r1 = a.id_ref().unwrap();
    let r2 = a.id_ref().unwrap();
    assert_eq!(a.id_refcount(), 2);
    drop(r1);
    assert_eq!(a.state(), InterpreterState::Ready);
    drop(r2);
    assert_eq!(a.state(), InterpreterState::Closed);
    assert!(rt.get(1).is_err());
}

#[test]
fn last_decref_while_running_closes_when_the_last_thread_leaves() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    a.set_requires_idref(true);
    a.incref_id().unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let (a2, b2) = (a.clone(), barrier.clone());
    let t = thread::spawn(move || {
        a2.with_gil(|_| {
            b2.wait(); // inside
            b2.wait(); // decref done
        })
        .unwrap();
    });
    barrier.wait();
    a.decref_id().unwrap(); // cannot close now: the thread is inside
    assert_eq!(a.state(), InterpreterState::Ready);
    barrier.wait();
    t.join().unwrap();
    assert_eq!(a.state(), InterpreterState::Closed);
}

#[test]
fn allow_threads_false_binds_the_interpreter_to_one_thread() {
    let rt = rt();
    let cfg = InterpreterConfig { allow_threads: false, ..InterpreterConfig::isolated() };
    let a = rt.create(cfg).unwrap();
    a.with_gil(|_| ()).unwrap();
    a.with_gil(|_| ()).unwrap();
    let a2 = a.clone();
    let r = thread::spawn(move || a2.with_gil(|_| ())).join().unwrap();
    assert!(matches!(r, Err(Error::ThreadsNotAllowed { id: 1 })));
}

#[test]
fn runtime_drop_closes_everything_and_handles_report_closed() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::legacy()).unwrap();
    let main = rt.main();
    drop(rt);
    for i in [&a, &b, &main] {
        assert_eq!(i.state(), InterpreterState::Closed);
        assert!(matches!(i.with_gil(|_| ()), Err(Error::InterpreterClosed { .. })));
    }
}

#[test]
fn runtime_drop_while_a_thread_is_inside_defers_that_close() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let (a2, b2) = (a.clone(), barrier.clone());
    let t = thread::spawn(move || {
        a2.with_gil(|g| {
            b2.wait();
            b2.wait();
            g.checkpoint()
        })
        .unwrap()
    });
    barrier.wait();
    let main = rt.main();
    drop(rt);
    assert_eq!(a.state(), InterpreterState::Ready, "still in use: close deferred");
    barrier.wait();
    t.join().unwrap().unwrap();
    assert_eq!(a.state(), InterpreterState::Closed);
    assert_eq!(main.state(), InterpreterState::Closed, "main closes after the last subinterpreter");
}

#[test]
fn thread_states_one_per_thread_and_interpreter() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    assert_eq!(a.thread_count(), 0);
    a.with_gil(|_| ()).unwrap();
    a.with_gil(|_| ()).unwrap();
    assert_eq!(a.thread_count(), 1);
    let a2 = a.clone();
    thread::spawn(move || {
        a2.with_gil(|_| ()).unwrap();
        assert_eq!(a2.thread_count(), 2);
    })
    .join()
    .unwrap();
    // The other thread exited: its thread state is gone.
    assert_eq!(a.thread_count(), 1);
}

#[test]
fn global_runtime_is_one_per_process() {
    let g1 = Runtime::global();
    let g2 = Runtime::global();
    assert!(std::ptr::eq(g1, g2));
    assert_eq!(g1.main().id(), 0);
}

/// Issue 10: main's close and a create race. A create that lands while main
/// closes (here: from a pending call that main's close runs, so the create is
/// exactly in between main's checks and its end) is refused, and main ends
/// closed with no live subinterpreter. Before the fix the create succeeded
/// and left a Ready interpreter in the registry of a closed runtime.
#[test]
fn a_create_during_mains_close_is_refused_and_main_closes_alone() {
    let rt = Arc::new(rt());
    let seen = Arc::new(std::sync::Mutex::new(None));
    let (r2, s2) = (rt.clone(), seen.clone());
    rt.main()
        .add_pending_call(move |_| {
            let created = r2.create(InterpreterConfig::isolated()).map(|i| i.id());
            *s2.lock().unwrap() = Some(created);
        })
        .unwrap();
    let report = rt.main().close().unwrap();
    assert_eq!(report.pending_calls_run, 1);
    let created = seen.lock().unwrap().take().unwrap();
    assert!(matches!(created, Err(Error::InterpreterClosed { id: 0 })), "{created:?}");
    assert_eq!(rt.main().state(), InterpreterState::Closed);
    assert_eq!(rt.len(), 0, "a subinterpreter outlived main: {:?}", rt.ids());
    assert!(matches!(rt.create(InterpreterConfig::isolated()), Err(Error::InterpreterClosed { id: 0 })));
}

/// The other order: a live (or announced) subinterpreter makes main's close
/// refuse, and the refusal gives main's claim back, so creates work again.
#[test]
fn a_refused_close_of_main_does_not_block_later_creates() {
    let rt = rt();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    assert!(matches!(rt.main().close(), Err(Error::MainHasSubinterpreters { remaining: 1 })));
    let other = rt.create(InterpreterConfig::isolated()).unwrap();
    sub.close().unwrap();
    other.close().unwrap();
    rt.main().close().unwrap();
    assert_eq!(rt.len(), 0);
}

/// Main's close racing creates from other threads, many rounds: whichever
/// wins, main never ends closed beside a live subinterpreter.
#[test]
fn mains_close_racing_creates_never_leaves_a_live_subinterpreter() {
    for _ in 0..200 {
        let rt = Arc::new(rt());
        let barrier = Arc::new(Barrier::new(3));
        let creators: Vec<_> = (0..2)
            .map(|_| {
                let (rt, b) = (rt.clone(), barrier.clone());
                thread::spawn(move || {
                    b.wait();
                    rt.create(InterpreterConfig::isolated()).ok()
                })
            })
            .collect();
        barrier.wait();
        let closed = rt.main().close();
        let subs: Vec<_> = creators.into_iter().filter_map(|t| t.join().unwrap()).collect();
        match closed {
            Ok(_) => assert!(subs.is_empty() && rt.ids().is_empty(), "main closed beside {:?}", rt.ids()),
            Err(Error::MainHasSubinterpreters { .. }) => {
                assert!(!subs.is_empty());
                for s in &subs {
                    s.close().unwrap();
                }
                rt.main().close().unwrap();
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}
