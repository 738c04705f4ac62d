"""Layer-wise bulk inference (PinSage §3.4, "Efficient MapReduce inference"): every item's embedding with each
node computed once per layer, instead of once per root that reaches it.

  layer 0      h0[u] = ItemEncoder(features of u)                             for every item u
  layer k      hk[u] = pinsage_layer_k(h_{k-1}[u], {h_{k-1}[v], alpha_uv : v in N(u)})   for every item u
  head         z[u]  = EmbeddingHead(hK[u])

Every step reuses the trained model's own Keras layers (`item_encoder`, `pinsage_layer_<k>`, `embedding_head`);
nothing of the maths is re-implemented here. Layer k is called on a small GraphTensor per batch of target
items (`_layer_graph`): node set `item` = the B targets with their layer-(k-1) states, node set `_neighbor` =
the batch's (deduplicated) neighbour states, edge set `importance` `_neighbor` -> `item` with feature `weight`.
The PinSage convolution reads sender states from whatever node set the edge set's source is, and the
GraphUpdate only updates `item`, so messages ReLU(Q h_v + q) are computed once per distinct neighbour of the
batch and the next-state only for the targets. An item's layer-k state depends only on its neighbours'
layer-(k-1) states, so this equals the model applied to each root's K-hop subgraph (modules/train.embed_all;
tests/pipeline/embedding/test_bulk_embedder.py checks it, items without neighbours included).

Two strategies, one result:
- `embed_in_memory`: numpy tables [N, d] per layer, batches of targets (small and mid-sized catalogues; 1M
  items x 128 floats is 0.5 GB per layer).
- `embed_beam` (pipeline/embedding/beam_embedder.py, for catalogues beyond one worker): PCollections keyed by node id. Per layer two CoGroupByKeys —
  states joined with the reversed neighbour lists (each node sends its state to the items that list it), then
  per item its own state, its neighbour list and the received states — and batches of items (BatchElements)
  go through a DoFn that holds the model (loaded once per worker process, `apache_beam.utils.shared`).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tensorflow_gnn  # noqa: F401  (registers TF-GNN's Keras layers)
import tensorflow_gnn as tfgnn
from tensorflow.python.autograph.core import ag_ctx
from tfx_bsl.coders import example_coder

import modules.layers  # noqa: F401  (registers PinSageConv, QueryHead, ... for loading)
import modules.model  # noqa: F401  (registers ItemEncoder for loading)
from modules import batches
from schema import files
from schema.constants import EDGE_SET, NODE_SET, WEIGHT

NEIGHBOR_SET = "_neighbor"
ROWS_PREFIX = "embedding_rows"  # TFRecord of tf.Example {node_id, item_id, embedding}


# --------------------------------------------------------------------------------------------- the model's layers


def load_model(saved_model_dir: str):
    """The trained Keras model from a SavedModel (TF-GNN and the PinSage custom objects registered first)."""

    # The layers have no tensor-dependent Python control flow: skip AutoGraph's source conversion, which
    # otherwise dominates loading (as in modules.model.build_model).
    with ag_ctx.ControlStatusCtx(status=ag_ctx.Status.DISABLED):
        return tf.keras.models.load_model(saved_model_dir, compile=False)


class LayerwiseModel:
    """The model cut into its stages: encode(features) -> h0, layer(k, ...) -> hk, head(hK) -> z."""

    def __init__(self, model):

        self.encoder = model.get_layer("item_encoder")
        self.num_layers = sum(1 for layer in model.layers if layer.name.startswith("pinsage_layer_"))
        self.layers = [model.get_layer(f"pinsage_layer_{k}") for k in range(1, self.num_layers + 1)]
        self.head = model.get_layer("embedding_head")
        self.output_dim = int(model.output_shape[-1])
        fn = lambda f: tf.function(f, reduce_retracing=True, autograph=False)  # noqa: E731
        self._encode = fn(self._encode_impl)
        f32, i32 = tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32)
        sig = [f32, f32, i32, i32, tf.TensorSpec([None], tf.float32)]
        self._layer = [tf.function(self._bind(layer), input_signature=sig, autograph=False) for layer in self.layers]
        self._head = tf.function(lambda h: self.head(h, training=False), input_signature=[f32], autograph=False)

    @classmethod
    def from_saved_model(cls, saved_model_dir: str) -> "LayerwiseModel":
        return cls(load_model(saved_model_dir))

    # -- tf.functions over plain tensors
    def _encode_impl(self, features):

        first = next(iter(features.values()))
        n = first.nrows() if isinstance(first, tf.RaggedTensor) else tf.shape(first)[0]
        graph = tfgnn.GraphTensor.from_pieces(
            node_sets={
                NODE_SET: tfgnn.NodeSet.from_fields(sizes=tf.reshape(tf.cast(n, tf.int32), [1]), features=features)
            }
        )
        return self.encoder(graph, training=False).node_sets[NODE_SET][tfgnn.HIDDEN_STATE]

    @classmethod
    def _bind(cls, layer):
        def apply(h_targets, h_neighbors, source, target, weight):
            return cls._layer_impl(layer, h_targets, h_neighbors, source, target, weight)

        return apply

    @staticmethod
    def _layer_impl(layer, h_targets, h_neighbors, source, target, weight):

        graph = _layer_graph(h_targets, h_neighbors, source, target, weight)
        return layer(graph, training=False).node_sets[NODE_SET][tfgnn.HIDDEN_STATE]

    # -- numpy in, numpy out
    def encode(self, features: dict) -> np.ndarray:
        """h0 of a batch of items; `features` = the item feature tensors of those rows (node_id included when
        the model has an id embedding)."""

        return self._encode(batches.to_tensors(features)).numpy()

    def layer(self, k: int, h_targets, h_neighbors, source, target, weight) -> np.ndarray:
        """hk of B targets from their h_{k-1} [B, d], the neighbour states [M, d] and the edges
        (source index into h_neighbors, target index into h_targets, weight alpha), k = 1..K."""

        return self._layer[k - 1](
            tf.constant(h_targets, tf.float32),
            tf.constant(h_neighbors, tf.float32),
            tf.constant(source, tf.int32),
            tf.constant(target, tf.int32),
            tf.constant(weight, tf.float32),
        ).numpy()

    def final(self, h) -> np.ndarray:

        return self._head(tf.constant(h, tf.float32)).numpy()


def _layer_graph(h_targets, h_neighbors, source, target, weight):
    """Targets (`item`) receive from neighbour states (`_neighbor`) along `importance` edges."""

    def size(x):
        return tf.reshape(tf.shape(x, out_type=tf.int32)[0], [1])

    return tfgnn.GraphTensor.from_pieces(
        node_sets={
            NODE_SET: tfgnn.NodeSet.from_fields(sizes=size(h_targets), features={tfgnn.HIDDEN_STATE: h_targets}),
            NEIGHBOR_SET: tfgnn.NodeSet.from_fields(
                sizes=size(h_neighbors), features={tfgnn.HIDDEN_STATE: h_neighbors}
            ),
        },
        edge_sets={
            EDGE_SET: tfgnn.EdgeSet.from_fields(
                sizes=size(source),
                adjacency=tfgnn.Adjacency.from_indices(source=(NEIGHBOR_SET, source), target=(NODE_SET, target)),
                features={WEIGHT: weight},
            )
        },
    )


def neighbor_batch(nbr_rows: np.ndarray, w_rows: np.ndarray):
    """[B, T] -1-padded neighbour ids + weights -> (distinct neighbour ids [M], source [E], target [E], weight [E])."""
    valid = nbr_rows >= 0
    ids, source = np.unique(nbr_rows[valid], return_inverse=True)
    target = np.nonzero(valid)[0]
    return ids, source.reshape(-1), target, w_rows[valid]


def _rows(features: dict, start: int, stop: int) -> dict:
    return {k: v[start:stop] for k, v in features.items()}


# --------------------------------------------------------------------------------------------- in memory


def embed_in_memory(
    lw: LayerwiseModel,
    features: dict,
    nbr,
    w,
    batch_size: int = 8192,
    timings: Optional[dict] = None,
    return_states: bool = False,
):
    """[N, d] embeddings by node id: each layer over all items in batches of `batch_size` targets.
    With return_states, (embeddings, [h0, h1, ..., hK]): every layer's states [N, d_k] too (the cold-start
    embedder, modules/cold_start.py, stores h0..h_{K-1})."""
    nbr, w = np.asarray(nbr), np.asarray(w, np.float32)
    n = nbr.shape[0]
    t0 = time.time()
    h = np.concatenate([lw.encode(_rows(features, s, s + batch_size)) for s in range(0, n, batch_size)])
    states = [h] if return_states else None
    if timings is not None:
        timings["layer_0"] = time.time() - t0
    for k in range(1, lw.num_layers + 1):
        t0 = time.time()
        out = []
        for s in range(0, n, batch_size):
            ids, src, tgt, wt = neighbor_batch(nbr[s : s + batch_size], w[s : s + batch_size])
            out.append(lw.layer(k, h[s : s + batch_size], h[ids], src, tgt, wt))
        h = np.concatenate(out)
        if return_states:
            states.append(h)
        if timings is not None:
            timings[f"layer_{k}"] = time.time() - t0
    t0 = time.time()
    z = np.concatenate([lw.final(h[s : s + batch_size]) for s in range(0, n, batch_size)])
    if timings is not None:
        timings["head"] = time.time() - t0
    return (z.astype(np.float32), states) if return_states else z.astype(np.float32)


# --------------------------------------------------------------------------------------------- artifact io


def row_files(uri: str) -> list:
    return files.glob(files.join(uri, f"{ROWS_PREFIX}*.tfrecord"))


def read_rows(uri: str, batch_size: int = 65536):
    """(node ids [N], item ids [N] str, embeddings [N, d]) from the TFRecord rows, in file order."""

    files = row_files(uri)
    if not files:
        raise FileNotFoundError(f"{uri!r} has no {ROWS_PREFIX}*.tfrecord")
    first = next(iter(tf.data.TFRecordDataset(files[:1]).take(1)), None)
    d = (
        len(tf.train.Example.FromString(first.numpy()).features.feature["embedding"].float_list.value)
        if first is not None
        else 0
    )
    spec = {
        "node_id": tf.io.FixedLenFeature([], tf.int64),
        "item_id": tf.io.FixedLenFeature([], tf.string),
        "embedding": tf.io.FixedLenFeature([d], tf.float32),
    }
    ids, items, embs = [], [], []
    for b in tf.data.TFRecordDataset(files).batch(batch_size).map(lambda s: tf.io.parse_example(s, spec)):
        ids.append(b["node_id"].numpy())
        items.extend(x.decode() for x in b["item_id"].numpy())
        embs.append(b["embedding"].numpy())
    return (
        np.concatenate(ids) if ids else np.zeros(0, np.int64),
        items,
        np.concatenate(embs) if embs else np.zeros((0, d), np.float32),
    )


def encode_rows(embeddings: np.ndarray, item_ids: Sequence[str], node_ids: Optional[np.ndarray] = None) -> list:
    """Serialized tf.Examples {node_id, item_id, embedding} (the format _row_example writes), encoded by
    tfx-bsl's C++ coder from Arrow columns: building one Python proto per row is far slower at 1M items."""

    n, d = embeddings.shape
    node_ids = np.arange(n, dtype=np.int64) if node_ids is None else np.asarray(node_ids, np.int64)
    one = pa.array(np.arange(n + 1, dtype=np.int32))
    emb = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)),
        pa.array(np.ascontiguousarray(embeddings, np.float32).reshape(-1)),
    )
    batch = pa.RecordBatch.from_arrays(
        [
            pa.ListArray.from_arrays(one, pa.array(node_ids)),
            pa.ListArray.from_arrays(one, pa.array([str(x) for x in item_ids], pa.binary())),
            emb,
        ],
        names=["node_id", "item_id", "embedding"],
    )
    return example_coder.RecordBatchToExamples(batch)


def write_rows(uri: str, embeddings: np.ndarray, item_ids: Sequence[str], chunk: int = 100_000) -> None:
    """The TFRecord rows in-process (the in-memory strategy), the same format embed_beam writes."""

    with tf.io.TFRecordWriter(files.join(uri, f"{ROWS_PREFIX}-00000-of-00001.tfrecord")) as f:
        for start in range(0, len(item_ids), chunk):
            stop = min(start + chunk, len(item_ids))
            for e in encode_rows(embeddings[start:stop], item_ids[start:stop], np.arange(start, stop)):
                f.write(e)


def assemble(node_ids: np.ndarray, embeddings: np.ndarray, num_items: int) -> np.ndarray:
    """Rows keyed by node id -> [N, d] in node-id order; every id 0..N-1 exactly once."""
    if len(node_ids) != num_items or not np.array_equal(np.sort(node_ids), np.arange(num_items)):
        raise ValueError(f"{len(node_ids)} embedding rows do not cover node ids 0..{num_items - 1} exactly once")
    out = np.empty((num_items, embeddings.shape[1]), np.float32)
    out[node_ids] = embeddings
    return out


def save_model(model, saved_model_dir: str, save_traces: bool = True) -> None:
    """model.save without AutoGraph's source conversion (several times faster for these layers)."""

    with ag_ctx.ControlStatusCtx(status=ag_ctx.Status.DISABLED):
        model.save(saved_model_dir, save_format="tf", include_optimizer=False, save_traces=save_traces)
