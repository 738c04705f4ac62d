"""The temporal split and the id order (docs/DESIGN.md, evaluation protocol version 2): the one implementation
GraphGen's Beam transform and the in-process graph builder (from_csv.py) both call.

Id order: distinct ids sorted numerically when every id is an integer, else in string order; an id's position in
that order is its contiguous index (node id, context index), so node ids do not depend on the order Beam delivers.
Split: per context, sort by (timestamp, then a seeded hash of (context id, item id)), keep each (context, item)
pair's first occurrence in that order, then the last interaction is test, the second-last validation, the rest
train; contexts with fewer than 3 interactions stay in train only.

The tie-break hash (SPLIT_SEED; only the id strings enter it, so it depends on no other row and not on the id
order or type: 5, 5.0 and "5" hash alike):
- each id -> uint64: pandas.util.hash_array of its id_strings form with hash_key = the seed as 16 hex digits
  (SipHash-2-4 of the UTF-8 bytes keyed by those 16 bytes, then pandas' splitmix64 finaliser);
- a (context, item) pair -> h = (h_context * M) ^ h_item; h ^= h >> 32; h *= M; h ^= h >> 29 (uint64 arithmetic,
  M = PAIR_MULTIPLIER, odd); ties in time are ordered by ascending h.
Contexts whose held-out items were picked among tied timestamps are counted (held_out_ties).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SPLIT_SEED = 0  # the tie-break's seed (recorded in report.json's protocol block)
PAIR_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplication is a bijection of uint64


def _id_str(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def id_strings(values: np.ndarray) -> np.ndarray:
    """Ids as strings the way _id_str writes them (an integral float '5.0' -> '5'), as an object array.

    Never a fixed-width numpy string array ('<U…'): that stores every id at the width of the longest one, so a
    single 1 MB id among a million ids costs 4 TB (4 bytes per character); object arrays cost what the ids do."""
    if values.dtype.kind == "f":
        return np.array([_id_str(float(v)) for v in values], dtype=object)
    if values.dtype.kind in "iu":  # at most 20 characters each
        return values.astype(str).astype(object)
    return pd.Series(values, dtype=object, copy=False).astype(str).to_numpy(dtype=object)


def sorted_ids(ids: np.ndarray) -> tuple[np.ndarray, str]:
    """Distinct ids in id order (numeric when all are integers, else string order) and that order's name;
    position in the result = contiguous index. Distinct and string-sorted by Arrow (UTF-8 byte order = code point
    order), so memory follows the ids' total size (id_strings)."""
    arr = pa.array(id_strings(np.asarray(ids)), pa.string())
    uniq = pc.unique(arr)
    ids = uniq.take(pc.array_sort_indices(uniq)).to_numpy(zero_copy_only=False).astype(object)
    try:
        keys = ids.astype(np.int64)  # int() of each id: ValueError/OverflowError unless all fit int64
    except (ValueError, OverflowError):
        return ids, "string"
    return ids[np.argsort(keys, kind="stable")], "int"


def hash_key(seed: int = SPLIT_SEED) -> str:
    """pandas.util.hash_array's 16-character key for a seed: the seed as 16 hex digits."""
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"split seed {seed} is not in [0, 2**64)")
    return f"{seed:016x}"


def id_hashes(ids: np.ndarray, seed: int = SPLIT_SEED) -> np.ndarray:
    """uint64 hash of each id's string (id_strings), one SipHash per id: call it on the distinct id arrays."""
    strings = id_strings(np.asarray(ids))
    if not len(strings):
        return np.zeros(0, np.uint64)
    return pd.util.hash_array(strings, hash_key=hash_key(seed), categorize=False)


def pair_hashes(context_hash: np.ndarray, item_hash: np.ndarray) -> np.ndarray:
    """Per row, the tie-break key of a (context, item) pair from the two ids' id_hashes (module docstring)."""
    with np.errstate(over="ignore"):
        h = (np.asarray(context_hash, np.uint64) * PAIR_MULTIPLIER) ^ np.asarray(item_hash, np.uint64)
        h ^= h >> np.uint64(32)
        h *= PAIR_MULTIPLIER
        h ^= h >> np.uint64(29)
    return h


def _index_hashes(index: np.ndarray) -> np.ndarray:
    """id_hashes of integer indices taken as the ids themselves, one hash per distinct index."""
    uniq, inverse = np.unique(index, return_inverse=True)
    return id_hashes(uniq)[inverse]


def split_partition(
    ctx: np.ndarray,
    node: np.ndarray,
    ts: np.ndarray,
    w: np.ndarray,
    context_hash: np.ndarray | None = None,
    node_hash: np.ndarray | None = None,
):
    """The split over many contexts at once (the module docstring). context_hash / node_hash: id_hashes of the
    context ids by context index and of the item ids by node id; without them the indices are taken as the ids.
    Returns (columns dict in (context, position) order, duplicates dropped, contexts with fewer than 3
    interactions)."""
    ctx_h = _index_hashes(ctx) if context_hash is None else np.asarray(context_hash, np.uint64)[ctx]
    node_h = _index_hashes(node) if node_hash is None else np.asarray(node_hash, np.uint64)[node]
    order = np.lexsort((pair_hashes(ctx_h, node_h), ts, ctx))
    ctx, node, ts, w = ctx[order], node[order], ts[order], w[order]
    # first occurrence of each (context, item) in that order
    pair = np.lexsort((np.arange(len(ctx)), node, ctx))
    dup_sorted = np.zeros(len(ctx), bool)  # sized explicitly: an empty partition stays empty
    dup_sorted[1:] = (ctx[pair][1:] == ctx[pair][:-1]) & (node[pair][1:] == node[pair][:-1])
    keep = np.ones(len(ctx), bool)
    keep[pair[dup_sorted]] = False
    dups = int((~keep).sum())
    ctx, node, ts, w = ctx[keep], node[keep], ts[keep], w[keep]
    starts = np.flatnonzero(np.r_[True, ctx[1:] != ctx[:-1]][: len(ctx)])
    sizes = np.diff(np.r_[starts, len(ctx)])
    position = np.arange(len(ctx)) - np.repeat(starts, sizes)
    n = np.repeat(sizes, sizes)
    split = np.full(len(ctx), "train", dtype=object)
    split[(n >= 3) & (position == n - 1)] = "test"
    split[(n >= 3) & (position == n - 2)] = "validation"
    return (
        {"context_index": ctx, "node_id": node, "timestamp": ts, "weight": w, "split": split, "position": position},
        dups,
        int((sizes < 3).sum()),
    )


def held_out_ties(cols: dict) -> int:
    """Contexts whose held-out items were picked among tied timestamps (the hash decided): the test item's time
    equals the validation item's, or the validation item's equals the latest train item's. cols: split_partition's
    columns (contexts with a test row have at least 3 rows, in position order)."""
    test = np.flatnonzero(cols["split"] == "test")
    ts = np.asarray(cols["timestamp"])
    return int(((ts[test] == ts[test - 1]) | (ts[test - 1] == ts[test - 2])).sum())
