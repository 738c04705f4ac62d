"""`pinsage run --cold-start-share`: the item-cold-start experiment end to end on a tiny synthetic catalogue. The
section's figures are recomputed here from what was served (the refreshed version's and the run's own vectors)
with the brute-force protocol of tests/pipeline/evaluation/test_cold_start.py."""

import json
import os

import numpy as np
import pytest

from pipeline.data import datasets
from pipeline.evaluation import cold_start
from pipeline.graph.from_csv import graph_from_csv
from schema import versions
from tests.pipeline.evaluation.test_cold_start import brute_hr
from tests.pipeline.refresh.test_embed import HPARAMS, cli, ok

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cold")
    data = str(root / "data")
    datasets.materialise("synthetic", data, items=60, contexts=30, edges=400, seed=2)
    out = str(root / "run")
    flags = ["--hparams", HPARAMS, "--num-walks", "50", "--no-context-tower", "--push-unblessed"]
    proc = ok(cli("run", "--data-dir", data, "--output", out, *flags, "--cold-start-share", "0.2"))
    with open(os.path.join(out, "report.json")) as f:
        return data, out, json.load(f), proc


def served(version_dir: str, graph) -> tuple[np.ndarray, np.ndarray]:
    """A version's (emb, query_emb) in the graph's node order."""
    a = versions.read_serving_arrays(versions.index_dir(version_dir))
    row = {i.decode(): k for k, i in enumerate(a.item_ids.tolist())}
    at = np.array([row[str(i)] for i in graph.item_ids])
    q = a.query_embeddings if a.query_embeddings is not None else a.embeddings
    return np.asarray(a.embeddings)[at], np.asarray(q)[at]


def test_the_section_is_what_the_served_vectors_give(run):
    data, out, report, _ = run
    cold = report["cold_start"]
    held_ids = cold_start.read_held_out(cold["paths"]["data"])
    assert len(held_ids) == round(0.2 * 60) == cold["hold_out"]["items"]
    g = graph_from_csv(data)
    held = np.isin(g.item_ids.astype(str), held_ids)
    assert cold["held_out_items"] == held.sum()
    refreshed = served(cold["paths"]["version"], g)
    retrained = served(os.path.join(out, "serving_model", "pinsage", "1"), g)
    for model, (emb, q) in ((cold_start.MODEL, refreshed), (cold_start.RETRAINED, retrained)):
        t_hits, q_hits = brute_hr(g, emb, q, held)
        sets = cold["sets"]
        assert sets[cold_start.TARGETS]["num_contexts"] == len(t_hits) > 0
        assert sets[cold_start.TARGETS]["metrics"][model]["hr@10"] == pytest.approx(t_hits.mean(), abs=1e-9)
        assert sets[cold_start.QUERIES]["metrics"][model]["hr@10"] == pytest.approx(q_hits.mean(), abs=1e-9)


def test_the_held_out_run_never_saw_them_and_the_runs_version_is_untouched(run):
    data, out, report, proc = run
    cold = report["cold_start"]
    held_ids = set(cold_start.read_held_out(cold["paths"]["data"]))
    trained = graph_from_csv(cold["paths"]["data"])
    assert not held_ids & set(trained.item_ids.astype(str).tolist())
    # the refreshed version went to OUT/cold_start/, the run serves its own model only
    assert versions.list_versions(os.path.join(out, "serving_model", "pinsage")) == [1]
    assert cold["paths"]["version"].startswith(os.path.join(out, "cold_start", "serving_model"))
    md = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    assert "## Item cold start" in md and "features only" in md
    assert 'id="cold-start"' in open(os.path.join(out, "report.html"), encoding="utf-8").read()
    assert "## Item cold start" in proc.stdout
    assert report["run_timings"]["stages"]["cold_start_evaluation"] > 0
