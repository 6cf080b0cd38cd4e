//! The public module API on `Interpreter` and `Runtime`, and `ModuleCache`.

use std::any::Any;
use std::ops::Deref;
use std::sync::Arc;

use super::facade::{Cache, SwapOption};
use super::{import_slow, Module, ModuleDef, Slots, BUILTINS_INDEX, SYS_INDEX};
use crate::error::{Error, Result};
use crate::interp::Record;
use crate::{Interpreter, InterpreterId, Runtime};

impl Interpreter {
    /// Imports the module `name` into this interpreter and returns it.
    ///
    /// Already imported: a by-name lookup, no GIL taken. Otherwise the
    /// calling thread takes this interpreter's GIL (or re-enters it), finds
    /// the definition (the runtime's builtin table, then its finders in
    /// order), applies the isolation rules, and runs the definition's init
    /// under the GIL, exactly once per interpreter: threads importing the same
    /// module meanwhile wait for that init (without the GIL) and get its
    /// module. A definition already imported here under another name is
    /// returned as is. `"builtins"` and `"sys"` always resolve to the
    /// interpreter's own records.
    ///
    /// A failing or panicking init leaves nothing behind, by name or by index;
    /// a later import tries again.
    ///
    /// Errors: [`Error::ModuleNotFound`]; [`Error::ModuleIsolation`];
    /// [`Error::ModuleInitFailed`] (init returned an error or panicked);
    /// [`Error::CircularImport`] (the init of this module is running on this
    /// thread, or on a thread that waits for this one); [`Error::CallbackPanicked`]
    /// (a finder panicked); and the errors of [`with_gil`](Self::with_gil):
    /// [`Error::InterpreterClosed`], [`Error::GilHeldByOtherInterpreter`], …
    ///
    /// ```
    /// use subinterp::{Error, InitError, ModuleDef, ModuleInit, MultiInterp, Runtime, RuntimeConfig};
    ///
    /// fn init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    ///     m.set_attr("answer", std::sync::Arc::new(42u32));
    ///     Ok(())
    /// }
    /// static SPAM: ModuleDef = ModuleDef::new("spam", init).with_multi_interp(MultiInterp::PerInterpreterGil);
    ///
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.register_builtin(&SPAM)?;
    /// let spam = rt.main().import("spam")?;
    /// assert_eq!(spam.get_attr("answer").unwrap().downcast_ref::<u32>(), Some(&42));
    /// assert_eq!(rt.main().import("spam")?, spam); // once per interpreter
    /// assert!(matches!(rt.main().import("eggs"), Err(Error::ModuleNotFound { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn import(&self, name: &str) -> Result<Module> {
        if let Some(m) = self.rec.modules.get(name) {
            return Ok(m);
        }
        self.with_gil(|g| import_slow(g, name))?
    }

    /// This interpreter's instance of `def`, if imported: wait-free, any
    /// thread, no GIL (CPython's `PyState_FindModule`). Costs an atomic load,
    /// an index and an `Arc` clone; see [`with_module`](Self::with_module) and
    /// [`module_cache`](Self::module_cache) for hot paths.
    #[inline]
    pub fn find_module(&self, def: &ModuleDef) -> Option<Module> {
        self.rec.modules.find(def.index()?)
    }

    /// The native state of this interpreter's instance of `def`, if imported
    /// and of type `T`: wait-free, any thread, no GIL.
    pub fn find_module_state<T: Any + Send + Sync>(&self, def: &ModuleDef) -> Option<Arc<T>> {
        self.with_module(def, |m| m?.state_arc::<T>())
    }

    /// Runs `f` with this interpreter's instance of `def` (or `None`):
    /// wait-free, no GIL, no reference count taken. `f` may do anything,
    /// including importing and removing modules.
    #[inline]
    pub fn with_module<R>(&self, def: &ModuleDef, f: impl FnOnce(Option<&Module>) -> R) -> R {
        match def.index() {
            Some(i) => self.rec.modules.with(i, f),
            None => f(None),
        }
    }

    /// A cache over this interpreter's `modules_by_index` for hot paths: a
    /// lookup through it is one pointer comparison, an index and a type check
    /// (about 2 ns). See [`ModuleCache`].
    pub fn module_cache(&self) -> ModuleCache {
        ModuleCache { cache: Cache::new(TableRef(self.rec.clone())), id: self.rec.id }
    }

    /// The module imported under `name`, if any (a `sys.modules` lookup; no GIL).
    pub fn get_module(&self, name: &str) -> Option<Module> {
        self.rec.modules.get(name)
    }

    /// Every imported module, by name, sorted (`sys.modules`); `builtins` and
    /// `sys` included. Empty once the interpreter is closed.
    pub fn modules(&self) -> Vec<(String, Module)> {
        self.rec.modules.entries()
    }

    /// Removes `name` from this interpreter's modules (`del sys.modules[name]`)
    /// and returns the module. Unless another name refers to the same module,
    /// it also leaves `modules_by_index`, so [`find_module`](Self::find_module)
    /// stops finding it and a later import runs its init again. The tables'
    /// references are released; the state lives on while the returned handle
    /// (or another) does. `builtins` and `sys` only leave the by-name table: an
    /// import puts them back.
    pub fn remove_module(&self, name: &str) -> Option<Module> {
        self.rec.modules.remove(name)
    }

    /// This interpreter's `builtins` module, created with it and torn down
    /// last. Errors: [`Error::InterpreterClosed`].
    pub fn builtins(&self) -> Result<Module> {
        self.rec.modules.find(BUILTINS_INDEX).ok_or(Error::InterpreterClosed { id: self.rec.id })
    }

    /// This interpreter's `sys` module, created with it and torn down last
    /// (just before `builtins`). Errors: [`Error::InterpreterClosed`].
    pub fn sys(&self) -> Result<Module> {
        self.rec.modules.find(SYS_INDEX).ok_or(Error::InterpreterClosed { id: self.rec.id })
    }
}

impl Runtime {
    fn module_registry(&self) -> &crate::runtime::RuntimeInner {
        self.inner()
    }

    /// Registers `def` in the builtin table under its name (CPython's
    /// `PyImport_AppendInittab`): [`Interpreter::import`] of that name in any
    /// interpreter of this runtime finds it, before any finder. Registering
    /// the same definition again is a no-op.
    ///
    /// Errors: [`Error::ImportError`] when another definition has that name,
    /// the name is empty, or it is `builtins` / `sys`.
    pub fn register_builtin(&self, def: &'static ModuleDef) -> Result<()> {
        self.module_registry().modules.register(def)
    }

    /// Adds a finder, tried after the builtin table and after the finders
    /// added before it (like an entry appended to `sys.meta_path`). It maps a
    /// module name to a definition, or `None` to pass. It runs on the
    /// importing thread, under the importing interpreter's GIL and no other
    /// lock; a panic is caught and returned by the import as
    /// [`Error::CallbackPanicked`].
    pub fn add_finder<F>(&self, finder: F)
    where
        F: Fn(&str) -> Option<&'static ModuleDef> + Send + Sync + 'static,
    {
        self.module_registry().modules.add_finder(Arc::new(finder));
    }

    /// Names in the builtin table, `builtins` and `sys` included, sorted
    /// (`sys.builtin_module_names`).
    pub fn builtin_module_names(&self) -> Vec<&'static str> {
        self.module_registry().modules.builtin_names()
    }
}

/// Projects an interpreter record onto its `modules_by_index`.
struct TableRef(crate::sync::Arc<Record>);

impl Deref for TableRef {
    type Target = SwapOption<Slots>;
    #[inline]
    fn deref(&self) -> &SwapOption<Slots> {
        &self.0.modules.by_index
    }
}

/// A per-thread cache over one interpreter's `modules_by_index`, from
/// [`Interpreter::module_cache`]: lookups for hot paths (about 2 ns, no shared
/// writes, so they scale with threads).
///
/// It keeps the table it saw last and re-checks one pointer per lookup,
/// reloading when a module was added or removed. `Send` but used through
/// `&mut`: keep one per thread. It keeps the last table it saw alive (and so
/// the modules in it) until its next lookup or until it is dropped.
///
/// ```
/// use subinterp::{InitError, ModuleDef, ModuleInit, Runtime, RuntimeConfig};
///
/// fn init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
///     m.set_state(7u64);
///     Ok(())
/// }
/// static SEVEN: ModuleDef = ModuleDef::new("seven", init);
///
/// let rt = Runtime::new(RuntimeConfig::default())?;
/// rt.register_builtin(&SEVEN)?;
/// let main = rt.main();
/// let mut cache = main.module_cache();
/// assert!(cache.find(&SEVEN).is_none());
/// main.import("seven")?;
/// assert_eq!(cache.find_state::<u64>(&SEVEN), Some(&7));
/// # Ok::<(), subinterp::Error>(())
/// ```
pub struct ModuleCache {
    cache: Cache<TableRef, Option<Arc<Slots>>>,
    id: InterpreterId,
}

impl std::fmt::Debug for ModuleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleCache").field("interpreter", &self.id).finish_non_exhaustive()
    }
}

impl ModuleCache {
    /// The interpreter's instance of `def`, if imported.
    #[inline]
    pub fn find(&mut self, def: &ModuleDef) -> Option<&Module> {
        let index = def.index()?;
        self.cache.load().as_deref()?.get(index)
    }

    /// The native state of the interpreter's instance of `def`, if imported
    /// and of type `T`.
    #[inline]
    pub fn find_state<T: Any + Send + Sync>(&mut self, def: &ModuleDef) -> Option<&T> {
        self.find(def)?.state::<T>()
    }

    /// The interpreter this cache reads.
    pub fn interpreter_id(&self) -> InterpreterId {
        self.id
    }
}
