"""CPython's side of the stress `gc` scenario, measured in the same run.

    python3 stress/py/cpython_gc.py --duration 1   # one JSON object on stdout

The same two loops as `stress/src/gc.rs`, on one thread, pauses timed by
`gc.callbacks` (`Modules/gcmodule.c`, `Python/gc.c` in 3.13):

* survivors: 1,000,000 new lists appended to one kept list, automatic
  collection on;
* churn: for `--duration` seconds, two-list cycles dropped at once beside an
  old generation that grows by one list every 8 iterations up to 200,000.

Each pause is reported as [start in s since its loop began, length in ms].
"""
import gc
import json
import sys
import time


def arg(name, default):
    if name in sys.argv:
        return type(default)(sys.argv[sys.argv.index(name) + 1])
    return default


class Pauses:
    def __init__(self):
        self.t0 = time.perf_counter()
        self.start = 0.0
        self.pauses = []
        self.collected = 0

    def __call__(self, phase, info):
        now = time.perf_counter()
        if phase == "start":
            self.start = now
        else:
            self.pauses.append([self.start - self.t0, (now - self.start) * 1e3])
            self.collected += info.get("collected", 0)


def timed(loop):
    gc.collect()
    gc.enable()
    p = Pauses()
    gc.callbacks.append(p)
    p.t0 = time.perf_counter()
    loop()
    loop_s = time.perf_counter() - p.t0
    gc.callbacks.remove(p)
    gc.collect()
    return {"pauses": p.pauses, "loop_s": loop_s, "collected": p.collected}


def survivors():
    kept = []
    for _ in range(1_000_000):
        kept.append([])


def churn(duration):
    def loop():
        old = []
        stop = time.perf_counter() + duration
        i = 0
        while time.perf_counter() < stop:
            for _ in range(1000):
                a = []
                b = [a]
                a.append(b)
                if i % 8 == 0 and len(old) < 200_000:
                    old.append([])
                i += 1
    return loop


def main():
    out = {"python": sys.version.split()[0]}
    out["survivors"] = timed(survivors)
    out["churn"] = timed(churn(arg("--duration", 1.0)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
