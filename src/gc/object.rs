//! Object layout, the built-in types, and the handles [`Obj`] and [`Owned`].
//!
//! Every object is one block of the interpreter's heap:
//!
//! ```text
//! tracked (containers):   [ GcHead: slot ][ ObjHead: refcnt, flags, body ][ inline data ]
//! untracked (atoms):                     [ ObjHead: refcnt, flags, body ][ inline data ]
//!                                        ^ object pointer (`Raw`)
//! ```
//!
//! `GcHead` is 8 bytes, `ObjHead` 24 (a 32-bit refcount, 32 bits of flags, a
//! 16-byte body): a tracked list or tuple with up to one item is one 32-byte
//! block, an int or float one 32-byte block (24 bytes rounded up).
//!
//! `str`/`bytes` keep their bytes inline, in the same block; a str's bytes
//! follow an 8-byte word that caches its hash (0 until first hashed, see
//! `dict.rs`), so a str of up to 8 bytes is a 48-byte block (CPython 3.13:
//! `sys.getsizeof('abc')` = 52). List and tuple
//! item buffers are blocks of the same heap (`items.rs`: counted, under the
//! memory limit, freed explicitly at the body's drop sites), and so are dict
//! tables (`dict.rs`; a dict body is one pointer to its table). An instance
//! keeps its attributes inline after the header (`instance.rs`). The bodies
//! that do not fit the 16-byte `Body` (classes, methods, modules, functions,
//! code objects, weakrefs, an instance's ext box) are heap boxes (`hbox.rs`,
//! freed explicitly as the buffers are); an embedder value and a native
//! function's closure are heap blocks behind a thin pointer (`hdyn.rs`),
//! a function's captured references and a class's bases, MRO and shared
//! keys heap buffers. Still system-allocator memory: class and function
//! names, code constants and extra slots.

use std::cell::{Cell, UnsafeCell};
use std::mem::size_of;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

pub(crate) use super::dict::{key_hash, Dict};
use super::trace::{Cleared, Trace, Visitor};
pub(crate) use super::types::{Method, ModuleObj, TypeObj};
use crate::error::{Error, Result};
use crate::interp::tstate::ThreadCtx;
use crate::interp::Record;
use crate::sync::Arc;
use crate::{Gil, Interpreter, InterpreterId};

/// A pointer to an object header (not a handle: owns nothing by itself).
pub(crate) type Raw = NonNull<ObjHead>;

/// The object has a [`GcHead`] before it.
pub(crate) const FLAG_GC: u32 = 1;
/// Its finalizer has run (PEP 442: at most once).
pub(crate) const FLAG_FINALIZED: u32 = 2;
/// Weak references to it are registered in the interpreter's table.
pub(crate) const FLAG_WEAKREFS: u32 = 4;
/// Its block came from a pool (request ≤ 512 bytes), not the large path.
pub(crate) const FLAG_SMALL: u32 = 8;
/// It is in the unreachable set of the running collection.
pub(crate) const FLAG_UNREACHABLE: u32 = 16;
/// Reachable from a legacy finalizer inside the unreachable set.
pub(crate) const FLAG_LEGACY_MARK: u32 = 32;
/// Its death may run user code (an instance given a finalizer, a weakref
/// object): the collector and the deallocator take their careful paths.
pub(crate) const FLAG_SPECIAL: u32 = 64;
/// Its body's drop runs user code (an embedder value, a native function's
/// closure): the body is moved out and dropped behind the catch-unwind
/// boundary after the block is freed (`gc::free_obj`).
pub(crate) const FLAG_USER_DROP: u32 = 128;
/// A str object whose data holds lone surrogates (U+D800..U+DFFF, each as
/// its own 3-byte sequence: "generalized UTF-8"), made only by the codecs
/// (`src/codecs`, `docs/codecs.md`). Its data is not valid UTF-8, so it is
/// never handed out as a `&str` ([`Obj::as_str`] is `None` for it).
pub(crate) const FLAG_SURROGATES: u32 = 256;
/// Set by an old-generation increment on a suspect and on every object of
/// its closure (`gc::increment_candidates`): a survivor carrying it goes
/// to the clean old table, the others to the suspects (`gc::track_survivor`).
pub(crate) const FLAG_SCANNED: u32 = 512;
/// An increment found this object's closure larger than its budget: when it
/// is a suspect again it is put back among the clean without being traced,
/// and the interpreter owes a full collection (`docs/gc.md`, "Incremental").
pub(crate) const FLAG_BIG: u32 = 1024;
/// The interpreter itself holds this object: a module object of its module
/// table, that module's globals dict (`gc::modules`), or a type it caches
/// (the built-in types, embedder types, exception classes, the classes of
/// `Gil::instance`; held until close). Such an object is
/// live, and so is everything it reaches: an increment's closures stop at
/// it, and as a suspect it goes back among the clean unexamined
/// (`docs/gc.md`, "Closures stop at what the interpreter holds").
pub(crate) const FLAG_ROOTED: u32 = 2048;
/// An instance whose attributes are in its ext box's dict, no longer in its
/// inline values (`instance.rs`).
pub(crate) const FLAG_ATTR_DICT: u32 = 4096;
// The flags' top byte is an instance's inline capacity (`instance::CAP_SHIFT`).
const _: () = assert!(FLAG_ATTR_DICT < 1 << super::instance::CAP_SHIFT);

pub(crate) use super::hbox::HBox;
pub(crate) use super::hdyn::HDyn;
pub(crate) use super::items::{Items, SeqKind};

/// The one-word header before every tracked object (CPython's `PyGC_Head`,
/// minus the links). Its low three bits are a tag: 0 untracked, `gen + 1`
/// (`1..=5`) in table `gen` (0 and 1 young, 2 the clean old, 3 the
/// permanent, 4 the old suspects: `gc::SUSPECT`), `TAG_DETACHED` while a collection
/// holds it outside the tables. Bit 3 (`SLOT_COLLECTING`) chooses what the
/// rest holds:
///
/// * clear: the object's index in its generation's table, `<< SLOT_SHIFT`;
/// * set (a candidate of the running collection): CPython's `gc_refs`, `<<
///   REFS_SHIFT`, and `SLOT_REACHABLE` once found reachable. The candidates
///   are out of their tables during a collection, so their index is not
///   needed; the partition writes it back.
///
/// Keeping `gc_refs` here rather than in a table beside the collection was
/// measured: a side table of one word per candidate made full collections
/// slower (its lines are fetched and written back beside the objects'), not
/// faster, on the survivors loop (`docs/gc.md`).
///
/// Generations are tables of pointers rather than CPython's linked lists: a
/// pass over a table issues its loads independently (the processor overlaps
/// the cache misses), where walking a list waits for each node in turn.
#[repr(C)]
pub(crate) struct GcHead {
    pub(crate) slot: Cell<usize>,
}

/// `slot`'s tag bits.
pub(crate) const TAG_MASK: usize = 7;
/// `slot` tag: held by a running collection, in no table.
pub(crate) const TAG_DETACHED: usize = 7;
/// `slot` tag of the clean old table (generation 2's objects not touched by
/// a decrement since an increment or a full collection last examined them).
pub(crate) const TAG_OLD: usize = 3;
/// `slot` bit: the object is a candidate of the running collection (the
/// upper bits are its `gc_refs`).
pub(crate) const SLOT_COLLECTING: usize = 8;
/// `slot` bit (with `SLOT_COLLECTING`): found reachable.
pub(crate) const SLOT_REACHABLE: usize = 16;
/// The table index is stored shifted by this much.
pub(crate) const SLOT_SHIFT: usize = 4;
/// `gc_refs` is stored shifted by this much.
pub(crate) const REFS_SHIFT: usize = 5;

/// The `slot` of a new candidate with tag `tag` whose references number
/// `refcnt`.
#[inline(always)]
pub(crate) fn refs_start(refcnt: u32, tag: usize) -> usize {
    ((refcnt as usize) << REFS_SHIFT) | SLOT_COLLECTING | tag
}

/// One internal reference less (never below zero: an embedder's trace that
/// reports a reference twice must not make the count wrap).
#[inline(always)]
pub(crate) fn refs_dec(slot: usize) -> usize {
    if slot >> REFS_SHIFT != 0 {
        slot - (1 << REFS_SHIFT)
    } else {
        slot
    }
}

/// The `gc_refs` of a candidate's `slot`.
#[inline(always)]
pub(crate) fn refs_of(slot: usize) -> usize {
    slot >> REFS_SHIFT
}

pub(crate) const GC_HEAD_SIZE: usize = size_of::<GcHead>();

/// A refcount that has reached this value stays there: the object is
/// immortal (never freed). CPython 3.12+ saturates its 32-bit count the same
/// way; it takes 4 billion references (32 GiB of pointers, or handles leaked
/// with `mem::forget`) to get here.
pub(crate) const REFCNT_IMMORTAL: u32 = u32::MAX;

/// The object header: a plain refcount (the GIL serializes it), flags, and
/// the body, whose variant is the object's type.
#[repr(C)]
pub(crate) struct ObjHead {
    /// Saturates at `REFCNT_IMMORTAL` (see there).
    pub(crate) refcnt: Cell<u32>,
    pub(crate) flags: Cell<u32>,
    pub(crate) body: UnsafeCell<Body>,
}

// A tracked list or tuple of up to one item is one 32-byte block. The body is
// 16 bytes because the compiler keeps its variant in a niche of `Items` (the
// kind byte); a layout change that loses this fails here, not silently.
const _: () = assert!(size_of::<Body>() == 16);
const _: () = assert!(size_of::<ObjHead>() == 24);
const _: () = assert!(GC_HEAD_SIZE == 8);

/// The signature of a native function ([`Gil::function`]'s closure), as a
/// trait object: `f(gil, captured, args)`. The closure is kept in the
/// interpreter's heap (`hdyn.rs`).
pub type NativeFn = dyn for<'i> Fn(Gil<'i>, &[Obj<'i>], &[Obj<'i>]) -> Result<Obj<'i>>;

pub(crate) enum Body {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Length of the inline UTF-8 data.
    Str(usize),
    /// Length of the inline data.
    Bytes(usize),
    /// A tuple or a list (`Items::kind`).
    Seq(Items),
    /// A dict: one pointer to its table in the heap (`dict.rs`).
    Dict(Dict),
    /// An instance: its class (a strong reference); its attributes are
    /// inline after the header (`instance.rs`).
    Instance(Raw),
    Function(HBox<Function>),
    Weakref(HBox<WeakrefBody>),
    Code(HBox<Code>),
    /// A type object (class).
    Type(HBox<TypeObj>),
    /// A function bound to an object.
    Method(HBox<Method>),
    /// A module object.
    Module(HBox<ModuleObj>),
    /// An embedder value, in one heap block behind a thin pointer (`hdyn.rs`),
    /// which keeps the body 16 bytes.
    Custom(HDyn<dyn CustomObj>),
}

pub(crate) struct Function {
    pub(crate) name: Box<str>,
    /// The closure, in the heap.
    pub(crate) f: HDyn<NativeFn>,
    /// Strong references, in a heap buffer (a tuple's `Items`).
    pub(crate) captured: Items,
}

pub(crate) struct WeakrefBody {
    /// Not a strong reference.
    pub(crate) target: Option<Raw>,
    pub(crate) callback: Option<Raw>,
    /// A proxy (`weakref.proxy`): attribute access and calls go to the target.
    pub(crate) proxy: bool,
}

pub(crate) struct Code {
    pub(crate) name: Box<str>,
    pub(crate) consts: Vec<Raw>,
    pub(crate) extra: Vec<Option<Raw>>,
    /// PEP 523 scratch slots (`services::code_extra`): opaque values, not
    /// references; null = unset.
    pub(crate) co_extra: Vec<*mut ()>,
}

/// Object-safe view of an embedder's [`Trace`] type.
pub(crate) trait CustomObj {
    fn trace_dyn(&self, v: &mut Visitor<'_>);
    fn clear_dyn(&self, c: &mut Cleared<'_>);
    fn as_any(&self) -> &dyn std::any::Any;
    fn type_name(&self) -> &'static str;
}

impl<T: Trace> CustomObj for T {
    fn trace_dyn(&self, v: &mut Visitor<'_>) {
        self.trace(v)
    }
    fn clear_dyn(&self, c: &mut Cleared<'_>) {
        self.clear(c)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

/// The type of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `None`.
    None,
    /// `bool`.
    Bool,
    /// `int` (i64; overflow is an error).
    Int,
    /// `float`.
    Float,
    /// `str`.
    Str,
    /// `bytes`.
    Bytes,
    /// `tuple`.
    Tuple,
    /// `list`.
    List,
    /// `dict` (insertion ordered).
    Dict,
    /// An instance of a class: its type and an attribute dict.
    Instance,
    /// A native function.
    Function,
    /// A weak reference.
    Weakref,
    /// A code object with extra slots.
    Code,
    /// An embedder type (see [`Trace`]).
    Custom,
    /// A type object (a class, or a built-in type).
    Type,
    /// A function bound to an object.
    Method,
    /// A module object.
    Module,
    /// A weak proxy (`weakref.proxy`).
    WeakProxy,
}

impl Kind {
    /// CPython's type name.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(subinterp::Kind::List.name(), "list");
    /// assert_eq!(g.dict()?.kind().name(), "dict");
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Kind::None => "NoneType",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::Str => "str",
            Kind::Bytes => "bytes",
            Kind::Tuple => "tuple",
            Kind::List => "list",
            Kind::Dict => "dict",
            Kind::Instance => "instance",
            Kind::Function => "builtin_function_or_method",
            Kind::Weakref => "weakref",
            Kind::Code => "code",
            Kind::Custom => "object",
            Kind::Type => "type",
            Kind::Method => "method",
            Kind::Module => "module",
            Kind::WeakProxy => "weakref.ProxyType",
        }
    }
}

// ----- raw access -------------------------------------------------------------------

/// The header of a live object.
#[inline(always)]
pub(crate) fn head<'a>(r: Raw) -> &'a ObjHead {
    // SAFETY: every `Raw` the crate handles points to a live object (it is
    // held by a handle, a container, or the collector's hold), and the header
    // is only mutated through its `Cell`s / `UnsafeCell`.
    unsafe { r.as_ref() }
}

/// The body of a live object, shared. Callers must not keep it across
/// anything that can mutate the body (user code, `body_mut`).
#[inline(always)]
pub(crate) fn body<'a>(r: Raw) -> &'a Body {
    // SAFETY: see `head`; bodies are mutated only through `body_mut`, whose
    // callers hold no shared reference at the same time (GIL held, no user
    // code between the two).
    unsafe { &*head(r).body.get() }
}

/// The body of a live object, exclusive.
///
/// # Safety
/// No other reference into the body may be alive while the result is used,
/// and no user code may run meanwhile.
#[inline(always)]
pub(crate) unsafe fn body_mut<'a>(r: Raw) -> &'a mut Body {
    // SAFETY: forwarded from the caller.
    unsafe { &mut *head(r).body.get() }
}

/// The GC link header of an object with `FLAG_GC`.
#[inline(always)]
pub(crate) fn gc_head<'a>(r: Raw) -> &'a GcHead {
    debug_assert!(head(r).flags.get() & FLAG_GC != 0);
    // SAFETY: objects with FLAG_GC were allocated with a GcHead immediately
    // before the ObjHead (`alloc_obj`), in the same live block.
    unsafe { &*(r.as_ptr() as *const u8).sub(GC_HEAD_SIZE).cast::<GcHead>() }
}

#[inline(always)]
pub(crate) fn has_flag(r: Raw, f: u32) -> bool {
    head(r).flags.get() & f != 0
}

#[inline(always)]
pub(crate) fn set_flag(r: Raw, f: u32, on: bool) {
    let h = head(r);
    let v = h.flags.get();
    h.flags.set(if on { v | f } else { v & !f });
}

/// Finishes a `Dict::set` of `(k, v)`, references the caller took for it:
/// releases the pair it displaced, or, when it failed, gives `k` and `v`
/// back (the dict is unchanged). Call it after the borrow of the dict ended:
/// the releases may run user code.
pub(crate) fn settle_dict_set(g: Gil<'_>, res: Result<Option<(Raw, Raw)>>, k: Raw, v: Raw) -> Result<()> {
    match res {
        Ok(displaced) => {
            if let Some((a, b)) = displaced {
                decref(g, a);
                decref(g, b);
            }
            Ok(())
        }
        Err(e) => {
            decref(g, k);
            decref(g, v);
            Err(e)
        }
    }
}

/// Takes one reference (saturating: see `REFCNT_IMMORTAL`).
#[inline(always)]
pub(crate) fn incref(r: Raw) {
    let h = head(r);
    h.refcnt.set(h.refcnt.get().saturating_add(1));
}

/// Releases one reference; frees at zero (iteratively, see `super::dealloc`).
/// An immortal object's count does not move.
#[inline(always)]
pub(crate) fn decref(g: Gil<'_>, r: Raw) {
    if release_ref(g, r)
        && head(r).flags.get() & FLAG_GC != 0
        && gc_head(r).slot.get() & (TAG_MASK | SLOT_COLLECTING) == TAG_OLD
    {
        // A clean old object lost a reference and lives on: it may now be
        // part of a garbage cycle, so the next increment examines it.
        super::suspect(g, r);
    }
}

/// `decref` without the suspect bookkeeping: releases one reference, frees
/// at zero; true when the object lives on with one reference less. The
/// collector releases its own holds on survivors with it: the hold is the
/// collector's, not an edge of the program's, and a suspect made at each
/// release would have every increment find the last one's survivors
/// waiting again.
#[inline(always)]
pub(crate) fn release_ref(g: Gil<'_>, r: Raw) -> bool {
    let h = head(r);
    let c = h.refcnt.get();
    if c == REFCNT_IMMORTAL {
        return false;
    }
    h.refcnt.set(c - 1);
    if c == 1 {
        super::dealloc(g, r);
        return false;
    }
    true
}

pub(crate) fn inline_data(r: Raw) -> *mut u8 {
    // SAFETY: str/bytes objects and instances were allocated with their
    // data right after the header, in the same block.
    unsafe { (r.as_ptr() as *mut u8).add(size_of::<ObjHead>()) }
}

/// Bytes before a str's UTF-8 data: its hash cache (0 until computed).
pub(crate) const STR_HASH_PREFIX: usize = size_of::<u64>();

/// The hash cache word of a str object (the first inline word, 8-aligned:
/// the block is 16-aligned and `ObjHead` 24 bytes, or 32 with a `GcHead`).
#[inline(always)]
pub(crate) fn str_hash_slot(r: Raw) -> *mut u64 {
    inline_data(r).cast::<u64>()
}

pub(crate) fn kind_of(r: Raw) -> Kind {
    match body(r) {
        Body::None => Kind::None,
        Body::Bool(_) => Kind::Bool,
        Body::Int(_) => Kind::Int,
        Body::Float(_) => Kind::Float,
        Body::Str(_) => Kind::Str,
        Body::Bytes(_) => Kind::Bytes,
        Body::Seq(items) => match items.kind() {
            SeqKind::Tuple => Kind::Tuple,
            SeqKind::List => Kind::List,
        },
        Body::Dict(_) => Kind::Dict,
        Body::Instance(_) => Kind::Instance,
        Body::Function(_) => Kind::Function,
        Body::Weakref(w) if w.proxy => Kind::WeakProxy,
        Body::Weakref(_) => Kind::Weakref,
        Body::Code(_) => Kind::Code,
        Body::Custom(_) => Kind::Custom,
        Body::Type(_) => Kind::Type,
        Body::Method(_) => Kind::Method,
        Body::Module(_) => Kind::Module,
    }
}

/// The type's name of an object (a class's for an instance).
pub(crate) fn type_name_raw(r: Raw) -> String {
    match body(r) {
        Body::Instance(c) => match body(*c) {
            Body::Type(t) => t.name.to_string(),
            _ => "instance".to_string(),
        },
        Body::Custom(c) => c.get().type_name().to_string(),
        _ => kind_of(r).name().to_string(),
    }
}

/// How deeply [`Obj::call`]s may nest on one thread (CPython's default
/// recursion limit).
pub const MAX_CALL_DEPTH: usize = 1000;

std::thread_local! {
    static CALL_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// One level of [`Obj::call`] nesting, given back on drop (also by unwinding).
struct CallDepth;

impl CallDepth {
    fn enter() -> Result<CallDepth> {
        CALL_DEPTH.with(|d| {
            if d.get() >= MAX_CALL_DEPTH {
                return Err(Error::RecursionError { limit: MAX_CALL_DEPTH, context: "calling a function" });
            }
            if crate::interp::stack::nearly_exhausted() {
                // Before the depth limit: the thread's stack is small, or
                // the frames between calls are big (an unoptimized build).
                return Err(Error::RecursionError {
                    limit: d.get(),
                    context: "calling a function: the thread's stack is nearly exhausted",
                });
            }
            d.set(d.get() + 1);
            Ok(CallDepth)
        })
    }
}

impl Drop for CallDepth {
    fn drop(&mut self) {
        CALL_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

std::thread_local! {
    /// The first panic message of an embedder's `Trace::trace` since the
    /// last [`take_trace_panic`] (traversals continue past it; the collector
    /// then frees nothing).
    static TRACE_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Takes the message of a `Trace::trace` panic caught by [`traverse`].
pub(crate) fn take_trace_panic() -> Option<String> {
    TRACE_PANIC.with(|t| t.borrow_mut().take())
}

/// Calls `f` on every strong reference of `r` (CPython's `tp_traverse`).
/// A panic in an embedder's `Trace::trace` is caught (the object's
/// references are then under-reported) and kept for [`take_trace_panic`].
#[inline]
pub(crate) fn traverse(r: Raw, uid: u64, f: &mut impl FnMut(Raw)) {
    match body(r) {
        Body::Seq(items) => items.iter().for_each(|&i| f(i)),
        Body::Dict(d) => d.traverse(f),
        Body::Instance(c) => {
            f(*c);
            super::instance::traverse_inline(r, f);
        }
        Body::Type(t) => {
            t.bases.iter().chain(t.mro.iter()).for_each(|&b| f(b));
            t.dict.traverse(f);
        }
        Body::Method(m) => {
            f(m.func);
            f(m.receiver);
        }
        Body::Module(m) => f(m.dict),
        Body::Function(func) => func.captured.iter().for_each(|&i| f(i)),
        Body::Weakref(w) => w.callback.into_iter().for_each(f),
        Body::Code(c) => {
            c.consts.iter().for_each(|&i| f(i));
            c.extra.iter().flatten().for_each(|&i| f(i));
        }
        Body::Custom(c) => {
            let r = catch_unwind(AssertUnwindSafe(|| c.get().trace_dyn(&mut Visitor { f, uid })));
            if let Err(p) = r {
                TRACE_PANIC.with(|t| {
                    t.borrow_mut().get_or_insert_with(|| crate::error::panic_message(p.as_ref()));
                });
            }
        }
        _ => {}
    }
}

/// Moves every strong reference of `r` into `out` (CPython's `tp_clear`).
/// A weakref's target is not a strong reference: see `super::detach_weakref`.
/// Only an embedder's `Trace::clear` can panic here.
pub(crate) fn take_refs(r: Raw, uid: u64, out: &mut Vec<Raw>) {
    if let Body::Custom(c) = body(r) {
        c.get().clear_dyn(&mut Cleared { out, uid });
        return;
    }
    // SAFETY: no reference into this body is alive (shared borrows above
    // ended), and nothing below runs user code.
    match unsafe { body_mut(r) } {
        Body::Seq(items) => {
            // The buffer stays with the object (freed with it, `free_obj`).
            out.extend_from_slice(items.as_slice());
            items.clear_len();
        }
        Body::Dict(d) => d.take_all(out),
        Body::Instance(_) => super::instance::take_inline(r, out),
        Body::Function(func) => {
            // The buffer stays with the function (freed with it).
            out.extend_from_slice(func.captured.as_slice());
            func.captured.clear_len();
        }
        Body::Type(t) => {
            // Bases and MRO stay (as CPython's `type_clear` keeps them): a
            // cleared class still names its place in the hierarchy; they
            // are released when it is freed. Its shared keys go with its
            // dict (strs: an instance of it whose values outlive them just
            // has no named attributes left).
            t.dict.take_all(out);
            // (The keys' buffer stays with the class, freed with it.)
            out.extend_from_slice(t.keys.as_slice());
            t.keys.clear_len();
        }
        // A bound method and a module keep their references until freed
        // (CPython's `meth_clear` / `module_clear` clear the dict only):
        // the module's dict is cleared as a dict object of its own.
        Body::Method(_) | Body::Module(_) => {}
        Body::Weakref(w) => out.extend(w.callback.take()),
        Body::Code(c) => {
            out.append(&mut c.consts);
            out.extend(c.extra.iter_mut().filter_map(Option::take));
        }
        _ => {}
    }
}

/// The data of a str object: valid UTF-8, or generalized UTF-8 (lone
/// surrogates) when it has `FLAG_SURROGATES`.
pub(crate) fn str_data_of<'a>(r: Raw) -> &'a [u8] {
    let Body::Str(n) = body(r) else { return &[] };
    // SAFETY: a str object holds `n` bytes inline after its hash cache,
    // written at creation and never changed.
    unsafe { std::slice::from_raw_parts(inline_data(r).add(STR_HASH_PREFIX), *n) }
}

/// The text of a str object; `None` for one holding lone surrogates.
pub(crate) fn str_of<'a>(r: Raw) -> Option<&'a str> {
    if has_flag(r, FLAG_SURROGATES) {
        return None;
    }
    // SAFETY: a str object without FLAG_SURROGATES holds valid UTF-8 (`Gil::str`
    // copies a `&str`; the codecs set the flag whenever they write a surrogate).
    Some(unsafe { std::str::from_utf8_unchecked(str_data_of(r)) })
}

pub(crate) fn bytes_of<'a>(r: Raw) -> &'a [u8] {
    let Body::Bytes(n) = body(r) else { return &[] };
    // SAFETY: a bytes object holds `n` bytes inline, never changed.
    unsafe { std::slice::from_raw_parts(inline_data(r), *n) }
}

// ----- handles ------------------------------------------------------------------------

/// A strong reference to an object, usable only inside the `with_gil` closure
/// whose token it carries (branded with `'i`, `!Send`).
///
/// `clone` increments the refcount; `drop` decrements it and frees the object
/// at zero. Freeing is iterative: a 1,000,000-deep chain is freed without
/// recursion.
pub struct Obj<'i> {
    raw: Raw,
    g: Gil<'i>,
}

impl<'i> Obj<'i> {
    /// Takes over one reference the caller owns.
    pub(crate) fn from_raw_owned(raw: Raw, g: Gil<'i>) -> Self {
        Obj { raw, g }
    }

    /// A new reference (increments).
    pub(crate) fn from_raw_borrowed(raw: Raw, g: Gil<'i>) -> Self {
        incref(raw);
        Obj { raw, g }
    }

    /// Gives up the handle without releasing its reference.
    pub(crate) fn into_raw(self) -> Raw {
        let r = self.raw;
        std::mem::forget(self);
        r
    }

    /// The token this handle carries.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let o = g.int(1)?;
    /// assert_eq!(o.gil().id(), g.id());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn gil(&self) -> Gil<'i> {
        self.g
    }

    /// The object's type.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.str("x")?.kind(), subinterp::Kind::Str);
    /// assert_eq!(g.tuple(&[])?.kind(), subinterp::Kind::Tuple);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn kind(&self) -> Kind {
        kind_of(self.raw)
    }

    /// The type's name (for an instance, its class name).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.list(&[])?.type_name(), "list");
    /// assert_eq!(g.instance("Point")?.type_name(), "Point");
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn type_name(&self) -> String {
        type_name_raw(self.raw)
    }

    /// The current refcount (this handle included).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let l = g.list(&[])?;
    /// let n = l.refcount();
    /// let again = l.clone();
    /// assert_eq!(l.refcount(), n + 1);
    /// drop(again);
    /// assert_eq!(l.refcount(), n);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn refcount(&self) -> usize {
        head(self.raw).refcnt.get() as usize
    }

    /// Whether both handles name the same object (Python's `is`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let a = g.list(&[])?;
    /// assert!(a.is(&a.clone()));
    /// assert!(!a.is(&g.list(&[])?));
    /// assert!(g.none()?.is(&g.none()?)); // None is one object
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn is(&self, other: &Obj<'i>) -> bool {
        self.raw == other.raw
    }

    /// The object's address (Python's `id()`), stable while it lives.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let a = g.list(&[])?;
    /// assert_eq!(a.addr(), a.clone().addr());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn addr(&self) -> usize {
        self.raw.as_ptr() as usize
    }

    /// Whether the collector tracks it (`gc.is_tracked`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert!(g.list(&[])?.is_tracked()); // a container
    /// assert!(!g.int(7)?.is_tracked()); // an atom
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn is_tracked(&self) -> bool {
        has_flag(self.raw, FLAG_GC) && gc_head(self.raw).slot.get() != 0
    }

    /// Whether its finalizer has run (`gc.is_finalized`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let o = g.instance("T")?;
    /// assert!(!o.is_finalized());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn is_finalized(&self) -> bool {
        has_flag(self.raw, FLAG_FINALIZED)
    }

    /// An owned, `Send` handle to the same object, usable beyond the closure.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let owned = g.list(&[])?.to_owned(); // `Send`: may leave this closure
    /// assert_eq!(owned.interpreter_id(), g.id());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn to_owned(&self) -> Owned {
        incref(self.raw);
        Owned { raw: self.raw, rec: self.g.interpreter().rec.clone() }
    }

    /// The pointer (crate-internal).
    #[inline(always)]
    pub(crate) fn raw(&self) -> Raw {
        self.raw
    }

    pub(crate) fn type_error(&self, what: &str) -> Error {
        Error::TypeError { message: format!("{what}, not '{}'", self.kind().name()) }
    }

    /// The value of an `int` or `bool`.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.int(-3)?.as_int(), Some(-3));
    /// assert_eq!(g.bool(true)?.as_int(), Some(1));
    /// assert_eq!(g.str("3")?.as_int(), None);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn as_int(&self) -> Option<i64> {
        match body(self.raw) {
            Body::Int(i) => Some(*i),
            Body::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// The value of a `float`.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.float(0.5)?.as_float(), Some(0.5));
    /// assert_eq!(g.int(2)?.as_float(), None); // only a float
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn as_float(&self) -> Option<f64> {
        match body(self.raw) {
            Body::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value of a `bool`.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.bool(false)?.as_bool(), Some(false));
    /// assert_eq!(g.int(0)?.as_bool(), None);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn as_bool(&self) -> Option<bool> {
        match body(self.raw) {
            Body::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether it is `None`.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert!(g.none()?.is_none());
    /// assert!(!g.int(0)?.is_none());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn is_none(&self) -> bool {
        matches!(body(self.raw), Body::None)
    }

    /// The text of a `str`; `None` for any other object, and for a str that
    /// holds lone surrogates (made by the `surrogateescape` or
    /// `surrogatepass` error handlers: see
    /// [`Obj::str_lossy`](crate::Obj::str_lossy) and `docs/codecs.md`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.str("héllo")?.as_str(), Some("héllo"));
    /// assert_eq!(g.bytes(b"x")?.as_str(), None);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match body(self.raw) {
            Body::Str(_) => str_of(self.raw),
            _ => None,
        }
    }

    /// The bytes of a `bytes`.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.bytes(&[0, 255])?.as_bytes(), Some(&[0u8, 255][..]));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn as_bytes(&self) -> Option<&[u8]> {
        matches!(body(self.raw), Body::Bytes(_)).then(|| bytes_of(self.raw))
    }

    fn int_op(&self, other: &Obj<'i>, operation: &'static str, f: fn(i64, i64) -> Option<i64>) -> Result<Obj<'i>> {
        let (Some(a), Some(b)) = (self.as_int(), other.as_int()) else {
            return Err(Error::TypeError {
                message: format!(
                    "unsupported operand type(s) for {operation}: '{}' and '{}'",
                    self.kind().name(),
                    other.kind().name()
                ),
            });
        };
        let v = f(a, b).ok_or(Error::Overflow { operation })?;
        self.g.int(v)
    }

    /// `self + other` for ints; overflow is [`Error::Overflow`].
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.int(2)?.int_add(&g.int(3)?)?.as_int(), Some(5));
    /// assert!(g.int(i64::MAX)?.int_add(&g.int(1)?).is_err()); // overflow is an error
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn int_add(&self, other: &Obj<'i>) -> Result<Obj<'i>> {
        self.int_op(other, "int add", i64::checked_add)
    }

    /// `self - other` for ints; overflow is [`Error::Overflow`].
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.int(2)?.int_sub(&g.int(3)?)?.as_int(), Some(-1));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn int_sub(&self, other: &Obj<'i>) -> Result<Obj<'i>> {
        self.int_op(other, "int sub", i64::checked_sub)
    }

    /// `self * other` for ints; overflow is [`Error::Overflow`].
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.int(6)?.int_mul(&g.int(7)?)?.as_int(), Some(42));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn int_mul(&self, other: &Obj<'i>) -> Result<Obj<'i>> {
        self.int_op(other, "int mul", i64::checked_mul)
    }

    /// The length of a str, bytes, tuple, list or dict.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.list(&[g.none()?, g.none()?])?.len()?, 2);
    /// assert_eq!(g.str("héllo")?.len()?, 5); // characters, as Python's len
    /// assert!(g.int(1)?.len().is_err());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn len(&self) -> Result<usize> {
        Ok(match body(self.raw) {
            // Code points: the bytes that do not continue a sequence (also
            // right for a str holding surrogates).
            Body::Str(_) => str_data_of(self.raw).iter().filter(|&&b| b & 0xC0 != 0x80).count(),
            Body::Bytes(n) => *n,
            Body::Seq(items) => items.len(),
            Body::Dict(d) => d.len(),
            _ => return Err(self.type_error("object has no len()")),
        })
    }

    /// Whether [`len`](Self::len) is 0.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert!(g.dict()?.is_empty()?);
    /// assert!(!g.tuple(&[g.none()?])?.is_empty()?);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// Item `i` of a tuple or list.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let t = g.tuple(&[g.int(10)?, g.int(20)?])?;
    /// assert_eq!(t.get_item(1)?.as_int(), Some(20));
    /// assert!(matches!(t.get_item(2), Err(subinterp::Error::IndexError { index: 2, len: 2 })));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn get_item(&self, i: usize) -> Result<Obj<'i>> {
        let r = match body(self.raw) {
            Body::Seq(items) => items.get(i).copied().ok_or(Error::IndexError { index: i, len: items.len() })?,
            _ => return Err(self.type_error("indexing needs a tuple or list")),
        };
        Ok(Obj::from_raw_borrowed(r, self.g))
    }

    /// Appends to a list.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let l = g.list(&[])?;
    /// l.list_append(&g.int(1)?)?;
    /// l.list_append(&l)?; // a list may hold itself (a cycle the collector frees)
    /// assert_eq!(l.len()?, 2);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn list_append(&self, item: &Obj<'i>) -> Result<()> {
        let r = item.clone().into_raw();
        // SAFETY: no reference into the body is alive; `push` runs no user
        // code (the heap's limiter hook gets no `Gil`, so it cannot reach
        // this list).
        match unsafe { body_mut(self.raw) } {
            Body::Seq(l) if l.is_list() => match l.push(self.g.heap(), r) {
                Ok(()) => Ok(()),
                Err(e) => {
                    // Nothing changed: the list is as it was, the new
                    // reference is given back.
                    decref(self.g, r);
                    Err(e)
                }
            },
            _ => {
                drop(Obj::from_raw_owned(r, self.g));
                Err(self.type_error("list_append needs a list"))
            }
        }
    }

    /// Replaces item `i` of a list.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let l = g.list(&[g.int(1)?])?;
    /// l.list_set(0, &g.str("one")?)?;
    /// assert_eq!(l.get_item(0)?.as_str(), Some("one"));
    /// assert!(l.list_set(5, &g.none()?).is_err());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn list_set(&self, i: usize, item: &Obj<'i>) -> Result<()> {
        // SAFETY: as in `list_append`; the old item is released after the
        // borrow ends.
        let old = match unsafe { body_mut(self.raw) } {
            Body::Seq(l) if l.is_list() => {
                let len = l.len();
                let slot = l.get_mut(i).ok_or(Error::IndexError { index: i, len })?;
                std::mem::replace(slot, item.clone().into_raw())
            }
            _ => return Err(self.type_error("list_set needs a list")),
        };
        decref(self.g, old);
        Ok(())
    }

    /// Removes and returns the last item of a list.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let l = g.list(&[g.int(1)?, g.int(2)?])?;
    /// assert_eq!(l.list_pop()?.unwrap().as_int(), Some(2));
    /// assert_eq!(l.len()?, 1);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn list_pop(&self) -> Result<Option<Obj<'i>>> {
        // SAFETY: as in `list_append`.
        match unsafe { body_mut(self.raw) } {
            Body::Seq(l) if l.is_list() => Ok(l.pop().map(|r| Obj::from_raw_owned(r, self.g))),
            _ => Err(self.type_error("list_pop needs a list")),
        }
    }

    /// Empties a list or dict. A dict's table goes back to the heap.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let d = g.dict()?;
    /// d.dict_set(&g.str("k")?, &g.int(1)?)?;
    /// d.clear()?;
    /// assert_eq!(d.len()?, 0);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn clear(&self) -> Result<()> {
        match body(self.raw) {
            Body::Seq(l) if l.is_list() => {}
            Body::Dict(_) => {}
            _ => return Err(self.type_error("clear needs a list or dict")),
        }
        // The buffer or table moved out first (the object is empty from
        // here, as CPython's `list.clear` / `dict.clear` leave it), then its
        // references released from it: no worklist of all of them.
        let g = self.g;
        super::clear_releasing(g, self.raw, g.interpreter().rec.gc.uid(), |r| decref(g, r));
        Ok(())
    }

    /// The dict of a dict or instance.
    ///
    /// # Safety
    /// The caller must use the result without running user code or releasing
    /// references, and drop it before any other access to this object.
    unsafe fn dict_mut<'a>(&self) -> Result<&'a mut Dict> {
        // SAFETY: forwarded from the caller.
        match unsafe { body_mut(self.raw) } {
            Body::Dict(d) => Ok(d),
            // SAFETY: forwarded from the caller.
            Body::Instance(_) => unsafe { super::instance::dict_mut(self.g, self.raw) },
            _ => Err(self.type_error("a dict is required")),
        }
    }

    /// `self[key] = value` for a dict. Keys must be hashable: None, bool,
    /// int, float, str, bytes, tuples of hashable keys, and the objects that
    /// hash by identity (instances, classes, functions, …); else
    /// [`Error::TypeError`] with CPython's text ("unhashable type: 'list'").
    /// Keys compare as Python's do: `1`, `1.0` and `True` are one key; the
    /// first key object stays, the later one is released.
    ///
    /// Errors: [`Error::MemoryError`] when the table must grow and the heap
    /// refuses it (the dict is unchanged); [`Error::RecursionError`] for a
    /// key of tuples nested deeper than 1,000.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let d = g.dict()?;
    ///     d.dict_set(&g.int(1)?, &g.str("one")?)?;
    ///     d.dict_set(&g.float(1.0)?, &g.str("uno")?)?; // the same key
    ///     assert_eq!(d.len()?, 1);
    ///     assert_eq!(d.dict_get(&g.bool(true)?)?.unwrap().as_str(), Some("uno"));
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn dict_set(&self, key: &Obj<'i>, value: &Obj<'i>) -> Result<()> {
        if !matches!(body(self.raw), Body::Dict(_)) {
            return Err(self.type_error("dict_set needs a dict"));
        }
        self.dict_set_any(key, value)
    }

    fn dict_set_any(&self, key: &Obj<'i>, value: &Obj<'i>) -> Result<()> {
        let hash = key_hash(key.raw)?;
        let (k, v) = (key.clone().into_raw(), value.clone().into_raw());
        // SAFETY: `set` runs no user code (the heap's limiter hook gets no
        // `Gil`); references are released after the borrow ends.
        let displaced = unsafe { self.dict_mut() }.and_then(|d| d.set(self.g.heap(), hash, k, v));
        settle_dict_set(self.g, displaced, k, v)
    }

    /// `self.get(key)` for a dict (Python equality, as in
    /// [`dict_set`](Self::dict_set)). Errors: unhashable key as there.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let d = g.dict()?;
    /// d.dict_set(&g.int(1)?, &g.str("one")?)?;
    /// // Python equality: 1 == 1.0 == True.
    /// assert_eq!(d.dict_get(&g.float(1.0)?)?.unwrap().as_str(), Some("one"));
    /// assert!(d.dict_get(&g.int(2)?)?.is_none());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    #[inline]
    pub fn dict_get(&self, key: &Obj<'i>) -> Result<Option<Obj<'i>>> {
        match body(self.raw) {
            Body::Dict(d) => {
                let hash = key_hash(key.raw)?;
                Ok(d.get(hash, key.raw).map(|r| Obj::from_raw_borrowed(r, self.g)))
            }
            _ => Err(self.type_error("dict_get needs a dict")),
        }
    }

    /// `del self[key]` for a dict; returns whether the key was there. The
    /// table does not shrink here (CPython's rule): the hole is dropped at
    /// the next growth.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let d = g.dict()?;
    /// d.dict_set(&g.str("k")?, &g.none()?)?;
    /// assert!(d.dict_del(&g.str("k")?)?);
    /// assert!(!d.dict_del(&g.str("k")?)?);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn dict_del(&self, key: &Obj<'i>) -> Result<bool> {
        if !matches!(body(self.raw), Body::Dict(_)) {
            return Err(self.type_error("dict_del needs a dict"));
        }
        let hash = key_hash(key.raw)?;
        // SAFETY: `remove` runs no user code; references are released after.
        let removed = unsafe { self.dict_mut() }?.remove(hash, key.raw);
        match removed {
            Some((k, v)) => {
                decref(self.g, k);
                decref(self.g, v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn dict_ref(&self, what: &str) -> Result<&Dict> {
        match body(self.raw) {
            Body::Dict(d) => Ok(d),
            // SAFETY: no reference into the instance is alive (the shared
            // borrow of its body ended); the result is shared from here.
            Body::Instance(_) => unsafe { super::instance::dict_mut(self.g, self.raw) }.map(|d| &*d),
            _ => Err(self.type_error(what)),
        }
    }

    /// The (key, value) pairs of a dict (or an instance's attributes), in
    /// insertion order: a snapshot (see [`dict_iter`](Self::dict_iter) for
    /// a live iterator).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let d = g.dict()?;
    /// d.dict_set(&g.str("b")?, &g.int(2)?)?;
    /// d.dict_set(&g.str("a")?, &g.int(1)?)?;
    /// let keys: Vec<String> = d.dict_items()?.iter().map(|(k, _)| k.as_str().unwrap().to_owned()).collect();
    /// assert_eq!(keys, ["b", "a"]); // insertion order
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn dict_items(&self) -> Result<Vec<(Obj<'i>, Obj<'i>)>> {
        let d = self.dict_ref("dict_items needs a dict")?;
        Ok(d.items().map(|(k, v)| (Obj::from_raw_borrowed(k, self.g), Obj::from_raw_borrowed(v, self.g))).collect())
    }

    /// An iterator over the (key, value) pairs of a dict (or an instance's
    /// attributes) in insertion order, reading the dict as it goes (CPython's
    /// `iter(d.items())`). Adding or removing keys meanwhile makes the next
    /// step an [`Error::RuntimeError`] with CPython's text, "dictionary
    /// changed size during iteration" (or "dictionary keys changed during
    /// iteration" when as many were added as removed); after an error the
    /// iterator ends. Replacing a value is allowed.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig, Error};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let d = g.dict()?;
    ///     d.dict_set(&g.str("a")?, &g.int(1)?)?;
    ///     d.dict_set(&g.str("b")?, &g.int(2)?)?;
    ///     let mut it = d.dict_iter()?;
    ///     let (k, v) = it.next().unwrap()?;
    ///     assert_eq!((k.as_str(), v.as_int()), (Some("a"), Some(1)));
    ///     d.dict_set(&g.str("c")?, &g.int(3)?)?;
    ///     assert!(matches!(it.next(), Some(Err(Error::RuntimeError { .. }))));
    ///     assert!(it.next().is_none());
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn dict_iter(&self) -> Result<DictIter<'i>> {
        let len = self.dict_ref("dict_iter needs a dict")?.len();
        Ok(DictIter { dict: self.clone(), pos: 0, expected: len, remaining: len, done: false })
    }

    fn set_instance_hook(&self, legacy: bool, f: Option<&Obj<'i>>) -> Result<()> {
        if let Some(f) = f {
            if f.kind() != Kind::Function {
                return Err(f.type_error("a finalizer must be a function"));
            }
        }
        let new = f.map(|f| f.clone().into_raw());
        // The old hook is released after the instance's ext is updated.
        let old = match body(self.raw) {
            Body::Instance(_) => match super::instance::replace_hook(self.g, self.raw, legacy, new) {
                Ok(old) => {
                    if new.is_some() {
                        set_flag(self.raw, FLAG_SPECIAL, true);
                    }
                    old
                }
                Err(e) => {
                    new.into_iter().for_each(|r| decref(self.g, r));
                    return Err(e);
                }
            },
            _ => {
                new.into_iter().for_each(|r| decref(self.g, r));
                return Err(self.type_error("finalizers need an instance"));
            }
        };
        old.into_iter().for_each(|r| decref(self.g, r));
        Ok(())
    }

    /// Sets the instance's finalizer (`__del__`, PEP 442): called with the
    /// instance as its one argument, at most once, when the instance becomes
    /// unreachable (refcount zero or cyclic garbage). It may resurrect it.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// use std::{cell::Cell, rc::Rc};
    /// let ran = Rc::new(Cell::new(false));
    /// let r = ran.clone();
    /// let fin = g.function("__del__", &[], move |g, _, _| {
    ///     r.set(true);
    ///     g.none()
    /// })?;
    /// let o = g.instance("Resource")?;
    /// o.set_finalizer(Some(&fin))?;
    /// drop(o);
    /// assert!(ran.get(), "ran when the last reference went");
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn set_finalizer(&self, f: Option<&Obj<'i>>) -> Result<()> {
        self.set_instance_hook(false, f)
    }

    /// Sets a legacy finalizer (CPython's `tp_del`): an instance with one that
    /// is part of cyclic garbage is never collected; it and everything it
    /// reaches go to [`Gil::gc_garbage`]. At refcount zero it runs like a
    /// finalizer.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let fin = g.function("__del__", &[], |g, _, _| g.none())?;
    /// let o = g.instance("Legacy")?;
    /// o.set_legacy_finalizer(Some(&fin))?;
    /// o.setattr("me", &o)?; // a cycle with a legacy finalizer is uncollectable
    /// drop(o);
    /// g.gc_collect(2)?;
    /// assert_eq!(g.gc_garbage()?.len()?, 1); // it went to gc.garbage
    /// g.gc_clear_garbage();
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn set_legacy_finalizer(&self, f: Option<&Obj<'i>>) -> Result<()> {
        self.set_instance_hook(true, f)
    }

    /// Calls a native function.
    ///
    /// Calls nest at most [`MAX_CALL_DEPTH`] deep on a thread (CPython's
    /// recursion limit), and never closer than 256 KiB to the end of the
    /// thread's stack (CPython 3.12+'s C-stack check): a deeper call is
    /// [`Error::RecursionError`], never a stack overflow.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let add = g.function("add", &[], |g, _, args| args[0].int_add(&args[1]))?;
    /// assert_eq!(add.call(&[g.int(2)?, g.int(3)?])?.as_int(), Some(5));
    /// assert!(g.int(1)?.call(&[]).is_err()); // not callable: TypeError
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn call(&self, args: &[Obj<'i>]) -> Result<Obj<'i>> {
        // The native-function path keeps a small frame (deep recursion
        // through calls must reach MAX_CALL_DEPTH before the stack ends,
        // also in unoptimized sanitizer builds): everything else is out of line.
        let (f, captured) = match body(self.raw) {
            // The closure stays in place for the call: the function object
            // is alive (the caller's handle) and its closure is freed only
            // with it (a clear takes the captured references, not it).
            Body::Function(func) => {
                (func.f.get(), func.captured.iter().map(|&r| Obj::from_raw_borrowed(r, self.g)).collect::<Vec<_>>())
            }
            _ => return self.call_other(args),
        };
        let _depth = CallDepth::enter()?;
        f(self.g, &captured, args)
    }

    /// Calls a weak proxy (its referent), a class or a bound method.
    #[inline(never)]
    fn call_other(&self, args: &[Obj<'i>]) -> Result<Obj<'i>> {
        let _depth = CallDepth::enter()?;
        if let Some(target) = super::types::proxy_target(self)? {
            return target.call(args);
        }
        match super::types::call_special(self, args) {
            Some(r) => r,
            None => Err(self.type_error("object is not callable")),
        }
    }

    /// A weakref's callback (`__callback__`): `None` once the referent died
    /// (CPython clears it then) or when it has none.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let cb = g.function("cb", &[], |g, _, _| g.none())?;
    /// let target = g.instance("T")?;
    /// let w = g.weakref(&target, Some(&cb))?;
    /// assert!(w.weakref_callback()?.unwrap().is(&cb));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn weakref_callback(&self) -> Result<Option<Obj<'i>>> {
        match body(self.raw) {
            Body::Weakref(w) if w.target.is_some() => Ok(w.callback.map(|r| Obj::from_raw_borrowed(r, self.g))),
            Body::Weakref(_) => Ok(None),
            _ => Err(self.type_error("weakref_callback needs a weakref")),
        }
    }

    /// The referent of a weakref, if still alive.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let target = g.list(&[])?;
    /// let w = g.weakref(&target, None)?;
    /// assert!(w.weakref_get()?.unwrap().is(&target));
    /// drop(target);
    /// assert!(w.weakref_get()?.is_none());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn weakref_get(&self) -> Result<Option<Obj<'i>>> {
        match body(self.raw) {
            Body::Weakref(w) => Ok(w.target.map(|r| Obj::from_raw_borrowed(r, self.g))),
            _ => Err(self.type_error("weakref_get needs a weakref")),
        }
    }

    /// Extra slot `i` of a code object.
    pub fn code_extra(&self, i: usize) -> Result<Option<Obj<'i>>> {
        match body(self.raw) {
            Body::Code(c) => match c.extra.get(i) {
                Some(v) => Ok(v.map(|r| Obj::from_raw_borrowed(r, self.g))),
                None => Err(Error::IndexError { index: i, len: c.extra.len() }),
            },
            _ => Err(self.type_error("code_extra needs a code object")),
        }
    }

    /// Sets extra slot `i` of a code object.
    pub fn set_code_extra(&self, i: usize, value: Option<&Obj<'i>>) -> Result<()> {
        let new = value.map(|v| v.clone().into_raw());
        // SAFETY: no reference into the body is alive; released after.
        let old = match unsafe { body_mut(self.raw) } {
            Body::Code(c) => {
                let len = c.extra.len();
                match c.extra.get_mut(i) {
                    Some(slot) => std::mem::replace(slot, new),
                    None => {
                        new.into_iter().for_each(|r| decref(self.g, r));
                        return Err(Error::IndexError { index: i, len });
                    }
                }
            }
            _ => {
                new.into_iter().for_each(|r| decref(self.g, r));
                return Err(self.type_error("set_code_extra needs a code object"));
            }
        };
        old.into_iter().for_each(|r| decref(self.g, r));
        Ok(())
    }

    /// The value of an embedder object of type `T`.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// use subinterp::{trace_fields, Member};
    /// struct Counter { hits: std::cell::Cell<u32>, next: Member }
    /// trace_fields!(Counter { next });
    /// let o = g.new_object(Counter { hits: Default::default(), next: Member::default() })?;
    /// o.downcast_ref::<Counter>().unwrap().hits.set(3);
    /// assert_eq!(o.downcast_ref::<Counter>().unwrap().hits.get(), 3);
    /// assert!(g.int(1)?.downcast_ref::<Counter>().is_none());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn downcast_ref<T: Trace>(&self) -> Option<&T> {
        match body(self.raw) {
            Body::Custom(c) => c.get().as_any().downcast_ref::<T>(),
            _ => None,
        }
    }
}

impl Clone for Obj<'_> {
    #[inline]
    fn clone(&self) -> Self {
        incref(self.raw);
        Obj { raw: self.raw, g: self.g }
    }
}

impl Drop for Obj<'_> {
    #[inline]
    fn drop(&mut self) {
        decref(self.g, self.raw);
    }
}

impl std::fmt::Debug for Obj<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Obj");
        d.field("type", &self.type_name()).field("refcount", &self.refcount());
        match body(self.raw) {
            Body::Int(i) => d.field("value", i),
            Body::Float(x) => d.field("value", x),
            Body::Bool(b) => d.field("value", b),
            Body::Str(_) => d.field("value", &String::from_utf8_lossy(str_data_of(self.raw))),
            _ => d.field("addr", &self.addr()),
        };
        d.finish()
    }
}

/// A live iterator over a dict's (key, value) pairs, from
/// [`Obj::dict_iter`]. It holds a reference to the dict.
pub struct DictIter<'i> {
    dict: Obj<'i>,
    pos: usize,
    expected: usize,
    remaining: usize,
    done: bool,
}

impl<'i> Iterator for DictIter<'i> {
    type Item = Result<(Obj<'i>, Obj<'i>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let g = self.dict.g;
        let fail = |it: &mut Self, message: &str| {
            it.done = true;
            Some(Err(Error::RuntimeError { message: message.into() }))
        };
        let Ok(d) = self.dict.dict_ref("") else { return fail(self, "dictionary changed size during iteration") };
        if d.len() != self.expected {
            return fail(self, "dictionary changed size during iteration");
        }
        let end = d.nentries();
        while self.pos < end {
            let at = d.entry_at(self.pos);
            self.pos += 1;
            if let Some((k, v)) = at {
                if self.remaining == 0 {
                    // An entry beyond the ones counted at the start: keys
                    // were removed and as many added (CPython's check).
                    return fail(self, "dictionary keys changed during iteration");
                }
                self.remaining -= 1;
                return Some(Ok((Obj::from_raw_borrowed(k, g), Obj::from_raw_borrowed(v, g))));
            }
        }
        self.done = true;
        None
    }
}

/// Moves a pointer into a pending call (run under the owner's GIL).
struct SendRaw(Raw);
// SAFETY: the pointer is only dereferenced by the pending call, which runs
// under the GIL of the interpreter that owns the object.
unsafe impl Send for SendRaw {}

/// An owned, `Send + Sync` reference to an object, usable beyond `with_gil`.
///
/// It carries its interpreter; [`bind`](Self::bind) turns it back into an
/// [`Obj`] only with a token of that interpreter. Dropped on a thread that
/// does not hold that interpreter's GIL, its release is queued as a pending
/// call and applied at the owner's next checkpoint. After the interpreter
/// closed, every use is [`Error::InterpreterClosed`] and dropping it does
/// nothing (the object was freed by the close).
pub struct Owned {
    raw: Raw,
    rec: Arc<Record>,
}

// SAFETY: the object is only touched under its interpreter's GIL: `bind`
// checks the token's interpreter, and `drop` either holds that GIL or queues
// the release as a pending call of that interpreter.
unsafe impl Send for Owned {}
// SAFETY: `&Owned` allows only `bind` (checked as above) and id queries.
unsafe impl Sync for Owned {}

impl std::fmt::Debug for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owned").field("interpreter", &self.rec.id).finish_non_exhaustive()
    }
}

impl Owned {
    /// The interpreter the object belongs to.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let owned = g.list(&[])?.to_owned();
    /// assert_eq!(owned.interpreter_id(), g.id());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn interpreter_id(&self) -> InterpreterId {
        self.rec.id
    }

    /// A handle to the object inside `g`'s closure. Errors:
    /// [`Error::WrongInterpreter`] for another interpreter's token,
    /// [`Error::InterpreterClosed`] once the owner is being torn down.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let owned = g.list(&[])?.to_owned();
    /// let back = owned.bind(g)?; // under the owning interpreter's GIL
    /// assert_eq!(back.len()?, 0);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn bind<'i>(&self, g: Gil<'i>) -> Result<Obj<'i>> {
        let rec = &g.interpreter().rec;
        if !std::ptr::eq(&**rec, &*self.rec) {
            return Err(Error::WrongInterpreter { owner: self.rec.id, used_with: rec.id });
        }
        if self.rec.gc.is_closing() {
            return Err(Error::InterpreterClosed { id: self.rec.id });
        }
        Ok(Obj::from_raw_borrowed(self.raw, g))
    }

    /// Enters the owner interpreter and runs `f` with the object.
    ///
    /// ```
    /// use subinterp::{InterpreterConfig, Runtime, RuntimeConfig};
    ///
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// let interp = rt.create(InterpreterConfig::isolated())?;
    /// let owned = interp.with_gil(|g| g.str("kept").map(|s| s.to_owned()))??;
    /// // Later, from any thread that holds no other interpreter's GIL:
    /// let len = std::thread::scope(|s| s.spawn(|| owned.with(|o| o.len())).join().unwrap())??;
    /// assert_eq!(len, 4);
    /// drop(owned);
    /// interp.close()?;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn with<R>(&self, f: impl for<'i> FnOnce(Obj<'i>) -> R) -> Result<R> {
        let interp = Interpreter { rec: self.rec.clone() };
        interp.with_gil(|g| self.bind(g).map(f))?
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if self.rec.is_closed() && self.rec.gc.is_closing() {
            return;
        }
        let raw = self.raw;
        let done = ThreadCtx::with(|ctx| match ctx.holding_frame() {
            Some(frame) if std::ptr::eq(frame.record(), &*self.rec) => {
                if !self.rec.gc.is_closing() {
                    decref(Gil::new(frame.handle(), ctx.uid), raw);
                }
                true
            }
            _ => false,
        })
        .unwrap_or(false);
        if !done {
            let p = SendRaw(raw);
            // Refused only once `close()` has drained the queue: the object is
            // then freed by the close itself.
            let _ = Interpreter { rec: self.rec.clone() }.add_pending_call(move |g| {
                let p = p;
                if !g.interpreter().rec.gc.is_closing() {
                    decref(g, p.0);
                }
            });
        }
    }
}

// ----- constructors -------------------------------------------------------------------

impl<'i> Gil<'i> {
    /// A new tracked object with `body` (crate-internal).
    pub(crate) fn new_obj_pub(&self, body: Body) -> Result<Obj<'i>> {
        self.new_obj(body, true, &[])
    }

    fn new_obj(&self, body: Body, gc: bool, data: &[u8]) -> Result<Obj<'i>> {
        let raw = super::alloc_obj(*self, body, gc, 0, data)?;
        Ok(Obj::from_raw_owned(raw, *self))
    }

    /// One of the interpreter's shared immutable atoms (`None`, `False`,
    /// `True`, the small ints): all made together on first use (about 8 KiB),
    /// one reference each kept by the collector's state until the teardown
    /// releases them. While the interpreter is closing, new objects instead.
    fn shared_atom(&self, index: usize, body: Body) -> Result<Obj<'i>> {
        let g = *self;
        if let Some(r) = super::st(g, |s| s.atoms.get(index).copied().flatten()) {
            return Ok(Obj::from_raw_borrowed(r, g));
        }
        if super::st(g, |s| s.closing || !s.atoms.is_empty()) {
            return self.new_obj(body, false, &[]);
        }
        let mut made = Vec::with_capacity(super::ATOMS);
        for i in 0..super::ATOMS {
            let b = match i {
                super::ATOM_NONE => Body::None,
                i if i < super::ATOM_SMALL_INTS => Body::Bool(i > super::ATOM_FALSE),
                i => Body::Int(super::SMALL_INT_MIN + (i - super::ATOM_SMALL_INTS) as i64),
            };
            // A refused allocation releases what was made: nothing half-made.
            made.push(self.new_obj(b, false, &[])?);
        }
        let r = made[index].raw;
        let leftover = super::st(g, |s| {
            if s.closing || !s.atoms.is_empty() {
                return Some(made);
            }
            s.atoms = made.into_iter().map(|o| Some(o.into_raw())).collect();
            None
        });
        match leftover {
            // Someone filled it meanwhile (cannot happen: nothing above runs
            // user code), or a close began: use our own, then release it.
            Some(made) => Ok(made[index].clone()),
            None => Ok(Obj::from_raw_borrowed(r, g)),
        }
    }

    /// `None`: one object per interpreter, as CPython's singleton
    /// (`g.none()?.is(&g.none()?)`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert!(g.none()?.is_none());
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn none(&self) -> Result<Obj<'i>> {
        self.shared_atom(super::ATOM_NONE, Body::None)
    }

    /// `True` or `False`: one object each per interpreter.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.bool(true)?.as_bool(), Some(true));
    /// assert!(g.bool(true)?.is(&g.bool(true)?)); // True is one object
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn bool(&self, v: bool) -> Result<Obj<'i>> {
        self.shared_atom(super::ATOM_FALSE + v as usize, Body::Bool(v))
    }

    /// An `int`. The small ints, -5 to 256, are shared per interpreter, as
    /// CPython's (`g.int(7)?.is(&g.int(7)?)`); others are new objects.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.int(-7)?.as_int(), Some(-7));
    /// assert!(g.int(7)?.is(&g.int(7)?)); // small ints are shared
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn int(&self, v: i64) -> Result<Obj<'i>> {
        if (super::SMALL_INT_MIN..=super::SMALL_INT_MAX).contains(&v) {
            return self.shared_atom(super::ATOM_SMALL_INTS + (v - super::SMALL_INT_MIN) as usize, Body::Int(v));
        }
        self.new_obj(Body::Int(v), false, &[])
    }

    /// A new `float`.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.float(2.5)?.as_float(), Some(2.5));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn float(&self, v: f64) -> Result<Obj<'i>> {
        self.new_obj(Body::Float(v), false, &[])
    }

    /// A new `str` (its bytes live in the same heap block, after a word
    /// that caches its hash once it is used as a dict key).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let s = g.str("héllo")?;
    /// assert_eq!(s.as_str(), Some("héllo"));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn str(&self, v: &str) -> Result<Obj<'i>> {
        let raw = super::alloc_obj(*self, Body::Str(v.len()), false, STR_HASH_PREFIX, v.as_bytes())?;
        Ok(Obj::from_raw_owned(raw, *self))
    }

    /// A new `bytes`.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// assert_eq!(g.bytes(b"\x00\xff")?.as_bytes(), Some(&b"\x00\xff"[..]));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn bytes(&self, v: &[u8]) -> Result<Obj<'i>> {
        self.new_obj(Body::Bytes(v.len()), false, v)
    }

    /// New items of `kind` holding new references to `items`, their
    /// buffer in this interpreter's heap (`MemoryError` if refused).
    fn seq_items(&self, kind: SeqKind, items: &[Obj<'i>]) -> Result<Items> {
        let mut v = Items::with_capacity(kind, self.heap(), items.len())?;
        for o in items {
            v.push_within(o.clone().into_raw());
        }
        Ok(v)
    }

    /// A new tuple (tracked unless empty). Its item buffer is in the
    /// interpreter's heap: [`Error::MemoryError`] past the memory limit.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let t = g.tuple(&[g.int(1)?, g.str("a")?])?;
    /// assert_eq!(t.len()?, 2);
    /// assert!(t.list_append(&g.none()?).is_err()); // immutable
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn tuple(&self, items: &[Obj<'i>]) -> Result<Obj<'i>> {
        let v = self.seq_items(SeqKind::Tuple, items)?;
        let gc = !v.is_empty();
        self.new_obj(Body::Seq(v), gc, &[])
    }

    /// A new list (tracked). Its item buffer is in the interpreter's heap:
    /// [`Error::MemoryError`] past the memory limit.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let l = g.list(&[g.int(1)?])?;
    /// l.list_append(&g.int(2)?)?;
    /// assert_eq!(l.get_item(1)?.as_int(), Some(2));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn list(&self, items: &[Obj<'i>]) -> Result<Obj<'i>> {
        let v = self.seq_items(SeqKind::List, items)?;
        self.new_obj(Body::Seq(v), true, &[])
    }

    /// Entries moved by dict table rebuilds on this thread so far (a cost
    /// counter for tests: inserts and deletes are amortized O(1), so it
    /// grows at most a small multiple of the operations).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let before = g.dict_entries_moved();
    /// let d = g.dict()?;
    /// for i in 0..100 {
    ///     d.dict_set(&g.int(i)?, &g.none()?)?; // grows: entries move to bigger tables
    /// }
    /// assert!(g.dict_entries_moved() > before);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    #[doc(hidden)]
    pub fn dict_entries_moved(&self) -> u64 {
        super::dict::entries_moved()
    }

    /// A new empty dict (tracked). It allocates nothing more until its
    /// first key: then a table of 8 slots and 5 entries (144 bytes) in the
    /// interpreter's heap, grown as CPython's (`docs/objects.md`).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let d = g.dict()?;
    /// d.dict_set(&g.str("k")?, &g.int(1)?)?;
    /// assert_eq!(d.dict_get(&g.str("k")?)?.unwrap().as_int(), Some(1));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn dict(&self) -> Result<Obj<'i>> {
        self.new_obj(Body::Dict(Dict::new()), true, &[])
    }

    /// A new native function: `f(gil, captured, args)`; `captured` are
    /// strong references the function keeps (and the collector traverses).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let greeting = g.str("hello")?;
    /// // `captured` are references the function keeps (traced by the collector).
    /// let f = g.function("greet", &[greeting], |_, captured, _| Ok(captured[0].clone()))?;
    /// assert_eq!(f.call(&[])?.as_str(), Some("hello"));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn function<F>(&self, name: &str, captured: &[Obj<'i>], f: F) -> Result<Obj<'i>>
    where
        F: for<'a> Fn(Gil<'a>, &[Obj<'a>], &[Obj<'a>]) -> Result<Obj<'a>> + 'static,
    {
        let heap = self.heap();
        // Each block is taken before the next; a refusal gives back what was
        // taken (the closure's drop is the embedder's: behind the boundary).
        let f = match HDyn::new_in(heap, f, |p| -> NonNull<NativeFn> { p }) {
            Ok(f) => f,
            Err((e, f)) => {
                super::drop_user_value(*self, f);
                return Err(e);
            }
        };
        let mut items = match Items::with_capacity(SeqKind::Tuple, heap, captured.len()) {
            Ok(items) => items,
            Err(e) => {
                super::drop_heap_value(*self, "drop of a native function's closure", f);
                return Err(e);
            }
        };
        let slot = match HBox::slot_in(heap) {
            Ok(slot) => slot,
            Err(e) => {
                // SAFETY: an empty buffer of this heap (or none); GIL held.
                unsafe { items.free_in(heap) };
                super::drop_heap_value(*self, "drop of a native function's closure", f);
                return Err(e);
            }
        };
        captured.iter().for_each(|o| items.push_within(o.clone().into_raw()));
        let func = Function { name: name.into(), f, captured: items };
        self.new_obj(Body::Function(slot.write(func)), true, &[])
    }

    /// A weak reference to `target` (which must be a tracked type: tuple,
    /// list, dict, instance, function, weakref, code or an embedder type;
    /// else [`Error::TypeError`]). `callback`, a function, is called with the
    /// weakref when the target dies, if the weakref is still alive then.
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let target = g.instance("T")?;
    /// let w = g.weakref(&target, None)?;
    /// drop(target);
    /// assert!(w.weakref_get()?.is_none());
    /// assert!(g.weakref(&g.int(1)?, None).is_err()); // atoms cannot be weakly referenced
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn weakref(&self, target: &Obj<'i>, callback: Option<&Obj<'i>>) -> Result<Obj<'i>> {
        self.make_weakref(target, callback, false)
    }

    /// A weak proxy to `target` (`weakref.proxy`): [`Obj::getattr`],
    /// [`Obj::setattr`], [`Obj::delattr`] and [`Obj::call`] on it act on the
    /// target while it lives, and are [`Error::ReferenceError`] ("weakly-
    /// referenced object no longer exists") after. Unhashable, as CPython's.
    /// Same targets and callback as [`weakref`](Self::weakref).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig, Error};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let obj = g.instance("Thing")?;
    ///     let p = g.weakref_proxy(&obj, None)?;
    ///     p.setattr("x", &g.int(1)?)?;
    ///     assert_eq!(obj.getattr("x")?.unwrap().as_int(), Some(1));
    ///     drop(obj);
    ///     assert!(matches!(p.getattr("x"), Err(Error::ReferenceError { .. })));
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn weakref_proxy(&self, target: &Obj<'i>, callback: Option<&Obj<'i>>) -> Result<Obj<'i>> {
        self.make_weakref(target, callback, true)
    }

    fn make_weakref(&self, target: &Obj<'i>, callback: Option<&Obj<'i>>, proxy: bool) -> Result<Obj<'i>> {
        if !has_flag(target.raw, FLAG_GC) {
            return Err(Error::TypeError {
                message: format!("cannot create weak reference to '{}' object", target.kind().name()),
            });
        }
        if let Some(cb) = callback {
            if cb.kind() != Kind::Function {
                return Err(cb.type_error("a weakref callback must be a function"));
            }
        }
        let slot = HBox::slot_in(self.heap())?;
        let w = WeakrefBody { target: Some(target.raw), callback: callback.map(|c| c.clone().into_raw()), proxy };
        let wr = self.new_obj(Body::Weakref(slot.write(w)), true, &[])?;
        set_flag(wr.raw, FLAG_SPECIAL, true);
        super::register_weakref(*self, target.raw, wr.raw);
        Ok(wr)
    }

    /// A new code object named `name` with constants and `extra_slots` empty
    /// extra slots (tracked).
    ///
    /// Errors: [`Error::MemoryError`] when the slots would not fit in the
    /// interpreter's memory limit (or in `isize::MAX` bytes); nothing is
    /// allocated then.
    pub fn code(&self, name: &str, consts: &[Obj<'i>], extra_slots: usize) -> Result<Obj<'i>> {
        let mut extra = Vec::new();
        self.reserve_outside(&mut extra, extra_slots)?;
        extra.resize(extra_slots, None);
        let slot = HBox::slot_in(self.heap())?;
        let c = Code {
            name: name.into(),
            consts: consts.iter().map(|o| o.clone().into_raw()).collect(),
            extra,
            co_extra: Vec::new(),
        };
        self.new_obj(Body::Code(slot.write(c)), true, &[])
    }

    /// Reserves room for `n` elements in `v`, a buffer of the system heap,
    /// after checking the size a caller asked for: at most `isize::MAX`
    /// bytes and within the interpreter's memory limit, else
    /// [`Error::MemoryError`] (never an abort or a panic).
    pub(crate) fn reserve_outside<T>(&self, v: &mut Vec<T>, n: usize) -> Result<()> {
        let bytes = n.checked_mul(size_of::<T>()).filter(|&b| b <= isize::MAX as usize);
        let stats = self.memory_stats();
        let error = || Error::MemoryError {
            id: self.id(),
            requested: n.saturating_mul(size_of::<T>()),
            in_use: stats.counted_bytes,
            limit: stats.limit.unwrap_or(isize::MAX as usize),
        };
        let Some(bytes) = bytes else { return Err(error()) };
        if stats.limit.is_some_and(|l| stats.counted_bytes.saturating_add(bytes) > l) {
            return Err(error());
        }
        v.try_reserve_exact(n).map_err(|_| error())
    }

    /// A new object of an embedder type (tracked).
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// use subinterp::{trace_fields, Member};
    /// struct Node { next: Member }
    /// trace_fields!(Node { next });
    /// let a = g.new_object(Node { next: Member::default() })?;
    /// a.downcast_ref::<Node>().unwrap().next.set(g, Some(&a))?; // a cycle
    /// drop(a);
    /// assert_eq!(g.gc_collect(2)?.collected, 1);
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn new_object<T: Trace>(&self, value: T) -> Result<Obj<'i>> {
        match HDyn::new_in(self.heap(), value, |p| -> NonNull<dyn CustomObj> { p }) {
            Ok(v) => self.new_obj(Body::Custom(v), true, &[]),
            Err((e, value)) => {
                // The value is the embedder's: its drop behind the boundary.
                super::drop_user_value(*self, value);
                Err(e)
            }
        }
    }
}

impl Code {
    #[allow(dead_code)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Function {
    #[allow(dead_code)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn a_small_list_is_one_32_byte_block() {
        assert_eq!(size_of::<GcHead>(), 8);
        assert_eq!(size_of::<Body>(), 16);
        assert_eq!(size_of::<ObjHead>(), 24);
        assert_eq!(GC_HEAD_SIZE + size_of::<ObjHead>(), 32);
    }

    /// A count that reaches `REFCNT_IMMORTAL` stays there: the object is
    /// never freed by its handles (nor found unreachable), and the close
    /// frees it. (4 billion real references would take minutes; the count is
    /// set near the top instead.)
    #[test]
    fn a_saturated_refcount_makes_the_object_immortal() {
        let rt = crate::Runtime::new(crate::RuntimeConfig::default()).unwrap();
        let interp = rt.create(crate::InterpreterConfig::isolated()).unwrap();
        interp
            .with_gil(|g| {
                let l = g.list(&[]).unwrap();
                let item = g.int(7).unwrap();
                l.list_append(&item).unwrap();
                head(l.raw).refcnt.set(REFCNT_IMMORTAL - 1);
                let extra: Vec<Obj<'_>> = (0..3).map(|_| l.clone()).collect();
                assert_eq!(l.refcount(), REFCNT_IMMORTAL as usize);
                drop(extra);
                assert_eq!(l.refcount(), REFCNT_IMMORTAL as usize, "an immortal count does not move");
                let r = l.raw;
                drop(l);
                assert_eq!(head(r).refcnt.get(), REFCNT_IMMORTAL);
                assert_eq!(g.gc_collect(2).unwrap().collected, 0);
                // Still intact: its item is still there.
                let again = Obj::from_raw_borrowed(r, g);
                assert_eq!(again.get_item(0).unwrap().as_int(), Some(7));
            })
            .unwrap();
        let report = interp.close().unwrap();
        assert!(report.objects_freed >= 1);
        assert_eq!(report.leaked.live_blocks, 0);
    }
}
