//! Object-model benches: bytes per small object against CPython 3.13's for
//! the same shapes (`benches/objects_cpython.py`, run in the same process
//! tree when a CPython is found), and the time to make and free them.
//!
//! ```text
//! SUBINTERP_CPYTHON=~/.pyenv/versions/3.13.0/bin/python3 cargo bench --bench objects -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Our bytes per object are everything the objects cost: the growth of the
//! interpreter heap's `bytes_in_use` (block sizes, size-class rounding
//! included) plus the growth of what the process took from the system
//! allocator meanwhile (requested sizes, counted by this binary's global
//! allocator; CPython's side is tracemalloc's, also requested sizes). The
//! holder of the N objects (a `Vec` here, a list there) is allocated before
//! the measurement on both sides.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use subinterp::{Gil, InterpreterConfig, Obj, Runtime, RuntimeConfig};

/// The system allocator, counting live requested bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments,
// which uphold `GlobalAlloc`'s contract; the counter is only arithmetic.
unsafe impl GlobalAlloc for Counting {
    /// # Safety
    /// As `GlobalAlloc::alloc`: the caller's arguments are forwarded.
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(l) }
    }
    /// # Safety
    /// As `GlobalAlloc::dealloc`: the caller's arguments are forwarded.
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(p, l) }
    }
    /// # Safety
    /// As `GlobalAlloc::alloc_zeroed`: the caller's arguments are forwarded.
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc_zeroed(l) }
    }
    /// # Safety
    /// As `GlobalAlloc::realloc`: the caller's arguments are forwarded.
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const N: usize = 1_000_000;

/// What the shapes share, as the script's do: its constants (`'k'`, `1`)
/// are objects of the code object, not made per call.
struct Consts<'i> {
    key: Obj<'i>,
    none: Obj<'i>,
    one: Obj<'i>,
}

type Make = for<'i> fn(Gil<'i>, &Consts<'i>) -> Obj<'i>;

fn empty_list<'i>(g: Gil<'i>, _: &Consts<'i>) -> Obj<'i> {
    g.list(&[]).unwrap()
}
fn list_of_1<'i>(g: Gil<'i>, c: &Consts<'i>) -> Obj<'i> {
    g.list(std::slice::from_ref(&c.none)).unwrap()
}
fn empty_dict<'i>(g: Gil<'i>, _: &Consts<'i>) -> Obj<'i> {
    g.dict().unwrap()
}
fn dict_of_1<'i>(g: Gil<'i>, c: &Consts<'i>) -> Obj<'i> {
    let d = g.dict().unwrap();
    d.dict_set(&c.key, &c.none).unwrap();
    d
}
fn instance_no_attrs<'i>(g: Gil<'i>, _: &Consts<'i>) -> Obj<'i> {
    g.instance("C").unwrap()
}
fn instance_1_attr<'i>(g: Gil<'i>, c: &Consts<'i>) -> Obj<'i> {
    let o = g.instance("C").unwrap();
    // The name is interned (one str per interpreter) and held by the class
    // as a shared key: the instance holds only the value, inline.
    o.setattr("x", &c.one).unwrap();
    o
}

const SHAPES: [(&str, Make); 6] = [
    ("empty_list", empty_list),
    ("list_of_1", list_of_1),
    ("empty_dict", empty_dict),
    ("dict_of_1", dict_of_1),
    ("instance_no_attrs", instance_no_attrs),
    ("instance_1_attr", instance_1_attr),
];

fn consts(g: Gil<'_>) -> Consts<'_> {
    Consts { key: g.str("k").unwrap(), none: g.none().unwrap(), one: g.int(1).unwrap() }
}

/// Bytes per object of `make`: (heap, system) growth over N objects, / N.
fn bytes_per(g: Gil<'_>, make: Make) -> (f64, f64) {
    // Warm: the class of `g.instance`, the shared atoms, the constants.
    let c = consts(g);
    drop(make(g, &c));
    g.gc_collect(2).unwrap();
    let mut kept = Vec::with_capacity(N);
    let heap0 = g.memory_stats().bytes_in_use as f64;
    let sys0 = LIVE.load(Ordering::Relaxed) as f64;
    for _ in 0..N {
        kept.push(make(g, &c));
    }
    let heap = (g.memory_stats().bytes_in_use as f64 - heap0) / N as f64;
    let sys = (LIVE.load(Ordering::Relaxed) as f64 - sys0) / N as f64;
    drop(kept);
    g.gc_collect(2).unwrap();
    (heap, sys)
}

fn side_by_side(g: Gil<'_>) {
    let load = common::load_average();
    side_by_side_table(g);
    eprintln!("  {}", common::load_note(load));
}

fn side_by_side_table(g: Gil<'_>) {
    g.gc_disable();
    let py = common::cpython("objects");
    match &py {
        Some(py) => eprintln!(
            "bytes per object, N = {N} (ours = heap blocks + system bytes; CPython {} = tracemalloc):",
            py["python"].as_str().unwrap_or("?")
        ),
        None => eprintln!("bytes per object, N = {N} (no CPython found: set SUBINTERP_CPYTHON):"),
    }
    eprintln!("  {:20} {:>8} {:>8} {:>8} {:>9} {:>8}", "shape", "heap", "system", "ours", "CPython", "ratio");
    for (name, make) in SHAPES {
        let (heap, sys) = bytes_per(g, make);
        let ours = heap + sys;
        let theirs = py.as_ref().and_then(|p| p[format!("{name}_bytes")].as_f64()).unwrap_or(f64::NAN);
        eprintln!("  {name:20} {heap:8.1} {sys:8.1} {ours:8.1} {theirs:9.1} {:8.2}", ours / theirs);
    }
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp.with_gil(side_by_side).unwrap();
    let mut group = c.benchmark_group("objects");
    interp
        .with_gil(|g| {
            g.gc_disable();
            // Baseline in the same run: a boxed Rust value of the same role.
            group.bench_function("baseline_box_vec_u64_1", |b| b.iter(|| std::hint::black_box(Box::new(vec![0u64]))));
            let c = consts(g);
            for (name, make) in SHAPES {
                group.bench_function(format!("make_free_{name}"), |b| b.iter(|| std::hint::black_box(make(g, &c))));
            }
            // Attribute access: an instance in the inline layout (three
            // names its class shares) against one whose attributes moved to
            // a dict (read as a dict once), and a dict's str lookup.
            let point = g.new_class("Point", &[]).unwrap();
            let make_point = || {
                let o = point.call(&[]).unwrap();
                for n in ["x", "y", "z"] {
                    o.setattr(n, &c.one).unwrap();
                }
                o
            };
            drop((make_point(), make_point())); // the class learns x, y, z
            let inline = make_point();
            let in_dict = make_point();
            in_dict.dict_items().unwrap(); // leaves the inline layout
            let d = g.dict().unwrap();
            for n in ["x", "y", "z"] {
                d.dict_set(&g.intern(n).unwrap(), &c.one).unwrap();
            }
            let z = g.intern("z").unwrap();
            group.bench_function("baseline_dict_get_str_z", |b| {
                b.iter(|| std::hint::black_box(d.dict_get(&z).unwrap()))
            });
            group.bench_function("getattr_z_inline", |b| b.iter(|| std::hint::black_box(inline.getattr("z").unwrap())));
            group.bench_function("getattr_z_dict", |b| b.iter(|| std::hint::black_box(in_dict.getattr("z").unwrap())));
            group.bench_function("setattr_z_inline", |b| b.iter(|| inline.setattr("z", &c.one).unwrap()));
            group.bench_function("setattr_z_dict", |b| b.iter(|| in_dict.setattr("z", &c.one).unwrap()));
        })
        .unwrap();
    group.finish();
    interp.close().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
