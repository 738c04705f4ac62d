"""A gRPC server speaking TF Serving's PredictionService / ModelService API over the Pusher's layout, answering
retrieval from the ScaNN index in each version's assets/.

Why our own server: stock TF Serving can serve the pushed SavedModel (exact top-k over the whole catalogue per
request), but approximate search needs ScaNN, which TF Serving does not link. Speaking the same protos means any
TF Serving client (PredictionServiceStub + tf.make_tensor_proto) works against either. To use the real
container on the same directory instead:
    docker run -p 8500:8500 -v $PWD/serving_model/pinsage:/models/pinsage -e MODEL_NAME=pinsage tensorflow/serving

Behaviour:
- Models: one (`--model_base_path`, `--model_name`) or several (`--model_config_file`, TF Serving's
  ModelServerConfig text format; serving/model_config.py), re-read every `--model_config_file_poll_wait_seconds`
  so models come and go without a restart. Requests are routed by `model_spec.name`.
- Versions (serving/loader.py): a background thread polls every `poll_seconds` and applies each model's version
  policy (latest N loadable / all / specific), loading and warming up (assets.extra/tf_serving_warmup_requests)
  a version before it is AVAILABLE and before the one it replaces is unloaded; requests already running keep the
  version object they started with, so a swap fails none of them. Broken versions are retried with back-off.
- model_spec: `version` must be an available one; `version_label` names a version through the config's
  version_labels ("latest" / "stable" name the newest available one unless the config defines them); neither:
  the newest available version.
- related_items: rows from the id map -> stored query vectors (the embeddings, or a query-head model's
  query_embeddings) -> ScaNN top-(k+1) -> the query item dropped; with `--enable_batching` concurrent requests
  share one batched ScaNN search (serving/batching.py). similar_items: the same with the item's own embedding
  as the query (z_q . z_i), on the same index.
  embed_item: the inputs are checked (finite, weights >= 0, one batch size), then the SavedModel's `embed_new`
  function (the trained cold-start embedder) -> ScaNN top-k. Any other signature is run by the SavedModel.
- Errors are gRPC status codes and the server stays up: NOT_FOUND for an unknown model / version / label /
  signature, INVALID_ARGUMENT for unknown ids, wrong input names / dtypes / shapes / values, k outside
  [1, catalogue], batches over `max_batch`; UNAVAILABLE before a model's first version loads; messages over
  `max_message_bytes` are refused by gRPC itself (RESOURCE_EXHAUSTED).
- Every gRPC request is counted in serving/metrics.py (by model, signature, status code; latency histogram).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from concurrent import futures
from typing import Dict, List, Optional, Sequence, Union

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from modules.index import exact_top_k, load_index
from schema import versions
from schema.embeddings import IDS_FILE
from serving import metrics
from serving.batching import Batcher
from serving.errors import ServingError, invalid, not_found
from serving.flags import DEFAULTS
from serving.items import ItemTable
from serving.loader import ModelVersions
from serving.model_config import BatchingOptions, ConfigError, ModelSpec, load_model_config

__all__ = ["ModelServer", "ServingError", "serve"]
log = logging.getLogger("pinsage.serving")
NEIGHBOR_INPUTS = ("neighbor_ids", "neighbor_weights", "k")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")  # TF Serving's warmup location
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit too
ID_CHECK = 1000  # leading ids compared between a version's SavedModel and its index


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
        stages("arrays")
        self.kind = {
            k: "related"
            if set(ins) == {"item_id", "k"}
            else "embed"
            if set(NEIGHBOR_INPUTS) <= set(ins) and hasattr(self.saved_model, "embed_new")
            else "generic"
            for k, ins in self.inputs.items()
        }
        # what each item-to-item signature searches with: similar_items the indexed z, any other (related_items,
        # serving_default) the stored query vectors
        self.query_vectors = {
            k: self.embeddings if k == versions.SIMILAR_ITEMS else self.queries
            for k, kind in self.kind.items()
            if kind == "related"
        }
        # the hot path (one item id, top-k; see ModelServer._related_one)
        self.one_item_signatures = {
            k
            for k, ins in self.inputs.items()
            if self.kind[k] == "related"
            and (ins["item_id"].dtype, _shape(ins["item_id"]), ins["k"].dtype, _shape(ins["k"]))
            == (types_pb2.DT_STRING, [-1], types_pb2.DT_INT32, [])
        }
        self.max_exact_k = int(self.index.stats.get("reorder", self.num_items))
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


# ------------------------------------------------------------------------------------------------ service
class ModelServer:
    """The models of one server, each with its loaded versions (serving/loader.py), routed by model_spec.name;
    _AioServicer puts it on gRPC, serving/rest.py on HTTP. Both call only _predict / _metadata / _status /
    status_of."""

    def __init__(
        self,
        models: Union[Sequence[ModelSpec], str],
        model_name: Optional[str] = None,
        poll_seconds: float = DEFAULTS.poll_seconds,
        max_batch: int = DEFAULTS.max_batch,
        max_results: int = 1_000_000,
        retry_max_seconds: float = DEFAULTS.retry_max_seconds,
        batching: Optional[BatchingOptions] = None,
        model_config_file: Optional[str] = None,
        config_poll_seconds: float = DEFAULTS.model_config_file_poll_wait_seconds,
        monitoring_path: Optional[str] = None,
    ):
        self.poll_seconds, self.max_batch, self.max_results = poll_seconds, max_batch, max_results
        self.retry_max_seconds = retry_max_seconds
        self.model_config_file, self.config_poll_seconds = model_config_file, config_poll_seconds
        self.monitoring_path = monitoring_path  # where the REST port exposes prometheus_text(); None: off
        self.batching = batching
        self.batcher: Optional[Batcher] = None
        self.models: Dict[str, ModelVersions] = {}
        if isinstance(models, str):  # the one-model form ModelServer(model_dir, model_name) of before
            models = [ModelSpec(model_name or os.path.basename(os.path.abspath(models)), os.path.abspath(models))]
        self._apply_config(list(models))
        self._stop = threading.Event()
        self._poller: Optional[threading.Thread] = None
        self._grpc: Optional[grpc.aio.Server] = None
        self.port: Optional[int] = None
        self.rest = None  # the serving/rest.py RestServer when serve() starts one; stop() stops it

    # -- models and versions
    def _apply_config(self, specs: List[ModelSpec]) -> None:
        """Adds, updates and removes models to match `specs` (models are replaced, never mutated in place)."""
        models = dict(self.models)
        for spec in specs:
            if spec.name in models:
                models[spec.name].update(spec)
            else:
                models[spec.name] = ModelVersions(
                    spec,
                    lambda name, path, version: LoadedVersion(name, path, version),
                    self.warmup,
                    self.poll_seconds,
                    self.retry_max_seconds,
                )
        gone = [models.pop(n) for n in list(models) if n not in {s.name for s in specs}]
        self.models = models
        for m in gone:
            log.info("model '%s' removed from the config: unloading it", m.name)
            m.unload_all()

    def refresh(self) -> Optional[int]:
        """One poll of every model; returns the newest available version of the first model (one-model use)."""
        for m in list(self.models.values()):
            m.poll()
        cur = self.current
        return cur.version if cur else None

    def _reload_config(self, last_text: Optional[str]) -> Optional[str]:
        """Re-reads --model_config_file; a file that does not parse keeps the running config (logged)."""
        try:
            with open(self.model_config_file) as f:
                text = f.read()
            if text == last_text:
                return last_text
            specs = load_model_config(self.model_config_file)
        except (OSError, ConfigError) as e:
            log.error("keeping the running model config: %s", e)
            return last_text
        log.info("model config %s changed: models %s", self.model_config_file, [s.name for s in specs])
        self._apply_config(specs)
        return text

    def _poll(self):
        config_text, next_config = None, time.time() + (self.config_poll_seconds or float("inf"))
        if self.model_config_file:
            try:
                with open(self.model_config_file) as f:
                    config_text = f.read()  # what start-up applied
            except OSError:
                pass  # re-read (and reported) at the next config poll
        while not self._stop.wait(self.poll_seconds):
            if self.model_config_file and self.config_poll_seconds > 0 and time.time() >= next_config:
                config_text, next_config = self._reload_config(config_text), time.time() + self.config_poll_seconds
            try:
                self.refresh()
            except Exception:  # e.g. the model directory vanished for a moment
                log.exception("poll failed")

    # one-model conveniences (the first model of the config): tests, `pinsage run --serve-and-query`
    @property
    def _first(self) -> ModelVersions:
        return next(iter(self.models.values()))

    @property
    def model_name(self) -> str:
        return self._first.name

    @property
    def model_dir(self) -> str:
        return self._first.spec.base_path

    @property
    def current(self) -> Optional["LoadedVersion"]:
        return self._first.newest

    @property
    def failed(self) -> Dict[int, str]:
        return {v: err for v, _, err in self._first.statuses() if err}

    def ready(self) -> bool:
        """Readiness (not liveness): every configured model has an AVAILABLE version."""
        return bool(self.models) and all(m.newest is not None for m in self.models.values())

    def _model(self, name: str) -> ModelVersions:
        m = self.models.get(name)
        if m is None:
            raise not_found(f"model '{name}' not found (this server serves {sorted(self.models)})")
        return m

    def resolve(self, spec) -> "LoadedVersion":
        return self._model(spec.name).resolve(spec)

    # -- warmup
    def warmup(self, v: "LoadedVersion") -> int:
        """Replays the version's assets.extra/tf_serving_warmup_requests (a TFRecord of PredictionLog, as TF
        Serving reads it) before the version is AVAILABLE; a record that fails fails the load. Returns the count."""
        path = os.path.join(v.path, WARMUP_FILE)
        if not os.path.exists(path):
            return 0
        n = 0
        for n, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator(), 1):
            if n > MAX_WARMUP_RECORDS:
                raise ValueError(f"{path}: more than {MAX_WARMUP_RECORDS} warmup records")
            entry = prediction_log_pb2.PredictionLog.FromString(record)
            kind = entry.WhichOneof("log_type")
            if kind != "predict_log":
                raise ValueError(f"{path}: record {n}: {kind} warmup requests are not supported (predict_log only)")
            try:
                self._predict_version(v, entry.predict_log.request)
            except ServingError as e:
                raise ValueError(f"{path}: record {n}: {e.code.name}: {e}") from None
        return n

    # -- Predict
    def _predict(self, request):
        return self._predict_version(self.resolve(request.model_spec), request)

    def _predict_version(self, v: "LoadedVersion", request):
        name = request.model_spec.signature_name or "serving_default"
        if name in v.one_item_signatures and not request.output_filter:
            args = self._one_item_args(v, request.inputs)
            if args is not None:
                return self._respond_one(v, name, *self._search_one(v.query_vectors[name], v, *args))
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
            out = self._related(v, name, inputs["item_id"], self._k(inputs, v.num_items - 1, batch))
        elif kind == "embed":
            out = self._embed(v, inputs, self._k(inputs, v.num_items, batch))
        else:
            out = self._run_signature(v, name, inputs)
        unknown = sorted(set(request.output_filter) - set(out))
        if unknown:
            raise invalid(f"output_filter names unknown outputs {unknown} (available: {sorted(out)})")
        resp = predict_pb2.PredictResponse()
        resp.model_spec.name, resp.model_spec.signature_name = v.model_name, name
        resp.model_spec.version.value = v.version
        for k, a in out.items():
            if not request.output_filter or k in request.output_filter:
                fill_proto(resp.outputs[k], a)
        return resp

    @staticmethod
    def _one_item_args(v: "LoadedVersion", given):
        """(row, k) when a request is related_items for one known id and a valid k (the bulk of the traffic,
        answered proto to proto at a third of the general path's CPU), else None: the general path then answers
        or rejects it."""
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
        row, k = v.items.row(ids.string_val[0]), kp.int_val[0]
        if row is None or not 1 <= k < v.num_items or k + 1 > v.max_exact_k:
            return None
        return row, k

    @staticmethod
    def _search_one(vectors: np.ndarray, v: "LoadedVersion", row: int, k: int):
        """One ScaNN call for top-(k+1) of vectors[row] (the signature's query vectors); the query item dropped,
        else the (k+1)-th."""
        idx, scores = v.index.searcher.searcher.search(vectors[row], k + 1, -1, -1)
        idx = idx.tolist()
        if row in idx:
            j = idx.index(row)
            del idx[j]
            scores = np.delete(scores, j)
        else:
            idx, scores = idx[:k], scores[:k]
        return idx, scores

    @staticmethod
    def _respond_one(v: "LoadedVersion", name: str, idx: list, scores: np.ndarray):
        resp = predict_pb2.PredictResponse()
        resp.model_spec.name, resp.model_spec.signature_name = v.model_name, name
        resp.model_spec.version.value = v.version
        out = resp.outputs
        for key, values in (("item_ids", v.items.ids_of(idx)), ("titles", v.items.titles_of(idx))):
            t = out[key]
            t.dtype = types_pb2.DT_STRING
            t.tensor_shape.dim.add().size = 1
            t.tensor_shape.dim.add().size = len(idx)
            t.string_val.extend(values)
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

    def _related(self, v: "LoadedVersion", name: str, ids: np.ndarray, k: int):
        rows = v.rows(ids, name)
        idx, scores = v.search(v.query_vectors[name][rows], k + 1)
        if len(rows) == 1:  # the common case, without numpy's per-call overhead
            keep = [j for j, r in enumerate(idx[0]) if r != rows[0]][:k]
            return v.outputs(idx[:, keep], scores[:, keep])
        # drop the query item itself (stable sort moves it last); without it in the list, drop the (k+1)-th
        keep = np.argsort(idx == rows[:, None], axis=1, kind="stable")[:, :k].reshape(len(rows), k)
        return v.outputs(np.take_along_axis(idx, keep, 1), np.take_along_axis(scores, keep, 1))

    def _embed(self, v: "LoadedVersion", inputs, k: int):
        check_embed_inputs(inputs)
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

    def _run_signature(self, v: "LoadedVersion", name: str, inputs):
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
        resp.model_spec.name = v.model_name
        resp.model_spec.version.value = v.version
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for k, s in v.signature_defs.items():
            sig_map.signature_def[k].CopyFrom(s)
        resp.metadata["signature_def"].Pack(sig_map)
        return resp

    def _status(self, request):
        """Every known version's state (START / LOADING / AVAILABLE / UNLOADING / END), a failed load as END
        with its error; one version for a version number or label."""
        spec = request.model_spec
        m = self._model(spec.name)
        choice = spec.WhichOneof("version_choice")
        version = None
        if choice == "version":
            version = spec.version.value
        elif choice == "version_label":
            version = m.resolve(spec).version
        records = m.statuses(version)
        if not records:
            raise not_found(f"no version of '{spec.name}' loaded yet")
        resp = get_model_status_pb2.GetModelStatusResponse()
        for number, state, error in records:
            st = resp.model_version_status.add()
            st.version, st.state = number, state
            # set for every version, as TF Serving's GetModelStatusImpl does (ToStatusProto of the version's
            # health): its REST JSON prints {"error_code": "OK", "error_message": ""} for a healthy one
            st.status.SetInParent()
            if error:
                st.status.error_code, st.status.error_message = error_codes_pb2.UNKNOWN, error
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
        """For a one-item related_items request on the newest version (see _one_item_args): its response, or
        with batching a (version, signature, asyncio future of (ids, scores)) to finish with _respond_one; else None. Cheap enough to run
        on the event loop itself; everything else goes to the worker threads."""
        m = self.models.get(request.model_spec.name)
        v = m.newest if m is not None else None
        if v is None or request.output_filter or request.model_spec.WhichOneof("version_choice") is not None:
            return None
        name = request.model_spec.signature_name or "serving_default"
        if name not in v.one_item_signatures:
            return None
        args = self._one_item_args(v, request.inputs)
        if args is None:
            return None
        vectors = v.query_vectors[name]
        if self.batcher is not None:
            return v, name, self.batcher.submit(v, *args, vectors=vectors)
        return self._respond_one(v, name, *self._search_one(vectors, v, *args))

    # -- lifecycle
    def start(
        self,
        port: int,
        host: str = "[::]",
        max_workers: int = DEFAULTS.max_workers,
        max_message_bytes: int = DEFAULTS.max_message_bytes,
        reuse_port: bool = False,
    ) -> int:
        """Loads every model's versions, starts gRPC and the poller; returns the bound port (0 = any free).

        gRPC runs on grpc.aio (an asyncio event loop in its own thread): one-item related_items requests, the bulk
        of the traffic, are answered on the loop itself (or, batched, handed to the batch threads); anything
        heavier (batches, embed_item, other signatures, metadata) goes to a pool of `max_workers` threads so it
        cannot stall the loop. Against grpc's thread-pool server this saves a thread hand-off per request
        (bench/serving.py). reuse_port lets several server processes share one port (see serve(processes=N))."""
        self.refresh()
        if self.batching is not None:
            self.batcher = Batcher(self.batching, _event_loop())
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
        self.batcher = None
        if self._poller is not None:
            self._poller.join(timeout=30)

    def wait(self):
        self._done.result()


def check_embed_inputs(inputs: Dict[str, np.ndarray]) -> None:
    """embed_item's values, before the model sees them: finite floats, weights >= 0, one batch size over every
    batched input (the SavedModel's own failure for a mismatch is a bare "Graph execution error")."""
    for name, a in sorted(inputs.items()):
        if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0].tolist()
            raise invalid(f"input '{name}' has a non-finite value ({a[tuple(bad)]}) at index {bad}")
    w = inputs["neighbor_weights"]
    if w.size and (w < 0).any():
        bad = np.argwhere(w < 0)[0].tolist()
        raise invalid(f"input 'neighbor_weights' must be >= 0, got {w[tuple(bad)]} at index {bad}")
    sizes = {n: a.shape[0] for n, a in inputs.items() if a.ndim and n != "k"}
    if len(set(sizes.values())) > 1:
        want = sizes["neighbor_ids"]
        other = sorted(n for n, s in sizes.items() if s != want)
        raise invalid(
            f"inputs must share one batch size: 'neighbor_ids' has {want} rows, "
            + ", ".join(f"'{n}' has {sizes[n]}" for n in other)
        )


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
    """The grpc.aio face of a ModelServer: the fast path inline (or batched), the rest on the worker threads;
    every Predict counted in serving/metrics.py."""

    def __init__(self, server: ModelServer, pool: futures.ThreadPoolExecutor):
        self.server, self.pool = server, pool

    async def _answer(self, fn, request, context):
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, request)
        except Exception as e:
            await context.abort(*self.server.status_of(e))

    async def _predict(self, request):
        resp = self.server.predict_fast(request)
        if isinstance(resp, tuple):  # batched: (version, signature, future of (ids, scores))
            v, name, fut = resp
            return self.server._respond_one(v, name, *await fut)
        if resp is not None:
            return resp
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.server._predict, request)

    async def Predict(self, request, context):
        start = time.perf_counter()
        try:
            resp = await self._predict(request)
        except Exception as e:
            code, message = self.server.status_of(e)
            self._record(request, code, start)
            await context.abort(code, message)
        self._record(request, grpc.StatusCode.OK, start)
        return resp

    def _record(self, request, code: grpc.StatusCode, start: float) -> None:
        """Labels only from what the server knows (a served model, a signature of it), so clients sending
        made-up names cannot grow the metrics without bound."""
        spec = request.model_spec
        m = self.server.models.get(spec.name)
        v = m.newest if m is not None else None
        signature = spec.signature_name or "serving_default"
        if code != grpc.StatusCode.OK and (v is None or signature not in v.signature_defs):
            signature = "_unknown"
        metrics.record("grpc", spec.name if m is not None else "_unknown", signature, code.name, start)

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
    if (
        not model_name
        and not versions.list_versions(base)
        and len(subdirs) == 1
        and not versions.is_version_name(subdirs[0])
    ):
        return os.path.join(base, subdirs[0]), subdirs[0]
    return base, model_name or os.path.basename(base)


def model_specs_from(
    model_base_path: Optional[str], model_name: Optional[str], model_config_file: Optional[str]
) -> List[ModelSpec]:
    """The models to serve: --model_config_file, or the one-model shortcut --model_base_path [--model_name]
    (latest policy, one version). Exactly one of the two; ConfigError (a ValueError) otherwise."""
    if bool(model_base_path) == bool(model_config_file):
        raise ConfigError("give either --model_base_path (one model) or --model_config_file (several), not both")
    if model_config_file:
        return load_model_config(model_config_file)
    model_dir, name = resolve_model_dir(model_base_path, model_name)
    return [ModelSpec(name, model_dir)]


def serve(
    model_base_path: Optional[str],
    port: int,
    model_name: Optional[str] = None,
    poll_seconds: float = DEFAULTS.poll_seconds,
    max_workers: int = DEFAULTS.max_workers,
    max_batch: int = DEFAULTS.max_batch,
    max_message_bytes: int = DEFAULTS.max_message_bytes,
    block: bool = True,
    processes: int = DEFAULTS.processes,
    reuse_port: bool = False,
    model_config_file: Optional[str] = None,
    model_config_file_poll_wait_seconds: float = DEFAULTS.model_config_file_poll_wait_seconds,
    retry_max_seconds: float = DEFAULTS.retry_max_seconds,
    batching: Optional[BatchingOptions] = None,
    monitoring_path: Optional[str] = None,
    rest_api_port: Optional[int] = None,
) -> Optional[ModelServer]:
    """Starts the server (what `pinsage serve` calls). block=False returns the running ModelServer.

    processes > 1 starts that many server processes on the same port (SO_REUSEPORT: the kernel spreads the
    clients' connections over them). Python answers a request under one GIL per process, so on a box with
    several cores this is how one machine's throughput scales (the same reason TF Serving runs one process with
    C++ threads). Each process loads and hot-swaps versions on its own, so for up to `poll_seconds` after a push
    two connections may be served by different versions. It needs a fixed port and blocks until stopped.

    rest_api_port: TF Serving's REST API (serving/rest.py) on that port as well (0 = any free port, None = none;
    the command line's --rest_api_port 0 means none, as TF Serving's), on the same event loop as gRPC, with
    Prometheus text at `monitoring_path` (None = not served: `--monitoring_config_file` enables it)."""
    kwargs = dict(
        model_name=model_name,
        poll_seconds=poll_seconds,
        max_workers=max_workers,
        max_batch=max_batch,
        max_message_bytes=max_message_bytes,
        model_config_file=model_config_file,
        model_config_file_poll_wait_seconds=model_config_file_poll_wait_seconds,
        retry_max_seconds=retry_max_seconds,
        batching=batching,
        monitoring_path=monitoring_path,
        rest_api_port=rest_api_port,
    )
    specs = model_specs_from(model_base_path, model_name, model_config_file)  # errors before any child starts
    if processes > 1:
        if not block or port == 0:
            raise ValueError("processes > 1 needs a fixed port and block=True")
        return _serve_processes(processes, model_base_path, port, kwargs)
    server = ModelServer(
        specs,
        poll_seconds=poll_seconds,
        max_batch=max_batch,
        retry_max_seconds=retry_max_seconds,
        batching=batching,
        model_config_file=model_config_file,
        config_poll_seconds=model_config_file_poll_wait_seconds,
        monitoring_path=monitoring_path,
    )
    if rest_api_port is not None:  # imported before gRPC starts: aiohttp's import would widen the gap between them
        from serving import rest
    bound = server.start(port, max_workers=max_workers, max_message_bytes=max_message_bytes, reuse_port=reuse_port)
    if rest_api_port is not None:
        _start_rest(rest, server, rest_api_port, max_workers, monitoring_path, reuse_port)
    for m in server.models.values():
        log.info(
            "model '%s' from %s on port %d (versions %s, pid %d)",
            m.name,
            m.spec.base_path,
            bound,
            sorted(m.available) or "none yet",
            os.getpid(),
        )
    if block:
        try:
            server.wait()
        except KeyboardInterrupt:
            server.stop()
    return server


def _start_rest(rest, server, port: int, max_workers: int, monitoring_path, reuse_port: bool) -> None:
    """REST on the grpc.aio server's event loop: one loop answers both APIs."""
    api = rest.RestApi(server, max_workers=max_workers, monitoring_path=monitoring_path)
    try:
        server.rest = rest.RestServer(api, _event_loop(), port, reuse_port=reuse_port)
    except (OSError, ValueError):  # the port is taken or out of range: nothing of this server keeps running
        api.pool.shutdown()
        server.stop()
        raise


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
