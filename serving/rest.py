"""TF Serving's REST API (tensorflow_serving/g3doc/api_rest.md) over a ModelServer, plus the related-items page.

REST is a JSON <-> proto adapter in front of the same proto-level handlers the gRPC servicer calls
(ModelServer._predict / _metadata / _status), as TF Serving's own http_rest_api_handler.cc is in front of its
Predict / GetModelMetadata / GetModelStatus implementations: both APIs give the same answers by construction.

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
                                                    catalogue search: ids + titles whose id equals, title starts
                                                    with, or id/title contains TEXT (case-insensitive, that order)
    GET  {monitoring_path}                          Prometheus text (serving/metrics.py; None turns it off)

The JSON <-> tensor rules are TF Serving's (util/json_tensor.cc), re-implemented because no Python library does
them: the dtype of every input comes from the signature (so 1 is an int32 or a float by what the model takes),
lists must be dense, a DT_STRING value may be {"b64": "..."}, outputs whose names end in `_bytes` are written as
{"b64": ...}, NaN / Infinity are accepted and written, floats are written with the fewest digits that read back
to the same float32. Row format ("instances") batches every input along a new 0-th dimension, so a signature
with a scalar input (related_items' `k`) needs the columnar format ("inputs"), exactly as on TF Serving.

Why aiohttp: the server is asyncio already (grpc.aio on one event loop, serving/server.py); aiohttp runs on that
same loop, parses HTTP in C (llhttp) and keeps connections alive, so the one-item related_items request, the
bulk of the traffic, is answered on the loop without a thread hand-off, as the gRPC side does. (tornado, also
in the lock, runs on asyncio too, but parses HTTP in Python.)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import os
import re
import socket
import threading
import time
import urllib.parse
from concurrent import futures
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import grpc
import numpy as np
import prometheus_client
from aiohttp import web
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2, predict_pb2

from modules.index import IDS_FILE, TITLES_FILE
from schema import versions
from schema.embeddings import read_lines
from serving import metrics
from serving.flags import DEFAULTS
from serving.server import ServingError, to_numpy

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
MAX_BODY_BYTES = 4 * DEFAULTS.max_message_bytes  # JSON is 2-4x the protobuf of the same tensors: 413 beyond


def invalid(msg: str) -> ServingError:
    return ServingError(C.INVALID_ARGUMENT, msg)


# ------------------------------------------------------------------------------------------------ JSON -> tensors
def _debug(val) -> str:
    """A JSON value for an error message, cut at 256 characters (TF Serving's JsonValueToDebugString)."""
    return json.dumps(val, separators=(",", ":"))[:256]


def _json_type(val) -> str:
    if val is None or isinstance(val, bool):
        return {None: "Null", False: "False", True: "True"}[val]
    return {dict: "Object", list: "Array", str: "String"}.get(type(val), "Number")


def _dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype)[3:].lower()  # DT_FLOAT -> float, as TF's DataTypeString


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_in(lo: int, hi: int) -> Callable:
    return lambda v: type(v) is int and lo <= v <= hi


# dtype -> (accepts a JSON value, TensorProto field): rapidjson's IsNumber / IsInt / IsInt64 / ... per dtype
_I32 = _int_in(-(2**31), 2**31 - 1)
_ACCEPT = {
    types_pb2.DT_FLOAT: (_number, "float_val"),
    types_pb2.DT_DOUBLE: (_number, "double_val"),
    types_pb2.DT_INT32: (_I32, "int_val"),
    types_pb2.DT_INT16: (_I32, "int_val"),
    types_pb2.DT_INT8: (_I32, "int_val"),
    types_pb2.DT_UINT8: (_I32, "int_val"),
    types_pb2.DT_STRING: (lambda v: isinstance(v, str), "string_val"),
    types_pb2.DT_INT64: (_int_in(-(2**63), 2**63 - 1), "int64_val"),
    types_pb2.DT_BOOL: (lambda v: isinstance(v, bool), "bool_val"),
    types_pb2.DT_UINT32: (_int_in(0, 2**32 - 1), "uint32_val"),
    types_pb2.DT_UINT64: (_int_in(0, 2**64 - 1), "uint64_val"),
}


def _is_b64(val) -> bool:
    return isinstance(val, dict) and len(val) == 1 and isinstance(val.get("b64"), str)


def _is_object(val) -> bool:
    return isinstance(val, dict) and not _is_b64(val)


def _b64_decode(val) -> bytes:
    if not _is_b64(val):
        raise invalid(f"JSON Value: {_debug(val)} not formatted correctly for base64 data")
    text = val["b64"]
    try:  # absl::Base64Unescape, which TF Serving uses, takes the padding as optional
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Unable to base64 decode") from None


def _type_error(val, dtype: int) -> ServingError:
    return invalid(f"JSON Value: {_debug(val)} Type: {_json_type(val)} is not of expected type: {_dtype_name(dtype)}")


def _leaf(val, dtype: int, out: list) -> None:
    """One JSON value -> one tensor element (TF Serving's AddValueToTensor, with its b64 rule for DT_STRING)."""
    if isinstance(val, dict):
        if dtype != types_pb2.DT_STRING:
            raise _type_error(val, dtype)
        out.append(_b64_decode(val))
        return
    accept = _ACCEPT.get(dtype)
    if accept is None:
        raise ServingError(C.UNIMPLEMENTED, f"Conversion of JSON Value: {_debug(val)} to type: {_dtype_name(dtype)}")
    if not accept[0](val):
        raise _type_error(val, dtype)
    out.append(val.encode() if dtype == types_pb2.DT_STRING else val)


def _dense_shape(val) -> List[int]:
    """The shape a nested list claims by its first elements (GetDenseTensorShape); _fill checks the rest."""
    shape = []
    while isinstance(val, list):
        shape.append(len(val))
        if not val:
            break
        val = val[0]
    return shape


def _fill(val, level: int, shape: List[int], dtype: int, out: list) -> None:
    """The values of a dense nested list, row-major, each list checked against `shape` (FillTensorProto)."""
    if not isinstance(val, list):
        if level != len(shape):
            raise invalid(
                f"JSON Value: {_debug(val)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {len(shape)}"
            )
        _leaf(val, dtype, out)
        return
    if level >= len(shape):
        raise invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(val) != shape[level]:
        raise invalid(
            f"Encountered list at unexpected size: {len(val)} at level: {level} expected size: {shape[level]}"
        )
    for v in val:
        _fill(v, level + 1, shape, dtype, out)


def _tensor(dtype: int, shape: Sequence[int], values: list) -> tensor_pb2.TensorProto:
    t = tensor_pb2.TensorProto(dtype=dtype)
    for s in shape:
        t.tensor_shape.dim.add().size = s
    getattr(t, _ACCEPT[dtype][1]).extend(values)
    return t


def json_to_tensor(val, dtype: int) -> tensor_pb2.TensorProto:
    """A JSON value (scalar or dense nested list) -> TensorProto of the signature's dtype."""
    shape, values = _dense_shape(val), []
    _fill(val, 0, shape, dtype, values)
    return _tensor(dtype, shape, values)


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(s) for s in shape) + "]"


def _instance_item(item, name: str, inputs: Dict[str, int], shapes: dict, values: dict) -> None:
    """One input of one row (AddInstanceItem): every row must give the input the same shape."""
    if name not in inputs:
        raise invalid(f"JSON object: does not have named input: {name}")
    shape, vals = _dense_shape(item), []
    _fill(item, 0, shape, inputs[name], vals)
    if name in shapes:
        size = int(np.prod(shapes[name]))
        if size != len(vals):
            raise invalid(f"Expecting tensor size: {size} but got: {len(vals)}")
        if shapes[name] != shape:
            raise invalid(f"Expecting shape {_shape_text(shapes[name])} but got: {_shape_text(shape)}")
    shapes.setdefault(name, shape)
    values.setdefault(name, []).extend(vals)


def _rows_to_tensors(instances: list, inputs: Dict[str, int]) -> Dict[str, tensor_pb2.TensorProto]:
    """Row format: one element per batch row; objects {input: value} for several inputs, plain values for one
    (FillTensorMapFromInstancesList)."""
    objects = _is_object(instances[0])
    if not objects and len(inputs) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
            "tensorinfo_map"
        )
    values: Dict[str, list] = {}
    shapes: Dict[str, List[int]] = {}
    for n, elem in enumerate(instances):
        if objects != _is_object(elem):
            want, got = ("object", "list") if objects else ("value/list", "object")
            raise invalid(f"Expecting {want} but got {got} at item {n} of input list")
        for name, item in elem.items() if objects else [(next(iter(inputs)), elem)]:
            try:
                _instance_item(item, name, inputs, shapes, values)
            except ServingError as e:
                where = f"key: {name} " if objects else ""
                raise ServingError(
                    e.code, f"Failed to process element: {n} {where}of 'instances' list. Error: {e.code.name}: {e}"
                ) from None
        if objects and set(elem) != set(inputs):
            raise invalid(
                f"Failed to process element: {n} of 'instances' list. JSON object: {_debug(elem)} keys must be "
                f"equal to: {','.join(sorted(inputs))}"
            )
    return {name: _tensor(inputs[name], [len(instances)] + shapes[name], values[name]) for name in values}


def _columns_to_tensors(val, inputs: Dict[str, int]) -> Dict[str, tensor_pb2.TensorProto]:
    """Columnar format: {input: value} (names not in the signature are ignored, as TF Serving does), or the
    value itself for a one-input signature (FillTensorMapFromInputsMap)."""
    if not _is_object(val):
        if len(inputs) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
                "tensorinfo_map"
            )
        name = next(iter(inputs))
        return {name: json_to_tensor(val, inputs[name])}
    out = {}
    for name, dtype in inputs.items():
        if name not in val:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        out[name] = json_to_tensor(val[name], dtype)
    return out


def parse_json(body: bytes):
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)  # accepts NaN / Infinity / -Infinity, like TF Serving's kParseNanAndInfFlag
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise invalid(f"JSON Parse error: {e}") from None
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {_debug(doc)} Is not object")
    return doc


def fill_predict_request(
    doc: dict, inputs_of: Callable[[str], Dict[str, int]], request: predict_pb2.PredictRequest
) -> str:
    """A parsed predict body -> request.inputs and signature_name; returns the format, "row" or "columnar"
    (FillPredictRequestFromJson). inputs_of(signature name) gives the signature's {input: dtype}."""
    sig = doc.get("signature_name", "")
    if not isinstance(sig, str):
        raise invalid(
            f"JSON Value: {_debug(doc)} not formatted correctly. 'signature_name' key must be a string value."
        )
    request.model_spec.signature_name = sig
    inputs = inputs_of(sig)
    if not inputs:
        raise invalid(f"Failed to get input map for signature: {sig or 'DEFAULT'}")
    if "instances" in doc and "inputs" in doc:
        raise invalid(
            f"JSON Value: {_debug(doc)} Not formatted correctly expecting only one of 'inputs' or 'instances' keys "
            "to exist "
        )
    try:
        if "instances" in doc:
            rows = doc["instances"]
            if not isinstance(rows, list):
                raise invalid(f"JSON Value: {_debug(doc)} Expecting 'instances' to be an list/array")
            if not rows:
                raise invalid(f"JSON Value: {_debug(doc)} No values in 'instances' array")
            tensors, fmt = _rows_to_tensors(rows, inputs), "row"
        elif "inputs" in doc:
            tensors, fmt = _columns_to_tensors(doc["inputs"], inputs), "columnar"
        else:
            raise invalid("Missing 'inputs' or 'instances' key")
    except RecursionError:
        raise invalid("JSON Value nested too deeply") from None
    for name, t in tensors.items():
        request.inputs[name].CopyFrom(t)
    return fmt


# ------------------------------------------------------------------------------------------------ tensors -> JSON
def _nest(flat: list, shape: Sequence[int]):
    """A row-major flat list -> nested lists of `shape` (a scalar for shape [])."""
    if not shape:
        return flat[0]
    for i in range(len(shape) - 1, 0, -1):
        d, n = shape[i], math.prod(shape[:i])
        flat = [flat[j * d : (j + 1) * d] for j in range(n)]
    return flat


def _flat_values(proto: tensor_pb2.TensorProto, size: int) -> list:
    """A tensor's values, row-major, as Python objects: the response dtypes this server writes read straight
    from the proto (numpy's per-call overhead is most of a one-item request's JSON cost otherwise)."""
    dtype = proto.dtype
    if dtype == types_pb2.DT_STRING and not proto.tensor_content:
        values = list(proto.string_val)
    elif dtype == types_pb2.DT_FLOAT:  # numpy's shortest round-trip repr of each float32, in C
        arr = np.frombuffer(proto.tensor_content, "<f4") if proto.tensor_content else np.float32(proto.float_val)
        values = [float(x) for x in np.atleast_1d(arr).astype(str)]
    elif dtype in (types_pb2.DT_INT32, types_pb2.DT_INT64, types_pb2.DT_BOOL) and not proto.tensor_content:
        values = list(getattr(proto, _ACCEPT[dtype][1]))
    else:
        arr = to_numpy(proto)
        return arr.ravel().tolist() if arr.dtype != np.float16 else [float(x) for x in arr.ravel().astype(str)]
    if len(values) == 1 and size > 1:  # TF's compact form: one value repeated
        values = values * size
    if len(values) != size:
        raise ServingError(C.INTERNAL, f"{len(values)} values for a tensor of {size}")
    return values


def tensor_to_json(name: str, proto: tensor_pb2.TensorProto):
    """One output tensor as nested JSON values (AddTensorValues): strings as UTF-8 text, `*_bytes` strings as
    {"b64": ...}, float32 with the fewest digits that read back to the same float32."""
    shape = [d.size for d in proto.tensor_shape.dim]
    flat = _flat_values(proto, math.prod(shape))
    if proto.dtype == types_pb2.DT_STRING:
        if name.endswith("_bytes"):
            flat = [{"b64": base64.b64encode(b).decode("ascii")} for b in flat]
        else:  # JSON text must be Unicode: bytes that are not UTF-8 come out with U+FFFD in their place
            flat = [b.decode("utf-8", "replace") for b in flat]
    return _nest(flat, shape)


def predict_response_json(response: predict_pb2.PredictResponse, fmt: str) -> dict:
    """{"predictions": ...} for a row-format request, {"outputs": ...} for a columnar one; the output name is
    left out when there is one output (MakeJsonFromTensors)."""
    outputs = response.outputs
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    values = {name: tensor_to_json(name, t) for name, t in outputs.items()}
    if fmt == "columnar":
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    batch = None
    for name, t in outputs.items():
        if not t.tensor_shape.dim:
            raise invalid(f"Tensor name: {name} has no shape information ")
        size = t.tensor_shape.dim[0].size
        if batch is not None and size != batch:
            raise invalid(f"Tensor name: {name} has inconsistent batch size: {size} expecting: {batch}")
        batch = size
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: v[i] for name, v in values.items()} for i in range(batch)]}


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict:
    """TF Serving's ToJsonString(GetModelMetadataResponse): proto field names, defaults printed, the Any unpacked."""
    sigs = get_model_metadata_pb2.SignatureDefMap()
    if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(sigs):
        raise ServingError(C.INTERNAL, "Failed to find 'signature_def' key in the GetModelMetadataResponse")
    opts = dict(including_default_value_fields=True, preserving_proto_field_name=True)
    return {
        "model_spec": json_format.MessageToDict(response.model_spec, **opts),
        "metadata": {"signature_def": json_format.MessageToDict(sigs, **opts)},
    }


def status_json(response: get_model_status_pb2.GetModelStatusResponse) -> dict:
    return json_format.MessageToDict(response, including_default_value_fields=True)


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ------------------------------------------------------------------------------------------------ catalogue search
class Catalogue:
    """Ids and titles of one version, searchable by text for the page (this server's extension: the REST API
    has no such signature). One casefolded "\\nid\\ttitle" string, searched with str.find (C speed, no per-item
    Python objects beyond the ids and titles themselves)."""

    def __init__(self, ids: Sequence[str], titles: Sequence[str]):
        self.ids, self.titles = ids, titles
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


def catalogue_from_server(server, name: str, version: int) -> Tuple[Sequence[str], Sequence[str]]:
    """(ids, titles) of a served version: the loaded version's arrays when it is the one asked for, else the
    version's index files (schema/versions.py layout). The one place that knows where a model lives."""
    cur = getattr(server, "current", None)
    if cur is not None and server.model_name == name and cur.version == version:
        return cur.items.id_strings(), cur.items.title_strings()
    index = versions.index_dir(os.path.join(server.model_dir, str(version)))
    ids = read_lines(os.path.join(index, IDS_FILE))
    titles_path = os.path.join(index, TITLES_FILE)
    return ids, read_lines(titles_path) if os.path.exists(titles_path) else [""] * len(ids)


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


def _error_of(server, e: Exception) -> Tuple[grpc.StatusCode, str]:
    """The gRPC status of an exception, as the gRPC side reports it (ModelServer.status_of)."""
    if isinstance(e, ServingError):
        return e.code, str(e)
    status = server.status_of(e)
    return status if isinstance(status, tuple) else (status, str(e))


def _spec_key(spec: model_pb2.ModelSpec) -> tuple:
    return spec.name, spec.WhichOneof("version_choice"), spec.version.value, spec.version_label


class RestApi:
    """The aiohttp application over one ModelServer.

    Predict: the body is parsed against the signature's input dtypes, which come from _metadata and are kept
    per model spec with the version they belong to. A response from another version (a hot swap in between)
    or a failed request whose spec now resolves to another version is parsed again against that version's
    signatures, once, so a swap never answers with the old version's dtypes. A small body and a one-item
    related_items request (ModelServer.predict_fast) are answered on the event loop, like gRPC's fast path;
    everything else runs on `max_workers` threads."""

    def __init__(
        self,
        server,
        max_workers: int = DEFAULTS.max_workers,
        monitoring_path: Optional[str] = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        catalogue_source: Optional[Callable[[str, int], Tuple[Sequence[str], Sequence[str]]]] = None,
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
            code, msg = _error_of(self.server, e)
            return web.Response(body=dumps({"error": msg}), status=HTTP_STATUS[code], content_type="application/json")
        finally:
            # label values only from the served models and their signatures: names a caller makes up must not
            # grow the registry without bound
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
        return dumps(status_json(self.server._status(req)))

    def _metadata_response(self, spec) -> get_model_metadata_pb2.GetModelMetadataResponse:
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        req.model_spec.CopyFrom(spec)
        req.metadata_field.append("signature_def")
        return self.server._metadata(req)

    def _metadata(self, spec) -> bytes:
        return dumps(metadata_json(self._metadata_response(spec)))

    # -- Predict
    def _signatures_of(self, spec, refresh: bool = False) -> Tuple[int, Dict[str, Dict[str, int]]]:
        """(version, {signature: {input: dtype}}) that `spec` resolves to, from _metadata; kept per spec."""
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
            resp = self.server._predict(req)
        except Exception:
            if refresh or self._signatures_of(spec, refresh=True)[0] == version:
                raise
            return self._predict_blocking(spec, body, record, refresh=True)
        if resp.model_spec.version.value != version and not refresh:
            return self._predict_blocking(spec, body, record, refresh=True)
        return dumps(predict_response_json(resp, fmt))

    async def _predict(self, spec, body: bytes, record: dict) -> bytes:
        fast = getattr(self.server, "predict_fast", None)
        if len(body) > INLINE_BODY_BYTES or fast is None:
            return await self._in_pool(self._predict_blocking, spec, body, record)
        try:  # on the loop: a small body, and the one-item related_items answer if it is one
            req, fmt, version = self._parse(spec, body, record)
            resp = fast(req)
            if isinstance(resp, tuple):  # --enable_batching: (version, signature, future of (ids, scores))
                v, name, fut = resp
                resp = self.server._respond_one(v, name, *await fut)
        except Exception:
            resp = None  # the worker thread answers it (and re-checks the version before reporting an error)
        if resp is None or resp.model_spec.version.value != version:
            return await self._in_pool(self._predict_blocking, spec, body, record)
        return dumps(predict_response_json(resp, fmt))

    # -- the page's catalogue search
    def _items(self, spec, query) -> bytes:
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            raise invalid(f"limit must be an integer, got {query.get('limit')!r}") from None
        if not 1 <= limit <= 1000:
            raise invalid(f"limit must be in [1, 1000], got {limit}")
        version = self._metadata_response(spec).model_spec.version.value
        key = (spec.name, version)
        with self._catalogue_lock:  # built once per version (about a second at 1M items), then shared
            cat = self._catalogues.get(key)
            if cat is None:
                cat = Catalogue(*self.catalogue_source(spec.name, version))
                self._catalogues = {k: c for k, c in self._catalogues.items() if k[0] != spec.name}
                self._catalogues[key] = cat
        rows = cat.search(query.get("q", ""), limit)
        return dumps(
            {
                "model_spec": {"name": spec.name, "version": str(version)},
                "total": len(cat.ids),
                "item_ids": [str(cat.ids[r]) for r in rows],
                "titles": [str(cat.titles[r]) for r in rows],
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
