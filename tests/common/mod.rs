//! Shared by the property tests that compare the heap with a baseline.

use subinterp::Gil;

/// Makes what the interpreter keeps once a graph of instances of the class
/// `class` with attributes `e0`, `e1`, … ran, so that a baseline taken after
/// it is the heap's state after the graph is gone: the class, the shared
/// atoms, the class's shared keys (at most 30, learnt one per instance that
/// has all the earlier ones; a class keeps them until it dies), and the
/// names `e0`..`e{names-1}` interned. The names are returned, to be kept
/// until the comparison: the intern table then never inserts or prunes one,
/// and its size (which depends on its history of insertions and deletions,
/// as a dict's) stays what it was at the baseline.
#[must_use = "keep the names alive until the heap is compared with the baseline"]
pub fn warm_instance_graphs<'i>(g: Gil<'i>, class: &str, names: usize) -> Vec<subinterp::Obj<'i>> {
    drop(g.instance(class).unwrap());
    drop(g.none().unwrap());
    let interned: Vec<_> = (0..names).map(|j| g.intern(&format!("e{j}")).unwrap()).collect();
    for k in 0..30 {
        let o = g.instance(class).unwrap();
        for j in 0..=k {
            o.setattr(&format!("e{j}"), &o).unwrap();
        }
        for j in 0..=k {
            o.delattr(&format!("e{j}")).unwrap(); // no cycle left behind
        }
    }
    g.gc_collect(2).unwrap();
    interned
}
