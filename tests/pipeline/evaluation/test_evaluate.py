"""The evaluator's logic (pipeline/evaluation/evaluate.py): every model, RWR included, gets the list metrics of its
related-items lists, checked against a plain-Python recomputation from the lists' definition."""

import dataclasses
import os

import numpy as np
import pytest

from modules import evaluation as ev
from modules import progress
from pipeline.evaluation import evaluate
from pipeline.graph.from_csv import graph_from_csv

N_ITEMS, N_CTX = 40, 60


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(3)
    (d / "items.csv").write_text("item_id\n" + "".join(f"{i}\n" for i in range(N_ITEMS)))
    rows = ["context_id,item_id,timestamp"]
    for c in range(N_CTX):
        items = rng.choice(
            N_ITEMS, rng.integers(4, 12), replace=False, p=np.r_[np.full(10, 0.05), np.full(30, 0.5 / 30)]
        )
        rows += [f"u{c},{i},{t}" for t, i in enumerate(items)]
    (d / "interactions.csv").write_text("\n".join(rows) + "\n")
    g = graph_from_csv(str(d))
    feats = {
        "genres_multi_hot": (rng.random((N_ITEMS, 5)) < 0.3).astype(np.float32),
        "year": rng.normal(size=N_ITEMS).astype(np.float32),
        "node_id": np.arange(N_ITEMS, dtype=np.int64),
    }
    emb = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    return g, feats, emb


def _reference_lists(score_rows: np.ndarray, deg: np.ndarray, cats: np.ndarray) -> dict:
    """The list metrics from their definition, in plain Python."""
    queries = [i for i in range(len(deg)) if deg[i] >= 5]
    lists = {
        q: sorted((j for j in range(len(deg)) if j != q), key=lambda j: (-score_rows[q][j], j))[:10] for q in queries
    }
    popular = set(sorted(range(len(deg)), key=lambda i: (-deg[i], i))[:50])
    engaged = {i for i in range(len(deg)) if deg[i] >= 1}
    shown = {j for lst in lists.values() for j in lst}
    slots = [(q, j) for q, lst in lists.items() for j in lst]
    with_value = [(q, j) for q, j in slots if cats[q].any()]
    return {
        "coverage@10": len(shown & engaged) / len(engaged),
        "popular_share@10": sum(j in popular for _, j in slots) / len(slots),
        "feature_agreement@10": sum(bool((cats[q] & cats[j]).any()) for q, j in with_value) / len(with_value),
    }


def test_every_model_gets_list_metrics_equal_to_a_plain_python_reference(small, capsys, monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS", dataclasses.replace(progress.PROGRESS, delay_s=0.0, interval_s=0.0))
    g, feats, emb = small
    cats, col = evaluate.categorical_values(feats)
    assert col == "genres" and cats.dtype == bool and cats.shape == (N_ITEMS, 5)
    res = evaluate.evaluate_all(g, emb, feats, categories=cats)
    test, val, lists = res.test, res.validation, res.lists
    assert set(test) == {"popularity", "cooccurrence_knn", "transition_counts", "rwr", "features_only", "pinsage"}
    assert set(val) == set(test) and "coverage@10" not in val["pinsage"]  # the lists do not depend on the split
    deg = g.train_degree
    assert lists["query_items"] == lists["total_query_items"] == int((deg >= 5).sum()) > 5
    rows = {
        "pinsage": emb @ emb.T,
        "rwr": ev.rwr_matrix(g),
        "popularity": np.tile(deg.astype(np.float32), (N_ITEMS, 1)),
        "cooccurrence_knn": ev.cooccurrence_matrix(g).toarray(),
    }
    for name, s in rows.items():
        want = _reference_lists(s, deg, cats)
        for k, v in want.items():
            assert test[name][k] == pytest.approx(v), (name, k)
    # popularity serves the same list to everyone: coverage = its 10 (or 11) items over the engaged ones
    assert test["popularity"]["coverage@10"] <= 11 / (deg >= 1).sum()
    err = capsys.readouterr()
    assert "queries (100 %" in err.err and err.out == ""  # progress on stderr only


def test_no_categorical_feature_means_no_feature_agreement(small):
    g, feats, emb = small
    plain = {k: v for k, v in feats.items() if not k.endswith("_multi_hot")}
    assert evaluate.categorical_values(plain) == (None, "")
    test = evaluate.evaluate_all(g, emb, plain, max_contexts=10).test
    assert "coverage@10" in test["pinsage"] and "feature_agreement@10" not in test["pinsage"]


def test_the_oov_bucket_is_not_a_shared_value(small, tmp_path):
    _, feats, _ = small
    assets = tmp_path / "transform_fn" / "assets"
    os.makedirs(assets)
    (assets / "genres_vocab").write_text("Drama\nComedy\nWar\nWestern\n")  # 4 values: column 4 is <oov>
    cats, _ = evaluate.categorical_values(feats, str(tmp_path))
    mh = feats["genres_multi_hot"] > 0
    np.testing.assert_array_equal(cats[:, :4], mh[:, :4])
    assert mh[:, 4].any() and not cats[:, 4].any()


def test_ablation_rows_get_the_list_metrics_too(small):
    g, feats, emb = small
    cats, _ = evaluate.categorical_values(feats)
    other = np.random.default_rng(9).normal(size=emb.shape).astype(np.float32)
    test = evaluate.evaluate_all(g, emb, None, ablations={"other": (other, None)}, categories=cats).test
    row = test[evaluate.ABLATION_PREFIX + "other"]
    want = _reference_lists(other @ other.T, g.train_degree, cats)
    assert {k: row[k] for k in want} == pytest.approx(want)


def test_a_query_head_model_gets_a_similar_items_row_scored_z_dot_z(small):
    """With query vectors, `pinsage` ranks u . z (related_items) and `pinsage_similar` z . z (similar_items): each
    one's lists equal a plain-Python ranking by its own scores, and the z . z row is the head-less model's."""
    g, feats, emb = small
    cats, _ = evaluate.categorical_values(feats)
    query = np.random.default_rng(11).normal(size=emb.shape).astype(np.float32)
    test, val = evaluate.evaluate_all(g, emb, None, query_emb=query, categories=cats)[:2]
    assert {"pinsage", evaluate.SIMILAR_MODEL} <= set(test) and evaluate.SIMILAR_MODEL in val
    for name, s in (("pinsage", query @ emb.T), (evaluate.SIMILAR_MODEL, emb @ emb.T)):
        want = _reference_lists(s, g.train_degree, cats)
        assert {k: test[name][k] for k in want} == pytest.approx(want), name
    assert test["pinsage"]["mrr"] != test[evaluate.SIMILAR_MODEL]["mrr"]
    plain, plain_val = evaluate.evaluate_all(g, emb, None, categories=cats)[:2]
    assert evaluate.SIMILAR_MODEL not in plain  # no head: the two signatures are one ranking, one row
    assert test[evaluate.SIMILAR_MODEL] == plain["pinsage"] and val[evaluate.SIMILAR_MODEL] == plain_val["pinsage"]


def test_progress_prints_plain_lines_off_a_terminal_and_leaves_the_numbers_alone(small, monkeypatch):
    """The evaluator's meter (modules/progress.py) counts ranked queries; the ranks are the same with and without."""
    import io

    monkeypatch.setattr(progress, "PROGRESS", dataclasses.replace(progress.PROGRESS, delay_s=0.0, interval_s=0.0))
    g = small[0]
    q = ev.build_queries(g, "test")
    buf = io.StringIO()  # not a TTY: plain lines
    meter = progress.Progress("evaluation", len(q) + 3, "queries", stream=buf)
    meter.describe("evaluation: popularity")
    r = ev.ranks(ev.PopularityScorer(g), q, progress=meter)
    ev.top_k_lists(ev.PopularityScorer(g), np.array([0, 1, 2]), g.num_items, batch_size=1, progress=meter)
    meter.close()
    np.testing.assert_array_equal(r, ev.ranks(ev.PopularityScorer(g), q))
    lines = buf.getvalue().splitlines()
    assert lines and all(ln.startswith("[pinsage] evaluation: popularity: ") for ln in lines)
    assert f"{len(q) + 3}/{len(q) + 3} queries (100 %" in lines[-1] and "done in" in lines[-1]


def _hits(scorer, queries) -> np.ndarray:
    return (ev.ranks(scorer, queries) <= 10).astype(float)


def _plain_buckets(deg) -> list[int]:
    """Head / torso / tail (0 1 2) of every item from the definition, in plain Python."""
    order = sorted(range(len(deg)), key=lambda i: (-deg[i], i))
    total, before, out = sum(deg), 0, [0] * len(deg)
    for i in order:
        out[i] = 0 if before < total / 3 else 1 if before < 2 * total / 3 else 2
        before += deg[i]
    return out


def test_verdicts_and_the_popularity_breakdown_equal_a_plain_recomputation(small):
    """Each signature's verdict against each baseline is the paired difference of test hits, recomputed here from
    separately ranked contexts; by_popularity is HR@10 over the contexts whose query item falls in each third."""
    g, feats, emb = small
    query = np.random.default_rng(11).normal(size=emb.shape).astype(np.float32)
    res = evaluate.evaluate_all(g, emb, feats, query_emb=query)
    q = ev.build_queries(g, "test")
    hits = {
        "pinsage": _hits(ev.EmbeddingScorer(emb, query_emb=query), q),
        evaluate.SIMILAR_MODEL: _hits(ev.EmbeddingScorer(emb), q),
        "popularity": _hits(ev.PopularityScorer(g), q),
        "transition_counts": _hits(ev.ItemItemScorer(ev.transition_matrix(g)), q),
        "rwr": _hits(ev.DenseScorer(ev.rwr_matrix(g)), q),
    }
    assert set(res.verdicts) == set(res.verdict_details) == set(evaluate.BASELINES)
    for base in ("popularity", "transition_counts", "rwr"):
        for signature, model in (("related_items", "pinsage"), ("similar_items", evaluate.SIMILAR_MODEL)):
            d = hits[model] - hits[base]
            se = d.std(ddof=1) / np.sqrt(len(d))
            want = "ahead" if d.mean() > 2 * se and d.mean() > 0 else "behind" if d.mean() < -2 * se else "within_noise"
            got = res.verdict_details[base][signature]
            assert res.verdicts[base][signature] == want, (base, signature)
            assert got == {
                "metric": "hr@10",
                "diff": pytest.approx(d.mean()),
                "se": pytest.approx(se),
                "num_contexts": len(q),
            }
    buckets = np.array(_plain_buckets(g.train_degree.tolist()))[q.query]
    assert set(res.by_popularity) == set(res.test)
    for model, h in hits.items():
        for b, name in enumerate(("head", "torso", "tail")):
            row = res.by_popularity[model][name]
            assert row["num_contexts"] == int((buckets == b).sum())
            if row["num_contexts"]:
                p = h[buckets == b].mean()
                assert row["hr@10"] == pytest.approx(p) and row["hr@10_se"] == pytest.approx(
                    np.sqrt(p * (1 - p) / row["num_contexts"])
                )
    for m in [*res.test.values(), *res.validation.values()]:
        assert {"hr@10_se", "mrr_se", "ndcg@10_se", "recall@10_se", "hr@500_se"} <= set(m)
    assert "popular_share@10_se" in res.test["pinsage"] and "coverage@10_se" not in res.test["pinsage"]


def test_verdicts_take_the_metric_and_z_and_need_a_model_row(small):
    g, feats, emb = small
    res = evaluate.evaluate_all(g, emb, None, verdict_metric="mrr", z=0.0)
    assert set(res.verdicts) == {"popularity", "cooccurrence_knn", "transition_counts", "rwr"}  # no features
    for base, by_signature in res.verdicts.items():
        related, similar = res.verdict_details[base]["related_items"], res.verdict_details[base]["similar_items"]
        assert related == similar and related["metric"] == "mrr"  # no query head: one ranking for both
        assert by_signature["related_items"] == (
            "ahead" if related["diff"] > 0 else "behind" if related["diff"] < 0 else "within_noise"
        )
    baselines_only = evaluate.evaluate_all(g, None, feats, max_contexts=10)
    assert baselines_only.verdicts == baselines_only.verdict_details == {}
    assert set(baselines_only.by_popularity) == set(baselines_only.test)


def test_the_report_carries_the_protocol_the_verdicts_and_the_breakdown(small, tmp_path, monkeypatch):
    from pipeline.graph import split

    monkeypatch.setattr(evaluate, "_plots", lambda *a, **k: {})  # the plots are report.py's own tests
    g, feats, emb = small
    other = np.random.default_rng(9).normal(size=emb.shape).astype(np.float32)
    rep = evaluate.evaluation_report(
        g,
        (emb, None, {"other": (other, None)}),
        feats,
        {},
        transform_graph_uri=str(tmp_path),
        out_dir=str(tmp_path),
        dataset="toy",
        verdict_metric="ndcg@10",
        z=3.0,
    )
    p = rep["protocol"]
    assert p["version"] == 2 and p["split_seed"] == split.SPLIT_SEED and p["test_query"] == "validation item"
    assert p["validation_query"] == "last train item" and "hash" in p["tie_break"] and "mask" in p["text"]
    assert set(rep["verdicts"]) == set(evaluate.BASELINES)
    assert all(d["related_items"]["metric"] == "ndcg@10" for d in rep["verdict_details"].values())
    assert set(rep["by_popularity"]) == set(rep["metrics"]) and "ablation:other" not in rep["by_popularity"]
    assert set(rep["ablations"]["other"]["by_popularity"]) == {"head", "torso", "tail"}
