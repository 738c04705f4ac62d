"""PairGen logic: positive training pairs from sequential co-engagement, and the pairs table's I/O.

A positive pair (q, i) is an item i engaged within `window` interactions after q in the same context's
**train** history (ordered by `position`), q != i. The paper's "engaged right after" is window 1; the default
is 3 because DESIGN.md measured window-3 transitions as the strongest signal on MovieLens. Pairs are
deduplicated with their count (the trainer may weight or sample by it). `symmetric=True` also emits (i, q).
A repeated item in one context (a duplicate edge) yields its pairs once per occurrence; q == i pairs are
dropped and counted.

Layout of a TrainingPairs artifact: `pairs-*.parquet` (query, positive, count: int64),
`hard_negatives-*.parquet` (query: int64, negatives: list<int64>, see ppr.py), `pair_stats.json`.
"""

from __future__ import annotations

import glob
import os

import numpy as np

PAIRS = "pairs"
HARD_NEGATIVES = "hard_negatives"
STATS_FILE = "pair_stats.json"


def positive_pairs(
    context_index, node_id, position, num_items: int, window: int = 3, symmetric: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(query, positive, count) sorted by (query, positive), and counters for the stats file."""
    ctx, node = np.asarray(context_index, np.int64), np.asarray(node_id, np.int64)
    order = np.lexsort((np.asarray(position), ctx))
    ctx, node = ctx[order], node[order]
    qs, its = [], []
    for k in range(1, window + 1):
        same = ctx[k:] == ctx[:-k]
        qs.append(node[:-k][same])
        its.append(node[k:][same])
    q, i = np.concatenate(qs), np.concatenate(its)
    self_pairs = int((q == i).sum())
    q, i = q[q != i], i[q != i]
    if symmetric:
        q, i = np.r_[q, i], np.r_[i, q]
    keys = np.sort(q * num_items + i)
    if len(keys) == 0:
        e = np.zeros(0, np.int64)
        return e, e, e, {"pair_occurrences": 0, "self_pairs_dropped": self_pairs, "distinct_pairs": 0}
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    counts = np.diff(np.r_[first, len(keys)])
    keys = keys[first]
    stats = {"pair_occurrences": int(len(q)), "self_pairs_dropped": self_pairs, "distinct_pairs": int(len(keys))}
    return keys // num_items, keys % num_items, counts, stats


def pairs_from_graph(uri: str, window: int = 3, symmetric: bool = False):
    """positive_pairs over a graph artifact's train split (reads only the columns it needs)."""
    import pyarrow.compute as pc

    from pipeline import graph_io

    t = graph_io.read_table(uri, graph_io.INTERACTIONS, columns=["context_index", "node_id", "position", "split"])
    t = t.filter(pc.equal(t.column("split"), "train"))
    n = graph_io.read_table(uri, graph_io.ITEMS, columns=["node_id"]).num_rows
    return positive_pairs(
        t.column("context_index").to_numpy(),
        t.column("node_id").to_numpy(),
        t.column("position").to_numpy(),
        n,
        window,
        symmetric,
    )


def pairs_table(q, i, count):
    import pyarrow as pa

    return pa.table(
        {"query": np.asarray(q, np.int64), "positive": np.asarray(i, np.int64), "count": np.asarray(count, np.int64)}
    )


def _read(uri: str, table: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(uri, f"{table}-*.parquet")))
    if not files:
        raise FileNotFoundError(f"{uri!r} has no {table}-*.parquet")
    return pa.concat_tables([pq.read_table(f) for f in files])


def load_pairs(uri: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, positive, count) int64 arrays, sorted by (query, positive)."""
    t = _read(uri, PAIRS).sort_by([("query", "ascending"), ("positive", "ascending")])
    return tuple(t.column(c).to_numpy() for c in ("query", "positive", "count"))


def load_hard_negatives(uri: str, num_items: int | None = None) -> np.ndarray:
    """[N, K] int64 hard negatives per query node id, padded with -1 (rows of items without pairs are all -1).
    N = max query + 1 unless `num_items` is given."""
    from pipeline.neighborhood_io import lists_to_padded

    t = _read(uri, HARD_NEGATIVES).sort_by("query")
    q = t.column("query").to_numpy()
    n = int(q.max(initial=-1)) + 1 if num_items is None else num_items
    dense = lists_to_padded(t.column("negatives").combine_chunks(), len(q), None, -1, np.int64)
    out = np.full((n, dense.shape[1]), -1, np.int64)
    out[q] = dense
    return out
