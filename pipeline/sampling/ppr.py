"""Hard negatives by Personalized PageRank (PinSage §3.3): items ranked [lo, hi) by PPR from the query q.

PPR is estimated by Monte-Carlo walks with restart from q — random_walks' walker with restart probability
alpha and a long cap on the walk length: the expected visit count of item v is
sum_k (1-alpha)^(k-1) P^k[q, v], which is PPR(q, v) up to a factor (for v != q), so ranking by visit count
ranks by PPR. q and q's positives are removed before ranking.

The window. The paper takes ranks 2000–5000 with retrieval judged at hit-rate@500 among 5M candidates: hard
negatives sit a few times beyond the retrieval horizon, close to q but not relevant. We scale the window as a
fraction of the catalogue, default [1 %, 3 %) of N, capped at the paper's ranks [2000, 5000): ML-1M (3.7k
items) gets ranks 37–111, i.e. 4–11x the protocol's K = 10, like the paper's 4–10x its K = 500; catalogues
above ~170k items get the paper's window. Bounds of 1 or more are taken as ranks as they are. Walks only rank the
items they reach, so a query needs num_walks * mean walk length well above hi; queries whose visited set ends
before hi get a shorter list (counted in the stats). At most `max_negatives` ranks are kept, evenly spaced.

Which queries. A query costs num_walks walks (~3,300 visits at the defaults), so all 1M queries of a 1M-item
catalogue would be ~3e9 visits, far beyond the rest of the pipeline's cost. `select_queries` keeps the `max_queries` queries with the most
positive-pair occurrences (training draws pairs in proportion to them, modules/model.py pair_sampling='count'),
so the pools cover as much of the training draws as a budget allows; the others get an empty pool (no hard
negatives, masked in training) and the stats report the coverage. Catalogues below the budget are unaffected.
"""

from __future__ import annotations

import numpy as np

from pipeline.configs import PAIRS
from pipeline.sampling import random_walks as rw

DEFAULT_WINDOW = (PAIRS.negative_lo, PAIRS.negative_hi)
PAPER_WINDOW = (2000, 5000)


def resolve_window(num_items: int, lo: float = DEFAULT_WINDOW[0], hi: float = DEFAULT_WINDOW[1]) -> tuple[int, int]:
    """Window bounds as ranks: a bound below 1 is a fraction of num_items (capped at the paper's ranks),
    a bound of 1 or more is a rank."""
    lo_r = min(int(round(lo * num_items)), PAPER_WINDOW[0]) if lo < 1 else int(lo)
    hi_r = min(int(round(hi * num_items)), PAPER_WINDOW[1]) if hi < 1 else int(hi)
    return lo_r, max(hi_r, lo_r + 1)


def window_ranks(lo: int, hi: int, max_negatives: int) -> np.ndarray:
    """The ranks kept from [lo, hi): all of them, or `max_negatives` evenly spaced ones."""
    if hi - lo <= max_negatives:
        return np.arange(lo, hi)
    return np.unique(lo + (np.arange(max_negatives) * (hi - lo)) // max_negatives)


def ppr_negatives(
    adj: rw.Adjacency,
    queries,
    pos_query,
    pos_item,
    window: tuple[int, int],
    num_walks: int,
    walk_length: int,
    restart_prob: float,
    max_negatives: int,
    rng: np.random.Generator,
    on_step=None,
) -> tuple[np.ndarray, dict]:
    """[B, K] hard negatives per query (-1 padded) and stats counters. pos_query/pos_item: the positive pairs
    to exclude (any order). `on_step(k)`: progress, after walk step k (random_walks.walk_visits)."""
    queries = np.asarray(queries, np.int64)
    n = adj.num_items
    rows, items = rw.walk_visits(adj, queries, num_walks, walk_length, restart_prob, rng, on_step)
    excluded = np.isin(queries[rows] * n + items, np.asarray(pos_query, np.int64) * n + pos_item)
    r, it, _ = rw.count_visits(rows[~excluded], items[~excluded], n)
    keep = window_ranks(*window, max_negatives)
    first = np.searchsorted(r, np.arange(len(queries)))
    rank = np.arange(len(r)) - first[r]
    slot = np.searchsorted(keep, rank)
    sel = np.isin(rank, keep)
    neg = np.full((len(queries), len(keep)), -1, np.int64)
    neg[r[sel], slot[sel]] = it[sel]
    got = (neg >= 0).sum(1)
    return neg, {
        "queries": int(len(queries)),
        "negatives": int(got.sum()),
        "short_windows": int((got < len(keep)).sum()),
        "empty_windows": int((got == 0).sum()),
    }


def select_queries(query, count, max_queries: int) -> tuple[np.ndarray, dict]:
    """The distinct queries, or the `max_queries` of them with the most pair occurrences (ties: lower id), sorted;
    plus stats: how many were kept out of how many, and the share of pair occurrences they cover."""
    query, count = np.asarray(query, np.int64), np.asarray(count, np.int64)
    uq, inv = np.unique(query, return_inverse=True)
    occ = np.bincount(inv, weights=count, minlength=len(uq))
    if max_queries and len(uq) > max_queries:
        keep = np.lexsort((uq, -occ))[:max_queries]
        sel = np.sort(uq[keep])
        covered = float(occ[keep].sum() / max(occ.sum(), 1))
    else:
        sel, covered = uq, 1.0
    return sel, {
        "ppr_queries_selected": int(len(sel)),
        "ppr_queries_total": int(len(uq)),
        "ppr_pair_occurrences_covered": covered,
    }
