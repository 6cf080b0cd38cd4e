//! The heap's public API: blocks, realloc, stats, teardown, refused frees,
//! limits and the limiter hook.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use subinterp::{
    Error, GrowthKind, InterpreterConfig, LimiterDecision, MemoryStats, Runtime, RuntimeConfig, DEFAULT_ARENA_SIZE,
    NUM_SIZE_CLASSES, POOL_HEADER_SIZE, POOL_SIZE,
};

fn rt() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

fn limited(limit: usize) -> InterpreterConfig {
    InterpreterConfig { memory_limit: Some(limit), ..InterpreterConfig::isolated() }
}

/// The byte counts of a snapshot partition the mapped bytes exactly.
fn assert_partition(s: &MemoryStats) {
    assert_eq!(
        s.bytes_mapped,
        s.small_bytes
            + s.free_block_bytes
            + s.unused_pool_bytes
            + s.pool_header_bytes
            + s.quantization_bytes
            + s.alignment_bytes,
        "{s}"
    );
    assert_eq!(s.bytes_in_use, s.small_bytes + s.large_bytes);
    assert_eq!(s.counted_bytes, s.arenas_current * s.arena_size + s.large_bytes);
    assert_eq!(s.small_blocks, s.classes.iter().map(|k| k.blocks_in_use).sum::<usize>());
}

fn invalid_reason(e: Error) -> String {
    match e {
        Error::InvalidFree { reason, .. } => reason,
        other => panic!("expected InvalidFree, got {other:?}"),
    }
}

#[test]
fn never_allocated_maps_nothing() {
    let rt = rt();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let s = i.memory_stats().unwrap();
    assert_eq!((s.arenas_allocated, s.arenas_current, s.bytes_mapped), (0, 0, 0));
    assert_eq!(s.classes.len(), NUM_SIZE_CLASSES);
    let report = i.close().unwrap();
    assert_eq!(report.leaked, subinterp::LeakReport::default());
}

#[test]
fn blocks_are_zeroed_aligned_and_freed_on_drop() {
    let rt = rt();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    i.with_gil(|g| {
        for size in [0usize, 1, 15, 16, 17, 100, 511, 512, 513, 4000, 100_000] {
            let mut b = g.alloc(size).unwrap();
            assert_eq!(b.len(), size);
            assert_eq!(b.is_empty(), size == 0);
            assert_eq!(b.as_ptr() as usize % 16, 0, "size {size}");
            assert!(b.capacity() >= size.max(1));
            assert!(b.iter().all(|&x| x == 0), "size {size} not zeroed");
            b.as_mut_slice().fill(0xAB);
            let s = g.memory_stats();
            assert_eq!(s.small_blocks + s.large_blocks, 1);
            assert_partition(&s);
        }
        // Dirty memory comes back zeroed as a Block.
        for _ in 0..3 {
            let b = g.alloc(48).unwrap();
            assert!(b.iter().all(|&x| x == 0));
        }
        let s = g.memory_stats();
        assert_eq!((s.small_blocks, s.large_blocks, s.bytes_in_use), (0, 0, 0));
        assert_eq!(s.arenas_current, 1, "one spare arena is kept");
    })
    .unwrap();
    let r = i.close().unwrap();
    assert_eq!((r.leaked.live_blocks, r.leaked.live_bytes, r.leaked.arenas_unmapped), (0, 0, 1));
}

#[test]
fn size_classes_and_capacity() {
    let rt = rt();
    rt.main()
        .with_gil(|g| {
            let b = g.alloc(20).unwrap();
            assert_eq!(b.capacity(), 32);
            let s = g.memory_stats();
            assert_eq!(s.classes[1].blocks_in_use, 1);
            assert_eq!(s.classes[1].pools, 1);
            assert_eq!(s.classes[1].block_size, 32);
            assert_eq!(s.classes[1].free_blocks, (POOL_SIZE - POOL_HEADER_SIZE) / 32 - 1);
            assert_eq!(s.small_bytes, 32);
            let big = g.alloc(1000).unwrap();
            assert_eq!(big.capacity(), 1008);
            let s = g.memory_stats();
            assert_eq!((s.large_blocks, s.large_bytes), (1, 1008));
            assert_eq!(g.usable_size(b.as_ptr()), Some(32));
            assert_eq!(g.usable_size(big.as_ptr()), Some(1008));
            assert_eq!(g.usable_size(std::ptr::null()), None);
        })
        .unwrap();
}

#[test]
fn realloc_keeps_contents_and_zero_extends() {
    let rt = rt();
    rt.main()
        .with_gil(|g| {
            let mut b = g.alloc(10).unwrap();
            b.copy_from_slice(b"0123456789");
            // Same class: in place.
            let p = b.as_ptr();
            g.realloc(&mut b, 16).unwrap();
            assert_eq!(b.as_ptr(), p);
            assert_eq!(&b[..10], b"0123456789");
            assert_eq!(&b[10..], &[0; 6]);
            // Up through the classes and into a large block, and back.
            for n in [33, 200, 512, 513, 5000, 70_000, 600, 400, 40, 3] {
                g.realloc(&mut b, n).unwrap();
                assert_eq!(b.len(), n);
                let keep = n.min(10);
                assert_eq!(&b[..keep], &b"0123456789"[..keep], "after realloc to {n}");
                assert!(b[keep..].iter().all(|&x| x == 0), "after realloc to {n}");
                assert_partition(&g.memory_stats());
            }
            // A shrink keeping > 75% of the block stays in place (CPython's rule).
            let mut c = g.alloc(512).unwrap();
            let p = c.as_ptr();
            g.realloc(&mut c, 400).unwrap();
            assert_eq!(c.as_ptr(), p);
            assert_eq!(c.capacity(), 512);
            g.realloc(&mut c, 300).unwrap();
            assert_ne!(c.as_ptr(), p);
            assert_eq!(c.capacity(), 304);
        })
        .unwrap();
}

#[test]
fn raw_api_round_trip_and_into_raw() {
    let rt = rt();
    rt.main()
        .with_gil(|g| {
            let p = g.alloc_raw(64).unwrap();
            // SAFETY: 64 fresh bytes.
            unsafe { p.as_ptr().write_bytes(0x5A, 64) };
            // SAFETY: `p` is ours; we use only the returned pointer afterwards.
            let q = unsafe { g.realloc_raw(p.as_ptr(), 2000) }.unwrap();
            // SAFETY: the first 64 bytes were copied.
            assert!(unsafe { std::slice::from_raw_parts(q.as_ptr(), 64) }.iter().all(|&x| x == 0x5A));
            // SAFETY: live block of this heap, not used afterwards.
            unsafe { g.free_raw(q.as_ptr()) }.unwrap();
            let b = g.alloc(100).unwrap();
            let raw = b.into_raw();
            assert_eq!(g.memory_stats().small_blocks, 1);
            // SAFETY: ownership was given up by `into_raw`.
            unsafe { g.free_raw(raw.as_ptr()) }.unwrap();
            assert_eq!(g.memory_stats().small_blocks, 0);
        })
        .unwrap();
}

#[test]
fn refused_frees_each_have_a_typed_error() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    let (small_a, large_a) = a
        .with_gil(|g| (g.alloc_raw(32).unwrap().as_ptr() as usize, g.alloc_raw(4096).unwrap().as_ptr() as usize))
        .unwrap();

    // Cross-interpreter: refused and named, both heaps untouched.
    b.with_gil(|g| {
        let _own = g.alloc_raw(32).unwrap(); // B has arenas of its own too
                                             // SAFETY: refused: nothing is freed.
        let e = unsafe { g.free_raw(small_a as *mut u8) }.unwrap_err();
        assert!(matches!(e, Error::InvalidFree { id, addr, .. } if id == b.id() && addr == small_a));
        assert!(invalid_reason(e).contains(&format!("interpreter {}", a.id())));
        // SAFETY: refused.
        let e = unsafe { g.free_raw(large_a as *mut u8) }.unwrap_err();
        assert!(invalid_reason(e).contains("not owned by this heap"));
        // SAFETY: refused.
        assert!(unsafe { g.realloc_raw(small_a as *mut u8, 64) }.is_err());
        assert_eq!(g.usable_size(small_a as *const u8), None);
    })
    .unwrap();
    let s = a.memory_stats().unwrap();
    assert_eq!((s.small_blocks, s.large_blocks), (1, 1));

    a.with_gil(|g| {
        // Double free (small and large).
        // SAFETY: live block of this heap, unused afterwards.
        unsafe { g.free_raw(small_a as *mut u8) }.unwrap();
        // SAFETY: refused.
        let e = unsafe { g.free_raw(small_a as *mut u8) }.unwrap_err();
        assert!(invalid_reason(e).contains("double free"));
        // SAFETY: live block of this heap, unused afterwards.
        unsafe { g.free_raw(large_a as *mut u8) }.unwrap();
        // SAFETY: refused.
        let e = unsafe { g.free_raw(large_a as *mut u8) }.unwrap_err();
        assert!(invalid_reason(e).contains("not owned by this heap"));

        // Interior pointers, header pointers, never-carved blocks.
        let p = g.alloc_raw(64).unwrap().as_ptr();
        for bad in [p.wrapping_add(16), p.wrapping_add(1), p.wrapping_add(8)] {
            // SAFETY: refused.
            let e = unsafe { g.free_raw(bad) }.unwrap_err();
            assert!(invalid_reason(e).contains("not the start of a block"), "{bad:?}");
        }
        let pool = (p as usize & !(POOL_SIZE - 1)) as *mut u8;
        // SAFETY: refused.
        assert!(invalid_reason(unsafe { g.free_raw(pool) }.unwrap_err()).contains("not the start of a block"));
        let far = (pool as usize + POOL_SIZE - 64) as *mut u8; // beyond the carved blocks
                                                               // SAFETY: refused.
        assert!(invalid_reason(unsafe { g.free_raw(far) }.unwrap_err()).contains("not the start of a block"));
        let free_pool = (pool as usize + 5 * POOL_SIZE) as *mut u8; // a pool not in use
                                                                    // SAFETY: refused.
        assert!(invalid_reason(unsafe { g.free_raw(free_pool) }.unwrap_err()).contains("pool holds no blocks"));

        // Memory from elsewhere, and null.
        let mut on_stack = [0u64; 4];
        let mut boxed = Box::new([0u8; 64]);
        for foreign in [on_stack.as_mut_ptr().cast::<u8>(), boxed.as_mut_ptr()] {
            // SAFETY: refused.
            let e = unsafe { g.free_raw(foreign) }.unwrap_err();
            assert!(invalid_reason(e).contains("not owned by this heap"));
        }
        assert_eq!(boxed[0], 0);
        // SAFETY: refused.
        assert_eq!(invalid_reason(unsafe { g.free_raw(std::ptr::null_mut()) }.unwrap_err()), "null pointer");

        // Nothing was changed by the refusals.
        let s = g.memory_stats();
        assert_eq!((s.small_blocks, s.large_blocks), (1, 0));
        assert_partition(&s);
        // SAFETY: live block of this heap.
        unsafe { g.free_raw(p) }.unwrap();
    })
    .unwrap();
    a.close().unwrap();
    b.close().unwrap();
}

#[test]
fn close_reports_leaks_and_unmaps_everything() {
    let rt = rt();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let before = i
        .with_gil(|g| {
            for n in [16, 32, 32, 200, 10_000] {
                let _ = g.alloc(n).unwrap().into_raw();
            }
            g.memory_stats()
        })
        .unwrap();
    assert_eq!(before.arenas_current, 1);
    let r = i.close().unwrap();
    assert_eq!(r.leaked.live_blocks, 5);
    assert_eq!(r.leaked.live_bytes, 16 + 32 + 32 + 208 + 10_000);
    assert_eq!(r.leaked.arenas_unmapped, before.arenas_current);
    assert!(matches!(i.memory_stats(), Err(Error::InterpreterClosed { .. })));
}

#[test]
fn use_main_obmalloc_shares_mains_heap() {
    let rt = rt();
    let legacy = rt.create(InterpreterConfig::legacy()).unwrap();
    let p = legacy.with_gil(|g| g.alloc_raw(48).unwrap().as_ptr() as usize).unwrap();
    assert_eq!(rt.main().memory_stats().unwrap().small_blocks, 1);
    assert_eq!(legacy.memory_stats().unwrap().small_blocks, 1);
    // Freed through main's token: same heap.
    // SAFETY: a live block of main's heap, unused afterwards.
    rt.main().with_gil(|g| unsafe { g.free_raw(p as *mut u8) }).unwrap().unwrap();
    assert!(matches!(legacy.set_memory_limit(Some(1)), Err(Error::InvalidConfig { .. })));
    legacy.close().unwrap();
}

#[test]
fn arena_size_is_configurable_before_first_arena() {
    let rt = rt();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    i.with_gil(|g| {
        assert!(matches!(g.set_arena_size(1000), Err(Error::InvalidConfig { .. })));
        assert!(matches!(g.set_arena_size(8 << 20), Err(Error::InvalidConfig { .. })));
        g.set_arena_size(4 * POOL_SIZE).unwrap();
        // 4 pools of 16-byte blocks: 5 pools' worth needs two arenas.
        let per_pool = (POOL_SIZE - POOL_HEADER_SIZE) / 16;
        let blocks: Vec<_> = (0..per_pool * 5).map(|_| g.alloc(16).unwrap()).collect();
        let s = g.memory_stats();
        assert_eq!((s.arena_size, s.arenas_current), (4 * POOL_SIZE, 2));
        assert_partition(&s);
        assert!(matches!(g.set_arena_size(DEFAULT_ARENA_SIZE), Err(Error::InvalidConfig { .. })));
        drop(blocks);
        assert_eq!(g.memory_stats().arenas_current, 1);
    })
    .unwrap();
}

#[test]
fn stats_report_renders_like_debugmallocstats() {
    let rt = rt();
    rt.main()
        .with_gil(|g| {
            let _a = g.alloc(32).unwrap();
            let _b = g.alloc(700).unwrap();
            let text = g.memory_stats().to_string();
            assert!(text.contains("Small block threshold = 512, in 32 size classes."), "{text}");
            assert!(text.contains("# arenas allocated total"), "{text}");
            assert!(text.contains("# bytes lost to arena alignment"), "{text}");
            assert!(text.contains("1,048,576"), "{text}");
            // The row of class 1 (32-byte blocks): 1 pool, 1 block in use.
            assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "32", "1", "1", "505"]));
        })
        .unwrap();
}

#[test]
fn memory_limit_is_enforced_with_a_typed_error() {
    let rt = rt();
    let i = rt.create(limited(DEFAULT_ARENA_SIZE + 10_000)).unwrap();
    i.with_gil(|g| {
        let _small = g.alloc(32).unwrap(); // maps the one arena the limit allows
        let _big = g.alloc(9_000).unwrap();
        let e = g.alloc(2_000).unwrap_err();
        assert!(
            matches!(e, Error::MemoryError { id, requested: 2_000, in_use, limit }
                if id == g.id() && in_use == DEFAULT_ARENA_SIZE + 9_008 && limit == DEFAULT_ARENA_SIZE + 10_000),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("MemoryError"));
        // Small blocks keep coming from the arena already mapped …
        let per_pool = (POOL_SIZE - POOL_HEADER_SIZE) / 512;
        let mut keep = Vec::new();
        for _ in 0..per_pool * 63 {
            // 63: one pool of the arena serves the 32-byte class
            keep.push(g.alloc(512).unwrap_or_else(|e| panic!("{e}")));
        }
        // … until it is full: a second arena is over the limit.
        assert!(matches!(g.alloc(512), Err(Error::MemoryError { requested: 512, .. })));
        assert!(matches!(g.alloc(16), Err(Error::MemoryError { requested: 16, .. })));
        // Raising the limit lets it grow.
        g.set_memory_limit(None).unwrap();
        keep.push(g.alloc(512).unwrap());
        assert_eq!(g.memory_stats().arenas_current, 2);
        g.set_memory_limit(Some(0)).unwrap();
        assert!(matches!(g.alloc(600), Err(Error::MemoryError { limit: 0, .. })));
    })
    .unwrap();
    // Huge requests are a MemoryError, never an abort.
    i.set_memory_limit(None).unwrap();
    i.with_gil(|g| {
        assert!(matches!(g.alloc(usize::MAX), Err(Error::MemoryError { .. })));
        assert!(matches!(g.alloc(isize::MAX as usize), Err(Error::MemoryError { .. } | Error::MmapFailed { .. })));
    })
    .unwrap();
}

#[test]
fn limiter_hook_grants_refuses_and_raises() {
    let rt = rt();
    let i = rt.create(limited(50_000)).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    i.set_memory_limiter(move |g| {
        log.lock().unwrap().push(*g);
        match g.requested {
            10_000 => LimiterDecision::UseLimit,
            20_000 => LimiterDecision::Refuse,
            60_000 => LimiterDecision::Grant,
            70_000 => LimiterDecision::SetLimit(1 << 30),
            _ => LimiterDecision::UseLimit,
        }
    })
    .unwrap();
    i.with_gil(|g| {
        let _a = g.alloc(10_000).unwrap(); // within the limit
        assert!(matches!(g.alloc(20_000), Err(Error::MemoryError { requested: 20_000, limit: 50_000, .. })));
        let _b = g.alloc(60_000).unwrap(); // above the limit, granted
        assert!(matches!(g.alloc(45_000), Err(Error::MemoryError { .. }))); // UseLimit: refused
        let _c = g.alloc(70_000).unwrap(); // limit raised
        assert_eq!(g.memory_stats().limit, Some(1 << 30));
        let _d = g.alloc(100).unwrap(); // an arena: the hook is asked too
    })
    .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 6);
    assert_eq!(
        (seen[0].kind, seen[0].requested, seen[0].current, seen[0].desired),
        (GrowthKind::LargeBlock, 10_000, 0, 10_000)
    );
    assert_eq!(seen[0].limit, Some(50_000));
    assert_eq!(seen[2].current, 10_000);
    assert_eq!((seen[5].kind, seen[5].requested), (GrowthKind::Arena, 100));
    assert_eq!(seen[5].desired - seen[5].current, DEFAULT_ARENA_SIZE);
}

#[test]
fn limiter_hook_panic_becomes_an_error_and_heap_stays_usable() {
    let rt = rt();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    i.set_memory_limiter(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("limiter exploded");
        }
        LimiterDecision::UseLimit
    })
    .unwrap();
    i.with_gil(|g| {
        let e = g.alloc(1000).unwrap_err();
        assert!(matches!(&e, Error::CallbackPanicked { message, .. } if message == "limiter exploded"), "{e:?}");
        assert_eq!(g.memory_stats().large_blocks, 0);
        // The hook stays installed and is asked again.
        let _b = g.alloc(1000).unwrap();
        g.clear_memory_limiter();
        let _c = g.alloc(1000).unwrap();
    })
    .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn limiter_hook_may_reenter_the_interpreter() {
    let rt = rt();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let handle = i.clone();
    let nested_ok = Arc::new(AtomicUsize::new(0));
    let n = nested_ok.clone();
    i.set_memory_limiter(move |growth| {
        if growth.kind == GrowthKind::LargeBlock && growth.requested == 5000 {
            // Re-enter (we already hold this GIL) and allocate: checked
            // against the plain limit, without calling the hook again.
            let ok = handle.with_gil(|g| g.alloc(4000).map(|b| b.len())).unwrap();
            if ok.is_ok() {
                n.fetch_add(1, Ordering::SeqCst);
            }
            // And replace the hook from inside it.
            handle.set_memory_limiter(|_| LimiterDecision::Refuse).unwrap();
        }
        LimiterDecision::UseLimit
    })
    .unwrap();
    i.with_gil(|g| {
        let _a = g.alloc(5000).unwrap();
        assert_eq!(nested_ok.load(Ordering::SeqCst), 1);
        // The replacement hook is in force.
        assert!(matches!(g.alloc(5000), Err(Error::MemoryError { .. })));
        let s = g.memory_stats();
        assert_eq!((s.large_blocks, s.large_bytes), (1, 5008));
    })
    .unwrap();
}

#[test]
fn memory_stats_from_another_gil_is_refused_not_deadlocked() {
    let rt = rt();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    let r = a.with_gil(|_| b.memory_stats()).unwrap();
    assert!(matches!(r, Err(Error::GilHeldByOtherInterpreter { .. })));
    // Re-entry into the held GIL works.
    assert!(a.with_gil(|_| a.memory_stats()).unwrap().is_ok());
}

#[test]
fn many_interpreters_allocate_in_parallel() {
    let rt = rt();
    let interps: Vec<_> = (0..4).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
    std::thread::scope(|s| {
        for (k, i) in interps.iter().enumerate() {
            s.spawn(move || {
                i.with_gil(|g| {
                    let mut blocks = Vec::new();
                    for n in 0..20_000usize {
                        let mut b = g.alloc(16 + (n * 7 + k) % 600).unwrap();
                        b.fill((n % 251) as u8);
                        blocks.push(b);
                        if n % 3 == 0 {
                            blocks.swap_remove(n % blocks.len());
                        }
                    }
                    for (n, b) in blocks.iter().enumerate() {
                        let v = b[0];
                        assert!(b.iter().all(|&x| x == v), "block {n} overwritten");
                    }
                    g.memory_stats()
                })
                .unwrap()
            });
        }
    });
    for i in interps {
        let r = i.close().unwrap();
        assert_eq!(r.leaked.live_blocks, 0);
    }
}
