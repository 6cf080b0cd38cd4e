//! List and tuple item buffers live in the interpreter's heap: counted in
//! `MemoryStats`, refused past `memory_limit` with a `MemoryError`, the
//! interpreter usable afterwards.

use subinterp::{Error, InterpreterConfig, Runtime, RuntimeConfig};

#[test]
fn list_growing_past_the_limit_is_a_memory_error() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    i.with_gil(|g| {
        let l = g.list(&[]).unwrap();
        let one = g.int(1 << 40).unwrap(); // not a shared small int: its refcount is ours
        let before = g.memory_stats().counted_bytes;
        for _ in 0..10_000 {
            l.list_append(&one).unwrap();
        }
        // 10,000 pointers (a 128 KiB buffer at most) are counted.
        assert!(g.memory_stats().counted_bytes >= before + 10_000 * 8);
        g.set_memory_limit(Some(g.memory_stats().counted_bytes + (1 << 20))).unwrap();
        let mut err = None;
        for _ in 0..4_000_000 {
            if let Err(e) = l.list_append(&one) {
                err = Some(e);
                break;
            }
        }
        assert!(matches!(err, Some(Error::MemoryError { .. })), "{err:?}");
        let n = l.len().unwrap();
        assert!((10_000..4_000_000).contains(&n));
        // Nothing changed: the list still holds n references to `one`.
        assert_eq!(one.refcount(), n + 1);
        let stats = g.memory_stats();
        assert!(stats.counted_bytes <= stats.limit.unwrap());
        // Still usable: a refused tuple is a MemoryError too, small ones work.
        let items: Vec<_> = (0..200_000).map(|_| one.clone()).collect();
        assert!(matches!(g.tuple(&items), Err(Error::MemoryError { .. })));
        assert_eq!(one.refcount(), n + 1 + items.len());
        drop(items);
        l.clear().unwrap();
        assert_eq!(one.refcount(), 1);
        let t = g.tuple(&[one.clone(), one.clone()]).unwrap();
        assert_eq!(t.len().unwrap(), 2);
        g.set_memory_limit(None).unwrap();
    })
    .unwrap();
}

#[test]
fn freed_list_buffers_return_to_the_heap() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    i.with_gil(|g| {
        let one = g.int(1 << 40).unwrap(); // not a shared small int: its refcount is ours
        let base = g.memory_stats().counted_bytes;
        for _ in 0..10 {
            let l = g.list(&[]).unwrap();
            for _ in 0..100_000 {
                l.list_append(&one).unwrap();
            }
            assert!(g.memory_stats().counted_bytes > base + 100_000 * 8);
        }
        // Every big buffer was given back (pools may stay mapped: small slack).
        assert!(g.memory_stats().counted_bytes < base + 100_000 * 8);
    })
    .unwrap();
}

#[test]
fn instances_functions_and_weakrefs_live_in_the_heap_under_the_limit() {
    // Their blocks and bodies are the heap's: counted, and refused past the limit with
    // a MemoryError that leaves nothing half-made.
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    i.with_gil(|g| {
        let cls = g.new_class("C", &[]).unwrap();
        drop(cls.call(&[]).unwrap());
        let before = g.memory_stats().bytes_in_use;
        let many: Vec<_> = (0..10_000).map(|_| cls.call(&[]).unwrap()).collect();
        let per = (g.memory_stats().bytes_in_use - before) / many.len();
        // One 48-byte block: GC header, object header with the class, the
        // ext word and one inline value (`src/gc/instance.rs`).
        assert_eq!(per, 48, "the instance's block counted: {per} bytes per instance");
        drop(many);
        assert_eq!(g.memory_stats().bytes_in_use, before, "and freed with the instance");
        g.set_memory_limit(Some(g.memory_stats().counted_bytes + (1 << 20))).unwrap();
        let mut kept = Vec::new();
        let err = loop {
            let made = match kept.len() % 3 {
                0 => cls.call(&[]),
                1 => g.function("f", &[], |g, _, _| g.none()),
                _ => g.weakref(&cls, None),
            };
            match made {
                Ok(o) => kept.push(o),
                Err(e) => break e,
            }
        };
        assert!(err.is_memory_error(), "{err}");
        assert!(kept.len() > 1000, "{}", kept.len());
        let stats = g.memory_stats();
        assert!(stats.counted_bytes <= stats.limit.unwrap());
        drop(kept);
        g.gc_collect(2).unwrap();
        g.set_memory_limit(None).unwrap();
        assert!(cls.call(&[]).is_ok(), "usable afterwards");
    })
    .unwrap();
    assert_eq!(i.close().unwrap().leaked.live_blocks, 0);
}

/// Counts its drops; panics in its drop when told to.
struct Dropped {
    count: std::rc::Rc<std::cell::Cell<usize>>,
    panic: bool,
}

impl Drop for Dropped {
    fn drop(&mut self) {
        self.count.set(self.count.get() + 1);
        if self.panic {
            panic!("drop panicked");
        }
    }
}

/// An embedder value with a big inline payload, 16-byte aligned.
#[repr(align(16))]
struct Payload {
    _bytes: [u8; 2000],
    _guard: Dropped,
}
// SAFETY: it holds no object reference.
unsafe impl subinterp::Trace for Payload {
    fn trace(&self, _: &mut subinterp::Visitor<'_>) {}
    fn clear(&self, _: &mut subinterp::Cleared<'_>) {}
}

#[test]
fn closures_captured_references_and_embedder_values_are_heap_blocks() {
    use std::cell::Cell;
    use std::rc::Rc;
    let drops = Rc::new(Cell::new(0));
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    i.with_gil(|g| {
        let none = g.none().unwrap();
        let before = g.memory_stats().bytes_in_use;
        // A closure holding 4 KiB by value, with 100 captured references.
        let big = [7u8; 4096];
        let guard = Dropped { count: drops.clone(), panic: false };
        let caps: Vec<_> = (0..100).map(|_| none.clone()).collect();
        let f = g
            .function("f", &caps, move |g, cap, _| {
                let _ = &guard;
                g.int(big[0] as i64 + cap.len() as i64)
            })
            .unwrap();
        assert!(g.memory_stats().bytes_in_use >= before + 4096 + 100 * 8, "closure and captures counted");
        assert_eq!(f.call(&[]).unwrap().as_int(), Some(107));
        drop(f);
        assert_eq!(drops.get(), 1, "the closure was dropped with the function");
        assert_eq!(g.memory_stats().bytes_in_use, before, "and its blocks freed");
        // An embedder value is one block of the heap too (2 KiB here).
        let o = g
            .new_object(Payload { _bytes: [0; 2000], _guard: Dropped { count: drops.clone(), panic: false } })
            .unwrap();
        assert!(g.memory_stats().bytes_in_use >= before + 2000);
        assert!(o.downcast_ref::<Payload>().is_some());
        drop(o);
        assert_eq!(drops.get(), 2);
        assert_eq!(g.memory_stats().bytes_in_use, before);
        // Past the limit: a MemoryError, the value dropped once (behind the
        // boundary), nothing left allocated.
        g.set_memory_limit(Some(g.memory_stats().counted_bytes + 1000)).unwrap();
        let guard = Dropped { count: drops.clone(), panic: false };
        let big = [1u8; 8192];
        let err = g.function("g", &[], move |g, _, _| {
            let _ = &guard;
            g.int(big[0] as i64)
        });
        assert!(err.unwrap_err().is_memory_error());
        assert_eq!(drops.get(), 3);
        let err = g.new_object(Payload { _bytes: [0; 2000], _guard: Dropped { count: drops.clone(), panic: false } });
        assert!(err.unwrap_err().is_memory_error());
        assert_eq!(drops.get(), 4);
        g.set_memory_limit(None).unwrap();
        assert_eq!(g.memory_stats().bytes_in_use, before);
        // A closure and a value whose drop panics: reported, blocks freed.
        let guard = Dropped { count: drops.clone(), panic: true };
        let f = g.function("h", &[], move |g, _, _| {
            let _ = &guard;
            g.none()
        });
        drop(f.unwrap());
        let o = g.new_object(Payload { _bytes: [0; 2000], _guard: Dropped { count: drops.clone(), panic: true } });
        drop(o.unwrap());
        assert_eq!(drops.get(), 6);
        assert_eq!(g.memory_stats().bytes_in_use, before, "freed though their drops panicked");
    })
    .unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0);
    let panics = report.gc_errors.iter().filter(|e| e.to_string().contains("drop panicked")).count();
    assert_eq!(panics, 2, "{:?}", report.gc_errors);
}

#[test]
fn class_bases_mro_and_shared_keys_are_heap_buffers() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    i.with_gil(|g| {
        g.gc_disable();
        // A chain of 60 classes: the last one's MRO has 60 entries.
        let mut chain = vec![g.new_class("C0", &[]).unwrap()];
        for k in 1..60 {
            let c = g.new_class(&format!("C{k}"), std::slice::from_ref(chain.last().unwrap())).unwrap();
            chain.push(c);
        }
        let before = g.memory_stats().bytes_in_use;
        let deep = g.new_class("Deep", std::slice::from_ref(chain.last().unwrap())).unwrap();
        let grown = g.memory_stats().bytes_in_use - before;
        assert!(grown >= 61 * 8, "the 61-entry MRO is in the heap: {grown} bytes");
        assert_eq!(deep.mro().unwrap().len(), 62);
        // Shared keys too: 30 names learnt by the class.
        let before = g.memory_stats().bytes_in_use;
        for k in 0..30 {
            let o = deep.call(&[]).unwrap();
            for j in 0..=k {
                o.setattr(&format!("k{j}"), &o).unwrap();
            }
            for j in 0..=k {
                o.delattr(&format!("k{j}")).unwrap();
            }
        }
        assert!(g.memory_stats().bytes_in_use >= before + 30 * 8);
        // Under the limit: deep classes until a MemoryError, nothing half-made.
        drop(deep);
        g.gc_collect(2).unwrap();
        let base = g.memory_stats().bytes_in_use;
        g.set_memory_limit(Some(g.memory_stats().counted_bytes + 64 * 1024)).unwrap();
        let mut made = Vec::new();
        let err = loop {
            match g.new_class("More", std::slice::from_ref(chain.last().unwrap())) {
                Ok(c) => made.push(c),
                Err(e) => break e,
            }
        };
        assert!(err.is_memory_error(), "{err}");
        assert!(made.len() > 10);
        g.set_memory_limit(None).unwrap();
        drop(made);
        g.gc_collect(2).unwrap();
        assert_eq!(g.memory_stats().bytes_in_use, base, "the refused class left nothing behind");
    })
    .unwrap();
    assert_eq!(i.close().unwrap().leaked.live_blocks, 0);
}
