//! Isolation rules (CPython's `Py_mod_multiple_interpreters` gate): which
//! interpreter may load which definition, the error text, and no trace left
//! by a refusal.

use std::sync::atomic::{AtomicUsize, Ordering};

use subinterp::{
    Error, GilMode, InitError, Interpreter, InterpreterConfig, ModuleDef, ModuleInit, MultiInterp, Runtime,
    RuntimeConfig,
};

static INITS: AtomicUsize = AtomicUsize::new(0);
fn init(_: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    INITS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

static NOT_SUPPORTED: ModuleDef = ModuleDef::new("iso_ns", init).with_multi_interp(MultiInterp::NotSupported);
static SUPPORTED: ModuleDef = ModuleDef::new("iso_s", init); // the default, as CPython's
static PER_GIL: ModuleDef = ModuleDef::new("iso_pig", init).with_multi_interp(MultiInterp::PerInterpreterGil);

fn quiet_init(_: &mut ModuleInit<'_, '_>) -> Result<(), InitError> {
    Ok(()) // (not `init`: the other test counts its calls)
}
static DEFAULT: ModuleDef = ModuleDef::new("iso_default", quiet_init);
static EXPLICIT: ModuleDef = ModuleDef::new("iso_explicit", quiet_init).with_multi_interp(MultiInterp::Supported);

#[test]
fn the_default_is_supported_like_cpython() {
    // A definition that says nothing loads where CPython's default
    // (`Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED`) loads: everywhere but an
    // own-GIL interpreter that checks, exactly like one that says `Supported`.
    assert_eq!(DEFAULT.multi_interp(), MultiInterp::Supported);
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    rt.register_builtin(&DEFAULT).unwrap();
    rt.register_builtin(&EXPLICIT).unwrap();
    let own = rt.create(InterpreterConfig::isolated()).unwrap();
    let shared = rt.create(InterpreterConfig { gil: GilMode::Shared, ..InterpreterConfig::isolated() }).unwrap();
    let legacy = rt.create(InterpreterConfig::legacy()).unwrap();
    for (interp, allowed) in [(&rt.main(), true), (&own, false), (&shared, true), (&legacy, true)] {
        let default = interp.import(DEFAULT.name());
        let explicit = interp.import(EXPLICIT.name());
        assert_eq!(default.is_ok(), allowed, "interp {}: {default:?}", interp.id());
        assert_eq!(explicit.is_ok(), allowed, "interp {}: {explicit:?}", interp.id());
        if !allowed {
            assert!(matches!(default, Err(Error::ModuleIsolation { .. })), "{default:?}");
        }
    }
}

#[test]
fn refusals_follow_cpython() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    for d in [&NOT_SUPPORTED, &SUPPORTED, &PER_GIL] {
        rt.register_builtin(d).unwrap();
    }
    let own = rt.create(InterpreterConfig::isolated()).unwrap();
    let shared_checked =
        rt.create(InterpreterConfig { gil: GilMode::Shared, ..InterpreterConfig::isolated() }).unwrap();
    let legacy = rt.create(InterpreterConfig::legacy()).unwrap();
    let main = rt.main();

    // (interpreter, [ns, s, pig] allowed?)
    let cases: [(&Interpreter, [bool; 3]); 4] = [
        (&main, [true, true, true]),            // main: never refused
        (&own, [false, false, true]),           // own GIL, check on
        (&shared_checked, [false, true, true]), // main's GIL, check on
        (&legacy, [true, true, true]),          // check off
    ];
    for (interp, allowed) in cases {
        for (def, ok) in [&NOT_SUPPORTED, &SUPPORTED, &PER_GIL].into_iter().zip(allowed) {
            let before = INITS.load(Ordering::SeqCst);
            let r = interp.import(def.name());
            if ok {
                assert!(r.is_ok(), "interp {} should load {}: {r:?}", interp.id(), def.name());
                assert_eq!(INITS.load(Ordering::SeqCst), before + 1);
                assert!(interp.find_module(def).is_some());
            } else {
                let e = r.unwrap_err();
                assert!(
                    matches!(&e, Error::ModuleIsolation { name, id } if name == def.name() && *id == interp.id()),
                    "{e:?}"
                );
                assert_eq!(e.to_string(), format!("module {} does not support loading in subinterpreters", def.name()));
                assert_eq!(INITS.load(Ordering::SeqCst), before, "init did not run");
                assert!(interp.find_module(def).is_none());
                assert!(interp.get_module(def.name()).is_none());
            }
        }
    }
}
