"""The temporal split and the id order (docs/DESIGN.md, fixed): the one implementation GraphGen's Beam transform and
the in-process graph builder (from_csv.py) both call.

Id order: distinct ids sorted numerically when every id is an integer, else in string order; an id's position in
that order is its contiguous index (node id, context index), so node ids do not depend on the order Beam delivers.
Split: per context, sort by (timestamp, node id) — node ids are in item-id order, so this is the DESIGN tie-break —
keep each (context, item) pair's first occurrence, then the last interaction is test, the second-last validation,
the rest train; contexts with fewer than 3 interactions stay in train only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


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


def split_partition(ctx: np.ndarray, node: np.ndarray, ts: np.ndarray, w: np.ndarray):
    """The split over many contexts at once (the module docstring). Returns (columns dict in (context, position)
    order, duplicates dropped, contexts with fewer than 3 interactions)."""
    order = np.lexsort((node, ts, ctx))
    ctx, node, ts, w = ctx[order], node[order], ts[order], w[order]
    # first occurrence of each (context, item) in that order
    pair = np.lexsort((np.arange(len(ctx)), node, ctx))
    dup_sorted = np.r_[False, (ctx[pair][1:] == ctx[pair][:-1]) & (node[pair][1:] == node[pair][:-1])]
    keep = np.ones(len(ctx), bool)
    keep[pair[dup_sorted]] = False
    dups = int((~keep).sum())
    ctx, node, ts, w = ctx[keep], node[keep], ts[keep], w[keep]
    first = np.r_[True, ctx[1:] != ctx[:-1]]
    starts = np.flatnonzero(first)
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
