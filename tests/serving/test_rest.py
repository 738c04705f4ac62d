"""TF Serving's REST API on the server's REST port: every route, both request formats, b64, the error codes,
and the same answers as gRPC for the same request (the gRPC side is checked against brute force in
test_server.py; here numpy references stand in where a value is computable by hand)."""

import base64
import math
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import client, flags, json_tensors, rest
from serving.config import ServingConfig
from serving.errors import ServingError
from serving.model_config import PROMETHEUS_DEFAULT_PATH
from serving.server import serve
from tests.serving.rest_fixtures import make_rest_version

N = 3000


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("rest")
    emb, ids, titles = make_rest_version(root, N)
    config = ServingConfig(
        model_base_path=str(root / "serving_model"),
        port=0,
        poll_seconds=0.2,
        max_batch=64,
        rest_api_port=0,
        monitoring_path=PROMETHEUS_DEFAULT_PATH,  # what --monitoring_config_file with prometheus enabled gives
    )
    server = serve(config, block=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    session = requests.Session()
    yield dict(
        root=root,
        emb=emb,
        ids=ids,
        titles=titles,
        server=server.core,
        url=f"http://127.0.0.1:{server.rest.port}",
        http=session,
        stub=prediction_service_pb2_grpc.PredictionServiceStub(channel),
        models=model_service_pb2_grpc.ModelServiceStub(channel),
    )
    session.close()
    channel.close()
    server.stop()


def post(env, path, body, raw=False):
    r = env["http"].post(env["url"] + path, data=body if raw else None, json=None if raw else body, timeout=30)
    return r.status_code, r.json()


def get(env, path):
    r = env["http"].get(env["url"] + path, timeout=30)
    return r.status_code, r.json()


def grpc_predict(env, signature, version=None, label=None, **arrays):
    req = predict_pb2.PredictRequest()
    req.model_spec.name, req.model_spec.signature_name = "pinsage", signature
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    for name, a in arrays.items():
        req.inputs[name].CopyFrom(tf.make_tensor_proto(a))
    return client.decode(env["stub"].Predict(req, timeout=30))


def same_values(rest_value, grpc_value):
    """REST's JSON numbers must read back to exactly the gRPC float32s; strings and ints must be equal."""
    a, b = np.asarray(rest_value), np.asarray(grpc_value)
    assert a.shape == b.shape, (a.shape, b.shape)
    if b.dtype.kind == "f":
        np.testing.assert_array_equal(a.astype(np.float32), b)
    else:
        assert a.tolist() == b.tolist()


def test_predict_columnar_equals_grpc(env):
    for item_ids, k in ((["i1"], 10), (["i1", "i77", "i2999"], 5), (["i5"], 600)):  # fast path, batch, exact scan
        code, out = post(
            env,
            "/v1/models/pinsage:predict",
            {"signature_name": "related_items", "inputs": {"item_id": item_ids, "k": k}},
        )
        assert code == 200, out
        want = grpc_predict(env, "related_items", item_id=np.array(item_ids), k=np.int32(k))
        assert set(out["outputs"]) == {"item_ids", "scores", "titles"}
        for name in want:
            same_values(out["outputs"][name], want[name])
        assert len(out["outputs"]["item_ids"][0]) == k and item_ids[0] not in out["outputs"]["item_ids"][0]
    # serving_default is related_items; the scores are the dot products of the embeddings (hand reference)
    code, out = post(env, "/v1/models/pinsage:predict", {"inputs": {"item_id": ["i3"], "k": 4}})
    rows = [int(i[1:]) for i in out["outputs"]["item_ids"][0]]
    np.testing.assert_allclose(out["outputs"]["scores"][0], env["emb"][rows] @ env["emb"][3], atol=1e-5)
    assert out["outputs"]["titles"][0][0] == env["titles"][rows[0]]


def test_version_and_label_in_the_path(env):
    v = env["server"].current.version
    body = {"signature_name": "related_items", "inputs": {"item_id": ["i9"], "k": 3}}
    base = post(env, "/v1/models/pinsage:predict", body)[1]
    for path in (f"/v1/models/pinsage/versions/{v}:predict", "/v1/models/pinsage/labels/latest:predict"):
        code, out = post(env, path, body)
        assert code == 200 and out == base, (path, out)
    assert post(env, f"/v1/models/pinsage/versions/{v + 7}:predict", body) == (
        404,
        {"error": f"version {v + 7} of 'pinsage' is not available (available: [{v}])"},
    )
    code, out = post(env, "/v1/models/pinsage/labels/canary:predict", body)
    assert code == 404 and "label 'canary'" in out["error"]


def test_row_format_one_input_and_b64(env):
    """One named input: "instances" is the plain list; one output: "predictions" is the plain list of rows."""
    b64 = base64.b64encode(b"i42").decode()
    code, out = post(
        env, "/v1/models/pinsage:predict", {"signature_name": "embedding_of", "instances": ["i7", {"b64": b64}]}
    )
    assert code == 200, out
    np.testing.assert_array_equal(np.float32(out["predictions"]), env["emb"][[7, 42]])
    same_values(out["predictions"], grpc_predict(env, "embedding_of", item_id=np.array(["i7", "i42"]))["embedding"])
    code, out = post(env, "/v1/models/pinsage:predict", {"signature_name": "embedding_of", "inputs": ["i7"]})
    assert code == 200 and np.float32(out["outputs"]).tolist() == env["emb"][[7]].tolist()


def test_row_format_several_inputs_bytes_outputs_and_non_finite(env):
    rows = [{"item_id": "i1", "scale": 2}, {"item_id": {"b64": base64.b64encode(b"i2").decode()}, "scale": 0.5}]
    code, out = post(env, "/v1/models/pinsage:predict", {"signature_name": "scaled", "instances": rows})
    assert code == 200, out
    assert [set(p) for p in out["predictions"]] == [{"embedding", "item_id_bytes"}] * 2
    np.testing.assert_array_equal(np.float32(out["predictions"][0]["embedding"]), env["emb"][1] * np.float32(2))
    np.testing.assert_array_equal(np.float32(out["predictions"][1]["embedding"]), env["emb"][2] * np.float32(0.5))
    # an output named *_bytes comes back base64-encoded, as TF Serving writes binary strings
    assert [base64.b64decode(p["item_id_bytes"]["b64"]) for p in out["predictions"]] == [b"i1", b"i2"]
    want = grpc_predict(env, "scaled", item_id=np.array(["i1", "i2"]), scale=np.float32([2, 0.5]))
    same_values([p["embedding"] for p in out["predictions"]], want["embedding"])
    # columnar: an object per output; NaN and Infinity are valid JSON tokens here, both ways
    body = '{"signature_name": "scaled", "inputs": {"item_id": ["i3", "i4"], "scale": [NaN, Infinity]}}'
    code, out = post(env, "/v1/models/pinsage:predict", body, raw=True)
    assert code == 200, out
    assert all(math.isnan(x) for x in out["outputs"]["embedding"][0])
    assert [math.copysign(1, x) * math.isinf(x) for x in out["outputs"]["embedding"][1]] == list(np.sign(env["emb"][4]))


def test_row_format_scalar_input_is_refused_as_on_tf_serving(env):
    """Row format batches every input: related_items' scalar k becomes [1], which its signature refuses, the
    same error the gRPC side gives for that tensor."""
    code, out = post(
        env, "/v1/models/pinsage:predict", {"signature_name": "related_items", "instances": [{"item_id": "i1", "k": 3}]}
    )
    with pytest.raises(grpc.RpcError) as e:
        grpc_predict(env, "related_items", item_id=np.array(["i1"]), k=np.int32([3]))
    assert (code, out["error"]) == (400, e.value.details()) and "input 'k' must have shape []" in out["error"]


@pytest.mark.parametrize(
    "body, code, text",
    [
        (
            {"signature_name": "related_items", "inputs": {"item_id": ["i1", "ghost"], "k": 3}},
            400,
            "unknown item id(s): ['ghost']",
        ),
        ({"signature_name": "related_items", "inputs": {"item_id": ["i1"], "k": 0}}, 400, "k must be in [1, 2999]"),
        (
            {"signature_name": "related_items", "inputs": {"item_id": ["i1"], "k": 3.5}},
            400,
            "Type: Number is not of expected type: int32",
        ),
        (
            {"signature_name": "related_items", "inputs": {"item_id": [1], "k": 3}},
            400,
            "JSON Value: 1 Type: Number is not of expected type: string",
        ),
        (
            {"signature_name": "related_items", "inputs": {"item_id": ["i1"]}},
            400,
            "Missing named input: k in 'inputs' object.",
        ),
        (
            {"signature_name": "related_items", "inputs": {"item_id": [["i1"], ["i2", "i3"]], "k": 3}},
            400,
            "Encountered list at unexpected size: 2 at level: 1 expected size: 1",
        ),
        (
            {"signature_name": "related_items", "inputs": {"item_id": [{"b64": "!!"}], "k": 3}},
            400,
            "Unable to base64 decode",
        ),
        (
            {"signature_name": "related_items", "inputs": {"item_id": ["i1"], "k": {"b64": "AAAA"}}},
            400,
            "is not of expected type: int32",
        ),
        (
            {"signature_name": "related_items", "inputs": ["i1"]},
            400,
            "inputs is a plain value/list, but expecting an object",
        ),
        (
            {"signature_name": "scaled", "instances": ["i1"]},
            400,
            "instances is a plain list, but expecting list of objects",
        ),
        ({"signature_name": "scaled", "instances": [{"item_id": "i1"}]}, 400, "keys must be equal to: item_id,scale"),
        (
            {"signature_name": "scaled", "instances": [{"item_id": "i1", "scale": 1, "x": 2}]},
            400,
            "does not have named input: x",
        ),
        (
            {
                "signature_name": "scaled",
                "instances": [{"item_id": ["i1"], "scale": [1]}, {"item_id": ["i1", "i2"], "scale": [1, 1]}],
            },
            400,
            "Expecting tensor size: 1 but got: 2",
        ),
        ({"signature_name": "embedding_of", "instances": []}, 400, "No values in 'instances' array"),
        (
            {"signature_name": "embedding_of", "instances": ["i1"], "inputs": ["i1"]},
            400,
            "expecting only one of 'inputs' or 'instances'",
        ),
        ({"signature_name": "embedding_of"}, 400, "Missing 'inputs' or 'instances' key"),
        ({"signature_name": 3, "inputs": ["i1"]}, 400, "'signature_name' key must be a string value."),
        (
            {"signature_name": "nope", "inputs": ["i1"]},
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        (
            {"signature_name": "related_items", "inputs": {"item_id": [f"i{j}" for j in range(65)], "k": 1}},
            400,
            "exceeds max_batch 64",
        ),
    ],
)
def test_predict_errors(env, body, code, text):
    got, out = post(env, "/v1/models/pinsage:predict", body)
    assert got == code and text in out["error"], out
    assert post(env, "/v1/models/pinsage:predict", {"inputs": {"item_id": ["i1"], "k": 1}})[0] == 200  # still up


def test_errors_match_grpc_status_codes(env):
    """The same bad request through both APIs: TF Serving's HTTP status for the gRPC code, the same message."""
    cases = [
        (dict(item_id=np.array(["i1", "ghost"]), k=np.int32(3)), {"item_id": ["i1", "ghost"], "k": 3}),
        (dict(item_id=np.array(["i1"]), k=np.int32(3000)), {"item_id": ["i1"], "k": 3000}),
    ]
    for arrays, inputs in cases:
        with pytest.raises(grpc.RpcError) as e:
            grpc_predict(env, "related_items", **arrays)
        code, out = post(env, "/v1/models/pinsage:predict", {"signature_name": "related_items", "inputs": inputs})
        assert (code, out["error"]) == (rest.HTTP_STATUS[e.value.code()], e.value.details())
    # an error inside the SavedModel itself (unknown id in a generic signature's lookup)
    with pytest.raises(grpc.RpcError) as e:
        grpc_predict(env, "embedding_of", item_id=np.array(["ghost"]))
    code, out = post(env, "/v1/models/pinsage:predict", {"signature_name": "embedding_of", "instances": ["ghost"]})
    assert (code, out["error"]) == (rest.HTTP_STATUS[e.value.code()], e.value.details()) and code == 400


def test_request_errors_outside_the_body(env):
    code, out = post(env, "/v1/models/other:predict", {"inputs": {"item_id": ["i1"], "k": 1}})
    assert code == 404 and "model 'other' not found" in out["error"]
    assert post(env, "/v1/models/pinsage:predict", b"{not json", raw=True)[0] == 400
    code, out = post(env, "/v1/models/pinsage:predict", b"", raw=True)
    assert (code, out) == (400, {"error": "JSON Parse error: The document is empty"})
    code, out = post(env, "/v1/models/pinsage:predict", b"[1, 2]", raw=True)
    assert code == 400 and "Is not object" in out["error"]
    code, out = post(env, "/v1/models/pinsage:classify", {"examples": []})
    assert code == 501 and "classify is not served here" in out["error"]
    code, out = post(env, "/v1/models/pinsage:explain", {})
    assert (code, out) == (400, {"error": "Malformed request: POST /v1/models/pinsage:explain"})
    code, out = get(env, "/v1/models")
    assert (code, out) == (400, {"error": "Missing model name in request."})
    code, out = get(env, "/no/such/page")
    assert code == 404 and "error" in out
    big = b'{"inputs": {"item_id": ["' + b"x" * (rest.MAX_BODY_BYTES + 10) + b'"], "k": 1}}'
    r = env["http"].post(env["url"] + "/v1/models/pinsage:predict", data=big, timeout=60)
    assert r.status_code == 413 and "error" in r.json()


def test_status_and_metadata_equal_grpc(env):
    v = env["server"].current.version
    sreq = get_model_status_pb2.GetModelStatusRequest()
    sreq.model_spec.name = "pinsage"
    want = json_format.MessageToDict(
        env["models"].GetModelStatus(sreq, timeout=10), including_default_value_fields=True
    )
    for path in ("/v1/models/pinsage", f"/v1/models/pinsage/versions/{v}", "/V1/Models/pinsage"):
        code, out = get(env, path)
        assert code == 200 and out == want, (path, out)
    # TF Serving's own JSON for one healthy version (g3doc/api_rest.md), field for field
    assert out == {
        "model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert get(env, f"/v1/models/pinsage/versions/{v + 1}")[0] == 404
    assert get(env, "/v1/models/other")[0] == 404

    mreq = get_model_metadata_pb2.GetModelMetadataRequest()
    mreq.model_spec.name = "pinsage"
    mreq.metadata_field.append("signature_def")
    resp = env["stub"].GetModelMetadata(mreq, timeout=10)
    sigs = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sigs)
    opts = dict(including_default_value_fields=True, preserving_proto_field_name=True)
    for path in (
        "/v1/models/pinsage/metadata",
        f"/v1/models/pinsage/versions/{v}/metadata",
        "/v1/models/pinsage/labels/latest/metadata",
    ):
        code, out = get(env, path)
        assert code == 200, out
        assert out["model_spec"] == {"name": "pinsage", "signature_name": "", "version": str(v)}
        assert out["metadata"]["signature_def"] == json_format.MessageToDict(sigs, **opts)
    related = out["metadata"]["signature_def"]["signature_def"]["related_items"]
    assert related["inputs"]["item_id"]["dtype"] == "DT_STRING"
    assert related["inputs"]["item_id"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert {"related_items", "serving_default", "embedding_of", "scaled"} <= set(
        out["metadata"]["signature_def"]["signature_def"]
    )
    code, out = get(env, "/v1/models/pinsage/labels/canary/metadata")
    assert code == 404 and "canary" in out["error"]


def test_items_search_page_and_models(env):
    titles, ids = env["titles"], env["ids"]
    code, out = get(env, "/v1/models/pinsage/items?q=golden%20canyon&limit=5")
    assert code == 200 and out["total"] == N and out["model_spec"]["version"] == str(env["server"].current.version)
    want = [j for j, t in enumerate(titles) if t.lower().startswith("the golden canyon")][:5]  # plain reference
    assert out["item_ids"] == [ids[j] for j in want] and out["titles"] == [titles[j] for j in want]
    # the exact id first, then titles starting with the text, then anywhere in id or title
    out = get(env, "/v1/models/pinsage/items?q=i12&limit=3")[1]
    assert out["item_ids"] == ["i12", "i120", "i121"]
    out = get(env, "/v1/models/pinsage/items?q=No. 1234 (&limit=50")[1]
    assert out["item_ids"] == ["i1234"]
    assert get(env, "/v1/models/pinsage/items?q=")[1]["item_ids"] == ids[:20]
    assert get(env, "/v1/models/pinsage/items?q=zzzz")[1]["item_ids"] == []
    assert get(env, "/v1/models/pinsage/items?limit=0")[0] == 400
    assert get(env, "/v1/models/other/items")[0] == 404
    assert get(env, "/models") == (200, {"models": ["pinsage"]})
    page = env["http"].get(env["url"] + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"] and "app.js" in page.text
    assert env["http"].get(env["url"] + "/static/app.js", timeout=10).status_code == 200


def counter(text, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if (
            line.startswith("pinsage_serving_requests_total{")
            and line.split("}")[0][len("pinsage_serving_requests_total{") :] == want
        ):
            return float(line.split()[-1])
    return 0.0


def test_prometheus_metrics_count_rest_requests(env):
    path = "/monitoring/prometheus/metrics"
    ok = dict(api="rest", model="pinsage", signature="related_items", status="OK")
    nf = dict(api="rest", model="pinsage", signature="", status="NOT_FOUND")
    before = env["http"].get(env["url"] + path, timeout=10).text
    for _ in range(3):
        post(
            env,
            "/v1/models/pinsage:predict",
            {"signature_name": "related_items", "inputs": {"item_id": ["i1"], "k": 2}},
        )
    get(env, "/v1/models/pinsage/versions/12345")
    r = env["http"].get(env["url"] + path, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert counter(r.text, **ok) - counter(before, **ok) == 3
    assert counter(r.text, **nf) - counter(before, **nf) == 1
    assert "pinsage_serving_request_latency_seconds_bucket" in r.text
    # names a caller makes up are not label values (the registry would grow without bound)
    post(env, "/v1/models/ghost123:predict", {"inputs": []})
    post(env, "/v1/models/pinsage:predict", {"signature_name": "nope123", "inputs": []})
    text = env["http"].get(env["url"] + path, timeout=10).text
    assert "ghost123" not in text and "nope123" not in text
    assert counter(text, api="rest", model="", signature="", status="NOT_FOUND") >= 1


def test_new_version_is_answered_by_rest(env):
    before = env["server"].current.version
    body = {"signature_name": "related_items", "inputs": {"item_id": ["i0"], "k": 1}}
    assert post(env, "/v1/models/pinsage:predict", body)[1]["outputs"]["titles"][0][0].endswith("(v1)")
    make_rest_version(env["root"], N, seed=12, tag="v2")
    deadline = time.time() + 60
    while env["server"].current.version == before and time.time() < deadline:
        time.sleep(0.1)
    code, out = post(env, "/v1/models/pinsage:predict", body)
    assert code == 200 and out["outputs"]["titles"][0][0].endswith("(v2)")
    assert get(env, "/v1/models/pinsage/items?q=i0&limit=1")[1]["titles"][0].endswith("(v2)")


def test_rest_flag():
    import argparse

    args = flags.add_serve_arguments(argparse.ArgumentParser()).parse_args(["--model-base-path", "m"])
    assert args.rest_api_port == flags.DEFAULTS.rest_api_port == 8501
    args = flags.add_serve_arguments(argparse.ArgumentParser()).parse_args(
        ["--model-base-path", "m", "--rest_api_port", "0"]
    )
    assert args.rest_api_port == 0  # off: config_from_args passes None
    from serving.server import config_from_args

    assert config_from_args(args).rest_api_port is None
    assert flags.DEFAULTS.monitoring_path is None  # enabled by the config file


def test_rest_port_taken_is_a_clear_error_and_nothing_is_left_running(env):
    import socket

    with socket.socket(socket.AF_INET6) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        held.bind(("::", 0))
        held.listen()
        with pytest.raises(OSError, match=f"cannot bind REST port {held.getsockname()[1]}"):
            config = ServingConfig(str(env["root"] / "serving_model"), port=0, rest_api_port=held.getsockname()[1])
            serve(config, block=False)
    # the server of the module's fixture is untouched
    assert post(env, "/v1/models/pinsage:predict", {"inputs": {"item_id": ["i1"], "k": 1}})[0] == 200


def test_json_tensor_rules_without_a_server():
    """The JSON <-> TensorProto rules on their own, against tf.make_tensor_proto / tf.make_ndarray."""
    from tensorflow.core.framework import types_pb2 as T

    t = json_tensors.json_to_tensor([[1, 2.5], [3, -4]], T.DT_FLOAT)
    np.testing.assert_array_equal(tf.make_ndarray(t), np.float32([[1, 2.5], [3, -4]]))
    t = json_tensors.json_to_tensor([[True], [False]], T.DT_BOOL)
    assert tf.make_ndarray(t).tolist() == [[True], [False]]
    assert tf.make_ndarray(json_tensors.json_to_tensor(7, T.DT_INT64)).tolist() == 7  # a scalar: no dimensions
    assert tf.make_ndarray(json_tensors.json_to_tensor([], T.DT_STRING)).shape == (0,)
    for val, dtype in ((2**31, T.DT_INT32), (True, T.DT_INT32), (1.0, T.DT_INT64), (-1, T.DT_UINT32), (1, T.DT_BOOL)):
        with pytest.raises(ServingError, match="is not of expected type"):
            json_tensors.json_to_tensor(val, dtype)
    with pytest.raises(ServingError) as e:
        json_tensors.json_to_tensor([1], T.DT_COMPLEX64)
    assert e.value.code == grpc.StatusCode.UNIMPLEMENTED and rest.HTTP_STATUS[e.value.code] == 501
    with pytest.raises(ServingError, match="found at incorrect level: 2"):
        json_tensors.json_to_tensor([[1], 2], T.DT_FLOAT)
    assert json_tensors.json_to_tensor([{"b64": "aGk"}], T.DT_STRING).string_val == [b"hi"]  # padding optional (absl)
    # outputs: float32 with the fewest digits that read back exactly; the compact one-value form expanded
    out = predict_pb2.PredictResponse()
    out.outputs["s"].CopyFrom(tf.make_tensor_proto(np.float32([0.1, 1 / 3, 1e-8, 3])))
    out.outputs["c"].CopyFrom(tf.make_tensor_proto(np.float32(2.5), shape=[4]))  # float_val: [2.5]
    out.outputs["d"].CopyFrom(tf.make_tensor_proto(np.float64([0.1, 2])))
    out.outputs["n_bytes"].CopyFrom(tf.make_tensor_proto(np.array([b"\xff\x00", b"ok"], dtype=object)))
    out.outputs["i"].CopyFrom(tf.make_tensor_proto(np.int64([2**40, -1])))
    text = json_tensors.dumps(json_tensors.predict_response_json(out, "columnar")).decode()
    assert '"s":[0.1,0.33333334,1e-08,3.0]' in text and '"c":[2.5,2.5,2.5,2.5]' in text, text
    assert '"d":[0.1,2.0]' in text and '"i":[1099511627776,-1]' in text
    assert '"n_bytes":[{"b64":"/wA="},{"b64":"b2s="}]' in text
    rows = predict_pb2.PredictResponse()
    rows.outputs["s"].CopyFrom(tf.make_tensor_proto(np.float32([[0.1, 1 / 3], [2, 3]])))
    rows.outputs["n_bytes"].CopyFrom(tf.make_tensor_proto(np.array([b"\xff\x00", b"ok"], dtype=object)))
    assert json_tensors.predict_response_json(rows, "row")["predictions"] == [
        {"s": [0.1, 0.33333334], "n_bytes": {"b64": "/wA="}},
        {"s": [2.0, 3.0], "n_bytes": {"b64": "b2s="}},
    ]
    rows.outputs["x"].CopyFrom(tf.make_tensor_proto(np.float32([1, 2, 3])))
    with pytest.raises(ServingError, match="inconsistent batch size"):
        json_tensors.predict_response_json(rows, "row")
    del rows.outputs["x"]
    del rows.outputs["n_bytes"]
    assert json_tensors.predict_response_json(rows, "row") == {"predictions": [[0.1, 0.33333334], [2.0, 3.0]]}
