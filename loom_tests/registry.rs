//! Registry: concurrent create / lookup / iterate / close; id refcount vs close.

use loom::sync::Arc;
use loom::thread;
use subinterp::{Error, InterpreterConfig, InterpreterState, Runtime, RuntimeConfig};

#[test]
fn create_lookup_iterate_close() {
    crate::model(|| {
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

#[test]
fn concurrent_creates_keep_the_list_sorted() {
    // Two creators race: ids may be inserted out of order, which splits
    // chunks (chunks hold 2 entries under loom).
    crate::model(|| {
        let rt = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
        let first = rt.create(InterpreterConfig::isolated()).unwrap();
        let rt2 = rt.clone();
        let t = thread::spawn(move || rt2.create(InterpreterConfig::isolated()).unwrap().id());
        let mine = rt.create(InterpreterConfig::isolated()).unwrap().id();
        let theirs = t.join().unwrap();
        let mut expect = vec![0, first.id(), mine, theirs];
        expect.sort();
        assert_eq!(rt.ids(), expect);
        for id in expect {
            assert_eq!(rt.get(id).unwrap().id(), id);
        }
    });
}
