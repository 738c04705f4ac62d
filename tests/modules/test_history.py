"""History queries, their ranks, lists and metrics, and the history baselines, against hand computations and
direct numpy formulas on tiny graphs."""

import numpy as np
import pytest

from modules import evaluation as ev
from modules import history as hist
from schema import graph as graph_io
from tests import fixtures

# 8 items, 4 contexts (timestamps = positions; rows deliberately out of order):
#   c0: train 0 1 2 3 6 (positions 0-4), validation 4, test 5
#   c1: train 2 1, validation 3, test 6
#   c2: train 0 5 only (no validation/test: skipped)
#   c3: train 7 3 0, validation 2, test 1
N = 8
ROWS = [  # (context, node, position, split)
    (0, 3, 3, "train"),
    (1, 6, 3, "test"),
    (3, 0, 2, "train"),
    (0, 5, 6, "test"),
    (2, 5, 1, "train"),
    (0, 0, 0, "train"),
    (3, 1, 4, "test"),
    (1, 2, 0, "train"),
    (0, 6, 4, "train"),
    (3, 7, 0, "train"),
    (0, 4, 5, "validation"),
    (0, 1, 1, "train"),
    (3, 2, 3, "validation"),
    (1, 1, 1, "train"),
    (2, 0, 0, "train"),
    (0, 2, 2, "train"),
    (3, 3, 1, "train"),
    (1, 3, 2, "validation"),
]


def _graph(rows, num_items, num_contexts):
    c, n, p, s = (np.array(x) for x in zip(*rows))
    s = s.astype(object)
    return graph_io.Graph(
        item_ids=np.array([f"i{k}" for k in range(num_items)], dtype=object),
        train_degree=np.bincount(n[s == "train"], minlength=num_items),
        context_ids=np.array([f"c{k}" for k in range(num_contexts)], dtype=object),
        context_index=c.astype(np.int64),
        node_id=n.astype(np.int64),
        timestamp=p.astype(np.int64),
        weight=np.ones(len(c)),
        split=s,
        position=p.astype(np.int64),
    )


@pytest.fixture(scope="module")
def graph():
    return _graph(ROWS, N, 4)


@pytest.fixture(scope="module")
def chain():
    return fixtures.chain_histories(num_items=60, community_size=10, num_contexts=40, length=12, seed=3)


class RowScorer:
    """Scores [M, N] given up front, one row per history in the order the histories are asked for."""

    def __init__(self, scores):
        self.s, self.at, self.seen = np.asarray(scores, np.float32), 0, []

    def scores(self, histories):
        self.seen += [np.array(h) for h in histories]
        out = self.s[self.at : self.at + len(histories)]
        self.at += len(histories)
        return out


def _queries(histories, targets, num_items):
    indptr = np.r_[0, np.cumsum([len(h) for h in histories])].astype(np.int64)
    flat = np.concatenate(histories).astype(np.int64)
    m = len(histories)
    return hist.HistoryQueries("test", np.arange(m), np.asarray(targets), indptr, flat, num_items, m)


def _dense_train(g):
    """The binary context x item train matrix, from the rows in a loop."""
    x = np.zeros((g.num_contexts, g.num_items))
    for c, n, s in zip(g.context_index, g.node_id, g.split):
        if s == "train":
            x[c, n] = 1.0
    return x


def _some_histories(g, rng, count=9):
    """Random histories over g's items, repeats included, lengths 1..6."""
    return [rng.integers(0, g.num_items, rng.integers(1, 7)) for _ in range(count)]


# ------------------------------------------------------------------------------------------------ queries


def test_history_queries_are_the_train_items_in_order_and_the_test_adds_the_validation_item(graph):
    v = hist.build_history_queries(graph, "validation")
    np.testing.assert_array_equal(v.context, [0, 1, 3])
    np.testing.assert_array_equal(v.target, [4, 3, 2])
    assert [h.tolist() for h in v.histories()] == [[0, 1, 2, 3, 6], [2, 1], [7, 3, 0]]
    t = hist.build_history_queries(graph, "test")
    np.testing.assert_array_equal(t.context, [0, 1, 3])
    np.testing.assert_array_equal(t.target, [5, 6, 1])
    assert [h.tolist() for h in t.histories()] == [[0, 1, 2, 3, 6, 4], [2, 1, 3], [7, 3, 0, 2]]
    assert t.total_contexts == 3 and len(t) == 3
    np.testing.assert_array_equal(t.lengths, [6, 3, 4])
    # the mask is the history: the same item sets evaluation masks for its test queries
    q = ev.build_queries(graph, "test")
    for r in range(len(q)):
        seen = set(q.seen_indices[q.seen_indptr[r] : q.seen_indptr[r + 1]].tolist())
        assert seen == set(t.histories()[r].tolist())
    with pytest.raises(ValueError):
        hist.build_history_queries(graph, "train")


def test_a_context_sample_is_build_queries_sample_and_take_repacks(chain):
    full = hist.build_history_queries(chain, "test")
    part = hist.build_history_queries(chain, "test", max_contexts=7, seed=5)
    np.testing.assert_array_equal(part.context, ev.build_queries(chain, "test", max_contexts=7, seed=5).context)
    assert len(part) == 7 and part.total_contexts == len(full)
    rows = np.searchsorted(full.context, part.context)
    took = full.take(rows)
    np.testing.assert_array_equal(took.target, part.target)
    assert [h.tolist() for h in took.histories()] == [h.tolist() for h in part.histories()]


def test_truncation_keeps_the_most_recent_items():
    h = [np.array([5, 6, 7, 8, 9]), np.array([3]), np.array([1, 2])]
    assert [x.tolist() for x in hist.recent(h, 3)] == [[7, 8, 9], [3], [1, 2]]
    with pytest.raises(ValueError):
        hist.recent(h, 0)


def test_the_scorer_sees_the_truncated_history_and_the_mask_stays_whole(graph):
    q = hist.build_history_queries(graph, "test")
    s = np.zeros((len(q), N))
    s[:, 0] = 10.0  # item 0: in every history, so masked for every context although the scorer never saw it
    scorer = RowScorer(s)
    r, lists = hist.history_ranks_and_lists(scorer, q, max_len=2)
    assert [h.tolist() for h in scorer.seen] == [[6, 4], [1, 3], [0, 2]]
    # c0: target 5, unmasked {5, 7} -> 1; c1: target 6, unmasked {0, 4, 5, 6, 7}: 0 scores higher, 4 and 5 tie
    # with lower ids -> 4; c3: target 1, unmasked {1, 4, 5, 6} -> 1
    np.testing.assert_array_equal(r, [1, 4, 1])
    np.testing.assert_array_equal(lists, [[5, 7] + [-1] * 6, [0, 4, 5, 6, 7] + [-1] * 3, [1, 4, 5, 6] + [-1] * 4])


# -------------------------------------------------------------------------------------------------- ranks


def _brute_force(scores, histories, targets, k):
    ranks, lists = [], []
    for s, h, t in zip(scores, histories, targets):
        order = sorted(set(range(len(s))) - set(h.tolist()), key=lambda j: (-s[j], j))
        ranks.append(order.index(t) + 1)
        lists.append((order[:k] + [-1] * k)[:k])
    return np.array(ranks), np.array(lists)


def test_ranks_and_lists_match_a_brute_force_sort_with_masking_and_ties():
    rng = np.random.default_rng(1)
    n_items, m, k = 30, 23, 10
    scores = rng.integers(0, 4, (m, n_items)).astype(np.float32)  # many ties
    scores[rng.random((m, n_items)) < 0.1] = -np.inf  # unmasked items at -inf tie with the masked ones
    target = rng.integers(0, n_items, m)
    histories = [np.setdiff1d(rng.choice(n_items, rng.integers(1, 10)), [t]) for t in target]
    histories[3] = np.r_[histories[3], histories[3][:1]]  # a repeated item is masked once
    histories[5] = np.setdiff1d(np.arange(n_items), [target[5], 11, 17])  # 3 items left: lists padded with -1
    q = _queries(histories, target, n_items)
    for batch in (None, 4):
        r, lists = hist.history_ranks_and_lists(RowScorer(scores), q, k=k, batch_size=batch)
        want_r, want_l = _brute_force(scores, histories, target, k)
        np.testing.assert_array_equal(r, want_r)
        np.testing.assert_array_equal(lists, want_l)
    assert (lists[5, 3:] == -1).all() and set(lists[5, :3]) == {target[5], 11, 17}
    for row, h in zip(lists, histories):
        assert not set(row.tolist()) & set(h.tolist())


def test_nan_scores_and_a_wrong_shape_are_refused(graph):
    q = hist.build_history_queries(graph, "test")
    s = np.zeros((len(q), N))
    s[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        hist.history_ranks_and_lists(RowScorer(s), q)
    with pytest.raises(ValueError, match="shape"):
        hist.history_ranks_and_lists(RowScorer(np.zeros((len(q), N - 1))), q)


def test_history_metrics_by_hand():
    deg = np.array([9, 8, 7, 1, 1, 0, 2, 0])  # popular (2 most engaged): items 0 and 1; engaged: all but 5, 7
    lists = np.array([[0, 2, 3], [1, 0, -1], [4, 6, 2]])
    m = hist.history_metrics(np.array([1, 3, 20]), lists, deg, k=3)
    assert m["hr@3"] == pytest.approx(2 / 3) and m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 20) / 3)
    assert "hr@100_se" in m and m["num_contexts"] == 3
    small = hist.history_list_metrics(lists, deg, popular=2, k=3)
    assert small["coverage@3"] == pytest.approx(6 / 6)  # 0 1 2 3 4 6 of the six engaged items
    share = np.array([1 / 3, 2 / 2, 0.0])  # the empty slot is not a slot
    assert small["popular_share@3"] == pytest.approx(share.mean())
    assert small["popular_share@3_se"] == pytest.approx(share.std(ddof=1) / np.sqrt(3))
    full = lists[[0, 2]]  # without empty slots: evaluation's list metrics
    want = ev.list_metrics(full, np.zeros(2, np.int64), deg, popular=2, k=3)
    assert hist.history_list_metrics(full, deg, popular=2, k=3) == pytest.approx(want)


def test_choose_on_validation_picks_the_known_best_and_ties_go_to_the_earlier(chain):
    v = hist.build_history_queries(chain, "validation")
    answer = {tuple(h.tolist()): t for h, t in zip(v.histories(), v.target)}
    assert len(answer) == len(v)  # every validation history is distinct: the oracle knows each target
    n = chain.num_items

    class Oracle:
        def scores(self, histories):
            return np.stack([np.eye(n)[answer[tuple(h.tolist())]] for h in histories]).astype(np.float32)

    class Anti:
        def scores(self, histories):
            return -Oracle().scores(histories)

    make = {"anti": Anti, "oracle": Oracle, "constant": lambda: hist.PopularityHistoryScorer(chain)}
    best, table = hist.choose_on_validation(lambda p: make[p](), ["anti", "constant", "oracle"], chain)
    assert best == "oracle" and table["oracle"] == 1.0 and table["anti"] < table["oracle"]
    ranks, _ = hist.history_ranks_and_lists(hist.PopularityHistoryScorer(chain), v)
    assert table["constant"] == pytest.approx((ranks <= 10).mean())
    best, _ = hist.choose_on_validation(lambda p: Oracle(), ["first", "second"], chain)
    assert best == "first"


def test_popularity_and_the_last_item_scorer(graph):
    h = [np.array([0, 3]), np.array([6])]
    pop = hist.PopularityHistoryScorer(graph).scores(h)
    np.testing.assert_array_equal(pop, np.tile(graph.train_degree, (2, 1)))
    emb = np.random.default_rng(0).normal(size=(N, 4)).astype(np.float32)
    last = hist.LastItemScorer(ev.EmbeddingScorer(emb)).scores(h)
    np.testing.assert_allclose(last, emb[[3, 6]] @ emb.T, rtol=1e-6)


def test_forward_transitions_window_3_by_a_loop(chain):
    t = np.zeros((chain.num_items, chain.num_items))
    for c in range(chain.num_contexts):
        m = (chain.context_index == c) & (chain.split == "train")
        items = chain.node_id[m][np.argsort(chain.position[m])]
        for a in range(len(items)):
            for b in range(a + 1, min(a + 4, len(items))):
                if items[a] != items[b]:
                    t[items[a], items[b]] += 1
    got = hist.forward_transition_matrix(chain).toarray()
    np.testing.assert_array_equal(got, t)
    assert not np.array_equal(got, got.T)  # directed: the chains run one way
    np.testing.assert_array_equal(got + got.T, ev.transition_matrix(chain).toarray())
    h = [np.array([4, 9, 2]), np.array([17])]
    np.testing.assert_array_equal(hist.transitions_last_item(chain).scores(h), t[[2, 17]])


@pytest.mark.parametrize("dense_max_items", [hist.KNN_DENSE_MAX_ITEMS, 0])
def test_itemknn_is_the_decayed_sum_of_cosine_rows(chain, dense_max_items):
    x = _dense_train(chain)
    co = x.T @ x
    d = np.sqrt(np.maximum(np.diag(co), 1.0))
    cos = co / d[:, None] / d[None, :]
    np.fill_diagonal(cos, 0.0)
    rng = np.random.default_rng(2)
    h = _some_histories(chain, rng) + [np.array([5, 5, 7])]  # a repeat counts at each of its distances
    knn = hist.ItemKNNHistoryScorer(chain, dense_max_items=dense_max_items)
    for decay in (1.0, 0.7):
        want = np.stack([sum(decay**d * cos[i] for d, i in enumerate(row[::-1])) for row in h])
        np.testing.assert_allclose(knn.with_decay(decay).scores(h), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dense_max_items", [ev.RWR_DENSE_MAX_ITEMS, 0])
def test_rwr_is_the_ppr_linear_system_with_the_history_restart(chain, dense_max_items):
    a = 0.5
    x = _dense_train(chain)
    ci = 1.0 / np.maximum(x.sum(1), 1.0)
    ii = 1.0 / np.maximum(x.sum(0), 1.0)
    p = ii[:, None] * x.T @ (ci[:, None] * x)  # item -> context -> item, uniform steps
    rng = np.random.default_rng(4)
    h = _some_histories(chain, rng) + [np.array([3, 3, 8])]  # the restart is uniform over the distinct items
    scorer = hist.RWRHistoryScorer(chain, restart=a, dense_max_items=dense_max_items)
    got = scorer.scores(h)
    for row, items in zip(got, h):
        e = np.zeros(chain.num_items)
        e[np.unique(items)] = 1.0 / len(np.unique(items))
        r = np.linalg.solve(np.eye(chain.num_items) - (1 - a) * p.T, a * e)  # r = a e + (1 - a) P^T r
        np.testing.assert_allclose(row, r, atol=1e-5)
    assert (scorer.iterations != []) == (dense_max_items == 0)


def test_ease_is_the_closed_form(chain):
    x = _dense_train(chain)
    lam = 7.0
    pinv = np.linalg.inv(x.T @ x + lam * np.eye(chain.num_items))
    b = np.eye(chain.num_items) - pinv @ np.diag(1.0 / np.diag(pinv))
    assert np.allclose(np.diag(b), 0.0)
    scorer = hist.EASEScorer(hist.ease_gram(chain), lam)
    np.testing.assert_allclose(scorer.b, b, atol=1e-5)
    h = _some_histories(chain, np.random.default_rng(5)) + [np.array([2, 2])]  # indicator: a repeat counts once
    xh = np.zeros((len(h), chain.num_items))
    for r, items in enumerate(h):
        xh[r, items] = 1.0
    np.testing.assert_allclose(scorer.scores(h), xh @ b, atol=1e-4)


def test_ease_lambdas_scale_with_the_mean_degree_and_ease_is_skipped_above_its_limit(graph, monkeypatch):
    deg = graph.train_degree
    scale = deg[deg > 0].mean() / hist.EASE_REFERENCE_DEGREE
    np.testing.assert_allclose(hist.ease_lambdas(graph), np.array(hist.EASE_LAMBDAS) * scale)
    assert hist.ease_skip_reason(graph) is None
    monkeypatch.setattr(hist, "EASE_MAX_ITEMS", N - 1)
    assert "dense" in hist.ease_skip_reason(graph)
    scorers, skipped, _ = hist.history_baselines(graph, choose=False)
    assert "ease" not in scorers and "ease" in skipped


def test_mean_embedding_is_the_mean_history_vector_dotted_with_every_item():
    rng = np.random.default_rng(6)
    emb = rng.normal(size=(N, 5)).astype(np.float32)
    h = [np.array([1, 4, 4]), np.array([7])]
    want = np.stack([emb[row].mean(0) @ emb.T for row in h])
    np.testing.assert_allclose(hist.MeanEmbeddingScorer(emb).scores(h), want, rtol=1e-5, atol=1e-6)


def test_every_baseline_is_built_chosen_on_validation_and_evaluated(chain):
    emb = np.random.default_rng(7).normal(size=(chain.num_items, 4)).astype(np.float32)
    scorers, skipped, chosen = hist.history_baselines(chain, ev.EmbeddingScorer(emb), emb)
    assert set(scorers) == {
        "popularity",
        "transitions_last_item",
        "item_to_item_last",
        "itemknn_history",
        "rwr_history",
        "ease",
        "mean_embedding",
    }
    assert skipped == {}
    assert chosen["itemknn_history"]["value"] in hist.ITEMKNN_DECAYS
    assert len(chosen["ease"]["validation"]) == len(hist.EASE_LAMBDAS)
    q = hist.build_history_queries(chain, "test")
    for name, scorer in scorers.items():
        r, lists = hist.history_ranks_and_lists(scorer, q)
        m = hist.history_metrics(r, lists, chain.train_degree)
        assert 0.0 <= m["hr@10"] <= 1.0 and m["num_contexts"] == len(q), name
    # on ordered chains the next item follows the last one: the forward counts beat popularity
    trans = hist.evaluate_history(scorers["transitions_last_item"], chain)
    assert trans["hr@10"] > hist.evaluate_history(scorers["popularity"], chain)["hr@10"]
