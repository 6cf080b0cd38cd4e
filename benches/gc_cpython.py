"""The heap shapes of benches/gc.rs in CPython, for a side-by-side ratio.

    python3 benches/gc_cpython.py
"""
import gc
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
    gc.disable()

    def garbage():
        cycles(N, False)
        return lambda: gc.collect(2)

    print(f"python {sys.version.split()[0]}")
    print(f"full_1e6_in_2cycles_all_garbage  {timed(garbage):9.3f} ms")
    kept = cycles(N, True)
    print(f"full_1e6_in_2cycles_all_alive    {timed(lambda: (lambda: gc.collect(2))):9.3f} ms")
    gc.collect()

    def young():
        cycles(1000, False)
        return lambda: gc.collect(0)

    print(f"young_1000_with_1e6_old          {timed(young, 50):9.3f} ms")
    del kept
    gc.collect()
    print(f"young_1000_with_0_old            {timed(young, 50):9.3f} ms")
    share, longest, count, loop_ms = survivors(N)
    print(f"survivors_1e6_pause_share_pct    {share:9.2f} %  (longest pause {longest:.3f} ms, "
          f"{count} collections, loop {loop_ms:.1f} ms)")


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
