//! modules_by_index and modules by name: wait-free lookups from any thread,
//! the cached form, one index per definition under concurrent first imports,
//! growth under readers, removal and teardown releasing states, builtins/sys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use subinterp::{
    Error, InitError, InterpreterConfig, ModuleDef, ModuleInit, ModuleValue, MultiInterp, Runtime, RuntimeConfig,
};

const PIG: MultiInterp = MultiInterp::PerInterpreterGil;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

struct Tag(u64);
fn tag_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    m.set_state(Tag(m.interpreter().id()));
    Ok(())
}

static FIND: ModuleDef = ModuleDef::new("find_mod", tag_init).with_multi_interp(PIG);

#[test]
fn find_module_from_any_thread_without_the_gil() {
    let rt = runtime();
    rt.register_builtin(&FIND).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let mut cache = interp.module_cache();
    assert_eq!(cache.interpreter_id(), interp.id());
    assert!(interp.find_module(&FIND).is_none());
    assert!(cache.find(&FIND).is_none());
    assert!(interp.with_module(&FIND, |m| m.is_none()));

    let m = interp.import("find_mod").unwrap();
    let index = FIND.index().expect("assigned on import");
    assert!(index >= 2, "0 and 1 are builtins and sys");
    assert_eq!(interp.find_module(&FIND).unwrap(), m);
    assert_eq!(cache.find(&FIND), Some(&m), "the cache sees the new table");
    assert_eq!(cache.find_state::<Tag>(&FIND).unwrap().0, interp.id());
    assert!(cache.find_state::<String>(&FIND).is_none(), "wrong type");
    assert_eq!(interp.find_module_state::<Tag>(&FIND).unwrap().0, interp.id());

    // Another thread, holding no GIL, while this one holds it.
    interp
        .with_gil(|_| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    assert_eq!(interp.find_module(&FIND).unwrap(), m);
                    let mut c = interp.module_cache();
                    assert_eq!(c.find_state::<Tag>(&FIND).unwrap().0, interp.id());
                });
            })
        })
        .unwrap();

    // Another interpreter has not imported it.
    assert!(rt.main().find_module(&FIND).is_none());

    drop(m);
    interp.remove_module("find_mod").unwrap();
    assert!(interp.find_module(&FIND).is_none());
    assert!(cache.find(&FIND).is_none(), "the cache sees the removal");
    interp.import("find_mod").unwrap();
    assert!(cache.find(&FIND).is_some());
    interp.close().unwrap();
    assert!(cache.find(&FIND).is_none(), "and the teardown");
    assert!(interp.find_module(&FIND).is_none());
}

static RACE_INITS: AtomicUsize = AtomicUsize::new(0);
fn race_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    RACE_INITS.fetch_add(1, Ordering::SeqCst);
    m.set_state(Tag(m.interpreter().id()));
    Ok(())
}
static RACE: ModuleDef = ModuleDef::new("race_mod", race_init).with_multi_interp(PIG);

#[test]
fn concurrent_first_imports_in_many_interpreters_share_one_index() {
    const N: usize = 8;
    let rt = runtime();
    rt.register_builtin(&RACE).unwrap();
    let interps: Vec<_> = (0..N).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
    let barrier = Barrier::new(N);
    std::thread::scope(|s| {
        for i in &interps {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                i.import("race_mod").unwrap();
            });
        }
    });
    assert_eq!(RACE_INITS.load(Ordering::SeqCst), N, "once per interpreter");
    let index = RACE.index().unwrap();
    for i in &interps {
        // One index: every interpreter finds its own instance through it.
        let m = i.find_module(&RACE).unwrap();
        assert_eq!(m.state::<Tag>().unwrap().0, i.id());
        assert_eq!(m.def().unwrap().index(), Some(index));
    }
}

// ------------------------------------------------ growth under readers

fn grow_def(name: &str) -> Option<&'static ModuleDef> {
    static DEFS: Mutex<Option<HashMap<String, &'static ModuleDef>>> = Mutex::new(None);
    if !name.starts_with("grow_") {
        return None;
    }
    let mut defs = DEFS.lock().unwrap();
    let defs = defs.get_or_insert_with(HashMap::new);
    Some(*defs.entry(name.to_owned()).or_insert_with(|| {
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        Box::leak(Box::new(ModuleDef::new(name, tag_init).with_multi_interp(PIG)))
    }))
}

static ANCHOR: ModuleDef = ModuleDef::new("anchor", tag_init).with_multi_interp(PIG);

#[test]
fn lookups_during_table_growth_never_miss_a_published_module() {
    const GROW: usize = 200;
    let rt = runtime();
    rt.register_builtin(&ANCHOR).unwrap();
    rt.add_finder(grow_def);
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let anchor = interp.import("anchor").unwrap();
    let defs: Vec<_> = (0..GROW).map(|i| grow_def(&format!("grow_{i}")).unwrap()).collect();
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(3);
    std::thread::scope(|s| {
        s.spawn(|| {
            barrier.wait();
            for i in 0..GROW {
                interp.import(&format!("grow_{i}")).unwrap();
            }
            done.store(true, Ordering::SeqCst);
        });
        for cached in [false, true] {
            let (barrier, defs, done, interp, anchor) = (&barrier, &defs, &done, &interp, &anchor);
            s.spawn(move || {
                let mut cache = interp.module_cache();
                let mut seen = [false; GROW];
                barrier.wait();
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    if cached {
                        assert_eq!(cache.find(&ANCHOR), Some(anchor));
                    } else {
                        assert_eq!(interp.find_module(&ANCHOR).as_ref(), Some(anchor));
                    }
                    for (k, d) in defs.iter().enumerate() {
                        let found = if cached { cache.find(d).is_some() } else { interp.find_module(d).is_some() };
                        assert!(found || !seen[k], "grow_{k} vanished after it was seen");
                        seen[k] |= found;
                    }
                    if finished {
                        assert!(seen.iter().all(|s| *s), "every module is visible after the imports");
                        break;
                    }
                }
            });
        }
    });
    assert_eq!(interp.modules().len(), GROW + 3);
}

// ---------------------------------------------------- release of states

static LOG: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
struct Logged(&'static str);
impl Drop for Logged {
    fn drop(&mut self) {
        LOG.lock().unwrap().push(self.0);
    }
}

fn logged_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    m.set_state(Logged("user.state"));
    m.set_attr("a", Arc::new(Logged("user.attr")));
    Ok(())
}
static LOGGED: ModuleDef = ModuleDef::new("logged", logged_init).with_multi_interp(PIG);

static REMOVED_DROPS: AtomicUsize = AtomicUsize::new(0);
struct CountDrop;
impl Drop for CountDrop {
    fn drop(&mut self) {
        REMOVED_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}
fn count_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    m.set_state(CountDrop);
    Ok(())
}
static REMOVABLE: ModuleDef = ModuleDef::new("removable", count_init).with_multi_interp(PIG);

#[test]
fn removal_releases_the_state_and_reimport_runs_init_again() {
    let rt = runtime();
    rt.register_builtin(&REMOVABLE).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp.import("removable").unwrap();
    assert_eq!(REMOVED_DROPS.load(Ordering::SeqCst), 0);
    let m = interp.remove_module("removable").unwrap();
    assert!(interp.get_module("removable").is_none());
    assert!(interp.find_module(&REMOVABLE).is_none());
    assert!(interp.remove_module("removable").is_none());
    assert_eq!(REMOVED_DROPS.load(Ordering::SeqCst), 0, "the returned handle keeps it");
    drop(m);
    assert_eq!(REMOVED_DROPS.load(Ordering::SeqCst), 1, "the tables kept no reference");
    let again = interp.import("removable").unwrap();
    assert!(again.state::<CountDrop>().is_some());
    drop(again);
    interp.close().unwrap();
    assert_eq!(REMOVED_DROPS.load(Ordering::SeqCst), 2);
}

#[test]
fn teardown_releases_every_module_and_builtins_and_sys_last() {
    let rt = runtime();
    rt.register_builtin(&LOGGED).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let sys = interp.sys().unwrap();
    let builtins = interp.builtins().unwrap();
    sys.set_attr("x", Arc::new(Logged("sys.attr"))).unwrap();
    builtins.set_attr("x", Arc::new(Logged("builtins.attr"))).unwrap();
    drop((sys, builtins));
    interp.import("logged").unwrap();
    assert!(LOG.lock().unwrap().is_empty());
    interp.close().unwrap();
    assert_eq!(*LOG.lock().unwrap(), ["user.attr", "user.state", "sys.attr", "builtins.attr"]);
    assert!(interp.modules().is_empty());
    assert!(matches!(interp.sys(), Err(Error::InterpreterClosed { .. })));
    assert!(matches!(interp.builtins(), Err(Error::InterpreterClosed { .. })));
    assert!(interp.find_module(&LOGGED).is_none());
}

// ------------------------------------------------------- builtins / sys

#[test]
fn every_interpreter_is_born_with_its_own_builtins_and_sys() {
    let rt = runtime();
    let main = rt.main();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    for i in [&main, &sub] {
        let names: Vec<_> = i.modules().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["builtins", "sys"]);
        let sys = i.sys().unwrap();
        assert_eq!(sys.name(), "sys");
        assert_eq!(sys.interpreter_id(), i.id());
        assert!(sys.def().is_none());
        assert_eq!(i.import("sys").unwrap(), sys);
        assert_eq!(i.import("builtins").unwrap(), i.builtins().unwrap());
    }
    assert_ne!(main.sys().unwrap(), sub.sys().unwrap());
    assert_ne!(main.builtins().unwrap(), sub.builtins().unwrap());
    // `del sys.modules['sys']`, then import: the interpreter's own record is back.
    let sys = sub.remove_module("sys").unwrap();
    assert!(sub.get_module("sys").is_none());
    assert_eq!(sub.sys().unwrap(), sys, "still the interpreter's sys");
    assert_eq!(sub.import("sys").unwrap(), sys);
    assert_eq!(sub.get_module("sys").unwrap(), sys);
}

#[test]
fn module_attributes() {
    let rt = runtime();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = sub.builtins().unwrap();
    let v: ModuleValue = Arc::new(String::from("print"));
    assert!(b.set_attr("print", v.clone()).unwrap().is_none());
    assert!(b.set_attr("len", Arc::new(3usize)).unwrap().is_none());
    assert!(Arc::ptr_eq(&b.set_attr("print", Arc::new(1u8)).unwrap().unwrap(), &v));
    assert_eq!(b.attr_names(), ["len", "print"]);
    assert_eq!(b.get_attr("len").unwrap().downcast_ref::<usize>(), Some(&3));
    assert!(b.del_attr("len").is_some());
    assert!(b.get_attr("len").is_none());
    sub.close().unwrap();
    assert!(b.attr_names().is_empty(), "teardown cleared them");
    assert!(matches!(b.set_attr("late", Arc::new(())), Err(Error::InterpreterClosed { .. })));
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<subinterp::Module>();
    send_sync::<ModuleDef>();
    send::<subinterp::ModuleCache>();
    // A cache made on one thread keeps working on another.
    let rt = runtime();
    rt.register_builtin(&MOVED).unwrap();
    let main = rt.main();
    let mut cache = main.module_cache();
    main.import("moved").unwrap();
    std::thread::scope(|s| {
        s.spawn(move || assert_eq!(cache.find_state::<Tag>(&MOVED).unwrap().0, 0));
    });
}
static MOVED: ModuleDef = ModuleDef::new("moved", tag_init).with_multi_interp(PIG);
