//! The built-in exception hierarchy (`docs/exceptions.md`): CPython 3.13's
//! names, bases and MROs (as `Lib/test/exception_hierarchy.txt` lists them),
//! one set of classes per interpreter, made lazily and released at close,
//! shared with the warnings categories and the codecs' exception objects.

use std::cell::RefCell;
use std::rc::Rc;

use subinterp::{
    CloseReport, Error, Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig, EXCEPTION_CLASSES, WARNING_CATEGORIES,
};

/// Runs `f` in a fresh interpreter, closes it and checks nothing leaked.
fn with_report<R>(f: impl for<'i> FnOnce(Gil<'i>) -> R) -> (R, CloseReport) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let r = i.with_gil(f).unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0, "nothing left in the heap at close: {report:?}");
    assert!(report.gc_errors.is_empty() && report.teardown_errors.is_empty(), "{report:?}");
    (r, report)
}

fn with<R>(f: impl for<'i> FnOnce(Gil<'i>) -> R) -> R {
    with_report(f).0
}

fn class<'i>(g: Gil<'i>, name: &str) -> Obj<'i> {
    g.exception_class(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn names(classes: &[Obj<'_>]) -> Vec<String> {
    classes.iter().map(|c| c.class_name().unwrap()).collect()
}

fn mro(g: Gil<'_>, name: &str) -> Vec<String> {
    names(&class(g, name).mro().unwrap())
}

fn bases(g: Gil<'_>, name: &str) -> Vec<String> {
    names(&class(g, name).bases().unwrap())
}

#[test]
fn mros_are_cpythons() {
    with(|g| {
        assert_eq!(
            mro(g, "UnicodeDecodeError"),
            ["UnicodeDecodeError", "UnicodeError", "ValueError", "Exception", "BaseException", "object"]
        );
        assert_eq!(
            mro(g, "ModuleNotFoundError"),
            ["ModuleNotFoundError", "ImportError", "Exception", "BaseException", "object"]
        );
        assert_eq!(
            mro(g, "ConnectionResetError"),
            ["ConnectionResetError", "ConnectionError", "OSError", "Exception", "BaseException", "object"]
        );
        assert_eq!(
            mro(g, "TabError"),
            ["TabError", "IndentationError", "SyntaxError", "Exception", "BaseException", "object"]
        );
        assert_eq!(
            mro(g, "ExceptionGroup"),
            ["ExceptionGroup", "BaseExceptionGroup", "Exception", "BaseException", "object"]
        );
        assert_eq!(bases(g, "ExceptionGroup"), ["BaseExceptionGroup", "Exception"]);
        assert_eq!(mro(g, "BaseException"), ["BaseException", "object"]);
        assert_eq!(mro(g, "KeyboardInterrupt"), ["KeyboardInterrupt", "BaseException", "object"]);
        assert_eq!(
            mro(g, "RecursionError"),
            ["RecursionError", "RuntimeError", "Exception", "BaseException", "object"]
        );
        assert_eq!(bases(g, "PythonFinalizationError"), ["RuntimeError"]);
        assert_eq!(bases(g, "ZeroDivisionError"), ["ArithmeticError"]);
        assert_eq!(bases(g, "KeyError"), ["LookupError"]);
        assert_eq!(bases(g, "UnboundLocalError"), ["NameError"]);
        assert_eq!(bases(g, "TimeoutError"), ["OSError"]);
        assert_eq!(bases(g, "DeprecationWarning"), ["Warning"]);
        assert_eq!(bases(g, "Warning"), ["Exception"]);
    })
}

#[test]
fn every_name_is_a_class_under_base_exception() {
    with(|g| {
        let base = class(g, "BaseException");
        let exception = class(g, "Exception");
        for name in EXCEPTION_CLASSES {
            let c = class(g, name);
            assert_eq!(c.class_name().unwrap(), name);
            assert!(c.issubclass(&base).unwrap(), "{name}");
            let not_exception =
                ["BaseException", "BaseExceptionGroup", "GeneratorExit", "KeyboardInterrupt", "SystemExit"];
            assert_eq!(c.issubclass(&exception).unwrap(), !not_exception.contains(&name), "{name}");
        }
        assert_eq!(EXCEPTION_CLASSES.len(), 68);
        // The aliases are the same class.
        assert!(class(g, "IOError").is(&class(g, "OSError")));
        assert!(class(g, "EnvironmentError").is(&class(g, "OSError")));
        // Calling a class makes an instance of it.
        let e = class(g, "KeyError").call(&[]).unwrap();
        assert!(e.isinstance(&class(g, "LookupError")).unwrap());
        // A subclass of one, as `class MyError(ValueError)`.
        let mine = g.new_class("MyError", &[class(g, "ValueError")]).unwrap();
        assert!(mine.issubclass(&exception).unwrap());
    })
}

#[test]
fn unknown_name_is_cpythons_attribute_error() {
    with(|g| {
        let e = g.exception_class("NoSuchError").unwrap_err();
        assert!(
            matches!(&e, Error::AttributeError { message } if message == "module 'builtins' has no attribute 'NoSuchError'"),
            "{e}"
        );
        assert!(matches!(g.exception_class("object"), Err(Error::AttributeError { .. })));
        assert!(matches!(g.exception_class("_IncompleteInputError"), Err(Error::AttributeError { .. })));
    })
}

#[test]
fn one_class_per_name_per_interpreter() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    let in_a = a
        .with_gil(|g| {
            let v = class(g, "ValueError");
            assert!(v.is(&class(g, "ValueError")));
            assert!(class(g, "UnicodeError").bases().unwrap()[0].is(&v));
            v.addr()
        })
        .unwrap();
    let in_b = b.with_gil(|g| class(g, "ValueError").addr()).unwrap();
    assert_ne!(in_a, in_b, "each interpreter has its own classes");
    // A change to one interpreter's class is not seen by the other.
    a.with_gil(|g| class(g, "ValueError").setattr("marker", &g.int(1).unwrap()).unwrap()).unwrap();
    b.with_gil(|g| assert!(class(g, "ValueError").getattr("marker").unwrap().is_none())).unwrap();
    for i in [a, b] {
        let report = i.close().unwrap();
        assert_eq!(report.leaked.live_blocks, 0, "{report:?}");
    }
}

#[test]
fn classes_are_made_lazily_and_freed_at_close() {
    let ((), none) = with_report(|_| ());
    // TabError makes its chain of five; KeyboardInterrupt its two.
    let ((), tab) = with_report(|g| drop(class(g, "TabError")));
    let ((), kbd) = with_report(|g| drop(class(g, "KeyboardInterrupt")));
    assert_eq!(tab.objects_freed - kbd.objects_freed, 3, "{tab:?} {kbd:?}");
    let ((), all) = with_report(|g| {
        for name in EXCEPTION_CLASSES {
            class(g, name);
        }
    });
    assert!(all.objects_freed >= none.objects_freed + EXCEPTION_CLASSES.len(), "{none:?} {all:?}");
    // Instances, subclasses and attributes on the classes go too
    // (`with_report` checks the heap is empty).
    with(|g| {
        let v = class(g, "ValueError");
        let sub = g.new_class("Sub", std::slice::from_ref(&v)).unwrap();
        let inst = sub.call(&[]).unwrap();
        v.setattr("last", &inst).unwrap(); // a cycle through the cached class
        inst.setattr("cls", &sub).unwrap();
    });
}

#[test]
fn warning_categories_are_the_hierarchys() {
    with(|g| {
        assert!(g.warning_category("Exception").unwrap().is(&class(g, "Exception")));
        assert!(g.warning_category("BaseException").unwrap().is(&class(g, "BaseException")));
        let exception = class(g, "Exception");
        for name in WARNING_CATEGORIES {
            let c = g.warning_category(name).unwrap();
            assert!(c.is(&class(g, name)), "{name}");
            assert!(c.issubclass(&g.exception_class("BaseException").unwrap()).unwrap());
            if name != "BaseException" {
                assert!(c.issubclass(&exception).unwrap(), "{name}");
            }
        }
        assert_eq!(bases(g, "Warning"), ["Exception"]);
    });
    // Categories made first (by a warning), the hierarchy after: the same classes.
    with(|g| {
        let (_, log) = g.catch_warnings(true, |g| g.warn("first", None).unwrap()).unwrap();
        assert_eq!(log[0].category, "UserWarning");
        assert!(g.warning_category("UserWarning").unwrap().is(&class(g, "UserWarning")));
    });
    with(|g| {
        let user = g.warning_category("UserWarning").unwrap();
        assert!(user.is(&class(g, "UserWarning")));
        assert!(user.bases().unwrap()[0].is(&class(g, "Warning")));
    });
}

#[test]
fn codec_handler_receives_a_unicode_decode_error() {
    with(|g| {
        let seen: Rc<RefCell<Vec<bool>>> = Rc::default();
        let log = seen.clone();
        let h = g
            .function("h", &[], move |g, _, args| {
                let exc = &args[0];
                for name in ["UnicodeDecodeError", "UnicodeError", "ValueError", "Exception", "BaseException"] {
                    log.borrow_mut().push(exc.isinstance(&g.exception_class(name)?)?);
                }
                log.borrow_mut().push(exc.isinstance(&g.exception_class("UnicodeEncodeError")?)?);
                g.tuple(&[g.str("?")?, exc.getattr("end")?.unwrap()])
            })
            .unwrap();
        g.codec_register_error("test.check", &h).unwrap();
        let out = g.decode(&g.bytes(b"a\xffb").unwrap(), "ascii", Some("test.check")).unwrap();
        assert_eq!(out.as_str(), Some("a?b"));
        assert_eq!(*seen.borrow(), [true, true, true, true, true, false]);
        // The public constructors make the same classes' instances.
        let e = g.unicode_encode_error("ascii", &g.str("é").unwrap(), 0, 1, "ouch").unwrap();
        assert!(e.get_type().unwrap().is(&class(g, "UnicodeEncodeError")));
        let t = g.unicode_translate_error(&g.str("é").unwrap(), 0, 1, "ouch").unwrap();
        assert!(t.isinstance(&class(g, "UnicodeError")).unwrap());
    })
}

#[test]
fn builtin_handlers_take_subclasses_not_lookalikes() {
    with(|g| {
        let replace = g.codec_lookup_error(Some("replace")).unwrap();
        // An instance of a subclass of UnicodeDecodeError (PyObject_TypeCheck).
        let sub = g.new_class("MyDecodeError", &[class(g, "UnicodeDecodeError")]).unwrap();
        let e = g.instance_of(&sub).unwrap();
        let template = g.unicode_decode_error("ascii", &g.bytes(b"\xff").unwrap(), 0, 1, "ouch").unwrap();
        for attr in ["encoding", "object", "start", "end", "reason"] {
            e.setattr(attr, &template.getattr(attr).unwrap().unwrap()).unwrap();
        }
        let r = replace.call(&[e]).unwrap();
        assert_eq!(r.get_item(0).unwrap().as_str(), Some("\u{fffd}"));
        // A plain class that only has the name is not one.
        let fake = g.instance("UnicodeDecodeError").unwrap();
        for attr in ["encoding", "object", "start", "end", "reason"] {
            fake.setattr(attr, &template.getattr(attr).unwrap().unwrap()).unwrap();
        }
        let err = replace.call(&[fake]).unwrap_err();
        assert!(
            matches!(&err, Error::TypeError { message } if message == "don't know how to handle UnicodeDecodeError in error callback"),
            "{err}"
        );
    })
}

#[test]
fn errors_name_their_class() {
    with(|g| {
        let err = g.int(1).unwrap().setattr("x", &g.none().unwrap()).unwrap_err();
        assert_eq!(err.exception_name(), Some("AttributeError"));
        assert!(g.exception_class_of(&err).unwrap().unwrap().is(&class(g, "AttributeError")));
        let err = g.decode(&g.bytes(b"\xff").unwrap(), "ascii", None).unwrap_err();
        let cls = g.exception_class_of(&err).unwrap().unwrap();
        assert!(cls.issubclass(&class(g, "ValueError")).unwrap());
        let err = g.codec_lookup("no-such-codec").unwrap_err();
        assert_eq!(err.exception_name(), Some("LookupError"));
        assert!(g.exception_class_of(&Error::raised("MyError", "x")).unwrap().is_none());
        let warned = Error::Warning { category: "UserWarning".into(), message: "m".into() };
        assert_eq!(warned.exception_name(), Some("UserWarning"));
        assert_eq!(Error::Interrupted { id: 0 }.exception_name(), Some("KeyboardInterrupt"));
        assert_eq!(Error::InterpreterNotFound { id: 7 }.exception_name(), None);
        // Every name it gives is a class of the hierarchy.
        for e in
            [Error::ThreadExiting, Error::Overflow { operation: "int add" }, Error::IndexError { index: 1, len: 0 }]
        {
            assert!(g.exception_class_of(&e).unwrap().is_some(), "{e}");
        }
    })
}
