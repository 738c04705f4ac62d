"""BulkEmbedder (modules/embedding.py, pipeline/components/bulk_embedder.py): the layer-wise embeddings
equal the model applied directly to each item's K-hop neighbourhood (modules/train.embed_all), in-process and
through the TFX executor on the Beam DirectRunner (both strategies; the Beam one also on two worker processes),
items without neighbours included."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from modules import embedding as be
from modules import features as features_lib
from modules.model import PinSageHParams, build_model
from modules.train import embed_all
from pipeline.embedding import beam_embedder
from schema import embeddings as embeddings_io
from schema import neighborhoods as neighborhood_io
from tests import fixtures

SMALL = dict(hidden_dim=16, output_dim=8, text_embedding_dim=4)
TOL = 1e-4


def graph_schema_path():
    from schema import build

    return os.path.join(build.bundled_dir("ml-100k"), build.GRAPH_SCHEMA)


def make_model(feats, num_layers=2, **kw):
    hp = PinSageHParams(num_layers=num_layers, **{**SMALL, **kw})
    return build_model(hp, features_lib.feature_spec_from_arrays(feats), num_items=len(feats["node_id"]))


@pytest.mark.parametrize(
    "num_layers,pooling,id_embedding", [(1, "importance", False), (2, "importance", False), (3, "max", True)]
)
def test_in_memory_equals_direct_application(num_layers, pooling, id_embedding):
    feats, nbr, w = fixtures.synthetic_catalogue(60, 6, seed=num_layers, isolated_fraction=0.1)
    nbr[3] = -1  # an item with an empty neighbourhood
    w[3] = 0.0
    w[5] *= 0.5  # a truncated neighbourhood
    assert ((nbr >= 0).sum(1) == 0).sum() >= 2
    model = make_model(feats, num_layers, pooling=pooling, id_embedding=id_embedding)
    want = embed_all(model, feats, nbr, w, batch_size=32)
    lw = be.LayerwiseModel(model)
    assert lw.num_layers == num_layers
    for batch_size in (7, 1000):
        got = be.embed_in_memory(lw, feats, nbr, w, batch_size=batch_size)
        assert got.shape == want.shape and np.abs(got - want).max() <= TOL
    assert np.abs(want[0] - want[1]).max() > 1e-3  # not a degenerate model


def test_ml100k_sized_catalogue(tmp_path):
    """1,682 items of the ML-100K transformed shape, T = 20, the model reloaded from a SavedModel; in-process
    and through the executor's Beam strategy."""
    n = 1682
    feats, nbr, w = fixtures.synthetic_catalogue(n, 20, seed=5)
    model = make_model(feats, 2, hidden_dim=64, output_dim=32)
    want = embed_all(model, feats, nbr, w, batch_size=512)
    uris = {k: str(tmp_path / k) for k in ("model", "examples", "neighborhoods", "graph")}
    be.save_model(model, os.path.join(uris["model"], "Format-Serving"), save_traces=False)
    lw = be.LayerwiseModel.from_saved_model(os.path.join(uris["model"], "Format-Serving"))
    got = be.embed_in_memory(lw, feats, nbr, w, batch_size=512)
    assert np.abs(got - want).max() <= TOL
    fixtures.write_examples(os.path.join(uris["examples"], "Split-train"), feats, shards=2)
    neighborhood_io.write_neighborhoods(uris["neighborhoods"], nbr, w, shards=2)
    fixtures.write_items(uris["graph"], [str(u + 1) for u in range(n)])
    out = run_executor(uris, str(tmp_path / "out"), "beam", batch_size=256)
    emb, ids, titles = embeddings_io.read_embeddings(out.uri)
    assert titles is None and ids[0] == "1" and np.abs(emb - want).max() <= TOL


# ------------------------------------------------------------------------------------------- TFX executor


def _artifact(cls, uri, **props):
    a = cls()
    a.uri = uri
    for k, v in props.items():
        setattr(a, k, v)
    return a


IN_PROCESS = ["--runner=DirectRunner", "--direct_num_workers=1"]
MULTI_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def run_executor(inputs, out_uri, strategy, batch_size=16, beam_args=IN_PROCESS):
    from tfx.types import standard_artifacts

    from pipeline.components import artifacts
    from pipeline.components import bulk_embedder as component

    input_dict = {
        "model": [_artifact(standard_artifacts.Model, inputs["model"])],
        "examples": [_artifact(standard_artifacts.Examples, inputs["examples"], split_names='["train"]')],
        "neighborhoods": [_artifact(artifacts.Neighborhoods, inputs["neighborhoods"])],
        "graph": [_artifact(artifacts.PinSageGraph, inputs["graph"])],
    }
    out = _artifact(artifacts.Embeddings, out_uri)
    ctx = component.Executor.Context(beam_pipeline_args=beam_args, tmp_dir=out_uri + "_tmp", unique_id="test")
    component.Executor(ctx).Do(
        input_dict,
        {"embeddings": [out]},
        {"graph_schema": graph_schema_path(), "strategy": strategy, "batch_size": batch_size},
    )
    return out


@pytest.fixture(scope="module")
def pipeline_inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bulk")
    feats, nbr, w = fixtures.synthetic_catalogue(80, 5, seed=11, isolated_fraction=0.1)
    nbr[0] = -1  # node 0 (first item) has no neighbours
    w[0] = 0.0
    model = make_model(feats, 2)
    want = embed_all(model, feats, nbr, w, batch_size=32)
    uris = {k: str(tmp / k) for k in ("model", "examples", "neighborhoods", "graph")}
    be.save_model(model, os.path.join(uris["model"], "Format-Serving"), save_traces=False)
    fixtures.write_examples(os.path.join(uris["examples"], "Split-train"), feats, shards=2)
    neighborhood_io.write_neighborhoods(uris["neighborhoods"], nbr, w, shards=3)
    ids = [f"movie-{u}" for u in range(80)]
    fixtures.write_items(uris["graph"], ids, titles=[f"Title {u} (1999)" for u in range(80)])
    return {"uris": uris, "want": want, "ids": ids, "nbr": nbr, "tmp": tmp}


@pytest.mark.parametrize(
    "strategy,beam_args",
    [("beam", IN_PROCESS), ("beam", MULTI_PROCESS), ("in_memory", IN_PROCESS)],
    ids=["beam", "beam-2-processes", "in_memory"],
)
def test_executor_equals_direct_application(pipeline_inputs, strategy, beam_args):
    """On two DirectRunner worker processes each worker loads the model itself and batches / row order differ
    from the in-process run: the vectors must not."""
    inp = pipeline_inputs
    out = run_executor(inp["uris"], str(inp["tmp"] / f"out_{strategy}_{len(beam_args)}"), strategy, beam_args=beam_args)
    emb, ids, titles = embeddings_io.read_embeddings(out.uri)
    assert ids == inp["ids"] and titles[7] == "Title 7 (1999)"
    assert emb.dtype == np.float32 and emb.shape == inp["want"].shape
    assert np.abs(emb - inp["want"]).max() <= TOL
    empty = np.nonzero((inp["nbr"] >= 0).sum(1) == 0)[0]
    assert len(empty) >= 2 and np.abs(emb[empty] - inp["want"][empty]).max() <= TOL
    node_ids, item_ids, rows = be.read_rows(out.uri)  # the TFRecord rows agree with the npy
    assert sorted(node_ids.tolist()) == list(range(80))
    assert [item_ids[j] for j in np.argsort(node_ids)] == inp["ids"]
    np.testing.assert_array_equal(rows[np.argsort(node_ids)], emb)
    with open(os.path.join(out.uri, "bulk_embedder_stats.json")) as f:
        stats = json.load(f)
    assert stats["strategy"] == strategy and stats["items"] == 80
    assert out.get_int_custom_property("num_items") == 80


@pytest.mark.parametrize("strategy", ["beam", "in_memory"])
def test_parquet_examples(pipeline_inputs, strategy):
    """Transform's output is Parquet when GraphGen's item examples are (the default): both strategies read it (the
    Beam path in Arrow slices of batch_size rows) and give the same vectors as from TFRecords."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tfx_bsl.coders import example_coder

    inp = pipeline_inputs
    src = os.path.join(inp["uris"]["examples"], "Split-train")
    recs = [
        r.numpy()
        for r in tf.data.TFRecordDataset(sorted(os.path.join(src, f) for f in os.listdir(src)), compression_type="GZIP")
    ]
    rb = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(recs)
    uris = dict(inp["uris"], examples=str(inp["tmp"] / f"examples_pq_{strategy}"))
    os.makedirs(os.path.join(uris["examples"], "Split-train"))
    for j, start in enumerate((0, 30)):
        pq.write_table(
            pa.Table.from_batches([rb.slice(start, 30 if start == 0 else None)]),
            os.path.join(uris["examples"], "Split-train", f"part-{j}.parquet"),
        )
    out = run_executor(uris, str(inp["tmp"] / f"out_pq_{strategy}"), strategy, beam_args=IN_PROCESS)
    emb, ids, _ = embeddings_io.read_embeddings(out.uri)
    assert ids == inp["ids"] and np.abs(emb - inp["want"]).max() <= TOL


def test_component_construction(pipeline_inputs):
    from tfx import v1 as tfx

    from pipeline.components import artifacts
    from pipeline.components.bulk_embedder import BulkEmbedder
    from pipeline.configs import EmbedConfig

    uris = pipeline_inputs["uris"]
    imp = {
        k: tfx.dsl.Importer(source_uri=uris[k], artifact_type=t).with_id(k)
        for k, t in [
            ("model", tfx.types.standard_artifacts.Model),
            ("examples", tfx.types.standard_artifacts.Examples),
            ("neighborhoods", artifacts.Neighborhoods),
            ("graph", artifacts.PinSageGraph),
        ]
    }
    c = BulkEmbedder(**{k: v.outputs["result"] for k, v in imp.items()}, graph_schema=graph_schema_path())
    assert c.outputs["embeddings"].type is artifacts.Embeddings
    assert c.exec_properties["strategy"] == "beam"
    with pytest.raises(ValueError):
        BulkEmbedder(
            **{k: v.outputs["result"] for k, v in imp.items()}, graph_schema="x", config=EmbedConfig(strategy="nope")
        )


@pytest.mark.slow
def test_traced_saved_model_as_the_trainer_writes_it(tmp_path):
    """modules/trainer.run_fn saves with traces (the default); that SavedModel loads the same."""
    feats, nbr, w = fixtures.synthetic_catalogue(40, 5, seed=2)
    model = make_model(feats, 2)
    model.save(str(tmp_path / "m"), include_optimizer=False)
    got = be.embed_in_memory(be.LayerwiseModel.from_saved_model(str(tmp_path / "m")), feats, nbr, w)
    assert np.abs(got - embed_all(model, feats, nbr, w)).max() <= TOL


def test_encode_rows_matches_the_per_row_example():
    """The vectorised encoder (in-memory strategy) writes byte-for-byte the protos the Beam path's _row_example does."""
    rng = np.random.default_rng(3)
    emb, ids = rng.normal(size=(50, 5)).astype(np.float32), [f"it{j}" for j in range(50)]
    nodes = rng.permutation(50)
    fast = be.encode_rows(emb, ids, nodes)
    slow = [
        beam_embedder._row_example((int(u), {"embedding": [emb[j]], "item_id": [ids[j]]})) for j, u in enumerate(nodes)
    ]
    assert [tf.train.Example.FromString(x) for x in fast] == [tf.train.Example.FromString(x) for x in slow]
