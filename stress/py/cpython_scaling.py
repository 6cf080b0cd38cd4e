"""CPython's side of the stress `scaling` scenario, measured in the same run.

    python3 stress/py/cpython_scaling.py --threads 2 --duration 1   # one JSON object on stdout

The harness (`stress/src/cpython.rs`) runs this in the CPython it finds
(SUBINTERP_CPYTHON, else python3 on PATH) and prints its figures beside ours,
labelled "measured: Python X.Y.Z". Needs 3.13+ for the interpreter figures
(the `_interpreters` module, `Python/crossinterp.c`, `Modules/_interpretersmodule.c`);
older versions give only the wake latency and the one-interpreter curve.

Work unit: the harness's xorshift step (32 rounds), masked to 64 bits, in a
Python loop; its absolute rate is not comparable to ours, its speedup is.
"""
import json
import sys
import threading
import time

try:
    import _interpreters as interps
except ImportError:  # 3.12 and older
    interps = None

WORK = """
def _work(stop_at):
    import time
    M = (1 << 64) - 1
    x = 0x9E3779B97F4A7C15
    n = 0
    now = time.perf_counter
    while now() < stop_at:
        for _ in range(32):
            x ^= (x << 13) & M
            x ^= x >> 7
            x ^= (x << 17) & M
        n += 1
    return n


def _work_n(count):
    M = (1 << 64) - 1
    x = 0x9E3779B97F4A7C15
    for _ in range(count):
        for _ in range(32):
            x ^= (x << 13) & M
            x ^= x >> 7
            x ^= (x << 17) & M
    return count
"""
exec(WORK)


def arg(name, default):
    if name in sys.argv:
        return type(default)(sys.argv[sys.argv.index(name) + 1])
    return default


def run_threads(targets):
    """Starts every callable on its own thread at once; returns their results and the wall time."""
    out = [0] * len(targets)
    barrier = threading.Barrier(len(targets) + 1)

    def wrap(k, f):
        barrier.wait()
        out[k] = f()

    ts = [threading.Thread(target=wrap, args=(k, f)) for k, f in enumerate(targets)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return out, time.perf_counter() - t0


def one_interpreter(n, dur):
    stop = time.perf_counter() + dur + 0.05
    res, wall = run_threads([lambda: _work(stop)] * n)
    return sum(res) / wall


def in_interpreters(n, count, config):
    """n threads, each running `count` work units in its own interpreter
    (isolated: own GIL; legacy: main's GIL); total units per second."""
    ids = [interps.create(config) for _ in range(n)]
    try:
        for i in ids:
            interps.exec(i, WORK)
        _, wall = run_threads([lambda i=i: interps.exec(i, f"_work_n({count})") for i in ids])
        return n * count / wall
    finally:
        for i in ids:
            interps.destroy(i)


def percentile(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))] if v else None


def wake_latency(dur):
    """A thread returning from time.sleep(0.001) beside a CPU-bound thread:
    how much later than 1 ms the sleep returns, in microseconds. That is the
    OS's wake-up plus the wait for the GIL (the harness's
    `wake_overshoot_us_*`; Python cannot see the instant between the two)."""
    stop = time.perf_counter() + dur
    lat = []

    def io():
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            time.sleep(0.001)
            lat.append((time.perf_counter() - t0 - 0.001) * 1e6)

    t = threading.Thread(target=io)
    t.start()
    _work(stop)
    t.join()
    return lat


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main():
    threads = arg("--threads", 2)
    dur = arg("--duration", 1.0)
    out = {"python": sys.version.split()[0], "threads": list(range(1, threads + 1))}
    out["one_interp_ops"] = [one_interpreter(t, dur) for t in out["threads"]]
    lat = wake_latency(dur)
    out["wake_latency_us"] = lat
    if interps is not None:
        # Fixed work per thread, sized so that one thread takes about `dur`.
        count = max(1, int(out["one_interp_ops"][0] * dur))
        out["own_gil_ops"] = [in_interpreters(t, count, "isolated") for t in out["threads"]]
        out["shared_gil_ops"] = [in_interpreters(t, count, "legacy") for t in out["threads"]]
        cc = []
        stop = time.perf_counter() + min(dur, 2.0)
        while time.perf_counter() < stop or len(cc) < 3:
            t0 = time.perf_counter()
            interps.destroy(interps.create("isolated"))
            cc.append((time.perf_counter() - t0) * 1e6)
        out["create_close_us"] = cc
        r0 = rss()
        ids = [interps.create("isolated") for _ in range(50)]
        out["idle_interpreter_kib"] = (rss() - r0) / 50 / 1024
        for i in ids:
            interps.destroy(i)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
