"""How far item-to-item count scorers go under the fixed protocol: the reference for issue 13's HR@10 target.

    .venv/bin/python bench/count_ceiling.py --dataset ml-1m            # -> bench/results/count_ceiling-ml-1m.json
    .venv/bin/python bench/count_ceiling.py --dataset ml-1m --svd 128,256

The protocol's query is one item (a context's latest train item), so any scorer is a function of that item alone
and the strongest memoriser of the train histories is a bound of sorts for an item embedding: the report's
transition counts are symmetric window-3 counts; this script also scores the *forward* counts (what follows the
query, window 1, 3, 10), forward window-3 counts smoothed by a second step (P + a P^2, P row-normalised; the test
target is two steps after the query, the validation target one), the smoothing weight `a` chosen on validation,
and optionally rank-d truncated SVDs of P + 0.5 P^2 (what a d-dimensional dot product could hold of it). For data
whose order carries nothing (`ml-1m-unordered`) the memorisers that read only co-membership: random walks with
restart from the query at restarts 0.1-0.9 (the report's RWR is 0.5) and the one-step co-membership C = X^T D_c^-1 X
(each context's co-members weighted by 1 / its size, the RWR's first step) times item degree^b. The best row on
validation is reported with its test figures. The numbers belong in BUILD_NOTES.md; none of these is a report
baseline (the issue fixes those).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modules import cooccurrence
from modules import evaluation as ev
from pipeline.configs import DATASETS
from pipeline.data import datasets
from pipeline.graph.from_csv import graph_from_csv

SMOOTHING = (0.0, 0.25, 0.5, 1.0)
RESTARTS = (0.1, 0.3, 0.5, 0.7, 0.9)
DEGREE_POWERS = (-0.5, -0.25, 0.0, 0.25, 0.5)
MAX_ITEMS = 10_000  # P and P^2 are dense N x N float64 (0.8 GB each at this N): an analysis for MovieLens sizes


def _ranks(text: str) -> tuple[int, ...]:
    try:
        ranks = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ranks: {text!r}") from None
    if any(r < 1 for r in ranks):
        raise argparse.ArgumentTypeError(f"ranks must be >= 1: {text!r}")
    return ranks


def forward_counts(graph, window: int) -> sp.csr_matrix:
    """F[q, i] = how often i follows q within `window` train positions (PairGen's pairs, modules/cooccurrence)."""
    m = graph.split == "train"
    q, i, c, _ = cooccurrence.positive_pairs(
        graph.context_index[m], graph.node_id[m], graph.position[m], graph.num_items, window=window
    )
    return sp.csr_matrix((c.astype(np.float32), (q, i)), shape=(graph.num_items, graph.num_items))


def row_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    r = np.asarray(m.sum(1)).ravel()
    return (sp.diags(1.0 / np.maximum(r, 1e-12)) @ m).tocsr()


def comembership(graph) -> np.ndarray:
    """C[q, i] = sum over the train contexts holding both of 1 / |context| (dense; q == i zeroed)."""
    x = ev.train_matrix(graph)
    inv_size = 1.0 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)
    c = (x.T @ sp.diags(inv_size) @ x).toarray()
    np.fill_diagonal(c, 0.0)
    return c


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-1m", choices=DATASETS)
    p.add_argument("--work-dir", default="/tmp/pinsage_count_ceiling")
    p.add_argument(
        "--svd", type=_ranks, default=(), help="comma-separated ranks of truncated SVDs of P + 0.5 P^2 to score"
    )
    p.add_argument("--out-json", default="")
    args = p.parse_args()
    data_dir = os.path.join(args.work_dir, args.dataset)
    datasets.materialise(args.dataset, data_dir)
    graph = graph_from_csv(data_dir)
    if graph.num_items > MAX_ITEMS:
        print(f"count_ceiling: {graph.num_items} items in {data_dir}; dense P^2 is limited to {MAX_ITEMS}")
        sys.exit(2)
    queries = [ev.build_queries(graph, "validation"), ev.build_queries(graph, "test")]
    rows = {}

    def score(name, scorer):
        t0 = time.time()
        val, test = (ev.metrics_from_ranks(r) for r in ev.ranks_shared(scorer, queries))
        rows[name] = {"validation": val, "test": test, "seconds": round(time.time() - t0, 2)}
        print(
            f"{name:36s} val HR@10 {val['hr@10']:.4f} MRR {val['mrr']:.4f}   "
            f"test HR@10 {test['hr@10']:.4f} MRR {test['mrr']:.4f}",
            flush=True,
        )

    score("transition_counts (symmetric w3)", ev.ItemItemScorer(ev.transition_matrix(graph, 3)))
    for w in (1, 3, 10):
        score(f"forward counts w{w}", ev.ItemItemScorer(forward_counts(graph, w)))
    p1 = row_normalised(forward_counts(graph, 3)).toarray()
    p2 = p1 @ p1
    for a in SMOOTHING:
        score(f"forward w3 P + {a} P^2", ev.DenseScorer(p1 + a * p2))
    smoothed = [f"forward w3 P + {a} P^2" for a in SMOOTHING]
    chosen = _best(rows, smoothed)
    print(f"chosen on validation: {chosen} -> test HR@10 {rows[chosen]['test']['hr@10']:.4f}")
    for r in RESTARTS:
        score(f"rwr restart {r}", ev.DenseScorer(ev.rwr_matrix(graph, restart=r)))
    c, degree = comembership(graph), np.maximum(graph.train_degree, 1).astype(np.float64)
    for b in DEGREE_POWERS:
        score(f"co-membership / |c| x degree^{b}", ev.DenseScorer(c * np.power(degree, b)[None, :]))
    best = _best(rows, list(rows))
    print(f"best of every row on validation: {best} -> test HR@10 {rows[best]['test']['hr@10']:.4f}")
    if args.svd:
        u, s, vt = np.linalg.svd((p1 + 0.5 * p2).astype(np.float64), full_matrices=False)
        for r in args.svd:
            score(f"svd rank {r} of P + 0.5 P^2", ev.DenseScorer(((u[:, :r] * s[:r]) @ vt[:r]).astype(np.float32)))
    out = args.out_json or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", f"count_ceiling-{args.dataset}.json"
    )
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(
            {"dataset": args.dataset, "rows": rows, "chosen_on_validation": chosen, "best_on_validation": best},
            f,
            indent=1,
        )
    print(f"wrote {out}")


def _best(rows: dict, names: list) -> str:
    return max(names, key=lambda k: (rows[k]["validation"]["hr@10"], rows[k]["validation"]["mrr"]))


if __name__ == "__main__":
    main()
