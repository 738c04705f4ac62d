"""Baselines under the fixed evaluation protocol on MovieLens: the table every report's baselines must match.

    .venv/bin/python bench/baselines.py                               # ml-100k and ml-1m -> bench/results/baselines.json
    .venv/bin/python bench/baselines.py --datasets ml-100k --no-rwr
    .venv/bin/python bench/baselines.py --check-graph ml-1m=/tmp/ml1m/tfx/GraphGen/graph/5
    .venv/bin/python bench/baselines.py --rwr-iterative     # RWR by sparse power iteration, not the dense solve
    .venv/bin/python bench/baselines.py --data-dir loc12k=/tmp/loc12k_data --out-json /tmp/b.json   # any CSV dir

The graph is built in-process (evaluation.graph_from_csv: GraphGen's split in pandas, no TFX run);
`--check-graph NAME=URI` also loads a GraphGen-made artifact, checks that the in-process graph is identical to it
row for row, and evaluates on it. Rows: each baseline on the test and the validation split under protocol v2
(modules/evaluation.py: the test query is the validation item, the validation query the last train item), each
metric with its standard error, and test HR@10 by the query item's popularity (head / torso / tail). Both splits
and the lists come from one scoring pass per baseline (evaluation.ranks_and_lists), as in the evaluator. Each
baseline also gets the list metrics of its related-items lists (modules/evaluation.list_metrics: coverage@10,
popular_share@10, feature_agreement@10 on the dataset's first categorical column of items.csv, in name order as
the evaluator picks it). docs/DESIGN.md's older reference figures are protocol v1 (another test query), so none
are printed beside these.
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

from modules import evaluation as ev
from pipeline.data import datasets
from pipeline.graph.from_csv import graph_from_csv
from schema import graph as graph_io

SPLITS = ("test", "validation")
COLUMNS = ["hr@10", "hr@10_se", "mrr", "ndcg@10", "recall@10", "hr@500"]
LIST_COLUMNS = ["coverage@10", "popular_share@10", "feature_agreement@10"]


def item_categories(data_dir: str, graph: graph_io.Graph) -> tuple[np.ndarray | None, str]:
    """([N, V] bool, column) of the first categorical column (name order) of items.csv, rows in node id order."""
    import pandas as pd
    import yaml

    path = os.path.join(data_dir, "dataset.yaml")
    spec = (yaml.safe_load(open(path)) or {}).get("features", {}) if os.path.exists(path) else {}
    cols = sorted(c for c, f in spec.items() if isinstance(f, dict) and f.get("kind") == "categorical")
    if not cols:
        return None, ""
    col, sep = cols[0], spec[cols[0]].get("separator")
    items = pd.read_csv(os.path.join(data_dir, "items.csv"), dtype=str, keep_default_na=False)
    values = dict(zip(items["item_id"], items[col]))
    per_item = [
        [v for v in (values.get(i, "").split(sep) if sep else [values.get(i, "")]) if v] for i in graph.item_ids
    ]
    vocab = {v: k for k, v in enumerate(sorted({v for vs in per_item for v in vs}))}
    out = np.zeros((graph.num_items, len(vocab)), bool)
    for n, vs in enumerate(per_item):
        out[n, [vocab[v] for v in vs]] = True
    return out, col


def same_graph(a: graph_io.Graph, b: graph_io.Graph) -> dict:
    """Column-by-column equality of two graphs, rows compared in (context, position) order."""
    out = {
        "item_ids": bool(np.array_equal(a.item_ids, b.item_ids)),
        "context_ids": bool(np.array_equal(a.context_ids, b.context_ids)),
    }
    oa, ob = np.lexsort((a.position, a.context_index)), np.lexsort((b.position, b.context_index))
    for k in ("context_index", "node_id", "timestamp", "weight", "split", "position"):
        x, y = getattr(a, k)[oa], getattr(b, k)[ob]
        out[k] = bool(len(x) == len(y) and np.array_equal(x, y))
    return out


def _scorers(graph: graph_io.Graph, rwr: bool, rwr_iterative: bool) -> tuple[dict, dict]:
    """({model: scorer}, {model: build seconds}) of the baselines."""
    builders = {
        "popularity": lambda: ev.PopularityScorer(graph),
        "cooccurrence_knn": lambda: ev.ItemItemScorer(ev.cooccurrence_matrix(graph)),
        "transition_counts": lambda: ev.ItemItemScorer(ev.transition_matrix(graph, 3)),
    }
    if rwr:
        builders["rwr"] = lambda: ev.RWRScorer(graph) if rwr_iterative else ev.rwr_scorer(graph)
    scorers, build_s = {}, {}
    for model, build in builders.items():
        t = time.perf_counter()
        scorers[model] = build()
        build_s[model] = round(time.perf_counter() - t, 3)
    return scorers, build_s


def bench_graph(name: str, graph: graph_io.Graph, rwr: bool, categories=None, rwr_iterative: bool = False) -> dict:
    res = {
        "num_items": graph.num_items,
        "num_contexts": graph.num_contexts,
        "num_interactions": int(len(graph.node_id)),
        "metrics": {split: {} for split in SPLITS},
        "by_popularity": {},
        "lists": {},
        "eval_s": {},
    }
    scorers, res["build_s"] = _scorers(graph, rwr, rwr_iterative)
    queries = [ev.build_queries(graph, split) for split in SPLITS]
    nodes, _ = ev.list_query_nodes(graph.train_degree)
    res["list_query_items"] = int(len(nodes))
    buckets = ev.popularity_buckets(graph.train_degree)[queries[0].query]
    for model, scorer in scorers.items():
        t = time.perf_counter()
        split_ranks, lists = ev.ranks_and_lists(scorer, queries, nodes)
        for split, r in zip(SPLITS, split_ranks):
            res["metrics"][split][model] = ev.metrics_from_ranks(r)
        res["by_popularity"][model] = ev.by_popularity(split_ranks[0], buckets)
        res["lists"][model] = ev.list_metrics(lists, nodes, graph.train_degree, categories)
        res["eval_s"][model] = round(time.perf_counter() - t, 3)
    return res


def print_table(dataset: str, res: dict) -> None:
    print(
        f"\n{dataset}: {res['num_items']} items, {res['num_contexts']} contexts, {res['num_interactions']} interactions"
    )
    print(f"  {'split':<12}{'model':<19}" + "".join(f"{c:>10}" for c in COLUMNS))
    for split, by_model in res["metrics"].items():
        for model, m in by_model.items():
            print(f"  {split:<12}{model:<19}" + "".join(f"{m[c]:>10.4f}" for c in COLUMNS))
    print("  test HR@10 by the query item's popularity (SE, contexts):")
    for model, by_bucket in res["by_popularity"].items():
        cells = "".join(
            f"  {b} {v['hr@10']:.4f} ({v['hr@10_se']:.4f}, {v['num_contexts']})"
            if v["num_contexts"]
            else f"  {b} - (0)"
            for b, v in by_bucket.items()
        )
        print(f"  {model:<19}{cells}")
    print("  build s: " + ", ".join(f"{k} {v}" for k, v in res["build_s"].items()))
    print("  eval s (both splits and the lists): " + ", ".join(f"{k} {v}" for k, v in res["eval_s"].items()))
    print(f"  related-items lists of the {res['list_query_items']} items with >= 5 train interactions:")
    print(f"  {'model':<19}" + "".join(f"{c:>22}" for c in LIST_COLUMNS))
    for model, m in res["lists"].items():
        cells = "".join(f"{m[c]:>22.4f}" if c in m else f"{'-':>22}" for c in LIST_COLUMNS)
        print(f"  {model:<19}{cells}")


def parse_args():
    """The command line, with --data-dir checked to name CSV directories."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=None, choices=["ml-100k", "ml-1m"])
    p.add_argument("--no-rwr", action="store_true", help="skip random walk with restart")
    p.add_argument(
        "--rwr-iterative",
        action="store_true",
        help="RWR by sparse power iteration (evaluation.RWRScorer) even where the dense solve would be used",
    )
    p.add_argument(
        "--check-graph",
        action="append",
        default=[],
        metavar="DATASET=URI",
        help="a GraphGen-made graph artifact to compare with the in-process split and evaluate on",
    )
    p.add_argument(
        "--data-dir",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also a directory already in the CSV contract (e.g. `pinsage data --dataset synthetic ...`), "
        "reported as NAME; with only --data-dir given, --datasets defaults to none",
    )
    p.add_argument("--work-dir", default="/tmp/pinsage_bench_baselines")
    p.add_argument(
        "--out-json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "baselines.json")
    )
    args = p.parse_args()
    if any("=" not in d for d in args.data_dir):
        p.error("--data-dir takes NAME=DIR")
    given = dict(d.split("=", 1) for d in args.data_dir)
    for name, d in given.items():
        if not os.path.isfile(os.path.join(d, datasets.INTERACTIONS_CSV)):
            p.error(f"--data-dir {name}={d}: no {datasets.INTERACTIONS_CSV} there (a `pinsage data --out` directory?)")
    if args.datasets is None:
        args.datasets = [] if given else ["ml-100k", "ml-1m"]
    return args, given


def main():
    args, given = parse_args()
    checks = dict(c.split("=", 1) for c in args.check_graph)
    results = {
        "protocol": ev.__doc__.split("\n\n")[1].replace("\n", " "),
        "params": {
            "transition_window": 3,
            "rwr_restart": 0.5,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "protocol_version": 2,
        "datasets": {},
    }
    for name in [*args.datasets, *given]:
        t = time.perf_counter()
        if name in given:
            data_dir = given[name]
        else:
            data_dir = os.path.join(args.work_dir, name)
            datasets.materialise(name, data_dir)
        materialise_s = time.perf_counter() - t
        t = time.perf_counter()
        graph = graph_from_csv(data_dir)
        graph_s = time.perf_counter() - t
        categories, category = item_categories(data_dir, graph)
        res = bench_graph(name, graph, not args.no_rwr, categories, args.rwr_iterative)
        res["list_feature"] = category or None
        res["materialise_s"], res["graph_from_csv_s"] = round(materialise_s, 3), round(graph_s, 3)
        print_table(name, res)
        if name in checks:
            g2 = graph_io.load_graph(checks[name])
            res["graphgen_artifact"] = {
                "uri": checks[name],
                "identical": same_graph(graph, g2),
                "test": {m: ev.evaluate(s, g2) for m, s in ev.baseline_scorers(g2).items()},
            }
            print(f"  GraphGen artifact {checks[name]}: identical columns {res['graphgen_artifact']['identical']}")
            for m, v in res["graphgen_artifact"]["test"].items():
                print(f"    test {m:<19} hr@10 {v['hr@10']:.4f} mrr {v['mrr']:.4f}")
        results["datasets"][name] = res
    os.makedirs(os.path.dirname(args.out_json), exist_ok=True)
    with open(args.out_json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {args.out_json}")


if __name__ == "__main__":
    main()
