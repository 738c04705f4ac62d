"""JSON <-> TensorProto for the REST API, by TF Serving's rules (util/json_tensor.cc), re-implemented because no
Python library does them: the dtype of every input comes from the signature (so 1 is an int32 or a float by what
the model takes), lists must be dense, a DT_STRING value may be {"b64": "..."}, outputs whose names end in `_bytes`
are written as {"b64": ...}, NaN / Infinity are accepted and written, floats are written with the fewest digits
that read back to the same float32. Row format ("instances") batches every input along a new 0-th dimension, so a
signature with a scalar input (related_items' `k`) needs the columnar format ("inputs"), exactly as on TF Serving.
One extension: a history signature (inputs history_ids / history_weights) takes ragged histories, padded here,
and in the row format the scalar k given in every instance with one value; so does recommend_context
(instances [{"context_id": "c1", "k": 10}, ...]).
Error messages are TF Serving's, so a client sees the same text from either server."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Callable, Dict, List, Sequence

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from serving.errors import ServingError, invalid
from serving.tensors import to_numpy

__all__ = [
    "dumps",
    "fill_predict_request",
    "json_to_tensor",
    "metadata_json",
    "parse_json",
    "predict_response_json",
    "status_json",
    "tensor_to_json",
]
C = grpc.StatusCode


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


# a history signature's ragged inputs and their padding (the SavedModel reads "" as no item, weight 0 as no weight)
HISTORY_PADDING = {"history_ids": "", "history_weights": 0.0}
# the signatures whose instances may each repeat the scalar k: the history ones and recommend_context
PER_INSTANCE_K = (*HISTORY_PADDING, "context_id")


def _pad(rows, fill):
    """A list of lists made rectangular with `fill` (anything else is left for the dense-list check)."""
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        return rows
    width = max((len(r) for r in rows), default=0)
    return [r + [fill] * (width - len(r)) for r in rows]


def _history_rows_to_tensors(instances: list, inputs: Dict[str, int]) -> Dict[str, tensor_pb2.TensorProto]:
    """Row format for a history signature or recommend_context (this server's extension): ragged histories padded
    to the longest, and the scalar k given in every instance with one value (the row format batches every input
    otherwise)."""
    if not all(_is_object(r) for r in instances):
        name = "context_id" if "context_id" in inputs else "history_ids"
        raise invalid(f'instances of this signature must be objects {{"{name}": ..., "k": ...}}')
    rows = [dict(r) for r in instances]
    ks = {json.dumps(r.pop("k", None)) for r in rows} if "k" in inputs else set()
    if len(ks) > 1 or "null" in ks:
        raise invalid("every instance must give 'k', with the same value (k is one scalar for the request)")
    for name, fill in HISTORY_PADDING.items():
        if name in inputs and all(isinstance(r.get(name), list) for r in rows):
            for r, padded in zip(rows, _pad([r[name] for r in rows], fill)):
                r[name] = padded
    out = _rows_to_tensors(rows, {n: d for n, d in inputs.items() if n != "k"})
    if ks:
        out["k"] = json_to_tensor(json.loads(ks.pop()), inputs["k"])
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
            history = any(n in inputs for n in PER_INSTANCE_K)
            tensors, fmt = (_history_rows_to_tensors if history else _rows_to_tensors)(rows, inputs), "row"
        elif "inputs" in doc:
            cols = doc["inputs"]
            if _is_object(cols):  # ragged histories in columns too
                cols = {n: _pad(v, HISTORY_PADDING[n]) if n in HISTORY_PADDING else v for n, v in cols.items()}
            tensors, fmt = _columns_to_tensors(cols, inputs), "columnar"
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
