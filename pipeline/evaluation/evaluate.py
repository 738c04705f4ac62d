"""The evaluator's logic: every model and baseline under protocol v2 (modules/evaluation.py, docs/DESIGN.md) on
both splits with standard errors, the served signatures' paired verdicts against each baseline, HR@10 by the
query item's popularity, and the labels the embedding map is coloured by."""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from modules import context_tower, evaluation, progress
from pipeline.evaluation import history as history_eval
from pipeline.evaluation import report as report_lib
from pipeline.graph import split as split_lib
from schema import files
from schema import graph as graph_io

ABLATION_PREFIX = "ablation:"  # model names of the ablation rows in report.json
# the served similar_items signature's row (z_q . z_i) of a query-head model, beside `pinsage` (related_items)
SIMILAR_MODEL = "pinsage_similar"
SIGNATURES = {"related_items": "pinsage", "similar_items": SIMILAR_MODEL}  # served signature -> its model row
# the context tower over a one-item history, as an item-to-item row: the evidence for which ranking answers the
# one-item question (recommend with one item vs related_items vs similar_items); reported, not a baseline
TOWER_ONE_ITEM = "context_tower_one_item"
BASELINES = ("popularity", "cooccurrence_knn", "transition_counts", "rwr", "features_only")  # verdicts against
DEFAULT_VERDICT_METRIC, DEFAULT_Z = "hr@10", 2.0  # the blessing's defaults; the run config passes its own
PROTOCOL = {
    "version": 2,
    "tie_break": "seeded hash of (context id, item id)",
    "split_seed": split_lib.SPLIT_SEED,
    "test_query": "validation item",
    "validation_query": "last train item",
    "text": (
        "per context, interactions ordered by (timestamp, then a seeded hash of (context id, item id)): last = test, "
        "second-last = validation, the rest train (contexts with fewer than 3 interactions train only); "
        "item-to-item queries one step ahead: validation query = the last train item, test query = the validation "
        "item; rank all items; mask the context's train items (and for test its validation item, the query); ties "
        "in score broken by node id; HR@10, MRR, NDCG@10, Recall@10, HR@100, HR@500, each with its standard error; a "
        "model is ahead of / within noise of / behind a baseline at z standard errors of the paired per-context "
        "difference (test split); HR@10 by the query item's popularity (head / torso / tail: thirds of the train "
        "interactions); list metrics over the related-items lists (top 10 of every item with >= 5 train "
        "interactions, the item itself excluded, nothing masked)"
    ),
}


def _vocab(transform_graph_uri: str, col: str, width: int) -> list[str]:
    """The Transform vocabulary of `col` (the multi-hot's columns), padded with '<oov>' to the multi-hot width."""
    path = files.join(transform_graph_uri, "transform_fn", "assets", f"{col}_vocab")
    vocab = files.read_text(path).splitlines() if files.exists(path) else []
    return vocab + ["<oov>"] * (width - len(vocab))


def colour_labels(features: dict, transform_graph_uri: str) -> tuple[np.ndarray, list[str], str]:
    """The first categorical multi-hot feature's first value per item (e.g. a movie's first genre)."""
    names = sorted(n for n in features if n.endswith("_multi_hot"))
    if not names:
        return np.full(len(features["node_id"]), -1), [], ""
    mh = np.asarray(features[names[0]])
    col = names[0][: -len("_multi_hot")]
    vocab = _vocab(transform_graph_uri, col, mh.shape[1])
    labels = np.where(mh.any(1), mh.argmax(1), -1)
    return labels, vocab, col


def categorical_values(features: dict | None, transform_graph_uri: str = "") -> tuple[np.ndarray | None, str]:
    """([N, V] bool: each item's values of the first categorical feature, the one colour_labels uses; its
    name), or (None, '') when the dataset has none. The out-of-vocabulary bucket is not a value: two items with
    unknown genres do not share a genre."""
    names = sorted(n for n in (features or {}) if n.endswith("_multi_hot"))
    if not names:
        return None, ""
    mh = np.asarray(features[names[0]]) > 0
    col = names[0][: -len("_multi_hot")]
    known = np.array([v != "<oov>" for v in _vocab(transform_graph_uri, col, mh.shape[1])], bool)
    if known.any():  # without the vocabulary file every column counts
        mh = mh & known[None, :]
    return mh, col


def _scorers(graph, emb, features, query_emb, ablations, tower=None) -> dict:
    scorers = dict(evaluation.baseline_scorers(graph))
    if features is not None:
        scorers["features_only"] = evaluation.EmbeddingScorer(evaluation.features_only_embeddings(features), "cosine")
    if emb is not None:
        scorers["pinsage"] = evaluation.EmbeddingScorer(emb, query_emb=query_emb)
        if query_emb is not None:  # without a query head similar_items is the same ranking as related_items
            scorers[SIMILAR_MODEL] = evaluation.EmbeddingScorer(emb)
    for name, (e, q) in sorted((ablations or {}).items()):
        scorers[ABLATION_PREFIX + name] = evaluation.EmbeddingScorer(e, query_emb=q)
    if tower is not None:
        scorers[TOWER_ONE_ITEM] = one_item_tower_scorer(tower, graph.num_items)
    return scorers


def one_item_tower_scorer(tower, num_items: int) -> evaluation.EmbeddingScorer:
    """u_c of each item's one-item history [[i]] . the tower's item vectors: recommend asked with one item."""
    queries = context_tower.query_vectors(tower, [np.array([i]) for i in range(num_items)])
    return evaluation.EmbeddingScorer(tower.item_vectors().numpy(), query_emb=queries)


def _ranks_and_lists(scorer, queries: dict, nodes, bar) -> tuple[dict, np.ndarray]:
    """({split: ranks}, lists of `nodes`), each distinct item of the splits' queries and the list queries scored
    once (evaluation.ranks_and_lists): the test and validation queries of a context are different items."""
    split_ranks, lists = evaluation.ranks_and_lists(scorer, list(queries.values()), nodes, progress=bar)
    return dict(zip(queries, split_ranks)), lists


def verdicts(test_ranks: dict, metric: str = DEFAULT_VERDICT_METRIC, z: float = DEFAULT_Z) -> tuple[dict, dict]:
    """(verdicts, verdict_details) of each served signature's model row against each baseline present, on the
    test ranks {model: [M] ranks} (the same contexts for every model; evaluation.paired_verdict). Empty without a
    `pinsage` row."""
    if "pinsage" not in test_ranks:
        return {}, {}
    out, details = {}, {}
    for base in (b for b in BASELINES if b in test_ranks):
        out[base], details[base] = {}, {}
        for signature, model in SIGNATURES.items():
            model = model if model in test_ranks else "pinsage"  # no query head: one ranking for both
            verdict, diff, se = evaluation.paired_verdict(test_ranks[model], test_ranks[base], metric, z)
            out[base][signature] = verdict
            details[base][signature] = {
                "metric": metric,
                "diff": diff,
                "se": se,
                "num_contexts": int(len(test_ranks[model])),
            }
    return out, details


class Evaluation(NamedTuple):
    """evaluate_all's result: report.json's blocks of the same names ("metrics" = test, "lists" = list queries)."""

    test: dict
    validation: dict
    lists: dict
    verdicts: dict
    verdict_details: dict
    by_popularity: dict


def evaluate_all(
    graph: graph_io.Graph,
    emb: np.ndarray | None,
    features: dict | None,
    query_emb: np.ndarray | None = None,
    ablations: dict | None = None,
    max_contexts: int | None = None,
    categories: np.ndarray | None = None,
    verdict_metric: str = DEFAULT_VERDICT_METRIC,
    z: float = DEFAULT_Z,
    tower=None,
) -> Evaluation:
    """Every model — the baselines, `pinsage` (query vectors `query_emb` when the model has a query head, and then
    `pinsage_similar`, z . z) and each ablation {name: (emb, query_emb or None)} as `ablation:<name>` — on both
    splits, with standard errors. Each model's test metrics also carry the list metrics of its related-items lists
    (evaluation.list_metrics; feature agreement with `categories`, categorical_values' matrix); `lists` says over
    which query items. On the test split: each signature's verdicts against each baseline on `verdict_metric` at
    `z` SE of the paired difference (`verdicts`), and every model's HR@10 by the popularity of the query item
    (`by_popularity`). `tower`: a trained context tower adds its one-item row (TOWER_ONE_ITEM). `max_contexts`: evaluation.build_queries' context sample (each split's metrics then carry
    `num_contexts` evaluated and `total_contexts`), and the same budget for the list queries. Progress of the
    ranking goes to stderr (modules/progress.py)."""
    scorers = _scorers(graph, emb, features, query_emb, ablations, tower)
    queries = {
        split: evaluation.build_queries(graph, split, max_contexts=max_contexts) for split in ("test", "validation")
    }
    nodes, total_nodes = evaluation.list_query_nodes(graph.train_degree, max_queries=max_contexts)
    per_scorer = sum(len(q) for q in queries.values()) + len(nodes)
    bar = progress.Progress("evaluation", len(scorers) * per_scorer, "queries")
    out, test_ranks = {"test": {}, "validation": {}}, {}
    try:
        for name, s in scorers.items():
            bar.describe(f"evaluation: {name}")
            split_ranks, lists = _ranks_and_lists(s, queries, nodes, bar)
            test_ranks[name] = split_ranks["test"]  # for the paired verdicts and the breakdown; not in the report
            for split, r in split_ranks.items():
                m = evaluation.metrics_from_ranks(r)
                out[split][name] = dict(m, total_contexts=queries[split].total_contexts)
            if len(nodes):
                out["test"][name].update(evaluation.list_metrics(lists, nodes, graph.train_degree, categories))
    finally:
        bar.close()
    lists_info = {
        "query_items": int(len(nodes)),
        "total_query_items": int(total_nodes),
        "min_train_interactions": evaluation.LIST_MIN_DEGREE,
        "popular_items": evaluation.POPULAR_ITEMS,
    }
    buckets = evaluation.popularity_buckets(graph.train_degree)[queries["test"].query]
    by_pop = {name: evaluation.by_popularity(r, buckets) for name, r in test_ranks.items()}
    return Evaluation(out["test"], out["validation"], lists_info, *verdicts(test_ranks, verdict_metric, z), by_pop)


def _plots(out: str, history: dict, emb: np.ndarray, cos: dict, feats: dict, transform_graph_uri: str) -> dict:
    """Training curves, the similarity distribution and the embedding map under out/plots; {caption: path}."""
    files.makedirs(files.join(out, "plots"))
    report_lib.plot_training_curves(history, files.join(out, "plots", "training.png"))
    plots = {"training curves": "plots/training.png"}
    report_lib.plot_cosine_distribution(cos, files.join(out, "plots", "cosine_similarity.png"))
    plots["cosine similarity distribution"] = "plots/cosine_similarity.png"
    labels, names, col = colour_labels(feats, transform_graph_uri)
    if names:
        report_lib.plot_embedding_map(emb, labels, names, files.join(out, "plots", "embedding_map.png"))
        plots[f"embedding map coloured by {col}"] = "plots/embedding_map.png"
    return plots


def evaluation_report(
    graph: graph_io.Graph,
    model_embeddings: tuple,
    feats: dict,
    history: dict,
    *,
    transform_graph_uri: str,
    out_dir: str,
    dataset: str,
    max_contexts: int | None = None,
    verdict_metric: str = DEFAULT_VERDICT_METRIC,
    z: float = DEFAULT_Z,
    context_tower: tuple | None = None,
) -> dict:
    """report.json's content for a trained model: `model_embeddings` = (emb, query_emb or None, {ablation name:
    (emb, query_emb)}) as modules.trainer.load_model_embeddings returns them; plots are written under out_dir;
    the verdicts on `verdict_metric` at `z` SE (evaluate_all). `context_tower`: (tower, its training history)
    adds the history section (pipeline/evaluation/history.py)."""
    emb, query_emb, ablations = model_embeddings
    categories, category = categorical_values(feats, transform_graph_uri)
    t0 = time.time()
    tower = context_tower[0] if context_tower is not None else None
    res = evaluate_all(graph, emb, feats, query_emb, ablations, max_contexts, categories, verdict_metric, z, tower)
    test, val, by_pop = res.test, res.validation, res.by_popularity
    t_eval = time.time() - t0
    cos = {
        "pinsage": report_lib.pairwise_cosines(emb),
        "features_only": report_lib.pairwise_cosines(evaluation.features_only_embeddings(feats)),
    }
    space = {k: report_lib.space_spread(v) for k, v in cos.items()}
    space.update(
        {
            ABLATION_PREFIX + n: report_lib.space_spread(report_lib.pairwise_cosines(e))
            for n, (e, _) in sorted((ablations or {}).items())
        }
    )
    plots = _plots(out_dir, history, emb, cos, feats, transform_graph_uri)
    hist = {}
    if context_tower is not None:
        tower, tower_history = context_tower
        hist = history_eval.history_evaluation(
            graph, emb, query_emb, tower, tower_history, max_contexts, verdict_metric, z
        )
    abl = _pop_ablations(test, val, by_pop)
    return {
        "dataset": dataset,
        "protocol": PROTOCOL,
        "metrics": test,
        "validation_metrics": val,
        "verdicts": res.verdicts,
        "verdict_details": res.verdict_details,
        "by_popularity": by_pop,
        "lists": dict(res.lists, feature=category or None),
        **(
            {"ablations": abl, "ablations_vs_paper": report_lib.ablations_vs_paper(test.get("pinsage"), abl)}
            if abl
            else {}
        ),
        "kurtosis": {k: report_lib.kurtosis(v) for k, v in cos.items()},
        "space": space,
        "training": {
            k: history.get(k)
            for k in ("epoch", "loss", "val_hr@10", "pairs_per_second", "train_seconds", "hparams", "similarity_weight")
        },
        "plots": plots,
        **hist,
        "timings": {
            "evaluation": t_eval,
            "plots": time.time() - t0 - t_eval - (hist["history_evaluation"]["seconds"] if hist else 0.0),
            "training": float(history.get("train_seconds", 0.0)),
            **(_history_timings(hist) if hist else {}),
        },
    }


def _pop_ablations(test: dict, val: dict, by_pop: dict) -> dict:
    """The ablation rows taken out of the model rows: {name: {"metrics", "validation_metrics", "by_popularity"}}."""
    return {
        name[len(ABLATION_PREFIX) :]: {
            "metrics": test.pop(name),
            "validation_metrics": val.pop(name),
            "by_popularity": by_pop.pop(name),
        }
        for name in sorted(test)
        if name.startswith(ABLATION_PREFIX)
    }


def _history_timings(hist: dict) -> dict:
    h = hist["history_evaluation"]
    return {
        "history_evaluation": h["seconds"],
        "context_tower_training": float((h["tower"] or {}).get("train_seconds") or 0.0),
    }
