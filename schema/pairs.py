"""The TrainingPairs artifact: what PairGen writes and the trainer reads (pairs: modules/cooccurrence.py,
hard negatives: pipeline/sampling/ppr.py).

Layout of a TrainingPairs artifact: `pairs-*.parquet` (query, positive, count: int64),
`hard_negatives-*.parquet` (query: int64, negatives: list<int64>, see ppr.py), `pair_stats.json`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from schema import files
from schema.neighborhoods import lists_to_padded

PAIRS = "pairs"
HARD_NEGATIVES = "hard_negatives"
STATS_FILE = "pair_stats.json"


def pairs_table(q, i, count):

    return pa.table(
        {"query": np.asarray(q, np.int64), "positive": np.asarray(i, np.int64), "count": np.asarray(count, np.int64)}
    )


def _read(uri: str, table: str):

    found = files.glob(files.join(uri, f"{table}-*.parquet"))
    if not found:
        raise FileNotFoundError(f"{uri!r} has no {table}-*.parquet")
    return pa.concat_tables([files.read_parquet(f) for f in found])


def load_pairs(uri: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, positive, count) int64 arrays, sorted by (query, positive)."""
    t = _read(uri, PAIRS).sort_by([("query", "ascending"), ("positive", "ascending")])
    return tuple(t.column(c).to_numpy() for c in ("query", "positive", "count"))


def load_hard_negatives(uri: str, num_items: int | None = None) -> np.ndarray:
    """[N, K] int64 hard negatives per query node id, padded with -1 (rows of items without pairs are all -1).
    N = max query + 1 unless `num_items` is given."""
    t = _read(uri, HARD_NEGATIVES).sort_by("query")
    q = t.column("query").to_numpy()
    n = int(q.max(initial=-1)) + 1 if num_items is None else num_items
    dense = lists_to_padded(t.column("negatives").combine_chunks(), len(q), None, -1, np.int64)
    out = np.full((n, dense.shape[1]), -1, np.int64)
    out[q] = dense
    return out
