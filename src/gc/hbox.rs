//! [`HBox`]: a box in the interpreter's heap, for the object bodies that do
//! not fit the 16-byte `Body` (classes, methods, modules, functions, code
//! objects, weakrefs, an instance's ext box; `dyn` values are `hdyn.rs`'s).
//! Counted in
//! `MemoryStats`, under the memory limit; a refused allocation is a
//! `MemoryError`, never an abort.
//!
//! As [`Items`](super::items::Items), an `HBox` has no `Drop`: it is freed
//! explicitly with the heap that allocated it, at the body's drop sites
//! (which hold the GIL): [`HBox::free_in`] drops the value and frees the
//! block, [`HBox::into_inner_in`] moves the value out and frees the block. A
//! box nobody freed stays allocated in its heap (a leak, reclaimed when the
//! interpreter's arenas are unmapped), never a free through the wrong
//! allocator, and its value's `Drop` never runs.

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::error::Result;
use crate::mem::{InterpHeap, SMALL_REQUEST_THRESHOLD};

/// A `T` in a block of an interpreter's heap (one owner).
pub(crate) struct HBox<T> {
    ptr: NonNull<T>,
    _owns: PhantomData<T>,
}

impl<T> HBox<T> {
    const FITS: () = assert!(align_of::<T>() <= 16 && size_of::<T>() > 0, "heap blocks are 16-byte aligned");

    /// A block of `heap` for a `T`, to be filled with [`Slot::write`]: taken
    /// before the value is built, so that a refusal (a `MemoryError`) comes
    /// before the value takes any reference.
    pub(crate) fn slot_in(heap: &InterpHeap) -> Result<Slot<T>> {
        #[allow(clippy::let_unit_value)]
        let () = Self::FITS;
        let p = heap.alloc(size_of::<T>())?;
        Ok(Slot { ptr: p.cast(), _owns: PhantomData })
    }

    /// Moves the value out and frees the block.
    ///
    /// # Safety
    /// `heap` is the heap that allocated this box (the interpreter whose
    /// object body holds it), and its GIL is held.
    pub(crate) unsafe fn into_inner_in(self, heap: &InterpHeap) -> T {
        // SAFETY: the block holds an initialized `T` owned by this box,
        // read exactly once; the block is freed right after (caller: it is
        // `heap`'s), and `self` is consumed.
        unsafe {
            let v = self.ptr.as_ptr().read();
            heap.free_known(self.ptr.cast(), size_of::<T>() <= SMALL_REQUEST_THRESHOLD);
            v
        }
    }

    /// Drops the value in place and frees the block.
    ///
    /// # Safety
    /// As [`into_inner_in`](Self::into_inner_in).
    pub(crate) unsafe fn free_in(self, heap: &InterpHeap) {
        // SAFETY: forwarded from the caller.
        drop(unsafe { self.into_inner_in(heap) });
    }

    /// Gives up the box as a pointer (kept where a typed `HBox` cannot be:
    /// an instance's inline data). [`from_ptr`](Self::from_ptr) takes it back.
    pub(crate) fn into_ptr(self) -> NonNull<T> {
        self.ptr
    }

    /// The box `into_ptr` gave up.
    ///
    /// # Safety
    /// `ptr` came from [`into_ptr`](Self::into_ptr) of a box not freed since,
    /// and no other `HBox` owns it (ownership comes back once).
    pub(crate) unsafe fn from_ptr(ptr: NonNull<T>) -> HBox<T> {
        HBox { ptr, _owns: PhantomData }
    }
}

impl<T> Deref for HBox<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: the block holds an initialized `T` owned by this box.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for HBox<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, uniquely borrowed through `&mut self`.
        unsafe { self.ptr.as_mut() }
    }
}

/// A block for an [`HBox`] not filled yet (from [`HBox::slot_in`]). Dropped
/// unfilled, its block stays allocated until the interpreter's teardown: a
/// leak, never undefined behaviour; every use fills it at once.
pub(crate) struct Slot<T> {
    ptr: NonNull<T>,
    _owns: PhantomData<T>,
}

impl<T> Slot<T> {
    /// Moves `value` into the block.
    pub(crate) fn write(self, value: T) -> HBox<T> {
        // SAFETY: a block of this heap of at least `size_of::<T>()` bytes,
        // 16-byte aligned (>= `align_of::<T>()`, checked in `slot_in`),
        // not yet initialized and owned by this slot, which is consumed.
        unsafe { self.ptr.as_ptr().write(value) };
        HBox { ptr: self.ptr, _owns: PhantomData }
    }
}
