//! Code-extra slots (PEP 523): CPython's rules from `Python/ceval.c`
//! (`PyUnstable_Eval_RequestCodeExtraIndex`) and `Objects/codeobject.c`
//! (`PyUnstable_Code_SetExtra` / `GetExtra`, `code_dealloc`), as
//! `test_capi`'s `test_code_extra` / `test_misc` exercise them, plus the
//! user-code standard for free functions.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use subinterp::{Error, Interpreter, InterpreterConfig, Runtime, RuntimeConfig, MAX_CODE_EXTRA_INDEXES};

fn rt() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

/// Values freed, by free function: (function, value) in order.
static FREED: Mutex<Vec<(&'static str, usize)>> = Mutex::new(Vec::new());

fn take_freed() -> Vec<(&'static str, usize)> {
    std::mem::take(&mut *FREED.lock().unwrap_or_else(|e| e.into_inner()))
}

fn free_a(p: *mut ()) {
    FREED.lock().unwrap().push(("a", p as usize));
}

fn free_b(p: *mut ()) {
    FREED.lock().unwrap().push(("b", p as usize));
}

fn word(n: usize) -> *mut () {
    // An opaque value: never dereferenced by the runtime.
    std::ptr::without_provenance_mut(n)
}

/// The free-function log is process-wide: tests that read it run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    take_freed();
    g
}

/// `test_code_extra`: an index is handed out, get of an unset slot is NULL,
/// set then get returns the value; indexes go 0, 1, … per interpreter.
#[test]
fn test_code_extra() {
    let _s = serial();
    let rt = rt();
    let main = rt.main();
    assert_eq!(main.code_extra_index_count(), 0);
    let i = main.request_code_extra_index(Some(free_a)).unwrap();
    let j = main.request_code_extra_index(None).unwrap();
    assert_eq!((i, j), (0, 1));
    assert_eq!(main.code_extra_index_count(), 2);
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    assert_eq!(sub.request_code_extra_index(None).unwrap(), 0, "indexes are per interpreter");
    main.with_gil(|g| {
        let code = g.code("f", &[], 0).unwrap();
        assert!(code.get_extra(i).unwrap().is_null());
        code.set_extra(i, word(100)).unwrap();
        assert_eq!(code.get_extra(i).unwrap(), word(100));
        assert!(code.get_extra(j).unwrap().is_null());
        // Out of range and never handed out: NULL, no error (CPython).
        assert!(code.get_extra(200).unwrap().is_null());
        assert!(code.get_extra(usize::MAX).unwrap().is_null());
    })
    .unwrap();
    assert_eq!(take_freed(), [("a", 100)], "freed with the code object");
    sub.close().unwrap();
}

/// 254 usable indexes (0..=253); the 255th request is a typed error where
/// CPython returns -1; indexes are never recycled.
#[test]
fn only_254_indexes_and_never_recycled() {
    let rt = rt();
    let main = rt.main();
    for n in 0..MAX_CODE_EXTRA_INDEXES {
        assert_eq!(main.request_code_extra_index(None).unwrap(), n);
    }
    assert_eq!(MAX_CODE_EXTRA_INDEXES, 254);
    let err = main.request_code_extra_index(Some(free_a)).unwrap_err();
    assert!(matches!(err, Error::CodeExtraExhausted { id: 0, limit: 254 }));
    assert!(err.to_string().contains("all 254 code-extra indexes"));
    assert!(main.request_code_extra_index(None).is_err());
    assert_eq!(main.code_extra_index_count(), 254);
    main.with_gil(|g| {
        let code = g.code("f", &[], 0).unwrap();
        code.set_extra(253, word(1)).unwrap();
        assert_eq!(code.get_extra(253).unwrap(), word(1));
        assert!(matches!(code.set_extra(254, word(1)), Err(Error::CodeExtraIndex { index: 254, .. })));
    })
    .unwrap();
}

/// `PyUnstable_Code_SetExtra`'s checks: an index this interpreter did not
/// hand out, and a non-code object, are errors; GetExtra on a non-code
/// object too.
#[test]
fn set_extra_refuses_bad_indexes_and_non_code_objects() {
    let rt = rt();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    sub.request_code_extra_index(None).unwrap();
    sub.request_code_extra_index(None).unwrap();
    rt.main()
        .with_gil(|g| {
            let code = g.code("f", &[], 0).unwrap();
            // Index 0 exists in `sub`, not in main.
            let err = code.set_extra(0, word(1)).unwrap_err();
            assert!(matches!(err, Error::CodeExtraIndex { index: 0, id: 0, count: 0 }));
            assert_eq!(
                err.to_string(),
                "code-extra index 0 was not handed out by interpreter 0 (0 so far); get one from \
                 Interpreter::request_code_extra_index"
            );
            let i = g.interpreter().request_code_extra_index(None).unwrap();
            assert!(matches!(code.set_extra(i + 1, word(1)), Err(Error::CodeExtraIndex { index: 1, count: 1, .. })));
            let list = g.list(&[]).unwrap();
            assert!(matches!(list.set_extra(i, word(1)), Err(Error::TypeError { .. })));
            assert!(matches!(list.get_extra(i), Err(Error::TypeError { .. })));
            assert!(code.get_extra(i).unwrap().is_null(), "nothing was set by the refused calls");
        })
        .unwrap();
    sub.close().unwrap();
}

/// Replacing a value calls the index's free function on the old one (not
/// on the new one); setting NULL frees the old value; an index without a
/// free function frees nothing; at dealloc each set slot's value is freed
/// once.
#[test]
fn replacing_and_dealloc_call_the_free_function() {
    let _s = serial();
    let rt = rt();
    let main = rt.main();
    let a = main.request_code_extra_index(Some(free_a)).unwrap();
    let none = main.request_code_extra_index(None).unwrap();
    let b = main.request_code_extra_index(Some(free_b)).unwrap();
    main.with_gil(|g| {
        let code = g.code("f", &[], 0).unwrap();
        code.set_extra(a, word(1)).unwrap();
        assert!(take_freed().is_empty());
        code.set_extra(a, word(2)).unwrap();
        assert_eq!(take_freed(), [("a", 1)]);
        code.set_extra(a, null_mut()).unwrap();
        assert_eq!(take_freed(), [("a", 2)]);
        code.set_extra(a, null_mut()).unwrap();
        assert!(take_freed().is_empty(), "an empty slot frees nothing");
        code.set_extra(none, word(3)).unwrap();
        code.set_extra(none, word(4)).unwrap();
        assert!(take_freed().is_empty(), "no free function for this index");
        code.set_extra(b, word(5)).unwrap();
        code.set_extra(a, word(6)).unwrap();
        drop(code);
        let mut freed = take_freed();
        freed.sort();
        assert_eq!(freed, [("a", 6), ("b", 5)]);
    })
    .unwrap();
}

/// A code object freed by the collector (in a cycle through its
/// constants), and one still alive at close: both call the free functions.
#[test]
fn collected_and_torn_down_code_objects_call_the_free_function() {
    let _s = serial();
    let rt = rt();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    let a = sub.request_code_extra_index(Some(free_a)).unwrap();
    let kept = sub
        .with_gil(|g| {
            let l = g.list(&[]).unwrap();
            let code = g.code("cyclic", std::slice::from_ref(&l), 0).unwrap();
            l.list_append(&code).unwrap();
            code.set_extra(a, word(10)).unwrap();
            drop((l, code));
            assert!(take_freed().is_empty(), "the cycle keeps it alive");
            assert!(g.gc_collect(2).unwrap().collected >= 2);
            assert_eq!(take_freed(), [("a", 10)]);
            assert!(g.gc_take_errors().is_empty());
            // Kept alive until the close.
            let kept = g.code("kept", &[], 0).unwrap();
            kept.set_extra(a, word(11)).unwrap();
            kept.to_owned()
        })
        .unwrap();
    let report = sub.close().unwrap();
    assert_eq!(take_freed(), [("a", 11)]);
    drop(kept); // after the close: does nothing (the close freed the object)
    assert!(take_freed().is_empty());
    assert!(report.gc_errors.is_empty());
    assert_eq!(report.leaked.live_blocks, 0);
}

/// The free function is the code object's own interpreter's: two
/// interpreters with different functions at the same index.
#[test]
fn the_free_function_is_the_code_objects_own_interpreters() {
    let _s = serial();
    let rt = rt();
    let (x, y) = (rt.create(InterpreterConfig::isolated()).unwrap(), rt.create(InterpreterConfig::isolated()).unwrap());
    assert_eq!(x.request_code_extra_index(Some(free_a)).unwrap(), 0);
    assert_eq!(y.request_code_extra_index(Some(free_b)).unwrap(), 0);
    let in_x = x
        .with_gil(|g| {
            let code = g.code("fx", &[], 0).unwrap();
            code.set_extra(0, word(1)).unwrap();
            code.to_owned()
        })
        .unwrap();
    y.with_gil(|g| {
        let code = g.code("fy", &[], 0).unwrap();
        code.set_extra(0, word(2)).unwrap();
        // Dropping `x`'s code object from here queues its release to `x`.
        drop(in_x);
    })
    .unwrap();
    assert_eq!(take_freed(), [("b", 2)]);
    x.with_gil(|g| g.checkpoint().unwrap()).unwrap();
    assert_eq!(take_freed(), [("a", 1)]);
    x.close().unwrap();
    y.close().unwrap();
}

fn free_panics(_p: *mut ()) {
    panic!("free function exploded");
}

/// A panicking free function: on replace, `set_extra` returns the panic
/// (the new value is in place); at dealloc it is reported like the other
/// callbacks' (`gc_take_errors`); nothing is corrupted.
#[test]
fn a_panicking_free_function_is_caught() {
    let rt = rt();
    let main = rt.main();
    let i = main.request_code_extra_index(Some(free_panics)).unwrap();
    main.with_gil(|g| {
        let code = g.code("f", &[], 0).unwrap();
        code.set_extra(i, word(1)).unwrap();
        let err = code.set_extra(i, word(2)).unwrap_err();
        assert!(matches!(&err, Error::CallbackPanicked { context: "code-extra free function", message } if message == "free function exploded"));
        assert_eq!(code.get_extra(i).unwrap(), word(2));
        drop(code);
        let errors = g.gc_take_errors();
        assert_eq!(errors.len(), 1);
        assert!(matches!(&errors[0], Error::CallbackPanicked { context: "code-extra free function", .. }));
        let l = g.list(&[g.int(1).unwrap()]).unwrap();
        assert_eq!(l.len().unwrap(), 1);
    })
    .unwrap();
    let report = main.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0);
}

static REENTERED: AtomicUsize = AtomicUsize::new(0);

/// A free function that re-enters the interpreter it is called in: it
/// allocates, collects and sets a slot of another code object.
fn free_reenters(_p: *mut ()) {
    static INSIDE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if INSIDE.swap(true, Ordering::SeqCst) {
        return; // the inner set-to-NULL below frees through here once more
    }
    let Some(interp) = Interpreter::current() else { return };
    interp
        .with_gil(|g| {
            let l = g.list(&[g.int(1).unwrap()]).unwrap();
            g.gc_collect(2).unwrap();
            let other = g.code("other", std::slice::from_ref(&l), 0).unwrap();
            other.set_extra(0, word(99)).unwrap();
            other.set_extra(0, null_mut()).unwrap();
            REENTERED.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    INSIDE.store(false, Ordering::SeqCst);
}

#[test]
fn a_re_entering_free_function() {
    let rt = rt();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    assert_eq!(sub.request_code_extra_index(Some(free_reenters)).unwrap(), 0);
    sub.with_gil(|g| {
        let code = g.code("f", &[], 0).unwrap();
        code.set_extra(0, word(1)).unwrap();
        code.set_extra(0, word(2)).unwrap(); // replace: re-enters
        drop(code); // dealloc: re-enters
        let l = g.list(&[]).unwrap();
        let c2 = g.code("cyclic", std::slice::from_ref(&l), 0).unwrap();
        l.list_append(&c2).unwrap();
        c2.set_extra(0, word(3)).unwrap();
        drop((l, c2));
        g.gc_collect(2).unwrap(); // collection: re-enters
        assert!(g.gc_take_errors().is_empty());
    })
    .unwrap();
    // Replace, dealloc, the collection.
    assert_eq!(REENTERED.load(Ordering::SeqCst), 3);
    let report = sub.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0);
}

/// Indexes requested from several threads at once, with and without a GIL:
/// all distinct, exactly 254 handed out, the rest refused.
#[test]
fn concurrent_requests_hand_out_distinct_indexes() {
    let rt = rt();
    let sub = rt.create(InterpreterConfig::isolated()).unwrap();
    let got = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4 {
            let (sub, got) = (&sub, &got);
            s.spawn(move || {
                let mut mine = Vec::new();
                let mut refused = 0;
                for _ in 0..80 {
                    let r = if t % 2 == 0 {
                        sub.request_code_extra_index(None)
                    } else {
                        sub.with_gil(|_| sub.request_code_extra_index(Some(free_a))).unwrap()
                    };
                    match r {
                        Ok(i) => mine.push(i),
                        Err(Error::CodeExtraExhausted { .. }) => refused += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                got.lock().unwrap().extend(mine);
                refused
            });
        }
    });
    let mut all = got.into_inner().unwrap();
    all.sort_unstable();
    assert_eq!(all, (0..MAX_CODE_EXTRA_INDEXES).collect::<Vec<_>>());
    sub.close().unwrap();
}
