//! Objects and the per-interpreter generational cycle collector (issue 4).
//! See `docs/gc.md`.

pub(crate) mod object;
pub(crate) mod trace;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use object::*;

use crate::error::{panic_message, Error, Result};
use crate::interp::run_callback;
use crate::Gil;

const GEN0: usize = 0;
const GEN2: usize = 2;
const PERMANENT: usize = 3;
const UNREACH: usize = 4;
const NHEADS: usize = 5;

/// Debug flag: print statistics of each collection to stderr.
pub const DEBUG_STATS: u32 = 1;
/// Debug flag: keep all unreachable objects in [`Gil::gc_garbage`] instead of freeing them.
pub const DEBUG_SAVEALL: u32 = 32;

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

/// A callback registered with [`Gil::gc_add_callback`].
pub type GcCallback = std::rc::Rc<dyn Fn(GcPhase, usize, CollectResult)>;

pub(crate) struct GcState {
    heads: Box<[GcHead; NHEADS]>,
    counts: [usize; 3],
    thresholds: [usize; 3],
    enabled: bool,
    collecting: bool,
    scheduled: bool,
    long_lived_total: usize,
    long_lived_pending: usize,
    stats: [GenStats; 3],
    debug: u32,
    garbage: Vec<Raw>,
    callbacks: Vec<(u64, GcCallback)>,
    next_cb: u64,
    weakrefs: HashMap<usize, Vec<Raw>>,
    errors: Vec<Error>,
    trash: Vec<Raw>,
    deallocating: bool,
    closing: bool,
}

impl GcState {
    fn head_addr(&self, i: usize) -> usize {
        &self.heads[i] as *const GcHead as usize
    }
}

fn hnode<'a>(addr: usize) -> &'a GcHead {
    // SAFETY: `addr` is a list head (boxed in a live GcState) or the GcHead
    // of a live tracked object.
    unsafe { &*(addr as *const GcHead) }
}

fn node_of(r: Raw) -> usize {
    gc_head(r) as *const GcHead as usize
}

fn list_init(head: usize) {
    hnode(head).next.set(head);
    hnode(head).prev.set(head);
}

fn list_append(head: usize, r: Raw) {
    let n = node_of(r);
    let last = hnode(head).prev.get();
    hnode(last).next.set(n);
    gc_head(r).prev.set(last);
    gc_head(r).next.set(head);
    hnode(head).prev.set(n);
}

fn list_unlink(r: Raw) {
    let g = gc_head(r);
    let (p, n) = (g.prev.get(), g.next.get());
    hnode(p).next.set(n);
    hnode(n).prev.set(p);
    g.next.set(0);
    g.prev.set(0);
}

fn list_drain(head: usize, out: &mut Vec<Raw>) {
    let mut n = hnode(head).next.get();
    while n != head {
        out.push(from_gc(n));
        n = hnode(n).next.get();
    }
    list_init(head);
}

fn list_len(head: usize) -> usize {
    let (mut n, mut c) = (hnode(head).next.get(), 0);
    while n != head {
        c += 1;
        n = hnode(n).next.get();
    }
    c
}

/// The interpreter's collector state; touched only under its GIL.
pub(crate) struct GcCell(crate::sync::UnsafeCell<GcState>, crate::sync::AtomicBool);

// SAFETY: the state is only accessed by the holder of the interpreter's GIL
// (every accessor takes a `Gil` or runs in `close()` with the GIL held); the
// one flag read without the GIL (`closing`) is the atomic beside the cell.
unsafe impl Sync for GcCell {}
// SAFETY: as above; the raw pointers inside are never dereferenced without the GIL.
unsafe impl Send for GcCell {}

impl GcCell {
    pub(crate) fn new() -> Self {
        let st = GcState {
            // Heads link to themselves once boxed (below).
            heads: Box::new(std::array::from_fn(|_| GcHead { next: 0.into(), prev: 0.into() })),
            counts: [0; 3],
            thresholds: [2000, 10, 10],
            enabled: true,
            collecting: false,
            scheduled: false,
            long_lived_total: 0,
            long_lived_pending: 0,
            stats: [GenStats::default(); 3],
            debug: 0,
            garbage: Vec::new(),
            callbacks: Vec::new(),
            next_cb: 0,
            weakrefs: HashMap::new(),
            errors: Vec::new(),
            trash: Vec::new(),
            deallocating: false,
            closing: false,
        };
        for i in 0..NHEADS {
            list_init(st.head_addr(i));
        }
        GcCell(crate::sync::UnsafeCell::new(st), crate::sync::AtomicBool::new(false))
    }

    /// Runs `f` on the state. `f` must not run user code or release references.
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut GcState) -> R) -> R {
        // SAFETY: the caller holds the interpreter's GIL (every path here comes
        // from a `Gil` token or from `close()` holding the GIL), and `f` runs
        // no user code, so no second reference can be created meanwhile.
        self.0.with_mut(|p| f(unsafe { &mut *p }))
    }

    /// Whether teardown has begun (objects must not be touched any more).
    pub(crate) fn is_closing(&self) -> bool {
        self.1.load(crate::sync::Ordering::Acquire)
    }
}

fn st<R>(g: Gil<'_>, f: impl FnOnce(&mut GcState) -> R) -> R {
    g.interpreter().rec.gc.with(f)
}

pub(crate) fn alloc_obj(g: Gil<'_>, body: Body, gc: bool, data: &[u8]) -> Result<Raw> {
    let off = if gc { GC_HEAD_SIZE } else { 0 };
    let size = off + std::mem::size_of::<ObjHead>() + data.len();
    let base = g.heap().alloc(size)?;
    let mut flags = if gc { FLAG_GC } else { 0 };
    if size <= crate::mem::SMALL_REQUEST_THRESHOLD {
        flags |= FLAG_SMALL;
    }
    // SAFETY: `base` is a fresh block of `size` bytes, 16-byte aligned; the
    // GcHead (16 bytes) and ObjHead fit, followed by `data.len()` bytes.
    let raw = unsafe {
        let p = base.as_ptr().add(off).cast::<ObjHead>();
        p.write(ObjHead { refcnt: 1.into(), flags: flags.into(), body: std::cell::UnsafeCell::new(body) });
        std::ptr::copy_nonoverlapping(data.as_ptr(), p.cast::<u8>().add(std::mem::size_of::<ObjHead>()), data.len());
        std::ptr::NonNull::new_unchecked(p)
    };
    if gc {
        let schedule = st(g, |s| {
            list_append(s.head_addr(GEN0), raw);
            s.counts[0] += 1;
            if s.enabled && s.thresholds[0] > 0 && s.counts[0] > s.thresholds[0] && !s.collecting && !s.scheduled {
                s.scheduled = true;
                true
            } else {
                false
            }
        });
        if schedule {
            g.interpreter().rec.schedule_gc();
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
    for wr in s.weakrefs.remove(&(r.as_ptr() as usize)).unwrap_or_default() {
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
        st(g, |s| s.errors.push(e));
    }
}

/// Frees `r` (refcount zero) and everything that reaches zero with it,
/// iteratively: nested calls only queue (CPython's trashcan).
pub(crate) fn dealloc(g: Gil<'_>, r: Raw) {
    let run = st(g, |s| {
        s.trash.push(r);
        !std::mem::replace(&mut s.deallocating, true)
    });
    if !run {
        return;
    }
    while let Some(r) = st(g, |s| s.trash.pop()) {
        dealloc_one(g, r);
    }
    st(g, |s| s.deallocating = false);
}

fn dealloc_one(g: Gil<'_>, r: Raw) {
    let closing = st(g, |s| s.closing);
    // Finalizer (PEP 442), at most once; it may resurrect the object.
    if !closing && !has_flag(r, FLAG_FINALIZED) {
        let fin = match body(r) {
            Body::Instance(i) => i.finalizer.or(i.legacy),
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
                return; // resurrected
            }
        }
    }
    let cbs = st(g, |s| clear_weakrefs_to(s, r, |_| true));
    for (wr, cb) in cbs {
        run_fn(g, "weakref callback", cb, wr);
    }
    let mut kids = Vec::new();
    if let Err(e) = run_callback("Trace::clear", || take_refs(r, &mut kids)) {
        st(g, |s| s.errors.push(e));
    }
    st(g, |s| {
        if matches!(body(r), Body::Weakref(_)) {
            detach_weakref(s, r);
        }
        if has_flag(r, FLAG_GC) && gc_head(r).next.get() != 0 {
            list_unlink(r);
            if s.counts[0] > 0 {
                s.counts[0] -= 1;
            }
        }
        for k in kids {
            let h = head(k);
            let c = h.refcnt.get() - 1;
            h.refcnt.set(c);
            if c == 0 {
                s.trash.push(k);
            }
        }
    });
    free_obj(g, r);
}

fn free_obj(g: Gil<'_>, r: Raw) {
    let flags = head(r).flags.get();
    let off = if flags & FLAG_GC != 0 { GC_HEAD_SIZE } else { 0 };
    // SAFETY: the object is dead (refcount zero or torn down), unlinked, and
    // its references were taken out; its block is `off` bytes before it, a
    // live block of this heap, small iff FLAG_SMALL.
    unsafe {
        std::ptr::drop_in_place(r.as_ptr());
        let base = std::ptr::NonNull::new_unchecked((r.as_ptr() as *mut u8).sub(off));
        g.heap().free_known(base, flags & FLAG_SMALL != 0);
    }
}

/// CPython's `deduce_unreachable` over `objs`: afterwards, `prev >> PREV_SHIFT`
/// of each is > 0 iff it is reachable from outside (refcount minus `hold`
/// minus internal references) or from such an object. Links are clobbered.
fn deduce(objs: &[Raw], hold: usize) {
    for &r in objs {
        gc_head(r).prev.set(((head(r).refcnt.get() - hold) << PREV_SHIFT) | PREV_COLLECTING);
    }
    for &r in objs {
        traverse(r, &mut |c| {
            if has_flag(c, FLAG_GC) {
                let p = gc_head(c).prev.get();
                if p & PREV_COLLECTING != 0 {
                    gc_head(c).prev.set(p - (1 << PREV_SHIFT));
                }
            }
        });
    }
    let mut stack: Vec<Raw> = objs.iter().copied().filter(|&r| gc_head(r).prev.get() >> PREV_SHIFT > 0).collect();
    while let Some(r) = stack.pop() {
        traverse(r, &mut |c| {
            if has_flag(c, FLAG_GC) {
                let p = gc_head(c).prev.get();
                if p & PREV_COLLECTING != 0 && p >> PREV_SHIFT == 0 {
                    gc_head(c).prev.set((1 << PREV_SHIFT) | PREV_COLLECTING);
                    stack.push(c);
                }
            }
        });
    }
}

fn refs(r: Raw) -> usize {
    gc_head(r).prev.get() >> PREV_SHIFT
}

fn run_gc_callbacks(g: Gil<'_>, phase: GcPhase, gen: usize, res: CollectResult) {
    let cbs: Vec<GcCallback> = st(g, |s| s.callbacks.iter().map(|(_, c)| c.clone()).collect());
    for cb in cbs {
        if let Err(e) = run_callback("gc callback", || cb(phase, gen, res)) {
            st(g, |s| s.errors.push(e));
        }
    }
}

fn collect(g: Gil<'_>, gen: usize, callbacks: bool) -> Result<CollectResult> {
    if st(g, |s| std::mem::replace(&mut s.collecting, true)) {
        return Ok(CollectResult::default());
    }
    if callbacks {
        run_gc_callbacks(g, GcPhase::Start, gen, CollectResult::default());
    }
    let r = collect_inner(g, gen);
    st(g, |s| s.collecting = false);
    let res = r?;
    if callbacks {
        run_gc_callbacks(g, GcPhase::Stop, gen, res);
    }
    Ok(res)
}

fn collect_inner(g: Gil<'_>, gen: usize) -> Result<CollectResult> {
    let target = (gen + 1).min(GEN2);
    let (cands, debug) = st(g, |s| {
        s.scheduled = false;
        if gen < GEN2 {
            s.counts[gen + 1] += 1;
        }
        for c in &mut s.counts[..=gen] {
            *c = 0;
        }
        let mut v = Vec::new();
        for i in 0..=gen {
            list_drain(s.head_addr(i), &mut v);
        }
        (v, s.debug)
    });
    // No user code runs from here to the partition, except `Trace::trace`.
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| deduce(&cands, 0))) {
        st(g, |s| {
            for &c in &cands {
                list_append(s.head_addr(gen), c);
            }
        });
        return Err(Error::CallbackPanicked { context: "Trace::trace", message: panic_message(p.as_ref()) });
    }
    let mut unreachable = Vec::new();
    st(g, |s| {
        let mut survivors = 0;
        for &c in &cands {
            if refs(c) > 0 {
                list_append(s.head_addr(target), c);
                survivors += 1;
            } else {
                set_flag(c, FLAG_UNREACHABLE, true);
                incref(c);
                list_append(s.head_addr(UNREACH), c);
                unreachable.push(c);
            }
        }
        if gen == 1 {
            s.long_lived_pending += survivors;
        } else if gen == GEN2 {
            s.long_lived_total = survivors;
            s.long_lived_pending = 0;
        }
    });
    let mut res = CollectResult::default();

    // Legacy finalizers and everything they reach: uncollectable.
    let mut stack: Vec<Raw> =
        unreachable.iter().copied().filter(|&r| matches!(body(r), Body::Instance(i) if i.legacy.is_some())).collect();
    for &r in &stack {
        set_flag(r, FLAG_LEGACY_MARK, true);
    }
    let mut legacy = stack.clone();
    while let Some(r) = stack.pop() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            traverse(r, &mut |c| {
                if has_flag(c, FLAG_UNREACHABLE) && !has_flag(c, FLAG_LEGACY_MARK) {
                    set_flag(c, FLAG_LEGACY_MARK, true);
                    stack.push(c);
                    legacy.push(c);
                }
            })
        }));
    }
    if !legacy.is_empty() {
        res.uncollectable = legacy.len();
        st(g, |s| {
            for &r in &legacy {
                set_flag(r, FLAG_LEGACY_MARK | FLAG_UNREACHABLE, false);
                list_unlink(r);
                list_append(s.head_addr(GEN2), r);
                s.garbage.push(r); // our hold becomes the garbage list's reference
            }
        });
        unreachable.retain(|&r| has_flag(r, FLAG_UNREACHABLE));
    }

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
            Body::Instance(i) => i.finalizer,
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
    let ok = catch_unwind(AssertUnwindSafe(|| deduce(&unreachable, 1))).is_ok();
    let mut resurrected = Vec::new();
    st(g, |s| {
        list_init(s.head_addr(UNREACH));
        for &r in &unreachable {
            if !ok || refs(r) > 0 {
                gc_head(r).prev.set(0);
                set_flag(r, FLAG_UNREACHABLE, false);
                list_append(s.head_addr(GEN2), r);
                resurrected.push(r);
            } else {
                gc_head(r).prev.set(0);
                list_append(s.head_addr(UNREACH), r);
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
                list_unlink(r);
                list_append(s.head_addr(GEN2), r);
                s.garbage.push(r);
            }
        });
    } else {
        // Clear, then release our holds: the garbage frees itself.
        for &r in &unreachable {
            let mut taken = Vec::new();
            if let Err(e) = run_callback("Trace::clear", || take_refs(r, &mut taken)) {
                st(g, |s| s.errors.push(e));
            }
            if matches!(body(r), Body::Weakref(_)) {
                st(g, |s| detach_weakref(s, r));
            }
            taken.into_iter().for_each(|t| decref(g, t));
        }
        for &r in &unreachable {
            set_flag(r, FLAG_UNREACHABLE, false);
            if head(r).refcnt.get() > 1 {
                st(g, |s| {
                    list_unlink(r);
                    list_append(s.head_addr(GEN2), r);
                });
            }
            decref(g, r);
        }
    }
    resurrected.into_iter().for_each(|r| decref(g, r));
    st(g, |s| {
        s.stats[gen].collections += 1;
        s.stats[gen].collected += res.collected;
        s.stats[gen].uncollectable += res.uncollectable;
    });
    if debug & DEBUG_STATS != 0 {
        eprintln!("gc: collected {} objects, {} uncollectable (generation {gen})", res.collected, res.uncollectable);
    }
    Ok(res)
}

/// Runs the scheduled collection (from `checkpoint_slow`, BREAK_GC).
pub(crate) fn run_scheduled(g: Gil<'_>) {
    let gen = st(g, |s| {
        s.scheduled = false;
        if !s.enabled || s.collecting {
            return None;
        }
        (0..3)
            .rev()
            .find(|&i| s.counts[i] > s.thresholds[i] && (i != GEN2 || s.long_lived_pending > s.long_lived_total / 4))
    });
    if let Some(gen) = gen {
        if let Err(e) = collect(g, gen, true) {
            st(g, |s| s.errors.push(e));
        }
    }
}

/// The final collection and freeing of every object, before the heap's
/// teardown (GIL held, in `close()`). Returns (objects freed, errors).
pub(crate) fn teardown(g: Gil<'_>) -> (usize, Vec<Error>) {
    let _ = collect(g, GEN2, false);
    g.interpreter().rec.gc.1.store(true, crate::sync::Ordering::Release);
    let (all, garbage) = st(g, |s| {
        s.closing = true;
        let mut all = Vec::new();
        for i in 0..NHEADS {
            list_drain(s.head_addr(i), &mut all);
        }
        for &r in &all {
            gc_head(r).next.set(0);
            gc_head(r).prev.set(0);
            incref(r);
        }
        (all, std::mem::take(&mut s.garbage))
    });
    garbage.into_iter().for_each(|r| decref(g, r));
    for &r in &all {
        let mut taken = Vec::new();
        let _ = run_callback("Trace::clear", || take_refs(r, &mut taken));
        st(g, |s| {
            drop(clear_weakrefs_to(s, r, |_| false));
            if matches!(body(r), Body::Weakref(_)) {
                detach_weakref(s, r);
            }
        });
        taken.into_iter().for_each(|t| decref(g, t));
    }
    for &r in &all {
        free_obj(g, r);
    }
    let (errors, cbs) = st(g, |s| {
        s.weakrefs.clear();
        (std::mem::take(&mut s.errors), std::mem::take(&mut s.callbacks))
    });
    drop(cbs);
    (all.len(), errors)
}

// ----- the gc module API ------------------------------------------------------------

impl<'i> Gil<'i> {
    /// Collects generation `generation` (0, 1 or 2; 2 is a full collection),
    /// like `gc.collect(generation)`. A collection requested while one runs
    /// returns zeros at once. Errors: [`Error::InvalidConfig`] for a
    /// generation above 2; [`Error::CallbackPanicked`] if an embedder's
    /// `Trace::trace` panicked (the collection is abandoned, nothing freed).
    pub fn gc_collect(&self, generation: usize) -> Result<CollectResult> {
        if generation > GEN2 {
            return Err(Error::InvalidConfig { reason: "invalid generation: use 0, 1 or 2".into() });
        }
        collect(*self, generation, true)
    }

    /// Enables automatic collection.
    pub fn gc_enable(&self) {
        st(*self, |s| s.enabled = true)
    }

    /// Disables automatic collection (explicit `gc_collect` still works).
    pub fn gc_disable(&self) {
        st(*self, |s| s.enabled = false)
    }

    /// Whether automatic collection is enabled.
    pub fn gc_is_enabled(&self) -> bool {
        st(*self, |s| s.enabled)
    }

    /// `gc.get_count()`: tracked allocations minus deallocations since the
    /// last collection, then collections of the younger generation.
    pub fn gc_get_count(&self) -> (usize, usize, usize) {
        st(*self, |s| (s.counts[0], s.counts[1], s.counts[2]))
    }

    /// `gc.get_threshold()`; default (2000, 10, 10).
    pub fn gc_get_threshold(&self) -> (usize, usize, usize) {
        st(*self, |s| (s.thresholds[0], s.thresholds[1], s.thresholds[2]))
    }

    /// `gc.set_threshold()`; a threshold0 of 0 disables automatic collection.
    pub fn gc_set_threshold(&self, t0: usize, t1: usize, t2: usize) {
        st(*self, |s| s.thresholds = [t0, t1, t2])
    }

    /// Per-generation statistics.
    pub fn gc_stats(&self) -> [GenStats; 3] {
        st(*self, |s| s.stats)
    }

    /// `gc.set_debug` ([`DEBUG_STATS`], [`DEBUG_SAVEALL`]).
    pub fn gc_set_debug(&self, flags: u32) {
        st(*self, |s| s.debug = flags)
    }

    /// `gc.get_debug`.
    pub fn gc_get_debug(&self) -> u32 {
        st(*self, |s| s.debug)
    }

    /// `gc.garbage`: uncollectable objects (and, with [`DEBUG_SAVEALL`], all
    /// unreachable ones).
    pub fn gc_garbage(&self) -> Vec<Obj<'i>> {
        let raws: Vec<Raw> = st(*self, |s| s.garbage.clone());
        raws.into_iter().map(|r| Obj::from_raw_borrowed(r, *self)).collect()
    }

    /// Empties `gc.garbage` (its references are released).
    pub fn gc_clear_garbage(&self) {
        let raws = st(*self, |s| std::mem::take(&mut s.garbage));
        raws.into_iter().for_each(|r| decref(*self, r));
    }

    /// `gc.freeze()`: moves every tracked object to the permanent generation.
    pub fn gc_freeze(&self) {
        st(*self, |s| {
            let mut v = Vec::new();
            for i in 0..3 {
                list_drain(s.head_addr(i), &mut v);
            }
            v.into_iter().for_each(|r| list_append(s.head_addr(PERMANENT), r));
            s.counts = [0; 3];
        })
    }

    /// `gc.unfreeze()`: back into the oldest generation.
    pub fn gc_unfreeze(&self) {
        st(*self, |s| {
            let mut v = Vec::new();
            list_drain(s.head_addr(PERMANENT), &mut v);
            v.into_iter().for_each(|r| list_append(s.head_addr(GEN2), r));
        })
    }

    /// `gc.get_freeze_count()`.
    pub fn gc_freeze_count(&self) -> usize {
        st(*self, |s| list_len(s.head_addr(PERMANENT)))
    }

    /// Number of tracked objects in each generation (`len(gc.get_objects(i))`).
    pub fn gc_generation_sizes(&self) -> [usize; 3] {
        st(*self, |s| [0, 1, 2].map(|i| list_len(s.head_addr(i))))
    }

    /// Registers a start/stop callback; returns its id.
    pub fn gc_add_callback(&self, f: impl Fn(GcPhase, usize, CollectResult) + 'static) -> u64 {
        st(*self, |s| {
            s.next_cb += 1;
            s.callbacks.push((s.next_cb, std::rc::Rc::new(f)));
            s.next_cb
        })
    }

    /// Removes a callback; returns whether it was registered.
    pub fn gc_remove_callback(&self, id: u64) -> bool {
        let removed = st(*self, |s| {
            let i = s.callbacks.iter().position(|(c, _)| *c == id)?;
            Some(s.callbacks.remove(i))
        });
        removed.is_some()
    }

    /// Takes the errors reported by finalizers, weakref callbacks, clears and
    /// gc callbacks (caught panics, returned errors), like unraisable hooks.
    pub fn gc_take_errors(&self) -> Vec<Error> {
        st(*self, |s| std::mem::take(&mut s.errors))
    }
}
