"""Pusher: versioned layout, no half-written version ever visible (exception or hard crash mid-push), retention."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.push import pusher
from schema import versions
from tests.fixtures import REPO_ROOT


@pytest.fixture
def sources(tmp_path):
    """Stand-ins with the files the Pusher copies (a real export and index are exercised in test_server.py)."""
    sm, idx = tmp_path / "saved_model", tmp_path / "index"
    (sm / "variables").mkdir(parents=True)
    (sm / "assets").mkdir()
    (sm / "saved_model.pb").write_bytes(b"pb")
    (sm / "variables" / "variables.index").write_bytes(b"v")
    (sm / "assets" / "item_ids.txt").write_text("a\nb\n")
    (idx / "scann").mkdir(parents=True)
    (idx / "scann" / "scann_assets.pbtxt").write_text("")
    (idx / "item_ids.txt").write_text("a\nb\n")
    (idx / "index_stats.json").write_text("{}")
    return str(sm), str(idx), str(tmp_path / "serving_model")


def test_layout(sources):
    sm, idx, out = sources
    path = pusher.push(sm, idx, out, model_name="pinsage")
    assert path == os.path.join(out, "pinsage", "1")
    for f in (
        "saved_model.pb",
        "variables/variables.index",
        "assets/item_ids.txt",
        "assets/index/scann/scann_assets.pbtxt",
        "assets/index/item_ids.txt",
        "assets/index/index_stats.json",
    ):
        assert os.path.isfile(os.path.join(path, f)), f
    assert os.listdir(os.path.join(out, "pinsage")) == ["1"]


def test_versions_increase(sources):
    sm, idx, out = sources
    assert [os.path.basename(pusher.push(sm, idx, out)) for _ in range(3)] == ["1", "2", "3"]
    assert os.path.basename(pusher.push(sm, idx, out, version=10)) == "10"
    assert os.path.basename(pusher.push(sm, idx, out)) == "11"
    with pytest.raises(ValueError, match="not newer"):
        pusher.push(sm, idx, out, version=5)


def test_exception_mid_push_leaves_nothing_visible(sources):
    sm, idx, out = sources
    pusher.push(sm, idx, out)
    seen = {}

    def crash(stage, tmp):
        seen[stage] = os.listdir(tmp)  # some files are already written ...
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        pusher.push(sm, idx, out, hook=crash)
    assert "saved_model.pb" in seen["saved_model"]
    model_dir = os.path.join(out, "pinsage")
    assert versions.list_versions(model_dir) == [1]  # ... but no version 2 and no temp dir remain
    assert os.listdir(model_dir) == ["1"]


def test_hard_crash_mid_push_is_ignored_then_cleaned(sources):
    sm, idx, out = sources
    code = (
        "import os, sys; from pipeline.push import pusher; "
        "pusher.push(sys.argv[1], sys.argv[2], sys.argv[3], "
        "hook=lambda stage, tmp: os._exit(3) if stage == 'index' else None)"
    )
    proc = subprocess.run([sys.executable, "-c", code, sm, idx, out], cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 3
    model_dir = os.path.join(out, "pinsage")
    leftovers = os.listdir(model_dir)
    assert len(leftovers) == 1 and leftovers[0].startswith(versions.TMP_PREFIX)  # the half-written copy ...
    assert versions.list_versions(model_dir) == []  # ... which no reader counts as a version
    assert pusher.push(sm, idx, out).endswith(os.sep + "1")
    assert os.listdir(model_dir) == ["1"]  # the next push removed it (its writer is gone)


def test_retention_keeps_last_n(sources):
    sm, idx, out = sources
    for _ in range(5):
        pusher.push(sm, idx, out, keep=3)
    model_dir = os.path.join(out, "pinsage")
    assert versions.list_versions(model_dir) == [3, 4, 5]
    assert sorted(os.listdir(model_dir)) == ["3", "4", "5"]
    pusher.push(sm, idx, out, keep=1)
    assert os.listdir(model_dir) == ["6"]


def test_refuses_incomplete_sources(sources, tmp_path):
    sm, idx, out = sources
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        pusher.push(str(tmp_path), idx, out)
    with pytest.raises(FileNotFoundError, match="scann"):
        pusher.push(sm, str(tmp_path), out)


# ------------------------------------------------------------------------------------ the Pusher and the blessing
def _artifact(cls, uri):
    a = cls()
    a.uri = str(uri)
    os.makedirs(a.uri, exist_ok=True)
    return a


@pytest.fixture
def pusher_inputs(sources, tmp_path):
    """PinSagePusher's executor inputs: real embeddings (its export is built from them) and the stand-in index."""
    import numpy as np

    from pipeline.components import artifacts
    from schema import embeddings as embeddings_io

    _, idx, out = sources
    emb = _artifact(artifacts.Embeddings, tmp_path / "embeddings")
    vectors = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    embeddings_io.write_embeddings(emb.uri, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), list("abcd"))
    index = artifacts.Index()
    index.uri = idx
    return {"embeddings": [emb], "index": [index]}, {"serving_model_dir": out, "model_name": "pinsage", "keep": 3}


def _blessing(tmp_path, blessed: bool):
    from tfx.types import standard_artifacts

    from pipeline.components import evaluator

    b = _artifact(standard_artifacts.ModelBlessing, tmp_path / f"blessing-{int(blessed)}")
    evaluator.write_blessing(b, blessed, "/model")
    return [b]


def _push(inputs, props, tmp_path, name):
    from tfx.types import standard_artifacts

    from pipeline.components import pusher as pusher_component

    out = _artifact(standard_artifacts.PushedModel, tmp_path / name)
    pusher_component.Executor().Do(inputs, {"pushed_model": [out]}, props)
    with open(os.path.join(out.uri, pusher_component.PUSHED_FILE)) as f:
        return out, json.load(f)


def test_the_pusher_pushes_only_a_blessed_model(pusher_inputs, tmp_path, caplog):
    inputs, props = pusher_inputs
    model_dir = os.path.join(props["serving_model_dir"], "pinsage")
    with caplog.at_level("WARNING"):
        out, pushed = _push(dict(inputs, model_blessing=_blessing(tmp_path, False)), props, tmp_path, "refused")
    assert out.get_int_custom_property("pushed") == 0  # as TFX's stock Pusher marks an unblessed model
    assert pushed["pushed"] is False and pushed["version"] is None
    assert not os.path.exists(model_dir) or versions.list_versions(model_dir) == []  # nothing pushed
    assert [
        r.getMessage() for r in caplog.records if "NOT blessed" in r.getMessage() and "nothing pushed" in r.getMessage()
    ]

    out, pushed = _push(dict(inputs, model_blessing=_blessing(tmp_path, True)), props, tmp_path, "blessed")
    assert out.get_int_custom_property("pushed") == 1 and out.get_int_custom_property("pushed_version") == 1
    assert (pushed["pushed"], pushed["blessed"], pushed["version"]) == (True, True, 1)
    assert versions.list_versions(model_dir) == [1]


def test_push_unblessed_overrides_the_blessing(pusher_inputs, tmp_path):
    inputs, props = pusher_inputs
    refused = dict(inputs, model_blessing=_blessing(tmp_path, False))
    out, pushed = _push(refused, dict(props, push_unblessed=1), tmp_path, "override")
    assert out.get_int_custom_property("pushed") == 1
    assert (pushed["pushed"], pushed["blessed"], pushed["version"]) == (True, False, 1)
    # without a blessing input the Pusher pushes as before (TFX's Pusher does too, with a warning)
    _, pushed = _push(inputs, props, tmp_path, "no-blessing")
    assert (pushed["pushed"], pushed["blessed"], pushed["version"]) == (True, None, 2)
    assert versions.list_versions(os.path.join(props["serving_model_dir"], "pinsage")) == [1, 2]


def _tower_inputs(inputs, tmp_path) -> dict:
    """The context tower's inputs (a one-layer tower over the pushed embeddings, saved as its stage saves it) and
    context vectors of two contexts over the same items."""
    import numpy as np
    from tfx.types.standard_artifacts import Model

    from modules import context_tower as ct
    from pipeline.components import artifacts
    from pipeline.history import train as history_train
    from schema import embeddings as embeddings_io

    z, _, _ = embeddings_io.read_embeddings(inputs["embeddings"][0].uri)
    config = ct.ContextTowerConfig(form="sequence", max_len=4, num_layers=1, num_heads=1, epochs=1)
    tower = ct.build_context_tower(config, z)
    history_train.save(tower, config, {"epoch": [1]}, str(tmp_path / "tower"))
    histories = [np.array([0, 1]), np.array([2])]
    vectors = _artifact(artifacts.ContextVectors, tmp_path / "contexts")
    versions.write_context_arrays(vectors.uri, ["u1", "u2"], ct.query_vectors(tower, histories), histories, {})
    return {"context_tower": [_artifact(Model, tmp_path / "tower")], "context_vectors": [vectors]}


def _tower_blessing(tmp_path, recommend_blessed: bool):
    from tfx.types import standard_artifacts

    from pipeline.components import evaluator

    b = _artifact(standard_artifacts.ModelBlessing, tmp_path / f"tower-blessing-{int(recommend_blessed)}")
    evaluator.write_blessing(b, True, "/model", recommend_blessed=recommend_blessed)
    return [b]


def test_a_blessed_version_whose_tower_is_not_blessed_is_pushed_without_the_tower(pusher_inputs, tmp_path, caplog):
    import tensorflow as tf

    inputs, props = pusher_inputs
    inputs = dict(inputs, **_tower_inputs(inputs, tmp_path))
    tower_sigs = {versions.RECOMMEND, versions.RECOMMEND_WEIGHTED, versions.RECOMMEND_CONTEXT}
    with caplog.at_level("WARNING"):
        out, pushed = _push(dict(inputs, model_blessing=_tower_blessing(tmp_path, False)), props, tmp_path, "no")
    assert out.get_int_custom_property("pushed") == 1 and pushed["version"] == 1
    assert (pushed["blessed"], pushed["recommend_blessed"], pushed["left_out"]) == (True, False, ["recommend"])
    assert not tower_sigs & set(pushed["signatures"]) and pushed["num_contexts"] == 0
    assert not tower_sigs & set(tf.saved_model.load(pushed["destination"]).signatures)
    assert not os.path.exists(versions.context_dir(pushed["destination"]))
    assert any("context tower is NOT blessed" in r.getMessage() for r in caplog.records)
    # the tower blessed: it goes in, with its vectors
    _, pushed = _push(dict(inputs, model_blessing=_tower_blessing(tmp_path, True)), props, tmp_path, "yes")
    assert (pushed["version"], pushed["recommend_blessed"], pushed["left_out"]) == (2, True, [])
    assert tower_sigs <= set(pushed["signatures"]) and pushed["num_contexts"] == 2
    assert tower_sigs <= set(tf.saved_model.load(pushed["destination"]).signatures)
    assert versions.read_context_arrays(versions.context_dir(pushed["destination"])).context_ids.tolist() == [
        b"u1",
        b"u2",
    ]
    # push_unblessed overrides the tower's blessing as it does the version's
    refused = dict(inputs, model_blessing=_tower_blessing(tmp_path, False))
    _, pushed = _push(refused, dict(props, push_unblessed=1), tmp_path, "override")
    assert (pushed["recommend_blessed"], pushed["left_out"]) == (False, [])
    assert tower_sigs <= set(pushed["signatures"]) and pushed["num_contexts"] == 2


def test_a_pushed_version_with_the_context_tower_answers_recommend_like_the_tower(pusher_inputs, tmp_path):
    """The ContextTowerTrainer's artifact (saved as its stage saves it) makes the version's `recommend`: the
    signature's top item equals a numpy ranking of the tower's query vector with the history excluded."""
    import numpy as np
    import tensorflow as tf
    from tfx.types.standard_artifacts import Model

    from modules import context_tower as ct
    from pipeline.history import train as history_train
    from schema import embeddings as embeddings_io

    inputs, props = pusher_inputs
    z, ids, _ = embeddings_io.read_embeddings(inputs["embeddings"][0].uri)
    config = ct.ContextTowerConfig(form="sequence", max_len=4, num_layers=1, num_heads=1, epochs=1)
    tower = ct.build_context_tower(config, z)
    tower_dir = tmp_path / "tower"
    history_train.save(tower, config, {"epoch": [1]}, str(tower_dir))
    _, pushed = _push(dict(inputs, context_tower=[_artifact(Model, tower_dir)]), props, tmp_path, "tower")
    assert versions.RECOMMEND in pushed["signatures"]
    loaded = tf.saved_model.load(pushed["destination"])
    out = loaded.signatures[versions.RECOMMEND](history_ids=tf.constant([["a", "b"]]), k=tf.constant(2))
    u = ct.query_vectors(tower, [np.array([0, 1])])[0]
    scores = z @ u
    scores[[0, 1]] = -np.inf  # the history is excluded
    want = [ids[i] for i in np.argsort(-scores, kind="stable")[:2]]
    assert [x.decode() for x in out["item_ids"].numpy()[0]] == want
    assert int(out["history_used"].numpy()[0]) == 2
