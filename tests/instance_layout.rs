//! Instances keep their attributes inline, named by their class's shared
//! keys (`src/gc/instance.rs`, `docs/objects.md` "Instance layout"): what a
//! program sees must not depend on the layout an instance happens to have.

use std::cell::Cell;
use std::rc::Rc;

use subinterp::{Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

fn with<R>(f: impl for<'i> FnOnce(Gil<'i>) -> R) -> R {
    let (r, errors) = with_errors(f);
    assert!(errors.is_empty(), "{errors:?}");
    r
}

/// As `with`, returning the callback errors the close reported.
fn with_errors<R>(f: impl for<'i> FnOnce(Gil<'i>) -> R) -> (R, Vec<subinterp::Error>) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let r = i.with_gil(f).unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0, "nothing left in the heap at close");
    (r, report.gc_errors)
}

fn names(o: &Obj<'_>) -> Vec<String> {
    o.dict_items().unwrap().iter().map(|(k, _)| k.as_str().unwrap().to_owned()).collect()
}

/// Heap bytes of `n` instances of `class` made by `make`, per instance.
fn bytes_per<'i>(g: Gil<'i>, n: usize, make: impl Fn() -> Obj<'i>) -> usize {
    let before = g.memory_stats().bytes_in_use;
    let kept: Vec<_> = (0..n).map(|_| make()).collect();
    let per = (g.memory_stats().bytes_in_use - before) / n;
    drop(kept);
    per
}

#[test]
fn attribute_order_is_insertion_order_whatever_the_layout() {
    with(|g| {
        let c = g.new_class("P", &[]).unwrap();
        let one = g.int(1).unwrap();
        // The class learns x, y, z from its first instances.
        for _ in 0..3 {
            let o = c.call(&[]).unwrap();
            for n in ["x", "y", "z"] {
                o.setattr(n, &one).unwrap();
            }
            assert_eq!(names(&o), ["x", "y", "z"]);
        }
        // Set out of the keys' order: the instance's own order is kept.
        let o = c.call(&[]).unwrap();
        for n in ["z", "x", "y"] {
            o.setattr(n, &one).unwrap();
        }
        assert_eq!(names(&o), ["z", "x", "y"]);
        // Deleted and set again: it moves to the end (as in a dict).
        let o = c.call(&[]).unwrap();
        for n in ["x", "y", "z"] {
            o.setattr(n, &one).unwrap();
        }
        o.delattr("x").unwrap();
        assert!(o.getattr("x").unwrap().is_none());
        o.setattr("x", &one).unwrap();
        assert_eq!(names(&o), ["y", "z", "x"]);
        // Replacing a value keeps its place.
        let o = c.call(&[]).unwrap();
        for n in ["x", "y"] {
            o.setattr(n, &one).unwrap();
        }
        o.setattr("x", &g.int(2).unwrap()).unwrap();
        assert_eq!(names(&o), ["x", "y"]);
        assert_eq!(o.getattr("x").unwrap().unwrap().as_int(), Some(2));
    });
}

#[test]
fn more_names_than_a_class_shares_still_work() {
    with(|g| {
        let c = g.new_class("Wide", &[]).unwrap();
        for round in 0..3 {
            let o = c.call(&[]).unwrap();
            for i in 0..100 {
                o.setattr(&format!("a{i}"), &g.int(i).unwrap()).unwrap();
            }
            for i in 0..100 {
                assert_eq!(o.getattr(&format!("a{i}")).unwrap().unwrap().as_int(), Some(i), "round {round}");
            }
            let expect: Vec<String> = (0..100).map(|i| format!("a{i}")).collect();
            assert_eq!(names(&o), expect);
            for i in (0..100).step_by(2) {
                o.delattr(&format!("a{i}")).unwrap();
            }
            assert_eq!(o.dict_items().unwrap().len(), 50);
            assert!(o.delattr("a0").is_err(), "already deleted: AttributeError");
        }
    });
}

#[test]
fn instances_with_the_class_layout_cost_one_block() {
    with(|g| {
        let c = g.new_class("Point", &[]).unwrap();
        let one = g.int(1).unwrap();
        let point = || {
            let o = c.call(&[]).unwrap();
            for n in ["x", "y", "z"] {
                o.setattr(n, &one).unwrap();
            }
            o
        };
        // The first ones teach the class its layout.
        drop((point(), point()));
        // Then each is a 64-byte block: headers, ext word, three values.
        assert_eq!(bytes_per(g, 1000, point), 64);
        // Empty instances and those with one attribute: 48 bytes.
        let d = g.new_class("D", &[]).unwrap();
        assert_eq!(bytes_per(g, 1000, || d.call(&[]).unwrap()), 48);
        let one_attr = || {
            let o = d.call(&[]).unwrap();
            o.setattr("v", &one).unwrap();
            o
        };
        drop(one_attr());
        assert_eq!(bytes_per(g, 1000, one_attr), 48);
    });
}

#[test]
fn a_bag_of_unrelated_names_does_not_grow_every_instance() {
    with(|g| {
        let c = g.new_class("Bag", &[]).unwrap();
        let one = g.int(1).unwrap();
        let kept: Vec<_> = (0..200)
            .map(|i| {
                let o = c.call(&[]).unwrap();
                o.setattr(&format!("only_{i}"), &one).unwrap();
                o
            })
            .collect();
        for (i, o) in kept.iter().enumerate() {
            assert!(o.getattr(&format!("only_{i}")).unwrap().is_some());
            assert!(o.getattr(&format!("only_{}", (i + 1) % 200)).unwrap().is_none());
        }
        // A new instance is still the smallest block.
        assert_eq!(bytes_per(g, 100, || c.call(&[]).unwrap()), 48);
    });
}

#[test]
fn subclass_instances_have_their_own_layout_and_find_inherited_attributes() {
    with(|g| {
        let base = g.new_class("Base", &[]).unwrap();
        base.setattr("kind", &g.str("base").unwrap()).unwrap();
        let sub = g.new_class("Sub", std::slice::from_ref(&base)).unwrap();
        let a = base.call(&[]).unwrap();
        a.setattr("x", &g.int(1).unwrap()).unwrap();
        let b = sub.call(&[]).unwrap();
        b.setattr("y", &g.int(2).unwrap()).unwrap();
        assert!(b.getattr("x").unwrap().is_none());
        assert!(a.getattr("y").unwrap().is_none());
        assert_eq!(b.getattr("kind").unwrap().unwrap().as_str(), Some("base"));
        // An instance attribute shadows the class's, and deleting it
        // uncovers the class's again.
        b.setattr("kind", &g.str("own").unwrap()).unwrap();
        assert_eq!(b.getattr("kind").unwrap().unwrap().as_str(), Some("own"));
        b.delattr("kind").unwrap();
        assert_eq!(b.getattr("kind").unwrap().unwrap().as_str(), Some("base"));
    });
}

#[test]
fn iterating_an_instance_then_adding_an_attribute_is_a_size_change() {
    with(|g| {
        let o = g.instance("It").unwrap();
        o.setattr("a", &g.none().unwrap()).unwrap();
        o.setattr("b", &g.none().unwrap()).unwrap();
        let mut it = o.dict_iter().unwrap();
        assert!(it.next().unwrap().is_ok());
        o.setattr("c", &g.none().unwrap()).unwrap();
        let err = it.next().unwrap().unwrap_err();
        assert!(err.to_string().contains("dictionary changed size during iteration"), "{err}");
        assert_eq!(names(&o), ["a", "b", "c"]);
    });
}

#[test]
fn a_refused_layout_change_is_a_memory_error_with_nothing_changed() {
    with(|g| {
        let c = g.new_class("M", &[]).unwrap();
        let one = g.int(1).unwrap();
        // Instances in the inline layout, one value each (the class knows "a").
        let kept: Vec<_> = (0..64)
            .map(|_| {
                let o = c.call(&[]).unwrap();
                o.setattr("a", &one).unwrap();
                o
            })
            .collect();
        // No room left: moving the attributes to a dict needs the heap.
        g.set_memory_limit(Some(g.memory_stats().counted_bytes)).unwrap();
        let mut refused = 0;
        for (i, o) in kept.iter().enumerate() {
            // "b" has no inline slot (cap 1): the instance must leave the
            // inline layout, which needs an ext box and a table.
            match o.setattr(&format!("b{i}"), &one) {
                Ok(()) => {}
                Err(e) => {
                    assert!(e.is_memory_error(), "{e}");
                    refused += 1;
                    assert_eq!(names(o).len(), 1, "nothing changed: {:?}", names(o));
                }
            }
            assert_eq!(o.getattr("a").unwrap().unwrap().as_int(), Some(1));
        }
        assert!(refused > 0, "the limit refused a layout change");
        g.set_memory_limit(None).unwrap();
        for (i, o) in kept.iter().enumerate() {
            o.setattr(&format!("b{i}"), &one).unwrap();
            assert_eq!(names(o), ["a".to_string(), format!("b{i}")]);
        }
    });
}

#[test]
fn user_code_run_by_a_replaced_or_deleted_value_may_use_the_instance() {
    with(|g| {
        let o = g.instance("Host").unwrap();
        let hits = Rc::new(Cell::new(0));
        // A value whose finalizer sets and deletes attributes of the instance
        // holding it, and reads them as a dict, while being replaced.
        let victim = g.instance("Victim").unwrap();
        let host = o.to_owned();
        let h = hits.clone();
        let fin = g
            .function("fin", &[], move |g, _, _| {
                h.set(h.get() + 1);
                let host = host.bind(g)?;
                for i in 0..40 {
                    host.setattr(&format!("n{i}"), &g.none()?)?;
                }
                host.delattr("n3")?;
                assert_eq!(host.dict_items()?.len(), 40);
                g.none()
            })
            .unwrap();
        victim.set_finalizer(Some(&fin)).unwrap();
        o.setattr("v", &victim).unwrap();
        drop(victim);
        o.setattr("v", &g.int(7).unwrap()).unwrap(); // the old value dies here
        assert_eq!(hits.get(), 1);
        assert_eq!(o.getattr("v").unwrap().unwrap().as_int(), Some(7));
        assert!(o.getattr("n39").unwrap().is_some());
        // Deleted: the finalizer of the deleted value runs again on a new one.
        let victim = g.instance("Victim").unwrap();
        victim.set_finalizer(Some(&fin)).unwrap();
        o.setattr("w", &victim).unwrap();
        drop(victim);
        o.delattr("w").unwrap();
        assert_eq!(hits.get(), 2);
    });
}

#[test]
fn a_panicking_finalizer_of_a_deleted_value_is_reported() {
    let ((), errors) = with_errors(|g| {
        let o = g.instance("Host").unwrap();
        let boom = g.function("boom", &[], |_, _, _| panic!("boom")).unwrap();
        let p = g.instance("Victim").unwrap();
        p.set_finalizer(Some(&boom)).unwrap();
        o.setattr("p", &p).unwrap();
        o.setattr("q", &g.int(1).unwrap()).unwrap();
        drop(p);
        o.delattr("p").unwrap(); // the value dies: its finalizer panics
        assert_eq!(names(&o), ["q"]);
        // And a value whose finalizer panics while the instance itself dies.
        let p = g.instance("Victim").unwrap();
        p.set_finalizer(Some(&boom)).unwrap();
        o.setattr("p", &p).unwrap();
        drop((p, o));
    });
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.to_string().contains("boom")), "{errors:?}");
}

#[test]
fn instances_in_garbage_cycles_release_their_inline_values_and_dicts() {
    with(|g| {
        g.gc_disable();
        let c = g.new_class("Node", &[]).unwrap();
        // A first round teaches the class its names and sizes the intern
        // table (both kept); every round after leaves the heap as it was.
        make_garbage_cycles(&c);
        assert_eq!(g.gc_collect(2).unwrap().collected, 110);
        let base = g.memory_stats().bytes_in_use;
        for round in 0..3 {
            make_garbage_cycles(&c);
            let r = g.gc_collect(2).unwrap();
            assert_eq!(r.collected, 110, "{r:?}");
            assert_eq!(g.memory_stats().bytes_in_use, base, "round {round}: the cycles' memory all given back");
        }
    });
}

fn make_garbage_cycles(c: &Obj<'_>) {
    // Inline layout: a ring.
    let ring: Vec<_> = (0..100).map(|_| c.call(&[]).unwrap()).collect();
    for (i, o) in ring.iter().enumerate() {
        o.setattr("next", &ring[(i + 1) % ring.len()]).unwrap();
    }
    // Dict layout: each refers to itself under many names.
    for _ in 0..10 {
        let o = c.call(&[]).unwrap();
        for j in 0..50 {
            o.setattr(&format!("self{j}"), &o).unwrap();
        }
    }
}
