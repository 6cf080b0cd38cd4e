//! Heap benchmarks: the interpreter heap against the system allocator and
//! mimalloc, in the same run.
//!
//! ```text
//! CARGO_TARGET_DIR=target-mem cargo bench --bench mem -- --warm-up-time 1 --measurement-time 2
//! ```
//!
//! * `pair/<size>/<allocator>`: one allocation and its free, 16/32/64/256 bytes.
//!   `heap-block` is the safe API (`Gil::alloc` + drop, which zeroes the
//!   block); `heap-raw` is `alloc_raw` + `free_raw` (uninitialized, with the
//!   ownership check on free), the object layer's path.
//! * `batch1024/<allocator>`: allocate 1,024 blocks of 32 bytes, then free them
//!   in a shuffled order.
//! * Before the groups, the overhead of 1,000,000 live 32-byte blocks is
//!   printed (mapped bytes and resident-set growth over 32,000,000 bytes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;

use criterion::{BenchmarkId, Criterion, Throughput};
use mimalloc::MiMalloc;
use subinterp::{Gil, InterpreterConfig, Runtime, RuntimeConfig};

const SIZES: [usize; 4] = [16, 32, 64, 256];
const BATCH: usize = 1024;

/// A fixed shuffled order (xorshift-driven Fisher–Yates).
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

fn pair_global<A: GlobalAlloc>(a: &A, layout: Layout) {
    // SAFETY: non-zero layout; the pointer is freed with the same layout.
    unsafe {
        let p = a.alloc(layout);
        black_box(p);
        a.dealloc(p, layout);
    }
}

fn pairs(c: &mut Criterion, g: &Gil<'_>) {
    for size in SIZES {
        let mut group = c.benchmark_group(format!("pair/{size}"));
        group.throughput(Throughput::Elements(1));
        let layout = Layout::from_size_align(size, 16).unwrap();
        group.bench_function("heap-block", |b| {
            b.iter(|| {
                let blk = g.alloc(black_box(size)).unwrap();
                black_box(blk.as_ptr());
            })
        });
        group.bench_function("heap-raw", |b| {
            b.iter(|| {
                let p = g.alloc_raw(black_box(size)).unwrap();
                black_box(p);
                // SAFETY: a live block of this heap, not used afterwards.
                unsafe { g.free_raw(p.as_ptr()) }.unwrap();
            })
        });
        group.bench_function("system", |b| b.iter(|| pair_global(&System, black_box(layout))));
        group.bench_function("mimalloc", |b| b.iter(|| pair_global(&MiMalloc, black_box(layout))));
        group.finish();
    }
}

fn batch_global<A: GlobalAlloc>(a: &A, slots: &mut [*mut u8], order: &[usize]) {
    let layout = Layout::from_size_align(32, 16).unwrap();
    for s in slots.iter_mut() {
        // SAFETY: non-zero layout.
        *s = unsafe { a.alloc(layout) };
    }
    black_box(&*slots);
    for &i in order {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { a.dealloc(slots[i], layout) };
    }
}

fn batches(c: &mut Criterion, g: &Gil<'_>) {
    let order = permutation(BATCH);
    let mut group = c.benchmark_group("batch1024");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::from_parameter("heap-block"), |b| {
        let mut slots = Vec::with_capacity(BATCH);
        b.iter(|| {
            for _ in 0..BATCH {
                slots.push(Some(g.alloc(32).unwrap()));
            }
            black_box(&slots);
            for &i in &order {
                slots[i] = None;
            }
            slots.clear();
        })
    });
    group.bench_function(BenchmarkId::from_parameter("heap-raw"), |b| {
        let mut slots = vec![NonNull::dangling(); BATCH];
        b.iter(|| {
            for s in slots.iter_mut() {
                *s = g.alloc_raw(32).unwrap();
            }
            black_box(&slots);
            for &i in &order {
                // SAFETY: allocated above, freed once.
                unsafe { g.free_raw(slots[i].as_ptr()) }.unwrap();
            }
        })
    });
    group.bench_function(BenchmarkId::from_parameter("system"), |b| {
        let mut slots = vec![std::ptr::null_mut(); BATCH];
        b.iter(|| batch_global(&System, &mut slots, &order))
    });
    group.bench_function(BenchmarkId::from_parameter("mimalloc"), |b| {
        let mut slots = vec![std::ptr::null_mut(); BATCH];
        b.iter(|| batch_global(&MiMalloc, &mut slots, &order))
    });
    group.finish();
}

fn rss_bytes() -> usize {
    // Second field of /proc/self/statm: resident pages (4 KiB on x86-64 Linux).
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<usize>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// Overhead of 1,000,000 live 32-byte blocks (in a fresh interpreter).
fn overhead(rt: &Runtime) {
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp
        .with_gil(|g| {
            let rss0 = rss_bytes();
            let blocks: Vec<_> = (0..1_000_000).map(|_| g.alloc_raw(32).unwrap()).collect();
            for b in &blocks {
                // SAFETY: 32 fresh bytes each: touch them all.
                unsafe { b.as_ptr().write_bytes(1, 32) };
            }
            let rss1 = rss_bytes();
            let s = g.memory_stats();
            let payload = 32_000_000f64;
            eprintln!(
                "overhead/1M x 32 B: mapped {} B ({:+.2} %), touched {} B ({:+.2} %), RSS growth {} B ({:+.2} %; includes the 8 MB pointer vector)",
                s.bytes_mapped,
                (s.bytes_mapped as f64 / payload - 1.0) * 100.0,
                s.bytes_mapped - s.alignment_bytes - s.unused_pool_bytes,
                ((s.bytes_mapped - s.alignment_bytes - s.unused_pool_bytes) as f64 / payload - 1.0) * 100.0,
                rss1 - rss0,
                ((rss1 - rss0) as f64 / payload - 1.0) * 100.0,
            );
            for b in blocks {
                // SAFETY: a live block of this heap.
                unsafe { g.free_raw(b.as_ptr()) }.unwrap();
            }
        })
        .unwrap();
    interp.close().unwrap();
}

fn main() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    overhead(&rt);
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    let mut c = Criterion::default().configure_from_args();
    interp
        .with_gil(|g| {
            pairs(&mut c, &g);
            batches(&mut c, &g);
        })
        .unwrap();
    c.final_summary();
    interp.close().unwrap();
}
