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
