"""The heap shapes of benches/gc.rs in CPython, for a side-by-side ratio.

    python3 benches/gc_cpython.py            # a table
    python3 benches/gc_cpython.py --json     # one JSON object (read by benches/gc.rs and stress gc)
    python3 benches/gc_cpython.py --survivors --json   # only the pause-share loop

benches/gc.rs and the stress scenario `gc` run this script themselves when a
CPython is found (SUBINTERP_CPYTHON, else python3 on PATH), so that both sides
are measured in the same run with the same method (best of 5; 50 for the
young collections).
"""
import gc
import json
import sys
import time

N = 1_000_000


def cycles(n, keep):
    kept = []
    for _ in range(n // 2):
        a = []
        b = [a]
        a.append(b)
        if keep:
            kept.append(a)
    return kept


def timed(f, reps=5):
    best = float("inf")
    for _ in range(reps):
        setup = f()
        t = time.perf_counter()
        setup()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def main():
    as_json = "--json" in sys.argv
    out = {"python": sys.version.split()[0]}
    if "--survivors" not in sys.argv:
        gc.disable()

        def garbage():
            cycles(N, False)
            return lambda: gc.collect(2)

        out["full_1e6_in_2cycles_all_garbage_ms"] = timed(garbage)
        kept = cycles(N, True)
        out["full_1e6_in_2cycles_all_alive_ms"] = timed(lambda: (lambda: gc.collect(2)))
        gc.collect()

        def young():
            cycles(1000, False)
            return lambda: gc.collect(0)

        out["young_1000_with_1e6_old_ms"] = timed(young, 50)
        del kept
        gc.collect()
        out["young_1000_with_0_old_ms"] = timed(young, 50)
    share, longest, count, loop_ms = survivors(N)
    out.update({
        "survivors_1e6_pause_share_pct": share,
        "survivors_1e6_pause_ms_max": longest,
        "survivors_1e6_collections": count,
        "survivors_1e6_loop_ms": loop_ms,
    })
    if as_json:
        print(json.dumps(out))
        return
    for k, v in out.items():
        print(f"{k:40} {v:>12.3f}" if isinstance(v, float) else f"{k:40} {v:>12}")


def survivors(n):
    """The stress scenario's pause-share loop: n new lists appended to one
    kept list with automatic collection on; pauses timed by gc.callbacks."""
    pauses = []
    start = [0.0]

    def cb(phase, info):
        if phase == "start":
            start[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - start[0])

    gc.collect()
    gc.enable()
    gc.callbacks.append(cb)
    kept = []
    t = time.perf_counter()
    for _ in range(n):
        kept.append([])
    loop = time.perf_counter() - t
    gc.callbacks.remove(cb)
    gc.disable()
    del kept
    gc.collect()
    return 100 * sum(pauses) / loop, 1e3 * max(pauses, default=0), len(pauses), 1e3 * loop


if __name__ == "__main__":
    main()
