//! # subinterp
//!
//! The runtime core that lets one process host many isolated interpreters
//! running truly in parallel, one GIL each: the per-interpreter record
//! CPython calls `PyInterpreterState`, rebuilt for lock-free concurrency and
//! checked with loom.
//!
//! * [`Runtime`]: the process-wide record. A lock-free, epoch-reclaimed
//!   registry of live interpreters (wait-free lookup by id), the id counter
//!   (main = 0, then 1, 2, … never reused) and the main interpreter.
//! * [`Interpreter`]: a cheap `Send + Sync` handle to one interpreter, with
//!   its own GIL ([`GilMode::Own`]) or main's ([`GilMode::Shared`]).
//! * [`Gil`]: the branded, `!Send` token that [`Interpreter::with_gil`] hands
//!   to its closure; everything that touches an interpreter's heap takes it.
//! * [`Gil::checkpoint`]: the safepoint (eval breaker): yields the GIL when
//!   asked, runs pending calls, reports interrupts.
//!
//! ```
//! use subinterp::{InterpreterConfig, Runtime, RuntimeConfig};
//!
//! let rt = Runtime::new(RuntimeConfig::default())?;
//! let workers: Vec<_> = (0..2)
//!     .map(|_| rt.create(InterpreterConfig::isolated()))
//!     .collect::<Result<_, _>>()?;
//! std::thread::scope(|s| {
//!     for w in &workers {
//!         // Each thread runs in its own interpreter, under its own GIL: in parallel.
//!         s.spawn(move || {
//!             w.with_gil(|g| {
//!                 let mut acc = 0u64;
//!                 for i in 0..10_000u64 {
//!                     acc = acc.wrapping_add(i * i);
//!                     g.checkpoint()?; // safepoint: pending calls, interrupts, GIL hand-off
//!                 }
//!                 Ok::<_, subinterp::Error>(acc)
//!             })
//!         });
//!     }
//! });
//! for w in workers {
//!     w.close()?;
//! }
//! # Ok::<(), subinterp::Error>(())
//! ```
//!
//! ## Objects, the collector, modules and memory
//!
//! Under the token, an interpreter's heap holds objects ([`Obj`]: None,
//! bool, int, float, str, bytes, tuple, list, dict, classes and their
//! instances, functions, modules, weakrefs, embedder types through
//! [`Trace`]), reclaimed by reference counting and a generational cycle
//! collector with CPython's semantics (finalizers, weakref callbacks,
//! `gc.garbage`). Modules are heap objects whose globals hold objects; the
//! heap has a byte budget whose refusals are `MemoryError`s.
//!
//! ```
//! use subinterp::{InitError, InterpreterConfig, ModuleDef, ModuleInit, MultiInterp, Runtime, RuntimeConfig};
//!
//! fn init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
//!     let g = m.gil();
//!     m.globals()?.dict_set(&g.str("greeting")?, &g.str("hello")?)?;
//!     Ok(())
//! }
//! static GREET: ModuleDef = ModuleDef::new("greet", init).with_multi_interp(MultiInterp::PerInterpreterGil);
//!
//! let rt = Runtime::new(RuntimeConfig::default())?;
//! rt.register_builtin(&GREET)?;
//! let interp = rt.create(InterpreterConfig::isolated())?;
//! interp.with_gil(|g| -> subinterp::Result<()> {
//!     // A class, an instance, a bound method: a reference cycle.
//!     let point = g.new_class("Point", &[])?;
//!     point.setattr("norm", &g.function("norm", &[], |g, _, args| {
//!         let x = args[0].getattr("x")?.and_then(|v| v.as_int()).unwrap_or(0);
//!         g.int(x.abs())
//!     })?)?;
//!     let p = point.call(&[])?;
//!     p.setattr("x", &g.int(-3)?)?;
//!     let norm = p.getattr("norm")?.expect("found on the class");
//!     assert_eq!(norm.call(&[])?.as_int(), Some(3));
//!     p.setattr("me", &p)?; // p -> p
//!     let watch = g.weakref(&p, None)?;
//!     drop((p, norm));
//!     assert!(watch.weakref_get()?.is_some(), "refcounting alone cannot free a cycle");
//!     assert!(g.gc_collect(2)?.collected >= 1);
//!     assert!(watch.weakref_get()?.is_none(), "the collector did");
//!
//!     // A module object and its globals.
//!     let greet = g.import("greet")?;
//!     assert_eq!(greet.getattr("greeting")?.unwrap().as_str(), Some("hello"));
//!
//!     // A memory budget: growth past it is a MemoryError, nothing changed.
//!     g.set_memory_limit(Some(g.memory_stats().counted_bytes + (1 << 20)))?;
//!     let big = g.list(&[])?;
//!     let none = g.none()?;
//!     let err = loop {
//!         if let Err(e) = big.list_append(&none) {
//!             break e;
//!         }
//!     };
//!     assert!(err.is_memory_error());
//!     big.clear()?; // still usable
//!     g.set_memory_limit(None)?;
//!     Ok(())
//! })??;
//! interp.close()?; // module globals cleared in CPython's order, finalizers run
//! # Ok::<(), subinterp::Error>(())
//! ```
//!
//! Guides: `docs/objects.md`, `docs/exceptions.md`, `docs/gc.md`,
//! `docs/modules.md`, `docs/memory.md`, `docs/safety.md`.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod codecs;
mod config;
mod error;
mod exceptions;
mod gc;
mod interp;
mod mem;
mod module;
mod registry;
mod runtime;
mod services;
mod sync;
mod warnings;

pub use codecs::normalize_encoding;
pub use config::{GilMode, InterpreterConfig, RuntimeConfig, DEFAULT_SWITCH_INTERVAL, MAX_SWITCH_INTERVAL};
pub use error::{Error, Result};
pub use exceptions::EXCEPTION_CLASSES;
pub use gc::incremental::IncrementalStats;
pub use gc::object::{DictIter, Kind, NativeFn, Obj, Owned, MAX_CALL_DEPTH};
pub use gc::pauses::{GenPauses, PauseHistogram, PauseStats};
pub use gc::trace::{Cleared, Member, MemberVec, Trace, TraceField, Visitor};
pub use gc::{
    CollectResult, GcCallback, GcDebugOutput, GcPhase, GenStats, DEBUG_COLLECTABLE, DEBUG_LEAK, DEBUG_SAVEALL,
    DEBUG_STATS, DEBUG_UNCOLLECTABLE, DEFAULT_PAUSE_BUDGET, MAX_KEPT_ERRORS,
};
pub use interp::{CloseReport, Gil, GilStats, IdRef, Interpreter, InterpreterState, InterruptHandle};
pub use mem::{
    Block, GrowthKind, LeakReport, LimiterDecision, MemoryGrowth, MemoryStats, SizeClassStats, ALIGNMENT,
    DEFAULT_ARENA_SIZE, MAX_ARENA_SIZE, NUM_SIZE_CLASSES, POOL_HEADER_SIZE, POOL_SIZE, SMALL_REQUEST_THRESHOLD,
};
pub use module::{InitError, Module, ModuleCache, ModuleDef, ModuleInit, ModuleInitFn, ModuleValue, MultiInterp};
pub use runtime::{Runtime, RuntimeStats};
pub use services::audit::MAX_AUDIT_DEPTH;
pub use services::MAX_CODE_EXTRA_INDEXES;
pub use warnings::{WarningFilter, WarningMessage, WarningOutput, WARNING_CATEGORIES};

/// An interpreter id: main is 0, then 1, 2, … in creation order, never reused.
pub type InterpreterId = u64;

/// The code blocks of `docs/services.md`, compiled and run as doctests.
#[doc = include_str!("../docs/services.md")]
#[cfg(doctest)]
pub struct ServicesDoctests;

/// The code blocks of `docs/exceptions.md`, compiled and run as doctests.
#[doc = include_str!("../docs/exceptions.md")]
#[cfg(doctest)]
pub struct ExceptionsDoctests;

/// The README's code blocks, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// `docs/gc.md`'s worked example, compiled and run as a doctest.
#[doc = include_str!("../docs/gc.md")]
#[cfg(doctest)]
pub struct GcGuideDoctests;
/// The code blocks of `docs/warnings.md`, compiled and run as doctests.
#[doc = include_str!("../docs/warnings.md")]
#[cfg(doctest)]
pub struct WarningsDocDoctests;
