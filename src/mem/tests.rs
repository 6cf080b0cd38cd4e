//! Unit tests of the heap's unsafe paths on an [`InterpHeap`] alone (no
//! runtime, no interpreter): small enough for Miri, which runs them with tree
//! borrows (`.ci/miri.sh`), the first one also with strict provenance.
//!
//! The heap's invariant is that one thread at a time, the holder of the
//! interpreter's GIL, touches it; here the test thread is the only one.

use std::ptr::NonNull;

use super::heap::{blocks_per_pool, class_of, is_small};
use super::{InterpHeap, LeakReport, POOL_SIZE};
use crate::error::Error;

/// Fills block `i` (of `len` bytes) with its own byte.
fn fill(p: NonNull<u8>, i: usize, len: usize) {
    // SAFETY: `p` is a live block of at least `len` bytes owned by the test.
    unsafe { p.as_ptr().write_bytes((i % 251) as u8 + 1, len) };
}

/// Whether block `i` still holds what `fill` wrote in its first `len` bytes.
fn holds(p: NonNull<u8>, i: usize, len: usize) -> bool {
    // SAFETY: as in `fill`.
    let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
    bytes == vec![(i % 251) as u8 + 1; len].as_slice()
}

/// Frees a block through the unchecked path (what `Block`'s drop does).
fn free(heap: &InterpHeap, p: NonNull<u8>, len: usize) {
    // SAFETY: `p` is a live block of `heap` of a `len`-byte request, not
    // used after this call.
    unsafe { heap.free_known(p, is_small(len)) }
}

/// An arena's pools fill, empty, are kept or go back (a returned pool is
/// taken back intact by its class), the arena becomes the spare and has its
/// returned pools discarded (zeroed under Miri, `MADV_DONTNEED` otherwise)
/// when another arena is unmapped, then serves pools carved anew from the
/// zeroed pages; small and large blocks are resized across the threshold;
/// the teardown releases live blocks. Every block keeps its contents until
/// it is freed. Only pointers derived from an arena's base are used: Miri
/// runs this test with strict provenance.
#[test]
fn arenas_fill_drain_discard_and_serve_again() {
    let heap = InterpHeap::new(9_001, None);
    let pools = 8;
    heap.with_state(|st| st.set_arena_size(pools * POOL_SIZE)).unwrap();
    let len = 500; // 512-byte blocks, 31 per pool
    let per_pool = blocks_per_pool(class_of(len));
    let stats = || heap.with_state(|st| st.stats());
    let alloc = |n: usize, first: usize| -> Vec<NonNull<u8>> {
        let v: Vec<NonNull<u8>> = (0..n).map(|_| heap.alloc(len).unwrap()).collect();
        v.iter().enumerate().for_each(|(i, &p)| fill(p, first + i, len));
        v
    };
    let free_all = |v: &[NonNull<u8>], first: usize| {
        for (i, &p) in v.iter().enumerate() {
            assert!(holds(p, first + i, len), "block {} overwritten", first + i);
            free(&heap, p, len);
        }
    };

    // Arena A full, one block in arena B.
    let a = alloc(pools * per_pool, 0);
    let z = alloc(1, 5000);
    assert_eq!(stats().arenas_current, 2);
    // A's pools empty one by one (allocation order is pool order): one is
    // the class's cached pool, four are kept as recent, the oldest recent
    // ones go back to the arena, which drains and becomes the spare.
    free_all(&a, 0);
    // Taken again: the kept pools, then returned pools, intact.
    let b = alloc(6 * per_pool, 100);
    free_all(&b, 100);
    // B drains: it is unmapped, and the spare's returned pools discarded.
    free_all(&z, 5000);
    let st = stats();
    assert_eq!((st.arenas_current, st.arenas_reclaimed, st.arenas_idle, st.small_blocks), (1, 1, 1, 0));
    // The spare serves every pool again, the discarded ones carved anew.
    let again = alloc(pools * per_pool, 1000);
    assert_eq!(stats().arenas_current, 1);
    assert!(again.iter().enumerate().all(|(i, &p)| holds(p, 1000 + i, len)));

    // Resizes: small -> small (another class), -> large, -> larger, -> small;
    // the contents move with the block.
    let (mut cur, mut cur_len) = (again[0], len);
    for new_len in [48, 4000, 9000, 64] {
        let loc = heap.with_state(|st| st.locate(cur.addr().get())).unwrap();
        // SAFETY: `loc` is the live block `cur`, used only through the result.
        let q = unsafe { heap.realloc_located(loc, new_len) }.unwrap();
        assert!(holds(q, 1000, cur_len.min(new_len)), "contents kept by a resize to {new_len}");
        fill(q, 1000, new_len);
        (cur, cur_len) = (q, new_len);
    }
    free(&heap, cur, cur_len);

    // Small blocks and a large one stay live into the teardown.
    let big = heap.alloc(2000).unwrap();
    fill(big, 7, 2000);
    let mapped = stats().arenas_current;
    let (report, _) = heap.teardown();
    let small_live = pools * per_pool - 1;
    assert_eq!(
        report,
        LeakReport { live_blocks: small_live + 1, live_bytes: small_live * 512 + 2000, arenas_unmapped: mapped }
    );
    assert!(matches!(heap.alloc(16), Err(Error::InterpreterClosed { .. })));
}

/// The checked free (`Gil::free_raw`'s path): its fast path (the hot arena,
/// then another arena found through the chunk table), large blocks, and each
/// refusal, which changes nothing. The fast path takes the arenas' exposed
/// provenance, so Miri runs this test in permissive provenance mode.
#[test]
fn checked_frees_take_live_blocks_and_refuse_the_rest() {
    let heap = InterpHeap::new(9_002, None);
    let other = InterpHeap::new(9_003, None);
    heap.with_state(|st| st.set_arena_size(POOL_SIZE)).unwrap();
    let reason = |r: crate::error::Result<()>| match r {
        Err(Error::InvalidFree { reason, .. }) => reason,
        r => panic!("expected a refused free, got {r:?}"),
    };
    // SAFETY (all `free_checked` calls below): each pointer is either a live
    // block of `heap` given up by the call, or not a live block of it.
    let free_checked = |h: &InterpHeap, p: *mut u8| unsafe { h.free_checked(p) };

    // Two arenas (one pool each): the second free goes to a cold arena.
    let per_pool = blocks_per_pool(class_of(256));
    let small: Vec<NonNull<u8>> = (0..per_pool + 1).map(|_| heap.alloc(256).unwrap()).collect();
    assert_eq!(heap.with_state(|st| st.stats()).arenas_current, 2);
    let (a, b) = (small[0], small[per_pool]);
    fill(a, 1, 256);
    fill(b, 2, 256);
    free_checked(&heap, a.as_ptr()).unwrap();
    free_checked(&heap, b.as_ptr()).unwrap();
    assert!(reason(free_checked(&heap, a.as_ptr())).starts_with("double free: the 256-byte block"));
    let c = small[1];
    fill(c, 3, 256);
    // SAFETY: pointers inside (or just before) the live block `c`.
    let (inside, header) = unsafe { (c.as_ptr().add(16), c.as_ptr().sub(c.addr().get() % POOL_SIZE)) };
    assert!(reason(free_checked(&heap, inside)).starts_with("not the start of a block"));
    assert!(reason(free_checked(&heap, c.as_ptr().wrapping_add(1))).starts_with("not"));
    assert!(reason(free_checked(&heap, header)).starts_with("not the start of a block"));
    assert!(holds(c, 3, 256), "a refused free changes nothing");
    // Another heap's block, memory of another allocator, null.
    let foreign = other.alloc(32).unwrap();
    assert!(reason(free_checked(&heap, foreign.as_ptr())).starts_with("owned by interpreter 9003"));
    let mut boxed = Box::new([0u8; 64]);
    assert!(reason(free_checked(&heap, boxed.as_mut_ptr())).starts_with("not owned by this heap"));
    assert_eq!(reason(free_checked(&heap, std::ptr::null_mut())), "null pointer");
    free_checked(&other, foreign.as_ptr()).unwrap();
    // Large blocks: freed once, then refused.
    let big = heap.alloc(1000).unwrap();
    fill(big, 4, 1000);
    free_checked(&heap, big.as_ptr()).unwrap();
    assert!(reason(free_checked(&heap, big.as_ptr())).starts_with("not owned by this heap"));
    // Every other small block, through the hot arena.
    for &p in small[1..per_pool].iter() {
        free_checked(&heap, p.as_ptr()).unwrap();
    }
    let st = heap.with_state(|st| st.stats());
    assert_eq!((st.small_blocks, st.large_blocks), (0, 0));
    assert_eq!(heap.teardown().0.live_blocks, 0);
    assert!(reason(free_checked(&heap, a.as_ptr())).starts_with("the heap was torn down"));
    assert_eq!(other.teardown().0.live_blocks, 0);
}
