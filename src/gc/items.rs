//! [`Items`]: the item vector of a tuple or list, 16 bytes with one item
//! inline (so a small container is one 32-byte block and the collector's
//! traversal stays in its cache line), more in a buffer of the
//! interpreter's heap (counted in `MemoryStats`, under the memory limit; a
//! refused growth is a `MemoryError`, never an abort).
//!
//! The buffer is freed explicitly with the heap that allocated it
//! ([`Items::free_in`], at the body's drop sites, which hold the GIL).
//! `Items` has no `Drop`: a buffer nobody freed stays allocated in its heap
//! (a leak, reported and unmapped at the interpreter's teardown), never a
//! free through the wrong allocator.
//!
//! It carries its sequence's kind (tuple or list): the kind's byte has
//! invalid values, where the compiler keeps the object body's variant, so a
//! body is 16 bytes (checked in `object.rs`).

use std::marker::PhantomData;
use std::mem::size_of;
use std::ptr::NonNull;

use super::object::Raw;
use crate::error::{Error, Result};
use crate::mem::{InterpHeap, SMALL_REQUEST_THRESHOLD};

/// Which sequence an [`Items`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum SeqKind {
    Tuple,
    List,
}

/// Largest `cap_log`: a buffer of 2^31 pointers.
const MAX_CAP_LOG: u8 = 31;

/// A vector of object pointers: capacity `1 << cap_log`; capacity 1
/// (`cap_log == 0`) keeps the one item in `data` itself; otherwise `data`
/// points to a heap block of that many pointers (freed by `free_in`).
/// The items are not owned references by themselves: the body that holds an
/// `Items` releases them.
///
/// `data` has a pointer type, never an integer one, in both uses: a typed
/// copy of an `Items` (a move, `mem::replace`, `ptr::read`) copies it as a
/// pointer and so keeps its provenance, whether it is the inline item's or
/// the buffer's. (As a `usize` it lost it: the moved inline item no longer
/// pointed to its object, which Miri reported in the collector's teardown.)
pub(crate) struct Items {
    data: *mut (),
    len: u32,
    cap_log: u8,
    kind: SeqKind,
    _raw: PhantomData<Raw>,
}

impl Items {
    /// Empty, no allocation.
    pub(crate) const fn new(kind: SeqKind) -> Self {
        Items { data: std::ptr::null_mut(), len: 0, cap_log: 0, kind, _raw: PhantomData }
    }

    /// Tuple or list.
    #[inline(always)]
    pub(crate) fn kind(&self) -> SeqKind {
        self.kind
    }

    /// Whether these are a list's items.
    #[inline(always)]
    pub(crate) fn is_list(&self) -> bool {
        self.kind == SeqKind::List
    }

    /// Takes the items out, leaving this empty (same kind, no buffer).
    #[inline(always)]
    pub(crate) fn take(&mut self) -> Items {
        std::mem::replace(self, Items::new(self.kind))
    }

    /// New items of `kind` with room for `n` (no allocation for `n <= 1`).
    /// Errors: `MemoryError` when the buffer is refused (nothing allocated).
    pub(crate) fn with_capacity(kind: SeqKind, heap: &InterpHeap, n: usize) -> Result<Items> {
        let mut items = Items::new(kind);
        if n > 1 {
            let log = n.checked_next_power_of_two().map_or(u8::MAX, |p| p.trailing_zeros() as u8).max(2);
            items.grow_to(heap, log)?;
        }
        Ok(items)
    }

    /// Empties the items, keeping the buffer (for a later `free_in`).
    #[inline(always)]
    pub(crate) fn clear_len(&mut self) {
        self.len = 0;
    }

    #[inline(always)]
    fn cap(&self) -> usize {
        1 << self.cap_log
    }

    #[inline(always)]
    fn is_inline(&self) -> bool {
        self.cap_log == 0
    }

    #[inline(always)]
    fn ptr(&self) -> *const Raw {
        if self.is_inline() {
            (&raw const self.data).cast::<Raw>()
        } else {
            self.data.cast_const().cast::<Raw>()
        }
    }

    #[inline(always)]
    fn ptr_mut(&mut self) -> *mut Raw {
        if self.is_inline() {
            (&raw mut self.data).cast::<Raw>()
        } else {
            self.data.cast::<Raw>()
        }
    }

    /// The items.
    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[Raw] {
        // SAFETY: the first `len` slots (inline word or buffer) are
        // initialized `Raw`s (a non-null pointer, the size of the word).
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len as usize) }
    }

    /// The items, mutable.
    #[inline(always)]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [Raw] {
        let len = self.len as usize;
        // SAFETY: as in `as_slice`, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr_mut(), len) }
    }

    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Raw> {
        self.as_slice().iter()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Raw> {
        self.as_slice().get(i)
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut Raw> {
        self.as_mut_slice().get_mut(i)
    }

    /// Appends, growing the buffer in `heap` (which must be the heap of any
    /// buffer these items already have). Errors: `MemoryError` when the
    /// heap refuses the growth (limit, limiter hook, the system) or the
    /// length would pass 2^31; the items are unchanged then.
    pub(crate) fn push(&mut self, heap: &InterpHeap, r: Raw) -> Result<()> {
        if self.len as usize == self.cap() {
            let log = if self.is_inline() { 2 } else { self.cap_log + 1 };
            self.grow_to(heap, log)?;
        }
        self.push_within(r);
        Ok(())
    }

    /// Appends into spare capacity (the caller reserved it).
    #[inline(always)]
    pub(crate) fn push_within(&mut self, r: Raw) {
        assert!((self.len as usize) < self.cap(), "push_within without room");
        let len = self.len as usize;
        // SAFETY: `len < cap` (checked): the slot is inside the inline word
        // or the buffer.
        unsafe { self.ptr_mut().add(len).write(r) };
        self.len += 1;
    }

    pub(crate) fn pop(&mut self) -> Option<Raw> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: the slot at the old last index is initialized.
        Some(unsafe { self.ptr().add(self.len as usize).read() })
    }

    /// Moves the items into a new buffer of `1 << log` pointers from `heap`
    /// and frees the old one. Nothing changes on an error.
    #[cold]
    fn grow_to(&mut self, heap: &InterpHeap, log: u8) -> Result<()> {
        if log > MAX_CAP_LOG {
            return Err(Error::MemoryError {
                id: heap.id(),
                requested: usize::MAX,
                in_use: 0,
                limit: (1usize << MAX_CAP_LOG) * size_of::<Raw>(),
            });
        }
        let bytes = (1usize << log) * size_of::<Raw>();
        let buf = heap.alloc(bytes)?.cast::<Raw>();
        // SAFETY: `buf` is a fresh block of `bytes` (≥ `len` pointers),
        // 16-byte aligned; the source slots are initialized and disjoint.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr(), buf.as_ptr(), self.len as usize) };
        let len = self.len;
        // SAFETY: an existing buffer came from `heap` (the caller's
        // contract, the same heap for every call on these items).
        unsafe { self.free_in(heap) };
        self.len = len;
        self.data = buf.as_ptr().cast::<()>();
        self.cap_log = log;
        Ok(())
    }

    /// Frees the buffer (if any), leaving no items (capacity 1); call it
    /// once the items are released or copied out.
    ///
    /// # Safety
    /// `heap` is the heap that allocated the buffer (the owning object's
    /// interpreter's), whose GIL the caller holds.
    pub(crate) unsafe fn free_in(&mut self, heap: &InterpHeap) {
        if !self.is_inline() {
            let bytes = self.cap() * size_of::<Raw>();
            let p = NonNull::new(self.data.cast::<u8>()).expect("a buffer is non-null");
            // SAFETY: `p` is a live block of `heap` of `bytes` bytes (caller),
            // small iff `bytes` is a small request; not used after this.
            unsafe { heap.free_known(p, bytes <= SMALL_REQUEST_THRESHOLD) };
            self.data = std::ptr::null_mut();
            self.cap_log = 0;
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr::NonNull;

    use super::super::object::ObjHead;
    use crate::mem::InterpHeap;

    /// A distinct item that is never dereferenced (an address, no provenance).
    fn raw(i: usize) -> Raw {
        NonNull::new(std::ptr::without_provenance_mut::<ObjHead>(i * 16 + 16)).unwrap()
    }

    /// Real memory to point items at: cell `i` holds `3i + 1`, read back
    /// through the item (so Miri checks that the item kept its provenance).
    fn cells(n: usize) -> Vec<u64> {
        (0..n as u64).map(|i| i * 3 + 1).collect()
    }

    /// Item `i` points to cell `i` (derived from the buffer's pointer).
    fn item_of(cells: &mut [u64], i: usize) -> Raw {
        NonNull::new(cells.as_mut_ptr().wrapping_add(i)).unwrap().cast::<ObjHead>()
    }

    /// Reads the cell an item points to.
    fn deref(r: Raw) -> u64 {
        // SAFETY: every item of these tests points to a cell of `cells`,
        // alive and not written meanwhile.
        unsafe { r.cast::<u64>().as_ptr().read() }
    }

    #[test]
    fn inline_then_heap_then_back() {
        let heap = InterpHeap::new(9_101, None);
        assert_eq!(std::mem::size_of::<Items>(), 16);
        let mut v = Items::new(SeqKind::List);
        assert!(v.is_empty());
        v.push(&heap, raw(0)).unwrap();
        assert!(v.is_inline());
        for i in 1..100 {
            v.push(&heap, raw(i)).unwrap();
        }
        assert_eq!(v.len(), 100);
        assert_eq!(
            v.as_slice().iter().map(|r| r.as_ptr() as usize).collect::<Vec<_>>(),
            (0..100).map(|i| i * 16 + 16).collect::<Vec<_>>()
        );
        *v.get_mut(5).unwrap() = raw(7);
        assert_eq!(*v.get(5).unwrap(), raw(7));
        assert_eq!(v.pop(), Some(raw(99)));
        assert_eq!(v.len(), 99);
        // SAFETY: the buffer came from `heap`.
        unsafe { v.free_in(&heap) };
        assert!(v.is_empty());
        let mut w = Items::with_capacity(SeqKind::Tuple, &heap, 1).unwrap();
        w.push_within(raw(0));
        assert_eq!((w.kind(), w.is_inline(), w.len()), (SeqKind::Tuple, true, 1));
        assert_eq!(heap.teardown().0.live_blocks, 0);
    }

    /// An `Items` moved by value (`take`, `mem::replace`, `ptr::read`,
    /// `into_iter`, into and out of a `Box`) keeps each item's provenance,
    /// inline (one item) or in a buffer: every item still reaches its cell.
    /// Regression test for the collector teardown's "dangling reference (no
    /// provenance)" that Miri reported when `data` was a `usize`.
    #[test]
    fn moved_items_keep_their_provenance() {
        let heap = InterpHeap::new(9_102, None);
        let mut c = cells(9);
        // Inline: one item inside the `data` word.
        let mut one = Items::new(SeqKind::List);
        one.push(&heap, item_of(&mut c, 0)).unwrap();
        assert!(one.is_inline());
        let taken = one.take();
        assert!(one.is_empty());
        let boxed = Box::new(taken);
        let mut moved = std::mem::replace(&mut one, *boxed);
        assert!(moved.is_empty());
        assert_eq!(deref(one.as_slice()[0]), 1);
        // SAFETY: `one` is read out once and then forgotten, so the copy is
        // the only owner (inline: there is no buffer to free twice anyway).
        let copy = unsafe { std::ptr::read(&one) };
        let _ = one; // no Drop: the copy alone frees
        assert_eq!(copy.iter().map(|&r| deref(r)).collect::<Vec<_>>(), [1]);

        // A buffer: grown past the inline slot, moved, then shrunk by pops.
        for i in 1..c.len() {
            moved.push(&heap, item_of(&mut c, i)).unwrap();
        }
        assert!(!moved.is_inline());
        let mut boxed = Box::new(moved.take());
        let mut buf = std::mem::replace(&mut *boxed, Items::new(SeqKind::Tuple));
        assert_eq!(boxed.kind(), SeqKind::Tuple);
        assert_eq!(buf.iter().map(|&r| deref(r)).collect::<Vec<_>>(), [4, 7, 10, 13, 16, 19, 22, 25]);
        *buf.get_mut(0).unwrap() = item_of(&mut c, 0);
        assert_eq!(buf.pop().map(deref), Some(25));
        // SAFETY: as above: `buf` is forgotten, `copy` alone frees the buffer.
        let copy = unsafe { std::ptr::read(&buf) };
        let _ = buf; // no Drop: the copy alone frees
        let mut moved_twice = [copy];
        let all: Vec<u64> = moved_twice[0].iter().map(|&r| deref(r)).collect();
        assert_eq!(all, [1, 7, 10, 13, 16, 19, 22]);
        // SAFETY: the buffer came from `heap`.
        unsafe { moved_twice[0].free_in(&heap) };
        assert_eq!(heap.teardown().0.live_blocks, 0);
    }
}
