//! Dict benches: set / get / delete of 10^6 int keys and 10^6 str keys,
//! the interpreter's dict against `hashbrown::HashMap` in the same run.
//!
//! ```text
//! cargo bench -p subinterp --bench dict -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The keys of our dict are objects made before the timed loop, as a Python
//! program has them (`keys = [...]; for k in keys: d[k] = v`); the value is
//! one shared object. `get` looks up with the same key objects (a hit
//! compares the cached hash, then identity). A str object caches its hash
//! once it has been used as a key, as CPython's does, so only the first
//! `set` over the keys hashes them; hashbrown hashes on every operation.
//! hashbrown's baselines: `HashMap<i64, u64>` and `HashMap<String, u64>`
//! (its default hasher), the `String`s made before the timed loop too and
//! moved in by `set`.
//!
//! Before the criterion groups, a table: best of 5 runs of each case in
//! ns per operation, ours against hashbrown, with the ratio (the issue's
//! target: int get/set within 1.5x), and an extra row of int lookups in a
//! shuffled order (in key order, CPython's int hash makes our accesses
//! sequential; shuffled, both tables miss the cache).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hashbrown::HashMap;
use subinterp::{Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

const N: usize = 1_000_000;

fn int_keys<'i>(g: Gil<'i>) -> Vec<Obj<'i>> {
    (0..N as i64).map(|i| g.int(i).unwrap()).collect()
}

fn str_keys<'i>(g: Gil<'i>) -> Vec<Obj<'i>> {
    (0..N).map(|i| g.str(&format!("key{i}")).unwrap()).collect()
}

fn fill<'i>(g: Gil<'i>, keys: &[Obj<'i>], v: &Obj<'i>) -> Obj<'i> {
    let d = g.dict().unwrap();
    for k in keys {
        d.dict_set(k, v).unwrap();
    }
    d
}

fn get_all<'a>(d: &Obj<'a>, keys: &[Obj<'a>]) -> usize {
    let mut n = 0;
    for k in keys {
        n += d.dict_get(black_box(k)).unwrap().is_some() as usize;
    }
    n
}

fn del_all<'a>(d: &Obj<'a>, keys: &[Obj<'a>]) {
    for k in keys {
        black_box(d.dict_del(k).unwrap());
    }
}

/// A fixed shuffled order of `0..n` (xorshift-driven Fisher–Yates).
fn permutation(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}

/// Best of `reps` timings of `run` on what `setup` makes (ns per key).
fn best<S, R>(reps: usize, mut setup: impl FnMut() -> S, mut run: impl FnMut(&mut S) -> R) -> f64 {
    (0..reps)
        .map(|_| {
            let mut s = setup();
            let t = Instant::now();
            let r = black_box(run(&mut s));
            let ns = t.elapsed().as_nanos() as f64 / N as f64;
            // Dropped outside the timing (a filled map or dict).
            drop(r);
            drop(s);
            ns
        })
        .fold(f64::INFINITY, f64::min)
}

fn table(g: Gil<'_>) {
    let v = g.int(-1).unwrap();
    let ik = int_keys(g);
    let sk = str_keys(g);
    let ints: Vec<i64> = (0..N as i64).collect();
    let strings: Vec<String> = (0..N).map(|i| format!("key{i}")).collect();
    let hb_int = || ints.iter().map(|&i| (i, i as u64)).collect::<HashMap<i64, u64>>();
    let hb_str = || strings.iter().map(|s| (s.clone(), 1u64)).collect::<HashMap<String, u64>>();

    let mut rows = Vec::new();
    for (name, keys) in [("int", &ik), ("str", &sk)] {
        let ours_set = best(5, || (), |_| fill(g, keys, &v));
        let full = fill(g, keys, &v);
        let ours_get = best(5, || (), |_| get_all(&full, keys));
        drop(full);
        let ours_del = best(5, || fill(g, keys, &v), |d| del_all(d, keys));
        rows.push((name, ours_set, ours_get, ours_del));
    }
    let hb_int_set = best(
        5,
        || (),
        |_| {
            let mut m = HashMap::new();
            for &i in &ints {
                m.insert(i, 1u64);
            }
            m
        },
    );
    let m = hb_int();
    let hb_int_get = best(5, || (), |_| ints.iter().filter(|i| m.get(black_box(*i)).is_some()).count());
    drop(m);
    let hb_int_del = best(5, hb_int, |m| {
        for i in &ints {
            black_box(m.remove(i));
        }
    });
    let hb_str_set = best(
        5,
        || strings.clone(),
        |s| {
            let mut m = HashMap::new();
            for k in s.drain(..) {
                m.insert(k, 1u64);
            }
            m
        },
    );
    let m = hb_str();
    let hb_str_get = best(5, || (), |_| strings.iter().filter(|s| m.get(black_box(s.as_str())).is_some()).count());
    drop(m);
    let hb_str_del = best(5, hb_str, |m| {
        for s in &strings {
            black_box(m.remove(s.as_str()));
        }
    });
    // Lookups in a shuffled order: sequential int keys hash to themselves
    // (CPython's int hash), so in key order our table is read sequentially
    // while hashbrown's hasher scatters them; shuffled, both miss the cache.
    let order = permutation(N);
    let shuffled: Vec<Obj<'_>> = order.iter().map(|&i| ik[i].clone()).collect();
    let full = fill(g, &ik, &v);
    let ours_shuffled = best(5, || (), |_| get_all(&full, &shuffled));
    drop((full, shuffled));
    let shuffled_ints: Vec<i64> = order.iter().map(|&i| i as i64).collect();
    let m = hb_int();
    let hb_shuffled = best(5, || (), |_| shuffled_ints.iter().filter(|i| m.get(black_box(*i)).is_some()).count());
    drop(m);
    let hb = [(hb_int_set, hb_int_get, hb_int_del), (hb_str_set, hb_str_get, hb_str_del)];
    eprintln!("dict, 10^6 keys, ns per operation (best of 5), ours vs hashbrown:");
    for ((name, s, gt, d), (hs, hg, hd)) in rows.into_iter().zip(hb) {
        for (op, ours, theirs) in [("set", s, hs), ("get", gt, hg), ("delete", d, hd)] {
            eprintln!("  {name:3} {op:13}  ours {ours:7.2}  hashbrown {theirs:7.2}  ratio {:5.2}x", ours / theirs);
        }
    }
    let (ours, theirs) = (ours_shuffled, hb_shuffled);
    eprintln!("  int get-shuffled  ours {ours:7.2}  hashbrown {theirs:7.2}  ratio {:5.2}x", ours / theirs);
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp
        .with_gil(|g| {
            g.gc_disable();
            table(g);
            let v = g.int(-1).unwrap();
            for (name, keys) in [("int", int_keys(g)), ("str", str_keys(g))] {
                let mut group = c.benchmark_group(format!("dict_{name}_1e6"));
                group.sample_size(10);
                group.throughput(Throughput::Elements(N as u64));
                group.bench_function("set/ours", |b| {
                    b.iter_batched(|| (), |_| fill(g, &keys, &v), BatchSize::PerIteration)
                });
                let full = fill(g, &keys, &v);
                group.bench_function("get/ours", |b| b.iter(|| get_all(&full, &keys)));
                drop(full);
                group.bench_function("delete/ours", |b| {
                    b.iter_batched(|| fill(g, &keys, &v), |d| del_all(&d, &keys), BatchSize::PerIteration)
                });
                group.finish();
            }
            let ints: Vec<i64> = (0..N as i64).collect();
            let mut group = c.benchmark_group("dict_int_1e6");
            group.sample_size(10);
            group.throughput(Throughput::Elements(N as u64));
            group.bench_function("set/hashbrown", |b| {
                b.iter_batched(
                    || (),
                    |_| ints.iter().map(|&i| (i, 1u64)).collect::<HashMap<i64, u64>>(),
                    BatchSize::PerIteration,
                )
            });
            let m: HashMap<i64, u64> = ints.iter().map(|&i| (i, 1u64)).collect();
            group.bench_function("get/hashbrown", |b| b.iter(|| ints.iter().filter(|i| m.get(*i).is_some()).count()));
            group.bench_function("delete/hashbrown", |b| {
                b.iter_batched(
                    || m.clone(),
                    |mut m| {
                        ints.iter().for_each(|i| {
                            black_box(m.remove(i));
                        })
                    },
                    BatchSize::PerIteration,
                )
            });
            group.finish();
            let strings: Vec<String> = (0..N).map(|i| format!("key{i}")).collect();
            let mut group = c.benchmark_group("dict_str_1e6");
            group.sample_size(10);
            group.throughput(Throughput::Elements(N as u64));
            group.bench_function("set/hashbrown", |b| {
                b.iter_batched(
                    || strings.clone(),
                    |s| s.into_iter().map(|k| (k, 1u64)).collect::<HashMap<String, u64>>(),
                    BatchSize::PerIteration,
                )
            });
            let m: HashMap<String, u64> = strings.iter().map(|s| (s.clone(), 1u64)).collect();
            group.bench_function("get/hashbrown", |b| {
                b.iter(|| strings.iter().filter(|s| m.get(s.as_str()).is_some()).count())
            });
            group.bench_function("delete/hashbrown", |b| {
                b.iter_batched(
                    || m.clone(),
                    |mut m| {
                        strings.iter().for_each(|s| {
                            black_box(m.remove(s.as_str()));
                        })
                    },
                    BatchSize::PerIteration,
                )
            });
            group.finish();
        })
        .unwrap();
    interp.close().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
