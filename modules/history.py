"""History queries under protocol version 2 (docs/DESIGN.md) and the history baselines: a context's items, in
order, score every item of the catalogue.

Queries (`build_history_queries`). The contexts are those `evaluation.build_queries` picks for the split (the
same `max_contexts` sample for the same seed). Validation: history = the context's train items in position order,
target = its validation item; test: history = the train items and then the validation item, target = its test
item. Every item is scored and the history's items are masked; the target's rank is evaluation's

    1 + #{unmasked j : s_j > s_t} + #{unmasked j : s_j == s_t and j < t}

(computed by `evaluation.ranks` on each block of scores, so the tie rule is the same code). Each context's list
is its top k with the history excluded, ties by node id. Metrics (`history_metrics`): evaluation's rank metrics
with their SEs, plus coverage@10 (share of items with >= 1 train interaction in some context's list) and
popular_share@10 (share of list slots taken by the POPULAR_ITEMS most-interacted items, sample SE over contexts).

A history scorer maps histories (a list of int64 node id arrays, oldest first) to [B, N] float32 scores. A model
of a fixed length takes the `max_len` most recent items (`recent`; the tower pads them itself; the `max_len`
of `history_ranks_and_lists`: the scorer sees the truncated history, the mask stays the whole history); the
baselines take the whole history.

Baselines, from the train split only (X: the binary context x item train matrix):
- popularity: train degree;
- transitions_last_item: row h_last of the forward counts T[i, j] = how often j occurs within 3 positions after i
  in a context's train history (cooccurrence.positive_pairs without the symmetric half);
- item_to_item_last: any item-to-item `evaluation.Scorer` applied to the history's last item;
- itemknn_history: s_j = sum_d decay^d cos(h_{L-1-d}, j), cos = evaluation.cooccurrence_matrix (diagonal zero),
  d = the item's distance from the end of the history;
- rwr_history: personalised PageRank restarting to the history's item set (Pixie): r = a e + (1 - a) r P with
  e uniform over the distinct history items, P the item -> context -> item step, a = 0.5; exactly
  r = a e (I - (1 - a) P)^-1 up to RWR_DENSE_MAX_ITEMS items, sparse power iteration beyond;
- ease: EASE (Steck 2019): P = (X^T X + lambda I)^-1, B = I - P diag(1/diag(P)) (diag(B) = 0), s = x_h B with
  x_h the history's indicator vector; a dense items x items inverse, so skipped beyond EASE_MAX_ITEMS;
- mean_embedding: s_j = mean_{i in h} e_i . e_j for given item embeddings (no training).
itemknn_history's decay and ease's lambda are chosen by validation HR@10 (`choose_on_validation`).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Protocol

import numpy as np
import scipy.linalg as sl
import scipy.sparse as sp

from modules import cooccurrence
from modules import evaluation as ev
from schema.graph import Graph

K = ev.K
_BLOCK_FLOATS = 1 << 26  # 256 MB of float32 scores per block, as evaluation.ranks
ITEMKNN_DECAYS = (1.0, 0.9, 0.7, 0.5)  # the recency weights itemknn_history chooses among on validation
EASE_LAMBDAS = (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0)  # for a mean train degree of EASE_REFERENCE_DEGREE
EASE_REFERENCE_DEGREE = 100.0  # lambda competes with the Gram diagonal (the degrees): the grid scales with them
EASE_MAX_ITEMS = 10_000  # an items x items dense inverse beyond this is too slow and too large
KNN_DENSE_MAX_ITEMS = 10_000  # itemknn_history holds the dense cosine matrix up to here, per-block products beyond
RWR_MAX_ITER = 200  # 0.5^200: far past any tolerance; reaching it means a bug, not a slow graph


class HistoryScorer(Protocol):
    """Anything that scores every item for a batch of histories: list of [L_b] node ids -> [B, N] float32."""

    def scores(self, histories: list[np.ndarray]) -> np.ndarray: ...


# ------------------------------------------------------------------------------------------------ queries


@dataclasses.dataclass
class HistoryQueries:
    """One row per evaluated context: its history (CSR, node ids oldest first), its held-out target; the mask of a
    context is its history's items."""

    split: str
    context: np.ndarray  # [M] context_index
    target: np.ndarray  # [M] node id of the held-out item
    indptr: np.ndarray  # [M + 1]
    indices: np.ndarray  # history node ids, row by row, in position order
    num_items: int
    total_contexts: int = -1  # contexts with this split before sampling

    def __len__(self) -> int:
        return len(self.context)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def histories(self, lo: int = 0, hi: int | None = None, max_len: int | None = None) -> list[np.ndarray]:
        """The histories of rows lo:hi (views), each cut to its `max_len` most recent items when given."""
        hi = len(self) if hi is None else hi
        out = [self.indices[self.indptr[r] : self.indptr[r + 1]] for r in range(lo, hi)]
        return out if max_len is None else recent(out, max_len)

    def take(self, rows: np.ndarray) -> "HistoryQueries":
        """The queries of `rows` (any order), their histories re-packed as a CSR."""
        rows = np.asarray(rows, np.int64)
        indptr, indices = ev.take_csr_rows(self.indptr, self.indices, rows)
        return dataclasses.replace(
            self, context=self.context[rows], target=self.target[rows], indptr=indptr, indices=indices
        )


def build_history_queries(
    graph: Graph, split: str = "test", max_contexts: int | None = None, seed: int = 0
) -> HistoryQueries:
    """The history queries of `split` ('validation' or 'test'; see the module docstring). The contexts, targets
    and sample are build_queries' (its checks included); the histories are the masked items in position order."""
    q = ev.build_queries(graph, split, mask_validation=True, max_contexts=max_contexts, seed=seed)
    in_history = graph.split == "train"
    if split == "test":
        in_history = in_history | (graph.split == "validation")
    rows = np.flatnonzero(in_history)
    row_of = np.full(graph.num_contexts, -1, np.int64)
    row_of[q.context] = np.arange(len(q))
    r = row_of[graph.context_index[rows]]
    rows, r = rows[r >= 0], r[r >= 0]
    order = np.lexsort((graph.position[rows], r))
    indptr = np.zeros(len(q) + 1, np.int64)
    np.cumsum(np.bincount(r, minlength=len(q)), out=indptr[1:])
    hist = np.asarray(graph.node_id[rows][order], np.int64)
    return HistoryQueries(split, q.context, q.target, indptr, hist, graph.num_items, q.total_contexts)


def recent(histories: list[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Each history cut to its `max_len` most recent (last) items, still oldest first."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    return [np.asarray(h)[-max_len:] for h in histories]


class _Block:
    """A block of precomputed scores as an evaluation.Scorer whose "query" i is row i (no copy for the block)."""

    def __init__(self, s: np.ndarray):
        self.s = s

    def scores(self, rows):
        rows = np.asarray(rows)
        return self.s if np.array_equal(rows, np.arange(len(self.s))) else self.s[rows]


def _block_queries(queries: HistoryQueries, lo: int, hi: int) -> ev.Queries:
    """Rows lo:hi as evaluation.Queries over a score block: query = the row, mask = the distinct history items."""
    N, b = queries.num_items, hi - lo
    a, z = queries.indptr[lo], queries.indptr[hi]
    rows = np.repeat(np.arange(b, dtype=np.int64), np.diff(queries.indptr[lo : hi + 1]))
    keys = np.unique(rows * N + queries.indices[a:z])  # a repeated item is masked once
    indptr = np.zeros(b + 1, np.int64)
    np.cumsum(np.bincount(keys // N, minlength=b), out=indptr[1:])
    return ev.Queries(queries.split, queries.context[lo:hi], np.arange(b), queries.target[lo:hi], indptr, keys % N, N)


def _top_k_unmasked(row: np.ndarray, masked: np.ndarray, k: int) -> np.ndarray:
    """The k best items of a score row outside `masked`, best first, equal scores by lower node id; `row` is
    overwritten (-inf at the masked items) and must leave at least k unmasked items."""
    if k <= 0:
        return np.zeros(0, np.int64)
    row[masked] = -np.inf
    kth = np.partition(row, len(row) - k)[len(row) - k]  # the k-th largest score
    idx = np.flatnonzero(row >= kth)
    # only when unmasked items score -inf themselves can a masked one tie with them: unmasked go first
    late = np.isin(idx, masked) if kth == -np.inf else np.zeros(len(idx), bool)
    return idx[np.lexsort((idx, late, -row[idx]))[:k]]


def _block_lists(s: np.ndarray, block: ev.Queries, k: int) -> np.ndarray:
    """[b, k] the lists of a score block, each without its masked items; -1 where fewer than k items remain."""
    out = np.full((len(s), k), -1, np.int64)
    for r in range(len(s)):
        masked = block.seen_indices[block.seen_indptr[r] : block.seen_indptr[r + 1]]
        n = min(k, s.shape[1] - len(masked))
        out[r, :n] = _top_k_unmasked(np.array(s[r]), masked, n)  # a row copy: the scorer's array stays intact
    return out


def history_ranks_and_lists(
    scorer: HistoryScorer,
    queries: HistoryQueries,
    k: int = K,
    batch_size: int | None = None,
    progress: ev.Progress | None = None,
    max_len: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """([M] 1-based ranks of the targets among the items outside each history, ties by node id; [M, min(k, N)]
    each context's top k outside its history, best first, -1 where fewer items remain). Scored in blocks of
    ~256 MB of float32. `max_len`: the scorer sees only the most recent `max_len` items; the mask is unchanged."""
    N, M = queries.num_items, len(queries)
    B = batch_size or int(np.clip(_BLOCK_FLOATS // max(N, 1), 1, 4096))
    kk = min(k, N)
    out_ranks = np.empty(M, np.int64)
    lists = np.full((M, kk), -1, np.int64)
    for lo in range(0, M, B):
        hi = min(lo + B, M)
        s = np.asarray(scorer.scores(queries.histories(lo, hi, max_len)), dtype=np.float32)
        if s.shape != (hi - lo, N):
            raise ValueError(f"scorer returned shape {s.shape}, expected {(hi - lo, N)}")
        block = _block_queries(queries, lo, hi)
        out_ranks[lo:hi] = ev.ranks(_Block(s), block, batch_size=hi - lo)  # raises on NaN scores
        lists[lo:hi] = _block_lists(s, block, kk)
        if progress is not None:
            progress.update(hi - lo)
    return out_ranks, lists


def history_list_metrics(
    lists: np.ndarray, train_degree: np.ndarray, popular: int = ev.POPULAR_ITEMS, k: int = K
) -> dict:
    """coverage@k and popular_share@k (+ `_se`, sample SE over contexts) of history lists [M, k] (-1 = empty slot:
    left out of both; a context without a filled slot is left out of the share)."""
    lists, deg = np.asarray(lists, np.int64), np.asarray(train_degree)
    if len(lists) == 0:
        raise ValueError("no lists for the list metrics")
    filled = lists >= 0
    engaged = deg >= 1
    shown = np.zeros(len(deg), bool)
    shown[lists[filled]] = True
    is_popular = np.zeros(len(deg), bool)
    is_popular[np.argsort(-deg, kind="stable")[:popular]] = True  # ties by node id, as evaluation.list_metrics
    n_filled = filled.sum(1)
    share = (is_popular[np.where(filled, lists, 0)] & filled).sum(1)[n_filled > 0] / n_filled[n_filled > 0]
    return {
        f"coverage@{k}": float((shown & engaged).sum() / max(engaged.sum(), 1)),
        f"popular_share@{k}": float(share.mean()) if len(share) else 0.0,
        f"popular_share@{k}_se": ev.sample_se(share),
    }


def history_metrics(ranks: np.ndarray, lists: np.ndarray, train_degree: np.ndarray, k: int = K) -> dict:
    """evaluation.metrics_from_ranks (HR@k, MRR, NDCG@k, Recall@k, HR@100, HR@500, each with `_se`, num_contexts)
    and history_list_metrics of the lists."""
    return {**ev.metrics_from_ranks(ranks, k), **history_list_metrics(lists, train_degree, k=k)}


def evaluate_history(scorer: HistoryScorer, graph: Graph, split: str = "test", **kw) -> dict:
    """history_metrics of `scorer` on `split` of `graph` (keywords: build_history_queries' max_contexts, seed)."""
    q = build_history_queries(graph, split, **kw)
    return history_metrics(*history_ranks_and_lists(scorer, q), graph.train_degree)


def choose_on_validation(
    make_scorer: Callable[[Any], HistoryScorer],
    grid,
    graph: Graph,
    metric: str = f"hr@{K}",
    max_contexts: int | None = None,
    seed: int = 0,
) -> tuple[Any, dict]:
    """(best parameter, {parameter: validation value of `metric`}) of make_scorer(p) for p in `grid`, all on the
    same validation contexts; ties go to the earlier parameter of the grid."""
    q = build_history_queries(graph, "validation", max_contexts=max_contexts, seed=seed)
    table = {}
    for p in grid:
        r, _ = history_ranks_and_lists(make_scorer(p), q, k=1)  # the lists are not needed: k=1 is cheapest
        table[p] = float(ev.metric_values(r, metric).mean())
    best = max(table, key=lambda p: (table[p], -list(table).index(p)))
    return best, table


# ---------------------------------------------------------------------------------------------- baselines


def _flatten(histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, item, distance from the end, [B] lengths) of every history entry; ValueError on an empty history."""
    lens = np.array([len(h) for h in histories], np.int64)
    if (lens == 0).any():
        raise ValueError("an empty history: every evaluated context has at least one train item")
    items = np.concatenate([np.asarray(h, np.int64) for h in histories]) if len(lens) else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(lens)), lens)
    ends = np.cumsum(lens) - 1  # the flat index of each history's last item
    return rows, items, ends[rows] - np.arange(len(items)), lens


def _history_matrix(histories: list[np.ndarray], num_items: int, weights: str) -> sp.csr_matrix:
    """[B, N] sparse: 'indicator' (1 per distinct item), 'uniform' (1/#distinct items: a restart distribution) or
    'mean' (1/L per entry, repeats add up)."""
    rows, items, _, lens = _flatten(histories)
    w = np.ones(len(items), np.float64) if weights != "mean" else 1.0 / lens[rows]
    m = sp.csr_matrix((w, (rows, items)), shape=(len(lens), num_items))
    m.sum_duplicates()
    if weights == "indicator" or weights == "uniform":
        m.data[:] = 1.0
    if weights == "uniform":
        m = sp.diags(1.0 / np.diff(m.indptr)) @ m
    return m.tocsr()


class PopularityHistoryScorer:
    """Train degree: the same ranking for every history."""

    def __init__(self, graph: Graph):
        self.degree = np.bincount(graph.edges("train")[1], minlength=graph.num_items).astype(np.float32)

    def scores(self, histories):
        return np.broadcast_to(self.degree, (len(histories), len(self.degree)))


def forward_transition_matrix(graph: Graph, window: int = ev.BASELINE_WINDOW) -> sp.csr_matrix:
    """T[i, j] = how often j occurs within `window` positions after i in a context's train history, i != j
    (directed: cooccurrence.positive_pairs without its symmetric half)."""
    m = graph.split == "train"
    q, i, c, _ = cooccurrence.positive_pairs(
        graph.context_index[m], graph.node_id[m], graph.position[m], graph.num_items, window
    )
    return sp.csr_matrix((c.astype(np.float32), (q, i)), shape=(graph.num_items, graph.num_items))


class LastItemScorer:
    """An item-to-item evaluation.Scorer applied to each history's last item."""

    def __init__(self, item_scorer: ev.Scorer):
        self.item_scorer = item_scorer

    def scores(self, histories):
        _, items, dist, _ = _flatten(histories)
        return np.asarray(self.item_scorer.scores(items[dist == 0]), np.float32)


def transitions_last_item(graph: Graph, window: int = ev.BASELINE_WINDOW) -> LastItemScorer:
    """The forward transition counts from the history's last item."""
    return LastItemScorer(ev.ItemItemScorer(forward_transition_matrix(graph, window)))


class ItemKNNHistoryScorer:
    """s = sum_d decay^d cos(h_{L-1-d}, .): the cosine rows of the binary context x item train matrix
    (evaluation.cooccurrence_matrix, diagonal zero) summed over the history, the last item weighted 1. Up to
    `dense_max_items` the cosine is held dense (one BLAS-friendly product per block); beyond, each block computes
    W diag(inv) X^T X diag(inv) (inv = 1/sqrt|C_i|) and removes the diagonal, as evaluation.CooccurrenceScorer."""

    def __init__(self, graph: Graph, decay: float = 1.0, dense_max_items: int = KNN_DENSE_MAX_ITEMS):
        self.decay, self.num_items = float(decay), graph.num_items
        self.cos = None
        if graph.num_items <= dense_max_items:
            self.cos = ev.cooccurrence_matrix(graph).toarray()
            return
        x = ev.train_matrix(graph)
        self.x, self.xt = x.tocsr(), x.T.tocsr()
        deg = np.asarray(x.sum(axis=0)).ravel()
        self.inv = (1.0 / np.sqrt(np.maximum(deg, 1.0))).astype(np.float32)
        self.self_cos = (deg > 0).astype(np.float32)  # cos(i, i), the diagonal cooccurrence_matrix zeroes

    def with_decay(self, decay: float) -> "ItemKNNHistoryScorer":
        """The same scorer with another decay, sharing the matrices (for the validation grid)."""
        out = copy.copy(self)
        out.decay = float(decay)
        return out

    def scores(self, histories):
        rows, items, dist, lens = _flatten(histories)
        w = sp.csr_matrix(
            (self.decay ** dist.astype(np.float64), (rows, items)), shape=(len(lens), self.num_items)
        ).astype(np.float32)
        if self.cos is not None:
            return np.asarray(w @ self.cos, np.float32)
        s = ((w @ sp.diags(self.inv)) @ self.xt @ self.x).toarray() * self.inv
        return (s - (w @ sp.diags(self.self_cos)).toarray()).astype(np.float32)


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix by Cholesky (potrf, then potri), in float32 (an order
    of magnitude faster than float64 for a few thousand items), in float64 if float32 finds it not definite."""
    lapack = sl.lapack
    for dtype, potrf, potri in ((np.float32, lapack.spotrf, lapack.spotri), (np.float64, lapack.dpotrf, lapack.dpotri)):
        c, info = potrf(np.asarray(a, dtype), lower=False)
        if info == 0:
            inv, info = potri(c, lower=False)
        if info == 0:
            upper = np.triu(inv)  # potri fills the upper triangle only
            return upper + np.triu(upper, 1).T
    raise np.linalg.LinAlgError(f"matrix is not positive definite (potrf/potri info {info})")


class RWRHistoryScorer:
    """Random walk with restart to the history (Pixie): r = a e + (1 - a) r P, e uniform over the history's
    distinct items, P = diag(1/|N(i)|) X^T diag(1/|c|) X the uniform item -> context -> item step on the train
    graph (evaluation.rwr_matrix's), a = `restart`. Up to `dense_max_items` items the exact solution
    r = a e (I - (1 - a) P)^-1 from one dense inverse; beyond, sparse power iteration over a block of restart
    vectors ([N, b] columns, 64 MB of float32, evaluation.RWRScorer's step) until no column moves by `tol` in L1.
    The history's own items keep their score (they are masked)."""

    def __init__(
        self,
        graph: Graph,
        restart: float = ev.RWR_RESTART,
        tol: float = ev.RWR_TOL,
        max_iter: int = RWR_MAX_ITER,
        dense_max_items: int = ev.RWR_DENSE_MAX_ITEMS,
    ):
        if not 0.0 < restart < 1.0:
            raise ValueError(f"restart must be in (0, 1), got {restart}")
        x = ev.train_matrix(graph)
        N = self.num_items = graph.num_items
        self.restart, self.tol, self.max_iter, self.dense = restart, tol, max_iter, None
        self.c_inv = (1.0 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)).astype(np.float32)
        self.i_inv = (1.0 / np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0)).astype(np.float32)
        if N <= dense_max_items:
            # P = D_i X^T D_c X is similar to the symmetric S = D_i^1/2 X^T D_c X D_i^1/2, and I - (1 - a) S is
            # positive definite with eigenvalues in [a, 2 - a]: a Cholesky inverse, well conditioned in float32
            h = np.sqrt(self.i_inv.astype(np.float64))
            s = (sp.diags(h) @ x.T @ sp.diags(self.c_inv.astype(np.float64)) @ x @ sp.diags(h)).toarray()
            inv = _spd_inverse(np.eye(N) - (1.0 - restart) * s)
            self.dense = (restart * h[:, None] * inv / h[None, :]).astype(np.float32)
        else:
            self.x, self.xt = x.tocsr(), x.T.tocsr()
        self.iterations: list[int] = []  # per block of the power iteration, for the record

    def _iterate(self, e: np.ndarray) -> np.ndarray:
        """[N, b] PPR columns for restart columns e (already times `restart`)."""
        r, it = ev.ppr_power_iteration(
            self.x, self.xt, self.c_inv, self.i_inv, e, self.restart, self.tol, self.max_iter
        )
        self.iterations.append(it)
        return r

    def scores(self, histories):
        e = _history_matrix(histories, self.num_items, "uniform").astype(np.float32)
        if self.dense is not None:
            return np.asarray(e @ self.dense, np.float32)
        out = np.empty(e.shape, np.float32)
        b = max(1, (1 << 24) // max(self.num_items, 1))  # 64 MB per float32 [N, b] array
        for lo in range(0, e.shape[0], b):
            out[lo : lo + b] = self._iterate(self.restart * e[lo : lo + b].T.toarray()).T
        return out


def ease_gram(graph: Graph) -> np.ndarray:
    """[N, N] float64 X^T X of the binary context x item train matrix (co-occurrence counts, degrees on the
    diagonal)."""
    x = ev.train_matrix(graph).astype(np.float64)
    return (x.T @ x).toarray()


def ease_lambdas(graph: Graph, grid=EASE_LAMBDAS) -> tuple[float, ...]:
    """The lambda grid for `graph`: `grid` times (mean train degree of the engaged items) / EASE_REFERENCE_DEGREE,
    since lambda is added to the Gram diagonal, whose entries are the degrees."""
    deg = np.asarray(graph.train_degree, np.float64)
    mean = deg[deg > 0].mean() if (deg > 0).any() else 1.0
    return tuple(float(g * mean / EASE_REFERENCE_DEGREE) for g in grid)


class EASEScorer:
    """EASE (Steck 2019): P = (X^T X + lambda I)^-1, B = I - P diag(1/diag(P)), i.e. B_ij = -P_ij / P_jj off the
    diagonal and diag(B) = 0; scores = x_h B, x_h the history's indicator vector. `gram`: ease_gram(graph)."""

    def __init__(self, gram: np.ndarray, lam: float):
        if lam <= 0:
            raise ValueError(f"lambda must be > 0, got {lam}")
        g = np.array(gram, np.float64)  # a copy: the Gram matrix is shared by the lambda grid
        g[np.diag_indices_from(g)] += lam
        p = _spd_inverse(g)
        p /= -np.diag(p)[None, :]
        np.fill_diagonal(p, 0.0)
        self.lam, self.b = float(lam), p.astype(np.float32)

    def scores(self, histories):
        x = _history_matrix(histories, self.b.shape[0], "indicator").astype(np.float32)
        return np.asarray(x @ self.b, np.float32)


def ease_skip_reason(graph: Graph, max_items: int | None = None) -> str | None:
    """Why EASE is not run on `graph` (None when it is); `max_items` defaults to EASE_MAX_ITEMS."""
    max_items = EASE_MAX_ITEMS if max_items is None else max_items
    if graph.num_items > max_items:
        return f"EASE needs a dense {graph.num_items} x {graph.num_items} inverse: more than {max_items} items"
    return None


class MeanEmbeddingScorer:
    """s_j = mean_{i in h} q_i . e_j: the mean of the history's item vectors (query_emb [N, d], default emb)
    dotted with every item's embedding emb [N, d]; repeats of an item count once each."""

    def __init__(self, emb: np.ndarray, query_emb: np.ndarray | None = None):
        self.emb = np.asarray(emb, np.float32)
        self.query_emb = self.emb if query_emb is None else np.asarray(query_emb, np.float32)
        if self.query_emb.shape != self.emb.shape:
            raise ValueError(f"query_emb shape {self.query_emb.shape} != emb shape {self.emb.shape}")

    def scores(self, histories):
        w = _history_matrix(histories, len(self.emb), "mean").astype(np.float32)
        return np.asarray(w @ self.query_emb, np.float32) @ self.emb.T


def history_baselines(
    graph: Graph,
    item_scorer: ev.Scorer | None = None,
    embeddings: np.ndarray | None = None,
    choose: bool = True,
    max_contexts: int | None = None,
    seed: int = 0,
) -> tuple[dict[str, HistoryScorer], dict[str, str], dict[str, dict]]:
    """({name: scorer}, {name: why skipped}, {name: {'param', 'value', 'validation'}}) of the history baselines
    (module docstring) on `graph`'s train split. item_to_item_last needs `item_scorer`, mean_embedding
    `embeddings` [N, d]. `choose`: itemknn_history's decay (ITEMKNN_DECAYS) and ease's lambda (ease_lambdas) by
    validation HR@10 over `max_contexts` sampled contexts (all by default); else decay 1 and the middle lambda."""
    out: dict = {"popularity": PopularityHistoryScorer(graph), "transitions_last_item": transitions_last_item(graph)}
    skipped, chosen = {}, {}
    if item_scorer is not None:
        out["item_to_item_last"] = LastItemScorer(item_scorer)
    else:
        skipped["item_to_item_last"] = "no item-to-item scorer given"

    def pick(name, param, make, grid, default):
        if not choose:
            return make(default)
        best, table = choose_on_validation(make, grid, graph, max_contexts=max_contexts, seed=seed)
        chosen[name] = {"param": param, "value": best, "validation": {f"{param}={p:g}": v for p, v in table.items()}}
        return make(best)

    knn = ItemKNNHistoryScorer(graph)
    out["itemknn_history"] = pick("itemknn_history", "decay", knn.with_decay, ITEMKNN_DECAYS, 1.0)
    out["rwr_history"] = RWRHistoryScorer(graph)
    reason = ease_skip_reason(graph)
    if reason is None:
        gram, lambdas = ease_gram(graph), ease_lambdas(graph)
        out["ease"] = pick("ease", "lambda", lambda lam: EASEScorer(gram, lam), lambdas, lambdas[len(lambdas) // 2])
    else:
        skipped["ease"] = reason
    if embeddings is not None:
        out["mean_embedding"] = MeanEmbeddingScorer(embeddings)
    else:
        skipped["mean_embedding"] = "no item embeddings given"
    return out, skipped, chosen
