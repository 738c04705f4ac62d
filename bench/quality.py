"""Quality experiment on a finished pipeline run: train PinSage with given hparams, score it under the fixed
protocol next to the baselines, print the table and write JSON.

    .venv/bin/python bench/quality.py --run runs/ml-1m --hparams '{"epochs": 3}' --name default
    .venv/bin/python bench/quality.py --run runs/ml-1m --neighborhoods transitions --name seq \
        --hparams '{"epochs": 2, "steps_per_epoch": 1100}'

--neighborhoods / --top-t recompute the neighbourhoods from the run's train split with
pipeline/sampling/transitions.py (what NeighborhoodSampler(source=...) writes), --pairs recomputes the positive
pairs with another window / symmetry; bench/QUALITY.md holds the experiments and their commands.

Reads the run's GraphGen / Transform / NeighborhoodSampler / PairGen artifacts (newest executions), so it
measures exactly what the pipeline's trainer would see. Used to pick defaults by *validation* HR@10.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modules import cooccurrence, evaluation, trainer
from modules import train as train_lib
from modules.model import PinSageHParams
from pipeline import driver
from pipeline.evaluation import evaluate as evaluate_lib
from pipeline.evaluation import report as report_lib
from pipeline.sampling import random_walks as rw
from pipeline.sampling import transitions as sn


def _parse():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="output dir of a `pinsage run`")
    ap.add_argument("--graph-schema", default=None, help="default: the bundled schema of the run's dataset")
    ap.add_argument("--hparams", default="{}", help="JSON overrides of PinSageHParams")
    ap.add_argument("--name", default="pinsage")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--no-validate", action="store_true", help="skip per-epoch validation")
    ap.add_argument("--no-baselines", action="store_true", help="score only the model (the run's report has them)")
    ap.add_argument(
        "--neighborhoods",
        default=None,
        choices=["random_walk", "transitions", "mixed"],
        help="recompute the neighbourhoods from the run's train split with this source "
        "(pipeline/sampling/transitions.py) instead of reading NeighborhoodSampler's",
    )
    ap.add_argument(
        "--top-t", type=int, default=None, help="neighbourhood size T with --neighborhoods (default: the run's)"
    )
    ap.add_argument(
        "--pairs",
        default=None,
        help="recompute the positive pairs: 'WINDOW' (forward) or "
        "'WINDOW,sym' (both directions), from the run's train split, instead of PairGen's",
    )
    ap.add_argument(
        "--walk-positives",
        type=walk_positives_arg,
        default=None,
        help="'SHARE[,T[,BETA]]': add each item's top-T (default: the sampler's top_t) random-walk neighbours, "
        "walked with the sampler's parameters and ranked by visits / degree^BETA (default 0), as positives scaled "
        "to SHARE (0 < SHARE < 1) of the pair draws; the epoch keeps the window pairs' step count",
    )
    return ap.parse_args()


def _inputs(args, run: str) -> dict:
    """The trainer's inputs from a run's artifacts, with the neighbourhoods / pairs recomputed when asked."""
    art = {
        k: driver.latest_artifact_dir(run, c, o)
        for k, (c, o) in {
            "graph": ("GraphGen", "graph"),
            "transformed": ("Transform", "transformed_examples"),
            "nbr": ("NeighborhoodSampler", "neighborhoods"),
            "pairs": ("PairGen", "pairs"),
        }.items()
    }
    schema = args.graph_schema or _graph_schema(run)
    inputs = trainer.load_inputs(art["transformed"], schema, art["graph"], art["nbr"], art["pairs"])
    g = inputs["graph"]
    if args.neighborhoods:
        t = args.top_t or inputs["nbr"].shape[1]
        nbr, w, _ = sn.neighborhoods_from_graph(g, args.neighborhoods, rw.WalkParams(top_t=t))
        inputs["nbr"], inputs["w"] = nbr, w
    if args.pairs:
        win, *rest = args.pairs.split(",")
        m = g.split == "train"
        q, i, c, _ = cooccurrence.positive_pairs(
            g.context_index[m], g.node_id[m], g.position[m], g.num_items, window=int(win), symmetric="sym" in rest
        )
        inputs["query"], inputs["positive"], inputs["count"] = q, i, c
    if args.walk_positives:
        inputs["walk_steps_pairs"] = int(len(inputs["query"]))
        _add_walk_positives(inputs, *args.walk_positives)
    return inputs


def walk_positives_arg(text: str) -> tuple[float, int, float]:
    """--walk-positives 'SHARE[,T[,BETA]]' -> (share, t, beta); a usage error (exit 2) names what is wrong."""
    parts = text.split(",")
    try:
        share = float(parts[0])
        t = int(parts[1]) if len(parts) > 1 else rw.WalkParams().top_t
        beta = float(parts[2]) if len(parts) > 2 else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"not SHARE[,T[,BETA]] (numbers, T an integer): {text!r}") from None
    if len(parts) > 3 or not 0 < share < 1 or t < 1 or not (np.isfinite(beta) and beta >= 0):
        raise argparse.ArgumentTypeError(f"needs 0 < SHARE < 1, T >= 1 and a finite BETA >= 0: {text!r}")
    return share, t, beta


WALK_CHUNK = 4000  # start items walked at once: 4000 x 200 walkers' visits stay in a few hundred MB


def walk_positive_pairs(adj, window_total: float, share: float, t: int, beta: float = 0.0, params=None):
    """(query, positive, count) of each item's top-t random-walk neighbours, counts summing to about `share` of
    the draws beside `window_total` window-pair draws. These are the two-hop co-engagements (item -> context ->
    item -> ...) that one-hop window pairs miss (Pixie's visit counts). A neighbour ranks by visits / degree^beta,
    ties by item id: beta 0 is the raw visit count, which favours popular items; beta > 0 divides that out.
    Counts are rescaled to integers >= 1 (pair_sampling 'count' repeats a pair by its count)."""
    p = params or rw.WalkParams()
    deg = np.maximum(adj.item_degree, 1).astype(np.float64)
    qs, its, ws = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    for k, lo, hi in rw.chunks(adj.num_items, WALK_CHUNK):
        rng = rw.chunk_rng(p.seed, k)
        rows, items = rw.walk_visits(adj, np.arange(lo, hi), p.num_walks, p.walk_length, p.restart_prob, rng)
        r, it, c = rw.count_visits(rows, items, adj.num_items)
        score = c / deg[it] ** beta
        order = np.lexsort((it, -score, r))
        r, it, score = r[order], it[order], score[order]
        keep = np.arange(len(r)) - np.searchsorted(r, r) < t  # rank within the start item's row
        qs.append(r[keep] + lo), its.append(it[keep]), ws.append(score[keep])
    wq, wi, wc = np.concatenate(qs), np.concatenate(its), np.concatenate(ws)
    scale = share / (1.0 - share) * window_total / max(wc.sum(), 1e-12)
    return wq, wi, np.maximum(np.rint(wc * scale), 1).astype(np.int64)


def _add_walk_positives(inputs: dict, share: float, t: int, beta: float) -> None:
    """walk_positive_pairs of the run's train graph appended to its window pairs."""
    g = inputs["graph"]
    m = g.split == "train"
    adj = rw.build_adjacency(g.context_index[m], g.node_id[m], g.num_items, g.num_contexts)
    window_total = float(np.asarray(inputs["count"], np.float64).sum())
    wq, wi, wc = walk_positive_pairs(adj, window_total, share, t, beta)
    inputs["query"] = np.r_[inputs["query"], wq]
    inputs["positive"] = np.r_[inputs["positive"], wi]
    inputs["count"] = np.r_[inputs["count"], wc]
    top50 = np.argsort(-adj.item_degree, kind="stable")[:50]
    popular = wc[np.isin(wi, top50)].sum() / max(wc.sum(), 1)
    print(f"walk positives: {len(wq)} pairs, {wc.sum()} draws beside {window_total:.0f}; popular share {popular:.3f}")


def main():
    args = _parse()
    run = os.path.abspath(args.run)
    t0 = time.time()
    inputs = _inputs(args, run)
    g = inputs["graph"]
    load_s = time.time() - t0
    overrides = json.loads(args.hparams)
    if "walk_steps_pairs" in inputs and "steps_per_epoch" not in overrides:  # the window pairs' epoch length
        overrides["steps_per_epoch"] = max(
            inputs["walk_steps_pairs"] // overrides.get("batch_size", PinSageHParams().batch_size), 1
        )
    hp = PinSageHParams.from_dict(overrides)
    out_dir = os.path.join(args.out, "quality", args.name)
    model, emb, history = trainer.train_and_embed(inputs, hp, out_dir, validate=not args.no_validate)
    query_emb = train_lib.query_embeddings(model, emb)
    result = {
        "neighborhoods": args.neighborhoods,
        "top_t": int(inputs["nbr"].shape[1]),
        "pairs": args.pairs,
        "walk_positives": args.walk_positives,
        "num_pairs": int(len(inputs["query"])),
        "run": run,
        "name": args.name,
        "hparams": hp.to_dict(),
        "load_seconds": load_s,
        "train_seconds": history["train_seconds"],
        "history": {k: v for k, v in history.items() if k not in ("hparams",)},
    }
    scorers = {
        "pinsage": evaluation.EmbeddingScorer(emb, query_emb=query_emb),
        evaluate_lib.SIMILAR_MODEL: evaluation.EmbeddingScorer(emb),  # the served similar_items (z . z)
        **({} if args.no_baselines else evaluation.baseline_scorers(g)),
    }
    _score(result, scorers, g)
    result["space"] = report_lib.space_spread(report_lib.pairwise_cosines(emb))
    _print(result, scorers)
    print(f"train {history['train_seconds']:.0f} s, pairs/s {history['pairs_per_second']}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"quality-{args.name}.json"), "w") as f:
        json.dump(result, f, indent=1, default=float)


def _score(result: dict, scorers: dict, g) -> None:
    """Validation / test ranking metrics and the served lists' metrics (test entry) of every scorer."""
    nodes, _ = evaluation.list_query_nodes(g.train_degree)
    for split in ("validation", "test"):
        q = evaluation.build_queries(g, split)
        result[split] = {name: evaluation.metrics_from_ranks(evaluation.ranks(s, q)) for name, s in scorers.items()}
    for name, s in scorers.items():
        lists = evaluation.top_k_lists(s, nodes, g.num_items)
        result["test"][name].update(evaluation.list_metrics(lists, nodes, g.train_degree))


def _print(result: dict, scorers: dict) -> None:
    print(f"{'model':<22}{'val HR@10':>10}{'test HR@10':>11}{'test MRR':>10}{'HR@500':>8}{'cov@10':>8}{'pop@10':>8}")
    for name in scorers:
        v, t = result["validation"][name], result["test"][name]
        print(
            f"{name:<22}{v['hr@10']:>10.4f}{t['hr@10']:>11.4f}{t['mrr']:>10.4f}{t['hr@500']:>8.4f}"
            f"{t['coverage@10']:>8.4f}{t['popular_share@10']:>8.4f}"
        )
    sp = result["space"]
    print(f"space: random-pair cosine mean {sp['mean']:.3f} (p5 {sp['p5']:.3f}, p95 {sp['p95']:.3f})")


def _graph_schema(run: str) -> str:
    from pipeline.data import datasets
    from schema import build

    with open(os.path.join(run, "data_report.json")) as f:
        name = json.load(f)["dataset"]
    base = datasets.resolve_dataset(name)[0]  # a shuffled copy (`ml-1m-unordered`) runs on its base's schema
    path = os.path.join(build.bundled_dir(base), build.GRAPH_SCHEMA)
    return path if os.path.exists(path) else os.path.join(run, "schema", build.GRAPH_SCHEMA)


if __name__ == "__main__":
    main()
