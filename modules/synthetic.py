"""Synthetic stand-ins for the artifacts the BulkEmbedder and the trainer read (a catalogue of the MovieLens
transformed shape, its transformed examples, an items-only graph), so that tests and benchmarks exercise those
stages without a pipeline run. Shipped with the package because bench/ uses it and bench/ imports no test code."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from schema import files
from schema import graph as graph_io


def synthetic_catalogue(
    num_items: int, top_t: int, seed: int = 0, vocab: int = 20000, pad_fraction=0.2, isolated_fraction=0.02
):
    """Item features of the MovieLens transformed shape (schema/ml-*/graph_schema.pbtxt: genres_multi_hot [65],
    log_degree, year, year_missing, title_tokens ragged, node_id) and random -1-padded neighbourhoods with
    L1-normalised weights, some items isolated."""
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
    files.makedirs(path)  # a local path or a URI
    cols = {k: (v.to_list() if isinstance(v, tf.RaggedTensor) else np.asarray(v)) for k, v in features.items()}
    floating = {
        k: v.dtype.is_floating if isinstance(v, tf.RaggedTensor) else np.asarray(v).dtype.kind == "f"
        for k, v in features.items()
    }
    order = np.random.default_rng(0).permutation(n)
    writers = [tf.io.TFRecordWriter(files.join(path, f"part-{s:05d}.gz"), options="GZIP") for s in range(shards)]
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


def write_items(uri: str, item_ids: Sequence[str], titles: Optional[Sequence[str]] = None) -> None:
    """A graph artifact with an items table only (empty interactions/contexts tables): enough for the
    BulkEmbedder, which reads item ids (and titles) from it."""
    empty = {"context_index": [], "node_id": [], "timestamp": [], "split": [], "position": []}
    graph_io.write_tables(uri, list(item_ids), [], empty, titles=titles)
