//! CPython's gc module API and semantics beyond collection itself:
//! introspection, debug reports, gc.garbage as a list, callbacks with the
//! token, per-generation thresholds, weakref callback order, the
//! uncollectable report at close.

use std::cell::RefCell;
use std::rc::Rc;

use subinterp::{
    Gil, InterpreterConfig, Kind, Obj, Runtime, RuntimeConfig, DEBUG_COLLECTABLE, DEBUG_LEAK, DEBUG_UNCOLLECTABLE,
};

fn with<R>(f: impl for<'i> FnOnce(Gil<'i>) -> R) -> R {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let r = i.with_gil(f).unwrap();
    i.close().unwrap();
    r
}

fn items<'i>(l: &Obj<'i>) -> Vec<Obj<'i>> {
    (0..l.len().unwrap()).map(|i| l.get_item(i).unwrap()).collect()
}

/// test_weakref's callback order: newest weakref first, at refcount death
/// and in a collection.
#[test]
fn weakref_callbacks_run_newest_first() {
    with(|g| {
        let order = Rc::new(RefCell::new(Vec::new()));
        let cb = |tag: i64| {
            let o = order.clone();
            g.function("cb", &[], move |g, _, _| {
                o.borrow_mut().push(tag);
                g.none()
            })
            .unwrap()
        };
        let target = g.list(&[]).unwrap();
        let w1 = g.weakref(&target, Some(&cb(1))).unwrap();
        let w2 = g.weakref(&target, Some(&cb(2))).unwrap();
        drop(target);
        assert_eq!(*order.borrow(), vec![2, 1]);
        order.borrow_mut().clear();
        let t = g.list(&[]).unwrap();
        t.list_append(&t).unwrap();
        let w3 = g.weakref(&t, Some(&cb(3))).unwrap();
        let w4 = g.weakref(&t, Some(&cb(4))).unwrap();
        drop(t);
        g.gc_collect(2).unwrap();
        assert_eq!(*order.borrow(), vec![4, 3]);
        drop((w1, w2, w3, w4));
    });
}

/// test_get_objects, test_get_referents, test_get_referrers.
#[test]
fn get_objects_referrers_and_referents() {
    with(|g| {
        g.gc_disable();
        g.gc_collect(2).unwrap();
        let a = g.list(&[]).unwrap();
        let young = g.gc_get_objects(Some(0)).unwrap();
        assert!(items(&young).iter().any(|o| o.is(&a)));
        assert!(!items(&young).iter().any(|o| o.is(&young)), "the result leaves itself out");
        drop(young);
        g.gc_collect(0).unwrap();
        assert!(!items(&g.gc_get_objects(Some(0)).unwrap()).iter().any(|o| o.is(&a)));
        assert!(items(&g.gc_get_objects(Some(1)).unwrap()).iter().any(|o| o.is(&a)));
        assert!(items(&g.gc_get_objects(None).unwrap()).iter().any(|o| o.is(&a)));
        let err = g.gc_get_objects(Some(3)).unwrap_err();
        assert!(err
            .to_string()
            .contains("generation parameter must be less than the number of available generations (3)"));

        let one = g.int(1).unwrap();
        let holder = g.tuple(&[a.clone(), one.clone()]).unwrap();
        let d = g.dict().unwrap();
        d.dict_set(&g.str("k").unwrap(), &a).unwrap();
        let refs = items(&g.gc_get_referents(std::slice::from_ref(&holder)).unwrap());
        assert_eq!(refs.len(), 2);
        assert!(refs[0].is(&a) && refs[1].is(&one));
        assert_eq!(g.gc_get_referents(std::slice::from_ref(&one)).unwrap().len().unwrap(), 0, "atoms refer to nothing");
        let referrers = items(&g.gc_get_referrers(std::slice::from_ref(&a)).unwrap());
        assert!(referrers.iter().any(|o| o.is(&holder)));
        assert!(referrers.iter().any(|o| o.is(&d)));
        assert_eq!(referrers.len(), 2);
    });
}

/// DEBUG_COLLECTABLE / DEBUG_UNCOLLECTABLE / DEBUG_LEAK with CPython's texts.
#[test]
fn debug_flags_report_with_cpythons_texts() {
    with(|g| {
        g.gc_disable();
        let lines = Rc::new(RefCell::new(Vec::<String>::new()));
        let l2 = lines.clone();
        g.gc_set_debug_output(Some(move |s: &str| l2.borrow_mut().push(s.to_string())));
        g.gc_set_debug(DEBUG_COLLECTABLE);
        {
            let c = g.list(&[]).unwrap();
            c.list_append(&c).unwrap();
        }
        assert_eq!(g.gc_collect(2).unwrap().collected, 1);
        assert_eq!(lines.borrow().len(), 1);
        assert!(lines.borrow()[0].starts_with("gc: collectable <list 0x"), "{:?}", lines.borrow());
        lines.borrow_mut().clear();

        g.gc_set_debug(DEBUG_UNCOLLECTABLE);
        {
            let a = g.instance("Legacy").unwrap();
            let f = g.function("tp_del", &[], |g, _, _| g.none()).unwrap();
            a.set_legacy_finalizer(Some(&f)).unwrap();
            a.setattr("me", &a).unwrap();
        }
        let r = g.gc_collect(2).unwrap();
        assert_eq!(r.uncollectable, 2, "the instance and its finalizer function");
        assert!(lines.borrow().iter().any(|l| l.starts_with("gc: uncollectable <Legacy 0x")), "{:?}", lines.borrow());
        assert_eq!(g.gc_garbage().unwrap().len().unwrap(), 1);
        g.gc_clear_garbage();
        lines.borrow_mut().clear();

        g.gc_set_debug(DEBUG_LEAK);
        {
            let c = g.list(&[]).unwrap();
            c.list_append(&c).unwrap();
        }
        g.gc_collect(2).unwrap();
        assert!(lines.borrow().iter().any(|l| l.starts_with("gc: collectable <list")));
        // DEBUG_LEAK saves everything: the cycle, and the legacy one found again.
        assert!(g.gc_garbage().unwrap().len().unwrap() >= 1);
        g.gc_set_debug(0);
        for o in items(&g.gc_garbage().unwrap()) {
            if o.kind() == Kind::List {
                o.clear().unwrap();
            }
        }
    });
}

#[test]
fn a_panicking_debug_output_is_reported_not_propagated() {
    with(|g| {
        g.gc_disable();
        g.gc_set_debug_output(Some(|_: &str| panic!("debug output")));
        g.gc_set_debug(DEBUG_COLLECTABLE);
        {
            let c = g.list(&[]).unwrap();
            c.list_append(&c).unwrap();
        }
        assert_eq!(g.gc_collect(2).unwrap().collected, 1);
        assert!(g.gc_take_errors().iter().any(|e| e.to_string().contains("debug output")));
    });
}

#[test]
fn callbacks_get_the_token_and_may_collect_or_mutate_garbage() {
    with(|g| {
        g.gc_disable();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        g.gc_add_callback(move |g, phase, generation, info| {
            // Re-entering the collector during a collection gets zeros.
            assert_eq!(g.gc_collect(2).unwrap().collected, 0);
            g.gc_garbage().unwrap().clear().unwrap();
            let l = g.list(&[]).unwrap();
            drop(l);
            s.borrow_mut().push((phase, generation, info.collected));
        });
        {
            let c = g.list(&[]).unwrap();
            c.list_append(&c).unwrap();
        }
        g.gc_collect(1).unwrap();
        assert_eq!(seen.borrow().len(), 2);
        assert_eq!(seen.borrow()[1].1, 1);
        assert_eq!(seen.borrow()[1].2, 1);
    });
}

#[test]
fn thresholds_can_be_set_one_generation_at_a_time() {
    with(|g| {
        let (_, t1, t2) = g.gc_get_threshold();
        g.gc_set_threshold_of(0, 700).unwrap();
        assert_eq!(g.gc_get_threshold(), (700, t1, t2));
        g.gc_set_threshold_of(2, 5).unwrap();
        assert_eq!(g.gc_get_threshold(), (700, t1, 5));
        assert!(g.gc_set_threshold_of(3, 1).is_err());
    });
}

/// CPython warns "gc: N uncollectable objects at shutdown": the close
/// report lists them.
#[test]
fn close_reports_what_gc_garbage_still_held() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    i.with_gil(|g| {
        let a = g.instance("Stuck").unwrap();
        let f = g.function("tp_del", &[], |g, _, _| g.none()).unwrap();
        a.set_legacy_finalizer(Some(&f)).unwrap();
        a.setattr("me", &a).unwrap();
    })
    .unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.uncollectable.len(), 1, "{:?}", report.uncollectable);
    assert!(report.uncollectable[0].starts_with("<Stuck 0x"));
    assert_eq!(report.leaked.live_blocks, 0);
}
