//! Interpreters: the per-interpreter record, the `Interpreter` handle, the
//! `Gil` token, and the lifecycle.

pub(crate) mod gil;
pub(crate) mod pending;
pub(crate) mod stack;
pub(crate) mod tstate;

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::config::{GilMode, InterpreterConfig};
use crate::error::{panic_message, Error, Result};
use crate::runtime::RuntimeInner;
use crate::sync::{Arc, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use crate::InterpreterId;

pub use gil::GilStats;
use gil::RawGil;
use pending::{PendingCalls, PendingFn};
use tstate::{Frame, ThreadCtx};

const READY: u8 = 0;
const FINALIZING: u8 = 1;
const CLOSED: u8 = 2;

/// Eval-breaker bit: pending calls are queued.
const BREAK_PENDING: u32 = 1 << 0;
/// Eval-breaker bit: an interrupt was requested.
const BREAK_INTERRUPT: u32 = 1 << 1;
/// Eval-breaker bit: a cycle collection is scheduled (set by allocation).
const BREAK_GC: u32 = 1 << 2;

/// Where an interpreter is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InterpreterState {
    /// Accepting work.
    Ready,
    /// `close()` is running: new entries are refused.
    Finalizing,
    /// Closed: every use is an [`Error::InterpreterClosed`].
    Closed,
}

/// What `close()` did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct CloseReport {
    /// Pending calls that ran during finalization.
    pub pending_calls_run: usize,
    /// Errors raised by those calls (caught panics). Finalization completed anyway.
    pub pending_call_errors: Vec<Error>,
    /// Heap blocks still allocated when the heap was unmapped.
    pub leaked: crate::mem::LeakReport,
    /// Tracked objects still alive after the final collection, freed by the close.
    pub objects_freed: usize,
    /// Errors reported by finalizers, callbacks and clears, not yet taken.
    pub gc_errors: Vec<Error>,
    /// Panics caught from user code the teardown ran after the objects were
    /// freed: `Drop`s of module states and attributes, of the memory
    /// limiter hook; and the errors of the audit hooks for
    /// `cpython.PyInterpreterState_Clear` and the panics of their drops.
    /// Finalization completed anyway.
    pub teardown_errors: Vec<Error>,
    /// What `gc.garbage` still held after the final collection, as
    /// `<TYPE ADDRESS>` (CPython warns "gc: N uncollectable objects at
    /// shutdown"); the close freed them.
    pub uncollectable: Vec<String>,
}

/// Process-wide counters shared by a runtime and its records.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) records_freed: AtomicUsize,
}

/// The per-interpreter record (CPython's `PyInterpreterState`).
pub(crate) struct Record {
    pub(crate) id: InterpreterId,
    pub(crate) config: InterpreterConfig,
    pub(crate) gil: Arc<RawGil>,
    lifecycle: AtomicU8,
    /// Threads inside `with_gil` of this interpreter that do not hold its GIL
    /// (waiting for it, or detached in `allow_threads`). The GIL holder is not
    /// counted; `close()` holds the GIL when it reads this.
    outside: AtomicUsize,
    /// Eval-breaker word (`BREAK_*`), checked by `Gil::checkpoint`.
    breaker: AtomicU32,
    pending: PendingCalls,
    id_refcount: AtomicU64,
    requires_idref: AtomicBool,
    /// Close as soon as the last thread leaves (set by the last `decref_id`
    /// or a runtime drop that found the interpreter running).
    close_on_exit: AtomicBool,
    /// Whether this interpreter counts in its GIL's `pending_closes`.
    close_pending_registered: AtomicBool,
    /// Thread uid this interpreter is bound to when `allow_threads` is false.
    bound_thread: AtomicU64,
    pub(crate) next_tstate_id: AtomicU64,
    pub(crate) thread_states: AtomicUsize,
    /// The runtime this interpreter belongs to. A strong reference, so that a
    /// handle is one pointer and a lookup takes no count on a runtime-wide
    /// line. The cycle runtime → registry → record → runtime is broken when
    /// the record is unlinked at close (and, for main, when the `Runtime`
    /// value drops).
    pub(crate) rt: Arc<RuntimeInner>,
    /// The interpreter's heap; touched only under its GIL.
    pub(crate) heap: crate::mem::InterpHeap,
    /// For `use_main_obmalloc` interpreters: main, whose heap they allocate
    /// from (under main's GIL, which they share). Keeps main's record alive.
    pub(crate) heap_owner: Option<Arc<Record>>,
    /// The interpreter's module tables (issue 5).
    pub(crate) modules: crate::module::ModuleTable,
    /// The object collector's state (issue 4); touched only under the GIL.
    pub(crate) gc: crate::gc::GcCell,
    /// Audit hooks and code-extra slots (issue 12, `services`).
    pub(crate) services: crate::services::InterpServices,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record").field("id", &self.id).field("state", &self.state()).finish_non_exhaustive()
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.rt.counters.records_freed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Record {
    pub(crate) fn new(
        id: InterpreterId,
        config: InterpreterConfig,
        gil: Arc<RawGil>,
        heap_owner: Option<Arc<Record>>,
        rt: Arc<RuntimeInner>,
    ) -> Self {
        Self {
            id,
            gil,
            lifecycle: AtomicU8::new(READY),
            outside: AtomicUsize::new(0),
            breaker: AtomicU32::new(0),
            pending: PendingCalls::new(),
            id_refcount: AtomicU64::new(0),
            requires_idref: AtomicBool::new(false),
            close_on_exit: AtomicBool::new(false),
            close_pending_registered: AtomicBool::new(false),
            bound_thread: AtomicU64::new(0),
            next_tstate_id: AtomicU64::new(1),
            thread_states: AtomicUsize::new(0),
            rt,
            heap: crate::mem::InterpHeap::new(id, config.memory_limit),
            heap_owner,
            modules: crate::module::ModuleTable::new(id),
            gc: crate::gc::GcCell::new(),
            services: crate::services::InterpServices::new(),
            config,
        }
    }

    pub(crate) fn state(&self) -> InterpreterState {
        match self.lifecycle.load(Ordering::Acquire) {
            READY => InterpreterState::Ready,
            FINALIZING => InterpreterState::Finalizing,
            _ => InterpreterState::Closed,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lifecycle.load(Ordering::Acquire) != READY
    }

    /// Withdraws this interpreter's deferred-close bit from its GIL (once).
    fn unregister_close_pending(&self) {
        if self.close_pending_registered.swap(false, Ordering::SeqCst) {
            self.gil.remove_close_pending();
        }
    }

    /// Asks the next checkpoint to run a collection.
    pub(crate) fn schedule_gc(&self) {
        self.breaker.fetch_or(BREAK_GC, Ordering::Release);
    }

    fn closed_error(&self) -> Error {
        Error::InterpreterClosed { id: self.id }
    }

    /// The error for a `close()` that found the GIL taken.
    fn busy_error(&self) -> Error {
        if self.is_closed() {
            self.closed_error()
        } else {
            Error::InterpreterRunning { id: self.id, threads: self.outside.load(Ordering::SeqCst) + 1 }
        }
    }
}

/// A handle to one interpreter: cheap to clone, `Send + Sync`.
///
/// Handles stay valid after the interpreter closes; every use then returns
/// [`Error::InterpreterClosed`]. Two handles are equal when they name the same
/// interpreter of the same runtime.
///
/// ```
/// use subinterp::{InterpreterConfig, Runtime, RuntimeConfig};
///
/// let rt = Runtime::new(RuntimeConfig::default()).unwrap();
/// let interp = rt.create(InterpreterConfig::isolated()).unwrap();
/// let answer = interp.with_gil(|g| {
///     g.checkpoint().unwrap();
///     6 * 7
/// }).unwrap();
/// assert_eq!(answer, 42);
/// interp.close().unwrap();
/// assert!(interp.with_gil(|_| ()).is_err());
/// ```
#[derive(Clone)]
pub struct Interpreter {
    pub(crate) rec: Arc<Record>,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("id", &self.rec.id)
            .field("state", &self.rec.state())
            .field("gil", &self.rec.config.gil)
            .finish()
    }
}

impl PartialEq for Interpreter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.rec, &other.rec)
    }
}
impl Eq for Interpreter {}

impl std::hash::Hash for Interpreter {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.rec.rt.uid, self.rec.id).hash(state);
    }
}

/// Undoes one `with_gil` entry when it ends, normally or by a panic: pops the
/// frame, releases the GIL if this entry took it, and runs a deferred close.
struct EnterGuard<'a> {
    ctx: &'a ThreadCtx,
    frame: &'a Frame,
    acquired: bool,
}

impl Drop for EnterGuard<'_> {
    fn drop(&mut self) {
        self.ctx.top.set(self.frame.prev);
        if self.acquired {
            let interp = self.frame.handle();
            let check = interp.rec.gil.release();
            if check && interp.rec.close_on_exit.load(Ordering::SeqCst) && !self.ctx.is_inside(&interp.rec) {
                // A deferred close runs inside this `Drop`, perhaps while a
                // panic unwinds: it must not unwind itself (every user call
                // in it is caught; this is the second line).
                let _ = catch_unwind(AssertUnwindSafe(|| interp.close_or_defer()));
            }
        }
    }
}

impl Interpreter {
    /// This interpreter's id: main is 0, then 1, 2, … never reused.
    pub fn id(&self) -> InterpreterId {
        self.rec.id
    }

    /// Whether this is its runtime's main interpreter.
    pub fn is_main(&self) -> bool {
        self.rec.id == 0
    }

    /// The config it was created with.
    pub fn config(&self) -> &InterpreterConfig {
        &self.rec.config
    }

    /// Where it is in its life.
    pub fn state(&self) -> InterpreterState {
        self.rec.state()
    }

    /// Whether any thread is inside [`with_gil`](Self::with_gil) of this
    /// interpreter right now (a racy snapshot).
    pub fn is_running(&self) -> bool {
        self.rec.outside.load(Ordering::SeqCst) > 0 || (self.rec.config.gil == GilMode::Own && self.rec.gil.is_locked())
    }

    /// Number of thread states (one per OS thread that has entered this
    /// interpreter and is still alive).
    pub fn thread_count(&self) -> usize {
        self.rec.thread_states.load(Ordering::Relaxed)
    }

    /// Statistics of this interpreter's GIL (main's, for a shared GIL).
    pub fn gil_stats(&self) -> GilStats {
        self.rec.gil.stats()
    }

    /// The GIL switch interval (main's, for a shared GIL).
    pub fn switch_interval(&self) -> Duration {
        self.rec.gil.interval()
    }

    /// Changes the GIL switch interval, like `sys.setswitchinterval`; on a
    /// shared GIL this changes main's interval, as in CPython.
    pub fn set_switch_interval(&self, interval: Duration) -> Result<()> {
        if interval.is_zero() || interval > crate::config::MAX_SWITCH_INTERVAL {
            return Err(Error::InvalidConfig {
                reason: "switch interval must be greater than zero and at most 10 s".into(),
            });
        }
        self.rec.gil.set_interval(interval);
        Ok(())
    }

    /// The handle of the interpreter whose GIL the calling thread holds, if
    /// any. O(1): one thread-local read. Inside
    /// [`allow_threads`](Gil::allow_threads) the thread holds no GIL, so this
    /// is `None` there.
    ///
    /// ```
    /// use subinterp::{Interpreter, Runtime, RuntimeConfig};
    /// let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    /// assert!(Interpreter::current().is_none());
    /// rt.main().with_gil(|_| assert_eq!(Interpreter::current().unwrap().id(), 0)).unwrap();
    /// ```
    pub fn current() -> Option<Interpreter> {
        ThreadCtx::with(|ctx| ctx.holding_frame().map(|f| f.handle().clone())).flatten()
    }

    /// Attaches the calling thread, takes this interpreter's GIL, and runs `f`
    /// with a token that proves it.
    ///
    /// The token [`Gil`] is branded with a fresh lifetime and is `!Send`:
    /// nothing that needs the GIL can leave the closure or move to another
    /// thread. Re-entering the interpreter the thread already holds is allowed
    /// and costs no GIL operation. A thread holds at most one GIL: entering a
    /// second interpreter while holding the first is
    /// [`Error::GilHeldByOtherInterpreter`]; release the first with
    /// [`Gil::allow_threads`] and enter the second from inside that closure.
    ///
    /// If `f` panics, the GIL is released and the thread detached before the
    /// panic propagates.
    ///
    /// Errors: [`Error::InterpreterClosed`] (at once, without waiting, once
    /// `close()` has begun), [`Error::ThreadsNotAllowed`],
    /// [`Error::GilHeldByOtherInterpreter`].
    #[inline]
    pub fn with_gil<F, R>(&self, f: F) -> Result<R>
    where
        F: for<'i> FnOnce(Gil<'i>) -> R,
    {
        ThreadCtx::with(|ctx| self.enter(ctx, f)).unwrap_or(Err(Error::ThreadExiting))
    }

    #[inline]
    fn enter<F, R>(&self, ctx: &ThreadCtx, f: F) -> Result<R>
    where
        F: for<'i> FnOnce(Gil<'i>) -> R,
    {
        let rec = &*self.rec;
        if let Some(held) = ctx.holding_frame() {
            if std::ptr::eq(held.record(), rec) {
                // Re-entry: we hold this GIL already. Refused once close has
                // begun: the close itself holds the GIL, and user code it
                // runs (embedder `Drop`s while the heap is torn down) must
                // not get a token (docs/safety.md, "close is a state").
                if rec.is_closed() {
                    return Err(rec.closed_error());
                }
                let frame = Frame { handle: self, holds: std::cell::Cell::new(true), prev: ctx.top.get() };
                ctx.top.set(&frame);
                let _guard = EnterGuard { ctx, frame: &frame, acquired: false };
                return Ok(f(Gil::new(self, ctx.uid)));
            }
            return Err(Error::GilHeldByOtherInterpreter { held: held.record().id, requested: rec.id });
        }
        if rec.is_closed() {
            return Err(rec.closed_error());
        }
        if !rec.config.allow_threads {
            self.bind_thread(ctx.uid)?;
        }
        ctx.ensure_tstate(&self.rec);
        if !rec.gil.try_acquire(ctx.uid) {
            rec.outside.fetch_add(1, Ordering::SeqCst);
            rec.gil.acquire(ctx.uid, false);
            rec.outside.fetch_sub(1, Ordering::SeqCst);
        }
        if rec.is_closed() {
            rec.gil.release();
            return Err(rec.closed_error());
        }
        let frame = Frame { handle: self, holds: std::cell::Cell::new(true), prev: ctx.top.get() };
        ctx.top.set(&frame);
        let _guard = EnterGuard { ctx, frame: &frame, acquired: true };
        Ok(f(Gil::new(self, ctx.uid)))
    }

    #[cold]
    fn bind_thread(&self, uid: u64) -> Result<()> {
        match self.rec.bound_thread.compare_exchange(0, uid, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(()),
            Err(owner) if owner == uid => Ok(()),
            Err(_) => Err(Error::ThreadsNotAllowed { id: self.rec.id }),
        }
    }

    /// Queues `call` to run in this interpreter, under its GIL, at the next
    /// [`Gil::checkpoint`] (or during `close()`). Works from any thread, with
    /// or without a GIL; never blocks, never polls and never reports "full".
    ///
    /// Errors: [`Error::InterpreterClosed`] once `close()` has drained the
    /// queue (the call is then dropped without running).
    pub fn add_pending_call<F>(&self, call: F) -> Result<()>
    where
        F: for<'i> FnOnce(Gil<'i>) + Send + 'static,
    {
        if self.rec.is_closed() {
            // As for a refused push below: the closure's drop is user code.
            let _ = run_callback("drop of a refused pending call", move || drop(call));
            return Err(self.rec.closed_error());
        }
        let call: PendingFn = Box::new(call);
        match self.rec.pending.push(call) {
            Ok(()) => {
                self.rec.breaker.fetch_or(BREAK_PENDING, Ordering::Release);
                Ok(())
            }
            Err(refused) => {
                // Dropping the refused closure runs its captures' `Drop`s:
                // behind the boundary, so a panic there cannot unwind out of
                // an `Owned::drop` that queued it (the refusal is the error).
                let _ = run_callback("drop of a refused pending call", move || drop(refused));
                Err(self.rec.closed_error())
            }
        }
    }

    /// A `Send + Sync` handle that can interrupt this interpreter from any thread.
    pub fn interrupt_handle(&self) -> InterruptHandle {
        InterruptHandle { rec: self.rec.clone() }
    }

    /// Current id refcount (CPython's `id_refcount`).
    pub fn id_refcount(&self) -> u64 {
        self.rec.id_refcount.load(Ordering::SeqCst)
    }

    /// Whether the last [`decref_id`](Self::decref_id) closes the interpreter.
    pub fn requires_idref(&self) -> bool {
        self.rec.requires_idref.load(Ordering::SeqCst)
    }

    /// Sets whether the last [`decref_id`](Self::decref_id) closes the
    /// interpreter (CPython's `_PyInterpreterState_RequireIDRef`).
    pub fn set_requires_idref(&self, required: bool) {
        self.rec.requires_idref.store(required, Ordering::SeqCst);
    }

    /// Takes one id reference (CPython's `_PyInterpreterState_IDIncref`).
    ///
    /// Errors: [`Error::InterpreterClosed`].
    pub fn incref_id(&self) -> Result<()> {
        if self.rec.is_closed() {
            return Err(self.rec.closed_error());
        }
        self.rec.id_refcount.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Drops one id reference. When the count reaches zero and
    /// [`requires_idref`](Self::requires_idref) is set, the interpreter is
    /// closed, at once if no thread is inside it, otherwise by the last thread
    /// to leave it.
    ///
    /// Errors: [`Error::IdRefUnderflow`] without a matching incref.
    pub fn decref_id(&self) -> Result<()> {
        let prev = self
            .rec
            .id_refcount
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map_err(|_| Error::IdRefUnderflow { id: self.rec.id })?;
        if prev == 1 && self.requires_idref() {
            self.close_or_defer()?;
        }
        Ok(())
    }

    /// An RAII id reference: increfs now, decrefs on drop.
    ///
    /// ```
    /// use subinterp::{InterpreterConfig, InterpreterState, Runtime, RuntimeConfig};
    /// let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    /// let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    /// interp.set_requires_idref(true);
    /// let r = interp.id_ref().unwrap();
    /// assert_eq!(interp.id_refcount(), 1);
    /// drop(r); // the last reference closes it
    /// assert_eq!(interp.state(), InterpreterState::Closed);
    /// ```
    pub fn id_ref(&self) -> Result<IdRef> {
        self.incref_id()?;
        Ok(IdRef { interp: self.clone() })
    }

    /// Closes now, or if threads are still inside, marks the interpreter to be
    /// closed by the last one to leave. Already closed is fine.
    pub(crate) fn close_or_defer(&self) -> Result<()> {
        // Publish the request before trying: the flag, then a bit in the GIL
        // word. A thread that releases the GIL after that bit is set takes
        // the slow path and sees the flag; one that released before it
        // cannot be the reason our attempt below fails.
        self.rec.close_on_exit.store(true, Ordering::SeqCst);
        if !self.rec.close_pending_registered.swap(true, Ordering::SeqCst) {
            self.rec.gil.add_close_pending();
        }
        match self.close() {
            Ok(_) => Ok(()),
            Err(Error::InterpreterClosed { .. }) => {
                self.rec.unregister_close_pending();
                Ok(())
            }
            Err(Error::InterpreterRunning { .. }) | Err(Error::CannotCloseCurrent { .. }) => Ok(()),
            Err(Error::MainHasSubinterpreters { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Closes the interpreter: marks it finalizing (new entries fail at once),
    /// runs its pending calls, tears it down and unlinks it from the registry.
    ///
    /// Refusals, each a typed error that changes nothing:
    /// * [`Error::InterpreterRunning`]: another thread is inside `with_gil`;
    /// * [`Error::CannotCloseCurrent`]: the caller is inside this interpreter;
    /// * [`Error::MainHasSubinterpreters`]: main, while others are alive;
    /// * [`Error::InterpreterClosed`]: already closed (or being closed).
    ///
    /// The caller may hold another interpreter's GIL: it is released while
    /// this interpreter is finalized and taken back afterwards.
    pub fn close(&self) -> Result<CloseReport> {
        let rec = &*self.rec;
        if rec.is_closed() {
            return Err(rec.closed_error());
        }
        // Main claims its close in the word that creates announce themselves
        // in (one read-modify-write each, so one side always sees the
        // other): a create after this is refused, and a live or announced
        // subinterpreter makes this refuse. The claim is given back if the
        // close fails before it begins.
        let mut claim = None;
        if self.is_main() {
            rec.rt.claim_main_close()?;
            claim = Some(MainCloseClaim { rt: &rec.rt });
        }
        let r = ThreadCtx::with(|ctx| {
            if ctx.is_inside(rec) {
                return Err(Error::CannotCloseCurrent { id: rec.id });
            }
            match ctx.holding_frame() {
                // Hold one GIL at a time: step out of the caller's GIL first,
                // and take it back however the close ends (a guard).
                Some(held) => {
                    struct Retake<'a> {
                        held: &'a Frame,
                        uid: u64,
                    }
                    impl Drop for Retake<'_> {
                        fn drop(&mut self) {
                            let rec = self.held.record();
                            rec.gil.acquire(self.uid, true);
                            rec.outside.fetch_sub(1, Ordering::SeqCst);
                            self.held.holds.set(true);
                        }
                    }
                    let held_rec = held.record();
                    held.holds.set(false);
                    held_rec.outside.fetch_add(1, Ordering::SeqCst);
                    held_rec.gil.release();
                    let _retake = Retake { held, uid: ctx.uid };
                    self.close_detached(ctx)
                }
                None => self.close_detached(ctx),
            }
        })
        .unwrap_or(Err(Error::ThreadExiting));
        if r.is_ok() || rec.state() != InterpreterState::Ready {
            // Main's close happened (or began): the claim stays for ever.
            std::mem::forget(claim);
        }
        r
    }

    /// `close()` for a thread that holds no GIL.
    fn close_detached(&self, ctx: &ThreadCtx) -> Result<CloseReport> {
        let rec = &*self.rec;
        match rec.config.gil {
            GilMode::Own => {
                if !rec.gil.try_acquire(ctx.uid) {
                    return Err(rec.busy_error());
                }
            }
            // A shared GIL may be held by another interpreter: wait our turn.
            GilMode::Shared => rec.gil.acquire(ctx.uid, false),
        }
        if rec.is_closed() {
            rec.gil.release();
            return Err(rec.closed_error());
        }
        let threads = rec.outside.load(Ordering::SeqCst);
        if threads > 0 {
            rec.gil.release();
            return Err(Error::InterpreterRunning { id: rec.id, threads });
        }
        // From here the close is a state, not a frame: new entries and
        // re-entries are refused (`enter`), and whatever happens below, the
        // guard finishes the close (lifecycle Closed, GIL released, frame
        // popped, unlinked), also if something unwinds.
        rec.lifecycle.store(FINALIZING, Ordering::SeqCst);
        let frame = Frame { handle: self, holds: std::cell::Cell::new(true), prev: ctx.top.get() };
        ctx.top.set(&frame);
        let finish = FinishClose { interp: self, ctx, prev: frame.prev };

        // Run what is queued, as the current interpreter, then close the queue.
        let mut report = CloseReport::default();
        let g = Gil::new(self, ctx.uid);
        loop {
            rec.pending.take_pushed();
            let mut calls = Vec::new();
            while let Some(c) = rec.pending.pop_ready() {
                calls.push(c);
            }
            if calls.is_empty() {
                calls = rec.pending.close();
                if calls.is_empty() {
                    break;
                }
            }
            for call in calls {
                report.pending_calls_run += 1;
                if let Err(e) = run_callback("pending call", || call(g)) {
                    report.pending_call_errors.push(e);
                }
            }
        }
        rec.breaker.store(0, Ordering::Relaxed);
        // CPython's `finalize_modules`: `sys.modules` emptied (no import
        // publishes from here; native states stay findable by index), then
        // the module objects' globals cleared in order, so the finalizers of
        // what module globals hold run while the interpreter is whole.
        let named = rec.modules.close_imports();
        if let Err(e) = run_callback("drop of a module", move || drop(named)) {
            report.teardown_errors.push(e);
        }
        crate::gc::modules::finalize(g);
        // `PyInterpreterState_Clear`'s event; this interpreter's hooks go.
        report.teardown_errors.extend(crate::services::clear(g));
        // Objects next (a final collection, then everything is freed), so
        // that no object outlives the heap it lives in.
        let torn = crate::gc::teardown(g);
        report.objects_freed = torn.freed;
        report.gc_errors = torn.errors;
        report.uncollectable = torn.uncollectable;
        // Services go in reverse order of need: modules (whose states may
        // hold heap memory) before the heap itself. Their values' and the
        // limiter hook's `Drop`s are user code, run behind the boundary.
        report.teardown_errors.extend(rec.modules.teardown());
        let (leaked, hook) = rec.heap.teardown();
        report.leaked = leaked;
        if let Err(e) = run_callback("drop of the memory limiter hook", move || drop(hook)) {
            report.teardown_errors.push(e);
        }
        drop(finish);
        Ok(report)
    }

    /// The end of every close that began (normal or unwinding): the state
    /// becomes Closed, the GIL is released, the interpreter unlinked.
    fn finish_close(&self) {
        let rec = &*self.rec;
        rec.gc.mark_closing();
        rec.lifecycle.store(CLOSED, Ordering::SeqCst);
        if self.is_main() {
            rec.rt.main_closed.store(true, Ordering::SeqCst);
            rec.rt.release_main_if_finalized();
        }
        rec.unregister_close_pending();
        rec.gil.release();
        self.rec.rt.registry.remove(rec.id);
        if !self.is_main() {
            rec.rt.retire_sub();
        }
        self.after_close();
        if rec.rt.finalizing.load(Ordering::SeqCst) {
            // The `Runtime` value is gone, so its final quiesce has run: free
            // what this late close retired now, or nobody ever will (the
            // retired record holds the runtime that owns the collector).
            rec.rt.registry.quiesce(crate::runtime::QUIESCE_ROUNDS);
        }
    }

    /// During runtime finalization, the last subinterpreter to close closes
    /// main if main's close had to be deferred.
    fn after_close(&self) {
        let rt = &self.rec.rt;
        if self.is_main() || !rt.finalizing.load(Ordering::SeqCst) || rt.live_subs() > 0 {
            return;
        }
        if let Some(main) = rt.main_record().filter(|m| m.close_on_exit.load(Ordering::SeqCst)) {
            let _ = Interpreter { rec: main }.close_or_defer();
        }
    }
}

/// Gives main's close claim back (`RuntimeInner::claim_main_close`) when
/// dropped: a close of main that failed before it began.
struct MainCloseClaim<'a> {
    rt: &'a RuntimeInner,
}

impl Drop for MainCloseClaim<'_> {
    fn drop(&mut self) {
        self.rt.unclaim_main_close();
    }
}

/// Finishes a close that began (`close_detached`), on every path.
struct FinishClose<'a> {
    interp: &'a Interpreter,
    ctx: &'a ThreadCtx,
    prev: *const Frame,
}

impl Drop for FinishClose<'_> {
    fn drop(&mut self) {
        self.ctx.top.set(self.prev);
        if std::thread::panicking() {
            // Unwinding already: a second panic would abort.
            let _ = catch_unwind(AssertUnwindSafe(|| self.interp.finish_close()));
        } else {
            self.interp.finish_close();
        }
    }
}

/// Runs a user callback, turning a panic into [`Error::CallbackPanicked`].
pub(crate) fn run_callback<R>(context: &'static str, f: impl FnOnce() -> R) -> Result<R> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| Error::CallbackPanicked { context, message: panic_message(p.as_ref()) })
}

/// An id reference that is dropped with the value (see [`Interpreter::id_ref`]).
#[derive(Debug)]
pub struct IdRef {
    interp: Interpreter,
}

impl IdRef {
    /// The interpreter this reference keeps alive.
    pub fn interpreter(&self) -> &Interpreter {
        &self.interp
    }
}

impl Drop for IdRef {
    fn drop(&mut self) {
        // Cannot underflow: this IdRef owns one count.
        let _ = self.interp.decref_id();
    }
}

/// Asks an interpreter to stop at its next [`Gil::checkpoint`]; `Send + Sync`.
///
/// The request is one-shot: the first checkpoint that sees it returns
/// [`Error::Interrupted`] and clears it. A thread blocked inside
/// [`Gil::allow_threads`] is not woken; it sees the request at its next
/// checkpoint after it returns.
///
/// ```
/// use subinterp::{Error, Runtime, RuntimeConfig};
/// let rt = Runtime::new(RuntimeConfig::default()).unwrap();
/// let interp = rt.main();
/// let stop = interp.interrupt_handle();
/// stop.interrupt().unwrap();
/// let r = interp.with_gil(|g| loop { g.checkpoint()?; }).unwrap();
/// assert!(matches!(r, Err::<(), _>(Error::Interrupted { id: 0 })));
/// ```
#[derive(Debug, Clone)]
pub struct InterruptHandle {
    rec: Arc<Record>,
}

impl InterruptHandle {
    /// Requests an interrupt. Errors with [`Error::InterpreterClosed`] if the
    /// interpreter is closed.
    pub fn interrupt(&self) -> Result<()> {
        if self.rec.is_closed() {
            return Err(self.rec.closed_error());
        }
        self.rec.breaker.fetch_or(BREAK_INTERRUPT, Ordering::Release);
        Ok(())
    }

    /// Withdraws a request that no checkpoint has seen yet; returns whether
    /// there was one.
    pub fn cancel(&self) -> bool {
        self.rec.breaker.fetch_and(!BREAK_INTERRUPT, Ordering::AcqRel) & BREAK_INTERRUPT != 0
    }

    /// The interpreter this handle interrupts.
    pub fn interpreter_id(&self) -> InterpreterId {
        self.rec.id
    }
}

/// Proof that the calling thread holds an interpreter's GIL.
///
/// Handed to the closure of [`Interpreter::with_gil`]. Branded with an
/// invariant lifetime `'i` unique to that call, and `!Send`/`!Sync`, so it and
/// everything borrowed from it stay on this thread, inside the closure.
///
/// ```compile_fail
/// # use subinterp::{Runtime, RuntimeConfig};
/// let rt = Runtime::new(RuntimeConfig::default()).unwrap();
/// let escaped = rt.main().with_gil(|g| g).unwrap(); // the token cannot escape
/// ```
#[derive(Clone, Copy)]
pub struct Gil<'i> {
    interp: &'i Interpreter,
    uid: u64,
    _brand: PhantomData<fn(&'i ()) -> &'i ()>,
    _not_send: PhantomData<*mut ()>,
}

impl std::fmt::Debug for Gil<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gil").field("interpreter", &self.interp.rec.id).finish()
    }
}

impl<'i> Gil<'i> {
    pub(crate) fn new(interp: &'i Interpreter, uid: u64) -> Self {
        Self { interp, uid, _brand: PhantomData, _not_send: PhantomData }
    }

    /// The interpreter whose GIL this is.
    pub fn interpreter(&self) -> &'i Interpreter {
        self.interp
    }

    /// The id of that interpreter.
    pub fn id(&self) -> InterpreterId {
        self.interp.rec.id
    }

    /// The id of the calling thread's thread state in this interpreter
    /// (one per OS thread and interpreter; the first is 1, as in CPython).
    pub fn thread_state_id(&self) -> u64 {
        ThreadCtx::with(|ctx| ctx.tstate_id(&self.interp.rec)).unwrap_or(0)
    }

    /// The safepoint (CPython's eval breaker). Call it at loop back-edges.
    ///
    /// When nothing is asked of this thread it costs two relaxed loads.
    /// Otherwise, in this order: reports an interrupt as
    /// [`Error::Interrupted`]; runs pending calls (a panicking call is caught
    /// and reported as [`Error::CallbackPanicked`], the rest stay queued); and
    /// yields the GIL if another thread asked for it, taking it back after
    /// that thread had its turn.
    #[inline]
    pub fn checkpoint(&self) -> Result<()> {
        let rec = &*self.interp.rec;
        if rec.breaker.load(Ordering::Relaxed) == 0 && !rec.gil.drop_requested() {
            return Ok(());
        }
        self.checkpoint_slow()
    }

    #[cold]
    fn checkpoint_slow(&self) -> Result<()> {
        let rec = &*self.interp.rec;
        let bits = rec.breaker.load(Ordering::Acquire);
        if bits & BREAK_INTERRUPT != 0
            && rec.breaker.fetch_and(!BREAK_INTERRUPT, Ordering::AcqRel) & BREAK_INTERRUPT != 0
        {
            return Err(Error::Interrupted { id: rec.id });
        }
        if bits & BREAK_PENDING != 0 {
            self.run_pending_calls()?;
        }
        if bits & BREAK_GC != 0 {
            rec.breaker.fetch_and(!BREAK_GC, Ordering::AcqRel);
            crate::gc::run_scheduled(*self);
        }
        if rec.gil.drop_requested() {
            self.yield_gil();
        }
        Ok(())
    }

    /// Runs queued pending calls now (the checkpoint does this too).
    pub fn run_pending_calls(&self) -> Result<usize> {
        let rec = &*self.interp.rec;
        rec.breaker.fetch_and(!BREAK_PENDING, Ordering::AcqRel);
        rec.pending.take_pushed();
        let mut ran = 0;
        while let Some(call) = rec.pending.pop_ready() {
            ran += 1;
            let g = *self;
            if let Err(e) = run_callback("pending call", move || call(g)) {
                if rec.pending.has_ready() {
                    rec.breaker.fetch_or(BREAK_PENDING, Ordering::Release);
                }
                return Err(e);
            }
        }
        Ok(ran)
    }

    /// Hands the GIL to a waiting thread if one asked, then takes it back.
    fn yield_gil(&self) {
        let rec = &*self.interp.rec;
        let Some(frame) = ThreadCtx::with(|ctx| ctx.top.get()).filter(|p| !p.is_null()) else { return };
        // SAFETY: the token is only usable inside its `with_gil` closure, where
        // the innermost frame of this thread is alive and holds this GIL.
        let frame = unsafe { &*frame };
        debug_assert!(frame.holds.get() && std::ptr::eq(frame.record(), rec));
        frame.holds.set(false);
        rec.outside.fetch_add(1, Ordering::SeqCst);
        rec.gil.yield_to_waiter(self.uid);
        rec.outside.fetch_sub(1, Ordering::SeqCst);
        frame.holds.set(true);
    }

    /// Releases the GIL while `f` runs (blocking I/O, long native work), then
    /// takes it back (CPython's `Py_BEGIN_ALLOW_THREADS`, PyO3's `detach`).
    ///
    /// `f` must be `Send`: this keeps the token and everything borrowed from
    /// it out of `f` (an approximation, as in PyO3). Inside `f` the thread
    /// holds no GIL and may enter any interpreter. Coming back, the thread
    /// asks the holder to yield at once (no convoy effect): it waits for the
    /// holder's next checkpoint, not for a whole switch interval. If `f`
    /// panics, the GIL is taken back before the panic propagates.
    ///
    /// ```compile_fail
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    /// rt.main().with_gil(|g| g.allow_threads(|| g.id())).unwrap(); // `g` is not Send
    /// ```
    pub fn allow_threads<T, F>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        struct Reattach<'a> {
            rec: &'a Record,
            frame: &'a Frame,
            uid: u64,
        }
        impl Drop for Reattach<'_> {
            fn drop(&mut self) {
                self.rec.gil.acquire(self.uid, true);
                self.rec.outside.fetch_sub(1, Ordering::SeqCst);
                self.frame.holds.set(true);
            }
        }
        let rec = &*self.interp.rec;
        let frame = ThreadCtx::with(|ctx| ctx.top.get()).unwrap_or(std::ptr::null());
        if frame.is_null() {
            // Thread-local teardown: no frame bookkeeping is possible; run
            // `f` with the GIL held rather than risk an unbalanced release.
            return f();
        }
        // SAFETY: see `yield_gil`.
        let frame = unsafe { &*frame };
        debug_assert!(frame.holds.get() && std::ptr::eq(frame.record(), rec));
        frame.holds.set(false);
        rec.outside.fetch_add(1, Ordering::SeqCst);
        rec.gil.release();
        let _back = Reattach { rec, frame, uid: self.uid };
        f()
    }
}
