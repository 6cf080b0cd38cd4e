//! The incremental old generation against a reachability model, with
//! increments interleaved with random mutation (the write pattern that
//! breaks incremental collectors: a reference moved from an object not yet
//! examined to one already examined, edges removed from old objects, handles
//! to old objects picked up and dropped).
//!
//! After every step the objects the kept handles reach are intact (walked
//! and compared with the model: no live object freed). At the end, with no
//! more mutation, increments alone (no full collection) bring the heap down
//! to exactly the live objects unless the collector says a full collection
//! is owed (a suspect whose closure passed the budget); then a full
//! collection must. Tiny work budgets (1–8 objects) make increments stop
//! mid-heap and defer suspects. `PROPTEST_CASES` scales the number of
//! sequences (default 1,000).

use proptest::prelude::*;
use subinterp::{Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

#[derive(Debug, Clone)]
enum Op {
    /// A new list, kept.
    New,
    /// `kept[a].append(kept[b])`.
    Link(usize, usize),
    /// `kept[a].pop()`, the popped reference dropped.
    Unlink(usize),
    /// `kept[a][k]` picked up as a new kept handle.
    Pick(usize, usize),
    /// The handle `kept[a]` dropped.
    Drop(usize),
    /// 0: `gc_collect(0)`; 1: an increment (`gc_collect(1)`); 2: a
    /// checkpoint (an automatic collection when one is due).
    Collect(u8),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => Just(Op::New),
        4 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Link(a, b)),
        2 => any::<usize>().prop_map(Op::Unlink),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, k)| Op::Pick(a, k)),
        3 => any::<usize>().prop_map(Op::Drop),
        3 => (0u8..3).prop_map(Op::Collect),
    ];
    proptest::collection::vec(op, 1..120)
}

/// The model: each node's list contents (node ids, in order) and the nodes
/// the kept handles name.
#[derive(Default)]
struct Model {
    edges: Vec<Vec<usize>>,
    kept: Vec<usize>,
}

impl Model {
    fn live(&self) -> Vec<bool> {
        let mut seen = vec![false; self.edges.len()];
        let mut stack: Vec<usize> = self.kept.clone();
        while let Some(x) = stack.pop() {
            if !std::mem::replace(&mut seen[x], true) {
                stack.extend(self.edges[x].iter().copied());
            }
        }
        seen
    }
}

/// Walks the heap from the kept handles beside the model: every reachable
/// object has the model's contents, and one model node is one object.
fn check_live(g: Gil<'_>, m: &Model, kept: &[Obj<'_>]) {
    let mut objs: Vec<Option<Obj<'_>>> = vec![None; m.edges.len()];
    let mut stack: Vec<(Obj<'_>, usize)> = kept.iter().cloned().zip(m.kept.iter().copied()).collect();
    while let Some((o, n)) = stack.pop() {
        if let Some(seen) = &objs[n] {
            assert!(seen.is(&o), "node {n} is two objects");
            continue;
        }
        assert_eq!(o.len().expect("a list"), m.edges[n].len(), "node {n}'s length");
        for (k, &c) in m.edges[n].iter().enumerate() {
            stack.push((o.get_item(k).expect("an item"), c));
        }
        objs[n] = Some(o);
    }
    let _ = g;
}

fn tracked(g: Gil<'_>) -> usize {
    g.gc_generation_sizes().iter().sum()
}

fn run(ops: &[Op], work: usize, thresholds: (usize, usize)) -> Result<(), TestCaseError> {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let interp = rt.create(InterpreterConfig::isolated()).expect("interpreter");
    let out = interp
        .with_gil(|g| -> Result<(), TestCaseError> {
            // Warm up what a first list may make, then the baseline.
            drop(g.list(&[]).expect("list"));
            g.gc_collect(2).expect("collect");
            let base = tracked(g);
            g.gc_set_threshold(thresholds.0, thresholds.1, 2);
            g.gc_set_increment_work(Some(work)).expect("work");
            let mut m = Model::default();
            let mut kept: Vec<Obj<'_>> = Vec::new();
            for op in ops {
                match *op {
                    Op::New => {
                        kept.push(g.list(&[]).expect("list"));
                        m.edges.push(Vec::new());
                        m.kept.push(m.edges.len() - 1);
                    }
                    Op::Link(a, b) if !kept.is_empty() => {
                        let (a, b) = (a % kept.len(), b % kept.len());
                        kept[a].list_append(&kept[b]).expect("append");
                        m.edges[m.kept[a]].push(m.kept[b]);
                    }
                    Op::Unlink(a) if !kept.is_empty() => {
                        let a = a % kept.len();
                        let popped = kept[a].list_pop().expect("pop");
                        prop_assert_eq!(popped.is_some(), m.edges[m.kept[a]].pop().is_some());
                    }
                    Op::Pick(a, k) if !kept.is_empty() => {
                        let a = a % kept.len();
                        let n = m.kept[a];
                        if !m.edges[n].is_empty() {
                            let k = k % m.edges[n].len();
                            kept.push(kept[a].get_item(k).expect("item"));
                            m.kept.push(m.edges[n][k]);
                        }
                    }
                    Op::Drop(a) if !kept.is_empty() => {
                        let a = a % kept.len();
                        kept.swap_remove(a);
                        m.kept.swap_remove(a);
                    }
                    Op::Collect(0) => {
                        g.gc_collect(0).expect("collect");
                    }
                    Op::Collect(1) => {
                        g.gc_collect(1).expect("increment");
                    }
                    Op::Collect(_) => g.checkpoint().expect("checkpoint"),
                    _ => {}
                }
                check_live(g, &m, &kept);
            }
            let live = m.live().iter().filter(|&&l| l).count();
            // No more mutation: increments until no suspect is left (each
            // takes or defers at least one, so this ends).
            for _ in 0..10 * (m.edges.len() + 2) {
                g.gc_collect(1).expect("increment");
                if g.gc_incremental_stats().pending_suspects == 0 {
                    break;
                }
            }
            let s = g.gc_incremental_stats();
            prop_assert_eq!(s.pending_suspects, 0);
            if !s.full_collection_owed {
                prop_assert_eq!(tracked(g) - base, live, "increments alone left garbage ({:?})", s);
            }
            check_live(g, &m, &kept);
            g.gc_collect(2).expect("collect");
            prop_assert_eq!(tracked(g) - base, live, "a full collection left garbage");
            prop_assert!(!g.gc_incremental_stats().full_collection_owed);
            check_live(g, &m, &kept);
            drop(kept);
            g.gc_collect(2).expect("collect");
            prop_assert_eq!(tracked(g), base);
            Ok(())
        })
        .expect("enter");
    interp.close().expect("close");
    out
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn increments_free_only_garbage_and_all_of_it(
        ops in ops(),
        work in 1usize..9,
        t0 in 1usize..6,
        t1 in 1usize..4,
    ) {
        run(&ops, work, (t0, t1))?;
    }
}

/// A garbage cycle behind a suspect whose closure passes the budget is not
/// lost: the suspect is deferred, a full collection is owed, and the
/// automatic one runs once the old generation grew by a quarter.
#[test]
fn a_deferred_suspect_owes_a_full_collection_that_runs() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.main()
        .with_gil(|g| {
            g.gc_set_increment_work(Some(4)).expect("work");
            // A chain of 50 lists, the head kept: old after a full collection.
            let head = g.list(&[]).expect("list");
            let mut tail = head.clone();
            for _ in 0..50 {
                let next = g.list(&[]).expect("list");
                tail.list_append(&next).expect("append");
                tail = next;
            }
            // The tail refers back to the head: the chain is a cycle.
            tail.list_append(&head).expect("append");
            drop(tail);
            g.gc_collect(2).expect("collect");
            let before = g.gc_generation_sizes().iter().sum::<usize>();
            // Dropping the handle makes the head a suspect whose closure
            // (51 objects) is far above the budget of 4.
            drop(head);
            assert_eq!(g.gc_incremental_stats().pending_suspects, 1);
            g.gc_collect(1).expect("increment");
            let s = g.gc_incremental_stats();
            assert_eq!(s.deferred, 1);
            assert!(s.full_collection_owed);
            assert_eq!(g.gc_generation_sizes().iter().sum::<usize>(), before, "nothing freed yet");
            // Grow the old generation by more than a quarter: the automatic
            // full collection runs and frees the cycle.
            g.gc_set_threshold(10, 1, 1);
            let keep = g.list(&[]).expect("list");
            for _ in 0..200 {
                keep.list_append(&g.list(&[]).expect("list")).expect("append");
                g.checkpoint().expect("checkpoint");
            }
            let s = g.gc_incremental_stats();
            assert!(s.full_fallbacks >= 1, "{s:?}");
            assert!(!s.full_collection_owed);
            g.gc_collect(1).expect("increment");
            assert_eq!(g.gc_generation_sizes().iter().sum::<usize>(), before - 51 + 201);
        })
        .expect("enter");
}

/// Out-of-range budgets are refused with a message that says what to give,
/// and nothing changes.
#[test]
fn out_of_range_budgets_are_errors_that_change_nothing() {
    use std::time::Duration;
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.main()
        .with_gil(|g| {
            let before = g.gc_pause_budget();
            for bad in [Duration::ZERO, Duration::from_millis(1001)] {
                let e = g.gc_set_pause_budget(Some(bad)).expect_err("out of range");
                let text = e.to_string();
                assert!(text.contains("above zero and at most 1 s") && text.contains("None"), "{text}");
                assert_eq!(g.gc_pause_budget(), before);
            }
            g.gc_set_pause_budget(Some(Duration::from_secs(1))).expect("1 s is allowed");
            let e = g.gc_set_increment_work(Some(0)).expect_err("zero work");
            assert!(e.to_string().contains("at least 1"), "{e}");
        })
        .expect("enter");
}

/// Garbage behind suspects is freed within two rounds even while a program
/// keeps making new suspects faster than an increment's budget examines
/// them (the pattern under which newest-first order would leave the oldest
/// suspects, and the garbage behind them, waiting for ever).
#[test]
fn garbage_is_freed_within_two_rounds_under_a_steady_inflow_of_suspects() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.main()
        .with_gil(|g| {
            g.gc_set_increment_work(Some(8)).expect("work");
            // A live heap of 200 lists in one kept list.
            let live = g.list(&[]).expect("list");
            for _ in 0..200 {
                live.list_append(&g.list(&[]).expect("list")).expect("append");
            }
            // 50 two-list cycles, their heads in a holder list.
            let holder = g.list(&[]).expect("list");
            for _ in 0..50 {
                let a = g.list(&[]).expect("list");
                let b = g.list(std::slice::from_ref(&a)).expect("list");
                a.list_append(&b).expect("append");
                holder.list_append(&a).expect("append");
            }
            g.gc_collect(2).expect("collect"); // everything old and clean
            let with_garbage = g.gc_generation_sizes().iter().sum::<usize>();
            // Popping the heads makes each a suspect, and each cycle garbage.
            for _ in 0..50 {
                assert!(holder.list_pop().expect("pop").is_some());
            }
            let s0 = g.gc_incremental_stats();
            assert_eq!(s0.pending_suspects, 50);
            let mut freed_at = None;
            let mut j = 0;
            for step in 0..400 {
                // Ten live lists lose a reference each (a handle picked up
                // and dropped): ten new suspects, above the budget of 8.
                for _ in 0..10 {
                    drop(live.get_item(j % 200).expect("item"));
                    j += 1;
                }
                g.gc_collect(1).expect("increment");
                let s = g.gc_incremental_stats();
                let tracked = g.gc_generation_sizes().iter().sum::<usize>();
                if tracked == with_garbage - 100 {
                    freed_at = Some((step, s.rounds - s0.rounds));
                    break;
                }
                assert!(s.rounds - s0.rounds < 2, "two rounds began and garbage is left: {s:?}");
            }
            let (step, rounds) = freed_at.expect("all 50 cycles freed within 400 increments");
            assert!(rounds <= 2, "freed after {step} increments, in round {rounds}");
            let s = g.gc_incremental_stats();
            assert_eq!((s.deferred, s.full_fallbacks), (0, 0), "increments alone freed it: {s:?}");
            drop((live, holder));
        })
        .expect("enter");
}

/// An increment stays within its work budget: the young candidates, the
/// suspects and their closures together, plus at most one closure budget
/// for the first suspect (here the same fixed budget); the budget is a
/// quarter of the waiting suspects once they exceed eight budgets.
#[test]
fn an_increment_takes_at_most_its_budget_plus_one_closure() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.main()
        .with_gil(|g| {
            let work = 50;
            g.gc_set_increment_work(Some(work)).expect("work");
            // 1,000 old two-list cycles held in a list, then made garbage:
            // 1,000 suspects, each with a closure of one.
            let holder = g.list(&[]).expect("list");
            for _ in 0..1000 {
                let a = g.list(&[]).expect("list");
                let b = g.list(std::slice::from_ref(&a)).expect("list");
                a.list_append(&b).expect("append");
                holder.list_append(&a).expect("append");
            }
            g.gc_collect(2).expect("collect");
            while holder.list_pop().expect("pop").is_some() {}
            let mut before = g.gc_incremental_stats();
            assert_eq!(before.pending_suspects, 1000);
            let mut increments = 0;
            let mut saw_backlog_budget = false;
            while g.gc_incremental_stats().pending_suspects > 0 {
                let pending = g.gc_incremental_stats().pending_suspects;
                let budget = if pending > 8 * work { pending / 4 } else { work };
                saw_backlog_budget |= budget > work;
                // One young object in each increment, counted too.
                let young = g.list(&[]).expect("list");
                g.gc_collect(1).expect("increment");
                drop(young);
                let s = g.gc_incremental_stats();
                let took =
                    (s.suspects_examined - before.suspects_examined) + (s.closure_objects - before.closure_objects);
                assert!(took >= 1, "every increment examines a suspect: {s:?}");
                assert!(
                    took < (budget + work) as u64,
                    "{took} old objects (and one young) in one increment of budget {budget}"
                );
                if budget == work && 2 * pending >= work {
                    assert!(took + 1 >= work as u64 / 2, "an increment uses its budget: {took} of {budget}");
                }
                before = s;
                increments += 1;
                assert!(increments <= 1000, "the suspects drain");
            }
            assert!(saw_backlog_budget, "1,000 suspects are more than eight budgets of 50");
            assert_eq!(g.gc_generation_sizes().iter().sum::<usize>(), 1, "only the holder is left");
        })
        .expect("enter");
}

/// Cadence: once the work waiting for an increment (the suspects and
/// generation 1's objects) passes half a budget, the next automatic
/// collection is an increment, although generation 1's count is far below
/// its threshold.
#[test]
fn waiting_work_brings_the_next_increment_forward() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.main()
        .with_gil(|g| {
            g.gc_set_increment_work(Some(100)).expect("work");
            g.gc_set_threshold(50, 1000, 10);
            let holder = g.list(&[]).expect("list");
            for _ in 0..60 {
                holder.list_append(&g.list(&[]).expect("list")).expect("append");
            }
            g.gc_collect(2).expect("collect");
            // 60 suspects: more than half the budget of 100.
            for i in 0..60 {
                drop(holder.get_item(i).expect("item"));
            }
            let before = g.gc_incremental_stats();
            assert_eq!(before.pending_suspects, 60);
            let young = g.gc_stats()[0].collections;
            let mut kept = Vec::new();
            while g.gc_incremental_stats().increments == before.increments {
                kept.push(g.list(&[]).expect("list"));
                g.checkpoint().expect("checkpoint");
                assert!(kept.len() < 200, "an increment within the first automatic collections");
            }
            assert_eq!(g.gc_stats()[0].collections, young, "the first automatic collection was the increment");
            assert!(g.gc_incremental_stats().pending_suspects < 60, "the increment took suspects");
        })
        .expect("enter");
}

/// Closures stop at what the interpreter holds: a suspect instance whose
/// class's method captures a module's globals (as a Python function's
/// `__globals__`) is examined within a small budget, although the globals
/// reach a large structure; without the stop, its closure would pass the
/// budget and the suspect would be deferred to a full collection.
#[test]
fn closures_stop_at_module_globals_the_interpreter_holds() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.main()
        .with_gil(|g| {
            let sys = g.import("sys").expect("sys");
            let cache = g.list(&[]).expect("list");
            for _ in 0..500 {
                cache.list_append(&g.list(&[]).expect("list")).expect("append");
            }
            sys.setattr("cache", &cache).expect("setattr");
            drop(cache);
            let cls = g.new_class("C", &[]).expect("class");
            let f =
                g.function("f", &[sys.module_dict().expect("globals")], |_, _, _| unreachable!()).expect("function");
            cls.setattr("f", &f).expect("setattr");
            drop(f);
            let holder = g.list(&[]).expect("list");
            for _ in 0..20 {
                let inst = g.instance_of(&cls).expect("instance");
                inst.setattr("x", &g.list(std::slice::from_ref(&inst)).expect("list")).expect("setattr");
                holder.list_append(&inst).expect("append");
            }
            g.gc_collect(2).expect("collect"); // everything old and clean, nothing owed
            let before = g.gc_generation_sizes().iter().sum::<usize>();
            g.gc_set_increment_work(Some(16)).expect("work");
            // 20 instance <-> list cycles become garbage: 20 suspects.
            while holder.list_pop().expect("pop").is_some() {}
            let s0 = g.gc_incremental_stats();
            for _ in 0..200 {
                if g.gc_incremental_stats().pending_suspects == 0 {
                    break;
                }
                g.gc_collect(1).expect("increment");
            }
            let s = g.gc_incremental_stats();
            assert_eq!(s.deferred, s0.deferred, "no suspect deferred: {s:?}");
            assert!(!s.full_collection_owed, "{s:?}");
            assert_eq!(g.gc_generation_sizes().iter().sum::<usize>(), before - 40, "the 20 cycles freed by increments");
            // The globals are intact.
            assert_eq!(sys.getattr("cache").expect("getattr").expect("cache").len().expect("len"), 500);
        })
        .expect("enter");
}

/// A big structure stored in a module's globals and its building handle
/// dropped becomes a suspect whose closure passes the budget; the globals
/// of a module the interpreter holds refer to it, so it is live: put back
/// among the clean, not deferred, and no full collection is owed.
#[test]
fn a_big_structure_held_by_module_globals_is_not_deferred() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.main()
        .with_gil(|g| {
            let sys = g.import("sys").expect("sys");
            let big = g.list(&[]).expect("list");
            for _ in 0..2000 {
                big.list_append(&g.list(&[]).expect("list")).expect("append");
            }
            g.gc_collect(2).expect("collect"); // old and clean, nothing owed
            g.gc_set_increment_work(Some(64)).expect("work");
            sys.setattr("big", &big).expect("setattr");
            drop(big); // a clean old object loses a reference and lives on
            let s0 = g.gc_incremental_stats();
            assert_eq!(s0.pending_suspects, 1);
            g.gc_collect(1).expect("increment");
            let s = g.gc_incremental_stats();
            assert_eq!((s.deferred, s.pending_suspects), (s0.deferred, 0), "{s:?}");
            assert!(!s.full_collection_owed, "{s:?}");
            // The same structure held only by an unregistered module's
            // globals is deferred: the stop is for what the interpreter holds.
            let m = g.new_module("scratch").expect("module");
            let other = g.list(&[]).expect("list");
            for _ in 0..2000 {
                other.list_append(&g.list(&[]).expect("list")).expect("append");
            }
            g.gc_collect(2).expect("collect");
            m.setattr("big", &other).expect("setattr");
            drop(other);
            g.gc_collect(1).expect("increment");
            let s = g.gc_incremental_stats();
            assert_eq!(s.deferred, s0.deferred + 1, "{s:?}");
            assert!(s.full_collection_owed);
            assert_eq!(sys.getattr("big").expect("getattr").expect("big").len().expect("len"), 2000);
        })
        .expect("enter");
}

/// The same stop at the classes of the interpreter's type cache (here the
/// class `Gil::instance` makes for a name, held until close): garbage
/// instances of a class whose attributes reach a large structure are freed
/// by small increments, none deferred.
#[test]
fn closures_stop_at_the_type_cache() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.main()
        .with_gil(|g| {
            let first = g.instance("Node").expect("instance");
            let cls = first.get_type().expect("type");
            drop(first);
            let big = g.list(&[]).expect("list");
            for _ in 0..1000 {
                big.list_append(&g.list(&[]).expect("list")).expect("append");
            }
            cls.setattr("table", &big).expect("setattr");
            drop(big);
            let holder = g.list(&[]).expect("list");
            for _ in 0..10 {
                let inst = g.instance("Node").expect("instance");
                inst.setattr("me", &g.list(std::slice::from_ref(&inst)).expect("list")).expect("setattr");
                holder.list_append(&inst).expect("append");
            }
            g.gc_collect(2).expect("collect");
            let before = g.gc_generation_sizes().iter().sum::<usize>();
            g.gc_set_increment_work(Some(16)).expect("work");
            while holder.list_pop().expect("pop").is_some() {}
            let s0 = g.gc_incremental_stats();
            for _ in 0..100 {
                if g.gc_incremental_stats().pending_suspects == 0 {
                    break;
                }
                g.gc_collect(1).expect("increment");
            }
            let s = g.gc_incremental_stats();
            assert_eq!(s.deferred, s0.deferred, "{s:?}");
            assert_eq!(g.gc_generation_sizes().iter().sum::<usize>(), before - 20, "10 cycles freed");
        })
        .expect("enter");
}
