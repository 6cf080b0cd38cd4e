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

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn dropping_the_runtime_frees_every_record() {
    // Every record holds its runtime, so the runtime's own state (here a
    // finder, which lives in it until it is freed) is dropped only once the
    // last record is gone: the flag below is the proof that no record
    // outlived the drop (a cycle or a lost close would keep it false).
    let rt = rt();
    let gone = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(gone.clone());
    rt.add_finder(move |_| {
        let _ = &flag;
        None
    });
    let main = rt.main();
    let subs: Vec<_> = (0..10).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
    // Some entered (thread states), one legacy (it holds main's heap), one
    // whose last id reference is still held (closed by the runtime's drop).
    for s in &subs[..3] {
        s.with_gil(|_| ()).unwrap();
    }
    let legacy = rt.create(InterpreterConfig::legacy()).unwrap();
    subs[3].set_requires_idref(true);
    subs[3].incref_id().unwrap();
    let ids: Vec<u64> = subs.iter().map(|s| s.id()).collect();
    drop(subs);
    assert_eq!(rt.stats().records_freed, 0, "registered records are alive");
    assert_eq!(rt.len(), 12);
    drop(rt);
    // Only handles are left: main's and the legacy one's. They report
    // closed, and they keep the runtime (and so the finder) alive.
    assert!(main.with_gil(|_| ()).is_err());
    assert!(legacy.with_gil(|_| ()).is_err());
    assert!(!gone.load(Ordering::SeqCst), "the runtime was freed under live handles");
    drop(legacy);
    assert!(!gone.load(Ordering::SeqCst));
    drop(main);
    assert!(gone.load(Ordering::SeqCst), "a record of the dropped runtime is still alive (ids {ids:?})");
}

/// With the production chunk size (64 entries; the unit tests use 2): two
/// churners keep batches of 100 interpreters alive, so chunks fill and new
/// slots open, their ids interleave, so inserts land in the middle of full
/// chunks and split them, and each batch is closed in a scrambled order, so
/// slots empty and the top is replaced, all while a reader looks up every
/// stable interpreter and an iterator checks each snapshot.
#[test]
fn concurrent_create_lookup_iterate_close() {
    const BATCHES: usize = 20;
    const BATCH: usize = 100;
    let rt = Arc::new(rt());
    let stable: Vec<_> = (0..100).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
    let stable_ids: HashSet<u64> = stable.iter().map(|i| i.id()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(4));

    let churners: Vec<_> = (0..2)
        .map(|_| {
            let (rt, stop, start) = (rt.clone(), stop.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut ids = Vec::new();
                for _ in 0..BATCHES {
                    let batch: Vec<_> = (0..BATCH).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
                    for i in &batch {
                        assert_eq!(rt.get(i.id()).unwrap(), *i);
                    }
                    // A fixed scramble of the batch (coprime stride).
                    for k in 0..BATCH {
                        let i = &batch[(k * 37) % BATCH];
                        ids.push(i.id());
                        i.close().unwrap();
                        assert!(rt.get(i.id()).is_err());
                    }
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
    let churned = 2 * BATCHES * BATCH;
    assert_eq!(all_ids.len(), churned);
    assert_eq!(rt.len(), 101);
    assert_eq!(rt.ids().len(), 101);
    assert_eq!(rt.quiesce(), 0);
    assert_eq!(rt.stats().records_freed, churned);
    assert_eq!(rt.stats().deferred_frees, 0);
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
