//! The dict: CPython's compact dict (`Objects/dictobject.c`), in the
//! interpreter's heap.
//!
//! A [`Dict`] is one pointer: null for an empty dict (no allocation), else
//! a block of the interpreter's heap holding, in order,
//!
//! ```text
//! [ header: log2 size, used, entries consumed, usable left ]   16 bytes
//! [ index table: 2^log slots of i8 / i16 / i32 / i64 ]         by size
//! [ entries: (hash, key, value) in insertion order ]           24 bytes each
//! ```
//!
//! The index table is open-addressed with CPython's perturbed probing
//! (`i = 5i + 1 + perturb; perturb >>= 5`); a slot holds `EMPTY`, `DUMMY`
//! (a deleted key: probing continues past it) or the position of an entry.
//! Two thirds of the slots are usable (`USABLE_FRACTION`). A deletion marks
//! the slot `DUMMY` and empties the entry; nothing is moved. When the usable
//! entries run out, an insertion rebuilds the table at a size of at least
//! three times the live entries (CPython's `GROWTH_RATE`), dropping the
//! holes: each rebuild moves `used` entries and leaves room for at least as
//! many insertions, so inserts and deletes are amortized O(1).
//!
//! Keys are stored once, as object references. A lookup compares the cached
//! hash, then identity, then Python equality ([`keys_equal`]: `1 == 1.0 ==
//! True`, str and bytes by content, tuples elementwise, iteratively). Hashes
//! are consistent with it ([`key_hash`]); a str's hash is cached in the str
//! object (the first word of its inline data), every key's in its entry.
//!
//! The block is freed explicitly ([`Dict::free_in`]) at the body's drop
//! sites, like list buffers (`items.rs`); `Dict` has no `Drop`.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::marker::PhantomData;
use std::mem::size_of;
use std::ptr::NonNull;
use std::sync::OnceLock;

use super::object::{body, bytes_of, kind_of, str_data_of, str_hash_slot, Body, ObjHead, Raw};
use crate::error::{Error, Result};
use crate::mem::{InterpHeap, SMALL_REQUEST_THRESHOLD};

/// How deeply tuples may nest inside a dict key (CPython's default recursion
/// limit): deeper keys are a `RecursionError`, never a stack overflow in
/// hashing or comparing the key.
pub(crate) const MAX_KEY_DEPTH: usize = 1000;

/// Smallest table: 2 index slots, 1 entry (CPython starts at 8 slots and 5
/// entries, `PyDict_LOG_MINSIZE`; a dict or instance with one or two keys is
/// the commonest, and a small table keeps it below CPython's bytes). A table
/// grows by at least doubling, so the extra rebuilds of a growing dict (to 4
/// and 8 slots) are two small copies.
const LOG_MIN: u8 = 1;
/// Largest table: 2^32 index slots (i64 indices), about 2.86e9 entries.
const LOG_MAX: u8 = 32;

const EMPTY: i64 = -1;
const DUMMY: i64 = -2;

/// Entries a table of `2^log` slots can hold (two thirds).
#[inline(always)]
const fn usable_of(log: u8) -> usize {
    ((1usize << log) << 1) / 3
}

/// Bytes of the index table of `2^log` slots, padded so that the entries
/// after it are 8-byte aligned (tables below 8 slots have fewer bytes).
#[inline(always)]
const fn index_bytes(log: u8) -> usize {
    ((1usize << log) * index_width(log) + 7) & !7
}

/// Bytes per index slot for a table of `2^log` slots.
#[inline(always)]
const fn index_width(log: u8) -> usize {
    if log <= 7 {
        1
    } else if log <= 15 {
        2
    } else if log <= 31 {
        4
    } else {
        8
    }
}

/// The header at the start of a table block.
#[repr(C)]
struct Header {
    log: u8,
    _pad: [u8; 3],
    /// Live entries.
    used: u32,
    /// Entries consumed (live and deleted): the next entry's position.
    nentries: u32,
    /// Entries that can still be appended before a rebuild.
    usable: u32,
}

/// One entry; `key` is null once deleted.
#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    key: *mut ObjHead,
    value: *mut ObjHead,
}

const HEADER: usize = size_of::<Header>();
const _: () = assert!(HEADER == 16 && size_of::<Entry>() == 24);

/// The block size of a table of `2^log` slots (`None` past `isize::MAX`).
fn block_bytes(log: u8) -> Option<usize> {
    let idx = index_bytes(log);
    let ent = usable_of(log).checked_mul(size_of::<Entry>())?;
    HEADER.checked_add(idx)?.checked_add(ent).filter(|&b| b <= isize::MAX as usize)
}

std::thread_local! {
    /// Entries moved by table rebuilds on this thread (a cost counter: the
    /// tests check that deletes and reinsertions stay amortized O(1)).
    static MOVED: Cell<u64> = const { Cell::new(0) };
}

/// Entries moved by dict table rebuilds on the calling thread so far.
pub(crate) fn entries_moved() -> u64 {
    MOVED.with(Cell::get)
}

/// An insertion-ordered dict (see the module docs): one pointer to its
/// table block in the interpreter's heap, or null while it never held a key.
/// The keys and values are owned references, released by the body that
/// holds the `Dict` (`take_all`, the drop sites).
pub(crate) struct Dict {
    t: *mut Header,
    _raw: PhantomData<Raw>,
}

impl Default for Dict {
    fn default() -> Self {
        Dict::new()
    }
}

/// Where a lookup ended.
enum Probe {
    /// The key is at index slot `slot`, entry `ix`.
    Found { slot: usize, ix: usize },
    /// Not there; `slot` is where it would go (the first dummy or empty slot).
    Missing { slot: usize },
}

impl Dict {
    /// Empty, no allocation.
    pub(crate) const fn new() -> Self {
        Dict { t: std::ptr::null_mut(), _raw: PhantomData }
    }

    #[inline(always)]
    fn hdr(&self) -> Option<&Header> {
        // SAFETY: a non-null `t` points to the live header of this dict's
        // table (allocated by `rebuild`, freed only by `free_in`, which nulls
        // it); the header is only written through `&mut self`.
        unsafe { self.t.as_ref() }
    }

    /// The live entries.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.hdr().map_or(0, |h| h.used as usize)
    }

    /// Entries consumed, live and deleted (the end of iteration positions).
    pub(crate) fn nentries(&self) -> usize {
        self.hdr().map_or(0, |h| h.nentries as usize)
    }

    #[inline(always)]
    fn log(&self) -> u8 {
        self.hdr().map_or(0, |h| h.log)
    }

    /// Index slot `i` (the table exists, `i < 2^log`).
    #[inline(always)]
    fn index(&self, i: usize) -> i64 {
        let log = self.log();
        // SAFETY: the index table starts right after the header and has
        // `2^log` slots of `index_width(log)` bytes; `i < 2^log` (callers
        // mask it); the block is 16-byte aligned, so every width is aligned.
        unsafe {
            let p = self.t.cast::<u8>().add(HEADER);
            match index_width(log) {
                1 => *p.cast::<i8>().add(i) as i64,
                2 => *p.cast::<i16>().add(i) as i64,
                4 => *p.cast::<i32>().add(i) as i64,
                _ => *p.cast::<i64>().add(i),
            }
        }
    }

    /// Sets index slot `i` (as `index`, exclusive).
    #[inline(always)]
    fn set_index(&mut self, i: usize, v: i64) {
        let log = self.log();
        // SAFETY: as in `index`; `v` fits the width (entries < usable_of(log)
        // fit the signed width chosen for that log, and EMPTY/DUMMY are -1/-2).
        unsafe {
            let p = self.t.cast::<u8>().add(HEADER);
            match index_width(log) {
                1 => *p.cast::<i8>().add(i) = v as i8,
                2 => *p.cast::<i16>().add(i) = v as i16,
                4 => *p.cast::<i32>().add(i) = v as i32,
                _ => *p.cast::<i64>().add(i) = v,
            }
        }
    }

    /// The entries array (the table exists).
    #[inline(always)]
    fn entries_ptr(&self) -> *mut Entry {
        let log = self.log();
        // SAFETY: the entries follow the index table inside the block.
        unsafe { self.t.cast::<u8>().add(HEADER + index_bytes(log)).cast::<Entry>() }
    }

    /// Entry `ix` (`ix < nentries`).
    #[inline(always)]
    fn entry(&self, ix: usize) -> Entry {
        debug_assert!(ix < self.nentries());
        // SAFETY: entries below `nentries` are initialized, inside the block.
        unsafe { self.entries_ptr().add(ix).read() }
    }

    /// The live entry at position `pos` (`None` for a deleted one or past
    /// the end).
    pub(crate) fn entry_at(&self, pos: usize) -> Option<(Raw, Raw)> {
        if pos >= self.nentries() {
            return None;
        }
        let e = self.entry(pos);
        Some((NonNull::new(e.key)?, NonNull::new(e.value).expect("a live entry has a value")))
    }

    /// Probes for `key` (hash `hash`) with `eq` deciding equality of a
    /// candidate whose hash matched and which is not `key` itself.
    #[inline(always)]
    fn probe(&self, hash: u64, is: impl Fn(Raw) -> bool) -> Probe {
        let mask = (1usize << self.log()) - 1;
        let mut perturb = hash;
        let mut i = hash as usize & mask;
        let mut free = None;
        loop {
            let ix = self.index(i);
            if ix == EMPTY {
                return Probe::Missing { slot: free.unwrap_or(i) };
            }
            if ix == DUMMY {
                free.get_or_insert(i);
            } else {
                let e = self.entry(ix as usize);
                if e.hash == hash {
                    if let Some(k) = NonNull::new(e.key) {
                        if is(k) {
                            return Probe::Found { slot: i, ix: ix as usize };
                        }
                    }
                }
            }
            perturb >>= 5;
            i = (i.wrapping_mul(5).wrapping_add(perturb as usize).wrapping_add(1)) & mask;
        }
    }

    #[inline(always)]
    fn find(&self, hash: u64, key: Raw) -> Probe {
        self.probe(hash, |k| k == key || keys_equal(k, key))
    }

    /// The value for `key` (whose hash is `hash`, from [`key_hash`]).
    #[inline]
    pub(crate) fn get(&self, hash: u64, key: Raw) -> Option<Raw> {
        if self.len() == 0 {
            return None;
        }
        match self.find(hash, key) {
            Probe::Found { ix, .. } => NonNull::new(self.entry(ix).value),
            Probe::Missing { .. } => None,
        }
    }

    fn find_str(&self, name: &str) -> Option<(usize, usize)> {
        if self.len() == 0 {
            return None;
        }
        let hash = str_hash(name.as_bytes());
        match self.probe(hash, |k| matches!(body(k), Body::Str(_)) && str_data_of(k) == name.as_bytes()) {
            Probe::Found { slot, ix } => Some((slot, ix)),
            Probe::Missing { .. } => None,
        }
    }

    /// The value for the str key `name`.
    pub(crate) fn get_str(&self, name: &str) -> Option<Raw> {
        self.find_str(name).and_then(|(_, ix)| NonNull::new(self.entry(ix).value))
    }

    /// Inserts `k: v` (both references handed over; `hash` is `k`'s). On
    /// success returns the references to release: for an existing key the
    /// old value and the new key (the first key stays, as in CPython).
    /// Errors: `MemoryError` when a needed rebuild is refused by `heap`
    /// (which must be the heap of this dict's table); the dict is unchanged
    /// and the references are the caller's again.
    pub(crate) fn set(&mut self, heap: &InterpHeap, hash: u64, k: Raw, v: Raw) -> Result<Option<(Raw, Raw)>> {
        let slot = if self.t.is_null() {
            None
        } else {
            match self.find(hash, k) {
                Probe::Found { ix, .. } => {
                    // SAFETY: `ix < nentries`: an initialized entry in the block.
                    let e = unsafe { &mut *self.entries_ptr().add(ix) };
                    let old = std::mem::replace(&mut e.value, v.as_ptr());
                    return Ok(Some((NonNull::new(old).expect("a live entry has a value"), k)));
                }
                Probe::Missing { slot } => Some(slot),
            }
        };
        let slot = match slot {
            Some(s) if self.hdr().is_some_and(|h| h.usable > 0) => s,
            _ => {
                let need = (self.len() * 3).max(1);
                let log = (need.next_power_of_two().trailing_zeros() as u8).max(LOG_MIN);
                self.rebuild(heap, log)?;
                match self.find(hash, k) {
                    Probe::Missing { slot } => slot,
                    Probe::Found { .. } => unreachable!("the key was missing before the rebuild"),
                }
            }
        };
        let n = self.nentries();
        // SAFETY: `usable > 0`, so entry `n` is inside the block.
        unsafe { self.entries_ptr().add(n).write(Entry { hash, key: k.as_ptr(), value: v.as_ptr() }) };
        self.set_index(slot, n as i64);
        // SAFETY: the table exists (rebuilt above if it did not).
        let h = unsafe { &mut *self.t };
        h.nentries += 1;
        h.used += 1;
        h.usable -= 1;
        Ok(None)
    }

    /// Moves the live entries into a new table of `2^log` slots from `heap`
    /// and frees the old one. Nothing changes on an error.
    #[cold]
    fn rebuild(&mut self, heap: &InterpHeap, log: u8) -> Result<()> {
        let bytes = (log <= LOG_MAX).then(|| block_bytes(log)).flatten();
        let Some(bytes) = bytes else {
            return Err(Error::MemoryError {
                id: heap.id(),
                requested: usize::MAX,
                in_use: 0,
                limit: block_bytes(LOG_MAX).unwrap_or(isize::MAX as usize),
            });
        };
        let block = heap.alloc(bytes)?;
        let mut new = Dict { t: block.as_ptr().cast::<Header>(), _raw: PhantomData };
        // SAFETY: a fresh block of `bytes` ≥ HEADER bytes, 16-byte aligned.
        unsafe {
            new.t.write(Header { log, _pad: [0; 3], used: 0, nentries: 0, usable: usable_of(log) as u32 });
            // Every index slot EMPTY (-1 in every width is all ones).
            std::ptr::write_bytes(block.as_ptr().add(HEADER), 0xff, (1usize << log) * index_width(log));
        }
        let mask = (1usize << log) - 1;
        let dst = new.entries_ptr();
        let mut n = 0usize;
        for ix in 0..self.nentries() {
            let e = self.entry(ix);
            if e.key.is_null() {
                continue;
            }
            // SAFETY: `n < used ≤ usable_of(log)`: inside the new block.
            unsafe { dst.add(n).write(e) };
            let mut perturb = e.hash;
            let mut i = e.hash as usize & mask;
            while new.index(i) != EMPTY {
                perturb >>= 5;
                i = (i.wrapping_mul(5).wrapping_add(perturb as usize).wrapping_add(1)) & mask;
            }
            new.set_index(i, n as i64);
            n += 1;
        }
        // SAFETY: the new header is live.
        let h = unsafe { &mut *new.t };
        h.used = n as u32;
        h.nentries = n as u32;
        h.usable -= n as u32;
        MOVED.with(|m| m.set(m.get() + n as u64));
        // SAFETY: the old table (if any) came from `heap` (caller's contract).
        unsafe { self.free_in(heap) };
        *self = new;
        Ok(())
    }

    /// Removes the entry at index slot `slot`, entry `ix`; returns its
    /// references.
    fn remove_at(&mut self, slot: usize, ix: usize) -> (Raw, Raw) {
        self.set_index(slot, DUMMY);
        // SAFETY: `ix < nentries`: an initialized entry in the block; the
        // header is live.
        let e = unsafe { &mut *self.entries_ptr().add(ix) };
        let k = std::mem::replace(&mut e.key, std::ptr::null_mut());
        let v = std::mem::replace(&mut e.value, std::ptr::null_mut());
        // SAFETY: the table exists (an entry was found).
        unsafe { (*self.t).used -= 1 };
        (NonNull::new(k).expect("live key"), NonNull::new(v).expect("live value"))
    }

    /// Removes `key` (hash `hash`); returns the references it held.
    pub(crate) fn remove(&mut self, hash: u64, key: Raw) -> Option<(Raw, Raw)> {
        if self.len() == 0 {
            return None;
        }
        match self.find(hash, key) {
            Probe::Found { slot, ix } => Some(self.remove_at(slot, ix)),
            Probe::Missing { .. } => None,
        }
    }

    /// Removes the str key `name`; returns the references it held.
    pub(crate) fn remove_str(&mut self, name: &str) -> Option<(Raw, Raw)> {
        let (slot, ix) = self.find_str(name)?;
        Some(self.remove_at(slot, ix))
    }

    pub(crate) fn traverse(&self, f: &mut impl FnMut(Raw)) {
        for ix in 0..self.nentries() {
            let e = self.entry(ix);
            if let Some(k) = NonNull::new(e.key) {
                f(k);
                f(NonNull::new(e.value).expect("live value"));
            }
        }
    }

    /// Moves every reference into `out`, leaving the dict empty (its table
    /// stays allocated, reset, until `free_in`).
    pub(crate) fn take_all(&mut self, out: &mut Vec<Raw>) {
        if self.t.is_null() {
            return;
        }
        // Reserved at once when the memory is there; otherwise pushed one
        // by one (a dealloc does not come here: `release_body` releases a
        // dict's references straight from its table).
        let _ = out.try_reserve(self.len() * 2);
        self.traverse(&mut |r| out.push(r));
        let log = self.log();
        // SAFETY: the table exists; the index slots are inside the block.
        unsafe {
            std::ptr::write_bytes(self.t.cast::<u8>().add(HEADER), 0xff, (1usize << log) * index_width(log));
            let h = &mut *self.t;
            h.used = 0;
            h.nentries = 0;
            h.usable = usable_of(log) as u32;
        }
    }

    /// The live entries in insertion order.
    pub(crate) fn items(&self) -> impl Iterator<Item = (Raw, Raw)> + '_ {
        (0..self.nentries()).filter_map(|ix| self.entry_at(ix))
    }

    /// The bytes of this dict's table block (0 without one).
    pub(crate) fn table_bytes(&self) -> usize {
        self.hdr().map_or(0, |h| block_bytes(h.log).unwrap_or(0))
    }

    /// Frees the table (if any), leaving an empty dict; call it once the
    /// references are released or moved out.
    ///
    /// # Safety
    /// `heap` is the heap that allocated the table (the owning object's
    /// interpreter's), whose GIL the caller holds.
    pub(crate) unsafe fn free_in(&mut self, heap: &InterpHeap) {
        if let Some(p) = NonNull::new(self.t.cast::<u8>()) {
            let bytes = self.table_bytes();
            // SAFETY: `p` is a live block of `heap` of `bytes` bytes
            // (caller), small iff `bytes` is a small request; not used after.
            unsafe { heap.free_known(p, bytes <= SMALL_REQUEST_THRESHOLD) };
            self.t = std::ptr::null_mut();
        }
    }
}

// ----- hashing and equality ---------------------------------------------------------

/// CPython's modulus for numeric hashes (`_PyHASH_MODULUS`, 2^61 - 1).
const MODULUS: u64 = (1 << 61) - 1;

/// The hash of an int (CPython's: the value modulo 2^61 - 1, sign kept, -1
/// becomes -2), so `hash(1) == hash(1.0) == hash(True)`.
#[inline(always)]
fn int_hash(v: i64) -> u64 {
    let m = (v.unsigned_abs() % MODULUS) as i64;
    let h = if v < 0 { -m } else { m };
    (if h == -1 { -2 } else { h }) as u64
}

/// A float equal to an int (integral, in i64's range) hashes as that int;
/// any other float by its bits (NaN: equal only to itself, by identity).
#[inline]
fn float_hash(f: f64) -> u64 {
    match float_as_int(f) {
        Some(i) => int_hash(i),
        None => {
            let mut x = f.to_bits().wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x ^= x >> 29;
            x
        }
    }
}

/// 2^63, exactly (a literal: `powi` may be inexact, and is under Miri).
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

#[inline(always)]
fn float_as_int(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&f)).then_some(f as i64)
}

/// The keys of the process's str/bytes hash (SipHash-1-3 with random keys,
/// as CPython's default `PYTHONHASHSEED=random`).
fn hasher() -> &'static std::hash::RandomState {
    static KEYS: OnceLock<std::hash::RandomState> = OnceLock::new();
    KEYS.get_or_init(std::hash::RandomState::new)
}

/// The hash of str or bytes content; never 0 (0 marks "not computed yet" in
/// a str object's cache).
#[inline]
pub(crate) fn str_hash(b: &[u8]) -> u64 {
    let mut h = hasher().build_hasher();
    h.write(b);
    h.finish().max(1)
}

/// A str object's hash, computed once and cached in the object.
#[inline(always)]
fn str_obj_hash(r: Raw) -> u64 {
    let slot = str_hash_slot(r);
    // SAFETY: a str object's first inline word is its hash cache, written
    // only here (under the GIL), never referenced.
    let cached = unsafe { slot.read() };
    if cached != 0 {
        return cached;
    }
    let h = str_hash(str_data_of(r));
    // SAFETY: as above.
    unsafe { slot.write(h) };
    h
}

const NONE_HASH: u64 = 0xFCA8_6420_1357_9BDF;

/// Mixes item hashes into a tuple's hash (its own scheme: multiply-rotate
/// with the length folded in at the end).
#[inline(always)]
fn tuple_mix(acc: u64, h: u64) -> u64 {
    (acc ^ h).wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(31)
}

/// The hash of a key (consistent with [`keys_equal`]). Errors: TypeError
/// "unhashable type: 'list'" (and so on) for an unhashable key or tuple
/// item; RecursionError for tuples nested deeper than [`MAX_KEY_DEPTH`].
#[inline]
pub(crate) fn key_hash(r: Raw) -> Result<u64> {
    match body(r) {
        Body::Seq(items) if !items.is_list() => tuple_hash(r),
        _ => atom_hash(r),
    }
}

#[inline(always)]
fn atom_hash(r: Raw) -> Result<u64> {
    Ok(match body(r) {
        Body::Int(i) => int_hash(*i),
        Body::Bool(b) => int_hash(*b as i64),
        Body::Str(_) => str_obj_hash(r),
        Body::Float(f) => float_hash(*f),
        Body::None => NONE_HASH,
        Body::Bytes(_) => str_hash(bytes_of(r)),
        // Instances, classes, functions, …: by identity (CPython's
        // `object.__hash__`: the address rotated by 4).
        _ if super::types::hashes_by_identity(r) => (r.as_ptr() as usize as u64).rotate_right(4),
        _ => return Err(Error::TypeError { message: format!("unhashable type: '{}'", kind_of(r).name()) }),
    })
}

/// The items of a tuple (the only nesting a key can have).
#[inline(always)]
fn key_tuple<'a>(r: Raw) -> Option<&'a [Raw]> {
    match body(r) {
        Body::Seq(items) if !items.is_list() => Some(items.as_slice()),
        _ => None,
    }
}

/// A tuple's hash, walked with an explicit stack (no recursion on the
/// key's structure): one frame per open tuple, its items and the hash so far.
#[cold]
fn tuple_hash(r: Raw) -> Result<u64> {
    let items = key_tuple(r).expect("a tuple");
    let mut stack: Vec<(std::slice::Iter<'_, Raw>, u64, usize)> =
        vec![(items.iter(), 0x27D4_EB2F_1656_67C5, items.len())];
    loop {
        let (iter, acc, _) = stack.last_mut().expect("the outermost tuple is on the stack");
        match iter.next() {
            Some(&c) => match key_tuple(c) {
                Some(inner) => {
                    if stack.len() >= MAX_KEY_DEPTH {
                        return Err(Error::RecursionError { limit: MAX_KEY_DEPTH, context: "hashing a dict key" });
                    }
                    stack.push((inner.iter(), 0x27D4_EB2F_1656_67C5, inner.len()));
                }
                None => *acc = tuple_mix(*acc, atom_hash(c)?),
            },
            None => {
                let (_, acc, len) = stack.pop().expect("checked above");
                let h = tuple_mix(acc, len as u64 ^ 0x3527_5A8E_4F1C_9D03);
                match stack.last_mut() {
                    Some((_, parent, _)) => *parent = tuple_mix(*parent, h),
                    None => return Ok(h),
                }
            }
        }
    }
}

/// Python equality of two hashable keys (`a is b` already checked false by
/// the caller for the outermost pair): numbers by value across int, bool
/// and float; str and bytes by content; None equals None; tuples
/// elementwise (iteratively); anything else by identity.
pub(crate) fn keys_equal(a: Raw, b: Raw) -> bool {
    match (key_tuple(a), key_tuple(b)) {
        (Some(x), Some(y)) => tuples_equal(x, y),
        (None, None) => atoms_equal(a, b),
        _ => false,
    }
}

#[inline]
fn atoms_equal(a: Raw, b: Raw) -> bool {
    if a == b {
        return true;
    }
    match (body(a), body(b)) {
        (Body::Int(x), Body::Int(y)) => x == y,
        (Body::Str(n), Body::Str(m)) => n == m && str_data_of(a) == str_data_of(b),
        (Body::Int(x), Body::Bool(y)) | (Body::Bool(y), Body::Int(x)) => *x == *y as i64,
        (Body::Bool(x), Body::Bool(y)) => x == y,
        (Body::Float(x), Body::Float(y)) => x == y,
        (Body::Float(f), Body::Int(i)) | (Body::Int(i), Body::Float(f)) => float_as_int(*f) == Some(*i),
        (Body::Float(f), Body::Bool(b)) | (Body::Bool(b), Body::Float(f)) => float_as_int(*f) == Some(*b as i64),
        (Body::None, Body::None) => true,
        (Body::Bytes(_), Body::Bytes(_)) => bytes_of(a) == bytes_of(b),
        _ => false,
    }
}

/// Elementwise tuple equality with an explicit stack of open pairs.
#[cold]
fn tuples_equal(x: &[Raw], y: &[Raw]) -> bool {
    if x.len() != y.len() {
        return false;
    }
    let mut stack = vec![(x, y, 0usize)];
    while let Some((a, b, i)) = stack.last_mut() {
        if *i == a.len() {
            stack.pop();
            continue;
        }
        let (p, q) = (a[*i], b[*i]);
        *i += 1;
        if p == q {
            continue;
        }
        match (key_tuple(p), key_tuple(q)) {
            (Some(u), Some(v)) => {
                // Both keys were hashed (depth-checked) before they met here,
                // so the stack stays below MAX_KEY_DEPTH; checked anyway.
                if u.len() != v.len() || stack.len() >= MAX_KEY_DEPTH {
                    return false;
                }
                stack.push((u, v, 0));
            }
            (None, None) => {
                if !atoms_equal(p, q) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;

    /// Int objects that are never freed by the dict (it holds pointers only):
    /// headers in a boxed slice, so their addresses are stable.
    fn ints(n: i64) -> Box<[ObjHead]> {
        (0..n).map(|i| ObjHead { refcnt: 1.into(), flags: 0.into(), body: UnsafeCell::new(Body::Int(i)) }).collect()
    }

    fn raw(objs: &[ObjHead], i: usize) -> Raw {
        NonNull::from(&objs[i])
    }

    /// The table's unsafe paths without a runtime (small enough for Miri,
    /// strict provenance): growth through every rebuild up to a 16-bit
    /// index, lookups, replacement, deletes (dummy slots) and their reuse,
    /// `take_all`, and the frees.
    #[test]
    fn table_grows_deletes_and_frees_in_its_heap() {
        let heap = InterpHeap::new(9_201, None);
        let objs = ints(300);
        let mut d = Dict::new();
        assert_eq!((d.len(), d.table_bytes()), (0, 0));
        for i in 0..300 {
            let r = raw(&objs, i);
            assert!(d.set(&heap, key_hash(r).unwrap(), r, r).unwrap().is_none());
        }
        assert_eq!(d.len(), 300);
        assert_eq!(index_width(d.log()), 2);
        for i in 0..300 {
            let r = raw(&objs, i);
            assert_eq!(d.get(key_hash(r).unwrap(), r), Some(r));
        }
        // Replacing gives back the old value and the new key.
        let (a, b) = (raw(&objs, 7), raw(&objs, 8));
        assert_eq!(d.set(&heap, key_hash(a).unwrap(), a, b).unwrap(), Some((a, a)));
        assert_eq!(d.get(key_hash(a).unwrap(), a), Some(b));
        for i in (0..300).step_by(3) {
            let r = raw(&objs, i);
            assert_eq!(d.remove(key_hash(r).unwrap(), r).map(|p| p.0), Some(r));
            assert_eq!(d.get(key_hash(r).unwrap(), r), None);
        }
        assert_eq!(d.len(), 200);
        let order: Vec<usize> =
            d.items().map(|(k, _)| (k.as_ptr().addr() - objs.as_ptr().addr()) / size_of::<ObjHead>()).collect();
        assert_eq!(order, (0..300).filter(|i| i % 3 != 0).collect::<Vec<_>>());
        let mut out = Vec::new();
        d.take_all(&mut out);
        assert_eq!((out.len(), d.len()), (400, 0));
        // The emptied table is reused, then freed.
        let r = raw(&objs, 0);
        d.set(&heap, key_hash(r).unwrap(), r, r).unwrap();
        assert_eq!(d.items().count(), 1);
        // SAFETY: the table came from `heap`.
        unsafe { d.free_in(&heap) };
        assert_eq!(d.table_bytes(), 0);
        assert_eq!(heap.teardown().0.live_blocks, 0);
    }

    /// Table arithmetic: widths by size, two thirds usable, the smallest
    /// table 144 bytes (a 1-key dict: 32-byte object + 144 = 176 bytes,
    /// CPython 3.13: 184), an i64 index only at the largest size.
    #[test]
    fn table_sizes() {
        assert_eq!(usable_of(3), 5);
        assert_eq!(block_bytes(3), Some(16 + 8 + 5 * 24));
        assert_eq!(index_width(7), 1);
        assert_eq!(index_width(8), 2);
        assert_eq!(index_width(16), 4);
        assert_eq!(index_width(32), 8);
        // Each width holds every entry position of its sizes.
        assert!(usable_of(7) <= i8::MAX as usize);
        assert!(usable_of(15) <= i16::MAX as usize);
        assert!(usable_of(31) <= i32::MAX as usize);
        assert!(usable_of(32) > i32::MAX as usize && usable_of(32) <= u32::MAX as usize);
    }

    #[test]
    fn numeric_hashes_agree_with_equality() {
        for v in [0i64, 1, -1, -2, 7, i64::MAX, i64::MIN, 1 << 61, -(1 << 61)] {
            if let Some(f) = Some(v as f64).filter(|f| float_as_int(*f) == Some(v)) {
                assert_eq!(float_hash(f), int_hash(v), "{v}");
            }
        }
        assert_eq!(int_hash(-1), int_hash(-2));
        assert_eq!(float_hash(-0.0), float_hash(0.0));
        assert_ne!(float_hash(0.5), float_hash(1.5));
        assert_eq!(float_as_int(TWO_POW_63), None);
        assert_eq!(float_as_int(-TWO_POW_63), Some(i64::MIN));
    }
}
