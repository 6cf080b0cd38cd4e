"""The warn paths of benches/warnings.rs in CPython, for a side-by-side ratio.

    python3 benches/warnings_cpython.py           # a table
    python3 benches/warnings_cpython.py --json    # one JSON object (read by benches/warnings.rs)

Each figure is the best of 5 runs of N calls of `warnings.warn` from one line
of this module, in ns per call:

* ignored: `simplefilter("ignore", UserWarning)` first, so the first filter
  matches and the action is "ignore";
* registry_hit: `simplefilter("default")`; the first call shows the warning
  (to a no-op showwarning), every later one finds its key in the module's
  `__warningregistry__` and returns.
"""
import json
import sys
import time
import warnings

N = 200_000


def loop(n, msg, cat):
    warn = warnings.warn
    for _ in range(n):
        warn(msg, cat)


def best_ns(setup):
    best = float("inf")
    for _ in range(5):
        with warnings.catch_warnings():
            warnings.showwarning = lambda *a, **k: None
            setup()
            loop(10, "x", UserWarning)  # the first (shown) call, warm-up
            t = time.perf_counter()
            loop(N, "x", UserWarning)
            best = min(best, time.perf_counter() - t)
    return best / N * 1e9


def main():
    out = {
        "python": sys.version.split()[0],
        "ignored_ns": best_ns(lambda: warnings.simplefilter("ignore", UserWarning)),
        "registry_hit_ns": best_ns(lambda: warnings.simplefilter("default")),
    }
    if "--json" in sys.argv:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:20} {v}")


if __name__ == "__main__":
    main()
