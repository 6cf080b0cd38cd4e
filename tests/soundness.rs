//! Issue 9: user code (embedder `Drop`s, finalizers, weakref and gc
//! callbacks, limiter hooks, pending calls) that runs inside a dealloc, a
//! collection or a close can panic, allocate, collect and re-enter, and the
//! heap stays sound. One test (or more) per class of the issue; each failed
//! on the main before the fix (a double free shows as two live objects at one
//! address, a use-after-free as a token handed out during teardown, an
//! escaping panic as an unwind out of `close`, a stack overflow as a crash).
//! The sanitizer lane runs this file under AddressSanitizer.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use subinterp::{
    trace_fields, Error, Gil, Interpreter, InterpreterConfig, LimiterDecision, Member, Obj, Runtime, RuntimeConfig,
};

fn rt() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

/// Runs `f` in a fresh interpreter, closes it, and checks that nothing leaked.
fn with<R>(f: impl for<'i> FnOnce(Gil<'i>) -> R) -> R {
    let rt = rt();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let r = i.with_gil(f).unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0, "objects leaked at close: {report:?}");
    r
}

/// After a double free, the heap hands one block out twice: `n` live objects
/// at fewer than `n` addresses.
fn assert_heap_hands_out_distinct_blocks(g: Gil<'_>, n: usize) {
    let objs: Vec<Obj<'_>> = (0..n).map(|_| g.list(&[]).unwrap()).collect();
    let ints: Vec<Obj<'_>> = (0..n).map(|i| g.int(i as i64).unwrap()).collect();
    let addrs: HashSet<usize> = objs.iter().chain(&ints).map(Obj::addr).collect();
    assert_eq!(addrs.len(), 2 * n, "two live objects share an address: a block was freed twice");
    for (i, o) in ints.iter().enumerate() {
        assert_eq!(o.as_int(), Some(i as i64), "a live int was overwritten");
    }
}

/// A function that counts its calls in `hits`.
fn counting_fn<'i>(g: Gil<'i>, hits: &Rc<Cell<usize>>) -> Obj<'i> {
    let h = hits.clone();
    g.function("count", &[], move |g, _, _| {
        h.set(h.get() + 1);
        g.none()
    })
    .unwrap()
}

fn collecting_callback<'i>(g: Gil<'i>, hits: &Rc<Cell<usize>>) -> Obj<'i> {
    let h = hits.clone();
    g.function("cb", &[], move |g, _, _| {
        h.set(h.get() + 1);
        g.gc_collect(0)?;
        g.gc_collect(2)?;
        g.none()
    })
    .unwrap()
}

// ----- class 1: a dying object is invisible before user code runs ---------------------

#[test]
fn a_weakref_callback_that_collects_during_a_dealloc_frees_the_object_once() {
    with(|g| {
        let hits = Rc::new(Cell::new(0));
        let cb = collecting_callback(g, &hits);
        for _ in 0..50 {
            let target = g.list(&[]).unwrap();
            let w = g.weakref(&target, Some(&cb)).unwrap();
            drop(target); // refcount death: the callback collects while the list dies
            assert!(w.weakref_get().unwrap().is_none());
        }
        assert_eq!(hits.get(), 50);
        assert_heap_hands_out_distinct_blocks(g, 200);
    });
}

#[test]
fn a_weakref_callback_that_allocates_and_checkpoints_during_a_dealloc_frees_the_object_once() {
    with(|g| {
        g.gc_set_threshold(1, 1, 1);
        let hits = Rc::new(Cell::new(0));
        let h = hits.clone();
        let cb = g
            .function("cb", &[], move |g, _, _| {
                h.set(h.get() + 1);
                let _junk: Vec<Obj<'_>> = (0..10).map(|_| g.list(&[]).unwrap()).collect();
                g.checkpoint()?; // runs the scheduled collection
                g.none()
            })
            .unwrap();
        for _ in 0..50 {
            let target = g.instance("T").unwrap();
            let _w = g.weakref(&target, Some(&cb)).unwrap();
            drop(target);
        }
        assert_eq!(hits.get(), 50);
        assert_heap_hands_out_distinct_blocks(g, 200);
    });
}

#[test]
fn a_finalizer_that_collects_while_frees_are_queued_in_the_trashcan_frees_them_once() {
    with(|g| {
        g.gc_disable();
        let hits = Rc::new(Cell::new(0));
        let fin = collecting_callback(g, &hits);
        // A chain past the dealloc nesting limit whose every level holds the
        // level below, ten lists, and (freed last, so popped first from the
        // queue) an instance whose finalizer collects: at the level where
        // frees start to be queued, it collects while the ten lists wait.
        let mut head = g.list(&[]).unwrap();
        for _ in 0..100 {
            let mut items = vec![head];
            items.extend((0..10).map(|_| g.list(&[]).unwrap()));
            let inst = g.instance("F").unwrap();
            inst.set_finalizer(Some(&fin)).unwrap();
            items.push(inst);
            head = g.list(&items).unwrap();
        }
        drop(head);
        assert_eq!(hits.get(), 100);
        assert_heap_hands_out_distinct_blocks(g, 500);
    });
}

#[test]
fn a_dying_weakref_is_never_called_back_by_its_target_dying_meanwhile() {
    with(|g| {
        let w_hits = Rc::new(Cell::new(0));
        let x_hits = Rc::new(Cell::new(0));
        let target = g.instance("T").unwrap();
        let holder = g.list(std::slice::from_ref(&target)).unwrap();
        let wh = w_hits.clone();
        let cb_w = g
            .function("cb_w", &[], move |g, _, _| {
                wh.set(wh.get() + 1);
                g.none()
            })
            .unwrap();
        let w = g.weakref(&target, Some(&cb_w)).unwrap();
        drop(target);
        // X's callback runs while W dies; it drops the last reference to W's
        // target, whose death must not call back with the dying W.
        let xh = x_hits.clone();
        let cb_x = g
            .function("cb_x", std::slice::from_ref(&holder), move |g, captured, _| {
                xh.set(xh.get() + 1);
                captured[0].clear()?;
                g.none()
            })
            .unwrap();
        drop(holder);
        let _x = g.weakref(&w, Some(&cb_x)).unwrap();
        drop(w);
        assert_eq!(x_hits.get(), 1);
        assert_eq!(w_hits.get(), 0, "a dead weakref's callback ran");
        assert_heap_hands_out_distinct_blocks(g, 200);
    });
}

#[test]
fn a_garbage_weakref_is_not_called_back_when_its_live_target_dies_during_the_collection() {
    with(|g| {
        g.gc_disable();
        let hits = Rc::new(Cell::new(0));
        let cb = counting_fn(g, &hits);
        let target = g.instance("T").unwrap();
        // The target's holder is outside the garbage (an `Owned` is a root);
        // the garbage's finalizer drops the target's last reference.
        let holder = g.list(std::slice::from_ref(&target)).unwrap().to_owned();
        let fin = g
            .function("fin", &[], move |g, _, _| {
                holder.bind(g)?.clear()?;
                g.none()
            })
            .unwrap();
        // A garbage cycle: a finalizable instance that holds a weakref to the
        // live target.
        let a = g.instance("A").unwrap();
        a.set_finalizer(Some(&fin)).unwrap();
        drop(fin);
        let w = g.weakref(&target, Some(&cb)).unwrap();
        drop(target);
        a.setattr("w", &w).unwrap();
        a.setattr("me", &a).unwrap();
        drop(w);
        drop(a);
        let r = g.gc_collect(2).unwrap();
        assert!(r.collected >= 2, "{r:?}");
        assert_eq!(hits.get(), 0, "a garbage weakref's callback ran");
        assert_heap_hands_out_distinct_blocks(g, 200);
    });
}

#[test]
fn an_object_resurrected_by_its_finalizer_stays_tracked_and_collectable() {
    with(|g| {
        g.gc_disable();
        let keep = g.list(&[]).unwrap();
        let fin = g
            .function("fin", std::slice::from_ref(&keep), |g, captured, args| {
                captured[0].list_append(&args[0])?;
                g.none()
            })
            .unwrap();
        let a = g.instance("A").unwrap();
        a.set_finalizer(Some(&fin)).unwrap();
        drop(fin);
        drop(a); // the finalizer resurrects it into `keep`
        let back = keep.get_item(0).unwrap();
        assert!(back.is_tracked(), "a resurrected object must be tracked again");
        back.setattr("me", &back).unwrap();
        drop(back);
        keep.clear().unwrap();
        // The instance and its finalizer function (referenced only by it).
        assert_eq!(g.gc_collect(2).unwrap().collected, 2, "the resurrected object's cycle is found");
    });
}

// ----- class 2: close is a state, not a frame -----------------------------------------

/// Records what re-entering the interpreter from its `Drop` returned.
struct Reenter {
    log: Arc<Mutex<Vec<String>>>,
    owned: RefCell<Option<subinterp::Owned>>,
}
trace_fields!(Reenter {});

fn try_reentry(log: &Mutex<Vec<String>>, owned: Option<&subinterp::Owned>) {
    let outcome = match Interpreter::current() {
        Some(interp) => match interp.with_gil(|g| g.list(&[]).map(|l| l.addr())) {
            Ok(_) => "re-entered".to_string(),
            Err(e) => format!("refused: {e:?}"),
        },
        None => "no current interpreter".to_string(),
    };
    log.lock().unwrap().push(outcome);
    if let Some(o) = owned {
        let r = o.with(|obj| obj.len().map(|n| n as i64));
        log.lock().unwrap().push(match r {
            Ok(_) => "owned re-entered".to_string(),
            Err(e) => format!("owned refused: {e:?}"),
        });
    }
}

impl Drop for Reenter {
    fn drop(&mut self) {
        try_reentry(&self.log, self.owned.borrow().as_ref());
    }
}

#[test]
fn drops_run_by_close_cannot_re_enter_the_interpreter_or_use_its_handles() {
    let rt = rt();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let _alive = interp
        .with_gil(|g| {
            // A cycle that stays alive until the close (held by an Owned),
            // and a list the Drop tries to reach through another Owned.
            let other = g.list(&[g.int(1).unwrap()]).unwrap();
            let obj = g.new_object(Reenter { log: log.clone(), owned: RefCell::new(Some(other.to_owned())) }).unwrap();
            let l = g.list(std::slice::from_ref(&obj)).unwrap();
            l.list_append(&l).unwrap();
            let alive = l.to_owned(); // alive at close            // A limiter hook whose captures re-enter when dropped (after the
                                      // arenas are unmapped).
            let hook_log = log.clone();
            struct OnDrop(Arc<Mutex<Vec<String>>>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    try_reentry(&self.0, None);
                }
            }
            let guard = OnDrop(hook_log);
            g.set_memory_limiter(move |_| {
                let _ = &guard;
                LimiterDecision::UseLimit
            })
            .unwrap();
            // A gc callback whose captures re-enter when dropped.
            let cb_guard = OnDrop(log.clone());
            g.gc_add_callback(move |_, _, _, _| {
                let _ = &cb_guard;
            });
            alive
        })
        .unwrap();
    let report = interp.close().unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 4, "{log:?}");
    for entry in &log {
        assert!(
            entry.starts_with("refused: InterpreterClosed") || entry.starts_with("owned refused: InterpreterClosed"),
            "user code run by close got into the interpreter: {log:?}"
        );
    }
    assert!(report.gc_errors.is_empty() && report.teardown_errors.is_empty(), "{report:?}");
    assert!(Interpreter::current().is_none());
}

#[test]
fn pending_calls_run_by_close_cannot_re_enter_either() {
    let rt = rt();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    interp
        .add_pending_call(move |g| {
            let again = g.interpreter().with_gil(|_| ());
            *s.lock().unwrap() = Some(format!("{again:?}"));
        })
        .unwrap();
    let report = interp.close().unwrap();
    assert_eq!(report.pending_calls_run, 1);
    let seen = seen.lock().unwrap().clone().unwrap();
    assert!(seen.contains("InterpreterClosed"), "{seen}");
}

// ----- class 3: no panic unwinds out of close ------------------------------------------

struct PanicOnDrop(&'static str);
trace_fields!(PanicOnDrop {});
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

/// Fills `g`'s interpreter with user code that panics when the close drops
/// it; returns handles that keep its objects alive until then.
fn plant_panicking_drops(g: Gil<'_>) -> Vec<subinterp::Owned> {
    let obj = g.new_object(PanicOnDrop("teardown drop")).unwrap();
    let l = g.list(&[obj]).unwrap();
    l.list_append(&l).unwrap();
    let mut alive = vec![l.to_owned()];
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("hook drop");
        }
    }
    let bomb = Bomb;
    g.set_memory_limiter(move |_| {
        let _ = &bomb;
        LimiterDecision::UseLimit
    })
    .unwrap();
    let bomb2 = Bomb;
    g.gc_add_callback(move |_, _, _, _| {
        let _ = &bomb2;
    });
    let f = g.function("f", &[], |g, _, _| g.none()).unwrap();
    let keep = g.list(&[f]).unwrap();
    keep.list_append(&keep).unwrap();
    alive.push(keep.to_owned());
    alive
}

fn assert_panics_reported(report: &subinterp::CloseReport) {
    let all: Vec<String> = report.gc_errors.iter().chain(&report.teardown_errors).map(ToString::to_string).collect();
    assert!(all.iter().any(|e| e.contains("teardown drop")), "{all:?}");
    assert!(all.iter().filter(|e| e.contains("hook drop")).count() == 2, "{all:?}");
    assert!(report
        .gc_errors
        .iter()
        .chain(&report.teardown_errors)
        .all(|e| matches!(e, Error::CallbackPanicked { .. })));
}

#[test]
fn panicking_drops_in_close_come_back_in_the_report() {
    let rt = rt();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let _alive = interp.with_gil(plant_panicking_drops).unwrap();
    let report = catch_unwind(AssertUnwindSafe(|| interp.close())).expect("a panic unwound out of close").unwrap();
    assert_panics_reported(&report);
    assert_eq!(interp.state(), subinterp::InterpreterState::Closed);
    assert!(Interpreter::current().is_none(), "close left a frame behind");
    // The thread is clean: it can enter another interpreter.
    rt.main().with_gil(|g| g.list(&[]).map(drop)).unwrap().unwrap();
}

#[test]
fn a_shared_gil_interpreter_with_panicking_drops_closes_and_main_stays_usable() {
    let rt = rt();
    let legacy = rt.create(InterpreterConfig::legacy()).unwrap();
    let _alive = legacy
        .with_gil(|g| {
            let obj = g.new_object(PanicOnDrop("teardown drop")).unwrap();
            let l = g.list(&[obj]).unwrap();
            l.list_append(&l).unwrap();
            l.to_owned()
        })
        .unwrap();
    let report = catch_unwind(AssertUnwindSafe(|| legacy.close())).expect("a panic unwound out of close").unwrap();
    assert!(report.gc_errors.iter().any(|e| e.to_string().contains("teardown drop")), "{report:?}");
    // Main's GIL (the shared one) is free: another thread can take it.
    let main = rt.main();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(main.with_gil(|_| 7));
    });
    let r = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("main's GIL stayed locked");
    assert_eq!(r.unwrap(), 7);
}

#[test]
fn closing_an_interpreter_from_inside_another_takes_the_callers_gil_back() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    let _alive = b.with_gil(plant_panicking_drops).unwrap();
    a.with_gil(|g| {
        let before = g.list(&[]).unwrap();
        let report = catch_unwind(AssertUnwindSafe(|| b.close())).expect("a panic unwound out of close").unwrap();
        assert_panics_reported(&report);
        // Still inside A, holding its GIL.
        assert_eq!(Interpreter::current().unwrap().id(), a.id());
        let after = g.list(&[before]).unwrap();
        assert_eq!(after.len().unwrap(), 1);
        assert!(a.gil_stats().acquisitions >= 1);
    })
    .unwrap();
    a.close().unwrap();
}

#[test]
fn a_deferred_close_on_a_panicking_exit_neither_aborts_nor_unwinds_twice() {
    let rt = rt();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp.set_requires_idref(true);
    interp.incref_id().unwrap();
    let i2 = interp.clone();
    let alive = Mutex::new(Vec::new());
    let r = catch_unwind(AssertUnwindSafe(|| {
        i2.with_gil(|g| {
            *alive.lock().unwrap() = plant_panicking_drops(g);
            // The last id reference goes while we are inside: the close is
            // deferred to our exit, which is a panic.
            i2.decref_id().unwrap();
            panic!("leaving by a panic");
        })
    }));
    assert!(r.is_err(), "the closure's own panic propagates");
    assert_eq!(interp.state(), subinterp::InterpreterState::Closed, "the deferred close ran");
    assert!(Interpreter::current().is_none());
    rt.main().with_gil(|_| ()).unwrap();
}

#[test]
fn a_refused_pending_call_whose_drop_panics_is_only_an_error() {
    let rt = rt();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp.close().unwrap();
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("refused call drop");
        }
    }
    let bomb = Bomb;
    let r = catch_unwind(AssertUnwindSafe(|| {
        interp.add_pending_call(move |_| {
            let _ = &bomb;
        })
    }))
    .expect("the refused call's drop unwound out of add_pending_call");
    assert!(matches!(r, Err(Error::InterpreterClosed { .. })));
}

// ----- class 4: a panic inside a collection or a dealloc wedges nothing ----------------

#[test]
fn a_panicking_drop_in_a_collection_does_not_wedge_the_collector() {
    with(|g| {
        g.gc_disable();
        struct Node {
            next: Member,
        }
        trace_fields!(Node { next });
        for round in 0..3 {
            let a = g.new_object(PanicOnDrop("collected drop")).unwrap();
            let n = g.new_object(Node { next: Member::empty() }).unwrap();
            let l = g.list(&[a, n.clone()]).unwrap();
            n.downcast_ref::<Node>().unwrap().next.set(g, Some(&l)).unwrap();
            drop((l, n));
            let r = catch_unwind(AssertUnwindSafe(|| g.gc_collect(2))).expect("a panic unwound out of gc_collect");
            assert_eq!(r.unwrap().collected, 3, "round {round}: the collector is wedged");
            let errs = g.gc_take_errors();
            assert!(errs.iter().any(|e| e.to_string().contains("collected drop")), "{errs:?}");
        }
    });
}

#[test]
fn a_panicking_drop_in_a_careful_dealloc_keeps_the_trashcan_working() {
    with(|g| {
        let baseline = g.memory_stats().small_blocks;
        for _ in 0..5 {
            let a = g.new_object(PanicOnDrop("special drop")).unwrap();
            let _w = g.weakref(&a, None).unwrap(); // the careful path
            let r = catch_unwind(AssertUnwindSafe(|| drop(a)));
            assert!(r.is_ok(), "a panic unwound out of a decref");
        }
        assert_eq!(g.gc_take_errors().len(), 5);
        // Deep chains are still freed completely (the nesting depth was not
        // left raised by the panics).
        let mut head = g.list(&[]).unwrap();
        for _ in 0..100_000 {
            head = g.list(&[head]).unwrap();
        }
        drop(head);
        assert_eq!(g.memory_stats().small_blocks, baseline, "a deep chain was not freed");
    });
}

#[test]
fn panicking_and_collecting_gc_callbacks_leave_the_collector_working() {
    with(|g| {
        g.gc_disable();
        let id = g.gc_add_callback(|_, _, _, _| panic!("gc callback"));
        let l = g.list(&[]).unwrap();
        l.list_append(&l).unwrap();
        drop(l);
        assert_eq!(g.gc_collect(2).unwrap().collected, 1);
        assert!(g.gc_remove_callback(id));
        assert_eq!(g.gc_take_errors().len(), 2);
        let l = g.list(&[]).unwrap();
        l.list_append(&l).unwrap();
        drop(l);
        assert_eq!(g.gc_collect(2).unwrap().collected, 1);
    });
}

// ----- class 5: bad sizes and deep input -----------------------------------------------

#[test]
fn a_deeply_nested_tuple_key_is_a_recursion_error_not_a_stack_overflow() {
    with(|g| {
        let mut key = g.int(0).unwrap();
        for _ in 0..200_000 {
            key = g.tuple(&[key]).unwrap();
        }
        let d = g.dict().unwrap();
        let v = g.none().unwrap();
        let err = d.dict_set(&key, &v).unwrap_err();
        assert!(matches!(err, Error::RecursionError { .. }), "{err:?}");
        assert!(err.to_string().starts_with("RecursionError: maximum recursion depth"), "{err}");
        assert!(matches!(d.dict_get(&key), Err(Error::RecursionError { .. })));
        assert_eq!(d.len().unwrap(), 0, "nothing half-made");
        // A key within the limit works.
        let mut ok = g.int(1).unwrap();
        for _ in 0..500 {
            ok = g.tuple(&[ok]).unwrap();
        }
        d.dict_set(&ok, &v).unwrap();
        assert!(d.dict_get(&ok).unwrap().unwrap().is_none());
    });
}

#[test]
fn code_extra_slots_are_checked_against_the_limit_and_isize_max() {
    let rt = rt();
    let interp = rt.create(InterpreterConfig { memory_limit: Some(1 << 20), ..InterpreterConfig::isolated() }).unwrap();
    interp
        .with_gil(|g| {
            for n in [usize::MAX, usize::MAX / 8, 1 << 40, 512 << 20] {
                let err = g.code("f", &[], n).unwrap_err();
                assert!(matches!(err, Error::MemoryError { .. }), "{n}: {err:?}");
            }
            let c = g.code("f", &[], 4).unwrap();
            assert!(c.code_extra(3).unwrap().is_none());
        })
        .unwrap();
    let unlimited = rt.create(InterpreterConfig::isolated()).unwrap();
    unlimited
        .with_gil(|g| {
            assert!(matches!(g.code("f", &[], usize::MAX), Err(Error::MemoryError { .. })));
            assert!(matches!(g.code("f", &[], isize::MAX as usize), Err(Error::MemoryError { .. })));
        })
        .unwrap();
}

#[test]
fn failing_constructors_release_the_references_they_took() {
    let rt = rt();
    let interp = rt.create(InterpreterConfig { memory_limit: Some(1 << 20), ..InterpreterConfig::isolated() }).unwrap();
    interp
        .with_gil(|g| {
            let item = g.int(5).unwrap();
            let cb = g.function("cb", &[], |g, _, _| g.none()).unwrap();
            // Fill the budget.
            let mut keep = Vec::new();
            loop {
                match g.list(&[]) {
                    Ok(l) => keep.push(l),
                    Err(Error::MemoryError { .. }) => break,
                    Err(e) => panic!("{e:?}"),
                }
            }
            let (item_rc, cb_rc) = (item.refcount(), cb.refcount());
            let holder = keep.pop().unwrap(); // a weakref target
            drop(keep.pop());
            // Leave room for exactly one list: the next constructors fail.
            let _one = g.list(&[]).unwrap();
            for _ in 0..1_000 {
                assert!(matches!(g.list(&[item.clone(), item.clone()]), Err(Error::MemoryError { .. })));
                assert!(matches!(g.tuple(std::slice::from_ref(&item)), Err(Error::MemoryError { .. })));
                assert!(matches!(
                    g.function("f", std::slice::from_ref(&item), |g, _, _| g.none()),
                    Err(Error::MemoryError { .. })
                ));
                assert!(matches!(g.code("c", std::slice::from_ref(&item), 1), Err(Error::MemoryError { .. })));
                assert!(matches!(g.weakref(&holder, Some(&cb)), Err(Error::MemoryError { .. })));
            }
            assert_eq!(item.refcount(), item_rc, "failed constructors leaked references to their items");
            assert_eq!(cb.refcount(), cb_rc, "a failed weakref leaked its callback");
        })
        .unwrap();
    let report = interp.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0, "{report:?}");
}

#[test]
fn unbounded_recursion_through_calls_is_a_recursion_error() {
    with(|g| {
        // A function that calls itself through a list it captures.
        let cell = g.list(&[]).unwrap();
        let f = g
            .function("f", std::slice::from_ref(&cell), |_, captured, args| captured[0].get_item(0)?.call(args))
            .unwrap();
        cell.list_append(&f).unwrap();
        let err = f.call(&[]).unwrap_err();
        // The depth limit, or before it the stack guard (a small stack, or
        // the big frames of an unoptimized sanitizer build).
        assert!(matches!(err, Error::RecursionError { limit, .. } if limit <= subinterp::MAX_CALL_DEPTH), "{err:?}");
        // The depth is given back: a shallow call works afterwards.
        let ok = g.function("ok", &[], |g, _, _| g.int(1)).unwrap();
        assert_eq!(ok.call(&[]).unwrap().as_int(), Some(1));
        cell.clear().unwrap();
    });
}

#[test]
fn a_stop_callback_that_collects_does_not_recurse() {
    with(|g| {
        let hits = Rc::new(Cell::new(0));
        let h = hits.clone();
        g.gc_add_callback(move |_, phase, _, _| {
            if phase == subinterp::GcPhase::Stop {
                h.set(h.get() + 1);
                if let Some(i) = Interpreter::current() {
                    let _ = i.with_gil(|g| g.gc_collect(2));
                }
            }
        });
        g.gc_collect(2).unwrap();
        assert_eq!(hits.get(), 1, "a collection inside a stop callback ran callbacks again");
    });
}

/// CPython's test_ref_created_during_del family: a finalizer that makes a
/// weakref (with a callback) to the dying object, at refcount death and in a
/// collection. The weakref ends dead, nothing is touched after its free.
#[test]
fn weakrefs_made_by_a_finalizer_to_the_dying_object_end_dead() {
    with(|g| {
        g.gc_disable();
        let hits = Rc::new(Cell::new(0));
        let cb = counting_fn(g, &hits);
        let store = g.list(&[]).unwrap();
        let fin = g
            .function("fin", &[store.clone(), cb], |g, captured, args| {
                let w = g.weakref(&args[0], Some(&captured[1]))?;
                captured[0].list_append(&w)?;
                g.none()
            })
            .unwrap();
        // Refcount death: the new weakref's callback runs (CPython clears the
        // weakrefs after tp_finalize, with callbacks).
        let a = g.instance("A").unwrap();
        a.set_finalizer(Some(&fin)).unwrap();
        drop(a);
        assert_eq!(hits.get(), 1);
        assert!(store.get_item(0).unwrap().weakref_get().unwrap().is_none());
        // In a collection: cleared without a callback.
        let b = g.instance("B").unwrap();
        b.set_finalizer(Some(&fin)).unwrap();
        b.setattr("me", &b).unwrap();
        drop(b);
        drop(fin);
        g.gc_collect(2).unwrap();
        assert_eq!(hits.get(), 1);
        assert!(store.get_item(1).unwrap().weakref_get().unwrap().is_none());
        store.clear().unwrap();
        assert_heap_hands_out_distinct_blocks(g, 100);
    });
}

#[test]
fn errors_of_user_code_are_kept_up_to_a_bound() {
    with(|g| {
        let bad = g.function("bad", &[], |_, _, _| panic!("user code panicked on purpose")).unwrap();
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        for _ in 0..subinterp::MAX_KEPT_ERRORS + 50 {
            let a = g.instance("A").unwrap();
            a.set_finalizer(Some(&bad)).unwrap();
            drop(a);
        }
        std::panic::set_hook(prev);
        assert_eq!(g.gc_take_errors().len(), subinterp::MAX_KEPT_ERRORS);
        assert_eq!(g.gc_errors_dropped(), 50);
        let a = g.instance("A").unwrap();
        a.set_finalizer(Some(&bad)).unwrap();
        drop(a);
        assert_eq!(g.gc_take_errors().len(), 1, "taking them makes room again");
    });
}
