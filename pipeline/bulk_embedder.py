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
tests/test_bulk_embedder.py checks it, items without neighbours included).

Two strategies, one result:
- `embed_in_memory`: numpy tables [N, d] per layer, batches of targets (small and mid-sized catalogues; 1M
  items x 128 floats is 0.5 GB per layer).
- `embed_beam` (the TFX component's default): PCollections keyed by node id. Per layer two CoGroupByKeys —
  states joined with the reversed neighbour lists (each node sends its state to the items that list it), then
  per item its own state, its neighbour list and the received states — and batches of items (BatchElements)
  go through a DoFn that holds the model (loaded once per worker process, `apache_beam.utils.shared`).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import glob  # noqa: E402
import time  # noqa: E402
from typing import Iterable, Optional, Sequence  # noqa: E402

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402

NODE_SET = "item"
NEIGHBOR_SET = "_neighbor"
EDGE_SET = "importance"
WEIGHT = "weight"
ROWS_PREFIX = "embedding_rows"  # TFRecord of tf.Example {node_id, item_id, embedding}


# --------------------------------------------------------------------------------------------- the model's layers


def load_model(saved_model_dir: str):
    """The trained Keras model from a SavedModel (TF-GNN and the PinSage custom objects registered first)."""
    import tensorflow as tf
    import tensorflow_gnn  # noqa: F401  (registers TF-GNN's Keras layers)

    from tensorflow.python.autograph.core import ag_ctx

    from modules import layers, model  # noqa: F401  (registers ItemEncoder, PinSageConv, ... )

    # The layers have no tensor-dependent Python control flow: skip AutoGraph's source conversion, which
    # otherwise dominates loading (as in modules.model.build_model).
    with ag_ctx.ControlStatusCtx(status=ag_ctx.Status.DISABLED):
        return tf.keras.models.load_model(saved_model_dir, compile=False)


class LayerwiseModel:
    """The model cut into its stages: encode(features) -> h0, layer(k, ...) -> hk, head(hK) -> z."""

    def __init__(self, model):
        import tensorflow as tf

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
        import tensorflow as tf
        import tensorflow_gnn as tfgnn

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
        import tensorflow as tf
        import tensorflow_gnn as tfgnn

        graph = _layer_graph(h_targets, h_neighbors, source, target, weight)
        return layer(graph, training=False).node_sets[NODE_SET][tfgnn.HIDDEN_STATE]

    # -- numpy in, numpy out
    def encode(self, features: dict) -> np.ndarray:
        """h0 of a batch of items; `features` = the item feature tensors of those rows (node_id included when
        the model has an id embedding)."""
        from modules import batches

        return self._encode(batches.to_tensors(features)).numpy()

    def layer(self, k: int, h_targets, h_neighbors, source, target, weight) -> np.ndarray:
        """hk of B targets from their h_{k-1} [B, d], the neighbour states [M, d] and the edges
        (source index into h_neighbors, target index into h_targets, weight alpha), k = 1..K."""
        import tensorflow as tf

        return self._layer[k - 1](
            tf.constant(h_targets, tf.float32),
            tf.constant(h_neighbors, tf.float32),
            tf.constant(source, tf.int32),
            tf.constant(target, tf.int32),
            tf.constant(weight, tf.float32),
        ).numpy()

    def final(self, h) -> np.ndarray:
        import tensorflow as tf

        return self._head(tf.constant(h, tf.float32)).numpy()


def _layer_graph(h_targets, h_neighbors, source, target, weight):
    """Targets (`item`) receive from neighbour states (`_neighbor`) along `importance` edges."""
    import tensorflow as tf
    import tensorflow_gnn as tfgnn

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
    embedder, pipeline/cold_start.py, stores h0..h_{K-1})."""
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


# --------------------------------------------------------------------------------------------- Beam


def _shared_model(shared_handle, saved_model_dir: str) -> LayerwiseModel:
    return shared_handle.acquire(
        lambda: _Holder(LayerwiseModel.from_saved_model(saved_model_dir)), tag=saved_model_dir
    ).lw


class _Holder:  # apache_beam.utils.shared needs a weak-referenceable object
    def __init__(self, lw):
        self.lw = lw


class _ModelFn(beam.DoFn):
    """Holds the LayerwiseModel, loaded once per worker process (shared by every stage's DoFn)."""

    def __init__(self, shared_handle, saved_model_dir: str):
        self._shared, self._dir = shared_handle, saved_model_dir
        self._lw = None

    def setup(self):
        self._lw = _shared_model(self._shared, self._dir)


class EncodeFn(_ModelFn):
    """A batch of transformed examples -> (node_id, h0) per item."""

    def __init__(self, shared_handle, saved_model_dir, feature_spec: dict):
        super().__init__(shared_handle, saved_model_dir)
        self._spec = feature_spec

    def process(self, batch):
        """batch: a list of serialized tf.Examples (TFRecord payload) or a pyarrow Table (Parquet payload)."""
        import tensorflow as tf

        from modules import features as features_lib

        if isinstance(batch, list):
            parsed = tf.io.parse_example(tf.constant(batch), features_lib.parse_spec(self._spec))
        else:
            parsed = features_lib.from_arrow(batch, self._spec)
        ids = np.asarray(parsed[features_lib.NODE_ID]).astype(np.int64)
        h = self._lw.encode(parsed).astype(np.float32)
        yield from zip(ids.tolist(), (row.tobytes() for row in h))


class LayerFn(_ModelFn):
    """A batch of (node_id, h_self, neighbour states [t, d], weights [t], t) -> (node_id, hk)."""

    def __init__(self, shared_handle, saved_model_dir, k: int):
        super().__init__(shared_handle, saved_model_dir)
        self._k = k

    def process(self, batch: list):
        ids = [b[0] for b in batch]
        h_self = _vectors([b[1] for b in batch], len(batch))
        counts = np.array([b[4] for b in batch], np.int64)
        h_nbr = _vectors([b[2] for b in batch], int(counts.sum()), h_self.shape[1])
        weight = np.frombuffer(b"".join(b[3] for b in batch), np.float32)
        target = np.repeat(np.arange(len(batch)), counts)
        out = self._lw.layer(self._k, h_self, h_nbr, np.arange(len(target)), target, weight)
        yield from zip(ids, (row.tobytes() for row in out.astype(np.float32)))


class HeadFn(_ModelFn):
    """A batch of (node_id, hK) -> (node_id, embedding)."""

    def process(self, batch: list):
        out = self._lw.final(_vectors([b[1] for b in batch], len(batch)))
        yield from zip([b[0] for b in batch], (row.tobytes() for row in out.astype(np.float32)))


def _vectors(chunks, rows: int, dim: Optional[int] = None) -> np.ndarray:
    """float32 bytes (states travel between stages as bytes: Beam's coders take them without pickling) ->
    [rows, d]."""
    flat = np.frombuffer(b"".join(chunks), np.float32)
    if dim is None:
        dim = flat.size // max(rows, 1)
    return flat.reshape(rows, dim)


def _neighbor_rows(record_batch) -> Iterable:
    """A pyarrow RecordBatch of the neighbourhood table -> (node_id, (neighbour ids, float32 weight bytes))."""
    ids = record_batch.column(0).to_numpy()
    nbrs = record_batch.column(1).to_pylist()
    ws = record_batch.column(2).to_pylist()
    for u, v, a in zip(ids.tolist(), nbrs, ws):
        yield u, (list(v), np.asarray(a, np.float32).tobytes())


def _reverse(row):
    """(u, (neighbours, weights)) -> (v, (u, slot)) for every neighbour v of u: who needs v's state."""
    u, (nbrs, _) = row
    for slot, v in enumerate(nbrs):
        yield v, (u, slot)


def _send(joined):
    """(v, {state: [h_v], wanted_by: [(u, slot)...]}) -> (u, (slot, h_v)) for every u that lists v."""
    _, g = joined
    states = list(g["state"])
    if not states:
        return
    for u, slot in g["wanted_by"]:
        yield u, (slot, states[0])


def _gather(joined):
    """(u, {state: [h_u], nbr: [(ids, w)], received: [(slot, h_v)...]}) -> (u, h_u, h_v of its t neighbours in
    slot order, w, t), vectors as float32 bytes."""
    u, g = joined
    states = list(g["state"])
    if not states:
        raise ValueError(f"item {u} has no state (missing from the transformed examples?)")
    h_u = states[0]
    rows = list(g["nbr"])
    nbrs, w = rows[0] if rows else ([], b"")
    received = sorted(g["received"], key=lambda x: x[0])
    if len(received) != len(nbrs):
        raise ValueError(f"item {u}: {len(received)} neighbour states for {len(nbrs)} neighbours")
    return u, h_u, b"".join(x[1] for x in received), w, len(nbrs)


def _row_example(joined) -> bytes:
    import tensorflow as tf

    u, g = joined
    emb, item_id = list(g["embedding"]), list(g["item_id"])
    if len(emb) != 1 or len(item_id) != 1:
        raise ValueError(f"node {u}: {len(emb)} embeddings, {len(item_id)} item ids")
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "node_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[u])),
                "item_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(item_id[0]).encode()])),
                "embedding": tf.train.Feature(float_list=tf.train.FloatList(value=_as_vector(emb[0]).tolist())),
            }
        )
    ).SerializeToString()


def _as_vector(x) -> np.ndarray:
    return np.frombuffer(x, np.float32) if isinstance(x, bytes) else np.asarray(x, np.float32)


def _item_rows(record_batch) -> Iterable:
    ids = record_batch.column("node_id").to_numpy()
    return zip(ids.tolist(), record_batch.column("item_id").to_pylist())


def embed_beam(
    pipeline,
    saved_model_dir: str,
    example_files: Sequence[str],
    feature_spec: dict,
    neighborhoods_uri: str,
    graph_uri: str,
    out_uri: str,
    batch_size: int = 1024,
    num_layers: Optional[int] = None,
):
    """Adds the layer-wise embedding to a Beam pipeline; writes `<out_uri>/embedding_rows-*.tfrecord`
    (tf.Example node_id, item_id, embedding per item). Returns the PCollection of (node_id, embedding)."""
    from apache_beam.utils import shared

    from pipeline import graph_io, neighborhood_io

    handle = shared.Shared()
    if num_layers is None:
        num_layers = _shared_model(handle, saved_model_dir).num_layers
    batching = dict(min_batch_size=1, max_batch_size=batch_size)
    p = pipeline
    files = p | "ExampleFiles" >> beam.Create(list(example_files))
    if all(f.endswith(".parquet") for f in example_files):  # Transform's output for a Parquet input
        batches = (
            files
            | "ReadExamples" >> beam.io.ReadAllFromParquetBatched(columns=sorted(feature_spec))
            | "BatchExamples"
            >> beam.FlatMap(lambda t: (t.slice(i, batch_size) for i in range(0, t.num_rows, batch_size)))
        )
    else:
        batches = (
            files | "ReadExamples" >> beam.io.ReadAllFromTFRecord() | "BatchExamples" >> beam.BatchElements(**batching)
        )
    states = batches | "Layer0" >> beam.ParDo(EncodeFn(handle, saved_model_dir, feature_spec))
    nbr = (
        p
        | "ReadNeighborhoods"
        >> beam.io.ReadFromParquetBatched(
            os.path.join(neighborhoods_uri, f"{neighborhood_io.TABLE}-*.parquet"),
            columns=["node_id", "neighbors", "weights"],
        )
        | "NeighborRows" >> beam.FlatMap(_neighbor_rows)
    )
    wanted_by = nbr | "Reverse" >> beam.FlatMap(_reverse)
    for k in range(1, num_layers + 1):
        received = (
            {"state": states, "wanted_by": wanted_by}
            | f"JoinSenders{k}" >> beam.CoGroupByKey()
            | f"Send{k}" >> beam.FlatMap(_send)
        )
        states = (
            {"state": states, "nbr": nbr, "received": received}
            | f"JoinReceivers{k}" >> beam.CoGroupByKey()
            | f"Gather{k}" >> beam.Map(_gather)
            | f"Batch{k}" >> beam.BatchElements(**batching)
            | f"Layer{k}" >> beam.ParDo(LayerFn(handle, saved_model_dir, k))
        )
    emb = states | "BatchHead" >> beam.BatchElements(**batching) | "Head" >> beam.ParDo(HeadFn(handle, saved_model_dir))
    items = (
        p
        | "ReadItems"
        >> beam.io.ReadFromParquetBatched(
            os.path.join(graph_uri, f"{graph_io.ITEMS}-*.parquet"), columns=["node_id", "item_id"]
        )
        | "ItemRows" >> beam.FlatMap(_item_rows)
    )
    _ = (
        {"embedding": emb, "item_id": items}
        | "JoinIds" >> beam.CoGroupByKey()
        | "ToExample" >> beam.Map(_row_example)
        | "WriteRows" >> beam.io.WriteToTFRecord(os.path.join(out_uri, ROWS_PREFIX), file_name_suffix=".tfrecord")
    )
    return emb


# --------------------------------------------------------------------------------------------- artifact io


def row_files(uri: str) -> list:
    return sorted(glob.glob(os.path.join(uri, f"{ROWS_PREFIX}*.tfrecord")))


def read_rows(uri: str, batch_size: int = 65536):
    """(node ids [N], item ids [N] str, embeddings [N, d]) from the TFRecord rows, in file order."""
    import tensorflow as tf

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
    tfx-bsl's C++ coder from Arrow columns: one Python proto per row took 58 s at 1M items, this ~2 s."""
    import pyarrow as pa
    from tfx_bsl.coders import example_coder

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
    import tensorflow as tf

    with tf.io.TFRecordWriter(os.path.join(uri, f"{ROWS_PREFIX}-00000-of-00001.tfrecord")) as f:
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


def graph_items(graph_uri: str):
    """(item ids by node id, titles or None) from the graph's items table (titles: an optional `title` column)."""
    from pipeline import graph_io

    t = graph_io.read_table(graph_uri, graph_io.ITEMS).sort_by("node_id")
    ids = [str(x) for x in t.column("item_id").to_pylist()]
    titles = [str(x) for x in t.column("title").to_pylist()] if "title" in t.column_names else None
    return ids, titles


# --------------------------------------------------------------------------------------------- tests / bench


def synthetic_catalogue(
    num_items: int, top_t: int, seed: int = 0, vocab: int = 20000, pad_fraction=0.2, isolated_fraction=0.02
):
    """Item features of the MovieLens transformed shape (schema/ml-*/graph_schema.pbtxt: genres_multi_hot [65],
    log_degree, year, year_missing, title_tokens ragged, node_id) and random -1-padded neighbourhoods with
    L1-normalised weights, some items isolated (tests and bench/embedding.py)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    n = num_items
    nbr = (np.arange(n)[:, None] + 1 + rng.integers(0, max(n - 1, 1), (n, top_t))) % n  # never the item itself
    nbr[rng.random((n, top_t)) < pad_fraction] = -1
    nbr[rng.random(n) < isolated_fraction] = -1
    w = rng.random((n, top_t)).astype(np.float32) * (nbr >= 0)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-9)
    lens = rng.integers(0, 6, n)
    feats = {
        "genres_multi_hot": (rng.random((n, 65)) < 0.05).astype(np.float32),
        "log_degree": rng.exponential(2.0, n).astype(np.float32),
        "year": rng.normal(size=n).astype(np.float32),
        "year_missing": (rng.random(n) < 0.01).astype(np.float32),
        "title_tokens": tf.RaggedTensor.from_row_lengths(
            tf.constant(rng.integers(0, vocab, lens.sum()), tf.int64), tf.constant(lens, tf.int64)
        ),
        "node_id": np.arange(n, dtype=np.int64),
    }
    return feats, nbr.astype(np.int64), w


def write_examples(path: str, features: dict, shards: int = 1) -> None:
    """Item features -> transformed-examples-like GZIP TFRecords (one tf.Example per item, shuffled order)."""
    import tensorflow as tf

    n = len(features["node_id"])
    os.makedirs(path, exist_ok=True)
    cols = {k: (v.to_list() if isinstance(v, tf.RaggedTensor) else np.asarray(v)) for k, v in features.items()}
    floating = {
        k: v.dtype.is_floating if isinstance(v, tf.RaggedTensor) else np.asarray(v).dtype.kind == "f"
        for k, v in features.items()
    }
    order = np.random.default_rng(0).permutation(n)
    writers = [tf.io.TFRecordWriter(os.path.join(path, f"part-{s:05d}.gz"), options="GZIP") for s in range(shards)]
    for j, u in enumerate(order):
        f = {}
        for k, v in cols.items():
            x = np.asarray(v[u]).reshape(-1)
            f[k] = (
                tf.train.Feature(float_list=tf.train.FloatList(value=x.tolist()))
                if floating[k]
                else tf.train.Feature(int64_list=tf.train.Int64List(value=x.astype(np.int64).tolist()))
            )
        writers[j % shards].write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
    for wr in writers:
        wr.close()


def write_neighborhoods(uri: str, nbr: np.ndarray, w: np.ndarray, shards: int = 1) -> None:
    import pyarrow.parquet as pq

    from pipeline import neighborhood_io

    os.makedirs(uri, exist_ok=True)
    n = nbr.shape[0]
    for s, idx in enumerate(np.array_split(np.arange(n), shards)):
        pq.write_table(
            neighborhood_io.to_table(idx, nbr[idx], w[idx]),
            os.path.join(uri, f"{neighborhood_io.TABLE}-{s:05d}-of-{shards:05d}.parquet"),
        )


def write_items(uri: str, item_ids: Sequence[str], titles: Optional[Sequence[str]] = None) -> None:
    """A graph artifact with an items table only (+ an empty interactions/contexts table): enough for the
    BulkEmbedder, which reads item ids (and titles) from it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline import graph_io

    graph_io.write_graph_for_tests(
        uri, list(item_ids), [], {"context_index": [], "node_id": [], "timestamp": [], "split": [], "position": []}
    )
    cols = {
        "node_id": np.arange(len(item_ids), dtype=np.int64),
        "item_id": [str(x) for x in item_ids],
        "train_degree": np.zeros(len(item_ids), np.int64),
    }
    if titles is not None:
        cols["title"] = [str(x) for x in titles]
    pq.write_table(pa.table(cols), os.path.join(uri, f"{graph_io.ITEMS}-00000-of-00001.parquet"))


def save_model(model, saved_model_dir: str, save_traces: bool = True) -> None:
    """model.save without AutoGraph's source conversion (several times faster for these layers)."""
    from tensorflow.python.autograph.core import ag_ctx

    with ag_ctx.ControlStatusCtx(status=ag_ctx.Status.DISABLED):
        model.save(saved_model_dir, save_format="tf", include_optimizer=False, save_traces=save_traces)
