"""Co-engagement counts on the train graph: the one implementation of the windowed pairs that PairGen trains on,
the transition-count neighbourhoods sample and the transition-count baseline scores.

A positive pair (q, i) is an item i engaged within `window` interactions after q in the same context's
**train** history (ordered by `position`), q != i. The paper's "engaged right after" is window 1; the default
is 3 because window-3 transitions are the strongest signal on MovieLens (docs/DESIGN.md). Pairs are
deduplicated with their count (the trainer may weight or sample by it). `symmetric=True` also emits (i, q).
A repeated item in one context (a duplicate edge) yields its pairs once per occurrence; q == i pairs are
dropped and counted.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def positive_pairs(
    context_index, node_id, position, num_items: int, window: int, symmetric: bool = False
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


def transition_counts(context_index, node_id, position, num_items: int, window: int, dtype=np.float64):
    """[N, N] symmetric window-`window` transition counts of the (train) interactions given: T[i, j] = how often
    j occurs within `window` positions after or before i in a context's history."""
    q, i, c, _ = positive_pairs(context_index, node_id, position, num_items, window=window, symmetric=True)
    return sp.csr_matrix((c.astype(dtype), (q, i)), shape=(num_items, num_items))


def train_transition_counts(graph, window: int, dtype=np.float64) -> sp.csr_matrix:
    """transition_counts of a schema.graph.Graph's train split."""
    m = graph.split == "train"
    return transition_counts(
        graph.context_index[m], graph.node_id[m], graph.position[m], graph.num_items, window, dtype
    )
