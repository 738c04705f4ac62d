"""The ContextEmbedder's stage: the context tower's query vector u_c for every known context, as a Beam pipeline
(PinnerFormer's daily user-embedding refresh, Pancha et al., KDD 2022: the tower runs offline in batch over every
user, and serving reads the stored vector instead of running the tower per request).

History of a context: every interaction the graph holds for it (its train, validation and test items) in position
order; the tower reads the last max_len of them (modules/context_tower.query_vectors). Why the whole history and not
the train split: the split only holds items out for the offline evaluation, which ran before this stage; a served
vector that left out a context's latest interactions would be two steps stale, and those are the ones the tower
weighs most (its last slot is the most recent). The same whole history is what a served answer excludes.

Pipeline (any Beam runner):
    interactions (Parquet) -> (context_index, (position, node_id)) -> GroupByKey -> the history in position order
    contexts (Parquet) -> (context_index, context_id) -> CoGroupByKey with the histories
    -> BatchElements -> QueryFn (the tower, loaded once per worker process in setup) -> tf.Example rows
    -> WriteToTFRecord <out>/context_rows-*.tfrecord
`assemble` then reads the rows back (one process: the server maps one file) and writes the context arrays of
schema/versions.py (context_ids.npy sorted, context_vectors.npy, the history CSR, context_vectors.json).
A context without an interaction has no history and gets no vector (counted in the json as contexts_skipped).
"""

from __future__ import annotations

import os
import time
from typing import Iterable

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.utils import shared

from modules import context_tower as ct
from pipeline.history import train
from schema import embeddings as embeddings_io
from schema import files, versions
from schema import graph as graph_io

ROWS_PREFIX = "context_rows"  # TFRecord of tf.Example {context_id, vector, history}


class _Holder:  # apache_beam.utils.shared needs a weak-referenceable object
    def __init__(self, tower):
        self.tower = tower


def load_tower(tower_dir: str, embeddings_uri: str) -> ct.ContextTower:
    """The trained tower over the Embeddings artifact's z (the vectors the version serves and the index holds)."""
    emb, _, _ = embeddings_io.read_embeddings(embeddings_uri)
    return train.load_tower(tower_dir, emb)


class QueryFn(beam.DoFn):
    """A batch of (context_id, history node ids as int64 bytes) -> tf.Example rows with u_c; the tower is loaded
    once per worker process (setup + apache_beam.utils.shared), not per bundle."""

    def __init__(self, shared_handle, tower_dir: str, embeddings_uri: str):
        self._shared, self._tower_dir, self._emb = shared_handle, tower_dir, embeddings_uri
        self._tower = None

    def setup(self):
        key = f"{self._tower_dir}|{self._emb}"
        self._tower = self._shared.acquire(lambda: _Holder(load_tower(self._tower_dir, self._emb)), tag=key).tower

    def process(self, batch):
        histories = [np.frombuffer(h, np.int64) for _, h in batch]
        u = ct.query_vectors(self._tower, histories, batch_size=max(len(batch), 1))
        for (cid, _), h, vec in zip(batch, histories, u):
            yield encode_row(cid, vec, h)


def encode_row(context_id: str, vector: np.ndarray, history: np.ndarray) -> bytes:
    feature = {
        "context_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[context_id.encode("utf-8")])),
        "vector": tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(vector, np.float32).tolist())),
        "history": tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(history).tolist())),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _interaction_rows(record_batch) -> Iterable:
    ctx = record_batch.column("context_index").to_numpy().tolist()
    pos = record_batch.column("position").to_numpy().tolist()
    node = record_batch.column("node_id").to_numpy().tolist()
    return zip(ctx, zip(pos, node))


def _history(kv):
    """(context_index, [(position, node_id)...]) -> (context_index, node ids in position order as int64 bytes)."""
    c, events = kv
    return c, np.asarray([n for _, n in sorted(events)], np.int64).tobytes()


def _context_rows(record_batch) -> Iterable:
    ctx = record_batch.column("context_index").to_numpy().tolist()
    return zip(ctx, record_batch.column("context_id").to_pylist())


def _with_id(joined):
    """(context_index, {history: [bytes], context_id: [str]}) -> (context_id, history); none without history."""
    c, g = joined
    ids, hist = list(g["context_id"]), list(g["history"])
    if len(ids) != 1:
        raise ValueError(f"context {c}: {len(ids)} context ids in the graph's contexts table")
    if hist:
        yield str(ids[0]), hist[0]


def context_vectors_beam(pipeline, graph_uri: str, tower_dir: str, embeddings_uri: str, out_uri: str, batch_size: int):
    """Adds the stage to a Beam pipeline; writes <out_uri>/context_rows-*.tfrecord (module docstring)."""
    handle = shared.Shared()
    p = pipeline
    histories = (
        p
        | "ReadInteractions"
        >> beam.io.ReadFromParquetBatched(
            os.path.join(graph_uri, f"{graph_io.INTERACTIONS}-*.parquet"),
            columns=["context_index", "node_id", "position"],
        )
        | "InteractionRows" >> beam.FlatMap(_interaction_rows)
        | "GroupByContext" >> beam.GroupByKey()
        | "InPositionOrder" >> beam.Map(_history)
    )
    contexts = (
        p
        | "ReadContexts"
        >> beam.io.ReadFromParquetBatched(
            os.path.join(graph_uri, f"{graph_io.CONTEXTS}-*.parquet"), columns=["context_index", "context_id"]
        )
        | "ContextRows" >> beam.FlatMap(_context_rows)
    )
    return (
        {"history": histories, "context_id": contexts}
        | "JoinIds" >> beam.CoGroupByKey()
        | "WithId" >> beam.FlatMap(_with_id)
        | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=batch_size)
        | "Tower" >> beam.ParDo(QueryFn(handle, tower_dir, embeddings_uri))
        | "WriteRows" >> beam.io.WriteToTFRecord(os.path.join(out_uri, ROWS_PREFIX), file_name_suffix=".tfrecord")
    )


def read_rows(out_uri: str, batch_size: int = 65536) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """(context ids, vectors [M, d], histories) of the TFRecord rows, in file order."""
    paths = files.glob(files.join(out_uri, f"{ROWS_PREFIX}*.tfrecord"))
    if not paths:
        raise FileNotFoundError(f"{out_uri!r} has no {ROWS_PREFIX}*.tfrecord")
    first = next(iter(tf.data.TFRecordDataset(paths).take(1)), None)
    d = (
        0
        if first is None
        else len(tf.train.Example.FromString(first.numpy()).features.feature["vector"].float_list.value)
    )
    spec = {
        "context_id": tf.io.FixedLenFeature([], tf.string),
        "vector": tf.io.FixedLenFeature([d], tf.float32),
        "history": tf.io.VarLenFeature(tf.int64),
    }
    ids, vecs, hists = [], [], []
    for batch in tf.data.TFRecordDataset(paths).batch(batch_size):
        parsed = tf.io.parse_example(batch, spec)
        ids += [c.decode("utf-8") for c in parsed["context_id"].numpy().tolist()]
        vecs.append(parsed["vector"].numpy())
        h = parsed["history"]
        counts = np.bincount(h.indices[:, 0].numpy(), minlength=len(batch))
        hists += np.split(h.values.numpy(), np.cumsum(counts)[:-1])
    return ids, (np.concatenate(vecs) if vecs else np.zeros((0, d), np.float32)), hists


def assemble(out_uri: str, tower_dir: str, stats: dict) -> versions.ContextArrays:
    """The context arrays (schema/versions.py) from the rows the Beam pipeline wrote, with `stats` + counts."""
    ids, vectors, histories = read_rows(out_uri)
    if not ids:
        raise ValueError("no context has an interaction: nothing to embed")
    config = train.load_config(tower_dir)
    lengths = np.array([len(h) for h in histories], np.int64)
    stats = dict(
        stats,
        max_len=config.max_len,
        form=config.form,
        mean_history_length=float(lengths.mean()),
        histories_truncated=int((lengths > config.max_len).sum()),
    )
    return versions.write_context_arrays(out_uri, ids, vectors, histories, stats)


def run(make_pipeline, graph_uri: str, tower_dir: str, embeddings_uri: str, out_uri: str, batch_size: int) -> dict:
    """The Beam pipeline on `make_pipeline()` (a context manager, e.g. the executor's _make_beam_pipeline), then
    `assemble`; returns the stats written to context_vectors.json."""
    start = time.time()
    files.makedirs(out_uri)
    with make_pipeline() as p:
        context_vectors_beam(p, graph_uri, tower_dir, embeddings_uri, out_uri, batch_size)
    graph_contexts = graph_io.read_table(graph_uri, graph_io.CONTEXTS, columns=["context_index"]).num_rows
    arrays = assemble(out_uri, tower_dir, {"batch_size": batch_size, "graph_contexts": graph_contexts})
    seconds = time.time() - start
    stats = files.read_json(files.join(out_uri, versions.CONTEXT_STATS_JSON))
    stats.update(
        contexts_skipped=graph_contexts - len(arrays.context_ids),
        seconds=seconds,
        contexts_per_second=len(arrays.context_ids) / max(seconds, 1e-9),
    )
    files.write_json(files.join(out_uri, versions.CONTEXT_STATS_JSON), stats, indent=1, sort_keys=True)
    return stats
