//! Instances: the class in the body, the attributes inline in the object's
//! own block, named by the class's shared keys (CPython's split dicts,
//! PEP 412, with 3.13's inline values: `Objects/dictobject.c`).
//!
//! ```text
//! [ GcHead ][ ObjHead: refcnt, flags, Body::Instance(class) ][ ext ][ value 0 ] … [ value cap-1 ]
//! ```
//!
//! * The class (`TypeObj::keys`) keeps up to [`SHARED_KEYS_MAX`] attribute
//!   names (interned strs, strong references); value `i` of an instance is
//!   the attribute named by key `i`, `None` when the instance lacks it.
//! * `cap`, the number of inline values, is fixed at creation from the
//!   class's key count (odd, so the block is a whole 16 bytes: an instance
//!   with up to one value is a 48-byte block, three 64 bytes) and kept in
//!   the top byte of the header's flags ([`CAP_SHIFT`]).
//! * `ext` (null until needed) is a heap box with what few instances have: a
//!   per-instance finalizer or legacy finalizer, and the attribute dict once
//!   the instance left the split layout (`FLAG_ATTR_DICT`).
//!
//! An instance leaves the split layout (its attributes move into `ext`'s
//! dict, for good) when a value has no inline slot (key index `>= cap`, or
//! the class has no room for a new key) or would break insertion order (the
//! values are in key order: a new attribute must come after every present
//! one), and when its attributes are read as a dict (`Obj::dict_items`,
//! `Obj::dict_iter`). Deleting keeps it split. A class learns a new key from
//! an instance that has every key it has so far (the class's layout grows as
//! its instances do; an instance used as a bag of unrelated names does not
//! grow the layout of all the others).

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use super::dict::Dict;
use super::hbox::HBox;
use super::object::{
    body, body_mut, decref, has_flag, head, incref, inline_data, key_hash, set_flag, settle_dict_set, str_data_of,
    Body, Raw, FLAG_ATTR_DICT,
};
use super::types::{dict_get_str, type_body, TypeObj};
use crate::error::Result;
use crate::mem::InterpHeap;
use crate::Gil;

/// At most this many attribute names are shared per class (CPython's
/// `SHARED_KEYS_MAX_SIZE`); names beyond them go to a per-instance dict.
pub(crate) const SHARED_KEYS_MAX: usize = 30;

/// The most inline values an instance has (odd: see the module docs).
pub(crate) const MAX_CAP: usize = 31;

/// `cap` is kept in the flags' top byte.
pub(crate) const CAP_SHIFT: u32 = 24;

const _: () = assert!(MAX_CAP < 1 << (32 - CAP_SHIFT) && MAX_CAP > SHARED_KEYS_MAX);

/// What few instances have, boxed beside the object (null until needed).
pub(crate) struct Ext {
    /// The attributes once the instance left the split layout
    /// (`FLAG_ATTR_DICT`); empty before.
    pub(crate) dict: Dict,
    /// `set_finalizer` (a strong reference).
    pub(crate) finalizer: Option<Raw>,
    /// `set_legacy_finalizer` (a strong reference).
    pub(crate) legacy: Option<Raw>,
}

/// The inline values of a new instance of a class with `nkeys` keys.
pub(crate) fn cap_for(nkeys: usize) -> usize {
    (nkeys.max(1) | 1).min(MAX_CAP)
}

/// Bytes of inline data of an instance with `cap` values.
pub(crate) fn inline_bytes(cap: usize) -> usize {
    std::mem::size_of::<Option<NonNull<Ext>>>() + cap * std::mem::size_of::<Option<Raw>>()
}

/// Sets up a block just made by `alloc_obj` with `inline_bytes(cap)` bytes of
/// inline data: no ext, no values.
pub(crate) fn init(r: Raw, cap: usize) {
    debug_assert!(cap <= MAX_CAP);
    // SAFETY: the block was allocated with `inline_bytes(cap)` bytes after the
    // header (caller); they are written here before anything reads them.
    unsafe {
        ext_slot(r).write(None);
        for i in 0..cap {
            values_base(r).add(i).write(None);
        }
    }
    let h = head(r);
    h.flags.set(h.flags.get() | (cap as u32) << CAP_SHIFT);
}

#[inline(always)]
fn cap(r: Raw) -> usize {
    (head(r).flags.get() >> CAP_SHIFT) as usize
}

#[inline(always)]
fn ext_slot(r: Raw) -> *mut Option<NonNull<Ext>> {
    inline_data(r).cast()
}

#[inline(always)]
fn values_base(r: Raw) -> *mut Option<Raw> {
    // SAFETY: the values follow the ext word inside the instance's block.
    unsafe { inline_data(r).add(std::mem::size_of::<Option<NonNull<Ext>>>()).cast() }
}

/// The class of an instance (`r` must be one).
#[inline(always)]
pub(crate) fn class_of(r: Raw) -> Raw {
    match body(r) {
        Body::Instance(c) => *c,
        _ => unreachable!("class_of needs an instance"),
    }
}

/// The inline values (shared; not to be kept across anything that may
/// change the instance).
#[inline(always)]
pub(crate) fn values<'a>(r: Raw) -> &'a [Option<Raw>] {
    // SAFETY: an instance's block holds `cap` initialized values (`init`);
    // they are only written through `values_base` by code holding no slice.
    unsafe { std::slice::from_raw_parts(values_base(r), cap(r)) }
}

/// The instance's ext box, if it has one (shared, as `values`).
#[inline(always)]
pub(crate) fn ext<'a>(r: Raw) -> Option<&'a Ext> {
    // SAFETY: the ext word is initialized (`init`); a non-null one points to
    // a live box owned by the instance, mutated only through `ext_mut`.
    unsafe { (*ext_slot(r)).map(|p| &*p.as_ptr()) }
}

/// # Safety
/// No other reference into the ext box is alive, and none is made while
/// the result is (no user code meanwhile).
unsafe fn ext_mut<'a>(r: Raw) -> Option<&'a mut Ext> {
    // SAFETY: as `ext`, uniquely borrowed (caller).
    unsafe { (*ext_slot(r)).map(|p| &mut *p.as_ptr()) }
}

/// The ext box, made if the instance has none (`MemoryError` if the heap
/// refuses it: nothing changed).
///
/// # Safety
/// As [`ext_mut`].
unsafe fn ensure_ext<'a>(heap: &InterpHeap, r: Raw) -> Result<&'a mut Ext> {
    // SAFETY: forwarded from the caller.
    if let Some(e) = unsafe { ext_mut(r) } {
        return Ok(e);
    }
    let b = HBox::slot_in(heap)?.write(Ext { dict: Dict::new(), finalizer: None, legacy: None });
    let p = b.into_ptr();
    // SAFETY: the ext word is initialized and null (checked above); the box
    // is now the instance's, freed with it (`Parts`).
    unsafe {
        ext_slot(r).write(Some(p));
        Ok(&mut *p.as_ptr())
    }
}

/// The index of the key `name` among a class's shared keys.
#[inline]
fn key_index(t: &TypeObj, name: &str) -> Option<usize> {
    t.keys.iter().position(|&k| str_data_of(k) == name.as_bytes())
}

/// The instance's own attribute `name` (not its class's).
#[inline]
pub(crate) fn get_own(r: Raw, name: &str) -> Option<Raw> {
    if has_flag(r, FLAG_ATTR_DICT) {
        return ext(r).and_then(|e| dict_get_str(&e.dict, name));
    }
    let i = key_index(type_body(class_of(r))?, name)?;
    values(r).get(i).copied().flatten()
}

/// Where `name` goes in the split layout (`None`: it must leave it). A new
/// name the class may learn is added to its keys here.
fn split_index(g: Gil<'_>, r: Raw, name: &str) -> Result<Option<usize>> {
    let class = class_of(r);
    let Some(t) = type_body(class) else { return Ok(None) };
    let vals = values(r);
    if let Some(i) = key_index(t, name) {
        // A present value is replaced in place; a new one must come after
        // every present one (the values are in insertion order).
        let ok = i < vals.len() && (vals[i].is_some() || vals[i + 1..].iter().all(Option::is_none));
        return Ok(ok.then_some(i));
    }
    let n = t.keys.len();
    if n >= SHARED_KEYS_MAX || vals.len() < n || vals[..n].iter().any(Option::is_none) {
        return Ok(None);
    }
    let key = g.intern(name)?;
    // SAFETY: the class's body is not borrowed here (`t` is not used again)
    // and nothing below runs user code (a refused push drops `key`, an
    // interned str, after the borrow).
    let Body::Type(t) = (unsafe { body_mut(class) }) else { return Ok(None) };
    t.keys.push(g.heap(), key.raw())?;
    std::mem::forget(key); // its reference is the class's now
    Ok((n < vals.len()).then_some(n))
}

/// `setattr` on an instance.
pub(crate) fn set_own<'i>(g: Gil<'i>, r: Raw, name: &str, value: &super::object::Obj<'i>) -> Result<()> {
    if !has_flag(r, FLAG_ATTR_DICT) {
        if let Some(i) = split_index(g, r, name)? {
            let v = value.clone().into_raw();
            // SAFETY: `i < cap` (split_index); no slice of the values is alive.
            let old = unsafe { values_base(r).add(i).replace(Some(v)) };
            if let Some(o) = old {
                decref(g, o);
            }
            return Ok(());
        }
        materialize(g, r)?;
    }
    let key = g.intern(name)?;
    let hash = key_hash(key.raw())?;
    let (k, v) = (key.into_raw(), value.clone().into_raw());
    // SAFETY: no reference into the ext box is alive; `set` runs no user
    // code; what it displaces is released after the borrow ends.
    let res = match unsafe { ext_mut(r) } {
        Some(e) => e.dict.set(g.heap(), hash, k, v),
        None => Ok(Some((k, v))), // not reached: a dict layout has an ext
    };
    settle_dict_set(g, res, k, v)
}

/// `delattr` on an instance: whether it had the attribute.
pub(crate) fn del_own(g: Gil<'_>, r: Raw, name: &str) -> bool {
    if has_flag(r, FLAG_ATTR_DICT) {
        // SAFETY: no reference into the ext box is alive; `remove_str` runs
        // no user code; the pair is released after the borrow ends.
        let removed = unsafe { ext_mut(r) }.and_then(|e| e.dict.remove_str(name));
        return match removed {
            Some((k, v)) => {
                decref(g, k);
                decref(g, v);
                true
            }
            None => false,
        };
    }
    let Some(i) = type_body(class_of(r)).and_then(|t| key_index(t, name)) else { return false };
    if i >= cap(r) {
        return false;
    }
    // SAFETY: `i < cap`; no slice of the values is alive.
    match unsafe { values_base(r).add(i).replace(None) } {
        Some(v) => {
            decref(g, v);
            true
        }
        None => false,
    }
}

/// Moves the attributes into the ext box's dict, for good (`FLAG_ATTR_DICT`).
/// A refusal of the heap is a `MemoryError` with nothing changed.
pub(crate) fn materialize(g: Gil<'_>, r: Raw) -> Result<()> {
    if has_flag(r, FLAG_ATTR_DICT) {
        return Ok(());
    }
    let heap = g.heap();
    // SAFETY: no reference into the ext box is alive; the borrow ends here.
    unsafe { ensure_ext(heap, r) }?;
    let keys: &[Raw] = type_body(class_of(r)).map_or(&[], |t| t.keys.as_slice());
    let mut d = Dict::new();
    let rollback = |d: &mut Dict| {
        // Each key and value is still held by the class and the instance:
        // these releases free nothing and run no user code.
        d.traverse(&mut |c| decref(g, c));
        // SAFETY: the table came from this heap; GIL held; released above.
        unsafe { d.free_in(heap) };
    };
    for (i, v) in values(r).iter().enumerate() {
        let (Some(v), Some(&k)) = (*v, keys.get(i)) else { continue };
        let hash = match key_hash(k) {
            Ok(h) => h,
            Err(e) => {
                rollback(&mut d);
                return Err(e);
            }
        };
        incref(k);
        incref(v);
        match d.set(heap, hash, k, v) {
            Ok(None) => {}
            Ok(Some((a, b))) => {
                // Distinct keys: not reached; released all the same.
                decref(g, a);
                decref(g, b);
            }
            Err(e) => {
                decref(g, k);
                decref(g, v);
                rollback(&mut d);
                return Err(e);
            }
        }
    }
    // SAFETY: made above; no other reference into it is alive.
    let e = unsafe { ext_mut(r) }.expect("ext made above");
    debug_assert_eq!(e.dict.len(), 0, "a split instance's ext dict is empty");
    let mut empty = std::mem::replace(&mut e.dict, d);
    // SAFETY: an empty table (or none) of this heap; GIL held.
    unsafe { empty.free_in(heap) };
    set_flag(r, FLAG_ATTR_DICT, true);
    for i in 0..cap(r) {
        // SAFETY: `i < cap`; no slice of the values is alive. Each value is
        // held by the dict too: the release frees nothing.
        if let Some(v) = unsafe { values_base(r).add(i).replace(None) } {
            decref(g, v);
        }
    }
    Ok(())
}

/// The attribute dict of an instance, made from its values first (see
/// [`materialize`]).
///
/// # Safety
/// As [`ext_mut`].
pub(crate) unsafe fn dict_mut<'a>(g: Gil<'_>, r: Raw) -> Result<&'a mut Dict> {
    materialize(g, r)?;
    // SAFETY: forwarded from the caller; materialize made the box.
    Ok(&mut unsafe { ext_mut(r) }.expect("materialize makes the ext").dict)
}

/// Sets the finalizer (`legacy`: the legacy one), returning the old one.
/// `MemoryError` (nothing changed) if the ext box cannot be made.
pub(crate) fn replace_hook(g: Gil<'_>, r: Raw, legacy: bool, new: Option<Raw>) -> Result<Option<Raw>> {
    if new.is_none() && ext(r).is_none() {
        return Ok(None);
    }
    // SAFETY: no reference into the ext box is alive; nothing runs meanwhile.
    let e = unsafe { ensure_ext(g.heap(), r) }?;
    Ok(std::mem::replace(if legacy { &mut e.legacy } else { &mut e.finalizer }, new))
}

/// The instance's own finalizer (`legacy_too`: or its legacy one).
pub(crate) fn own_finalizer(r: Raw, legacy_too: bool) -> Option<Raw> {
    let e = ext(r)?;
    if legacy_too {
        e.finalizer.or(e.legacy)
    } else {
        e.finalizer
    }
}

/// Whether it has a legacy finalizer of its own.
pub(crate) fn has_legacy(r: Raw) -> bool {
    ext(r).is_some_and(|e| e.legacy.is_some())
}

/// Calls `f` on every strong reference held inline or in the ext box (not
/// the class: the body's).
#[inline]
pub(crate) fn traverse_inline(r: Raw, f: &mut impl FnMut(Raw)) {
    values(r).iter().flatten().for_each(|&v| f(v));
    if let Some(e) = ext(r) {
        e.dict.traverse(f);
        e.finalizer.into_iter().chain(e.legacy).for_each(f);
    }
}

/// Moves every strong reference held inline or in the ext box into `out`
/// (the instance's `tp_clear`; the class stays, as CPython's).
pub(crate) fn take_inline(r: Raw, out: &mut Vec<Raw>) {
    for i in 0..cap(r) {
        // SAFETY: `i < cap`; no slice of the values is alive.
        out.extend(unsafe { values_base(r).add(i).replace(None) });
    }
    // SAFETY: no reference into the ext box is alive; nothing runs meanwhile.
    if let Some(e) = unsafe { ext_mut(r) } {
        e.dict.take_all(out);
        out.extend(e.finalizer.take());
        out.extend(e.legacy.take());
    }
}

/// Takes the references out one at a time and hands each to `f` (which may
/// run user code: nothing of the instance is borrowed meanwhile). For a
/// collection's clear of a garbage instance: no worklist of all of them.
pub(crate) fn clear_each(g: Gil<'_>, r: Raw, mut f: impl FnMut(Raw)) {
    for i in 0..cap(r) {
        // SAFETY: `i < cap`; no slice of the values is alive.
        if let Some(v) = unsafe { values_base(r).add(i).replace(None) } {
            f(v);
        }
    }
    // SAFETY: no reference into the ext box is alive; the borrow ends
    // before `f` runs.
    let taken = unsafe { ext_mut(r) }.map(|e| (std::mem::take(&mut e.dict), e.finalizer.take(), e.legacy.take()));
    if let Some((mut d, fin, legacy)) = taken {
        // The table is this local's alone: the user code `f` runs cannot
        // reach it.
        d.traverse(&mut f);
        // SAFETY: the table came from this interpreter's heap; GIL held;
        // its references were handed over above and are not read again.
        unsafe { d.free_in(g.heap()) };
        fin.into_iter().chain(legacy).for_each(f);
    }
}

/// What an instance holds besides its body, moved out of its block before
/// the block is freed (`gc::free_obj`, `gc::dealloc_one`).
pub(crate) struct Parts {
    /// The first `n` are initialized (copied out of the block).
    values: [MaybeUninit<Option<Raw>>; MAX_CAP],
    n: usize,
    ext: Option<NonNull<Ext>>,
}

impl Parts {
    /// Moves them out of a dead instance `r` (its block is freed next).
    #[inline(always)]
    pub(crate) fn read_out(r: Raw) -> Parts {
        // Only the instance's `cap` values are copied (most have one): no
        // array of 31 to fill first.
        let mut values = [const { MaybeUninit::uninit() }; MAX_CAP];
        let vals = self::values(r);
        for (slot, v) in values.iter_mut().zip(vals) {
            slot.write(*v);
        }
        // SAFETY: the ext word is initialized; the box becomes these parts'.
        let ext = unsafe { ext_slot(r).replace(None) };
        Parts { values, n: vals.len().min(MAX_CAP), ext }
    }

    /// The values moved out.
    #[inline(always)]
    fn values(&self) -> impl Iterator<Item = Raw> + '_ {
        // SAFETY: the first `n` were written by `read_out`.
        self.values[..self.n].iter().filter_map(|v| unsafe { v.assume_init() })
    }

    fn take_ext(&mut self) -> Option<HBox<Ext>> {
        // SAFETY: the pointer was the dead instance's box (`read_out`),
        // owned by these parts alone; taken once.
        self.ext.take().map(|p| unsafe { HBox::from_ptr(p) })
    }

    /// Releases every reference they hold (may run user code: the block is
    /// gone and nothing refers to these parts).
    pub(crate) fn release(mut self, g: Gil<'_>) {
        let heap = g.heap();
        if let Some(b) = self.take_ext() {
            // SAFETY: the box came from this interpreter's heap; GIL held.
            let mut e = unsafe { b.into_inner_in(heap) };
            // Released straight from the table (no worklist to allocate).
            e.dict.traverse(&mut |c| decref(g, c));
            // SAFETY: as above; its references were released just now.
            unsafe { e.dict.free_in(heap) };
            e.finalizer.into_iter().chain(e.legacy).for_each(|c| decref(g, c));
        }
        self.values().for_each(|v| decref(g, v));
    }

    /// Pushes every reference they still hold on `out` (a collection's
    /// free: `take_inline` took them out already, unless it could not run).
    pub(crate) fn push_into(mut self, heap: &InterpHeap, out: &mut Vec<Raw>) {
        if let Some(b) = self.take_ext() {
            // SAFETY: the box came from this interpreter's heap; GIL held.
            let mut e = unsafe { b.into_inner_in(heap) };
            e.dict.take_all(out);
            // SAFETY: as above; emptied just now.
            unsafe { e.dict.free_in(heap) };
            out.extend(e.finalizer.into_iter().chain(e.legacy));
        }
        out.extend(self.values());
    }

    /// Frees their boxes without releasing anything (the teardown).
    pub(crate) fn free(mut self, heap: &InterpHeap) {
        if let Some(b) = self.take_ext() {
            // SAFETY: the box came from this interpreter's heap; GIL held.
            let mut e = unsafe { b.into_inner_in(heap) };
            // SAFETY: as above; its references are not released (teardown).
            unsafe { e.dict.free_in(heap) };
        }
    }
}
