//! The object model: type objects, instances, bound methods, identity
//! hashing, attributes (CPython's `Objects/typeobject.c` semantics where the
//! runtime has them).

use std::cell::Cell;
use std::rc::Rc;

use subinterp::{Error, Gil, InterpreterConfig, Kind, Obj, Runtime, RuntimeConfig};

fn with<R>(f: impl for<'i> FnOnce(Gil<'i>) -> R) -> R {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let r = i.with_gil(f).unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0, "nothing left in the heap at close");
    r
}

fn counter<'i>(g: Gil<'i>, hits: &Rc<Cell<usize>>) -> Obj<'i> {
    let hits = hits.clone();
    g.function("count", &[], move |g, _, _| {
        hits.set(hits.get() + 1);
        g.none()
    })
    .unwrap()
}

#[test]
fn a_class_instance_bound_method_cycle_is_collected() {
    with(|g| {
        g.gc_disable();
        let hits = Rc::new(Cell::new(0));
        let (wc, wi, wm);
        {
            let cls = g.new_class("C", &[]).unwrap();
            let f = g.function("m", &[], |g, _, _| g.none()).unwrap();
            cls.setattr("m", &f).unwrap();
            let inst = cls.call(&[]).unwrap();
            let bound = inst.getattr("m").unwrap().unwrap();
            assert_eq!(bound.kind(), Kind::Method);
            // class -> instance -> bound method -> instance, and the class.
            cls.setattr("the_instance", &inst).unwrap();
            inst.setattr("bound", &bound).unwrap();
            wc = g.weakref(&cls, Some(&counter(g, &hits))).unwrap();
            wi = g.weakref(&inst, Some(&counter(g, &hits))).unwrap();
            wm = g.weakref(&bound, Some(&counter(g, &hits))).unwrap();
        }
        assert!(wc.weakref_get().unwrap().is_some(), "a cycle: refcounting alone frees nothing");
        let r = g.gc_collect(2).unwrap();
        assert!(r.collected >= 3, "class, instance and method collected: {r:?}");
        assert!(wc.weakref_get().unwrap().is_none());
        assert!(wi.weakref_get().unwrap().is_none());
        assert!(wm.weakref_get().unwrap().is_none());
        assert_eq!(hits.get(), 3);
    });
}

#[test]
fn attribute_lookup_follows_the_c3_mro() {
    with(|g| {
        // The diamond of CPython's docs: D(B, C), B(A), C(A).
        let a = g.new_class("A", &[]).unwrap();
        let b = g.new_class("B", std::slice::from_ref(&a)).unwrap();
        let c = g.new_class("C", std::slice::from_ref(&a)).unwrap();
        let d = g.new_class("D", &[b.clone(), c.clone()]).unwrap();
        assert_eq!(d.mro().unwrap().len(), 5, "D, B, C, A, object");
        let mro = d.mro().unwrap();
        assert!(mro[0].is(&d) && mro[1].is(&b) && mro[2].is(&c) && mro[3].is(&a));
        assert!(mro[4].is(&g.object_type().unwrap()));
        a.setattr("x", &g.int(1).unwrap()).unwrap();
        c.setattr("x", &g.int(3).unwrap()).unwrap();
        let inst = d.call(&[]).unwrap();
        assert_eq!(inst.getattr("x").unwrap().unwrap().as_int(), Some(3), "C comes before A");
        inst.setattr("x", &g.int(9).unwrap()).unwrap();
        assert_eq!(inst.getattr("x").unwrap().unwrap().as_int(), Some(9), "the instance's own first");
        inst.delattr("x").unwrap();
        assert_eq!(inst.getattr("x").unwrap().unwrap().as_int(), Some(3));
        assert!(inst.getattr("nope").unwrap().is_none());
        // An inconsistent order is refused with CPython's text.
        let err = g.new_class("E", &[a.clone(), b.clone()]).unwrap_err();
        assert!(
            err.to_string().contains("Cannot create a consistent method resolution order (MRO) for bases A, B"),
            "{err}"
        );
        assert!(matches!(g.new_class("F", &[g.int(1).unwrap()]), Err(Error::TypeError { .. })));
    });
}

#[test]
fn isinstance_and_issubclass_cover_classes_and_built_ins() {
    with(|g| {
        let a = g.new_class("A", &[]).unwrap();
        let b = g.new_class("B", std::slice::from_ref(&a)).unwrap();
        let x = b.call(&[]).unwrap();
        assert!(x.isinstance(&b).unwrap() && x.isinstance(&a).unwrap());
        assert!(x.isinstance(&g.object_type().unwrap()).unwrap());
        assert!(!a.call(&[]).unwrap().isinstance(&b).unwrap());
        assert!(b.issubclass(&a).unwrap() && !a.issubclass(&b).unwrap());
        assert!(x.get_type().unwrap().is(&b));
        assert!(b.get_type().unwrap().is(&g.builtin_type(Kind::Type).unwrap()));
        let one = g.int(1).unwrap();
        let int_t = g.builtin_type(Kind::Int).unwrap();
        assert!(one.isinstance(&int_t).unwrap());
        assert!(g.bool(true).unwrap().isinstance(&int_t).unwrap(), "bool is a subclass of int");
        assert!(!g.str("s").unwrap().isinstance(&int_t).unwrap());
        assert!(one.get_type().unwrap().is(&int_t), "one type object per kind");
        let err = one.isinstance(&one).unwrap_err();
        assert!(err.to_string().contains("isinstance() arg 2 must be a type"), "{err}");
        let err = one.issubclass(&int_t).unwrap_err();
        assert!(err.to_string().contains("issubclass() arg 1 must be a class"), "{err}");
    });
}

#[test]
fn calling_a_class_runs_init_and_methods_get_their_instance() {
    with(|g| {
        let cls = g.new_class("Point", &[]).unwrap();
        let init = g
            .function("__init__", &[], |g, _, args| {
                if args.len() != 3 {
                    return Err(Error::TypeError { message: "__init__() takes x and y".into() });
                }
                args[0].setattr("x", &args[1])?;
                args[0].setattr("y", &args[2])?;
                g.none()
            })
            .unwrap();
        let norm1 = g
            .function("norm1", &[], |g, _, args| {
                let x = args[0].getattr("x")?.unwrap();
                let y = args[0].getattr("y")?.unwrap();
                g.int(x.as_int().unwrap().abs() + y.as_int().unwrap().abs())
            })
            .unwrap();
        cls.setattr("__init__", &init).unwrap();
        cls.setattr("norm1", &norm1).unwrap();
        let p = cls.call(&[g.int(3).unwrap(), g.int(-4).unwrap()]).unwrap();
        assert_eq!(p.type_name(), "Point");
        assert_eq!(p.getattr("norm1").unwrap().unwrap().call(&[]).unwrap().as_int(), Some(7));
        // Looked up on the class, the function is not bound.
        assert_eq!(cls.getattr("norm1").unwrap().unwrap().kind(), Kind::Function);
        // A failing __init__ fails the call.
        assert!(cls.call(&[]).is_err());
    });
}

#[test]
fn a_class_del_is_the_finalizer_of_its_instances() {
    with(|g| {
        g.gc_disable();
        let hits = Rc::new(Cell::new(0));
        let cls = g.new_class("Finalized", &[]).unwrap();
        cls.setattr("__del__", &counter(g, &hits)).unwrap();
        drop(cls.call(&[]).unwrap());
        assert_eq!(hits.get(), 1, "at refcount zero");
        {
            let a = cls.call(&[]).unwrap();
            let b = cls.call(&[]).unwrap();
            a.setattr("other", &b).unwrap();
            b.setattr("other", &a).unwrap();
        }
        g.gc_collect(2).unwrap();
        assert_eq!(hits.get(), 3, "in a collection, once each");
    });
}

#[test]
fn instances_classes_and_functions_hash_by_identity() {
    with(|g| {
        let cls = g.new_class("K", &[]).unwrap();
        let (a, b) = (cls.call(&[]).unwrap(), cls.call(&[]).unwrap());
        let d = g.dict().unwrap();
        d.dict_set(&a, &g.int(1).unwrap()).unwrap();
        d.dict_set(&b, &g.int(2).unwrap()).unwrap();
        d.dict_set(&cls, &g.int(3).unwrap()).unwrap();
        assert_eq!(d.len().unwrap(), 3);
        assert_eq!(d.dict_get(&a).unwrap().unwrap().as_int(), Some(1));
        assert_eq!(d.dict_get(&b).unwrap().unwrap().as_int(), Some(2));
        assert_eq!(d.dict_get(&cls).unwrap().unwrap().as_int(), Some(3));
        assert!(d.dict_get(&cls.call(&[]).unwrap()).unwrap().is_none(), "another instance is another key");
        assert!(d.dict_del(&a).unwrap());
        assert!(matches!(d.dict_get(&g.list(&[]).unwrap()), Err(Error::TypeError { .. })), "lists stay unhashable");
    });
}

#[test]
fn attributes_of_objects_without_a_dict_are_read_only() {
    with(|g| {
        let one = g.int(1).unwrap();
        let err = one.setattr("x", &one).unwrap_err();
        assert!(matches!(err, Error::AttributeError { .. }));
        assert!(err.to_string().contains("'int' object attribute 'x' is read-only"), "{err}");
        let inst = g.instance("Thing").unwrap();
        let err = inst.delattr("missing").unwrap_err();
        assert!(err.to_string().contains("'Thing' object has no attribute 'missing'"), "{err}");
        // A function on a built-in type binds to built-in objects too.
        let int_t = g.builtin_type(Kind::Int).unwrap();
        let double = g.function("double", &[], |g, _, a| g.int(a[0].as_int().unwrap() * 2)).unwrap();
        int_t.setattr("double", &double).unwrap();
        assert_eq!(g.int(21).unwrap().getattr("double").unwrap().unwrap().call(&[]).unwrap().as_int(), Some(42));
    });
}

#[test]
fn named_instances_share_their_class() {
    with(|g| {
        let a = g.instance("Same").unwrap();
        let b = g.instance("Same").unwrap();
        assert!(a.get_type().unwrap().is(&b.get_type().unwrap()));
        assert!(!a.get_type().unwrap().is(&g.instance("Other").unwrap().get_type().unwrap()));
    });
}

/// test_weakref's proxy cases: attribute access and calls go to the
/// referent, ReferenceError after it died; proxies are unhashable.
#[test]
fn weak_proxies_forward_and_fail_after_death() {
    with(|g| {
        let obj = g.instance("Target").unwrap();
        let p = g.weakref_proxy(&obj, None).unwrap();
        assert_eq!(p.kind(), Kind::WeakProxy);
        p.setattr("x", &g.int(5).unwrap()).unwrap();
        assert_eq!(obj.getattr("x").unwrap().unwrap().as_int(), Some(5));
        assert_eq!(p.getattr("x").unwrap().unwrap().as_int(), Some(5));
        p.delattr("x").unwrap();
        assert!(obj.getattr("x").unwrap().is_none());
        let f = g.function("f", &[], |g, _, a| g.int(a.len() as i64)).unwrap();
        let pf = g.weakref_proxy(&f, None).unwrap();
        assert_eq!(pf.call(&[g.none().unwrap()]).unwrap().as_int(), Some(1));
        let d = g.dict().unwrap();
        let err = d.dict_set(&p, &obj).unwrap_err();
        assert!(err.to_string().contains("unhashable type: 'weakref.ProxyType'"), "{err}");
        drop(obj);
        let err = p.getattr("x").unwrap_err();
        assert!(matches!(err, Error::ReferenceError { .. }));
        assert!(err.to_string().contains("weakly-referenced object no longer exists"));
        assert!(matches!(p.setattr("x", &f), Err(Error::ReferenceError { .. })));
    });
}

/// `__callback__`: the callback while the referent lives, None after.
#[test]
fn weakref_callback_is_none_once_the_referent_died() {
    with(|g| {
        let hits = Rc::new(Cell::new(0));
        let cb = counter(g, &hits);
        let t = g.list(&[]).unwrap();
        let w = g.weakref(&t, Some(&cb)).unwrap();
        assert!(w.weakref_callback().unwrap().unwrap().is(&cb));
        assert!(g.weakref(&t, None).unwrap().weakref_callback().unwrap().is_none());
        drop(t);
        assert_eq!(hits.get(), 1);
        assert!(w.weakref_callback().unwrap().is_none());
        // Weakrefs (not proxies) hash by identity.
        let d = g.dict().unwrap();
        d.dict_set(&w, &cb).unwrap();
        assert!(d.dict_get(&w).unwrap().is_some());
    });
}

#[test]
fn collected_instances_and_methods_release_their_class_and_function() {
    // A bound method keeps its function and receiver, an instance its class,
    // until freed (CPython has no `tp_clear` for them): a collection that
    // frees them must release those references, or the class and the
    // function stay alive until the interpreter closes.
    with(|g| {
        g.gc_disable();
        let cls = g.new_class("K", &[]).unwrap();
        let f = g.function("m", &[], |g, _, _| g.none()).unwrap();
        cls.setattr("m", &f).unwrap();
        let wf = g.weakref(&f, None).unwrap();
        drop(f);
        // Without weakrefs (the collector's fast path), then with (its slow
        // path, which runs callbacks).
        for with_weakrefs in [false, true] {
            let mut weak = Vec::new();
            for _ in 0..10 {
                let inst = cls.call(&[]).unwrap();
                let bound = inst.getattr("m").unwrap().unwrap();
                inst.setattr("bound", &bound).unwrap(); // inst -> bound -> inst
                if with_weakrefs {
                    weak.push(g.weakref(&bound, None).unwrap());
                }
            }
            let r = g.gc_collect(2).unwrap();
            assert_eq!(r.collected, 20, "10 instances and 10 methods");
            assert!(weak.iter().all(|w| w.weakref_get().unwrap().is_none()));
        }
        let wc = g.weakref(&cls, None).unwrap();
        drop(cls);
        assert!(wc.weakref_get().unwrap().is_none(), "no collected instance still holds its class");
        assert!(wf.weakref_get().unwrap().is_none(), "no collected method still holds its function");
    });
}

#[test]
fn none_bools_and_small_ints_are_shared_per_interpreter() {
    // CPython: `None`, `True`, `False` are singletons and -5..=256 are cached.
    with(|g| {
        assert!(g.none().unwrap().is(&g.none().unwrap()));
        assert!(g.bool(true).unwrap().is(&g.bool(true).unwrap()));
        assert!(!g.bool(true).unwrap().is(&g.bool(false).unwrap()));
        assert_eq!(g.bool(false).unwrap().as_bool(), Some(false));
        for v in [-5, 0, 7, 256] {
            let (a, b) = (g.int(v).unwrap(), g.int(v).unwrap());
            assert!(a.is(&b), "{v} is shared");
            assert_eq!(a.as_int(), Some(v));
        }
        for v in [-6, 257, 1 << 40] {
            assert!(!g.int(v).unwrap().is(&g.int(v).unwrap()), "{v} is a new object each time");
        }
        // Shared atoms in a cycle's garbage and in lists are released with them.
        let l = g.list(&[g.none().unwrap(), g.int(1).unwrap()]).unwrap();
        l.list_append(&l).unwrap();
        drop(l);
        g.gc_collect(2).unwrap();
    });
}

#[test]
fn attribute_names_are_interned_and_mortal() {
    with(|g| {
        // Instances of a class share their attribute names' strings.
        let (a, b) = (g.instance("P").unwrap(), g.instance("P").unwrap());
        a.setattr("x", &g.int(1).unwrap()).unwrap();
        b.setattr("x", &g.int(2).unwrap()).unwrap();
        let x = g.intern("x").unwrap();
        assert!(x.is(&g.intern("x").unwrap()));
        assert!(x.refcount() >= 4, "held by the table (twice) and both dicts: {}", x.refcount());
        drop((a, b, x));
        // Many distinct names: kept while used, dropped by a full collection after.
        let o = g.instance("Q").unwrap();
        drop(g.none().unwrap());
        g.gc_collect(2).unwrap();
        let base = g.memory_stats().bytes_in_use;
        for i in 0..5_000 {
            o.setattr(&format!("attr_{i}"), &g.none().unwrap()).unwrap();
        }
        let grown = g.memory_stats().bytes_in_use;
        assert!(grown > base + 5_000 * 48, "names and table entries are in the heap");
        drop(o);
        g.gc_collect(2).unwrap();
        let after = g.memory_stats().bytes_in_use;
        // Freed: the instance's dict and the 5,000 names (48-byte blocks); the
        // intern table keeps its (emptied) table, as a CPython dict does.
        assert!(grown - after > 5_000 * (48 + 24), "the names went with the instance: {base} -> {grown} -> {after}");
    });
}
