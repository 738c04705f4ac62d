"""The served query's similarity weight, re-scored on a finished run: what each lambda would have served.

    .venv/bin/python bench/similarity_weight.py --run /tmp/ml1m                  # -> bench/results/similarity_weight-<run dir name>.json
    .venv/bin/python bench/similarity_weight.py --run /tmp/ml1m --weights 0,0.02,0.1
    .venv/bin/python bench/similarity_weight.py --run /tmp/ml1m --weights 0,0.05 --popularity-weights=-0.005,0,0.01
    .venv/bin/python bench/similarity_weight.py --run /tmp/r/ml1m --vectors /tmp/res/quality/m1_base   # bench/quality.py's vectors

`similarity_weight` (layers.QueryHead) serves u = normalise(u0 + lambda z): u0 is the trained query head's output
(the trainer's query_embeddings.npy at lambda 0) and z the indexed item embedding (embeddings.npy). Both are saved
by the run, so every lambda is scored here without training again, on the same vectors: validation and test HR@10
/ MRR under the fixed protocol and the list metrics of the related-items lists (coverage@10, popular_share@10). The
lambda-0 row equals the run's report. This is the table behind `"similarity_weight": null` (the one-SE choice on
validation, modules/trainer.choose_similarity_weight) and the trade-off it makes; the numbers go to BUILD_NOTES.md.

`--popularity-weights` adds beta log(1 + train count of the item) to every score, for each lambda: the other
served-score knob, which leans the lists towards popular items (beta > 0) or away from them (beta < 0). It is still
one dot product, [u, beta] . [z, log(1 + count)], so an index holding that one extra coordinate would serve it. The
(lambda, beta) grid maps what HR@10 and the list metrics can trade against each other without training again.
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
from modules import model as model_lib
from schema.embeddings import EMBEDDINGS_FILE, QUERY_EMBEDDINGS_FILE


def served_queries(u0: np.ndarray, z: np.ndarray, weight: float) -> np.ndarray:
    """normalise(u0 + weight z) row by row: the query vectors QueryHead serves at similarity_weight = weight."""
    q = np.asarray(u0, np.float32) + np.float32(weight) * np.asarray(z, np.float32)
    return q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)


def served_scorer(u0: np.ndarray, z: np.ndarray, weight: float, popularity_weight: float, train_degree: np.ndarray):
    """Scores normalise(u0 + weight z) . z_i + popularity_weight log(1 + train_degree_i), as one dot product."""
    q = served_queries(u0, z, weight)
    if not popularity_weight:
        return ev.EmbeddingScorer(z, query_emb=q)
    log_count = np.log1p(np.asarray(train_degree, np.float32))[:, None]
    beta = np.full((len(q), 1), popularity_weight, np.float32)
    return ev.EmbeddingScorer(np.hstack([z, log_count]), query_emb=np.hstack([q, beta]))


def _numbers(text: str, nonnegative: bool) -> list[float]:
    """A comma list of finite numbers (>= 0 where `nonnegative`, as PinSageHParams asks of lambda)."""
    try:
        numbers = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of numbers: {text!r}") from None
    if not all(np.isfinite(w) and (w >= 0 or not nonnegative) for w in numbers):
        bound = " and >= 0" if nonnegative else ""
        raise argparse.ArgumentTypeError(f"every weight must be finite{bound}: {text!r}")
    return numbers


def _weights(text: str) -> list[float]:
    """--weights: a comma list of finite lambdas >= 0."""
    return _numbers(text, nonnegative=True)


def _popularity_weights(text: str) -> list[float]:
    """--popularity-weights: a comma list of finite betas, either sign."""
    return _numbers(text, nonnegative=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished `pinsage run --output` directory")
    ap.add_argument("--weights", type=_weights, default=list(model_lib.SIMILARITY_WEIGHTS))
    ap.add_argument(
        "--vectors",
        default=None,
        help="a directory with the trained vectors (default: the run's PinSageTrainer model; "
        "bench/quality.py writes them to OUT/quality/NAME)",
    )
    ap.add_argument(
        "--popularity-weights",
        type=_popularity_weights,
        default=[0.0],
        help="betas of + beta log(1 + train count), each scored with every lambda (default 0: none; "
        "write --popularity-weights=-0.005,0 when the list starts with a minus sign)",
    )
    ap.add_argument(
        "--out", default=None, help="JSON path (default bench/results/similarity_weight-<run dir name>.json)"
    )
    args = ap.parse_args()
    # the graph and the trained vectors are all it reads: no features, neighbourhoods or pairs
    g, model_dir = run_artifacts(ap, args.run, need_model=args.vectors is None)
    model_dir = args.vectors or model_dir
    if not os.path.exists(os.path.join(model_dir, EMBEDDINGS_FILE)):
        ap.error(f"--vectors {model_dir}: no {EMBEDDINGS_FILE} there")
    z = np.load(os.path.join(model_dir, EMBEDDINGS_FILE))
    u0_path = os.path.join(model_dir, QUERY_EMBEDDINGS_FILE)
    if not os.path.exists(u0_path):
        sys.exit(f"{u0_path}: this run's model has no query head, so the similarity weight does not apply")
    u0 = np.load(u0_path)
    # --vectors can name another run's vectors: refuse them unless they have one finite row per item of this graph
    if z.ndim != 2 or len(z) != g.num_items or u0.shape != z.shape:
        ap.error(f"{model_dir}: vectors {z.shape} / {u0.shape} do not fit --run {args.run} ({g.num_items} items)")
    if not (np.isfinite(z).all() and np.isfinite(u0).all()):
        ap.error(f"{model_dir}: the vectors hold NaN or infinite values")
    deg = np.asarray(g.train_degree)
    nodes, _ = ev.list_query_nodes(deg)
    queries = {split: ev.build_queries(g, split) for split in ("validation", "test")}
    rows = []
    for w in args.weights:
        for beta in args.popularity_weights:
            t0 = time.perf_counter()
            scorer = served_scorer(u0, z, w, beta, deg)
            row = {"similarity_weight": w, "popularity_weight": beta}
            for split, q in queries.items():
                m = ev.metrics_from_ranks(ev.ranks(scorer, q))
                row[f"{split}_hr@{ev.K}"], row[f"{split}_mrr"] = m[f"hr@{ev.K}"], m["mrr"]
            row.update(ev.list_metrics(ev.top_k_lists(scorer, nodes, g.num_items), nodes, deg))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    result = {
        "run": os.path.abspath(args.run),
        "contexts": {s: len(q) for s, q in queries.items()},
        "list_queries": len(nodes),
        "rows": rows,
    }
    write_result("similarity_weight", args.run, result, args.out)


if __name__ == "__main__":
    main()
