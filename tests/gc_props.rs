//! Random object graphs against a reachability model: after a full
//! collection exactly the objects unreachable from the kept handles are
//! freed, and once everything is dropped the heap is back to its baseline.
//! `PROPTEST_CASES` scales the number of graphs (default 1,000).

mod common;

use proptest::prelude::*;
use subinterp::{Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

#[derive(Debug, Clone)]
struct Graph {
    /// Node kinds: true = instance (edges are attributes), false = list.
    kinds: Vec<bool>,
    edges: Vec<(usize, usize)>,
    kept: Vec<bool>,
    /// Which nodes get a weakref (a weakref sends the collection down its
    /// careful path; none keeps it on the fast one).
    weak: Vec<bool>,
    /// The first `old` nodes are made before the rest and promoted by a
    /// collection of generation `promote` (so a collection spans several
    /// generations, and a young one has old objects around it).
    old: usize,
    promote: usize,
}

fn graphs() -> impl Strategy<Value = Graph> {
    (1usize..40).prop_flat_map(|n| {
        (
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec((0..n, 0..n), 0..3 * n),
            proptest::collection::vec(proptest::bool::weighted(0.2), n),
            prop_oneof![Just(0.0), Just(0.1), Just(1.0)]
                .prop_flat_map(move |p| proptest::collection::vec(proptest::bool::weighted(p), n)),
            0..=n,
            0usize..2,
        )
            .prop_map(|(kinds, edges, kept, weak, old, promote)| Graph {
                kinds,
                edges,
                kept,
                weak,
                old,
                promote,
            })
    })
}

/// Nodes reachable from `roots` through `present` nodes only.
fn reach(g: &Graph, roots: &[bool], present: &[bool]) -> Vec<bool> {
    let n = g.kinds.len();
    let mut seen: Vec<bool> = (0..n).map(|i| roots[i] && present[i]).collect();
    let mut stack: Vec<usize> = (0..n).filter(|&i| seen[i]).collect();
    while let Some(x) = stack.pop() {
        for &(a, b) in &g.edges {
            if a == x && present[b] && !seen[b] {
                seen[b] = true;
                stack.push(b);
            }
        }
    }
    seen
}

/// What refcounting alone keeps alive among `present` nodes: the kept ones,
/// the members of cycles, and what they reach.
fn alive_by_refcount(g: &Graph, present: &[bool]) -> Vec<bool> {
    let n = g.kinds.len();
    let on_cycle: Vec<bool> = (0..n)
        .map(|v| {
            let succ: Vec<bool> = (0..n).map(|i| g.edges.iter().any(|&(a, b)| a == v && b == i)).collect();
            present[v] && reach(g, &succ, present)[v]
        })
        .collect();
    let roots: Vec<bool> = (0..n).map(|i| g.kept[i] || on_cycle[i]).collect();
    reach(g, &roots, present)
}

/// After a full collection: exactly what the kept nodes reach.
fn model_full(g: &Graph) -> Vec<bool> {
    reach(g, &g.kept, &vec![true; g.kinds.len()])
}

/// After a young collection (nodes `old..` are young): a young node survives
/// iff reachable from a kept node or from an old node still alive (old
/// objects are outside the collection, their references count as external);
/// old nodes then live by refcounting.
fn model_young(g: &Graph) -> Vec<bool> {
    let n = g.kinds.len();
    let before = alive_by_refcount(g, &vec![true; n]);
    let roots: Vec<bool> = (0..n).map(|i| g.kept[i] || (i < g.old && before[i])).collect();
    let reached = reach(g, &roots, &before);
    let present: Vec<bool> = (0..n).map(|i| if i < g.old { before[i] } else { reached[i] }).collect();
    alive_by_refcount(g, &present)
}

fn check(g: Gil<'_>, graph: &Graph) -> Result<(), TestCaseError> {
    g.gc_disable();
    // The class of the instance nodes (and `object`), the atoms, the intern
    // table and the class's shared keys exist before the baseline: they are
    // the interpreter's, not the graph's.
    let _names = common::warm_instance_graphs(g, "N", 3 * 40);
    g.gc_collect(2).unwrap();
    let base = g.memory_stats().bytes_in_use;
    let classes: usize = g.gc_generation_sizes().iter().sum();
    {
        let make = |&inst: &bool| if inst { g.instance("N").unwrap() } else { g.list(&[]).unwrap() };
        let mut nodes: Vec<Obj<'_>> = graph.kinds[..graph.old].iter().map(make).collect();
        g.gc_collect(graph.promote).unwrap();
        nodes.extend(graph.kinds[graph.old..].iter().map(make));
        for (i, &(a, b)) in graph.edges.iter().enumerate() {
            if graph.kinds[a] {
                nodes[a].setattr(&format!("e{i}"), &nodes[b]).unwrap();
            } else {
                nodes[a].list_append(&nodes[b]).unwrap();
            }
        }
        let weak: Vec<Option<Obj<'_>>> =
            nodes.iter().zip(&graph.weak).map(|(o, &w)| w.then(|| g.weakref(o, None).unwrap())).collect();
        let kept: Vec<Obj<'_>> = nodes.iter().zip(&graph.kept).filter(|(_, &k)| k).map(|(o, _)| o.clone()).collect();
        drop(nodes);
        // A young collection first: old nodes are outside it.
        g.gc_collect(0).unwrap();
        let young_alive = model_young(graph);
        let tracked: usize = g.gc_generation_sizes().iter().sum();
        let n_weak = weak.iter().flatten().count();
        prop_assert_eq!(
            tracked - n_weak - classes,
            young_alive.iter().filter(|a| **a).count(),
            "young collection: live nodes differ from the model"
        );
        let r = g.gc_collect(2).unwrap();
        let alive = model_full(graph);
        let expect_freed = alive.iter().filter(|a| !**a).count();
        for (i, w) in weak.iter().enumerate() {
            if let Some(w) = w {
                let live = w.weakref_get().unwrap().is_some();
                prop_assert_eq!(live, alive[i], "node {} liveness differs from the model", i);
            }
        }
        // Every node is tracked; so is every weakref object.
        let tracked: usize = g.gc_generation_sizes().iter().sum();
        prop_assert_eq!(
            tracked - n_weak - classes,
            graph.kinds.len() - expect_freed,
            "live nodes differ from the model"
        );
        // Objects freed by refcounting alone when the handles dropped are not
        // counted as collected; the rest are.
        prop_assert!(r.collected <= expect_freed);
        drop(kept);
        drop(weak);
        g.gc_collect(2).unwrap();
    }
    prop_assert_eq!(g.memory_stats().bytes_in_use, base, "heap back to baseline");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_graphs_match_the_reachability_model(graph in graphs()) {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let i = rt.create(InterpreterConfig::isolated()).unwrap();
        i.with_gil(|g| check(g, &graph)).unwrap()?;
        let report = i.close().unwrap();
        prop_assert_eq!(report.leaked.live_blocks, 0);
    }
}
