"""`pinsage embed` against `pinsage run`'s own pushed version, on a tiny synthetic catalogue.

Equal by construction: on the run's unchanged data the refresh runs the run's stages on the run's inputs with the
run's trained model, so the new version must serve the run's vectors and lists (the reference is the version the
pipeline pushed, not this code). New items must be embedded from their features and neighbourhoods and served; bad
data and a directory that is not a model must fail with exit 2 before anything is pushed.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pinsage.local import LocalVersion
from pipeline.data import datasets
from schema import versions
from tests.fixtures import REPO_ROOT

pytestmark = pytest.mark.slow
HPARAMS = '{"epochs": 1, "seed": 0, "hidden_dim": 16, "output_dim": 8, "text_embedding_dim": 4}'
K = 10
NEW = ("90001", "90002", "90003")  # integer ids, as the run's: the model's Transform reads item_id as one


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(data dir, the run's serving model dir) of one `pinsage run` with its context tower."""
    root = tmp_path_factory.mktemp("refresh")
    data = str(root / "data")
    datasets.materialise("synthetic", data, items=60, contexts=30, edges=400, seed=2)
    out = str(root / "run")
    flags = ["--hparams", HPARAMS, "--num-walks", "50", "--context-tower-hparams", '{"epochs": 1}']
    ok(cli("run", "--data-dir", data, "--output", out, *flags, "--push-unblessed"))
    return data, os.path.join(out, "serving_model", "pinsage")


def served_copy(run, tmp_path) -> str:
    """A copy of the run's model directory (version 1), so each test pushes next to its own."""
    model_dir = str(tmp_path / "serving" / "pinsage")
    shutil.copytree(run[1], model_dir)
    assert versions.list_versions(model_dir) == [1]
    return model_dir


def embed(model_dir: str, data: str, out: str, *extra) -> subprocess.CompletedProcess:
    return cli("embed", "--model", os.path.join(model_dir, "1"), "--data-dir", data, "--output", out, *extra)


def arrays(version_dir: str):
    return versions.read_serving_arrays(versions.index_dir(version_dir))


def lists(version: LocalVersion, ids, fn: str) -> list:
    return [[x.item_id for x in row] for row in getattr(version, fn)(list(ids), K)]


@pytest.fixture(scope="module")
def refreshed(run, tmp_path_factory):
    """The refresh of the run's version on the run's own data: (model dir, OUT)."""
    tmp = tmp_path_factory.mktemp("same")
    model_dir = served_copy(run, tmp)
    ok(embed(model_dir, run[0], str(tmp / "out")))
    return model_dir, str(tmp / "out")


def test_unchanged_data_serves_the_runs_vectors_and_lists(refreshed):
    model_dir, out = refreshed
    assert versions.list_versions(model_dir) == [1, 2]
    old, new = (os.path.join(model_dir, v) for v in ("1", "2"))
    a, b = arrays(old), arrays(new)
    assert a.item_ids.tolist() == b.item_ids.tolist()
    assert np.abs(a.embeddings - b.embeddings).max() <= 1e-5
    assert np.abs(a.query_embeddings - b.query_embeddings).max() <= 1e-5
    ca, cb = (versions.read_context_arrays(versions.context_dir(v)) for v in (old, new))
    assert ca.context_ids.tolist() == cb.context_ids.tolist()
    assert np.abs(ca.vectors - cb.vectors).max() <= 1e-5
    assert np.array_equal(ca.history_rows, cb.history_rows)
    va, vb = LocalVersion.open(old), LocalVersion.open(new)
    assert va.signatures == vb.signatures and "embed_item" in vb.signatures
    ids = [i.decode() for i in a.item_ids.tolist()]
    for fn in ("related", "similar"):
        assert lists(va, ids, fn) == lists(vb, ids, fn), fn
    contexts = [c.decode() for c in ca.context_ids.tolist()]
    assert lists(va, contexts, "recommend_for") == lists(vb, contexts, "recommend_for")
    # the titles and attributes travel: the same items with the same display
    assert [x.attributes for x in va.related(ids[0], K)[0]] == [x.attributes for x in vb.related(ids[0], K)[0]]
    with open(os.path.join(out, "refresh_report.json")) as f:
        report = json.load(f)
    trained = {v: json.load(open(os.path.join(versions.trained_dir(v), versions.TRAINED_JSON))) for v in (old, new)}
    carried = {k: trained[old][k] for k in ("blessed", "recommend_blessed")}
    assert trained[new] == {**carried, "refreshed_from": old}
    assert report["recommend_blessed"] is carried["recommend_blessed"]
    assert (report["version"], report["items"], report["new_items"], report["contexts"]) == (2, 60, 0, len(contexts))
    assert report["sampling_config_from"].startswith("recorded")
    recorded = json.load(open(os.path.join(versions.trained_dir(old), versions.TRAINED_SAMPLING_JSON)))
    assert report["sampling"]["num_walks"] == recorded["num_walks"] == 50
    assert report["sampling"]["neighborhood_source"] == recorded["source"]
    assert os.path.exists(os.path.join(out, "data_report.json"))


def with_new_items(src: str, dest: str) -> dict:
    """The run's data plus NEW: each a copy of an existing item's features (new id) engaged by the same contexts,
    just before each context's first interaction (so in train). Returns {new id: its twin's id}."""
    shutil.copytree(src, dest)
    items = pd.read_csv(os.path.join(src, "items.csv"), dtype={"item_id": str})
    inter = pd.read_csv(os.path.join(src, "interactions.csv"), dtype={"item_id": str})
    busiest = inter["item_id"].value_counts().index[: len(NEW)].tolist()
    first = inter.groupby("context_id")["timestamp"].min()
    twins = dict(zip(NEW, busiest))
    new_items = pd.concat([items[items["item_id"] == t].assign(item_id=n) for n, t in twins.items()])
    new_inter = pd.concat([inter[inter["item_id"] == t].assign(item_id=n) for n, t in twins.items()], ignore_index=True)
    new_inter["timestamp"] = new_inter["context_id"].map(first) - 1 - new_inter.index.to_numpy()
    pd.concat([items, new_items]).to_csv(os.path.join(dest, "items.csv"), index=False)
    pd.concat([inter, new_inter]).to_csv(os.path.join(dest, "interactions.csv"), index=False)
    return twins


def test_new_items_are_embedded_and_served(run, tmp_path):
    model_dir = served_copy(run, tmp_path)
    twins = with_new_items(run[0], str(tmp_path / "data"))
    ok(embed(model_dir, str(tmp_path / "data"), str(tmp_path / "out")))
    assert versions.list_versions(model_dir) == [1, 2]
    b = arrays(os.path.join(model_dir, "2"))
    ids = [i.decode() for i in b.item_ids.tolist()]
    assert len(ids) == 63 and set(NEW) <= set(ids)
    rows = [ids.index(n) for n in NEW]
    assert np.isfinite(b.embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(b.embeddings[rows], axis=1), 1.0, atol=1e-5)
    version = LocalVersion.open(os.path.join(model_dir, "2"))
    for new, twin in twins.items():
        assert len(version.related(new, K)[0]) == K  # a new item is a query the index answers
        assert new in lists(version, [twin], "similar")[0], (new, twin)  # same features and engagement: near
    with open(tmp_path / "out" / "refresh_report.json") as f:
        report = json.load(f)
    assert report["new_items"] == len(NEW)
    # the cold-start section covers exactly the new items; all their interactions are in train here
    cold = report["cold_start"]
    assert cold["held_out_items"] == cold["held_out_items_with_train_interactions"] == len(NEW)
    assert cold["sets"]["as_targets"]["num_contexts"] == 0 and len(cold["lists"]["features_only"]) >= 3


def unchanged(model_dir: str) -> dict:
    return {d: sorted(os.listdir(os.path.join(model_dir, d))) for d in sorted(os.listdir(model_dir))}


def test_a_feature_column_missing_is_the_contracts_error(run, tmp_path):
    model_dir = served_copy(run, tmp_path)
    before = unchanged(model_dir)
    data = str(tmp_path / "data")
    shutil.copytree(run[0], data)
    items = pd.read_csv(os.path.join(data, "items.csv"))
    items.drop(columns=["price"]).to_csv(os.path.join(data, "items.csv"), index=False)
    proc = embed(model_dir, data, str(tmp_path / "out"))  # dataset.yaml still declares price: the contract refuses
    assert proc.returncode == 2 and "items.csv" in proc.stderr and "price" in proc.stderr, proc.stderr[-3000:]
    with open(os.path.join(data, "dataset.yaml")) as f:
        spec = f.read()
    with open(os.path.join(data, "dataset.yaml"), "w") as f:
        f.write("\n".join(ln for ln in spec.splitlines() if not ln.strip().startswith("price:")) + "\n")
    proc = embed(model_dir, data, str(tmp_path / "out"))  # a valid dataset, but not the model's features
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert os.path.join(data, "items.csv") in proc.stderr and "price" in proc.stderr, proc.stderr[-3000:]
    assert unchanged(model_dir) == before


def test_a_directory_that_is_not_a_model_exits_2_naming_it(run, tmp_path):
    model_dir = served_copy(run, tmp_path)
    proc = cli("embed", "--model", run[0], "--data-dir", run[0], "--output", str(tmp_path / "o1"))
    assert proc.returncode == 2 and run[0] in proc.stderr, proc.stderr[-3000:]
    shutil.rmtree(versions.trained_dir(os.path.join(model_dir, "1")))  # a version pushed without assets/trained/
    before = unchanged(model_dir)
    proc = embed(model_dir, run[0], str(tmp_path / "o2"))
    assert proc.returncode == 2 and os.path.join(model_dir, "1") in proc.stderr, proc.stderr[-3000:]
    assert unchanged(model_dir) == before


def test_multi_processing_beam_equals_in_process(run, refreshed, tmp_path):
    model_dir = served_copy(run, tmp_path)
    beam = ("--beam-arg=--direct_num_workers=2", "--beam-arg=--direct_running_mode=multi_processing")
    ok(embed(model_dir, run[0], str(tmp_path / "out"), *beam, "--embed-strategy", "beam"))
    a, b = arrays(os.path.join(refreshed[0], "2")), arrays(os.path.join(model_dir, "2"))
    assert a.item_ids.tolist() == b.item_ids.tolist()
    assert np.abs(a.embeddings - b.embeddings).max() <= 1e-5
    ca, cb = (
        versions.read_context_arrays(versions.context_dir(os.path.join(d, "2"))) for d in (refreshed[0], model_dir)
    )
    assert np.abs(ca.vectors - cb.vectors).max() <= 1e-5


def test_item_ids_of_another_kind_than_the_runs_exit_2(run, tmp_path):
    model_dir = served_copy(run, tmp_path)
    before = unchanged(model_dir)
    data = str(tmp_path / "data")
    shutil.copytree(run[0], data)
    with open(os.path.join(data, "items.csv"), "a") as f:  # the run's ids are integers: one string id changes that
        f.write('new-item,"cat_001",1.0,0.5,10,"0 0 0 0 0 0 0 0"\n')
    proc = embed(model_dir, data, str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert os.path.join(data, "items.csv") in proc.stderr and "item_id" in proc.stderr, proc.stderr[-3000:]
    assert unchanged(model_dir) == before


def test_an_empty_catalogue_exits_2_naming_it(run, tmp_path):
    model_dir = served_copy(run, tmp_path)
    before = unchanged(model_dir)
    for table in ("items.csv", "interactions.csv"):
        data = str(tmp_path / f"empty_{table}")
        shutil.copytree(run[0], data)
        with open(os.path.join(data, table)) as f:
            header = f.readline()
        with open(os.path.join(data, table), "w") as f:
            f.write(header)
        proc = embed(model_dir, data, str(tmp_path / f"out_{table}"))
        assert proc.returncode == 2 and os.path.join(data, table) in proc.stderr, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
    assert unchanged(model_dir) == before
