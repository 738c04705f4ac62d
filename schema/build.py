"""Builds the project's schemas from a dataset spec (dataset.yaml) so that any dataset in the contract gets them.

- TFX data schemas (tensorflow_metadata `Schema`) of the two ingested tables, for ImportSchemaGen/ExampleValidator:
  every declared column required in every row, so that a missing value is an ExampleValidator anomaly that the
  run surfaces (ingest has already counted and blanked it).
- The TF-GNN `GraphSchema` of the sampled training subgraphs: node set `item` with the Transform-ed feature tensors
  and edge set `importance` (neighbour -> item) carrying the random-walk importance weight.

The bundled datasets' schemas are checked in under schema/<dataset>/ and tests assert they equal what this module
builds, so a change here shows up as a reviewed diff of the .pbtxt files.
"""

from __future__ import annotations

import os

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from schema import files
from schema.constants import EDGE_SET, MULTI_HOT_WIDTH, NODE_SET

SCHEMA_DIR = os.path.dirname(os.path.abspath(__file__))
BUNDLED = ("ml-100k", "ml-1m")
ITEMS_SCHEMA = "items_schema.pbtxt"
INTERACTIONS_SCHEMA = "interactions_schema.pbtxt"
GRAPH_SCHEMA = "graph_schema.pbtxt"


def _required(schema, name, ftype, description=""):
    f = schema.feature.add(name=name, type=ftype)
    f.presence.min_fraction = 1.0
    f.presence.min_count = 1
    f.value_count.min = 1
    f.value_count.max = 1
    if description:
        f.annotation.comment.append(description)
    return f


def _id_type(kind: str):
    return schema_pb2.INT if kind == "int" else schema_pb2.BYTES


def items_schema(spec: dict, item_id_type: str) -> schema_pb2.Schema:
    s = schema_pb2.Schema()
    _required(s, "item_id", _id_type(item_id_type), "source item id")
    for col, f in spec["features"].items():
        ftype = schema_pb2.FLOAT if f["kind"] == "numeric" else schema_pb2.BYTES
        feat = _required(s, col, ftype, f"{f['kind']} feature")
        if f["kind"] == "numeric":
            feat.float_domain.disallow_nan = True
    return s


def interactions_schema(item_id_type: str, context_id_type: str) -> schema_pb2.Schema:
    s = schema_pb2.Schema()
    _required(s, "context_id", _id_type(context_id_type), "source context (user/board) id")
    _required(s, "item_id", _id_type(item_id_type), "source item id")
    _required(s, "timestamp", schema_pb2.INT, "epoch seconds")
    w = _required(s, "weight", schema_pb2.FLOAT, "engagement weight, > 0")
    w.float_domain.min = 0.0
    w.float_domain.disallow_nan = True
    return s


def graph_items_schema(items: schema_pb2.Schema) -> schema_pb2.Schema:
    """The item table GraphGen hands to Transform: the ingested item columns plus node_id and train_degree."""
    s = schema_pb2.Schema()
    s.CopyFrom(items)
    _required(s, "node_id", schema_pb2.INT, "contiguous item index 0..N-1 assigned by GraphGen")
    _required(s, "train_degree", schema_pb2.INT, "number of train-split interactions of the item")
    return s


def transformed_features(spec: dict) -> dict[str, tuple[str, list[int]]]:
    """Name -> (dtype, shape) of the per-item tensors Transform produces (modules/preprocessing/transform.py);
    -1 = ragged."""
    out = {"node_id": ("DT_INT64", []), "log_degree": ("DT_FLOAT", [])}
    for col, f in spec["features"].items():
        kind = f["kind"]
        if kind == "numeric":
            out[col] = ("DT_FLOAT", [])
            out[f"{col}_missing"] = ("DT_FLOAT", [])
        elif kind == "categorical":
            out[f"{col}_multi_hot"] = ("DT_FLOAT", [MULTI_HOT_WIDTH + 1])
        elif kind == "text":
            out[f"{col}_tokens"] = ("DT_INT64", [-1])
        elif kind == "dense_vector":
            out[col] = ("DT_FLOAT", [int(f["dim"])])
    return dict(sorted(out.items()))


def graph_schema(spec: dict):
    """TF-GNN GraphSchema of a sampled training subgraph (one node set, one weighted edge set)."""
    import tensorflow_gnn as tfgnn  # here: it loads TensorFlow, which the rest of schema/ never needs

    gs = tfgnn.GraphSchema()
    ns = gs.node_sets[NODE_SET]
    ns.description = "items (pins); features from tf.Transform, keyed by node_id"
    for name, (dtype, shape) in transformed_features(spec).items():
        feat = ns.features[name]
        text_format.Parse(f"dtype: {dtype}", feat)
        for d in shape:
            feat.shape.dim.add(size=d)
    es = gs.edge_sets[EDGE_SET]
    es.description = (
        "importance neighbourhood: source = neighbour v in N(u), target = item u; "
        "weight = L1-normalised random-walk visit count (alpha in the paper)"
    )
    es.source = NODE_SET
    es.target = NODE_SET
    text_format.Parse("dtype: DT_FLOAT", es.features["weight"])
    return gs


def write_pbtxt(message, path: str) -> None:
    files.makedirs(files.dirname(path) or ".")
    files.write_text(path, text_format.MessageToString(message))


def read_pbtxt(message, path: str):
    return text_format.Parse(files.read_text(path), message)


def write_all(spec: dict, item_id_type: str, context_id_type: str, out_dir: str) -> dict[str, str]:
    """Writes the three schema files for a dataset; returns their paths."""
    items = items_schema(spec, item_id_type)
    paths = {
        "items": files.join(out_dir, "items", ITEMS_SCHEMA),
        "interactions": files.join(out_dir, "interactions", INTERACTIONS_SCHEMA),
        "graph": files.join(out_dir, GRAPH_SCHEMA),
    }
    write_pbtxt(items, paths["items"])
    write_pbtxt(interactions_schema(item_id_type, context_id_type), paths["interactions"])
    write_pbtxt(graph_schema(spec), paths["graph"])
    return paths


def bundled_dir(dataset: str) -> str:
    return os.path.join(SCHEMA_DIR, dataset)
