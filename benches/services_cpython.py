"""CPython's sys.audit with 0 and 1 hooks, for benches/services.rs.

    python3 benches/services_cpython.py          # a table
    python3 benches/services_cpython.py --json   # one JSON object (read by benches/services.rs)

Method: best of 5 runs of N calls `sys.audit("bench.event", 1)`, ten per
loop iteration; the loop's own cost (the same loop, empty) is subtracted, so
the figure is the call, not the loop: the conservative side for the ratio. The
hook is `def hook(event, args): pass`. Hooks cannot be removed, so the
no-hook figure is measured first.
"""
import json
import sys
import time

N = 1_000_000


def best(f, reps=5):
    return min(f() for _ in range(reps))


def empty_loop():
    t = time.perf_counter()
    for _ in range(N // 10):
        pass
    return (time.perf_counter() - t) / N * 1e9


def audit_loop():
    audit = sys.audit
    t = time.perf_counter()
    for _ in range(N // 10):
        audit("bench.event", 1)
        audit("bench.event", 1)
        audit("bench.event", 1)
        audit("bench.event", 1)
        audit("bench.event", 1)
        audit("bench.event", 1)
        audit("bench.event", 1)
        audit("bench.event", 1)
        audit("bench.event", 1)
        audit("bench.event", 1)
    return (time.perf_counter() - t) / N * 1e9


def hook(event, args):
    pass


def main():
    loop = best(empty_loop)
    zero = best(audit_loop) - loop
    sys.addaudithook(hook)
    one = best(audit_loop) - loop
    out = {
        "python": sys.version.split()[0],
        "loop_ns": loop,
        "audit_0_hooks_ns": zero,
        "audit_1_hook_ns": one,
    }
    if "--json" in sys.argv:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:20} {v}")


if __name__ == "__main__":
    main()
