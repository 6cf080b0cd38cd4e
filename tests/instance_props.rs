//! Random attribute operations on instances of one class against a model (an
//! insertion-ordered map per instance): whatever layout each instance has
//! (inline values under the class's shared keys, or a dict; see
//! `src/gc/instance.rs`), lookups, deletions, `AttributeError`s and the
//! order of `dict_items` are a dict's. Some cases run under a memory limit:
//! a refused operation must leave the instance as the model says it was.
//! `PROPTEST_CASES` scales the number of cases (default 256).

use proptest::prelude::*;
use subinterp::{Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

#[derive(Debug, Clone)]
enum Op {
    Set { inst: usize, name: usize, value: i64 },
    Del { inst: usize, name: usize },
    Get { inst: usize, name: usize },
    Items { inst: usize },
    New,
    Drop { inst: usize },
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (0..4usize, 0..40usize, -3i64..1000).prop_map(|(inst, name, value)| Op::Set { inst, name, value }),
        2 => (0..4usize, 0..40usize).prop_map(|(inst, name)| Op::Del { inst, name }),
        3 => (0..4usize, 0..40usize).prop_map(|(inst, name)| Op::Get { inst, name }),
        1 => (0..4usize).prop_map(|inst| Op::Items { inst }),
        1 => Just(Op::New),
        1 => (0..4usize).prop_map(|inst| Op::Drop { inst }),
    ];
    proptest::collection::vec(op, 1..120)
}

/// Names: mostly from a small pool (so the class learns them and instances
/// share them), some from a wider one (past the 30 shared keys).
fn name(i: usize) -> String {
    if i < 8 {
        format!("p{i}")
    } else {
        format!("w{i}")
    }
}

type Model = Vec<(String, i64)>;

fn model_set(m: &mut Model, k: &str, v: i64) {
    match m.iter_mut().find(|(n, _)| n == k) {
        Some(e) => e.1 = v,
        None => m.push((k.to_owned(), v)),
    }
}

fn check(o: &Obj<'_>, m: &Model) -> Result<(), TestCaseError> {
    let items: Vec<(String, i64)> =
        o.dict_items().unwrap().iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_int().unwrap())).collect();
    prop_assert_eq!(&items, m);
    Ok(())
}

fn run(g: Gil<'_>, ops: &[Op], slack: Option<usize>) -> Result<(), TestCaseError> {
    let limited = slack.is_some();
    let class = g.new_class("Rand", &[]).unwrap();
    let mut insts: Vec<(Obj<'_>, Model)> = (0..2).map(|_| (class.call(&[]).unwrap(), Vec::new())).collect();
    if let Some(slack) = slack {
        // Little room: layout changes, new keys and new names are refused
        // at random points (MemoryError), never half-done.
        g.set_memory_limit(Some(g.memory_stats().counted_bytes + slack)).unwrap();
    }
    for op in ops {
        match *op {
            Op::Set { inst, name: n, value } => {
                let Some((o, m)) = insts.get_mut(inst) else { continue };
                let Ok(v) = g.int(value) else { continue };
                match o.setattr(&name(n), &v) {
                    Ok(()) => model_set(m, &name(n), value),
                    Err(e) => prop_assert!(e.is_memory_error() && limited, "{e}"),
                }
            }
            Op::Del { inst, name: n } => {
                let Some((o, m)) = insts.get_mut(inst) else { continue };
                let had = m.iter().position(|(k, _)| *k == name(n));
                let res = o.delattr(&name(n));
                match had {
                    Some(i) => {
                        prop_assert!(res.is_ok(), "{:?}", res);
                        m.remove(i);
                    }
                    None => prop_assert!(res.unwrap_err().to_string().contains("has no attribute")),
                }
            }
            Op::Get { inst, name: n } => {
                let Some((o, m)) = insts.get(inst) else { continue };
                let want = m.iter().find(|(k, _)| *k == name(n)).map(|e| e.1);
                match o.getattr(&name(n)) {
                    Ok(got) => prop_assert_eq!(got.and_then(|v| v.as_int()), want),
                    Err(e) => prop_assert!(e.is_memory_error() && limited, "{e}"),
                }
            }
            Op::Items { inst } => {
                let Some((o, m)) = insts.get(inst) else { continue };
                match o.dict_items() {
                    Ok(_) => check(o, m)?,
                    Err(e) => prop_assert!(e.is_memory_error() && limited, "{e}"),
                }
            }
            Op::New => {
                if insts.len() < 4 {
                    if let Ok(o) = class.call(&[]) {
                        insts.push((o, Vec::new()));
                    }
                }
            }
            Op::Drop { inst } => {
                if inst < insts.len() {
                    insts.remove(inst);
                }
            }
        }
    }
    g.set_memory_limit(None).unwrap();
    for (o, m) in &insts {
        check(o, m)?;
        for (k, v) in m {
            prop_assert_eq!(o.getattr(k).unwrap().unwrap().as_int(), Some(*v));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn instance_attributes_behave_as_an_ordered_dict(
        ops in ops(),
        slack in proptest::option::weighted(0.3, 0usize..3_000),
    ) {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let interp = rt.create(InterpreterConfig::isolated()).unwrap();
        let r = interp.with_gil(|g| run(g, &ops, slack)).unwrap();
        let report = interp.close().unwrap();
        prop_assert_eq!(report.leaked.live_blocks, 0);
        r?;
    }
}
