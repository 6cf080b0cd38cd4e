//! Registry: concurrent create / lookup / iterate / close; id refcount vs
//! close; the chunk split and an emptied slot racing an insert, with the
//! registry's loom-only branch counters asserted so that the models cannot
//! silently stop reaching those paths; a lookup racing the record's last
//! handle (the production strong + weak entry ownership).

use std::collections::BTreeMap;
use std::sync::Mutex as StdMutex;

use loom::sync::Arc;
use loom::thread;
use subinterp::{Error, InterpreterConfig, InterpreterState, Runtime, RuntimeConfig};

/// Branch counts of one model, summed over its executions.
struct Coverage(StdMutex<BTreeMap<&'static str, usize>>);

impl Coverage {
    const fn new() -> Self {
        Coverage(StdMutex::new(BTreeMap::new()))
    }
    /// Adds this execution's counts.
    fn add(&self, rt: &Runtime) {
        let mut m = self.0.lock().unwrap();
        for (name, n) in rt.loom_registry_branches() {
            *m.entry(name).or_default() += n;
        }
    }
    /// Asserts that every branch in `names` ran in some execution.
    fn assert_reached(&self, model: &str, names: &[&str]) {
        let m = self.0.lock().unwrap();
        for name in names {
            assert!(m.get(name).copied().unwrap_or(0) > 0, "{model} never reached `{name}`: {m:?}");
        }
    }
}

#[test]
fn create_lookup_iterate_close() {
    // (Capped at two preemptions in CI: see the docs.)
    crate::model_capped(2, || {
        let rt = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let a_id = a.id();

        // Another thread creates one, looks both up and iterates.
        let rt2 = rt.clone();
        let t = thread::spawn(move || {
            let b = rt2.create(InterpreterConfig::isolated()).unwrap();
            assert_eq!(rt2.get(b.id()).unwrap(), b);
            // `a` may or may not be closed yet, but a lookup never sees freed memory.
            if let Ok(found) = rt2.get(a_id) {
                assert_eq!(found.id(), a_id);
            }
            let ids = rt2.ids();
            assert!(ids.contains(&0) && ids.contains(&b.id()), "live interpreters are all seen: {ids:?}");
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "each seen once, in order");
            b.id()
        });
        a.close().unwrap();
        assert!(matches!(rt.get(a_id), Err(Error::InterpreterNotFound { .. })));
        let b_id = t.join().unwrap();
        assert_ne!(a_id, b_id, "ids are unique");
        assert_eq!(rt.ids(), vec![0, b_id]);
    });
}

#[test]
fn two_closers_one_wins() {
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let a2 = a.clone();
        let t = thread::spawn(move || a2.close().is_ok());
        let mine = a.close().is_ok();
        let theirs = t.join().unwrap();
        // Exactly one close succeeds: the other sees "closed" or, while the
        // winner holds the GIL to finalize, "running" (and nothing changes).
        assert!(mine ^ theirs, "mine={mine} theirs={theirs}");
        assert_eq!(a.state(), InterpreterState::Closed);
    });
}

#[test]
fn last_decref_races_close() {
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        a.set_requires_idref(true);
        a.incref_id().unwrap();
        let a2 = a.clone();
        let t = thread::spawn(move || a2.decref_id());
        let closed_by_me = a.close();
        t.join().unwrap().unwrap();
        // Whoever came first, the interpreter ends closed exactly once and
        // the other side got a clean answer.
        assert_eq!(a.state(), InterpreterState::Closed);
        match closed_by_me {
            Ok(_) | Err(Error::InterpreterClosed { .. }) | Err(Error::InterpreterRunning { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(rt.get(a.id()).is_err());
    });
}

#[test]
fn decref_while_a_thread_is_inside_closes_on_exit() {
    // Kills `ignore_close_request`.
    crate::model(|| {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        a.set_requires_idref(true);
        a.incref_id().unwrap();
        let a2 = a.clone();
        let t = thread::spawn(move || {
            // May run before or after the close; either way it never hangs.
            let _ = a2.with_gil(|g| g.checkpoint());
        });
        a.decref_id().unwrap();
        t.join().unwrap();
        assert_eq!(a.state(), InterpreterState::Closed, "the close was not lost");
    });
}

static SPLIT: Coverage = Coverage::new();

#[test]
fn concurrent_creates_split_a_full_chunk() {
    // Main alone (chunk [0]), then two creators race: when id 2 lands first
    // the chunk is [0, 2], full (chunks hold 2 entries under loom), and id 1
    // goes in its middle, which splits it.
    crate::model(|| {
        let rt = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
        let rt2 = rt.clone();
        let t = thread::spawn(move || rt2.create(InterpreterConfig::isolated()).unwrap());
        let mine = rt.create(InterpreterConfig::isolated()).unwrap();
        let theirs = t.join().unwrap();
        let mut expect = vec![0, mine.id(), theirs.id()];
        expect.sort();
        assert_eq!(rt.ids(), expect);
        for id in expect {
            assert_eq!(rt.get(id).unwrap().id(), id);
        }
        SPLIT.add(&rt);
    });
    SPLIT.assert_reached("concurrent_creates_split_a_full_chunk", &["split", "appended_slot"]);
}

static EMPTIED: Coverage = Coverage::new();

#[test]
fn an_emptied_slot_races_an_insert() {
    // Slots [0: (0, 1)] [2: (2)]. Closing 2 empties the second slot, which
    // replaces the top (freeze every slot, copy, publish); creating 3 goes to
    // that same slot, so its swing races the freeze. Kills
    // `registry_no_freeze` (the insert is lost from the new top). (Capped at
    // two preemptions in CI: see the docs.)
    crate::model_capped(2, || {
        let rt = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let b = rt.create(InterpreterConfig::isolated()).unwrap();
        assert_eq!((a.id(), b.id()), (1, 2));
        let closer = thread::spawn(move || b.close().unwrap());
        let c = rt.create(InterpreterConfig::isolated()).unwrap();
        closer.join().unwrap();
        assert_eq!(rt.ids(), vec![0, 1, c.id()]);
        assert_eq!(rt.get(c.id()).unwrap(), c);
        assert!(rt.get(2).is_err());
        assert_eq!(rt.len(), 3);
        EMPTIED.add(&rt);
    });
    EMPTIED.assert_reached("an_emptied_slot_races_an_insert", &["emptied_slot", "helped", "slot_changed"]);
}

static UPGRADE: Coverage = Coverage::new();

#[test]
fn a_lookup_races_the_last_handle() {
    // A reader finds the entry, then the interpreter closes and its last
    // handle goes before the reader upgrades: the entry's weak count keeps
    // the allocation valid and the upgrade fails cleanly; the record is freed
    // exactly once, by whoever dropped its last strong count.
    crate::model(|| {
        let rt = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
        let a = rt.create(InterpreterConfig::isolated()).unwrap();
        let id = a.id();
        let rt2 = rt.clone();
        let reader = thread::spawn(move || match rt2.get(id) {
            Ok(found) => assert_eq!(found.id(), id),
            Err(e) => assert!(matches!(e, Error::InterpreterNotFound { .. }), "{e:?}"),
        });
        a.close().unwrap();
        drop(a);
        reader.join().unwrap();
        assert_eq!(rt.quiesce(), 0);
        assert_eq!(rt.stats().records_freed, 1);
        UPGRADE.add(&rt);
    });
    UPGRADE.assert_reached("a_lookup_races_the_last_handle", &["upgrade_failed"]);
}

#[test]
fn main_close_races_a_create() {
    // Main's close and a create each make one read-modify-write on the same
    // word (the create announces itself, the close claims main's close), so
    // one always sees the other: main never ends Closed while a
    // subinterpreter it never saw lives on.
    crate::model(|| {
        let rt = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
        let rt2 = rt.clone();
        let creator = thread::spawn(move || rt2.create(InterpreterConfig::isolated()));
        let main = rt.main();
        let closed = main.close();
        let created = creator.join().unwrap();
        match (&closed, &created) {
            // The create came first: main refuses to close.
            (Err(Error::MainHasSubinterpreters { remaining: 1 }), Ok(sub)) => {
                assert_eq!(main.state(), InterpreterState::Ready);
                assert_eq!(sub.state(), InterpreterState::Ready);
                assert_eq!(rt.ids(), vec![0, sub.id()]);
            }
            // The close came first: the create is refused and leaves nothing.
            (Ok(_), Err(Error::InterpreterClosed { id: 0 })) => {
                assert_eq!(main.state(), InterpreterState::Closed);
                assert!(rt.ids().is_empty(), "{:?}", rt.ids());
            }
            other => panic!("main close vs create: {other:?}"),
        }
        assert!(
            !(main.state() == InterpreterState::Closed
                && created.as_ref().is_ok_and(|s| s.state() == InterpreterState::Ready)),
            "main closed under a live subinterpreter"
        );
    });
}
