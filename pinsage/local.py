"""LocalVersion: one pushed version (schema/versions.py layout) answered in this process by the server's own code.

The version is loaded by serving/version.LoadedVersion and every call is a TF Serving PredictRequest built by
serving/client.py and answered by serving/core.ModelServer.predict_version, the method both of the server's front
ends end in: the same id lookups, ScaNN searches, exclusions and checks, so an answer equals the server's for the
same version, and a request the server refuses raises ValueError with the server's message (it names the input).
Batches beyond the server's max_batch are sent as several requests of at most max_batch rows.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from pinsage.results import Embedded, Item
from schema import versions
from serving import client
from serving.core import ModelServer
from serving.errors import ServingError
from serving.loader import scan
from serving.server import resolve_model_dir
from serving.version import NEIGHBOR_INPUTS, LoadedVersion

EMBED_ITEM = "embed_item"
Ids = Union[str, Sequence[str]]


def version_dir(path: Union[str, os.PathLike]) -> str:
    """The version directory `path` names: itself when it holds a SavedModel, else a model directory's newest
    numbered version (the server's default policy; serving_model/ holding one model stands for that model, as
    for the server); ValueError when it is neither."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a directory path, got {type(path).__name__}")
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise ValueError(f"{path}: no such directory")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        if not os.path.isdir(versions.index_dir(path)):
            raise ValueError(f"{path}: a SavedModel without a pushed version's index ({versions.index_dir(path)})")
        return path
    found, _ = scan(resolve_model_dir(path)[0])
    if not found:
        raise ValueError(
            f"{path}: not a version directory (no saved_model.pb) nor a model directory (no numbered version in it)"
        )
    return version_dir(os.path.join(resolve_model_dir(path)[0], str(found[-1])))


class LocalVersion:
    """One loaded version: related / similar (item ids), recommend (histories; with a context tower),
    recommend_for (known contexts; with their stored vectors), embed (new items; with a cold-start embedder).
    Each takes one query or a list of them and returns one list of Items per query, best first."""

    def __init__(self, loaded: LoadedVersion):
        self.loaded = loaded
        self.path, self.model_name, self.version = loaded.path, loaded.model_name, loaded.version
        self.num_items = loaded.num_items
        self.signatures = sorted(loaded.signature_defs)
        self._core = ModelServer([])  # serves no model of its own: only its answer to a request on `loaded`

    @classmethod
    def open(cls, path: Union[str, os.PathLike]) -> "LocalVersion":
        path = version_dir(path)
        name = os.path.basename(path)
        number = int(name) if versions.is_version_name(name) else 0
        try:
            return cls(LoadedVersion(os.path.basename(os.path.dirname(path)), path, number))
        except Exception as e:  # a broken version fails in whichever reader meets it first
            raise ValueError(f"{path}: the version does not load: {type(e).__name__}: {e}") from e

    def __repr__(self) -> str:
        return f"LocalVersion({self.path!r}, {self.num_items} items, signatures {self.signatures})"

    # -- the signatures
    def related(self, ids: Ids, k: int = 10) -> List[List[Item]]:
        """related_items for each id (u_q . z: what a person engages with next), the item itself excluded."""
        return self._item_to_item(versions.RELATED_ITEMS, ids, k)

    def similar(self, ids: Ids, k: int = 10) -> List[List[Item]]:
        """similar_items for each id (z_q . z: the nearest embeddings), the item itself excluded."""
        return self._item_to_item(versions.SIMILAR_ITEMS, ids, k)

    def recommend(
        self,
        history: Union[Ids, Sequence[Sequence[str]]],
        k: int = 10,
        weights: Optional[Union[Sequence[float], Sequence[Sequence[float]]]] = None,
    ) -> List[List[Item]]:
        """recommend for one history (item ids, oldest first) or a list of histories, the histories' own items
        excluded; `weights` (one per event, >= 0) of the same shape uses recommend_weighted. Unknown ids in a
        history are skipped, as the server does; a history with no known id is a ValueError."""
        self._require(versions.RECOMMEND, "recommend needs a version with a context tower")
        histories, one = _nested(history, "history")
        if weights is not None:
            weights = [list(weights)] if one else [list(w) for w in weights]
            if [len(w) for w in weights] != [len(h) for h in histories]:
                raise ValueError("weights must have one value per history item, in the shape of history")
        k = _k(k)
        step = self._core.max_batch
        out = []
        for at in range(0, len(histories), step):
            w = None if weights is None else weights[at : at + step]
            out += self._ask(client.recommend_request(histories[at : at + step], k, self.model_name, weights=w))
        return out

    def recommend_for(self, context_ids: Ids, k: int = 10) -> List[List[Item]]:
        """recommend_context for known context ids: each context's stored query vector, its whole history
        excluded."""
        self._require(versions.RECOMMEND_CONTEXT, "recommend_for needs a version with the contexts' stored vectors")
        k = _k(k)
        ids = _ids(context_ids, "context_ids")
        return self._chunked(ids, lambda q: client.recommend_context_request(q, k, self.model_name))

    def embed(
        self,
        features: Mapping[str, Sequence],
        neighbor_ids: Sequence[Sequence[str]],
        neighbor_weights: Optional[Sequence[Sequence[float]]] = None,
        k: int = 10,
    ) -> List[Embedded]:
        """embed_item for new items, one row each: `features` {column: [value per item]} as the signature takes
        them (its feature columns: `embed_inputs`), `neighbor_ids` each item's neighbours among the catalogue's
        ids (rows of any length), `neighbor_weights` theirs (default 1). Returns each item's embedding and its
        k nearest catalogue items."""
        self._require(EMBED_ITEM, "embed needs a version exported with a cold-start embedder")
        clash = sorted(set(features) & set(NEIGHBOR_INPUTS))
        if clash:
            raise ValueError(f"features may not be named {clash} (embed_item's own inputs)")
        rows = [_ids(r, "neighbor_ids row") for r in _rows(neighbor_ids, "neighbor_ids")]
        weights = [[1.0] * len(r) for r in rows] if neighbor_weights is None else _rows(neighbor_weights, "weights")
        if [len(w) for w in weights] != [len(r) for r in rows]:
            raise ValueError("neighbor_weights must have one value per neighbour, in the shape of neighbor_ids")
        width = max((len(r) for r in rows), default=0)
        req = client.predict_request(EMBED_ITEM, self.model_name)
        req.inputs["k"].CopyFrom(tf.make_tensor_proto(_k(k), tf.int32))
        specs = self.loaded.inputs[EMBED_ITEM]
        for name, values in features.items():
            dtype = tf.as_dtype(specs[name].dtype) if name in specs else None  # an unknown name: the core says so
            try:
                req.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(values), dtype=dtype))
            except (TypeError, ValueError) as e:
                raise ValueError(f"feature {name!r}: {e}") from None
        ids = [[str(i) for i in r] + [""] * (width - len(r)) for r in rows]  # "" pads, at weight 0
        w = [[float(x) for x in r] + [0.0] * (width - len(r)) for r in weights]
        req.inputs["neighbor_ids"].CopyFrom(tf.make_tensor_proto(ids, tf.string, shape=[len(ids), width]))
        req.inputs["neighbor_weights"].CopyFrom(tf.make_tensor_proto(w, tf.float32, shape=[len(w), width]))
        out = self._decoded(req)
        return [Embedded(e, items) for e, items in zip(out["embedding"], self._items(out))]

    @property
    def embed_inputs(self) -> Dict[str, str]:
        """embed_item's feature columns and their dtypes ({} without the signature)."""
        specs = self.loaded.inputs.get(EMBED_ITEM, {})
        return {n: tf.as_dtype(s.dtype).name for n, s in specs.items() if n not in NEIGHBOR_INPUTS}

    # -- requests through the request core
    def _item_to_item(self, signature: str, ids: Ids, k: int) -> List[List[Item]]:
        self._require(signature, "a version exported before it")
        k = _k(k)
        return self._chunked(_ids(ids, "ids"), lambda q: client.related_request(q, k, self.model_name, signature))

    def _chunked(self, queries: List[str], request) -> List[List[Item]]:
        step = self._core.max_batch
        return [items for at in range(0, len(queries), step) for items in self._ask(request(queries[at : at + step]))]

    def _decoded(self, request) -> Dict[str, list]:
        try:
            return client.decode(self._core.predict_version(self.loaded, request))
        except ServingError as e:
            raise ValueError(str(e)) from None

    def _ask(self, request) -> List[List[Item]]:
        return self._items(self._decoded(request))

    def _items(self, out: Dict[str, list]) -> List[List[Item]]:
        table, result = self.loaded.items, []
        for ids, titles, scores in zip(out["item_ids"], out["titles"], out["scores"]):
            if table.has_attributes:
                attributes = table.attributes_of(table.rows([i.encode("utf-8") for i in ids]))
            else:
                attributes = [{} for _ in ids]
            result.append([Item(*row) for row in zip(ids, titles, scores, attributes)])
        return result

    def _require(self, signature: str, why: str) -> None:
        if signature not in self.loaded.signature_defs:
            raise ValueError(f"{self.path} has no {signature} signature ({why}); it has {self.signatures}")


def _k(k) -> int:
    """k as the request's int32; its range for this catalogue is the request core's to check (and name)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    if not -(2**31) <= k < 2**31:
        raise ValueError(f"k must be a 32-bit integer, got {k}")
    return int(k)


def _ids(ids, what: str) -> List[str]:
    """One id (a string or number) or a sequence of them, as strings."""
    if isinstance(ids, (str, int, np.integer)):
        return [str(ids)]
    try:
        out = list(ids)
    except TypeError:
        raise ValueError(f"{what} must be an id or a list of ids, got {type(ids).__name__}") from None
    bad = [i for i in out if not isinstance(i, (str, int, np.integer)) or isinstance(i, bool)]
    if bad:
        raise ValueError(f"{what} must be ids (strings), got {bad[0]!r}")
    return [str(i) for i in out]


def _rows(rows, what: str) -> list:
    """A list of rows (lists), one per item."""
    if isinstance(rows, (str, bytes)):
        raise ValueError(f"{what} must be a list of rows, one per item, got a string")
    try:
        return [list(r) for r in rows]
    except TypeError:
        raise ValueError(f"{what} must be a list of rows, one per item") from None


def _nested(history, what: str):
    """([histories], True when one history was given): an id, a list of ids, or a list of lists of ids."""
    if isinstance(history, (str, int, np.integer)):
        return [[str(history)]], True
    try:
        rows = list(history)
    except TypeError:
        rows = []
    if not rows:
        raise ValueError(f"{what} must be a non-empty list of item ids, or a list of such lists")
    if all(isinstance(h, (str, int, np.integer)) for h in rows):
        return [_ids(rows, what)], True
    return [_ids(h, f"{what} row") for h in rows], False
