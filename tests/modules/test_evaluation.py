"""The evaluation protocol and the baselines, against hand computations on tiny graphs."""

import dataclasses
import math

import numpy as np
import pytest

from modules import evaluation as ev
from pipeline.graph import split
from pipeline.graph.from_csv import graph_from_csv
from schema import graph as graph_io
from tests import fixtures

# 8 items, 3 contexts (timestamps = positions; rows deliberately out of order):
#   c0: train 0 1 2 3 6 (positions 0-4), validation 4, test 5 -> validation query 6, test query 4
#   c1: train 2 1, validation 3, test 6 -> validation query 1, test query 3
#   c2: train 0 5 only (fewer than 3 interactions: no validation/test, skipped)
N = 8
ROWS = [  # (context, node, position, split)
    (0, 3, 3, "train"),
    (1, 6, 3, "test"),
    (0, 5, 6, "test"),
    (2, 5, 1, "train"),
    (0, 0, 0, "train"),
    (1, 2, 0, "train"),
    (0, 6, 4, "train"),
    (0, 4, 5, "validation"),
    (0, 1, 1, "train"),
    (1, 1, 1, "train"),
    (2, 0, 0, "train"),
    (0, 2, 2, "train"),
    (1, 3, 2, "validation"),
]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("graph"))
    c, n, p, s = zip(*ROWS)
    graph_io.write_tables(
        uri,
        [f"i{k}" for k in range(N)],
        ["c0", "c1", "c2"],
        {"context_index": c, "node_id": n, "position": p, "timestamp": p, "split": s},
    )
    return graph_io.load_graph(uri)


class FixedScorer:
    """Returns the given [N] scores (or per-query rows from a dict) for every query."""

    def __init__(self, scores):
        self.s = scores

    def scores(self, q):
        if isinstance(self.s, dict):
            return np.stack([self.s[int(x)] for x in q]).astype(np.float32)
        return np.tile(np.asarray(self.s, np.float32), (len(q), 1))


# ------------------------------------------------------------------------------------------- metrics


def test_metrics_of_known_ranks_by_hand():
    m = ev.metrics_from_ranks(np.array([1, 2, 5, 11, 600]))
    assert m["hr@10"] == pytest.approx(3 / 5) and m["recall@10"] == pytest.approx(3 / 5)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 11 + 1 / 600) / 5)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert m["hr@100"] == m["hr@500"] == pytest.approx(4 / 5) and m["num_contexts"] == 5


def test_oracle_ordering_is_perfect_and_a_missing_target_scores_zero():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 50, 20)
    oracle = np.stack([np.r_[t, np.setdiff1d(np.arange(50), [t])] for t in targets])
    m = ev.metrics_from_ranks(fixtures.ranks_from_lists(oracle, targets))
    assert m["hr@10"] == m["mrr"] == m["ndcg@10"] == m["hr@500"] == 1.0
    r = fixtures.ranks_from_lists(np.array([[3, 1, 2], [4, 5, 6]]), np.array([2, 7]))
    assert r[0] == 3 and np.isinf(r[1])
    assert ev.metrics_from_ranks(r)["mrr"] == pytest.approx((1 / 3) / 2)


def test_oracle_scorer_ranks_every_target_first(graph):
    q = ev.build_queries(graph, "test")
    oracle = {int(a): np.eye(N)[b] for a, b in zip(q.query, q.target)}  # queries are distinct here
    m = ev.metrics_from_ranks(ev.ranks(FixedScorer(oracle), q))
    assert m["hr@10"] == m["mrr"] == m["ndcg@10"] == 1.0


def test_ties_are_broken_by_node_id(graph):
    q = ev.build_queries(graph, "test")
    # constant scores: rank = 1 + unmasked items with a lower node id than the target
    # c0: target 5, masked {0,1,2,3,4,6} -> none lower unmasked -> 1; c1: target 6, masked {1,2,3} -> {0,4,5} -> 4
    np.testing.assert_array_equal(ev.ranks(FixedScorer(np.zeros(N)), q), [1, 4])
    # a higher score beats the tie-break; an equal score with a higher id does not
    s = np.zeros(N)
    s[7] = 1.0
    np.testing.assert_array_equal(ev.ranks(FixedScorer(s), q), [2, 5])


def test_masking_seen_items_changes_the_rank(graph):
    s = np.zeros(N)
    s[[1, 4]] = 5.0  # item 1: train in both contexts; item 4: c0's validation item
    masked = ev.build_queries(graph, "test", mask_validation=True)
    # c0: target 5, unmasked {5, 7} -> 1. c1: target 6, masked {1,2,3}: ahead 4 (higher), 0 and 5 (tie, lower id)
    np.testing.assert_array_equal(ev.ranks(FixedScorer(s), masked), [1, 4])
    unmasked_val = ev.build_queries(graph, "test", mask_validation=False)
    # c0: 4 (its validation item, the query) now beats 5; c1: its validation item 3 now ties 6 with a lower id
    np.testing.assert_array_equal(ev.ranks(FixedScorer(s), unmasked_val), [2, 5])
    nothing = ev.Queries(
        "test", masked.context, masked.query, masked.target, np.zeros(3, np.int64), np.zeros(0, np.int64), N
    )
    # c0: ahead 1, 4 (higher), 0 2 3 (tie, lower id) -> 6; c1: ahead 1, 4, then 0 2 3 5 -> 7
    np.testing.assert_array_equal(ev.ranks(FixedScorer(s), nothing), [6, 7])


def test_vectorised_ranks_match_a_brute_force_sort():
    rng = np.random.default_rng(1)
    n_items, m = 30, 23
    scores = rng.integers(0, 4, (m, n_items)).astype(np.float32)  # many ties
    target = rng.integers(0, n_items, m)
    seen = [np.setdiff1d(rng.choice(n_items, rng.integers(0, 8), replace=False), [t]) for t in target]
    indptr = np.r_[0, np.cumsum([len(x) for x in seen])]
    q = ev.Queries("test", np.arange(m), np.arange(m), target, indptr, np.concatenate(seen).astype(np.int64), n_items)
    scorer = FixedScorer({i: scores[i] for i in range(m)})
    expected = []
    for i in range(m):
        order = sorted(set(range(n_items)) - set(seen[i].tolist()), key=lambda j: (-scores[i, j], j))
        expected.append(order.index(target[i]) + 1)
    np.testing.assert_array_equal(ev.ranks(scorer, q, batch_size=4), expected)


# ------------------------------------------------------------------------------------------- queries


def test_the_test_query_is_the_validation_item_and_the_validation_query_the_last_train_item(graph):
    q = ev.build_queries(graph, "test")
    np.testing.assert_array_equal(q.context, [0, 1])  # c2 has no test item
    np.testing.assert_array_equal(q.query, [4, 3])  # one step ahead: the validation item, not the last train item
    np.testing.assert_array_equal(q.target, [5, 6])
    assert sorted(q.seen_indices[q.seen_indptr[0] : q.seen_indptr[1]]) == [0, 1, 2, 3, 4, 6]  # the query masked
    assert sorted(q.seen_indices[q.seen_indptr[1] : q.seen_indptr[2]]) == [1, 2, 3]
    v = ev.build_queries(graph, "validation")
    np.testing.assert_array_equal(v.query, [6, 1])  # the last train item by position, not the first row
    np.testing.assert_array_equal(v.target, [4, 3])
    assert sorted(v.seen_indices[v.seen_indptr[1] : v.seen_indptr[2]]) == [1, 2]  # the test item is not masked
    # the query decides the rank: row 4 puts c0's target 5 behind 7, row 6 (the last train item) ahead of it
    rows = {4: np.eye(N)[7] * 2 + np.eye(N)[5], 3: np.eye(N)[6], 6: np.eye(N)[5], 1: np.eye(N)[3]}
    np.testing.assert_array_equal(ev.ranks(FixedScorer(rows), q), [2, 1])
    assert ev.evaluate(FixedScorer(np.zeros(N)), graph)["num_contexts"] == 2
    bad = graph_io.Graph(**{**graph.__dict__, "split": np.where(graph.context_index == 1, "test", graph.split)})
    with pytest.raises(ValueError, match="more than one test"):
        ev.build_queries(bad, "test")
    no_train = np.where((graph.context_index == 1) & (graph.split == "train"), "validation", graph.split)
    with pytest.raises(ValueError, match="no train"):
        ev.build_queries(graph_io.Graph(**{**graph.__dict__, "split": no_train}), "test")
    no_val = np.where((graph.context_index == 1) & (graph.split == "validation"), "train", graph.split)
    with pytest.raises(ValueError, match="no validation"):
        ev.build_queries(graph_io.Graph(**{**graph.__dict__, "split": no_val}), "test")
    np.testing.assert_array_equal(  # the validation split does not need one
        ev.build_queries(graph_io.Graph(**{**graph.__dict__, "split": no_val}), "validation").context, [0]
    )


# ------------------------------------------------------------------------------------------- baselines


def test_popularity_is_train_degree(graph):
    sc = ev.PopularityScorer(graph)
    np.testing.assert_array_equal(sc.scores(np.array([0]))[0], [2, 2, 2, 1, 0, 1, 1, 0])
    # c0: target 5 (deg 1) vs unmasked 7 (0) -> 1; c1: target 6 (deg 1), ahead: 0 (deg 2), 5 (deg 1, lower id) -> 3
    np.testing.assert_array_equal(ev.ranks(sc, ev.build_queries(graph, "test")), [1, 3])


def test_cooccurrence_cosine_by_hand(graph):
    # train context sets: c0 {0,1,2,3,6}, c1 {1,2}, c2 {0,5}; degrees 0:2 1:2 2:2 3:1 5:1 6:1
    r2 = 1 / math.sqrt(2)
    hand = {
        (0, 1): 0.5,
        (0, 2): 0.5,
        (0, 3): r2,
        (0, 5): r2,
        (0, 6): r2,
        (1, 2): 1.0,
        (1, 3): r2,
        (1, 6): r2,
        (2, 3): r2,
        (2, 6): r2,
        (3, 6): 1.0,
    }
    expected = np.zeros((N, N))
    for (i, j), v in hand.items():
        expected[i, j] = expected[j, i] = v
    np.testing.assert_allclose(ev.cooccurrence_matrix(graph).toarray(), expected, rtol=1e-6)
    # the per-batch scorer the report uses (no N x N product) gives the same rows, bit for bit
    lazy = ev.CooccurrenceScorer(graph).scores(np.array([3, 0, 6, 3]))
    np.testing.assert_allclose(lazy, expected[[3, 0, 6, 3]], rtol=1e-6)
    np.testing.assert_array_equal(lazy, ev.cooccurrence_matrix(graph).toarray()[[3, 0, 6, 3]])


def test_transition_counts_window_3_by_hand(graph):
    # c0 train 0 1 2 3 6: within 3 steps 01 02 03 12 13 16 23 26 36 (0 and 6 are 4 apart); c1: 21; c2: 05.
    # The validation/test items (4, 5 in c0; 3, 6 in c1) never count.
    hand = {
        (0, 1): 1,
        (0, 2): 1,
        (0, 3): 1,
        (1, 2): 2,
        (1, 3): 1,
        (1, 6): 1,
        (2, 3): 1,
        (2, 6): 1,
        (3, 6): 1,
        (0, 5): 1,
    }
    expected = np.zeros((N, N))
    for (i, j), v in hand.items():
        expected[i, j] = expected[j, i] = v
    np.testing.assert_array_equal(ev.transition_matrix(graph, window=3).toarray(), expected)
    w1 = ev.transition_matrix(graph, window=1).toarray()
    assert w1[0, 2] == 0 and w1[1, 2] == 2 and w1[3, 6] == 1
    # c0: query 4 (never in train) scores 0 everywhere: 5 and 7 tie -> 1. c1: query 3, target 6 (1) behind 0 (1,
    # lower id) -> 2. Validation: c0 query 6, target 4 ties 5 and 7 at 0 -> 1; c1 query 1, target 3 (1) behind 0 -> 2
    sc = ev.ItemItemScorer(ev.transition_matrix(graph))
    np.testing.assert_array_equal(ev.ranks(sc, ev.build_queries(graph, "test")), [1, 2])
    np.testing.assert_array_equal(ev.ranks(sc, ev.build_queries(graph, "validation")), [1, 2])
    m = ev.evaluate(sc, graph)
    assert m["hr@10"] == 1.0 and m["mrr"] == pytest.approx(0.75)


def test_rwr_matches_power_iteration(graph):
    c, n, _ = graph.edges("train")
    items_of = {k: n[c == k] for k in np.unique(c)}
    ctx_of = {i: c[n == i] for i in range(N)}
    p = np.zeros((N, N))
    for i in range(N):
        for k in ctx_of[i]:
            for j in items_of[k]:
                p[i, j] += 1 / (len(ctx_of[i]) * len(items_of[k]))
    restart, r, term = 0.5, np.zeros((N, N)), np.eye(N)
    for _ in range(200):
        r += restart * term
        term = (1 - restart) * term @ p
    np.fill_diagonal(r, 0)
    np.testing.assert_allclose(ev.rwr_matrix(graph, restart), r, atol=1e-6)


def test_embedding_scorer_dot_and_cosine():
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    np.testing.assert_allclose(ev.EmbeddingScorer(emb).scores(np.array([1])), [[2, 4, 0]])
    np.testing.assert_allclose(ev.EmbeddingScorer(emb, "cosine").scores(np.array([2, 0])), [[0, 0, 1], [1, 1, 0]])


def test_embedding_scorer_with_query_vectors_is_asymmetric():
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    query = np.array([[0.0, 2.0], [1.0, 0.0], [1.0, -1.0]])  # item 0 points at item 1, item 1 at item 0
    s = ev.EmbeddingScorer(emb, query_emb=query)
    np.testing.assert_allclose(s.scores(np.array([0, 1, 2])), [[0, 2, 2], [1, 0, 1], [1, -1, 0]])
    assert s.scores(np.array([0]))[0, 1] != s.scores(np.array([1]))[0, 0]
    with pytest.raises(ValueError, match="query_emb shape"):
        ev.EmbeddingScorer(emb, query_emb=query[:2])


# ----------------------------------------------------------------------------------------- graph_from_csv


def _tie_order(context: str, items: list[str]) -> list[str]:
    """`items` of one context tied in time, in protocol v2's order: by the seeded hash of (context id, item id)."""
    hc = split.id_hashes(np.array([context] * len(items), dtype=object))
    hi = split.id_hashes(np.array(items, dtype=object))
    return [items[i] for i in np.argsort(split.pair_hashes(hc, hi), kind="stable")]


def test_graph_from_csv_splits_like_graphgen(tmp_path):
    (tmp_path / "items.csv").write_text("item_id,title\nb,x\n10,y\n9,z\na,w\nc,v\n")
    # u4: a tie at t=5 between '9' and '10', decided by the (context, item) hash, which here puts '10' last where the
    # string id order would put '9' last; 'a' repeated (first kept).
    # u2: two interactions only -> train only.
    (tmp_path / "interactions.csv").write_text(
        "context_id,item_id,timestamp,weight\nu4,9,5,1\nu4,a,1,1\nu4,10,5,1\nu4,b,2,1\nu4,a,3,2\nu2,c,7,1\nu2,b,6,1\n"
    )
    g = graph_from_csv(str(tmp_path))
    assert list(g.item_ids) == ["10", "9", "a", "b", "c"]  # string order: not every id is an integer
    rows = sorted(
        (g.context_ids[c], g.item_ids[n], int(p), s)
        for c, n, p, s in zip(g.context_index, g.node_id, g.position, g.split)
    )
    validation, test = _tie_order("u4", ["9", "10"])
    assert (validation, test) == ("9", "10")  # the case differs from the id order, so the test can tell them apart
    assert rows == sorted(
        [
            ("u4", validation, 2, "validation"),
            ("u4", test, 3, "test"),
            ("u4", "a", 0, "train"),
            ("u4", "b", 1, "train"),
            ("u2", "b", 0, "train"),
            ("u2", "c", 1, "train"),
        ]
    )
    (tmp_path / "items.csv").write_text("item_id\n10\n9\n")
    (tmp_path / "interactions.csv").write_text("context_id,item_id,timestamp\nv,10,5\nv,9,5\n")
    g = graph_from_csv(str(tmp_path))
    assert list(g.item_ids) == ["9", "10"]  # numeric id order for the node ids
    last = g.item_ids[g.node_id[g.position == 1][0]]
    assert (
        last == _tie_order("v", ["9", "10"])[1] == "9"
    )  # '9': the hash's order, where the numeric id order would put '10' last


def test_context_sample_is_deterministic_a_subset_and_reports_its_size(graph):
    full = ev.build_queries(graph, "test")
    a = ev.build_queries(graph, "test", max_contexts=1, seed=3)
    b = ev.build_queries(graph, "test", max_contexts=1, seed=3)
    assert len(full) == 2 and full.total_contexts == 2
    assert len(a) == 1 and a.total_contexts == 2
    np.testing.assert_array_equal(a.context, b.context)
    row = int(np.flatnonzero(full.context == a.context[0])[0])
    assert a.query[0] == full.query[row] and a.target[0] == full.target[row]
    np.testing.assert_array_equal(a.seen_indices, full.seen_indices[full.seen_indptr[row] : full.seen_indptr[row + 1]])
    seen = {tuple(ev.build_queries(graph, "test", max_contexts=1, seed=s).context) for s in range(20)}
    assert seen == {(0,), (1,)}  # the seed picks the sample
    assert ev.build_queries(graph, "test", max_contexts=5).total_contexts == 2  # budget above M: all


# ------------------------------------------------------------------------------------------------ lists


def test_top_k_lists_exclude_the_query_and_break_ties_by_node_id():
    s = {
        0: [9, 7, 5, 5, 0, 5],  # the query's own 9 is dropped; 5 ties: ids 2 and 3 before 5
        3: [1, 1, 1, 9, 1, 2],  # 5 (2), then the 1s by id: 0, 1
        4: [0, 0, 0, 0, 0, 0],  # all tied: the lowest ids that are not the query
    }
    got = ev.top_k_lists(FixedScorer(s), np.array([0, 3, 4]), num_items=6, k=3, batch_size=2)
    np.testing.assert_array_equal(got, [[1, 2, 3], [5, 0, 1], [0, 1, 2]])
    # k larger than the catalogue allows: every other item
    np.testing.assert_array_equal(ev.top_k_lists(FixedScorer(s), np.array([4]), num_items=6, k=10), [[0, 1, 2, 3, 5]])


def test_top_k_lists_match_a_brute_force_sort():
    rng = np.random.default_rng(2)
    n, m = 40, 17
    scores = rng.integers(0, 5, (m, n)).astype(np.float32)  # many ties
    query = rng.permutation(n)[:m]  # distinct query ids: one score row each
    sc = FixedScorer({int(q): scores[i] for i, q in enumerate(query)})
    want = [sorted(set(range(n)) - {int(q)}, key=lambda j: (-scores[i, j], j))[:10] for i, q in enumerate(query)]
    np.testing.assert_array_equal(ev.top_k_lists(sc, query, n, batch_size=5), want)
    with pytest.raises(ValueError, match="NaN"):
        ev.top_k_lists(FixedScorer(np.full(n, np.nan)), query[:1], n)


def test_list_metrics_by_hand():
    deg = np.array([5, 0, 3, 7, 1, 2, 6, 4])  # the 2 most popular: 3 (7) and 6 (6)
    queries = np.array([0, 3, 6])
    lists = np.array([[3, 6, 2], [0, 1, 6], [3, 2, 5]])
    cats = np.zeros((8, 3), bool)  # values a b c: 0 {a}, 1 {b}, 2 {a b}, 3 {c}, 4 {}, 5 {b}, 6 {}, 7 {a}
    for item, vals in {0: [0], 1: [1], 2: [0, 1], 3: [2], 5: [1], 7: [0]}.items():
        cats[item, vals] = True
    m = ev.list_metrics(lists, queries, deg, cats, popular=2, k=3)
    # shown {0,1,2,3,5,6}; engaged = every item but 1 (7 items); shown & engaged = {0,2,3,5,6}
    assert m["coverage@3"] == pytest.approx(5 / 7)
    assert m["popular_share@3"] == pytest.approx(4 / 9)  # 3 and 6 in row 0, 6 in row 1, 3 in row 2
    # q0 {a}: 3 no, 6 no, 2 yes; q3 {c}: none; q6 has no value: left out -> 1 / 6
    assert m["feature_agreement@3"] == pytest.approx(1 / 6)
    # SEs over the queries: popular shares 2/3 1/3 1/3 (mean 4/9, deviations 2/9 -1/9 -1/9, variance 1/27,
    # SE sqrt(1/27 / 3) = 1/9); agreement 1/3 (q0) and 0 (q3): variance 1/18, SE sqrt(1/18 / 2) = 1/6
    assert m["popular_share@3_se"] == pytest.approx(1 / 9) and m["feature_agreement@3_se"] == pytest.approx(1 / 6)
    assert "coverage@3_se" not in m
    assert "feature_agreement@3" not in ev.list_metrics(lists, queries, deg, popular=2, k=3)
    assert "feature_agreement@3" not in ev.list_metrics(lists[2:], queries[2:], deg, cats, popular=2, k=3)
    with pytest.raises(ValueError, match="no query items"):
        ev.list_metrics(lists[:0], queries[:0], deg)


def test_list_queries_are_the_items_with_five_train_interactions():
    deg = np.array([5, 4, 9, 0, 5, 12])
    nodes, total = ev.list_query_nodes(deg)
    np.testing.assert_array_equal(nodes, [0, 2, 4, 5])
    assert total == 4
    a, total_a = ev.list_query_nodes(deg, max_queries=2, seed=1)
    assert total_a == 4 and len(a) == 2 and set(a) <= {0, 2, 4, 5} and list(a) == sorted(a)
    np.testing.assert_array_equal(a, ev.list_query_nodes(deg, max_queries=2, seed=1)[0])


def test_demo_queries_are_a_head_a_middle_and_a_tail_item():
    deg = np.array([10, 0, 3, 7, 5, 5, 6, 2, 9, 5, 8])
    # order by degree, ties by id: 0 8 10 3 6 4 5 9 | 2 7 1; the 8 items with >= 5: median index 3 -> node 3,
    # 95th percentile index round(0.95 * 7) = 7 -> node 9 (the last of the tied 5s)
    assert ev.demo_query_items(deg) == [0, 3, 9]
    assert ev.demo_query_items(np.array([3, 1, 2, 0])) == [0, 2, 1]  # nothing with 5: the engaged items
    assert ev.demo_query_items(np.array([7])) == [0]


# ------------------------------------------------------------------------------------------------ RWR


def _train_graph(tmp_path, pairs, num_items):
    c, n = zip(*pairs)
    graph_io.write_tables(
        str(tmp_path),
        [f"i{k}" for k in range(num_items)],
        [f"c{k}" for k in range(max(c) + 1)],
        {
            "context_index": c,
            "node_id": n,
            "position": range(len(c)),
            "timestamp": range(len(c)),
            "split": ["train"] * len(c),
        },
    )
    return graph_io.load_graph(str(tmp_path))


def test_rwr_power_iteration_matches_the_dense_solve(graph, tmp_path):
    q = np.arange(N)
    np.testing.assert_allclose(ev.RWRScorer(graph).scores(q), ev.rwr_matrix(graph), atol=2e-6)
    # a random graph with hubs, isolated items and repeated edges; 3 queries per block
    rng = np.random.default_rng(0)
    n_items, pairs = 60, []
    for ctx in range(25):
        size = rng.integers(1, 12)
        pairs += [(ctx, int(i)) for i in rng.zipf(1.6, size) % 50]  # items 50..59 never engaged
    g = _train_graph(tmp_path, pairs, n_items)
    dense = ev.rwr_matrix(g, restart=0.5)
    it = ev.RWRScorer(g, restart=0.5, tol=1e-9, dtype=np.float64)
    it_scores = it.scores(np.arange(n_items))
    np.testing.assert_allclose(it_scores, dense, atol=1e-6)
    assert all(k < 60 for k in it.iterations)  # restart 0.5: the change halves per step
    np.testing.assert_allclose(ev.RWRScorer(g).scores(np.arange(n_items)), dense, atol=2e-6)  # float32 default
    loose = ev.RWRScorer(g, restart=0.5, tol=1e-2).scores(np.arange(n_items))
    assert np.abs(loose - dense).sum(1).max() <= 1e-2  # the documented bound: tol (1 - r) / r
    assert np.abs(loose - dense).max() > 1e-6  # and the tolerance is what stops it
    assert isinstance(ev.rwr_scorer(g, dense_max_items=10), ev.RWRScorer)
    assert isinstance(ev.rwr_scorer(g), ev.DenseScorer)
    assert "rwr" in ev.baseline_scorers(g) and "rwr" not in ev.baseline_scorers(g, rwr=False)


class CountingScorer(FixedScorer):
    """A FixedScorer that records every query item it is asked to score."""

    def __init__(self, s):
        super().__init__(s)
        self.asked = []

    def scores(self, q):
        self.asked.extend(int(x) for x in q)
        return super().scores(q)


def test_test_and_validation_queries_and_the_list_items_are_scored_once(graph):
    """The two splits query different items (c0: 4 for test, 6 for validation; c1: 3 and 1); one pass scores the
    union with the list items {0, 3} once each, and ranks each split as `ranks` does on its own."""
    rows = {
        4: [0, 0, 0, 0, 0, 2, 0, 3],  # c0 test: target 5 (2) behind 7 (3) -> 2
        3: [5, 0, 0, 0, 1, 1, 1, 0],  # c1 test: target 6 (1) behind 0 (5), 4 and 5 (1, lower ids); 1 2 3 masked -> 4
        6: [0, 0, 0, 0, 1, 0, 0, 0],  # c0 validation: target 4 first -> 1
        1: [0, 0, 0, 2, 0, 3, 0, 0],  # c1 validation: target 3 (2) behind 5 (3) -> 2
        0: [0, 1, 2, 3, 4, 5, 6, 7],
    }
    test, val = ev.build_queries(graph, "test"), ev.build_queries(graph, "validation")
    for batch_size in (1, 2, None):
        scorer = CountingScorer(rows)
        (r_test, r_val), lists = ev.ranks_and_lists(scorer, [test, val], np.array([0, 3]), batch_size=batch_size)
        assert sorted(scorer.asked) == [0, 1, 3, 4, 6]  # each distinct item once
        np.testing.assert_array_equal(r_test, [2, 4])
        np.testing.assert_array_equal(r_val, [1, 2])
        np.testing.assert_array_equal(r_test, ev.ranks(FixedScorer(rows), test))
        np.testing.assert_array_equal(r_val, ev.ranks(FixedScorer(rows), val))
        # lists (the query excluded, ties by id): 0 -> 7 6 5 4 3 2 1; 3 -> 0 (5), 4 5 6 (1), 1 2 7 (0)
        np.testing.assert_array_equal(lists, [[7, 6, 5, 4, 3, 2, 1], [0, 4, 5, 6, 1, 2, 7]])
    other = dataclasses.replace(test, num_items=N + 1)
    with pytest.raises(ValueError, match="one catalogue"):
        ev.ranks_and_lists(FixedScorer(rows), [test, other], np.array([0]))


def _random_queries(rng, n: int, m: int, pool: np.ndarray) -> tuple[ev.Queries, list]:
    """m contexts with query items drawn from `pool` (repeated), random targets and masks (the target unmasked)."""
    query = rng.choice(pool, m)
    target = rng.integers(0, n, m)
    seen = [np.setdiff1d(rng.choice(n, rng.integers(0, 9), replace=False), [t]) for t in target]
    indptr = np.r_[0, np.cumsum([len(x) for x in seen])]
    return ev.Queries("test", np.arange(m), query, target, indptr, np.concatenate(seen).astype(np.int64), n), seen


def test_ranks_and_lists_score_each_distinct_query_item_once_and_match_a_brute_force_sort():
    """Two query sets with different, overlapping query items (up to ~9 contexts on one item, more than a block's
    rows: the chunking) and different sizes, list items overlapping them and not. Ranks and lists equal a plain sort
    of each row, ties by node id, and every distinct item of the union is scored exactly once."""
    rng = np.random.default_rng(5)
    n = 40
    rows = {i: rng.integers(0, 4, n).astype(np.float32) for i in range(n)}  # many ties
    sets = [
        _random_queries(rng, n, 60, np.array([1, 4, 4, 4, 7, 11, 20, 33])),
        _random_queries(rng, n, 45, np.array([4, 5, 5, 11, 12, 12, 12, 38])),
    ]
    nodes = np.array([2, 4, 7, 8, 33, 39])
    scorer = CountingScorer(rows)
    got, lists = ev.ranks_and_lists(scorer, [q for q, _ in sets], nodes, batch_size=3)
    union = set(nodes.tolist()).union(*(q.query.tolist() for q, _ in sets))
    assert sorted(scorer.asked) == sorted(union)  # each once
    for (q, seen), r in zip(sets, got):
        want = []
        for i in range(len(q)):
            order = sorted(set(range(n)) - set(seen[i].tolist()), key=lambda j: (-rows[q.query[i]][j], j))
            want.append(order.index(q.target[i]) + 1)
        np.testing.assert_array_equal(r, want)
        np.testing.assert_array_equal(r, ev.ranks(FixedScorer(rows), q, batch_size=7))
    want_lists = [sorted(set(range(n)) - {int(v)}, key=lambda j: (-rows[int(v)][j], j))[:10] for v in nodes]
    np.testing.assert_array_equal(lists, want_lists)
    none, no_lists = ev.ranks_and_lists(FixedScorer(rows), [sets[1][0]], nodes[:0])  # no list items
    np.testing.assert_array_equal(none[0], got[1])
    assert no_lists.shape == (0, 10)
    sub = sets[0][0].take(np.array([5, 2]))  # take re-packs the masks of the rows asked for
    np.testing.assert_array_equal(sub.seen_indices, np.r_[sets[0][1][5], sets[0][1][2]])
    with pytest.raises(ValueError, match="NaN"):
        ev.ranks_and_lists(FixedScorer(np.full(n, np.nan)), [sets[0][0]], nodes)


# ----------------------------------------------------------------------------- standard errors and verdicts


def test_standard_errors_of_toy_ranks_by_hand():
    m = ev.metrics_from_ranks(np.array([1, 3, 20, 2]))
    assert m["hr@10"] == m["recall@10"] == pytest.approx(0.75)
    assert m["hr@10_se"] == m["recall@10_se"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))  # binomial
    assert m["hr@100"] == m["hr@500"] == 1.0 and m["hr@100_se"] == m["hr@500_se"] == 0.0
    rr = [1, 1 / 3, 1 / 20, 1 / 2]  # 1 / rank
    mean = sum(rr) / 4
    assert m["mrr"] == pytest.approx(mean)
    assert m["mrr_se"] == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in rr) / 3) / 2)  # std(ddof=1) / sqrt(n)
    gain = [1, 1 / 2, 0, 1 / math.log2(3)]  # 1 / log2(rank + 1) inside the top 10
    mean = sum(gain) / 4
    assert m["ndcg@10"] == pytest.approx(mean)
    assert m["ndcg@10_se"] == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in gain) / 3) / 2)
    one = ev.metrics_from_ranks(np.array([4]))
    assert one["mrr_se"] == one["ndcg@10_se"] == one["hr@10_se"] == 0.0  # one context: no spread to measure
    assert ev.standard_errors(np.array([1, 3, 20, 2]))["mrr_se"] == m["mrr_se"]
    np.testing.assert_allclose(ev.metric_values(np.array([1, 3, 20, 2]), "hr@2"), [1, 0, 0, 1])
    with pytest.raises(ValueError, match="unknown rank metric"):
        ev.metric_values(np.array([1]), "precision@10")


def test_paired_verdicts_of_toy_ranks_by_hand():
    model, base = np.array([1, 1, 1, 1, 20]), np.array([20, 20, 20, 1, 20])
    # hits 1 1 1 1 0 vs 0 0 0 1 0: d = 1 1 1 0 0, mean 0.6; deviations .4 .4 .4 -.6 -.6, squares sum 1.2,
    # sample variance 1.2 / 4 = 0.3, SE sqrt(0.3 / 5); 2 SE = 0.49 < 0.6
    verdict, diff, se = ev.paired_verdict(model, base, "hr@10")
    assert verdict == "ahead" and diff == pytest.approx(0.6) and se == pytest.approx(math.sqrt(0.3 / 5))
    verdict, diff, se = ev.paired_verdict(base, model, "hr@10")
    assert verdict == "behind" and diff == pytest.approx(-0.6) and se == pytest.approx(math.sqrt(0.3 / 5))
    # d = 1 0 -1 0 1, mean 0.2; deviations .8 -.2 -1.2 -.2 .8, squares sum 2.8, variance 0.7, SE sqrt(0.14) ~ 0.374
    noisy_model, noisy_base = np.array([1, 1, 20, 20, 1]), np.array([20, 1, 1, 20, 20])
    verdict, diff, se = ev.paired_verdict(noisy_model, noisy_base, "hr@10")
    assert verdict == "within_noise" and diff == pytest.approx(0.2) and se == pytest.approx(math.sqrt(0.14))
    assert ev.paired_verdict(noisy_model, noisy_base, "hr@10", z=0.5)[0] == "ahead"  # 0.5 SE ~ 0.187 < 0.2
    # mrr: d = 1 - 1/2, 1/2 - 1/2 = 0.5 0, mean 0.25, SE = std(ddof=1) / sqrt 2 = sqrt(0.125) / sqrt 2 = 0.25
    assert ev.paired_verdict(np.array([1, 2]), np.array([2, 2]), "mrr") == ("within_noise", 0.25, 0.25)
    assert ev.paired_verdict(np.array([1, 1]), np.array([20, 20])) == ("ahead", 1.0, 0.0)  # every d equal
    assert ev.paired_verdict(model, model) == ("within_noise", 0.0, 0.0)
    with pytest.raises(ValueError, match="same contexts"):
        ev.paired_verdict(model, base[:4])


def test_popularity_buckets_are_thirds_of_the_train_interactions():
    deg = np.array([2, 4, 0, 3, 3, 3])  # 15 interactions: 1/3 = 5, 2/3 = 10
    # by degree, ties by id: 1 (4), 3 (3), 4 (3), 5 (3), 0 (2), 2 (0); interactions before each: 0 4 7 10 13 15.
    # head: fewer than 5 before (1, 3); torso: fewer than 10 (4); tail: the rest (5 on the tie by id, 0, 2)
    np.testing.assert_array_equal(ev.popularity_buckets(deg), [2, 0, 2, 0, 1, 2])
    np.testing.assert_array_equal(ev.popularity_buckets(np.array([9, 1, 1])), [0, 2, 2])  # one item holds 2/3+
    r, buckets = np.array([1, 20, 3, 5, 50]), np.array([0, 0, 1, 2, 2])
    got = ev.by_popularity(r, buckets)
    half = {"hr@10": 0.5, "hr@10_se": pytest.approx(math.sqrt(0.25 / 2)), "num_contexts": 2}
    assert got == {"head": half, "torso": {"hr@10": 1.0, "hr@10_se": 0.0, "num_contexts": 1}, "tail": half}
    assert ev.by_popularity(r[:2], buckets[:2])["tail"] == {"hr@10": None, "hr@10_se": None, "num_contexts": 0}
