//! Module tables (issue 5): process-wide module indexes, wait-free
//! `modules_by_index`, modules by name, import with init-once, isolation
//! rules, and the `builtins` / `sys` records. See `docs/modules.md`.
//!
//! * [`RuntimeModules`] (one per runtime): the builtin table of definitions,
//!   the finders, the shared-state cache, and the wait-for graph of imports
//!   (for deadlock detection).
//! * [`ModuleTable`] (one per interpreter): `modules_by_index` (an `ArcSwap`
//!   of a slice indexed by the definitions' process-wide indexes, read
//!   wait-free), modules by name (a sharded map, `sys.modules`), and the
//!   imports in progress.
//!
//! Locks, in the only order they are ever nested: `ModuleTable::imports`,
//! then `RuntimeModules::waiting`; a by-name shard lock is innermost and
//! never held by a caller (the map API clones values out). No user code
//! (init, finders, state and attribute drops) runs under any of them.

mod api;
mod def;
mod facade;
mod handle;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use api::ModuleCache;
pub use def::{InitError, ModuleDef, ModuleInit, ModuleInitFn, MultiInterp};
pub use handle::Module;
pub(crate) use handle::WeakModule;

use crate::config::GilMode;
use crate::error::{Error, Result};
use crate::interp::tstate::ThreadCtx;
use crate::interp::{run_callback, Gil};
use crate::sync::{lock, AtomicBool, Condvar, Mutex, Ordering};
use crate::Obj;
use crate::{Interpreter, InterpreterId};
use facade::{Map, SwapOption};

/// A module's native state or an attribute value: any shareable Rust value.
pub type ModuleValue = Arc<dyn std::any::Any + Send + Sync>;

/// Reserved `modules_by_index` slot of `builtins`.
const BUILTINS_INDEX: usize = 0;
/// Reserved `modules_by_index` slot of `sys`.
const SYS_INDEX: usize = 1;

/// A module finder (see [`Runtime::add_finder`](crate::Runtime::add_finder)).
type Finder = dyn Fn(&str) -> Option<&'static ModuleDef> + Send + Sync;

/// What a shared-state definition's first successful init produced.
struct SharedCopy {
    state: Option<ModuleValue>,
    attrs: BTreeMap<Box<str>, ModuleValue>,
}

/// Runtime-wide module state.
pub(crate) struct RuntimeModules {
    /// Definitions registered with `Runtime::register_builtin`, by name.
    builtins: Mutex<HashMap<&'static str, &'static ModuleDef>>,
    /// Finders, tried in order after the builtin table (cloned out before use).
    finders: Mutex<Vec<Arc<Finder>>>,
    /// Shared-state definitions: the state of their first successful init.
    shared: Mutex<HashMap<usize, Arc<SharedCopy>>>,
    /// Which import each waiting thread waits for, across every interpreter
    /// of the runtime (the wait-for graph used to detect deadlocks).
    waiting: Mutex<HashMap<u64, Arc<ImportSlot>>>,
}

impl Default for RuntimeModules {
    fn default() -> Self {
        Self {
            builtins: Mutex::new(HashMap::new()),
            finders: Mutex::new(Vec::new()),
            shared: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

impl RuntimeModules {
    fn register(&self, def: &'static ModuleDef) -> Result<()> {
        let name = def.name();
        if name.is_empty() || is_core(name) {
            let reason = if name.is_empty() { "a module name cannot be empty" } else { "the name is reserved" };
            return Err(Error::ImportError { name: name.into(), reason: reason.into() });
        }
        let mut builtins = lock(&self.builtins);
        match builtins.get(name) {
            Some(existing) if !std::ptr::eq(*existing, def) => Err(Error::ImportError {
                name: name.into(),
                reason: "a different ModuleDef is already registered under this name".into(),
            }),
            _ => {
                builtins.insert(name, def);
                Ok(())
            }
        }
    }

    fn add_finder(&self, finder: Arc<Finder>) {
        lock(&self.finders).push(finder);
    }

    fn builtin_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = lock(&self.builtins).keys().copied().collect();
        names.extend(["builtins", "sys"]);
        names.sort_unstable();
        names
    }

    /// The definition for `name`: the builtin table first, then each finder in
    /// order (user code: run with no lock held, panics caught).
    fn find(&self, name: &str) -> Result<Option<&'static ModuleDef>> {
        if let Some(def) = lock(&self.builtins).get(name).copied() {
            return Ok(Some(def));
        }
        let finders = lock(&self.finders).clone();
        for finder in finders {
            if let Some(def) = run_callback("module finder", || finder(name))? {
                return Ok(Some(def));
            }
        }
        Ok(None)
    }

    fn shared_get(&self, index: usize) -> Option<Arc<SharedCopy>> {
        lock(&self.shared).get(&index).cloned()
    }

    /// Caches `copy` unless another interpreter got there first; returns the
    /// copy in force.
    fn shared_publish(&self, index: usize, copy: SharedCopy) -> Arc<SharedCopy> {
        let fresh = Arc::new(copy);
        let winner = lock(&self.shared).entry(index).or_insert_with(|| fresh.clone()).clone();
        drop(fresh); // if we lost: our init's values (user drops), outside the lock
        winner
    }
}

fn is_core(name: &str) -> bool {
    name == "builtins" || name == "sys"
}

/// `modules_by_index`: slot `i` holds this interpreter's instance of the
/// definition whose index is `i` (0 and 1: `builtins`, `sys`).
pub(crate) struct Slots {
    entries: Box<[Option<Module>]>,
}

impl Slots {
    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&Module> {
        self.entries.get(index)?.as_ref()
    }
}

/// One import in progress in one interpreter: who runs the init, and a
/// condition variable for the threads waiting for it.
pub(crate) struct ImportSlot {
    owner: u64,
    name: Box<str>,
    /// Set (under the table's `imports` lock) when the import finished,
    /// successfully or not.
    done: AtomicBool,
    cond: Condvar,
}

#[derive(Default)]
struct ImportState {
    /// Imports in progress, by definition index (a definition is initialized
    /// once per interpreter, whatever name it is imported under).
    in_progress: HashMap<usize, Arc<ImportSlot>>,
    /// Set by teardown: nothing is published any more.
    closed: bool,
}

/// One interpreter's module tables.
pub(crate) struct ModuleTable {
    id: InterpreterId,
    /// `modules_by_index`. `None` once torn down.
    by_index: SwapOption<Slots>,
    /// Modules by name (`sys.modules`).
    by_name: Map<Module>,
    /// Imports in progress; also serializes every writer of both tables.
    imports: Mutex<ImportState>,
}

enum Claim {
    /// Already there (imported meanwhile, or the definition under another name).
    Done(Module),
    /// This thread runs the init.
    Owner(Arc<ImportSlot>),
    /// Another thread runs it: wait, then look again.
    Wait(Arc<ImportSlot>),
}

/// Ends an import this thread owns, on every path (success, error, unwind):
/// removes the slot and wakes the waiters.
struct ClaimGuard<'a> {
    table: &'a ModuleTable,
    index: usize,
    slot: Arc<ImportSlot>,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.table.imports);
        if st.in_progress.get(&self.index).is_some_and(|s| Arc::ptr_eq(s, &self.slot)) {
            st.in_progress.remove(&self.index);
        }
        self.slot.done.store(true, Ordering::Release);
        self.slot.cond.notify_all();
    }
}

impl ModuleTable {
    /// The tables of interpreter `id`, born with `builtins` and `sys`.
    pub(crate) fn new(id: InterpreterId) -> Self {
        let builtins = Module::core("builtins", id);
        let sys = Module::core("sys", id);
        let by_name = Map::new();
        by_name.insert(Cow::Borrowed("builtins"), builtins.clone());
        by_name.insert(Cow::Borrowed("sys"), sys.clone());
        let slots = Slots { entries: vec![Some(builtins), Some(sys)].into_boxed_slice() };
        Self {
            id,
            by_index: SwapOption::new(Some(Arc::new(slots))),
            by_name,
            imports: Mutex::new(ImportState::default()),
        }
    }

    /// Releases every module of a closing interpreter. Called by `close()`
    /// with the interpreter's GIL held, after its pending calls ran.
    ///
    /// The tables are emptied under the lock; the modules are released after
    /// it (their attributes and states may run user drops): imported modules
    /// first, then `sys`, then `builtins`.
    pub(crate) fn teardown(&self) -> Vec<Error> {
        let mut errors = Vec::new();
        let mut release = |what: &'static str, value: Box<dyn FnOnce() + '_>| {
            if let Err(e) = run_callback(what, value) {
                errors.push(e);
            }
        };
        let (slots, named) = {
            let mut st = lock(&self.imports);
            st.closed = true;
            (self.by_index.swap(None), self.by_name.drain())
        };
        release("drop of a module", Box::new(move || drop(named)));
        let Some(slots) = slots else { return errors };
        let order = (SYS_INDEX + 1..slots.entries.len()).chain([SYS_INDEX, BUILTINS_INDEX]);
        match Arc::try_unwrap(slots) {
            // We hold the last reference: release each module whole, in order.
            Ok(mut slots) => {
                for i in order {
                    if let Some(m) = slots.entries[i].take() {
                        release("drop of a module attribute", Box::new(|| drop(m.release_attrs())));
                        release("drop of a module state", Box::new(move || drop(m)));
                    }
                }
            }
            // A `ModuleCache` still holds the slice: clear the attributes in
            // order; the states go with the last handle.
            Err(slots) => {
                for i in order {
                    if let Some(m) = slots.get(i) {
                        release("drop of a module attribute", Box::new(|| drop(m.release_attrs())));
                    }
                }
            }
        }
        errors
    }

    /// The first step of a close (CPython's `sys.modules` cleared): no
    /// import publishes any more and the by-name table is emptied, while
    /// `modules_by_index` stays readable (the native states are still found
    /// by the finalizers that the module objects' shutdown runs) until
    /// [`teardown`](Self::teardown). Returns the removed handles, for the
    /// caller to release.
    pub(crate) fn close_imports(&self) -> Vec<Module> {
        let mut st = lock(&self.imports);
        st.closed = true;
        self.by_name.drain()
    }

    /// Whether `module` is still this interpreter's instance of its
    /// definition (or its `builtins` / `sys`) in `modules_by_index`.
    pub(crate) fn holds(&self, module: &Module) -> bool {
        let index = match module.def() {
            Some(def) => def.index(),
            None if module.name() == "sys" => Some(SYS_INDEX),
            None => Some(BUILTINS_INDEX),
        };
        index.is_some_and(|i| self.with(i, |m| m == Some(module)))
    }

    fn closed_error(&self) -> Error {
        Error::InterpreterClosed { id: self.id }
    }

    /// The module at `index`, wait-free.
    #[inline]
    pub(crate) fn find(&self, index: usize) -> Option<Module> {
        self.by_index.load().as_deref()?.get(index).cloned()
    }

    /// Runs `f` with the module at `index`, wait-free, without a refcount.
    #[inline]
    pub(crate) fn with<R>(&self, index: usize, f: impl FnOnce(Option<&Module>) -> R) -> R {
        let guard = self.by_index.load();
        f(guard.as_deref().and_then(|s| s.get(index)))
    }

    pub(crate) fn get(&self, name: &str) -> Option<Module> {
        self.by_name.get(name)
    }

    pub(crate) fn entries(&self) -> Vec<(String, Module)> {
        let mut v = self.by_name.entries();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Copies `modules_by_index`, lets `edit` change the copy, swaps it in.
    /// Call with the `imports` lock held (writers are serialized by it).
    /// Returns the old slice, for the caller to drop after unlocking.
    fn rewrite(&self, edit: impl FnOnce(&mut Vec<Option<Module>>)) -> Option<Arc<Slots>> {
        let cur = self.by_index.load_full()?;
        let mut entries = cur.entries.to_vec();
        edit(&mut entries);
        self.by_index.swap(Some(Arc::new(Slots { entries: entries.into_boxed_slice() })))
    }

    /// Takes the import of the definition at `index` (imported as `name`):
    /// finds it done, or makes this thread its owner, or its waiter.
    fn claim(&self, rtm: &RuntimeModules, name: &str, index: usize, me: u64) -> Result<Claim> {
        let mut st = lock(&self.imports);
        if st.closed {
            return Err(self.closed_error());
        }
        if let Some(m) = self.by_name.get(name) {
            return Ok(Claim::Done(m));
        }
        if let Some(m) = self.find(index) {
            // The definition is here under another name: alias it.
            self.by_name.insert(Cow::Owned(name.into()), m.clone());
            return Ok(Claim::Done(m));
        }
        let Some(slot) = st.in_progress.get(&index).cloned() else {
            let slot = Arc::new(ImportSlot {
                owner: me,
                name: name.into(),
                done: AtomicBool::new(false),
                cond: Condvar::new(),
            });
            st.in_progress.insert(index, slot.clone());
            return Ok(Claim::Owner(slot));
        };
        let mut waiting = lock(&rtm.waiting);
        if would_deadlock(&waiting, slot.owner, me) {
            return Err(Error::CircularImport { name: slot.name.to_string() });
        }
        waiting.insert(me, slot.clone());
        Ok(Claim::Wait(slot))
    }

    /// Blocks until `slot`'s import finished. Call without the GIL.
    fn wait_for(&self, rtm: &RuntimeModules, slot: &ImportSlot, me: u64) {
        let mut st = lock(&self.imports);
        while !slot.done.load(Ordering::Acquire) {
            st = slot.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        drop(st);
        lock(&rtm.waiting).remove(&me);
    }

    /// Publishes a freshly built module: by index first, then by name (so
    /// whoever finds it by name also finds it by index). Returns the old
    /// slice for the caller to drop after unlocking.
    fn publish(&self, name: &str, index: usize, module: &Module) -> Result<Option<Arc<Slots>>> {
        let st = lock(&self.imports);
        if st.closed {
            return Err(self.closed_error());
        }
        let old = self.rewrite(|e| {
            if e.len() <= index {
                e.resize(index + 1, None);
            }
            e[index] = Some(module.clone());
        });
        self.by_name.insert(key(name, module), module.clone());
        Ok(old)
    }

    /// Puts `builtins` or `sys` back under its name (after a removal), like
    /// CPython re-creating them from `sysdict_copy` / `builtins_copy`.
    fn restore_core(&self, name: &str) -> Result<Module> {
        let index = if name == "sys" { SYS_INDEX } else { BUILTINS_INDEX };
        let _st = lock(&self.imports);
        let m = self.find(index).ok_or_else(|| self.closed_error())?;
        self.by_name.insert(key(name, &m), m.clone());
        Ok(m)
    }

    /// Removes `name` from the by-name table, and the module from
    /// `modules_by_index` unless another name still refers to it (or it is
    /// `builtins` / `sys`, which stay until teardown).
    pub(crate) fn remove(&self, name: &str) -> Option<Module> {
        let (m, old) = {
            let _st = lock(&self.imports);
            let m = self.by_name.remove(name)?;
            let index = m.def().and_then(ModuleDef::index);
            let aliased = || self.by_name.entries().iter().any(|(_, other)| *other == m);
            let old = match index {
                Some(i) if self.find(i).as_ref() == Some(&m) && !aliased() => self.rewrite(|e| e[i] = None),
                _ => None,
            };
            (m, old)
        };
        drop(old);
        Some(m)
    }
}

/// The by-name key: borrowed from the definition when the names agree.
fn key(name: &str, module: &Module) -> Cow<'static, str> {
    match module.def() {
        Some(def) if def.name() == name => Cow::Borrowed(def.name()),
        _ if name == "sys" => Cow::Borrowed("sys"),
        _ if name == "builtins" => Cow::Borrowed("builtins"),
        _ => Cow::Owned(name.into()),
    }
}

/// Whether `me` waiting for an import owned by `owner` closes a cycle in the
/// wait-for graph (CPython's `_ModuleLock.has_deadlock`).
fn would_deadlock(waiting: &HashMap<u64, Arc<ImportSlot>>, mut owner: u64, me: u64) -> bool {
    // Each waiting thread has one edge, so a path has at most `len` of them.
    for _ in 0..=waiting.len() {
        if owner == me {
            return true;
        }
        match waiting.get(&owner) {
            Some(slot) if !slot.done.load(Ordering::Acquire) => owner = slot.owner,
            _ => return false,
        }
    }
    false
}

/// CPython's `_PyImport_CheckSubinterpIncompatibleExtensionAllowed` gate.
fn check_isolation(interp: &Interpreter, def: &ModuleDef, name: &str) -> Result<()> {
    let cfg = interp.config();
    if interp.is_main() || !cfg.check_multi_interp_extensions {
        return Ok(());
    }
    let refused = match def.multi_interp() {
        MultiInterp::NotSupported => true,
        MultiInterp::Supported => cfg.gil == GilMode::Own,
        MultiInterp::PerInterpreterGil => false,
    };
    if refused {
        return Err(Error::ModuleIsolation { name: name.into(), id: interp.id() });
    }
    Ok(())
}

/// The import slow path, under `g`'s GIL.
fn import_slow(g: Gil<'_>, name: &str) -> Result<Module> {
    let interp = g.interpreter();
    let table = &interp.rec.modules;
    let rtm = &interp.rec.rt.modules;
    let me = ThreadCtx::with(|ctx| ctx.uid).ok_or(Error::ThreadExiting)?;
    loop {
        if let Some(m) = table.get(name) {
            return Ok(m);
        }
        if is_core(name) {
            return table.restore_core(name);
        }
        let def = rtm.find(name)?.ok_or_else(|| Error::ModuleNotFound { name: name.into() })?;
        check_isolation(interp, def, name)?;
        let index = def.index_or_assign();
        match table.claim(rtm, name, index, me)? {
            Claim::Done(m) => return Ok(m),
            Claim::Wait(slot) => g.allow_threads(|| table.wait_for(rtm, &slot, me)),
            Claim::Owner(slot) => {
                let guard = ClaimGuard { table, index, slot };
                let (module, object) = build(g, def, name, index, rtm)?;
                let old = table.publish(name, index, &module);
                drop(guard);
                drop(old?);
                crate::gc::modules::register(g, &module, object);
                return Ok(module);
            }
        }
    }
}

/// Runs the definition's init (or takes the shared copy) and makes the
/// module: its handle and its heap object (whose globals the init filled).
fn build<'i>(
    g: Gil<'i>,
    def: &'static ModuleDef,
    name: &str,
    index: usize,
    rtm: &RuntimeModules,
) -> Result<(Module, Obj<'i>)> {
    let id = g.id();
    let name_key = if def.name() == name { Cow::Borrowed(def.name()) } else { Cow::Owned(name.into()) };
    let object = g.new_module(name)?;
    if def.shares_state() {
        if let Some(copy) = rtm.shared_get(index) {
            let m = Module::new(name_key, Some(def), id, copy.state.clone(), copy.attrs.clone());
            return Ok((m, object));
        }
    }
    let mut init = ModuleInit { gil: g, def, name, state: None, attrs: BTreeMap::new(), object };
    let init_fn = def.init_fn();
    let failed = |cause: String| Error::ModuleInitFailed { name: name.into(), cause };
    match run_callback("module init", || init_fn(&mut init)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(failed(e.to_string())),
        Err(panicked) => return Err(failed(panicked.to_string())),
    }
    let ModuleInit { state, attrs, object, .. } = init;
    if def.shares_state() {
        let copy = rtm.shared_publish(index, SharedCopy { state, attrs });
        return Ok((Module::new(name_key, Some(def), id, copy.state.clone(), copy.attrs.clone()), object));
    }
    Ok((Module::new(name_key, Some(def), id, state, attrs), object))
}
