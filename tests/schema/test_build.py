"""Schemas: the checked-in bundled schemas equal what schema/build.py makes, and the GraphSchema is valid TF-GNN."""

import os

import pytest
import tensorflow_gnn as tfgnn
from tensorflow_metadata.proto.v0 import schema_pb2

from pipeline.data import datasets, ingest
from schema import build, constants


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = {}
    for name in build.BUNDLED:
        d = tmp_path_factory.mktemp(name)
        datasets.materialise(name, str(d / "data"))
        out[name] = ingest.canonicalise(str(d / "data"), str(d / "ingest"))[1]
    return out


@pytest.mark.parametrize("name", build.BUNDLED)
def test_checked_in_schemas_equal_the_generated_ones(reports, tmp_path, name):
    rep = reports[name]
    paths = build.write_all(rep["spec"], rep["items"]["id_type"], rep["interactions"]["context_id_type"], str(tmp_path))
    bundled = build.bundled_dir(name)
    for rel in ("items/items_schema.pbtxt", "interactions/interactions_schema.pbtxt", "graph_schema.pbtxt"):
        with open(os.path.join(bundled, rel)) as a, open(os.path.join(str(tmp_path), rel)) as b:
            assert a.read() == b.read(), f"{name}/{rel} is stale: run python -m pipeline.data.regenerate_schemas"
    assert paths["graph"].endswith("graph_schema.pbtxt")


def test_id_types_follow_the_data():
    s100 = build.read_pbtxt(
        schema_pb2.Schema(), os.path.join(build.bundled_dir("ml-100k"), "items", build.ITEMS_SCHEMA)
    )
    s1m = build.read_pbtxt(schema_pb2.Schema(), os.path.join(build.bundled_dir("ml-1m"), "items", build.ITEMS_SCHEMA))
    t = {f.name: f.type for f in s100.feature}
    assert t == {
        "item_id": schema_pb2.INT,
        "title": schema_pb2.BYTES,
        "year": schema_pb2.FLOAT,
        "genres": schema_pb2.BYTES,
    }
    assert {f.name: f.type for f in s1m.feature}["item_id"] == schema_pb2.BYTES  # 'Title (Year)' ids


@pytest.mark.parametrize("name", build.BUNDLED)
def test_graph_schema_is_a_valid_tfgnn_schema(name):
    gs = tfgnn.read_schema(os.path.join(build.bundled_dir(name), build.GRAPH_SCHEMA))
    tfgnn.validate_schema(gs)
    spec = tfgnn.create_graph_spec_from_schema_pb(gs)
    item = spec.node_sets_spec[constants.NODE_SET]
    assert item.features_spec["genres_multi_hot"].shape.as_list() == [None, build.MULTI_HOT_WIDTH + 1]
    assert isinstance(item.features_spec["title_tokens"], __import__("tensorflow").RaggedTensorSpec)
    assert set(item.features_spec) == {
        "node_id",
        "log_degree",
        "year",
        "year_missing",
        "genres_multi_hot",
        "title_tokens",
    }
    edges = spec.edge_sets_spec[build.EDGE_SET]
    assert edges.adjacency_spec.source_name == constants.NODE_SET
    assert edges.adjacency_spec.target_name == constants.NODE_SET
    assert set(edges.features_spec) == {"weight"}
