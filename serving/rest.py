"""TF Serving's REST API (tensorflow_serving/g3doc/api_rest.md) over a ModelServer, plus the related-items page.

REST is a JSON <-> proto adapter (serving/json_tensors.py) in front of the same request core the gRPC front end
calls (serving/core.py: ModelServer.predict / metadata / status), as TF Serving's own http_rest_api_handler.cc is
in front of its Predict / GetModelMetadata / GetModelStatus implementations: both APIs give the same answers by
construction.

Routes (TF Serving's, matched with its own regular expressions from http_rest_api_util.cc, case-insensitive):
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            GetModelStatusResponse as JSON
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   GetModelMetadataResponse as JSON
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict    {"signature_name", "instances" | "inputs"}
                                                              -> {"predictions"} | {"outputs"}
  `:classify` / `:regress` answer 501 (UNIMPLEMENTED), as this server's gRPC side does for Classify / Regress.
  Errors are {"error": message} with TF Serving's HTTP status for the gRPC code (HTTP_STATUS below).
This server's extensions (not in TF Serving; the page needs them):
    GET  /                                          the related-items page (serving/static/)
    GET  /models                                    {"models": [names]}: what the page can pick from
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/items?q=TEXT&limit=N
                                                    catalogue search: ids + titles + attributes whose id equals,
                                                    title starts with, or id/title contains TEXT (case-insensitive,
                                                    that order); attributes are {column: text | [text, ...]} of
                                                    the catalogue's numeric and categorical features, {} for a
                                                    version written without them
    GET  .../items?id=ID&id=ID...                   the same for the given ids, in their order (NOT_FOUND names an
                                                    unknown one)
    GET  {monitoring_path}                          Prometheus text (serving/metrics.py; None turns it off)
    POST ...:predict of recommend / recommend_weighted: ragged histories, padded with "" (weight 0) before the
                                                    core, in "instances" (each giving the same k) and in "inputs"

The JSON <-> tensor rules are TF Serving's (util/json_tensor.cc; serving/json_tensors.py).

Why aiohttp: the server is asyncio already (grpc.aio on one event loop, serving/grpc_api.py); aiohttp runs on that
same loop, parses HTTP in C (llhttp) and keeps connections alive, so the one-item related_items request, the
bulk of the traffic, is answered on the loop without a thread hand-off, as the gRPC side does. (tornado, also
in the lock, runs on asyncio too, but parses HTTP in Python.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
from concurrent import futures
from typing import Callable, Dict, List, Optional, Tuple

import grpc
import numpy as np
import prometheus_client
from aiohttp import web
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2, predict_pb2

from modules.index import IDS_FILE, TITLES_FILE
from schema import versions
from schema.embeddings import read_lines
from serving import metrics
from serving.config import DEFAULTS
from serving.core import ModelServer
from serving.errors import ServingError, invalid
from serving.items import ItemTable
from serving.json_tensors import (
    dumps,
    fill_predict_request,
    metadata_json,
    parse_json,
    predict_response_json,
    status_json,
)

__all__ = ["HTTP_STATUS", "MAX_BODY_BYTES", "Catalogue", "RestApi", "RestServer"]
log = logging.getLogger("pinsage.serving.rest")
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
C = grpc.StatusCode
# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc)
HTTP_STATUS = {
    C.OK: 200,
    C.CANCELLED: 499,
    C.UNKNOWN: 500,
    C.INVALID_ARGUMENT: 400,
    C.DEADLINE_EXCEEDED: 504,
    C.NOT_FOUND: 404,
    C.ALREADY_EXISTS: 409,
    C.PERMISSION_DENIED: 403,
    C.RESOURCE_EXHAUSTED: 429,
    C.FAILED_PRECONDITION: 400,
    C.ABORTED: 409,
    C.OUT_OF_RANGE: 400,
    C.UNIMPLEMENTED: 501,
    C.INTERNAL: 500,
    C.UNAVAILABLE: 503,
    C.DATA_LOSS: 500,
    C.UNAUTHENTICATED: 401,
}
_SPEC = r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
PREDICT_RE = re.compile(_SPEC + r":(classify|regress|predict)", re.I)
STATUS_RE = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I)
ITEMS_RE = re.compile(_SPEC + r"/items", re.I)
V1_RE = re.compile(r"/v1/", re.I)  # kHTTPRestApiHandlerPathRegex: what the REST handler answers at all
INLINE_BODY_BYTES = 16 * 1024  # bodies up to this are parsed on the event loop; larger ones on a worker thread
MAX_BODY_BYTES = 4 * DEFAULTS.max_message_bytes  # JSON is several times the protobuf of the same tensors: 413 beyond


# ------------------------------------------------------------------------------------------------ catalogue search
class Catalogue:
    """Ids and titles of one version, searchable by text for the page (this server's extension: the REST API
    has no such signature). One casefolded "\\nid\\ttitle" string, searched with str.find (C speed, no per-item
    Python objects beyond the ids and titles themselves); the version's ItemTable looks ids up and holds the
    attributes."""

    def __init__(self, table: ItemTable):
        self.table = table
        ids, titles = self.ids, self.titles = table.id_strings(), table.title_strings()
        lines = [f"{i}\t{t}".replace("\n", " ").casefold() for i, t in zip(ids, titles)]
        self.text = "\n" + "\n".join(lines) + "\n"
        self.starts = np.cumsum([1] + [len(s) + 1 for s in lines[:-1]])  # offset of each line in self.text

    def search(self, query: str, limit: int) -> List[int]:
        """Rows: the exact id first, then titles starting with the query, then id or title containing it."""
        q = " ".join(query.split()).casefold()
        if not q:
            return list(range(min(limit, len(self.ids))))
        rows: List[int] = []
        for pattern in ("\n" + q + "\t", "\t" + q, q):
            pos = self.text.find(pattern)
            while pos >= 0 and len(rows) < limit:
                row = int(np.searchsorted(self.starts, pos + 1, "right")) - 1
                if row not in rows:
                    rows.append(row)
                nxt = row + 1
                pos = self.text.find(pattern, int(self.starts[nxt]) if nxt < len(self.starts) else len(self.text))
        return rows


def catalogue_from_server(server: ModelServer, name: str, version: int) -> ItemTable:
    """The items of a served version: the loaded version's table when it is the one asked for, else the
    version's serving arrays or, written before those, its index text files (schema/versions.py layout). The one
    place that knows where a model lives."""
    cur = server.current
    if cur is not None and server.model_name == name and cur.version == version:
        return cur.items
    index = versions.index_dir(os.path.join(server.model_dir, str(version)))
    arrays = versions.read_serving_arrays(index)
    if arrays is not None:
        return ItemTable.from_arrays(arrays)
    ids = read_lines(os.path.join(index, IDS_FILE))
    titles_path = os.path.join(index, TITLES_FILE)
    return ItemTable.from_lists(ids, read_lines(titles_path) if os.path.exists(titles_path) else None)


# ------------------------------------------------------------------------------------------------ the HTTP side
def model_spec_of(match: re.Match) -> model_pb2.ModelSpec:
    """ModelSpec from a path match (ParseModelInfo + FillModelSpecWithNameVersionAndLabel): the name and label
    percent-decoded, the version a 64-bit integer."""
    name, version, label = match.group(1), match.group(2), match.group(3)
    spec = model_pb2.ModelSpec(name=urllib.parse.unquote(name or ""))
    if version:
        if int(version) >= 2**63:
            raise invalid(f"Failed to convert version: {version} to numeric.")
        spec.version.value = int(version)
    if label:
        spec.version_label = urllib.parse.unquote(label)
    return spec


def _spec_key(spec: model_pb2.ModelSpec) -> tuple:
    return spec.name, spec.WhichOneof("version_choice"), spec.version.value, spec.version_label


class RestApi:
    """The aiohttp application over one ModelServer.

    Predict: the body is parsed against the signature's input dtypes, which come from metadata and are kept
    per model spec with the version they belong to. A response from another version (a hot swap in between)
    or a failed request whose spec now resolves to another version is parsed again against that version's
    signatures, once, so a swap never answers with the old version's dtypes. A small body and a one-item
    related_items request (ModelServer.predict_fast) are answered on the event loop, like gRPC's fast path;
    everything else runs on `max_workers` threads."""

    def __init__(
        self,
        server: ModelServer,
        max_workers: int = DEFAULTS.max_workers,
        monitoring_path: Optional[str] = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        catalogue_source: Optional[Callable[[str, int], ItemTable]] = None,
        model_names: Optional[Callable[[], List[str]]] = None,
    ):
        self.server, self.monitoring_path, self.max_body_bytes = server, monitoring_path, max_body_bytes
        self.pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rest")
        self.catalogue_source = catalogue_source or (lambda name, v: catalogue_from_server(server, name, v))
        self.model_names = model_names or (lambda: [server.model_name])
        self._signatures: Dict[tuple, Tuple[int, Dict[str, Dict[str, int]]]] = {}
        self._catalogues: Dict[Tuple[str, int], Catalogue] = {}
        self._catalogue_lock = threading.Lock()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=[self._json_errors])
        app.router.add_get("/", self.page)
        app.router.add_get("/models", self.models)
        if self.monitoring_path:
            app.router.add_get(self.monitoring_path, self.prometheus)
        app.router.add_static("/static/", STATIC_DIR)
        app.router.add_route("*", "/{tail:.*}", self.v1)  # last: TF Serving's API is any path matching (?i)/v1/
        return app

    @web.middleware
    async def _json_errors(self, request, handler):
        """aiohttp's own refusals (unknown path 404, body over the limit 413, ...) as {"error": ...} too."""
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return web.Response(
                body=dumps({"error": f"{e.reason}: {request.method} {request.rel_url.raw_path}"}),
                status=e.status,
                content_type="application/json",
            )

    async def page(self, request):
        return web.FileResponse(os.path.join(STATIC_DIR, "index.html"))

    async def models(self, request):
        return web.Response(body=dumps({"models": self.model_names()}), content_type="application/json")

    async def prometheus(self, request):
        return web.Response(
            body=metrics.prometheus_text(), headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        )

    async def _in_pool(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def v1(self, request):
        """Every /v1/ request: dispatch as TF Serving does, errors as {"error"} with TF Serving's HTTP status,
        each request counted in serving/metrics.py with api="rest"."""
        if not V1_RE.match(request.rel_url.raw_path):
            raise web.HTTPNotFound()
        start, record = time.perf_counter(), {"model": "", "signature": ""}
        code = C.OK
        try:
            body = await self._dispatch(request, record)
            return web.Response(body=body, content_type="application/json")
        except web.HTTPException:
            code = C.RESOURCE_EXHAUSTED  # the body was over client_max_size: the middleware answers 413
            raise
        except Exception as e:
            code, msg = self.server.status_of(e)  # as the gRPC side reports it
            return web.Response(body=dumps({"error": msg}), status=HTTP_STATUS[code], content_type="application/json")
        finally:
            # labels only from served models and signatures: made-up names must not grow the registry
            model = record["model"] if record["model"] in self.model_names() else ""
            labels = dict(api="rest", model=model, signature=record["signature"] if model else "")
            metrics.REQUESTS.labels(status=code.name, **labels).inc()
            metrics.LATENCY.labels(**labels).observe(time.perf_counter() - start)

    async def _dispatch(self, request, record: dict) -> bytes:
        method, path = request.method, request.rel_url.raw_path
        if method == "OPTIONS":  # a CORS preflight, answered as TF Serving does (without CORS headers: it is off)
            if not re.search(r"https?://", request.headers.get("Origin", "")):
                raise ServingError(C.FAILED_PRECONDITION, "Origin header is missing in CORS preflight")
            return b""
        m = PREDICT_RE.fullmatch(path) if method == "POST" else None
        if m:
            spec = model_spec_of(m)
            record["model"] = spec.name
            op = m.group(4)
            if op in ("classify", "regress"):
                raise ServingError(
                    C.UNIMPLEMENTED,
                    f"{op} is not served here: this server implements Predict, GetModelMetadata and GetModelStatus "
                    "(its gRPC side answers Classify and Regress with UNIMPLEMENTED too)",
                )
            if op != "predict":  # the path regex ignores case, the method name does not (as in TF Serving)
                raise invalid(f"Malformed request: {method} {path}")
            return await self._predict(spec, await request.read(), record)
        if method == "GET" and ITEMS_RE.fullmatch(path):
            spec = model_spec_of(ITEMS_RE.fullmatch(path))
            record["model"] = spec.name
            return await self._in_pool(self._items, spec, request.rel_url.query)
        m = STATUS_RE.fullmatch(path) if method == "GET" else None
        if not m:
            raise invalid(f"Malformed request: {method} {path}")
        spec = model_spec_of(m)
        record["model"] = spec.name
        if not spec.name:
            raise invalid("Missing model name in request.")
        if m.group(4) == "metadata":
            return await self._in_pool(self._metadata, spec)
        return await self._in_pool(self._status, spec)

    # -- GetModelStatus / GetModelMetadata
    def _status(self, spec) -> bytes:
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.CopyFrom(spec)
        return dumps(status_json(self.server.status(req)))

    def _metadata_response(self, spec) -> get_model_metadata_pb2.GetModelMetadataResponse:
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        req.model_spec.CopyFrom(spec)
        req.metadata_field.append("signature_def")
        return self.server.metadata(req)

    def _metadata(self, spec) -> bytes:
        return dumps(metadata_json(self._metadata_response(spec)))

    # -- Predict
    def _signatures_of(self, spec, refresh: bool = False) -> Tuple[int, Dict[str, Dict[str, int]]]:
        """(version, {signature: {input: dtype}}) that `spec` resolves to, from metadata; kept per spec."""
        key = _spec_key(spec)
        hit = None if refresh else self._signatures.get(key)
        if hit is None:
            resp = self._metadata_response(spec)
            sigs = get_model_metadata_pb2.SignatureDefMap()
            resp.metadata["signature_def"].Unpack(sigs)
            inputs = {n: {i: t.dtype for i, t in s.inputs.items()} for n, s in sigs.signature_def.items()}
            hit = (resp.model_spec.version.value, inputs)
            if len(self._signatures) > 256:  # specs are caller-chosen (labels, versions): keep it bounded
                self._signatures.clear()
            self._signatures[key] = hit
        return hit

    def _parse(self, spec, body: bytes, record: dict, refresh: bool = False):
        """(PredictRequest, format, version whose signatures it was parsed against); record["signature"] is
        set once the signature is known to exist."""
        doc = parse_json(body)
        req = predict_pb2.PredictRequest()
        req.model_spec.CopyFrom(spec)
        seen = []

        def inputs_of(sig: str) -> Dict[str, int]:
            version, sigs = self._signatures_of(spec, refresh)
            seen.append(version)
            name = sig or "serving_default"
            if name not in sigs:
                raise invalid(f'Serving signature name: "{name}" not found in signature def')
            record["signature"] = name
            return sigs[name]

        fmt = fill_predict_request(doc, inputs_of, req)
        return req, fmt, seen[0]

    def _predict_blocking(self, spec, body: bytes, record: dict, refresh: bool = False) -> bytes:
        """The whole predict on a worker thread: parse, answer, encode; parsed again once if the version moved."""
        req, fmt, version = self._parse(spec, body, record, refresh)
        try:
            resp = self.server.predict(req)
        except Exception:
            if refresh or self._signatures_of(spec, refresh=True)[0] == version:
                raise
            return self._predict_blocking(spec, body, record, refresh=True)
        if resp.model_spec.version.value != version and not refresh:
            return self._predict_blocking(spec, body, record, refresh=True)
        return dumps(predict_response_json(resp, fmt))

    async def _predict(self, spec, body: bytes, record: dict) -> bytes:
        if len(body) > INLINE_BODY_BYTES:
            return await self._in_pool(self._predict_blocking, spec, body, record)
        try:  # on the loop: a small body, and the one-item related_items answer if it is one
            req, fmt, version = self._parse(spec, body, record)
            resp = self.server.predict_fast(req)
            if resp is not None and not isinstance(resp, predict_pb2.PredictResponse):  # batched: await it
                resp = await resp
        except Exception:
            resp = None  # the worker thread answers it (and re-checks the version before reporting an error)
        if resp is None or resp.model_spec.version.value != version:
            return await self._in_pool(self._predict_blocking, spec, body, record)
        return dumps(predict_response_json(resp, fmt))

    # -- the page's catalogue search and item lookup
    def _items(self, spec, query) -> bytes:
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            raise invalid(f"limit must be an integer, got {query.get('limit')!r}") from None
        if not 1 <= limit <= 1000:
            raise invalid(f"limit must be in [1, 1000], got {limit}")
        wanted = query.getall("id", [])
        if len(wanted) > 1000:
            raise invalid(f"at most 1000 ids per request, got {len(wanted)}")
        version = self._metadata_response(spec).model_spec.version.value
        key = (spec.name, version)
        with self._catalogue_lock:  # built once per version (slow for a large catalogue), then shared
            cat = self._catalogues.get(key)
            if cat is None:
                cat = Catalogue(self.catalogue_source(spec.name, version))
                self._catalogues = {k: c for k, c in self._catalogues.items() if k[0] != spec.name}
                self._catalogues[key] = cat
        if wanted:
            rows = cat.table.rows([i.encode("utf-8") for i in wanted]).tolist()
            if -1 in rows:
                missing = wanted[rows.index(-1)]
                raise ServingError(C.NOT_FOUND, f"item id {missing!r} is not in version {version} of {spec.name}")
        else:
            rows = cat.search(query.get("q", ""), limit)
        return dumps(
            {
                "model_spec": {"name": spec.name, "version": str(version)},
                "total": len(cat.ids),
                "item_ids": [str(cat.ids[r]) for r in rows],
                "titles": [str(cat.titles[r]) for r in rows],
                "attributes": cat.table.attributes_of(rows),
            }
        )


# ------------------------------------------------------------------------------------------------ lifecycle
def _listen(port: int, reuse_port: bool) -> socket.socket:
    """One listening socket for IPv6 and IPv4 (port 0: one free port for both, which aiohttp's host=None
    would not give: it binds each address family to its own free port)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"the REST port must be in [0, 65535], got {port}")
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        addr = ("::", port)
    except OSError:
        sock, addr = socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("0.0.0.0", port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise OSError(f"cannot bind REST port {port}: {e}") from None
    sock.setblocking(False)
    return sock


class RestServer:
    """The REST listener of one ModelServer, on the event loop its grpc.aio server runs on."""

    def __init__(self, api: RestApi, loop: asyncio.AbstractEventLoop, port: int, reuse_port: bool = False):
        self.api, self.loop = api, loop
        sock = _listen(port, reuse_port)
        self.port = sock.getsockname()[1]

        async def start():
            runner = web.AppRunner(api.app(), access_log=None, handle_signals=False)
            await runner.setup()
            await web.SockSite(runner, sock, backlog=1024).start()
            return runner

        self._runner = asyncio.run_coroutine_threadsafe(start(), loop).result()
        log.info("REST API on port %d", self.port)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result()
            self.api.pool.shutdown()
            self._runner = None
