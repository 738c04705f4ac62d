"""A version's known contexts (schema/versions.py's context arrays, under assets/contexts/): context id -> the
stored query vector u_c and the context's whole history, for recommend_context.

The arrays are memory-mapped; the id lookup is serving/items.ItemTable's binary search over the |S<w> ids (the
same reason as for items: no dict of a million Python strings to build while a version loads).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from schema import versions
from serving.errors import invalid
from serving.items import ItemTable

CONTEXT_INPUT = "context_id"  # recommend_context's input, with k
CONTEXT_INPUTS = frozenset((CONTEXT_INPUT, "k"))


class ContextTable:
    """Context ids, u_c [M, d] and the history CSR of one version, mapped."""

    def __init__(self, arrays: versions.ContextArrays):
        self.arrays, self.ids = arrays, ItemTable(arrays.context_ids)
        self.num_contexts, self.dim = len(arrays.context_ids), arrays.vectors.shape[1]

    @classmethod
    def load(cls, version_dir: str, num_items: int, dim: int) -> Optional["ContextTable"]:
        """The version's contexts checked against its catalogue (rows < num_items, u_c of the items' dim) and its
        SavedModel's context_vectors variable; None when the version has none."""
        arrays = versions.read_context_arrays(versions.context_dir(version_dir))
        if arrays is None:
            return None
        where = versions.context_dir(version_dir)
        if arrays.vectors.shape[1] != dim:
            raise ValueError(f"{where}: {arrays.vectors.shape[1]}-d context vectors for {dim}-d items")
        rows = arrays.history_rows
        if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= num_items):
            raise ValueError(f"{where}: history rows outside the catalogue's {num_items} items")
        shapes = dict(tf.train.list_variables(os.path.join(version_dir, "variables", "variables")))
        if shapes.get("context_vectors/.ATTRIBUTES/VARIABLE_VALUE") != list(arrays.vectors.shape):
            raise ValueError(
                f"{where}: the SavedModel's context vectors are not the arrays' {list(arrays.vectors.shape)}"
            )
        return cls(arrays)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Context rows of ids [N] (UTF-8 bytes); an unknown id is INVALID_ARGUMENT naming the input."""
        rows = self.ids.rows(ids.ravel().tolist())
        if (rows < 0).any():
            unknown = [i.decode(errors="replace") for i in ids.ravel()[rows < 0].tolist()]
            raise invalid(
                f"{CONTEXT_INPUT}: unknown context id(s): {unknown[:10]}" + (" ..." if len(unknown) > 10 else "")
            )
        return rows

    def query(self, ids: np.ndarray):
        """(u_c [N, d] float32, histories [N, L] int64 catalogue rows, -1 padded, history_used [N] int32)."""
        rows = self.rows(ids)
        indptr = self.arrays.history_indptr
        used = (indptr[rows + 1] - indptr[rows]).astype(np.int32)
        return np.asarray(self.arrays.vectors[rows], np.float32), self.arrays.histories(rows), used
