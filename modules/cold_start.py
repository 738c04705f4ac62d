"""Cold start: the `embed_item` embedder of the serving SavedModel (modules/export.py) from the trained model,
the Transform graph and the stored layer states of the catalogue; no retraining.

For a new item u with raw items.csv features f_u and neighbours N(u) (existing items, weights alpha):
    transformed f_u = the tf.Transform graph applied to f_u with node_id = -1 and train_degree = 0, then (by
                     default) log_degree set to the catalogue's median item's: degree 0 is a value no trained item
                     has, and it sent ML-100K held-out items' top-10 to the catalogue's obscure corner (genre match
                     at chance; tests/modules/test_cold_start.py)
    h0(u)          = item_encoder(transformed f_u)
    hk(u)          = pinsage_layer_k(h_{k-1}(u), {H_{k-1}[v], alpha_uv : v in N(u)})        k = 1..K
    embedding      = embedding_head(hK(u))
where H_{k-1} are the layer-(k-1) states of every existing item, computed once layer-wise exactly as the
BulkEmbedder computes them (bulk_embedder.embed_in_memory(..., return_states=True)) and stored in the exported
module as variables. An existing item fed with its own raw features and its own neighbourhood gets its
BulkEmbedder embedding back, as long as its transformed features do not depend on node_id / train_degree (an
item with train_degree 0, and a model without an id embedding: a new item has neither).

A neighbour slot takes part when its weight is > 0 (export.py forces the padding slots, "" ids, to weight 0), so
that, as in the BulkEmbedder, only real neighbours are pooled (it matters for 'mean'/'max' pooling).

    embed_fn, feature_spec = make_embed_fn(model_dir, transform_graph_uri, item_features, nbr, w, items_schema)
    export.export_serving_model(path, emb, item_ids, titles, embed_fn=embed_fn, feature_spec=feature_spec)
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Union

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_metadata.proto.v0 import schema_pb2

from modules import embedding as be
from modules import features as features_lib
from schema import files

ID_COLUMN = "item_id"  # the items table's id column: not a feature of the signature
NEW_NODE_ID = -1
NEW_TRAIN_DEGREE = 0
GRAPH_COLUMNS = ("node_id", "train_degree")  # the Transform inputs GraphGen adds to the item columns
DEGREE_FEATURE = "log_degree"  # the Transform output made from train_degree


def raw_feature_spec(items_schema) -> Dict[str, tf.TensorSpec]:
    """The signature's feature inputs from the items TFX schema (a Schema proto or a .pbtxt path): one value per
    item, FLOAT -> float32 [None], INT -> int64 [None], BYTES -> string [None]; the id column left out."""

    if isinstance(items_schema, dict):
        return {
            k: tf.TensorSpec([None], tf.as_dtype(v.dtype if isinstance(v, tf.TensorSpec) else v))
            for k, v in sorted(items_schema.items())
        }
    if isinstance(items_schema, (str, os.PathLike)):
        from google.protobuf import text_format

        items_schema = text_format.Parse(files.read_text(os.fspath(items_schema)), schema_pb2.Schema())
    dtypes = {schema_pb2.FLOAT: tf.float32, schema_pb2.INT: tf.int64, schema_pb2.BYTES: tf.string}
    return {
        f.name: tf.TensorSpec([None], dtypes[f.type])
        for f in sorted(items_schema.feature, key=lambda f: f.name)
        if f.name != ID_COLUMN and f.name not in GRAPH_COLUMNS
    }


def transformed_spec(tft_output) -> dict:
    """modules.features-style spec {name: (dtype name, shape)} (-1 = ragged) of the Transform output."""

    out = {}
    for name, f in tft_output.transformed_feature_spec().items():
        if isinstance(f, tf.io.FixedLenFeature):
            out[name] = (features_lib._dt(f.dtype), [int(d) for d in f.shape])
        else:  # VarLenFeature / RaggedFeature: var-len ids
            out[name] = (features_lib._dt(f.dtype), [-1])
    return dict(sorted(out.items()))


def _as_raw_input(x: tf.Tensor, spec) -> Union[tf.Tensor, tf.SparseTensor, tf.RaggedTensor]:
    """A [B] column -> the form the Transform graph's raw feature spec wants (one value per row)."""
    if isinstance(spec, tf.io.FixedLenFeature):
        return tf.reshape(x, [-1] + [int(d) for d in spec.shape]) if list(spec.shape) else x
    if isinstance(spec, tf.io.RaggedFeature):
        return tf.RaggedTensor.from_tensor(x[:, None])
    n = tf.shape(x, out_type=tf.int64)[0]
    idx = tf.stack([tf.range(n), tf.zeros([n], tf.int64)], axis=1)
    return tf.SparseTensor(idx, x, tf.stack([n, tf.constant(1, tf.int64)]))


def _as_model_input(x, shape):
    if shape == [-1]:
        if isinstance(x, tf.SparseTensor):
            return tf.RaggedTensor.from_sparse(x)
        return x if isinstance(x, tf.RaggedTensor) else tf.RaggedTensor.from_tensor(x)
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x)
    elif isinstance(x, tf.RaggedTensor):
        x = x.to_tensor()
    return tf.reshape(x, [-1] + list(shape))


class ColdStartEmbedder(tf.Module):
    """embed_fn for export.export_serving_model: (raw features, neighbour rows [B, T], weights [B, T]) -> [B, d].

    Tracks the Transform layer (its tables and vocabulary assets), the model's variables and the stored layer
    states H_0..H_{K-1}; the Keras layers themselves are held untracked (their variables are what is saved)."""

    def __init__(
        self, lw, tft_output, states, feature_spec: Dict[str, tf.TensorSpec], new_log_degree: Optional[float] = None
    ):
        super().__init__(name="cold_start")
        self._lw = _Untracked(lw)
        self.tft_layer = tft_output.transform_features_layer()
        self.model_variables = (
            list(lw.encoder.variables) + [v for layer in lw.layers for v in layer.variables] + list(lw.head.variables)
        )
        self.states = [
            tf.Variable(np.asarray(h, np.float32), trainable=False, name=f"h{k}") for k, h in enumerate(states)
        ]
        self._raw_spec = dict(tft_output.raw_feature_spec())
        self._model_spec = transformed_spec(tft_output)
        self.feature_spec = dict(feature_spec)
        self.new_log_degree = new_log_degree
        unknown = set(self.feature_spec) - set(self._raw_spec)
        if unknown:
            raise ValueError(
                f"feature columns {sorted(unknown)} are not inputs of the Transform graph ({sorted(self._raw_spec)})"
            )
        self.call = tf.function(self._call, autograph=False, reduce_retracing=True)

    def __call__(self, features, neighbor_ids, neighbor_weights):
        return self.call(features, neighbor_ids, neighbor_weights)

    def transform(self, features) -> dict:
        """Raw columns [B] -> the model's transformed feature tensors, as a new item (node_id -1, degree 0)."""
        first = tf.convert_to_tensor(next(iter(features.values())))
        b = tf.shape(first)[0]
        raw = {name: tf.convert_to_tensor(x) for name, x in features.items()}
        graph_cols = {
            "node_id": tf.fill([b], tf.constant(NEW_NODE_ID, tf.int64)),
            "train_degree": tf.fill([b], tf.constant(NEW_TRAIN_DEGREE, tf.int64)),
        }
        for name, x in graph_cols.items():
            if name in self._raw_spec:
                raw[name] = tf.cast(x, self._raw_spec[name].dtype)
        raw = {name: _as_raw_input(x, self._raw_spec[name]) for name, x in raw.items()}
        out = self.tft_layer(raw)
        if self.new_log_degree is not None and DEGREE_FEATURE in out:
            out[DEGREE_FEATURE] = tf.fill(tf.shape(out[DEGREE_FEATURE]), tf.constant(self.new_log_degree, tf.float32))
        return {
            name: _as_model_input(x, self._model_spec[name][1]) for name, x in out.items() if name in self._model_spec
        }

    def _call(self, features, neighbor_ids, neighbor_weights):

        lw = self._lw.obj
        h = lw._encode_impl(self.transform(features))  # [B, d0]
        rows = tf.cast(neighbor_ids, tf.int64)
        w = tf.cast(neighbor_weights, tf.float32)
        valid = w > 0
        edge = tf.cast(tf.where(valid), tf.int32)  # [E, 2] (target row, slot)
        nbr_rows = tf.boolean_mask(rows, valid)  # [E]
        weight = tf.boolean_mask(w, valid)
        source = tf.range(tf.shape(nbr_rows)[0], dtype=tf.int32)
        for k in range(1, lw.num_layers + 1):
            h_nbr = tf.gather(self.states[k - 1], nbr_rows)
            h = be.LayerwiseModel._layer_impl(lw.layers[k - 1], h, h_nbr, source, edge[:, 0], weight)
        return lw.head(h, training=False)


class _Untracked:
    """Keeps an object out of tf.Module / SavedModel dependency tracking."""

    def __init__(self, obj):
        self.obj = obj


def make_embed_fn(
    saved_model_dir: str,
    transform_graph_uri: str,
    item_features: dict,
    nbr,
    w,
    raw_feature_spec_or_schema,
    batch_size: int = 8192,
    lw=None,
    new_item_degree: str = "median",
):
    """(embed_fn, feature_spec) for export.export_serving_model's embed_item signature.

    saved_model_dir: the trained Keras SavedModel; transform_graph_uri: the Transform graph (transform_fn/ +
    transformed_metadata/); item_features, nbr, w: the catalogue's transformed features by node id and
    neighbourhoods (-1-padded), as the BulkEmbedder takes them; raw_feature_spec_or_schema: the items TFX schema
    (Schema proto or .pbtxt path) or a {column: dtype / TensorSpec} dict. `lw` (optional): an already loaded
    LayerwiseModel of saved_model_dir. new_item_degree: "median" (a new item's log_degree feature is the
    catalogue's median item's value) or "zero" (what the Transform graph gives train_degree 0)."""
    if new_item_degree not in ("median", "zero"):
        raise ValueError(f"new_item_degree must be 'median' or 'zero', got {new_item_degree!r}")

    if lw is None:
        lw = be.LayerwiseModel.from_saved_model(saved_model_dir)
    _, states = be.embed_in_memory(lw, item_features, nbr, w, batch_size=batch_size, return_states=True)
    spec = raw_feature_spec(raw_feature_spec_or_schema)
    new_log_degree = None
    if new_item_degree == "median" and DEGREE_FEATURE in item_features:
        deg = np.sort(np.asarray(item_features[DEGREE_FEATURE], np.float32).ravel())
        new_log_degree = float(deg[len(deg) // 2])  # an actual item's value, not a mean of two
    embedder = ColdStartEmbedder(lw, tft.TFTransformOutput(transform_graph_uri), states[:-1], spec, new_log_degree)
    return embedder, spec
