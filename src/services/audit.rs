//! Audit hooks (PEP 578; CPython's `Python/sysmodule.c`): runtime-wide
//! hooks ([`Runtime::add_audit_hook`], `PySys_AddAuditHook`) and
//! per-interpreter hooks ([`Gil::add_audit_hook`], `sys.addaudithook`),
//! raised by [`Gil::audit`] (`sys.audit`).
//!
//! Hooks are kept in an append-only list per runtime and per interpreter
//! ([`HookList`]): a writer appends a node under a small lock and publishes
//! it with one release store; a dispatcher walks the list with acquire loads
//! and no lock, so it sees a prefix of the hooks, in registration order, each
//! whole. Nodes are never removed while a dispatcher can run: the runtime's
//! list lives as long as the runtime, an interpreter's is emptied only by its
//! `close()`, when no thread is inside it. Each runtime counts every hook
//! it knows ([`HookCount`]) and a process-wide static counts them all: with
//! no hook anywhere, an event costs one load of that static and nothing is
//! built.

use std::cell::Cell;
use std::ptr::null_mut;

use crate::error::{Error, Result};
use crate::interp::run_callback;
use crate::interp::tstate::ThreadCtx;
use crate::runtime::RuntimeInner;
use crate::sync::{self, AtomicPtr, AtomicUsize, Mutex, Ordering, UnsafeCell};
use crate::{Gil, Interpreter, Obj, Runtime};

/// A hook as stored: called with the current interpreter's token, the event
/// name and its arguments.
pub(crate) type Hook = Box<dyn for<'i> Fn(Gil<'i>, &str, &[Obj<'i>]) -> Result<()> + Send + Sync>;

/// How deeply audit events may nest on one thread (a hook that raises an
/// event, whose hook raises one, …) before the innermost is refused with
/// [`Error::RecursionError`].
pub const MAX_AUDIT_DEPTH: usize = 100;

/// The runtime's count of hooks (its own and every live interpreter's), on a
/// line of its own: it is read by every event of every interpreter and
/// written only when a hook is added or an interpreter with hooks closes.
#[repr(align(128))]
pub(crate) struct HookCount(AtomicUsize);

/// Every runtime's hooks together (CPython's `_PyRuntime` is the process):
/// the first check of an event is one load of this static, with no pointer
/// to follow. A process whose runtimes have no hook pays that load only; an
/// event in a runtime without hooks while another runtime has some also
/// loads its runtime's count. Under loom the runtime's count alone is used
/// (loom atomics cannot be statics).
#[cfg(not(loom))]
#[repr(align(128))]
struct ProcessCount(std::sync::atomic::AtomicUsize);

#[cfg(not(loom))]
static PROCESS_HOOKS: ProcessCount = ProcessCount(std::sync::atomic::AtomicUsize::new(0));

/// Whether `g`'s runtime surely has no hook: the fast path of every event.
#[inline(always)]
fn surely_no_hook(g: Gil<'_>) -> bool {
    #[cfg(not(loom))]
    {
        let _ = g;
        PROCESS_HOOKS.0.load(std::sync::atomic::Ordering::Relaxed) == 0
    }
    #[cfg(loom)]
    {
        g.interpreter().rec.rt.services.hooks_total.get() == 0
    }
}

impl HookCount {
    pub(crate) fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// Relaxed: a zero only lets an event skip the lists. A hook added
    /// before the event (in happens-before order, e.g. by this thread) is
    /// counted in what this load sees (coherence); the lists themselves are
    /// read with acquire loads.
    #[inline(always)]
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
        #[cfg(not(loom))]
        PROCESS_HOOKS.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::Relaxed);
        #[cfg(not(loom))]
        PROCESS_HOOKS.0.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for HookCount {
    /// A runtime that goes takes its hooks out of the process-wide count
    /// (its interpreters' were taken out by their closes).
    fn drop(&mut self) {
        #[cfg(not(loom))]
        PROCESS_HOOKS.0.fetch_sub(self.get(), std::sync::atomic::Ordering::Relaxed);
    }
}

struct Node {
    hook: UnsafeCell<Hook>,
    next: AtomicPtr<Node>,
}

/// An append-only list of hooks: lock-free reads, appends under a lock.
pub(crate) struct HookList {
    head: AtomicPtr<Node>,
    /// The last node; read and written only under `writer`.
    tail: AtomicPtr<Node>,
    writer: Mutex<()>,
}

impl HookList {
    pub(crate) fn new() -> Self {
        Self { head: AtomicPtr::new(null_mut()), tail: AtomicPtr::new(null_mut()), writer: Mutex::new(()) }
    }

    /// Whether no hook is registered (a hint: relaxed).
    pub(crate) fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// Appends `hook`: the node is made whole first, then published by one
    /// release store (of `head` or of the last node's `next`), so a reader
    /// that finds it sees its hook.
    fn push(&self, hook: Hook) {
        let node = Box::into_raw(Box::new(Node { hook: UnsafeCell::new(hook), next: AtomicPtr::new(null_mut()) }));
        let publish = if sync::mutation("audit_relaxed_publish") { Ordering::Relaxed } else { Ordering::Release };
        let _w = sync::lock(&self.writer);
        let tail = self.tail.load(Ordering::Relaxed);
        if tail.is_null() {
            self.head.store(node, publish);
        } else {
            // SAFETY: `tail` is the last node of this list, alive until the
            // list is emptied (`take_all`, under `writer`, or the drop).
            unsafe { (*tail).next.store(node, publish) };
        }
        self.tail.store(node, Ordering::Relaxed);
    }

    /// Calls `f` on each hook in registration order, stopping at the first
    /// error. Appends that race the walk are seen or not, each whole.
    fn for_each(&self, mut f: impl FnMut(&Hook) -> Result<()>) -> Result<()> {
        let mut p = self.head.load(Ordering::Acquire);
        // SAFETY: a published node stays alive while a reader can walk the
        // list (see `take_all`), and its hook is never written after it was
        // published.
        while let Some(n) = unsafe { p.as_ref() } {
            // SAFETY: as above; shared access only.
            n.hook.with(|h| f(unsafe { &*h }))?;
            p = n.next.load(Ordering::Acquire);
        }
        Ok(())
    }

    /// Empties the list; returns how many hooks it held and the panics of
    /// their drops (user code, run behind the boundary).
    ///
    /// # Safety
    /// No reader may walk this list concurrently or later in a walk that
    /// began before: for an interpreter's list, the caller is its `close()`,
    /// which holds its GIL with no other thread inside, outside any hook.
    unsafe fn take_all(&self) -> (usize, Vec<Error>) {
        let first = {
            let _w = sync::lock(&self.writer);
            self.tail.store(null_mut(), Ordering::Relaxed);
            self.head.swap(null_mut(), Ordering::Acquire)
        };
        let (mut n, mut errors) = (0, Vec::new());
        let mut p = first;
        while !p.is_null() {
            // SAFETY: the chain is unlinked and, by the caller's contract,
            // unreachable by any reader: each node is freed exactly once.
            let node = unsafe { Box::from_raw(p) };
            p = node.next.load(Ordering::Relaxed);
            n += 1;
            if let Err(e) = run_callback("drop of an audit hook", move || drop(node)) {
                errors.push(e);
            }
        }
        (n, errors)
    }
}

impl Drop for HookList {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader exists.
        let (_, errors) = unsafe { self.take_all() };
        drop(errors);
    }
}

#[cfg(not(loom))]
std::thread_local! {
    /// Events being dispatched on this thread (nesting depth).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}
#[cfg(loom)]
sync::thread_local! {
    static DEPTH: Cell<usize> = Cell::new(0);
}

/// One level of event nesting, given back on drop.
struct Depth;

impl Depth {
    fn enter() -> Result<Depth> {
        let d = DEPTH.with(|d| {
            let v = d.get();
            if v < MAX_AUDIT_DEPTH {
                d.set(v + 1);
            }
            v
        });
        if d >= MAX_AUDIT_DEPTH {
            return Err(Error::RecursionError {
                limit: MAX_AUDIT_DEPTH,
                context: "raising an audit event from inside an audit hook",
            });
        }
        Ok(Depth)
    }
}

impl Drop for Depth {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Calls the runtime's hooks, then `g`'s interpreter's, in registration
/// order; the first failure (an error or a caught panic) ends the event.
#[inline(never)]
fn dispatch<'i>(g: Gil<'i>, event: &str, args: &[Obj<'i>]) -> Result<()> {
    let rec = &g.interpreter().rec;
    if rec.rt.services.hooks_total.get() == 0 {
        return Ok(()); // another runtime of the process has hooks, this one none
    }
    let _depth = Depth::enter()?;
    let call = |h: &Hook| run_callback("audit hook", || h(g, event, args)).and_then(|r| r);
    rec.rt.services.hooks.for_each(call)?;
    rec.services.hooks.for_each(call)
}

/// Drops a hook that was not added, behind the boundary.
fn drop_refused(hook: Hook) -> Result<()> {
    run_callback("drop of a refused audit hook", move || drop(hook))
}

impl<'i> Gil<'i> {
    /// Raises the audit event `event` with `args` (CPython's `sys.audit` /
    /// `PySys_Audit`): calls every runtime-wide hook, then this
    /// interpreter's hooks, each in registration order, with this token.
    /// The first hook that fails ends the event (later hooks are not called)
    /// and its error is returned; a hook's panic comes back as
    /// [`Error::CallbackPanicked`]. Hooks of other interpreters never see it.
    ///
    /// With no hook registered anywhere in the process this is one atomic
    /// load (of a static: no pointer is followed); nothing is allocated and
    /// no argument is built. With hooks only in another runtime, it is two. Pass the
    /// arguments you already have, or use [`audit_with`](Self::audit_with) to
    /// build them only when a hook will see them.
    ///
    /// Events nest at most [`MAX_AUDIT_DEPTH`] deep on a thread (a hook that
    /// raises an event): deeper is [`Error::RecursionError`].
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use subinterp::{Error, Runtime, RuntimeConfig};
    ///
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     g.add_audit_hook(move |_g, event, args| {
    ///         log.lock().unwrap().push((event.to_owned(), args.len()));
    ///         if event == "os.remove" {
    ///             return Err(Error::raised("PermissionError", "not here"));
    ///         }
    ///         Ok(())
    ///     })?;
    ///     g.audit("test_event", &[g.int(1)?, g.int(2)?])?;
    ///     let refused = g.audit("os.remove", &[g.str("/etc/passwd")?]).unwrap_err();
    ///     assert_eq!(refused.to_string(), "PermissionError: not here");
    ///     Ok(())
    /// })??;
    /// let seen = seen.lock().unwrap();
    /// // Adding the hook is itself an event, seen by the hooks already there (none).
    /// assert_eq!(*seen, vec![("test_event".to_owned(), 2), ("os.remove".to_owned(), 1)]);
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    #[inline]
    pub fn audit(&self, event: &str, args: &[Obj<'i>]) -> Result<()> {
        if surely_no_hook(*self) {
            return Ok(());
        }
        dispatch(*self, event, args)
    }

    /// [`audit`](Self::audit) with arguments built by `args` only when a hook
    /// will see them (CPython's `should_audit` check before `Py_BuildValue`).
    /// An error from `args` is returned and no hook is called.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     // No hook: the closure is never called.
    ///     g.audit_with("my.event", || unreachable!())?;
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    #[inline]
    pub fn audit_with(&self, event: &str, args: impl FnOnce() -> Result<Vec<Obj<'i>>>) -> Result<()> {
        if surely_no_hook(*self) {
            return Ok(());
        }
        let rec = &self.interpreter().rec;
        if rec.rt.services.hooks_total.get() == 0 || (rec.rt.services.hooks.is_empty() && rec.services.hooks.is_empty())
        {
            return Ok(());
        }
        let args = args()?;
        dispatch(*self, event, &args)
    }

    /// Adds a hook for this interpreter's events (CPython's
    /// `sys.addaudithook`): called with the token, the event name and its
    /// arguments for every event raised in this interpreter, after the
    /// runtime-wide hooks and the hooks added before it. There is no
    /// removal; the hook is dropped when the interpreter closes.
    ///
    /// Adding is itself audited: the event `"sys.addaudithook"` (no
    /// arguments) goes to the hooks already registered. If one fails with an
    /// `Exception`-class error ([`Error::is_exception`]) the hook is not
    /// added and this returns `Ok(false)`, as CPython silently skips it; any
    /// other failure (a `BaseException` such as
    /// `Error::raised("KeyboardInterrupt", ..)`, a panic) is returned. A
    /// refused hook is dropped.
    ///
    /// Returns `Ok(true)` when the hook was added. Errors:
    /// [`Error::InterpreterClosed`] once the interpreter's close has begun
    /// (hooks that run during the close cannot add hooks).
    pub fn add_audit_hook<F>(&self, hook: F) -> Result<bool>
    where
        F: for<'a> Fn(Gil<'a>, &str, &[Obj<'a>]) -> Result<()> + Send + Sync + 'static,
    {
        let rec = &self.interpreter().rec;
        let hook: Hook = Box::new(hook);
        if rec.is_closed() {
            drop_refused(hook)?;
            return Err(Error::InterpreterClosed { id: rec.id });
        }
        if let Err(e) = self.audit("sys.addaudithook", &[]) {
            drop_refused(hook)?;
            return if e.is_exception() { Ok(false) } else { Err(e) };
        }
        rec.services.hooks.push(hook);
        rec.rt.services.hooks_total.add(1);
        Ok(true)
    }
}

/// Runs `f` with a token of the interpreter whose GIL the calling thread
/// holds, if it is one of `rt`'s.
fn with_current<R>(rt: &RuntimeInner, f: impl for<'i> FnOnce(Gil<'i>) -> R) -> Option<R> {
    ThreadCtx::with(|ctx| {
        let frame = ctx.holding_frame()?;
        if !std::ptr::eq(&*frame.record().rt, rt) {
            return None;
        }
        Some(f(Gil::new(frame.handle(), ctx.uid)))
    })
    .flatten()
}

impl Runtime {
    /// Adds a runtime-wide hook (CPython's `PySys_AddAuditHook`): called
    /// before any interpreter's own hooks for every event of every
    /// interpreter of this runtime, with that interpreter's token. It can be
    /// added from any thread, also before any interpreter has run; there is
    /// no removal (it is dropped with the runtime).
    ///
    /// If the calling thread is inside one of this runtime's interpreters,
    /// `"sys.addaudithook"` is raised there first; as in CPython's C API,
    /// only a `RuntimeError`-class failure (`Error::raised("RuntimeError",
    /// ..)`, [`Error::RecursionError`]) skips the add silently
    /// (`Ok(false)`), any other is returned. Returns `Ok(true)` when added.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use subinterp::{InterpreterConfig, Runtime, RuntimeConfig};
    ///
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// let created = Arc::new(AtomicUsize::new(0));
    /// let c = created.clone();
    /// rt.add_audit_hook(move |_g, event, _args| {
    ///     if event == "cpython.PyInterpreterState_New" {
    ///         c.fetch_add(1, Ordering::Relaxed);
    ///     }
    ///     Ok(())
    /// })?;
    /// let sub = rt.create(InterpreterConfig::isolated())?;
    /// assert_eq!(created.load(Ordering::Relaxed), 1);
    /// sub.close()?;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn add_audit_hook<F>(&self, hook: F) -> Result<bool>
    where
        F: for<'a> Fn(Gil<'a>, &str, &[Obj<'a>]) -> Result<()> + Send + Sync + 'static,
    {
        let rt = self.inner();
        let hook: Hook = Box::new(hook);
        if let Some(Err(e)) = with_current(rt, |g| g.audit("sys.addaudithook", &[])) {
            drop_refused(hook)?;
            return if e.is_runtime_error() { Ok(false) } else { Err(e) };
        }
        rt.services.hooks.push(hook);
        rt.services.hooks_total.add(1);
        Ok(true)
    }
}

/// Raises a runtime event with no arguments on behalf of `rt` (interpreter
/// creation): in the interpreter the calling thread is inside, or, from a
/// thread inside none, in main (entered for the event, as an embedder
/// thread attaches to main before it creates an interpreter in CPython).
/// From inside another runtime's interpreter the event cannot be raised (a
/// thread holds one GIL): refused with [`Error::GilHeldByOtherInterpreter`].
pub(crate) fn raise_for_runtime(rt: &RuntimeInner, event: &str) -> Result<()> {
    if rt.services.hooks_total.get() == 0 {
        return Ok(());
    }
    let current =
        ThreadCtx::with(|ctx| ctx.holding_frame().map(|f| (std::ptr::eq(&*f.record().rt, rt), f.record().id)))
            .flatten();
    match current {
        Some((true, _)) => with_current(rt, |g| g.audit(event, &[])).unwrap_or(Ok(())),
        Some((false, held)) => Err(Error::GilHeldByOtherInterpreter { held, requested: 0 }),
        None => {
            // Main gone: the creation is refused anyway.
            let Some(main) = rt.main_record() else { return Ok(()) };
            if rt.services.hooks.is_empty() && main.services.hooks.is_empty() {
                return Ok(());
            }
            Interpreter { rec: main }.with_gil(|g| g.audit(event, &[]))?
        }
    }
}

/// `cpython.PyInterpreterState_New`, raised by `Runtime::create` before
/// anything is made: a failing hook refuses the creation.
pub(crate) fn interpreter_new(rt: &RuntimeInner) -> Result<()> {
    raise_for_runtime(rt, "cpython.PyInterpreterState_New")
}

/// See [`super::clear`].
pub(crate) fn clear(g: Gil<'_>) -> Vec<Error> {
    let mut errors = Vec::new();
    if let Err(e) = g.audit("cpython.PyInterpreterState_Clear", &[]) {
        errors.push(e);
    }
    let rec = &g.interpreter().rec;
    // Called by `close()` only, outside any hook, holding the GIL with no
    // other thread inside; the interpreter is finalizing, so no hook is added.
    // SAFETY: no dispatch (a reader under this GIL) or append can run now.
    let (n, errs) = unsafe { rec.services.hooks.take_all() };
    rec.rt.services.hooks_total.sub(n);
    errors.extend(errs);
    errors
}
