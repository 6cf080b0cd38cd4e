//! The warnings machinery, test by test after CPython's
//! `Lib/test/test_warnings/__init__.py` (same names, same values), plus what
//! goes beyond CPython: per-thread `catch_warnings`, a panicking and a
//! re-entering output sink.
//!
//! CPython's tests warn from a function of the test module, so repeats come
//! from one line of one module: here `warn_in(.., &module, LINE)`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;

use subinterp::{Error, Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig, WarningMessage};

const LINE: u64 = 42;

/// A filter as (action, message, category name, module, lineno).
type FilterRow = (String, Option<String>, String, Option<String>, u64);

/// Runs `f` in a fresh interpreter.
fn with(f: impl for<'i> FnOnce(Gil<'i>) + Send + 'static) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    i.with_gil(f).unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0, "nothing left in the heap at close: {report:?}");
    assert!(report.teardown_errors.is_empty() && report.gc_errors.is_empty(), "{report:?}");
}

fn cat<'i>(g: Gil<'i>, name: &str) -> Obj<'i> {
    g.warning_category(name).unwrap()
}

/// `catch_warnings(record=True)` around `f`.
fn recorded<'i>(g: Gil<'i>, f: impl FnOnce(Gil<'i>)) -> Vec<WarningMessage> {
    g.catch_warnings(true, f).unwrap().1
}

fn registry_keys<'i>(g: Gil<'i>, m: &Obj<'i>) -> Vec<String> {
    let reg = m.module_dict().unwrap().dict_get(&g.str("__warningregistry__").unwrap()).unwrap().unwrap();
    reg.dict_items()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k.as_str().map(str::to_owned).unwrap_or_else(|| k.type_name()))
        .collect()
}

fn is_warning(e: &Error, category: &str, message: &str) -> bool {
    matches!(e, Error::Warning { category: c, message: m } if c == category && m == message)
}

#[test]
fn test_ignore() {
    with(|g| {
        let m = g.new_module("test_warnings").unwrap();
        let w = recorded(g, |g| {
            g.resetwarnings().unwrap();
            g.filterwarnings("ignore", "", Some(&cat(g, "UserWarning")), "", 0, false).unwrap();
            g.warn_in("FilterTests.test_ignore", Some(&cat(g, "UserWarning")), &m, LINE).unwrap();
        });
        assert_eq!(w.len(), 0);
        assert_eq!(registry_keys(g, &m), ["version"]);
    });
}

#[test]
fn test_ignore_after_default() {
    with(|g| {
        let m = g.new_module("test_warnings").unwrap();
        let w = recorded(g, |g| {
            g.resetwarnings().unwrap();
            let f = || g.warn_in("FilterTests.test_ignore_after_default", None, &m, LINE).unwrap();
            f();
            g.filterwarnings("ignore", "", Some(&cat(g, "UserWarning")), "", 0, false).unwrap();
            f();
            f();
        });
        assert_eq!(w.len(), 1);
    });
}

#[test]
fn test_always() {
    with(|g| {
        let m = g.new_module("test_warnings").unwrap();
        let msg = "FilterTests.test_always";
        let w = recorded(g, |g| {
            g.resetwarnings().unwrap();
            g.filterwarnings("always", "", Some(&cat(g, "UserWarning")), "", 0, false).unwrap();
            g.warn_in(msg, None, &m, LINE).unwrap();
            g.warn_in(msg, None, &m, LINE).unwrap();
        });
        assert_eq!(w.len(), 2);
        assert!(w.iter().all(|x| x.message == msg));
    });
}

#[test]
fn test_always_after_default() {
    with(|g| {
        let m = g.new_module("test_warnings").unwrap();
        let msg = "FilterTests.test_always_after_ignore";
        let counts = RefCell::new(Vec::new());
        let w = recorded(g, |g| {
            g.resetwarnings().unwrap();
            let f = || g.warn_in(msg, None, &m, LINE).unwrap();
            f();
            f();
            // The record is returned at the end: count through a nested scope.
            g.filterwarnings("always", "", Some(&cat(g, "UserWarning")), "", 0, false).unwrap();
            for _ in 0..2 {
                counts.borrow_mut().push(recorded(g, |_| f()).len());
            }
        });
        assert_eq!(w.len(), 1, "default: one from the line");
        assert_eq!(*counts.borrow(), [1, 1], "always: each time");
    });
}

#[test]
fn test_default() {
    with(|g| {
        let m = g.new_module("test_warnings").unwrap();
        let w = recorded(g, |g| {
            g.resetwarnings().unwrap();
            g.filterwarnings("default", "", Some(&cat(g, "UserWarning")), "", 0, false).unwrap();
            for _ in 0..2 {
                g.warn_in("FilterTests.test_default", None, &m, LINE).unwrap();
            }
            // Another line is another location.
            g.warn_in("FilterTests.test_default", None, &m, LINE + 1).unwrap();
        });
        assert_eq!(w.iter().map(|x| x.lineno).collect::<Vec<_>>(), [LINE, LINE + 1]);
    });
}

#[test]
fn test_module() {
    with(|g| {
        let m = g.new_module("test_warnings").unwrap();
        let w = recorded(g, |g| {
            g.resetwarnings().unwrap();
            g.filterwarnings("module", "", Some(&cat(g, "UserWarning")), "", 0, false).unwrap();
            g.warn_in("FilterTests.test_module", None, &m, LINE).unwrap();
            g.warn_in("FilterTests.test_module", None, &m, LINE).unwrap();
            g.warn_in("FilterTests.test_module", None, &m, LINE + 1).unwrap(); // once per module
        });
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].message, "FilterTests.test_module");
    });
}

#[test]
fn test_once() {
    with(|g| {
        let w = recorded(g, |g| {
            g.resetwarnings().unwrap();
            g.filterwarnings("once", "", Some(&cat(g, "UserWarning")), "", 0, false).unwrap();
            g.warn_explicit("FilterTests.test_once", None, "__init__.py", 42, None, None).unwrap();
            g.warn_explicit("FilterTests.test_once", None, "__init__.py", 13, None, None).unwrap();
            g.warn_explicit("FilterTests.test_once", None, "test_warnings2.py", 42, None, None).unwrap();
        });
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].filename.as_str(), w[0].lineno), ("__init__.py", 42));
    });
}

#[test]
fn test_error() {
    with(|g| {
        g.catch_warnings(false, |g| {
            g.resetwarnings().unwrap();
            g.filterwarnings("error", "", Some(&cat(g, "UserWarning")), "", 0, false).unwrap();
            let e = g.warn("FilterTests.test_error", None).unwrap_err();
            assert!(is_warning(&e, "UserWarning", "FilterTests.test_error"), "{e}");
            assert_eq!(e.to_string(), "UserWarning: FilterTests.test_error");
        })
        .unwrap();
    });
}

#[test]
fn test_error_after_default() {
    with(|g| {
        let m = g.new_module("test_warnings").unwrap();
        let out = Rc::new(RefCell::new(String::new()));
        let o = out.clone();
        g.set_warning_output(Some(Rc::new(move |t: &str| o.borrow_mut().push_str(t)))).unwrap();
        g.catch_warnings(false, |g| {
            g.resetwarnings().unwrap();
            let msg = "FilterTests.test_ignore_after_default";
            g.warn_in(msg, None, &m, LINE).unwrap();
            assert!(out.borrow().contains("UserWarning: FilterTests.test_ignore_after_default"));
            g.filterwarnings("error", "", Some(&cat(g, "UserWarning")), "", 0, false).unwrap();
            // The registry entry of the shown warning was reset by the mutation.
            assert!(is_warning(&g.warn_in(msg, None, &m, LINE).unwrap_err(), "UserWarning", msg));
        })
        .unwrap();
    });
}

#[test]
fn test_inheritance() {
    with(|g| {
        g.catch_warnings(false, |g| {
            g.resetwarnings().unwrap();
            g.filterwarnings("error", "", Some(&cat(g, "Warning")), "", 0, false).unwrap();
            let e = g.warn("FilterTests.test_inheritance", Some(&cat(g, "UserWarning"))).unwrap_err();
            assert!(is_warning(&e, "UserWarning", "FilterTests.test_inheritance"));
        })
        .unwrap();
    });
}

#[test]
fn test_ordering() {
    with(|g| {
        let w = recorded(g, |g| {
            g.resetwarnings().unwrap();
            let uw = cat(g, "UserWarning");
            g.filterwarnings("ignore", "", Some(&uw), "", 0, false).unwrap();
            g.filterwarnings("error", "", Some(&uw), "", 0, true).unwrap();
            g.warn("FilterTests.test_ordering", Some(&uw)).expect("order handling for actions failed");
        });
        assert_eq!(w.len(), 0);
    });
}

#[test]
fn test_filterwarnings() {
    with(|g| {
        let w = recorded(g, |g| {
            let warning = cat(g, "Warning");
            g.filterwarnings("error", "", Some(&warning), "", 0, false).unwrap();
            assert!(is_warning(&g.warn("convert to error", None).unwrap_err(), "UserWarning", "convert to error"));
            g.resetwarnings().unwrap();
            g.warn("handle normally", None).unwrap();
            g.filterwarnings("ignore", "", Some(&warning), "", 0, false).unwrap();
            g.warn("filtered out", None).unwrap();
            g.resetwarnings().unwrap();
            g.filterwarnings("error", "hex*", Some(&warning), "", 0, false).unwrap();
            assert!(g.warn("hex/oct", None).is_err());
            g.warn("nonmatching text", None).unwrap();
        });
        let texts: Vec<_> = w.iter().map(|x| (x.message.as_str(), x.category.as_str())).collect();
        assert_eq!(texts, [("handle normally", "UserWarning"), ("nonmatching text", "UserWarning")]);
    });
}

#[test]
fn test_message_matching() {
    with(|g| {
        let w = recorded(g, |g| {
            let uw = cat(g, "UserWarning");
            g.simplefilter("ignore", Some(&uw), 0, false).unwrap();
            g.filterwarnings("error", "match", Some(&uw), "", 0, false).unwrap();
            assert!(is_warning(&g.warn("match", None).unwrap_err(), "UserWarning", "match"));
            assert!(g.warn("match prefix", None).is_err());
            assert!(g.warn("MATCH prefix", None).is_err(), "IGNORECASE");
            g.warn("suffix match", None).unwrap(); // anchored at the start
            g.warn("something completely different", None).unwrap();
        });
        assert_eq!(w, []);
    });
}

#[test]
fn test_module_matching_is_case_sensitive() {
    with(|g| {
        g.catch_warnings(false, |g| {
            g.resetwarnings().unwrap();
            g.filterwarnings("error", "", None, "spam", 0, false).unwrap();
            let spam = g.new_module("spam.eggs").unwrap();
            let other = g.new_module("Spam").unwrap();
            assert!(g.warn_in("m", None, &spam, 1).is_err(), "prefix match like re.match");
            g.set_warning_output(Some(Rc::new(|_: &str| {}))).unwrap();
            g.warn_in("m", None, &other, 1).unwrap();
        })
        .unwrap();
    });
}

#[test]
fn test_mutate_filter_list() {
    // CPython's filter objects mutate the list while it is searched; here the
    // search reads a snapshot, so a sink that resets the filters in the
    // middle of a warning changes only the next warnings.
    with(|g| {
        let i = g.interpreter().clone();
        g.simplefilter("always", None, 0, false).unwrap();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        g.set_warning_output(Some(Rc::new(move |t: &str| {
            s.borrow_mut().push(t.to_owned());
            i.with_gil(|g| g.simplefilter("ignore", None, 0, false).unwrap()).unwrap();
        })))
        .unwrap();
        g.warn_explicit("b", None, "f.py", 42, None, None).unwrap();
        g.warn_explicit("b", None, "f.py", 42, None, None).unwrap();
        assert_eq!(*seen.borrow(), ["f.py:42: UserWarning: b\n"]);
    });
}

#[test]
fn test_filterwarnings_duplicate_filters() {
    with(|g| {
        g.catch_warnings(false, |g| {
            let uw = cat(g, "UserWarning");
            g.resetwarnings().unwrap();
            g.filterwarnings("error", "", Some(&uw), "", 0, false).unwrap();
            assert_eq!(g.warnings_filters().unwrap().len(), 1);
            g.filterwarnings("ignore", "", Some(&uw), "", 0, false).unwrap();
            g.filterwarnings("error", "", Some(&uw), "", 0, false).unwrap();
            let f = g.warnings_filters().unwrap();
            assert_eq!(f.len(), 2, "filterwarnings inserted duplicate filter");
            assert_eq!(f[0].action, "error", "filterwarnings did not promote filter to the beginning of list");
        })
        .unwrap();
    });
}

#[test]
fn test_simplefilter_duplicate_filters() {
    with(|g| {
        g.catch_warnings(false, |g| {
            let uw = cat(g, "UserWarning");
            g.resetwarnings().unwrap();
            g.simplefilter("error", Some(&uw), 0, false).unwrap();
            assert_eq!(g.warnings_filters().unwrap().len(), 1);
            g.simplefilter("ignore", Some(&uw), 0, false).unwrap();
            g.simplefilter("error", Some(&uw), 0, false).unwrap();
            let f = g.warnings_filters().unwrap();
            assert_eq!(f.len(), 2, "simplefilter inserted duplicate filter");
            assert_eq!(f[0].action, "error");
        })
        .unwrap();
    });
}

#[test]
fn test_append_duplicate() {
    with(|g| {
        let w = recorded(g, |g| {
            g.resetwarnings().unwrap();
            g.simplefilter("ignore", None, 0, false).unwrap();
            g.simplefilter("error", None, 0, true).unwrap();
            g.simplefilter("ignore", None, 0, true).unwrap();
            g.warn("test_append_duplicate", Some(&cat(g, "UserWarning"))).unwrap();
            assert_eq!(g.warnings_filters().unwrap().len(), 2, "simplefilter inserted duplicate filter");
        });
        assert_eq!(w.len(), 0, "appended duplicate changed order of filters");
    });
}

#[test]
fn test_onceregistry() {
    with(|g| {
        let m = g.new_module("test_warnings").unwrap();
        let counts = RefCell::new(Vec::new());
        recorded(g, |g| {
            g.resetwarnings().unwrap();
            g.filterwarnings("once", "", Some(&cat(g, "UserWarning")), "", 0, false).unwrap();
            let n = |f: &dyn Fn()| recorded(g, |_| f()).len();
            let explicit = || g.warn_explicit("onceregistry test", None, "file", 42, None, None).unwrap();
            counts.borrow_mut().push(n(&explicit));
            counts.borrow_mut().push(n(&explicit));
            // Resetting the once registry (and the module's) shows it again.
            g.warnings_onceregistry().unwrap().clear().unwrap();
            m.module_dict().unwrap().dict_del(&g.str("__warningregistry__").unwrap()).unwrap();
            counts.borrow_mut().push(n(&|| g.warn_in("onceregistry test", None, &m, LINE).unwrap()));
            counts.borrow_mut().push(n(&explicit));
        });
        assert_eq!(*counts.borrow(), [1, 0, 1, 0]);
    });
}

#[test]
fn test_default_action() {
    with(|g| {
        assert_eq!(g.warnings_default_action().unwrap(), "default");
        let msg = "defaultaction test";
        let w = recorded(g, |g| {
            g.resetwarnings().unwrap();
            let registry = g.dict().unwrap();
            g.warn_explicit(msg, None, "<test>", 42, None, Some(&registry)).unwrap();
            // One actual registry key plus the "version" key.
            assert_eq!(registry.len().unwrap(), 2);
            assert!(registry.dict_get(&g.str("version").unwrap()).unwrap().is_some());
            g.set_warnings_default_action("ignore").unwrap();
            let registry = g.dict().unwrap();
            g.warn_explicit(msg, None, "<test>", 44, None, Some(&registry)).unwrap();
            g.set_warnings_default_action("default").unwrap();
        });
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].lineno, 42);
    });
}

#[test]
fn test_filename_none() {
    // A module whose __file__ is None still warns (issue #12467).
    with(|g| {
        let m = g.new_module("test_warnings").unwrap();
        m.module_dict().unwrap().dict_set(&g.str("__file__").unwrap(), &g.none().unwrap()).unwrap();
        let w = recorded(g, |g| {
            g.filterwarnings("always", "", Some(&cat(g, "UserWarning")), "", 0, false).unwrap();
            g.warn_in("test", None, &m, 1).unwrap();
        });
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].filename, "test_warnings");
    });
}

#[test]
fn test_module_derived_from_filename() {
    // warn_explicit's module=None: the filename without ".py".
    with(|g| {
        g.resetwarnings().unwrap();
        g.filterwarnings("error", "", None, "spam\\Z", 0, false).unwrap();
        assert!(g.warn_explicit("m", None, "spam.py", 1, None, None).is_err());
        g.simplefilter("ignore", None, 0, true).unwrap();
        g.warn_explicit("m", None, "spam.pyc", 1, None, None).unwrap();
        g.warn_explicit("m", None, "", 1, None, None).unwrap();
    });
}

#[test]
fn test_catch_warnings_restore() {
    with(|g| {
        let before: Vec<String> = g.warnings_filters().unwrap().into_iter().map(|f| f.action).collect();
        for record in [true, false] {
            g.catch_warnings(record, |g| {
                g.resetwarnings().unwrap();
                g.simplefilter("error", None, 0, false).unwrap();
            })
            .unwrap();
            let after: Vec<String> = g.warnings_filters().unwrap().into_iter().map(|f| f.action).collect();
            assert_eq!(after, before);
        }
        // Left by a panic: restored too.
        let i = g.interpreter().clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            i.with_gil(|g| {
                g.catch_warnings(false, |g| {
                    g.resetwarnings().unwrap();
                    panic!("inside");
                })
            })
        }));
        assert!(r.is_err());
        assert_eq!(g.warnings_filters().unwrap().len(), before.len());
    });
}

#[test]
fn test_catch_warnings_defaults() {
    with(|g| {
        let out = Rc::new(RefCell::new(0));
        let o = out.clone();
        g.set_warning_output(Some(Rc::new(move |_: &str| *o.borrow_mut() += 1))).unwrap();
        let ((), w) = g
            .catch_warnings(false, |g| {
                g.simplefilter("always", None, 0, false).unwrap();
                g.warn("to the output", None).unwrap();
            })
            .unwrap();
        assert_eq!((w.len(), *out.borrow()), (0, 1));
    });
}

#[test]
fn test_default_filter_configuration() {
    with(|g| {
        let f = g.warnings_filters().unwrap();
        let got: Vec<FilterRow> = f
            .iter()
            .map(|f| {
                let name = ["DeprecationWarning", "PendingDeprecationWarning", "ImportWarning", "ResourceWarning"]
                    .into_iter()
                    .find(|n| f.category.is(&cat(g, n)))
                    .unwrap_or("?")
                    .to_owned();
                (f.action.clone(), f.message.clone(), name, f.module.clone(), f.lineno)
            })
            .collect();
        let want = [
            ("default", Some("__main__"), "DeprecationWarning"),
            ("ignore", None, "DeprecationWarning"),
            ("ignore", None, "PendingDeprecationWarning"),
            ("ignore", None, "ImportWarning"),
            ("ignore", None, "ResourceWarning"),
        ]
        .map(|(a, m, c)| (a.to_owned(), None, c.to_owned(), m.map(str::to_owned), 0));
        assert_eq!(got, want);
        // So a DeprecationWarning is shown from __main__ only.
        let main = g.new_module("__main__").unwrap();
        let other = g.new_module("lib").unwrap();
        let dep = cat(g, "DeprecationWarning");
        let w = recorded(g, |g| {
            g.warn_in("old", Some(&dep), &main, 1).unwrap();
            g.warn_in("old", Some(&dep), &other, 1).unwrap();
        });
        assert_eq!(w.iter().map(|x| x.filename.as_str()).collect::<Vec<_>>(), ["__main__"]);
    });
}

#[test]
fn test_formatwarning() {
    with(|g| {
        let text = g.formatwarning("msg", &cat(g, "Warning"), "warning_tests.py", 5).unwrap();
        assert_eq!(text, "warning_tests.py:5: Warning: msg\n");
    });
}

#[test]
fn test_improper_input() {
    with(|g| {
        let e = g.filterwarnings("bogus", "", None, "", 0, false).unwrap_err();
        assert_eq!(e.to_string(), "ValueError: invalid action: 'bogus'");
        let e = g.simplefilter("x", None, 0, false).unwrap_err();
        assert_eq!(e.to_string(), "ValueError: invalid action: 'x'");
        let int = g.builtin_type(subinterp::Kind::Int).unwrap();
        let e = g.filterwarnings("ignore", "", Some(&int), "", 0, false).unwrap_err();
        assert_eq!(e.to_string(), "TypeError: category must be a Warning subclass");
        let e = g.warn("m", Some(&int)).unwrap_err();
        assert_eq!(e.to_string(), "TypeError: category must be a Warning subclass, not 'type'");
        let e = g.warn("m", Some(&g.str("x").unwrap())).unwrap_err();
        assert_eq!(e.to_string(), "TypeError: category must be a Warning subclass, not 'str'");
        assert!(matches!(g.filterwarnings("ignore", "(", None, "", 0, false), Err(Error::ValueError { .. })));
        assert_eq!(g.warnings_filters().unwrap().len(), 5, "nothing added by the refused calls");
    });
}

#[test]
fn test_bad_filters_list() {
    // Assigning warnings.filters directly: CPython checks the items when a
    // search reaches them, with these texts.
    with(|g| {
        let uw = cat(g, "UserWarning");
        let none = g.none().unwrap();
        let item = |a| g.tuple(&[a, none.clone(), uw.clone(), none.clone(), g.int(0).unwrap()]).unwrap();
        g.set_warnings_filters_list(&g.list(&[item(g.str("bogus").unwrap())]).unwrap()).unwrap();
        let e = g.warn("m", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "RuntimeError: Unrecognized action ('bogus') in warnings.filters:\n ('bogus', None, <class 'UserWarning'>, None, 0)"
        );
        g.set_warnings_filters_list(&g.list(&[g.int(5).unwrap()]).unwrap()).unwrap();
        assert_eq!(g.warn("m", None).unwrap_err().to_string(), "ValueError: _warnings.filters item 0 isn't a 5-tuple");
        g.set_warnings_filters_list(&g.list(&[item(g.int(5).unwrap())]).unwrap()).unwrap();
        assert_eq!(g.warn("m", None).unwrap_err().to_string(), "TypeError: action must be a string, not 'int'");
        // A malformed item after the matching one is never reached.
        let ok = item(g.str("ignore").unwrap());
        g.set_warnings_filters_list(&g.list(&[ok, g.int(5).unwrap()]).unwrap()).unwrap();
        g.warn("m", None).unwrap();
        // A plain str message must be equal (C's check_matched).
        let exact = g
            .tuple(&[g.str("error").unwrap(), g.str("spam").unwrap(), uw.clone(), none.clone(), g.int(0).unwrap()])
            .unwrap();
        g.set_warnings_filters_list(&g.list(&[exact]).unwrap()).unwrap();
        assert!(g.warn("spam", None).is_err());
        g.set_warning_output(Some(Rc::new(|_: &str| {}))).unwrap();
        g.warn("spam and eggs", None).unwrap();
        // An unknown default action.
        g.resetwarnings().unwrap();
        g.set_warnings_default_action("zz").unwrap();
        assert_eq!(
            g.warn("m", None).unwrap_err().to_string(),
            "RuntimeError: Unrecognized action ('zz') in warnings.filters:\n None"
        );
    });
}

#[test]
fn test_registry_version() {
    // Every filter mutation bumps the version by one; a registry stamped
    // with an older one is cleared: a warning shown once under "default" is
    // shown again.
    with(|g| {
        let m = g.new_module("test_warnings").unwrap();
        g.set_warning_output(Some(Rc::new(|_: &str| {}))).unwrap();
        g.simplefilter("default", None, 0, false).unwrap();
        let v = g.warnings_filters_version().unwrap();
        let w = recorded(g, |g| {
            g.warn_in("m", None, &m, 1).unwrap();
            g.warn_in("m", None, &m, 1).unwrap();
        });
        assert_eq!(w.len(), 1);
        assert_eq!(g.warnings_filters_version().unwrap(), v + 2, "entering and leaving catch_warnings");
        let reg = m.module_dict().unwrap().dict_get(&g.str("__warningregistry__").unwrap()).unwrap().unwrap();
        assert_eq!(reg.dict_get(&g.str("version").unwrap()).unwrap().unwrap().as_int(), Some(v as i64 + 1));
        for mutate in [0, 1, 2] {
            let v = g.warnings_filters_version().unwrap();
            match mutate {
                0 => g.filterwarnings("default", "x", None, "", 0, true).unwrap(),
                1 => g.simplefilter("default", None, 0, false).unwrap(),
                _ => {
                    g.resetwarnings().unwrap();
                    g.simplefilter("default", None, 0, false).unwrap();
                }
            }
            assert!(g.warnings_filters_version().unwrap() > v);
            let mut shown = 0;
            // Outside catch_warnings (which bumps the version itself).
            let seen = Rc::new(RefCell::new(0));
            let s = seen.clone();
            g.set_warning_output(Some(Rc::new(move |_: &str| *s.borrow_mut() += 1))).unwrap();
            g.warn_in("m", None, &m, 1).unwrap();
            g.warn_in("m", None, &m, 1).unwrap();
            shown += *seen.borrow();
            assert_eq!(shown, 1, "shown again after mutation {mutate}");
        }
    });
}

#[test]
fn test_concurrent_catch_warnings_are_per_thread() {
    // Two threads of one interpreter: A's temporary "error" filter is never
    // seen by B, which warns while A is inside its scope.
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let (to_b, b_rx) = mpsc::channel::<()>();
    let (to_a, a_rx) = mpsc::channel::<()>();
    let ia = i.clone();
    let a = std::thread::spawn(move || {
        ia.with_gil(|g| {
            let ((), w) = g
                .catch_warnings(true, |g| {
                    g.simplefilter("error", None, 0, false).unwrap();
                    g.allow_threads(move || {
                        to_b.send(()).unwrap();
                        a_rx.recv().unwrap();
                    });
                    assert!(g.warn("in A", None).is_err(), "A still sees its own filter");
                    g.simplefilter("always", None, 0, false).unwrap();
                    g.warn("recorded in A", None).unwrap();
                })
                .unwrap();
            assert_eq!(w.len(), 1);
            g.warnings_filters().unwrap().len()
        })
        .unwrap()
    });
    let ib = i.clone();
    let b = std::thread::spawn(move || {
        b_rx.recv().unwrap();
        let r = ib
            .with_gil(|g| {
                let seen = Rc::new(RefCell::new(Vec::new()));
                let s = seen.clone();
                g.set_warning_output(Some(Rc::new(move |t: &str| s.borrow_mut().push(t.to_owned())))).unwrap();
                assert_eq!(g.warnings_filters().unwrap().len(), 5, "B sees the interpreter's filters");
                g.warn("from B", None).unwrap();
                // B's own scope, nested in time with A's.
                let ((), w) = g
                    .catch_warnings(true, |g| {
                        g.simplefilter("ignore", None, 0, false).unwrap();
                        g.warn("ignored in B", None).unwrap();
                    })
                    .unwrap();
                assert!(w.is_empty());
                g.set_warning_output(None).unwrap();
                let out = seen.borrow().clone();
                out
            })
            .unwrap();
        to_a.send(()).unwrap();
        r
    });
    assert_eq!(b.join().unwrap(), ["<sys>:0: UserWarning: from B\n"]);
    assert_eq!(a.join().unwrap(), 5, "A's scope is gone after it");
    i.close().unwrap();
}

#[test]
fn test_panicking_output() {
    with(|g| {
        g.simplefilter("always", None, 0, false).unwrap();
        g.set_warning_output(Some(Rc::new(|_: &str| panic!("sink broke")))).unwrap();
        let e = g.warn("m", None).unwrap_err();
        assert!(matches!(&e, Error::CallbackPanicked { message, .. } if message == "sink broke"), "{e}");
        // Still usable: filters intact, a new sink works.
        let n = Rc::new(RefCell::new(0));
        let c = n.clone();
        g.set_warning_output(Some(Rc::new(move |_: &str| *c.borrow_mut() += 1))).unwrap();
        g.warn("m", None).unwrap();
        assert_eq!(*n.borrow(), 1);
        assert_eq!(g.warnings_filters().unwrap()[0].action, "always");
    });
}

#[test]
fn test_reentering_output() {
    with(|g| {
        g.simplefilter("always", None, 0, false).unwrap();
        let i = g.interpreter().clone();
        let lines = Rc::new(RefCell::new(Vec::new()));
        let l = lines.clone();
        g.set_warning_output(Some(Rc::new(move |t: &str| {
            l.borrow_mut().push(t.to_owned());
            if t.contains("outer") {
                i.with_gil(|g| g.warn("inner", None).unwrap()).unwrap();
            }
        })))
        .unwrap();
        g.warn("outer", None).unwrap();
        assert_eq!(*lines.borrow(), ["<sys>:0: UserWarning: outer\n", "<sys>:0: UserWarning: inner\n"]);
        // A sink that always warns again is stopped, not a stack overflow.
        let i = g.interpreter().clone();
        let depth = Rc::new(RefCell::new(0));
        let d = depth.clone();
        g.set_warning_output(Some(Rc::new(move |_: &str| {
            *d.borrow_mut() += 1;
            let r = i.with_gil(|g| g.warn("again", None)).unwrap();
            if let Err(e) = r {
                panic!("{e}");
            }
        })))
        .unwrap();
        let e = g.warn("loop", None).unwrap_err();
        assert!(e.to_string().contains("RecursionError"), "{e}");
        assert_eq!(*depth.borrow(), 8);
        g.set_warning_output(None).unwrap();
        g.simplefilter("ignore", None, 0, false).unwrap();
        g.warn("fine", None).unwrap();
    });
}

#[test]
fn test_interpreters_are_isolated() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let a = rt.create(InterpreterConfig::isolated()).unwrap();
    let b = rt.create(InterpreterConfig::isolated()).unwrap();
    a.with_gil(|g| g.simplefilter("error", None, 0, false).unwrap()).unwrap();
    b.with_gil(|g| {
        assert_eq!(g.warnings_filters().unwrap().len(), 5);
        g.set_warning_output(Some(Rc::new(|_: &str| {}))).unwrap();
        g.warn("m", None).unwrap();
    })
    .unwrap();
    a.with_gil(|g| assert!(g.warn("m", None).is_err())).unwrap();
    a.close().unwrap();
    b.close().unwrap();
}

#[test]
fn test_finalization() {
    // The state goes with the interpreter: the sink is dropped at close, a
    // sink whose drop panics is a teardown error, not a crash; the heap is
    // empty after (filters, registries and categories freed).
    struct Noisy(Rc<RefCell<u32>>, bool);
    impl Drop for Noisy {
        fn drop(&mut self) {
            *self.0.borrow_mut() += 1;
            if self.1 {
                panic!("sink drop");
            }
        }
    }
    for panics in [false, true] {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let i = rt.create(InterpreterConfig::isolated()).unwrap();
        let drops = Rc::new(RefCell::new(0));
        let d = drops.clone();
        i.with_gil(move |g| {
            let m = g.new_module("late").unwrap();
            let noisy = Noisy(d, panics);
            g.set_warning_output(Some(Rc::new(move |_: &str| {
                let _ = &noisy;
            })))
            .unwrap();
            g.simplefilter("default", None, 0, false).unwrap();
            g.filterwarnings("once", "x", Some(&g.new_class("Mine", &[cat(g, "UserWarning")]).unwrap()), "", 0, false)
                .unwrap();
            g.warn_in("at close", None, &m, 1).unwrap();
            g.warn("at close", None).unwrap();
        })
        .unwrap();
        let report = i.close().unwrap();
        assert_eq!(*drops.borrow(), 1);
        assert_eq!(report.leaked.live_blocks, 0, "{report:?}");
        if panics {
            assert!(
                matches!(
                    &report.gc_errors[..],
                    [Error::CallbackPanicked { context: "drop of the warnings output", .. }]
                ),
                "{report:?}"
            );
        } else {
            assert!(report.gc_errors.is_empty() && report.teardown_errors.is_empty(), "{report:?}");
        }
    }
}

#[test]
fn test_always_alias_all() {
    // CPython 3.14 accepts "all" as an alias of "always".
    with(|g| {
        let m = g.new_module("test_warnings").unwrap();
        let w = recorded(g, |g| {
            g.simplefilter("all", None, 0, false).unwrap();
            g.warn_in("m", None, &m, LINE).unwrap();
            g.warn_in("m", None, &m, LINE).unwrap();
        });
        assert_eq!(w.len(), 2);
        assert_eq!(registry_keys(g, &m), ["version"], "always does not touch the registry");
    });
}

#[test]
fn test_improper_option() {
    // CPython's _setoption texts (OptionTests / -W handling).
    with(|g| {
        let err = |arg: &str| g.warnings_option(arg).unwrap_err().to_string();
        assert_eq!(err("1:2:3:4:5:6"), "ValueError: too many fields (max 5): '1:2:3:4:5:6'");
        assert_eq!(err("bogus::Warning"), "ValueError: invalid action: 'bogus'");
        assert_eq!(err("ignore:2::4:-5"), "ValueError: invalid lineno '-5'");
        assert_eq!(err("ignore::123"), "ValueError: unknown warning category: '123'");
        assert_eq!(err("ignore::Exception"), "ValueError: invalid warning category: 'Exception'");
        assert_eq!(err("ignore::nosuchmodule.Warning"), "ValueError: invalid module name: 'nosuchmodule'");
        assert_eq!(g.warnings_filters().unwrap().len(), 5, "nothing added");
    });
}

#[test]
fn test_options() {
    with(|g| {
        g.resetwarnings().unwrap();
        g.warnings_option("").unwrap();
        g.warnings_option("e:Hello (world):UserWarning:spam.eggs:7").unwrap();
        let f = g.warnings_filters().unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].action, "default");
        assert!(f[1].category.is(&cat(g, "Warning")));
        assert_eq!(f[0].action, "error");
        assert_eq!(f[0].lineno, 7);
        // The message is literal (and case-insensitive), the module whole.
        let e = g.warn_explicit("hello (WORLD) again", None, "f.py", 7, Some("spam.eggs"), None).unwrap_err();
        assert!(is_warning(&e, "UserWarning", "hello (WORLD) again"));
        g.set_warning_output(Some(Rc::new(|_: &str| {}))).unwrap();
        g.warn_explicit("hello (WORLD)", None, "f.py", 7, Some("spam.eggs2"), None).unwrap();
        g.warn_explicit("hello world", None, "f.py", 7, Some("spam.eggs"), None).unwrap();
    });
}
