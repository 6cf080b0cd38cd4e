//! Module tables: growth of modules_by_index under lock-free readers, one
//! index for a definition first imported by two interpreters at once, init
//! once under concurrent imports, import racing close.
//!
//! Under loom, `modules_by_index` is the facade's model of arc-swap's
//! contract (a loom pointer swap publishing a node whose cell loom checks,
//! readers announced in a counter, the old node reclaimed after a grace
//! period: `src/module/facade.rs`), so the wait-free read path is what is
//! checked; the by-name map (dashmap, itself a locking map) is a loom
//! `Mutex<HashMap>`. A `ModuleDef`'s index is a loom atomic, so a definition
//! is made (and leaked) per execution.

use std::sync::atomic::{AtomicUsize, Ordering};

use loom::thread;
use subinterp::{Error, InitError, InterpreterConfig, ModuleDef, ModuleInit, MultiInterp, Runtime, RuntimeConfig};

fn def(name: &'static str, init: subinterp::ModuleInitFn) -> &'static ModuleDef {
    Box::leak(Box::new(ModuleDef::new(name, init).with_multi_interp(MultiInterp::PerInterpreterGil)))
}

struct Tag(u64);
fn tag_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    m.set_state(Tag(m.interpreter().id()));
    Ok(())
}

#[test]
fn table_growth_and_removal_while_another_thread_looks_up() {
    // Kills `module_relaxed_publish` (a reader's cell read races the
    // writer's fill of the published node).
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let (da, db) = (def("a", tag_init), def("b", tag_init));
        rt.register_builtin(da).unwrap();
        rt.register_builtin(db).unwrap();
        let main = rt.main();
        let a = main.import("a").unwrap();
        let mut cache = main.module_cache();

        // Two writers of modules_by_index: an import (under the GIL) grows
        // it, a removal (no GIL) clears a slot. Only the table's writer lock
        // orders them; a lost copy-set-swap update would resurrect `a` or
        // lose `b`.
        let m2 = main.clone();
        let grower = thread::spawn(move || m2.import("b").unwrap());
        let m3 = main.clone();
        let remover = thread::spawn(move || m3.remove_module("a").unwrap());

        // Lookups race both: each sees a whole table, old or new.
        let a_seen = [main.find_module(da), cache.find(da).cloned()];
        let b_seen = [main.find_module(db), cache.find(db).cloned()];
        let b = grower.join().unwrap();
        assert_eq!(remover.join().unwrap(), a);
        for seen in a_seen.into_iter().flatten() {
            assert_eq!(seen, a);
        }
        for seen in b_seen.into_iter().flatten() {
            assert_eq!(seen, b);
            assert_eq!(seen.state::<Tag>().unwrap().0, 0);
        }
        assert_eq!(main.find_module(da), None);
        assert_eq!(main.find_module(db).as_ref(), Some(&b));
        assert_eq!(cache.find(db), Some(&b));
        assert_eq!(cache.find(da), None);
        assert_eq!(main.get_module("b").as_ref(), Some(&b));
        assert!(main.get_module("a").is_none());
    });
}

#[test]
fn two_interpreters_first_import_one_definition_one_index() {
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let d = def("m", tag_init);
        rt.register_builtin(d).unwrap();
        let sub = rt.create(InterpreterConfig::isolated()).unwrap();
        let sub2 = sub.clone();
        let t = thread::spawn(move || {
            let m = sub2.import("m").unwrap();
            (m, d.index().unwrap())
        });
        let main = rt.main();
        let mm = main.import("m").unwrap();
        let mine = d.index().unwrap();
        let (ms, theirs) = t.join().unwrap();
        assert_eq!(mine, theirs, "one definition, one index");
        assert_ne!(mm, ms, "one instance per interpreter");
        assert_eq!(main.find_module(d).unwrap().state::<Tag>().unwrap().0, 0);
        assert_eq!(sub.find_module(d).unwrap().state::<Tag>().unwrap().0, sub.id());
    });
}

static ONCE_INITS: AtomicUsize = AtomicUsize::new(0);
fn yielding_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    ONCE_INITS.fetch_add(1, Ordering::SeqCst);
    // Release the GIL once so the other importer can get in and find this
    // import in progress.
    m.gil().allow_threads(|| ());
    m.set_state(Tag(m.interpreter().id()));
    Ok(())
}

#[test]
fn concurrent_imports_in_one_interpreter_run_init_once() {
    crate::model(|| {
        ONCE_INITS.store(0, Ordering::SeqCst);
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let d = def("once", yielding_init);
        rt.register_builtin(d).unwrap();
        let main = rt.main();
        let m2 = main.clone();
        let t = thread::spawn(move || m2.import("once").unwrap());
        let mine = main.import("once").unwrap();
        let theirs = t.join().unwrap();
        assert_eq!(mine, theirs);
        assert_eq!(ONCE_INITS.load(Ordering::SeqCst), 1);
    });
}

static CLOSE_INITS: AtomicUsize = AtomicUsize::new(0);
static CLOSE_DROPS: AtomicUsize = AtomicUsize::new(0);
struct Counted;
impl Drop for Counted {
    fn drop(&mut self) {
        CLOSE_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}
fn counted_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    CLOSE_INITS.fetch_add(1, Ordering::SeqCst);
    m.set_state(Counted);
    Ok(())
}

#[test]
fn import_races_close() {
    crate::model(|| {
        CLOSE_INITS.store(0, Ordering::SeqCst);
        CLOSE_DROPS.store(0, Ordering::SeqCst);
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let d = def("c", counted_init);
        rt.register_builtin(d).unwrap();
        let sub = rt.create(InterpreterConfig::isolated()).unwrap();
        let sub2 = sub.clone();
        let importer = thread::spawn(move || sub2.import("c").map(|m| m.state::<Counted>().is_some()));
        let closed = sub.close();
        let imported = importer.join().unwrap();
        match (&closed, &imported) {
            // Import first, then close; or close first and the import is refused.
            (Ok(_), Ok(true)) | (Ok(_), Err(Error::InterpreterClosed { .. })) => {}
            // Close found the importer inside: nothing changed; close again.
            (Err(Error::InterpreterRunning { .. }), Ok(true)) => {
                sub.close().unwrap();
            }
            other => panic!("{other:?}"),
        }
        // Whatever the order: nothing is left in the tables, and every state
        // made was released exactly once.
        assert!(sub.find_module(d).is_none());
        assert!(sub.modules().is_empty());
        assert!(matches!(sub.import("c"), Err(Error::InterpreterClosed { .. })));
        assert_eq!(CLOSE_INITS.load(Ordering::SeqCst), CLOSE_DROPS.load(Ordering::SeqCst));
        assert!(CLOSE_INITS.load(Ordering::SeqCst) <= 1);
    });
}
