"""A TF Serving client for `pinsage query`: only the standard stubs and tf.make_tensor_proto, so it works the
same against serving/server.py and the real tensorflow/serving container."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from schema.versions import RECOMMEND, RECOMMEND_CONTEXT, RECOMMEND_WEIGHTED, RELATED_ITEMS


def related_request(
    item_ids: Sequence[str], k: int, model_name: str = "pinsage", signature_name: str = RELATED_ITEMS
) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model_name
    req.model_spec.signature_name = signature_name
    req.inputs["item_id"].CopyFrom(tf.make_tensor_proto([str(i) for i in item_ids], dtype=tf.string))
    req.inputs["k"].CopyFrom(tf.make_tensor_proto(k, dtype=tf.int32))
    return req


def recommend_request(
    histories: Sequence[Sequence[str]],
    k: int,
    model_name: str = "pinsage",
    weights: Optional[Sequence[Sequence[float]]] = None,
) -> predict_pb2.PredictRequest:
    """recommend (or recommend_weighted with `weights`) for ragged histories, padded with "" (weight 0) to
    [N, L] as a TF Serving request must be rectangular."""
    width = max((len(h) for h in histories), default=0)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model_name
    req.model_spec.signature_name = RECOMMEND if weights is None else RECOMMEND_WEIGHTED
    ids = [[str(i) for i in h] + [""] * (width - len(h)) for h in histories]
    req.inputs["history_ids"].CopyFrom(tf.make_tensor_proto(ids, dtype=tf.string, shape=[len(ids), width]))
    if weights is not None:
        w = [[float(x) for x in row] + [0.0] * (width - len(row)) for row in weights]
        req.inputs["history_weights"].CopyFrom(tf.make_tensor_proto(w, dtype=tf.float32, shape=[len(w), width]))
    req.inputs["k"].CopyFrom(tf.make_tensor_proto(k, dtype=tf.int32))
    return req


def recommend_context_request(
    context_ids: Sequence[str], k: int, model_name: str = "pinsage"
) -> predict_pb2.PredictRequest:
    """recommend_context for known contexts (their precomputed query vectors)."""
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model_name
    req.model_spec.signature_name = RECOMMEND_CONTEXT
    req.inputs["context_id"].CopyFrom(tf.make_tensor_proto([str(c) for c in context_ids], dtype=tf.string))
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


def recommend(
    host_port: str, histories: Sequence[Sequence[str]], k: int, model_name: str = "pinsage", timeout: float = 10.0
) -> Dict[str, List[list]]:
    """{"item_ids", "scores", "titles", "history_used"} per history from the `recommend` signature (the history's
    own items excluded); raises grpc.RpcError with the server's message in .details()."""
    with grpc.insecure_channel(host_port) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return decode(stub.Predict(recommend_request(histories, k, model_name), timeout=timeout))


def recommend_context(
    host_port: str, context_ids: Sequence[str], k: int, model_name: str = "pinsage", timeout: float = 10.0
) -> Dict[str, List[list]]:
    """{"item_ids", "scores", "titles", "history_used"} per known context from `recommend_context` (its stored
    query vector, its whole history excluded); raises grpc.RpcError (INVALID_ARGUMENT for an unknown context id)
    with the server's message in .details()."""
    with grpc.insecure_channel(host_port) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return decode(stub.Predict(recommend_context_request(context_ids, k, model_name), timeout=timeout))
