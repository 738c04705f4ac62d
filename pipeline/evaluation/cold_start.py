"""The item-cold-start evaluation: how good are the embeddings of items the model never trained on?

The experiment (docs/QUALITY.md §7 has its figures and commands):

1. `hold_out` picks a share of the catalogue's items -- the newest by first interaction, or a seeded random
   sample -- and writes a copy of the dataset without them: their items.csv rows and every interaction with them
   are gone, so neither the Transform's vocabularies nor any training pair has seen them.
2. A run trains on that copy; `pinsage embed` then embeds the whole catalogue with its model over the full data
   (the held-out items get their vectors from their features and the neighbourhoods on the refreshed graph, as
   any new item does).
3. `evaluate` ranks, under protocol v2 on the full data's split, the test interactions that involve a held-out
   item, for the refreshed vectors and the references:
   - features_only: the raw-feature cosine (modules.evaluation.features_only_embeddings), what an item with no
     interactions can get;
   - cooccurrence_knn: item co-occurrence on the refreshed graph's train interactions (the held-out items' train
     interactions included);
   - retrained (when given): the same model trained with the held-out items, e.g. the run on the full data.
   Two query sets, both item-to-item and one step ahead as in the protocol:
   - as targets: contexts whose test item is held out (query = the validation item);
   - as queries: contexts whose validation item (the test query) is held out;
   and the list metrics of the held-out items' own related-items lists (coverage, popular share, feature
   agreement). Verdicts are paired per context at 2 SE against features_only and co-occurrence.

Train interactions of the held-out items never leak into the model: removing items from a context's sequence
only moves its split points later, so the copy's train interactions are a subset of the full data's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Optional

import numpy as np
import pandas as pd

from pipeline.configs import HOLD_OUT_BY

DEFAULT_SHARE = 0.1
DEFAULT_SEED = 0
HELD_OUT_FILE = "held_out_items.txt"  # one item id per line, in the hold-out copy's directory
TARGETS, QUERIES = "as_targets", "as_queries"
REFERENCES = ("features_only", "cooccurrence_knn")  # what the refreshed model is judged against
MODEL, RETRAINED = "pinsage_refreshed", "pinsage_retrained"
# contexts per query set (and list items) ranked: the SE of an HR@10 near 0.2 is then <= 0.006, and every model
# scores the whole catalogue for each (at 1M items ~5k x 1M scores per model, about a minute)
MAX_CONTEXTS = 5000


@dataclasses.dataclass(frozen=True)
class HoldOut:
    """What `hold_out` wrote: the copy's directory and the held-out item ids (strings, as in the CSVs)."""

    data_dir: str
    items: tuple
    by: str
    share: float
    seed: int
    interactions_removed: int
    interactions_kept: int


def _read(path: str) -> pd.DataFrame:
    # every cell as its text: the copy must write back exactly what the contract reads (ids, titles, timestamps)
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)


def pick_items(interactions: pd.DataFrame, item_ids: np.ndarray, share: float, by: str, seed: int) -> np.ndarray:
    """The held-out item ids: round(share * len(item_ids)) of them (at least one), the newest by first
    interaction (items without a parseable interaction count as newest; ties broken by a seeded permutation) or
    a seeded random sample. Returns them sorted."""
    from pipeline.data import ingest

    if by not in HOLD_OUT_BY:
        raise ValueError(f"hold out by {by!r}: expected one of {HOLD_OUT_BY}")
    if not 0.0 < share < 1.0:
        raise ValueError(f"hold-out share {share}: expected a number in (0, 1)")
    item_ids = np.unique(np.asarray(item_ids, dtype=object).astype(str))
    k = max(1, int(round(share * len(item_ids))))
    if k >= len(item_ids):
        raise ValueError(f"hold-out share {share} of {len(item_ids)} items leaves nothing to train on")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(item_ids))
    if by == "random":
        return np.sort(item_ids[order[:k]])
    ts = ingest.parse_timestamps(interactions["timestamp"].astype(str)).astype("float64")
    first = ts.groupby(interactions["item_id"].to_numpy()).min()
    t = first.reindex(item_ids).to_numpy(dtype="float64", na_value=np.nan)
    t = np.where(np.isnan(t), np.inf, t)
    # lexsort: last key primary -> by first time, ties by the seeded permutation
    rank_of = np.empty(len(item_ids), np.int64)
    rank_of[order] = np.arange(len(item_ids))
    newest_first = np.lexsort((rank_of, -t))
    return np.sort(item_ids[newest_first[:k]])


def hold_out(
    data_dir: str, out_dir: str, share: float = DEFAULT_SHARE, by: str = "random", seed: int = DEFAULT_SEED
) -> HoldOut:
    """A copy of the dataset in `data_dir` (the CSV contract) without the held-out items, in `out_dir`:
    items.csv without their rows, interactions.csv without any of their interactions, dataset.yaml as it was,
    and HELD_OUT_FILE listing them."""
    from pipeline.data import ingest

    items = _read(os.path.join(data_dir, ingest.ITEMS_FILE))
    inter = _read(os.path.join(data_dir, ingest.INTERACTIONS_FILE))
    held = pick_items(inter, items["item_id"].to_numpy(), share, by, seed)
    gone = set(held.tolist())
    os.makedirs(out_dir, exist_ok=True)
    items[~items["item_id"].isin(gone)].to_csv(os.path.join(out_dir, ingest.ITEMS_FILE), index=False)
    removed = inter["item_id"].isin(gone)
    inter[~removed].to_csv(os.path.join(out_dir, ingest.INTERACTIONS_FILE), index=False)
    spec = os.path.join(data_dir, ingest.SPEC_FILE)
    if os.path.exists(spec):
        shutil.copyfile(spec, os.path.join(out_dir, ingest.SPEC_FILE))
    with open(os.path.join(out_dir, HELD_OUT_FILE), "w", encoding="utf-8") as f:
        f.write("".join(f"{i}\n" for i in held))
    return HoldOut(out_dir, tuple(held.tolist()), by, share, seed, int(removed.sum()), int((~removed).sum()))


def read_held_out(data_dir: str) -> Optional[list[str]]:
    path = os.path.join(data_dir, HELD_OUT_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [ln.rstrip("\n") for ln in f if ln.strip()]


# ----------------------------------------------------------------------------------------------- evaluation


def held_out_mask(graph, held_out_ids) -> np.ndarray:
    """[N] bool: the graph's items among `held_out_ids` (compared as the id strings of the CSVs)."""
    from pipeline.graph import split as split_lib

    ids = split_lib.id_strings(np.asarray(graph.item_ids))
    return np.isin(ids, np.asarray([str(i) for i in held_out_ids], dtype=object))


def rows_of(emb: np.ndarray, ids, graph) -> np.ndarray:
    """`emb`'s rows (one per id of `ids`) in the graph's node order; items it lacks get zero rows (ranked last
    by a dot product, by node id among themselves) -- counted by the caller."""
    from pipeline.graph import split as split_lib

    emb = np.asarray(emb, np.float32)
    at = {s: i for i, s in enumerate(split_lib.id_strings(np.asarray(ids, dtype=object)))}
    out = np.zeros((graph.num_items, emb.shape[1]), np.float32)
    want = split_lib.id_strings(np.asarray(graph.item_ids))
    src = np.array([at.get(s, -1) for s in want], np.int64)
    out[src >= 0] = emb[src[src >= 0]]
    return out


def _sample(rows: np.ndarray, k: int, seed: int) -> np.ndarray:
    if k and len(rows) > k:
        return np.sort(np.random.default_rng(seed).choice(rows, k, replace=False))
    return rows


def _metrics(r: np.ndarray) -> dict:
    from modules import evaluation

    if len(r) == 0:
        return {"num_contexts": 0}
    m = evaluation.metrics_from_ranks(r)
    return {k: m[k] for k in ("hr@10", "hr@10_se", "ndcg@10", "ndcg@10_se", "mrr", "mrr_se", "hr@100", "num_contexts")}


def evaluate(
    graph,
    held_out_ids,
    refreshed: tuple,
    features: Optional[dict] = None,
    categories: Optional[np.ndarray] = None,
    retrained: Optional[tuple] = None,
    z: float = 2.0,
    metric: str = "hr@10",
    max_contexts: int = MAX_CONTEXTS,
    seed: int = DEFAULT_SEED,
) -> dict:
    """The cold-start section (module docstring) on `graph` (the refreshed graph: the full data's split).

    Args:
      graph: schema.graph.Graph of the full data.
      held_out_ids: the items the model never trained on (item id strings).
      refreshed: (emb [N, d], query_emb [N, d] or None) of the model that did not see them, embedded over
        `graph` (node order).
      features: the items' Transform-ed features (modules.features.load_item_features), for features_only.
      categories: [N, V] bool, the first categorical feature's values (feature agreement of the lists).
      retrained: (emb, query_emb or None) of the model trained with them, node order; optional.
      z, metric: the verdicts' standard errors and metric (paired per context).
      max_contexts, seed: each query set and the list items are a seeded uniform sample of at most this many (every
        model ranks the whole catalogue for each; the report says how many of how many).
    Returns a JSON-able dict: counts, per query set each model's HR@10 / NDCG@10 / MRR with SE and its verdicts,
    and the held-out items' list metrics."""
    from modules import evaluation

    held = held_out_mask(graph, held_out_ids)
    scorers = {MODEL: evaluation.EmbeddingScorer(refreshed[0], query_emb=refreshed[1])}
    if retrained is not None:
        scorers[RETRAINED] = evaluation.EmbeddingScorer(retrained[0], query_emb=retrained[1])
    if features is not None:
        scorers["features_only"] = evaluation.EmbeddingScorer(evaluation.features_only_embeddings(features), "cosine")
    scorers["cooccurrence_knn"] = evaluation.CooccurrenceScorer(graph)
    scorers["popularity"] = evaluation.PopularityScorer(graph)
    test = evaluation.build_queries(graph, "test")
    rows = {TARGETS: np.flatnonzero(held[test.target]), QUERIES: np.flatnonzero(held[test.query])}
    sets = {name: test.take(_sample(r, max_contexts, seed)) for name, r in rows.items()}
    list_nodes = _sample(np.flatnonzero(held).astype(np.int64), max_contexts, seed)
    ranks, lists_of = {}, {}
    for name, s in scorers.items():
        r, lists = evaluation.ranks_and_lists(s, list(sets.values()), list_nodes)
        ranks[name] = dict(zip(sets, r))
        lists_of[name] = lists
    out = {
        "held_out_items": int(held.sum()),
        "held_out_items_with_train_interactions": int((graph.train_degree[held] > 0).sum()),
        "held_out_train_degree_median": float(np.median(graph.train_degree[held])) if held.any() else 0.0,
        "num_items": int(graph.num_items),
        "test_contexts": int(len(test)),
        "max_contexts": max_contexts,
        "list_items": int(len(list_nodes)),
        "metric": metric,
        "z": z,
        "sets": {},
        "lists": {},
    }
    for set_name, q in sets.items():
        metrics = {name: _metrics(ranks[name][set_name]) for name in scorers}
        verdicts = {}
        for model in (m for m in (MODEL, RETRAINED) if m in scorers and len(q)):
            verdicts[model] = {}
            for base in (b for b in REFERENCES + ((MODEL,) if model == RETRAINED else ()) if b in scorers):
                v, diff, se = evaluation.paired_verdict(ranks[model][set_name], ranks[base][set_name], metric, z)
                verdicts[model][base] = {"verdict": v, "diff": diff, "se": se}
        out["sets"][set_name] = {
            "num_contexts": int(len(q)),
            "total_contexts": int(len(rows[set_name])),
            "metrics": metrics,
            "verdicts": verdicts,
        }
    if len(list_nodes):
        for name in scorers:
            m = evaluation.list_metrics(lists_of[name], list_nodes, graph.train_degree, categories)
            out["lists"][name] = m
    return out


# ------------------------------------------------------------------------------------------------- tables

LABELS = {
    MODEL: "PinSage, refreshed (never trained on them)",
    RETRAINED: "PinSage, retrained with them",
    "features_only": "features only",
    "cooccurrence_knn": "co-occurrence kNN (refreshed graph)",
    "popularity": "popularity",
}
SET_TEXT = {
    TARGETS: "test target held out (query: the context's validation item)",
    QUERIES: "test query held out (the validation item is a held-out item)",
}
WORDS = {"ahead": "ahead of", "within_noise": "within noise of", "behind": "behind"}


def _se(m: dict, key: str) -> str:
    v = m.get(key)
    return "—" if v is None else f"{v:.4f} ± {m.get(key + '_se', 0.0):.4f}"


def tables(section: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """[(caption, header, rows)]: one table per query set and one of the held-out items' lists."""
    out = []
    for set_name, s in section.get("sets", {}).items():
        header = ["model", "HR@10", "NDCG@10", "MRR", "contexts"]
        rows = [
            [LABELS.get(name, name), _se(m, "hr@10"), _se(m, "ndcg@10"), _se(m, "mrr"), str(m.get("num_contexts", 0))]
            for name, m in s["metrics"].items()
        ]
        caption = f"Contexts whose {SET_TEXT.get(set_name, set_name)}"
        total = s.get("total_contexts", s["num_contexts"])
        if total > s["num_contexts"]:
            caption += f"; a seeded sample of {s['num_contexts']} of {total}"
        out.append((caption, header, rows))
    if section.get("lists"):
        header = ["model", "coverage@10", "popular share@10", "feature agreement@10"]
        rows = [
            [
                LABELS.get(name, name),
                f"{m['coverage@10']:.4f}",
                _se(m, "popular_share@10"),
                _se(m, "feature_agreement@10"),
            ]
            for name, m in section["lists"].items()
        ]
        out.append(("The held-out items' own related-items lists (top 10, nothing masked)", header, rows))
    return out


def verdict_lines(section: dict) -> list[str]:
    """One sentence per verdict, e.g. "test target held out: PinSage, refreshed is ahead of features only by
    +0.0612 ± 0.0101 HR@10 (paired, 714 contexts)"."""
    lines = []
    for set_name, s in section.get("sets", {}).items():
        for model, against in s.get("verdicts", {}).items():
            for base, v in against.items():
                lines.append(
                    f"{SET_TEXT.get(set_name, set_name).split(' (')[0]}: {LABELS.get(model, model)} is "
                    f"{WORDS[v['verdict']]} {LABELS.get(base, base)} ({v['diff']:+.4f} ± {v['se']:.4f} "
                    f"{section.get('metric', 'hr@10').upper()}, paired over {s['num_contexts']} contexts, "
                    f"{section.get('z', 2.0):g} SE)"
                )
    return lines


def summary_line(section: dict) -> str:
    return (
        f"{section['held_out_items']} items the model never trained on ({section.get('how', 'new in the data')}); "
        f"{section['held_out_items_with_train_interactions']} of them have train interactions on the refreshed "
        f"graph (median {section['held_out_train_degree_median']:g})."
    )


def markdown_lines(section: dict, level: str = "##") -> list[str]:
    """The section as Markdown (a heading, the counts, the tables, the verdicts); [] without held-out items."""
    if not section.get("held_out_items"):
        return []
    lines = [f"{level} Item cold start", "", summary_line(section), ""]
    for caption, header, rows in tables(section):
        lines += [f"{caption}:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    lines += [f"- {ln}" for ln in verdict_lines(section)]
    return lines + [""]
