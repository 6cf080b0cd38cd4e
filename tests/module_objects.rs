//! Module objects in the heap and their shutdown order (CPython's
//! `finalize_modules`, `Python/pylifecycle.c`; its tests
//! `test_gc_main_module_at_shutdown` / `test_gc_ordinary_module_at_shutdown`
//! in `Lib/test/test_gc.py`).

use std::cell::RefCell;
use std::rc::Rc;

use subinterp::{
    Error, Gil, InitError, Interpreter, InterpreterConfig, Kind, ModuleDef, ModuleInit, MultiInterp, Obj, Runtime,
    RuntimeConfig,
};

fn empty(_: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    Ok(())
}

fn with_global(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    let g = m.gil();
    m.globals()?.dict_set(&g.str("value")?, &g.list(&[])?)?;
    Ok(())
}

fn failing(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    let g = m.gil();
    // Stash the half-made module somewhere else before failing: it must not
    // be published, and nothing may break when the stash is cleared later.
    g.import("sys")?.setattr("stash", m.module_object())?;
    Err("init refused".into())
}

static ALPHA: ModuleDef = ModuleDef::new("alpha", empty).with_multi_interp(MultiInterp::PerInterpreterGil);
static BETA: ModuleDef = ModuleDef::new("beta", empty).with_multi_interp(MultiInterp::PerInterpreterGil);
static GLOBALS: ModuleDef = ModuleDef::new("globals", with_global).with_multi_interp(MultiInterp::PerInterpreterGil);
static FAILING: ModuleDef = ModuleDef::new("failing", failing).with_multi_interp(MultiInterp::PerInterpreterGil);

type Log = Rc<RefCell<Vec<String>>>;

fn setup() -> (Runtime, Interpreter) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    for d in [&ALPHA, &BETA, &GLOBALS, &FAILING] {
        rt.register_builtin(d).unwrap();
    }
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    (rt, i)
}

/// An instance whose finalizer logs `tag`.
fn logged<'i>(g: Gil<'i>, log: &Log, tag: &str) -> Obj<'i> {
    let inst = g.instance("Logged").unwrap();
    let (log, tag) = (log.clone(), tag.to_string());
    let fin = g
        .function("fin", &[], move |g, _, _| {
            log.borrow_mut().push(tag.clone());
            g.none()
        })
        .unwrap();
    inst.set_finalizer(Some(&fin)).unwrap();
    inst
}

#[test]
fn import_returns_one_module_object_with_globals() {
    let (_rt, i) = setup();
    i.with_gil(|g| {
        let m = g.import("globals").unwrap();
        assert_eq!(m.kind(), Kind::Module);
        assert!(m.is(&g.import("globals").unwrap()), "the same object while imported");
        assert_eq!(m.getattr("__name__").unwrap().unwrap().as_str(), Some("globals"));
        assert_eq!(m.getattr("value").unwrap().unwrap().kind(), Kind::List, "set by init");
        let handle = i.import("globals").unwrap();
        assert!(g.module_object(&handle).unwrap().is(&m));
        // builtins and sys have objects too, made on first use.
        let sys = g.import("sys").unwrap();
        assert!(sys.is(&g.import("sys").unwrap()));
        assert!(!sys.is(&g.import("builtins").unwrap()));
    })
    .unwrap();
    i.close().unwrap();
}

#[test]
fn finalizers_of_objects_held_by_module_globals_run_at_close() {
    // test_gc_ordinary_module_at_shutdown: `__del__` of an object held by a
    // module global runs at shutdown. Here for a module, sys and builtins.
    let (_rt, i) = setup();
    let log: Log = Rc::default();
    i.with_gil(|g| {
        g.import("alpha").unwrap().setattr("x", &logged(g, &log, "alpha.x")).unwrap();
        g.import("sys").unwrap().setattr("y", &logged(g, &log, "sys.y")).unwrap();
        g.import("builtins").unwrap().setattr("z", &logged(g, &log, "builtins.z")).unwrap();
    })
    .unwrap();
    assert!(log.borrow().is_empty());
    let report = i.close().unwrap();
    assert_eq!(*log.borrow(), ["alpha.x", "sys.y", "builtins.z"], "modules, then sys, then builtins");
    assert!(report.gc_errors.is_empty(), "{:?}", report.gc_errors);
    assert_eq!(report.leaked.live_blocks, 0);
}

#[test]
fn live_modules_are_cleared_newest_first_underscore_names_first() {
    let (_rt, i) = setup();
    let log: Log = Rc::default();
    i.with_gil(|g| {
        let (a, b) = (g.import("alpha").unwrap(), g.import("beta").unwrap());
        a.setattr("a1", &logged(g, &log, "alpha.a1")).unwrap();
        a.setattr("_a2", &logged(g, &log, "alpha._a2")).unwrap();
        b.setattr("b1", &logged(g, &log, "beta.b1")).unwrap();
        b.setattr("__b2", &logged(g, &log, "beta.__b2")).unwrap();
        b.setattr("_b3", &logged(g, &log, "beta._b3")).unwrap();
        // Held by sys as well, so emptying sys.modules does not free them:
        // their globals are cleared, newest module first.
        let sys = g.import("sys").unwrap();
        sys.setattr("keep_a", &a).unwrap();
        sys.setattr("keep_b", &b).unwrap();
    })
    .unwrap();
    i.close().unwrap();
    assert_eq!(*log.borrow(), ["beta._b3", "beta.b1", "beta.__b2", "alpha._a2", "alpha.a1"]);
}

#[test]
fn a_module_in_a_cycle_with_its_globals_is_freed_at_close() {
    let (_rt, i) = setup();
    let log: Log = Rc::default();
    let weak_alive = i
        .with_gil(|g| {
            let a = g.import("alpha").unwrap();
            let inst = logged(g, &log, "cyclic");
            inst.setattr("module", &a).unwrap(); // module -> inst -> module
            a.setattr("inst", &inst).unwrap();
            g.weakref(&a, None).unwrap().weakref_get().unwrap().is_some()
        })
        .unwrap();
    assert!(weak_alive);
    let report = i.close().unwrap();
    assert_eq!(*log.borrow(), ["cyclic"]);
    assert_eq!(report.leaked.live_blocks, 0);
}

#[test]
fn user_code_at_module_shutdown_may_panic_import_collect_and_stash() {
    let (_rt, i) = setup();
    let ran: Log = Rc::default();
    i.with_gil(|g| {
        let a = g.import("alpha").unwrap();
        let mk = |name: &str, body: Rc<dyn Fn(Gil<'_>)>| {
            let inst = g.instance("Hostile").unwrap();
            let r = ran.clone();
            let tag = name.to_string();
            let fin = g
                .function("fin", &[], move |g, _, args| {
                    r.borrow_mut().push(tag.clone());
                    body(g);
                    // Stash the dying object in a module global: resurrected,
                    // cleared again later or freed by the teardown.
                    if let Ok(sys) = g.import("sys") {
                        let _ = sys.setattr("resurrected", &args[0]);
                    }
                    g.none()
                })
                .unwrap();
            inst.set_finalizer(Some(&fin)).unwrap();
            a.setattr(name, &inst).unwrap();
        };
        mk("panics", Rc::new(|_| panic!("finalizer panicked at shutdown")));
        mk(
            "imports",
            Rc::new(|g| {
                let e = g.import("beta").unwrap_err();
                assert!(matches!(e, Error::InterpreterClosed { .. }), "no import while closing: {e}");
            }),
        );
        mk(
            "collects",
            Rc::new(|g| {
                let _ = g.gc_collect(2);
                let _ = g.list(&[]).unwrap();
            }),
        );
    })
    .unwrap();
    let report = i.close().unwrap();
    assert_eq!(*ran.borrow(), ["panics", "imports", "collects"]);
    assert!(
        report.gc_errors.iter().any(|e| e.to_string().contains("finalizer panicked at shutdown")),
        "the panic is reported: {:?}",
        report.gc_errors
    );
    assert_eq!(report.leaked.live_blocks, 0);
}

#[test]
fn a_failed_init_publishes_no_module_object() {
    let (_rt, i) = setup();
    i.with_gil(|g| {
        let e = g.import("failing").unwrap_err();
        assert!(matches!(e, Error::ModuleInitFailed { .. }), "{e}");
        let stash = g.import("sys").unwrap().getattr("stash").unwrap().unwrap();
        assert_eq!(stash.kind(), Kind::Module, "the stash keeps the half-made object alive, unpublished");
        assert!(i.get_module("failing").is_none());
    })
    .unwrap();
    assert_eq!(i.close().unwrap().leaked.live_blocks, 0);
}

#[test]
fn a_removed_module_is_released_and_reimported_fresh() {
    let (_rt, i) = setup();
    let log: Log = Rc::default();
    i.with_gil(|g| {
        let first = g.import("alpha").unwrap();
        first.setattr("x", &logged(g, &log, "first.x")).unwrap();
        let w = g.weakref(&first, None).unwrap();
        drop(first);
        assert!(i.remove_module("alpha").is_some());
        // The next publication releases the objects of removed modules.
        g.import("beta").unwrap();
        assert!(w.weakref_get().unwrap().is_none(), "released with nothing else holding it");
        assert_eq!(*log.borrow(), ["first.x"]);
        let second = g.import("alpha").unwrap();
        assert!(second.getattr("x").unwrap().is_none(), "a fresh module object");
    })
    .unwrap();
    i.close().unwrap();
}

#[test]
fn another_interpreters_module_is_refused() {
    let (rt, i) = setup();
    let other = rt.create(InterpreterConfig::isolated()).unwrap();
    let m = other.import("alpha").unwrap();
    i.with_gil(|g| {
        assert!(matches!(g.module_object(&m), Err(Error::WrongInterpreter { .. })));
    })
    .unwrap();
    other.close().unwrap();
    i.close().unwrap();
}

#[test]
fn a_replaced_import_function_is_called_by_import() {
    // CPython: `builtins.__import__` replaced is what `import` calls
    // (interp->import_func); deleted, `import` is ImportError "__import__ not found".
    let (_rt, i) = setup();
    i.with_gil(|g| {
        let log: Log = Rc::default();
        let l = log.clone();
        let hook = g
            .function("__import__", &[], move |g, _, args| {
                assert_eq!(args.len(), 5, "(name, globals, locals, fromlist, level)");
                assert_eq!(args[4].as_int(), Some(0));
                let name = args[0].as_str().unwrap().to_owned();
                l.borrow_mut().push(name.clone());
                if name == "fake" {
                    return g.str("not a module"); // whatever it returns is the result
                }
                g.import_default(&name)
            })
            .unwrap();
        // Replacing `builtins.__import__` directly is the same as set_import_func.
        g.import_default("builtins").unwrap().setattr("__import__", &hook).unwrap();
        assert_eq!(g.import("fake").unwrap().as_str(), Some("not a module"));
        assert_eq!(g.import("alpha").unwrap().kind(), Kind::Module);
        assert_eq!(*log.borrow(), ["fake", "alpha"]);
        // A hook that imports through `import` again recurses to a RecursionError.
        let recursive = g.function("__import__", &[], |g, _, args| g.import(args[0].as_str().unwrap())).unwrap();
        g.set_import_func(Some(&recursive)).unwrap();
        assert!(matches!(g.import("beta"), Err(Error::RecursionError { .. })));
        // A panicking hook is an error of the import, never an unwind.
        let panics = g.function("__import__", &[], |_, _, _| panic!("hook exploded")).unwrap();
        g.set_import_func(Some(&panics)).unwrap();
        let e = g.import("beta").unwrap_err();
        assert!(e.to_string().contains("hook exploded"), "{e}");
        // Deleted: CPython's ImportError.
        g.import_default("builtins").unwrap().delattr("__import__").unwrap();
        let e = g.import("beta").unwrap_err();
        assert!(matches!(&e, Error::ImportError { reason, .. } if reason == "__import__ not found"), "{e}");
        // Restored.
        g.set_import_func(None).unwrap();
        assert_eq!(g.import("beta").unwrap().kind(), Kind::Module);
        assert_eq!(log.borrow().len(), 2);
    })
    .unwrap();
    assert_eq!(i.close().unwrap().leaked.live_blocks, 0);
}
