//! The registry: concurrent create / lookup / iterate / close, and reclamation.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use subinterp::{InterpreterConfig, Runtime, RuntimeConfig};

fn rt() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

#[test]
fn removed_records_are_freed() {
    let rt = rt();
    let n = 200;
    let interps: Vec<_> = (0..n).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
    // Enter each once so this thread has a thread state in each.
    for i in &interps {
        i.with_gil(|_| ()).unwrap();
    }
    assert_eq!(rt.stats().records_freed, 0);
    for i in &interps {
        i.close().unwrap();
    }
    // Handles still exist: the records are tombstones, not freed.
    assert_eq!(rt.quiesce(), 0);
    assert_eq!(rt.stats().records_freed, 0);
    drop(interps);
    assert_eq!(rt.quiesce(), 0, "every deferred free ran");
    assert_eq!(rt.stats().records_freed, n, "every closed record was freed");
    assert_eq!(rt.stats().deferred_frees, 0);
    assert_eq!(rt.stats().live, 1);
}

#[test]
fn dropping_the_runtime_frees_every_record() {
    let rt = rt();
    let main = rt.main();
    let _keep: Vec<_> = (0..10).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
    drop(_keep);
    let counters_probe = rt.stats();
    assert_eq!(counters_probe.records_freed, 0);
    drop(rt);
    // Only `main` (a handle) is left; it reports closed.
    assert!(main.with_gil(|_| ()).is_err());
}

#[test]
fn concurrent_create_lookup_iterate_close() {
    let rt = Arc::new(rt());
    let stable: Vec<_> = (0..100).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
    let stable_ids: HashSet<u64> = stable.iter().map(|i| i.id()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(4));

    // Two churners create and close.
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let (rt, stop, start) = (rt.clone(), stop.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut ids = Vec::new();
                for _ in 0..2_000 {
                    let i = rt.create(InterpreterConfig::isolated()).unwrap();
                    ids.push(i.id());
                    assert_eq!(rt.get(i.id()).unwrap(), i);
                    i.close().unwrap();
                    assert!(rt.get(i.id()).is_err());
                }
                stop.store(true, Ordering::SeqCst);
                ids
            })
        })
        .collect();

    // A reader looks up every stable interpreter; an iterator checks each snapshot.
    let reader = {
        let (rt, stop, start, ids) = (rt.clone(), stop.clone(), start.clone(), stable_ids.clone());
        thread::spawn(move || {
            start.wait();
            let mut rounds = 0u64;
            while !stop.load(Ordering::SeqCst) || rounds < 10 {
                for id in &ids {
                    assert_eq!(rt.get(*id).unwrap().id(), *id);
                }
                rounds += 1;
            }
        })
    };
    let iterator = {
        let (rt, stop, start, ids) = (rt.clone(), stop.clone(), start.clone(), stable_ids.clone());
        thread::spawn(move || {
            start.wait();
            let mut rounds = 0u64;
            while !stop.load(Ordering::SeqCst) || rounds < 10 {
                let seen = rt.ids();
                let set: HashSet<u64> = seen.iter().copied().collect();
                assert_eq!(set.len(), seen.len(), "an interpreter seen twice");
                assert!(seen.windows(2).all(|w| w[0] < w[1]), "snapshot not in id order");
                assert!(ids.is_subset(&set), "a live interpreter was missed");
                assert!(set.contains(&0));
                rounds += 1;
            }
        })
    };
    let mut all_ids = HashSet::new();
    for c in churners {
        for id in c.join().unwrap() {
            assert!(all_ids.insert(id), "id {id} handed out twice");
        }
    }
    reader.join().unwrap();
    iterator.join().unwrap();
    assert_eq!(all_ids.len(), 4_000);
    assert_eq!(rt.len(), 101);
    assert_eq!(rt.quiesce(), 0);
    assert_eq!(rt.stats().records_freed, 4_000);
}

#[test]
fn lookup_scales_to_thousands_of_interpreters() {
    let rt = rt();
    let interps: Vec<_> = (0..3_000).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
    for i in interps.iter().step_by(7) {
        assert_eq!(rt.get(i.id()).unwrap(), *i);
    }
    assert_eq!(rt.interpreters().len(), 3_001);
    // Close every other one; the rest stay findable.
    for i in interps.iter().step_by(2) {
        i.close().unwrap();
    }
    for (n, i) in interps.iter().enumerate() {
        assert_eq!(rt.get(i.id()).is_ok(), n % 2 == 1);
    }
}
