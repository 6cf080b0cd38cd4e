//! Objects and the per-interpreter generational cycle collector (issue 4).
//! See `docs/gc.md`.

pub(crate) mod dict;
pub(crate) mod hbox;
pub(crate) mod hdyn;
pub(crate) mod incremental;
pub(crate) mod instance;
pub(crate) mod items;
pub(crate) mod modules;
pub(crate) mod object;
pub(crate) mod pauses;
pub(crate) mod trace;
pub(crate) mod types;

use std::collections::HashMap;

use object::*;

use crate::error::{Error, Result};
use crate::interp::run_callback;
use crate::Gil;

const GEN0: usize = 0;
const GEN2: usize = 2;
const PERMANENT: usize = 3;
/// The old generation's suspects (`incremental.rs`): generation 2's objects
/// an increment has still to examine.
pub(crate) const SUSPECT: usize = 4;

pub(crate) use incremental::{suspect, track_survivor};

/// Debug flag: print statistics of each collection to stderr.
pub const DEBUG_STATS: u32 = 1;
/// Debug flag: report each collectable object found (CPython's text:
/// `gc: collectable <TYPE ADDRESS>`), to the debug output
/// ([`Gil::gc_set_debug_output`], stderr by default).
pub const DEBUG_COLLECTABLE: u32 = 2;
/// Debug flag: report each uncollectable object found
/// (`gc: uncollectable <TYPE ADDRESS>`), and at close the count of what
/// `gc.garbage` still holds.
pub const DEBUG_UNCOLLECTABLE: u32 = 4;
/// Debug flag: keep all unreachable objects in [`Gil::gc_garbage`] instead of freeing them.
pub const DEBUG_SAVEALL: u32 = 32;
/// Debug flags: `DEBUG_COLLECTABLE | DEBUG_UNCOLLECTABLE | DEBUG_SAVEALL`
/// (CPython's `gc.DEBUG_LEAK`).
pub const DEBUG_LEAK: u32 = DEBUG_COLLECTABLE | DEBUG_UNCOLLECTABLE | DEBUG_SAVEALL;

/// Per-generation statistics (`gc.get_stats()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Collections of this generation.
    pub collections: usize,
    /// Objects freed by them.
    pub collected: usize,
    /// Objects found uncollectable (moved to `garbage`).
    pub uncollectable: usize,
}

/// What one collection found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectResult {
    /// Unreachable objects collected.
    pub collected: usize,
    /// Unreachable objects that could not be collected (legacy finalizers).
    pub uncollectable: usize,
}

/// Phase of a collection reported to callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcPhase {
    /// Before the collection.
    Start,
    /// After it.
    Stop,
}

/// A callback registered with [`Gil::gc_add_callback`]: called with the
/// interpreter's token, the phase, the generation and (at `Stop`) what the
/// collection found (CPython's `gc.callbacks` with its `info` dict).
pub type GcCallback = std::rc::Rc<dyn for<'a> Fn(Gil<'a>, GcPhase, usize, CollectResult)>;

/// Where the debug flags' reports go (see [`Gil::gc_set_debug_output`]).
pub type GcDebugOutput = std::rc::Rc<dyn Fn(&str)>;

pub(crate) struct GcState {
    /// Generations 0, 1, 2 (its clean objects), the permanent one
    /// (`gc.freeze`) and generation 2's suspects (`SUSPECT`): tables of the
    /// tracked objects, each object knowing its index (`GcHead::slot`).
    pub(crate) gens: [Vec<Raw>; 5],
    counts: [usize; 3],
    thresholds: [usize; 3],
    enabled: bool,
    collecting: bool,
    scheduled: bool,
    long_lived_total: usize,
    long_lived_pending: usize,
    stats: [GenStats; 3],
    debug: u32,
    /// `gc.garbage`: a list object, made when first needed (one reference).
    garbage: Option<Raw>,
    /// Reports of the debug flags, delivered when the collection ends.
    debug_lines: Vec<String>,
    debug_output: Option<GcDebugOutput>,
    callbacks: Vec<(u64, GcCallback)>,
    next_cb: u64,
    weakrefs: HashMap<usize, Vec<Raw>>,
    /// The interpreter's type objects of built-in kinds, embedder types and
    /// exception classes (one reference each, until close).
    pub(crate) types: HashMap<types::TypeKey, Raw>,
    /// `Gil::instance`'s classes, by name (one reference each, until close):
    /// a map of their own, looked up by `&str` without making a key.
    pub(crate) named_classes: HashMap<Box<str>, Raw>,
    /// The heap objects of the imported modules, in import order (one
    /// reference each; `modules.rs`).
    pub(crate) modules: Vec<modules::ModEntry>,
    /// The `builtins` module object, once made (borrowed: `modules` holds
    /// it), and the built-in `__import__` (one reference).
    pub(crate) builtins_obj: Option<Raw>,
    /// `Gil::intern`'s table: a dict of str -> the same str (one reference).
    pub(crate) interned: Option<Raw>,
    pub(crate) default_import: Option<Raw>,
    /// `None`, `False`, `True` and the small ints (`ATOM_*`), one reference
    /// each; empty until the first is made.
    pub(crate) atoms: Vec<Option<Raw>>,
    /// How long collections stopped the interpreter.
    pauses: pauses::PauseStats,
    /// The incremental old-generation collector's budget and counters.
    pub(crate) inc: incremental::IncState,
    /// The codec registry, its cache and the error handlers (`src/codecs`).
    pub(crate) codecs: crate::codecs::CodecState,
    /// The warnings machinery's per-interpreter state (`crate::warnings`),
    /// made on first use; its objects are freed with every other at close.
    pub(crate) warnings: Option<Box<crate::warnings::WarnState>>,
    errors: Vec<Error>,
    /// Errors not kept because `errors` was full.
    errors_dropped: usize,
    /// Frees queued below `MAX_DEALLOC_DEPTH` (the trashcan).
    trash: Vec<Raw>,
    /// Nesting of `dealloc` calls.
    depth: u32,
    pub(crate) closing: bool,
    /// Scratch for the collector's traversals (kept to reuse its buffer).
    stack: Vec<Raw>,
    /// Scratch for a collection's tentatively unreachable objects (kept, as
    /// `stack`, so that collections do not allocate and fault it anew).
    tentative: Vec<Raw>,
    /// Tentative objects of the two full collections before the last one.
    full_peaks: [usize; 2],
    /// Tracked allocations, counted to pace `prefault_old_table`.
    ticks: u32,
    /// How far the oldest generation's table has been touched past its
    /// length, and the buffer that was measured against.
    old_touched: usize,
    old_buf: usize,
    /// Candidates of the running increment (for its cost per object).
    inc_work: usize,
}

/// The pause an automatic increment aims at (`Gil::gc_set_pause_budget`).
pub const DEFAULT_PAUSE_BUDGET: std::time::Duration = std::time::Duration::from_micros(500);

/// Tracked allocations per page of the oldest generation's table touched
/// ahead (a page holds this many entries).
const PREFAULT_EVERY: u32 = 512;
const ENTRIES_PER_PAGE: usize = 4096 / std::mem::size_of::<Raw>();

/// How many errors of user code the collector keeps until they are taken
/// (`Gil::gc_take_errors`); later ones are counted, not kept, so code that
/// panics in a loop cannot grow the interpreter's memory without bound.
pub const MAX_KEPT_ERRORS: usize = 1000;

impl GcState {
    /// Keeps an error of user code for `gc_take_errors` (up to
    /// `MAX_KEPT_ERRORS`; past that only counted).
    fn report(&mut self, e: Error) {
        if self.errors.len() < MAX_KEPT_ERRORS {
            self.errors.push(e);
        } else {
            self.errors_dropped += 1;
        }
    }

    /// Keeps the oldest generation's table ready for the survivors it will
    /// take: room for the young generations (growing it here, by doubling,
    /// not inside a collection), and its spare capacity touched one page at
    /// a time, paced by allocation. The page faults of a growing table are
    /// then paid by the allocations that make it grow, as the objects' own
    /// pages are, instead of inside the collections that fill it (3.5 ms of
    /// the 20 ms of pauses of the survivors loop in `docs/gc.md`).
    #[cold]
    fn prefault_old_table(&mut self) {
        let young = self.gens[0].len() + self.gens[1].len();
        let t = &mut self.gens[GEN2];
        if t.capacity() - t.len() < young + ENTRIES_PER_PAGE {
            t.reserve(t.len().max(young + ENTRIES_PER_PAGE));
        }
        if t.as_ptr() as usize != self.old_buf || self.old_touched < t.len() {
            self.old_buf = t.as_ptr() as usize;
            self.old_touched = t.len();
        }
        let k = self.old_touched - t.len();
        if let Some(slot) = t.spare_capacity_mut().get_mut(k) {
            slot.write(std::ptr::NonNull::dangling());
            self.old_touched += ENTRIES_PER_PAGE;
        }
    }

    /// Tracks `r` (not tracked, or detached) in table `gen`.
    #[inline(always)]
    pub(crate) fn track(&mut self, r: Raw, gen: usize) {
        let v = &mut self.gens[gen];
        gc_head(r).slot.set((v.len() << SLOT_SHIFT) | (gen + 1));
        v.push(r);
    }

    /// Stops tracking `r` (a no-op for a detached or untracked object).
    #[inline(always)]
    pub(crate) fn untrack(&mut self, r: Raw) {
        let gh = gc_head(r);
        let slot = gh.slot.get();
        let tag = slot & TAG_MASK;
        gh.slot.set(0);
        if tag == 0 || tag == TAG_DETACHED {
            return;
        }
        debug_assert!(slot & SLOT_COLLECTING == 0, "a tracked object in a table has its index in `slot`");
        let v = &mut self.gens[tag - 1];
        let i = slot >> SLOT_SHIFT;
        debug_assert!(v[i] == r);
        let last = v.pop().expect("a tracked object is in its table");
        if i < v.len() {
            v[i] = last;
            gc_head(last).slot.set((i << SLOT_SHIFT) | tag);
        }
    }
}

/// Source of process-unique collector numbers (never reused, so a reference
/// that outlived its interpreter can never match a live one).
static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The interpreter's collector state; touched only under its GIL.
pub(crate) struct GcCell {
    state: crate::sync::UnsafeCell<GcState>,
    /// Set when teardown begins; read without the GIL by `Owned::drop`.
    closing: crate::sync::AtomicBool,
    /// Process-unique number of this interpreter's object space.
    uid: u64,
}

// SAFETY: the state is only accessed by the holder of the interpreter's GIL
// (every accessor takes a `Gil` or runs in `close()` with the GIL held); the
// one flag read without the GIL (`closing`) is an atomic, `uid` is immutable.
unsafe impl Sync for GcCell {}
// SAFETY: as above; the raw pointers inside are never dereferenced without the GIL.
unsafe impl Send for GcCell {}

impl GcCell {
    pub(crate) fn new() -> Self {
        let st = GcState {
            gens: Default::default(),
            counts: [0; 3],
            thresholds: [2000, 10, 10],
            enabled: true,
            collecting: false,
            scheduled: false,
            long_lived_total: 0,
            long_lived_pending: 0,
            stats: [GenStats::default(); 3],
            debug: 0,
            garbage: None,
            debug_lines: Vec::new(),
            debug_output: None,
            callbacks: Vec::new(),
            next_cb: 0,
            weakrefs: HashMap::new(),
            types: HashMap::new(),
            named_classes: HashMap::new(),
            modules: Vec::new(),
            builtins_obj: None,
            interned: None,
            default_import: None,
            atoms: Vec::new(),
            pauses: Default::default(),
            inc: incremental::IncState { budget: Some(DEFAULT_PAUSE_BUDGET), ..Default::default() },
            codecs: Default::default(),
            warnings: None,
            errors: Vec::new(),
            errors_dropped: 0,
            trash: Vec::new(),
            depth: 0,
            closing: false,
            stack: Vec::new(),
            tentative: Vec::new(),
            full_peaks: [0; 2],
            ticks: 0,
            old_touched: 0,
            old_buf: 0,
            inc_work: 0,
        };
        GcCell {
            state: crate::sync::UnsafeCell::new(st),
            closing: crate::sync::AtomicBool::new(false),
            uid: NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Runs `f` on the state. `f` must not run user code or release references.
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut GcState) -> R) -> R {
        // SAFETY: the caller holds the interpreter's GIL (every path here comes
        // from a `Gil` token or from `close()` holding the GIL), and `f` runs
        // no user code, so no second reference can be created meanwhile.
        self.state.with_mut(|p| f(unsafe { &mut *p }))
    }

    /// Marks teardown as begun (idempotent; a close that unwound before its
    /// teardown sets it so that no handle touches the heap afterwards).
    pub(crate) fn mark_closing(&self) {
        self.closing.store(true, crate::sync::Ordering::Release);
    }

    /// Whether teardown has begun (objects must not be touched any more).
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(crate::sync::Ordering::Acquire)
    }

    /// The process-unique number of this object space.
    #[inline(always)]
    pub(crate) fn uid(&self) -> u64 {
        self.uid
    }
}

/// Indexes of `GcState::atoms`.
pub(crate) const ATOM_NONE: usize = 0;
pub(crate) const ATOM_FALSE: usize = 1;
pub(crate) const ATOM_SMALL_INTS: usize = 3;
/// The shared small ints (CPython's `_PY_NSMALLNEGINTS` / `_PY_NSMALLPOSINTS`).
pub(crate) const SMALL_INT_MIN: i64 = -5;
pub(crate) const SMALL_INT_MAX: i64 = 256;
pub(crate) const ATOMS: usize = ATOM_SMALL_INTS + (SMALL_INT_MAX - SMALL_INT_MIN + 1) as usize;

#[inline(always)]
pub(crate) fn st<R>(g: Gil<'_>, f: impl FnOnce(&mut GcState) -> R) -> R {
    g.interpreter().rec.gc.with(f)
}

#[inline(always)]
pub(crate) fn uid_of(g: Gil<'_>) -> u64 {
    g.interpreter().rec.gc.uid
}

/// Allocates an object with `body`, followed inline by `prefix` zero bytes
/// (a str's hash cache) and `data`.
pub(crate) fn alloc_obj(g: Gil<'_>, body: Body, gc: bool, prefix: usize, data: &[u8]) -> Result<Raw> {
    let off = if gc { GC_HEAD_SIZE } else { 0 };
    let size = off + std::mem::size_of::<ObjHead>() + prefix + data.len();
    let base = match g.heap().alloc(size) {
        Ok(base) => base,
        Err(e) => {
            // Nothing half-made: the references the body took are released
            // (and an embedder value dropped, behind the boundary).
            release_body(g, body);
            return Err(e);
        }
    };
    let mut flags = if gc { FLAG_GC } else { 0 };
    if matches!(body, Body::Custom(_) | Body::Function(_)) {
        flags |= FLAG_USER_DROP;
    }
    if size <= crate::mem::SMALL_REQUEST_THRESHOLD {
        flags |= FLAG_SMALL;
    }
    // SAFETY: `base` is a fresh block of `size` bytes, 16-byte aligned; the
    // GcHead (16 bytes) and ObjHead fit, followed by `prefix + data.len()` bytes.
    let raw = unsafe {
        let p = base.as_ptr().add(off).cast::<ObjHead>();
        p.write(ObjHead { refcnt: 1.into(), flags: flags.into(), body: std::cell::UnsafeCell::new(body) });
        let inline = p.cast::<u8>().add(std::mem::size_of::<ObjHead>());
        std::ptr::write_bytes(inline, 0, prefix);
        std::ptr::copy_nonoverlapping(data.as_ptr(), inline.add(prefix), data.len());
        if gc {
            base.as_ptr().cast::<GcHead>().write(GcHead { slot: 0.into() });
        }
        std::ptr::NonNull::new_unchecked(p)
    };
    if gc {
        let schedule = st(g, |s| {
            // The tracking table's growth is the one system allocation of a
            // tracked object's birth: a refusal there is a `MemoryError`,
            // never an abort (checked in the same borrow as the tracking).
            s.gens[GEN0].try_reserve(1).ok()?;
            s.track(raw, GEN0);
            s.counts[0] += 1;
            s.ticks = s.ticks.wrapping_add(1);
            if s.ticks % PREFAULT_EVERY == 0 {
                s.prefault_old_table();
            }
            if s.counts[0] > s.thresholds[0] && s.enabled && s.thresholds[0] > 0 && !s.collecting && !s.scheduled {
                s.scheduled = true;
                Some(true)
            } else {
                Some(false)
            }
        });
        match schedule {
            Some(true) => g.interpreter().rec.schedule_gc(),
            Some(false) => {}
            None => {
                // Nothing half-made: the untracked object is freed and the
                // references its body took are released.
                // SAFETY: the object was made above and never shared; its
                // body is read out once and its block freed right after.
                let body = unsafe { std::ptr::read(head(raw).body.get()) };
                free_block(g, raw, flags);
                release_body(g, body);
                let in_use = g.memory_stats().counted_bytes;
                return Err(Error::MemoryError { id: g.id(), requested: size, in_use, limit: in_use });
            }
        }
    }
    Ok(raw)
}

pub(crate) fn register_weakref(g: Gil<'_>, target: Raw, wr: Raw) {
    st(g, |s| s.weakrefs.entry(target.as_ptr() as usize).or_default().push(wr));
    set_flag(target, FLAG_WEAKREFS, true);
}

/// Unregisters a dying weakref from its target's list.
fn detach_weakref(s: &mut GcState, wr: Raw) {
    // SAFETY: no reference into the weakref's body is alive; no user code runs.
    let target = match unsafe { body_mut(wr) } {
        Body::Weakref(w) => w.target.take(),
        _ => None,
    };
    if let Some(t) = target {
        let key = t.as_ptr() as usize;
        if let Some(list) = s.weakrefs.get_mut(&key) {
            list.retain(|&w| w != wr);
            if list.is_empty() {
                s.weakrefs.remove(&key);
                set_flag(t, FLAG_WEAKREFS, false);
            }
        }
    }
}

/// Clears every weakref to `r`; returns (weakref, callback) pairs, each with
/// a new reference, for those whose callback should run (`keep(wr)` true).
fn clear_weakrefs_to(s: &mut GcState, r: Raw, keep: impl Fn(Raw) -> bool) -> Vec<(Raw, Raw)> {
    let mut cbs = Vec::new();
    if !has_flag(r, FLAG_WEAKREFS) {
        return cbs;
    }
    set_flag(r, FLAG_WEAKREFS, false);
    // Newest first, as CPython (its list has the newest weakref at the head):
    // both at refcount death and in a collection.
    for wr in s.weakrefs.remove(&(r.as_ptr() as usize)).unwrap_or_default().into_iter().rev() {
        // SAFETY: registered weakrefs are alive (they unregister when they die).
        if let Body::Weakref(w) = unsafe { body_mut(wr) } {
            w.target = None;
            if let Some(cb) = w.callback {
                if !s.closing && keep(wr) {
                    incref(wr);
                    incref(cb);
                    cbs.push((wr, cb));
                }
            }
        }
    }
    cbs
}

fn run_fn(g: Gil<'_>, context: &'static str, f: Raw, arg: Raw) {
    let f = Obj::from_raw_owned(f, g);
    let arg = Obj::from_raw_owned(arg, g);
    let r = run_callback(context, || f.call(std::slice::from_ref(&arg)).map(drop));
    if let Err(e) | Ok(Err(e)) = r {
        st(g, |s| s.report(e));
    }
}

/// How deep frees may nest before further ones are queued (CPython's
/// trashcan): deep enough that ordinary structures free in one go, shallow
/// enough that a 1,000,000-deep chain never grows the stack.
const MAX_DEALLOC_DEPTH: u32 = 48;

/// Frees `r` (refcount zero) and everything that reaches zero with it.
/// Nested frees recurse up to [`MAX_DEALLOC_DEPTH`], then queue; the
/// outermost call drains the queue, so the stack stays bounded.
///
/// Before anything else the dying object is made invisible (see
/// [`forget_dying`]): untracked, and a dying weakref taken off its target's
/// list. So no collection and no weakref callback that user code runs from
/// here on (finalizers, callbacks, embedder `Drop`s, also of other objects
/// freed meanwhile) can find it, and an object waiting in the trash queue
/// is seen by nothing (docs/safety.md).
pub(crate) fn dealloc(g: Gil<'_>, r: Raw) {
    let depth = st(g, |s| {
        forget_dying(s, r);
        if s.depth >= MAX_DEALLOC_DEPTH {
            s.trash.push(r);
            None
        } else {
            s.depth += 1;
            Some(s.depth)
        }
    });
    let Some(depth) = depth else { return };
    // Restores the nesting depth even if a free unwinds (every user call
    // below is behind `run_callback`, so only a bug of ours could).
    struct Depth<'i>(Gil<'i>);
    impl Drop for Depth<'_> {
        fn drop(&mut self) {
            st(self.0, |s| s.depth -= 1);
        }
    }
    let _depth = Depth(g);
    dealloc_one(g, r);
    if depth == 1 {
        while let Some(t) = st(g, |s| s.trash.pop()) {
            dealloc_one(g, t);
        }
    }
}

/// Makes a dying object (refcount zero) unreachable from the collector and
/// from weakref callbacks before any user code runs: untracks it (adjusting
/// the young count as CPython's `PyObject_GC_Del`), and takes a dying weakref
/// off its target's list (so the target's death cannot call back with it).
#[inline(always)]
fn forget_dying(s: &mut GcState, r: Raw) {
    let flags = head(r).flags.get();
    if flags & FLAG_GC != 0 {
        s.untrack(r);
        s.counts[0] = s.counts[0].saturating_sub(1);
    }
    if flags & FLAG_SPECIAL != 0 && matches!(body(r), Body::Weakref(_)) {
        detach_weakref(s, r);
    }
}

/// Frees one dead object (already made invisible by [`forget_dying`]) and
/// releases what it held.
fn dealloc_one(g: Gil<'_>, r: Raw) {
    let flags = head(r).flags.get();
    if flags & (FLAG_SPECIAL | FLAG_WEAKREFS) != 0 || st(g, |s| s.closing) {
        return dealloc_special(g, r);
    }
    free_then_release(g, r, flags);
}

/// Frees a dead object nothing can reach any more (untracked, no finalizer
/// to run, weakrefs cleared) and then releases what it held. No user code
/// can run before the object is gone: the body (and an instance's inline
/// parts) is moved out, the block freed, then the references released
/// straight from the moved-out buffers and tables (no worklist).
#[inline(always)]
fn free_then_release(g: Gil<'_>, r: Raw, flags: u32) {
    // The common case, a tuple or list: only its items are moved out (a
    // copy of the whole body costs more, in stack traffic, than the rest).
    if let Body::Seq(items) = body(r) {
        // SAFETY: the object is dead (refcount zero), untracked, and nothing
        // refers to it; its items are read out exactly once, the rest of the
        // body owns nothing else, and the block is freed right after.
        let mut items = unsafe { std::ptr::read(items) };
        free_block(g, r, flags);
        for &c in items.as_slice() {
            decref(g, c);
        }
        // SAFETY: the buffer came from this interpreter's heap; the GIL is held.
        unsafe { items.free_in(g.heap()) };
        return;
    }
    if let Body::Instance(_) = body(r) {
        return free_then_release_instance(g, r, flags);
    }
    // SAFETY: as above; the whole body is read out exactly once.
    let body = unsafe { std::ptr::read(head(r).body.get()) };
    free_block(g, r, flags);
    release_body(g, body);
}

/// `free_then_release` for an instance: its inline values and ext box moved
/// out with the body (out of line, as `free_instance`).
#[inline(never)]
fn free_then_release_instance(g: Gil<'_>, r: Raw, flags: u32) {
    let parts = instance::Parts::read_out(r);
    // SAFETY: as in `free_then_release`: read out once, the block freed next.
    let body = unsafe { std::ptr::read(head(r).body.get()) };
    free_block(g, r, flags);
    parts.release(g);
    release_body(g, body);
}

/// Releases the references a body held, then drops it (an embedder value's
/// `Drop` runs last). Its heap boxes are freed first, so user code run by the
/// releases never sees a half-freed body.
fn release_body(g: Gil<'_>, body: Body) {
    let heap = g.heap();
    // SAFETY (every `into_inner_in` below): the body belonged to an object of
    // this interpreter, whose boxes came from its heap; the GIL is held.
    match body {
        Body::Seq(mut items) => {
            for &c in items.as_slice() {
                decref(g, c);
            }
            // SAFETY: the buffer came from this interpreter's heap; GIL held.
            unsafe { items.free_in(heap) };
        }
        Body::Dict(mut d) => {
            // Released straight from the table, as a list's items from its
            // buffer: no worklist to allocate (a dict of 10^7 entries freed
            // when memory is short must not abort). The table is this
            // local's alone: the user code the releases run cannot reach it.
            d.traverse(&mut |c| decref(g, c));
            // SAFETY: the table came from this interpreter's heap; GIL held;
            // its references were released above and are not read again.
            unsafe { d.free_in(heap) };
        }
        // What an instance holds inline was moved out with its block
        // (`instance::Parts`): its body is its class.
        Body::Instance(c) => decref(g, c),
        b @ (Body::Type(_) | Body::Method(_) | Body::Module(_)) => {
            let mut out = Vec::new();
            take_object_refs(g, b, &mut out);
            out.into_iter().for_each(|c| decref(g, c));
        }
        Body::Function(f) => {
            // SAFETY: see above.
            let mut f = unsafe { f.into_inner_in(heap) };
            f.captured.as_slice().iter().for_each(|&c| decref(g, c));
            // SAFETY: the buffer came from this heap; released just now.
            unsafe { f.captured.free_in(heap) };
            drop_heap_value(g, "drop of a native function's closure", f.f);
        }
        Body::Code(c) => {
            // SAFETY: see above.
            let mut c = unsafe { c.into_inner_in(heap) };
            std::mem::take(&mut c.consts).into_iter().for_each(|x| decref(g, x));
            std::mem::take(&mut c.extra).into_iter().flatten().for_each(|x| decref(g, x));
            crate::services::code_extra::release(g, &mut c).into_iter().for_each(|e| st(g, |s| s.report(e)));
        }
        Body::Custom(c) => {
            let mut out = Vec::new();
            let uid = uid_of(g);
            if let Err(e) =
                run_callback("Trace::clear", || c.get().clear_dyn(&mut trace::Cleared { out: &mut out, uid }))
            {
                st(g, |s| s.report(e));
            }
            out.into_iter().for_each(|x| decref(g, x));
            drop_heap_value(g, "drop of an embedder value", c);
        }
        Body::Weakref(w) => {
            // SAFETY: see above.
            let mut w = unsafe { w.into_inner_in(heap) };
            // The target is not a strong reference; the callback is.
            w.callback.take().into_iter().for_each(|c| decref(g, c));
        }
        Body::None | Body::Bool(_) | Body::Int(_) | Body::Float(_) | Body::Str(_) | Body::Bytes(_) => {}
    }
}

/// The references an instance, class, bound method or module body holds
/// (whether its clear ran or not: what `take_refs` leaves, or all of them),
/// pushed on `out`; its heap box and dict table are freed. No user code runs.
/// Any other body is not one of these: dropped as `free_boxes` does.
fn take_object_refs(g: Gil<'_>, body: Body, out: &mut Vec<Raw>) {
    let heap = g.heap();
    match body {
        Body::Instance(c) => out.push(c),
        Body::Type(t) => {
            // SAFETY: the body's box came from this interpreter's heap; the
            // GIL is held (likewise for every box below).
            let mut t = unsafe { t.into_inner_in(heap) };
            for items in [&mut t.bases, &mut t.mro, &mut t.keys] {
                out.extend_from_slice(items.as_slice());
                // SAFETY: the buffer came from this heap; its references
                // were handed over just now.
                unsafe { items.free_in(heap) };
            }
            t.dict.take_all(out);
            // SAFETY: as above.
            unsafe { t.dict.free_in(heap) };
        }
        Body::Method(m) => {
            // SAFETY: as above.
            let m = unsafe { m.into_inner_in(heap) };
            out.push(m.func);
            out.push(m.receiver);
        }
        // SAFETY: as above.
        Body::Module(m) => out.push(unsafe { m.into_inner_in(heap) }.dict),
        other => free_boxes(g, other),
    }
}

/// Frees the heap boxes of a body moved out of a freed object whose
/// references were taken out or are not to be released (the teardown), and
/// drops what they held: an embedder value's or a closure's `Drop` behind
/// the catch-unwind boundary.
fn free_boxes(g: Gil<'_>, body: Body) {
    let heap = g.heap();
    // SAFETY (every `free_in` / `into_inner_in`): the body belonged to an
    // object of this interpreter, whose boxes came from its heap; GIL held.
    unsafe {
        match body {
            Body::Instance(_) => {} // its inline parts: `instance::Parts::free`
            Body::Type(b) => {
                let mut t = b.into_inner_in(heap);
                t.bases.free_in(heap);
                t.mro.free_in(heap);
                t.keys.free_in(heap);
            }
            Body::Method(b) => b.free_in(heap),
            Body::Module(b) => b.free_in(heap),
            Body::Code(b) => {
                let mut c = b.into_inner_in(heap);
                crate::services::code_extra::release(g, &mut c).into_iter().for_each(|e| st(g, |s| s.report(e)));
            }
            Body::Weakref(b) => b.free_in(heap),
            Body::Function(b) => {
                let mut f = b.into_inner_in(heap);
                f.captured.free_in(heap);
                drop_heap_value(g, "drop of a native function's closure", f.f);
            }
            Body::Custom(b) => drop_heap_value(g, "drop of an embedder value", b),
            Body::Seq(_) | Body::Dict(_) => {} // buffers freed by the caller
            Body::None | Body::Bool(_) | Body::Int(_) | Body::Float(_) | Body::Str(_) | Body::Bytes(_) => {}
        }
    }
}

/// Frees an object whose death may run user code: finalizer (at most once,
/// may resurrect), weakref callbacks, then clear and free. The object is
/// already untracked and, if a weakref, detached ([`forget_dying`]): while
/// user code runs it is reachable from nothing but this frame.
fn dealloc_special(g: Gil<'_>, r: Raw) {
    let closing = st(g, |s| s.closing);
    if !closing && !has_flag(r, FLAG_FINALIZED) {
        let fin = match body(r) {
            Body::Instance(_) => types::instance_finalizer(r, true),
            _ => None,
        };
        if let Some(f) = fin {
            set_flag(r, FLAG_FINALIZED, true);
            incref(f);
            head(r).refcnt.set(1);
            incref(r); // the argument's reference; the 1 above is ours
            run_fn(g, "finalizer", f, r);
            let rc = head(r).refcnt.get() - 1;
            head(r).refcnt.set(rc);
            if rc > 0 {
                // Resurrected: tracked again (CPython's subtype_dealloc keeps
                // a resurrected object tracked), so a cycle it is now part of
                // is still collected.
                if has_flag(r, FLAG_GC) {
                    st(g, |s| {
                        s.track(r, GEN0);
                        s.counts[0] += 1;
                    });
                }
                return;
            }
            // The finalizer may have made it a weakref target again (a new
            // weakref that holds no strong reference): cleared just below.
        }
    }
    let cbs = st(g, |s| clear_weakrefs_to(s, r, |_| true));
    for (wr, cb) in cbs {
        run_fn(g, "weakref callback", cb, wr);
    }
    // Nothing can reach it now (a weakref callback gets the weakref, whose
    // target is cleared): freed as an ordinary object, its references
    // released from its own buffers after the block is gone.
    free_then_release(g, r, head(r).flags.get());
}

/// Clears `r` (CPython's `tp_clear`), handing each strong reference it held
/// to `f` as it is taken out. A list's or tuple's buffer and a dict's or a
/// class's table are moved out first (the object is left empty) and
/// released from there, an instance's values one at a time: no worklist of
/// all of them is allocated, so a container of millions cleared when the
/// system refuses memory does not abort. `f` may run user code: nothing of
/// `r` is borrowed while it runs. Other bodies go through `take_refs` (an
/// embedder's `Trace::clear` behind the catch-unwind boundary, a panic
/// reported).
#[inline(always)]
fn clear_releasing(g: Gil<'_>, r: Raw, uid: u64, mut f: impl FnMut(Raw)) {
    // The common case inline (a collection of lists); the rest out of line.
    // SAFETY: no reference into the body is alive; moving the buffer out
    // runs no user code, and the borrow ends before `f` runs.
    if let Body::Seq(items) = unsafe { body_mut(r) } {
        let mut items = items.take();
        // The buffer is this local's alone: `f`'s user code cannot reach it.
        items.as_slice().iter().for_each(|&c| f(c));
        // SAFETY: the buffer came from this interpreter's heap; GIL held;
        // its references were handed over above and are not read again.
        unsafe { items.free_in(g.heap()) };
        return;
    }
    clear_releasing_other(g, r, uid, f);
}

/// `clear_releasing` for every body but a list's or tuple's.
#[inline(never)]
fn clear_releasing_other(g: Gil<'_>, r: Raw, uid: u64, mut f: impl FnMut(Raw)) {
    let heap = g.heap();
    // SAFETY: as in `clear_releasing`.
    match unsafe { body_mut(r) } {
        Body::Seq(_) => unreachable!("lists and tuples are cleared inline"),
        Body::Dict(d) => {
            let mut d = std::mem::take(d);
            d.traverse(&mut f);
            // SAFETY: as for the buffer above.
            unsafe { d.free_in(heap) };
        }
        Body::Instance(_) => instance::clear_each(g, r, f),
        Body::Type(t) => {
            // Bases and MRO stay (as `take_refs`): released when it is freed.
            let (mut d, mut keys) = (std::mem::take(&mut t.dict), t.keys.take());
            d.traverse(&mut f);
            keys.as_slice().iter().for_each(|&k| f(k));
            // SAFETY: as for the buffer above.
            unsafe {
                d.free_in(heap);
                keys.free_in(heap);
            }
        }
        _ => {
            let mut taken = Vec::new();
            if let Err(e) = run_callback("Trace::clear", || take_refs(r, uid, &mut taken)) {
                st(g, |s| s.report(e));
            }
            taken.into_iter().for_each(f);
        }
    }
}

/// Drops a value moved out of a freed object whose drop runs user code (an
/// embedder value's `Drop`, a native function's closure and its captures):
/// behind the catch-unwind boundary, a panic reported like the other
/// callbacks'. Out of line: the collector's free loops stay small.
#[cold]
#[inline(never)]
fn drop_user_value<T>(g: Gil<'_>, value: T) {
    if let Err(e) = run_callback("drop of an embedder value", move || drop(value)) {
        st(g, |s| s.report(e));
    }
}

/// Drops a value in the heap whose `Drop` is user code (`hdyn.rs`), behind
/// the catch-unwind boundary, its block freed also when that panics.
#[cold]
#[inline(never)]
fn drop_heap_value<D: ?Sized>(g: Gil<'_>, context: &'static str, value: hdyn::HDyn<D>) {
    let heap = g.heap();
    // SAFETY: the value's block came from this interpreter's heap (it was
    // an object body of it); the GIL is held.
    if let Err(e) = run_callback(context, || unsafe { value.drop_in(heap) }) {
        st(g, |s| s.report(e));
    }
}

fn free_block(g: Gil<'_>, r: Raw, flags: u32) {
    let off = if flags & FLAG_GC != 0 { GC_HEAD_SIZE } else { 0 };
    // SAFETY: the object is dead and its body was moved out or dropped; its
    // block starts `off` bytes before it, a live block of this heap, small
    // iff FLAG_SMALL.
    unsafe {
        let base = std::ptr::NonNull::new_unchecked((r.as_ptr() as *mut u8).sub(off));
        g.heap().free_known(base, flags & FLAG_SMALL != 0);
    }
}

/// Frees a dead object (refcount zero or torn down, untracked, its
/// references taken out by `take_refs`): the body is moved out and the block
/// freed before the body's drop (which may run user code) runs.
///
/// `take_refs` leaves some references in place, as CPython's `tp_clear`s
/// do (an instance's class, a type's bases and MRO, a bound method's
/// function and receiver, a module's dict): with `kept`, they are pushed
/// there for the caller to release (never lost: a lost one leaks its
/// target until the interpreter closes); with `None` (teardown, which frees
/// every object anyway), they are dropped unreleased.
#[inline(always)]
fn free_obj(g: Gil<'_>, r: Raw, kept: Option<&mut Vec<Raw>>) {
    let flags = head(r).flags.get();
    // SAFETY: the object is dead and nothing refers to it (no borrow of its
    // body is alive); its item buffer came from this interpreter's heap.
    match unsafe { body_mut(r) } {
        // A list's or tuple's buffer, a dict's table: their references were
        // taken out, and the body owns nothing else (no body to read out).
        Body::Seq(items) => {
            // SAFETY: as above; the GIL is held.
            unsafe { items.free_in(g.heap()) };
            return free_block(g, r, flags);
        }
        Body::Dict(d) => {
            // SAFETY: as above.
            unsafe { d.free_in(g.heap()) };
            return free_block(g, r, flags);
        }
        // SAFETY: as above.
        Body::Type(t) => unsafe { t.dict.free_in(g.heap()) },
        Body::Instance(_) => return free_instance(g, r, flags, kept),
        _ => {}
    }
    // SAFETY: the object is dead and nothing refers to it; its body is read
    // out exactly once, and the block is freed right after.
    let body = unsafe { std::ptr::read(head(r).body.get()) };
    free_block(g, r, flags);
    match kept {
        Some(kept) => take_object_refs(g, body, kept),
        None => free_boxes(g, body),
    }
}

/// `free_obj` for an instance: its inline parts moved out with the body
/// (out of line: the collector's free loops over lists stay small).
#[inline(never)]
fn free_instance(g: Gil<'_>, r: Raw, flags: u32, kept: Option<&mut Vec<Raw>>) {
    let parts = instance::Parts::read_out(r);
    // SAFETY: as in `free_obj`: read out once, the block freed right after.
    let body = unsafe { std::ptr::read(head(r).body.get()) };
    free_block(g, r, flags);
    match kept {
        Some(kept) => {
            parts.push_into(g.heap(), kept);
            take_object_refs(g, body, kept)
        }
        None => {
            parts.free(g.heap());
            free_boxes(g, body)
        }
    }
}

/// CPython's `deduce_unreachable` over `objs` (slow path: finalizers and
/// resurrection; every object of `objs` is detached): afterwards the
/// `gc_refs` of each (`refs_of(slot)`) is > 0 iff it is reachable from
/// outside (refcount minus `hold` minus internal references) or from such an
/// object. The caller sets each `slot` back to `TAG_DETACHED` after reading it.
fn deduce(objs: &[Raw], hold: u32, uid: u64) {
    for &r in objs {
        gc_head(r).slot.set(refs_start(head(r).refcnt.get() - hold, TAG_DETACHED));
    }
    for &r in objs {
        traverse(r, uid, &mut |c| {
            if has_flag(c, FLAG_GC) {
                let gh = gc_head(c);
                let p = gh.slot.get();
                if p & SLOT_COLLECTING != 0 {
                    gh.slot.set(refs_dec(p));
                }
            }
        });
    }
    let mut stack: Vec<Raw> = objs.iter().copied().filter(|&r| refs(r) > 0).collect();
    while let Some(r) = stack.pop() {
        traverse(r, uid, &mut |c| {
            if has_flag(c, FLAG_GC) {
                let gh = gc_head(c);
                let p = gh.slot.get();
                if p & SLOT_COLLECTING != 0 && refs_of(p) == 0 {
                    gh.slot.set(refs_start(1, TAG_DETACHED));
                    stack.push(c);
                }
            }
        });
    }
}

/// The `gc_refs` of a detached object during `deduce`.
fn refs(r: Raw) -> usize {
    let p = gc_head(r).slot.get();
    if p & SLOT_COLLECTING != 0 {
        refs_of(p)
    } else {
        0
    }
}

// ----- the collection passes ---------------------------------------------------------

/// `traverse`, with the common case (a tuple or list) tested first: the
/// collector's passes call it once per candidate, and a test of the kind byte
/// costs less than the dispatch over every type.
#[inline(always)]
pub(crate) fn traverse_fast(r: Raw, uid: u64, f: &mut impl FnMut(Raw)) {
    if let Body::Seq(items) = body(r) {
        if !items.is_empty() {
            items.iter().for_each(|&c| f(c));
        }
    } else {
        traverse(r, uid, f);
    }
}

/// CPython's `update_refs` and `subtract_refs` in one pass: afterwards every
/// candidate's `gc_refs` counts the references from outside the candidates.
/// A candidate is set up (`gc_refs = refcount`, `SLOT_COLLECTING`, its tag
/// kept) by whichever comes first: its own turn or the first reference to
/// it. `tag_mask` has bit `t` set for each table tag `t` whose objects are
/// all candidates (others, an increment's old ones, are set up already).
fn count_outside_refs(cands: &[Raw], tag_mask: usize, uid: u64) {
    for &r in cands {
        let gh = gc_head(r);
        let p = gh.slot.get();
        if p & SLOT_COLLECTING == 0 {
            gh.slot.set(refs_start(head(r).refcnt.get(), p & TAG_MASK));
        }
        traverse_fast(r, uid, &mut |c| {
            let h = head(c);
            if h.flags.get() & FLAG_GC == 0 {
                return;
            }
            let gh = gc_head(c);
            let p = gh.slot.get();
            if p & SLOT_COLLECTING != 0 {
                gh.slot.set(refs_dec(p));
            } else {
                let tag = p & TAG_MASK;
                if tag != 0 && (tag_mask >> tag) & 1 != 0 {
                    gh.slot.set(refs_dec(refs_start(h.refcnt.get(), tag)));
                }
            }
        });
    }
}

/// CPython's `move_unreachable` over a table, fused with the partition: in
/// table order, a candidate with outside references, or already found
/// reachable, is reachable, and its references are followed. A reference to
/// a candidate not reached yet only marks it (`SLOT_REACHABLE`: its own turn
/// follows its references); one to a candidate already passed over as
/// tentatively unreachable rescues it, and the references of the rescued are
/// followed at once (explicit stack, no recursion). Reachable candidates are
/// compacted to the front of `cands` and given their slot in the target
/// generation (`base` + their position, `tag`); the others are held (+1),
/// detached (tag `TAG_DETACHED`, still `SLOT_COLLECTING`) and left in
/// `tentative`, where the rescued ones carry `SLOT_REACHABLE` (sorted out by
/// the caller). Returns the number kept and whether any tentative object has
/// a finalizer or weakrefs.
fn mark_and_partition(
    cands: &mut [Raw],
    stack: &mut Vec<Raw>,
    tentative: &mut Vec<Raw>,
    uid: u64,
    base: usize,
    tag: usize,
) -> (usize, bool) {
    let visit = |c: Raw, stack: &mut Vec<Raw>| {
        if head(c).flags.get() & FLAG_GC == 0 {
            return;
        }
        let gh = gc_head(c);
        let p = gh.slot.get();
        if p & (SLOT_COLLECTING | SLOT_REACHABLE) == SLOT_COLLECTING {
            gh.slot.set(p | SLOT_REACHABLE);
            if p & TAG_MASK == TAG_DETACHED {
                stack.push(c);
            }
        }
    };
    let (mut kept, mut special) = (0, false);
    for i in 0..cands.len() {
        let r = cands[i];
        let gh = gc_head(r);
        let h = head(r);
        let p = gh.slot.get();
        if p & SLOT_REACHABLE == 0 && refs_of(p) == 0 {
            gh.slot.set((p & !TAG_MASK) | TAG_DETACHED);
            // Not immortal: an immortal object always has outside references.
            h.refcnt.set(h.refcnt.get() + 1);
            special |= h.flags.get() & (FLAG_SPECIAL | FLAG_WEAKREFS) != 0;
            tentative.push(r);
            continue;
        }
        // Done with it: its index again, so later visits pass over it.
        gh.slot.set(((base + kept) << SLOT_SHIFT) | tag);
        cands[kept] = r;
        kept += 1;
        traverse_fast(r, uid, &mut |c| visit(c, stack));
        while let Some(x) = stack.pop() {
            traverse_fast(x, uid, &mut |c| visit(c, stack));
        }
    }
    (kept, special)
}

fn run_gc_callbacks(g: Gil<'_>, phase: GcPhase, gen: usize, res: CollectResult) {
    let cbs: Vec<GcCallback> = st(g, |s| s.callbacks.iter().map(|(_, c)| c.clone()).collect());
    for cb in cbs {
        if let Err(e) = run_callback("gc callback", || cb(g, phase, gen, res)) {
            st(g, |s| s.report(e));
        }
        // The last reference if the callback was removed meanwhile: dropping
        // the closure runs its captures' `Drop`s.
        drop_callback(g, cb);
    }
}

/// Drops a gc callback behind the catch-unwind boundary.
fn drop_callback(g: Gil<'_>, cb: GcCallback) {
    if let Err(e) = run_callback("drop of a gc callback", || drop(cb)) {
        st(g, |s| s.report(e));
    }
}

/// Who asked for a collection (its pause is counted by kind).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The allocation thresholds, at a checkpoint.
    Automatic,
    /// `gc_collect` (also from the close's module shutdown).
    Explicit,
    /// The final collection of a close: not timed, no callbacks.
    Final,
}

fn collect(g: Gil<'_>, gen: usize, cause: Cause) -> Result<CollectResult> {
    if st(g, |s| std::mem::replace(&mut s.collecting, true)) {
        return Ok(CollectResult::default());
    }
    let callbacks = cause != Cause::Final;
    let started = callbacks.then(std::time::Instant::now);
    // Clears `collecting` however the collection ends, so that a panic can
    // never leave the collector wedged (every user call inside is caught;
    // this is the second line).
    struct Collecting<'i>(Gil<'i>);
    impl Drop for Collecting<'_> {
        fn drop(&mut self) {
            st(self.0, |s| s.collecting = false);
        }
    }
    let guard = Collecting(g);
    if callbacks {
        run_gc_callbacks(g, GcPhase::Start, gen, CollectResult::default());
    }
    // Generation 1 in incremental mode is an increment (as CPython 3.14's
    // `gc.collect(1)`): the young generations and a batch of old suspects.
    let increment = gen == 1 && st(g, |s| s.inc.budget.is_some());
    let res = collect_inner(g, gen, increment);
    flush_debug_lines(g);
    let res = res?;
    if callbacks {
        // Still `collecting` (as CPython): a stop callback that collects gets
        // zeros instead of recursing without end.
        run_gc_callbacks(g, GcPhase::Stop, gen, res);
    }
    drop(guard);
    if gen == GEN2 && cause != Cause::Final {
        sweep_interned(g);
    }
    if let Some(t) = started {
        let d = t.elapsed();
        st(g, |s| {
            s.pauses.record(cause == Cause::Automatic, gen, d);
            if increment {
                let n = s.inc_work;
                s.inc.observe(d.as_nanos() as f64, n, res.collected);
            }
        });
    }
    Ok(res)
}

/// Drops the interned strings only the intern table holds (its key and
/// value: two references), so interned names are mortal. Runs no user code
/// (a str's free is plain).
fn sweep_interned(g: Gil<'_>) {
    let Some(t) = st(g, |s| s.interned) else { return };
    let Body::Dict(d) = body(t) else { return };
    let dead: Vec<Raw> = d.items().filter(|&(k, _)| head(k).refcnt.get() == 2).map(|(k, _)| k).collect();
    for k in dead {
        let hash = match key_hash(k) {
            Ok(h) => h,
            Err(_) => continue,
        };
        // SAFETY: no reference into the table's body is alive (the
        // iteration above ended); `remove` runs no user code.
        let removed = match unsafe { body_mut(t) } {
            Body::Dict(d) => d.remove(hash, k),
            _ => None,
        };
        if let Some((a, b)) = removed {
            decref(g, a);
            decref(g, b);
        }
    }
    // All gone: give the table's block back too (a program's burst of names
    // leaves no table behind).
    // SAFETY: as above; the GIL is held and the block is this heap's.
    if let Body::Dict(d) = unsafe { body_mut(t) } {
        if d.len() == 0 {
            // SAFETY: the table is this interpreter's heap's; it holds no
            // references any more (empty); the GIL is held.
            unsafe { d.free_in(g.heap()) };
        }
    }
}

/// One collection: generation `gen` and the younger ones (`gen` 2: the
/// whole heap but the permanent generation), or, with `increment`, the young
/// generations and a batch of old suspects with their closures
/// (`incremental.rs`).
fn collect_inner(g: Gil<'_>, gen: usize, increment: bool) -> Result<CollectResult> {
    let uid = uid_of(g);
    // Where survivors go: one generation up; generation 1's (and an
    // increment's young ones) to the old suspects, to be examined with their
    // closures by an increment.
    let target = match gen {
        0 => 1,
        1 => SUSPECT,
        _ => GEN2,
    };
    // The tags of the tables whose objects are candidates, set up as their
    // turn comes (an increment's old ones are set up when enlisted).
    let mask: usize = match gen {
        0 => 1 << 1,
        1 => (1 << 1) | (1 << 2),
        _ => (1 << 1) | (1 << 2) | (1 << (GEN2 + 1)) | (1 << (SUSPECT + 1)),
    };
    let (mut cands, mut stack, mut tentative, base, debug) = st(g, |s| {
        s.scheduled = false;
        if gen < GEN2 {
            s.counts[gen + 1] += 1;
        }
        for c in &mut s.counts[..=gen] {
            *c = 0;
        }
        // The candidates: generations 0..=gen, taken out of their tables
        // (their `slot`s keep their old tags until the partition).
        // Oldest first, so that the table is in allocation order.
        let mut cands = std::mem::take(&mut s.gens[gen]);
        if gen == GEN2 {
            cands.extend_from_slice(&s.gens[SUSPECT]);
            s.gens[SUSPECT].clear();
        }
        for i in (0..gen).rev() {
            cands.extend_from_slice(&s.gens[i]);
            s.gens[i].clear();
        }
        let base = if target == gen || increment { 0 } else { s.gens[target].len() };
        (cands, std::mem::take(&mut s.stack), std::mem::take(&mut s.tentative), base, s.debug)
    });
    // No user code runs from here to the end of the partition, except
    // `Trace::trace`, whose panics `traverse` catches and reports below.
    if increment {
        incremental::increment_candidates(g, &mut cands, &mut stack);
        st(g, |s| {
            s.inc_work = cands.len();
            s.inc.stats.increments += 1;
        });
    }
    count_outside_refs(&cands, mask, uid);
    let (kept, special) = mark_and_partition(&mut cands, &mut stack, &mut tentative, uid, base, target + 1);
    cands.truncate(kept);
    let panicked = take_trace_panic();
    st(g, |s| {
        if increment {
            // Each survivor by what the increment saw of it; the young
            // generation's buffer is kept.
            for &r in &cands {
                track_survivor(s, r, SUSPECT);
            }
            cands.clear();
            s.gens[gen] = cands;
        } else if target == gen {
            s.gens[gen] = cands;
            // A table keeps its buffer between collections (no reallocation
            // and page faults each time), but not four times what it needs.
            let t = &mut s.gens[gen];
            let need = t.len();
            shrink_unused(t, need);
        } else {
            s.gens[target].extend_from_slice(&cands);
            // The emptied generation keeps the buffer.
            cands.clear();
            s.gens[gen] = cands;
        }
        s.stack = stack;
    });
    if let Some(message) = panicked {
        // A trace that panicked may have hidden references: free nothing
        // (and an increment may have missed garbage: a full collection is
        // owed).
        st(g, |s| {
            s.inc.incomplete = true;
            for &r in &tentative {
                let h = head(r);
                h.refcnt.set(h.refcnt.get() - 1);
                track_survivor(s, r, target);
            }
            tentative.clear();
            s.tentative = tentative;
        });
        return Err(Error::CallbackPanicked { context: "Trace::trace", message });
    }
    let res = if tentative.is_empty() {
        settle_survivors(g, gen, kept);
        CollectResult::default()
    } else if !special && debug & (DEBUG_SAVEALL | DEBUG_COLLECTABLE) == 0 {
        let collected = delete_garbage(g, &tentative, target);
        settle_survivors(g, gen, kept + tentative.len() - collected);
        CollectResult { collected, uncollectable: 0 }
    } else {
        let mut unreachable = Vec::with_capacity(tentative.len());
        let mut rescued = Vec::new();
        st(g, |s| {
            for &r in &tentative {
                let gh = gc_head(r);
                let p = gh.slot.get();
                gh.slot.set(TAG_DETACHED);
                if p & SLOT_REACHABLE != 0 {
                    track_survivor(s, r, target);
                    rescued.push(r);
                } else {
                    set_flag(r, FLAG_UNREACHABLE, true);
                    unreachable.push(r);
                }
            }
        });
        // Nothing was freed yet, so these holds are never the last reference.
        settle_survivors(g, gen, kept + rescued.len());
        for r in rescued {
            release_ref(g, r);
        }
        if unreachable.is_empty() {
            CollectResult::default()
        } else {
            handle_unreachable_slow(g, unreachable, debug)
        }
    };
    let garbage_seen = tentative.len();
    tentative.clear();
    st(g, |s| {
        if gen == GEN2 {
            // Scratch for the next collections, sized by what the last three
            // full collections needed (a burst of garbage is not kept for
            // ever; repeated bursts do not reallocate and fault it anew).
            let need = s.gens[GEN2].len().max(garbage_seen).max(s.full_peaks[0]).max(s.full_peaks[1]);
            s.full_peaks = [garbage_seen, s.full_peaks[0]];
            shrink_unused(&mut tentative, need);
            shrink_unused(&mut s.stack, need);
        }
        s.tentative = tentative;
        if gen == GEN2 {
            s.inc.incomplete = false;
        }
        s.stats[gen].collections += 1;
        s.stats[gen].collected += res.collected;
        s.stats[gen].uncollectable += res.uncollectable;
    });
    if debug & DEBUG_STATS != 0 {
        eprintln!("gc: collected {} objects, {} uncollectable (generation {gen})", res.collected, res.uncollectable);
    }
    Ok(res)
}

/// Gives back the memory of a kept buffer above twice `need` when it holds
/// more than four times that.
fn shrink_unused<T>(v: &mut Vec<T>, need: usize) {
    if v.capacity() > 4 * need.max(v.len()) + 4096 {
        v.shrink_to(2 * need.max(v.len()));
    }
}

/// The long-lived accounting (CPython): survivors of generation 1 are
/// pending; a full collection resets the long-lived total.
fn settle_survivors(g: Gil<'_>, gen: usize, survivors: usize) {
    st(g, |s| {
        if gen == 1 {
            s.long_lived_pending += survivors;
        } else if gen == GEN2 {
            s.long_lived_total = survivors;
            s.long_lived_pending = 0;
        }
    });
}

/// The tentative set of a collection with no finalizers, weakrefs or legacy
/// finalizers in it (so no user code can reach it): each object found
/// reachable after all is released from our hold and tracked in `target`;
/// each other one is cleared, then its hold released. An object stays alive
/// while a later one still refers to it and is freed by that one's clear;
/// our hold keeps every object alive until its own turn, so nothing is
/// touched after it is freed. Returns the number of garbage objects.
///
/// A garbage object whose count reaches zero was cleared at its turn (before
/// it, our hold keeps it): it is freed here at once, without the general
/// deallocator (nothing to release, untrack or finalize).
fn delete_garbage(g: Gil<'_>, tentative: &[Raw], target: usize) -> usize {
    let uid = uid_of(g);
    let mut taken = Vec::new();
    let mut collected = 0;
    let mut freed = 0;
    for &r in tentative {
        let h = head(r);
        let gh = gc_head(r);
        let p = gh.slot.get();
        gh.slot.set(TAG_DETACHED);
        if p & SLOT_REACHABLE != 0 {
            // Tracked first: releasing our hold may free it (a garbage
            // object freed earlier in this loop may have held it).
            st(g, |s| track_survivor(s, r, target));
            release_ref(g, r);
            continue;
        }
        collected += 1;
        // From here `r` is cleared: its `slot` is exactly `TAG_DETACHED`,
        // which tells `release_cleared_aware` that it may be freed directly.
        // Its references released as they are taken out (no worklist of
        // all of them for the big containers). A list or tuple, the common
        // case, inline here: this loop is the garbage shape's hot path.
        // SAFETY: no reference into the body is alive; taking the items
        // out runs no user code, and the borrow ends with it.
        if let Body::Seq(items) = unsafe { body_mut(r) } {
            let mut items = items.take();
            for &c in items.as_slice() {
                freed += release_cleared_aware(g, c, &mut taken);
            }
            // SAFETY: the buffer came from this interpreter's heap; GIL held.
            unsafe { items.free_in(g.heap()) };
        } else {
            clear_releasing(g, r, uid, |c| freed += release_cleared_aware(g, c, &mut taken));
        }
        // What the releases above left to release.
        while let Some(c) = taken.pop() {
            freed += release_cleared_aware(g, c, &mut taken);
        }
        // Our hold.
        let rc = h.refcnt.get() - 1;
        h.refcnt.set(rc);
        if rc == 0 {
            free_obj(g, r, Some(&mut taken));
            freed += 1;
            // What its body still held (an instance's class, a method's
            // function and receiver, …), released the same way; a worklist,
            // so a long chain of them cannot overflow the stack.
            while let Some(c) = taken.pop() {
                freed += release_cleared_aware(g, c, &mut taken);
            }
        }
    }
    st(g, |s| s.counts[0] = s.counts[0].saturating_sub(freed));
    collected
}

/// Releases a reference taken out of a garbage object: a garbage object
/// cleared earlier in `delete_garbage` (`slot == TAG_DETACHED`) is freed at
/// once when this was its last reference (returns 1; the references its
/// body still held are pushed on `more`, for the caller to release the same
/// way); anything else goes through `decref`.
#[inline(always)]
fn release_cleared_aware(g: Gil<'_>, c: Raw, more: &mut Vec<Raw>) -> usize {
    let h = head(c);
    let rc = h.refcnt.get();
    if rc != 1 {
        decref(g, c); // no free: more references (or immortal)
        return 0;
    }
    if h.flags.get() & FLAG_GC != 0 && gc_head(c).slot.get() == TAG_DETACHED {
        h.refcnt.set(0);
        free_obj(g, c, Some(more));
        1
    } else {
        decref(g, c);
        0
    }
}

/// The unreachable set when some of it has finalizers, weakrefs or legacy
/// finalizers (or DEBUG_SAVEALL is set): CPython's full order. Every object
/// of `unreachable` is held (+1), detached and flagged FLAG_UNREACHABLE.
fn handle_unreachable_slow(g: Gil<'_>, mut unreachable: Vec<Raw>, debug: u32) -> CollectResult {
    let uid = uid_of(g);
    let mut res = CollectResult::default();

    // Legacy finalizers and everything they reach: uncollectable.
    let mut stack: Vec<Raw> = unreachable
        .iter()
        .copied()
        .filter(|&r| matches!(body(r), Body::Instance(_)) && instance::has_legacy(r))
        .collect();
    for &r in &stack {
        set_flag(r, FLAG_LEGACY_MARK, true);
    }
    let mut legacy = stack.clone();
    while let Some(r) = stack.pop() {
        traverse(r, uid, &mut |c| {
            if has_flag(c, FLAG_UNREACHABLE) && !has_flag(c, FLAG_LEGACY_MARK) {
                set_flag(c, FLAG_LEGACY_MARK, true);
                stack.push(c);
                legacy.push(c);
            }
        });
    }
    if let Some(message) = take_trace_panic() {
        st(g, |s| s.report(Error::CallbackPanicked { context: "Trace::trace", message }));
    }
    if !legacy.is_empty() {
        // CPython's handle_legacy_finalizers: all of them survive and count
        // as uncollectable; gc.garbage gets those that have a legacy
        // finalizer themselves (everything, with DEBUG_SAVEALL).
        res.uncollectable = legacy.len();
        let (mut listed, mut kept) = (Vec::new(), Vec::new());
        st(g, |s| {
            for &r in &legacy {
                set_flag(r, FLAG_LEGACY_MARK | FLAG_UNREACHABLE, false);
                track_survivor(s, r, GEN2);
                if debug & DEBUG_UNCOLLECTABLE != 0 {
                    s.debug_lines.push(format!("gc: uncollectable <{} {:#x}>", type_name_of(r), r.as_ptr() as usize));
                }
                if debug & DEBUG_SAVEALL != 0 || (matches!(body(r), Body::Instance(_)) && instance::has_legacy(r)) {
                    listed.push(r); // our hold becomes the garbage list's reference
                } else {
                    kept.push(r); // alive through the listed ones
                }
            }
        });
        garbage_append(g, listed);
        // Each is referred to by another uncollectable object (that is how it
        // got here), now kept by gc.garbage: releasing our hold frees nothing.
        kept.into_iter().for_each(|r| {
            release_ref(g, r);
        });
        unreachable.retain(|&r| has_flag(r, FLAG_UNREACHABLE));
    }
    if debug & DEBUG_COLLECTABLE != 0 {
        st(g, |s| {
            for &r in &unreachable {
                s.debug_lines.push(format!("gc: collectable <{} {:#x}>", type_name_of(r), r.as_ptr() as usize));
            }
        });
    }

    // Weakrefs that are garbage themselves are cleared first, before any
    // user code runs (CPython's handle_weakrefs): a target outside the
    // garbage that dies while callbacks or finalizers run must not call back
    // with (and so resurrect) a garbage weakref.
    st(g, |s| {
        for &r in &unreachable {
            if has_flag(r, FLAG_SPECIAL) && matches!(body(r), Body::Weakref(_)) {
                detach_weakref(s, r);
            }
        }
    });
    // Weakref callbacks, only for weakrefs outside the garbage.
    let cbs = st(g, |s| {
        let mut all = Vec::new();
        for &r in &unreachable {
            all.extend(clear_weakrefs_to(s, r, |wr| !has_flag(wr, FLAG_UNREACHABLE)));
        }
        all
    });
    for (wr, cb) in cbs {
        run_fn(g, "weakref callback", cb, wr);
    }

    // Finalizers, at most once per object.
    for &r in &unreachable {
        if has_flag(r, FLAG_FINALIZED) {
            continue;
        }
        let fin = match body(r) {
            Body::Instance(_) => types::instance_finalizer(r, false),
            _ => None,
        };
        if let Some(f) = fin {
            set_flag(r, FLAG_FINALIZED, true);
            incref(f);
            incref(r);
            run_fn(g, "finalizer", f, r);
        }
    }

    // Resurrection: what a finalizer made reachable again survives.
    deduce(&unreachable, 1, uid);
    let ok = take_trace_panic().is_none();
    let mut resurrected = Vec::new();
    st(g, |s| {
        for &r in &unreachable {
            let alive = !ok || refs(r) > 0;
            gc_head(r).slot.set(TAG_DETACHED);
            if alive {
                set_flag(r, FLAG_UNREACHABLE, false);
                track_survivor(s, r, SUSPECT);
                resurrected.push(r);
            }
        }
    });
    unreachable.retain(|&r| has_flag(r, FLAG_UNREACHABLE));
    res.collected = unreachable.len();
    // Weakrefs created by finalizers into the garbage: cleared, no callbacks.
    st(g, |s| {
        for &r in &unreachable {
            drop(clear_weakrefs_to(s, r, |_| false));
        }
    });

    if debug & DEBUG_SAVEALL != 0 {
        st(g, |s| {
            for &r in &unreachable {
                set_flag(r, FLAG_UNREACHABLE, false);
                track_survivor(s, r, GEN2);
            }
        });
        garbage_append(g, std::mem::take(&mut unreachable));
    } else {
        // Clear, then release our holds: the garbage frees itself.
        for &r in &unreachable {
            // (A weakref among them was detached before any user code ran.)
            clear_releasing(g, r, uid, |t| decref(g, t));
        }
        for &r in &unreachable {
            set_flag(r, FLAG_UNREACHABLE, false);
            if head(r).refcnt.get() > 1 {
                // Something outside still refers to it: it survives.
                st(g, |s| track_survivor(s, r, SUSPECT));
            }
            decref(g, r);
        }
    }
    resurrected.into_iter().for_each(|r| {
        release_ref(g, r);
    });
    res
}

/// The type name of an object, as the debug reports print it.
fn type_name_of(r: Raw) -> String {
    object::type_name_raw(r)
}

/// Appends `objs` to `gc.garbage` (one reference each, handed over), making
/// the list if needed. If it cannot be made (memory limit), the error is
/// reported and the references released: the objects stay where they are,
/// alive through their cycles, and a later collection finds them again.
fn garbage_append(g: Gil<'_>, objs: Vec<Raw>) {
    if objs.is_empty() {
        return;
    }
    let list = match garbage_list(g) {
        Ok(l) => l,
        Err(e) => {
            st(g, |s| s.report(e));
            objs.into_iter().for_each(|r| decref(g, r));
            return;
        }
    };
    for r in objs {
        let o = Obj::from_raw_owned(r, g);
        if let Err(e) = list.list_append(&o) {
            st(g, |s| s.report(e));
        }
    }
}

/// `gc.garbage`, made on first use.
fn garbage_list(g: Gil<'_>) -> Result<Obj<'_>> {
    if let Some(r) = st(g, |s| s.garbage) {
        return Ok(Obj::from_raw_borrowed(r, g));
    }
    let l = g.list(&[])?;
    st(g, |s| s.garbage = Some(l.clone().into_raw()));
    Ok(l)
}

/// Delivers the debug flags' reports of the collection that just ended, to
/// the debug output (user code: behind the boundary) or stderr.
fn flush_debug_lines(g: Gil<'_>) {
    let (lines, out) = st(g, |s| (std::mem::take(&mut s.debug_lines), s.debug_output.clone()));
    if lines.is_empty() {
        return;
    }
    match out {
        Some(out) => {
            for line in &lines {
                if let Err(e) = run_callback("gc debug output", || out(line)) {
                    st(g, |s| s.report(e));
                }
            }
            if let Err(e) = run_callback("drop of the gc debug output", || drop(out)) {
                st(g, |s| s.report(e));
            }
        }
        None => lines.iter().for_each(|l| eprintln!("{l}")),
    }
}

/// Runs the scheduled collection (from `checkpoint_slow`, BREAK_GC).
pub(crate) fn run_scheduled(g: Gil<'_>) {
    let gen = st(g, |s| {
        s.scheduled = false;
        if !s.enabled || s.collecting {
            return None;
        }
        // Stop-the-world (CPython 3.13): a full collection once the
        // generation-2 count is over its threshold and the long-lived
        // objects grew by a quarter. Incremental: generation 1 is an
        // increment, and a full collection runs only when one is owed
        // (`incomplete`) and the old generation grew by a quarter.
        let full_ok = s.long_lived_pending > s.long_lived_total / 4 && (s.inc.budget.is_none() || s.inc.incomplete);
        let mut gen = (0..3).rev().find(|&i| s.counts[i] > s.thresholds[i] && (i != GEN2 || full_ok));
        // Incremental: an increment instead of a young collection once the
        // work it would find (suspects waiting, generation 1's objects)
        // passes half a budget, so that increments come as often as the
        // program makes work for them, each about one budget, rather than
        // rarely and large (see docs/gc.md, "Cadence").
        if gen == Some(0) && s.inc.budget.is_some() {
            let owed = s.gens[SUSPECT].len() + s.gens[1].len();
            if owed > s.inc.work_budget(s.gens[SUSPECT].len()) / 2 {
                gen = Some(1);
            }
        }
        if gen == Some(GEN2) && s.inc.budget.is_some() {
            s.inc.stats.full_fallbacks += 1;
        }
        gen
    });
    if let Some(gen) = gen {
        if let Err(e) = collect(g, gen, Cause::Automatic) {
            st(g, |s| s.report(e));
        }
    }
}

/// The final collection and freeing of every object, before the heap's
/// teardown (GIL held, in `close()`). Returns (objects freed, errors).
pub(crate) fn teardown(g: Gil<'_>) -> Teardown {
    let _ = collect(g, GEN2, Cause::Final);
    // What gc.garbage still holds after the final collection (CPython warns
    // "gc: N uncollectable objects at shutdown").
    let uncollectable: Vec<String> = match st(g, |s| s.garbage) {
        Some(l) => match body(l) {
            Body::Seq(items) => {
                items.iter().map(|&r| format!("<{} {:#x}>", type_name_of(r), r.as_ptr() as usize)).collect()
            }
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    let uid = uid_of(g);
    g.interpreter().rec.gc.mark_closing();
    let (all, garbage, codec_untracked, warn_state) = st(g, |s| {
        s.closing = true;
        // The cache's references go with every other object below.
        s.types = HashMap::new();
        s.named_classes = HashMap::new();
        s.modules = Vec::new();
        s.builtins_obj = None;
        s.default_import = None;
        s.interned = None;
        // So do the codec registry's (its untracked ones are released after).
        let codec_untracked = crate::codecs::take_for_teardown(s);
        let warn_state = s.warnings.take();
        let mut all = Vec::new();
        for v in &mut s.gens {
            all.append(v);
        }
        for &r in &all {
            gc_head(r).slot.set(0);
            incref(r);
        }
        (all, s.garbage.take(), codec_untracked, warn_state)
    });
    // From here on no user code gets a token of this interpreter: re-entry
    // and new entries are refused (`Interpreter::enter`), `Owned::bind` and
    // `Member` access fail (`closing`). What runs (embedder `Drop`s and
    // clears) runs behind the catch-unwind boundary.
    garbage.into_iter().for_each(|r| decref(g, r));
    // The warnings state's references, while every tracked object still has
    // the extra count taken above (so only untracked ones are freed here).
    if let Some(w) = &warn_state {
        w.references().into_iter().for_each(|r| decref(g, r));
    }
    for &r in &all {
        st(g, |s| {
            drop(clear_weakrefs_to(s, r, |_| false));
            if matches!(body(r), Body::Weakref(_)) {
                detach_weakref(s, r);
            }
        });
        // Released as taken out: only untracked objects die here (every
        // tracked one has the extra count taken above).
        clear_releasing(g, r, uid, |t| decref(g, t));
    }
    for &r in &all {
        // Every object is freed here: what a body still refers to is freed
        // by its own turn, never released.
        free_obj(g, r, None);
    }
    // The shared atoms: their last references are the table's (the cleared
    // containers released theirs above), unless a handle outlives the close.
    codec_untracked.into_iter().for_each(|r| decref(g, r));
    let atoms = st(g, |s| std::mem::take(&mut s.atoms));
    atoms.into_iter().flatten().for_each(|r| decref(g, r));
    let cbs = st(g, |s| {
        // A closed interpreter lives on as a tombstone while handles exist:
        // give back the tables' and scratch buffers' capacity now.
        s.weakrefs = Default::default();
        s.gens = Default::default();
        s.stack = Vec::new();
        s.tentative = Vec::new();
        s.trash = Vec::new();
        s.debug_lines = Vec::new();
        (std::mem::take(&mut s.callbacks), s.debug_output.take())
    });
    let (cbs, out) = cbs;
    for (_, cb) in cbs {
        drop_callback(g, cb);
    }
    if let Err(e) = run_callback("drop of the gc debug output", move || drop(out)) {
        st(g, |s| s.report(e));
    }
    // Its objects were freed above with every other; what is left is plain
    // data and the embedder's output sink, whose drop is user code.
    if let Err(e) = run_callback("drop of the warnings output", move || drop(warn_state)) {
        st(g, |s| s.report(e));
    }
    Teardown { freed: all.len(), errors: st(g, |s| std::mem::take(&mut s.errors)), uncollectable }
}

/// What [`teardown`] did.
pub(crate) struct Teardown {
    pub(crate) freed: usize,
    pub(crate) errors: Vec<Error>,
    pub(crate) uncollectable: Vec<String>,
}

// ----- the gc module API ------------------------------------------------------------

impl<'i> Gil<'i> {
    /// Collects generation `generation` (0, 1 or 2; 2 is a full collection),
    /// like `gc.collect(generation)`. A collection requested while one runs
    /// returns zeros at once. Errors: [`Error::InvalidConfig`] for a
    /// generation above 2; [`Error::CallbackPanicked`] if an embedder's
    /// `Trace::trace` panicked (the collection is abandoned, nothing freed).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let l = g.list(&[])?;
    /// l.list_append(&l)?;
    /// drop(l);
    /// assert_eq!(g.gc_collect(2)?.collected, 1);
    /// assert!(g.gc_collect(3).is_err()); // generations are 0, 1, 2
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_collect(&self, generation: usize) -> Result<CollectResult> {
        if generation > GEN2 {
            return Err(Error::InvalidConfig { reason: "invalid generation: use 0, 1 or 2".into() });
        }
        collect(*self, generation, Cause::Explicit)
    }

    /// Enables automatic collection.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// g.gc_disable();
    /// assert!(!g.gc_is_enabled());
    /// g.gc_enable();
    /// assert!(g.gc_is_enabled());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_enable(&self) {
        st(*self, |s| s.enabled = true)
    }

    /// Disables automatic collection (explicit `gc_collect` still works).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// g.gc_disable(); // no automatic collection; gc_collect still works
    /// assert!(!g.gc_is_enabled());
    /// g.gc_enable();
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_disable(&self) {
        st(*self, |s| s.enabled = false)
    }

    /// Whether automatic collection is enabled.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert!(g.gc_is_enabled());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_is_enabled(&self) -> bool {
        st(*self, |s| s.enabled)
    }

    /// `gc.get_count()`: tracked allocations minus deallocations since the
    /// last collection, then collections of the younger generation.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// g.gc_collect(2)?;
    /// let before = g.gc_get_count().0;
    /// let _l = g.list(&[])?;
    /// assert_eq!(g.gc_get_count().0, before + 1);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_get_count(&self) -> (usize, usize, usize) {
        st(*self, |s| (s.counts[0], s.counts[1], s.counts[2]))
    }

    /// `gc.set_threshold(...)` for one generation: `generation` 0, 1 or 2,
    /// the others unchanged (CPython's optional arguments). Errors:
    /// [`Error::InvalidConfig`] for a generation above 2.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// g.gc_set_threshold_of(0, 5000)?;
    /// assert_eq!(g.gc_get_threshold().0, 5000);
    /// assert!(g.gc_set_threshold_of(3, 1).is_err());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_set_threshold_of(&self, generation: usize, threshold: usize) -> Result<()> {
        if generation > GEN2 {
            return Err(Error::InvalidConfig { reason: "invalid generation: use 0, 1 or 2".into() });
        }
        st(*self, |s| s.thresholds[generation] = threshold);
        Ok(())
    }

    /// `gc.get_threshold()`; default (2000, 10, 10).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let (t0, _, _) = g.gc_get_threshold();
    /// assert!(t0 > 0);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_get_threshold(&self) -> (usize, usize, usize) {
        st(*self, |s| (s.thresholds[0], s.thresholds[1], s.thresholds[2]))
    }

    /// `gc.set_threshold()`; a threshold0 of 0 disables automatic collection.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// g.gc_set_threshold(1000, 10, 10);
    /// assert_eq!(g.gc_get_threshold(), (1000, 10, 10));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_set_threshold(&self, t0: usize, t1: usize, t2: usize) {
        st(*self, |s| s.thresholds = [t0, t1, t2])
    }

    /// Per-generation statistics.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// g.gc_collect(0)?;
    /// assert!(g.gc_stats()[0].collections >= 1);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_stats(&self) -> [GenStats; 3] {
        st(*self, |s| s.stats)
    }

    /// How long collections stopped this interpreter: histograms of the
    /// automatic and the explicit collections' pauses (p50, p99, max,
    /// total), and per-generation totals. See [`PauseStats`](crate::PauseStats).
    ///
    /// ```
    /// use subinterp::{Runtime, RuntimeConfig};
    ///
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let keep = g.list(&[])?;
    ///     for _ in 0..50_000 {
    ///         keep.list_append(&g.list(&[])?)?; // crosses the young threshold
    ///         g.checkpoint()?; // where automatic collections run
    ///     }
    ///     let p = g.gc_pause_stats();
    ///     assert!(p.automatic.count() > 0);
    ///     assert!(p.by_generation[0].count > 0);
    ///     println!("p99 pause {:?}, longest {:?}", p.automatic.p99(), p.automatic.max());
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_pause_stats(&self) -> pauses::PauseStats {
        st(*self, |s| s.pauses.clone())
    }

    /// Forgets the pause statistics (to measure a phase of a program).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// g.gc_collect(0)?;
    /// g.gc_reset_pause_stats();
    /// assert_eq!(g.gc_pause_stats().explicit.count(), 0);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_reset_pause_stats(&self) {
        st(*self, |s| s.pauses = Default::default())
    }

    /// Sets how long an automatic collection of the old generation may stop
    /// the interpreter: `Some(d)` (the default, [`DEFAULT_PAUSE_BUDGET`])
    /// makes generation 1's collections *increments* that also examine the
    /// old objects that may have become garbage (suspects), as many as fit
    /// in `d` at the measured rate; `None` is CPython 3.13's stop-the-world
    /// mode (automatic full collections once the old generation grew by a
    /// quarter). [`Gil::gc_collect`]`(2)` is always a full collection, and
    /// `gc_collect(1)` is an increment in incremental mode. How increments
    /// find every cycle and keep memory bounded: `docs/gc.md`.
    ///
    /// A budget of zero, or above one second, is an `InvalidConfig` error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use subinterp::{Runtime, RuntimeConfig};
    ///
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     assert_eq!(g.gc_pause_budget(), Some(subinterp::DEFAULT_PAUSE_BUDGET));
    ///     g.gc_set_pause_budget(Some(Duration::from_millis(2)))?;
    ///     assert!(g.gc_set_pause_budget(Some(Duration::ZERO)).is_err());
    ///     g.gc_set_pause_budget(None)?; // stop-the-world
    ///     assert_eq!(g.gc_pause_budget(), None);
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_set_pause_budget(&self, budget: Option<std::time::Duration>) -> Result<()> {
        if let Some(d) = budget {
            if d.is_zero() || d > std::time::Duration::from_secs(1) {
                return Err(Error::InvalidConfig {
                    reason: format!(
                        "pause budget {d:?} is out of range: give a duration above zero and at most 1 s, or None \
                         for stop-the-world full collections"
                    ),
                });
            }
        }
        st(*self, |s| s.inc.budget = budget);
        Ok(())
    }

    /// Sets the old-generation work of an increment in objects (suspects
    /// and the objects of their closures), instead of deriving it from the
    /// pause budget at the measured rate: for tests that want small steps
    /// and for embedders that prefer a deterministic amount of work.
    /// `None` goes back to the pause budget. Zero is an `InvalidConfig`
    /// error. Only incremental mode uses it (see [`Gil::gc_set_pause_budget`]).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// g.gc_set_increment_work(Some(10_000))?;
    /// assert!(g.gc_set_increment_work(Some(0)).is_err());
    /// g.gc_set_increment_work(None)?;
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_set_increment_work(&self, objects: Option<usize>) -> Result<()> {
        if objects == Some(0) {
            return Err(Error::InvalidConfig {
                reason: "increment work of 0 objects: give at least 1, or None to size increments by the pause budget"
                    .into(),
            });
        }
        st(*self, |s| s.inc.work = objects);
        Ok(())
    }

    /// The pause budget of automatic old-generation work (`None`:
    /// stop-the-world). See [`Gil::gc_set_pause_budget`].
    pub fn gc_pause_budget(&self) -> Option<std::time::Duration> {
        st(*self, |s| s.inc.budget)
    }

    /// What the incremental collector did (see [`IncrementalStats`]).
    pub fn gc_incremental_stats(&self) -> incremental::IncrementalStats {
        st(*self, |s| {
            let mut x = s.inc.stats;
            x.pending_suspects = s.gens[SUSPECT].len();
            x.full_collection_owed = s.inc.incomplete;
            x
        })
    }

    /// `gc.set_debug` ([`DEBUG_STATS`], [`DEBUG_COLLECTABLE`],
    /// [`DEBUG_UNCOLLECTABLE`], [`DEBUG_SAVEALL`], [`DEBUG_LEAK`]).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// use subinterp::DEBUG_SAVEALL;
    /// g.gc_set_debug(DEBUG_SAVEALL);
    /// let l = g.list(&[])?;
    /// l.list_append(&l)?;
    /// drop(l);
    /// g.gc_collect(2)?;
    /// assert_eq!(g.gc_garbage()?.len()?, 1); // kept, not freed
    /// g.gc_set_debug(0);
    /// g.gc_clear_garbage();
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_set_debug(&self, flags: u32) {
        st(*self, |s| s.debug = flags)
    }

    /// `gc.get_debug`.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.gc_get_debug(), 0);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_get_debug(&self) -> u32 {
        st(*self, |s| s.debug)
    }

    /// `gc.garbage`: a list object, the interpreter's own, that the
    /// collector appends to and the embedder may read and change (CPython
    /// 3.13: objects with a legacy finalizer found in unreachable cycles,
    /// and with [`DEBUG_SAVEALL`] every unreachable object instead of
    /// freeing it). Made on first use.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig, DEBUG_SAVEALL};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     g.gc_set_debug(DEBUG_SAVEALL);
    ///     {
    ///         let a = g.list(&[])?;
    ///         a.list_append(&a)?; // a cycle
    ///     }
    ///     g.gc_collect(2)?;
    ///     let garbage = g.gc_garbage()?;
    ///     assert_eq!(garbage.len()?, 1);
    ///     garbage.clear()?; // the embedder's to change: the cycle is freed by the next collection
    ///     g.gc_set_debug(0);
    ///     assert_eq!(g.gc_collect(2)?.collected, 1);
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_garbage(&self) -> Result<Obj<'i>> {
        garbage_list(*self)
    }

    /// Empties `gc.garbage` (its references are released).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// g.gc_garbage()?.list_append(&g.none()?)?;
    /// g.gc_clear_garbage();
    /// assert_eq!(g.gc_garbage()?.len()?, 0);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_clear_garbage(&self) {
        if let Some(r) = st(*self, |s| s.garbage) {
            let _ = Obj::from_raw_borrowed(r, *self).clear();
        }
    }

    /// Where the reports of [`DEBUG_COLLECTABLE`] and [`DEBUG_UNCOLLECTABLE`]
    /// go: a function called once per line after each collection (user
    /// code: behind the catch-unwind boundary), or stderr (`None`, the
    /// default; CPython writes to `sys.stderr`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// use std::{cell::RefCell, rc::Rc};
    /// let lines = Rc::new(RefCell::new(Vec::new()));
    /// let l2 = lines.clone();
    /// g.gc_set_debug_output(Some(move |line: &str| l2.borrow_mut().push(line.to_owned())));
    /// g.gc_set_debug(subinterp::DEBUG_COLLECTABLE);
    /// let l = g.list(&[])?;
    /// l.list_append(&l)?;
    /// drop(l);
    /// g.gc_collect(2)?;
    /// assert!(lines.borrow()[0].starts_with("gc: collectable <list "));
    /// g.gc_set_debug(0);
    /// g.gc_set_debug_output(None::<fn(&str)>);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_set_debug_output(&self, out: Option<impl Fn(&str) + 'static>) {
        let new = out.map(|f| std::rc::Rc::new(f) as GcDebugOutput);
        let old = st(*self, |s| std::mem::replace(&mut s.debug_output, new));
        if let Err(e) = run_callback("drop of the gc debug output", move || drop(old)) {
            st(*self, |s| s.report(e));
        }
    }

    /// `gc.get_objects(generation)`: a new list of the objects the collector
    /// tracks, in generation `generation` or (`None`) in all three (not the
    /// permanent generation, as CPython). The list itself is left out.
    /// Errors: [`Error::InvalidConfig`] for a generation above 2 (CPython's
    /// `ValueError`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let l = g.list(&[])?;
    /// let all = g.gc_get_objects(None)?;
    /// assert!(all.dict_items().is_err()); // a list of objects
    /// let found = (0..all.len()?).any(|i| all.get_item(i).map(|o| o.is(&l)).unwrap_or(false));
    /// assert!(found);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_get_objects(&self, generation: Option<usize>) -> Result<Obj<'i>> {
        self.audit_with("gc.get_objects", || {
            Ok(vec![self.int(generation.map_or(-1, |n| n.min(i64::MAX as usize) as i64))?])
        })?;
        if generation.is_some_and(|gen| gen > GEN2) {
            return Err(Error::InvalidConfig {
                reason: "generation parameter must be less than the number of available generations (3)".into(),
            });
        }
        let gens: &[usize] = match generation {
            Some(0) => &[0],
            Some(1) => &[1],
            Some(_) => &[GEN2, SUSPECT],
            None => &[0, 1, GEN2, SUSPECT],
        };
        let raws: Vec<Raw> = st(*self, |s| gens.iter().flat_map(|&i| s.gens[i].iter().copied()).collect());
        let objs: Vec<Obj<'i>> = raws.into_iter().map(|r| Obj::from_raw_borrowed(r, *self)).collect();
        self.list(&objs)
    }

    /// `gc.get_referrers(*objs)`: a new list of the tracked objects (all
    /// three generations) that refer to any of `objs`, found by traversing
    /// each; the list itself is left out.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let item = g.list(&[])?;
    /// let holder = g.list(std::slice::from_ref(&item))?;
    /// let refs = g.gc_get_referrers(std::slice::from_ref(&item))?;
    /// assert!((0..refs.len()?).any(|i| refs.get_item(i).unwrap().is(&holder)));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_get_referrers(&self, objs: &[Obj<'i>]) -> Result<Obj<'i>> {
        self.audit_with("gc.get_referrers", || Ok(vec![self.tuple(objs)?]))?;
        let uid = uid_of(*self);
        let targets: Vec<Raw> = objs.iter().map(|o| o.raw()).collect();
        let all: Vec<Raw> =
            st(*self, |s| [0, 1, GEN2, SUSPECT].into_iter().flat_map(|i| s.gens[i].iter().copied()).collect());
        let mut found = Vec::new();
        for r in all {
            let mut hit = false;
            traverse(r, uid, &mut |c| hit |= targets.contains(&c));
            if hit {
                found.push(Obj::from_raw_borrowed(r, *self));
            }
        }
        if let Some(message) = take_trace_panic() {
            return Err(Error::CallbackPanicked { context: "Trace::trace", message });
        }
        self.list(&found)
    }

    /// `gc.get_referents(*objs)`: a new list of the objects `objs` refer to
    /// directly (what their traversal visits; atoms refer to nothing).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let item = g.list(&[])?;
    /// let holder = g.list(std::slice::from_ref(&item))?;
    /// let refs = g.gc_get_referents(std::slice::from_ref(&holder))?;
    /// assert!(refs.get_item(0)?.is(&item));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_get_referents(&self, objs: &[Obj<'i>]) -> Result<Obj<'i>> {
        self.audit_with("gc.get_referents", || Ok(vec![self.tuple(objs)?]))?;
        let uid = uid_of(*self);
        let mut found = Vec::new();
        for o in objs {
            traverse(o.raw(), uid, &mut |c| found.push(c));
        }
        if let Some(message) = take_trace_panic() {
            return Err(Error::CallbackPanicked { context: "Trace::trace", message });
        }
        let found: Vec<Obj<'i>> = found.into_iter().map(|r| Obj::from_raw_borrowed(r, *self)).collect();
        self.list(&found)
    }

    /// `gc.freeze()`: moves every tracked object to the permanent generation.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let _kept = g.list(&[])?;
    /// g.gc_freeze(); // into the permanent generation: never scanned
    /// assert!(g.gc_freeze_count() >= 1);
    /// g.gc_unfreeze();
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_freeze(&self) {
        st(*self, |s| {
            for i in [0, 1, GEN2, SUSPECT] {
                for r in std::mem::take(&mut s.gens[i]) {
                    s.track(r, PERMANENT);
                }
            }
            s.counts = [0; 3];
        })
    }

    /// `gc.unfreeze()`: back into the oldest generation.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// g.gc_freeze();
    /// g.gc_unfreeze();
    /// assert_eq!(g.gc_freeze_count(), 0);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_unfreeze(&self) {
        st(*self, |s| {
            // Suspects: decrements of frozen objects were not recorded, so
            // each is examined by an increment (or the next full collection).
            for r in std::mem::take(&mut s.gens[PERMANENT]) {
                s.track(r, SUSPECT);
            }
        })
    }

    /// `gc.get_freeze_count()`.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.gc_freeze_count(), 0);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_freeze_count(&self) -> usize {
        st(*self, |s| s.gens[PERMANENT].len())
    }

    /// Number of tracked objects in each generation (`len(gc.get_objects(i))`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// g.gc_collect(2)?;
    /// let _l = g.list(&[])?;
    /// assert!(g.gc_generation_sizes()[0] >= 1);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_generation_sizes(&self) -> [usize; 3] {
        st(*self, |s| [s.gens[0].len(), s.gens[1].len(), s.gens[GEN2].len() + s.gens[SUSPECT].len()])
    }

    /// Registers a start/stop callback (CPython's `gc.callbacks`); returns
    /// its id. It is called with this interpreter's token, so it may
    /// allocate, inspect objects or change `gc.garbage`; a collection it
    /// asks for while one runs returns zeros.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig, GcPhase};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let seen = std::rc::Rc::new(std::cell::Cell::new(0));
    ///     let s = seen.clone();
    ///     let id = g.gc_add_callback(move |g, phase, _gen, info| {
    ///         if phase == GcPhase::Stop {
    ///             s.set(info.collected);
    ///             let _ = g.gc_garbage(); // the token is usable here
    ///         }
    ///     });
    ///     { let l = g.list(&[])?; l.list_append(&l)?; }
    ///     g.gc_collect(2)?;
    ///     assert_eq!(seen.get(), 1);
    ///     assert!(g.gc_remove_callback(id));
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_add_callback(&self, f: impl for<'a> Fn(Gil<'a>, GcPhase, usize, CollectResult) + 'static) -> u64 {
        st(*self, |s| {
            s.next_cb += 1;
            s.callbacks.push((s.next_cb, std::rc::Rc::new(f)));
            s.next_cb
        })
    }

    /// Removes a callback; returns whether it was registered.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let id = g.gc_add_callback(|_, _, _, _| {});
    /// assert!(g.gc_remove_callback(id));
    /// assert!(!g.gc_remove_callback(id));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_remove_callback(&self, id: u64) -> bool {
        let removed = st(*self, |s| {
            let i = s.callbacks.iter().position(|(c, _)| *c == id)?;
            Some(s.callbacks.remove(i).1)
        });
        match removed {
            Some(cb) => {
                drop_callback(*self, cb);
                true
            }
            None => false,
        }
    }

    /// Takes the errors reported by finalizers, weakref callbacks, clears and
    /// gc callbacks (caught panics, returned errors), like unraisable hooks.
    ///
    /// At most [`MAX_KEPT_ERRORS`] are kept between two calls; later ones are
    /// only counted ([`gc_errors_dropped`](Self::gc_errors_dropped)).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let boom = g.function("__del__", &[], |_, _, _| panic!("boom"))?;
    /// let o = g.instance("Fragile")?;
    /// o.set_finalizer(Some(&boom))?;
    /// drop(o); // the panic is caught and reported, never unwinds here
    /// let errors = g.gc_take_errors();
    /// assert_eq!(errors.len(), 1);
    /// assert!(errors[0].to_string().contains("boom"));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_take_errors(&self) -> Vec<Error> {
        st(*self, |s| std::mem::take(&mut s.errors))
    }

    /// How many errors were not kept because [`MAX_KEPT_ERRORS`] were
    /// waiting to be taken (a running total).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.gc_errors_dropped(), 0);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gc_errors_dropped(&self) -> usize {
        st(*self, |s| s.errors_dropped)
    }
}
