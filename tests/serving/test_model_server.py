"""A server from --model_config_file: two models in one server, routed by model_spec.name; latest-2 serving two
versions at once; version labels routing requests; the config re-read without a restart (a label moved, a model
added and one removed) while clients query it; GetModelStatus states; warmup from the export's requests; the
gRPC request metrics; embed_item's input checks."""

import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from modules.export import WARMUP_FILE
from pipeline.data import datasets
from serving import json_tensors, metrics
from serving.config import ServingConfig
from serving.server import serve
from tests.serving.test_server import D, N, embed_request, make_version, request

State = get_model_status_pb2.ModelVersionStatus
POLL = 0.2


def config_text(models):
    """models: [(name, base_path, policy text, {label: version})] -> a ModelServerConfig in text format."""
    out = ["model_config_list {"]
    for name, base, policy, labels in models:
        out.append(f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow"')
        if policy:
            out.append(f"    model_version_policy {{ {policy} }}")
        out += [f'    version_labels {{ key: "{k}" value: {v} }}' for k, v in labels.items()]
        out.append("  }")
    return "\n".join(out + ["}"])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    embs = {t: datasets.clustered_vectors(N, D, clusters=30, seed=s) for t, s in (("a1", 41), ("a2", 42), ("b1", 43))}
    a = [make_version(root / "a", embs[t], t) for t in ("a1", "a2")]  # pinsage versions 1, 2
    b = make_version(root / "b", embs["b1"], "b1")  # the second model's version 1
    cfg = root / "models.config"
    pinsage_dir, other_dir = os.path.dirname(a[0]), os.path.dirname(b)
    cfg.write_text(config_text([("pinsage", pinsage_dir, "latest { num_versions: 2 }", {"stable": 1, "canary": 2})]))
    config = ServingConfig(
        model_config_file=str(cfg),
        port=0,
        model_config_file_poll_wait_seconds=POLL,
        poll_seconds=POLL,
        rest_api_port=None,
    )
    server = serve(config, block=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield dict(
        root=root,
        embs=embs,
        cfg=cfg,
        server=server.core,
        pinsage_dir=pinsage_dir,
        other_dir=other_dir,
        stub=prediction_service_pb2_grpc.PredictionServiceStub(channel),
        models=model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()
    server.stop()


def predict(env, model="pinsage", version=None, label=None, row=5, k=5):
    req = request([f"i{row}"], k, model)
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    return env["stub"].Predict(req, timeout=10)


def title_tag(resp):
    return resp.outputs["titles"].string_val[0].decode().split(" ")[0]


def status(env, model="pinsage"):
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = model
    return {s.version: s.state for s in env["models"].GetModelStatus(req, timeout=10).model_version_status}


def test_latest_two_versions_and_labels(env):
    assert status(env) == {1: State.AVAILABLE, 2: State.AVAILABLE}
    assert title_tag(predict(env)) == "a2"  # no version named: the newest
    assert title_tag(predict(env, version=1)) == "a1"
    assert title_tag(predict(env, label="stable")) == "a1"
    resp = predict(env, label="canary")
    assert title_tag(resp) == "a2" and resp.model_spec.version.value == 2
    resp = predict(env, version=1, row=7, k=10)
    got = [int(i.decode()[1:]) for i in resp.outputs["item_ids"].string_val]
    scores = tf.make_ndarray(resp.outputs["scores"])[0]
    a1, a2 = env["embs"]["a1"], env["embs"]["a2"]
    # version 1 searched with its own vectors: the scores are a1's dot products (exact after ScaNN's re-ranking),
    # best first; which ten an approximate index returns varies between builds (ScaNN's training is not
    # deterministic), so its recall is tested over many queries in tests/modules/test_index.py
    np.testing.assert_allclose(scores, a1[got] @ a1[7], atol=5e-4)
    assert not np.allclose(scores, a2[got] @ a2[7], atol=5e-4)
    assert np.all(np.diff(scores) <= 5e-4) and 7 not in got
    with pytest.raises(grpc.RpcError) as e:
        predict(env, label="nightly")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "label 'nightly'" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        predict(env, model="other")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "model 'other' not found" in e.value.details()


def test_config_reload_without_restart_under_load(env):
    """Moves the canary label to version 1, adds model 'other', then removes it, with clients on 'pinsage'."""
    stop, results = threading.Event(), []

    def client(seed):
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                results.append(title_tag(predict(env, row=int(rng.integers(N)))))
            except grpc.RpcError as e:
                results.append(f"error {e.code()}: {e.details()}")

    threads = [threading.Thread(target=client, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        env["cfg"].write_text(
            config_text(
                [
                    ("pinsage", env["pinsage_dir"], "latest { num_versions: 2 }", {"stable": 2, "canary": 1}),
                    ("other", env["other_dir"], "", {}),
                ]
            )
        )
        deadline = time.time() + 30
        while "other" not in env["server"].models or env["server"].models["other"].newest is None:
            assert time.time() < deadline
            time.sleep(0.05)
        assert title_tag(predict(env, model="other")) == "b1"
        assert title_tag(predict(env, label="canary")) == "a1" and title_tag(predict(env, label="stable")) == "a2"
        env["cfg"].write_text("model_config_list { config { name: 'broken' } }")  # kept out, logged
        time.sleep(3 * POLL)
        assert sorted(env["server"].models) == ["other", "pinsage"]
        env["cfg"].write_text(config_text([("pinsage", env["pinsage_dir"], "", {})]))  # latest 1, 'other' gone
        while "other" in env["server"].models or status(env).get(1) != State.END:
            assert time.time() < deadline
            time.sleep(0.05)
        with pytest.raises(grpc.RpcError) as e:
            predict(env, model="other")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert status(env) == {1: State.END, 2: State.AVAILABLE}
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert results and all(r == "a2" for r in results), [r for r in results if r != "a2"][:3]


def test_warmup_requests_replayed_and_a_failing_one_fails_the_load(env):
    path = os.path.join(env["pinsage_dir"], "2", WARMUP_FILE)
    records = [
        prediction_log_pb2.PredictionLog.FromString(r) for r in tf.data.TFRecordDataset(path).as_numpy_iterator()
    ]
    assert len(records) == 8 and all(
        r.predict_log.request.model_spec.signature_name == "related_items" for r in records
    )
    ids = [tf.make_ndarray(r.predict_log.request.inputs["item_id"])[0].decode() for r in records]
    assert ids[0] == "i0" and ids[-1] == f"i{N - 1}"  # real ids of the catalogue, spread over it
    server = env["server"]
    assert server.warmup(server.current) == 8
    # a version whose warmup request names an unknown item never becomes AVAILABLE; version 2 keeps serving
    bad = os.path.join(env["pinsage_dir"], "3")
    shutil.copytree(os.path.join(env["pinsage_dir"], "2"), os.path.join(env["pinsage_dir"], ".tmp-0-3"))
    req = records[0].predict_log.request
    req.inputs["item_id"].CopyFrom(tf.make_tensor_proto(["ghost"]))
    with tf.io.TFRecordWriter(os.path.join(env["pinsage_dir"], ".tmp-0-3", WARMUP_FILE)) as w:
        w.write(records[0].SerializeToString())
    os.rename(os.path.join(env["pinsage_dir"], ".tmp-0-3"), bad)
    deadline = time.time() + 30
    while 3 not in server.failed:
        assert time.time() < deadline
        time.sleep(0.05)
    assert "unknown item id(s): ['ghost']" in server.failed[3] and server.current.version == 2
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "pinsage"
    req.model_spec.version.value = 3
    (st,) = env["models"].GetModelStatus(req, timeout=10).model_version_status
    assert st.state == State.END and st.status.error_code != 0 and "ghost" in st.status.error_message
    # the REST JSON of the model's statuses (GET /v1/models/pinsage), as TF Serving prints it: every version
    # with a status block, OK for a healthy one, the load error for a failed one
    req.model_spec.ClearField("version")
    by_version = {s["version"]: s for s in json_tensors.status_json(server.status(req))["model_version_status"]}
    assert by_version["2"] == {
        "version": "2",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    assert by_version["3"] == {
        "version": "3",
        "state": "END",
        "status": {"error_code": "UNKNOWN", "error_message": server.failed[3]},
    }
    shutil.rmtree(bad)


def sample(name, labels):
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_grpc_requests_are_counted(env):
    ok = dict(api="grpc", model="pinsage", signature="related_items", status="OK")
    bad = dict(ok, status="INVALID_ARGUMENT")
    unknown = dict(api="grpc", model="_unknown", signature="_unknown", status="NOT_FOUND")
    lat = dict(api="grpc", model="pinsage", signature="related_items")
    before = [sample("pinsage_serving_requests_total", x) for x in (ok, bad, unknown)]
    lat_before = sample("pinsage_serving_request_latency_seconds_count", lat)
    for r in range(7):
        predict(env, row=r)
    for model in ("nope", "made-up"):
        with pytest.raises(grpc.RpcError):
            predict(env, model=model)
    with pytest.raises(grpc.RpcError):
        env["stub"].Predict(request(["ghost"], 3), timeout=10)
    after = [sample("pinsage_serving_requests_total", x) for x in (ok, bad, unknown)]
    assert [a - b for a, b in zip(after, before)] == [7, 1, 2]
    assert sample("pinsage_serving_request_latency_seconds_count", lat) - lat_before == 8
    assert sample("pinsage_serving_loaded_versions", {"model": "pinsage"}) == len(
        env["server"].models["pinsage"].available
    )
    text = metrics.prometheus_text().decode()
    assert 'pinsage_serving_requests_total{api="grpc",model="pinsage",signature="related_items",status="OK"}' in text
    assert "made-up" not in text  # client-chosen names do not become label values


def test_embed_item_input_checks(env):
    IA = grpc.StatusCode.INVALID_ARGUMENT
    cases = [
        (embed_request([["i1", "i2"]], [[0.5, np.nan]], [1.0]), "input 'neighbor_weights' has a non-finite value"),
        (embed_request([["i1", "i2"]], [[0.5, np.inf]], [1.0]), "input 'neighbor_weights' has a non-finite value"),
        (embed_request([["i1", "i2"]], [[0.5, 0.5]], [np.nan]), "input 'year' has a non-finite value"),
        (embed_request([["i1", "i2"]], [[0.5, 0.5]], [-np.inf]), "input 'year' has a non-finite value"),
        (embed_request([["i1", "i2"]], [[0.7, -0.2]], [1.0]), "input 'neighbor_weights' must be >= 0, got -0.2"),
        (
            embed_request([["i1", "i2"], ["i3", "i4"]], [[0.5, 0.5], [0.5, 0.5]], [1.0]),
            "'neighbor_ids' has 2 rows, 'year' has 1",
        ),
        (
            embed_request([["i1", "i2"]], [[0.5, 0.5], [0.5, 0.5]], [1.0, 2.0]),
            "'neighbor_ids' has 1 rows, 'neighbor_weights' has 2, 'year' has 2",
        ),
    ]
    for req, text in cases:
        req.model_spec.name = "pinsage"
        with pytest.raises(grpc.RpcError) as e:
            env["stub"].Predict(req, timeout=10)
        assert e.value.code() == IA and text in e.value.details(), e.value.details()
    ok = embed_request([["i1", "i2"]], [[0.5, 0.0]], [1.0])  # zero weights are fine
    assert len(env["stub"].Predict(ok, timeout=10).outputs["embedding"].float_val or [1]) > 0
