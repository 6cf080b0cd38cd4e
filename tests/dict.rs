//! The compact dict (CPython's `Objects/dictobject.c` design): Python
//! equality of keys, insertion order through deletes, amortized deletes,
//! its table in the interpreter's heap (counted, under the memory limit),
//! depth-checked tuple keys, the mutation-during-iteration error, and dicts
//! in collected cycles.

use subinterp::{Error, Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

fn with<R>(f: impl for<'i> FnOnce(Gil<'i>) -> R) -> R {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let i = rt.create(InterpreterConfig::isolated()).unwrap();
    let r = i.with_gil(f).unwrap();
    let report = i.close().unwrap();
    assert_eq!(report.leaked.live_blocks, 0, "nothing left in the heap at close: {report:?}");
    r
}

fn keys_of(d: &Obj<'_>) -> Vec<i64> {
    d.dict_items().unwrap().into_iter().map(|(k, _)| k.as_int().unwrap()).collect()
}

#[test]
fn keys_compare_with_python_equality() {
    with(|g| {
        let d = g.dict().unwrap();
        let int = |v| g.int(v).unwrap();
        d.dict_set(&int(1), &int(10)).unwrap();
        // 1 == 1.0 == True: one key; the first key object stays.
        d.dict_set(&g.float(1.0).unwrap(), &int(11)).unwrap();
        d.dict_set(&g.bool(true).unwrap(), &int(12)).unwrap();
        assert_eq!(d.len().unwrap(), 1);
        let items = d.dict_items().unwrap();
        assert_eq!(items[0].0.kind(), subinterp::Kind::Int);
        assert_eq!(items[0].1.as_int(), Some(12));
        // 0 == False == 0.0 == -0.0.
        d.dict_set(&g.bool(false).unwrap(), &int(20)).unwrap();
        assert_eq!(d.dict_get(&g.float(-0.0).unwrap()).unwrap().unwrap().as_int(), Some(20));
        assert_eq!(d.dict_get(&int(0)).unwrap().unwrap().as_int(), Some(20));
        // Floats that are not ints are their own keys; big ints stay exact.
        d.dict_set(&g.float(1.5).unwrap(), &int(30)).unwrap();
        assert!(d.dict_get(&int(1)).unwrap().unwrap().as_int() == Some(12));
        assert_eq!(d.dict_get(&g.float(1.5).unwrap()).unwrap().unwrap().as_int(), Some(30));
        let big = (1i64 << 53) + 1;
        d.dict_set(&int(big), &int(40)).unwrap();
        assert!(d.dict_get(&g.float(big as f64).unwrap()).unwrap().is_none(), "2^53+1 != 2^53 as float");
        assert_eq!(d.dict_get(&int(big)).unwrap().unwrap().as_int(), Some(40));
        // Negative numbers, -1 and -2 (which share a hash in CPython).
        d.dict_set(&int(-1), &int(50)).unwrap();
        d.dict_set(&int(-2), &int(51)).unwrap();
        assert_eq!(d.dict_get(&int(-1)).unwrap().unwrap().as_int(), Some(50));
        assert_eq!(d.dict_get(&g.float(-2.0).unwrap()).unwrap().unwrap().as_int(), Some(51));
        // str and bytes by content, and not equal to each other.
        d.dict_set(&g.str("k").unwrap(), &int(60)).unwrap();
        d.dict_set(&g.bytes(b"k").unwrap(), &int(61)).unwrap();
        assert_eq!(d.dict_get(&g.str("k").unwrap()).unwrap().unwrap().as_int(), Some(60));
        assert_eq!(d.dict_get(&g.bytes(b"k").unwrap()).unwrap().unwrap().as_int(), Some(61));
        assert!(d.dict_get(&g.str("K").unwrap()).unwrap().is_none());
        // None by value (every `none()` is a new object here).
        d.dict_set(&g.none().unwrap(), &int(70)).unwrap();
        assert_eq!(d.dict_get(&g.none().unwrap()).unwrap().unwrap().as_int(), Some(70));
        // Tuples elementwise, with numeric equality inside.
        let t1 = g.tuple(&[int(1), g.str("a").unwrap(), g.tuple(&[int(2)]).unwrap()]).unwrap();
        let t2 = g
            .tuple(&[g.float(1.0).unwrap(), g.str("a").unwrap(), g.tuple(&[g.bool(false).unwrap()]).unwrap()])
            .unwrap();
        let t3 =
            g.tuple(&[g.bool(true).unwrap(), g.str("a").unwrap(), g.tuple(&[g.float(2.0).unwrap()]).unwrap()]).unwrap();
        d.dict_set(&t1, &int(80)).unwrap();
        assert!(d.dict_get(&t2).unwrap().is_none(), "(1, 'a', (0,)) != (1, 'a', (2,))");
        assert_eq!(d.dict_get(&t3).unwrap().unwrap().as_int(), Some(80));
        assert_eq!(d.len().unwrap(), 10);
        // Unhashable keys keep CPython's text, also inside a tuple.
        let l = g.list(&[]).unwrap();
        match d.dict_set(&l, &int(0)) {
            Err(Error::TypeError { message }) => assert_eq!(message, "unhashable type: 'list'"),
            other => panic!("{other:?}"),
        }
        let with_list = g.tuple(&[int(1), l.clone()]).unwrap();
        assert!(matches!(d.dict_get(&with_list), Err(Error::TypeError { .. })));
        match d.dict_set(&g.dict().unwrap(), &int(0)) {
            Err(Error::TypeError { message }) => assert_eq!(message, "unhashable type: 'dict'"),
            other => panic!("{other:?}"),
        }
        // Instances hash by identity.
        let a = g.instance("A").unwrap();
        let b = g.instance("A").unwrap();
        d.dict_set(&a, &int(90)).unwrap();
        assert_eq!(d.dict_get(&a).unwrap().unwrap().as_int(), Some(90));
        assert!(d.dict_get(&b).unwrap().is_none());
    })
}

#[test]
fn many_int_and_str_keys_round_trip() {
    with(|g| {
        let d = g.dict().unwrap();
        for i in 0..20_000i64 {
            d.dict_set(&g.int(i * 7919).unwrap(), &g.int(i).unwrap()).unwrap();
            d.dict_set(&g.str(&format!("k{i}")).unwrap(), &g.int(-i).unwrap()).unwrap();
        }
        assert_eq!(d.len().unwrap(), 40_000);
        for i in (0..20_000i64).step_by(7) {
            assert_eq!(d.dict_get(&g.int(i * 7919).unwrap()).unwrap().unwrap().as_int(), Some(i));
            assert_eq!(d.dict_get(&g.float((i * 7919) as f64).unwrap()).unwrap().unwrap().as_int(), Some(i));
            assert_eq!(d.dict_get(&g.str(&format!("k{i}")).unwrap()).unwrap().unwrap().as_int(), Some(-i));
        }
        assert!(d.dict_get(&g.int(1).unwrap()).unwrap().is_none());
        assert!(d.dict_get(&g.str("k20000").unwrap()).unwrap().is_none());
    })
}

#[test]
fn deletion_keeps_order_and_reinsertion_goes_last() {
    with(|g| {
        let d = g.dict().unwrap();
        let int = |v| g.int(v).unwrap();
        for i in 0..10 {
            d.dict_set(&int(i), &int(i * 100)).unwrap();
        }
        assert!(d.dict_del(&int(3)).unwrap());
        assert!(d.dict_del(&g.float(7.0).unwrap()).unwrap());
        assert!(!d.dict_del(&int(3)).unwrap());
        assert_eq!(keys_of(&d), [0, 1, 2, 4, 5, 6, 8, 9]);
        d.dict_set(&int(3), &int(-3)).unwrap();
        // Replacing a value keeps the key's place.
        d.dict_set(&int(0), &int(-1)).unwrap();
        assert_eq!(keys_of(&d), [0, 1, 2, 4, 5, 6, 8, 9, 3]);
        assert_eq!(d.dict_get(&int(0)).unwrap().unwrap().as_int(), Some(-1));
        // Growth (a rebuild) keeps the order too.
        for i in 100..200 {
            d.dict_set(&int(i), &int(i)).unwrap();
        }
        let mut want = vec![0, 1, 2, 4, 5, 6, 8, 9, 3];
        want.extend(100..200);
        assert_eq!(keys_of(&d), want);
        // Attributes (instance dicts) too.
        let o = g.instance("O").unwrap();
        for name in ["a", "b", "c"] {
            o.setattr(name, &int(1)).unwrap();
        }
        o.delattr("a").unwrap();
        o.setattr("a", &int(2)).unwrap();
        let names: Vec<String> =
            o.dict_items().unwrap().into_iter().map(|(k, _)| k.as_str().unwrap().to_string()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        assert!(matches!(o.delattr("zz"), Err(Error::AttributeError { .. })));
    })
}

/// 10^5 deletes (and a delete/reinsert churn of 10^5) move O(n) entries in
/// total: no rebuild per delete (counted, not timed).
#[test]
fn deletes_do_not_rebuild_the_table() {
    with(|g| {
        const N: i64 = 100_000;
        let d = g.dict().unwrap();
        let keys: Vec<Obj<'_>> = (0..N).map(|i| g.int(i).unwrap()).collect();
        for k in &keys {
            d.dict_set(k, k).unwrap();
        }
        let after_fill = g.dict_entries_moved();
        for k in &keys {
            assert!(d.dict_del(k).unwrap());
        }
        assert_eq!(d.len().unwrap(), 0);
        assert_eq!(g.dict_entries_moved(), after_fill, "deleting moves no entry");
        // Churn: a live set of 1,000 keys, 10^5 deletes and reinsertions.
        let before = g.dict_entries_moved();
        for k in &keys[..1000] {
            d.dict_set(k, k).unwrap();
        }
        for (i, k) in keys[1000..].iter().enumerate() {
            assert!(d.dict_del(&keys[i]).unwrap());
            d.dict_set(k, k).unwrap();
        }
        assert_eq!(d.len().unwrap(), 1000);
        let moved = g.dict_entries_moved() - before;
        assert!(moved <= 2 * N as u64, "{moved} entries moved for {N} deletes and inserts");
        assert_eq!(keys_of(&d), (N - 1000..N).collect::<Vec<_>>());
    })
}

/// The table is a block of the interpreter's heap (live bytes measured with
/// `bytes_in_use`; `counted_bytes`, the limit's measure, moves by arenas),
/// and small dicts are no bigger than CPython 3.13's (`sys.getsizeof({})` = 64, a
/// one-key dict 184): ours 32 and 80 (the smallest table, 2 slots and 1 entry,
/// is a 48-byte block).
#[test]
fn dict_tables_are_counted_and_small() {
    with(|g| {
        let k = g.int(1).unwrap();
        const N: usize = 1000;
        let base = g.memory_stats().bytes_in_use;
        let empty: Vec<Obj<'_>> = (0..N).map(|_| g.dict().unwrap()).collect();
        let per_empty = (g.memory_stats().bytes_in_use - base) / N;
        let base = g.memory_stats().bytes_in_use;
        for d in &empty {
            d.dict_set(&k, &k).unwrap();
        }
        let per_one = per_empty + (g.memory_stats().bytes_in_use - base) / N;
        assert!(per_empty <= 64, "{per_empty} bytes per empty dict");
        assert!(per_one <= 80, "{per_one} bytes per one-key dict");
        // Growing one dict is counted; clearing and dropping gives it back.
        let d = g.dict().unwrap();
        let base = g.memory_stats().bytes_in_use;
        let keys: Vec<Obj<'_>> = (0..10_000).map(|i| g.int(i).unwrap()).collect();
        let with_keys = g.memory_stats().bytes_in_use;
        for k in &keys {
            d.dict_set(k, k).unwrap();
        }
        let table = g.memory_stats().bytes_in_use - with_keys;
        assert!(table >= 10_000 * 24, "{table} bytes for 10,000 entries");
        d.clear().unwrap();
        assert_eq!(g.memory_stats().bytes_in_use, with_keys, "clear gives the table back");
        drop(keys);
        assert!(g.memory_stats().bytes_in_use <= base);
        println!("bytes per dict: empty {per_empty}, one key {per_one}");
    })
}

#[test]
fn dict_growing_past_the_limit_is_a_memory_error() {
    with(|g| {
        let d = g.dict().unwrap();
        let keys: Vec<Obj<'_>> = (0..400_000).map(|i| g.int(i).unwrap()).collect();
        let v = g.int(-1 << 40).unwrap(); // not a shared small int: its refcount is ours
        g.set_memory_limit(Some(g.memory_stats().counted_bytes + (1 << 20))).unwrap();
        let mut err = None;
        let mut n = 0;
        for k in &keys {
            match d.dict_set(k, &v) {
                Ok(()) => n += 1,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert!(matches!(err, Some(Error::MemoryError { .. })), "{err:?}");
        assert!((1000..400_000).contains(&n), "{n}");
        // Nothing changed: n entries, the refused key not in, refcounts back.
        assert_eq!(d.len().unwrap(), n);
        assert_eq!(v.refcount(), n + 1);
        assert_eq!(keys[n].refcount(), 1);
        assert!(d.dict_get(&keys[n]).unwrap().is_none());
        let stats = g.memory_stats();
        assert!(stats.counted_bytes <= stats.limit.unwrap());
        // Usable: replacing values and deleting need no growth.
        d.dict_set(&keys[0], &keys[0]).unwrap();
        assert_eq!(d.dict_get(&keys[0]).unwrap().unwrap().as_int(), Some(0));
        assert!(d.dict_del(&keys[1]).unwrap());
        assert_eq!(d.len().unwrap(), n - 1);
        // Attribute dicts are refused the same way.
        let o = g.instance("Big").unwrap();
        let mut attr_err = None;
        for i in 0..200_000 {
            if let Err(e) = o.setattr(&format!("a{i}"), &v) {
                attr_err = Some(e);
                break;
            }
        }
        assert!(matches!(attr_err, Some(Error::MemoryError { .. })), "{attr_err:?}");
        g.set_memory_limit(None).unwrap();
        d.dict_set(&keys[n], &v).unwrap();
        assert_eq!(d.len().unwrap(), n);
    })
}

#[test]
fn nested_tuple_keys_are_depth_checked() {
    with(|g| {
        let mut t = g.tuple(&[g.int(0).unwrap()]).unwrap();
        for _ in 0..1200 {
            t = g.tuple(&[t]).unwrap();
        }
        let d = g.dict().unwrap();
        let one = g.int(1).unwrap();
        assert!(matches!(d.dict_set(&t, &one), Err(Error::RecursionError { limit: 1000, .. })));
        assert!(matches!(d.dict_get(&t), Err(Error::RecursionError { .. })));
        assert!(matches!(d.dict_del(&t), Err(Error::RecursionError { .. })));
        assert_eq!(d.len().unwrap(), 0);
        // 900 deep is fine, and an equal key built separately finds it.
        let build = |depth: usize| {
            let mut t = g.tuple(&[g.int(0).unwrap()]).unwrap();
            for _ in 0..depth {
                t = g.tuple(&[t, g.str("x").unwrap()]).unwrap();
            }
            t
        };
        let (a, b) = (build(900), build(900));
        d.dict_set(&a, &one).unwrap();
        assert_eq!(d.dict_get(&b).unwrap().unwrap().as_int(), Some(1));
        assert!(d.dict_get(&build(899)).unwrap().is_none());
    })
}

#[test]
fn mutation_during_iteration_is_a_runtime_error() {
    with(|g| {
        let d = g.dict().unwrap();
        for i in 0..5 {
            d.dict_set(&g.int(i).unwrap(), &g.int(i).unwrap()).unwrap();
        }
        // Plain iteration sees every pair in order; replacing values is fine.
        let mut seen = Vec::new();
        for kv in d.dict_iter().unwrap() {
            let (k, _) = kv.unwrap();
            d.dict_set(&k, &g.int(-1).unwrap()).unwrap();
            seen.push(k.as_int().unwrap());
        }
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        // Adding a key.
        let mut it = d.dict_iter().unwrap();
        it.next().unwrap().unwrap();
        d.dict_set(&g.int(99).unwrap(), &g.int(0).unwrap()).unwrap();
        match it.next() {
            Some(Err(Error::RuntimeError { message })) => {
                assert_eq!(message, "dictionary changed size during iteration")
            }
            other => panic!("{other:?}"),
        }
        assert!(it.next().is_none(), "the iterator ends after the error");
        // Deleting a key.
        let mut it = d.dict_iter().unwrap();
        d.dict_del(&g.int(0).unwrap()).unwrap();
        assert!(matches!(it.next(), Some(Err(Error::RuntimeError { .. }))));
        // As many added as removed (a key already seen): CPython's second
        // text, once more pairs turn up than the dict had.
        let mut it = d.dict_iter().unwrap();
        assert_eq!(it.next().unwrap().unwrap().0.as_int(), Some(1));
        d.dict_del(&g.int(1).unwrap()).unwrap();
        d.dict_set(&g.int(100).unwrap(), &g.int(0).unwrap()).unwrap();
        let errors: Vec<String> = it.by_ref().filter_map(|r| r.err()).map(|e| e.to_string()).collect();
        assert_eq!(errors, ["RuntimeError: dictionary keys changed during iteration"]);
        // A snapshot (dict_items) may be mutated freely.
        for (k, _) in d.dict_items().unwrap() {
            d.dict_del(&k).unwrap();
        }
        assert_eq!(d.len().unwrap(), 0);
        assert!(d.dict_iter().unwrap().next().is_none());
        assert!(matches!(g.list(&[]).unwrap().dict_iter(), Err(Error::TypeError { .. })));
    })
}

#[test]
fn dicts_in_cycles_are_collected() {
    with(|g| {
        g.gc_disable();
        let weak;
        {
            let d = g.dict().unwrap();
            let o = g.instance("Node").unwrap();
            // dict -> instance -> (attribute) dict -> itself as a value.
            d.dict_set(&g.str("node").unwrap(), &o).unwrap();
            d.dict_set(&g.int(1).unwrap(), &d).unwrap();
            o.setattr("back", &d).unwrap();
            for i in 0..100 {
                d.dict_set(&g.int(i + 10).unwrap(), &g.list(std::slice::from_ref(&d)).unwrap()).unwrap();
            }
            weak = g.weakref(&o, None).unwrap();
        }
        assert!(weak.weakref_get().unwrap().is_some());
        let before = g.memory_stats().counted_bytes;
        let r = g.gc_collect(2).unwrap();
        assert!(r.collected >= 102, "{r:?}");
        assert!(weak.weakref_get().unwrap().is_none());
        assert!(g.memory_stats().counted_bytes < before, "the tables went back to the heap");
        g.gc_enable();
    })
}
