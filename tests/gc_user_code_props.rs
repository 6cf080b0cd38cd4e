//! Random object graphs whose user code misbehaves in every phase (issue 9):
//! embedder objects whose `Drop` panics, re-enters the interpreter and
//! allocates, or collects; finalizers and weakref callbacks that do the same.
//! They die by refcount (dealloc and the trash drain of a long chain), in a
//! collection (the fast and the careful path), and at close (teardown).
//!
//! Invariants checked for every graph: nothing crashes or is freed twice
//! (the heap then hands one block out twice, and AddressSanitizer reports it
//! in the sanitizer lane); every error is a caught panic of ours; once every
//! handle is gone and two full collections ran, the heap is back to its
//! baseline; code run by the close never gets into the interpreter; the close
//! leaks nothing. `PROPTEST_CASES` scales the number of graphs (default 300).

mod common;

use std::cell::Cell;
use std::collections::HashSet;

use proptest::prelude::*;
use subinterp::{trace_fields, Error, Gil, Interpreter, InterpreterConfig, MemberVec, Obj, Runtime, RuntimeConfig};

/// What a piece of user code does when it runs.
#[derive(Debug, Clone, Copy)]
enum Act {
    Nothing,
    Panic,
    /// Allocates a few objects and passes a checkpoint (a scheduled
    /// collection runs there).
    Allocate,
    /// Runs a young and a full collection.
    Collect,
}

fn acts() -> impl Strategy<Value = Act> {
    prop_oneof![Just(Act::Nothing), Just(Act::Panic), Just(Act::Allocate), Just(Act::Collect)]
}

thread_local! {
    /// Re-entries attempted while the interpreter was closing, and how many
    /// of them got in (must stay 0).
    static CLOSING_ENTRIES: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    static CLOSING: Cell<bool> = const { Cell::new(false) };
}

fn act(g: Gil<'_>, a: Act) -> subinterp::Result<()> {
    match a {
        Act::Nothing => Ok(()),
        Act::Panic => panic!("user code panicked on purpose"),
        Act::Allocate => {
            let junk: Vec<Obj<'_>> = (0..3).map(|_| g.list(&[])).collect::<subinterp::Result<_>>()?;
            junk[0].list_append(&junk[1])?;
            g.checkpoint()
        }
        Act::Collect => {
            g.gc_collect(0)?;
            g.gc_collect(2).map(drop)
        }
    }
}

/// An embedder object with edges; its `Drop` re-enters the interpreter (the
/// thread still holds its GIL) and acts.
struct Hostile {
    edges: MemberVec,
    on_drop: Act,
}
trace_fields!(Hostile { edges });

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Act::Panic = self.on_drop {
            panic!("user code panicked on purpose");
        }
        let Some(interp) = Interpreter::current() else { return };
        let closing = CLOSING.with(Cell::get);
        let r = interp.with_gil(|g| act(g, self.on_drop));
        if closing {
            CLOSING_ENTRIES.with(|c| {
                let (tried, got_in) = c.get();
                c.set((tried + 1, got_in + usize::from(r.is_ok())));
            });
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    List,
    /// An instance, with a finalizer that acts (or none).
    Instance(Option<Act>),
    Hostile(Act),
}

#[derive(Debug, Clone)]
struct Graph {
    nodes: Vec<Node>,
    edges: Vec<(usize, usize)>,
    kept: Vec<bool>,
    /// A weakref to the node, with a callback that acts (or none).
    weak: Vec<Option<Option<Act>>>,
    /// Kept until the close (so their user code runs in the teardown).
    to_close: Vec<bool>,
    /// The graph hangs at the end of a chain this long (past the dealloc
    /// nesting limit: frees are queued in the trashcan).
    chain: usize,
    threshold: usize,
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        2 => Just(Node::List),
        2 => proptest::option::of(acts()).prop_map(Node::Instance),
        3 => acts().prop_map(Node::Hostile),
    ]
}

fn graphs() -> impl Strategy<Value = Graph> {
    (1usize..24).prop_flat_map(|n| {
        (
            proptest::collection::vec(node(), n),
            proptest::collection::vec((0..n, 0..n), 0..3 * n),
            proptest::collection::vec(proptest::bool::weighted(0.2), n),
            proptest::collection::vec(proptest::option::weighted(0.25, proptest::option::of(acts())), n),
            proptest::collection::vec(proptest::bool::weighted(0.15), n),
            prop_oneof![Just(0usize), Just(100)],
            prop_oneof![Just(0usize), Just(3), Just(50)],
        )
            .prop_map(|(nodes, edges, kept, weak, to_close, chain, threshold)| Graph {
                nodes,
                edges,
                kept,
                weak,
                to_close,
                chain,
                threshold,
            })
    })
}

fn actor<'i>(g: Gil<'i>, a: Act) -> Obj<'i> {
    g.function("act", &[], move |g, _, _| {
        act(g, a)?;
        g.none()
    })
    .unwrap()
}

fn build<'i>(g: Gil<'i>, graph: &Graph) -> Vec<Obj<'i>> {
    let nodes: Vec<Obj<'i>> = graph
        .nodes
        .iter()
        .map(|n| match n {
            Node::List => g.list(&[]).unwrap(),
            Node::Instance(fin) => {
                let i = g.instance("N").unwrap();
                if let Some(a) = fin {
                    i.set_finalizer(Some(&actor(g, *a))).unwrap();
                }
                i
            }
            Node::Hostile(a) => g.new_object(Hostile { edges: MemberVec::new(), on_drop: *a }).unwrap(),
        })
        .collect();
    for (k, &(a, b)) in graph.edges.iter().enumerate() {
        match graph.nodes[a] {
            Node::List => nodes[a].list_append(&nodes[b]).unwrap(),
            Node::Instance(_) => nodes[a].setattr(&format!("e{k}"), &nodes[b]).unwrap(),
            Node::Hostile(_) => nodes[a].downcast_ref::<Hostile>().unwrap().edges.push(&nodes[b]),
        }
    }
    nodes
}

fn assert_distinct_blocks(g: Gil<'_>) -> Result<(), TestCaseError> {
    let objs: Vec<Obj<'_>> = (0..64).map(|_| g.list(&[]).unwrap()).collect();
    let addrs: HashSet<usize> = objs.iter().map(Obj::addr).collect();
    prop_assert_eq!(addrs.len(), objs.len(), "two live objects at one address: a double free");
    Ok(())
}

fn only_our_panics(errors: &[Error]) -> Result<(), TestCaseError> {
    for e in errors {
        prop_assert!(
            matches!(e, Error::CallbackPanicked { message, .. } if message.contains("on purpose")),
            "unexpected error: {:?}",
            e
        );
    }
    Ok(())
}

/// Keeps the expected panics' messages out of the output (thousands of
/// them); any other panic is printed as usual.
fn quiet_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or("");
            if !msg.contains("on purpose") {
                default(info);
            }
        }));
    });
}

fn run(graph: &Graph) -> Result<(), TestCaseError> {
    quiet_expected_panics();
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let to_close = interp.with_gil(|g| -> Result<Vec<subinterp::Owned>, TestCaseError> {
        if graph.threshold == 0 {
            g.gc_disable();
        } else {
            g.gc_set_threshold(graph.threshold, 2, 2);
        }
        // The instance nodes' class is the interpreter's (kept until close),
        // so are the shared atoms, the intern table and the class's keys.
        let _names = common::warm_instance_graphs(g, "N", 3 * 24);
        g.gc_collect(2).unwrap();
        let base = g.memory_stats().bytes_in_use;
        let mut to_close = Vec::new();
        {
            let nodes = build(g, graph);
            let weak: Vec<Obj<'_>> = nodes
                .iter()
                .zip(&graph.weak)
                .filter_map(|(o, w)| w.map(|cb| g.weakref(o, cb.map(|a| actor(g, a)).as_ref()).unwrap()))
                .collect();
            let kept: Vec<Obj<'_>> =
                nodes.iter().zip(&graph.kept).filter(|(_, &k)| k).map(|(o, _)| o.clone()).collect();
            to_close.extend(nodes.iter().zip(&graph.to_close).filter(|(_, &k)| k).map(|(o, _)| o.to_owned()));
            // The whole graph at the end of a long chain of lists: dropping the
            // chain frees the graph from the trashcan's queue.
            let mut chain = g.list(&nodes).unwrap();
            for _ in 0..graph.chain {
                chain = g.list(&[chain]).unwrap();
            }
            drop(nodes);
            drop(chain); // refcount deaths, with user code in them
            g.checkpoint().ok();
            g.gc_collect(0).unwrap(); // the young collection's paths
            drop(kept);
            g.gc_collect(2).unwrap(); // the full collection's paths
            drop(weak);
            g.gc_collect(2).unwrap();
        }
        // Objects made by user code (`Act::Allocate`) are garbage too; what
        // `to_close` holds stays.
        g.gc_collect(2).unwrap();
        g.gc_collect(2).unwrap();
        only_our_panics(&g.gc_take_errors())?;
        assert_distinct_blocks(g)?;
        if to_close.is_empty() {
            prop_assert_eq!(g.memory_stats().bytes_in_use, base, "heap back to baseline");
        }
        Ok(to_close)
    });
    let to_close = to_close.unwrap()?;
    CLOSING.with(|c| c.set(true));
    CLOSING_ENTRIES.with(|c| c.set((0, 0)));
    let report = interp.close();
    CLOSING.with(|c| c.set(false));
    let report = report.unwrap();
    drop(to_close);
    let (_, got_in) = CLOSING_ENTRIES.with(Cell::get);
    prop_assert_eq!(got_in, 0, "user code run by close got into the interpreter");
    only_our_panics(&report.gc_errors)?;
    only_our_panics(&report.teardown_errors)?;
    prop_assert_eq!(report.leaked.live_blocks, 0, "close leaked: {:?}", report);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(300),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn user_code_in_every_phase_keeps_the_heap_sound(graph in graphs()) {
        run(&graph)?;
    }
}
