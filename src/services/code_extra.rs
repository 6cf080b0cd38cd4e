//! Code-extra slots (PEP 523 scratch space; CPython's
//! `PyUnstable_Eval_RequestCodeExtraIndex` in `Python/ceval.c`,
//! `PyUnstable_Code_SetExtra` / `GetExtra` in `Objects/codeobject.c`).
//!
//! An interpreter hands out up to [`MAX_CODE_EXTRA_INDEXES`] indexes, each
//! with an optional free function, never recycled. The counter is a CAS loop
//! (CPython's is a plain increment under the GIL), so indexes can be asked
//! for from any thread. The free functions live in a table allocated on the
//! first request (an idle interpreter pays one pointer): the winner of index
//! `i` publishes its function in slot `i` with a release store, and a slot
//! that is still empty counts as "not handed out".

use std::ptr::null_mut;

use crate::error::{Error, Result};
use crate::gc::object::{body, body_mut, set_flag, Body, Code, FLAG_USER_DROP};
use crate::interp::run_callback;
use crate::sync::{self, AtomicPtr, AtomicUsize, Ordering};
use crate::{Gil, Interpreter, Obj};

/// How many code-extra indexes an interpreter can hand out (CPython's
/// `MAX_CO_EXTRA_USERS` is 255, of which 254 are usable): indexes
/// `0..=253`. The next request is [`Error::CodeExtraExhausted`].
pub const MAX_CODE_EXTRA_INDEXES: usize = 254;

/// A slot's value for "handed out, no free function".
static NO_FREE: u8 = 0;

fn no_free() -> *mut () {
    std::ptr::addr_of!(NO_FREE).cast_mut().cast()
}

/// The free functions, one published slot per index handed out.
struct Slots([AtomicPtr<()>; MAX_CODE_EXTRA_INDEXES]);

/// `co_extra_user_count` and `co_extra_freefuncs`.
pub(crate) struct CodeExtraTable {
    /// Indexes handed out (claimed; a claimed slot is published right after).
    count: AtomicUsize,
    /// Allocated on the first request; freed with the record.
    slots: AtomicPtr<Slots>,
}

impl CodeExtraTable {
    pub(crate) fn new() -> Self {
        Self { count: AtomicUsize::new(0), slots: AtomicPtr::new(null_mut()) }
    }

    fn slots_or_alloc(&self) -> &Slots {
        let p = self.slots.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: a published table lives until the record drops.
            return unsafe { &*p };
        }
        let new = Box::into_raw(Box::new(Slots(std::array::from_fn(|_| AtomicPtr::new(null_mut())))));
        match self.slots.compare_exchange(null_mut(), new, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: just published; lives until the record drops.
            Ok(_) => unsafe { &*new },
            Err(cur) => {
                // SAFETY: `new` was never published: ours to free.
                drop(unsafe { Box::from_raw(new) });
                // SAFETY: as above for the table that won.
                unsafe { &*cur }
            }
        }
    }

    /// Claims the next index and publishes `free` for it.
    fn request(&self, id: crate::InterpreterId, free: Option<fn(*mut ())>) -> Result<usize> {
        let slots = self.slots_or_alloc();
        let mut n = self.count.load(Ordering::Relaxed);
        loop {
            if n >= MAX_CODE_EXTRA_INDEXES {
                return Err(Error::CodeExtraExhausted { id, limit: MAX_CODE_EXTRA_INDEXES });
            }
            if sync::mutation("code_extra_racy_index") {
                // CPython's `co_extra_user_count++` without its GIL.
                self.count.store(n + 1, Ordering::Relaxed);
                break;
            }
            // Relaxed: the counter only hands out distinct numbers; what an
            // index means is published by the slot's release store below.
            match self.count.compare_exchange_weak(n, n + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(cur) => n = cur,
            }
        }
        let f = match free {
            Some(f) => f as *mut (),
            None => no_free(),
        };
        slots.0[n].store(f, Ordering::Release);
        Ok(n)
    }

    /// The free function of index `i` (`Some(None)`: handed out without
    /// one), or `None` if `i` was not handed out.
    fn lookup(&self, i: usize) -> Option<Option<fn(*mut ())>> {
        if i >= MAX_CODE_EXTRA_INDEXES {
            return None;
        }
        let p = self.slots.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: a published table lives until the record drops.
        let v = unsafe { &*p }.0[i].load(Ordering::Acquire);
        if v.is_null() {
            None
        } else if v == no_free() {
            Some(None)
        } else {
            // SAFETY: every other published value came from a
            // `fn(*mut ())` cast to a pointer in `request`.
            Some(Some(unsafe { std::mem::transmute::<*mut (), fn(*mut ())>(v) }))
        }
    }

    /// Indexes handed out so far.
    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed).min(MAX_CODE_EXTRA_INDEXES)
    }
}

impl Drop for CodeExtraTable {
    fn drop(&mut self) {
        let p = self.slots.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: `&mut self`: nobody else can reach the table, which
            // came from `Box::into_raw` in `slots_or_alloc`.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// Calls the free functions of a dying code object's slots (the code
/// object's own interpreter's: it is `g`'s, as a code object never leaves
/// the interpreter that made it). Called after the object's block is freed
/// (`gc::release_body`, `gc::drop_user_body`): the heap is consistent. Each
/// call is behind the catch-unwind boundary; the panics are returned.
pub(crate) fn release(g: Gil<'_>, code: &mut Code) -> Vec<Error> {
    let slots = std::mem::take(&mut code.co_extra);
    let table = &g.interpreter().rec.services.code_extra;
    let mut errors = Vec::new();
    for (i, v) in slots.into_iter().enumerate() {
        if v.is_null() {
            continue;
        }
        if let Some(Some(free)) = table.lookup(i) {
            if let Err(e) = run_callback("code-extra free function", || free(v)) {
                errors.push(e);
            }
        }
    }
    errors
}

impl Interpreter {
    /// Hands out a new code-extra index of this interpreter (CPython's
    /// `PyUnstable_Eval_RequestCodeExtraIndex`), with `free`, the function
    /// called on a value when it leaves a slot of that index (replaced, or
    /// its code object freed). Indexes are `0, 1, …` in request order, per
    /// interpreter, never recycled; any thread may ask, with or without a
    /// GIL (the counter is atomic).
    ///
    /// Errors: [`Error::CodeExtraExhausted`] once [`MAX_CODE_EXTRA_INDEXES`]
    /// indexes are handed out (CPython returns -1); [`Error::InterpreterClosed`].
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use subinterp::{Runtime, RuntimeConfig};
    ///
    /// static FREED: AtomicUsize = AtomicUsize::new(0);
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// let main = rt.main();
    /// let idx = main.request_code_extra_index(Some(|p: *mut ()| {
    ///     // SAFETY (of this example): every value stored at `idx` is a `Box<u64>`.
    ///     drop(unsafe { Box::from_raw(p.cast::<u64>()) });
    ///     FREED.fetch_add(1, Ordering::Relaxed);
    /// }))?;
    /// main.with_gil(|g| -> subinterp::Result<()> {
    ///     let code = g.code("f", &[], 0)?;
    ///     code.set_extra(idx, Box::into_raw(Box::new(7u64)).cast())?;
    ///     // SAFETY (of this example): the slot holds the Box<u64> stored above.
    ///     assert_eq!(unsafe { *code.get_extra(idx)?.cast::<u64>() }, 7);
    ///     drop(code); // the free function gets the value
    ///     Ok(())
    /// })??;
    /// assert_eq!(FREED.load(Ordering::Relaxed), 1);
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn request_code_extra_index(&self, free: Option<fn(*mut ())>) -> Result<usize> {
        if self.rec.is_closed() {
            return Err(Error::InterpreterClosed { id: self.rec.id });
        }
        self.rec.services.code_extra.request(self.rec.id, free)
    }

    /// Code-extra indexes handed out so far (`co_extra_user_count`).
    pub fn code_extra_index_count(&self) -> usize {
        self.rec.services.code_extra.count()
    }
}

impl<'i> Obj<'i> {
    /// Sets code-extra slot `index` of a code object to `value` (CPython's
    /// `PyUnstable_Code_SetExtra`). The value is an opaque pointer that the
    /// runtime never dereferences; null empties the slot. If the slot held
    /// a value, the index's free function is called on it, after the new
    /// value is in place (so a free function that reads or sets the slot
    /// never sees the freed value). When the code object is freed, the free
    /// function of each set slot is called on its value.
    ///
    /// These slots are not [`code_extra`](Self::code_extra)'s object slots:
    /// their indexes come from
    /// [`Interpreter::request_code_extra_index`] and their values are not
    /// objects (the collector does not see them).
    ///
    /// Errors: [`Error::TypeError`] for an object that is not a code object;
    /// [`Error::CodeExtraIndex`] for an index this interpreter did not hand
    /// out (CPython's `SystemError`); [`Error::MemoryError`] if the slots
    /// cannot grow within the memory limit; a panic of the free function as
    /// [`Error::CallbackPanicked`] (the new value is set).
    pub fn set_extra(&self, index: usize, value: *mut ()) -> Result<()> {
        let g = self.gil();
        if !matches!(body(self.raw()), Body::Code(_)) {
            return Err(self.type_error("set_extra needs a code object"));
        }
        let table = &g.interpreter().rec.services.code_extra;
        let Some(free) = table.lookup(index) else {
            return Err(Error::CodeExtraIndex { index, id: g.id(), count: table.count() });
        };
        let len = match body(self.raw()) {
            Body::Code(c) => c.co_extra.len(),
            _ => 0,
        };
        let mut grown = Vec::new();
        if len <= index {
            // Sized to the index, checked against the memory limit first.
            g.reserve_outside(&mut grown, index + 1)?;
        }
        // SAFETY: no reference into the body is alive, and nothing below
        // runs user code until the borrow ends.
        let old = match unsafe { body_mut(self.raw()) } {
            Body::Code(c) => {
                if len <= index {
                    grown.extend_from_slice(&c.co_extra);
                    grown.resize(index + 1, null_mut());
                    c.co_extra = grown;
                }
                std::mem::replace(&mut c.co_extra[index], value)
            }
            _ => return Err(self.type_error("set_extra needs a code object")),
        };
        if !value.is_null() {
            // Its drop calls free functions now: the collector moves its body
            // out and drops it behind the boundary (`gc::drop_user_body`).
            set_flag(self.raw(), FLAG_USER_DROP, true);
        }
        match free {
            Some(f) if !old.is_null() => run_callback("code-extra free function", || f(old)),
            _ => Ok(()),
        }
    }

    /// Code-extra slot `index` of a code object (CPython's
    /// `PyUnstable_Code_GetExtra`): null when it was never set, also for an
    /// index that was never handed out (no error, as CPython).
    ///
    /// Errors: [`Error::TypeError`] for an object that is not a code object.
    pub fn get_extra(&self, index: usize) -> Result<*mut ()> {
        match body(self.raw()) {
            Body::Code(c) => Ok(c.co_extra.get(index).copied().unwrap_or(null_mut())),
            _ => Err(self.type_error("get_extra needs a code object")),
        }
    }
}
