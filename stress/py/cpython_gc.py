"""CPython's side of the stress `gc` scenario, measured in the same run.

    python3 stress/py/cpython_gc.py --duration 1   # one JSON object on stdout

The same two loops as `stress/src/gc.rs`, on one thread, pauses timed by
`gc.callbacks` (`Modules/gcmodule.c`, `Python/gc.c` in 3.13):

* survivors: 1,000,000 new lists appended to one kept list, automatic
  collection on;
* churn: for `--duration` seconds, two-list cycles dropped at once beside an
  old generation that grows by one list every 8 iterations up to 200,000;
* garbage_live: a live heap of `--pairs` two-list cycles (a = [], b = [a],
  a.append(b)) held in one kept list, then `--replace` iterations each putting
  a new cycle at `live[(i * 7919) % pairs]`, so that the old cycle becomes
  garbage among old objects; RSS and the garbage pending (tracked objects
  beyond the live ones, `len(gc.get_objects())`) sampled every 10,000
  iterations, the sampling's own time taken out of the loop time;
* request: the same live heap, then `--requests` requests (after
  `--warmup` untimed ones), each a request dict and a response dict that
  refer to each other, a few str/int entries and a list of 8 small lists,
  dropped at the end of the request; every request timed, once with gc
  enabled and once after gc.disable().

Each pause is reported as [start in s since its loop began, length in ms].
"""
import gc
import json
import os
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
        self.full = 0
        # Per generation: [count, total ms, max ms].
        self.by_gen = [[0, 0.0, 0.0] for _ in range(3)]

    def __call__(self, phase, info):
        now = time.perf_counter()
        if phase == "start":
            self.start = now
        else:
            ms = (now - self.start) * 1e3
            self.pauses.append([self.start - self.t0, ms])
            self.collected += info.get("collected", 0)
            g = self.by_gen[min(info.get("generation", 0), 2)]
            g[0] += 1
            g[1] += ms
            g[2] = max(g[2], ms)
            self.full += info.get("generation") == 2


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


PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def build_live(pairs):
    live = []
    for _ in range(pairs):
        a = []
        b = [a]
        a.append(b)
        live.append(a)
    return live


def garbage_live(pairs, n, every=10_000):
    """The live-heap loop; RSS in bytes, garbage in objects.

    Each iteration makes exactly one old cycle (2 lists) garbage, so the
    garbage pending after i iterations is 2 i minus what the collections
    collected (sampled every `every` iterations: gc.get_objects() over the
    10^6 live lists would cost ~40 ms a sample); at the end it is also
    counted with gc.get_objects() (`left_counted`)."""
    gc.collect()
    gc.enable()
    baseline = len(gc.get_objects())
    rss0 = rss_bytes()
    live = build_live(pairs)
    gc.collect()
    live_objects = len(gc.get_objects()) - baseline
    rss_built = rss_bytes()
    rss_peak = rss_built
    pending_max = 0
    p = Pauses()
    gc.callbacks.append(p)
    p.t0 = time.perf_counter()
    for i in range(n):
        a = []
        b = [a]
        a.append(b)
        live[(i * 7919) % pairs] = a
        if i % every == every - 1:
            rss_peak = max(rss_peak, rss_bytes())
            pending_max = max(pending_max, 2 * (i + 1) - p.collected)
    loop_s = time.perf_counter() - p.t0
    gc.callbacks.remove(p)
    a = b = None
    left = 2 * n - p.collected
    left_counted = len(gc.get_objects()) - baseline - live_objects
    rss_end = rss_bytes()
    del live
    gc.collect()
    return {
        "pauses": p.pauses,
        "loop_s": loop_s,
        "collected": p.collected,
        "full": p.full,
        "gen1_pause_ms_mean": p.by_gen[1][1] / max(p.by_gen[1][0], 1),
        "gen1_pause_ms_max": p.by_gen[1][2],
        "full_pause_ms_max": p.by_gen[2][2],
        "live_objects": live_objects,
        "rss_before": rss0,
        "rss_built": rss_built,
        "rss_peak": max(rss_peak, rss_end),
        "left": left,
        "left_counted": left_counted,
        "pending_max": max(pending_max, left),
    }


def request(i):
    req = {"path": "/items", "id": i, "user": "user-%d" % (i % 1000)}
    items = [[j] for j in range(8)]
    resp = {"status": 200, "items": items, "request": req}
    req["response"] = resp


def requests(pairs, r, warmup, enabled):
    """Request latency percentiles in microseconds, RSS growth in bytes."""
    gc.collect()
    live = build_live(pairs)
    gc.collect()
    if enabled:
        gc.enable()
    else:
        gc.disable()
    clock = time.perf_counter_ns
    for i in range(warmup):
        request(i)
    p = Pauses()
    gc.callbacks.append(p)
    rss0 = rss_bytes()
    lat = []
    for i in range(r):
        t = clock()
        request(i)
        lat.append(clock() - t)
    rss_end = rss_bytes()
    gc.callbacks.remove(p)
    gc.enable()
    del live
    gc.collect()
    lat.sort()
    out = {
        "requests": r,
        "rss_growth": rss_end - rss0,
        "collections": len(p.pauses),
        "pause_ms_max": max((x[1] for x in p.pauses), default=0.0),
    }
    for name, q in (("p50", 50.0), ("p99", 99.0), ("p999", 99.9), ("max", 100.0)):
        # The harness's `percentile` (stress/src/main.rs): nearest rank.
        out[name + "_us"] = lat[min(int(q / 100.0 * (len(lat) - 1) + 0.5), len(lat) - 1)] / 1e3
    return out


def main():
    out = {"python": sys.version.split()[0]}
    out["survivors"] = timed(survivors)
    out["churn"] = timed(churn(arg("--duration", 1.0)))
    pairs = arg("--pairs", 500_000)
    out["garbage_live"] = garbage_live(pairs, arg("--replace", 1_000_000))
    r, warmup = arg("--requests", 200_000), arg("--warmup", 5_000)
    out["request_gc"] = requests(pairs, r, warmup, True)
    out["request_nogc"] = requests(pairs, r, warmup, False)
    gc.enable()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
