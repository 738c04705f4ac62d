"""Export: item embeddings (+ a cold-start embedder) -> a SavedModel that stock TF Serving can serve.

Why stock ops only: the `tensorflow/serving` binary links no ScaNN kernels, so the graph answers by exact search
(one matmul + tf.math.top_k over the catalogue). Our own gRPC server (serving/server.py) answers the same
signatures from the ScaNN index in the version's assets/ and only calls into this SavedModel for `embed`.

Signatures (names are part of the API, docs/DESIGN.md "Contracts"):
    related_items(item_id: string [N], k: int32 []) -> item_ids string [N, k], scores float [N, k],
                                                       titles string [N, k]     (the query item itself excluded)
    similar_items(item_id, k) -> the same outputs, scored z_q . z_i             (the query item itself excluded)
    embed_item(<feature columns>, neighbor_ids: string [N, T], neighbor_weights: float [N, T], k: int32 [])
        -> embedding float [N, d], item_ids string [N, k], scores float [N, k], titles string [N, k]
    serving_default = related_items (clients that name no signature)
  with a context tower (modules/context_tower.py):
    recommend(history_ids: string [N, L], k: int32 []) -> item_ids string [N, k], scores float [N, k],
                                       titles string [N, k], history_used int32 [N]
    recommend_weighted(history_ids, history_weights: float [N, L], k) -> the same, each event weighted
  scored u_c . v_i over the tower's item vectors v (z itself, or its adapter's z'), the history's own items
  excluded. "" is padding anywhere in a row; unknown ids are skipped (history_used counts the known ones); a row
  without a known id, a negative or non-finite weight and k outside [1, catalogue] fail with InvalidArgumentError
  naming the input. Two signatures because a SignatureDef has no optional input.
  with a tower and the known contexts' precomputed vectors (pipeline/history/context_vectors.py):
    recommend_context(context_id: string [N], k: int32 []) -> the outputs of recommend, scored u_c . v with the
                                       stored u_c of each context and its whole stored history excluded
                                       (history_used = that history's length)
  A third signature, not an input of `recommend`, for the same reason; an unknown context id fails with
  InvalidArgumentError naming context_id. The context ids travel as the asset context_ids.txt of an id -> row
  table (as the item ids), the vectors and the history CSR as variables.
Unknown ids, k outside [1, catalogue] and mismatched neighbour shapes fail with InvalidArgumentError (the
message names the offending ids). In `neighbor_ids`, "" is padding (its weight is forced to 0), because a TF
Serving request has to be rectangular while items have different numbers of neighbours.

The module also carries `embed_new(features, neighbor_ids, neighbor_weights)` (a tf.function, not a signature) and
the `embeddings` / `item_ids` / `titles` variables, which the gRPC server reads after tf.saved_model.load; with a
tower, `recommend_query(history_ids, history_weights) -> (u_c, rows, history_used)` (the server searches its
index with u_c) and, when the tower's item vectors are not the embeddings (an adapter), `recommend_vectors`.

A model with a query head (modules/layers.QueryHead) scores u_q . z_i: the export then also holds the
`query_embeddings` variable (u of every catalogue item, used by related_items) and `query_new(embedding)`
(the head, used by embed_item on a new item's z); without them an item's own embedding is its query.
Why two item-to-item signatures: u_q . z_i ranks what a person engages with after the query (the trained
objective: related_items), z_q . z_i ranks the items whose embeddings are closest to the query's, a symmetric
"more like this" whose lists reach much more of the catalogue (similar_items; report.json's `pinsage_similar`
row measures it). Both search the same index of z; without a query head they are the same ranking.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from schema import files
from schema.embeddings import check_inputs, write_lines
from schema.versions import (
    RECOMMEND,
    RECOMMEND_CONTEXT,
    RECOMMEND_WEIGHTED,
    RELATED_ITEMS,
    SIMILAR_ITEMS,
    ContextArrays,
)

RESERVED = ("neighbor_ids", "neighbor_weights", "k")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")  # where TF Serving looks for them
WARMUP_REQUESTS = 8
WARMUP_K = 10


class ServingModule(tf.Module):
    """Embeddings, id map and (optionally) the cold-start embedder, plus the signature bodies."""

    def __init__(
        self,
        embeddings: np.ndarray,
        item_ids: Sequence[str],
        titles: Optional[Sequence[str]],
        ids_file: str,
        embed_fn: Optional[Callable] = None,
        query_embeddings: Optional[np.ndarray] = None,
        query_fn: Optional[Callable] = None,
    ):
        super().__init__(name="pinsage_serving")
        n = len(item_ids)
        self.embeddings = tf.Variable(embeddings, trainable=False, name="embeddings")
        self.query_embeddings = (
            tf.Variable(query_embeddings, trainable=False, name="query_embeddings")
            if query_embeddings is not None
            else None
        )
        self.query_head = query_fn
        self.item_ids = tf.Variable(
            np.asarray(item_ids, dtype=object), trainable=False, name="item_ids", dtype=tf.string
        )
        self.titles = tf.Variable(
            np.asarray(titles if titles is not None else [""] * n, dtype=object),
            trainable=False,
            name="titles",
            dtype=tf.string,
        )
        # id -> row from a text asset: it travels as SavedModel/assets/item_ids.txt, and the table is built by
        # the init op on load, so 1M ids are not a graph constant.
        self.id_table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                ids_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
            ),
            default_value=-1,
        )
        self.num_items = n
        self.embedder = embed_fn  # tracked, so a Keras model's / tf.Module's variables are saved with it

    def rows(self, ids: tf.Tensor, what: str, allow_padding: bool = False):
        """Source ids -> embedding rows; fails with the unknown ids in the message. Padding ("") -> row 0."""
        rows = self.id_table.lookup(ids)
        pad = tf.equal(ids, "") if allow_padding else tf.zeros_like(ids, dtype=tf.bool)
        unknown = tf.logical_and(rows < 0, tf.logical_not(pad))
        check = tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(unknown)),
            [f"{what}: unknown item id(s):", tf.boolean_mask(ids, unknown)],
            summarize=10,
        )
        with tf.control_dependencies([check]):
            return tf.where(pad, tf.zeros_like(rows), rows), pad

    def check_k(self, k: tf.Tensor, max_k: int):
        return tf.debugging.Assert(
            tf.logical_and(k >= 1, k <= max_k),
            [f"k must be in [1, {max_k}] (catalogue of {self.num_items} items), got", k],
        )

    def top_k(self, scores: tf.Tensor, k: tf.Tensor) -> Dict[str, tf.Tensor]:
        values, idx = tf.math.top_k(scores, k=k)
        return {"item_ids": tf.gather(self.item_ids, idx), "scores": values, "titles": tf.gather(self.titles, idx)}

    def query_of(self, emb: tf.Tensor) -> tf.Tensor:
        """A new item's query vector u from its embedding z (z itself without a query head)."""
        return emb if self.query_head is None else self.query_head(emb)

    def related_items(self, item_id: tf.Tensor, k: tf.Tensor) -> Dict[str, tf.Tensor]:
        queries = self.embeddings if self.query_embeddings is None else self.query_embeddings
        return self._nearest_other_items(item_id, k, queries, RELATED_ITEMS)

    def similar_items(self, item_id: tf.Tensor, k: tf.Tensor) -> Dict[str, tf.Tensor]:
        return self._nearest_other_items(item_id, k, self.embeddings, SIMILAR_ITEMS)

    def _nearest_other_items(self, item_id, k, queries: tf.Variable, what: str) -> Dict[str, tf.Tensor]:
        """Top-k of queries[row] . z over the catalogue, the query item itself excluded."""
        rows, _ = self.rows(item_id, what)
        with tf.control_dependencies([self.check_k(k, self.num_items - 1)]):
            scores = tf.matmul(tf.gather(queries, rows), self.embeddings, transpose_b=True)
        # the query item is always its own best match: push it to the bottom before top-k
        self_pos = tf.stack([tf.range(tf.shape(rows, out_type=tf.int64)[0]), rows], axis=1)
        scores = tf.tensor_scatter_nd_update(scores, self_pos, tf.fill(tf.shape(rows), -np.inf))
        return self.top_k(scores, k)

    def attach_tower(self, tower_fn: Callable, tracked, max_len: int, item_vectors: Optional[np.ndarray]) -> None:
        """The context tower: tower_fn(ids [N, max_len] int64, -1 padded on the left, weights) -> u_c [N, d];
        `tracked` holds its variables; item_vectors [N, d] when they are not the embeddings (an adapter)."""
        self.context_tower, self.tower_fn, self.max_len = tracked, tower_fn, int(max_len)
        self.recommend_vectors = (
            None if item_vectors is None else tf.Variable(item_vectors, trainable=False, name="recommend_vectors")
        )

    def history_query(self, history_ids, history_weights):
        """(u_c [N, d], rows [N, L] int64 with -1 for padding and unknown ids, history_used [N] int32): the known
        ids moved to the row's end in their order (the tower reads the last slot as the most recent), the last
        max_len of them kept."""
        same = tf.debugging.assert_equal(
            tf.shape(history_ids), tf.shape(history_weights), message="history_weights must have history_ids' shape"
        )
        w_ok = tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(history_weights) & (history_weights >= 0)),
            ["history_weights must be finite and >= 0"],
        )
        rows = self.id_table.lookup(history_ids)  # "" is never an id (export refuses it): padding reads as unknown
        known = rows >= 0
        used = tf.reduce_sum(tf.cast(known, tf.int32), axis=1)
        some = tf.debugging.Assert(
            tf.reduce_all(used >= 1), ["history_ids: no known item id in history row(s)", tf.where(used < 1)[:, 0]]
        )
        with tf.control_dependencies([same, w_ok, some]):
            order = tf.argsort(tf.cast(known, tf.int32), axis=1, stable=True)  # unknown first, order kept
        ids = tf.gather(tf.where(known, rows, -1), order, batch_dims=1)
        w = tf.gather(tf.where(known, history_weights, 0.0), order, batch_dims=1)
        n = tf.shape(ids)[0]
        ids = tf.concat([tf.fill([n, self.max_len], tf.constant(-1, tf.int64)), ids], 1)[:, -self.max_len :]
        w = tf.concat([tf.zeros([n, self.max_len]), w], 1)[:, -self.max_len :]
        return self.tower_fn(ids, w), rows, used

    def recommend(self, history_ids, history_weights, k):
        """Top-k of u_c . v over the catalogue, the history's known items pushed to -inf first."""
        u, rows, used = self.history_query(history_ids, history_weights)
        vectors = self.embeddings if self.recommend_vectors is None else self.recommend_vectors
        with tf.control_dependencies([self.check_k(k, self.num_items)]):
            scores = tf.matmul(u, vectors, transpose_b=True)
        at = tf.where(rows >= 0)
        pos = tf.stack([at[:, 0], tf.gather_nd(rows, at)], axis=1)
        scores = tf.tensor_scatter_nd_update(scores, pos, tf.fill(tf.shape(pos)[:1], -np.inf))
        return dict(self.top_k(scores, k), history_used=used)

    def attach_contexts(self, ids_file: str, contexts: ContextArrays) -> None:
        """Known contexts' u_c [M, d] (context id -> row by a table over the asset `ids_file`) and their whole
        histories as a CSR over catalogue rows, for recommend_context."""
        self.context_table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                ids_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
            ),
            default_value=-1,
        )
        self.context_vectors = tf.Variable(contexts.vectors, trainable=False, name="context_vectors")
        self.context_history_indptr = tf.Variable(contexts.history_indptr, trainable=False, name="history_indptr")
        self.context_history_rows = tf.Variable(contexts.history_rows, trainable=False, name="history_rows")

    def recommend_context(self, context_id, k):
        """Top-k of the stored u_c . v over the catalogue, the context's stored history pushed to -inf first."""
        rows = self.context_table.lookup(context_id)
        unknown = rows < 0
        check = tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(unknown)),
            ["context_id: unknown context id(s):", tf.boolean_mask(context_id, unknown)],
            summarize=10,
        )
        with tf.control_dependencies([check, self.check_k(k, self.num_items)]):
            rows = tf.identity(rows)
        vectors = self.embeddings if self.recommend_vectors is None else self.recommend_vectors
        scores = tf.matmul(tf.gather(self.context_vectors, rows), vectors, transpose_b=True)
        starts = tf.gather(self.context_history_indptr, rows)
        lengths = tf.gather(self.context_history_indptr, rows + 1) - starts
        # the histories' flat offsets: each context's start, counted up over its length (stock ops, no ragged ones)
        within = tf.range(tf.reduce_sum(lengths)) - tf.repeat(tf.cumsum(lengths, exclusive=True), lengths)
        items = tf.gather(self.context_history_rows, tf.repeat(starts, lengths) + within)
        at = tf.stack([tf.repeat(tf.range(tf.shape(rows, out_type=tf.int64)[0]), lengths), items], axis=1)
        scores = tf.tensor_scatter_nd_update(scores, at, tf.fill(tf.shape(items), -np.inf))
        return dict(self.top_k(scores, k), history_used=tf.cast(lengths, tf.int32))

    def embed(self, features, neighbor_ids, neighbor_weights):
        check = tf.debugging.assert_equal(
            tf.shape(neighbor_ids),
            tf.shape(neighbor_weights),
            message="neighbor_ids and neighbor_weights must have the same shape",
        )
        with tf.control_dependencies([check]):
            rows, pad = self.rows(neighbor_ids, "embed_item neighbor_ids", allow_padding=True)
        weights = tf.where(pad, tf.zeros_like(neighbor_weights), neighbor_weights)
        return tf.math.l2_normalize(self.embedder(features, rows, weights), axis=1)

    def embed_item(self, features, neighbor_ids, neighbor_weights, k):
        emb = self.embed(features, neighbor_ids, neighbor_weights)
        with tf.control_dependencies([self.check_k(k, self.num_items)]):
            scores = tf.matmul(self.query_of(emb), self.embeddings, transpose_b=True)
        return dict(self.top_k(scores, k), embedding=emb)


def export_serving_model(
    export_dir: str,
    embeddings: np.ndarray,
    item_ids: Sequence[str],
    titles: Optional[Sequence[str]] = None,
    embed_fn: Optional[Callable] = None,
    feature_spec: Optional[Dict[str, tf.TensorSpec]] = None,
    query_embeddings: Optional[np.ndarray] = None,
    query_fn: Optional[Callable] = None,
    context_tower=None,
    context_vectors: Optional[ContextArrays] = None,
) -> str:
    """Writes the SavedModel to `export_dir` and returns it.

    embed_fn(features: dict[str, Tensor], neighbor_ids: int64 [B, T] (embedding rows), neighbor_weights:
    float32 [B, T]) -> [B, d] is the trained cold-start embedder (a Keras model, tf.Module or tf.function);
    `feature_spec` maps each feature column (items.csv names) to its tf.TensorSpec with a leading batch dim,
    e.g. {"year": tf.TensorSpec([None], tf.float32)}. Without embed_fn only related_items and similar_items are
    exported.
    query_embeddings [N, d] / query_fn ([B, d] -> [B, d]): a query-head model's query vectors and head.
    context_tower: a trained modules.context_tower.ContextTower over these items (its embedding table is set to
    `embeddings`, so items added since training are usable), or the path of its SavedModel (the pipeline's, with
    config.json beside it): adds recommend and recommend_weighted.
    context_vectors: the known contexts' u_c over these items and their histories (schema/versions.ContextArrays,
    history rows indexing `embeddings`), with a context tower: adds recommend_context."""
    item_ids = [str(i) for i in item_ids]
    emb = check_inputs(embeddings, item_ids, titles)
    if any(i == "" for i in item_ids):
        raise ValueError("an item id may not be the empty string (it marks padding in neighbor_ids)")
    if (embed_fn is None) != (feature_spec is None):
        raise ValueError("embed_fn and feature_spec go together")
    if query_embeddings is not None:
        query_embeddings = np.ascontiguousarray(query_embeddings, np.float32)
        if query_embeddings.shape != emb.shape:
            raise ValueError(f"query_embeddings {query_embeddings.shape} != embeddings {emb.shape}")
        if embed_fn is not None and query_fn is None:
            raise ValueError("a model with query vectors needs query_fn for embed_item (a new item's query vector)")
    clash = set(feature_spec or {}) & set(RESERVED)
    if clash:
        raise ValueError(f"feature columns may not be named {sorted(clash)}")
    if context_vectors is not None:
        _check_contexts(context_vectors, emb.shape, context_tower is not None)

    with tempfile.TemporaryDirectory() as tmp:
        ids_file = os.path.join(tmp, "item_ids.txt")
        write_lines(ids_file, item_ids, "item ids")
        module = ServingModule(emb, item_ids, titles, ids_file, embed_fn, query_embeddings, query_fn)
        if context_tower is not None:
            module.attach_tower(*_tower_parts(context_tower, emb))
        k_spec = tf.TensorSpec([], tf.int32, name="k")
        id_spec = tf.TensorSpec([None], tf.string, name="item_id")
        related = tf.function(module.related_items).get_concrete_function(id_spec, k_spec)
        similar = tf.function(module.similar_items).get_concrete_function(id_spec, k_spec)
        signatures = {RELATED_ITEMS: related, SIMILAR_ITEMS: similar, "serving_default": related}
        if embed_fn is not None:
            ids_spec = tf.TensorSpec([None, None], tf.string, name="neighbor_ids")
            w_spec = tf.TensorSpec([None, None], tf.float32, name="neighbor_weights")
            feats = {name: tf.TensorSpec(s.shape, s.dtype, name=name) for name, s in feature_spec.items()}
            module.embed_new = tf.function(module.embed, input_signature=[feats, ids_spec, w_spec])
            module.query_new = tf.function(
                module.query_of, input_signature=[tf.TensorSpec([None, emb.shape[1]], tf.float32)]
            )

            def embed_item(**inputs):  # keyword inputs: each becomes a named SignatureDef input
                k, ids, w = inputs.pop("k"), inputs.pop("neighbor_ids"), inputs.pop("neighbor_weights")
                return module.embed_item(inputs, ids, w, k)

            signatures["embed_item"] = tf.function(embed_item).get_concrete_function(
                neighbor_ids=ids_spec, neighbor_weights=w_spec, k=k_spec, **feats
            )
        if context_tower is not None:
            signatures.update(_recommend_signatures(module, k_spec))
        context_ids = None if context_vectors is None else _context_signature(module, context_vectors, tmp, signatures)
        tf.saved_model.save(module, export_dir, signatures=signatures)
    write_warmup_requests(export_dir, item_ids, recommend=context_tower is not None, context_ids=context_ids)
    return export_dir


def _context_signature(module: ServingModule, contexts: ContextArrays, tmp: str, signatures: dict) -> list:
    """Adds the contexts (their ids as the asset context_ids.txt) and recommend_context; returns the ids."""
    ids = [c.decode("utf-8") for c in np.asarray(contexts.context_ids).tolist()]
    write_lines(os.path.join(tmp, "context_ids.txt"), ids, "context ids")
    module.attach_contexts(os.path.join(tmp, "context_ids.txt"), contexts)
    signatures[RECOMMEND_CONTEXT] = tf.function(module.recommend_context).get_concrete_function(
        tf.TensorSpec([None], tf.string, name="context_id"), tf.TensorSpec([], tf.int32, name="k")
    )
    return ids


def _check_contexts(contexts: ContextArrays, emb_shape, has_tower: bool) -> None:
    """ValueError unless the context arrays fit the catalogue: a tower (its item vectors), u_c of the item
    dimension, history rows inside the catalogue."""
    if not has_tower:
        raise ValueError("context vectors need the context tower they came from (its item vectors score them)")
    m = len(contexts.context_ids)
    if m < 1 or contexts.vectors.shape != (m, emb_shape[1]):
        raise ValueError(f"context vectors {contexts.vectors.shape} for {m} contexts of {emb_shape[1]}-d items")
    rows = np.asarray(contexts.history_rows)
    if len(contexts.history_indptr) != m + 1 or (rows.size and (rows.min() < 0 or rows.max() >= emb_shape[0])):
        raise ValueError(f"context histories must index the {emb_shape[0]} catalogue rows, one CSR row per context")


def _tower_parts(tower, emb: np.ndarray):
    """(tower_fn, what to track, max_len, item vectors or None) of a Keras ContextTower or its SavedModel path."""
    if isinstance(tower, (str, os.PathLike)):
        path = os.fspath(tower)
        config_path = files.join(files.dirname(path.rstrip("/")), "config.json")
        if not files.exists(config_path):
            raise ValueError(f"{config_path}: a context tower's SavedModel needs its config.json (max_len, adapter)")
        config = files.read_json(config_path)
        if config.get("adapter"):
            raise ValueError("a tower with an adapter scores its own item vectors: pass the Keras ContextTower")
        loaded = tf.saved_model.load(path)
        query = loaded.signatures["serving_default"]
        return (lambda ids, w: query(history=ids, weights=w)["query"]), loaded, int(config["max_len"]), None
    if tower.get_config()["item_input"] == "embedding":
        tower.set_item_embeddings(emb)
    if int(tower.num_items()) != emb.shape[0]:
        raise ValueError(f"the context tower knows {int(tower.num_items())} items, the export {emb.shape[0]}")
    vectors = tower.item_vectors().numpy()
    same = vectors.shape == emb.shape and np.allclose(vectors, emb, atol=1e-6)
    fn = lambda ids, w: tower({"history": ids, "weights": w}, training=False)  # noqa: E731
    return fn, tower, tower.max_len, None if same else vectors


def _recommend_signatures(module: ServingModule, k_spec: tf.TensorSpec) -> Dict[str, Callable]:
    """recommend (weights 1) and recommend_weighted, plus the module's recommend_query for the gRPC server."""
    ids_spec = tf.TensorSpec([None, None], tf.string, name="history_ids")
    w_spec = tf.TensorSpec([None, None], tf.float32, name="history_weights")
    module.recommend_query = tf.function(module.history_query, input_signature=[ids_spec, w_spec])

    def recommend(history_ids, k):
        return module.recommend(history_ids, tf.ones(tf.shape(history_ids)), k)

    return {
        RECOMMEND: tf.function(recommend).get_concrete_function(ids_spec, k_spec),
        RECOMMEND_WEIGHTED: tf.function(module.recommend).get_concrete_function(ids_spec, w_spec, k_spec),
    }


def write_warmup_requests(
    export_dir: str,
    item_ids: Sequence[str],
    n: int = WARMUP_REQUESTS,
    k: int = WARMUP_K,
    recommend: bool = False,
    context_ids: Optional[Sequence[str]] = None,
):
    """assets.extra/tf_serving_warmup_requests: a TFRecord of PredictionLog protos, TF Serving's warmup format,
    with `n` related_items requests for ids spread over the catalogue (one id each: the shape of the real
    traffic). TF Serving and serving/server.py replay them before marking a version AVAILABLE, so the first
    clients do not pay for the index's and the graph's first-call costs; with `recommend`, as many recommend
    requests for one-item histories of the same ids (the tower's first call too); with `context_ids`, as many
    recommend_context requests for contexts spread over them. Returns the file's path (None when the catalogue
    is too small to ask for a neighbour)."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    if len(item_ids) < 2:
        return None
    path = files.join(export_dir, *WARMUP_FILE.split(os.sep))
    files.makedirs(files.dirname(path))
    picks = np.unique(np.linspace(0, len(item_ids) - 1, min(n, len(item_ids))).astype(int))
    with tf.io.TFRecordWriter(path) as w:
        for row in picks:
            req = predict_pb2.PredictRequest()
            req.model_spec.signature_name = RELATED_ITEMS
            req.inputs["item_id"].CopyFrom(tf.make_tensor_proto([str(item_ids[row])], dtype=tf.string))
            req.inputs["k"].CopyFrom(tf.make_tensor_proto(min(k, len(item_ids) - 1), dtype=tf.int32))
            reqs = [req]
            if recommend:
                rec = predict_pb2.PredictRequest()
                rec.model_spec.signature_name = RECOMMEND
                ids = tf.make_tensor_proto([[str(item_ids[row])]], dtype=tf.string)
                rec.inputs["history_ids"].CopyFrom(ids)
                rec.inputs["k"].CopyFrom(req.inputs["k"])
                reqs.append(rec)
            if context_ids:
                ctx = predict_pb2.PredictRequest()
                ctx.model_spec.signature_name = RECOMMEND_CONTEXT
                pick = context_ids[int(row) * len(context_ids) // len(item_ids)]
                ctx.inputs["context_id"].CopyFrom(tf.make_tensor_proto([pick], dtype=tf.string))
                ctx.inputs["k"].CopyFrom(req.inputs["k"])
                reqs.append(ctx)
            for r in reqs:
                entry = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=r))
                w.write(entry.SerializeToString())
    return path
