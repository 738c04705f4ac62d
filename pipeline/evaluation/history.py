"""The evaluator's history queries: "what should this context see next, given its history" under protocol v2
(modules/history.py), for the context tower and the history baselines, on both splits with standard errors.

Rows (report.json `history_metrics` = test, `history_validation_metrics` = validation): `context_tower` (u_c . z_i,
the history cut to the tower's max_len), `popularity`, `transitions_last_item`, `itemknn_history`, `rwr_history`,
`ease` (skipped above history.EASE_MAX_ITEMS, the reason in `history_evaluation.skipped`), `mean_embedding` (the
mean of the history's z) and `item_to_item_last` (the served related_items scorer from the last item: u_q . z_i with
the trainer's query head, else z . z). itemknn_history's decay and ease's lambda are chosen on validation HR@10
(recorded in `history_evaluation.chosen`). `history_verdicts`: the tower against each baseline on the test split,
paired per context (evaluation.paired_verdict), under the signature name `recommend`, which the blessing judges
like the item-to-item signatures (pipeline/evaluation/blessing.py). Every metric has its SE: the sample SE over contexts, and for coverage@10 (one
share of the catalogue per list set) a seeded bootstrap over contexts.
"""

from __future__ import annotations

import time

import numpy as np

from modules import context_tower as ct
from modules import evaluation as ev
from modules import history, progress

TOWER = "context_tower"
SIGNATURE = "recommend"  # the served signature the tower will answer
BASELINES = (
    "popularity",
    "transitions_last_item",
    "itemknn_history",
    "rwr_history",
    "ease",
    "mean_embedding",
    "item_to_item_last",
)
METRICS = ("hr@10", "ndcg@10", "mrr", "hr@100", "coverage@10", "popular_share@10")
COVERAGE_RESAMPLES = 200  # bootstrap resamples of the coverage SE: its own error is then ~5 % of it


class TowerScorer:
    """A trained context tower as a history scorer: u_c . v_i over every item (v: the tower's item vectors)."""

    def __init__(self, model: ct.ContextTower):
        self.model = model
        self.items = model.item_vectors().numpy()

    def scores(self, histories):
        return ct.query_vectors(self.model, histories) @ self.items.T


def coverage_se(lists: np.ndarray, train_degree, resamples: int = COVERAGE_RESAMPLES, seed: int = 0) -> float:
    """The bootstrap SE of coverage@k over contexts (a catalogue-level share has no per-context value to average):
    the sample SD of history_list_metrics' coverage over `resamples` seeded resamples of the lists' rows."""
    lists, engaged = np.asarray(lists, np.int64), np.asarray(train_degree) >= 1
    if len(lists) < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    for b in range(resamples):
        shown = np.zeros(len(engaged), bool)
        picked = lists[rng.integers(0, len(lists), len(lists))]
        shown[picked[picked >= 0]] = True
        values[b] = (shown & engaged).sum() / max(engaged.sum(), 1)
    return float(values.std(ddof=1))


def _row(ranks: np.ndarray, lists: np.ndarray, train_degree, total: int) -> dict:
    m = history.history_metrics(ranks, lists, train_degree)
    m[f"coverage@{ev.K}_se"] = coverage_se(lists, train_degree)
    keep = {k: m[k] for name in METRICS for k in (name, name + "_se")}
    return dict(keep, num_contexts=int(len(ranks)), total_contexts=int(total))


def _scorers(graph, emb, query_emb, tower, max_contexts) -> tuple[dict, dict, dict]:
    item_scorer = ev.EmbeddingScorer(emb, query_emb=query_emb)  # the served related_items ranking
    base, skipped, chosen = history.history_baselines(graph, item_scorer, emb, max_contexts=max_contexts)
    scorers = {TOWER: TowerScorer(tower)} if tower is not None else {}
    scorers.update((name, base[name]) for name in BASELINES if name in base)
    return scorers, skipped, chosen


def verdicts(test_ranks: dict, metric: str = "hr@10", z: float = 2.0) -> tuple[dict, dict]:
    """({baseline: {"recommend": verdict}}, details) of the tower against each baseline present (paired)."""
    if TOWER not in test_ranks:
        return {}, {}
    out, details = {}, {}
    for base in (b for b in BASELINES if b in test_ranks):
        verdict, diff, se = ev.paired_verdict(test_ranks[TOWER], test_ranks[base], metric, z)
        out[base] = {SIGNATURE: verdict}
        details[base] = {
            SIGNATURE: {"metric": metric, "diff": diff, "se": se, "num_contexts": int(len(test_ranks[TOWER]))}
        }
    return out, details


def history_evaluation(
    graph,
    emb: np.ndarray,
    query_emb: np.ndarray | None = None,
    tower: ct.ContextTower | None = None,
    tower_history: dict | None = None,
    max_contexts: int | None = None,
    metric: str = "hr@10",
    z: float = 2.0,
) -> dict:
    """report.json's history blocks (module docstring). `max_contexts`: the same seeded context sample as the
    item-to-item queries (evaluation.build_queries), for both splits and the baselines' validation choices."""
    t0 = time.perf_counter()
    scorers, skipped, chosen = _scorers(graph, emb, query_emb, tower, max_contexts)
    queries = {s: history.build_history_queries(graph, s, max_contexts=max_contexts) for s in ("test", "validation")}
    bar = progress.Progress("history evaluation", len(scorers) * sum(len(q) for q in queries.values()), "contexts")
    out, test_ranks = {"test": {}, "validation": {}}, {}
    try:
        for name, scorer in scorers.items():
            bar.describe(f"history evaluation: {name}")
            max_len = tower.max_len if name == TOWER else None
            for split, q in queries.items():
                r, lists = history.history_ranks_and_lists(scorer, q, progress=bar, max_len=max_len)
                out[split][name] = _row(r, lists, graph.train_degree, q.total_contexts)
                if split == "test":
                    test_ranks[name] = r
    finally:
        bar.close()
    v, details = verdicts(test_ranks, metric, z)
    return {
        "history_metrics": out["test"],
        "history_validation_metrics": out["validation"],
        "history_verdicts": v,
        "history_verdict_details": details,
        "history_evaluation": {
            "signature": SIGNATURE,
            "in_blessing": tower is not None,
            "chosen": chosen,
            "skipped": skipped,
            "tower": _tower_info(tower, tower_history),
            "seconds": time.perf_counter() - t0,
        },
    }


def _tower_info(tower, hist: dict | None) -> dict | None:
    """What the report says of the tower: form, max_len, its training record (form probe, epochs, wall time)."""
    if tower is None:
        return None
    hist = hist or {}
    keys = ("form", "form_probe", "best_epoch", "best_val_hr@10", "epoch", "loss", "val_hr@10", "train_seconds")
    return dict({k: hist[k] for k in keys if k in hist}, max_len=int(tower.max_len))
