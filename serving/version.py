"""One loaded version of a model (LoadedVersion): what the request core (serving/core.py) answers from, loaded by
the loader (serving/loader.py) in its own thread while the previous version keeps answering."""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Dict

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from modules.index import exact_top_k, load_index
from schema import versions
from schema.embeddings import IDS_FILE
from serving.contexts import CONTEXT_INPUTS, ContextTable
from serving.errors import invalid
from serving.items import ItemTable
from serving.tensors import shape_of

log = logging.getLogger("pinsage.serving")
NEIGHBOR_INPUTS = ("neighbor_ids", "neighbor_weights", "k")  # embed_item's inputs besides the item features
HISTORY_INPUT, HISTORY_WEIGHTS = "history_ids", "history_weights"  # recommend's, with k
ID_CHECK = 1000  # leading ids compared between a version's SavedModel and its index


class LoadedVersion:
    """Everything one version needs in memory: ScaNN searcher, vectors, ids, titles, signature defs and, when a
    signature needs TF (embed_item, any signature other than related_items), the SavedModel.

    A version with the serving arrays (schema/versions.py) maps them (np.load(mmap_mode="r")): nothing per item
    is built in Python, the id map included (serving/items.py). Its SavedModel is loaded only for the signatures
    that run TF, and TF's restore ops leave the GIL to the request threads meanwhile. ScaNN's deserialisation is
    the one stage that holds the GIL throughout (its pybind constructor does not release it). A version written
    before the arrays existed is loaded from the text files and the SavedModel, as it was then. The seconds each
    stage took are in `load_breakdown`."""

    def __init__(self, model_name: str, path: str, version: int):
        self.model_name, self.version, self.path = model_name, version, path
        stages = _Stages()
        index_dir = versions.index_dir(path)
        arrays = versions.read_serving_arrays(index_dir)
        self.index = load_index(index_dir, text=arrays is None)
        stages("scann")
        sm = saved_model_pb2.SavedModel()
        with open(os.path.join(self.path, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        self.signature_defs = {k: v for k, v in sm.meta_graphs[0].signature_def.items() if not k.startswith("__")}
        # per signature: its inputs as a plain dict (proto maps are slow to walk per request) and who answers
        self.inputs = {k: dict(sorted(v.inputs.items())) for k, v in self.signature_defs.items()}
        needs_tf = arrays is None or any(set(ins) != {"item_id", "k"} for ins in self.inputs.values())
        self.saved_model = tf.saved_model.load(self.path) if needs_tf else None
        stages("saved_model")
        if arrays is None:
            self._from_saved_model()
        else:
            self._from_arrays(arrays)
        # a known context's stored u_c and history (assets/contexts/), for recommend_context
        self.contexts = None if arrays is None else ContextTable.load(path, self.num_items, self.embeddings.shape[1])
        stages("arrays")
        self.kind = {
            k: "related"
            if set(ins) == {"item_id", "k"}
            else "embed"
            if set(NEIGHBOR_INPUTS) <= set(ins) and hasattr(self.saved_model, "embed_new")
            else "recommend"
            if HISTORY_INPUT in ins and hasattr(self.saved_model, "recommend_query")
            else "recommend_context"
            if set(ins) == CONTEXT_INPUTS and self.contexts is not None
            else "generic"
            for k, ins in self.inputs.items()
        }
        # each item-to-item signature's query vectors: similar_items the indexed z, any other the stored queries
        self.query_vectors = {
            k: self.embeddings if k == versions.SIMILAR_ITEMS else self.queries
            for k, kind in self.kind.items()
            if kind == "related"
        }
        # the hot path (one item id, top-k; see ModelServer.predict_fast)
        self.one_item_signatures = {
            k
            for k, ins in self.inputs.items()
            if self.kind[k] == "related"
            and (ins["item_id"].dtype, shape_of(ins["item_id"]), ins["k"].dtype, shape_of(ins["k"]))
            == (types_pb2.DT_STRING, [-1], types_pb2.DT_INT32, [])
        }
        self.max_exact_k = int(self.index.stats.get("reorder", self.num_items))
        # a context tower with an adapter scores its own item vectors (exact search); without one the index's z
        rv = getattr(self.saved_model, "recommend_vectors", None) if self.saved_model is not None else None
        self.recommend_vectors = None if rv is None else rv.numpy()
        self.load_breakdown = stages.seconds
        self.load_seconds = sum(stages.seconds.values())
        log.info(
            "%s version %d read in %.2f s (%s%s)",
            model_name,
            version,
            self.load_seconds,
            ", ".join(f"{k} {s:.2f} s" for k, s in stages.seconds.items()),
            "" if arrays is not None else "; no serving arrays: a version from before them, loaded from its text",
        )

    def _from_arrays(self, arrays: versions.ServingArrays) -> None:
        """The mapped arrays, checked against the SavedModel without loading it: its variables' shapes (the
        checkpoint's index file) and the first ids of its id table asset."""
        self.items = ItemTable.from_arrays(arrays)
        self.num_items = self.items.num_items
        self.embeddings = arrays.embeddings
        self.queries = arrays.query_embeddings if arrays.query_embeddings is not None else arrays.embeddings
        shapes = dict(tf.train.list_variables(os.path.join(self.path, "variables", "variables")))
        emb = shapes.get("embeddings/.ATTRIBUTES/VARIABLE_VALUE")
        if emb != list(self.embeddings.shape):
            raise ValueError(
                f"{self.path}: the SavedModel's embeddings are {emb}, the index's {list(self.embeddings.shape)}"
            )
        if ("query_embeddings/.ATTRIBUTES/VARIABLE_VALUE" in shapes) != (arrays.query_embeddings is not None):
            raise ValueError(
                f"{self.path}: the SavedModel and the index disagree on query vectors (a query head): "
                f"{versions.QUERY_EMBEDDINGS_NPY} is {'absent' if arrays.query_embeddings is None else 'present'}"
            )
        asset = os.path.join(self.path, "assets", IDS_FILE)
        if os.path.exists(asset):
            with open(asset, encoding="utf-8", newline="\n") as f:
                first = [line.rstrip("\n").encode("utf-8") for line in itertools.islice(f, ID_CHECK)]
        else:  # a SavedModel re-saved without the asset: the ids variable (every id read, once per load)
            reader = tf.train.load_checkpoint(os.path.join(self.path, "variables", "variables"))
            first = reader.get_tensor("item_ids/.ATTRIBUTES/VARIABLE_VALUE")[:ID_CHECK].tolist()
        if first != self.items.ids_of(range(len(first))):
            raise ValueError(f"{self.path}: the SavedModel and the index disagree on the item ids")

    def _from_saved_model(self) -> None:
        """A version without serving arrays: ids and titles from the index's text, vectors from the SavedModel."""
        titles = self.index.titles
        self.items = ItemTable.from_lists(list(self.index.item_ids), None if titles is None else list(titles))
        self.num_items = self.items.num_items
        self.embeddings = self.saved_model.embeddings.numpy()
        # a query-head model (modules/export.py): related_items searches with the query vector u_q, not z_q
        q = getattr(self.saved_model, "query_embeddings", None)
        self.queries = q.numpy() if q is not None else self.embeddings
        first = self.saved_model.item_ids[:ID_CHECK].numpy().tolist()
        if self.embeddings.shape[0] != self.num_items or first != self.items.ids_of(range(len(first))):
            raise ValueError(f"{self.path}: the SavedModel and the index disagree on the item ids")

    def rows(self, ids: np.ndarray, what: str) -> np.ndarray:
        rows = self.items.rows(ids.ravel().tolist())
        if (rows < 0).any():
            unknown = [i.decode(errors="replace") for i in ids.ravel()[rows < 0].tolist()]
            raise invalid(f"{what}: unknown item id(s): {unknown[:10]}" + (" ..." if len(unknown) > 10 else ""))
        return rows.reshape(ids.shape)

    def search(self, queries: np.ndarray, k: int):
        """Top-k rows and scores (float32) for [B, d] queries: ScaNN, or an exact scan when k is beyond what the
        tree index re-ranks exactly (its `reorder` candidates) and could come back short."""
        if len(queries) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        if k > self.index.stats.get("reorder", self.num_items):
            idx = exact_top_k(self.embeddings, queries, k, chunk=16)
            return idx, np.einsum("bd,bkd->bk", queries, self.embeddings[idx]).astype(np.float32)
        if len(queries) == 1:
            idx, dist = self.index.searcher.search(queries[0], final_num_neighbors=k)
            return np.asarray(idx, np.int64)[None], np.asarray(dist, np.float32)[None]
        idx, dist = self.index.searcher.search_batched(queries, final_num_neighbors=k)
        return np.asarray(idx, np.int64), np.asarray(dist, np.float32)

    def search_excluding(self, queries: np.ndarray, rows: np.ndarray, k: int):
        """Top-k rows and scores for [B, d] context queries, each row's history (rows[b] >= 0) excluded: top-(k +
        history) over the tower's item vectors (the index's ScaNN searcher when they are z), then the history
        dropped. When the catalogue runs out, the history's items fill the tail at -inf, lowest row first, as the
        SavedModel's exact top_k returns them."""
        extra = int((rows >= 0).sum(1).max()) if rows.size else 0
        kk = min(k + extra, self.num_items)
        if self.recommend_vectors is None:
            idx, scores = self.search(queries, kk)
        else:
            idx = exact_top_k(self.recommend_vectors, queries, kk, chunk=16)
            scores = np.einsum("bd,bkd->bk", queries, self.recommend_vectors[idx]).astype(np.float32)
        out_idx, out_scores = np.empty((len(queries), k), np.int64), np.empty((len(queries), k), np.float32)
        for b in range(len(queries)):
            history = set(rows[b][rows[b] >= 0].tolist())
            keep = [j for j, r in enumerate(idx[b].tolist()) if r not in history][:k]
            fill = sorted(history)[: k - len(keep)]
            out_idx[b] = np.concatenate([idx[b][keep], np.asarray(fill, np.int64)])
            out_scores[b] = np.concatenate([scores[b][keep], np.full(len(fill), -np.inf, np.float32)])
        return out_idx, out_scores

    def outputs(self, idx: np.ndarray, scores: np.ndarray) -> Dict[str, np.ndarray]:
        return {"item_ids": self.items.id_array(idx), "scores": scores, "titles": self.items.title_array(idx)}


class _Stages:
    """Seconds per named stage: each call closes the stage that ran since the previous one."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self._t = round(now - self._t, 3), now
