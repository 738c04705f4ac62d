"""The evaluator's cost per model row: the two splits' ranks and the related-items lists, scored the old way
(each context's query and each list item on its own: evaluation.ranks_shared + top_k_lists) and the current one
(each distinct query item once for both: evaluation.ranks_and_lists), on the same graph and scorers.

    .venv/bin/python bench/evaluation.py --run /tmp/ml1m          # a finished `pinsage run --output` directory
    .venv/bin/python bench/evaluation.py --run /tmp/ml1m --models cooccurrence_knn,rwr,pinsage

Prints, per model, seconds for each way, their ratio, and whether the ranks and lists are identical (they are
for every scorer whose rows do not depend on their block-mates; RWRScorer's power iteration stops per block
within its tolerance, so near-ties may move), and writes one JSON to bench/results. Compare ratios within one
run: the box is noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run_io import run_artifacts, write_result
from modules import evaluation as ev
from schema.embeddings import EMBEDDINGS_FILE, QUERY_EMBEDDINGS_FILE


def scorers(graph, model_dir: str | None, names: list[str]) -> dict:
    out = {k: v for k, v in ev.baseline_scorers(graph).items() if k in names}
    if model_dir and "pinsage" in names:
        z = np.load(os.path.join(model_dir, EMBEDDINGS_FILE))
        u_path = os.path.join(model_dir, QUERY_EMBEDDINGS_FILE)
        out["pinsage"] = ev.EmbeddingScorer(z, query_emb=np.load(u_path) if os.path.exists(u_path) else None)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished `pinsage run --output` directory")
    ap.add_argument("--models", default="popularity,cooccurrence_knn,transition_counts,rwr,pinsage")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/evaluation-<run dir name>.json)")
    args = ap.parse_args()
    g, model_dir = run_artifacts(ap, args.run)
    queries = [ev.build_queries(g, split) for split in ("test", "validation")]
    nodes, _ = ev.list_query_nodes(g.train_degree)
    distinct = len(np.union1d(queries[0].query, nodes))
    print(
        f"{g.num_items} items; {len(queries[0])} contexts per split ({len(np.unique(queries[0].query))} distinct "
        f"query items), {len(nodes)} list items; {len(queries[0]) + len(nodes)} scored rows before, {distinct} now"
    )
    rows = []
    for name, s in scorers(g, model_dir, args.models.split(",")).items():
        t0 = time.perf_counter()
        old_ranks = ev.ranks_shared(s, queries)
        old_lists = ev.top_k_lists(s, nodes, g.num_items)
        t1 = time.perf_counter()
        new_ranks, new_lists = ev.ranks_and_lists(s, queries, nodes)
        t2 = time.perf_counter()
        row = {
            "model": name,
            "separate_s": round(t1 - t0, 2),
            "once_s": round(t2 - t1, 2),
            "speedup": round((t1 - t0) / max(t2 - t1, 1e-9), 2),
            "identical_ranks": all(np.array_equal(a, b) for a, b in zip(old_ranks, new_ranks)),
            "ranks_moved": int(sum(np.count_nonzero(a != b) for a, b in zip(old_ranks, new_ranks))),
            "largest_move": int(max(np.abs(a - b).max(initial=0) for a, b in zip(old_ranks, new_ranks))),
            "identical_lists": bool(np.array_equal(old_lists, new_lists)),
            "test_hr@10": (ev.metrics_from_ranks(old_ranks[0])["hr@10"], ev.metrics_from_ranks(new_ranks[0])["hr@10"]),
            "test_mrr": (ev.metrics_from_ranks(old_ranks[0])["mrr"], ev.metrics_from_ranks(new_ranks[0])["mrr"]),
        }
        rows.append(row)
        print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    write_result(
        "evaluation",
        args.run,
        {
            "run": os.path.abspath(args.run),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "num_items": g.num_items,
            "contexts": len(queries[0]),
            "list_queries": len(nodes),
            "scored_rows": {"separate": len(queries[0]) + len(nodes), "once": distinct},
            "rows": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
