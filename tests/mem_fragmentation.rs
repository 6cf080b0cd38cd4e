//! Fragmentation: a live set that rises and falls gives its arenas back to
//! the OS; arenas are used fullest-first; at most one spare is kept.

use subinterp::{Block, Gil, InterpreterConfig, Runtime, RuntimeConfig, POOL_HEADER_SIZE, POOL_SIZE};

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

fn fill<'i>(g: &Gil<'i>, n: usize, rng: &mut Rng) -> Vec<Block<'i>> {
    (0..n)
        .map(|k| {
            let mut b = g.alloc(16 + rng.below(241)).unwrap();
            b.fill((k % 251) as u8);
            b
        })
        .collect()
}

#[test]
fn live_set_rises_and_falls_and_arenas_go_back() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp
        .with_gil(|g| {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            for round in 0..3 {
                // Rise: ~20 MB of mixed small blocks.
                let mut live = fill(&g, 150_000, &mut rng);
                let peak = g.memory_stats();
                assert!(peak.arenas_current >= 15, "round {round}: {peak}");
                // Fall to 2 %: oldest first, shuffled within windows of 2,000
                // blocks (a sliding-window live set), so whole arenas drain.
                for w in live.chunks_mut(2_000) {
                    shuffle(w, &mut rng);
                }
                live.drain(..147_000);
                let low = g.memory_stats();
                assert!(
                    low.arenas_current * 4 <= peak.arenas_current,
                    "round {round}: arenas not returned ({} of {})\n{low}",
                    low.arenas_current,
                    peak.arenas_current
                );
                // Survivors were never overwritten.
                for b in &live {
                    let v = b[0];
                    assert!(b.iter().all(|&x| x == v));
                }
                // Rise again on top of the survivors, then fall in random order.
                live.extend(fill(&g, 50_000, &mut rng));
                shuffle(&mut live, &mut rng);
                // Fall to nothing: everything but one spare goes back.
                drop(live);
                let empty = g.memory_stats();
                assert_eq!((empty.small_blocks, empty.small_bytes), (0, 0));
                assert_eq!(empty.arenas_current, 1, "round {round}: at most one spare\n{empty}");
                assert_eq!(empty.arenas_allocated - empty.arenas_reclaimed, 1);
                assert!(empty.arenas_high_water >= peak.arenas_current);
            }
            let s = g.memory_stats();
            assert!(s.arenas_reclaimed >= 3 * 14, "{s}");
            assert_eq!(g.trim_memory(), 1);
            let s = g.memory_stats();
            assert_eq!((s.arenas_current, s.bytes_mapped), (0, 0));
        })
        .unwrap();
    assert_eq!(interp.close().unwrap().leaked.arenas_unmapped, 0);
}

#[test]
fn new_pools_come_from_the_fullest_arena() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    rt.main()
        .with_gil(|g| {
            g.set_arena_size(4 * POOL_SIZE).unwrap();
            let per_pool = (POOL_SIZE - POOL_HEADER_SIZE) / 16;
            // Three arenas (A, B, C) of four pools of 16-byte blocks.
            let mut blocks: Vec<Option<Block<'_>>> = (0..per_pool * 12).map(|_| Some(g.alloc(16).unwrap())).collect();
            assert_eq!(g.memory_stats().arenas_current, 3);
            let pool_of = |i: usize| blocks[i * per_pool].as_ref().unwrap().as_ptr() as usize & !(POOL_SIZE - 1);
            let pools: Vec<usize> = (0..12).map(pool_of).collect();
            let empty_pool = |blocks: &mut Vec<Option<Block<'_>>>, p: usize| {
                for b in &mut blocks[p * per_pool..(p + 1) * per_pool] {
                    *b = None;
                }
            };
            empty_pool(&mut blocks, 7); // B's last pool (B will have 1 free pool)
            for p in 9..12 {
                empty_pool(&mut blocks, p); // C's last three (C will have 3 free pools)
            }
            // The heap keeps those empty pools (one per class, four recent
            // ones); trimming gives them back to their arenas, none of which
            // is empty.
            assert_eq!(g.memory_stats().classes[0].pools, 12);
            assert_eq!(g.trim_memory(), 0);
            let s = g.memory_stats();
            assert_eq!(s.classes[0].pools, 12 - 4, "{s}");
            assert_eq!(s.unused_pool_bytes, 4 * POOL_SIZE);
            // A new pool (another class) comes from B, the fullest arena with a free pool.
            let b = g.alloc(100).unwrap();
            assert_eq!(b.as_ptr() as usize & !(POOL_SIZE - 1), pools[7]);
            // The next ones from C.
            let c1 = g.alloc(200).unwrap();
            let c2 = g.alloc(300).unwrap();
            let got = [c1.as_ptr() as usize & !(POOL_SIZE - 1), c2.as_ptr() as usize & !(POOL_SIZE - 1)];
            assert!(got.iter().all(|p| pools[9..12].contains(p)), "{got:x?} not in C");
            drop((b, c1, c2));
            // Drain A and C entirely: one of them is unmapped, one stays the spare.
            for p in [0, 1, 2, 3, 8] {
                empty_pool(&mut blocks, p);
            }
            let s = g.memory_stats();
            assert_eq!(s.arenas_current, 2, "{s}"); // B (live) + one spare
            assert!(s.arenas_reclaimed >= 1);
            drop(blocks);
            let s = g.memory_stats();
            assert_eq!((s.arenas_current, s.small_blocks), (1, 0), "{s}");
        })
        .unwrap();
}

#[test]
fn alloc_free_pair_on_a_quiet_heap_does_not_churn_pools_or_arenas() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    rt.main()
        .with_gil(|g| {
            for _ in 0..10_000 {
                drop(g.alloc(32).unwrap());
            }
            let s = g.memory_stats();
            assert_eq!((s.arenas_allocated, s.arenas_reclaimed), (1, 0));
            assert_eq!(s.classes[1].pools, 1, "the class keeps its empty pool");
            // A second class that empties keeps its own pool too; the arena
            // is still the spare and nothing is unmapped.
            drop(g.alloc(64).unwrap());
            let s = g.memory_stats();
            assert_eq!((s.arenas_current, s.classes[3].pools), (1, 1));
        })
        .unwrap();
}

#[test]
fn a_batch_that_fills_and_empties_a_few_pools_keeps_them() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    rt.main()
        .with_gil(|g| {
            let per_pool = (POOL_SIZE - POOL_HEADER_SIZE) / 32;
            let n = 2 * per_pool + 12; // three pools of 32-byte blocks
            let mut rng = Rng(7);
            for round in 0..50 {
                let mut batch: Vec<_> = (0..n).map(|_| g.alloc_raw(32).unwrap().as_ptr()).collect();
                shuffle(&mut batch, &mut rng);
                for p in batch {
                    // SAFETY: allocated above, freed once.
                    unsafe { g.free_raw(p) }.unwrap();
                }
                let s = g.memory_stats();
                // The three empty pools stay with the class (one as its
                // cached pool, two as recent ones): nothing is carved,
                // returned or unmapped again.
                assert_eq!((s.classes[1].pools, s.small_blocks), (3, 0), "round {round}: {s}");
                assert_eq!((s.arenas_allocated, s.arenas_reclaimed), (1, 0), "round {round}");
            }
            // Trimming gives them back, and the arena with them.
            assert_eq!(g.trim_memory(), 1);
            let s = g.memory_stats();
            assert_eq!((s.arenas_current, s.classes[1].pools), (0, 0), "{s}");
        })
        .unwrap();
}

/// A class's kept empty pool that is used again and then empties is the last
/// pool of its arena to hold a live block: the arena drains then, and with a
/// spare already kept it is unmapped (it used to stay mapped, unnoticed: the
/// kept pool's frees never left the fast path).
#[test]
fn an_arena_drained_by_a_reused_kept_pool_is_unmapped() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp
        .with_gil(|g| {
            g.set_arena_size(2 * POOL_SIZE).unwrap(); // arenas of two pools
            let x = g.alloc(48).unwrap(); // arena A, pool 0
            let y = g.alloc(32).unwrap(); // arena A, pool 1: A is full
            let z = g.alloc(64).unwrap(); // arena B
            assert_eq!(g.memory_stats().arenas_current, 2);
            drop(y); // A's pool 1 empties: kept for class 32 (A still holds x)
            drop(z); // B holds nothing: the spare
            let y = g.alloc(32).unwrap(); // A's kept pool serves it
            drop(x); // A's pool 0 empties (kept for class 48); y is still live
            assert_eq!(g.memory_stats().arenas_current, 2);
            drop(y); // A holds no live block now: with B kept, A goes back
            let s = g.memory_stats();
            assert_eq!((s.small_blocks, s.arenas_current), (0, 1), "at most one arena without a live block\n{s}");
            // Both arenas serve again.
            let blocks: Vec<_> = (0..4).map(|k| g.alloc(16 << k).unwrap()).collect();
            assert_eq!(g.memory_stats().small_blocks, 4);
            drop(blocks);
            assert_eq!(g.memory_stats().arenas_current, 1);
        })
        .unwrap();
    interp.close().unwrap();
}
