"""The walk samplers against the exact expected visits, computed independently with scipy matrix powers.

For walks of at most L traversals that end with probability p after each, the expected visits from u are
sum_k (1-p)^(k-1) P^k[u, :] with P = D_i^-1 A D_c^-1 A^T (A: item x context, deduplicated train edges).
"""

import os
import pickle
import tempfile

import apache_beam as beam
import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.sampling import beam_walks
from pipeline.sampling import random_walks as rw

L, P_END = 3, 0.4


def small_graph(num_items=30, num_contexts=10, num_edges=90, seed=0):
    """Random bipartite train edges with duplicates, plus one isolated item (the last one)."""
    rng = np.random.default_rng(seed)
    ctx = rng.integers(0, num_contexts, num_edges)
    item = rng.integers(0, num_items - 1, num_edges)
    ctx, item = np.r_[ctx, ctx[:5]], np.r_[item, item[:5]]  # 5 duplicated edges
    return ctx, item, num_items, num_contexts


def exact_visits(ctx, item, n, c, length=L, p_end=P_END):
    """[N, N] expected visits per walk, start item excluded (its column zeroed)."""
    a = sp.csr_matrix((np.ones(len(ctx)), (item, ctx)), shape=(n, c))
    a.data[:] = 1.0  # duplicates collapse to one edge
    di = np.asarray(a.sum(1)).ravel()
    dc = np.asarray(a.sum(0)).ravel()

    def inv(d):
        return sp.diags(np.divide(1.0, d, out=np.zeros_like(d), where=d > 0))

    trans = (inv(di) @ a @ inv(dc) @ a.T).toarray()
    step, total = np.eye(n), np.zeros((n, n))
    for k in range(1, length + 1):
        step = step @ trans
        total += (1 - p_end) ** (k - 1) * step
    np.fill_diagonal(total, 0.0)
    return total


def dense_counts(rows, items, counts, n):
    out = np.zeros((n, n))
    np.add.at(out, (rows, items), counts)
    return out


def tv(a, b):
    """Per-row total-variation distance between row-normalised distributions."""
    na = a / np.maximum(a.sum(1, keepdims=True), 1e-12)
    nb = b / np.maximum(b.sum(1, keepdims=True), 1e-12)
    return 0.5 * np.abs(na - nb).sum(1)


@pytest.fixture(scope="module")
def graph():
    ctx, item, n, c = small_graph()
    return ctx, item, n, c, rw.build_adjacency(ctx, item, n, c)


def test_adjacency_dedupes_and_counts_duplicates(graph):
    ctx, item, n, c, adj = graph
    assert adj.duplicate_edges == len(ctx) - len(set(zip(ctx, item)))
    assert adj.item_indptr[-1] == adj.ctx_indptr[-1] == len(set(zip(ctx, item)))
    assert adj.item_degree[n - 1] == 0
    with pytest.raises(ValueError, match="out of range"):
        rw.build_adjacency([0], [n], n, c)


def test_empirical_visits_match_exact(graph):
    ctx, item, n, c, adj = graph
    r = 20_000
    rows, items = rw.walk_visits(adj, np.arange(n), r, L, P_END, np.random.default_rng(0))
    emp = dense_counts(*rw.count_visits(rows, items, n), n) / r
    exact = exact_visits(ctx, item, n, c)
    live = adj.item_degree > 0
    assert np.abs(emp - exact).max() < 0.02  # visits per walk, item by item
    assert tv(emp[live], exact[live]).max() < 0.03  # and as distributions
    assert emp[~live].sum() == 0


def test_top_t_overlap_and_weights(graph):
    ctx, item, n, c, adj = graph
    t = 5
    nbr, w, cnt = rw.sample_neighborhoods(
        adj, rw.WalkParams(num_walks=5000, walk_length=L, restart_prob=P_END, top_t=t, seed=3), shard_size=7
    )
    exact = exact_visits(ctx, item, n, c)
    live = np.flatnonzero(adj.item_degree > 0)
    overlaps = [len(set(nbr[u][nbr[u] >= 0]) & set(np.argsort(-exact[u], kind="stable")[:t])) / t for u in live]
    assert np.mean(overlaps) >= 0.85
    np.testing.assert_allclose(w[live].sum(1), 1.0, rtol=1e-5)
    assert (nbr[n - 1] == -1).all() and (w[n - 1] == 0).all()  # isolated item: empty neighbourhood
    assert (np.diff(cnt, axis=1) <= 0).all()  # ordered by count
    assert not (nbr == np.arange(n)[:, None]).any()  # never the start item


def test_deterministic_for_a_seed(graph):
    *_, adj = graph
    p = rw.WalkParams(num_walks=50, top_t=5, seed=11)
    a, b = rw.sample_neighborhoods(adj, p, shard_size=8), rw.sample_neighborhoods(adj, p, shard_size=8)
    c = rw.sample_neighborhoods(adj, rw.WalkParams(num_walks=50, top_t=5, seed=12), shard_size=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[2], c[2])


def test_ties_break_to_lower_item_id():
    rows = np.array([0, 0, 0, 0, 1, 1])
    items = np.array([7, 3, 7, 5, 2, 9])
    nbr, cnt = rw.top_t(*rw.count_visits(rows, items, 10), 3, 2)
    np.testing.assert_array_equal(nbr, [[7, 3], [2, 9], [-1, -1]])
    np.testing.assert_array_equal(cnt, [[2, 1], [1, 1], [0, 0]])


def test_stats_and_stability(graph):
    *_, n, c, adj = graph
    nbr, w, cnt = rw.sample_neighborhoods(adj, rw.WalkParams(num_walks=20, top_t=5))
    s = rw.finalize_stats(rw.chunk_stats(nbr, cnt, isolated=int((adj.item_degree == 0).sum())))
    assert s["isolated_items"] == 1 and s["empty_neighborhoods"] == 1
    assert 0 < s["mean_neighborhood_size"] <= 5
    lo, hi = rw.neighborhood_stability(adj, 5, top_t_=5), rw.neighborhood_stability(adj, 2000, top_t_=5)
    assert hi["count1_fraction"] < lo["count1_fraction"] and hi["top_t_overlap"] > lo["top_t_overlap"]
    assert hi["top_t_overlap"] > 0.8


def run_join_walks(ctx, item, n, c, params, num_partitions, batches=3):
    """The join-based sampler on the in-process DirectRunner; returns dense [N, T] (nbr, counts)."""
    with tempfile.TemporaryDirectory() as d:
        edges = [(ctx[i::batches], item[i::batches]) for i in range(batches)]

        def dump(x):
            with open(os.path.join(d, f"{x[0][0] if len(x[0]) else 'empty'}.pkl"), "wb") as f:
                pickle.dump(x, f)

        with beam.Pipeline() as p:
            _ = beam_walks.walk_neighborhoods(p | beam.Create(edges), n, c, params, num_partitions) | beam.Map(dump)
        parts = [pickle.load(open(os.path.join(d, f), "rb")) for f in os.listdir(d)]
    nbr = np.full((n, params.top_t), -1)
    cnt = np.zeros((n, params.top_t), np.int64)
    for ids, pn, pc, _ in parts:
        nbr[ids], cnt[ids] = pn, pc
    assert sum(x[3] for x in parts) == 1  # one isolated item
    return nbr, cnt


def test_join_walks_match_exact_and_in_memory(graph):
    ctx, item, n, c, adj = graph
    params = rw.WalkParams(num_walks=4000, walk_length=L, restart_prob=P_END, top_t=n, seed=5)
    nbr, cnt = run_join_walks(ctx, item, n, c, params, num_partitions=3)
    join = np.zeros((n, n))
    for u in range(n):
        join[u, nbr[u][nbr[u] >= 0]] = cnt[u][nbr[u] >= 0]
    mem_rows, mem_items = rw.walk_visits(adj, np.arange(n), params.num_walks, L, P_END, np.random.default_rng(1))
    mem = dense_counts(*rw.count_visits(mem_rows, mem_items, n), n)
    live = adj.item_degree > 0
    assert tv(join[live], exact_visits(ctx, item, n, c)[live]).max() < 0.05
    assert tv(join[live], mem[live]).max() < 0.06
    assert abs(join.sum() / mem.sum() - 1) < 0.02  # same walk lengths
    again, _ = run_join_walks(ctx, item, n, c, params, num_partitions=3)
    np.testing.assert_array_equal(nbr, again)  # deterministic for a seed and P
