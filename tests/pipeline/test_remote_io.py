"""The pipeline's file-touching stages with every artifact URI on a non-local filesystem (TF's in-memory ram://,
registered with TFX's fileio and Beam like gs:// is: tests/remote_fs.py), against the same stages on local paths.

One chain per root, each executor's Do() called in this process as its TFX launcher calls it (Beam on the
in-process DirectRunner): GraphGen (Beam) -> NeighborhoodSampler (Beam) -> PairGen (Beam) -> PinSageTrainer ->
PinSageEvaluator -> BulkEmbedder (Beam) -> IndexBuilder -> PinSagePusher. Inputs are a synthetic 200-item
catalogue: the ingest-format item/interaction Examples GraphGen reads, and Transform-shaped item features
(tests/fixtures.py; Transform itself is TFX's stock component). The ram:// run's working directory is an empty
folder, so any local-only call on a URI (os.makedirs('ram://x') makes ./ram:/x) would leave a trace there.
"""

import json
import os

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from modules import export
from modules.index import load_index
from pipeline.components import (
    artifacts,
    bulk_embedder,
    evaluator,
    graph_gen,
    index_builder,
    neighborhood_sampler,
    pair_gen,
    pusher,
    trainer,
)
from pipeline.data import ingest
from pipeline.push import pusher as push_lib
from schema import build, files, versions
from schema import embeddings as embeddings_io
from schema import graph as graph_io
from schema import neighborhoods as neighborhood_io
from schema import pairs as pairs_io
from tests import fixtures, remote_fs

pytestmark = pytest.mark.slow  # two chains of eight stages
N, C, E, T = 200, 60, 1500, 10
IN_PROCESS = ["--runner=DirectRunner", "--direct_num_workers=1"]
HPARAMS = dict(
    hidden_dim=16, output_dim=8, text_embedding_dim=4, num_layers=1, epochs=1, steps_per_epoch=2, batch_size=64,
    num_negatives=32, warmup_steps=1, checkpoint_seconds=0,
)  # fmt: skip


def _art(cls, uri, **custom):
    a = cls()
    a.uri = uri
    for k, v in custom.items():
        a.set_string_custom_property(k, v)
    return a


def _examples(uri, split):
    a = _art(standard_artifacts.Examples, uri, payload_format="FORMAT_PARQUET", file_format="FILE_FORMAT_PARQUET")
    a.split_names = f'["{split}"]'
    return a


def write_inputs(root):
    """What the stages before GraphGen hand over: the two ingested Examples tables, the items schema, the graph
    schema (an exec property: a path under the data root in a Kubeflow job) and Transform-shaped features."""
    rng = np.random.default_rng(0)
    items = pa.table({"item_id": np.arange(N, dtype=np.int64), "title": [f"item {i}" for i in range(N)]})
    inter = pa.table(
        {
            "context_id": rng.integers(0, C, E).astype(np.int64),
            "item_id": rng.zipf(1.3, E).astype(np.int64) % N,
            "timestamp": rng.permutation(E).astype(np.int64),
        }
    )
    ingest.write_examples(items, files.join(root, "in", "items"), "items")
    ingest.write_examples(inter, files.join(root, "in", "interactions"), "interactions")
    bundled = build.bundled_dir("ml-100k")
    files.makedirs(files.join(root, "in", "items_schema"))
    files.copy(os.path.join(bundled, "items", build.ITEMS_SCHEMA), files.join(root, "in", "items_schema", "s.pbtxt"))
    files.copy(os.path.join(bundled, build.GRAPH_SCHEMA), files.join(root, "in", "graph_schema.pbtxt"))
    feats, _, _ = fixtures.synthetic_catalogue(N, T, seed=1)
    fixtures.write_examples(files.join(root, "Transform", "transformed_examples", "Split-items"), feats)
    files.makedirs(files.join(root, "Transform", "transform_graph"))


def _do(executor_cls, root, inputs, outputs, props, beam=False):
    ctx = executor_cls.Context(tmp_dir=files.join(root, "tmp"), unique_id="remote-io")
    if beam:
        ctx = executor_cls.Context(beam_pipeline_args=IN_PROCESS, tmp_dir=files.join(root, "tmp"), unique_id="io")
    executor_cls(ctx).Do(inputs, outputs, props)


def run_sampling(root, a):
    """GraphGen, NeighborhoodSampler, PairGen; fills `a` with their artifacts."""
    a["graph"] = _art(artifacts.PinSageGraph, files.join(root, "GraphGen", "graph", "1"))
    out = {
        "graph": [a["graph"]],
        "item_examples": [_examples(files.join(root, "GraphGen", "item_examples", "1"), "items")],
        "item_schema": [_art(standard_artifacts.Schema, files.join(root, "GraphGen", "item_schema", "1"))],
    }
    inputs = {
        "items": [_examples(files.join(root, "in", "items"), "items")],
        "interactions": [_examples(files.join(root, "in", "interactions"), "interactions")],
        "items_schema": [_art(standard_artifacts.Schema, files.join(root, "in", "items_schema"))],
    }
    _do(graph_gen.Executor, root, inputs, out, {"ingest_report": ""}, beam=True)
    a["neighborhoods"] = _art(artifacts.Neighborhoods, files.join(root, "NeighborhoodSampler", "neighborhoods", "2"))
    walk = dict(num_walks=20, walk_length=3, restart_prob=0.5, top_t=T, seed=3, strategy="in_memory", shard_size=64)
    _do(
        neighborhood_sampler.Executor,
        root,
        {"graph": [a["graph"]]},
        {"neighborhoods": [a["neighborhoods"]]},
        dict(walk, source="random_walk", window=3),
        beam=True,
    )
    a["pairs"] = _art(artifacts.TrainingPairs, files.join(root, "PairGen", "pairs", "3"))
    ppr = dict(ppr_num_walks=10, ppr_walk_length=3, ppr_restart_prob=0.5, negative_lo=0.1, negative_hi=0.5)
    props = dict(ppr, window=3, symmetric=True, max_negatives=5, seed=3, shard_size=64, max_queries=0)
    _do(pair_gen.Executor, root, {"graph": [a["graph"]]}, {"pairs": [a["pairs"]]}, props, beam=True)


def run_training(root, a):
    """PinSageTrainer and PinSageEvaluator."""
    a["examples"] = _examples(files.join(root, "Transform", "transformed_examples"), "items")
    a["transform_graph"] = _art(standard_artifacts.TransformGraph, files.join(root, "Transform", "transform_graph"))
    a["model"] = _art(standard_artifacts.Model, files.join(root, "PinSageTrainer", "model", "4"))
    schema_path = files.join(root, "in", "graph_schema.pbtxt")
    inputs = {k: [a[k]] for k in ("examples", "transform_graph", "graph", "neighborhoods", "pairs")}
    props = dict(
        run_fn=trainer.DEFAULT_RUN_FN,
        hparams=json.dumps(HPARAMS),
        graph_schema=schema_path,
        code_fingerprint="",
        ablations="[]",
        eval_contexts=0,
    )
    model_run = _art(standard_artifacts.ModelRun, files.join(root, "PinSageTrainer", "model_run", "4"))
    _do(trainer.Executor, root, inputs, {"model": [a["model"]], "model_run": [model_run]}, props)
    a["report"] = _art(artifacts.EvaluationReport, files.join(root, "PinSageEvaluator", "report", "5"))
    inputs = {k: [a[k]] for k in ("graph", "model", "examples", "transform_graph")}
    props = dict(dataset="synthetic", graph_schema=schema_path, max_contexts=0)
    _do(evaluator.Executor, root, inputs, {"report": [a["report"]]}, props)


def run_serving(root, a):
    """BulkEmbedder (the Beam strategy), IndexBuilder, PinSagePusher."""
    a["embeddings"] = _art(artifacts.Embeddings, files.join(root, "BulkEmbedder", "embeddings", "6"))
    inputs = {k: [a[k]] for k in ("model", "examples", "neighborhoods", "graph")}
    props = dict(graph_schema=files.join(root, "in", "graph_schema.pbtxt"), strategy="beam", batch_size=64)
    _do(bulk_embedder.Executor, root, inputs, {"embeddings": [a["embeddings"]]}, props, beam=True)
    a["index"] = _art(artifacts.Index, files.join(root, "IndexBuilder", "index", "7"))
    props = dict(brute_force_below=20_000, num_leaves=0, leaves_to_search=0, reorder=100, recall_queries=50, seed=0)
    _do(index_builder.Executor, root, {"embeddings": [a["embeddings"]]}, {"index": [a["index"]]}, props)
    a["pushed"] = _art(standard_artifacts.PushedModel, files.join(root, "PinSagePusher", "pushed_model", "8"))
    props = dict(serving_model_dir=files.join(root, "serving_model"), model_name="pinsage", keep=1)
    inputs = {"embeddings": [a["embeddings"]], "index": [a["index"]]}
    _do(pusher.Executor, root, inputs, {"pushed_model": [a["pushed"]]}, props)


def run_chain(root):
    a = {}
    write_inputs(root)
    run_sampling(root, a)
    run_training(root, a)
    run_serving(root, a)
    return {k: v.uri for k, v in a.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    local = run_chain(str(tmp_path_factory.mktemp("local")))
    cwd, before = tmp_path_factory.mktemp("cwd"), os.getcwd()
    os.chdir(cwd)
    try:
        remote = run_chain(remote_fs.fresh_root())
    finally:
        os.chdir(before)
    return local, remote, str(cwd)


def test_the_remote_run_wrote_nothing_locally(runs):
    local, remote, cwd = runs
    assert os.listdir(cwd) == []  # a local call on ram://x would have made ./ram:/x
    assert all(u.startswith("ram://") for u in remote.values())
    for key in ("graph", "neighborhoods", "pairs", "model", "report", "embeddings", "index", "pushed"):
        assert files.walk_files(remote[key]), key  # written, and only there


def test_every_artifact_holds_the_same_files(runs):
    local, remote, _ = runs
    for key in ("graph", "neighborhoods", "pairs", "model", "report", "embeddings", "index", "pushed"):
        assert files.walk_files(remote[key]) == files.walk_files(local[key]), key


def test_the_tables_equal_the_local_run(runs):
    local, remote, _ = runs
    g_local, g_remote = graph_io.load_graph(local["graph"]), graph_io.load_graph(remote["graph"])
    assert g_remote.num_items == N and g_remote.num_contexts == g_local.num_contexts > 0
    for col in ("item_ids", "context_index", "node_id", "timestamp", "split", "position", "train_degree"):
        np.testing.assert_array_equal(getattr(g_remote, col), getattr(g_local, col))
    assert graph_io.read_stats(remote["graph"]) == graph_io.read_stats(local["graph"])
    for a, b in zip(
        neighborhood_io.load_neighborhoods(remote["neighborhoods"]),
        neighborhood_io.load_neighborhoods(local["neighborhoods"]),
    ):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(pairs_io.load_pairs(remote["pairs"]), pairs_io.load_pairs(local["pairs"])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        pairs_io.load_hard_negatives(remote["pairs"], N), pairs_io.load_hard_negatives(local["pairs"], N)
    )


def test_the_model_embeddings_and_report_equal_the_local_run(runs):
    local, remote, _ = runs
    z_r, ids_r, titles_r = embeddings_io.read_embeddings(remote["embeddings"])
    z_l, ids_l, titles_l = embeddings_io.read_embeddings(local["embeddings"])
    assert ids_r == ids_l == [str(i) for i in range(N)] and titles_r == titles_l
    np.testing.assert_allclose(z_r, z_l, atol=1e-5)
    np.testing.assert_allclose(
        embeddings_io.read_query_embeddings(remote["embeddings"]),
        embeddings_io.read_query_embeddings(local["embeddings"]),
        atol=1e-5,
    )
    trained = files.np_load(files.join(remote["model"], embeddings_io.EMBEDDINGS_FILE))
    np.testing.assert_allclose(trained, z_r, atol=1e-4)  # the bulk embedder reproduces the trainer's vectors
    report_r = files.read_json(files.join(remote["report"], "report.json"))
    report_l = files.read_json(files.join(local["report"], "report.json"))
    assert report_r["metrics"]["pinsage"] and report_r["metrics"] == report_l["metrics"]
    assert report_r["validation_metrics"] == report_l["validation_metrics"]
    assert files.read_bytes(files.join(remote["report"], "plots", "training.png"))[:4] == b"\x89PNG"


def test_the_pushed_version_serves_the_same_neighbours(runs):
    local, remote, _ = runs
    pushed = files.read_json(files.join(remote["pushed"], "pushed.json"))
    assert pushed["destination"].startswith("ram://") and pushed["version"] == 1
    version = pushed["destination"]
    idx_r, idx_l = load_index(versions.index_dir(version)), load_index(local["index"])
    assert idx_r.stats["num_items"] == N and list(idx_r.item_ids) == list(idx_l.item_ids)
    z, _, _ = embeddings_io.read_embeddings(local["embeddings"])
    got_r, _ = idx_r.searcher.search_batched(z[:20], final_num_neighbors=5)
    got_l, _ = idx_l.searcher.search_batched(z[:20], final_num_neighbors=5)
    np.testing.assert_array_equal(got_r, got_l)
    served = tf.saved_model.load(version).signatures["related_items"]
    out = served(item_id=tf.constant(["3"]), k=tf.constant(5))
    want = tf.saved_model.load(files.read_json(files.join(local["pushed"], "pushed.json"))["destination"])
    ref = want.signatures["related_items"](item_id=tf.constant(["3"]), k=tf.constant(5))
    assert sorted(out) == sorted(ref)
    for k in out:  # ids exactly; scores to float32 rounding (two loads may split the matmul's sums differently)
        if out[k].dtype.is_floating:
            np.testing.assert_allclose(out[k].numpy(), ref[k].numpy(), rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(out[k].numpy(), ref[k].numpy())


def test_an_export_to_the_remote_filesystem_pushes_and_retires_the_first_version(runs):
    _, remote, _ = runs
    version = files.read_json(files.join(remote["pushed"], "pushed.json"))["destination"]
    model_dir = files.dirname(version)
    first = files.walk_files(version)
    emb, ids, titles = embeddings_io.read_embeddings(remote["embeddings"])
    export_dir = export.export_serving_model(files.join(remote_fs.fresh_root(), "export"), emb, ids, titles)
    path = push_lib.push(export_dir, remote["index"], files.dirname(model_dir), keep=1)
    assert path == files.join(model_dir, "2") and versions.list_versions(model_dir) == [2]
    assert files.listdir(model_dir) == ["2"]  # version 1 and the .tmp-/.del- directories are gone
    assert files.walk_files(path) == first  # the same layout as the Pusher's own version
