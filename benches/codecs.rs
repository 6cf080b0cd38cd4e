//! Codec benches beside CPython: a cached `codec_lookup` and a utf-8 decode
//! of 1 MiB with `surrogateescape`, the cases of `benches/codecs_cpython.py`.
//!
//! ```text
//! cargo bench --bench codecs -- --warm-up-time 1 --measurement-time 3
//! SUBINTERP_CPYTHON=~/.pyenv/versions/3.13.0/bin/python3 cargo bench --bench codecs
//! ```
//!
//! Before the criterion groups, the side-by-side table: when a CPython is
//! found (`SUBINTERP_CPYTHON`, else `python3` on `PATH`), the script runs the
//! same cases in it, and this bench measures its own with the script's
//! method (best of 5 runs of 10^6 lookups; best of 20 decodes), in the same
//! run, and prints both with their ratio and the issue's target.

use std::hint::black_box;
use std::time::Instant;

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use subinterp::{Gil, InterpreterConfig, Runtime, RuntimeConfig};

const MIB: usize = 1 << 20;
const TEXT: &[u8] = b"The quick brown fox jumps over the lazy dog. ";

/// 1 MiB of ASCII text; with `invalid_every`, every such byte is 0xff (the script's `data`).
fn data(invalid_every: usize) -> Vec<u8> {
    let mut d: Vec<u8> = TEXT.iter().copied().cycle().take(MIB).collect();
    if invalid_every > 0 {
        for i in (invalid_every - 1..MIB).step_by(invalid_every) {
            d[i] = 0xFF;
        }
    }
    d
}

fn lookup_ns(g: Gil<'_>) -> f64 {
    g.codec_lookup("utf-8").unwrap();
    let n = 1_000_000;
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                black_box(g.codec_lookup(black_box("utf-8")).unwrap());
            }
            t.elapsed().as_secs_f64() / n as f64 * 1e9
        })
        .fold(f64::INFINITY, f64::min)
}

/// Alternating `"utf-8"` and `"latin-1"`: every lookup normalizes and probes
/// the cache (the memo of the last hit never matches).
fn lookup_2names_ns(g: Gil<'_>) -> f64 {
    g.codec_lookup("utf-8").unwrap();
    g.codec_lookup("latin-1").unwrap();
    let n = 1_000_000;
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n / 2 {
                black_box(g.codec_lookup(black_box("utf-8")).unwrap());
                black_box(g.codec_lookup(black_box("latin-1")).unwrap());
            }
            t.elapsed().as_secs_f64() / n as f64 * 1e9
        })
        .fold(f64::INFINITY, f64::min)
}

fn decode_ms(g: Gil<'_>, d: &[u8]) -> f64 {
    let b = g.bytes(d).unwrap();
    (0..20)
        .map(|_| {
            let t = Instant::now();
            black_box(g.decode(&b, "utf-8", Some("surrogateescape")).unwrap());
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn side_by_side(g: Gil<'_>) {
    let load = common::load_average();
    let mine = [
        ("lookup_cached", "lookup_cached_ns", lookup_ns(g), "ns", ">= 5x"),
        ("lookup_cached_2names", "lookup_cached_2names_ns", lookup_2names_ns(g), "ns", ">= 5x"),
        ("decode_1mib_ascii_surrogateescape", "decode_1mib_ascii_surrogateescape_ms", decode_ms(g, &data(0)), "ms", ""),
        (
            "decode_1mib_1in1024_invalid_surrogateescape",
            "decode_1mib_1in1024_invalid_surrogateescape_ms",
            decode_ms(g, &data(1024)),
            "ms",
            "",
        ),
    ];
    match common::cpython("codecs") {
        None => {
            eprintln!("codecs side by side: no CPython found (set SUBINTERP_CPYTHON); ours:");
            for (name, _, v, unit, _) in mine {
                eprintln!("  {name:44} ours {v:10.4} {unit}");
            }
        }
        Some(py) => {
            eprintln!("codecs side by side, CPython {}:", py["python"].as_str().unwrap_or("?"));
            for (name, key, v, unit, target) in mine {
                let theirs = py[key].as_f64().unwrap_or(f64::NAN);
                eprintln!(
                    "  {name:44} ours {v:10.4} {unit}  CPython {theirs:10.4} {unit}  {:6.2}x  target {target}",
                    theirs / v
                );
            }
        }
    }
    eprintln!("  {}", common::load_note(load));
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let interp = rt.create(InterpreterConfig::isolated()).unwrap();
    interp.with_gil(side_by_side).unwrap();
    let mut group = c.benchmark_group("codecs");
    interp
        .with_gil(|g| {
            g.codec_lookup("utf-8").unwrap();
            group.bench_function("lookup_cached", |b| b.iter(|| g.codec_lookup(black_box("utf-8")).unwrap()));
            group.bench_function("lookup_cached_2names", |b| {
                b.iter(|| {
                    g.codec_lookup(black_box("utf-8")).unwrap();
                    g.codec_lookup(black_box("latin-1")).unwrap()
                })
            });
            let ascii = g.bytes(&data(0)).unwrap();
            let invalid = g.bytes(&data(1024)).unwrap();
            group.sample_size(20);
            group.bench_function("decode_1mib_ascii_surrogateescape", |b| {
                b.iter(|| g.decode(&ascii, "utf-8", Some("surrogateescape")).unwrap())
            });
            group.bench_function("decode_1mib_1in1024_invalid_surrogateescape", |b| {
                b.iter(|| g.decode(&invalid, "utf-8", Some("surrogateescape")).unwrap())
            });
        })
        .unwrap();
    group.finish();
    interp.close().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
