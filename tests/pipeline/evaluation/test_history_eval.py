"""The evaluator's history section (pipeline/evaluation/history.py) against a direct recomputation with
modules/history on the same contexts: every row's ranks and metrics, the tower's vectors computed by hand from the
padded histories, the paired verdicts, EASE's skip and the --eval-contexts sample."""

import numpy as np
import pytest

from modules import context_tower as ct
from modules import evaluation as ev
from modules import history
from pipeline.evaluation import history as history_eval
from tests.fixtures import community_histories

MAX_LEN = 5


@pytest.fixture(scope="module")
def setup():
    g = community_histories(num_items=300, community_size=30, num_contexts=240, length=8)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(g.num_items, 8)).astype(np.float32)
    query = rng.normal(size=(g.num_items, 8)).astype(np.float32)
    tower = ct.build_context_tower(ct.ContextTowerConfig(form="set", max_len=MAX_LEN, num_layers=1), emb)
    return g, emb, query, tower


def _tower_ranks(tower, q):
    """Ranks of the tower's u_c . v_i by hand: the last MAX_LEN items padded, the model called directly."""
    ids, w = ct.pad_histories([h[-MAX_LEN:] for h in q.histories()], MAX_LEN)
    u = tower({"history": ids, "weights": w}, training=False).numpy()
    s = u @ tower.item_vectors().numpy().T

    class Fixed:
        def scores(self, hs):
            return s[: len(hs)]

    return history.history_ranks_and_lists(Fixed(), q, batch_size=len(q))


def test_the_history_section_equals_a_direct_recomputation(setup):
    g, emb, query, tower = setup
    rep = history_eval.history_evaluation(g, emb, query, tower, {"form": "set"}, max_contexts=150)
    base, skipped, chosen = history.history_baselines(
        g, ev.EmbeddingScorer(emb, query_emb=query), emb, max_contexts=150
    )
    assert skipped == {} and rep["history_evaluation"]["chosen"] == chosen
    assert set(rep["history_metrics"]) == {"context_tower", *history_eval.BASELINES}
    test_ranks = {}
    for split, block in (("test", "history_metrics"), ("validation", "history_validation_metrics")):
        q = history.build_history_queries(g, split, max_contexts=150)
        assert len(q) == 150 < q.total_contexts
        for name in history_eval.BASELINES + ("context_tower",):
            r, lists = (
                _tower_ranks(tower, q) if name == "context_tower" else history.history_ranks_and_lists(base[name], q)
            )
            want = history.history_metrics(r, lists, g.train_degree)
            want["coverage@10_se"] = history_eval.coverage_se(lists, g.train_degree)
            got = rep[block][name]
            for m in history_eval.METRICS:
                assert got[m] == pytest.approx(want[m], abs=1e-12) and got[m + "_se"] == pytest.approx(want[m + "_se"])
            assert (got["num_contexts"], got["total_contexts"]) == (150, q.total_contexts)
            if split == "test":
                test_ranks[name] = r
    for b in history_eval.BASELINES:
        verdict, diff, se = ev.paired_verdict(test_ranks["context_tower"], test_ranks[b], "hr@10", 2.0)
        assert rep["history_verdicts"][b] == {"recommend": verdict}
        d = rep["history_verdict_details"][b]["recommend"]
        assert (d["diff"], d["se"], d["num_contexts"]) == pytest.approx((diff, se, 150))
    assert rep["history_evaluation"]["in_blessing"] is True and rep["history_evaluation"]["tower"]["max_len"] == MAX_LEN


def test_item_to_item_last_is_the_served_scorer_from_the_last_item(setup):
    g, emb, query, _ = setup
    rep = history_eval.history_evaluation(g, emb, query, None, max_contexts=60)
    q = history.build_history_queries(g, "test", max_contexts=60)
    last = np.array([h[-1] for h in q.histories()])
    s = query[last] @ emb.T  # u_q . z_i of the history's last item

    class Fixed:
        def scores(self, hs):
            return s[: len(hs)]

    r, lists = history.history_ranks_and_lists(Fixed(), q, batch_size=len(q))
    assert rep["history_metrics"]["item_to_item_last"]["mrr"] == pytest.approx(ev.metrics_from_ranks(r)["mrr"])
    assert "context_tower" not in rep["history_metrics"] and rep["history_verdicts"] == {}


def test_ease_is_skipped_with_its_reason_above_the_item_limit(setup, monkeypatch):
    g, emb, _, _ = setup
    monkeypatch.setattr(history, "EASE_MAX_ITEMS", g.num_items - 1)
    rep = history_eval.history_evaluation(g, emb, None, None, max_contexts=40)
    assert "ease" not in rep["history_metrics"] and "ease" not in rep["history_validation_metrics"]
    assert "more than" in rep["history_evaluation"]["skipped"]["ease"]


def test_the_coverage_se_is_a_bootstrap_over_contexts():
    deg = np.ones(40, np.int64)
    same = np.tile(np.arange(10), (30, 1))  # every context the same list: resampling cannot change coverage
    assert history_eval.coverage_se(same, deg) == 0.0
    rng = np.random.default_rng(0)
    mixed = np.stack([rng.choice(40, 10, replace=False) for _ in range(30)])
    se = history_eval.coverage_se(mixed, deg)
    assert 0.0 < se < 0.1 and se == history_eval.coverage_se(mixed, deg)  # seeded


def test_the_one_item_tower_row_is_the_tower_asked_with_each_query_item_alone(setup):
    """evaluate_all's context_tower_one_item: u of the history [q] (the model called on a padded row by hand)
    . the tower's item vectors, ranked by the protocol's item-to-item queries; reported, not a baseline."""
    from pipeline.evaluation import blessing, evaluate

    g, emb, query, tower = setup
    res = evaluate.evaluate_all(g, emb, None, query, max_contexts=80, tower=tower)
    ids = np.full((g.num_items, MAX_LEN), -1, np.int64)
    ids[:, -1] = np.arange(g.num_items)
    u = tower({"history": ids, "weights": (ids >= 0).astype(np.float32)}, training=False).numpy()
    s = u @ tower.item_vectors().numpy().T

    class ByHand:
        def scores(self, nodes):
            return s[np.asarray(nodes)]

    for split, block in (("test", res.test), ("validation", res.validation)):
        q = ev.build_queries(g, split, max_contexts=80)
        (r,), _ = ev.ranks_and_lists(ByHand(), [q], np.zeros(0, np.int64))
        want = ev.metrics_from_ranks(r)
        got = block[evaluate.TOWER_ONE_ITEM]
        assert got["hr@10"] == pytest.approx(want["hr@10"]) and got["mrr"] == pytest.approx(want["mrr"])
    assert evaluate.TOWER_ONE_ITEM not in res.verdicts.get("popularity", {})
    report = {"metrics": res.test}
    assert evaluate.TOWER_ONE_ITEM not in blessing.report_baselines(report) and "popularity" in res.test
