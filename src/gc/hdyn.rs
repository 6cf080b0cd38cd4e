//! [`HDyn`]: a `dyn` value (an embedder's object, a native function's
//! closure) in one block of the interpreter's heap, reached through a thin
//! pointer, so that it fits an object's 16-byte body and is counted in
//! `MemoryStats`, under the memory limit, a refusal a `MemoryError`.
//!
//! ```text
//! block: [ fat pointer to the value (16) ][ the value, at its own alignment ]
//!        ^ HDyn
//! ```
//!
//! As [`HBox`](super::hbox::HBox), an `HDyn` has no `Drop`: it is dropped
//! explicitly with its heap, behind the catch-unwind boundary (the value's
//! `Drop` is the embedder's code), by [`HDyn::drop_in`]; the block is freed
//! also when that `Drop` panics.

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;

use crate::error::Error;
use crate::mem::{InterpHeap, SMALL_REQUEST_THRESHOLD};

/// A `D` (a trait object) in a block of an interpreter's heap (one owner).
pub(crate) struct HDyn<D: ?Sized> {
    block: NonNull<NonNull<D>>,
    _owns: PhantomData<Box<D>>,
}

/// The block: the fat pointer, then the value.
#[repr(C)]
struct Block<T, D: ?Sized> {
    fat: NonNull<D>,
    value: T,
}

impl<D: ?Sized> HDyn<D> {
    /// Moves `value` into a new block of `heap`; `unsize` turns the value's
    /// pointer into a `D` (`|p| p`, coerced at the caller). On a refusal
    /// the value comes back with the error, for the caller to drop behind
    /// the boundary.
    pub(crate) fn new_in<T>(
        heap: &InterpHeap,
        value: T,
        unsize: impl FnOnce(NonNull<T>) -> NonNull<D>,
    ) -> std::result::Result<HDyn<D>, (Error, T)> {
        const { assert!(align_of::<Block<T, ()>>() <= 16, "heap blocks are 16-byte aligned") };
        let block = match heap.alloc(size_of::<Block<T, D>>()) {
            Ok(p) => p.cast::<Block<T, D>>(),
            Err(e) => return Err((e, value)),
        };
        // SAFETY: a fresh block of `size_of::<Block<T, D>>()` bytes, 16-byte
        // aligned (>= the block's alignment, checked above); the value is
        // written first, then the pointer to it, before anything reads them.
        unsafe {
            let v = std::ptr::addr_of_mut!((*block.as_ptr()).value);
            v.write(value);
            let fat = unsize(NonNull::new_unchecked(v));
            std::ptr::addr_of_mut!((*block.as_ptr()).fat).write(fat);
        }
        Ok(HDyn { block: block.cast(), _owns: PhantomData })
    }

    #[inline(always)]
    fn fat(&self) -> NonNull<D> {
        // SAFETY: the block starts with the fat pointer (`new_in`), written
        // once and never changed while the `HDyn` lives.
        unsafe { self.block.as_ptr().read() }
    }

    /// The value.
    #[inline(always)]
    pub(crate) fn get(&self) -> &D {
        // SAFETY: the fat pointer points to the initialized value in the
        // live block this `HDyn` owns; shared access only.
        unsafe { self.fat().as_ref() }
    }

    /// Drops the value in place (its `Drop` may panic: call this behind the
    /// catch-unwind boundary) and frees the block, also when it panics.
    ///
    /// # Safety
    /// `heap` is the heap that allocated this block, and its GIL is held.
    pub(crate) unsafe fn drop_in(self, heap: &InterpHeap) {
        struct FreeOnExit<'h> {
            heap: &'h InterpHeap,
            block: NonNull<u8>,
            small: bool,
        }
        impl Drop for FreeOnExit<'_> {
            fn drop(&mut self) {
                // SAFETY: the block is `heap`'s (caller) and its value was
                // dropped (or its drop unwound: it is not touched again).
                unsafe { self.heap.free_known(self.block, self.small) };
            }
        }
        let fat = self.fat();
        // The block's size: the fat pointer, then the value at its alignment.
        // SAFETY: the value is initialized (`new_in`).
        let (size, align) = unsafe { (size_of_val(fat.as_ref()), align_of_val(fat.as_ref())) };
        let total = block_size::<D>(size, align);
        let _free = FreeOnExit { heap, block: self.block.cast(), small: total <= SMALL_REQUEST_THRESHOLD };
        // SAFETY: the value is initialized, owned by this `HDyn` (consumed),
        // and dropped exactly once; the block is freed after, by `_free`.
        unsafe { std::ptr::drop_in_place(fat.as_ptr()) };
    }
}

/// The size of the `Block` of a value of `size` and `align` (what `new_in`
/// allocated: `size_of::<Block<T, D>>()`), as `repr(C)` lays it out: the
/// value after the fat pointer at its alignment, the whole rounded to the
/// larger alignment. It picks the free path (small or large), so it must
/// agree with `size_of` exactly (`tests::block_size_matches_the_layout`).
fn block_size<D: ?Sized>(size: usize, align: usize) -> usize {
    let offset = size_of::<NonNull<D>>().next_multiple_of(align);
    (offset + size).next_multiple_of(align.max(align_of::<NonNull<D>>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Debug;

    fn check<T>() {
        assert_eq!(
            block_size::<dyn Debug>(size_of::<T>(), align_of::<T>()),
            size_of::<Block<T, dyn Debug>>(),
            "{}",
            std::any::type_name::<T>()
        );
    }

    #[repr(align(16))]
    struct A16(#[allow(dead_code)] [u8; 17]);

    #[test]
    fn block_size_matches_the_layout() {
        check::<()>();
        check::<u8>();
        check::<[u8; 3]>();
        check::<u64>();
        check::<(u8, u64)>();
        check::<[u8; 495]>();
        check::<[u8; 496]>();
        check::<[u8; 497]>();
        check::<[u64; 62]>();
        check::<A16>();
        check::<[A16; 30]>();
    }
}
