//! The allocator proper: arenas, pools, size classes, large blocks.
//!
//! Everything here runs under the interpreter's GIL (see `InterpHeap`); the
//! state is reached through `&mut HeapState` and the arenas through raw
//! pointers derived from each arena's base pointer.
//!
//! Invariants (checked by the property tests in `tests/mem_props.rs`):
//!
//! * `used[c]` is a doubly linked list of pools of class `c`. Every pool of
//!   the class with a free block is on it; a full pool leaves it when an
//!   allocation finds it full (so the allocation fast path has no fullness
//!   test), and then has `slow_at == maxblocks`, which brings its next free to
//!   the slow path to link it back. A pool with no live block is on the list
//!   only while it is kept: as `cached[c]`, the one empty pool a class keeps
//!   so that an alloc/free pair on a quiet heap does not carve and return a
//!   pool every time, or in `recent`, the last `RECENT_POOLS` pools emptied
//!   beyond that (any class), so that a batch filling and emptying a few
//!   pools does not return and re-take them every time. Kept pools have
//!   `slow_at == 0` (their emptying costs nothing) unless off the list.
//! * A pool's `live` bitmap has a bit set exactly where a live block starts.
//!   Ownership checks read only that metadata, never a block's contents.
//! * An arena is in bucket `nfree` (its number of pools not in use) when
//!   `nfree >= 1`; new pools come from the lowest non-empty bucket, so the
//!   fullest arenas are used first and the emptiest drain.
//! * At most one arena with no live block is kept (`spare`): wholly free, or
//!   holding only kept empty pools. Any other arena that drains (checked when
//!   one of its pools empties and is kept or returned) is unmapped, its kept
//!   pools returned first.

use std::alloc::Layout;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ptr::{self, NonNull};

use super::arena::Arena;
use super::owners::{self, Owner};
use super::stats::{MemoryStats, SizeClassStats};
use super::{
    LeakReport, ALIGNMENT, ALIGNMENT_SHIFT, MAX_POOLS_PER_ARENA, NUM_SIZE_CLASSES, POOL_SHIFT, POOL_SIZE,
    SMALL_REQUEST_THRESHOLD,
};
use crate::InterpreterId;

/// "No arena" in the index links.
const NIL: u32 = u32::MAX;
/// Bytes at the start of every pool reserved for its header (a multiple of 16).
pub(crate) use super::POOL_HEADER_SIZE;
const POOL_MASK: usize = POOL_SIZE - 1;
/// One bit per 16-byte granule of a pool.
const LIVE_WORDS: usize = POOL_SIZE / ALIGNMENT / 64;
const INUSE_WORDS: usize = MAX_POOLS_PER_ARENA / 64;
/// Empty pools kept beyond one per class (see `HeapState::recent`): a batch
/// that fills and empties a few pools of one class then does not give them
/// back and take them again each time. At most 4 × 16 KiB per heap.
const RECENT_POOLS: usize = 4;
/// Carving stops at this boundary (the smallest OS page), so a pool's pages
/// are touched only as its blocks are used.
const CARVE_PAGE: usize = 4096;

static NEXT_HEAP_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The header at the start of every pool in use. Lives inside the arena and
/// is reached by masking a block's address.
///
/// Like mimalloc's pages, a pool has two free lists: allocation pops
/// `freeblock`, free pushes `local_free`, and `local_free` is swapped in when
/// `freeblock` runs dry. An alloc/free pair therefore never waits on the
/// store the other just made to the same list head.
#[repr(C)]
struct PoolHeader {
    /// Blocks to allocate from (each free block's first word links the next).
    freeblock: *mut u8,
    /// Blocks freed since `freeblock` was last refilled.
    local_free: *mut u8,
    /// Links of the class's `used` list.
    next: *mut PoolHeader,
    prev: *mut PoolHeader,
    /// Live blocks minus `slow_at` (wrapping): the frees left before one
    /// must take the slow path. A free decrements it and leaves the fast path
    /// when it borrows (it was 0: the live count was `slow_at`), so the fast
    /// path's only test is the flag of the `sub`. See `ref_count`.
    fast_frees: u32,
    _pad: u32,
    /// Blocks that fit in the pool.
    maxblocks: u32,
    /// Size class, and index of the pool inside its arena.
    szidx: u16,
    index: u16,
    /// Offset of the next never-used block (lazy carving).
    nextoffset: u32,
    /// Last offset at which a whole block fits.
    maxnextoffset: u32,
    /// Index of the arena slot.
    arena: u32,
    /// The free fast path leaves for `free_slow` when a free makes the live
    /// count drop from this value: `maxblocks` while the pool is on no list
    /// (an allocation found it full), else 1 (the pool empties), or 0
    /// (never) while the pool is its class's `cached` pool, which stays as it
    /// is when it empties. One test covers both reasons to leave. Changed
    /// only by `set_slow_at`, which keeps `fast_frees` in step.
    slow_at: u32,
    /// Bit `g` set iff a live block starts at granule `g`.
    live: [u64; LIVE_WORDS],
}

const _: () = assert!(std::mem::size_of::<PoolHeader>() <= POOL_HEADER_SIZE);
const _: () = assert!(POOL_HEADER_SIZE % ALIGNMENT == 0);

/// Block size of class `c`.
#[inline(always)]
pub(crate) const fn class_size(c: usize) -> usize {
    (c + 1) << ALIGNMENT_SHIFT
}

/// Class of a request of `size` bytes, `1 <= size <= 512`.
#[inline(always)]
pub(crate) const fn class_of(size: usize) -> usize {
    (size - 1) >> ALIGNMENT_SHIFT
}

/// Blocks in one pool of class `c`.
pub(crate) const fn blocks_per_pool(c: usize) -> usize {
    (POOL_SIZE - POOL_HEADER_SIZE) / class_size(c)
}

/// Rounds a large request up to the block granularity.
#[inline]
fn large_size(size: usize) -> Option<usize> {
    size.checked_add(ALIGNMENT - 1).map(|s| s & !(ALIGNMENT - 1))
}

/// Multiplicative hasher for addresses and chunk numbers (keys are already
/// well spread; SipHash would dominate the ownership check).
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

type AddrMap<V> = HashMap<usize, V, BuildHasherDefault<AddrHasher>>;

/// Slots of the direct-mapped part of the chunk table.
const DM_SLOTS: usize = 256;
/// An empty direct-mapped slot (no chunk number is this large).
const NO_CHUNK: usize = usize::MAX;

/// The (at most two) arenas overlapping one chunk: base pointers (null for
/// an empty lane) and slot indexes.
#[derive(Clone, Copy)]
struct Lanes {
    base: [*mut u8; 2],
    idx: [u32; 2],
}

const NO_LANES: Lanes = Lanes { base: [ptr::null_mut(); 2], idx: [NIL; 2] };

#[derive(Clone, Copy)]
struct DmSlot {
    chunk: usize,
    lanes: Lanes,
}

/// Chunk number → the arenas overlapping that chunk.
///
/// A direct-mapped array indexed by the chunk's low bits answers almost every
/// lookup with one cache line; chunks that collide go to a hash map. Every
/// chunk lives in exactly one of the two. The array is allocated with the
/// first arena (a heap that never allocates pays nothing).
#[derive(Default)]
struct ChunkTable {
    dm: Option<Box<[DmSlot; DM_SLOTS]>>,
    overflow: AddrMap<Lanes>,
}

impl ChunkTable {
    #[inline(always)]
    fn get(&self, chunk: usize) -> Option<&Lanes> {
        if let Some(dm) = &self.dm {
            let s = &dm[chunk & (DM_SLOTS - 1)];
            if s.chunk == chunk {
                return Some(&s.lanes);
            }
        }
        self.get_overflow(chunk)
    }

    #[cold]
    #[inline(never)]
    fn get_overflow(&self, chunk: usize) -> Option<&Lanes> {
        self.overflow.get(&chunk)
    }

    fn add(&mut self, chunk: usize, base: *mut u8, a: u32) {
        let dm = self.dm.get_or_insert_with(|| Box::new([DmSlot { chunk: NO_CHUNK, lanes: NO_LANES }; DM_SLOTS]));
        let s = &mut dm[chunk & (DM_SLOTS - 1)];
        let lanes = if s.chunk == chunk {
            &mut s.lanes
        } else if s.chunk == NO_CHUNK && !self.overflow.contains_key(&chunk) {
            s.chunk = chunk;
            s.lanes = NO_LANES;
            &mut s.lanes
        } else {
            self.overflow.entry(chunk).or_insert(NO_LANES)
        };
        let k = usize::from(!lanes.base[0].is_null());
        lanes.base[k] = base;
        lanes.idx[k] = a;
    }

    fn remove(&mut self, chunk: usize, a: u32) {
        let clear = |lanes: &mut Lanes| {
            for k in 0..2 {
                if lanes.idx[k] == a {
                    lanes.idx[k] = NIL;
                    lanes.base[k] = ptr::null_mut();
                }
            }
            lanes.idx == [NIL, NIL]
        };
        if let Some(dm) = &mut self.dm {
            let s = &mut dm[chunk & (DM_SLOTS - 1)];
            if s.chunk == chunk {
                if clear(&mut s.lanes) {
                    s.chunk = NO_CHUNK;
                }
                return;
            }
        }
        if let Some(lanes) = self.overflow.get_mut(&chunk) {
            if clear(lanes) {
                self.overflow.remove(&chunk);
            }
        }
    }

    fn clear(&mut self) {
        self.dm = None;
        self.overflow.clear();
    }
}

/// One arena slot (slots of unmapped arenas are recycled).
struct ArenaSlot {
    arena: Option<Arena>,
    /// Pools not in use.
    nfree: u32,
    /// Bit `i` set iff pool `i` is in use (carved for a class).
    inuse: [u64; INUSE_WORDS],
    /// Links of the bucket list `nfree`.
    prev: u32,
    next: u32,
}

impl ArenaSlot {
    /// The headers of this arena's in-use pools (none if unmapped).
    fn in_use_pools(&self) -> impl Iterator<Item = *mut PoolHeader> + '_ {
        self.arena.iter().flat_map(move |arena| {
            self.inuse.iter().enumerate().flat_map(move |(w, &word)| {
                let mut bits = word;
                std::iter::from_fn(move || {
                    if bits == 0 {
                        return None;
                    }
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    Some(arena.base().wrapping_add(i << POOL_SHIFT).cast::<PoolHeader>())
                })
            })
        })
    }
}

/// Where a validated pointer lives.
#[derive(Clone, Copy)]
pub(crate) enum Located {
    /// A live small block (pointer with the arena's provenance) of `cap` bytes.
    Small { ptr: *mut u8, cap: usize },
    /// A live large block of `cap` bytes.
    Large { ptr: NonNull<u8>, cap: usize },
}

impl Located {
    pub(crate) fn cap(&self) -> usize {
        match *self {
            Located::Small { cap, .. } | Located::Large { cap, .. } => cap,
        }
    }
}

/// What a growth check needs to know (see `InterpHeap::grow_check`).
#[derive(Clone, Copy)]
pub(crate) struct Counted {
    pub(crate) current: usize,
    pub(crate) limit: Option<usize>,
}

pub(crate) type LimiterFn = Box<dyn FnMut(&super::MemoryGrowth) -> super::LimiterDecision + Send>;

/// The state of one heap.
pub(crate) struct HeapState {
    pub(crate) id: InterpreterId,
    uid: u64,
    /// Pools with a free block, per class.
    used: [*mut PoolHeader; NUM_SIZE_CLASSES],
    /// The empty pool each class keeps (may be stale: then `ref_count > 0`).
    cached: [*mut PoolHeader; NUM_SIZE_CLASSES],
    /// More empty pools kept (any class) once their class keeps one: the
    /// most recently emptied, oldest replaced first (`recent_next`). Like
    /// `cached`, an entry may be stale (in use again).
    recent: [*mut PoolHeader; RECENT_POOLS],
    recent_next: usize,
    arenas: Vec<ArenaSlot>,
    free_slots: Vec<u32>,
    /// Heads of the bucket lists, indexed by `nfree` (0 unused).
    bucket_head: Vec<u32>,
    /// Bit `n` set iff bucket `n` is non-empty.
    bucket_bits: Vec<u64>,
    /// Chunk number (`addr >> chunk_shift`) → the (at most two) arenas
    /// overlapping it. Chunks are no larger than an arena.
    chunks: ChunkTable,
    chunk_shift: u32,
    /// The arena the last checked free found through `chunks` (its base, with
    /// the mapping's provenance, and usable size in granules; 0: none). A
    /// free into it skips the table. Always a mapped arena of this heap:
    /// cleared when that arena is unmapped.
    hot_base: *mut u8,
    hot_granules: usize,
    /// The one arena kept with no live block, or `NIL` (may be stale).
    spare: u32,
    /// Whether the spare's pages were given back since it last served a pool.
    spare_purged: bool,
    /// Large blocks: address → (pointer, rounded size).
    large: AddrMap<(NonNull<u8>, usize)>,
    large_bytes: usize,
    pub(crate) arena_size: usize,
    npools: u32,
    arenas_current: usize,
    arenas_allocated: u64,
    arenas_reclaimed: u64,
    arenas_high_water: usize,
    mapped_bytes: usize,
    pub(crate) limit: Option<usize>,
    pub(crate) limiter: Option<LimiterFn>,
    /// Bumped by every `set_memory_limiter`, so a hook replaced while it ran
    /// is not put back.
    pub(crate) limiter_gen: u64,
    pub(crate) torn_down: bool,
}

impl Drop for HeapState {
    fn drop(&mut self) {
        // A runtime dropped without `close()`: release everything anyway.
        self.release_all();
    }
}

impl HeapState {
    pub(crate) fn new(id: InterpreterId, limit: Option<usize>, arena_size: usize) -> Self {
        let uid = NEXT_HEAP_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut st = Self {
            id,
            uid,
            used: [ptr::null_mut(); NUM_SIZE_CLASSES],
            cached: [ptr::null_mut(); NUM_SIZE_CLASSES],
            recent: [ptr::null_mut(); RECENT_POOLS],
            recent_next: 0,
            arenas: Vec::new(),
            free_slots: Vec::new(),
            bucket_head: Vec::new(),
            bucket_bits: Vec::new(),
            chunks: ChunkTable::default(),
            chunk_shift: 0,
            hot_base: ptr::null_mut(),
            hot_granules: 0,
            spare: NIL,
            spare_purged: false,
            large: AddrMap::default(),
            large_bytes: 0,
            arena_size: 0,
            npools: 0,
            arenas_current: 0,
            arenas_allocated: 0,
            arenas_reclaimed: 0,
            arenas_high_water: 0,
            mapped_bytes: 0,
            limit,
            limiter: None,
            limiter_gen: 0,
            torn_down: false,
        };
        st.set_geometry(arena_size);
        st
    }

    fn set_geometry(&mut self, arena_size: usize) {
        self.arena_size = arena_size;
        self.npools = (arena_size / POOL_SIZE) as u32;
        self.chunk_shift = usize::BITS - 1 - arena_size.leading_zeros();
        self.bucket_head = vec![NIL; self.npools as usize + 1];
        self.bucket_bits = vec![0; (self.npools as usize + 1).div_ceil(64)];
    }

    /// Changes the arena size; only while no arena is mapped.
    pub(crate) fn set_arena_size(&mut self, size: usize) -> Result<(), String> {
        if size == 0 || size % POOL_SIZE != 0 || size > super::MAX_ARENA_SIZE {
            return Err(format!(
                "arena size must be a multiple of {POOL_SIZE} bytes between {POOL_SIZE} and {} bytes, got {size}",
                super::MAX_ARENA_SIZE
            ));
        }
        if self.arenas_current != 0 {
            return Err(format!(
                "the arena size can only change before the heap maps its first arena ({} mapped)",
                self.arenas_current
            ));
        }
        self.set_geometry(size);
        Ok(())
    }

    /// Bytes counted against the limit: arenas (usable size) plus large blocks.
    #[inline]
    pub(crate) fn counted(&self) -> Counted {
        Counted { current: self.arenas_current * self.arena_size + self.large_bytes, limit: self.limit }
    }

    // ----- small blocks: fast paths -------------------------------------------------

    /// Pops a block of class `class_of(size)` from the class's first pool, if it
    /// has one. `None` also when `size` is 0 or above 512.
    #[inline(always)]
    pub(crate) fn try_alloc_small(&mut self, size: usize) -> Option<NonNull<u8>> {
        // One bounds check decides both: 0 wraps to a huge class.
        let c = size.wrapping_sub(1) >> ALIGNMENT_SHIFT;
        let pool = *self.used.get(c)?;
        if pool.is_null() {
            return None;
        }
        // A pool on a `used` list is an in-use pool of a mapped arena of this
        // heap; blocks on its `freeblock` list are free blocks of that pool
        // whose first word holds the next one or null (written by us).
        // SAFETY: by the facts above, reading `freeblock` and popping it are
        // accesses to the heap's own metadata and free blocks.
        unsafe {
            let bp = (*pool).freeblock;
            if bp.is_null() {
                return self.alloc_refill(c);
            }
            Some(pop_block(pool, bp))
        }
    }

    /// The first pool of class `c` has an empty `freeblock`: refill it from
    /// its other free list or by carving; a pool with neither is full and
    /// leaves the list (then the next one is tried). `None`: no pool of the
    /// class has a free block.
    #[cold]
    #[inline(never)]
    fn alloc_refill(&mut self, c: usize) -> Option<NonNull<u8>> {
        loop {
            let pool = self.used[c];
            if pool.is_null() {
                return None;
            }
            // SAFETY: a pool on a `used` list is an in-use pool of a mapped
            // arena of this heap.
            unsafe {
                let mut bp = (*pool).freeblock;
                if bp.is_null() {
                    bp = self.refill(pool);
                }
                if !bp.is_null() {
                    return Some(pop_block(pool, bp));
                }
                // Full: off the list until a free gives it a block back.
                debug_assert_eq!(ref_count(pool), (*pool).maxblocks);
                self.unlink(pool);
                set_slow_at(pool, (*pool).maxblocks);
            }
        }
    }

    /// Allocates from a pool known to have a free block.
    ///
    /// # Safety
    /// `pool` is an in-use pool of this heap with a free block.
    unsafe fn take_block(&mut self, pool: *mut PoolHeader) -> NonNull<u8> {
        // SAFETY: caller; `refill` finds the free block.
        unsafe {
            let mut bp = (*pool).freeblock;
            if bp.is_null() {
                bp = self.refill(pool);
            }
            pop_block(pool, bp)
        }
    }

    /// `freeblock` ran dry: take the blocks freed since, or carve new ones up
    /// to the end of the current OS page (so untouched pages stay untouched).
    /// Returns the new `freeblock`, or null if the pool is full.
    ///
    /// # Safety
    /// `pool` is an in-use pool of this heap with an empty `freeblock`.
    #[inline(never)]
    unsafe fn refill(&mut self, pool: *mut PoolHeader) -> *mut u8 {
        // SAFETY: caller; carving stays within `maxnextoffset`, inside the pool.
        unsafe {
            let local = (*pool).local_free;
            if !local.is_null() {
                (*pool).local_free = ptr::null_mut();
                (*pool).freeblock = local;
                return local;
            }
            let size = class_size((*pool).szidx as usize);
            let first = (*pool).nextoffset as usize;
            if first > (*pool).maxnextoffset as usize {
                return ptr::null_mut(); // every block is live
            }
            let page_end = (first | (CARVE_PAGE - 1)) + 1;
            // The blocks from `first` up to the end of the page (at least one).
            let mut n = 1;
            while first + (n + 1) * size <= (*pool).maxnextoffset as usize + size && first + (n + 1) * size <= page_end
            {
                n += 1;
            }
            (*pool).nextoffset = (first + n * size) as u32;
            // Linked in address order: consecutive allocations are adjacent
            // in memory, so objects made together are scanned together (the
            // collector's passes run 2-4x faster than with the interleaved
            // order this replaced; see docs/memory.md).
            let base = pool.cast::<u8>();
            let head = base.add(first);
            let mut prev = head;
            for j in 1..n {
                let b = base.add(first + j * size);
                *prev.cast::<*mut u8>() = b;
                prev = b;
            }
            *prev.cast::<*mut u8>() = ptr::null_mut();
            (*pool).freeblock = head;
            head
        }
    }

    /// Frees a live small block of this heap (no checks).
    ///
    /// # Safety
    /// `bp` is a live small block of this heap, not used afterwards.
    #[inline(always)]
    pub(crate) unsafe fn free_small(&mut self, bp: *mut u8) {
        // Pools are POOL_SIZE-aligned: masking finds the header.
        let pool = bp.wrapping_sub(bp.addr() & POOL_MASK).cast::<PoolHeader>();
        // SAFETY: forwarded: `bp` is a live block of `pool`.
        unsafe { self.free_in_pool(pool, bp) }
    }

    /// # Safety
    /// `bp` is a live block of `pool`, an in-use pool of a mapped arena of
    /// this heap; not used afterwards.
    #[inline(always)]
    unsafe fn free_in_pool(&mut self, pool: *mut PoolHeader, bp: *mut u8) {
        // SAFETY: caller: the header is initialized.
        unsafe {
            clear_live(pool, bp.addr() & POOL_MASK);
            self.push_free(pool, bp);
        }
    }

    /// The end of a free once the live bit is cleared: links the block and
    /// updates the count.
    ///
    /// # Safety
    /// `bp` is a block of `pool` (an in-use pool of a mapped arena of this
    /// heap) that was live until its bit was just cleared; not used afterwards.
    #[inline(always)]
    unsafe fn push_free(&mut self, pool: *mut PoolHeader, bp: *mut u8) {
        // SAFETY: caller: the header is initialized and the block is ours to
        // overwrite (its first word links the free list).
        unsafe {
            *bp.cast::<*mut u8>() = (*pool).local_free;
            (*pool).local_free = bp;
            // The live count was `slow_at` (it was full, or it emptied; the
            // class's cached pool stays as it is: its `slow_at` is then 0,
            // which a live block's free never hits): `sub` + `jb` on x86-64.
            let (k, borrow) = (*pool).fast_frees.overflowing_sub(1);
            (*pool).fast_frees = k;
            if borrow {
                self.free_slow(pool);
            }
        }
    }

    /// # Safety
    /// `pool` is an in-use pool of this heap that just got a block back and
    /// was full, or became empty.
    #[cold]
    #[inline(never)]
    unsafe fn free_slow(&mut self, pool: *mut PoolHeader) {
        // SAFETY: caller.
        unsafe {
            if (*pool).slow_at == (*pool).maxblocks {
                // It has a free block again: front of its class's list (LRU-like).
                self.link_front(pool);
                set_slow_at(pool, self.listed_slow_at(pool));
            }
            if ref_count(pool) == 0 {
                self.pool_emptied(pool);
            }
        }
    }

    // ----- pool and arena management (slow paths) ----------------------------------

    /// # Safety
    /// `pool` is an in-use pool not on its list.
    unsafe fn link_front(&mut self, pool: *mut PoolHeader) {
        // SAFETY: caller; list members are in-use pools of mapped arenas.
        unsafe {
            let c = (*pool).szidx as usize;
            let head = self.used[c];
            (*pool).prev = ptr::null_mut();
            (*pool).next = head;
            if !head.is_null() {
                (*head).prev = pool;
            }
            self.used[c] = pool;
        }
    }

    /// # Safety
    /// `pool` is on its class's list.
    unsafe fn unlink(&mut self, pool: *mut PoolHeader) {
        // SAFETY: caller; neighbours are in-use pools of mapped arenas.
        unsafe {
            let (prev, next) = ((*pool).prev, (*pool).next);
            if prev.is_null() {
                self.used[(*pool).szidx as usize] = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*pool).prev = ptr::null_mut();
            (*pool).next = ptr::null_mut();
        }
    }

    /// A pool's last block was freed (it is on its list).
    ///
    /// # Safety
    /// `pool` is an in-use pool of this heap with `ref_count == 0`, on its list.
    unsafe fn pool_emptied(&mut self, pool: *mut PoolHeader) {
        // SAFETY: caller; `cached` entries point at in-use pools of mapped
        // arenas (entries are cleared before their pool is returned).
        unsafe {
            let c = (*pool).szidx as usize;
            let q = self.cached[c];
            // A kept pool, used again and emptied again, stays as it is
            // (outside the spare, its `slow_at` brought it here so that its
            // arena's drain is seen below).
            if !self.is_cached(pool) {
                if !q.is_null() && ref_count(q) == 0 {
                    // The class already keeps an empty pool: keep this one
                    // among the recent ones, giving back the oldest first.
                    let k = self.recent_next;
                    self.recent_next = (k + 1) % RECENT_POOLS;
                    let old = std::mem::replace(&mut self.recent[k], ptr::null_mut());
                    if !old.is_null() {
                        self.uncache(old);
                    }
                    self.recent[k] = pool;
                    set_slow_at(pool, self.slow_at_for(pool));
                } else {
                    self.set_cached(c, pool);
                }
            }
            // Its arena may now hold nothing but kept empty pools.
            let a = (*pool).arena;
            if a != self.spare && !self.arena_has_live_pools(a) {
                self.arena_drained(a);
            }
        }
    }

    /// The `slow_at` that `pool` must have (see `PoolHeader::slow_at`).
    ///
    /// # Safety
    /// `pool` is an in-use pool of this heap.
    unsafe fn slow_at_for(&self, pool: *mut PoolHeader) -> u32 {
        // SAFETY: caller: an initialized header.
        unsafe {
            if (*pool).slow_at == (*pool).maxblocks {
                (*pool).maxblocks // on no list: stays so
            } else {
                self.listed_slow_at(pool)
            }
        }
    }

    /// The `slow_at` of `pool` while it is on its class's list: 1 (its
    /// emptying takes the slow path), or 0 for a kept pool of the spare
    /// arena, whose emptying changes nothing. A kept pool elsewhere keeps 1:
    /// it may be its arena's last pool with a live block, and that arena's
    /// drain must be seen (`set_spare` rebiases kept pools when the spare
    /// changes).
    ///
    /// # Safety
    /// `pool` is an in-use pool of this heap.
    unsafe fn listed_slow_at(&self, pool: *mut PoolHeader) -> u32 {
        // SAFETY: caller: an initialized header.
        u32::from(!unsafe { (*pool).arena == self.spare && self.is_cached(pool) })
    }

    /// Names `new` (an arena slot or `NIL`) the spare, and rebiases the kept
    /// pools of the old and the new spare (see `listed_slow_at`).
    fn set_spare(&mut self, new: u32) {
        let old = self.spare;
        if old == new {
            return;
        }
        self.spare = new;
        for e in 0..NUM_SIZE_CLASSES + RECENT_POOLS {
            let q = if e < NUM_SIZE_CLASSES { self.cached[e] } else { self.recent[e - NUM_SIZE_CLASSES] };
            // SAFETY: a kept entry is an in-use pool of a mapped arena
            // (entries are cleared before their pool is returned).
            unsafe {
                if !q.is_null() && ((*q).arena == old || (*q).arena == new) {
                    set_slow_at(q, self.slow_at_for(q));
                }
            }
        }
    }

    /// Whether `pool` is kept (its class's cached pool, or a recent one).
    ///
    /// # Safety
    /// `pool` is an in-use pool of this heap.
    unsafe fn is_cached(&self, pool: *mut PoolHeader) -> bool {
        // SAFETY: caller: an initialized header.
        self.cached[unsafe { (*pool).szidx } as usize] == pool || self.recent.contains(&pool)
    }

    /// `pool`, just taken out of `cached` or `recent`, is no longer kept: give
    /// it back if it is empty (then its arena may have drained).
    ///
    /// # Safety
    /// `pool` is an in-use pool of this heap, in neither `cached` nor `recent`.
    unsafe fn uncache(&mut self, pool: *mut PoolHeader) {
        // SAFETY: caller: an in-use pool of a mapped arena; an empty pool is
        // on its list (it has free blocks).
        unsafe {
            set_slow_at(pool, self.slow_at_for(pool));
            if ref_count(pool) == 0 {
                let a = (*pool).arena;
                self.unlink(pool);
                self.return_pool(pool);
                let slot = &self.arenas[a as usize];
                if slot.arena.is_some() && slot.nfree != self.npools && !self.arena_has_live_pools(a) {
                    self.arena_drained(a);
                }
            }
        }
    }

    /// Makes `pool` the class's cached pool, keeping `slow_at` of it and of
    /// the pool it replaces in step.
    ///
    /// # Safety
    /// `pool` is an in-use pool of class `c` of this heap.
    unsafe fn set_cached(&mut self, c: usize, pool: *mut PoolHeader) {
        let old = self.cached[c];
        self.cached[c] = pool;
        // SAFETY: `cached` entries are in-use pools of mapped arenas (entries
        // are cleared before their pool is returned); `pool` is one (caller).
        unsafe {
            if !old.is_null() {
                set_slow_at(old, self.slow_at_for(old));
            }
            set_slow_at(pool, self.slow_at_for(pool));
        }
    }

    /// Arena `a` holds no live block, only cached empty pools: it becomes the
    /// spare, unless there is one already, in which case it is drained (and
    /// so unmapped).
    fn arena_drained(&mut self, a: u32) {
        if self.spare_is_valid() && self.spare != a {
            self.flush_cached_in(a); // unmaps `a` (and purges the spare)
        } else {
            self.become_spare(a);
        }
    }

    /// Arena `a` (no live block) is now the spare. Its pages are given back
    /// only when another arena is released (the heap is shrinking): purging
    /// at every drain would make a live set that oscillates inside one arena
    /// discard and refault the same pages each time.
    fn become_spare(&mut self, a: u32) {
        if self.spare != a {
            self.set_spare(a);
            self.spare_purged = false;
        }
    }

    /// Whether arena `a` has a pool with a live block.
    fn arena_has_live_pools(&self, a: u32) -> bool {
        // SAFETY: `in_use_pools` yields in-use pools: initialized headers
        // inside the mapped arena.
        self.arenas[a as usize].in_use_pools().any(|pool| unsafe { ref_count(pool) } > 0)
    }

    /// Whether `spare` names a mapped arena with no live block (refreshes it).
    fn spare_is_valid(&mut self) -> bool {
        let s = self.spare;
        if s != NIL && self.arenas[s as usize].arena.is_some() && !self.arena_has_live_pools(s) {
            return true;
        }
        self.set_spare(NIL);
        false
    }

    /// Returns the cached empty pools that live in arena `a`.
    fn flush_cached_in(&mut self, a: u32) {
        let Some(arena) = &self.arenas[a as usize].arena else { return };
        let (lo, hi) = (arena.base().addr(), arena.base().addr() + arena.size());
        let mut list = [ptr::null_mut::<PoolHeader>(); NUM_SIZE_CLASSES + RECENT_POOLS];
        let mut n = 0;
        for e in 0..NUM_SIZE_CLASSES + RECENT_POOLS {
            let entry = if e < NUM_SIZE_CLASSES { &mut self.cached[e] } else { &mut self.recent[e - NUM_SIZE_CLASSES] };
            let q = *entry;
            if !q.is_null() && (lo..hi).contains(&q.addr()) {
                *entry = ptr::null_mut();
                // SAFETY: a cached entry is an in-use pool of a mapped arena.
                unsafe {
                    if ref_count(q) == 0 {
                        list[n] = q;
                        n += 1;
                    }
                    set_slow_at(q, self.slow_at_for(q));
                }
            }
        }
        // Collected first: the last return may unmap the arena.
        for &q in &list[..n] {
            // SAFETY: `q` is an empty in-use pool on its list; its arena is
            // mapped until its last pool is returned, which is the last step.
            unsafe {
                self.unlink(q);
                self.return_pool(q);
            }
        }
    }

    /// Returns every kept empty pool (all classes, and the recent ones).
    fn flush_all_cached(&mut self) {
        for e in 0..NUM_SIZE_CLASSES + RECENT_POOLS {
            let entry = if e < NUM_SIZE_CLASSES { &mut self.cached[e] } else { &mut self.recent[e - NUM_SIZE_CLASSES] };
            let q = std::mem::replace(entry, ptr::null_mut());
            if q.is_null() {
                continue;
            }
            // SAFETY: a cached entry is an in-use pool of a mapped arena, on its
            // list (it has free blocks); entries of other classes are in other
            // pools, so returning this one cannot unmap theirs while they are in use.
            unsafe {
                set_slow_at(q, self.slow_at_for(q));
                if ref_count(q) == 0 {
                    self.unlink(q);
                    self.return_pool(q);
                }
            }
        }
    }

    /// Gives an empty pool (on no list) back to its arena.
    ///
    /// # Safety
    /// `pool` is an in-use pool of this heap with no live block, on no list,
    /// not cached.
    unsafe fn return_pool(&mut self, pool: *mut PoolHeader) {
        // SAFETY: caller: the header is initialized.
        let (a, i) = unsafe { ((*pool).arena, (*pool).index as usize) };
        let slot = &mut self.arenas[a as usize];
        slot.inuse[i / 64] &= !(1u64 << (i % 64));
        let old = slot.nfree;
        slot.nfree += 1;
        if old > 0 {
            self.bucket_remove(a, old);
        }
        self.bucket_insert(a, old + 1);
        if old + 1 == self.npools {
            self.arena_emptied(a);
        }
    }

    /// Arena `a` has every pool free: keep it as the spare or unmap it.
    fn arena_emptied(&mut self, a: u32) {
        if self.spare_is_valid() && self.spare != a {
            self.release_arena(a);
            self.purge_spare();
        } else {
            self.become_spare(a);
        }
    }

    /// Returns the pages of the spare's free pools to the OS (once per time it
    /// drains). Pools in use (a class's cached empty pool) are left alone, so
    /// an alloc/free pair on a quiet heap never comes here twice.
    fn purge_spare(&mut self) {
        if self.spare_purged || !self.spare_is_valid() {
            return;
        }
        let slot = &self.arenas[self.spare as usize];
        if let Some(arena) = &slot.arena {
            let n = self.npools as usize;
            let mut i = 0;
            while i < n {
                if slot.inuse[i / 64] & (1u64 << (i % 64)) != 0 {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < n && slot.inuse[i / 64] & (1u64 << (i % 64)) == 0 {
                    i += 1;
                }
                // SAFETY: pools `start..i` are not in use: no live block, no
                // reference into them; headers are re-initialized on reuse and
                // their live bitmaps were (and now read as) all zero.
                unsafe { arena.discard_pools(start, i - start) };
            }
        }
        self.spare_purged = true;
    }

    fn bucket_insert(&mut self, a: u32, n: u32) {
        let head = self.bucket_head[n as usize];
        {
            let slot = &mut self.arenas[a as usize];
            slot.prev = NIL;
            slot.next = head;
        }
        if head != NIL {
            self.arenas[head as usize].prev = a;
        }
        self.bucket_head[n as usize] = a;
        self.bucket_bits[n as usize / 64] |= 1u64 << (n % 64);
    }

    fn bucket_remove(&mut self, a: u32, n: u32) {
        let (prev, next) = {
            let slot = &self.arenas[a as usize];
            (slot.prev, slot.next)
        };
        if prev == NIL {
            self.bucket_head[n as usize] = next;
            if next == NIL {
                self.bucket_bits[n as usize / 64] &= !(1u64 << (n % 64));
            }
        } else {
            self.arenas[prev as usize].next = next;
        }
        if next != NIL {
            self.arenas[next as usize].prev = prev;
        }
    }

    /// The fullest arena that has a free pool.
    fn fullest_usable_arena(&self) -> Option<u32> {
        for (w, &bits) in self.bucket_bits.iter().enumerate() {
            let bits = if w == 0 { bits & !1 } else { bits };
            if bits != 0 {
                let n = w * 64 + bits.trailing_zeros() as usize;
                return Some(self.bucket_head[n]);
            }
        }
        None
    }

    /// Carves a pool for class `c` from the fullest usable arena and allocates
    /// a block from it; `None` if every arena is full.
    pub(crate) fn alloc_from_new_pool(&mut self, c: usize) -> Option<NonNull<u8>> {
        let a = self.fullest_usable_arena()?;
        let npools = self.npools;
        let slot = &mut self.arenas[a as usize];
        let i = slot
            .inuse
            .iter()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)
            .map(|(w, bits)| w * 64 + (!bits).trailing_zeros() as usize)
            .filter(|&i| i < npools as usize)?;
        slot.inuse[i / 64] |= 1u64 << (i % 64);
        let old = slot.nfree;
        slot.nfree -= 1;
        let base = slot.arena.as_ref()?.base();
        self.bucket_remove(a, old);
        if old > 1 {
            self.bucket_insert(a, old - 1);
        }
        if a == self.spare {
            self.spare_purged = false;
        }
        let size = class_size(c);
        let pool = base.wrapping_add(i << POOL_SHIFT).cast::<PoolHeader>();
        // Pool `i` lies inside the mapped arena (i < npools) and was free:
        // nothing else references it. Its header bytes were only ever written
        // by this heap, or read as zeros (fresh or discarded pages). Its
        // `live` bitmap is all zero: the pages are fresh (or discarded)
        // anonymous memory, or the pool was returned with no live block.
        // SAFETY: by the facts above, this heap has exclusive access to the
        // pool's header and blocks.
        unsafe {
            // A pool returned by this class and not discarded since still has
            // every block it carved on its two free lists (it was returned
            // with none live): take it back as it is, without carving again.
            // Zeroed pages fail the test (`maxblocks` is never 0 in use).
            let intact = (*pool).maxblocks == blocks_per_pool(c) as u32 && usize::from((*pool).szidx) == c;
            if !intact {
                ptr::addr_of_mut!((*pool).freeblock).write(ptr::null_mut());
                ptr::addr_of_mut!((*pool).local_free).write(ptr::null_mut());
                ptr::addr_of_mut!((*pool).maxblocks).write(blocks_per_pool(c) as u32);
                ptr::addr_of_mut!((*pool).szidx).write(c as u16);
                ptr::addr_of_mut!((*pool).nextoffset).write(POOL_HEADER_SIZE as u32);
                ptr::addr_of_mut!((*pool).maxnextoffset).write((POOL_SIZE - size) as u32);
            }
            // No live block, `slow_at` 1.
            ptr::addr_of_mut!((*pool).slow_at).write(1);
            ptr::addr_of_mut!((*pool).fast_frees).write(u32::MAX);
            ptr::addr_of_mut!((*pool).arena).write(a);
            ptr::addr_of_mut!((*pool).index).write(i as u16);
            debug_assert!((*pool).live.iter().all(|&w| w == 0));
            self.link_front(pool);
            Some(self.take_block(pool))
        }
    }

    /// Maps a new arena (the caller checked the limit).
    pub(crate) fn map_arena(&mut self) -> std::io::Result<()> {
        let arena = Arena::map(self.arena_size)?;
        let a = match self.free_slots.pop() {
            Some(a) => a,
            None => {
                self.arenas.push(ArenaSlot { arena: None, nfree: 0, inuse: [0; INUSE_WORDS], prev: NIL, next: NIL });
                (self.arenas.len() - 1) as u32
            }
        };
        // The mapping's provenance is exposed for the checked free's fast
        // path (`free_small_checked`), the one place that turns an address
        // into a pointer without a base; every other pointer into the arena
        // is derived from its base (`Lanes::base`, `hot_base`).
        let lo = arena.base().expose_provenance();
        let hi = lo + arena.size();
        for chunk in (lo >> self.chunk_shift)..=((hi - 1) >> self.chunk_shift) {
            self.chunks.add(chunk, arena.base(), a);
        }
        owners::register(lo, hi, Owner { id: self.id, heap_uid: self.uid });
        self.mapped_bytes += arena.mapped();
        let slot = &mut self.arenas[a as usize];
        slot.arena = Some(arena);
        slot.nfree = self.npools;
        slot.inuse = [0; INUSE_WORDS];
        self.bucket_insert(a, self.npools);
        self.arenas_current += 1;
        self.arenas_allocated += 1;
        self.arenas_high_water = self.arenas_high_water.max(self.arenas_current);
        Ok(())
    }

    /// Unmaps arena `a` (every pool free).
    fn release_arena(&mut self, a: u32) {
        let n = self.arenas[a as usize].nfree;
        self.bucket_remove(a, n);
        let Some(arena) = self.arenas[a as usize].arena.take() else { return };
        self.unmap(a, arena);
        self.free_slots.push(a);
        if self.spare == a {
            self.spare = NIL; // no pool of it is in use, so none is kept: nothing to rebias
        }
    }

    fn unmap(&mut self, a: u32, arena: Arena) {
        if self.hot_base == arena.base() {
            self.hot_granules = 0;
        }
        let (lo, hi) = (arena.base().addr(), arena.base().addr() + arena.size());
        for chunk in (lo >> self.chunk_shift)..=((hi - 1) >> self.chunk_shift) {
            self.chunks.remove(chunk, a);
        }
        owners::unregister(lo);
        self.mapped_bytes -= arena.mapped();
        self.arenas_current -= 1;
        self.arenas_reclaimed += 1;
        drop(arena); // munmap
    }

    /// Returns every cached pool, then unmaps every arena with no live block
    /// (the spare included). Returns the number of arenas unmapped.
    pub(crate) fn trim(&mut self) -> usize {
        self.flush_all_cached();
        let before = self.arenas_reclaimed;
        for a in 0..self.arenas.len() as u32 {
            if self.arenas[a as usize].arena.is_some() && self.arenas[a as usize].nfree == self.npools {
                self.release_arena(a);
            }
        }
        self.spare = NIL;
        (self.arenas_reclaimed - before) as usize
    }

    // ----- large blocks -------------------------------------------------------------

    /// Allocates a large block (the caller checked the limit).
    pub(crate) fn alloc_large(&mut self, size: usize) -> Option<NonNull<u8>> {
        let cap = large_size(size)?;
        let layout = Layout::from_size_align(cap, ALIGNMENT).ok()?;
        // SAFETY: `layout` has a non-zero size (size > 512).
        let p = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        self.large.insert(p.as_ptr().addr(), (p, cap));
        self.large_bytes += cap;
        Some(p)
    }

    /// Frees a live large block.
    ///
    /// # Safety
    /// `p` is a live large block of this heap, not used afterwards.
    pub(crate) unsafe fn free_large(&mut self, p: NonNull<u8>) {
        if let Some((p, cap)) = self.large.remove(&(p.as_ptr().addr())) {
            self.large_bytes -= cap;
            // SAFETY: allocated by `alloc_large`/`realloc_large` with this layout.
            unsafe { std::alloc::dealloc(p.as_ptr(), Layout::from_size_align_unchecked(cap, ALIGNMENT)) };
        }
    }

    /// Resizes a live large block to `new_size` (> 512) bytes; the caller
    /// checked the limit for any growth. `None`: the system allocator refused
    /// (the block is unchanged).
    ///
    /// # Safety
    /// `p` is a live large block of this heap.
    pub(crate) unsafe fn realloc_large(&mut self, p: NonNull<u8>, new_size: usize) -> Option<NonNull<u8>> {
        let cap = large_size(new_size)?;
        Layout::from_size_align(cap, ALIGNMENT).ok()?;
        let (old, old_cap) = *self.large.get(&(p.as_ptr().addr()))?;
        if cap == old_cap {
            return Some(old);
        }
        // SAFETY: `old` was allocated with (old_cap, ALIGNMENT); `cap` is non-zero
        // and forms a valid layout (checked above).
        let q = NonNull::new(unsafe {
            std::alloc::realloc(old.as_ptr(), Layout::from_size_align_unchecked(old_cap, ALIGNMENT), cap)
        })?;
        self.large.remove(&(old.as_ptr().addr()));
        self.large.insert(q.as_ptr().addr(), (q, cap));
        self.large_bytes = self.large_bytes - old_cap + cap;
        Some(q)
    }

    /// Rounded size of a large request, if representable.
    pub(crate) fn large_cap(size: usize) -> Option<usize> {
        large_size(size).filter(|&c| Layout::from_size_align(c, ALIGNMENT).is_ok())
    }

    // ----- ownership check ------------------------------------------------------------

    /// The arena of this heap containing `addr`: its slot and base pointer.
    #[inline(always)]
    fn arena_of(&self, addr: usize) -> Option<(u32, *mut u8)> {
        let lanes = self.chunks.get(addr >> self.chunk_shift)?;
        (0..2).find_map(|k| {
            let base = lanes.base[k];
            (!base.is_null() && addr.wrapping_sub(base.addr()) < self.arena_size).then(|| (lanes.idx[k], base))
        })
    }

    /// The base of the arena of this heap containing `addr`, which becomes the
    /// hot arena; null if there is none or `addr` is not 16-byte aligned.
    #[cold]
    #[inline(never)]
    fn find_hot(&mut self, addr: usize) -> *mut u8 {
        if addr % ALIGNMENT != 0 {
            return ptr::null_mut();
        }
        match self.arena_of(addr) {
            Some((_, base)) => {
                (self.hot_base, self.hot_granules) = (base, self.arena_size >> ALIGNMENT_SHIFT);
                base
            }
            None => ptr::null_mut(),
        }
    }

    /// If `addr` is a live small block of this heap: its pool and the block
    /// pointer (with the arena's provenance). Reads only pool headers: a pool
    /// not in use has no live bit set (returned pools had every block freed;
    /// fresh or discarded pages read as zeros), and no bit is ever set for the
    /// header's own granules, so the live bit of a 16-aligned address decides.
    #[inline(always)]
    fn live_small(&self, addr: usize) -> Option<(*mut PoolHeader, *mut u8)> {
        if addr % ALIGNMENT != 0 {
            return None;
        }
        let (_, base) = self.arena_of(addr)?;
        let bp = base.with_addr(addr);
        let off = addr & POOL_MASK;
        let pool = bp.wrapping_sub(off).cast::<PoolHeader>();
        // SAFETY: the pool lies inside a mapped arena of this heap; its header
        // bytes are only ever written by the heap (or are fresh zeros).
        unsafe { is_live(pool, off) }.then_some((pool, bp))
    }

    /// Frees `addr` if it is a live small block of this heap (the fast case
    /// of a checked free); returns whether it did. The live bit is tested and
    /// cleared with one load and one store.
    ///
    /// # Safety
    /// If `addr` is a live block of this heap, nothing uses it afterwards.
    #[inline(always)]
    pub(crate) unsafe fn free_small_checked(&mut self, addr: usize) -> bool {
        // One test for "inside the hot arena and 16-byte aligned": the base is
        // aligned, so a misaligned address rotates its low bits to the top.
        if addr.wrapping_sub(self.hot_base.addr()).rotate_right(ALIGNMENT_SHIFT) >= self.hot_granules
            && self.find_hot(addr).is_null()
        {
            return false;
        }
        // The one place where an address becomes a pointer without a base:
        // `addr` lies in a mapped arena of this heap, whose provenance
        // `map_arena` exposed, so the pointer takes that provenance. Deriving
        // it from the hot arena's base instead (`hot_base.with_addr(addr)`,
        // as every slow path does) makes each access below wait for the load
        // of `hot_base`: `batch1024/heap-raw` of `cargo bench --bench mem`
        // took 19 % longer (median of five alternating runs, +14 to +39 %).
        // Miri checks this in its default (permissive) provenance mode: the
        // lane runs the tests of this path without `-Zmiri-strict-provenance`.
        let bp = std::ptr::with_exposed_provenance_mut::<u8>(addr);
        let off = addr & POOL_MASK;
        let pool = bp.wrapping_sub(off).cast::<PoolHeader>();
        let g = off >> ALIGNMENT_SHIFT;
        // The pool lies inside a mapped arena of this heap (the hot arena is
        // one, else `arena_of` found one), and `bp`, so `pool`, carries that
        // arena's provenance: the exposed provenance of the one allocation
        // that contains `addr` (an arena stays exposed while it is mapped and
        // is unmapped only with its chunk-table entries and the hot arena
        // cleared); its header bytes are only ever written by the heap (or
        // are fresh zeros); `g / 64 < LIVE_WORDS` since `off < POOL_SIZE`. A
        // set live bit means a live block of an in-use pool starts at `bp`,
        // which the caller gives up.
        // SAFETY: by the facts above, reading and flipping the live bit and
        // linking the block are exclusive accesses to memory the heap owns.
        unsafe {
            let w = ptr::addr_of_mut!((*pool).live).cast::<u64>().add(g >> 6);
            let v = *w;
            // Clear the bit; unchanged means it was not set (`btr` on x86-64).
            let cleared = v & !(1u64 << (g & 63));
            if cleared == v {
                return false;
            }
            *w = cleared;
            self.push_free(pool, bp);
        }
        true
    }

    /// Frees `addr` if it is a live block of this heap; otherwise changes
    /// nothing and says why not.
    ///
    /// # Safety
    /// If `addr` is a live block of this heap, nothing uses it afterwards.
    #[inline]
    pub(crate) unsafe fn free_checked(&mut self, addr: usize) -> Result<(), String> {
        if let Some((_, bp)) = self.live_small(addr) {
            // SAFETY: a live small block (just checked); the caller gives it up.
            unsafe { self.free_small(bp) };
            return Ok(());
        }
        match self.locate(addr)? {
            // SAFETY: as above, for a live large block.
            Located::Large { ptr, .. } => unsafe { self.free_large(ptr) },
            // SAFETY: as above (not reached: `live_small` said no).
            Located::Small { ptr, .. } => unsafe { self.free_small(ptr) },
        }
        Ok(())
    }

    /// Validates that `addr` is a live block of this heap; the error is the
    /// reason it is not.
    #[inline]
    pub(crate) fn locate(&self, addr: usize) -> Result<Located, String> {
        if let Some((pool, bp)) = self.live_small(addr) {
            // SAFETY: an in-use pool (it has a live block): initialized header.
            let cap = class_size(unsafe { (*pool).szidx } as usize);
            return Ok(Located::Small { ptr: bp, cap });
        }
        self.explain(addr)
    }

    /// Why `addr` is not a live small block (or that it is a large one).
    #[cold]
    fn explain(&self, addr: usize) -> Result<Located, String> {
        let Some((a, base)) = self.arena_of(addr) else { return self.locate_elsewhere(addr) };
        let i = (addr - base.addr()) >> POOL_SHIFT;
        if self.arenas[a as usize].inuse[i / 64] & (1u64 << (i % 64)) == 0 {
            return Err("not a live block: its pool holds no blocks (double free, or never allocated)".into());
        }
        let off = addr & POOL_MASK;
        if off < POOL_HEADER_SIZE || off % ALIGNMENT != 0 {
            return Err("not the start of a block".into());
        }
        let pool = base.wrapping_add(i << POOL_SHIFT).cast::<PoolHeader>();
        // SAFETY: pool `i` is in use: its header is initialized, inside the arena.
        let (szidx, nextoffset) = unsafe { ((*pool).szidx, (*pool).nextoffset) };
        let size = class_size(szidx as usize);
        if (off - POOL_HEADER_SIZE) % size == 0 && off < nextoffset as usize {
            Err(format!("double free: the {size}-byte block is already free (or was never handed out)"))
        } else {
            Err(format!("not the start of a block (inside a pool of {size}-byte blocks)"))
        }
    }

    /// `locate` for an address outside this heap's arenas.
    #[cold]
    fn locate_elsewhere(&self, addr: usize) -> Result<Located, String> {
        if addr == 0 {
            return Err("null pointer".into());
        }
        if self.torn_down {
            return Err("the heap was torn down (its interpreter is closed)".into());
        }
        if let Some(&(ptr, cap)) = self.large.get(&addr) {
            return Ok(Located::Large { ptr, cap });
        }
        Err(match owners::owner_of(addr) {
            Some(o) if o.heap_uid != self.uid => {
                format!("owned by interpreter {}'s heap, not by this one (free it under that interpreter's GIL)", o.id)
            }
            _ => "not owned by this heap: no arena or live large block of this interpreter contains it \
                  (a large block already freed, or memory from another allocator)"
                .into(),
        })
    }

    // ----- stats, teardown ------------------------------------------------------------

    /// Calls `f(class, ref_count)` for every in-use pool.
    fn for_each_pool(&self, mut f: impl FnMut(usize, usize)) {
        for pool in self.arenas.iter().flat_map(ArenaSlot::in_use_pools) {
            // SAFETY: in-use pool: initialized header inside the arena.
            let (c, rc) = unsafe { ((*pool).szidx as usize, ref_count(pool) as usize) };
            f(c, rc);
        }
    }

    pub(crate) fn stats(&self) -> MemoryStats {
        let mut classes: Vec<SizeClassStats> = (0..NUM_SIZE_CLASSES)
            .map(|c| SizeClassStats { class: c, block_size: class_size(c), pools: 0, blocks_in_use: 0, free_blocks: 0 })
            .collect();
        let mut pools_in_use = 0usize;
        self.for_each_pool(|c, rc| {
            pools_in_use += 1;
            let k = &mut classes[c];
            k.pools += 1;
            k.blocks_in_use += rc;
            k.free_blocks += blocks_per_pool(c) - rc;
        });
        let small_blocks = classes.iter().map(|k| k.blocks_in_use).sum();
        let small_bytes = classes.iter().map(|k| k.blocks_in_use * k.block_size).sum();
        let free_block_bytes = classes.iter().map(|k| k.free_blocks * k.block_size).sum();
        let quantization_bytes = classes
            .iter()
            .map(|k| k.pools * (POOL_SIZE - POOL_HEADER_SIZE - blocks_per_pool(k.class) * k.block_size))
            .sum();
        let usable = self.arenas_current * self.arena_size;
        MemoryStats {
            interpreter: self.id,
            arena_size: self.arena_size,
            pool_size: POOL_SIZE,
            arenas_allocated: self.arenas_allocated,
            arenas_reclaimed: self.arenas_reclaimed,
            arenas_current: self.arenas_current,
            arenas_high_water: self.arenas_high_water,
            arenas_idle: (0..self.arenas.len() as u32)
                .filter(|&a| self.arenas[a as usize].arena.is_some() && !self.arena_has_live_pools(a))
                .count(),
            classes,
            small_blocks,
            small_bytes,
            large_blocks: self.large.len(),
            large_bytes: self.large_bytes,
            bytes_in_use: small_bytes + self.large_bytes,
            bytes_mapped: self.mapped_bytes,
            free_block_bytes,
            unused_pool_bytes: usable - pools_in_use * POOL_SIZE,
            pool_header_bytes: pools_in_use * POOL_HEADER_SIZE,
            quantization_bytes,
            alignment_bytes: self.mapped_bytes - usable,
            counted_bytes: self.counted().current,
            limit: self.limit,
        }
    }

    /// Counts what is live, then unmaps and frees everything.
    pub(crate) fn teardown(&mut self) -> LeakReport {
        let mut report = LeakReport::default();
        self.for_each_pool(|c, rc| {
            report.live_blocks += rc;
            report.live_bytes += rc * class_size(c);
        });
        report.live_blocks += self.large.len();
        report.live_bytes += self.large_bytes;
        report.arenas_unmapped = self.arenas_current;
        self.release_all();
        self.torn_down = true;
        report
    }

    fn release_all(&mut self) {
        self.hot_granules = 0;
        self.used = [ptr::null_mut(); NUM_SIZE_CLASSES];
        self.cached = [ptr::null_mut(); NUM_SIZE_CLASSES];
        self.recent = [ptr::null_mut(); RECENT_POOLS];
        for a in 0..self.arenas.len() {
            if let Some(arena) = self.arenas[a].arena.take() {
                self.unmap(a as u32, arena);
            }
        }
        self.arenas.clear();
        self.free_slots.clear();
        self.bucket_head.iter_mut().for_each(|h| *h = NIL);
        self.bucket_bits.iter_mut().for_each(|b| *b = 0);
        self.chunks.clear();
        self.spare = NIL;
        for (_, (p, cap)) in self.large.drain() {
            // SAFETY: allocated by `alloc_large`/`realloc_large` with this layout;
            // the heap is going away, so nothing uses it any more.
            unsafe { std::alloc::dealloc(p.as_ptr(), Layout::from_size_align_unchecked(cap, ALIGNMENT)) };
        }
        self.large_bytes = 0;
    }
}

/// Block size of the live small block at `bp` (read from its pool header).
///
/// # Safety
/// `bp` is a live small block of a heap whose GIL the caller holds.
#[inline]
pub(crate) unsafe fn small_block_size(bp: *const u8) -> usize {
    let pool = bp.wrapping_sub(bp.addr() & POOL_MASK).cast::<PoolHeader>();
    // SAFETY: caller: the block's pool is in use, so its header is initialized.
    class_size(unsafe { (*pool).szidx } as usize)
}

/// Live blocks of a pool.
///
/// # Safety
/// `pool` is an initialized in-use pool header.
#[inline(always)]
unsafe fn ref_count(pool: *const PoolHeader) -> u32 {
    // SAFETY: caller.
    unsafe { (*pool).fast_frees.wrapping_add((*pool).slow_at) }
}

/// Sets `slow_at`, keeping the live count (and so `fast_frees` in step).
///
/// # Safety
/// `pool` is an initialized in-use pool header.
#[inline]
unsafe fn set_slow_at(pool: *mut PoolHeader, v: u32) {
    // SAFETY: caller.
    unsafe {
        let rc = ref_count(pool);
        (*pool).slow_at = v;
        (*pool).fast_frees = rc.wrapping_sub(v);
    }
}

/// Hands out `bp`, the head of `pool`'s `freeblock` list.
///
/// # Safety
/// `pool` is an in-use pool of this heap and `bp` the (non-null) head of its
/// `freeblock` list.
#[inline(always)]
unsafe fn pop_block(pool: *mut PoolHeader, bp: *mut u8) -> NonNull<u8> {
    // SAFETY: caller: a free block's first word links the next one.
    unsafe {
        (*pool).freeblock = *bp.cast::<*mut u8>();
        (*pool).fast_frees = (*pool).fast_frees.wrapping_add(1);
        set_live(pool, bp.addr() & POOL_MASK);
        NonNull::new_unchecked(bp)
    }
}

/// Whether `size` is served by pools.
#[inline(always)]
pub(crate) const fn is_small(size: usize) -> bool {
    size <= SMALL_REQUEST_THRESHOLD
}

/// # Safety
/// `pool` is an initialized in-use pool header; `off < POOL_SIZE`.
#[inline(always)]
unsafe fn set_live(pool: *mut PoolHeader, off: usize) {
    let g = off >> ALIGNMENT_SHIFT;
    // SAFETY: caller; `g / 64 < LIVE_WORDS` since `off < POOL_SIZE`.
    unsafe {
        let w = ptr::addr_of_mut!((*pool).live).cast::<u64>().add(g >> 6);
        let v = *w;
        *w = v | (1u64 << (g & 63));
    }
}

/// # Safety
/// As [`set_live`].
#[inline(always)]
unsafe fn clear_live(pool: *mut PoolHeader, off: usize) {
    let g = off >> ALIGNMENT_SHIFT;
    // SAFETY: caller; `g / 64 < LIVE_WORDS` since `off < POOL_SIZE`.
    unsafe {
        let w = ptr::addr_of_mut!((*pool).live).cast::<u64>().add(g >> 6);
        *w &= !(1u64 << (g & 63));
    }
}

/// # Safety
/// As [`set_live`].
#[inline(always)]
unsafe fn is_live(pool: *const PoolHeader, off: usize) -> bool {
    let g = off >> ALIGNMENT_SHIFT;
    // SAFETY: caller; `g / 64 < LIVE_WORDS` since `off < POOL_SIZE`.
    unsafe { *ptr::addr_of!((*pool).live).cast::<u64>().add(g >> 6) & (1u64 << (g & 63)) != 0 }
}
