"""Benchmark of the item index: recall@10 and single-query QPS, ScaNN (the IndexBuilder's settings) vs an exact
numpy scan, on synthetic clustered L2-normalised vectors.

    .venv/bin/python bench/index.py                          # 100k and 1M x 64-d -> bench/results/index.json
    .venv/bin/python bench/index.py --scales 100k --leaves-to-search 0,10,40

Queries are catalogue items perturbed by noise (not the items themselves, which would make top-1 trivial).
Single-query QPS = queries answered one at a time in one thread, as the server answers a request. The exact
scan is `E @ q` + argpartition + sort of the top 10. Target: recall@10 >= 0.95 at >= 100x exact QPS.
The load average at start is recorded: other processes on the box skew QPS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modules import index as ib
from pipeline.data import datasets

SCALES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}


def exact_one(emb: np.ndarray, q: np.ndarray, k: int = 10) -> np.ndarray:
    s = emb @ q
    part = np.argpartition(-s, k - 1)[:k]
    return part[np.argsort(-s[part])]


def qps(fn, queries, min_seconds=2.0, max_queries=None):
    """Queries per second over at least min_seconds (or max_queries), one query at a time."""
    n, start = 0, time.perf_counter()
    while True:
        fn(queries[n % len(queries)])
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or (max_queries and n >= max_queries):
            return n / elapsed


def bench_scale(name, n, d, queries, leaves_options, seed=0, emb=None):
    """One catalogue: synthetic clustered vectors, or `emb` (a trained model's real item embeddings)."""
    if emb is None:
        emb = datasets.clustered_vectors(n, d, clusters=max(50, n // 1000), seed=seed)
    n, d = emb.shape
    queries = min(queries, n)
    rng = np.random.default_rng(seed + 1)
    q = emb[rng.choice(n, queries, replace=False)] + 0.2 * rng.normal(size=(queries, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    t = time.time()
    exact = ib.exact_top_k(emb, q, 10)
    exact_batch_s = time.time() - t
    exact_qps = qps(lambda x: exact_one(emb, x), q, min_seconds=3.0)
    t = time.time()
    searcher, params = ib.build_searcher(emb, brute_force_below=0)
    build_s = time.time() - t
    rows = []
    for lts in leaves_options:  # leaves searched is a query-time knob: one build serves the whole sweep
        lts = lts or params["leaves_to_search"]
        search_kw = dict(final_num_neighbors=10, leaves_to_search=lts)
        approx = np.asarray(searcher.search_batched(q, **search_kw)[0])
        recall = ib.recall_at_k(approx, exact)
        scann_qps = qps(lambda x: searcher.search(x, **search_kw), q, min_seconds=3.0)
        row = dict(
            scale=name,
            num_items=n,
            dim=d,
            **dict(params, leaves_to_search=lts),
            default=lts == params["leaves_to_search"],
            build_seconds=round(build_s, 1),
            recall_at_10=round(recall, 4),
            scann_qps=round(scann_qps),
            exact_qps=round(exact_qps, 1),
            speedup=round(scann_qps / exact_qps, 1),
            exact_batched_seconds_per_query=round(exact_batch_s / queries, 5),
        )
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", default="100k,1m", help="synthetic scales; '' for none")
    p.add_argument(
        "--embeddings",
        action="append",
        default=[],
        help="NAME=path/to/embeddings.npy of a trained model (e.g. an ML-1M run's BulkEmbedder output), "
        "benchmarked with the ScaNN tree forced on (no brute-force fallback)",
    )
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument(
        "--leaves-to-search",
        default="0,50,100",
        help="comma list, swept at query time; 0 = the IndexBuilder default (max(8, leaves/40))",
    )
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "index.json"))
    args = p.parse_args(argv)
    load = os.getloadavg()
    print(f"load average at start: {load}", flush=True)
    rows = []
    leaves = [int(x) for x in args.leaves_to_search.split(",")]
    for s in filter(None, args.scales.split(",")):
        rows += bench_scale(s, SCALES[s.lower()], args.dim, args.queries, leaves)
    for spec in args.embeddings:
        name, path = spec.split("=", 1)
        emb = np.load(path).astype(np.float32)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        rows += bench_scale(name, len(emb), emb.shape[1], args.queries, leaves, emb=emb)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            {
                "rows": rows,
                "load_average_at_start": load,
                "cpus": os.cpu_count(),
                "machine": platform.processor() or platform.machine(),
                "target": "recall@10 >= 0.95 at >= 100x exact single-query QPS",
            },
            f,
            indent=1,
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
