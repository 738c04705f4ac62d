"""A version's item ids, titles and attributes as arrays: id -> row lookups and row -> id / title / attribute
bytes for answers.

Why not a dict of the ids: building one for a large catalogue holds the GIL long enough to stall the event loop
answering requests while a new version loads, and costs many Python objects. Here the ids are one |S<w> numpy
array (memory-mapped from the version's item_ids.npy, schema/versions.py) and the lookup is a binary search in a
sorted copy, which numpy sorts without the GIL; a lookup is slower than a dict's, but small against a whole
request.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from schema.versions import Attributes, ServingArrays, decode_attributes, encode_attributes


def _blob(parts: List[bytes]):
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return b"".join(parts), offsets


class ItemTable:
    """Ids (|S<w> [N]), optional titles and optional attributes (each one UTF-8 blob + int64 [N + 1] offsets,
    schema/versions.py) of one version."""

    def __init__(
        self,
        ids: np.ndarray,
        titles=None,
        title_offsets: Optional[np.ndarray] = None,
        attributes=None,
        attribute_offsets: Optional[np.ndarray] = None,
    ):
        self.ids, self.num_items, self.width = ids, len(ids), ids.dtype.itemsize
        order = np.argsort(ids, kind="stable")  # numpy sorts and gathers |S arrays without holding the GIL
        self._sorted = ids[order]
        dup = np.flatnonzero(self._sorted[1:] == self._sorted[:-1])
        if len(dup):
            raise ValueError(f"item ids are not unique: {self._sorted[dup[0]].decode(errors='replace')!r} repeats")
        # per-request reads of one int go through memoryviews: cheaper than a numpy scalar
        self._row_of_sorted = memoryview(order)
        self._titles = titles
        self._offsets = None if title_offsets is None else memoryview(title_offsets)
        self._attributes = attributes
        self._attribute_offsets = None if attribute_offsets is None else memoryview(attribute_offsets)

    @classmethod
    def from_arrays(cls, arrays: ServingArrays) -> "ItemTable":
        return cls(arrays.item_ids, arrays.titles, arrays.title_offsets, arrays.attributes, arrays.attribute_offsets)

    @classmethod
    def from_lists(
        cls,
        ids: Sequence[str],
        titles: Optional[Sequence[str]] = None,
        attributes: Optional[Sequence[Attributes]] = None,
    ) -> "ItemTable":
        """From Python strings (a version written before item_ids.npy existed, or a test's catalogue)."""
        encoded = [i.encode("utf-8") for i in ids]
        if any(b"\0" in i for i in encoded):
            raise ValueError("item ids may not contain NUL characters")
        table = np.array(encoded, dtype=f"S{max(1, max(map(len, encoded), default=1))}")
        title_blob = (None, None) if titles is None else _blob([t.encode("utf-8") for t in titles])
        attribute_blob = (None, None) if attributes is None else _blob([encode_attributes(a) for a in attributes])
        return cls(table, *title_blob, *attribute_blob)

    # -- id -> row
    def row(self, key: bytes) -> Optional[int]:
        """The row of one id (UTF-8 bytes), None when unknown. Keys longer than the widest id, or holding a NUL
        (which no id does; numpy would strip a trailing one), cannot match and are not searched: numpy would
        widen the whole array to compare them."""
        if len(key) > self.width or b"\0" in key:
            return None
        pos = int(self._sorted.searchsorted(key))
        if pos < self.num_items and self._sorted[pos] == key:
            return self._row_of_sorted[pos]
        return None

    def rows(self, keys: Sequence[bytes]) -> np.ndarray:
        """int64 rows of several ids, -1 for the unknown ones."""
        keys = list(keys)
        if not keys:
            return np.zeros(0, np.int64)
        valid = np.array([len(k) <= self.width and b"\0" not in k for k in keys], bool)
        wanted = np.array([k if ok else b"" for k, ok in zip(keys, valid)], dtype=self.ids.dtype)
        pos = np.minimum(self._sorted.searchsorted(wanted), self.num_items - 1)
        found = valid & (self._sorted[pos] == wanted)
        return np.where(found, np.asarray(self._row_of_sorted)[pos], -1).astype(np.int64)

    # -- row -> bytes
    def ids_of(self, rows: Union[Sequence[int], np.ndarray]) -> List[bytes]:
        return self.ids.take(rows).tolist()

    def titles_of(self, rows: Union[Sequence[int], np.ndarray]) -> List[bytes]:
        """Titles as UTF-8 bytes (b"" for every row of a catalogue without titles)."""
        if isinstance(rows, np.ndarray):
            rows = rows.tolist()
        if self._titles is None:
            return [b""] * len(rows)
        blob, off = self._titles, self._offsets
        return [blob[off[r] : off[r + 1]] for r in rows]

    @property
    def has_attributes(self) -> bool:
        return self._attributes is not None

    def attributes_of(self, rows: Union[Sequence[int], np.ndarray]) -> List[Dict[str, Union[str, List[str]]]]:
        """Attributes {column: text or [text, ...]} of rows ({} for every row of a version without them)."""
        if isinstance(rows, np.ndarray):
            rows = rows.tolist()
        if self._attributes is None:
            return [{} for _ in rows]
        blob, off = self._attributes, self._attribute_offsets
        return [decode_attributes(blob[off[r] : off[r + 1]]) for r in rows]

    def id_array(self, rows: np.ndarray) -> np.ndarray:
        """Ids of a [B, k] array of rows, same shape (|S<w>)."""
        return self.ids[rows]

    def title_array(self, rows: np.ndarray) -> np.ndarray:
        """Titles of a [B, k] array of rows, same shape (an object array of bytes)."""
        out = np.empty(rows.size, dtype=object)
        out[:] = self.titles_of(rows.ravel())
        return out.reshape(rows.shape)

    # -- the whole catalogue as text (the REST page's title search, serving/rest.py)
    def id_strings(self) -> List[str]:
        return [i.decode("utf-8") for i in self.ids.tolist()]

    def title_strings(self) -> List[str]:
        return [t.decode("utf-8") for t in self.titles_of(range(self.num_items))]
