//! Thread states and "which interpreter am I in".
//!
//! Each OS thread has one [`ThreadCtx`] in a thread-local. It holds:
//! * `top`: the innermost `with_gil` frame of this thread. Frames live on the
//!   Rust stack of `with_gil` and link to the frame they nest in, so finding
//!   the current interpreter is one thread-local read (O(1)), and "is this
//!   thread inside interpreter X anywhere on its stack" is a walk of the
//!   frames (a handful at most).
//! * the thread's thread states: one per interpreter it has entered, created
//!   on first entry (CPython's `PyThreadState`, one per (OS thread,
//!   interpreter)). Each interpreter counts its thread states; the count drops
//!   when the thread exits.

use std::cell::{Cell, RefCell};

use super::{Interpreter, Record};
use crate::sync::{self, Arc, Ordering};

/// Source of unique thread ids (never 0, so 0 can mean "nobody").
static NEXT_THREAD_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One `with_gil` activation on this thread.
pub(crate) struct Frame {
    /// The interpreter this frame is inside. Valid for the frame's life: the
    /// `with_gil` caller holds the `Interpreter` that `handle` points to.
    pub(crate) handle: *const Interpreter,
    /// Whether this thread holds that interpreter's GIL right now (false
    /// inside `allow_threads`).
    pub(crate) holds: Cell<bool>,
    /// The frame this one nests in, or null.
    pub(crate) prev: *const Frame,
}

impl Frame {
    /// The interpreter record of this frame.
    pub(crate) fn record(&self) -> &Record {
        // SAFETY: `handle` points to the `Interpreter` borrowed by the
        // `with_gil` call that owns this frame; it outlives the frame.
        unsafe { &(*self.handle).rec }
    }

    /// The interpreter handle of this frame.
    pub(crate) fn handle(&self) -> &Interpreter {
        // SAFETY: as in `record`.
        unsafe { &*self.handle }
    }
}

struct TsEntry {
    /// Weak, so that a thread that once entered an interpreter does not keep
    /// its record alive; the allocation stays, so `ptr` cannot be reused.
    interp: sync::Weak<Record>,
    ptr: *const Record,
    tstate_id: u64,
}

/// A thread's epoch handle for one runtime's collector: (runtime uid, weak
/// "alive" token of that runtime, the handle, boxed so that its address is
/// stable for the `last_epoch` cache, and a clone of the collector).
///
/// The collector clone comes after the handle, so it is dropped after it: a
/// handle is never the collector's last reference. Otherwise a thread that
/// outlives its runtime would drop the collector from inside the handle's
/// own finalization (`Local::finalize(&self)` freeing that `Local`: the
/// use-after-free-through-a-live-reference of crossbeam-rs/crossbeam#545,
/// which Miri reports).
type EpochHandle = (u64, sync::Weak<()>, Box<crossbeam_epoch::LocalHandle>, crossbeam_epoch::Collector);

/// Per-OS-thread context.
pub(crate) struct ThreadCtx {
    pub(crate) uid: u64,
    pub(crate) top: Cell<*const Frame>,
    tstates: RefCell<Vec<TsEntry>>,
    /// The record of the thread state used last (a cache for `ensure_tstate`;
    /// safe to compare because `tstates` keeps that allocation alive).
    last_tstate: Cell<*const Record>,
    /// This thread's epoch handle for each runtime registry it has read,
    /// tagged with the runtime's uid and a weak "alive" token used to prune
    /// dead runtimes. Kept here rather than in a second thread-local so that
    /// thread exit tears both down in one fixed order (loom requires it).
    epoch_handles: RefCell<Vec<EpochHandle>>,
    /// The handle used last: (runtime uid, pointer into its `Box` above).
    last_epoch: Cell<(u64, *const crossbeam_epoch::LocalHandle)>,
}

sync::thread_local! {
    static CTX: ThreadCtx = ThreadCtx::new();
}

impl ThreadCtx {
    fn new() -> Self {
        Self {
            uid: NEXT_THREAD_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            top: Cell::new(std::ptr::null()),
            tstates: RefCell::new(Vec::new()),
            last_tstate: Cell::new(std::ptr::null()),
            epoch_handles: RefCell::new(Vec::new()),
            last_epoch: Cell::new((0, std::ptr::null())),
        }
    }

    /// Runs `f` with this thread's context, or returns `None` while the
    /// thread-local is being torn down at thread exit.
    pub(crate) fn with<R>(f: impl FnOnce(&ThreadCtx) -> R) -> Option<R> {
        CTX.try_with(f).ok()
    }

    /// Pins the epoch collector of the registry `uid` on this thread, with
    /// this thread's cached handle for it (registered on first use).
    #[inline]
    pub(crate) fn pin_epoch(
        &self,
        uid: u64,
        alive: &Arc<()>,
        collector: &crossbeam_epoch::Collector,
    ) -> crossbeam_epoch::Guard {
        let (last_uid, last) = self.last_epoch.get();
        if last_uid == uid {
            // SAFETY: `last` points into a `Box` owned by `epoch_handles`; the
            // box is only dropped by `pin_epoch_slow` (which resets this cache
            // first) or when the context itself is dropped.
            return unsafe { &*last }.pin();
        }
        self.pin_epoch_slow(uid, alive, collector)
    }

    #[cold]
    fn pin_epoch_slow(
        &self,
        uid: u64,
        alive: &Arc<()>,
        collector: &crossbeam_epoch::Collector,
    ) -> crossbeam_epoch::Guard {
        self.last_epoch.set((0, std::ptr::null()));
        let mut h = self.epoch_handles.borrow_mut();
        if !h.iter().any(|(u, _, _, _)| *u == uid) {
            // Forget handles of dropped runtimes, then register.
            h.retain(|(_, alive, _, _)| sync::upgrade(alive).is_some());
            h.push((uid, sync::downgrade(alive), Box::new(collector.register()), collector.clone()));
        }
        let (_, _, handle, _) = h.iter().find(|(u, _, _, _)| *u == uid).expect("just ensured");
        let ptr: *const crossbeam_epoch::LocalHandle = &**handle;
        self.last_epoch.set((uid, ptr));
        drop(h);
        // SAFETY: as in `pin_epoch`.
        unsafe { &*ptr }.pin()
    }

    /// The innermost frame, if any.
    pub(crate) fn top_frame(&self) -> Option<&Frame> {
        let p = self.top.get();
        // SAFETY: `top` always points to a live frame on this thread's stack
        // (frames unlink themselves before they are dropped) or is null.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The frame whose GIL this thread holds, if it holds one.
    pub(crate) fn holding_frame(&self) -> Option<&Frame> {
        self.top_frame().filter(|f| f.holds.get())
    }

    /// Whether any frame of this thread is inside `rec`.
    pub(crate) fn is_inside(&self, rec: &Record) -> bool {
        let mut p = self.top.get();
        while !p.is_null() {
            // SAFETY: frames in the chain are live (see `top_frame`).
            let f = unsafe { &*p };
            if std::ptr::eq(f.record(), rec) {
                return true;
            }
            p = f.prev;
        }
        false
    }

    /// Makes sure this thread has a thread state in `interp` (hot path of
    /// `with_gil`: one pointer compare when it is the same as last time).
    #[inline]
    pub(crate) fn ensure_tstate(&self, interp: &Arc<Record>) {
        // Hot path: the same interpreter as last time.
        if self.last_tstate.get() != Arc::as_ptr(interp) {
            self.tstate_id(interp);
        }
    }

    /// Returns this thread's thread-state id in `interp`, creating the thread
    /// state on first entry.
    pub(crate) fn tstate_id(&self, interp: &Arc<Record>) -> u64 {
        let mut v = self.tstates.borrow_mut();
        let ptr = Arc::as_ptr(interp);
        self.last_tstate.set(ptr);
        if let Some(e) = v.iter().find(|e| e.ptr == ptr) {
            return e.tstate_id;
        }
        // Forget thread states of closed interpreters before adding one.
        v.retain(|e| sync::upgrade(&e.interp).is_some_and(|r| !r.is_closed()));
        let tstate_id = interp.next_tstate_id.fetch_add(1, Ordering::Relaxed);
        interp.thread_states.fetch_add(1, Ordering::Relaxed);
        v.push(TsEntry { interp: sync::downgrade(interp), ptr, tstate_id });
        tstate_id
    }
}

impl Drop for ThreadCtx {
    fn drop(&mut self) {
        for e in self.tstates.get_mut().drain(..) {
            if let Some(r) = sync::upgrade(&e.interp) {
                r.thread_states.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}
