"""A gRPC server speaking TF Serving's PredictionService / ModelService API over the Pusher's layout, answering
retrieval from the ScaNN index in each version's assets/.

Why our own server: stock TF Serving can serve the pushed SavedModel (exact top-k over the whole catalogue per
request), but approximate search needs ScaNN, which TF Serving does not link. Speaking the same protos means any
TF Serving client (PredictionServiceStub + tf.make_tensor_proto) works against either. To use the real
container on the same directory instead:
    docker run -p 8500:8500 -v $PWD/serving_model/pinsage:/models/pinsage -e MODEL_NAME=pinsage tensorflow/serving

Behaviour:
- Serves the newest complete version (an all-digit directory; the Pusher renames them into place atomically).
  A background thread polls every `poll_seconds`, loads a newer version off to the side and swaps one reference;
  requests already running keep the version object they started with, so a swap fails none of them.
- related_items: rows from the id map -> stored query vectors (the embeddings, or a query-head model's
  query_embeddings) -> ScaNN top-(k+1) -> the query item dropped.
  embed_item: the SavedModel's `embed_new` function (the trained cold-start embedder) -> ScaNN top-k.
  Any other signature is run by the SavedModel itself.
- model_spec: `name` must match; `version` must be the served one; `version_label` "latest" / "stable" both
  name the served version (one version is loaded at a time, like TF Serving's default policy).
- Errors are gRPC status codes and the server stays up: NOT_FOUND for an unknown model / version / label /
  signature, INVALID_ARGUMENT for unknown ids, wrong input names / dtypes / shapes, k outside [1, catalogue],
  batches over `max_batch`; UNAVAILABLE before the first version loads; messages over `max_message_bytes` are
  refused by gRPC itself (RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import os


import asyncio
import logging
import threading
import time
from concurrent import futures
from typing import Dict, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from schema import versions
from serving.flags import DEFAULTS
from modules.index import exact_top_k, load_index
import signal
import multiprocessing as mp
import socket

log = logging.getLogger("pinsage.serving")
NEIGHBOR_INPUTS = ("neighbor_ids", "neighbor_weights", "k")


class ServingError(Exception):
    """An error with the gRPC status code it maps to."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def invalid(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def not_found(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, msg)


# ------------------------------------------------------------------------------------------------ tensors
def fill_proto(proto: tensor_pb2.TensorProto, arr: np.ndarray) -> None:
    """numpy -> TensorProto in place. Strings and float32 by hand: tf.make_tensor_proto costs ~30 us a call,
    a fifth of a whole related_items request."""
    proto.tensor_shape.dim.extend([tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in arr.shape])
    if arr.dtype == object or arr.dtype.kind in "SU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend([v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel()])
    elif arr.dtype == np.float32:
        proto.dtype = types_pb2.DT_FLOAT
        proto.tensor_content = arr.astype("<f4", copy=False).tobytes()
    else:
        proto.CopyFrom(tf.make_tensor_proto(arr))


_FAST = {
    types_pb2.DT_STRING: ("string_val", object),
    types_pb2.DT_INT32: ("int_val", np.int32),
    types_pb2.DT_FLOAT: ("float_val", np.float32),
}


def to_numpy(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """TensorProto -> numpy; the common request dtypes by hand, anything else through tf.make_ndarray."""
    shape = [d.size for d in proto.tensor_shape.dim]
    size = int(np.prod(shape)) if shape else 1
    fast = _FAST.get(proto.dtype)
    if fast is None or (proto.tensor_content and proto.dtype == types_pb2.DT_STRING):
        return tf.make_ndarray(proto)
    field, dtype = fast
    if proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype=np.dtype(dtype).newbyteorder("<"))
    else:
        values = np.array(getattr(proto, field), dtype=dtype)
        if len(values) == 1 and size > 1:  # TF's compact form: one value repeated
            values = np.repeat(values, size)
    if values.size != size:
        raise ValueError(f"{values.size} values for shape {shape}")
    return values.reshape(shape)


def _shape(spec: meta_graph_pb2.TensorInfo):
    return None if spec.tensor_shape.unknown_rank else [d.size for d in spec.tensor_shape.dim]


def check_input(name: str, proto: tensor_pb2.TensorProto, spec: meta_graph_pb2.TensorInfo) -> np.ndarray:
    """Dtype and shape against the SignatureDef, then numpy; a mismatch is INVALID_ARGUMENT, not a crash."""
    if proto.dtype != spec.dtype:
        raise invalid(
            f"input '{name}' must be {types_pb2.DataType.Name(spec.dtype)}, got {types_pb2.DataType.Name(proto.dtype)}"
        )
    want = [] if spec.tensor_shape.unknown_rank else [d.size for d in spec.tensor_shape.dim]
    got = [d.size for d in proto.tensor_shape.dim]
    if not spec.tensor_shape.unknown_rank and (
        len(got) != len(want) or any(w not in (-1, g) for w, g in zip(want, got))
    ):
        shape = "[" + ", ".join("?" if w == -1 else str(w) for w in want) + "]"
        raise invalid(f"input '{name}' must have shape {shape}, got {got}")
    try:
        return to_numpy(proto)
    except Exception as e:  # e.g. a tensor_content of the wrong length
        raise invalid(f"input '{name}' is malformed: {e}") from None


def tf_error_message(e: tf.errors.OpError) -> str:
    """The assertion text of a failed tf.debugging.Assert, without the graph-node noise."""
    lines = [ln.strip() for ln in e.message.splitlines() if ln.strip()]
    return next((ln for ln in lines if ln.startswith("assertion failed")), lines[0] if lines else str(e))


# ------------------------------------------------------------------------------------------------ versions
class LoadedVersion:
    """Everything one version needs in memory: SavedModel, ScaNN searcher, ids, titles, signature defs."""

    def __init__(self, model_dir: str, version: int):
        self.version = version
        self.path = os.path.join(model_dir, str(version))
        start = time.time()
        self.index = load_index(os.path.join(self.path, "assets", versions.INDEX_ASSET_DIR))
        self.saved_model = tf.saved_model.load(self.path)
        self.embeddings = self.saved_model.embeddings.numpy()
        # a query-head model (modules/export.py): related_items searches with the query vector u_q, not z_q
        q = getattr(self.saved_model, "query_embeddings", None)
        self.queries = q.numpy() if q is not None else self.embeddings
        self.item_ids = self.index.item_ids
        self.num_items = len(self.item_ids)
        if self.embeddings.shape[0] != self.num_items or any(
            a.decode() != b for a, b in zip(self.saved_model.item_ids.numpy()[:1000], self.item_ids[:1000])
        ):
            raise ValueError(f"{self.path}: the SavedModel and the index disagree on the item ids")
        self.titles = self.index.titles if self.index.titles is not None else np.full(self.num_items, "", object)
        self.item_ids_bytes = np.array([i.encode() for i in self.item_ids], dtype=object)
        self.titles_bytes = np.array([t.encode() for t in self.titles], dtype=object)
        self.row_of = {i.encode(): r for r, i in enumerate(self.item_ids)}
        sm = saved_model_pb2.SavedModel()
        with open(os.path.join(self.path, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        self.signature_defs = {k: v for k, v in sm.meta_graphs[0].signature_def.items() if not k.startswith("__")}
        # per signature: its inputs as a plain dict (proto maps are slow to walk per request) and who answers
        self.inputs = {k: dict(sorted(v.inputs.items())) for k, v in self.signature_defs.items()}
        self.kind = {
            k: "related"
            if set(ins) == {"item_id", "k"}
            else "embed"
            if set(NEIGHBOR_INPUTS) <= set(ins) and hasattr(self.saved_model, "embed_new")
            else "generic"
            for k, ins in self.inputs.items()
        }
        # the hot path (one item id, top-k; see ModelServer._related_one): plain lists and the pybind searcher
        self.one_item_signatures = {
            k
            for k, ins in self.inputs.items()
            if self.kind[k] == "related"
            and (ins["item_id"].dtype, _shape(ins["item_id"]), ins["k"].dtype, _shape(ins["k"]))
            == (types_pb2.DT_STRING, [-1], types_pb2.DT_INT32, [])
        }
        self.id_list, self.title_list = self.item_ids_bytes.tolist(), self.titles_bytes.tolist()
        self.max_exact_k = int(self.index.stats.get("reorder", self.num_items))
        self.load_seconds = time.time() - start

    def rows(self, ids: np.ndarray, what: str) -> np.ndarray:
        rows = [self.row_of.get(i, -1) for i in ids.ravel()]
        unknown = [i.decode(errors="replace") for i, r in zip(ids.ravel(), rows) if r < 0]
        if unknown:
            raise invalid(f"{what}: unknown item id(s): {unknown[:10]}" + (" ..." if len(unknown) > 10 else ""))
        return np.asarray(rows, np.int64).reshape(ids.shape)

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

    def outputs(self, idx: np.ndarray, scores: np.ndarray) -> Dict[str, np.ndarray]:
        return {"item_ids": self.item_ids_bytes[idx], "scores": scores, "titles": self.titles_bytes[idx]}


# ------------------------------------------------------------------------------------------------ service
class ModelServer:
    """One model, newest version loaded, hot-swapped by a polling thread; _AioServicer puts it on gRPC."""

    def __init__(
        self,
        model_dir: str,
        model_name: str,
        poll_seconds: float = DEFAULTS.poll_seconds,
        max_batch: int = DEFAULTS.max_batch,
        max_results: int = 1_000_000,
    ):
        self.model_dir, self.model_name = model_dir, model_name
        self.poll_seconds, self.max_batch, self.max_results = poll_seconds, max_batch, max_results
        self.current: Optional[LoadedVersion] = None
        self.failed: Dict[int, str] = {}
        self._stop = threading.Event()
        self._poller: Optional[threading.Thread] = None
        self._grpc: Optional[grpc.aio.Server] = None
        self.port: Optional[int] = None
        self.rest = None  # the serving/rest.py RestServer when serve() starts one; stop() stops it

    # -- versions
    def refresh(self) -> Optional[int]:
        """Loads the newest complete version if it is newer than the one served; returns the served version."""
        latest = versions.latest_version(self.model_dir)
        cur = self.current
        if latest is not None and (cur is None or latest > cur.version) and latest not in self.failed:
            try:
                loaded = LoadedVersion(self.model_dir, latest)
            except Exception as e:  # a broken version is skipped (and reported), the old one keeps serving
                self.failed[latest] = repr(e)
                log.exception("version %s of %s failed to load", latest, self.model_name)
            else:
                self.current = loaded  # one reference assignment: requests in flight keep their version
                log.info(
                    "serving %s version %d (%d items, loaded in %.1f s)",
                    self.model_name,
                    latest,
                    loaded.num_items,
                    loaded.load_seconds,
                )
        return self.current.version if self.current else None

    def _poll(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # e.g. the model directory vanished for a moment
                log.exception("poll failed")

    def resolve(self, spec) -> LoadedVersion:
        if spec.name != self.model_name:
            raise not_found(f"model '{spec.name}' not found (this server serves '{self.model_name}')")
        v = self.current
        if v is None:
            raise ServingError(grpc.StatusCode.UNAVAILABLE, f"no version of '{self.model_name}' loaded yet")
        choice = spec.WhichOneof("version_choice")
        if choice == "version" and spec.version.value != v.version:
            raise not_found(
                f"version {spec.version.value} of '{self.model_name}' is not loaded (serving version {v.version})"
            )
        if choice == "version_label" and spec.version_label not in ("latest", "stable"):
            raise not_found(f"version label '{spec.version_label}' is not defined (known: latest, stable)")
        return v

    # -- Predict
    def _predict(self, request):
        v = self.resolve(request.model_spec)
        name = request.model_spec.signature_name or "serving_default"
        if name in v.one_item_signatures and not request.output_filter:
            resp = self._related_one(v, request.inputs, name)
            if resp is not None:
                return resp
        specs = v.inputs.get(name)
        if specs is None:
            raise not_found(f"signature '{name}' not found (available: {sorted(v.signature_defs)})")
        given = request.inputs
        if len(given) != len(specs) or any(k not in given for k in specs):
            missing, extra = sorted(set(specs) - set(given)), sorted(set(given) - set(specs))
            raise invalid(f"signature '{name}' takes inputs {sorted(specs)}; missing {missing}, unexpected {extra}")
        inputs = {k: check_input(k, given[k], spec) for k, spec in specs.items()}
        batch = max((len(a) for a in inputs.values() if a.ndim), default=0)
        if batch > self.max_batch:
            raise invalid(f"batch of {batch} exceeds max_batch {self.max_batch}")
        kind = v.kind[name]
        if kind == "related":
            out = self._related(v, inputs["item_id"], self._k(inputs, v.num_items - 1, batch))
        elif kind == "embed":
            out = self._embed(v, inputs, self._k(inputs, v.num_items, batch))
        else:
            out = self._run_signature(v, name, inputs)
        unknown = sorted(set(request.output_filter) - set(out))
        if unknown:
            raise invalid(f"output_filter names unknown outputs {unknown} (available: {sorted(out)})")
        resp = predict_pb2.PredictResponse()
        resp.model_spec.name, resp.model_spec.signature_name = self.model_name, name
        resp.model_spec.version.value = v.version
        for k, a in out.items():
            if not request.output_filter or k in request.output_filter:
                fill_proto(resp.outputs[k], a)
        return resp

    def _related_one(self, v: LoadedVersion, given, name: str):
        """related_items for one known id and a valid k, straight from the request protos to the response protos
        (no numpy round trips, one ScaNN call): the bulk of the traffic, at a third of the general path's CPU.
        Returns None for anything else, which the general path then answers or rejects."""
        if len(given) != 2 or "item_id" not in given or "k" not in given:
            return None
        ids, kp = given["item_id"], given["k"]
        if (
            ids.dtype != types_pb2.DT_STRING
            or len(ids.string_val) != 1
            or len(ids.tensor_shape.dim) != 1
            or ids.tensor_shape.dim[0].size != 1
            or kp.dtype != types_pb2.DT_INT32
            or len(kp.int_val) != 1
            or len(kp.tensor_shape.dim)
            or kp.tensor_content
        ):
            return None
        row, k = v.row_of.get(ids.string_val[0]), kp.int_val[0]
        if row is None or not 1 <= k < v.num_items or k + 1 > v.max_exact_k:
            return None
        idx, scores = v.index.searcher.searcher.search(v.queries[row], k + 1, -1, -1)
        idx = idx.tolist()
        if row in idx:  # drop the query item itself, else the (k+1)-th
            j = idx.index(row)
            del idx[j]
            scores = np.delete(scores, j)
        else:
            idx, scores = idx[:k], scores[:k]
        resp = predict_pb2.PredictResponse()
        resp.model_spec.name, resp.model_spec.signature_name = self.model_name, name
        resp.model_spec.version.value = v.version
        out = resp.outputs
        for key, values in (("item_ids", v.id_list), ("titles", v.title_list)):
            t = out[key]
            t.dtype = types_pb2.DT_STRING
            t.tensor_shape.dim.add().size = 1
            t.tensor_shape.dim.add().size = len(idx)
            t.string_val.extend([values[i] for i in idx])
        t = out["scores"]
        t.dtype = types_pb2.DT_FLOAT
        t.tensor_shape.dim.add().size = 1
        t.tensor_shape.dim.add().size = len(idx)
        t.tensor_content = scores.astype("<f4", copy=False).tobytes()
        return resp

    def _k(self, inputs, max_k: int, batch: int) -> int:
        k = int(inputs["k"])
        if not 1 <= k <= max_k:
            raise invalid(f"k must be in [1, {max_k}] for this catalogue, got {k}")
        if batch * k > self.max_results:
            raise invalid(f"batch {batch} x k {k} exceeds max_results {self.max_results}")
        return k

    def _related(self, v: LoadedVersion, ids: np.ndarray, k: int):
        rows = v.rows(ids, "related_items")
        idx, scores = v.search(v.queries[rows], k + 1)
        if len(rows) == 1:  # the common case, without numpy's per-call overhead
            keep = [j for j, r in enumerate(idx[0]) if r != rows[0]][:k]
            return v.outputs(idx[:, keep], scores[:, keep])
        # drop the query item itself (stable sort moves it last); without it in the list, drop the (k+1)-th
        keep = np.argsort(idx == rows[:, None], axis=1, kind="stable")[:, :k].reshape(len(rows), k)
        return v.outputs(np.take_along_axis(idx, keep, 1), np.take_along_axis(scores, keep, 1))

    def _embed(self, v: LoadedVersion, inputs, k: int):
        feats = {n: tf.constant(a) for n, a in inputs.items() if n not in NEIGHBOR_INPUTS}
        try:
            emb = v.saved_model.embed_new(
                feats, tf.constant(inputs["neighbor_ids"]), tf.constant(inputs["neighbor_weights"])
            ).numpy()
        except tf.errors.InvalidArgumentError as e:
            raise invalid(tf_error_message(e)) from None
        query = v.saved_model.query_new(tf.constant(emb)).numpy() if hasattr(v.saved_model, "query_new") else emb
        idx, scores = v.search(query, k)
        return dict(v.outputs(idx, scores), embedding=emb)

    def _run_signature(self, v: LoadedVersion, name: str, inputs):
        try:
            out = v.saved_model.signatures[name](**{n: tf.constant(a) for n, a in inputs.items()})
        except tf.errors.InvalidArgumentError as e:
            raise invalid(tf_error_message(e)) from None
        return {n: t.numpy() for n, t in out.items()}

    # -- metadata and status
    def _metadata(self, request):
        v = self.resolve(request.model_spec)
        if list(request.metadata_field) != ["signature_def"]:
            raise invalid(f"metadata_field must be ['signature_def'], got {list(request.metadata_field)}")
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        resp.model_spec.name = self.model_name
        resp.model_spec.version.value = v.version
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for k, s in v.signature_defs.items():
            sig_map.signature_def[k].CopyFrom(s)
        resp.metadata["signature_def"].Pack(sig_map)
        return resp

    def _status(self, request):
        spec = request.model_spec
        if spec.name != self.model_name:
            raise not_found(f"model '{spec.name}' not found (this server serves '{self.model_name}')")
        v = self.current
        if v is None:
            raise not_found(f"no version of '{self.model_name}' loaded yet")
        if spec.WhichOneof("version_choice") == "version" and spec.version.value != v.version:
            raise not_found(f"version {spec.version.value} of '{self.model_name}' is not loaded")
        resp = get_model_status_pb2.GetModelStatusResponse()
        st = resp.model_version_status.add()
        st.version = v.version
        st.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return resp

    @staticmethod
    def status_of(e: Exception):
        """(gRPC status code, message) for an exception raised while answering: every failure becomes a status
        code on that call only, and the server keeps serving."""
        if isinstance(e, ServingError):
            return e.code, str(e)
        if isinstance(e, tf.errors.InvalidArgumentError):
            return grpc.StatusCode.INVALID_ARGUMENT, tf_error_message(e)
        log.error("internal error", exc_info=e)  # a bug, not the caller's fault: say so, keep going
        return grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"

    def predict_fast(self, request):
        """The one-item related_items answer when the request is one (see _related_one), else None: cheap enough
        to run on the event loop itself; everything else goes to the worker threads."""
        v = self.current
        if (
            v is None
            or request.output_filter
            or request.model_spec.name != self.model_name
            or request.model_spec.WhichOneof("version_choice") is not None
        ):
            return None
        name = request.model_spec.signature_name or "serving_default"
        if name not in v.one_item_signatures:
            return None
        return self._related_one(v, request.inputs, name)

    # -- lifecycle
    def start(
        self,
        port: int,
        host: str = "[::]",
        max_workers: int = DEFAULTS.max_workers,
        max_message_bytes: int = DEFAULTS.max_message_bytes,
        reuse_port: bool = False,
    ) -> int:
        """Loads the newest version (if any), starts gRPC and the poller; returns the bound port (0 = any free).

        gRPC runs on grpc.aio (an asyncio event loop in its own thread): one-item related_items requests, the bulk
        of the traffic, are answered on the loop itself; anything heavier (batches, embed_item, other signatures,
        metadata) goes to a pool of `max_workers` threads so it cannot stall the loop. Against grpc's thread-pool
        server this saves a thread hand-off per request (bench/serving.py). reuse_port lets several server
        processes share one port (SO_REUSEPORT; see serve(processes=N))."""
        self.refresh()
        opts = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.so_reuseport", int(reuse_port)),
        ]
        self._pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="predict")
        ready, failure = threading.Event(), []

        async def run():
            server = grpc.aio.server(options=opts, maximum_concurrent_rpcs=max_workers * 16)
            servicer = _AioServicer(self, self._pool)
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
            model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
            try:
                bound = server.add_insecure_port(f"{host}:{port}")
            except RuntimeError:
                bound = 0
            if bound == 0:
                failure.append(OSError(f"cannot bind {host}:{port}"))
                ready.set()
                return
            await server.start()
            self._grpc, self.port = server, bound
            ready.set()
            await server.wait_for_termination()

        self._done = asyncio.run_coroutine_threadsafe(run(), _event_loop())
        ready.wait()
        if failure:
            self._pool.shutdown()
            raise failure[0]
        self._poller = threading.Thread(target=self._poll, name="version-poller", daemon=True)
        self._poller.start()
        return self.port

    def stop(self, grace: float = 1.0):
        self._stop.set()
        if self.rest is not None:
            self.rest.stop()
            self.rest = None
        if self._grpc:
            asyncio.run_coroutine_threadsafe(self._grpc.stop(grace), _event_loop()).result()
            self._done.result()
            self._pool.shutdown()
            self._grpc = None

    def wait(self):
        self._done.result()


_LOOP: Optional[asyncio.AbstractEventLoop] = None
_LOOP_LOCK = threading.Lock()


def _event_loop() -> asyncio.AbstractEventLoop:
    """The one asyncio loop (in a daemon thread) that every grpc.aio server of this process runs on: grpc.aio
    binds its completion queue to a single event loop per process, so a second server on a second loop hangs."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = asyncio.new_event_loop()
            threading.Thread(target=_LOOP.run_forever, name="grpc-aio", daemon=True).start()
        return _LOOP


class _AioServicer(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    """The grpc.aio face of a ModelServer: the fast path inline, the rest on the worker threads."""

    def __init__(self, server: ModelServer, pool: futures.ThreadPoolExecutor):
        self.server, self.pool = server, pool

    async def _answer(self, fn, request, context):
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, request)
        except Exception as e:
            await context.abort(*self.server.status_of(e))

    async def Predict(self, request, context):
        try:
            resp = self.server.predict_fast(request)
        except Exception as e:
            await context.abort(*self.server.status_of(e))
        if resp is not None:
            return resp
        return await self._answer(self.server._predict, request, context)

    async def GetModelMetadata(self, request, context):
        return await self._answer(self.server._metadata, request, context)

    async def GetModelStatus(self, request, context):
        return await self._answer(self.server._status, request, context)


def resolve_model_dir(model_base_path: str, model_name: Optional[str] = None):
    """(directory holding the version dirs, model name). Like TF Serving, `model_base_path` is that directory
    (serving_model/pinsage); the parent (serving_model/) is accepted too when it holds one model (or `model_name`)."""
    base = os.path.abspath(model_base_path)
    if model_name and os.path.isdir(os.path.join(base, model_name)) and not versions.list_versions(base):
        return os.path.join(base, model_name), model_name
    subdirs = (
        [d for d in os.listdir(base) if not d.startswith(".") and os.path.isdir(os.path.join(base, d))]
        if os.path.isdir(base)
        else []
    )
    if not model_name and not versions.list_versions(base) and len(subdirs) == 1 and not subdirs[0].isdigit():
        return os.path.join(base, subdirs[0]), subdirs[0]
    return base, model_name or os.path.basename(base)


def serve(
    model_base_path: str,
    port: int,
    model_name: Optional[str] = None,
    poll_seconds: float = DEFAULTS.poll_seconds,
    max_workers: int = DEFAULTS.max_workers,
    max_batch: int = DEFAULTS.max_batch,
    max_message_bytes: int = DEFAULTS.max_message_bytes,
    block: bool = True,
    processes: int = DEFAULTS.processes,
    reuse_port: bool = False,
    rest_api_port: Optional[int] = None,
    monitoring_path: Optional[str] = DEFAULTS.monitoring_path,
) -> Optional[ModelServer]:
    """Starts the server (what `pinsage serve` calls). block=False returns the running ModelServer.

    processes > 1 starts that many server processes on the same port (SO_REUSEPORT: the kernel spreads the
    clients' connections over them). Python answers a request under one GIL per process, so on a box with
    several cores this is how one machine's throughput scales (the same reason TF Serving runs one process with
    C++ threads). Each process loads and hot-swaps versions on its own, so for up to `poll_seconds` after a push
    two connections may be served by different versions. It needs a fixed port and blocks until stopped.

    rest_api_port: TF Serving's REST API (serving/rest.py) on that port as well (0 = any free port, None = none;
    the command line's --rest_api_port 0 means none, as TF Serving's), on the same event loop as gRPC, with
    Prometheus text at `monitoring_path` (None = not served)."""
    if processes > 1:
        if not block or port == 0:
            raise ValueError("processes > 1 needs a fixed port and block=True")
        return _serve_processes(
            processes,
            model_base_path,
            port,
            dict(
                model_name=model_name,
                poll_seconds=poll_seconds,
                max_workers=max_workers,
                max_batch=max_batch,
                max_message_bytes=max_message_bytes,
                rest_api_port=rest_api_port,
                monitoring_path=monitoring_path,
            ),
        )
    model_dir, name = resolve_model_dir(model_base_path, model_name)
    server = ModelServer(model_dir, name, poll_seconds=poll_seconds, max_batch=max_batch)
    if rest_api_port is not None:  # imported before gRPC starts: aiohttp's import would widen the gap between them
        from serving import rest
    bound = server.start(port, max_workers=max_workers, max_message_bytes=max_message_bytes, reuse_port=reuse_port)
    if rest_api_port is not None:  # REST on the grpc.aio server's event loop: one loop answers both APIs
        api = rest.RestApi(server, max_workers=max_workers, monitoring_path=monitoring_path)
        try:
            server.rest = rest.RestServer(api, _event_loop(), rest_api_port, reuse_port=reuse_port)
        except (OSError, ValueError):  # the port is taken or out of range: nothing of this server keeps running
            api.pool.shutdown()
            server.stop()
            raise
    log.info(
        "model '%s' from %s on port %d (version %s, pid %d)",
        name,
        model_dir,
        bound,
        server.current.version if server.current else "none yet",
        os.getpid(),
    )
    if block:
        try:
            server.wait()
        except KeyboardInterrupt:
            server.stop()
    return server


def _serve_child(model_base_path: str, port: int, kwargs: dict) -> None:

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = serve(model_base_path, port, block=False, reuse_port=True, **kwargs)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    server.stop()


def _serve_processes(n: int, model_base_path: str, port: int, kwargs: dict) -> None:
    """n children serving on one port; a child that dies takes the others down with it (a supervisor such as
    Kubernetes then restarts the whole server, instead of it running on silently at reduced capacity)."""

    # a port someone else holds must be an error, not a silent share: probe it without SO_REUSEPORT first
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as probe:
        try:
            probe.bind(("::" if socket.has_ipv6 else "0.0.0.0", port))
        except OSError as e:
            raise OSError(f"cannot bind port {port}: {e}") from None
    ctx = mp.get_context("spawn")
    children = [
        ctx.Process(target=_serve_child, args=(model_base_path, port, kwargs), name=f"serving-{i}") for i in range(n)
    ]
    for c in children:
        c.start()
    log.info("%d server processes on port %d: %s", n, port, [c.pid for c in children])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set() and all(c.is_alive() for c in children):
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for c in children:
            if c.is_alive():
                c.terminate()
        for c in children:
            c.join(timeout=30)
    dead = [c.exitcode for c in children if c.exitcode not in (0, -signal.SIGTERM)]
    if dead and not stop.is_set():
        raise RuntimeError(f"a server process exited with {dead}")
