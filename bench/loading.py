"""Benchmark of loading one model version, stage by stage, and of how long it keeps the GIL from other threads.

    .venv/bin/python bench/loading.py --dim 128                   # 1M x 128 (bench/serving.py's cached model)
    .venv/bin/python bench/loading.py --version-dir serving_model/pinsage/3 --repeat 1

Loads the version the way the server does (serving/version.py LoadedVersion, then the warmup replay), `--repeat`
times in one process, while a ticker thread sleeps 1 ms at a time and records how late it wakes: a Python
thread waiting that long for the GIL is what the event loop answering requests waits while a version loads.
Per stage (LoadedVersion.load_breakdown, then warmup): seconds, the longest stall, and the seconds stalled (the
sum of the wake-ups later than 5 ms). The first load of a process pays one-time costs (fresh memory from the
OS, ScaNN's first use), so both the first and the later loads are reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from schema import versions
from serving.core import ModelServer
from serving.version import LoadedVersion


class Ticker:
    """A thread waking every 1 ms; `stalls(t0, t1)` = (longest wake-up gap, seconds stalled) within [t0, t1]."""

    def __init__(self):
        self.gaps, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            self.gaps.append((last, now))
            last = now

    def stalls(self, t0: float, t1: float):
        gaps = [b - a for a, b in self.gaps if b > t0 and a < t1]
        return max(gaps, default=0.0), sum(g - 0.001 for g in gaps if g > 0.005)

    def stop(self):
        self._stop.set()
        self._thread.join()


def load_once(server: ModelServer, path: str, version: int, ticker: Ticker) -> dict:
    """One load + warmup; {stage: {seconds, max_stall_ms, stalled_seconds}} plus the totals."""
    t0 = time.perf_counter()
    v = LoadedVersion(server.model_name, path, version)
    t_loaded = time.perf_counter()
    warmed = server.warmup(v)
    t_end = time.perf_counter()
    bounds, t = [], t0
    for name, seconds in v.load_breakdown.items():
        bounds.append((name, t, t + seconds))
        t += seconds
    bounds.append(("warmup", t_loaded, t_end))
    stages = {}
    for name, a, b in bounds:
        worst, stalled = ticker.stalls(a, b)
        stages[name] = dict(
            seconds=round(b - a, 3), max_stall_ms=round(worst * 1000), stalled_seconds=round(stalled, 3)
        )
    worst, stalled = ticker.stalls(t0, t_end)
    return dict(
        stages=stages,
        total_seconds=round(t_end - t0, 3),
        max_stall_ms=round(worst * 1000),
        stalled_seconds=round(stalled, 3),
        warmup_requests=warmed,
        serving_arrays=versions.read_serving_arrays(versions.index_dir(path)) is not None,
    )


def cached_model(work_dir: str, items: int, dim: int) -> str:
    """bench/serving.py's cached model (built there when missing); loaded by path: its module name would shadow
    the serving package."""
    spec = importlib.util.spec_from_file_location("bench_serving", os.path.join(ROOT, "bench", "serving.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_model(work_dir, items, dim)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--work-dir", default="/tmp/pinsage_bench_serving")
    p.add_argument("--version-dir", default=None, help="a version directory to load instead of the cached model")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "loading.json"))
    args = p.parse_args(argv)
    if args.version_dir:
        path = os.path.abspath(args.version_dir)
    else:
        model_dir = cached_model(args.work_dir, args.items, args.dim)
        path = os.path.join(model_dir, str(versions.latest_version(model_dir)))
    server = ModelServer(os.path.dirname(path), "pinsage")
    ticker, runs, load = Ticker(), [], os.getloadavg()
    time.sleep(0.2)
    for i in range(args.repeat):
        runs.append(load_once(server, path, int(os.path.basename(path)), ticker))
        print(json.dumps(dict(run=i + 1, **runs[-1])), flush=True)
    ticker.stop()
    out = dict(version_dir=path, runs=runs, load_average_at_start=load, cpus=os.cpu_count())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
