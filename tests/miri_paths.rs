//! The unsafe paths end to end, each in a test small enough for Miri
//! (`.ci/miri.sh` runs this file under Miri with tree borrows; natively it is
//! an ordinary, fast test): deallocation of nested containers with user code
//! in it, collections of cycles with finalizers, weakref callbacks and
//! resurrection, embedder objects, `close()` with live objects and blocks,
//! objects released from another thread, and the checked frees of the raw
//! heap API, foreign blocks included.
//!
//! Under Miri these need the epoch handles of `src/interp/tstate.rs` to be
//! dropped before the collector reference kept beside them (see
//! docs/verification.md, "Miri": crossbeam-rs/crossbeam#545).

use std::cell::Cell;
use std::rc::Rc;

use subinterp::{trace_fields, Error, Gil, InterpreterConfig, Member, Obj, Runtime, RuntimeConfig};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

/// Runs `f` in a fresh interpreter, closes it, checks nothing leaked.
fn with<R>(f: impl for<'i> FnOnce(Gil<'i>) -> R) -> R {
    let rt = runtime();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let r = i.with_gil(f).unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0, "blocks leaked at close: {report:?}");
    assert!(report.gc_errors.is_empty(), "{report:?}");
    r
}

/// A function object that counts its calls.
fn counter<'i>(g: Gil<'i>, hits: &Rc<Cell<usize>>) -> Obj<'i> {
    let h = hits.clone();
    g.function("counter", &[], move |g, _, _| {
        h.set(h.get() + 1);
        g.none()
    })
    .unwrap()
}

/// Freeing a container frees what it alone holds, down the nesting
/// (inline items, item buffers, dict entries, attributes), and runs the user
/// code on the way: a finalizer that allocates and reads the dying object's
/// neighbours, a weakref callback.
#[test]
fn dealloc_of_nested_containers_runs_user_code() {
    with(|g| {
        // The class `Holder` (and `object`) stay with the interpreter.
        drop(g.instance("Holder").unwrap());
        drop(g.none().unwrap()); // and the shared atoms (None, bools, small ints)
        drop(g.intern("inner").unwrap()); // and the interned attribute name
        let base = g.memory_stats().bytes_in_use;
        let hits = Rc::new(Cell::new(0));
        let seen = g.list(&[]).unwrap();
        let fin = g
            .function("__del__", std::slice::from_ref(&seen), |g, cap, args| {
                // The dying instance is intact while its finalizer runs.
                let inner = args[0].getattr("inner")?.expect("its attribute");
                cap[0].list_append(&g.int(inner.len()? as i64)?)?;
                g.none()
            })
            .unwrap();
        {
            let one = g.list(&[g.int(1).unwrap()]).unwrap(); // one inline item
            let many: Vec<Obj<'_>> = (0..6).map(|i| g.int(i).unwrap()).collect();
            let buf = g.list(&many).unwrap(); // a buffer of items
            buf.list_set(2, &g.str("two").unwrap()).unwrap();
            assert_eq!(buf.list_pop().unwrap().unwrap().as_int(), Some(5));
            let t = g.tuple(&[one, buf, g.bytes(b"xyz").unwrap()]).unwrap();
            let d = g.dict().unwrap();
            d.dict_set(&g.str("t").unwrap(), &t).unwrap();
            let _w = g.weakref(&d, Some(&counter(g, &hits))).unwrap();
            let inst = g.instance("Holder").unwrap();
            inst.setattr("inner", &d).unwrap();
            inst.set_finalizer(Some(&fin)).unwrap();
            // `inst` is the only owner of everything above but `_w`, which
            // is dropped after it: the callback runs as `d` dies.
            drop((t, d));
            drop(inst);
            assert_eq!(hits.get(), 1, "the weakref callback ran");
        }
        assert_eq!(seen.len().unwrap(), 1);
        assert_eq!(seen.get_item(0).unwrap().as_int(), Some(1), "the finalizer saw the dict");
        drop((fin, seen));
        assert_eq!(g.memory_stats().bytes_in_use, base, "everything freed");
    });
}

/// A collection finds cycles (lists, instances, an embedder type), runs a
/// finalizer once that resurrects its object and what it reaches, clears
/// weakrefs to the garbage and runs the callback of one outside it, and
/// frees the rest; a second collection frees the resurrected ones.
#[test]
fn collection_of_cycles_with_finalizers_weakrefs_and_resurrection() {
    struct Node {
        next: Member,
    }
    trace_fields!(Node { next });
    with(|g| {
        g.gc_disable();
        let hits = Rc::new(Cell::new(0));
        let saved = g.list(&[]).unwrap();
        let resurrect = g
            .function("__del__", std::slice::from_ref(&saved), |g, cap, args| {
                cap[0].list_append(&args[0])?;
                g.none()
            })
            .unwrap();
        let a = g.instance("A").unwrap();
        let b = g.instance("B").unwrap();
        a.set_finalizer(Some(&resurrect)).unwrap();
        a.setattr("b", &b).unwrap();
        b.setattr("a", &a).unwrap();
        let c = g.list(&[]).unwrap();
        c.list_append(&c).unwrap();
        let wc = g.weakref(&c, Some(&counter(g, &hits))).unwrap();
        let n1 = g.new_object(Node { next: Member::empty() }).unwrap();
        let n2 = g.new_object(Node { next: Member::empty() }).unwrap();
        n1.downcast_ref::<Node>().unwrap().next.set(g, Some(&n2)).unwrap();
        n2.downcast_ref::<Node>().unwrap().next.set(g, Some(&n1)).unwrap();
        drop((a, b, c, n1, n2));
        let r = g.gc_collect(2).unwrap();
        assert_eq!(r.collected, 3, "the self-cycle and the two nodes; A and B resurrected");
        assert_eq!(hits.get(), 1);
        assert!(wc.weakref_get().unwrap().is_none());
        let a = saved.get_item(0).unwrap();
        let b = a.getattr("b").unwrap().unwrap();
        assert!(b.getattr("a").unwrap().unwrap().is(&a), "B was not cleared");
        drop((a, b));
        saved.clear().unwrap();
        assert_eq!(g.gc_collect(2).unwrap().collected, 2, "the finalizer does not run twice");
    });
}

/// `close()` with live objects (a cycle and a container held by `Owned`
/// handles, one dropped from another thread before the close and one after
/// it) and live raw blocks: everything is freed, the blocks are reported.
#[test]
fn close_with_live_objects_and_blocks() {
    let rt = runtime();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let (kept, sent) = i
        .with_gil(|g| {
            let c = g.list(&[]).unwrap();
            c.list_append(&c).unwrap();
            let t = g.tuple(&[c.clone(), g.str("s").unwrap()]).unwrap();
            let raw = g.alloc_raw(40).unwrap();
            // SAFETY: a fresh block of 40 bytes.
            unsafe { raw.as_ptr().write_bytes(7, 40) };
            std::mem::forget(g.alloc(600).unwrap()); // a large block left live
            (c.to_owned(), t.to_owned())
        })
        .unwrap();
    // Released without the GIL: queued, applied at the next checkpoint.
    std::thread::spawn(move || drop(sent)).join().unwrap();
    i.with_gil(|g| g.checkpoint()).unwrap().unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.objects_freed, 1, "{report:?}");
    assert_eq!(report.leaked.live_blocks, 2, "the raw block and the large one: {report:?}");
    assert_eq!(report.leaked.live_bytes, 48 + 608);
    assert!(matches!(kept.with(|o| o.len()), Err(Error::InterpreterClosed { .. })));
    drop(kept);
}

/// The raw heap API frees and resizes checked pointers: live blocks of this
/// heap (small and large) go, everything else is refused and left as it was:
/// another interpreter's block, a double free, an interior pointer, a `Box`.
#[test]
fn checked_frees_of_own_and_foreign_blocks() {
    let rt = runtime();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    let foreign = b.with_gil(|g| g.alloc_raw(64).unwrap().as_ptr().addr()).unwrap();
    let foreign_ptr = b.with_gil(|g| g.alloc_raw(64).unwrap()).unwrap();
    a.with_gil(|g| {
        let refused = |r: subinterp::Result<()>| match r {
            Err(Error::InvalidFree { reason, .. }) => reason,
            r => panic!("expected a refused free, got {r:?}"),
        };
        let p = g.alloc_raw(24).unwrap();
        // SAFETY: a fresh block of 24 bytes.
        unsafe { p.as_ptr().write_bytes(1, 24) };
        // SAFETY (free_raw / realloc_raw below): every pointer is either a
        // live block of this heap that the call takes, or not a live block.
        let q = unsafe { g.realloc_raw(p.as_ptr(), 700) }.unwrap();
        // SAFETY: `q` holds at least 700 bytes, its first 24 copied.
        assert_eq!(unsafe { std::slice::from_raw_parts(q.as_ptr(), 24) }, &[1; 24]);
        // SAFETY: `q` is a live block of this heap; the call takes it.
        let r = unsafe { g.realloc_raw(q.as_ptr(), 100) }.unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { std::slice::from_raw_parts(r.as_ptr(), 24) }, &[1; 24]);
        // SAFETY: another interpreter's live block: the checked free refuses it.
        assert!(refused(unsafe { g.free_raw(foreign_ptr.as_ptr()) }).starts_with("owned by interpreter"));
        let interior = r.as_ptr().wrapping_add(16);
        // SAFETY: inside a live block, not its start: refused, nothing freed.
        assert!(refused(unsafe { g.free_raw(interior) }).starts_with("not the start of a block"));
        let mut boxed = Box::new([0u8; 32]);
        // SAFETY: memory of the system allocator, not of this heap: refused.
        assert!(refused(unsafe { g.free_raw(boxed.as_mut_ptr()) }).starts_with("not owned by this heap"));
        // SAFETY: `r` is a live block of this heap, freed once here.
        unsafe { g.free_raw(r.as_ptr()) }.unwrap();
        // SAFETY: `r` is no longer live: the checked free refuses the second free.
        assert!(refused(unsafe { g.free_raw(r.as_ptr()) }).starts_with("double free"));
        // Safe blocks: resized across the large threshold and back.
        let mut blk = g.alloc(10).unwrap();
        blk.copy_from_slice(b"0123456789");
        g.realloc(&mut blk, 2000).unwrap();
        g.realloc(&mut blk, 5).unwrap();
        assert_eq!(&blk[..], b"01234");
    })
    .unwrap();
    assert_eq!(a.close().unwrap().leaked.live_blocks, 0);
    b.with_gil(|g| {
        // SAFETY: live blocks of b's heap, given up here.
        unsafe { g.free_raw(foreign_ptr.as_ptr()) }.unwrap();
        // Only the address was kept: a pointer without provenance will do,
        // the check never reads through the caller's pointer.
        let p = std::ptr::without_provenance_mut::<u8>(foreign);
        // SAFETY: the address of a live block of b's heap, given up here.
        unsafe { g.free_raw(p) }.unwrap();
    })
    .unwrap();
    assert_eq!(b.close().unwrap().leaked.live_blocks, 0);
}

/// The dict's table (`src/gc/dict.rs`): growth through rebuilds (i8 index,
/// then a larger table), equal keys of other types, deletes (dummy slots),
/// reinsertion, a live iterator, `clear`, and a dict in a collected cycle,
/// its table freed by the collector and at close.
#[test]
fn dict_tables_grow_delete_iterate_and_free() {
    with(|g| {
        let d = g.dict().unwrap();
        let int = |v| g.int(v).unwrap();
        for i in 0..12 {
            d.dict_set(&int(i), &int(i * 10)).unwrap();
        }
        d.dict_set(&g.str("s").unwrap(), &int(-1)).unwrap();
        d.dict_set(&g.tuple(&[int(1), g.str("t").unwrap()]).unwrap(), &int(-2)).unwrap();
        assert_eq!(d.dict_get(&g.float(3.0).unwrap()).unwrap().unwrap().as_int(), Some(30));
        assert_eq!(d.dict_get(&g.str("s").unwrap()).unwrap().unwrap().as_int(), Some(-1));
        let t = g.tuple(&[g.bool(true).unwrap(), g.str("t").unwrap()]).unwrap();
        assert_eq!(d.dict_get(&t).unwrap().unwrap().as_int(), Some(-2));
        for i in (0..12).step_by(2) {
            assert!(d.dict_del(&int(i)).unwrap());
        }
        d.dict_set(&int(0), &int(0)).unwrap();
        let keys: Vec<Option<i64>> = d.dict_iter().unwrap().map(|kv| kv.unwrap().0.as_int()).collect();
        assert_eq!(keys, [Some(1), Some(3), Some(5), Some(7), Some(9), Some(11), None, None, Some(0)]);
        let mut it = d.dict_iter().unwrap();
        it.next().unwrap().unwrap();
        d.dict_del(&int(1)).unwrap();
        assert!(matches!(it.next(), Some(Err(Error::RuntimeError { .. }))));
        drop(it); // it holds the dict
        d.clear().unwrap();
        assert_eq!(d.len().unwrap(), 0);
        d.dict_set(&int(5), &d).unwrap();
        let o = g.instance("M").unwrap();
        o.setattr("d", &d).unwrap();
        d.dict_set(&g.str("o").unwrap(), &o).unwrap();
        drop((d, o));
        assert!(g.gc_collect(2).unwrap().collected >= 2);
        // One left for the close to free.
        let kept = g.dict().unwrap();
        kept.dict_set(&int(1), &kept).unwrap();
    })
}

/// Instances' inline values and ext box (`src/gc/instance.rs`): values set,
/// replaced and deleted in place, a class learning its keys, the move to a
/// dict, a finalizer in the ext box, frees at refcount zero (the values
/// moved out with the block) and in a collected cycle (released one at a
/// time), and instances of both layouts left for the close.
#[test]
fn instance_inline_values_and_ext_boxes() {
    with(|g| {
        let c = g.new_class("P", &[]).unwrap();
        let int = |v| g.int(v).unwrap();
        for round in 0..3 {
            let o = c.call(&[]).unwrap();
            for (i, n) in ["x", "y", "z"].iter().enumerate() {
                o.setattr(n, &int(i as i64)).unwrap();
            }
            o.setattr("x", &int(10)).unwrap();
            o.delattr("y").unwrap();
            assert_eq!(o.getattr("x").unwrap().unwrap().as_int(), Some(10), "round {round}");
            assert!(o.getattr("y").unwrap().is_none());
            o.setattr("y", &o).unwrap(); // out of order: the dict layout
            assert_eq!(o.dict_items().unwrap().len(), 3);
        }
        let hits = Rc::new(Cell::new(0));
        let fin = counter(g, &hits);
        let a = c.call(&[]).unwrap();
        a.set_finalizer(Some(&fin)).unwrap();
        a.setattr("x", &int(1)).unwrap();
        drop(a); // refcount zero: finalizer, then the inline values
        assert_eq!(hits.get(), 1);
        let (a, b) = (c.call(&[]).unwrap(), c.call(&[]).unwrap());
        a.setattr("x", &b).unwrap();
        b.setattr("x", &a).unwrap();
        b.set_finalizer(Some(&fin)).unwrap();
        drop((a, b));
        // The pair and the three rounds' instances (each holds itself).
        assert_eq!(g.gc_collect(2).unwrap().collected, 5);
        assert_eq!(hits.get(), 2);
        // Left for the close: a split one in a cycle, a dict one.
        let k = c.call(&[]).unwrap();
        k.setattr("x", &k).unwrap();
        let d = c.call(&[]).unwrap();
        d.setattr("w", &d).unwrap();
        drop((k, d)); // cycles: alive until the close frees them
    })
}

/// A value with a 16-byte alignment and more than 512 bytes (the heap's
/// large path), for `new_object` and a closure (`src/gc/hdyn.rs`).
#[repr(align(16))]
struct Wide {
    bytes: [u8; 600],
    next: subinterp::Member,
}
subinterp::trace_fields!(Wide { next });

/// Closures and embedder values in heap blocks (`src/gc/hdyn.rs`): called,
/// downcast, dropped at refcount zero, in a collected cycle, at close, and
/// with a drop that panics (the block freed all the same).
#[test]
fn closures_and_embedder_values_in_heap_blocks() {
    struct Loud(bool);
    impl Drop for Loud {
        fn drop(&mut self) {
            if self.0 {
                panic!("loud drop");
            }
        }
    }
    let rt = runtime();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    i.with_gil(|g| {
        let big = [3u8; 700];
        let loud = Loud(false);
        let f = g
            .function("f", &[g.int(5).unwrap()], move |g, cap, _| {
                let _ = &loud;
                g.int(big[699] as i64 + cap[0].as_int().unwrap())
            })
            .unwrap();
        assert_eq!(f.call(&[]).unwrap().as_int(), Some(8));
        let w = g.new_object(Wide { bytes: [9; 600], next: subinterp::Member::default() }).unwrap();
        assert_eq!(w.downcast_ref::<Wide>().unwrap().bytes[599], 9);
        w.downcast_ref::<Wide>().unwrap().next.set(g, Some(&w)).unwrap(); // a cycle
        drop((f, w));
        assert_eq!(g.gc_collect(2).unwrap().collected, 1);
        let loud = Loud(true);
        drop(g.function("p", &[], move |g, _, _| {
            let _ = &loud;
            g.none()
        }));
        // Left for the close: a value in a cycle (and a function holding it,
        // freed at once).
        let w = g.new_object(Wide { bytes: [0; 600], next: subinterp::Member::default() }).unwrap();
        w.downcast_ref::<Wide>().unwrap().next.set(g, Some(&w)).unwrap();
        std::mem::drop(g.function("kept", std::slice::from_ref(&w), |g, _, _| g.none()).unwrap());
    })
    .unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0, "{report:?}");
    assert_eq!(report.gc_errors.len(), 1, "the panicking drop: {report:?}");
}
