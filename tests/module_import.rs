//! Import: init once per interpreter (also under concurrent first imports),
//! failing and panicking inits leave no trace, circular imports and import
//! deadlocks are typed errors, finders, aliases, shared-state definitions.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use subinterp::{Error, InitError, InterpreterConfig, ModuleDef, ModuleInit, MultiInterp, Runtime, RuntimeConfig};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

const PIG: MultiInterp = MultiInterp::PerInterpreterGil;

/// Names the modules a runtime's interpreter holds, minus builtins and sys.
fn user_modules(interp: &subinterp::Interpreter) -> Vec<String> {
    interp.modules().into_iter().map(|(n, _)| n).filter(|n| n != "builtins" && n != "sys").collect()
}

// ---------------------------------------------------------------- init once

static ONCE_INITS: AtomicUsize = AtomicUsize::new(0);
struct OnceState(usize);
fn once_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    let n = ONCE_INITS.fetch_add(1, Ordering::SeqCst);
    m.set_state(OnceState(n));
    m.set_attr("interp", Arc::new(m.interpreter().id()));
    Ok(())
}
static ONCE: ModuleDef = ModuleDef::new("once_mod", once_init).with_multi_interp(PIG).with_doc("init once");

#[test]
fn import_runs_init_once_per_interpreter_with_own_state() {
    let rt = runtime();
    rt.register_builtin(&ONCE).unwrap();
    let main = rt.main();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();

    let m1 = main.import("once_mod").unwrap();
    let m2 = main.import("once_mod").unwrap();
    assert_eq!(m1, m2, "a second import returns the same module");
    assert_eq!(ONCE_INITS.load(Ordering::SeqCst), 1);
    assert_eq!(m1.name(), "once_mod");
    assert_eq!(m1.doc(), Some("init once"));
    assert_eq!(m1.interpreter_id(), 0);
    assert!(std::ptr::eq(m1.def().unwrap(), &ONCE));

    let s1 = sub.import("once_mod").unwrap();
    assert_eq!(ONCE_INITS.load(Ordering::SeqCst), 2, "each interpreter runs init once");
    assert_ne!(s1, m1);
    assert_eq!(s1.interpreter_id(), sub.id());
    // Each interpreter has its own state and attributes.
    let (a, b) = (m1.state::<OnceState>().unwrap().0, s1.state::<OnceState>().unwrap().0);
    assert_ne!(a, b);
    assert_eq!(s1.get_attr("interp").unwrap().downcast_ref::<u64>(), Some(&sub.id()));
    assert_eq!(m1.get_attr("interp").unwrap().downcast_ref::<u64>(), Some(&0));
    // Inside the GIL (re-entry) works the same.
    let again = sub.with_gil(|g| g.interpreter().import("once_mod")).unwrap().unwrap();
    assert_eq!(again, s1);
    assert_eq!(ONCE_INITS.load(Ordering::SeqCst), 2);
    sub.close().unwrap();
    assert!(matches!(sub.import("once_mod"), Err(Error::InterpreterClosed { .. })));
}

// ------------------------------------------------- concurrent first imports

static CONC_INITS: AtomicUsize = AtomicUsize::new(0);
const CONC_THREADS: u64 = 4;
fn conc_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    CONC_INITS.fetch_add(1, Ordering::SeqCst);
    let interp = m.interpreter();
    let before = interp.gil_stats().acquisitions;
    // Let the other importers in: each takes the GIL once, finds this import
    // in progress and waits for it without the GIL. Only after all of them
    // took the GIL does init finish; taking the GIL back below then waits
    // until the last of them released it, i.e. waits on this import.
    m.gil().allow_threads(|| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while interp.gil_stats().acquisitions < before + (CONC_THREADS - 1) {
            assert!(Instant::now() < deadline, "the other importers never took the GIL");
            std::thread::yield_now();
        }
    });
    m.set_state(Arc::new(()));
    Ok(())
}
static CONC: ModuleDef = ModuleDef::new("conc_mod", conc_init).with_multi_interp(PIG);

#[test]
fn concurrent_first_imports_in_one_interpreter_run_init_once() {
    let rt = runtime();
    rt.register_builtin(&CONC).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let barrier = Barrier::new(CONC_THREADS as usize);
    let modules: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..CONC_THREADS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    interp.import("conc_mod").unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(CONC_INITS.load(Ordering::SeqCst), 1, "init ran once");
    assert!(modules.windows(2).all(|w| w[0] == w[1]), "everyone got the one module");
    assert_eq!(interp.find_module(&CONC).unwrap(), modules[0]);
}

// ---------------------------------------------------- failing / panicking

static DROPS: AtomicUsize = AtomicUsize::new(0);
struct Counted;
impl Drop for Counted {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

static FAIL_NOW: AtomicBool = AtomicBool::new(true);
fn failing_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    m.set_state(Counted);
    m.set_attr("x", Arc::new(1u8));
    if FAIL_NOW.load(Ordering::SeqCst) {
        return Err("boom: no config".into());
    }
    Ok(())
}
static FAILING: ModuleDef = ModuleDef::new("failing_mod", failing_init).with_multi_interp(PIG);

#[test]
fn failing_init_leaves_no_trace_and_can_be_retried() {
    let rt = runtime();
    rt.register_builtin(&FAILING).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let err = interp.import("failing_mod").unwrap_err();
    match &err {
        Error::ModuleInitFailed { name, cause } => {
            assert_eq!(name, "failing_mod");
            assert_eq!(cause, "boom: no config");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(err.to_string(), "init of module 'failing_mod' failed: boom: no config");
    assert_eq!(DROPS.load(Ordering::SeqCst), 1, "the half-made state was dropped");
    assert!(interp.get_module("failing_mod").is_none());
    assert!(interp.find_module(&FAILING).is_none());
    assert!(interp.module_cache().find(&FAILING).is_none());
    assert!(user_modules(&interp).is_empty());

    FAIL_NOW.store(false, Ordering::SeqCst);
    let m = interp.import("failing_mod").unwrap();
    assert_eq!(interp.find_module(&FAILING).unwrap(), m);
    assert!(m.state::<Counted>().is_some());
    drop(m);
    interp.close().unwrap();
    assert_eq!(DROPS.load(Ordering::SeqCst), 2, "close released the state");
}

fn panicking_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    m.set_attr("half", Arc::new(()));
    panic!("kaboom in init");
}
static PANICKING: ModuleDef = ModuleDef::new("panicking_mod", panicking_init).with_multi_interp(PIG);

#[test]
fn panicking_init_is_a_typed_error_and_leaves_no_trace() {
    let rt = runtime();
    rt.register_builtin(&PANICKING).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    match interp.import("panicking_mod") {
        Err(Error::ModuleInitFailed { name, cause }) => {
            assert_eq!(name, "panicking_mod");
            assert!(cause.contains("kaboom in init"), "{cause}");
        }
        r => panic!("{r:?}"),
    }
    assert!(interp.find_module(&PANICKING).is_none());
    assert!(user_modules(&interp).is_empty());
    // The GIL was released and the import slot freed: another thread can
    // enter, and a second import runs init again (and fails again).
    std::thread::scope(|s| {
        s.spawn(|| assert!(matches!(interp.import("panicking_mod"), Err(Error::ModuleInitFailed { .. }))));
    });
    interp.close().unwrap();
}

// ------------------------------------------------------------ circularity

fn circ_a_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    m.interpreter().import("circ_b")?;
    Ok(())
}
fn circ_b_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    m.interpreter().import("circ_a")?;
    Ok(())
}
static CIRC_A: ModuleDef = ModuleDef::new("circ_a", circ_a_init).with_multi_interp(PIG);
static CIRC_B: ModuleDef = ModuleDef::new("circ_b", circ_b_init).with_multi_interp(PIG);

fn self_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    match m.interpreter().import("circ_self") {
        Err(Error::CircularImport { name }) if name == "circ_self" => Err("saw the cycle".into()),
        other => Err(format!("expected CircularImport, got {other:?}").into()),
    }
}
static CIRC_SELF: ModuleDef = ModuleDef::new("circ_self", self_init).with_multi_interp(PIG);

#[test]
fn circular_import_on_one_thread_is_an_error_not_a_deadlock() {
    let rt = runtime();
    for d in [&CIRC_A, &CIRC_B, &CIRC_SELF] {
        rt.register_builtin(d).unwrap();
    }
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    match interp.import("circ_self") {
        Err(Error::ModuleInitFailed { cause, .. }) => assert_eq!(cause, "saw the cycle"),
        r => panic!("{r:?}"),
    }
    match interp.import("circ_a") {
        Err(Error::ModuleInitFailed { name, cause }) => {
            assert_eq!(name, "circ_a");
            assert!(
                cause.starts_with("init of module 'circ_b' failed: import of module 'circ_a' would deadlock"),
                "{cause}"
            );
        }
        r => panic!("{r:?}"),
    }
    assert!(user_modules(&interp).is_empty(), "{:?}", user_modules(&interp));
    assert!(interp.find_module(&CIRC_A).is_none() && interp.find_module(&CIRC_B).is_none());
}

static DL_BARRIER: Barrier = Barrier::new(2);
static DL_X_FIRST: AtomicBool = AtomicBool::new(true);
static DL_Y_FIRST: AtomicBool = AtomicBool::new(true);
fn dl_x_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    if DL_X_FIRST.swap(false, Ordering::SeqCst) {
        m.gil().allow_threads(|| DL_BARRIER.wait()); // both inits are running
    }
    m.interpreter().import("dl_y")?;
    Ok(())
}
fn dl_y_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    if DL_Y_FIRST.swap(false, Ordering::SeqCst) {
        m.gil().allow_threads(|| DL_BARRIER.wait());
    }
    m.interpreter().import("dl_x")?;
    Ok(())
}
static DL_X: ModuleDef = ModuleDef::new("dl_x", dl_x_init).with_multi_interp(PIG);
static DL_Y: ModuleDef = ModuleDef::new("dl_y", dl_y_init).with_multi_interp(PIG);

#[test]
fn cross_thread_import_cycle_is_detected_not_a_deadlock() {
    let rt = runtime();
    rt.register_builtin(&DL_X).unwrap();
    rt.register_builtin(&DL_Y).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    // Thread 1 runs dl_x's init, thread 2 dl_y's; each then imports the other.
    let (rx, ry) = std::thread::scope(|s| {
        let hx = s.spawn(|| interp.import("dl_x"));
        let hy = s.spawn(|| interp.import("dl_y"));
        (hx.join().unwrap(), hy.join().unwrap())
    });
    for r in [rx, ry] {
        match r {
            Err(Error::ModuleInitFailed { cause, .. }) => assert!(cause.contains("would deadlock"), "{cause}"),
            r => panic!("{r:?}"),
        }
    }
    assert!(user_modules(&interp).is_empty());
}

// ------------------------------------------------------ finders and names

fn plain_init(_: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    Ok(())
}
static FA: ModuleDef = ModuleDef::new("fa", plain_init).with_multi_interp(PIG);
static FB: ModuleDef = ModuleDef::new("fb", plain_init).with_multi_interp(PIG);
static FZ: ModuleDef = ModuleDef::new("f_z", plain_init).with_multi_interp(PIG);

#[test]
fn builtin_table_then_finders_in_order() {
    let rt = runtime();
    rt.register_builtin(&FZ).unwrap();
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let c1 = calls.clone();
    rt.add_finder(move |name| {
        c1.lock().unwrap().push(format!("1:{name}"));
        (name == "f_x").then_some(&FA)
    });
    let c2 = calls.clone();
    rt.add_finder(move |name| {
        c2.lock().unwrap().push(format!("2:{name}"));
        matches!(name, "f_x" | "f_y" | "f_z").then_some(&FB)
    });
    let main = rt.main();
    let x = main.import("f_x").unwrap();
    assert!(std::ptr::eq(x.def().unwrap(), &FA), "the first finder wins");
    assert_eq!(x.name(), "f_x");
    let y = main.import("f_y").unwrap();
    assert!(std::ptr::eq(y.def().unwrap(), &FB));
    let z = main.import("f_z").unwrap();
    assert!(std::ptr::eq(z.def().unwrap(), &FZ), "the builtin table comes first");
    assert_eq!(*calls.lock().unwrap(), ["1:f_x", "1:f_y", "2:f_y"]);
    let err = main.import("nope").unwrap_err();
    assert!(matches!(&err, Error::ModuleNotFound { name } if name == "nope"));
    assert_eq!(err.to_string(), "No module named 'nope'");
    assert_eq!(rt.builtin_module_names(), ["builtins", "f_z", "sys"]);
}

#[test]
fn a_panicking_finder_is_caught() {
    let rt = runtime();
    rt.add_finder(|name| if name == "bad" { panic!("finder bug") } else { None });
    match rt.main().import("bad") {
        Err(Error::CallbackPanicked { context, message }) => {
            assert_eq!(context, "module finder");
            assert_eq!(message, "finder bug");
        }
        r => panic!("{r:?}"),
    }
    assert!(matches!(rt.main().import("good"), Err(Error::ModuleNotFound { .. })));
}

static OTHER_FZ: ModuleDef = ModuleDef::new("f_z", plain_init);
static EMPTY: ModuleDef = ModuleDef::new("", plain_init);
static FAKE_SYS: ModuleDef = ModuleDef::new("sys", plain_init);

#[test]
fn register_builtin_refusals() {
    let rt = runtime();
    rt.register_builtin(&FZ).unwrap();
    rt.register_builtin(&FZ).unwrap(); // same definition: a no-op
    for def in [&OTHER_FZ, &EMPTY, &FAKE_SYS] {
        assert!(matches!(rt.register_builtin(def), Err(Error::ImportError { .. })), "{def:?}");
    }
    let e = rt.register_builtin(&OTHER_FZ).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot import module 'f_z': a different ModuleDef is already registered under this name"
    );
}

static ALIAS_INITS: AtomicUsize = AtomicUsize::new(0);
fn alias_init(_: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    ALIAS_INITS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}
static ALIASED: ModuleDef = ModuleDef::new("aliased", alias_init).with_multi_interp(PIG);

#[test]
fn one_definition_under_two_names_is_one_module() {
    let rt = runtime();
    rt.add_finder(|name| matches!(name, "alias1" | "alias2").then_some(&ALIASED));
    let main = rt.main();
    let a = main.import("alias1").unwrap();
    let b = main.import("alias2").unwrap();
    assert_eq!(a, b);
    assert_eq!(ALIAS_INITS.load(Ordering::SeqCst), 1);
    assert_eq!(a.name(), "alias1");
    // Removing one name keeps it findable by index; removing both does not.
    assert_eq!(main.remove_module("alias1").unwrap(), a);
    assert_eq!(main.find_module(&ALIASED).unwrap(), a);
    main.remove_module("alias2").unwrap();
    assert!(main.find_module(&ALIASED).is_none());
}

// -------------------------------------------------------- shared state

static SHARED_INITS: AtomicUsize = AtomicUsize::new(0);
fn shared_init(m: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    SHARED_INITS.fetch_add(1, Ordering::SeqCst);
    m.set_state(AtomicUsize::new(0));
    m.set_attr("made_in", Arc::new(m.interpreter().id()));
    Ok(())
}
static SHARED: ModuleDef = ModuleDef::new("shared_mod", shared_init).with_multi_interp(PIG).with_shared_state();

#[test]
fn a_shared_state_definition_runs_init_once_per_runtime() {
    let rt = runtime();
    rt.register_builtin(&SHARED).unwrap();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    let ma = a.import("shared_mod").unwrap();
    let mb = b.import("shared_mod").unwrap();
    assert_eq!(SHARED_INITS.load(Ordering::SeqCst), 1);
    assert_ne!(ma, mb, "two module records");
    let (sa, sb) =
        (a.find_module_state::<AtomicUsize>(&SHARED).unwrap(), b.find_module_state::<AtomicUsize>(&SHARED).unwrap());
    assert!(Arc::ptr_eq(&sa, &sb), "one state");
    sa.fetch_add(5, Ordering::SeqCst);
    assert_eq!(sb.load(Ordering::SeqCst), 5);
    assert_eq!(mb.get_attr("made_in").unwrap().downcast_ref::<u64>(), Some(&a.id()), "attributes are copied");
}

// ---------------------------------------------- import and the caller's GIL

#[test]
fn import_from_inside_another_interpreters_gil() {
    let rt = runtime();
    rt.register_builtin(&ONCE_OTHER).unwrap();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    rt.main()
        .with_gil(|g| {
            // A thread holds one GIL at a time: not imported yet, so refused…
            assert!(matches!(sub.import("once_other"), Err(Error::GilHeldByOtherInterpreter { .. })));
            // …but fine after stepping out of main's GIL.
            g.allow_threads(|| sub.import("once_other")).unwrap();
            // Already imported: no GIL needed.
            sub.import("once_other").unwrap();
        })
        .unwrap();
}
static ONCE_OTHER: ModuleDef = ModuleDef::new("once_other", plain_init).with_multi_interp(PIG);
