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


if __name__ == "__main__":
    main()
