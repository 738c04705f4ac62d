"""Layer-wise bulk inference as a Beam pipeline (PinSage §3.4, "Efficient MapReduce inference"), for catalogues
beyond one worker; the in-memory twin and the maths are in modules/embedding.py.

PCollections keyed by node id. Per layer two CoGroupByKeys — states joined with the reversed neighbour lists (each
node sends its state to the items that list it), then per item its own state, its neighbour list and the received
states — and batches of items (BatchElements) go through a DoFn that holds the model (loaded once per worker
process, `apache_beam.utils.shared`). The result equals embed_in_memory (tests/pipeline/embedding).
"""

from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.utils import shared

from modules import features as features_lib
from modules.embedding import ROWS_PREFIX, LayerwiseModel
from pipeline.configs import EMBED
from schema import graph as graph_io
from schema import neighborhoods as neighborhood_io


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
    batch_size: int = EMBED.batch_size,
    num_layers: Optional[int] = None,
):
    """Adds the layer-wise embedding to a Beam pipeline; writes `<out_uri>/embedding_rows-*.tfrecord`
    (tf.Example node_id, item_id, embedding per item). Returns the PCollection of (node_id, embedding)."""

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
