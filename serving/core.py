"""The request core: the models of one server, each with its loaded versions, and the answers to TF Serving's
Predict / GetModelMetadata / GetModelStatus as protos. Both front ends (gRPC in serving/grpc_api.py, REST in
serving/rest.py) call only its public methods, so both APIs give the same answers by construction.

Behaviour:
- Models: one (`model_base_path`, `model_name`) or several (`model_config_file`, TF Serving's ModelServerConfig
  text format; serving/model_config.py), re-read every `model_config_file_poll_wait_seconds` so models come and
  go without a restart. Requests are routed by `model_spec.name`.
- Versions (serving/loader.py): a background thread polls every `poll_seconds` and applies each model's version
  policy (latest N loadable / all / specific), loading and warming up (assets.extra/tf_serving_warmup_requests)
  a version before it is AVAILABLE and before the one it replaces is unloaded; requests already running keep the
  version object they started with, so a swap fails none of them. Broken versions are retried with back-off.
- model_spec: `version` must be an available one; `version_label` names a version through the config's
  version_labels ("latest" / "stable" name the newest available one unless the config defines them); neither:
  the newest available version.
- related_items: rows from the id map -> stored query vectors (the embeddings, or a query-head model's
  query_embeddings) -> ScaNN top-(k+1) -> the query item dropped; with batching, concurrent one-item requests
  share one batched ScaNN search (serving/batching.py). similar_items: the same with the item's own embedding
  as the query (z_q . z_i), on the same index.
  embed_item: the inputs are checked (finite, weights >= 0, one batch size), then the SavedModel's `embed_new`
  function (the trained cold-start embedder) -> ScaNN top-k. recommend / recommend_weighted: the inputs are
  checked, the SavedModel's `recommend_query` (the context tower) gives u_c and each history's rows -> ScaNN
  top-(k + history) -> the history dropped (exact search over the tower's own item vectors when it has an
  adapter); with batching, concurrent recommend requests share one tower call and one search. recommend_context:
  the context's stored u_c and whole history (the version's assets/contexts/, mapped; serving/contexts.py) -> the
  same search, no tower call. Any other signature is run by the SavedModel.
- Errors are ServingErrors with a gRPC status code (status_of turns any exception into one): NOT_FOUND for an
  unknown model / version / label / signature, INVALID_ARGUMENT for unknown ids, wrong input names / dtypes /
  shapes / values, k outside [1, catalogue], batches over `max_batch`; UNAVAILABLE before a model's first version
  loads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Awaitable, Dict, List, Optional, Sequence, Union

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2, prediction_log_pb2

from serving.batching import Batcher
from serving.config import DEFAULTS, ServingConfig
from serving.contexts import CONTEXT_INPUT
from serving.errors import ServingError, invalid, not_found
from serving.loader import ModelVersions
from serving.model_config import ConfigError, ModelSpec, load_model_config
from serving.tensors import check_input, fill_proto, tf_error_message
from serving.version import HISTORY_INPUT, HISTORY_WEIGHTS, NEIGHBOR_INPUTS, LoadedVersion

__all__ = ["ModelServer", "check_embed_inputs", "check_history_inputs"]
log = logging.getLogger("pinsage.serving")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")  # TF Serving's warmup location
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit too


class ModelServer:
    """The models of one server, each with its loaded versions (serving/loader.py), routed by model_spec.name.
    The front ends call predict / predict_fast / metadata / status and turn failures into their status with
    status_of; start / stop run the version poller."""

    def __init__(
        self,
        models: Union[Sequence[ModelSpec], str],
        model_name: Optional[str] = None,
        config: ServingConfig = DEFAULTS,
        max_results: int = 1_000_000,
    ):
        """`models`: the specs to serve, or one model's directory (named `model_name`, else after the directory).
        Of `config` the core uses the polling, retry, batch and batching settings."""
        self.poll_seconds, self.max_batch, self.max_results = config.poll_seconds, config.max_batch, max_results
        self.retry_max_seconds = config.retry_max_seconds
        self.model_config_file = config.model_config_file
        self.config_poll_seconds = config.model_config_file_poll_wait_seconds
        self.batching = config.batching
        self.batcher: Optional[Batcher] = None
        self.models: Dict[str, ModelVersions] = {}
        if isinstance(models, str):
            models = [ModelSpec(model_name or os.path.basename(os.path.abspath(models)), os.path.abspath(models))]
        self._apply_config(list(models))
        self._stop = threading.Event()
        self._poller: Optional[threading.Thread] = None

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
    def current(self) -> Optional[LoadedVersion]:
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

    def resolve(self, spec) -> LoadedVersion:
        return self._model(spec.name).resolve(spec)

    # -- warmup
    def warmup(self, v: LoadedVersion) -> int:
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
                self.predict_version(v, entry.predict_log.request)
            except ServingError as e:
                raise ValueError(f"{path}: record {n}: {e.code.name}: {e}") from None
        return n

    # -- Predict
    def predict(self, request) -> predict_pb2.PredictResponse:
        """Predict on the version request.model_spec names."""
        return self.predict_version(self.resolve(request.model_spec), request)

    def predict_version(self, v: LoadedVersion, request) -> predict_pb2.PredictResponse:
        """Predict on `v`, whatever version the request names (the warmup replays a version before it is served)."""
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
        elif kind == "recommend":
            out = self._recommend(v, inputs, self._k(inputs, v.num_items, batch))
        elif kind == "recommend_context":
            u, history, used = v.contexts.query(inputs[CONTEXT_INPUT])
            idx, scores = v.search_excluding(u, history, self._k(inputs, v.num_items, batch))
            out = dict(v.outputs(idx, scores), history_used=used)
        else:
            out = self._run_signature(v, name, inputs)
        unknown = sorted(set(request.output_filter) - set(out))
        if unknown:
            raise invalid(f"output_filter names unknown outputs {unknown} (available: {sorted(out)})")
        return self._respond(v, name, out, request.output_filter)

    @staticmethod
    def _respond(v: LoadedVersion, name: str, out: Dict[str, np.ndarray], output_filter=()):
        resp = predict_pb2.PredictResponse()
        resp.model_spec.name, resp.model_spec.signature_name = v.model_name, name
        resp.model_spec.version.value = v.version
        for k, a in out.items():
            if not output_filter or k in output_filter:
                fill_proto(resp.outputs[k], a)
        return resp

    @staticmethod
    def _one_item_args(v: LoadedVersion, given):
        """(row, k) when a request is related_items for one known id and a valid k (the bulk of the traffic,
        answered proto to proto, far cheaper than the general path), else None: the general path then answers
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
    def _search_one(vectors: np.ndarray, v: LoadedVersion, row: int, k: int):
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
    def _respond_one(v: LoadedVersion, name: str, idx: list, scores: np.ndarray):
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

    def _related(self, v: LoadedVersion, name: str, ids: np.ndarray, k: int):
        rows = v.rows(ids, name)
        idx, scores = v.search(v.query_vectors[name][rows], k + 1)
        if len(rows) == 1:  # the common case, without numpy's per-call overhead
            keep = [j for j, r in enumerate(idx[0]) if r != rows[0]][:k]
            return v.outputs(idx[:, keep], scores[:, keep])
        # drop the query item itself (stable sort moves it last); without it in the list, drop the (k+1)-th
        keep = np.argsort(idx == rows[:, None], axis=1, kind="stable")[:, :k].reshape(len(rows), k)
        return v.outputs(np.take_along_axis(idx, keep, 1), np.take_along_axis(scores, keep, 1))

    def _embed(self, v: LoadedVersion, inputs, k: int):
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

    def _recommend(self, v: LoadedVersion, inputs, k: int):
        """The SavedModel's recommend_query (the tower: u_c, each history's rows) -> the index, history excluded."""
        ids, w = inputs[HISTORY_INPUT], inputs.get(HISTORY_WEIGHTS)
        check_history_inputs(ids, w)
        w = np.ones(ids.shape, np.float32) if w is None else w
        try:
            u, rows, used = v.saved_model.recommend_query(tf.constant(ids), tf.constant(w))
        except tf.errors.InvalidArgumentError as e:
            raise invalid(tf_error_message(e)) from None
        idx, scores = v.search_excluding(u.numpy(), rows.numpy(), k)
        return dict(v.outputs(idx, scores), history_used=used.numpy())

    def _run_signature(self, v: LoadedVersion, name: str, inputs):
        try:
            out = v.saved_model.signatures[name](**{n: tf.constant(a) for n, a in inputs.items()})
        except tf.errors.InvalidArgumentError as e:
            raise invalid(tf_error_message(e)) from None
        return {n: t.numpy() for n, t in out.items()}

    # -- metadata and status
    def metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadata: the signature defs of the version request.model_spec names."""
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

    def status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
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
            # set for every version, as TF Serving does: its REST JSON shows error_code OK for a healthy one
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

    def predict_fast(self, request) -> Union[predict_pb2.PredictResponse, Awaitable[predict_pb2.PredictResponse], None]:
        """For a one-item related_items request on the newest version (see _one_item_args): its response, or with
        batching an awaitable of it (to await on the event loop the batcher runs on); else None, and the caller
        answers with predict. Cheap enough to run on the event loop itself."""
        m = self.models.get(request.model_spec.name)
        v = m.newest if m is not None else None
        if v is None or request.output_filter or request.model_spec.WhichOneof("version_choice") is not None:
            return None
        name = request.model_spec.signature_name or "serving_default"
        if self.batcher is not None and v.kind.get(name) == "recommend":
            args = self._history_args(v, name, request.inputs)
            return None if args is None else self._batched_out(v, name, self.batcher.submit_histories(v, *args))
        if name not in v.one_item_signatures:
            return None
        args = self._one_item_args(v, request.inputs)
        if args is None:
            return None
        vectors = v.query_vectors[name]
        if self.batcher is not None:
            return self._batched(v, name, self.batcher.submit(v, *args, vectors=vectors))
        return self._respond_one(v, name, *self._search_one(vectors, v, *args))

    def _history_args(self, v: LoadedVersion, name: str, given):
        """(ids, weights, k) of a recommend request the batcher can take as it is: every check of the general
        path passed and each history holds a known id (one bad row would fail its whole batch), else None: the
        general path then answers or rejects it."""
        specs = v.inputs[name]
        if len(given) != len(specs) or any(n not in given for n in specs):
            return None
        try:
            inputs = {n: check_input(n, given[n], spec) for n, spec in specs.items()}
            ids, w = inputs[HISTORY_INPUT], inputs.get(HISTORY_WEIGHTS)
            if ids.ndim != 2 or not 0 < len(ids) <= self.max_batch:
                return None
            k = self._k(inputs, v.num_items, len(ids))
            check_history_inputs(ids, w)
        except ServingError:
            return None
        if not (v.items.rows(ids.ravel().tolist()).reshape(ids.shape) >= 0).any(axis=1).all():
            return None
        return ids, np.ones(ids.shape, np.float32) if w is None else w, k

    async def _batched_out(self, v: LoadedVersion, name: str, fut: asyncio.Future) -> predict_pb2.PredictResponse:
        return self._respond(v, name, await fut)

    async def _batched(self, v: LoadedVersion, name: str, fut: asyncio.Future) -> predict_pb2.PredictResponse:
        return self._respond_one(v, name, *await fut)

    # -- lifecycle
    def start(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        """Loads every model's versions; with batching, the batcher runs on `loop` (the front ends' event loop).
        Versions are polled for once start_polling is called."""
        self.refresh()
        if self.batching is not None:
            self.batcher = Batcher(self.batching, loop)

    def start_polling(self) -> None:
        self._poller = threading.Thread(target=self._poll, name="version-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        """Stops batching and the poller (waiting for a load in progress to finish)."""
        self._stop.set()
        self.batcher = None
        if self._poller is not None:
            self._poller.join(timeout=30)
            self._poller = None


def check_history_inputs(ids: np.ndarray, weights: Optional[np.ndarray]) -> None:
    """recommend's inputs before the tower sees them: a non-empty history, weights of its shape, finite, >= 0."""
    if ids.ndim == 2 and ids.shape[0] and not ids.shape[1]:
        raise invalid(f"input '{HISTORY_INPUT}' has empty histories (shape {list(ids.shape)})")
    if weights is None:
        return
    if weights.shape != ids.shape:
        raise invalid(
            f"input '{HISTORY_WEIGHTS}' must have the shape of '{HISTORY_INPUT}' {list(ids.shape)}, "
            f"got {list(weights.shape)}"
        )
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        at = np.argwhere(bad)[0].tolist()
        raise invalid(f"input '{HISTORY_WEIGHTS}' must be finite and >= 0, got {weights[tuple(at)]} at index {at}")


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
