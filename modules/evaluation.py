"""Offline evaluation under protocol version 2 of docs/DESIGN.md, and the baselines every report carries.

Protocol. GraphGen already made the split (per context, interactions ordered by timestamp, then a seeded hash of
(context id, item id): last interaction test, second-last validation, the rest train). Item-to-item queries are
one step ahead for both splits: the validation query of a context is its last train item (highest train
position), the test query its validation item. Every one of the N items is scored for the query; the items the
context has seen are masked: its train items and, for the test split, its validation item too (the query itself;
`mask_validation`). The held-out item's rank is

    1 + #{unmasked j : s_j > s_t} + #{unmasked j : s_j == s_t and j < t}

i.e. ties are broken by node id, so that a constant scorer has one deterministic rank and not a lucky one.
Contexts without the split (fewer than 3 interactions) are skipped. Metrics (one held-out item per context, so
Recall@K equals HR@K): HR@10, MRR over the full ranking, NDCG@10, Recall@10, HR@100 and HR@500 (the paper's cut-off),
each with its standard error (`<metric>_se`: binomial for the hit rates, the sample SE over contexts for MRR and
NDCG). Two models are compared on the same contexts by the paired per-context difference of a metric
(`paired_verdict`): ahead / within noise / behind at z standard errors of its mean. `by_popularity` splits HR@10
by the query item's popularity (head / torso / tail: thirds of the train interactions).

Ranks are computed without sorting: each batch of B queries is scored as a dense [B, N] float32 block and the
items beating the target are counted by comparison against the target's score; the masked items' share of that
count is gathered from a CSR of seen items and subtracted. O(B * N) per batch, so the batch size is chosen to
keep the block ~256 MB whatever N is.

Baselines are built from the train split only, with scipy.sparse (no loops over interactions):
popularity (train degree), item co-occurrence kNN (cosine of the binary context x item matrix), sequential
transition counts (symmetric, window 3: the strongest signal on MovieLens, docs/DESIGN.md), random walk with
restart (PPR from the query, restart 0.5: an exact dense solve for small catalogues, sparse power iteration
beyond) and `EmbeddingScorer` for any model's item embeddings.

List metrics: what a person is served. Every item with >= LIST_MIN_DEGREE train interactions is a query; its list
is the scorer's top 10 with only the query itself excluded (no context masking: the related-items list the server
answers), ties broken by node id as in `ranks`. coverage@10: share of the items with >= 1 train interaction that
appear in some list; popular_share@10: share of all slots filled by the POPULAR_ITEMS most-interacted items;
feature_agreement@10: share of slots whose item shares a value of a categorical feature with the query (queries
without a value are left out). The two shares carry the sample SE over the queries (a query's slots are not
independent draws). Lists are computed in blocks like `ranks` (bounded memory).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from modules import cooccurrence
from schema.graph import Graph

K = 10
BASELINE_WINDOW = 3  # the transition-count baseline's window (docs/DESIGN.md, fixed protocol)
MID_K = 100  # a hit-rate cut-off between the served list and the paper's
WIDE_K = 500  # the paper's hit-rate cut-off
_BLOCK_FLOATS = 1 << 26  # 256 MB of float32 scores per block: fewer passes over an [N, d] embedding table
LIST_MIN_DEGREE = 5  # list metrics: the query items are those with at least this many train interactions
POPULAR_ITEMS = 50  # popular_share@10: slots taken by this many most-interacted items
RWR_RESTART = 0.5
RWR_DENSE_MAX_ITEMS = 5000  # exact dense solve up to here (O(N^3), ~seconds); sparse power iteration beyond
POPULARITY_BUCKETS = ("head", "torso", "tail")  # thirds of the train interactions, popularity_buckets
RWR_TOL = 1e-6  # power iteration stops when a step changes no query's PPR vector by more than this (L1)


class Progress(Protocol):
    """Anything counting ranked queries (the pipeline passes its progress meter, pipeline/progress.py)."""

    def update(self, n: int) -> None: ...


class Scorer(Protocol):
    """Anything that scores every item for a batch of query items: [B] node ids -> [B, N] float32."""

    def scores(self, query_nodes: np.ndarray) -> np.ndarray: ...


# ------------------------------------------------------------------------------------------------ queries


def take_csr_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows `rows` (any order) of a CSR (indptr, indices), re-packed as a CSR of their own."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    out = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=out[1:])
    at = np.repeat(starts - out[:-1], lengths) + np.arange(out[-1])
    return out, indices[at]


@dataclasses.dataclass
class Queries:
    """One row per evaluated context: its query, its held-out target, and the items masked for it (CSR)."""

    split: str
    context: np.ndarray  # [M] context_index
    query: np.ndarray  # [M] node id of the query item (validation: last train item; test: validation item)
    target: np.ndarray  # [M] node id of the held-out item
    seen_indptr: np.ndarray  # [M + 1]
    seen_indices: np.ndarray  # masked node ids, row by row
    num_items: int
    total_contexts: int = -1  # contexts with this split before sampling (== len when all are evaluated)

    def __len__(self) -> int:
        return len(self.context)

    def take(self, rows: np.ndarray) -> "Queries":
        """The queries of `rows` (context rows of this set, any order), their masks re-packed as a CSR."""
        rows = np.asarray(rows, np.int64)
        indptr, indices = take_csr_rows(self.seen_indptr, self.seen_indices, rows)
        return dataclasses.replace(
            self,
            context=self.context[rows],
            query=self.query[rows],
            target=self.target[rows],
            seen_indptr=indptr,
            seen_indices=indices,
        )


def _item_per_context(graph: Graph, rows: np.ndarray) -> np.ndarray:
    """[C] the node id of each context's last row among `rows` (by position), -1 for contexts without one."""
    ctx, pos = graph.context_index, graph.position
    rows = rows[np.lexsort((pos[rows], ctx[rows]))]
    last = np.r_[ctx[rows][1:] != ctx[rows][:-1], True]
    out = np.full(graph.num_contexts, -1, np.int64)
    out[ctx[rows][last]] = graph.node_id[rows][last]
    return out


def _held_out_rows(graph: Graph, split: str) -> np.ndarray:
    """The rows of `split`, in context order; one per context, or ValueError."""
    held = np.flatnonzero(graph.split == split)
    held = held[np.argsort(graph.context_index[held], kind="stable")]
    if len(np.unique(graph.context_index[held])) != len(held):
        raise ValueError(f"a context has more than one {split} interaction")
    return held


def build_queries(
    graph: Graph, split: str = "test", mask_validation: bool = True, max_contexts: int | None = None, seed: int = 0
) -> Queries:
    """The protocol's queries for `split` ('validation' or 'test'); see the module docstring. Validation: query =
    the context's last train item; test: query = its validation item (both one step ahead of the target).

    `mask_validation=False` leaves a test context's validation item (its query) unmasked. `max_contexts`: rank
    only a uniform random sample of that many of the split's contexts (fixed by `seed`, the same for every
    scorer), for catalogues where ranking all N items for every context is too slow; `total_contexts` and the
    metrics' `num_contexts` say how many were evaluated out of how many."""
    if split not in ("validation", "test"):
        raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
    ctx, node, spl = graph.context_index, graph.node_id, graph.split
    is_train = spl == "train"
    last_train = _item_per_context(graph, np.flatnonzero(is_train))
    held = _held_out_rows(graph, split)
    if (last_train[ctx[held]] < 0).any():  # GraphGen never makes one (>= 3 interactions to split)
        raise ValueError(f"a context has a {split} interaction but no train interaction")
    if split == "test":
        val = _held_out_rows(graph, "validation")
        query_of = np.full(graph.num_contexts, -1, np.int64)
        query_of[ctx[val]] = node[val]
        if (query_of[ctx[held]] < 0).any():
            raise ValueError("a context has a test interaction but no validation interaction")
    else:
        query_of = last_train
    total = len(held)
    if max_contexts and total > max_contexts:
        held = held[np.sort(np.random.default_rng(seed).choice(total, max_contexts, replace=False))]
    contexts, target = ctx[held], node[held]
    row_of = np.full(graph.num_contexts, -1, np.int64)
    row_of[contexts] = np.arange(len(contexts))

    masked = is_train | ((spl == "validation") if (split == "test" and mask_validation) else False)
    m_row, m_node = row_of[ctx[masked]], node[masked]
    keep = m_row >= 0
    m_row, m_node = m_row[keep], m_node[keep]
    order = np.argsort(m_row, kind="stable")
    indptr = np.zeros(len(contexts) + 1, np.int64)
    np.cumsum(np.bincount(m_row, minlength=len(contexts)), out=indptr[1:])
    return Queries(
        split, contexts, query_of[contexts], target, indptr, m_node[order].astype(np.int64), graph.num_items, total
    )


# -------------------------------------------------------------------------------------------------- ranks


def _better(s, s_t, items, t):
    """Items that rank above the target: a strictly higher score, or an equal one and a lower node id."""
    return (s > s_t) | ((s == s_t) & (items < t))


def _block_ranks(s: np.ndarray, queries: Queries, lo: int, hi: int) -> np.ndarray:
    """1-based ranks of rows lo:hi of `queries` from their scores s [hi - lo, N]."""
    t = queries.target[lo:hi]
    rows = np.arange(hi - lo)
    s_t = s[rows, t]
    # items above the target (_better), row by row: one compare + count over a row of N instead of five
    # [B, N] temporaries; the tie-break (equal score, lower node id) only looks left of the target
    count = np.empty(hi - lo, np.int64)
    for r in rows:
        row = s[r]
        if np.isnan(row).any():
            raise ValueError("scorer returned NaN scores")
        count[r] = np.count_nonzero(row > s_t[r]) + np.count_nonzero(row[: t[r]] == s_t[r])
    # subtract the masked items that were counted
    a, b = queries.seen_indptr[lo], queries.seen_indptr[hi]
    m_row = np.repeat(rows, np.diff(queries.seen_indptr[lo : hi + 1]))
    m_item = queries.seen_indices[a:b]
    hit = _better(s[m_row, m_item], s_t[m_row], m_item, t[m_row])
    count -= np.bincount(m_row[hit], minlength=hi - lo)
    return 1 + count


def ranks(
    scorer: Scorer, queries: Queries, batch_size: int | None = None, progress: Progress | None = None
) -> np.ndarray:
    """[M] 1-based rank of each target among the unmasked items, ties broken by node id."""
    N, M = queries.num_items, len(queries)
    B = batch_size or int(np.clip(_BLOCK_FLOATS // max(N, 1), 1, 4096))
    out = np.empty(M, np.int64)
    for lo in range(0, M, B):
        hi = min(lo + B, M)
        s = np.asarray(scorer.scores(queries.query[lo:hi]), dtype=np.float32)
        if s.shape != (hi - lo, N):
            raise ValueError(f"scorer returned shape {s.shape}, expected {(hi - lo, N)}")
        out[lo:hi] = _block_ranks(s, queries, lo, hi)
        if progress is not None:
            progress.update(hi - lo)
    return out


class _RowsByItem:
    """The rows of a query set grouped by their query item's row in a sorted union of items: `between(lo, hi)`
    gives the rows whose query is one of union[lo:hi] (searchsorted over a sorted copy, no per-block scan)."""

    def __init__(self, union: np.ndarray, items: np.ndarray):
        self.at = np.searchsorted(union, items)
        self.order = np.argsort(self.at, kind="stable")
        self.sorted_at = self.at[self.order]

    def between(self, lo: int, hi: int) -> np.ndarray:
        return self.order[np.searchsorted(self.sorted_at, lo) : np.searchsorted(self.sorted_at, hi)]


def ranks_and_lists(
    scorer: Scorer,
    queries: list[Queries],
    list_nodes: np.ndarray,
    k: int = K,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """([`ranks(scorer, q)` for q in queries], `top_k_lists(scorer, list_nodes, N, k)`) with every distinct item of
    the union of all sets' query items and the list items scored once. Many contexts share a query item, the test
    and validation queries of one context are different items that other contexts query too, and most query items
    are also list queries (items with >= 5 train interactions), so scoring the union is the cheapest pass over a
    large catalogue. Each block of the union's items is scored, then each set's contexts whose query is in the
    block are ranked and the block's list items listed, in chunks of at most a block's rows; the block is half of
    `ranks`' so that the gathered copy keeps the peak at ~256 MB. Same ranks and lists as the two functions
    wherever the scorer's rows do not depend on which other queries share their block (all but RWRScorer, whose
    iteration stops for a whole block within its tolerance)."""
    N, nodes = queries[0].num_items, np.asarray(list_nodes, np.int64)
    if any(q.num_items != N for q in queries):
        raise ValueError("ranks_and_lists needs one catalogue (num_items) for every query set")
    kk = min(k, N - 1)
    union = np.unique(np.concatenate([q.query for q in queries] + [nodes]).astype(np.int64))
    B = batch_size or int(np.clip(_BLOCK_FLOATS // 2 // max(N, 1), 1, 4096))
    by_set = [_RowsByItem(union, q.query) for q in queries]
    by_node = _RowsByItem(union, nodes)
    out = [np.empty(len(q), np.int64) for q in queries]
    lists = np.empty((len(nodes), kk), np.int64)
    for lo in range(0, len(union), B):
        hi = min(lo + B, len(union))
        s = np.asarray(scorer.scores(union[lo:hi]), dtype=np.float32)
        if s.shape != (hi - lo, N):
            raise ValueError(f"scorer returned shape {s.shape}, expected {(hi - lo, N)}")
        done = 0
        for o, q, grouped in zip(out, queries, by_set):
            rows = grouped.between(lo, hi)
            for c0 in range(0, len(rows), B):
                chunk = rows[c0 : c0 + B]
                o[chunk] = _block_ranks(s[grouped.at[chunk] - lo], q.take(chunk), 0, len(chunk))
            done += len(rows)
        listed = by_node.between(lo, hi)
        if len(listed):
            lists[listed] = _lists_of_rows(s[by_node.at[listed] - lo], nodes[listed], kk)  # a gathered copy
        if progress is not None:
            progress.update(done + len(listed))
    return out, lists


def metric_values(r: np.ndarray, metric: str) -> np.ndarray:
    """[n] each context's value of a rank metric from 1-based ranks: the hit indicator for hr@k / recall@k, 1/rank
    for mrr, 1/log2(rank + 1) within the cut-off for ndcg@k (the metric is their mean)."""
    r = np.asarray(r, np.float64)
    name, _, cut = metric.partition("@")
    if name == "mrr" and not cut:
        return 1.0 / r
    if name in ("hr", "recall", "ndcg") and cut.isdigit():
        hit = r <= int(cut)
        return np.where(hit, 1.0 / np.log2(r + 1.0), 0.0) if name == "ndcg" else hit.astype(np.float64)
    raise ValueError(f"unknown rank metric {metric!r}: hr@k, recall@k, ndcg@k or mrr")


def sample_se(values: np.ndarray) -> float:
    """std(x, ddof=1) / sqrt(n): the standard error of a mean; 0 when n < 2 or every value is the same."""
    x = np.asarray(values, np.float64)
    if len(x) < 2 or np.all(x == x[0]):
        return 0.0
    return float(x.std(ddof=1) / np.sqrt(len(x)))


def standard_error(values: np.ndarray, metric: str) -> float:
    """The SE of the mean of per-context `values` (metric_values) of `metric`: binomial sqrt(p (1 - p) / n) for
    a hit rate (hr@k, recall@k), the sample SE for mrr and ndcg@k."""
    x = np.asarray(values, np.float64)
    if len(x) == 0:
        raise ValueError("no values for a standard error")
    if metric.partition("@")[0] in ("hr", "recall"):
        p = float(x.mean())
        return float(np.sqrt(p * (1.0 - p) / len(x)))
    return sample_se(x)


def rank_metric_names(k: int = K, wide_k: int = WIDE_K) -> tuple[str, ...]:
    """The rank metrics of a report row, in its order."""
    return (f"hr@{k}", "mrr", f"ndcg@{k}", f"recall@{k}", f"hr@{MID_K}", f"hr@{wide_k}")


def standard_errors(r: np.ndarray, k: int = K, wide_k: int = WIDE_K) -> dict:
    """{'<metric>_se'} of every rank metric of metrics_from_ranks (standard_error)."""
    return {f"{m}_se": standard_error(metric_values(r, m), m) for m in rank_metric_names(k, wide_k)}


def metrics_from_ranks(r: np.ndarray, k: int = K, wide_k: int = WIDE_K) -> dict:
    """HR@k, MRR, NDCG@k, Recall@k (== HR@k: one held-out item per context), HR@100, HR@wide_k, each followed by its
    standard error `<metric>_se` (standard_error); 1-based ranks."""
    r = np.asarray(r, dtype=np.float64)
    if len(r) == 0:
        raise ValueError("no contexts to evaluate")
    out = {}
    for m in rank_metric_names(k, wide_k):
        v = metric_values(r, m)
        out[m], out[f"{m}_se"] = float(v.mean()), standard_error(v, m)
    out["num_contexts"] = int(len(r))
    return out


def paired_verdict(
    ranks_model: np.ndarray, ranks_base: np.ndarray, metric: str = f"hr@{K}", z: float = 2.0
) -> tuple[str, float, float]:
    """(verdict, diff, se) of a model against a baseline ranked on the same contexts, in the same order: d = the
    per-context difference of `metric` (metric_values), diff = mean(d), se = sample_se(d); 'ahead' when
    diff > z se and diff > 0, 'behind' when diff < -z se and diff < 0, else 'within_noise'."""
    a, b = np.asarray(ranks_model), np.asarray(ranks_base)
    if a.shape != b.shape or len(a) == 0:
        raise ValueError(f"paired ranks need the same contexts: {a.shape} vs {b.shape}")
    d = metric_values(a, metric) - metric_values(b, metric)
    diff, se = float(d.mean()), sample_se(d)
    if diff > z * se and diff > 0:
        return "ahead", diff, se
    if diff < -z * se and diff < 0:
        return "behind", diff, se
    return "within_noise", diff, se


def popularity_buckets(train_degree: np.ndarray) -> np.ndarray:
    """[N] each item's popularity bucket, 0 head / 1 torso / 2 tail (POPULARITY_BUCKETS): items sorted by train
    degree (descending, ties by node id), an item in the head when the items before it hold less than 1/3 of the
    train interactions, in the torso when they hold less than 2/3, else in the tail (every item never engaged)."""
    deg = np.asarray(train_degree, np.float64)
    order = np.argsort(-deg, kind="stable")
    before = np.cumsum(deg[order]) - deg[order]  # interactions of the more popular items
    total = deg.sum()
    out = np.empty(len(deg), np.int64)
    out[order] = np.where(3 * before < total, 0, np.where(3 * before < 2 * total, 1, 2))
    return out


def by_popularity(r: np.ndarray, buckets: np.ndarray, metric: str = f"hr@{K}") -> dict:
    """{'head' | 'torso' | 'tail': {metric, '<metric>_se', 'num_contexts'}} of ranks `r` split by `buckets` [M]
    (each context's query item's popularity_buckets value); a bucket without contexts has None values."""
    v, buckets = metric_values(r, metric), np.asarray(buckets)
    out = {}
    for b, name in enumerate(POPULARITY_BUCKETS):
        x = v[buckets == b]
        mean, se = (float(x.mean()), standard_error(x, metric)) if len(x) else (None, None)
        out[name] = {metric: mean, f"{metric}_se": se, "num_contexts": int(len(x))}
    return out


def evaluate(
    scorer: Scorer, graph: Graph, split: str = "test", mask_validation: bool = True, batch_size: int | None = None
) -> dict:
    """The protocol's metrics of `scorer` on `split` of `graph`."""
    return metrics_from_ranks(ranks(scorer, build_queries(graph, split, mask_validation), batch_size))


# -------------------------------------------------------------------------------------------------- lists


def list_query_nodes(
    train_degree: np.ndarray, min_degree: int = LIST_MIN_DEGREE, max_queries: int | None = None, seed: int = 0
) -> tuple[np.ndarray, int]:
    """(query node ids, how many items qualify): the items with >= `min_degree` train interactions, in node id
    order; `max_queries` keeps a uniform random sample of that many (fixed by `seed`), as build_queries does."""
    nodes = np.flatnonzero(np.asarray(train_degree) >= min_degree).astype(np.int64)
    total = len(nodes)
    if max_queries and total > max_queries:
        nodes = np.sort(np.random.default_rng(seed).choice(nodes, max_queries, replace=False))
    return nodes, total


def _top_k_row(row: np.ndarray, k: int) -> np.ndarray:
    """The k best of one score row, best first, equal scores by lower node id (the tie-break of `ranks`)."""
    kth = np.partition(row, len(row) - k)[len(row) - k]  # the k-th largest score
    idx = np.flatnonzero(row >= kth)  # everything above it and every item tied with it, in node id order
    return idx[np.lexsort((idx, -row[idx]))[:k]]


def _lists_of_rows(s: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """[B, k] the lists of score rows s [B, N] (overwritten: each query's own score) of items `query` [B]."""
    if np.isnan(s).any():
        raise ValueError("scorer returned NaN scores")
    s[np.arange(len(query)), query] = -np.inf  # the query is not its own related item
    return np.stack([_top_k_row(row, k) for row in s])


def top_k_lists(
    scorer: Scorer,
    query_nodes: np.ndarray,
    num_items: int,
    k: int = K,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """[Q, k'] each query item's related-items list: the scorer's k best of the `num_items` items, the query
    itself excluded and nothing else masked, best first, ties by node id; k' = min(k, N - 1). Scored in blocks
    of ~256 MB, as `ranks`."""
    q, N = np.asarray(query_nodes, np.int64), int(num_items)
    kk = min(k, N - 1)
    B = batch_size or int(np.clip(_BLOCK_FLOATS // max(N, 1), 1, 4096))
    out = np.empty((len(q), kk), np.int64)
    for lo in range(0, len(q), B):
        hi = min(lo + B, len(q))
        s = np.array(scorer.scores(q[lo:hi]), dtype=np.float32)  # a copy: the query's own score is overwritten
        if s.shape != (hi - lo, N):
            raise ValueError(f"scorer returned shape {s.shape}, expected {(hi - lo, N)}")
        out[lo:hi] = _lists_of_rows(s, q[lo:hi], kk)
        if progress is not None:
            progress.update(hi - lo)
    return out


def list_metrics(
    lists: np.ndarray,
    query_nodes: np.ndarray,
    train_degree: np.ndarray,
    categories: np.ndarray | None = None,
    popular: int = POPULAR_ITEMS,
    k: int = K,
) -> dict:
    """coverage@k, popular_share@k and (with `categories`, [N, V] bool: an item's values of a categorical
    feature) feature_agreement@k of related-items lists [Q, k] of `query_nodes` (see the module docstring).
    feature_agreement is absent without categories or when no query has a value."""
    lists, query_nodes = np.asarray(lists, np.int64), np.asarray(query_nodes, np.int64)
    deg = np.asarray(train_degree)
    if len(lists) == 0:
        raise ValueError("no query items for the list metrics")
    engaged = deg >= 1
    shown = np.zeros(len(deg), bool)
    shown[lists.ravel()] = True
    is_popular = np.zeros(len(deg), bool)
    is_popular[np.argsort(-deg, kind="stable")[:popular]] = True  # ties by node id
    popular_per_query = is_popular[lists].mean(1)  # every list has as many slots: their mean is the slot share
    out = {
        f"coverage@{k}": float((shown & engaged).sum() / max(engaged.sum(), 1)),
        f"popular_share@{k}": float(popular_per_query.mean()),
        f"popular_share@{k}_se": sample_se(popular_per_query),
    }
    if categories is not None:
        cat = np.asarray(categories, bool)
        has = cat[query_nodes].any(1)
        agree = []
        step = max(1, (1 << 24) // max(lists.shape[1] * cat.shape[1], 1))  # bounded [b, k, V] temporaries
        for lo in range(0, len(lists), step):
            keep = has[lo : lo + step]
            ql, ll = query_nodes[lo : lo + step][keep], lists[lo : lo + step][keep]
            agree.append((cat[ll] & cat[ql][:, None, :]).any(-1).mean(1))
        agree = np.concatenate(agree)
        if len(agree) and lists.shape[1]:
            out[f"feature_agreement@{k}"] = float(agree.mean())
            out[f"feature_agreement@{k}_se"] = sample_se(agree)
    return out


# ---------------------------------------------------------------------------------------------- baselines


def train_matrix(graph: Graph) -> sp.csr_matrix:
    """Binary context x item matrix of the train split (float32)."""
    c, n, _ = graph.edges("train")
    x = sp.csr_matrix((np.ones(len(c), np.float32), (c, n)), shape=(graph.num_contexts, graph.num_items))
    x.data[:] = 1.0  # a repeated edge counts once
    return x


class PopularityScorer:
    """Train degree: the same ranking for every query (the floor any model must clear)."""

    def __init__(self, graph: Graph):
        self.degree = np.bincount(graph.edges("train")[1], minlength=graph.num_items).astype(np.float32)

    def scores(self, query_nodes):
        return np.broadcast_to(self.degree, (len(query_nodes), len(self.degree)))


class ItemItemScorer:
    """Score = row `query` of a sparse item x item matrix (the item-based kNN family)."""

    def __init__(self, matrix: sp.spmatrix):
        self.matrix = sp.csr_matrix(matrix, dtype=np.float32)

    def scores(self, query_nodes):
        return self.matrix[np.asarray(query_nodes)].toarray()


def cooccurrence_matrix(graph: Graph) -> sp.csr_matrix:
    """Cosine similarity of the items' context sets: |C_i & C_j| / sqrt(|C_i| |C_j|), diagonal zeroed."""
    x = train_matrix(graph)
    co = (x.T @ x).tocsr()
    inv = 1.0 / np.sqrt(np.maximum(co.diagonal(), 1.0)).astype(np.float32)
    co = (sp.diags(inv) @ co @ sp.diags(inv)).tocsr()
    co = co - sp.diags(co.diagonal()).tocsr()  # an item is not its own neighbour
    co.eliminate_zeros()
    return co


class CooccurrenceScorer:
    """Rows of cooccurrence_matrix computed per batch of queries (X[:, q]^T X, scaled the same way, the same
    float32 values): the full item x item product has sum over contexts of |context|^2 entries, too many to hold
    for a large catalogue, while a batch of queries touches only their own contexts."""

    def __init__(self, graph: Graph):
        x = train_matrix(graph)
        self.xt = x.T.tocsr()  # item x context
        self.x = x.tocsr()
        co_diag = np.asarray(x.sum(axis=0)).ravel()  # |C_i| (binary X): the diagonal of X^T X
        self.inv = (1.0 / np.sqrt(np.maximum(co_diag, 1.0))).astype(np.float32)

    def scores(self, query_nodes):
        q = np.asarray(query_nodes)
        co = (self.xt[q] @ self.x).tocsr()
        co = (sp.diags(self.inv[q]) @ co @ sp.diags(self.inv)).toarray()
        co[np.arange(len(q)), q] = 0.0  # an item is not its own neighbour
        return co


def transition_matrix(graph: Graph, window: int = BASELINE_WINDOW) -> sp.csr_matrix:
    """T[i, j] = how often j occurs within `window` positions after or before i in a context's train history
    (symmetric counts; the same pairs PairGen trains on, modules/cooccurrence.py)."""
    return cooccurrence.train_transition_counts(graph, window, dtype=np.float32)


def rwr_matrix(graph: Graph, restart: float = RWR_RESTART, max_items: int = 20_000) -> np.ndarray:
    """Random walk with restart on the bipartite train graph, exactly: a step is item -> context -> item
    (uniform), R = restart * (I - (1 - restart) P)^-1. Dense solve, so small catalogues only."""
    N = graph.num_items
    if N > max_items:
        raise ValueError(f"rwr_matrix is dense O(N^3): {N} items > max_items={max_items}")
    x = train_matrix(graph)
    ci = 1.0 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)
    ii = 1.0 / np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0)
    p = (sp.diags(ii) @ x.T @ sp.diags(ci) @ x).toarray()  # row-stochastic over items with edges
    r = restart * np.linalg.inv(np.eye(N) - (1.0 - restart) * p)
    np.fill_diagonal(r, 0.0)  # the query itself is not a result
    return r.astype(np.float32)


class DenseScorer:
    def __init__(self, matrix: np.ndarray):
        self.matrix = np.asarray(matrix, np.float32)

    def scores(self, query_nodes):
        return self.matrix[np.asarray(query_nodes)]


def ppr_power_iteration(x, xt, c_inv, i_inv, e: np.ndarray, restart: float, tol: float, max_iter: int):
    """([N, b] PPR columns r = e + (1 - restart) P r, iterations) for restart columns e (already times `restart`):
    power iteration over the uniform item -> context -> item step P = D_i X^T D_c X (x: contexts x items, xt its
    transpose, c_inv / i_inv the inverse degrees) until no column changes by more than `tol` in L1."""
    r = e.copy()
    for it in range(1, max_iter + 1):
        nxt = e + (1.0 - restart) * (xt @ (c_inv[:, None] * (x @ (i_inv[:, None] * r))))
        change = float(np.abs(nxt - r).sum(axis=0).max())
        r = nxt
        if change < tol:
            return r, it
    raise RuntimeError(f"RWR power iteration did not reach tol={tol} in {max_iter} iterations")


class RWRScorer:
    """Random walk with restart from each query by sparse power iteration, for catalogues too large for
    rwr_matrix's dense solve. Row vector r of a query q: r <- restart e_q + (1 - restart) r P, P = the uniform
    item -> context -> item step (rwr_matrix's), never formed: r P = X^T (c_inv * (X (i_inv * r))), two sparse
    products over the binary train matrix X [C, N]. A batch of queries iterates together as an [N, b] block
    (b bounded so a float32 block is 64 MB) until no column changes by more than `tol` in L1; P is row-stochastic (or
    leaks mass for items without edges), so the error left is at most tol (1 - r) / r. float32 by default: faster
    than float64 and as close to the dense solve."""

    def __init__(
        self, graph: Graph, restart: float = RWR_RESTART, tol: float = RWR_TOL, max_iter: int = 500, dtype=np.float32
    ):
        if not 0.0 < restart < 1.0:
            raise ValueError(f"restart must be in (0, 1), got {restart}")
        x = train_matrix(graph)
        self.x, self.xt = x.tocsr(), x.T.tocsr()
        self.dtype = np.dtype(dtype)
        self.x, self.xt = self.x.astype(self.dtype), self.xt.astype(self.dtype)
        self.c_inv = (1.0 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)).astype(self.dtype)
        self.i_inv = (1.0 / np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0)).astype(self.dtype)
        self.restart, self.tol, self.max_iter, self.num_items = restart, tol, max_iter, graph.num_items
        self.iterations: list[int] = []  # per block, for the record

    def _block(self, q: np.ndarray) -> np.ndarray:
        N, b = self.num_items, len(q)
        e = np.zeros((N, b), self.dtype)
        e[q, np.arange(b)] = self.restart
        r, it = ppr_power_iteration(self.x, self.xt, self.c_inv, self.i_inv, e, self.restart, self.tol, self.max_iter)
        self.iterations.append(it)
        return r.T

    def scores(self, query_nodes):
        q = np.asarray(query_nodes, np.int64)
        out = np.empty((len(q), self.num_items), np.float32)
        b = max(1, (1 << 24) // max(self.num_items, 1))  # 64 MB per float32 [N, b] array
        for lo in range(0, len(q), b):
            out[lo : lo + b] = self._block(q[lo : lo + b])
        out[np.arange(len(q)), q] = 0.0  # the query itself is not a result (as rwr_matrix)
        return out


def rwr_scorer(graph: Graph, restart: float = RWR_RESTART, dense_max_items: int = RWR_DENSE_MAX_ITEMS) -> Scorer:
    """The RWR baseline: rwr_matrix's exact solve up to `dense_max_items` items, RWRScorer's iteration beyond."""
    if graph.num_items <= dense_max_items:
        return DenseScorer(rwr_matrix(graph, restart, max_items=dense_max_items))
    return RWRScorer(graph, restart)


class EmbeddingScorer:
    """Dot product (or cosine) of item embeddings [N, d]: how the GNN and the features-only baseline are scored.
    query_emb [N, d]: the query-side vectors of an asymmetric model (score = query_emb[q] . emb[i])."""

    def __init__(self, emb: np.ndarray, metric: str = "dot", query_emb: np.ndarray | None = None):
        if metric not in ("dot", "cosine"):
            raise ValueError(f"metric must be 'dot' or 'cosine', got {metric!r}")
        emb = np.asarray(emb, np.float32)
        query_emb = emb if query_emb is None else np.asarray(query_emb, np.float32)
        if query_emb.shape != emb.shape:
            raise ValueError(f"query_emb shape {query_emb.shape} != emb shape {emb.shape}")
        if metric == "cosine":
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            query_emb = query_emb / np.maximum(np.linalg.norm(query_emb, axis=1, keepdims=True), 1e-12)
        self.emb, self.query_emb = emb, query_emb

    def scores(self, query_nodes):
        return self.query_emb[np.asarray(query_nodes)] @ self.emb.T


def features_only_embeddings(features: dict, text_buckets: int = 256) -> np.ndarray:
    """Item vectors from features alone: the float features concatenated (z-scored numerics, multi-hots, log
    degree) plus each text feature's token ids hashed into `text_buckets` counts; rows L2-normalised per block so
    that no block dominates the cosine."""
    blocks = []
    for name, x in sorted(features.items()):
        if name == "node_id":
            continue
        if isinstance(x, tf.RaggedTensor):
            rows = x.value_rowids().numpy()
            cols = (x.flat_values.numpy() % text_buckets).astype(np.int64)
            b = np.zeros((x.nrows().numpy(), text_buckets), np.float32)
            np.add.at(b, (rows, cols), 1.0)
        else:
            b = np.asarray(x, np.float32).reshape(len(x), -1)
        norm = np.linalg.norm(b, axis=1, keepdims=True)
        blocks.append(b / np.maximum(norm, 1e-12))
    return np.concatenate(blocks, axis=1)


def baseline_scorers(graph: Graph, window: int = BASELINE_WINDOW, rwr: bool = True) -> dict[str, Scorer]:
    """The report's baselines (docs/DESIGN.md "Contracts"), all from the train split; `rwr=False` leaves out random
    walk with restart."""
    out = {
        "popularity": PopularityScorer(graph),
        "cooccurrence_knn": CooccurrenceScorer(graph),
        "transition_counts": ItemItemScorer(transition_matrix(graph, window)),
    }
    if rwr:
        out["rwr"] = rwr_scorer(graph)
    return out


def demo_query_items(train_degree: np.ndarray, min_degree: int = LIST_MIN_DEGREE) -> list[int]:
    """Three query items spread over popularity, for a demo of the served lists: the most engaged item (head),
    the median (middle) and the 95th-percentile rank (tail) of the train-degree order (descending, ties by node
    id) among the items with >= `min_degree` train interactions (all engaged items when none has that many).
    Distinct node ids, head first (fewer than three when picks coincide, in a catalogue of a handful of items)."""
    deg = np.asarray(train_degree)
    order = np.argsort(-deg, kind="stable")
    pool = order[deg[order] >= min_degree]
    if len(pool) == 0:
        pool = order[deg[order] >= 1]
    if len(pool) == 0:
        pool = order
    picks = [int(order[0]), int(pool[(len(pool) - 1) // 2]), int(pool[int(round(0.95 * (len(pool) - 1)))])]
    return list(dict.fromkeys(picks))
