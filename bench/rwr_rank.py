"""What a d-dimensional dot product can hold of RWR's ranking, on a finished run's graph.

    .venv/bin/python bench/rwr_rank.py --run /tmp/loc12k                      # -> bench/results/rwr_rank-<run>.json
    .venv/bin/python bench/rwr_rank.py --run /tmp/loc12k --ranks 128,256

The exact RWR matrix (evaluation.rwr_matrix: the dense solve, so catalogues up to 20,000 items) is truncated to
rank d by a randomized SVD and each truncation is scored under the fixed protocol (validation and test HR@10 /
MRR), beside the full matrix. The model's embedding space is a d-dimensional dot product (the ANN index's scorer),
so this says how much of RWR's edge a d-dimensional model could hold at all (BUILD_NOTES, issue 13 session 12).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run_io import run_artifacts, write_result
from modules import evaluation as ev


def _ranks(text: str) -> list[int]:
    try:
        ranks = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None
    if not ranks or min(ranks) < 1:
        raise argparse.ArgumentTypeError(f"every rank must be >= 1: {text!r}")
    return sorted(set(ranks))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished `pinsage run --output` directory")
    ap.add_argument("--ranks", type=_ranks, default=[64, 128, 256, 512])
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/rwr_rank-<run dir name>.json)")
    args = ap.parse_args()
    g, _ = run_artifacts(ap, args.run)
    if max(args.ranks) >= g.num_items:
        ap.error(f"--ranks: every rank must be below the catalogue's {g.num_items} items")
    from sklearn.utils.extmath import randomized_svd  # in the lock (TFX's dependencies); only this script uses it

    t0 = time.perf_counter()
    try:
        r = ev.rwr_matrix(g, max_items=20_000)
    except ValueError as e:
        sys.exit(f"{args.run}: {e}")
    queries = {split: ev.build_queries(g, split) for split in ("validation", "test")}

    def scored(matrix: np.ndarray, label) -> dict:
        row = {"rank": label}
        for split, q in queries.items():
            m = ev.metrics_from_ranks(ev.ranks(ev.DenseScorer(matrix), q))
            row[f"{split}_hr@{ev.K}"], row[f"{split}_mrr"] = round(m[f"hr@{ev.K}"], 4), round(m["mrr"], 4)
        print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        return row

    rows = [scored(r, "full")]
    u, s, vt = randomized_svd(r, max(args.ranks), n_iter=4, random_state=0)
    for d in args.ranks:
        approx = (u[:, :d] * s[:d]) @ vt[:d]
        np.fill_diagonal(approx, -np.inf)  # the query is not its own result, as in rwr_matrix
        rows.append(scored(approx, d))
    write_result(
        "rwr_rank",
        args.run,
        {"run": os.path.abspath(args.run), "num_items": g.num_items, "seconds": time.perf_counter() - t0, "rows": rows},
        args.out,
    )


if __name__ == "__main__":
    main()
