"""TensorProto <-> numpy for the request core: by hand for the dtypes requests and responses mostly carry, through
TensorFlow for the rest; inputs checked against a SignatureDef so a mismatch is INVALID_ARGUMENT, not a crash."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.errors import invalid


def fill_proto(proto: tensor_pb2.TensorProto, arr: np.ndarray) -> None:
    """numpy -> TensorProto in place. Strings and float32 by hand: tf.make_tensor_proto is a sizeable share of a
    one-item related_items request."""
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


def shape_of(spec: meta_graph_pb2.TensorInfo):
    """A SignatureDef input's shape (-1 for an unknown size); None for an unknown rank."""
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
