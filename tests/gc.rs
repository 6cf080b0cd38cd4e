//! Objects and the cycle collector (issue 4), mirroring CPython's test_gc.py
//! where it applies.

use std::cell::Cell;
use std::rc::Rc;

use subinterp::{
    trace_fields, CollectResult, Error, Gil, InterpreterConfig, Kind, Member, Obj, Runtime, RuntimeConfig,
    DEBUG_SAVEALL,
};

fn with<R>(f: impl for<'i> FnOnce(Gil<'i>) -> R) -> R {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let r = i.with_gil(f).unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0, "objects leaked at close: {report:?}");
    r
}

/// A counter function: increments `hits` each call.
fn counter<'i>(g: Gil<'i>, hits: &Rc<Cell<usize>>) -> Obj<'i> {
    let h = hits.clone();
    g.function("counter", &[], move |g, _, _| {
        h.set(h.get() + 1);
        g.none()
    })
    .unwrap()
}

#[test]
fn atoms_and_containers() {
    with(|g| {
        let a = g.int(40).unwrap();
        let b = g.int(2).unwrap();
        assert_eq!(a.int_add(&b).unwrap().as_int(), Some(42));
        let max = g.int(i64::MAX).unwrap();
        assert!(matches!(max.int_add(&b), Err(Error::Overflow { .. })));
        assert!(matches!(max.int_mul(&b), Err(Error::Overflow { .. })));
        let s = g.str("héllo").unwrap();
        assert_eq!(s.as_str(), Some("héllo"));
        assert_eq!(s.len().unwrap(), 5);
        assert_eq!(g.bytes(b"xy").unwrap().as_bytes(), Some(&b"xy"[..]));
        let l = g.list(&[a.clone(), s.clone()]).unwrap();
        l.list_append(&b).unwrap();
        assert_eq!(l.len().unwrap(), 3);
        assert_eq!(l.get_item(2).unwrap().as_int(), Some(2));
        assert!(matches!(l.get_item(3), Err(Error::IndexError { index: 3, len: 3 })));
        let d = g.dict().unwrap();
        d.dict_set(&s, &a).unwrap();
        d.dict_set(&g.int(1).unwrap(), &b).unwrap();
        // 1 == 1.0 == True as keys, as in Python.
        assert_eq!(d.dict_get(&g.float(1.0).unwrap()).unwrap().unwrap().as_int(), Some(2));
        d.dict_set(&g.bool(true).unwrap(), &s).unwrap();
        assert_eq!(d.len().unwrap(), 2);
        let keys: Vec<_> = d.dict_items().unwrap().into_iter().map(|(k, _)| k.kind()).collect();
        assert_eq!(keys, vec![Kind::Str, Kind::Int], "insertion order kept, first key object kept");
        let err = d.dict_set(&l, &a).unwrap_err();
        assert_eq!(err.to_string(), "TypeError: unhashable type: 'list'");
        assert!(d.dict_del(&s).unwrap());
        assert!(!d.dict_del(&s).unwrap());
        let t = g.tuple(&[a.clone(), b.clone()]).unwrap();
        assert!(d.dict_set(&t, &a).is_ok(), "tuples of hashables are hashable");
        let code = g.code("f", std::slice::from_ref(&a), 2).unwrap();
        code.set_code_extra(1, Some(&s)).unwrap();
        assert_eq!(code.code_extra(1).unwrap().unwrap().as_str(), Some("héllo"));
        assert!(code.code_extra(0).unwrap().is_none());
        assert!(matches!(code.code_extra(2), Err(Error::IndexError { .. })));
        let inst = g.instance("C").unwrap();
        inst.setattr("x", &a).unwrap();
        assert_eq!(inst.getattr("x").unwrap().unwrap().as_int(), Some(40));
        assert_eq!(inst.type_name(), "C");
    });
}

#[test]
fn is_tracked() {
    with(|g| {
        assert!(!g.int(1).unwrap().is_tracked());
        assert!(!g.str("a").unwrap().is_tracked());
        assert!(!g.tuple(&[]).unwrap().is_tracked());
        assert!(g.tuple(&[g.int(1).unwrap()]).unwrap().is_tracked());
        assert!(g.list(&[]).unwrap().is_tracked());
        assert!(g.dict().unwrap().is_tracked());
        assert!(g.instance("C").unwrap().is_tracked());
        assert!(matches!(g.weakref(&g.int(1).unwrap(), None), Err(Error::TypeError { .. })));
    });
}

#[test]
fn refcount_and_free() {
    with(|g| {
        drop(g.none().unwrap()); // the shared atoms stay with the interpreter
        let base = g.memory_stats().bytes_in_use;
        let l = g.list(&[]).unwrap();
        let w = g.weakref(&l, None).unwrap();
        let l2 = l.clone();
        assert_eq!(l.refcount(), 2);
        drop(l2);
        assert_eq!(l.refcount(), 1);
        drop(l);
        assert!(w.weakref_get().unwrap().is_none(), "freed at refcount zero");
        drop(w);
        assert_eq!(g.memory_stats().bytes_in_use, base);
    });
}

#[test]
fn deep_chain_drops_without_recursion() {
    with(|g| {
        let mut head = g.list(&[]).unwrap();
        for _ in 0..1_000_000 {
            head = g.list(&[head]).unwrap();
        }
        drop(head);
        assert_eq!(g.gc_get_count().0, 0);
    });
}

#[test]
fn deep_cyclic_chain_collects_without_recursion() {
    with(|g| {
        g.gc_disable();
        let first = g.list(&[]).unwrap();
        let mut head = first.clone();
        for _ in 0..200_000 {
            head = g.list(&[head]).unwrap();
        }
        first.list_append(&head).unwrap();
        drop((first, head));
        let r = g.gc_collect(2).unwrap();
        assert_eq!(r.collected, 200_001);
    });
}

#[test]
fn simple_cycles_are_collected() {
    with(|g| {
        g.gc_disable();
        drop(g.none().unwrap()); // the shared atoms stay with the interpreter
        let base = g.memory_stats().bytes_in_use;
        let a = g.list(&[]).unwrap();
        let b = g.list(std::slice::from_ref(&a)).unwrap();
        a.list_append(&b).unwrap();
        let keep = g.list(&[]).unwrap();
        keep.list_append(&keep).unwrap();
        let wa = g.weakref(&a, None).unwrap();
        drop((a, b));
        let r = g.gc_collect(2).unwrap();
        assert_eq!(r, CollectResult { collected: 2, uncollectable: 0 });
        assert!(wa.weakref_get().unwrap().is_none());
        assert_eq!(g.gc_collect(2).unwrap().collected, 0, "the kept self-cycle is alive");
        keep.clear().unwrap();
        drop((keep, wa));
        assert_eq!(g.memory_stats().bytes_in_use, base);
    });
}

/// test_del: cycles with finalizers are collected (PEP 442), the finalizer runs once.
#[test]
fn cycle_with_finalizer_is_collected() {
    with(|g| {
        g.gc_disable();
        let hits = Rc::new(Cell::new(0));
        let a = g.instance("A").unwrap();
        a.set_finalizer(Some(&counter(g, &hits))).unwrap();
        a.setattr("me", &a).unwrap();
        drop(a);
        // The instance and its finalizer function (referenced only by it).
        assert_eq!(g.gc_collect(2).unwrap().collected, 2);
        assert_eq!(hits.get(), 1);
    });
}

/// test_resurrection_only_happens_once_per_object, _is_transitive,
/// _does_not_block_cleanup_of_other_objects.
#[test]
fn resurrection() {
    with(|g| {
        g.gc_disable();
        let saved = g.list(&[]).unwrap();
        let hits = Rc::new(Cell::new(0));
        let h = hits.clone();
        let resurrect = g
            .function("__del__", std::slice::from_ref(&saved), move |g, cap, args| {
                h.set(h.get() + 1);
                cap[0].list_append(&args[0])?;
                g.none()
            })
            .unwrap();
        // A resurrects itself and, transitively, B it points to.
        let a = g.instance("A").unwrap();
        let b = g.instance("B").unwrap();
        a.set_finalizer(Some(&resurrect)).unwrap();
        a.setattr("b", &b).unwrap();
        b.setattr("a", &a).unwrap();
        let wb = g.weakref(&b, None).unwrap();
        // An unrelated cycle collected in the same pass.
        let c = g.list(&[]).unwrap();
        c.list_append(&c).unwrap();
        let wc = g.weakref(&c, None).unwrap();
        drop((a, b, c));
        let r = g.gc_collect(2).unwrap();
        assert_eq!(hits.get(), 1);
        assert_eq!(r.collected, 1, "only the unrelated cycle is collected");
        assert!(wc.weakref_get().unwrap().is_none(), "resurrection does not block other cleanup");
        // As in CPython, weakrefs to the garbage are cleared before finalizers
        // run, even for objects that are then resurrected.
        assert!(wb.weakref_get().unwrap().is_none());
        let a_alive = saved.get_item(0).unwrap();
        assert_eq!(a_alive.type_name(), "A");
        let b_alive = a_alive.getattr("b").unwrap().expect("B resurrected transitively");
        assert_eq!(b_alive.type_name(), "B");
        assert!(b_alive.getattr("a").unwrap().unwrap().is(&a_alive), "B was not cleared");
        drop((a_alive, b_alive));
        // Drop it again: the finalizer does not run a second time.
        saved.clear().unwrap();
        assert_eq!(g.gc_collect(2).unwrap().collected, 2);
        assert_eq!(hits.get(), 1);
        assert!(wb.weakref_get().unwrap().is_none());
    });
}

/// test_bug1055820 family / test_trash_weakref_clear: callbacks run only for
/// weakrefs outside the garbage, and they see the referent cleared.
#[test]
fn weakref_callback_rules() {
    with(|g| {
        g.gc_disable();
        let hits = Rc::new(Cell::new(0));
        let cb = counter(g, &hits);
        let a = g.list(&[]).unwrap();
        a.list_append(&a).unwrap();
        // Outside the garbage: its callback runs.
        let outside = g.weakref(&a, Some(&cb)).unwrap();
        // Inside the garbage (stored in the cycle): its callback does not.
        let inside = g.weakref(&a, Some(&cb)).unwrap();
        a.list_append(&inside).unwrap();
        drop((a, inside));
        g.gc_collect(2).unwrap();
        assert_eq!(hits.get(), 1);
        assert!(outside.weakref_get().unwrap().is_none());
        // Refcount death also runs callbacks.
        let b = g.dict().unwrap();
        let _w = g.weakref(&b, Some(&cb)).unwrap();
        drop(b);
        assert_eq!(hits.get(), 2);
    });
}

/// test_legacy_finalizer / test_saveall.
#[test]
fn legacy_finalizers_and_saveall() {
    with(|g| {
        g.gc_disable();
        let hits = Rc::new(Cell::new(0));
        let a = g.instance("Legacy").unwrap();
        a.set_legacy_finalizer(Some(&counter(g, &hits))).unwrap();
        let b = g.list(std::slice::from_ref(&a)).unwrap();
        a.setattr("b", &b).unwrap();
        drop((a, b));
        let r = g.gc_collect(2).unwrap();
        // The instance, the list, and the finalizer function they reach.
        assert_eq!(r.uncollectable, 3);
        assert_eq!(hits.get(), 0, "legacy finalizers never run from the collector");
        // CPython 3.13: gc.garbage gets only the object that has the legacy
        // finalizer; what it reaches stays alive through it.
        let garbage = g.gc_garbage().unwrap();
        assert_eq!(garbage.len().unwrap(), 1);
        assert_eq!(garbage.get_item(0).unwrap().type_name(), "Legacy");
        drop(garbage);
        g.gc_clear_garbage();

        g.gc_set_debug(DEBUG_SAVEALL);
        let c = g.list(&[]).unwrap();
        c.list_append(&c).unwrap();
        drop(c);
        assert_eq!(g.gc_collect(2).unwrap().collected, 1);
        let garbage = g.gc_garbage().unwrap();
        // The cycle kept by SAVEALL, plus the legacy cycle found again (all
        // three of its objects, with SAVEALL).
        assert_eq!(garbage.len().unwrap(), 4);
        drop(garbage);
        g.gc_set_debug(0);
        // Break the saved cycles before releasing them.
        let garbage = g.gc_garbage().unwrap();
        for o in (0..garbage.len().unwrap()).map(|i| garbage.get_item(i).unwrap()) {
            if o.kind() == Kind::List {
                o.clear().unwrap();
            }
        }
        g.gc_clear_garbage();
        g.gc_collect(2).unwrap();
    });
}

#[test]
fn panics_are_contained() {
    with(|g| {
        g.gc_disable();
        let bad = g.function("__del__", &[], |_, _, _| panic!("boom")).unwrap();
        let a = g.instance("A").unwrap();
        a.set_finalizer(Some(&bad)).unwrap();
        a.setattr("me", &a).unwrap();
        let cb_bad = g.function("cb", &[], |_, _, _| panic!("cb boom")).unwrap();
        let w = g.weakref(&a, Some(&cb_bad)).unwrap();
        drop(a);
        g.gc_add_callback(|_, _, _, _| panic!("gc cb boom"));
        assert_eq!(g.gc_collect(2).unwrap().collected, 1);
        assert!(w.weakref_get().unwrap().is_none());
        let errs = g.gc_take_errors();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs.iter().all(|e| matches!(e, Error::CallbackPanicked { .. })));
    });
}

#[test]
fn counts_thresholds_stats_callbacks() {
    with(|g| {
        assert_eq!(g.gc_get_threshold(), (2000, 10, 10));
        g.gc_collect(2).unwrap();
        let keep: Vec<_> = (0..100).map(|_| g.list(&[]).unwrap()).collect();
        assert_eq!(g.gc_get_count(), (100, 0, 0));
        g.gc_collect(0).unwrap();
        assert_eq!(g.gc_get_count(), (0, 1, 0));
        assert_eq!(g.gc_generation_sizes(), [0, 100, 0]);
        g.gc_collect(1).unwrap();
        assert_eq!(g.gc_get_count(), (0, 0, 1));
        assert_eq!(g.gc_generation_sizes(), [0, 0, 100]);
        let s = g.gc_stats();
        assert_eq!((s[0].collections, s[1].collections, s[2].collections), (1, 1, 1));
        let log = Rc::new(std::cell::RefCell::new(Vec::new()));
        let l = log.clone();
        let id = g.gc_add_callback(move |_, phase, gen, r| l.borrow_mut().push((phase, gen, r.collected)));
        let c = g.list(&[]).unwrap();
        c.list_append(&c).unwrap();
        drop(c);
        g.gc_collect(1).unwrap();
        assert_eq!(*log.borrow(), vec![(subinterp::GcPhase::Start, 1, 0), (subinterp::GcPhase::Stop, 1, 1)]);
        assert!(g.gc_remove_callback(id));
        assert!(!g.gc_remove_callback(id));
        assert!(g.gc_collect(3).is_err());
        drop(keep);
    });
}

#[test]
fn freeze_and_unfreeze() {
    with(|g| {
        let keep: Vec<_> = (0..10).map(|_| g.list(&[]).unwrap()).collect();
        g.gc_freeze();
        assert_eq!(g.gc_freeze_count(), 10);
        assert_eq!(g.gc_generation_sizes(), [0, 0, 0]);
        g.gc_unfreeze();
        assert_eq!(g.gc_freeze_count(), 0);
        assert_eq!(g.gc_generation_sizes(), [0, 0, 10]);
        drop(keep);
    });
}

#[test]
fn allocation_schedules_and_checkpoint_collects() {
    with(|g| {
        g.gc_set_threshold(100, 10, 10);
        for _ in 0..100 {
            let c = g.list(&[]).unwrap();
            c.list_append(&c).unwrap();
        }
        assert_eq!(g.gc_stats()[0].collections, 0, "allocation never collects by itself");
        let c = g.list(&[]).unwrap();
        drop(c);
        let c = g.list(&[]).unwrap();
        assert_eq!(g.gc_stats()[0].collections, 0);
        g.checkpoint().unwrap();
        assert_eq!(g.gc_stats()[0].collections, 1);
        assert_eq!(g.gc_stats()[0].collected, 100);
        drop(c);
        g.gc_disable();
        assert!(!g.gc_is_enabled());
    });
}

struct Node {
    next: Member,
}
trace_fields!(Node { next });

#[test]
fn embedder_types() {
    with(|g| {
        g.gc_disable();
        let a = g.new_object(Node { next: Member::empty() }).unwrap();
        let b = g.new_object(Node { next: Member::empty() }).unwrap();
        a.downcast_ref::<Node>().unwrap().next.set(g, Some(&b)).unwrap();
        b.downcast_ref::<Node>().unwrap().next.set(g, Some(&a)).unwrap();
        assert!(a.downcast_ref::<Node>().unwrap().next.get(g).unwrap().unwrap().is(&b));
        drop((a, b));
        assert_eq!(g.gc_collect(2).unwrap().collected, 2);
    });
}

/// An embedder type with interior mutability lets a `Member` leave its
/// object; every later use is checked against the owning interpreter.
struct Slot {
    held: std::cell::RefCell<Member>,
}
trace_fields!(Slot {});

#[test]
fn escaped_members_are_checked_against_their_interpreter() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    // A member filled in `a`, moved out to plain Rust memory.
    let escaped: Member = a
        .with_gil(|g| {
            let s = g.new_object(Slot { held: std::cell::RefCell::new(Member::empty()) }).unwrap();
            let x = g.list(&[]).unwrap();
            s.downcast_ref::<Slot>().unwrap().held.borrow().set(g, Some(&x)).unwrap();
            s.downcast_ref::<Slot>().unwrap().held.replace(Member::empty())
        })
        .unwrap();
    // Unlisted, the reference is invisible to the collector: it keeps `x` alive.
    a.with_gil(|g| {
        g.gc_collect(2).unwrap();
        assert_eq!(escaped.get(g).unwrap().unwrap().len().unwrap(), 0);
    })
    .unwrap();
    // Another interpreter's token is refused, for reads and writes.
    let escaped = b
        .with_gil(|g| {
            assert!(matches!(escaped.get(g), Err(Error::WrongInterpreter { .. })));
            let y = g.int(1).unwrap();
            assert!(matches!(escaped.set(g, Some(&y)), Err(Error::WrongInterpreter { .. })));
            // Moved into one of b's objects (in a cycle, so b's collector
            // visits it), b's collector does not touch a's object.
            let s = g.new_object(Slot { held: std::cell::RefCell::new(escaped) }).unwrap();
            let l = g.list(std::slice::from_ref(&s)).unwrap();
            l.list_append(&l).unwrap();
            let s2 = s.clone();
            drop((s, l));
            assert_eq!(g.gc_collect(2).unwrap().collected, 1);
            s2.downcast_ref::<Slot>().unwrap().held.replace(Member::empty())
        })
        .unwrap();
    // After `a` closed, no token of it exists: the reference is never read.
    a.close().unwrap();
    b.with_gil(|g| assert!(matches!(escaped.get(g), Err(Error::WrongInterpreter { .. })))).unwrap();
    // Dropping it leaks a reference to nothing that still exists.
    let _ = escaped;
    b.close().unwrap();
}

#[test]
fn owned_handles() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    let owned = a.with_gil(|g| g.str("kept").unwrap().to_owned()).unwrap();
    assert_eq!(a.with_gil(|g| owned.bind(g).unwrap().as_str().unwrap().to_owned()).unwrap(), "kept");
    let err = b.with_gil(|g| owned.bind(g).unwrap_err()).unwrap();
    assert!(matches!(err, Error::WrongInterpreter { .. }));
    // Dropped on another thread without the GIL: queued, applied at a checkpoint.
    let l = a.with_gil(|g| g.list(&[]).unwrap().to_owned()).unwrap();
    let (w, before) = a
        .with_gil(|g| {
            let o = l.bind(g).unwrap();
            (g.weakref(&o, None).unwrap().to_owned(), o.refcount())
        })
        .unwrap();
    assert_eq!(before, 2);
    std::thread::spawn(move || drop(l)).join().unwrap();
    a.with_gil(|g| {
        assert!(w.bind(g).unwrap().weakref_get().unwrap().is_some(), "not yet applied");
        g.checkpoint().unwrap();
        assert!(w.bind(g).unwrap().weakref_get().unwrap().is_none(), "applied at the checkpoint");
    })
    .unwrap();
    a.close().unwrap();
    assert!(matches!(owned.with(|o| o.len().unwrap()), Err(Error::InterpreterClosed { .. })));
    drop(owned);
    drop(w);
    b.close().unwrap();
}

#[test]
fn close_frees_live_cycles_and_objects() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let kept = a
        .with_gil(|g| {
            let c = g.list(&[]).unwrap();
            c.list_append(&c).unwrap();
            c.to_owned()
        })
        .unwrap();
    let report = a.close().unwrap();
    assert_eq!(report.objects_freed, 1);
    assert_eq!(report.leaked.live_blocks, 0);
    drop(kept);
}

#[test]
fn another_interpreter_progresses_during_a_big_collection() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;
    /// Steps the other interpreter must make while the collection runs.
    const STEPS: usize = 1000;
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let big = rt.create(InterpreterConfig::isolated()).unwrap();
    let other = rt.create(InterpreterConfig::isolated()).unwrap();
    let collecting = Arc::new(AtomicBool::new(false));
    let seen_during = Arc::new(AtomicUsize::new(0));
    let done = AtomicBool::new(false);
    let (reached_tx, reached_rx) = mpsc::channel::<usize>();
    std::thread::scope(|s| {
        s.spawn(|| {
            big.with_gil(|g| {
                g.gc_disable();
                for _ in 0..300_000 {
                    let c = g.list(&[]).unwrap();
                    c.list_append(&c).unwrap();
                }
                // The collection's start callback runs inside the collection
                // (the collector is marked busy): it announces the collection
                // and waits for the other interpreter to report STEPS steps
                // made since. Were the other paused by this collection, the
                // report would never come: the 30 s timeout turns that hang
                // into a failure below.
                let (seen, collecting) = (seen_during.clone(), collecting.clone());
                g.gc_add_callback(move |_, phase, _, _| {
                    if phase == subinterp::GcPhase::Start {
                        collecting.store(true, Ordering::SeqCst);
                        if let Ok(steps) = reached_rx.recv_timeout(Duration::from_secs(30)) {
                            seen.store(steps, Ordering::SeqCst);
                        }
                    }
                });
                let r = g.gc_collect(2).unwrap();
                assert_eq!(r.collected, 300_000);
                done.store(true, Ordering::SeqCst);
            })
            .unwrap();
        });
        s.spawn(|| {
            other
                .with_gil(|g| {
                    let mut since = None;
                    let mut steps = 0usize;
                    while !done.load(Ordering::SeqCst) {
                        let l = g.list(&[]).unwrap();
                        l.list_append(&l).unwrap();
                        drop(l);
                        steps += 1;
                        if steps % 1000 == 0 {
                            g.gc_collect(0).unwrap();
                        }
                        g.checkpoint().unwrap();
                        if since.is_none() && collecting.load(Ordering::SeqCst) {
                            since = Some(steps);
                        }
                        if let Some(from) = since {
                            if steps - from == STEPS {
                                // (The receiver is gone if it timed out.)
                                let _ = reached_tx.send(STEPS);
                            }
                        }
                    }
                })
                .unwrap();
        });
    });
    assert!(
        seen_during.load(Ordering::SeqCst) >= STEPS,
        "the other interpreter made no progress during the collection"
    );
}
