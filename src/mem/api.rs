//! The public face of the heap: [`Block`], the raw pointer API, limits, the
//! limiter hook and stats, as inherent methods of [`Gil`] and [`Interpreter`].

use std::marker::PhantomData;
use std::ptr::NonNull;

use super::arena::Arena;
use super::heap::{class_of, is_small, small_block_size, HeapState, Located};
use super::{InterpHeap, MemoryStats};
use crate::error::{Error, Result};
use crate::interp::run_callback;
use crate::{Gil, Interpreter, InterpreterId};

/// What kind of growth a [`MemoryGrowth`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrowthKind {
    /// Mapping a new arena (for small blocks).
    Arena,
    /// A large block (request above 512 bytes), or growing one.
    LargeBlock,
}

/// A request to grow the bytes counted against an interpreter's memory limit,
/// shown to the limiter hook (see [`Gil::set_memory_limiter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryGrowth {
    /// The interpreter whose heap grows.
    pub interpreter: InterpreterId,
    /// Arena or large block.
    pub kind: GrowthKind,
    /// The allocation request (bytes) that needs the growth.
    pub requested: usize,
    /// Bytes counted now (arenas plus large blocks).
    pub current: usize,
    /// Bytes counted after the growth.
    pub desired: usize,
    /// The limit in force.
    pub limit: Option<usize>,
}

/// The limiter hook's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimiterDecision {
    /// Apply the configured limit as if there were no hook.
    UseLimit,
    /// Allow this growth even above the limit.
    Grant,
    /// Refuse: the allocation fails with [`Error::MemoryError`].
    Refuse,
    /// Set the limit to this many bytes (usually more), then apply it.
    SetLimit(usize),
}

/// A block of an interpreter's heap, freed when dropped.
///
/// Made by [`Gil::alloc`]; its contents start zeroed. Branded with the token's
/// lifetime and neither `Send` nor `Sync`: it cannot leave the `with_gil`
/// closure it was allocated in nor reach another thread, so it is always freed
/// under its own interpreter's GIL, into its own heap.
///
/// ```
/// use subinterp::{Runtime, RuntimeConfig};
/// let rt = Runtime::new(RuntimeConfig::default()).unwrap();
/// rt.main().with_gil(|g| {
///     let mut b = g.alloc(24).unwrap();
///     b.as_mut_slice().copy_from_slice(&[7; 24]);
///     g.realloc(&mut b, 100).unwrap(); // contents kept, tail zeroed
///     assert_eq!(&b[..24], &[7; 24]);
///     assert!(b[24..].iter().all(|&x| x == 0));
/// }).unwrap(); // `b` was freed at the end of the closure
/// ```
///
/// ```compile_fail
/// # use subinterp::{Runtime, RuntimeConfig};
/// let rt = Runtime::new(RuntimeConfig::default()).unwrap();
/// let b = rt.main().with_gil(|g| g.alloc(8).unwrap()).unwrap(); // cannot escape
/// ```
pub struct Block<'i> {
    ptr: NonNull<u8>,
    len: usize,
    heap: &'i InterpHeap,
    _brand: PhantomData<fn(&'i ()) -> &'i ()>,
    _not_send: PhantomData<*mut ()>,
}

impl std::fmt::Debug for Block<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block").field("ptr", &self.ptr).field("len", &self.len).finish()
    }
}

impl Block<'_> {
    /// Requested length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the length is zero.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes actually reserved (the size class's block size, or the large
    /// block's size rounded up to 16).
    pub fn capacity(&self) -> usize {
        if is_small(self.len) {
            // SAFETY: a `Block` is a live block of its heap whose GIL is held
            // (it cannot leave its `with_gil` closure); small iff len <= 512.
            unsafe { small_block_size(self.ptr.as_ptr()) }
        } else {
            HeapState::large_cap(self.len).unwrap_or(self.len)
        }
    }

    /// Start of the block (16-byte aligned).
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Start of the block, for writing.
    #[inline]
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The block's bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the block is live and owned by `self`, `len` bytes long and
        // initialized (zeroed at allocation, zero-extended by `realloc`,
        // otherwise written only through these slices).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The block's bytes, for writing.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as `as_slice`; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Gives up ownership: the block stays allocated and must be freed with
    /// [`Gil::free_raw`] under the same interpreter's GIL (or is reported as
    /// leaked when the interpreter closes).
    pub fn into_raw(self) -> NonNull<u8> {
        let p = self.ptr;
        std::mem::forget(self);
        p
    }
}

impl std::ops::Deref for Block<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for Block<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl Drop for Block<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a `Block` owns a live block of `heap` (small iff len <= 512:
        // `realloc` keeps that true) and is dropped inside its `with_gil`
        // closure, under the GIL of the heap's interpreter.
        unsafe { self.heap.free_known(self.ptr, is_small(self.len)) }
    }
}

// ----- the heap's slow paths ------------------------------------------------------

impl InterpHeap {
    fn memory_error(&self, requested: usize, in_use: usize, limit: Option<usize>) -> Error {
        Error::MemoryError { id: self.id, requested, in_use, limit: limit.unwrap_or(in_use) }
    }

    /// Allocation that the fast path could not serve.
    #[cold]
    #[inline(never)]
    pub(super) fn alloc_slow(&self, size: usize) -> Result<NonNull<u8>> {
        if self.with_state(|st| st.torn_down) {
            return Err(Error::InterpreterClosed { id: self.id });
        }
        if size == 0 {
            return self.alloc(1);
        }
        if is_small(size) {
            let c = class_of(size);
            if let Some(p) = self.with_state(|st| st.try_alloc_small(size).or_else(|| st.alloc_from_new_pool(c))) {
                return Ok(p);
            }
            let arena_size = self.with_state(|st| st.arena_size);
            let decision = self.grow_check(GrowthKind::Arena, arena_size, size)?;
            self.with_state(|st| {
                // The hook may have allocated (re-entering the heap): look again.
                if let Some(p) = st.try_alloc_small(size).or_else(|| st.alloc_from_new_pool(c)) {
                    return Ok(p);
                }
                self.apply_decision(st, decision, st.arena_size, size)?;
                st.map_arena().map_err(|e| Error::MmapFailed {
                    id: self.id,
                    size: Arena::mapped_len(st.arena_size),
                    reason: e.to_string(),
                })?;
                st.alloc_from_new_pool(c).ok_or_else(|| Error::MmapFailed {
                    id: self.id,
                    size: Arena::mapped_len(st.arena_size),
                    reason: "the new arena has no usable pool".into(),
                })
            })
        } else {
            let (in_use, limit) = self.with_state(|st| {
                let c = st.counted();
                (c.current, c.limit)
            });
            let cap = HeapState::large_cap(size).ok_or_else(|| self.memory_error(size, in_use, limit))?;
            let decision = self.grow_check(GrowthKind::LargeBlock, cap, size)?;
            self.with_state(|st| {
                self.apply_decision(st, decision, cap, size)?;
                st.alloc_large(size).ok_or_else(|| Error::MmapFailed {
                    id: self.id,
                    size: cap,
                    reason: "the system allocator refused the large block".into(),
                })
            })
        }
    }

    /// Asks the limiter hook, if any, about a growth of `delta` counted bytes.
    /// The hook runs with no reference into the state held, so it may re-enter
    /// the interpreter; a panic in it becomes [`Error::CallbackPanicked`].
    fn grow_check(&self, kind: GrowthKind, delta: usize, requested: usize) -> Result<Option<LimiterDecision>> {
        let (hook, growth, gen) = self.with_state(|st| {
            if st.limiter.is_none() {
                return (None, None, 0);
            }
            let c = st.counted();
            let growth = MemoryGrowth {
                interpreter: st.id,
                kind,
                requested,
                current: c.current,
                desired: c.current.saturating_add(delta),
                limit: c.limit,
            };
            (st.limiter.take(), Some(growth), st.limiter_gen)
        });
        let (Some(mut hook), Some(growth)) = (hook, growth) else { return Ok(None) };
        let answer = run_callback("memory limiter hook", || hook(&growth));
        let unused = self.with_state(|st| {
            // Put it back unless it was replaced (or cleared) while it ran.
            if st.limiter_gen == gen && st.limiter.is_none() {
                st.limiter = Some(hook);
                None
            } else {
                Some(hook)
            }
        });
        // A replaced hook is dropped outside the state borrow and behind the
        // boundary: dropping its captures runs user code. A panic there is
        // discarded: it is not this allocation's failure.
        let _ = run_callback("drop of a memory limiter hook", move || drop(unused));
        answer.map(Some)
    }

    /// Applies the hook's decision (or the plain limit) to a growth of
    /// `delta` counted bytes, against the current numbers.
    fn apply_decision(
        &self,
        st: &mut HeapState,
        decision: Option<LimiterDecision>,
        delta: usize,
        requested: usize,
    ) -> Result<()> {
        let current = st.counted().current;
        let limit = match decision {
            Some(LimiterDecision::Grant) => return Ok(()),
            Some(LimiterDecision::Refuse) => return Err(self.memory_error(requested, current, st.limit)),
            Some(LimiterDecision::SetLimit(n)) => {
                st.limit = Some(n);
                Some(n)
            }
            None | Some(LimiterDecision::UseLimit) => st.limit,
        };
        match (limit, current.checked_add(delta)) {
            (None, Some(_)) => Ok(()),
            (Some(l), Some(desired)) if desired <= l => Ok(()),
            _ => Err(self.memory_error(requested, current, limit)),
        }
    }

    /// Frees any pointer, checking that it is a live block of this heap.
    ///
    /// # Safety
    /// If `ptr` is a live block of this heap, nothing uses it afterwards and no
    /// [`Block`] owns it. GIL held.
    #[inline(always)]
    pub(crate) unsafe fn free_checked(&self, ptr: *mut u8) -> Result<()> {
        // SAFETY: forwarded from the caller.
        let freed = self.with_state(|st| unsafe { st.free_small_checked(ptr.addr()) });
        if freed {
            return Ok(());
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.free_checked_slow(ptr) }
    }

    /// `free_checked` for anything but a live small block: large blocks and
    /// refusals.
    ///
    /// # Safety
    /// As `free_checked`.
    #[cold]
    #[inline(never)]
    unsafe fn free_checked_slow(&self, ptr: *mut u8) -> Result<()> {
        // SAFETY: forwarded from the caller.
        self.with_state(|st| unsafe { st.free_checked(ptr.addr()) }).map_err(|reason| Error::InvalidFree {
            id: self.id,
            addr: ptr.addr(),
            reason,
        })
    }

    /// Resizes a validated live block; on error the block is unchanged.
    ///
    /// # Safety
    /// `loc` describes a live block of this heap (from `locate`), unused by
    /// anyone else during the call; on success the old pointer is dead unless
    /// returned again. GIL held.
    pub(super) unsafe fn realloc_located(&self, loc: Located, new_size: usize) -> Result<NonNull<u8>> {
        match loc {
            Located::Small { ptr, cap } => {
                if is_small(new_size) {
                    let n = new_size.max(1);
                    let (cn, co) = (class_of(n), class_of(cap));
                    // Same class, or a shrink that keeps > 75% of the block (CPython's rule).
                    if cn == co || (cn < co && 4 * n > 3 * cap) {
                        // SAFETY: blocks are never null.
                        return Ok(unsafe { NonNull::new_unchecked(ptr) });
                    }
                }
                let q = self.alloc(new_size)?;
                // SAFETY: two distinct live blocks; `q` holds at least `new_size`
                // bytes and `ptr` holds `cap`.
                unsafe { std::ptr::copy_nonoverlapping(ptr, q.as_ptr(), cap.min(new_size)) };
                // SAFETY: `ptr` is a live small block of this heap (caller), dead from now.
                self.with_state(|st| unsafe { st.free_small(ptr) });
                Ok(q)
            }
            Located::Large { ptr, cap } => {
                if !is_small(new_size) {
                    let ncap = HeapState::large_cap(new_size).ok_or_else(|| {
                        self.with_state(|st| self.memory_error(new_size, st.counted().current, st.limit))
                    })?;
                    if ncap > cap {
                        let d = self.grow_check(GrowthKind::LargeBlock, ncap - cap, new_size)?;
                        self.with_state(|st| self.apply_decision(st, d, ncap - cap, new_size))?;
                    }
                    // SAFETY: `ptr` is a live large block of this heap (caller).
                    return self.with_state(|st| unsafe { st.realloc_large(ptr, new_size) }).ok_or(Error::MmapFailed {
                        id: self.id,
                        size: ncap,
                        reason: "the system allocator refused to resize the large block".into(),
                    });
                }
                let q = self.alloc(new_size)?;
                // SAFETY: distinct live blocks; `new_size <= 512 < cap`.
                unsafe { std::ptr::copy_nonoverlapping(ptr.as_ptr(), q.as_ptr(), new_size) };
                // SAFETY: `ptr` is a live large block of this heap (caller), dead from now.
                self.with_state(|st| unsafe { st.free_large(ptr) });
                Ok(q)
            }
        }
    }
}

// ----- the token API ----------------------------------------------------------------

impl<'i> Gil<'i> {
    /// The heap this interpreter allocates from: its own, or main's for an
    /// interpreter created with `use_main_obmalloc` (which shares main's GIL,
    /// so this token proves that GIL is held).
    #[inline(always)]
    pub(crate) fn heap(&self) -> &'i InterpHeap {
        let rec = &self.interpreter().rec;
        match &rec.heap_owner {
            Some(main) => &main.heap,
            None => &rec.heap,
        }
    }

    /// Allocates a zeroed block of `size` bytes from this interpreter's heap.
    ///
    /// Requests up to 512 bytes come from pools (O(1), no lock, no atomic
    /// read-modify-write); larger ones from the large-block path. Both count
    /// against the interpreter's memory limit.
    ///
    /// Errors: [`Error::MemoryError`] over the limit (or refused by the limiter
    /// hook); [`Error::CallbackPanicked`] if the hook panicked;
    /// [`Error::MmapFailed`] if the OS refused memory.
    #[inline]
    pub fn alloc(&self, size: usize) -> Result<Block<'i>> {
        let heap = self.heap();
        let ptr = heap.alloc(size)?;
        // SAFETY: `ptr` is a fresh block of at least `size` bytes.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, size) };
        Ok(Block { ptr, len: size, heap, _brand: PhantomData, _not_send: PhantomData })
    }

    /// Resizes `block` to `new_size` bytes, keeping its contents (up to the
    /// smaller size) and zeroing any new bytes. In place when the size class
    /// does not change (or a shrink keeps more than 75 % of the block, as
    /// CPython); otherwise moves it. On error `block` is unchanged.
    ///
    /// Errors: as [`alloc`](Self::alloc); [`Error::WrongInterpreter`] if the
    /// block belongs to another heap (not possible through the type system
    /// alone, checked anyway).
    pub fn realloc(&self, block: &mut Block<'i>, new_size: usize) -> Result<()> {
        let heap = self.heap();
        if !std::ptr::eq(heap, block.heap) {
            return Err(Error::WrongInterpreter { owner: block.heap.id(), used_with: self.id() });
        }
        let cap = block.capacity();
        let ptr = block.ptr.as_ptr();
        let loc =
            if is_small(block.len) { Located::Small { ptr, cap } } else { Located::Large { ptr: block.ptr, cap } };
        // SAFETY: `block` owns a live block of `heap` (checked above), borrowed
        // mutably for the call; on success it takes the returned pointer.
        let q = unsafe { heap.realloc_located(loc, new_size)? };
        if new_size > block.len {
            // SAFETY: `q` holds at least `new_size` bytes.
            unsafe { std::ptr::write_bytes(q.as_ptr().add(block.len), 0, new_size - block.len) };
        }
        block.ptr = q;
        block.len = new_size;
        Ok(())
    }

    /// Allocates `size` uninitialized bytes (16-byte aligned) and returns the
    /// raw pointer: the object layer's allocation primitive. Free it with
    /// [`free_raw`](Self::free_raw) under this interpreter's GIL; blocks still
    /// allocated when the interpreter closes are reported in
    /// [`CloseReport::leaked`](crate::CloseReport).
    ///
    /// Errors: as [`alloc`](Self::alloc).
    #[inline(always)]
    pub fn alloc_raw(&self, size: usize) -> Result<NonNull<u8>> {
        self.heap().alloc(size)
    }

    /// Frees a pointer from [`alloc_raw`](Self::alloc_raw) (or
    /// [`Block::into_raw`]).
    ///
    /// The pointer is checked first, and refused with [`Error::InvalidFree`]
    /// (nothing changed) when it is not a live block of this heap: owned by
    /// another interpreter's heap (CPython corrupts its heap here), already
    /// freed, not the start of a block, or memory no arena of this heap owns.
    /// The check reads only the heap's own metadata.
    ///
    /// # Safety
    /// If `ptr` is a live block of this heap, nothing may use it after this
    /// call and no [`Block`] may own it.
    #[inline(always)]
    pub unsafe fn free_raw(&self, ptr: *mut u8) -> Result<()> {
        // SAFETY: forwarded from the caller; the GIL is held (token).
        unsafe { self.heap().free_checked(ptr) }
    }

    /// Resizes a pointer from [`alloc_raw`](Self::alloc_raw), keeping its
    /// contents up to the smaller size; new bytes are uninitialized. On error
    /// the block is unchanged. The pointer is checked as in
    /// [`free_raw`](Self::free_raw).
    ///
    /// # Safety
    /// If `ptr` is a live block of this heap, no [`Block`] may own it, and on
    /// success nothing may use `ptr` any more (use the returned pointer).
    pub unsafe fn realloc_raw(&self, ptr: *mut u8, new_size: usize) -> Result<NonNull<u8>> {
        let heap = self.heap();
        let loc = heap.with_state(|st| st.locate(ptr.addr())).map_err(|reason| Error::InvalidFree {
            id: heap.id(),
            addr: ptr.addr(),
            reason,
        })?;
        // SAFETY: `loc` was just validated under the GIL; the caller gives up `ptr`.
        unsafe { heap.realloc_located(loc, new_size) }
    }

    /// The usable size of a live block of this heap, or `None` when `ptr` is
    /// not one (the same check as [`free_raw`](Self::free_raw)).
    pub fn usable_size(&self, ptr: *const u8) -> Option<usize> {
        self.heap().with_state(|st| st.locate(ptr.addr()).ok().map(|l| l.cap()))
    }

    /// An exact snapshot of this interpreter's heap statistics.
    pub fn memory_stats(&self) -> MemoryStats {
        self.heap().with_state(|st| st.stats())
    }

    /// Sets the byte budget (arenas plus large blocks; `None`: unlimited).
    /// Memory already in use is not taken back; later growth is refused.
    ///
    /// Errors: [`Error::InvalidConfig`] for an interpreter that allocates from
    /// main's heap (`use_main_obmalloc`).
    pub fn set_memory_limit(&self, limit: Option<usize>) -> Result<()> {
        self.own_heap_only()?;
        self.heap().with_state(|st| st.limit = limit);
        Ok(())
    }

    /// Installs a limiter hook (in the manner of wasmtime's
    /// `ResourceLimiter`): it is called, under the GIL, before every growth of
    /// the counted bytes (a new arena, a large block) with a
    /// [`MemoryGrowth`], and decides with a [`LimiterDecision`]. A panic in
    /// the hook is caught and the allocation fails with
    /// [`Error::CallbackPanicked`]. The hook may re-enter the interpreter;
    /// growth it causes itself is checked against the plain limit.
    ///
    /// ```
    /// use subinterp::{Error, InterpreterConfig, LimiterDecision, Runtime, RuntimeConfig};
    /// let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    /// let cfg = InterpreterConfig { memory_limit: Some(1 << 20), ..InterpreterConfig::isolated() };
    /// let interp = rt.create(cfg).unwrap();
    /// interp.with_gil(|g| {
    ///     let _a = g.alloc(64 << 10).unwrap(); // 64 KiB large block: within 1 MiB
    ///     assert!(matches!(g.alloc(1 << 20), Err(Error::MemoryError { .. })));
    ///     g.set_memory_limiter(|growth| LimiterDecision::SetLimit(growth.desired)).unwrap();
    ///     let _b = g.alloc(1 << 20).unwrap(); // the hook raised the limit
    /// }).unwrap();
    /// interp.close().unwrap();
    /// ```
    ///
    /// Errors: [`Error::InvalidConfig`] as [`set_memory_limit`](Self::set_memory_limit).
    pub fn set_memory_limiter<F>(&self, hook: F) -> Result<()>
    where
        F: FnMut(&MemoryGrowth) -> LimiterDecision + Send + 'static,
    {
        self.own_heap_only()?;
        let old = self.heap().with_state(|st| {
            st.limiter_gen += 1;
            st.limiter.replace(Box::new(hook))
        });
        // Dropped outside the state borrow and behind the boundary: dropping
        // user captures runs user code (a panic there is discarded: the new
        // hook is installed).
        let _ = run_callback("drop of a memory limiter hook", move || drop(old));
        Ok(())
    }

    /// Removes the limiter hook.
    pub fn clear_memory_limiter(&self) {
        if self.own_heap_only().is_ok() {
            let old = self.heap().with_state(|st| {
                st.limiter_gen += 1;
                st.limiter.take()
            });
            let _ = run_callback("drop of a memory limiter hook", move || drop(old));
        }
    }

    /// Sets the usable size of the arenas this heap maps (default 1 MiB): a
    /// multiple of 16 KiB up to 4 MiB. Only before the heap maps its first
    /// arena.
    ///
    /// Errors: [`Error::InvalidConfig`].
    pub fn set_arena_size(&self, bytes: usize) -> Result<()> {
        self.own_heap_only()?;
        self.heap().with_state(|st| st.set_arena_size(bytes)).map_err(|reason| Error::InvalidConfig { reason })
    }

    /// Gives back every arena with no live block, the spare included, after
    /// returning the empty pools the heap keeps (one per size class and the
    /// four most recently emptied) (like `malloc_trim`).
    /// Returns how many arenas were unmapped.
    pub fn trim_memory(&self) -> usize {
        self.heap().with_state(|st| st.trim())
    }

    fn own_heap_only(&self) -> Result<()> {
        if self.interpreter().rec.config.use_main_obmalloc {
            return Err(Error::InvalidConfig {
                reason: "this interpreter allocates from main's heap (use_main_obmalloc = true): \
                         configure main's heap instead"
                    .into(),
            });
        }
        Ok(())
    }
}

impl Interpreter {
    /// A consistent snapshot of this interpreter's heap statistics. Takes the
    /// GIL (re-entering it if the caller already holds it).
    ///
    /// Errors: those of [`with_gil`](Self::with_gil), e.g.
    /// [`Error::InterpreterClosed`], [`Error::GilHeldByOtherInterpreter`].
    pub fn memory_stats(&self) -> Result<MemoryStats> {
        self.with_gil(|g| g.memory_stats())
    }

    /// [`Gil::set_memory_limit`], taking the GIL.
    pub fn set_memory_limit(&self, limit: Option<usize>) -> Result<()> {
        self.with_gil(|g| g.set_memory_limit(limit))?
    }

    /// [`Gil::set_memory_limiter`], taking the GIL.
    pub fn set_memory_limiter<F>(&self, hook: F) -> Result<()>
    where
        F: FnMut(&MemoryGrowth) -> LimiterDecision + Send + 'static,
    {
        self.with_gil(move |g| g.set_memory_limiter(hook))?
    }

    /// [`Gil::clear_memory_limiter`], taking the GIL.
    pub fn clear_memory_limiter(&self) -> Result<()> {
        self.with_gil(|g| g.clear_memory_limiter())
    }
}

#[cfg(test)]
mod tests {
    use super::super::heap::class_size;
    use super::*;

    #[test]
    fn size_class_geometry() {
        assert_eq!(class_of(1), 0);
        assert_eq!(class_of(16), 0);
        assert_eq!(class_of(17), 1);
        assert_eq!(class_of(512), 31);
        assert_eq!(class_size(31), 512);
        assert_eq!(super::super::heap::blocks_per_pool(1), (16384 - 192) / 32);
    }
}
