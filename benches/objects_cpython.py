"""Bytes per object in CPython, for benches/objects.rs (same shapes, same N).

    python3 benches/objects_cpython.py          # a table
    python3 benches/objects_cpython.py --json   # one JSON object (read by benches/objects.rs)

Each shape: N objects made and kept in a list allocated before the
measurement; the bytes are tracemalloc's traced-memory growth divided by N
(requested sizes, as the system side of benches/objects.rs). sys.getsizeof of
one object is printed beside it (it omits what the object owns elsewhere,
e.g. a list's item array, an instance's values).
"""
import json
import sys
import tracemalloc

N = 1_000_000


class C:
    pass


def one_attr():
    c = C()
    c.x = 1
    return c


SHAPES = {
    "empty_list": lambda: [],
    "list_of_1": lambda: [None],
    "empty_dict": lambda: {},
    "dict_of_1": lambda: {"k": None},
    "instance_no_attrs": C,
    "instance_1_attr": one_attr,
}


def measure(make):
    kept = [None] * N  # the holder's array exists before the measurement
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(N):
        kept[i] = make()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    size = sys.getsizeof(kept[0])
    del kept
    return (after - before) / N, size


def main():
    out = {"python": sys.version.split()[0]}
    for name, make in SHAPES.items():
        per, size = measure(make)
        out[f"{name}_bytes"] = per
        out[f"{name}_getsizeof"] = size
    if "--json" in sys.argv:
        print(json.dumps(out))
        return
    for k, v in out.items():
        print(f"{k:32} {v:>10.1f}" if isinstance(v, float) else f"{k:32} {v:>10}")


if __name__ == "__main__":
    main()
