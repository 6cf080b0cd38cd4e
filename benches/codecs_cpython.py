"""The codec cases of benches/codecs.rs in CPython, for a side-by-side ratio.

    python3 benches/codecs_cpython.py            # a table
    python3 benches/codecs_cpython.py --json     # one JSON object (read by benches/codecs.rs)

benches/codecs.rs runs this script itself when a CPython is found
(SUBINTERP_CPYTHON, else python3 on PATH), so that both sides are measured in
the same run with the same method: the best of 5 runs of 10^6 cached lookups
(ns per lookup, loop included; also alternating two names), the best of 20 decodes of 1 MiB (ms).
"""
import codecs
import json
import sys
import timeit

MIB = 1 << 20
TEXT = b"The quick brown fox jumps over the lazy dog. "


def data(invalid_every):
    """1 MiB of ASCII text; with `invalid_every`, every such byte is 0xff."""
    d = bytearray((TEXT * (MIB // len(TEXT) + 1))[:MIB])
    if invalid_every:
        for i in range(invalid_every - 1, MIB, invalid_every):
            d[i] = 0xFF
    return bytes(d)


def main():
    lookup = codecs.lookup
    lookup("utf-8")  # cached from here on
    n = 1_000_000
    lookup_ns = min(timeit.Timer('lookup("utf-8")', globals={"lookup": lookup}).repeat(5, n)) / n * 1e9
    lookup("latin-1")
    two_ns = min(timeit.Timer('lookup("utf-8"); lookup("latin-1")', globals={"lookup": lookup}).repeat(5, n // 2)) / n * 1e9
    out = {"python": sys.version.split()[0], "lookup_cached_ns": lookup_ns, "lookup_cached_2names_ns": two_ns}
    for name, every in (("decode_1mib_ascii_surrogateescape_ms", 0), ("decode_1mib_1in1024_invalid_surrogateescape_ms", 1024)):
        d = data(every)
        t = timeit.Timer(lambda: d.decode("utf-8", "surrogateescape"))
        out[name] = min(t.repeat(20, 1)) * 1e3
    if "--json" in sys.argv:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:50} {v}")


if __name__ == "__main__":
    main()
