"""Benchmark of neighbourhood sampling: walks/s, wall time and peak RSS of the NeighborhoodSampler executor
(both strategies) on synthetic power-law graphs, plus how stable the top-T is as walks per item grow.

    .venv/bin/python bench/sampling.py                       # 100k and 1M items, writes bench/results/sampling.json
    .venv/bin/python bench/sampling.py --scales 100k --join-scales 100k --stability-starts 2000

Each executor run is a fresh child process on the DirectRunner (`--direct_running_mode`, 2 workers by default),
timed from the parent; peak RSS is the sampled maximum of the sum over the child and its worker processes,
so it counts every copy of the CSR the workers hold. The plain library call (random_walks.sample_neighborhoods,
one process) is timed alongside as the floor. Graph artifacts are cached under --work-dir.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCALES = {"10k": (10_000, 2_000, 100_000), "100k": (100_000, 20_000, 1_000_000), "1m": (1_000_000, 200_000, 10_000_000)}


def synthetic_edges(num_items, num_contexts, num_edges, seed=0):
    """(context, item) arrays sorted by context: pipeline.data.datasets' generator if present, else Zipf items and
    Pareto context sizes drawn here."""
    try:
        from pipeline.data.datasets import synthetic_arrays

        inter = synthetic_arrays(num_items, num_contexts, num_edges, seed)["interactions"]
        ctx, item = np.asarray(inter["context_id"], np.int64), np.asarray(inter["item_id"], np.int64)
    except ImportError:
        rng = np.random.default_rng(seed)
        size = rng.pareto(2.0, num_contexts) + 1.0
        ctx = np.repeat(np.arange(num_contexts), 1 + rng.multinomial(num_edges - num_contexts, size / size.sum()))
        w = (rng.permutation(num_items) + 1.0) ** -0.9
        item = np.searchsorted(np.cumsum(w), rng.random(num_edges) * w.sum()).clip(max=num_items - 1)
    order = np.argsort(ctx, kind="stable")
    return ctx[order], item[order]


def make_graph(scale: str, work_dir: str) -> str:
    """A graph artifact (all edges train) for one scale, cached."""
    from schema import graph as graph_io

    uri = os.path.join(work_dir, f"graph_{scale}")
    if os.path.exists(os.path.join(uri, graph_io.STATS_FILE)):
        return uri
    n, c, e = SCALES[scale]
    ctx, item = synthetic_edges(n, c, e)
    pos = np.arange(len(ctx)) - np.searchsorted(ctx, ctx)
    graph_io.write_tables(
        uri,
        np.arange(n),
        np.arange(c),
        {
            "context_index": ctx,
            "node_id": item,
            "timestamp": pos,
            "position": pos,
            "split": np.full(len(ctx), "train", dtype=object),
        },
    )
    return uri


def child(args):
    """Runs the NeighborhoodSampler executor once (no orchestrator) and prints its stats as JSON."""
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import standard_artifacts

    from pipeline.components.neighborhood_sampler import Executor
    from schema import neighborhoods as neighborhood_io

    graph, out = standard_artifacts.Examples(), standard_artifacts.Examples()
    graph.uri, out.uri = args.graph, args.out
    os.makedirs(out.uri, exist_ok=True)
    beam_args = [f"--direct_num_workers={args.workers}", f"--direct_running_mode={args.mode}"]
    ex = Executor(base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_args))
    ex.Do(
        {"graph": [graph]},
        {"neighborhoods": [out]},
        {
            "num_walks": args.walks,
            "walk_length": 4,
            "restart_prob": 0.5,
            "top_t": args.top_t,
            "seed": 0,
            "strategy": args.strategy,
            "shard_size": args.shard_size,
        },
    )
    print("STATS " + json.dumps(neighborhood_io.read_stats(out.uri)))


def run_measured(cmd: list[str]) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (GiB, process tree) and the child's STATS line."""
    import psutil

    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [ps] + ps.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.time() - start
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed with {proc.returncode}")
    stats = json.loads(next(ln for ln in out.splitlines() if ln.startswith("STATS "))[6:])
    return wall, peak / 2**30, stats


def component_run(scale, graph, strategy, args):
    out = os.path.join(args.work_dir, f"out_{scale}_{strategy}")
    subprocess.run(["rm", "-rf", out], check=True)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--graph",
        graph,
        "--out",
        out,
        "--strategy",
        strategy,
        "--walks",
        str(args.walks),
        "--top-t",
        str(args.top_t),
        "--shard-size",
        str(args.shard_size if strategy == "in_memory" else args.join_shard_size),
        "--workers",
        str(args.workers),
        "--mode",
        args.mode,
    ]
    wall, rss, stats = run_measured(cmd)
    walks = args.walks * (stats["items"] - stats["isolated_items"])
    row = {
        "scale": scale,
        "strategy": strategy,
        "wall_s": round(wall, 1),
        "executor_s": round(stats["seconds"], 1),
        "walks_per_s": round(walks / stats["seconds"]),
        "peak_rss_gib": round(rss, 2),
        "count1_fraction": round(stats["count1_fraction"], 3),
        "mean_neighborhood_size": round(stats["mean_neighborhood_size"], 2),
        "isolated_items": stats["isolated_items"],
        "workers": args.workers,
        "mode": args.mode,
    }
    print(json.dumps(row), flush=True)
    return row


def library_run(scale, graph, args):
    """The plain in-process numpy path: the floor the component is judged against."""
    import resource

    from pipeline.sampling import random_walks as rw

    t0 = time.time()
    adj = rw.load_adjacency(graph)
    t1 = time.time()
    rw.sample_neighborhoods(adj, rw.WalkParams(num_walks=args.walks, top_t=args.top_t), shard_size=args.shard_size)
    t2 = time.time()
    walks = args.walks * int((adj.item_degree > 0).sum())
    row = {
        "scale": scale,
        "strategy": "library_one_process",
        "load_s": round(t1 - t0, 1),
        "walk_s": round(t2 - t1, 1),
        "walks_per_s": round(walks / (t2 - t1)),
        "peak_rss_gib_bench_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    print(json.dumps(row), flush=True)
    return adj, row


def stability(adj, args):
    from pipeline.sampling import random_walks as rw

    starts = np.random.default_rng(0).choice(np.flatnonzero(adj.item_degree > 0), args.stability_starts, False)
    rows = []
    for r in args.stability_walks:
        t0 = time.time()
        s = rw.neighborhood_stability(adj, r, args.top_t, starts=starts)
        s["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(s), flush=True)
        rows.append(s)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", nargs="+", default=["100k", "1m"], choices=SCALES)
    p.add_argument("--join-scales", nargs="*", default=["100k"], choices=SCALES)
    p.add_argument("--walks", type=int, default=50)
    p.add_argument("--top-t", type=int, default=20)
    p.add_argument("--shard-size", type=int, default=20_000)
    p.add_argument("--join-shard-size", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--mode", default="multi_processing", choices=["multi_processing", "in_memory"])
    p.add_argument("--stability-walks", type=int, nargs="*", default=[50, 100, 200, 500])
    p.add_argument("--stability-starts", type=int, default=10_000)
    p.add_argument("--work-dir", default="/tmp/pinsage_bench_sampling")
    p.add_argument(
        "--out-json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sampling.json")
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--graph", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--strategy", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    os.makedirs(args.work_dir, exist_ok=True)
    results = {
        "params": {
            "walks_per_item": args.walks,
            "top_t": args.top_t,
            "walk_length": 4,
            "restart_prob": 0.5,
            "cpus": os.cpu_count(),
        },
        "runs": [],
        "stability": None,
    }
    adj = None
    for scale in sorted(set(args.scales) | set(args.join_scales), key=lambda s: SCALES[s][0]):
        t0 = time.time()
        graph = make_graph(scale, args.work_dir)
        print(f"[{scale}] graph artifact ready in {time.time() - t0:.0f} s: {graph}", flush=True)
        if scale in args.scales:
            adj, row = library_run(scale, graph, args)
            results["runs"].append(row)
            results["runs"].append(component_run(scale, graph, "in_memory", args))
        if scale in args.join_scales:
            results["runs"].append(component_run(scale, graph, "join", args))
    if adj is not None and args.stability_walks:
        rows = stability(adj, args)
        settled = [r["num_walks"] for r in rows if r["count1_fraction"] < 0.01]
        results["stability"] = {
            "scale": max(args.scales, key=lambda s: SCALES[s][0]),
            "sampled_start_items": args.stability_starts,
            "rows": rows,
            # the fewest walks at which < 1 % of top-T slots rest on a single visit
            "recommended_num_walks": min(settled) if settled else None,
        }
    os.makedirs(os.path.dirname(args.out_json), exist_ok=True)
    with open(args.out_json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.out_json}")


if __name__ == "__main__":
    main()
