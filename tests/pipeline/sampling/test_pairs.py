"""Positive pairs against a hand-built timeline; PPR hard negatives against exact PPR by power iteration."""

import numpy as np
import pytest

from modules import cooccurrence
from pipeline.sampling import pairs as pair_sampling
from pipeline.sampling import ppr
from pipeline.sampling import random_walks as rw
from schema import graph as graph_io
from tests.pipeline.sampling.test_random_walks import exact_visits, small_graph

# One context's history: train items 1 2 3 1 4 (positions 0-4), then validation 5 and test 6;
# another context: train 2 3. Rows deliberately out of order.
TIMELINE = {
    "context_index": [0, 1, 0, 0, 0, 1, 0, 0, 0],
    "node_id": [3, 3, 1, 6, 4, 2, 2, 5, 1],
    "position": [2, 1, 0, 6, 4, 0, 1, 5, 3],
    "split": ["train", "train", "train", "test", "train", "train", "train", "validation", "train"],
}


def pair_dict(q, i, c):
    return {(int(a), int(b)): int(n) for a, b, n in zip(q, i, c)}


def train_only(t):
    m = np.asarray(t["split"]) == "train"
    return [np.asarray(t[k])[m] for k in ("context_index", "node_id", "position")]


@pytest.mark.parametrize(
    "window,symmetric,expected",
    [
        (1, False, {(1, 2): 1, (2, 3): 2, (3, 1): 1, (1, 4): 1}),
        (2, False, {(1, 2): 1, (2, 3): 2, (3, 1): 1, (1, 4): 1, (1, 3): 1, (2, 1): 1, (3, 4): 1}),
        (3, False, {(1, 2): 1, (2, 3): 2, (3, 1): 1, (1, 4): 1, (1, 3): 1, (2, 1): 1, (3, 4): 1, (2, 4): 1}),
        (1, True, {(1, 2): 1, (2, 1): 1, (2, 3): 2, (3, 2): 2, (3, 1): 1, (1, 3): 1, (1, 4): 1, (4, 1): 1}),
    ],
)
def test_positive_pairs_hand_timeline(window, symmetric, expected):
    q, i, c, stats = cooccurrence.positive_pairs(*train_only(TIMELINE), num_items=7, window=window, symmetric=symmetric)
    assert pair_dict(q, i, c) == expected
    assert stats["self_pairs_dropped"] == (1 if window >= 3 else 0)  # 1 ... 1 three steps apart
    assert list(zip(q, i)) == sorted(zip(q, i))


def test_pairs_from_graph_use_train_split_only(tmp_path):
    graph_io.write_tables(str(tmp_path), list(range(7)), ["a", "b"], {**TIMELINE, "timestamp": TIMELINE["position"]})
    q, i, c, _ = pair_sampling.pairs_from_graph(str(tmp_path), window=1)
    assert pair_dict(q, i, c) == {(1, 2): 1, (2, 3): 2, (3, 1): 1, (1, 4): 1}  # 4 -> 5 (validation) absent


def test_resolve_window():
    assert ppr.resolve_window(3706) == (37, 111)  # ML-1M: 1 %-3 % of the catalogue
    assert ppr.resolve_window(1_000_000) == (2000, 5000)  # capped at the paper's ranks
    assert ppr.resolve_window(100, 5, 20) == (5, 20)  # ranks
    assert ppr.resolve_window(10) == (0, 1)  # never empty
    np.testing.assert_array_equal(ppr.window_ranks(10, 20, 5), [10, 12, 14, 16, 18])
    np.testing.assert_array_equal(ppr.window_ranks(10, 13, 5), [10, 11, 12])


def test_ppr_window_matches_exact_ppr():
    ctx, item, n, c = small_graph(num_items=40, num_contexts=12, num_edges=150, seed=4)
    adj = rw.build_adjacency(ctx, item, n, c)
    alpha, lo, hi = 0.3, 3, 10
    queries = np.array([0, 5, 9, 17])
    pos_q, pos_i = np.array([0, 0, 5, 17]), np.array([1, 2, 6, 3])
    neg, stats = ppr.ppr_negatives(
        adj,
        queries,
        pos_q,
        pos_i,
        (lo, hi),
        num_walks=20_000,
        walk_length=30,
        restart_prob=alpha,
        max_negatives=100,
        rng=np.random.default_rng(0),
    )
    exact = exact_visits(ctx, item, n, c, length=60, p_end=alpha)  # PPR from q up to a factor, q excluded
    assert stats["queries"] == 4 and neg.shape == (4, hi - lo)
    for row, q in enumerate(queries):
        excluded = {int(q)} | set(pos_i[pos_q == q].tolist())
        order = [v for v in np.argsort(-exact[q], kind="stable") if v not in excluded]
        got = neg[row][neg[row] >= 0]
        assert not excluded & set(got.tolist())
        assert len(set(got) & set(order[lo:hi])) >= 0.7 * (hi - lo)  # the window itself
        assert set(got) <= set(order[max(lo - 3, 0) : hi + 3])  # nothing far off


def test_ppr_short_window_counted():
    ctx, item, n, c = small_graph(num_items=12, num_contexts=3, num_edges=20, seed=1)
    adj = rw.build_adjacency(ctx, item, n, c)
    neg, stats = ppr.ppr_negatives(
        adj,
        np.array([0, n - 1]),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        (5, 50),
        200,
        10,
        0.3,
        100,
        np.random.default_rng(0),
    )
    assert stats["short_windows"] == 2 and stats["empty_windows"] >= 1  # item n-1 is isolated
    assert (neg[1] == -1).all()


def test_ppr_query_selection_keeps_the_most_drawn_queries_and_reports_coverage():
    from pipeline.sampling import ppr

    q = np.array([5, 5, 1, 2, 2, 9, 3])
    c = np.array([1, 1, 4, 1, 1, 2, 2])  # occurrences per query: 5->2, 1->4, 2->2, 9->2, 3->2
    sel, st = ppr.select_queries(q, c, 3)
    assert sel.tolist() == [1, 2, 3]  # 1 (4), then the ties 2, 3 by lower id
    assert st == {"ppr_queries_selected": 3, "ppr_queries_total": 5, "ppr_pair_occurrences_covered": 8 / 12}
    sel, st = ppr.select_queries(q, c, 0)  # no budget: every distinct query
    assert sel.tolist() == [1, 2, 3, 5, 9] and st["ppr_pair_occurrences_covered"] == 1.0
