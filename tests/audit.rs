//! Audit hooks (PEP 578): CPython's `test_audit` (driving `audit-tests.py`)
//! where it applies, named after its tests, plus the rules of
//! `Python/sysmodule.c` and the user-code standard (panics, re-entry).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use subinterp::{Error, Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig, MAX_AUDIT_DEPTH};

type Log = Arc<Mutex<Vec<(String, String)>>>;

fn rt() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

/// A printable rendering of an event's arguments, like `repr(args)`.
fn render(args: &[Obj<'_>]) -> String {
    fn one(o: &Obj<'_>) -> String {
        if let Some(i) = o.as_int() {
            return i.to_string();
        }
        if let Some(s) = o.as_str() {
            return format!("{s:?}");
        }
        match o.kind() {
            subinterp::Kind::Tuple | subinterp::Kind::List => {
                let items: Vec<String> = (0..o.len().unwrap()).map(|i| one(&o.get_item(i).unwrap())).collect();
                if o.kind() == subinterp::Kind::Tuple {
                    format!("({}{})", items.join(", "), if items.len() == 1 { "," } else { "" })
                } else {
                    format!("[{}]", items.join(", "))
                }
            }
            _ => format!("<{}>", o.type_name()),
        }
    }
    let items: Vec<String> = args.iter().map(one).collect();
    format!("({}{})", items.join(", "), if items.len() == 1 { "," } else { "" })
}

/// `TestHook`: records every event; fails with `exc` on the events named.
fn test_hook(
    log: &Log,
    raise_on: &'static [&'static str],
    exc: &'static str,
) -> impl for<'a> Fn(Gil<'a>, &str, &[Obj<'a>]) -> subinterp::Result<()> + Send + Sync + 'static {
    let log = log.clone();
    move |_g, event, args| {
        log.lock().unwrap().push((event.to_owned(), render(args)));
        if raise_on.contains(&event) {
            return Err(Error::raised(exc, format!("saw event {event}")));
        }
        Ok(())
    }
}

fn events(log: &Log) -> Vec<String> {
    log.lock().unwrap().iter().map(|(e, _)| e.clone()).collect()
}

#[test]
fn test_basic() {
    let rt = rt();
    let log = Log::default();
    rt.main()
        .with_gil(|g| {
            assert!(g.add_audit_hook(test_hook(&log, &[], "RuntimeError")).unwrap());
            g.audit("test_event", &[g.int(1).unwrap(), g.int(2).unwrap(), g.int(3).unwrap()]).unwrap();
        })
        .unwrap();
    let seen = log.lock().unwrap();
    assert_eq!(seen[0], ("test_event".to_owned(), "(1, 2, 3)".to_owned()));
}

#[test]
fn test_block_add_hook() {
    let rt = rt();
    let (log1, log2) = (Log::default(), Log::default());
    rt.main()
        .with_gil(|g| {
            assert!(g.add_audit_hook(test_hook(&log1, &["sys.addaudithook"], "RuntimeError")).unwrap());
            // The Exception is not propagated: the hook is silently not added.
            assert!(!g.add_audit_hook(test_hook(&log2, &[], "RuntimeError")).unwrap());
            g.audit("test_event", &[]).unwrap();
        })
        .unwrap();
    assert!(events(&log1).contains(&"test_event".to_owned()));
    assert!(!events(&log2).contains(&"test_event".to_owned()));
    assert_eq!(events(&log1), ["sys.addaudithook", "test_event"]);
}

#[test]
fn test_block_add_hook_baseexception() {
    let rt = rt();
    let (log1, log2) = (Log::default(), Log::default());
    rt.main()
        .with_gil(|g| {
            g.add_audit_hook(test_hook(&log1, &["sys.addaudithook"], "BaseException")).unwrap();
            let err = g.add_audit_hook(test_hook(&log2, &[], "RuntimeError")).unwrap_err();
            assert!(
                matches!(&err, Error::Raised { type_name, base_exception: true, .. } if type_name == "BaseException")
            );
            assert_eq!(err.to_string(), "BaseException: saw event sys.addaudithook");
            g.audit("test_event", &[]).unwrap();
        })
        .unwrap();
    assert!(events(&log2).is_empty(), "the refused hook was not added");
}

/// KeyboardInterrupt-like errors are not `Exception`s either: an interrupt
/// (or a panic) from a hook on `sys.addaudithook` propagates.
#[test]
fn test_block_add_hook_baseexception_interrupt_and_panic() {
    let rt = rt();
    rt.main()
        .with_gil(|g| {
            g.add_audit_hook(|g, event, _| {
                if event == "sys.addaudithook" {
                    return Err(Error::Interrupted { id: g.id() });
                }
                Ok(())
            })
            .unwrap();
            assert!(matches!(g.add_audit_hook(|_, _, _| Ok(())), Err(Error::Interrupted { id: 0 })));
        })
        .unwrap();
    let rt2 = self::rt();
    rt2.main()
        .with_gil(|g| {
            g.add_audit_hook(|_, event, _| {
                assert_ne!(event, "sys.addaudithook", "hook refuses");
                Ok(())
            })
            .unwrap();
            let err = g.add_audit_hook(|_, _, _| Ok(())).unwrap_err();
            assert!(matches!(&err, Error::CallbackPanicked { context: "audit hook", message } if message.contains("hook refuses")));
        })
        .unwrap();
}

/// `test_not_in_gc`: the hooks are not objects the collector tracks.
#[test]
fn test_not_in_gc() {
    let rt = rt();
    rt.main()
        .with_gil(|g| {
            let keep = g.list(&[]).unwrap();
            let before = g.gc_get_objects(None).unwrap().len().unwrap();
            g.add_audit_hook(|_, _, _| Ok(())).unwrap();
            let after = g.gc_get_objects(None).unwrap();
            assert_eq!(after.len().unwrap(), before, "adding a hook tracked nothing");
            for i in 0..after.len().unwrap() {
                let o = after.get_item(i).unwrap();
                assert!(o.kind() != subinterp::Kind::Function, "no hook among the tracked objects");
            }
            drop(keep);
        })
        .unwrap();
}

/// `test_gc`: gc.get_objects, gc.get_referrers, gc.get_referents, with
/// CPython's arguments: `(1,)`, `((x,),)`, `(([x],),)`.
#[test]
fn test_gc() {
    let rt = rt();
    let log = Log::default();
    let l = log.clone();
    rt.main()
        .with_gil(|g| {
            g.add_audit_hook(move |_g, event, args| {
                if event.starts_with("gc.") {
                    l.lock().unwrap().push((event.to_owned(), render(args)));
                }
                Ok(())
            })
            .unwrap();
            g.gc_get_objects(Some(1)).unwrap();
            let x = g.int(7).unwrap();
            let y = g.list(std::slice::from_ref(&x)).unwrap();
            g.gc_get_referrers(std::slice::from_ref(&x)).unwrap();
            g.gc_get_referents(std::slice::from_ref(&y)).unwrap();
            g.gc_get_objects(None).unwrap();
        })
        .unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(),
        ["gc.get_objects", "gc.get_referrers", "gc.get_referents", "gc.get_objects"]
    );
    assert_eq!(seen[0].1, "(1,)");
    assert_eq!(seen[1].1, "((7,),)");
    assert_eq!(seen[2].1, "(([7],),)");
    assert_eq!(seen[3].1, "(-1,)", "no generation is -1, as CPython's default");
}

/// A hook that fails on a gc event makes the gc function fail (before any
/// work: the generation check comes after the event, as in CPython).
#[test]
fn test_gc_blocked() {
    let rt = rt();
    rt.main()
        .with_gil(|g| {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let s = seen.clone();
            g.add_audit_hook(move |_g, event, args| {
                if event.starts_with("gc.") {
                    s.lock().unwrap().push(render(args));
                    return Err(Error::raised("RuntimeError", format!("blocked {event}")));
                }
                Ok(())
            })
            .unwrap();
            let x = g.int(1).unwrap();
            for (r, want) in [
                (g.gc_get_objects(None), "RuntimeError: blocked gc.get_objects"),
                (g.gc_get_referrers(std::slice::from_ref(&x)), "RuntimeError: blocked gc.get_referrers"),
                (g.gc_get_referents(std::slice::from_ref(&x)), "RuntimeError: blocked gc.get_referents"),
            ] {
                assert_eq!(r.unwrap_err().to_string(), want);
            }
            // The bad generation is audited first (CPython: the hook sees 5).
            assert!(matches!(g.gc_get_objects(Some(5)), Err(Error::Raised { .. })));
            assert_eq!(seen.lock().unwrap().last().unwrap(), "(5,)");
        })
        .unwrap();
}

/// `test_threading`, adapted (there is no `_thread` module): an event raised
/// on another thread inside the interpreter reaches the interpreter's hooks,
/// in order with this thread's.
#[test]
fn test_threading() {
    let rt = rt();
    let log = Log::default();
    let main = rt.main();
    main.with_gil(|g| g.add_audit_hook(test_hook(&log, &[], "RuntimeError")).unwrap()).unwrap();
    main.with_gil(|g| g.audit("test.before", &[]).unwrap()).unwrap();
    let m = main.clone();
    std::thread::spawn(move || m.with_gil(|g| g.audit("test.test_func", &[]).unwrap()).unwrap()).join().unwrap();
    main.with_gil(|g| g.audit("test.after", &[]).unwrap()).unwrap();
    assert_eq!(events(&log), ["test.before", "test.test_func", "test.after"]);
}

/// Measured on 3.13 (reference §10): hook order h1 → h2; h1 failing on an
/// event stops h2; the error propagates to the audited operation.
#[test]
fn hooks_run_in_registration_order_and_the_first_failure_aborts_the_event() {
    let rt = rt();
    let order = Arc::new(Mutex::new(Vec::new()));
    rt.main()
        .with_gil(|g| {
            for name in ["h1", "h2", "h3"] {
                let o = order.clone();
                g.add_audit_hook(move |_, event, _| {
                    o.lock().unwrap().push(format!("{name}:{event}"));
                    if name == "h2" && event == "stop" {
                        return Err(Error::raised("ValueError", "h2 says no"));
                    }
                    Ok(())
                })
                .unwrap();
            }
            order.lock().unwrap().clear();
            g.audit("go", &[]).unwrap();
            let err = g.audit("stop", &[]).unwrap_err();
            assert_eq!(err.to_string(), "ValueError: h2 says no");
        })
        .unwrap();
    assert_eq!(*order.lock().unwrap(), ["h1:go", "h2:go", "h3:go", "h1:stop", "h2:stop"]);
}

/// Runtime hooks first, then the current interpreter's; a subinterpreter's
/// events never reach main's hooks (measured on 3.13), main's never reach
/// the subinterpreter's; runtime hooks see both.
#[test]
fn runtime_hooks_run_first_and_interpreter_hooks_stay_in_their_interpreter() {
    let rt = rt();
    let log = Log::default();
    let l = log.clone();
    rt.add_audit_hook(move |g, event, _| {
        l.lock().unwrap().push((format!("runtime@{}", g.id()), event.to_owned()));
        Ok(())
    })
    .unwrap();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    for interp in [rt.main(), sub.clone()] {
        let l = log.clone();
        interp
            .with_gil(|g| {
                let me = g.id();
                g.add_audit_hook(move |g, event, _| {
                    assert_eq!(g.id(), me, "called with its own interpreter's token");
                    l.lock().unwrap().push((format!("interp{me}"), event.to_owned()));
                    Ok(())
                })
                .unwrap()
            })
            .unwrap();
    }
    log.lock().unwrap().clear();
    sub.with_gil(|g| g.audit("in_sub", &[]).unwrap()).unwrap();
    rt.main().with_gil(|g| g.audit("in_main", &[]).unwrap()).unwrap();
    let seen = log.lock().unwrap().clone();
    let want: Vec<(String, String)> =
        [("runtime@1", "in_sub"), ("interp1", "in_sub"), ("runtime@0", "in_main"), ("interp0", "in_main")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(seen, want);
    sub.close().unwrap();
}

/// `test_embed`'s `test_audit_subinterpreter`: a runtime hook sees the
/// creation of subinterpreters (never main's), and their clear at close.
#[test]
fn test_audit_subinterpreter() {
    let rt = rt();
    let log = Log::default();
    let l = log.clone();
    assert!(rt
        .add_audit_hook(move |g, event, args| {
            assert!(args.is_empty());
            if event.starts_with("cpython.") {
                l.lock().unwrap().push((event.to_owned(), g.id().to_string()));
            }
            Ok(())
        })
        .unwrap());
    // From a thread in no interpreter: raised in main (the creating side).
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    // From inside `a`: raised in `a`.
    let b = a.with_gil(|_g| rt.create(InterpreterConfig::legacy())).unwrap().unwrap();
    b.close().unwrap();
    a.close().unwrap();
    let seen = log.lock().unwrap().clone();
    let want: Vec<(String, String)> = [
        ("cpython.PyInterpreterState_New", "0"),
        ("cpython.PyInterpreterState_New", "1"),
        ("cpython.PyInterpreterState_Clear", "2"),
        ("cpython.PyInterpreterState_Clear", "1"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(seen, want);
}

/// A runtime hook that fails `cpython.PyInterpreterState_New` refuses the
/// creation with its error, and nothing is made (no id consumed, nothing
/// announced).
#[test]
fn a_failing_hook_refuses_interpreter_creation_and_nothing_is_made() {
    let rt = rt();
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r = refuse.clone();
    rt.add_audit_hook(move |_, event, _| {
        if event == "cpython.PyInterpreterState_New" && r.load(Ordering::SeqCst) {
            return Err(Error::raised("PermissionError", "no new interpreters"));
        }
        Ok(())
    })
    .unwrap();
    let before = rt.stats();
    let err = rt.create(InterpreterConfig::isolated()).unwrap_err();
    assert_eq!(err.to_string(), "PermissionError: no new interpreters");
    assert_eq!(rt.stats(), before);
    assert_eq!(rt.ids(), vec![0]);
    refuse.store(false, Ordering::SeqCst);
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    assert_eq!(sub.id(), 1, "the refused creation consumed no id");
    sub.close().unwrap();
    // Main can still close: nothing was left announced.
    drop(rt);
}

/// `cpython.PyInterpreterState_Clear`: its errors do not stop the close
/// (CPython ignores them); they are reported in the close report. The
/// interpreter's hooks are dropped by the close.
#[test]
fn clear_event_errors_are_reported_and_the_close_completes() {
    let rt = rt();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    let token = Arc::new(());
    let t = token.clone();
    sub.with_gil(|g| {
        g.add_audit_hook(move |_, event, _| {
            let _keep = &t;
            if event == "cpython.PyInterpreterState_Clear" {
                return Err(Error::raised("RuntimeError", "clear refused"));
            }
            Ok(())
        })
        .unwrap()
    })
    .unwrap();
    assert_eq!(Arc::strong_count(&token), 2);
    let report = sub.close().unwrap();
    assert_eq!(report.teardown_errors.len(), 1);
    assert_eq!(report.teardown_errors[0].to_string(), "RuntimeError: clear refused");
    assert_eq!(Arc::strong_count(&token), 1, "the close dropped the hook");
    assert!(sub.with_gil(|_| ()).is_err());
}

/// A hook that keeps its own interpreter's handle does not keep the record
/// alive after the close (the close drops the hooks).
#[test]
fn a_hook_holding_its_interpreter_does_not_leak_the_record() {
    let rt = rt();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    let me = sub.clone();
    sub.with_gil(|g| {
        g.add_audit_hook(move |_, _, _| {
            let _ = me.id();
            Ok(())
        })
        .unwrap()
    })
    .unwrap();
    let freed = rt.stats().records_freed;
    sub.close().unwrap();
    drop(sub);
    rt.quiesce();
    assert_eq!(rt.stats().records_freed, freed + 1);
}

/// With no hook anywhere the arguments are never built; hooks of another
/// interpreter do not make this interpreter build them either; once the
/// interpreter with hooks is closed the count is back to zero.
#[test]
fn no_hook_builds_no_arguments() {
    let rt = rt();
    static BUILT: AtomicUsize = AtomicUsize::new(0);
    fn build(g: Gil<'_>) -> subinterp::Result<Vec<Obj<'_>>> {
        BUILT.fetch_add(1, Ordering::SeqCst);
        Ok(vec![g.int(1)?])
    }
    let built = &BUILT;
    rt.main().with_gil(|g| g.audit_with("e", || build(g)).unwrap()).unwrap();
    assert_eq!(built.load(Ordering::SeqCst), 0);
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    sub.with_gil(|g| g.add_audit_hook(|_, _, _| Ok(())).unwrap()).unwrap();
    rt.main().with_gil(|g| g.audit_with("e", || build(g)).unwrap()).unwrap();
    assert_eq!(built.load(Ordering::SeqCst), 0, "main has no hook and the runtime none");
    sub.with_gil(|g| g.audit_with("e", || build(g)).unwrap()).unwrap();
    assert_eq!(built.load(Ordering::SeqCst), 1);
    sub.close().unwrap();
    rt.main().with_gil(|g| g.audit_with("e", || build(g)).unwrap()).unwrap();
    assert_eq!(built.load(Ordering::SeqCst), 1);
}

/// A panicking hook: the event fails with `CallbackPanicked`, the GIL and
/// the interpreter are fine, later events still reach every hook.
#[test]
fn a_panicking_hook_is_caught() {
    let rt = rt();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    rt.main()
        .with_gil(|g| {
            g.add_audit_hook(move |_, event, _| {
                c.fetch_add(1, Ordering::SeqCst);
                if event == "boom" {
                    panic!("hook exploded");
                }
                Ok(())
            })
            .unwrap();
            let err = g.audit("boom", &[]).unwrap_err();
            assert!(
                matches!(&err, Error::CallbackPanicked { context: "audit hook", message } if message == "hook exploded")
            );
            g.audit("fine", &[]).unwrap();
            g.checkpoint().unwrap();
        })
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The GIL was released: another thread can enter.
    let m = rt.main();
    std::thread::spawn(move || m.with_gil(|g| g.audit("other", &[]).unwrap()).unwrap()).join().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// Re-entering hooks: a hook that raises an event (seen by every hook,
/// itself included), one that adds a hook while the event is dispatched
/// (added; later hooks of the list are then called too, as CPython's list
/// iteration does), one that collects and lists the heap (auditing the gc
/// calls); unbounded nesting is a `RecursionError`, not a stack overflow.
#[test]
fn re_entering_hooks() {
    let rt = rt();
    let log = Log::default();
    let l = log.clone();
    rt.main()
        .with_gil(|g| {
            g.add_audit_hook(move |g, event, _| {
                l.lock().unwrap().push((event.to_owned(), String::new()));
                match event {
                    "outer" => g.audit("inner", &[]),
                    "add" => g.add_audit_hook(|_, _, _| Ok(())).map(drop),
                    "collect" => {
                        g.gc_collect(2)?;
                        g.gc_get_objects(None).map(drop)
                    }
                    "forever" => g.audit("forever", &[]),
                    _ => Ok(()),
                }
            })
            .unwrap();
            g.audit("outer", &[]).unwrap();
            g.audit("add", &[]).unwrap();
            g.audit("collect", &[]).unwrap();
            let err = g.audit("forever", &[]).unwrap_err();
            assert!(matches!(err, Error::RecursionError { limit: MAX_AUDIT_DEPTH, .. }), "{err}");
            g.audit("after", &[]).unwrap();
        })
        .unwrap();
    let seen = events(&log);
    assert_eq!(&seen[..6], ["outer", "inner", "add", "sys.addaudithook", "collect", "gc.get_objects"]);
    assert_eq!(seen.iter().filter(|e| *e == "forever").count(), MAX_AUDIT_DEPTH);
    assert_eq!(seen.last().unwrap(), "after");
}

/// `Runtime::add_audit_hook` from inside an interpreter raises
/// `sys.addaudithook` there; as `PySys_AddAuditHook`, only a
/// RuntimeError-class failure skips the add silently.
#[test]
fn runtime_add_is_audited_in_the_current_interpreter() {
    let rt = rt();
    rt.main()
        .with_gil(|g| {
            g.add_audit_hook(|_, event, args| match (event, args.len()) {
                ("sys.addaudithook", 0) => Err(Error::raised("RuntimeError", "no")),
                _ => Ok(()),
            })
            .unwrap();
            assert!(!rt.add_audit_hook(|_, _, _| Ok(())).unwrap());
        })
        .unwrap();
    let rt2 = self::rt();
    rt2.main()
        .with_gil(|g| {
            g.add_audit_hook(|_, event, _| match event {
                "sys.addaudithook" => Err(Error::raised("ValueError", "no")),
                _ => Ok(()),
            })
            .unwrap();
            assert_eq!(rt2.add_audit_hook(|_, _, _| Ok(())).unwrap_err().to_string(), "ValueError: no");
        })
        .unwrap();
    // From outside every interpreter: no event, added.
    assert!(rt2.add_audit_hook(|_, _, _| Ok(())).unwrap());
}

/// Once the close has begun no hook can be added (a hook running for the
/// clear event tries).
#[test]
fn no_hook_is_added_once_the_close_began() {
    let rt = rt();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    let result = Arc::new(Mutex::new(None));
    let r = result.clone();
    sub.with_gil(|g| {
        g.add_audit_hook(move |g, event, _| {
            if event == "cpython.PyInterpreterState_Clear" {
                *r.lock().unwrap() = Some(g.add_audit_hook(|_, _, _| Ok(())).map_err(|e| e.to_string()));
            }
            Ok(())
        })
        .unwrap()
    })
    .unwrap();
    sub.close().unwrap();
    let got = result.lock().unwrap().clone().unwrap();
    assert_eq!(got, Err("interpreter 1 is closed (or being closed); create a new interpreter to run more work".into()));
}

/// Hooks added from two threads at once while a third dispatches in a
/// subinterpreter: every add lands exactly once, and each dispatch sees a
/// prefix of the runtime's hooks (a count that never goes down).
#[test]
fn concurrent_adds_and_dispatch() {
    let rt = rt();
    let calls = Arc::new(AtomicUsize::new(0));
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (rt, calls) = (&rt, calls.clone());
            s.spawn(move || {
                for _ in 0..50 {
                    let c = calls.clone();
                    assert!(rt
                        .add_audit_hook(move |_, _, _| {
                            c.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        })
                        .unwrap());
                }
            });
        }
        let (sub, calls) = (&sub, calls.clone());
        s.spawn(move || {
            sub.with_gil(|g| {
                let mut last = 0;
                for _ in 0..500 {
                    let before = calls.load(Ordering::Relaxed);
                    g.audit("probe", &[]).unwrap();
                    let seen = calls.load(Ordering::Relaxed) - before;
                    assert!(seen >= last, "a later event saw fewer hooks ({seen} < {last})");
                    last = seen;
                }
            })
            .unwrap();
        });
    });
    let before = calls.load(Ordering::Relaxed);
    sub.with_gil(|g| g.audit("final", &[]).unwrap()).unwrap();
    assert_eq!(calls.load(Ordering::Relaxed) - before, 100);
    sub.close().unwrap();
}
