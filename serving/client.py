"""A TF Serving client for `pinsage query`: only the standard stubs and tf.make_tensor_proto, so it works the
same against serving/server.py and the real tensorflow/serving container."""

from __future__ import annotations

from typing import Dict, List, Sequence

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from schema.versions import RELATED_ITEMS


def related_request(
    item_ids: Sequence[str], k: int, model_name: str = "pinsage", signature_name: str = RELATED_ITEMS
) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model_name
    req.model_spec.signature_name = signature_name
    req.inputs["item_id"].CopyFrom(tf.make_tensor_proto([str(i) for i in item_ids], dtype=tf.string))
    req.inputs["k"].CopyFrom(tf.make_tensor_proto(k, dtype=tf.int32))
    return req


def decode(response: predict_pb2.PredictResponse) -> Dict[str, list]:
    """Output tensors as nested Python lists, strings decoded."""
    out = {}
    for name, proto in response.outputs.items():
        arr = tf.make_ndarray(proto)
        out[name] = arr.astype(str).tolist() if arr.dtype == object else arr.tolist()
    return out


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
    with grpc.insecure_channel(host_port) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        req = related_request(item_ids, k, model_name, signature_name)
        return decode(stub.Predict(req, timeout=timeout))
