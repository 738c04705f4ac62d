"""Importance neighbourhoods from sequential co-engagement (an alternative neighbourhood *source* to the random
walks of random_walks.py).

'transitions': item u's top-T items by symmetric window-`window` transition count in the train split (j within
`window` positions after or before u in a context's train history — the same counts as the
`transition_counts` baseline: modules/cooccurrence.py), weights = L1-normalised counts, ties to the
lower item id. With these neighbourhoods z_u aggregates u's sequential successors/predecessors, so z_q . z_i can
represent (and smooth) the transition counts — the strongest signal on MovieLens (docs/DESIGN.md).

'mixed': score(v) = 0.5 * L1(transition counts)(v) + 0.5 * L1(random-walk visits)(v) over the union of both
candidate sets, top-T, renormalised. Items with no transitions fall back to their random-walk neighbourhood (and
vice versa).

Vectorised numpy/scipy.sparse over the whole catalogue (one sort of (row, -score, item) keys), in memory.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from modules.cooccurrence import transition_counts
from pipeline.configs import NEIGHBORHOOD_SOURCES, SAMPLING
from pipeline.sampling import random_walks as rw

SOURCES = NEIGHBORHOOD_SOURCES


def top_t_rows(m: sp.spmatrix, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the top-t columns by value (ties: lower column id) -> (nbr [N, t] -1 padded, values [N, t])."""
    m = sp.csr_matrix(m)
    m.eliminate_zeros()
    n = m.shape[0]
    rows = np.repeat(np.arange(n), np.diff(m.indptr))
    cols, vals = m.indices.astype(np.int64), m.data
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.searchsorted(rows, np.arange(n))
    rank = np.arange(len(rows)) - first[rows]
    keep = rank < t
    nbr = np.full((n, t), -1, np.int64)
    out = np.zeros((n, t), np.float64)
    nbr[rows[keep], rank[keep]] = cols[keep]
    out[rows[keep], rank[keep]] = vals[keep]
    return nbr, out


def _dense_rows_to_csr(nbr: np.ndarray, w: np.ndarray, n: int) -> sp.csr_matrix:
    r, c = np.nonzero(nbr >= 0)
    return sp.csr_matrix((w[r, c].astype(np.float64), (r, nbr[r, c])), shape=(n, n))


def _l1_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    s = np.asarray(m.sum(axis=1)).ravel()
    return (sp.diags(np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)) @ m).tocsr()


def transition_neighborhoods(
    context_index, node_id, position, num_items: int, top_t: int = SAMPLING.top_t, window: int = SAMPLING.pair_window
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nbr [N, T] -1 padded, weights [N, T] float32 L1-normalised, counts [N, T] int64) by transition count."""
    nbr, cnt = top_t_rows(transition_counts(context_index, node_id, position, num_items, window), top_t)
    cnt = cnt.astype(np.int64)
    return nbr, rw.l1_weights(cnt), cnt


def mixed_neighborhoods(
    context_index,
    node_id,
    position,
    num_items: int,
    rw_nbr: np.ndarray,
    rw_w: np.ndarray,
    top_t: int = SAMPLING.top_t,
    window: int = SAMPLING.pair_window,
    transition_share: float = 0.5,
):
    """Top-T of transition_share * L1(transition counts) + (1 - share) * L1(random-walk weights);
    (nbr, weights float32 L1-normalised, scores scaled to ints for the stats' count columns)."""
    tm = _l1_rows(transition_counts(context_index, node_id, position, num_items, window))
    wm = _l1_rows(_dense_rows_to_csr(np.asarray(rw_nbr), np.asarray(rw_w), num_items))
    nbr, score = top_t_rows(transition_share * tm + (1.0 - transition_share) * wm, top_t)
    return nbr, rw.l1_weights(score), np.ceil(score * 1e6).astype(np.int64)


def neighborhoods_from_graph(
    graph, source: str, params: rw.WalkParams, window: int = SAMPLING.pair_window, shard_size: int = SAMPLING.shard_size
):
    """(nbr, weights, counts) of a graph_io.Graph's train split for neighbourhood `source` (SOURCES)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    m = graph.split == "train"
    ctx, node, pos = graph.context_index[m], graph.node_id[m], graph.position[m]
    n = graph.num_items
    if source == "transitions":
        return transition_neighborhoods(ctx, node, pos, n, params.top_t, window)
    adj = rw.build_adjacency(ctx, node, n, graph.num_contexts)
    rw_nbr, rw_w, rw_cnt = rw.sample_neighborhoods(adj, params, shard_size)
    if source == "random_walk":
        return rw_nbr, rw_w, rw_cnt
    return mixed_neighborhoods(ctx, node, pos, n, rw_nbr, rw_w, params.top_t, window)
