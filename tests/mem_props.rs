//! Property tests: random alloc/free/realloc sequences (safe and raw API)
//! against a simple model. After every step the stats must match the model
//! exactly; at the end (and after every realloc) no block's contents may have
//! been overwritten; every refused free must leave the heap unchanged.
//!
//! 6,000 + 4,000 cases = 10,000 per run (set `PROPTEST_CASES` to scale both).

use std::ptr::NonNull;
use std::sync::OnceLock;

use proptest::prelude::*;
use subinterp::{Block, Error, Gil, Interpreter, InterpreterConfig, MemoryStats, Runtime, RuntimeConfig, POOL_SIZE};

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(RuntimeConfig::default()).unwrap())
}

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// The model's idea of a block's capacity, from the documented rules.
fn class_cap(n: usize) -> usize {
    (n.max(1) + 15) & !15
}

fn realloc_cap(old_len_small: bool, old_cap: usize, new: usize) -> usize {
    if old_len_small && new <= 512 {
        let (cn, co) = ((new.max(1) - 1) / 16, (old_cap - 1) / 16);
        if cn == co || (cn < co && 4 * new.max(1) > 3 * old_cap) {
            return old_cap;
        }
    }
    class_cap(new)
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize),
    AllocRaw(usize),
    Free(usize),
    Realloc(usize, usize),
    /// Free, then free the same address again (must be refused).
    DoubleFree(usize),
    /// Free an interior address (must be refused).
    Interior(usize),
    /// Free under another interpreter's GIL (must be refused).
    CrossFree(usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0usize..=64, 6 => 65usize..=512, 2 => 513usize..=5000]
}

fn ops(safe: bool) -> impl Strategy<Value = Vec<Op>> {
    let idx = any::<usize>();
    let op = if safe {
        prop_oneof![
            6 => size().prop_map(Op::Alloc),
            2 => size().prop_map(Op::AllocRaw),
            4 => idx.prop_map(Op::Free),
            3 => (idx, size()).prop_map(|(i, n)| Op::Realloc(i, n)),
            1 => idx.prop_map(Op::DoubleFree),
            1 => idx.prop_map(Op::Interior),
        ]
        .boxed()
    } else {
        prop_oneof![
            6 => size().prop_map(Op::AllocRaw),
            4 => idx.prop_map(Op::Free),
            3 => (idx, size()).prop_map(|(i, n)| Op::Realloc(i, n)),
            1 => idx.prop_map(Op::DoubleFree),
            1 => idx.prop_map(Op::Interior),
            1 => idx.prop_map(Op::CrossFree),
        ]
        .boxed()
    };
    prop::collection::vec(op, 1..80)
}

enum Mem<'i> {
    Safe(Block<'i>),
    Raw(NonNull<u8>),
}

struct Entry<'i> {
    mem: Mem<'i>,
    len: usize,
    cap: usize,
    tag: u8,
}

impl Entry<'_> {
    fn ptr(&self) -> *mut u8 {
        match &self.mem {
            Mem::Safe(b) => b.as_ptr() as *mut u8,
            Mem::Raw(p) => p.as_ptr(),
        }
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes of a live block, all written by `paint`.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }
    fn paint(&mut self) {
        let tag = self.tag;
        // SAFETY: `len` bytes of a live block we own.
        let s = unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) };
        for (k, x) in s.iter_mut().enumerate() {
            *x = tag ^ (k as u8);
        }
    }
    fn intact(&self) -> bool {
        self.bytes().iter().enumerate().all(|(k, &x)| x == self.tag ^ (k as u8))
    }
}

fn check_stats(s: &MemoryStats, live: &[Entry<'_>]) -> Result<(), TestCaseError> {
    let small: Vec<&Entry<'_>> = live.iter().filter(|e| e.len <= 512).collect();
    prop_assert_eq!(s.small_blocks, small.len());
    prop_assert_eq!(s.small_bytes, small.iter().map(|e| e.cap).sum::<usize>());
    prop_assert_eq!(s.large_blocks, live.len() - small.len());
    prop_assert_eq!(s.large_bytes, live.iter().filter(|e| e.len > 512).map(|e| e.cap).sum::<usize>());
    for k in &s.classes {
        prop_assert_eq!(k.blocks_in_use, small.iter().filter(|e| e.cap == k.block_size).count());
    }
    prop_assert_eq!(
        s.bytes_mapped,
        s.small_bytes
            + s.free_block_bytes
            + s.unused_pool_bytes
            + s.pool_header_bytes
            + s.quantization_bytes
            + s.alignment_bytes
    );
    prop_assert!(s.arenas_current <= s.arenas_high_water);
    prop_assert!(s.arenas_idle <= 1, "more than one arena without a live block\n{}", s);
    prop_assert_eq!(s.arenas_allocated - s.arenas_reclaimed, s.arenas_current as u64);
    Ok(())
}

fn is_invalid_free(r: subinterp::Result<()>) -> bool {
    matches!(r, Err(Error::InvalidFree { .. }))
}

fn free_entry(g: &Gil<'_>, e: Entry<'_>) {
    match e.mem {
        Mem::Safe(b) => drop(b),
        // SAFETY: a live raw block of this heap, dropped from the model.
        Mem::Raw(p) => unsafe { g.free_raw(p.as_ptr()) }.unwrap(),
    }
}

/// Arena sizes the first test draws: one, two or three pools (many arenas,
/// so arenas drain, become the spare and go back within 80 steps), or the
/// default 1 MiB.
fn arena_size() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![1 => Just(Some(POOL_SIZE)), 1 => Just(Some(2 * POOL_SIZE)), 1 => Just(Some(3 * POOL_SIZE)), 2 => Just(None)]
}

fn run(interp: &Interpreter, other: &Interpreter, arena: Option<usize>, ops: &[Op]) -> Result<(), TestCaseError> {
    let other = other.clone();
    let (result, expected_leak) = interp
        .with_gil(|g| {
            if let Some(bytes) = arena {
                g.set_arena_size(bytes).unwrap();
            }
            let r = (|| {
                let mut live: Vec<Entry<'_>> = Vec::new();
                let mut tag = 1u8;
                for op in ops {
                    tag = tag.wrapping_add(37);
                    match *op {
                        Op::Alloc(n) => {
                            let b = g.alloc(n).map_err(|e| TestCaseError::fail(e.to_string()))?;
                            prop_assert!(b.iter().all(|&x| x == 0));
                            let mut e = Entry { mem: Mem::Safe(b), len: n, cap: class_cap(n), tag };
                            e.paint();
                            live.push(e);
                        }
                        Op::AllocRaw(n) => {
                            let p = g.alloc_raw(n).map_err(|e| TestCaseError::fail(e.to_string()))?;
                            prop_assert_eq!(p.as_ptr() as usize % 16, 0);
                            let mut e = Entry { mem: Mem::Raw(p), len: n, cap: class_cap(n), tag };
                            e.paint();
                            live.push(e);
                        }
                        Op::Free(i) if !live.is_empty() => {
                            let e = live.swap_remove(i % live.len());
                            prop_assert!(e.intact());
                            free_entry(&g, e);
                        }
                        Op::Realloc(i, n) if !live.is_empty() => {
                            let k = i % live.len();
                            let e = &mut live[k];
                            prop_assert!(e.intact());
                            let new_cap = realloc_cap(e.len <= 512, e.cap, n);
                            match &mut e.mem {
                                Mem::Safe(b) => {
                                    g.realloc(b, n).map_err(|e| TestCaseError::fail(e.to_string()))?;
                                    prop_assert!(b[e.len.min(n)..].iter().all(|&x| x == 0));
                                }
                                Mem::Raw(p) => {
                                    // SAFETY: a live raw block of this heap; we keep the result.
                                    *p = unsafe { g.realloc_raw(p.as_ptr(), n) }
                                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                                }
                            }
                            let keep = e.len.min(n);
                            prop_assert!(e.bytes()[..keep].iter().enumerate().all(|(j, &x)| x == e.tag ^ (j as u8)));
                            e.len = n;
                            e.cap = new_cap;
                            prop_assert_eq!(g.usable_size(e.ptr()), Some(new_cap));
                            e.paint();
                        }
                        Op::DoubleFree(i) if !live.is_empty() => {
                            let e = live.swap_remove(i % live.len());
                            let addr = e.ptr();
                            free_entry(&g, e);
                            let before = g.memory_stats();
                            // SAFETY: refused (the block is already free).
                            let refused = is_invalid_free(unsafe { g.free_raw(addr) });
                            prop_assert!(refused, "double free accepted");
                            prop_assert_eq!(g.memory_stats(), before);
                        }
                        Op::Interior(i) if !live.is_empty() => {
                            let e = &live[i % live.len()];
                            let before = g.memory_stats();
                            // SAFETY: refused (never a block start: blocks are 16-aligned).
                            let refused = is_invalid_free(unsafe { g.free_raw(e.ptr().wrapping_add(8)) });
                            prop_assert!(refused, "interior free accepted");
                            prop_assert_eq!(g.memory_stats(), before);
                        }
                        Op::CrossFree(i) if !live.is_empty() => {
                            let addr = live[i % live.len()].ptr() as usize;
                            let other = &other;
                            let refused = g.allow_threads(move || {
                                // SAFETY: refused (owned by the other interpreter's heap).
                                other.with_gil(|g2| is_invalid_free(unsafe { g2.free_raw(addr as *mut u8) })).unwrap()
                            });
                            prop_assert!(refused);
                        }
                        _ => {}
                    }
                    check_stats(&g.memory_stats(), &live)?;
                }
                for e in &live {
                    prop_assert!(e.intact(), "block overwritten");
                }
                // Leave the raw blocks allocated: close() must report them.
                let leak: (usize, usize) =
                    live.iter().filter(|e| matches!(e.mem, Mem::Raw(_))).fold((0, 0), |(n, b), e| (n + 1, b + e.cap));
                for e in live {
                    if let Mem::Safe(b) = e.mem {
                        drop(b);
                    }
                }
                Ok(leak)
            })();
            match r {
                Ok(leak) => (Ok(()), leak),
                Err(e) => (Err(e), (usize::MAX, 0)),
            }
        })
        .unwrap();
    result?;
    let report = interp.close().unwrap();
    prop_assert_eq!((report.leaked.live_blocks, report.leaked.live_bytes), expected_leak);
    Ok(())
}

proptest! {
    #![proptest_config(config(6_000))]
    #[test]
    fn safe_and_raw_api_against_model(arena in arena_size(), ops in ops(true)) {
        let interp = runtime().create(InterpreterConfig::isolated()).unwrap();
        let other = runtime().main();
        run(&interp, &other, arena, &ops)?;
    }
}

proptest! {
    #![proptest_config(config(4_000))]
    #[test]
    fn raw_api_against_model_with_cross_interpreter_frees(ops in ops(false)) {
        let interp = runtime().create(InterpreterConfig::isolated()).unwrap();
        let other = runtime().create(InterpreterConfig::isolated()).unwrap();
        other.with_gil(|g| drop(g.alloc(24).unwrap())).unwrap(); // give it arenas of its own
        run(&interp, &other, None, &ops)?;
        other.close().unwrap();
    }
}
