"""The blessing (pipeline/evaluation/blessing.py): a model is blessed when, per served signature, it is not behind
the best of that signature's baselines on the blessing metric (a paired difference past z SEs); what report.json
and the CLI say about it; and the evaluator's TFX blessing artifact (BLESSED / NOT_BLESSED file, `blessed`)."""

import dataclasses
import os

import pytest

from pipeline import cli, configs
from pipeline.evaluation import blessing

BASELINES = ("popularity", "cooccurrence_knn", "transition_counts", "rwr", "features_only")


def report(details: dict, hr: dict | None = None, query_head: bool = True) -> dict:
    """A report.json with test hr@10 per row (`hr`, default: transition_counts best, features_only best of the
    similarity baselines) and the paired `details` {baseline: {signature: (diff, se)}}."""
    hr = hr or {
        "pinsage": 0.10,
        "pinsage_similar": 0.08,
        "popularity": 0.03,
        "cooccurrence_knn": 0.06,
        "transition_counts": 0.11,
        "rwr": 0.09,
        "features_only": 0.07,
    }
    if not query_head:
        hr = {k: v for k, v in hr.items() if k != "pinsage_similar"}
    verdicts, verdict_details = {}, {}
    for b, per in details.items():
        verdict_details[b] = {
            s: {"metric": "hr@10", "diff": d, "se": se, "num_contexts": 900} for s, (d, se) in per.items()
        }
        verdicts[b] = {s: blessing.verdict_of(d, se, 2.0) for s, (d, se) in per.items()}
    return {
        "metrics": {k: {"hr@10": v, "mrr": v / 2} for k, v in hr.items()},
        "verdicts": verdicts,
        "verdict_details": verdict_details,
    }


def details(related=(0.0, 0.01), similar=(0.0, 0.01), **others) -> dict:
    """Paired (diff, se) of every baseline; `related` against transition_counts (related_items' best baseline),
    `similar` against features_only (similar_items' best); `others` = {baseline: {signature: (diff, se)}}."""
    out = {b: {"related_items": (0.05, 0.01), "similar_items": (0.05, 0.01)} for b in BASELINES}
    out["transition_counts"]["related_items"] = related
    out["features_only"]["similar_items"] = similar
    for b, per in others.items():
        out[b].update(per)
    return out


def test_behind_the_best_baseline_is_not_blessed():
    got = blessing.decide(report(details(related=(-0.03, 0.01))))
    assert got["blessed"] is False
    assert got["reasons"] == ["related_items: behind transition_counts on hr@10 (diff -0.0300, SE 0.0100)"]
    rel = got["signatures"]["related_items"]
    assert (rel["model"], rel["best_baseline"], rel["verdict"]) == ("pinsage", "transition_counts", "behind")
    assert rel["baselines"] == sorted(BASELINES)  # related_items: every baseline of the report
    assert got["signatures"]["similar_items"]["verdict"] == "within_noise"
    got = blessing.decide(report(details(similar=(-0.05, 0.01))))
    assert not got["blessed"] and got["reasons"][0].startswith("similar_items: behind features_only")


def with_history(rep: dict, tower_vs: dict, hr: dict) -> dict:
    """`rep` with history rows (test hr@10 per row `hr`) and the tower's paired (diff, se) per baseline."""
    rep = dict(rep, history_metrics={k: {"hr@10": v} for k, v in hr.items()})
    rep["history_verdict_details"] = {
        b: {"recommend": {"metric": "hr@10", "diff": d, "se": se, "num_contexts": 900}}
        for b, (d, se) in tower_vs.items()
    }
    rep["history_verdicts"] = {b: {"recommend": blessing.verdict_of(d, se, 2.0)} for b, (d, se) in tower_vs.items()}
    return rep


def test_recommend_is_judged_against_the_best_history_baseline_when_a_tower_was_trained():
    hr = {"context_tower": 0.20, "ease": 0.25, "itemknn_history": 0.18, "popularity": 0.05}
    behind_ease = {"ease": (-0.05, 0.01), "itemknn_history": (0.02, 0.01), "popularity": (0.15, 0.01)}
    got = blessing.decide(with_history(report(details()), behind_ease, hr))
    rec = got["signatures"]["recommend"]
    assert (rec["model"], rec["best_baseline"], rec["verdict"]) == ("context_tower", "ease", "behind")
    assert rec["baselines"] == ["ease", "itemknn_history", "popularity"]
    # the tower behind does not refuse the version: it is left out of it
    assert got["blessed"] is True and got["recommend_blessed"] is False and got["reasons"] == []
    assert got["left_out"] == {"recommend": "recommend: behind ease on hr@10 (diff -0.0500, SE 0.0100)"}
    # ... and the item tower behind refuses the version whatever the tower's verdict
    worse = blessing.decide(with_history(report(details(related=(-0.03, 0.01))), behind_ease, hr))
    assert (worse["blessed"], worse["recommend_blessed"], list(worse["left_out"])) == (False, False, ["recommend"])
    assert [r.split(":")[0] for r in worse["reasons"]] == ["related_items"]
    # the best baseline by hr@10 is the one compared: a loss to a weaker one does not count
    hr_knn_best = dict(hr, ease=0.10, itemknn_history=0.19)
    got = blessing.decide(with_history(report(details()), behind_ease, hr_knn_best))
    assert got["blessed"] is True and got["signatures"]["recommend"]["best_baseline"] == "itemknn_history"
    assert got["recommend_blessed"] is True and got["left_out"] == {}
    assert any(
        line.startswith("recommend (context_tower") and "behind ease" in line
        for line in blessing.summary_lines(
            dict(with_history(report(details()), behind_ease, hr_knn_best), blessing=got)
        )
    )
    # no tower row (a run with --no-context-tower): recommend is not judged
    untowered = blessing.decide(report(details()))
    assert "recommend" not in untowered["signatures"] and untowered["recommend_blessed"] is None


@pytest.mark.parametrize("related", [(-0.015, 0.01), (0.0, 0.0), (0.015, 0.01), (0.03, 0.01)])
def test_within_noise_or_ahead_is_blessed(related):
    got = blessing.decide(report(details(related=related)))
    assert got["blessed"] is True and got["reasons"] == []
    want = "within_noise" if related[0] <= 0.02 else "ahead"
    assert got["signatures"]["related_items"]["verdict"] == want
    assert (got["metric"], got["z"]) == ("hr@10", 2.0)


def test_only_the_signatures_own_baselines_count():
    # similar_items far behind transition_counts, which is not a similarity baseline: still blessed
    got = blessing.decide(report(details(transition_counts={"similar_items": (-0.2, 0.01)})))
    assert got["blessed"] is True
    sim = got["signatures"]["similar_items"]
    assert sim["baselines"] == list(configs.SIMILARITY_BASELINES) and sim["best_baseline"] == "features_only"
    assert sim["model"] == "pinsage_similar"
    # ... and with it in the set, it refuses
    config = dataclasses.replace(configs.BLESSING, similar_items=("transition_counts", "features_only"))
    got = blessing.decide(report(details(transition_counts={"similar_items": (-0.2, 0.01)})), config)
    assert got["blessed"] is False and got["reasons"][0].startswith("similar_items: behind transition_counts")


def test_the_best_baseline_is_the_one_compared():
    # behind popularity, which is not the best on hr@10: the verdict against the best one decides
    assert blessing.decide(report(details(popularity={"related_items": (-0.05, 0.01)})))["blessed"] is True
    hr = {"pinsage": 0.1, "pinsage_similar": 0.1, "popularity": 0.5, **{b: 0.01 for b in BASELINES[1:]}}
    got = blessing.decide(report(details(popularity={"related_items": (-0.05, 0.01)}), hr=hr))
    assert got["signatures"]["related_items"]["best_baseline"] == "popularity" and got["blessed"] is False


def test_z_comes_from_the_config():
    r = report(details(related=(-0.015, 0.01)))
    assert blessing.decide(r)["blessed"] is True
    assert blessing.decide(r, dataclasses.replace(configs.BLESSING, z=1.0))["blessed"] is False


def test_without_a_query_head_both_signatures_are_the_model_row():
    got = blessing.decide(report(details(similar=(-0.05, 0.01)), query_head=False))
    assert got["signatures"]["similar_items"]["model"] == "pinsage" and got["blessed"] is False


def test_an_older_report_is_refused_with_a_reason():
    old = report(details())
    del old["verdicts"], old["verdict_details"]
    got = blessing.decide(old)
    assert got["blessed"] is False and "no paired verdicts" in got["reasons"][0]
    # verdicts on another metric than the blessing's: refused, not reinterpreted
    got = blessing.decide(report(details()), dataclasses.replace(configs.BLESSING, metric="mrr"))
    assert got["blessed"] is False and "verdicts are on hr@10" in got["reasons"][0]
    # a signature whose baselines are all missing from the report
    got = blessing.decide(report(details()), dataclasses.replace(configs.BLESSING, similar_items=("nope",)))
    assert got["blessed"] is False and "none of its baselines ['nope']" in got["reasons"][0]


def test_the_model_rows_are_the_evaluators():
    from pipeline.evaluation import evaluate

    assert blessing.SIMILAR_MODEL == evaluate.SIMILAR_MODEL


def test_what_the_cli_prints():
    r = report(details(related=(-0.03, 0.01)))
    r["blessing"] = blessing.decide(r)
    lines = blessing.summary_lines(r)
    assert lines[0] == (
        "related_items (pinsage, test hr@10): ahead of cooccurrence_knn, features_only, popularity, rwr; "
        "behind transition_counts (best)"
    )
    assert lines[1] == (  # every baseline reported; only the gated one (features_only) is marked best
        "similar_items (pinsage_similar, test hr@10): ahead of cooccurrence_knn, popularity, rwr, transition_counts; "
        "within noise of features_only (best)"
    )
    not_pushed = {"pushed": False, "version": None}
    line = blessing.blessing_line(r, not_pushed)
    assert line.startswith("NOT blessed: related_items: behind transition_counts")
    assert line.endswith("; nothing pushed (rerun with --push-unblessed to push anyway)")
    assert blessing.blessing_line(r, {"pushed": True, "version": 4}).endswith(
        "; pushed version 4 anyway (--push-unblessed)"
    )
    ok = report(details())
    ok["blessing"] = blessing.decide(ok)
    assert blessing.blessing_line(ok, {"pushed": True, "version": 3}) == "blessed: pushed version 3"
    assert "stopped before the Pusher" in blessing.blessing_line(ok, None)
    assert blessing.blessing_line({}, None) is None and blessing.summary_lines({}) == []


def test_what_the_cli_prints_of_a_version_pushed_without_its_tower():
    hr = {"context_tower": 0.20, "ease": 0.25, "popularity": 0.05}
    r = with_history(report(details()), {"ease": (-0.05, 0.01), "popularity": (0.15, 0.01)}, hr)
    r["blessing"] = blessing.decide(r)
    why = "(recommend: behind ease on hr@10 (diff -0.0500, SE 0.0100))"
    assert blessing.blessing_line(r, {"pushed": True, "version": 1, "left_out": ["recommend"]}) == (
        f"blessed: pushed version 1 without recommend {why}"
    )
    assert blessing.blessing_line(r, {"pushed": True, "version": 2, "left_out": []}) == (
        f"blessed: pushed version 2 with recommend NOT blessed {why} anyway (--push-unblessed)"
    )
    assert blessing.blessing_line(r, None).endswith(f"; recommend NOT blessed {why}")
    # a refused version names the tower's reason after its own
    r = with_history(report(details(related=(-0.03, 0.01))), {"ease": (-0.05, 0.01)}, hr)
    r["blessing"] = blessing.decide(r)
    line = blessing.blessing_line(r, {"pushed": False, "version": None})
    assert (
        line.startswith("NOT blessed: related_items: behind transition_counts") and "; recommend: behind ease" in line
    )


def test_serve_and_query_serves_nothing_when_nothing_was_pushed(monkeypatch, capsys, tmp_path):
    from pipeline import driver

    monkeypatch.setattr(driver, "pushed_model", lambda output: {"pushed": False, "version": None})
    assert cli.serve_and_query(str(tmp_path)) == {}
    assert "nothing served: the model was NOT blessed" in capsys.readouterr().out


def _blessing_artifact(uri):
    from tfx.types import standard_artifacts

    a = standard_artifacts.ModelBlessing()
    a.uri = str(uri)
    return a


@pytest.mark.parametrize("blessed", [True, False])
def test_the_evaluator_writes_the_tfx_blessing(blessed, tmp_path):
    from tfx.components.util import model_utils

    from pipeline.components import evaluator

    a = _blessing_artifact(tmp_path / "blessing")
    evaluator.write_blessing(a, blessed, "/models/1")
    assert os.listdir(a.uri) == ["BLESSED" if blessed else "NOT_BLESSED"]
    assert os.path.getsize(os.path.join(a.uri, os.listdir(a.uri)[0])) == 0
    assert a.get_int_custom_property("blessed") == int(blessed)
    assert model_utils.is_model_blessed(a) is blessed  # what TFX's own Pusher checks
    assert not a.has_custom_property("recommend_blessed")  # no tower judged: no tower blessing
    for tower in (True, False):
        t = _blessing_artifact(tmp_path / f"tower-{tower}")
        evaluator.write_blessing(t, blessed, "/models/1", recommend_blessed=tower)
        assert t.get_int_custom_property("recommend_blessed") == int(tower)
        assert model_utils.is_model_blessed(t) is blessed  # the version's blessing is the item tower's alone


def test_the_evaluator_takes_the_blessing_config():
    from pipeline.components import evaluator

    config = dataclasses.replace(configs.BLESSING, metric="mrr", z=3.0, related_items=("rwr",), push_unblessed=True)
    back = evaluator.blessing_config(evaluator.exec_properties(config))
    assert back == dataclasses.replace(config, push_unblessed=False)  # push_unblessed is the Pusher's
    assert evaluator.blessing_config({}) == configs.BLESSING
    assert evaluator.blessing_config(evaluator.exec_properties(configs.BLESSING)) == configs.BLESSING
