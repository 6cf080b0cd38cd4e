//! [`Items`]: the item vector of a tuple or list, 16 bytes with one item
//! inline (so a small container is one 32-byte block and the collector's
//! traversal stays in its cache line), more in a buffer of the system heap.
//!
//! It carries its sequence's kind (tuple or list): the kind's byte has
//! invalid values, where the compiler keeps the object body's variant, so a
//! body is 16 bytes (checked in `object.rs`).

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use super::object::Raw;

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
/// points to a buffer of that many pointers (a boxed slice, freed on drop).
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

    /// Collects `iter` into new items of `kind`.
    pub(crate) fn collect_from(kind: SeqKind, iter: impl IntoIterator<Item = Raw>) -> Items {
        let mut items = Items::new(kind);
        for r in iter {
            items.push(r);
        }
        items
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

    /// Appends; panics only if the length would pass 2^31 (16 GiB of
    /// pointers) or the system allocator fails.
    pub(crate) fn push(&mut self, r: Raw) {
        if self.len as usize == self.cap() {
            self.grow();
        }
        let len = self.len as usize;
        // SAFETY: `len < cap` after `grow`: the slot is inside the inline
        // word or the buffer.
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

    #[cold]
    fn grow(&mut self) {
        // 1 (inline), then 4, 8, 16, ...
        let log = if self.is_inline() { 2 } else { self.cap_log + 1 };
        assert!(log <= MAX_CAP_LOG, "a list of more than 2^31 items");
        let mut buf: Box<[MaybeUninit<Raw>]> = Box::new_uninit_slice(1 << log);
        for (dst, &src) in buf.iter_mut().zip(self.as_slice()) {
            dst.write(src);
        }
        self.free_buffer();
        self.data = Box::into_raw(buf).cast::<()>();
        self.cap_log = log;
    }

    fn free_buffer(&mut self) {
        if !self.is_inline() {
            let slice = std::ptr::slice_from_raw_parts_mut(self.data.cast::<MaybeUninit<Raw>>(), self.cap());
            // SAFETY: `data`/`cap_log` came from `Box::into_raw` of a boxed
            // slice of exactly `cap()` elements (`grow`); its items need no drop.
            drop(unsafe { Box::from_raw(slice) });
            self.data = std::ptr::null_mut();
            self.cap_log = 0;
        }
    }
}

impl Drop for Items {
    fn drop(&mut self) {
        self.free_buffer();
    }
}

/// By-value iteration (the items are copied out; the buffer is freed at the end).
pub(crate) struct IntoIter {
    items: Items,
    pos: u32,
}

impl Iterator for IntoIter {
    type Item = Raw;
    fn next(&mut self) -> Option<Raw> {
        let r = self.items.as_slice().get(self.pos as usize).copied();
        self.pos += u32::from(r.is_some());
        r
    }
}

impl IntoIterator for Items {
    type Item = Raw;
    type IntoIter = IntoIter;
    fn into_iter(self) -> IntoIter {
        IntoIter { items: self, pos: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr::NonNull;

    use super::super::object::ObjHead;

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
        assert_eq!(std::mem::size_of::<Items>(), 16);
        let mut v = Items::new(SeqKind::List);
        assert!(v.is_empty());
        v.push(raw(0));
        assert!(v.is_inline());
        for i in 1..100 {
            v.push(raw(i));
        }
        assert_eq!(v.len(), 100);
        assert_eq!(
            v.as_slice().iter().map(|r| r.as_ptr() as usize).collect::<Vec<_>>(),
            (0..100).map(|i| i * 16 + 16).collect::<Vec<_>>()
        );
        *v.get_mut(5).unwrap() = raw(7);
        assert_eq!(*v.get(5).unwrap(), raw(7));
        assert_eq!(v.pop(), Some(raw(99)));
        let all: Vec<Raw> = v.into_iter().collect();
        assert_eq!(all.len(), 99);
        let w = Items::collect_from(SeqKind::Tuple, (0..1).map(raw));
        assert_eq!((w.kind(), w.is_inline()), (SeqKind::Tuple, true));
        assert_eq!(w.into_iter().count(), 1);
    }

    /// An `Items` moved by value (`take`, `mem::replace`, `ptr::read`,
    /// `into_iter`, into and out of a `Box`) keeps each item's provenance,
    /// inline (one item) or in a buffer: every item still reaches its cell.
    /// Regression test for the collector teardown's "dangling reference (no
    /// provenance)" that Miri reported when `data` was a `usize`.
    #[test]
    fn moved_items_keep_their_provenance() {
        let mut c = cells(9);
        // Inline: one item inside the `data` word.
        let mut one = Items::new(SeqKind::List);
        one.push(item_of(&mut c, 0));
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
        std::mem::forget(one);
        assert_eq!(copy.iter().map(|&r| deref(r)).collect::<Vec<_>>(), [1]);
        assert_eq!(copy.into_iter().map(deref).collect::<Vec<_>>(), [1]);

        // A buffer: grown past the inline slot, moved, then shrunk by pops.
        for i in 1..c.len() {
            moved.push(item_of(&mut c, i));
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
        std::mem::forget(buf);
        let moved_twice = vec![copy];
        let all: Vec<u64> = moved_twice.into_iter().flat_map(|i| i.into_iter().map(deref)).collect();
        assert_eq!(all, [1, 7, 10, 13, 16, 19, 22]);
    }
}
