//! `ModuleDef`: a module definition with its process-wide index, and the
//! `ModuleInit` builder its init function fills in.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::facade;
use super::ModuleValue;
use crate::interp::Gil;
use crate::sync::{AtomicUsize, Ordering};
use crate::Interpreter;
use crate::Obj;

/// The error a module init returns: any error type, boxed (`?` converts most
/// errors, and `Err("text".into())` works too). Its text becomes the `cause`
/// of [`Error::ModuleInitFailed`](crate::Error::ModuleInitFailed).
pub type InitError = Box<dyn std::error::Error + Send + Sync>;

/// A module init function: builds the module for one interpreter by filling in
/// the [`ModuleInit`] it is given (native state, attributes). It runs under
/// that interpreter's GIL, at most once per interpreter and definition.
pub type ModuleInitFn = for<'a, 'i> fn(&mut ModuleInit<'a, 'i>) -> Result<(), InitError>;

/// 0 means "no index yet" (0 and 1 are the reserved indexes of `builtins` and
/// `sys`, which have no `ModuleDef`).
const UNASSIGNED: usize = 0;

/// Whether a module supports several interpreters, and a per-interpreter GIL
/// (CPython's `Py_mod_multiple_interpreters` slot).
///
/// Checked by [`Interpreter::import`] in every interpreter other than main
/// whose config has `check_multi_interp_extensions` on; a refusal is
/// [`Error::ModuleIsolation`](crate::Error::ModuleIsolation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MultiInterp {
    /// Only the main interpreter may load it
    /// (`Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED`).
    NotSupported,
    /// Any interpreter that shares main's GIL may load it
    /// (`Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED`). This is the default, as in
    /// CPython when the slot is missing: own-GIL interpreters refuse it.
    Supported,
    /// Any interpreter may load it, own GIL included
    /// (`Py_MOD_PER_INTERPRETER_GIL_SUPPORTED`).
    PerInterpreterGil,
}

/// A module definition (CPython's `PyModuleDef`): a name, an optional doc, an
/// init function and isolation flags. Meant to be a `static`.
///
/// The first time a definition is imported anywhere in the process it gets a
/// process-wide index (set with one compare-and-swap, so a definition never
/// gets two indexes, even when many interpreters import it at the same
/// moment). Every interpreter keeps its instance of the module at that index,
/// so [`Interpreter::find_module`] is a load and an index.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use subinterp::{InitError, ModuleDef, ModuleInit, MultiInterp, Runtime, RuntimeConfig, InterpreterConfig};
///
/// struct Counter(AtomicU64);
///
/// fn init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
///     m.set_state(Counter(AtomicU64::new(0)));
///     Ok(())
/// }
///
/// static COUNTER: ModuleDef = ModuleDef::new("counter", init)
///     .with_doc("a per-interpreter counter")
///     .with_multi_interp(MultiInterp::PerInterpreterGil);
///
/// let rt = Runtime::new(RuntimeConfig::default())?;
/// rt.register_builtin(&COUNTER)?;
/// let interp = rt.create(InterpreterConfig::isolated())?;
/// interp.import("counter")?;
/// // From any thread, with or without the GIL: wait-free.
/// let state = interp.find_module_state::<Counter>(&COUNTER).unwrap();
/// state.0.fetch_add(1, Ordering::Relaxed);
/// # Ok::<(), subinterp::Error>(())
/// ```
pub struct ModuleDef {
    name: &'static str,
    doc: Option<&'static str>,
    init: ModuleInitFn,
    multi_interp: MultiInterp,
    shared_state: bool,
    index: AtomicUsize,
}

impl std::fmt::Debug for ModuleDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleDef")
            .field("name", &self.name)
            .field("multi_interp", &self.multi_interp)
            .field("shared_state", &self.shared_state)
            .field("index", &self.index())
            .finish_non_exhaustive()
    }
}

impl ModuleDef {
    /// A definition named `name` whose instances `init` builds; no doc,
    /// [`MultiInterp::Supported`], one state per interpreter.
    #[cfg(not(loom))]
    pub const fn new(name: &'static str, init: ModuleInitFn) -> Self {
        Self {
            name,
            doc: None,
            init,
            multi_interp: MultiInterp::Supported,
            shared_state: false,
            index: AtomicUsize::new(UNASSIGNED),
        }
    }

    /// A definition named `name` whose instances `init` builds (loom build:
    /// loom's atomics are not `const`, so a definition is made per model run).
    #[cfg(loom)]
    pub fn new(name: &'static str, init: ModuleInitFn) -> Self {
        Self {
            name,
            doc: None,
            init,
            multi_interp: MultiInterp::Supported,
            shared_state: false,
            index: AtomicUsize::new(UNASSIGNED),
        }
    }

    /// Sets the doc string.
    pub const fn with_doc(mut self, doc: &'static str) -> Self {
        self.doc = Some(doc);
        self
    }

    /// Sets which interpreters may load it (CPython's
    /// `Py_mod_multiple_interpreters`).
    pub const fn with_multi_interp(mut self, multi_interp: MultiInterp) -> Self {
        self.multi_interp = multi_interp;
        self
    }

    /// Shares one state between every interpreter of a runtime: init runs in
    /// the first interpreter that imports it, and later imports (in any
    /// interpreter of the same runtime) reuse that state and a copy of its
    /// attributes without running init (CPython's single-phase `m_copy`).
    /// The isolation check still applies.
    pub const fn with_shared_state(mut self) -> Self {
        self.shared_state = true;
        self
    }

    /// The name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The doc string, if any.
    pub fn doc(&self) -> Option<&'static str> {
        self.doc
    }

    /// Which interpreters may load it.
    pub fn multi_interp(&self) -> MultiInterp {
        self.multi_interp
    }

    /// Whether every interpreter of a runtime shares one state.
    pub fn shares_state(&self) -> bool {
        self.shared_state
    }

    /// The process-wide index, once the definition has been imported anywhere
    /// (or looked up by an import); `None` before.
    #[inline]
    pub fn index(&self) -> Option<usize> {
        match self.index.load(Ordering::Acquire) {
            UNASSIGNED => None,
            i => Some(i),
        }
    }

    /// The index, assigned now if it was not yet. One compare-and-swap: the
    /// loser of a race takes the winner's index (the number it drew is never
    /// used, which leaves a harmless gap).
    pub(crate) fn index_or_assign(&self) -> usize {
        let i = self.index.load(Ordering::Acquire);
        if i != UNASSIGNED {
            return i;
        }
        let fresh = facade::next_index();
        match self.index.compare_exchange(UNASSIGNED, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(winner) => winner,
        }
    }

    pub(crate) fn init_fn(&self) -> ModuleInitFn {
        self.init
    }
}

/// What a module init fills in: the module's native state and attributes.
///
/// Handed to the definition's [`ModuleInitFn`] under the importing
/// interpreter's GIL. Nothing it holds is published until init returns `Ok`:
/// a failing or panicking init leaves no trace.
pub struct ModuleInit<'a, 'i> {
    pub(crate) gil: Gil<'i>,
    pub(crate) def: &'static ModuleDef,
    pub(crate) name: &'a str,
    pub(crate) state: Option<ModuleValue>,
    pub(crate) attrs: BTreeMap<Box<str>, ModuleValue>,
    /// The module's heap object (published with the module).
    pub(crate) object: Obj<'i>,
}

impl std::fmt::Debug for ModuleInit<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleInit")
            .field("name", &self.name)
            .field("interpreter", &self.gil.id())
            .field("has_state", &self.state.is_some())
            .field("attrs", &self.attrs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<'a, 'i> ModuleInit<'a, 'i> {
    /// The importing interpreter's GIL token (held while init runs).
    pub fn gil(&self) -> Gil<'i> {
        self.gil
    }

    /// The importing interpreter.
    pub fn interpreter(&self) -> &'i Interpreter {
        self.gil.interpreter()
    }

    /// The name the module is imported under.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The definition being initialized.
    pub fn def(&self) -> &'static ModuleDef {
        self.def
    }

    /// Sets the module's native state (replacing any set before).
    pub fn set_state<T: Any + Send + Sync>(&mut self, state: T) {
        self.state = Some(Arc::new(state));
    }

    /// Sets the module's native state from a shared value.
    pub fn set_state_arc(&mut self, state: ModuleValue) {
        self.state = Some(state);
    }

    /// Sets a native attribute (replacing any of that name): a shareable
    /// Rust value readable from any thread through [`Module::get_attr`](crate::Module::get_attr).
    /// Objects go in the module's [`globals`](Self::globals).
    pub fn set_attr(&mut self, name: &str, value: ModuleValue) {
        self.attrs.insert(name.into(), value);
    }

    /// The module object being initialized (a heap object, `Kind::Module`),
    /// what [`Gil::import`](crate::Gil::import) returns once the import
    /// succeeded. Dropped, with its globals, if the init fails.
    pub fn module_object(&self) -> &Obj<'i> {
        &self.object
    }

    /// The module's globals: a heap dict (`__name__` already set) whose
    /// values may be any objects. They are cleared, and the finalizers of
    /// what they held run, when the interpreter closes (see
    /// `docs/modules.md`, "Module objects and shutdown").
    ///
    /// ```
    /// use subinterp::{InitError, ModuleDef, ModuleInit, MultiInterp, Runtime, RuntimeConfig};
    ///
    /// fn init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    ///     let g = m.gil();
    ///     m.globals()?.dict_set(&g.str("items")?, &g.list(&[])?)?;
    ///     Ok(())
    /// }
    /// static CACHE: ModuleDef = ModuleDef::new("cache", init).with_multi_interp(MultiInterp::PerInterpreterGil);
    ///
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.register_builtin(&CACHE)?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let cache = g.import("cache")?;
    ///     let items = cache.getattr("items")?.expect("set by init");
    ///     assert_eq!(items.len()?, 0);
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn globals(&self) -> crate::Result<Obj<'i>> {
        self.object.module_dict()
    }
}
