//! Module objects in the heap: the objects behind the module table's
//! `Module` handles, and their shutdown order (CPython's `finalize_modules`
//! in `Python/pylifecycle.c`).
//!
//! The module table (`src/module/`) keeps what must be readable from any
//! thread without the GIL: the `Module` handles with their native state,
//! `modules_by_index` and the names. Each imported module also has a heap
//! module object (its globals are a heap dict, so a global can hold any
//! object). Those objects belong to the interpreter's heap and are reached
//! only under its GIL: this file keeps them, one strong reference each, in
//! the collector's state, in import order, keyed by the `Module` handle.
//!
//! A module removed from the table (`Interpreter::remove_module`) keeps its
//! object until the next import publishes a module (the removal may happen
//! on a thread without the GIL, and releasing an object needs it); the next
//! publication releases the objects of every module no longer in the table.

use super::object::{body, decref, set_flag, Body, Obj, Raw, FLAG_ROOTED};
use super::st;
use crate::error::{Error, Result};
use crate::interp::run_callback;
use crate::module::{Module, WeakModule};
use crate::Gil;

/// One imported module's heap object (one strong reference). The module
/// is named by a weak handle, so that a module removed from the table
/// releases its native state when its last handle goes, as before objects.
pub(crate) struct ModEntry {
    module: WeakModule,
    /// `builtins` or `sys` (cleared last, in that order: sys first).
    core: Option<Core>,
    obj: Raw,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Core {
    Sys,
    Builtins,
}

fn core_of(module: &Module) -> Option<Core> {
    match (module.def(), module.name()) {
        (None, "sys") => Some(Core::Sys),
        (None, _) => Some(Core::Builtins),
        _ => None,
    }
}

/// Marks (or unmarks) a module object of the table and its globals dict as
/// held by the interpreter (`FLAG_ROOTED`): set while a `ModEntry` holds
/// the module, cleared before that reference is released.
fn set_rooted(r: Raw, on: bool) {
    set_flag(r, FLAG_ROOTED, on);
    if let Body::Module(m) = body(r) {
        set_flag(m.dict, FLAG_ROOTED, on);
    }
}

/// Whether a module object of the table or its globals dict refers to `r`
/// directly (then `r` is live: see `FLAG_ROOTED`), looking at no more than
/// `limit` references; `None` when it gave up. Runs no user code.
pub(crate) fn held_by_rooted(g: Gil<'_>, r: Raw, limit: usize) -> Option<bool> {
    let uid = super::uid_of(g);
    let mods: Vec<Raw> = st(g, |s| s.modules.iter().map(|e| e.obj).collect());
    let mut seen = 0usize;
    for m in mods {
        let dict = match body(m) {
            Body::Module(b) => b.dict,
            _ => continue,
        };
        if dict == r {
            return Some(true);
        }
        let mut found = false;
        super::traverse_fast(dict, uid, &mut |c| {
            seen += 1;
            found |= c == r;
        });
        if found {
            return Some(true);
        }
        if seen > limit {
            return None;
        }
    }
    Some(false)
}

/// Records `obj` as `module`'s object (after the table published `module`),
/// then releases the objects of modules the table no longer holds.
pub(crate) fn register(g: Gil<'_>, module: &Module, obj: Obj<'_>) {
    let table = &g.interpreter().rec.modules;
    // Sorted outside the collector's state: the upgrades below may end up
    // holding a module's last handle (a removal on another thread), and its
    // state's drop is user code. Nothing between the take and the put back
    // runs user code, so no entry is missed.
    let entries = st(g, |s| std::mem::take(&mut s.modules));
    let mut keep = Vec::with_capacity(entries.len() + 1);
    let mut gone = Vec::new();
    let mut handles = Vec::new();
    for e in entries {
        match e.module.upgrade() {
            Some(m) if table.holds(&m) => {
                handles.push(m);
                keep.push(e);
            }
            _ => gone.push(e.obj),
        }
    }
    let raw = obj.into_raw();
    set_rooted(raw, true);
    keep.push(ModEntry { module: module.downgrade(), core: core_of(module), obj: raw });
    let refused = st(g, |s| {
        if s.closing {
            return Some(keep);
        }
        debug_assert!(s.modules.is_empty());
        s.modules = keep;
        None
    });
    if let Some(keep) = refused {
        gone.extend(keep.into_iter().map(|e| e.obj));
    }
    if let Err(e) = run_callback("drop of a module state", move || drop(handles)) {
        st(g, |s| s.report(e));
    }
    gone.into_iter().for_each(|r| {
        set_rooted(r, false);
        decref(g, r)
    });
}

/// The object of `module`, made now for `builtins` and `sys` (whose objects
/// are made on first use).
pub(crate) fn object_of<'i>(g: Gil<'i>, module: &Module) -> Result<Obj<'i>> {
    if module.interpreter_id() != g.id() {
        return Err(Error::WrongInterpreter { owner: module.interpreter_id(), used_with: g.id() });
    }
    let find = |s: &mut super::GcState| s.modules.iter().rev().find(|e| e.module.is(module)).map(|e| e.obj);
    let found = st(g, |s| if s.closing { Err(Error::InterpreterClosed { id: g.id() }) } else { Ok(find(s)) })?;
    if let Some(r) = found {
        return Ok(Obj::from_raw_borrowed(r, g));
    }
    if module.def().is_none() && g.interpreter().rec.modules.holds(module) {
        // `builtins` / `sys`: made on first use.
        let obj = g.new_module(module.name())?;
        if core_of(module) == Some(Core::Builtins) {
            fill_builtins(g, &obj)?;
        }
        let r = obj.clone().into_raw();
        // `new_module` may have run a collection whose finalizers made it
        // meanwhile: keep the first.
        let first = st(g, |s| {
            if s.closing {
                return Err(Error::InterpreterClosed { id: g.id() });
            }
            if let Some(first) = find(s) {
                return Ok(Some(first));
            }
            set_rooted(r, true);
            s.modules.push(ModEntry { module: module.downgrade(), core: core_of(module), obj: r });
            Ok(None)
        });
        return match first {
            Ok(None) => Ok(obj),
            Ok(Some(first)) => {
                decref(g, r);
                Ok(Obj::from_raw_borrowed(first, g))
            }
            Err(e) => {
                decref(g, r);
                Err(e)
            }
        };
    }
    Err(Error::ModuleNotFound { name: module.name().into() })
}

/// The replacement import function, if `builtins.__import__` is not the
/// built-in one (no builtins object yet: nobody replaced it). Deleted:
/// CPython's `ImportError("__import__ not found")`.
fn import_func<'i>(g: Gil<'i>) -> Result<Option<Obj<'i>>> {
    let Some((builtins, default)) = st(g, |s| s.builtins_obj.zip(s.default_import)) else { return Ok(None) };
    let found = super::types::own_dict(builtins).and_then(|d| super::types::dict_get_str(d, "__import__"));
    match found {
        Some(f) if f == default => Ok(None),
        Some(f) => Ok(Some(Obj::from_raw_borrowed(f, g))),
        None => Err(Error::ImportError { name: "builtins".into(), reason: "__import__ not found".into() }),
    }
}

/// Fills a new `builtins` object: the built-in `__import__`, kept by the
/// collector's state too, so that `import` can tell whether it was replaced.
fn fill_builtins<'i>(g: Gil<'i>, obj: &Obj<'i>) -> Result<()> {
    let f = g.function("__import__", &[], |g, _, args| {
        let name = args
            .first()
            .and_then(|a| a.as_str().map(str::to_owned))
            .ok_or_else(|| Error::TypeError { message: "__import__() argument 1 must be str".into() })?;
        g.import_default(&name)
    })?;
    obj.setattr("__import__", &f)?;
    let r = f.into_raw();
    let old = st(g, |s| {
        s.builtins_obj = Some(obj.raw());
        s.default_import.replace(r)
    });
    if let Some(old) = old {
        decref(g, old);
    }
    Ok(())
}

/// How a module object is held during the shutdown sequence.
enum Held<'i> {
    /// Through a weak reference: the module dies as soon as nothing else
    /// holds it.
    Weak(Obj<'i>),
    /// Strongly (`builtins`, `sys`, or a module whose weak reference could
    /// not be made).
    Strong(Obj<'i>),
}

impl<'i> Held<'i> {
    fn alive(&self) -> Option<Obj<'i>> {
        match self {
            Held::Strong(o) => Some(o.clone()),
            Held::Weak(w) => w.weakref_get().ok().flatten(),
        }
    }
}

/// CPython's `finalize_modules`, for a closing interpreter (GIL held, pending
/// calls done, imports closed by the caller):
///
/// 1. `sys.modules` is emptied: every module object but `builtins`'s and
///    `sys`'s is held only weakly from here, so modules nothing else holds
///    die now, oldest first, and their globals with them;
/// 2. a full collection frees modules (and globals) that only cycles held;
/// 3. the globals of every module still alive are cleared, newest module
///    first, in two passes (names with a single leading underscore first,
///    then every name but `__builtins__`), each value replaced by `None`
///    (`_PyModule_ClearDict`), so the finalizers of objects held by globals
///    run now, while the interpreter is whole;
/// 4. then `sys`'s globals, then `builtins`'s, are emptied.
///
/// The caller's final collection and teardown follow. Errors of the user
/// code this runs (finalizers, weakref callbacks, `Drop`s) are reported by
/// the collector, as for any dealloc; a failure of this sequence itself
/// (no memory for a weak reference) keeps that module strongly held, which
/// only changes when it is cleared.
pub(crate) fn finalize(g: Gil<'_>) {
    let (entries, default_import) = st(g, |s| {
        s.builtins_obj = None;
        (std::mem::take(&mut s.modules), s.default_import.take())
    });
    if let Some(f) = default_import {
        decref(g, f);
    }
    let mut held = Vec::with_capacity(entries.len());
    let mut core = Vec::new();
    for ModEntry { core: c, obj, .. } in entries {
        set_rooted(obj, false);
        let obj = Obj::from_raw_owned(obj, g);
        if let Some(c) = c {
            core.push((c, Held::Strong(obj)));
            continue;
        }
        // A weakly held module's strong reference is released here, oldest
        // module first (CPython sets `sys.modules` values to `None` in order).
        match g.weakref(&obj, None) {
            Ok(w) => held.push(Held::Weak(w)),
            Err(_) => held.push(Held::Strong(obj)),
        }
    }
    let _ = g.gc_collect(2);
    for h in held.iter().rev() {
        if let Some(m) = h.alive() {
            clear_globals(g, &m);
        }
    }
    // `sys` before `builtins` (CPython's `finalize_clear_sys_builtins_dict`).
    core.sort_by_key(|(c, _)| *c);
    for (_, h) in &core {
        if let Some(d) = h.alive().and_then(|m| m.module_dict().ok()) {
            let _ = d.clear();
        }
    }
    drop(held);
    drop(core);
}

/// `_PyModule_ClearDict`: globals set to `None`, single-underscore names
/// first, `__builtins__` kept. Works on a snapshot of the keys, so that
/// finalizers run by the replacements may change the dict.
fn clear_globals<'i>(g: Gil<'i>, module: &Obj<'i>) {
    let Ok(d) = module.module_dict() else { return };
    let Ok(none) = g.none() else { return };
    for pass in 0..2 {
        let Ok(items) = d.dict_items() else { return };
        for (k, _) in items {
            let Some(name) = k.as_str() else { continue };
            let pick = match pass {
                0 => name.starts_with('_') && !name.starts_with("__"),
                _ => name != "__builtins__",
            };
            if !pick {
                continue;
            }
            match d.dict_get(&k) {
                // The old value's release runs its finalizers (behind the
                // collector's catch-unwind boundary, errors reported there).
                Ok(Some(v)) if !v.is_none() => {
                    drop(v);
                    let _ = d.dict_set(&k, &none);
                }
                _ => {}
            }
        }
    }
}

impl<'i> Gil<'i> {
    /// Imports `name` into this interpreter (as
    /// [`Interpreter::import`](crate::Interpreter::import): init once,
    /// isolation rules, circular-import detection) and returns the module
    /// object: a heap object of kind [`Kind::Module`](crate::Kind::Module)
    /// whose globals ([`Obj::module_dict`], [`Obj::getattr`]) hold objects.
    /// The same object every time while the module is imported;
    /// `"builtins"` and `"sys"` have theirs too.
    ///
    /// Errors: those of `Interpreter::import`; [`Error::InterpreterClosed`]
    /// once the interpreter is closing.
    ///
    /// ```
    /// use subinterp::{InitError, Kind, ModuleDef, ModuleInit, MultiInterp, Runtime, RuntimeConfig};
    ///
    /// fn init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    ///     let g = m.gil();
    ///     m.globals()?.dict_set(&g.str("answer")?, &g.int(42)?)?;
    ///     Ok(())
    /// }
    /// static SPAM: ModuleDef = ModuleDef::new("spam", init).with_multi_interp(MultiInterp::PerInterpreterGil);
    ///
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.register_builtin(&SPAM)?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let spam = g.import("spam")?;
    ///     assert_eq!(spam.kind(), Kind::Module);
    ///     assert_eq!(spam.getattr("answer")?.unwrap().as_int(), Some(42));
    ///     assert!(spam.is(&g.import("spam")?)); // one object per interpreter
    ///     let sys = g.import("sys")?;
    ///     sys.setattr("flag", &g.bool(true)?)?;
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn import(&self, name: &str) -> Result<Obj<'i>> {
        match import_func(*self)? {
            None => self.import_default(name),
            Some(f) => {
                // CPython's `__import__(name, globals, locals, fromlist, level)`:
                // user code, called behind the catch-unwind boundary.
                let none = self.none()?;
                let args = [self.str(name)?, none.clone(), none.clone(), none, self.int(0)?];
                run_callback("import function", || f.call(&args))?
            }
        }
    }

    /// The built-in import, whatever `builtins.__import__` is (what a
    /// replacement import function usually delegates to, as Python code calls
    /// `importlib.__import__`).
    pub fn import_default(&self, name: &str) -> Result<Obj<'i>> {
        let m = self.interpreter().import(name)?;
        object_of(*self, &m)
    }

    /// Replaces this interpreter's import function (`builtins.__import__`,
    /// CPython's `interp->import_func`): [`Gil::import`] calls `f` with
    /// `(name, None, None, None, 0)` and returns what it returns. `None`
    /// puts the built-in one back. The function is user code: its errors
    /// come back from `import`, a panic as [`Error::CallbackPanicked`]; one
    /// that imports through [`Gil::import`]
    /// again recurses until `RecursionError` — delegate with
    /// [`import_default`](Self::import_default).
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use subinterp::{Runtime, RuntimeConfig};
    ///
    /// let rt = Runtime::new(RuntimeConfig::default())?;
    /// rt.main().with_gil(|g| -> subinterp::Result<()> {
    ///     let seen = Rc::new(RefCell::new(Vec::new()));
    ///     let s = seen.clone();
    ///     let hook = g.function("__import__", &[], move |g, _, args| {
    ///         let name = args[0].as_str().unwrap_or_default().to_owned();
    ///         s.borrow_mut().push(name.clone());
    ///         g.import_default(&name) // then the usual import
    ///     })?;
    ///     g.set_import_func(Some(&hook))?;
    ///     let sys = g.import("sys")?;
    ///     assert!(sys.is(&g.import_default("sys")?));
    ///     assert_eq!(*seen.borrow(), ["sys"]);
    ///     g.set_import_func(None)?;
    ///     g.import("sys")?;
    ///     assert_eq!(seen.borrow().len(), 1, "the built-in import again");
    ///     Ok(())
    /// })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn set_import_func(&self, f: Option<&Obj<'i>>) -> Result<()> {
        let builtins = self.import_default("builtins")?;
        match f {
            Some(f) => builtins.setattr("__import__", f),
            None => {
                let default = st(*self, |s| s.default_import).ok_or(Error::InterpreterClosed { id: self.id() })?;
                builtins.setattr("__import__", &Obj::from_raw_borrowed(default, *self))
            }
        }
    }

    /// The heap object of `module` (a handle from
    /// [`Interpreter::import`](crate::Interpreter::import) or
    /// [`Interpreter::get_module`](crate::Interpreter::get_module)).
    ///
    /// Errors: [`Error::WrongInterpreter`] for another interpreter's module;
    /// [`Error::ModuleNotFound`] for a module removed from this interpreter
    /// whose object was since released; [`Error::InterpreterClosed`].
    ///
    /// ```
    /// # use subinterp::{Runtime, RuntimeConfig};
    /// # let rt = Runtime::new(RuntimeConfig::default())?;
    /// # rt.main().with_gil(|g| -> subinterp::Result<()> {
    /// let handle = g.interpreter().import("sys")?;
    /// assert!(g.module_object(&handle)?.is(&g.import("sys")?));
    /// # Ok(())
    /// # })??;
    /// # Ok::<(), subinterp::Error>(())
    /// ```
    pub fn module_object(&self, module: &Module) -> Result<Obj<'i>> {
        object_of(*self, module)
    }
}
