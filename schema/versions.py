"""The serving layout: `serving_model/<model_name>/<version>/`, what the Pusher writes and every server reads.

    <version>/saved_model.pb, variables/        the export (modules/export.py)
    <version>/assets/item_ids.txt               the export's id -> row table asset
    <version>/assets/index/                     the index directory (modules/index.py): scann/, item_ids.txt,
                                                titles.txt, index_stats.json, and the serving arrays below
    <version>/assets/contexts/                  optional: the known contexts' query vectors (the context arrays,
                                                at the end of this module), which recommend_context answers from
    <version>/assets/trained/                   optional (with embed_item): what `pinsage embed` needs to embed a
                                                new catalogue with this version's model, no serving code reads it
                                                (the trained layout, at the end of this module)

The serving arrays (write_serving_arrays / read_serving_arrays): what a server maps instead of rebuilding it,
all uncompressed, so a version loads with np.load(mmap_mode="r") and no per-item Python objects:
    embeddings.npy          float32 [N, d]: the catalogue vectors, row order (exact search, and the queries
                            without a query head)
    query_embeddings.npy    optional float32 [N, d]: a query-head model's query vectors u (related_items)
    item_ids.npy            |S<w> [N]: UTF-8 item ids, row order (w = the longest id; no id holds a NUL byte)
    titles.bin              optional: the UTF-8 titles back to back
    titles_offsets.npy      with titles.bin, int64 [N + 1]: title r is titles.bin[offsets[r]:offsets[r + 1]]
                            (one blob rather than |S<w>: a single long title would make every row that wide)
    attributes.bin          optional: each item's displayable attributes (the catalogue's numeric and categorical
                            feature columns) as one compact UTF-8 JSON object {column: "text" | ["text", ...]},
                            back to back; an item without any is b"" (read as {})
    attributes_offsets.npy  with attributes.bin, int64 [N + 1], as titles_offsets.npy
A version written before attributes.bin existed reads with attributes None: it serves as before, titles only.
A version without item_ids.npy was written before these existed: read_serving_arrays returns None and the
server loads it from the text files and the SavedModel, as it did then.

A version is a directory named by a plain ASCII-digit number (`7`; not `007`, not `²`, whose str.isdigit() is
True but int() fails). Writers (pipeline/push/pusher.py) build a version under a dot-name
(`.tmp-<pid>-<random>`) and rename it into place, and retire one through `.del-...`, so a reader that lists only
all-digit names never sees a half-written or half-deleted version.
"""

from __future__ import annotations

import json
import mmap
import os
import re
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np

from schema import files

# The item-to-item signatures of a version (names are part of the API): related_items scores u_q . z_i with the
# query vectors (query_embeddings.npy under a query head, else the embeddings) and is also serving_default;
# similar_items scores z_q . z_i. Both search the one index of z.
RELATED_ITEMS = "related_items"
SIMILAR_ITEMS = "similar_items"
# A context tower's signatures (modules/export.py): history_ids [N, L] (+ history_weights) and k -> the top k of
# u_c . z_i, the history's own items excluded.
RECOMMEND = "recommend"
RECOMMEND_WEIGHTED = "recommend_weighted"
# A known context's precomputed u_c (the ContextEmbedder's daily refresh): context_id [N] and k -> the same outputs,
# the context's whole history excluded (a SignatureDef has no optional input, so not an input of `recommend`).
RECOMMEND_CONTEXT = "recommend_context"
INDEX_ASSET_DIR = "index"
EMBEDDINGS_NPY = "embeddings.npy"
QUERY_EMBEDDINGS_NPY = "query_embeddings.npy"
ITEM_IDS_NPY = "item_ids.npy"
TITLES_BIN = "titles.bin"
TITLE_OFFSETS_NPY = "titles_offsets.npy"
ATTRIBUTES_BIN = "attributes.bin"
ATTRIBUTE_OFFSETS_NPY = "attributes_offsets.npy"
TMP_PREFIX = ".tmp-"
DEL_PREFIX = ".del-"
VERSION_NAME = re.compile(r"0|[1-9][0-9]*")  # re's [0-9] is ASCII only, unlike str.isdigit


def is_version_name(name: str) -> bool:
    return VERSION_NAME.fullmatch(name) is not None


def list_versions(model_dir: str) -> List[int]:
    """Complete versions, ascending (version names only: temp and retiring dirs start with a dot)."""
    if not files.isdir(model_dir):
        return []
    return sorted(
        int(d) for d in files.listdir(model_dir) if is_version_name(d) and files.isdir(files.join(model_dir, d))
    )


def latest_version(model_dir: str) -> Optional[int]:
    versions = list_versions(model_dir)
    return versions[-1] if versions else None


def index_dir(version_dir: str) -> str:
    """The ScaNN index directory inside one version."""
    return files.join(version_dir, "assets", INDEX_ASSET_DIR)


# ------------------------------------------------------------------------------------------------ serving arrays
class ServingArrays(NamedTuple):
    """A version's serving arrays, memory-mapped (read-only)."""

    embeddings: np.ndarray  # float32 [N, d]
    query_embeddings: Optional[np.ndarray]  # float32 [N, d] or None (no query head)
    item_ids: np.ndarray  # |S<w> [N]
    titles: Union[mmap.mmap, bytes, None]  # titles.bin, mapped (slicing gives bytes); None without titles
    title_offsets: Optional[np.ndarray]  # int64 [N + 1]
    attributes: Union[mmap.mmap, bytes, None] = None  # attributes.bin, mapped; None without attributes
    attribute_offsets: Optional[np.ndarray] = None  # int64 [N + 1]


Attributes = Mapping[str, Union[str, Sequence[str]]]


def encode_attributes(attributes: Attributes) -> bytes:
    """One item's attributes as attributes.bin holds them: compact JSON, b"" for none."""
    out: Dict[str, Union[str, List[str]]] = {}
    for col, value in attributes.items():
        if not isinstance(col, str):
            raise ValueError(f"attribute names must be strings, got {col!r}")
        if isinstance(value, str):
            out[col] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            out[col] = list(value)
        else:
            raise ValueError(f"attribute {col!r}: want a string or a list of strings, got {value!r}")
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8") if out else b""


def decode_attributes(data: bytes) -> Dict[str, Union[str, List[str]]]:
    """The inverse of encode_attributes."""
    return json.loads(data.decode("utf-8")) if data else {}


def _write_blob(index_dir: str, blob_name: str, offsets_name: str, parts: List[bytes]) -> None:
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    files.write_bytes(files.join(index_dir, blob_name), b"".join(parts))
    files.np_save(files.join(index_dir, offsets_name), offsets)


def write_serving_arrays(
    index_dir: str,
    item_ids: Sequence[str],
    titles: Optional[Sequence[str]],
    embeddings: np.ndarray,
    query_embeddings: Optional[np.ndarray] = None,
    attributes: Optional[Sequence[Attributes]] = None,
) -> None:
    """Writes the serving arrays (layout in the module docstring) next to an index's other files."""
    ids = [str(i).encode("utf-8") for i in item_ids]
    if any(b"\0" in i for i in ids):
        raise ValueError("item ids may not contain NUL characters (fixed-width numpy strings drop trailing NULs)")
    emb = np.ascontiguousarray(embeddings, np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise ValueError(f"embeddings {emb.shape} for {len(ids)} item ids")
    files.np_save(files.join(index_dir, EMBEDDINGS_NPY), emb)
    if query_embeddings is not None:
        q = np.ascontiguousarray(query_embeddings, np.float32)
        if q.shape != emb.shape:
            raise ValueError(f"query embeddings {q.shape} != embeddings {emb.shape}")
        files.np_save(files.join(index_dir, QUERY_EMBEDDINGS_NPY), q)
    if titles is not None:
        encoded = [str(t).encode("utf-8") for t in titles]
        if len(encoded) != len(ids):
            raise ValueError(f"{len(encoded)} titles for {len(ids)} item ids")
        _write_blob(index_dir, TITLES_BIN, TITLE_OFFSETS_NPY, encoded)
    if attributes is not None:
        encoded = [encode_attributes(a) for a in attributes]
        if len(encoded) != len(ids):
            raise ValueError(f"{len(encoded)} attribute rows for {len(ids)} item ids")
        _write_blob(index_dir, ATTRIBUTES_BIN, ATTRIBUTE_OFFSETS_NPY, encoded)
    files.np_save(files.join(index_dir, ITEM_IDS_NPY), np.array(ids, dtype=f"S{max(1, max(map(len, ids)))}"))


def _npy(path: str, dtype: str, ndim: int) -> np.ndarray:
    try:
        a = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npy file ({e})") from None
    if a.ndim != ndim or (a.dtype.kind if dtype == "S" else a.dtype.str) != dtype:
        raise ValueError(f"{path}: expected a {ndim}-d {dtype} array, got {a.ndim}-d {a.dtype.str}")
    return np.asarray(a)  # a plain ndarray over the mapping: np.memmap's subclass hooks cost per indexing


def read_serving_arrays(index_dir: str) -> Optional[ServingArrays]:
    """The serving arrays of an index directory, mapped; None for an index written before they existed (no
    item_ids.npy). A missing or inconsistent file is a ValueError naming it."""
    ids_path = os.path.join(index_dir, ITEM_IDS_NPY)
    if not os.path.exists(ids_path):
        return None
    ids = _npy(ids_path, "S", 1)
    emb = _npy(os.path.join(index_dir, EMBEDDINGS_NPY), "<f4", 2)
    if emb.shape[0] != len(ids):
        raise ValueError(f"{os.path.join(index_dir, EMBEDDINGS_NPY)}: {emb.shape[0]} rows for {len(ids)} item ids")
    q_path = os.path.join(index_dir, QUERY_EMBEDDINGS_NPY)
    query = _npy(q_path, "<f4", 2) if os.path.exists(q_path) else None
    if query is not None and query.shape != emb.shape:
        raise ValueError(f"{q_path}: shape {query.shape} != embeddings {emb.shape}")
    blobs = []  # (blob, offsets) of the titles, then of the attributes; (None, None) when a version has none
    for blob_name, offsets_name in ((TITLES_BIN, TITLE_OFFSETS_NPY), (ATTRIBUTES_BIN, ATTRIBUTE_OFFSETS_NPY)):
        blob_path, off_path = os.path.join(index_dir, blob_name), os.path.join(index_dir, offsets_name)
        if not os.path.exists(blob_path):
            blobs.append((None, None))
            continue
        offsets, size = _npy(off_path, "<i8", 1), os.path.getsize(blob_path)
        _check_offsets(offsets, len(ids), size, off_path, blob_name)
        if size == 0:  # every row empty: mmap cannot map an empty file
            blobs.append((b"", offsets))
            continue
        with open(blob_path, "rb") as f:
            blobs.append((mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), offsets))
    return ServingArrays(emb, query, ids, *blobs[0], *blobs[1])


def _check_offsets(offsets: np.ndarray, n: int, size: int, off_path: str, blob_name: str) -> None:
    if len(offsets) != n + 1 or offsets[0] != 0 or offsets[-1] != size or (np.diff(offsets) < 0).any():
        raise ValueError(
            f"{off_path}: want {n + 1} non-decreasing offsets from 0 to {size} (the size of {blob_name}), "
            f"got {len(offsets)} that are not"
        )


# ------------------------------------------------------------------------------------------------ context arrays
# <version>/assets/contexts/ (context_dir), what the ContextEmbedder writes (pipeline/history/context_vectors.py)
# and the Pusher copies; all uncompressed .npy, mapped by the server (np.load(mmap_mode="r")):
#     context_ids.npy              |S<w> [M]: UTF-8 context ids (the interactions' context_id), ascending bytewise,
#                                  so a lookup is a binary search with no per-context Python object
#     context_vectors.npy          float32 [M, d]: u_c of each context, in the item space (row order of the ids)
#     context_history_indptr.npy   int64 [M + 1]: context r's history is rows[indptr[r]:indptr[r + 1]]
#     context_history_rows.npy     int64 [H]: catalogue rows (item node ids), each history in position order
#     context_vectors.json         counts: contexts, dim, history_items, max_len, ...
CONTEXT_ASSET_DIR = "contexts"
CONTEXT_IDS_NPY = "context_ids.npy"
CONTEXT_VECTORS_NPY = "context_vectors.npy"
CONTEXT_HISTORY_INDPTR_NPY = "context_history_indptr.npy"
CONTEXT_HISTORY_ROWS_NPY = "context_history_rows.npy"
CONTEXT_STATS_JSON = "context_vectors.json"
CONTEXT_FILES = (CONTEXT_IDS_NPY, CONTEXT_VECTORS_NPY, CONTEXT_HISTORY_INDPTR_NPY, CONTEXT_HISTORY_ROWS_NPY)


class ContextArrays(NamedTuple):
    """The known contexts' query vectors and histories (layout above)."""

    context_ids: np.ndarray  # |S<w> [M], ascending
    vectors: np.ndarray  # float32 [M, d]
    history_indptr: np.ndarray  # int64 [M + 1]
    history_rows: np.ndarray  # int64 [H]

    def histories(self, rows: np.ndarray) -> np.ndarray:
        """[B, L] int64 catalogue rows of the contexts at `rows`, each history left-aligned, -1 padded."""
        starts, ends = self.history_indptr[rows], self.history_indptr[np.asarray(rows) + 1]
        out = np.full((len(starts), int((ends - starts).max(initial=0))), -1, np.int64)
        for b, (lo, hi) in enumerate(zip(starts.tolist(), ends.tolist())):
            out[b, : hi - lo] = self.history_rows[lo:hi]
        return out


def context_dir(version_dir: str) -> str:
    """The context arrays' directory inside one version."""
    return files.join(version_dir, "assets", CONTEXT_ASSET_DIR)


def write_context_arrays(
    out_dir: str, context_ids: Sequence[str], vectors: np.ndarray, histories: Sequence[np.ndarray], stats: dict
) -> ContextArrays:
    """Writes the context arrays of contexts in any order (sorted by id here) and `stats` (+ the counts) as
    context_vectors.json; returns them in memory."""
    ids = [str(c).encode("utf-8") for c in context_ids]
    if not ids or any(not i or b"\0" in i for i in ids):
        raise ValueError("context ids must be non-empty, without NUL characters (and there must be one)")
    table = np.array(ids, dtype=f"S{max(map(len, ids))}")
    order = np.argsort(table, kind="stable")
    table = table[order]
    dup = np.flatnonzero(table[1:] == table[:-1])
    if len(dup):
        raise ValueError(f"context ids are not unique: {table[dup[0]].decode(errors='replace')!r} repeats")
    u = np.ascontiguousarray(vectors, np.float32)
    if u.ndim != 2 or u.shape[0] != len(ids) or len(histories) != len(ids):
        raise ValueError(f"{u.shape} vectors and {len(histories)} histories for {len(ids)} context ids")
    hist = [np.asarray(histories[r], np.int64).reshape(-1) for r in order.tolist()]
    indptr = np.zeros(len(hist) + 1, np.int64)
    np.cumsum([len(h) for h in hist], out=indptr[1:])
    rows = np.concatenate(hist) if hist else np.zeros(0, np.int64)
    out = ContextArrays(table, u[order], indptr, rows)
    files.makedirs(out_dir)
    for name, a in zip(CONTEXT_FILES, out):
        files.np_save(files.join(out_dir, name), a)
    counts = {"contexts": len(ids), "dim": int(u.shape[1]), "history_items": int(len(rows))}
    files.write_json(files.join(out_dir, CONTEXT_STATS_JSON), {**stats, **counts}, indent=1, sort_keys=True)
    return out


def read_context_arrays(directory: str, mapped: bool = True) -> Optional[ContextArrays]:
    """The context arrays of a directory (memory-mapped when local and `mapped`), None when it has none; inconsistent
    files are a ValueError naming the file."""
    path = files.join(directory, CONTEXT_IDS_NPY)
    if not files.exists(path):
        return None
    load = _npy if mapped and not files.is_remote(directory) else _loaded
    a = ContextArrays(
        *(
            load(files.join(directory, n), t, d)
            for n, t, d in zip(CONTEXT_FILES, ("S", "<f4", "<i8", "<i8"), (1, 2, 1, 1))
        )
    )
    m, h = len(a.context_ids), len(a.history_rows)
    checks = (
        (CONTEXT_VECTORS_NPY, a.vectors.shape[0] == m, f"{a.vectors.shape[0]} rows for {m} context ids"),
        (CONTEXT_IDS_NPY, m == 0 or bool((a.context_ids[1:] > a.context_ids[:-1]).all()), "ids not strictly ascending"),
        (
            CONTEXT_HISTORY_INDPTR_NPY,
            len(a.history_indptr) == m + 1
            and a.history_indptr[0] == 0
            and a.history_indptr[-1] == h
            and not (np.diff(a.history_indptr) < 0).any(),
            f"want {m + 1} non-decreasing offsets from 0 to {h}",
        ),
    )
    for name, ok, why in checks:
        if not ok:
            raise ValueError(f"{files.join(directory, name)}: {why}")
    return a


def _loaded(path: str, dtype: str, ndim: int) -> np.ndarray:
    a = files.np_load(path)
    if a.ndim != ndim or (a.dtype.kind if dtype == "S" else a.dtype.str) != dtype:
        raise ValueError(f"{path}: expected a {ndim}-d {dtype} array, got {a.ndim}-d {a.dtype.str}")
    return a


# ------------------------------------------------------------------------------------------------ trained layout
# <version>/assets/trained/ (trained_dir), written by the Pusher next to embed_item, read by `pinsage embed`
# (pipeline/refresh/embed.py) to refresh the catalogue's embeddings without retraining:
#     model/                   the PinSageTrainer's Model artifact: Format-Serving/ (the Keras SavedModel the
#                              layer-wise embedder loads) and query_head/ when the model has one
#     transform_graph/         the Transform graph (transform_fn/, transformed_metadata/, metadata/): the raw item
#                              columns it reads and the preprocessing with the run's vocabularies and statistics
#     context_tower/           optional: the ContextTowerTrainer's Model artifact (config.json, weights/, ...)
#     sampling.json            the NeighborhoodSampler's neighborhood_stats.json: its config (num_walks, walk_length,
#                              restart_prob, top_t, seed, window, shard_size) and the source it used
#     trained.json             {"blessed": true | false | null, "recommend_blessed": true | false | null (the
#                              context tower's own blessing), "refreshed_from": null | the version refreshed}
# A version without trained/ (pushed before it existed, or without embed_item) cannot be refreshed: it has no
# layers to embed with. A version without sampling.json is refreshed with configs.SAMPLING (the report says so).
TRAINED_ASSET_DIR = "trained"
TRAINED_MODEL_DIR = "model"
TRAINED_TRANSFORM_DIR = "transform_graph"
TRAINED_TOWER_DIR = "context_tower"
TRAINED_SAMPLING_JSON = "sampling.json"
TRAINED_JSON = "trained.json"


def trained_dir(version_dir: str) -> str:
    """The trained layout's directory inside one version."""
    return files.join(version_dir, "assets", TRAINED_ASSET_DIR)
