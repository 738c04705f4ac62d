"""recommend over the server: the ScaNN path (the tower in the server process, over-fetch, the history excluded)
equals the SavedModel's stock-op signature on a small index, on gRPC and REST (ragged `instances`); padding,
unknown ids and every error case; a version without a tower answers NOT_FOUND for it."""

import re

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from modules import index as ib
from modules.export import export_serving_model
from serving import client
from serving.config import ServingConfig
from serving.core import ModelServer
from serving.errors import ServingError
from serving.server import serve
from tests.serving.recommend_checks import assert_same, expect_invalid, rest_predict
from tests.serving.rest_fixtures import make_recommend_version

N = 600
HISTORIES = [["i3", "i40", "i41", "i7", "i90", "i5"], ["i11"], ["i60", "nope", "i61"]]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("recommend")
    emb, ids, tower = make_recommend_version(root, N)
    config = ServingConfig(model_base_path=str(root / "serving_model"), port=0, poll_seconds=0.2, rest_api_port=0)
    server = serve(config, block=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield dict(
        root=root,
        port=server.port,
        ids=ids,
        core=server.core,
        url=f"http://127.0.0.1:{server.rest.port}",
        stub=prediction_service_pb2_grpc.PredictionServiceStub(channel),
        saved_model=tf.saved_model.load(str(root / "serving_model" / "pinsage" / "1")),
    )
    channel.close()
    server.stop()


def stock(saved_model, histories, k, weights=None):
    """The SavedModel's own recommend signature (what stock TF Serving answers) on padded histories."""
    req = client.recommend_request(histories, k, weights=weights)
    args = {n: tf.make_ndarray(t) for n, t in req.inputs.items()}
    out = saved_model.signatures[req.model_spec.signature_name](**{n: tf.constant(a) for n, a in args.items()})
    return {n: t.numpy() for n, t in out.items()}


def served(env, histories, k, weights=None):
    return client.decode(env["stub"].Predict(client.recommend_request(histories, k, weights=weights), timeout=30))


def test_grpc_recommend_equals_the_stock_op_signature(env):
    for k in (1, 10, 50):
        got, want = served(env, HISTORIES, k), stock(env["saved_model"], HISTORIES, k)
        assert_same(got, want)
        for row, hist in zip(got["item_ids"], HISTORIES):
            assert not set(row) & set(hist)  # the history's own items excluded
    assert got["history_used"] == [6, 1, 2]  # the unknown id skipped and not counted
    w = [[0.5, 1, 2, 0, 1, 3], [2.0], [1, 1, 0.1]]
    assert_same(served(env, HISTORIES, 10, w), stock(env["saved_model"], HISTORIES, 10, w))


def test_padded_history_equals_unpadded(env):
    plain = served(env, [["i3", "i9"]], 10)
    req = client.recommend_request([["", "i3", "x", "", "i9", ""]], 10)
    padded = client.decode(env["stub"].Predict(req, timeout=30))
    assert padded["item_ids"] == plain["item_ids"] and padded["history_used"] == [2]


def test_k_beyond_what_is_left_fills_with_the_history_at_minus_inf(env):
    hist = [[f"i{j}" for j in range(5)]]
    got, want = served(env, hist, N), stock(env["saved_model"], hist, N)
    assert_same(got, want)
    assert got["item_ids"][0][-5:] == hist[0] and np.isneginf(got["scores"][0][-5:]).all()


def test_errors_are_invalid_argument_naming_the_input(env):
    rr = client.recommend_request
    expect_invalid(env, rr([["nope", "x"], ["i1"]], 5), "history_ids")
    expect_invalid(env, rr([[], []], 5), "history_ids")
    expect_invalid(env, rr([["i1"]], 0), "k must be in")
    expect_invalid(env, rr([["i1"]], N + 1), "k must be in")
    for w in ([[-1.0, 1.0]], [[float("nan"), 1.0]], [[float("inf"), 1.0]]):
        expect_invalid(env, rr([["i1", "i2"]], 5, weights=w), "history_weights")
    req = rr([["i1", "i2"]], 5, weights=[[1.0, 1.0]])
    req.inputs["history_weights"].CopyFrom(tf.make_tensor_proto([[1.0, 1.0, 1.0]], dtype=tf.float32))
    expect_invalid(env, req, "history_weights")
    assert served(env, [["i1"]], 3)["history_used"] == [1]  # the server keeps serving


def test_rest_ragged_instances_and_columns(env):
    want = stock(env["saved_model"], HISTORIES, 10)
    code, body = rest_predict(
        env, {"signature_name": "recommend", "instances": [{"history_ids": h, "k": 10} for h in HISTORIES]}
    )
    assert code == 200, body
    assert [p["item_ids"] for p in body["predictions"]] == want["item_ids"].astype(str).tolist()
    assert [p["history_used"] for p in body["predictions"]] == [6, 1, 2]
    code, body = rest_predict(env, {"signature_name": "recommend", "inputs": {"history_ids": HISTORIES, "k": 10}})
    assert code == 200 and body["outputs"]["item_ids"] == want["item_ids"].astype(str).tolist()
    w = [[1.0] * len(h) for h in HISTORIES]
    rows = [{"history_ids": h, "history_weights": x, "k": 10} for h, x in zip(HISTORIES, w)]
    code, body = rest_predict(env, {"signature_name": "recommend_weighted", "instances": rows})
    assert code == 200 and [p["item_ids"] for p in body["predictions"]] == want["item_ids"].astype(str).tolist()


def test_rest_errors_are_400_naming_the_input(env):
    def error(body):
        code, out = rest_predict(env, dict(body, signature_name=body.get("signature_name", "recommend")))
        assert code == 400, out
        return out["error"]

    assert "history_ids" in error({"instances": [{"history_ids": ["nope"], "k": 3}]})
    assert "k must be in" in error({"inputs": {"history_ids": [["i1"]], "k": 0}})
    assert "'k'" in error({"instances": [{"history_ids": ["i1"], "k": 3}, {"history_ids": ["i2"], "k": 4}]})
    rows = [{"history_ids": ["i1", "i2"], "history_weights": [1.0, -2.0], "k": 3}]
    assert "history_weights" in error({"signature_name": "recommend_weighted", "instances": rows})


def test_adapter_vectors_are_searched_exactly(tmp_path):
    make_recommend_version(tmp_path, 300, adapter=True)
    core = ModelServer(str(tmp_path / "serving_model" / "pinsage"))
    core.start()
    v = core.current
    assert v.recommend_vectors is not None and not np.allclose(v.recommend_vectors, v.embeddings)
    hist = [["i3", "i8"], ["i200"]]
    got = client.decode(core.predict(client.recommend_request(hist, 10)))
    want = stock(v.saved_model, hist, 10)
    assert_same(got, want)


def test_version_without_a_tower_answers_not_found(tmp_path):
    emb = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    ids = [f"i{j}" for j in range(50)]
    export_serving_model(str(tmp_path / "sm"), emb, ids)
    ib.build_index(emb, ids, str(tmp_path / "ix"), recall_queries=10)
    from pipeline.push import pusher

    pusher.push(str(tmp_path / "sm"), str(tmp_path / "ix"), str(tmp_path / "serving_model"))
    core = ModelServer(str(tmp_path / "serving_model" / "pinsage"))
    core.start()
    with pytest.raises(ServingError) as e:
        core.predict(client.recommend_request([["i1"]], 3))
    assert e.value.code == grpc.StatusCode.NOT_FOUND and "recommend" in str(e.value)
    assert isinstance(core.predict(client.related_request(["i1"], 3)), predict_pb2.PredictResponse)


class CountingModel:
    """The version's SavedModel, counting the tower calls."""

    def __init__(self, saved_model):
        self.saved_model, self.rows = saved_model, []

    def recommend_query(self, ids, weights):
        self.rows.append(int(ids.shape[0]))
        return self.saved_model.recommend_query(ids, weights)

    def __getattr__(self, name):
        return getattr(self.saved_model, name)


def test_batching_merges_concurrent_requests_into_one_tower_call(env):
    """With batching, concurrent recommend requests (ragged, weighted or not, each its own k) are one tower call
    and one search, each answer the one the SavedModel gives alone; a request that would fail its batch (an
    all-unknown history) is left to the general path."""
    import asyncio

    from serving.model_config import BatchingOptions

    core = ModelServer(str(env["root"] / "serving_model" / "pinsage"), config=ServingConfig(port=0))
    loop = asyncio.new_event_loop()
    core.batching = BatchingOptions(max_batch_size=8, batch_timeout_micros=100_000)
    core.start(loop)
    v = core.current
    v.saved_model = counting = CountingModel(v.saved_model)
    reqs = [
        client.recommend_request(HISTORIES, 10),
        client.recommend_request([["i9", "i8"]], 3),
        client.recommend_request([["i100"]], 25, weights=[[2.0]]),
    ]

    async def scenario():
        return await asyncio.gather(*[core.predict_fast(r) for r in reqs])

    try:
        responses = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert counting.rows == [5]  # one tower call over every request's histories
    for req, resp in zip(reqs, responses):
        hist = [[s.decode() for s in row if s] for row in tf.make_ndarray(req.inputs["history_ids"])]
        w = tf.make_ndarray(req.inputs["history_weights"]).tolist() if "history_weights" in req.inputs else None
        assert_same(client.decode(resp), stock(env["saved_model"], hist, int(req.inputs["k"].int_val[0]), w))
    assert core.predict_fast(client.recommend_request([["nope"]], 3)) is None


def test_batching_server_answers_concurrent_grpc_and_rest_clients(env):
    """A server with batching on, 8 gRPC client threads and REST requests at once: every answer the SavedModel's."""
    import threading

    from serving.model_config import BatchingOptions

    opts = BatchingOptions(max_batch_size=8, batch_timeout_micros=2000)
    config = ServingConfig(
        str(env["root"] / "serving_model" / "pinsage"), port=0, batching=opts, rest_api_port=0, poll_seconds=0.2
    )
    server = serve(config, block=False)
    rng = np.random.default_rng(1)
    cases = [
        ([[f"i{j}" for j in rng.choice(N, rng.integers(1, 7), replace=False)]], int(rng.integers(1, 20)))
        for _ in range(24)
    ]
    wants = [stock(env["saved_model"], h, k) for h, k in cases]
    errors = []

    def worker(part):
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            for i in part:
                try:
                    assert_same(client.decode(stub.Predict(client.recommend_request(*cases[i]), timeout=30)), wants[i])
                except Exception as e:  # reported below, with the case
                    errors.append((i, e))

    try:
        threads = [threading.Thread(target=worker, args=(range(t, len(cases), 8),)) for t in range(8)]
        for t in threads:
            t.start()
        url = f"http://127.0.0.1:{server.rest.port}/v1/models/pinsage:predict"
        for (hist, k), want in zip(cases[:4], wants):
            body = {"signature_name": "recommend", "instances": [{"history_ids": h, "k": k} for h in hist]}
            r = requests.post(url, json=body, timeout=30)
            assert (
                r.status_code == 200
                and [p["item_ids"] for p in r.json()["predictions"]] == want["item_ids"].astype(str).tolist()
            )
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        empty = client.recommend_request([], 5)  # an empty batch: empty outputs, not an error
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            out = client.decode(prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(empty, timeout=30))
        assert out["item_ids"] == [] and out["history_used"] == []
    finally:
        server.stop()


def test_warmup_replays_recommend_requests(env):
    """The export's warmup file holds a recommend request per related_items one, and the server replays both."""
    from modules.export import WARMUP_REQUESTS

    assert env["core"].warmup(env["core"].current) == 2 * WARMUP_REQUESTS


def test_pinsage_query_history_prints_the_served_recommendations(env, capsys):
    from pipeline import cli

    got = served(env, [HISTORIES[0]], 5)
    rc = cli.main(["query", "--port", str(env["port"]), "--history", ",".join(HISTORIES[0]), "-k", "5"])
    out = capsys.readouterr().out
    assert rc == 0 and "(6 of its items known)" in out
    rows = [re.match(r"\s*\d+\. (.*?)  \(", line) for line in out.splitlines()]
    printed = [m.group(1) for m in rows if m]
    assert printed == got["titles"][0]
    assert cli.main(["query", "--port", str(env["port"])]) == 2  # neither --item nor --history
    assert cli.main(["query", "--port", str(env["port"]), "--history", "nope"]) == 2  # all unknown: INVALID_ARGUMENT
    assert "history_ids" in capsys.readouterr().err
