//! Registry lookup by id, against `Mutex<Vec>` and `RwLock<HashMap>` baselines
//! measured in the same run, with 1 and 1,000 live interpreters, idle and
//! while another thread creates and closes interpreters.
//!
//! `cargo bench --bench registry`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;

use criterion::{criterion_group, criterion_main, Criterion};
use subinterp::{InterpreterConfig, Runtime, RuntimeConfig};

/// Stand-in record for the baselines (what a lookup hands back: a shared handle).
struct Rec {
    id: u64,
}

fn ids_cycle(ids: &[u64]) -> impl FnMut() -> u64 + '_ {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ids[(x % ids.len() as u64) as usize]
    }
}

/// What a churn thread mutates.
#[derive(Clone, Copy)]
enum ChurnKind {
    Registry,
    MutexVec,
    RwLockMap,
}

/// A background thread that keeps creating and closing interpreters at full
/// speed: in the registry, or the same insert + remove traffic on a baseline.
struct Churn {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Churn {
    fn start(
        kind: ChurnKind,
        rt: Arc<Runtime>,
        vec: Arc<Mutex<Vec<Arc<Rec>>>>,
        map: Arc<RwLock<HashMap<u64, Arc<Rec>>>>,
    ) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = thread::spawn(move || {
            let mut next = 1_000_000u64;
            while !s.load(Ordering::Relaxed) {
                next += 1;
                match kind {
                    ChurnKind::Registry => {
                        let i = rt.create(InterpreterConfig::isolated()).unwrap();
                        i.close().unwrap();
                    }
                    ChurnKind::MutexVec => {
                        vec.lock().unwrap().push(Arc::new(Rec { id: next }));
                        vec.lock().unwrap().retain(|r| r.id != next);
                    }
                    ChurnKind::RwLockMap => {
                        map.write().unwrap().insert(next, Arc::new(Rec { id: next }));
                        map.write().unwrap().remove(&next);
                    }
                }
            }
        });
        Churn { stop, handle: Some(handle) }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

fn bench_lookup(c: &mut Criterion) {
    for live in [1usize, 1_000] {
        let rt = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
        let interps: Vec<_> =
            (0..live.saturating_sub(1)).map(|_| rt.create(InterpreterConfig::isolated()).unwrap()).collect();
        let ids: Vec<u64> = rt.ids();
        assert_eq!(ids.len(), live);
        let vec: Arc<Mutex<Vec<Arc<Rec>>>> = Arc::new(Mutex::new(ids.iter().map(|&id| Arc::new(Rec { id })).collect()));
        let map: Arc<RwLock<HashMap<u64, Arc<Rec>>>> =
            Arc::new(RwLock::new(ids.iter().map(|&id| (id, Arc::new(Rec { id }))).collect()));

        for churn in [false, true] {
            let tag = if churn { "churn" } else { "idle" };
            let mut g = c.benchmark_group(format!("registry_lookup/{live}_live/{tag}"));
            let start = |kind| churn.then(|| Churn::start(kind, rt.clone(), vec.clone(), map.clone()));

            let _churn = start(ChurnKind::Registry);
            let mut next = ids_cycle(&ids);
            g.bench_function("subinterp_registry", |b| b.iter(|| black_box(rt.get(black_box(next())).unwrap())));
            drop(_churn);

            let _churn = start(ChurnKind::MutexVec);
            let mut next = ids_cycle(&ids);
            g.bench_function("baseline_mutex_vec_scan", |b| {
                b.iter(|| {
                    let id = black_box(next());
                    let v = vec.lock().unwrap();
                    black_box(v.iter().find(|r| r.id == id).cloned().unwrap())
                })
            });
            drop(_churn);

            let _churn = start(ChurnKind::RwLockMap);
            let mut next = ids_cycle(&ids);
            g.bench_function("baseline_rwlock_hashmap", |b| {
                b.iter(|| black_box(map.read().unwrap().get(&black_box(next())).cloned().unwrap()))
            });
            drop(_churn);
            g.finish();
        }
        drop(interps);
    }
}

fn bench_create_close(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    c.bench_function("interpreter/create_close", |b| {
        b.iter(|| rt.create(InterpreterConfig::isolated()).unwrap().close().unwrap())
    });
}

criterion_group!(benches, bench_lookup, bench_create_close);
criterion_main!(benches);
