"""The ContextEmbedder (pipeline/history/context_vectors.py as a TFX Beam executor): every known context's stored
u_c equals modules/context_tower.query_vectors of its whole history (train + validation + test items in position
order, computed here with numpy from the graph), in-process and on two DirectRunner worker processes; the arrays
are the schema/versions.py context layout (ids sorted, the history CSR in position order)."""

import os

import numpy as np
import pytest
from tfx.types import standard_artifacts

from modules import context_tower as ct
from pipeline.components import artifacts
from pipeline.components import context_embedder as component
from pipeline.history import train
from schema import embeddings as embeddings_io
from schema import files, versions
from schema import graph as graph_io
from tests.fixtures import _split_graph

IN_PROCESS = ["--runner=DirectRunner", "--direct_num_workers=1"]
MULTI_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
MAX_LEN = 6


def ragged_graph(num_items=120, num_contexts=70, seed=0):
    """Contexts with 1 to 15 interactions (some longer than MAX_LEN), ids that sort differently as bytes than as
    numbers, and one context without any interaction (no history: no vector)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 16, num_contexts - 1)
    ctx = np.repeat(np.arange(num_contexts - 1), lengths)
    item = rng.integers(0, num_items, len(ctx))
    keep = np.unique(ctx * num_items + item, return_index=True)[1]  # one interaction per (context, item)
    ctx, item = ctx[np.sort(keep)], item[np.sort(keep)]
    ts = 1000 + rng.integers(0, 50, len(ctx))  # ties in time: the split's seeded hash orders them
    g = _split_graph(ctx, item, ts, num_items, num_contexts)
    g.context_ids = np.array([f"user {k} é" if k % 3 else f"u{k}" for k in range(num_contexts)], dtype=object)
    return g


def whole_histories(g):
    """{context id: node ids of every interaction, in position order} by numpy, the reference."""
    order = np.lexsort((g.position, g.context_index))
    ctx, node = g.context_index[order], g.node_id[order]
    return {str(g.context_ids[c]): node[ctx == c].astype(np.int64) for c in np.unique(ctx)}


def _artifact(cls, uri):
    a = cls()
    a.uri = str(uri)
    return a


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("context_vectors")
    g = ragged_graph()
    graph_io.write_graph(g, str(tmp / "graph"))
    z = np.random.default_rng(1).normal(size=(g.num_items, 8)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    embeddings_io.write_embeddings(str(tmp / "embeddings"), z, [str(i) for i in g.item_ids])
    config = ct.ContextTowerConfig(form="sequence", max_len=MAX_LEN, num_layers=1, num_heads=2, dropout=0.0)
    tower = ct.build_context_tower(config, z)
    train.save(tower, config, {}, str(tmp / "tower"))
    hist = whole_histories(g)
    ids = sorted(hist, key=lambda c: c.encode("utf-8"))
    want = ct.query_vectors(train.load_tower(str(tmp / "tower"), z), [hist[c] for c in ids])
    return dict(tmp=tmp, graph=g, hist=hist, ids=ids, want=want)


def run_executor(inputs, name, beam_args, batch_size=16):
    tmp = inputs["tmp"]
    out = _artifact(artifacts.ContextVectors, tmp / name)
    input_dict = {
        "graph": [_artifact(artifacts.PinSageGraph, tmp / "graph")],
        "context_tower": [_artifact(standard_artifacts.Model, tmp / "tower")],
        "embeddings": [_artifact(artifacts.Embeddings, tmp / "embeddings")],
    }
    ctx = component.Executor.Context(beam_pipeline_args=beam_args, tmp_dir=str(tmp / f"{name}_tmp"), unique_id=name)
    component.Executor(ctx).Do(input_dict, {"context_vectors": [out]}, {"batch_size": batch_size})
    return out


@pytest.mark.parametrize("beam_args", [IN_PROCESS, MULTI_PROCESS], ids=["in-process", "2-processes"])
def test_beam_vectors_equal_query_vectors_of_the_whole_history(inputs, beam_args):
    out = run_executor(inputs, f"out{len(beam_args)}", beam_args)
    got = versions.read_context_arrays(out.uri)
    assert [c.decode("utf-8") for c in got.context_ids.tolist()] == inputs["ids"]  # sorted bytewise, one per context
    assert got.vectors.dtype == np.float32 and got.vectors.shape == inputs["want"].shape
    assert np.abs(got.vectors - inputs["want"]).max() <= 1e-5
    for r, c in enumerate(inputs["ids"]):
        lo, hi = got.history_indptr[r], got.history_indptr[r + 1]
        assert np.array_equal(got.history_rows[lo:hi], inputs["hist"][c])
    stats = files.read_json(os.path.join(out.uri, versions.CONTEXT_STATS_JSON))
    assert (stats["contexts"], stats["graph_contexts"], stats["contexts_skipped"]) == (69, 70, 1)
    assert stats["dim"] == 8 and stats["max_len"] == MAX_LEN and stats["history_items"] == len(inputs["graph"].node_id)
    lengths = np.array([len(h) for h in inputs["hist"].values()])
    assert stats["histories_truncated"] == int((lengths > MAX_LEN).sum()) > 0
    assert out.get_int_custom_property("num_contexts") == 69


def test_the_whole_history_is_used_not_the_train_split(inputs):
    """The newest items (the test split) move u_c: a vector from the train items alone is a different one."""
    g, hist = inputs["graph"], inputs["hist"]
    tower = train.load_tower(
        str(inputs["tmp"] / "tower"), embeddings_io.read_embeddings(str(inputs["tmp"] / "embeddings"))[0]
    )
    c = next(c for c in inputs["ids"] if len(hist[c]) >= 3)
    r = inputs["ids"].index(c)
    train_only = ct.query_vectors(tower, [hist[c][:-2]])[0]
    assert np.abs(train_only - inputs["want"][r]).max() > 1e-3
    cidx = list(g.context_ids).index(c)
    assert g.split[(g.context_index == cidx) & (g.node_id == hist[c][-1])][0] == "test"


def test_the_component_is_wired_after_the_tower_and_absent_without_it():
    import dataclasses

    from pipeline import pipeline as pl
    from pipeline.configs import HISTORY, RunConfig

    inputs = pl.PipelineInputs("/c", "/i.pbtxt", "/x.pbtxt", "/r.json", {}, "/g.pbtxt", "d")
    p = pl.create_pipeline("p", "/tmp/root", "/tmp/m.db", inputs, RunConfig())
    ids = [c.id for c in p.components]
    assert ids.index("ContextTowerTrainer") < ids.index("ContextEmbedder") < ids.index("PinSagePusher")
    assert ids.index("BulkEmbedder") < ids.index("ContextEmbedder")
    pusher = p.components[ids.index("PinSagePusher")]
    assert "context_vectors" in pusher.inputs
    off = RunConfig(history=dataclasses.replace(HISTORY, enabled=False))
    ids = [c.id for c in pl.create_pipeline("p", "/tmp/root", "/tmp/m.db", inputs, off).components]
    assert "ContextEmbedder" not in ids and "ContextTowerTrainer" not in ids


def test_the_pusher_puts_the_vectors_in_the_version_and_the_server_answers_from_them(inputs):
    """ContextEmbedder -> PinSagePusher (with the tower) -> a version whose recommend_context, served from the
    mapped arrays, answers each context as recommend over its whole history."""
    from modules import index as ib
    from pipeline.components import pusher as pusher_component
    from serving import client
    from serving.core import ModelServer

    tmp = inputs["tmp"]
    vectors = run_executor(inputs, "for_push", IN_PROCESS)
    z, item_ids, _ = embeddings_io.read_embeddings(str(tmp / "embeddings"))
    ib.build_index(z, item_ids, str(tmp / "index"), brute_force_below=1000, recall_queries=20)
    pushed = _artifact(standard_artifacts.PushedModel, tmp / "pushed")
    input_dict = {
        "embeddings": [_artifact(artifacts.Embeddings, tmp / "embeddings")],
        "index": [_artifact(artifacts.Index, tmp / "index")],
        "context_tower": [_artifact(standard_artifacts.Model, tmp / "tower")],
        "context_vectors": [vectors],
    }
    props = {"serving_model_dir": str(tmp / "serving_model"), "model_name": "pinsage", "keep": 3}
    pusher_component.Executor().Do(input_dict, {"pushed_model": [pushed]}, props)
    record = files.read_json(os.path.join(pushed.uri, pusher_component.PUSHED_FILE))
    assert versions.RECOMMEND_CONTEXT in record["signatures"] and record["num_contexts"] == 69
    version_dir = os.path.join(props["serving_model_dir"], "pinsage", "1")
    assert sorted(os.listdir(versions.context_dir(version_dir))) == sorted(
        versions.CONTEXT_FILES + (versions.CONTEXT_STATS_JSON,)
    )
    core = ModelServer(os.path.join(props["serving_model_dir"], "pinsage"))
    core.start()
    some = inputs["ids"][::9]
    by_context = client.decode(core.predict(client.recommend_context_request(some, 10)))
    by_history = client.decode(
        core.predict(client.recommend_request([[str(item_ids[j]) for j in inputs["hist"][c]] for c in some], 10))
    )
    assert by_context["item_ids"] == by_history["item_ids"]
    np.testing.assert_allclose(by_context["scores"], by_history["scores"], atol=1e-5)
    assert by_context["history_used"] == [len(inputs["hist"][c]) for c in some]
