"""The neighbourhood table: what NeighborhoodSampler writes and the trainer and batch embedder read.

Layout of a Neighborhoods artifact directory:
- `neighborhoods-SSSSS-of-NNNNN.parquet`  node_id:int64, neighbors:list<int64>, weights:list<float32>
  (one row per item 0..N-1; isolated items have empty lists; neighbours ordered by visit count, descending)
- `neighborhood_stats.json`               isolated items, mean size, fraction of count-1 slots, seconds, params

Readers get dense [N, T] arrays (ids padded with -1, weights with 0) because that is what tf.data and the
layer-wise embedder index into.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schema import files

TABLE = "neighborhoods"
STATS_FILE = "neighborhood_stats.json"


def schema():

    return pa.schema(
        [("node_id", pa.int64()), ("neighbors", pa.list_(pa.int64())), ("weights", pa.list_(pa.float32()))]
    )


def padded_to_lists(values: np.ndarray, valid: np.ndarray):
    """[B, T] padded rows -> pyarrow ListArray of each row's valid prefix."""

    offsets = np.r_[0, np.cumsum(valid.sum(1))].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[valid]))


def to_table(node_ids: np.ndarray, nbr: np.ndarray, weights: np.ndarray):

    valid = nbr >= 0
    return pa.Table.from_arrays(
        [
            pa.array(np.asarray(node_ids, np.int64)),
            padded_to_lists(nbr, valid),
            padded_to_lists(weights.astype(np.float32), valid),
        ],
        schema=schema(),
    )


def lists_to_padded(column, num_rows: int, width: int | None, fill, dtype) -> np.ndarray:
    """pyarrow list column -> [num_rows, width] array, right-padded with `fill`."""

    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    width = int(lengths.max(initial=0)) if width is None else width
    out = np.full((num_rows, width), fill, dtype=dtype)
    row = np.repeat(np.arange(num_rows), lengths)
    col = np.arange(len(values)) - np.repeat(np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    keep = col < width
    out[row[keep], col[keep]] = values[keep]
    return out


def load_neighborhoods(uri: str, top_t: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(nbr [N, T] int64 padded with -1, weights [N, T] float32 padded with 0), row = node_id.
    T is the longest stored neighbourhood unless `top_t` is given."""

    found = files.glob(files.join(uri, f"{TABLE}-*.parquet"))
    if not found:
        raise FileNotFoundError(f"{uri!r} has no {TABLE}-*.parquet")
    t = pa.concat_tables([files.read_parquet(f) for f in found]).sort_by("node_id")
    ids = t.column("node_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        raise ValueError(f"{uri!r}: neighbourhood rows are not exactly node ids 0..N-1")
    nbr = lists_to_padded(t.column("neighbors").combine_chunks(), len(ids), top_t, -1, np.int64)
    w = lists_to_padded(t.column("weights").combine_chunks(), len(ids), nbr.shape[1], 0.0, np.float32)
    return nbr, w


def read_stats(uri: str) -> dict:
    return files.read_json(files.join(uri, STATS_FILE))


def write_neighborhoods(uri: str, nbr: np.ndarray, w: np.ndarray, shards: int = 1) -> None:
    """Writes dense [N, T] neighbourhoods (-1 padded) as a Neighborhoods artifact in `shards` files."""

    files.makedirs(uri)
    n = nbr.shape[0]
    for s, idx in enumerate(np.array_split(np.arange(n), shards)):
        path = files.join(uri, f"{TABLE}-{s:05d}-of-{shards:05d}.parquet")
        files.write_parquet(to_table(idx, nbr[idx], w[idx]), path)
