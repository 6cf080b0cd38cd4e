//! Per-interpreter heap memory (issue 3): mmap-backed arenas, pools and size
//! classes, in the manner of CPython's obmalloc, one heap per interpreter.
//!
//! Geometry (see `docs/memory.md`):
//!
//! * An **arena** is one anonymous `memmap2` mapping of [`DEFAULT_ARENA_SIZE`]
//!   (1 MiB) usable bytes. memmap2 has no alignment option and cannot unmap
//!   part of a mapping, so each arena maps `arena_size + POOL_SIZE - 4 KiB`
//!   and uses the [`POOL_SIZE`]-aligned window inside it: every pool is then
//!   16 KiB-aligned and a block's pool header is found by masking its
//!   address. The slack (at most 12 KiB of address space per arena) is never
//!   touched, so it never becomes resident.
//! * A **pool** is 16 KiB and serves one size class. Its 192-byte header holds
//!   the free lists, the counters and a bitmap with one bit per 16-byte
//!   granule, set where a live block starts: the ownership check reads only
//!   this metadata, never the blocks' contents.
//! * 32 **size classes**, 16 bytes apart, up to [`SMALL_REQUEST_THRESHOLD`]
//!   (512) bytes; larger requests take the large-block path (the system
//!   allocator), which is counted in the same stats and limit.
//!
//! All heap state is touched only by the holder of the interpreter's GIL: the
//! public entry points take a [`Gil`](crate::Gil) token (or take the GIL
//! themselves), so the fast path has no lock and no atomic read-modify-write.

mod api;
mod arena;
mod heap;
mod owners;
mod stats;
#[cfg(test)]
mod tests;

pub use api::{Block, GrowthKind, LimiterDecision, MemoryGrowth};
pub use stats::{MemoryStats, SizeClassStats};

use std::ptr::NonNull;

use crate::error::Result;
use crate::sync::UnsafeCell;
use crate::InterpreterId;

use heap::HeapState;

/// Size of a pool: the unit an arena is carved into; one size class per pool.
pub const POOL_SIZE: usize = 1 << POOL_SHIFT;
pub(crate) const POOL_SHIFT: u32 = 14;
/// Granularity of the size classes (and alignment of every block): 16 bytes.
pub const ALIGNMENT: usize = 16;
pub(crate) const ALIGNMENT_SHIFT: u32 = 4;
/// Largest request served from pools; larger ones take the large-block path.
pub const SMALL_REQUEST_THRESHOLD: usize = 512;
/// Number of size classes (16, 32, …, 512 bytes).
pub const NUM_SIZE_CLASSES: usize = SMALL_REQUEST_THRESHOLD / ALIGNMENT;
/// Bytes at the start of every pool reserved for its header (free lists,
/// counters and the live-block bitmap).
pub const POOL_HEADER_SIZE: usize = 192;
/// Default usable size of an arena (1 MiB = 64 pools).
pub const DEFAULT_ARENA_SIZE: usize = 1 << 20;
/// Largest arena size accepted by [`Gil::set_arena_size`](crate::Gil::set_arena_size)
/// (256 pools = 4 MiB).
pub const MAX_ARENA_SIZE: usize = MAX_POOLS_PER_ARENA * POOL_SIZE;
pub(crate) const MAX_POOLS_PER_ARENA: usize = 256;

/// What was still allocated when a heap was torn down (returned in
/// [`CloseReport::leaked`](crate::CloseReport)). The blocks are released with
/// their arenas: nothing stays mapped after `close()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeakReport {
    /// Blocks still allocated at teardown (small and large).
    pub live_blocks: usize,
    /// Their bytes (block sizes: a 20-byte request counts its 32-byte block).
    pub live_bytes: usize,
    /// Arenas unmapped by the teardown (the spare arena included).
    pub arenas_unmapped: usize,
}

/// The heap of one interpreter.
///
/// Every method is called with that interpreter's GIL held (or, for
/// [`teardown`](Self::teardown), by `close()` while it holds the GIL): this is
/// the invariant that makes the unsynchronized state sound. The public
/// boundary enforces it with the [`Gil`](crate::Gil) token.
pub(crate) struct InterpHeap {
    id: InterpreterId,
    state: UnsafeCell<HeapState>,
}

// SAFETY: the state (raw pool pointers into this heap's own arenas, the
// arena maps, the limiter hook, which is `Send`) is only touched by the thread
// that holds the interpreter's GIL, which serializes every access and
// publishes it to the next holder (the GIL's release/acquire); moving the heap
// between threads moves the arenas it owns with it.
unsafe impl Send for InterpHeap {}
// SAFETY: as above: shared references reach the state only under the GIL.
unsafe impl Sync for InterpHeap {}

impl std::fmt::Debug for InterpHeap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterpHeap").field("id", &self.id).finish_non_exhaustive()
    }
}

impl InterpHeap {
    /// A heap that maps nothing until the first allocation.
    pub(crate) fn new(id: InterpreterId, limit: Option<usize>) -> Self {
        Self { id, state: UnsafeCell::new(HeapState::new(id, limit, DEFAULT_ARENA_SIZE)) }
    }

    /// The interpreter this heap belongs to.
    #[inline]
    pub(crate) fn id(&self) -> InterpreterId {
        self.id
    }

    /// Runs `f` on the state. Callers hold the GIL (type invariant).
    #[inline(always)]
    fn with_state<R>(&self, f: impl FnOnce(&mut HeapState) -> R) -> R {
        self.state.with_mut(|p| {
            // The caller holds this heap's GIL (the type's invariant), so no
            // other thread touches the state; `f` never runs user code (the
            // limiter hook is called between two `with_state` calls, never
            // inside one), so no re-entrant call can make a second reference.
            // SAFETY: exclusive access, by the two facts above.
            let state = unsafe { &mut *p };
            f(state)
        })
    }

    /// Allocates `size` bytes (uninitialized); 16-byte aligned.
    #[inline(always)]
    pub(crate) fn alloc(&self, size: usize) -> Result<NonNull<u8>> {
        // `try_alloc_small` answers `None` for sizes that are not small.
        if let Some(p) = self.with_state(|st| st.try_alloc_small(size)) {
            return Ok(p);
        }
        self.alloc_slow(size)
    }

    /// Frees a block this heap handed out and that is still live; `small`
    /// says which path it came from.
    ///
    /// # Safety
    /// `ptr` must be a live block of this heap, allocated as small
    /// (request ≤ 512) iff `small`, not used after this call.
    #[inline(always)]
    pub(crate) unsafe fn free_known(&self, ptr: NonNull<u8>, small: bool) {
        if small {
            // SAFETY: forwarded: `ptr` is a live small block of this heap.
            self.with_state(|st| unsafe { st.free_small(ptr.as_ptr()) });
        } else {
            // SAFETY: forwarded: `ptr` is a live large block of this heap.
            self.with_state(|st| unsafe { st.free_large(ptr) });
        }
    }

    /// Unmaps everything; reports what was still allocated. GIL held.
    /// Afterwards every allocation fails with `InterpreterClosed`.
    /// The limiter hook is handed back, for the caller to drop behind the
    /// catch-unwind boundary (dropping user captures runs user code).
    pub(crate) fn teardown(&self) -> (LeakReport, Option<heap::LimiterFn>) {
        self.with_state(|st| (st.teardown(), st.limiter.take()))
    }
}
