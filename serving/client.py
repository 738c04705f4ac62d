"""A TF Serving client for `pinsage query`, without TensorFlow: TF Serving's gRPC `Predict` and this server's REST
catalogue search, so that a query starts in well under a second instead of paying TensorFlow's start-up.

Why no TensorFlow: tensorflow_serving.apis' messages import TensorFlow's TensorProto, which loads all of
TensorFlow (seconds) just to build a request. The client builds the same messages from its own descriptors
instead (the subset of TF Serving's predict.proto and TensorFlow's tensor.proto it sends and reads, with their
package, message and field names and numbers, in a private descriptor pool): the bytes on the wire are TF
Serving's, so it works the same against serving/server.py and the real tensorflow/serving container. The request
builders fill either kind of message (the same field names); they return tensorflow_serving's own
PredictRequest unless given `request_type`, for callers that send through its stubs or into the request core.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

from schema.versions import RECOMMEND, RECOMMEND_CONTEXT, RECOMMEND_WEIGHTED, RELATED_ITEMS

PREDICT = "/tensorflow.serving.PredictionService/Predict"
# tensorflow/core/framework/types.proto: the dtypes requests carry and responses come back in
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_STRING, DT_INT64, DT_BOOL = 1, 2, 3, 7, 9, 10
_VALUES = {  # dtype -> (its repeated field, its little-endian numpy dtype for tensor_content)
    DT_FLOAT: ("float_val", "<f4"),
    DT_DOUBLE: ("double_val", "<f8"),
    DT_INT32: ("int_val", "<i4"),
    DT_INT64: ("int64_val", "<i8"),
    DT_BOOL: ("bool_val", "?"),
    DT_STRING: ("string_val", None),
}


_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
# (file, package, {message: [(field, number, type, message type or None, label)]}); a "*Entry" message is the map
# entry of the message named before the dot, as protoc makes it
_WIRE = (
    (
        "pinsage/client/tensor.proto",
        "tensorflow",
        {
            "TensorShapeProto": [
                ("dim", 2, _F.TYPE_MESSAGE, ".tensorflow.TensorShapeProto.Dim", _REP),
                ("unknown_rank", 3, _F.TYPE_BOOL, None, _OPT),
            ],
            "TensorShapeProto.Dim": [("size", 1, _F.TYPE_INT64, None, _OPT), ("name", 2, _F.TYPE_STRING, None, _OPT)],
            "TensorProto": [
                ("dtype", 1, _F.TYPE_INT32, None, _OPT),  # an enum in TensorFlow's: the same varint on the wire
                ("tensor_shape", 2, _F.TYPE_MESSAGE, ".tensorflow.TensorShapeProto", _OPT),
                ("tensor_content", 4, _F.TYPE_BYTES, None, _OPT),
                ("float_val", 5, _F.TYPE_FLOAT, None, _REP),
                ("double_val", 6, _F.TYPE_DOUBLE, None, _REP),
                ("int_val", 7, _F.TYPE_INT32, None, _REP),
                ("string_val", 8, _F.TYPE_BYTES, None, _REP),
                ("int64_val", 10, _F.TYPE_INT64, None, _REP),
                ("bool_val", 11, _F.TYPE_BOOL, None, _REP),
            ],
        },
    ),
    (
        "pinsage/client/predict.proto",
        "tensorflow.serving",
        {
            "ModelSpec": [
                ("name", 1, _F.TYPE_STRING, None, _OPT),
                ("version", 2, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", _OPT),  # oneof version_choice
                ("version_label", 4, _F.TYPE_STRING, None, _OPT),  # oneof version_choice (a oneof's fields adjoin)
                ("signature_name", 3, _F.TYPE_STRING, None, _OPT),
            ],
            "PredictRequest": [
                ("model_spec", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.ModelSpec", _OPT),
                ("inputs", 2, _F.TYPE_MESSAGE, ".tensorflow.serving.PredictRequest.InputsEntry", _REP),
                ("output_filter", 3, _F.TYPE_STRING, None, _REP),
            ],
            "PredictRequest.InputsEntry": [
                ("key", 1, _F.TYPE_STRING, None, _OPT),
                ("value", 2, _F.TYPE_MESSAGE, ".tensorflow.TensorProto", _OPT),
            ],
            "PredictResponse": [
                ("outputs", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PredictResponse.OutputsEntry", _REP),
                ("model_spec", 2, _F.TYPE_MESSAGE, ".tensorflow.serving.ModelSpec", _OPT),
            ],
            "PredictResponse.OutputsEntry": [
                ("key", 1, _F.TYPE_STRING, None, _OPT),
                ("value", 2, _F.TYPE_MESSAGE, ".tensorflow.TensorProto", _OPT),
            ],
        },
    ),
)


def _wire_messages():
    """(PredictRequest, PredictResponse) classes with TF Serving's wire format, built without TensorFlow."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    deps = [wrappers.name]
    for file_name, package, messages in _WIRE:
        fdp = descriptor_pb2.FileDescriptorProto(name=file_name, package=package, syntax="proto3")
        fdp.dependency.extend(deps)
        made = {}
        for name, fields in messages.items():
            parent, _, leaf = name.rpartition(".")
            msg = (made[parent].nested_type if parent else fdp.message_type).add(name=leaf)
            made[name] = msg
            if leaf.endswith("Entry"):
                msg.options.map_entry = True
            for field_name, number, ftype, type_name, label in fields:
                f = msg.field.add(name=field_name, number=number, type=ftype, label=label)
                if type_name:
                    f.type_name = type_name
        if "ModelSpec" in made:
            made["ModelSpec"].oneof_decl.add(name="version_choice")
            for f in made["ModelSpec"].field:
                if f.name in ("version", "version_label"):
                    f.oneof_index = 0
        pool.Add(fdp)
        deps.append(file_name)
    factory = message_factory.MessageFactory(pool)
    get = lambda n: factory.GetPrototype(pool.FindMessageTypeByName(f"tensorflow.serving.{n}"))  # noqa: E731
    return get("PredictRequest"), get("PredictResponse")


PredictRequest, PredictResponse = _wire_messages()


def _fill(tensor, values: list, dtype: int, shape: Sequence[int]) -> None:
    """A TensorProto (ours or TensorFlow's) in place: `values` flat, row-major."""
    tensor.dtype = dtype
    for size in shape:
        tensor.tensor_shape.dim.add().size = size
    if dtype == DT_STRING:
        tensor.string_val.extend(v.encode("utf-8") for v in values)
    else:
        getattr(tensor, _VALUES[dtype][0]).extend(values)


def _fill_k(tensor, k) -> None:
    """k as an int32 scalar; a TensorProto given as k goes as it is (a test's malformed k, say)."""
    if hasattr(k, "SerializeToString"):
        tensor.ParseFromString(k.SerializeToString())  # through bytes: TensorFlow's message or ours
    else:
        _fill(tensor, [k], DT_INT32, [])


def predict_request(signature_name: str, model_name: str = "pinsage", request_type=None):
    """An empty PredictRequest for `signature_name`: tensorflow_serving's own (which imports TensorFlow) unless
    `request_type` is given (PredictRequest here: the same wire format, no TensorFlow)."""
    if request_type is None:
        from tensorflow_serving.apis import predict_pb2

        request_type = predict_pb2.PredictRequest
    req = request_type()
    req.model_spec.name, req.model_spec.signature_name = model_name, signature_name
    return req


def related_request(
    item_ids: Sequence[str], k: int, model_name: str = "pinsage", signature_name: str = RELATED_ITEMS, request_type=None
):
    req = predict_request(signature_name, model_name, request_type)
    _fill(req.inputs["item_id"], [str(i) for i in item_ids], DT_STRING, [len(item_ids)])
    _fill_k(req.inputs["k"], k)
    return req


def recommend_request(
    histories: Sequence[Sequence[str]],
    k: int,
    model_name: str = "pinsage",
    weights: Optional[Sequence[Sequence[float]]] = None,
    request_type=None,
):
    """recommend (or recommend_weighted with `weights`) for ragged histories, padded with "" (weight 0) to
    [N, L] as a TF Serving request must be rectangular."""
    width = max((len(h) for h in histories), default=0)
    req = predict_request(RECOMMEND if weights is None else RECOMMEND_WEIGHTED, model_name, request_type)
    ids = [str(i) for h in histories for i in list(h) + [""] * (width - len(h))]
    _fill(req.inputs["history_ids"], ids, DT_STRING, [len(histories), width])
    if weights is not None:
        w = [float(x) for row in weights for x in list(row) + [0.0] * (width - len(row))]
        _fill(req.inputs["history_weights"], w, DT_FLOAT, [len(weights), width])
    _fill_k(req.inputs["k"], k)
    return req


def recommend_context_request(context_ids: Sequence[str], k: int, model_name: str = "pinsage", request_type=None):
    """recommend_context for known contexts (their precomputed query vectors)."""
    req = predict_request(RECOMMEND_CONTEXT, model_name, request_type)
    _fill(req.inputs["context_id"], [str(c) for c in context_ids], DT_STRING, [len(context_ids)])
    _fill_k(req.inputs["k"], k)
    return req


def to_list(tensor):
    """A TensorProto (ours or TensorFlow's) of the dtypes above as nested Python lists, strings decoded (UTF-8)."""
    shape = [d.size for d in tensor.tensor_shape.dim]
    size = int(np.prod(shape)) if shape else 1
    field, dtype = _VALUES.get(tensor.dtype, (None, None))
    if field is None:
        raise ValueError(f"a tensor of dtype {tensor.dtype} (the client reads {sorted(_VALUES)})")
    if tensor.dtype == DT_STRING:
        values = np.empty(len(tensor.string_val), object)
        values[:] = [s.decode("utf-8", errors="replace") for s in tensor.string_val]
    elif tensor.tensor_content:
        values = np.frombuffer(tensor.tensor_content, dtype=dtype)
    else:
        values = np.array(getattr(tensor, field), dtype=dtype)
    if len(values) == 1 and size > 1:  # TF's compact form: one value repeated
        values = np.repeat(values, size)
    if len(values) != size:
        raise ValueError(f"{len(values)} values for shape {shape}")
    return values.reshape(shape).tolist()


def decode(response) -> Dict[str, list]:
    """A PredictResponse's (ours or TensorFlow's) outputs as nested Python lists, strings decoded."""
    return {name: to_list(tensor) for name, tensor in response.outputs.items()}


def _predict(host_port: str, request, timeout: float) -> Dict[str, list]:
    with grpc.insecure_channel(host_port) as channel:
        call = channel.unary_unary(
            PREDICT,
            request_serializer=PredictRequest.SerializeToString,
            response_deserializer=PredictResponse.FromString,
        )
        return decode(call(request, timeout=timeout))


def related(
    host_port: str,
    item_ids: Sequence[str],
    k: int,
    model_name: str = "pinsage",
    timeout: float = 10.0,
    signature_name: str = RELATED_ITEMS,
) -> Dict[str, List[list]]:
    """{"item_ids": [[...k]...], "scores": [[...]], "titles": [[...]]} per query item from `signature_name`
    (related_items, or similar_items); raises grpc.RpcError (e.g. INVALID_ARGUMENT for an unknown id) with the
    server's message in .details()."""
    req = related_request(item_ids, k, model_name, signature_name, request_type=PredictRequest)
    return _predict(host_port, req, timeout)


def recommend(
    host_port: str, histories: Sequence[Sequence[str]], k: int, model_name: str = "pinsage", timeout: float = 10.0
) -> Dict[str, List[list]]:
    """{"item_ids", "scores", "titles", "history_used"} per history from the `recommend` signature (the history's
    own items excluded); raises grpc.RpcError with the server's message in .details()."""
    return _predict(host_port, recommend_request(histories, k, model_name, request_type=PredictRequest), timeout)


def recommend_context(
    host_port: str, context_ids: Sequence[str], k: int, model_name: str = "pinsage", timeout: float = 10.0
) -> Dict[str, List[list]]:
    """{"item_ids", "scores", "titles", "history_used"} per known context from `recommend_context` (its stored
    query vector, its whole history excluded); raises grpc.RpcError (INVALID_ARGUMENT for an unknown context id)
    with the server's message in .details()."""
    req = recommend_context_request(context_ids, k, model_name, request_type=PredictRequest)
    return _predict(host_port, req, timeout)


# ------------------------------------------------------------------------------------------------ titles (REST)
class RestError(Exception):
    """A REST call that failed: the server's {"error": ...} message, or why no answer came."""


def search_items(
    rest_host_port: str, query: str, limit: int = 20, model_name: str = "pinsage", timeout: float = 10.0
) -> Dict[str, list]:
    """The server's catalogue search (GET /v1/models/{m}/items?q=&limit=, serving/rest.py): {"item_ids",
    "titles", "attributes", "total"}, the exact id first, then titles starting with `query`, then ids or titles
    containing it (case-insensitive)."""
    import requests  # only a title query needs HTTP

    url = f"http://{rest_host_port}/v1/models/{requests.utils.quote(model_name, safe='')}/items"
    try:
        resp = requests.get(url, params={"q": query, "limit": limit}, timeout=timeout)
    except requests.RequestException as e:
        raise RestError(f"no answer from the REST API at {rest_host_port}: {e}") from None
    try:
        body = resp.json()
    except ValueError:
        raise RestError(f"{url}: HTTP {resp.status_code}, not JSON: {resp.text[:200]!r}") from None
    if resp.status_code != 200:
        raise RestError(f"{url}: HTTP {resp.status_code}: {body.get('error', body)}")
    return body


def resolve_title(
    rest_host_port: str, title: str, model_name: str = "pinsage", timeout: float = 10.0, candidates: int = 1000
) -> Tuple[str, str]:
    """(id, title) of the one item titled `title`: exactly, else ignoring case and runs of spaces. Raises
    LookupError naming the closest titles (the catalogue search's first five) when no item or several carry it."""
    found = search_items(rest_host_port, title, candidates, model_name, timeout)
    pairs = list(zip(found["item_ids"], found["titles"]))
    norm = lambda s: " ".join(s.split()).casefold()  # noqa: E731
    for same in (lambda t: t == title, lambda t: norm(t) == norm(title)):
        hits = [(i, t) for i, t in pairs if same(t)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            listed = ", ".join(f"{i} ({t!r})" for i, t in hits[:10])
            raise LookupError(f"{len(hits)} items are titled {title!r}: ids {listed}; ask by id")
    if not pairs:
        raise LookupError(f"no item titled {title!r}, and no title or id contains it")
    closest = "; ".join(f"{t!r} (id {i})" for i, t in pairs[:5])
    raise LookupError(f"no item titled {title!r}; the closest: {closest}")
