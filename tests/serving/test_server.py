"""The gRPC server over a pushed version: Predict round trips against offline exact top-k, every error case as a
status code (server stays up), concurrency, a hot swap under traffic, metadata and status."""

import os
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from modules import index as ib
from modules.export import export_serving_model
from pipeline.data import datasets
from pipeline.push import pusher
from serving import client
from serving.config import ServingConfig
from serving.server import serve
from tests.fixtures import REPO_ROOT

N, D, MAX_BATCH = 3000, 16, 64
FEATURES = {"year": tf.TensorSpec([None], tf.float32)}


class StandIn(tf.Module):
    """Weighted mean of the neighbours' stored embeddings + a linear map of one numeric feature."""

    def __init__(self, emb):
        super().__init__()
        self.emb = tf.constant(emb)
        self.w = tf.Variable(np.full((1, emb.shape[1]), 0.05, np.float32))

    def __call__(self, features, neighbor_ids, neighbor_weights):
        pooled = tf.reduce_sum(tf.gather(self.emb, neighbor_ids) * neighbor_weights[..., None], axis=1)
        return pooled + features["year"][:, None] * self.w


def make_version(root, emb, tag):
    """Export + index (a ScaNN tree: brute force is only used below 1000 items here) + push."""
    ids, titles = [f"i{j}" for j in range(len(emb))], [f"{tag} title {j}" for j in range(len(emb))]
    export_serving_model(str(root / f"sm_{tag}"), emb, ids, titles=titles, embed_fn=StandIn(emb), feature_spec=FEATURES)
    ib.build_index(emb, ids, str(root / f"ix_{tag}"), titles=titles, brute_force_below=1000, recall_queries=100)
    return pusher.push(str(root / f"sm_{tag}"), str(root / f"ix_{tag}"), str(root / "serving_model"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    emb = datasets.clustered_vectors(N, D, clusters=30, seed=11)
    make_version(root, emb, "v1")
    config = ServingConfig(
        model_base_path=str(root / "serving_model"),  # the parent dir: resolves to its one model
        port=0,
        poll_seconds=0.2,
        max_batch=MAX_BATCH,
        max_message_bytes=256 * 1024,
        rest_api_port=None,
    )
    server = serve(config, block=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield dict(
        root=root,
        emb=emb,
        server=server.core,
        addr=f"127.0.0.1:{server.port}",
        stub=prediction_service_pb2_grpc.PredictionServiceStub(channel),
        models=model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()
    server.stop()


def exact_related(emb, rows, k):
    s = emb[rows] @ emb.T
    s[np.arange(len(rows)), rows] = -np.inf
    return np.argsort(-s, axis=1)[:, :k]


def request(item_ids=("i1",), k=10, model="pinsage", signature="related_items", **tensors):
    req = client.related_request(item_ids, k, model, signature)
    for name, t in tensors.items():
        req.inputs[name].CopyFrom(t)
    return req


def expect_error(env, req, code, text):
    with pytest.raises(grpc.RpcError) as e:
        env["stub"].Predict(req, timeout=10)
    assert e.value.code() == code, e.value.details()
    assert text in e.value.details(), e.value.details()


def test_predict_round_trip_matches_offline_top_k(env):
    rows = np.arange(0, N, 150)
    out = client.related(env["addr"], [f"i{r}" for r in rows], 10)
    exact = exact_related(env["emb"], rows, 10)
    got = np.array([[int(i[1:]) for i in row] for row in out["item_ids"]])
    overlap = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact)])
    assert overlap >= 0.9
    assert all(r not in g for r, g in zip(rows, got))  # the query item is never its own neighbour
    np.testing.assert_allclose(out["scores"], np.sum(env["emb"][rows][:, None] * env["emb"][got], -1), atol=1e-4)
    assert out["titles"][0][0] == f"v1 title {got[0][0]}"


def test_one_item_requests_answer_as_the_batched_path(env):
    """Single-id requests take the server's proto-to-proto shortcut; batches take the numpy path. Same answers."""
    rows = [2, 77, 1500, N - 1]
    batched = client.related(env["addr"], [f"i{r}" for r in rows] + ["i0"], 10)
    for j, r in enumerate(rows):
        one = client.related(env["addr"], [f"i{r}"], 10)
        assert one["item_ids"] == [batched["item_ids"][j]] and one["titles"] == [batched["titles"][j]]
        np.testing.assert_allclose(one["scores"], [batched["scores"][j]], atol=1e-6)
        assert f"i{r}" not in one["item_ids"][0] and len(one["item_ids"][0]) == 10
    resp = env["stub"].Predict(request(["i2"], 3), timeout=10)
    assert resp.model_spec.signature_name == "related_items" and resp.model_spec.name == "pinsage"
    assert [d.size for d in resp.outputs["scores"].tensor_shape.dim] == [1, 3]


def embed_request(nb, w, year, k=10):
    req = predict_pb2.PredictRequest()
    req.model_spec.name, req.model_spec.signature_name = "pinsage", "embed_item"
    for name, t in dict(
        neighbor_ids=tf.make_tensor_proto(nb, dtype=tf.string),
        neighbor_weights=tf.make_tensor_proto(w, dtype=tf.float32),
        year=tf.make_tensor_proto(year, dtype=tf.float32),
        k=tf.make_tensor_proto(k, dtype=tf.int32),
    ).items():
        req.inputs[name].CopyFrom(t)
    return req


def test_embed_item_errors(env):
    IA = grpc.StatusCode.INVALID_ARGUMENT
    expect_error(env, embed_request([["i1", "ghost"]], [[0.5, 0.5]], [1.0]), IA, "unknown item id(s):] [ghost]")
    expect_error(
        env,
        embed_request([["i1", "i2"]], [[0.5, 0.5, 0.1]], [1.0]),
        IA,
        "neighbor_ids and neighbor_weights must have the same shape",
    )
    expect_error(env, embed_request([["i1"]], [[1.0]], [1.0], k=N + 1), IA, f"k must be in [1, {N}]")
    expect_error(env, embed_request(["i1"], [1.0], [1.0]), IA, "input 'neighbor_ids' must have shape [?, ?]")


def test_embed_item_matches_saved_model(env):
    # a new item's neighbours are related items, so take each query's neighbours from one neighbourhood
    near = exact_related(env["emb"], np.array([1, 7]), 3)
    nb = tf.make_tensor_proto([[f"i{near[0][0]}", f"i{near[0][1]}", ""], [f"i{j}" for j in near[1]]], dtype=tf.string)
    w = tf.make_tensor_proto([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype=tf.float32)
    year = tf.make_tensor_proto([1.0, -2.0], dtype=tf.float32)
    req = predict_pb2.PredictRequest()
    req.model_spec.name, req.model_spec.signature_name = "pinsage", "embed_item"
    for name, t in dict(
        neighbor_ids=nb, neighbor_weights=w, year=year, k=tf.make_tensor_proto(10, dtype=tf.int32)
    ).items():
        req.inputs[name].CopyFrom(t)
    out = client.decode(env["stub"].Predict(req, timeout=10))
    version_dir = os.path.join(env["server"].model_dir, str(env["server"].current.version))
    want = tf.saved_model.load(version_dir).signatures["embed_item"](
        neighbor_ids=tf.make_ndarray(nb),
        neighbor_weights=tf.make_ndarray(w),
        year=tf.make_ndarray(year),
        k=tf.constant(10),
    )
    np.testing.assert_allclose(out["embedding"], want["embedding"].numpy(), atol=1e-5)
    exact = want["item_ids"].numpy().astype(str)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(out["item_ids"], exact)]) >= 0.9


def test_error_cases_map_to_status_codes(env):
    IA, NF = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    expect_error(env, request(["i1", "no-such-item"]), IA, "unknown item id(s): ['no-such-item']")
    expect_error(env, request(k=0), IA, "k must be in [1, 2999]")
    expect_error(env, request(k=N), IA, "k must be in [1, 2999]")
    expect_error(
        env,
        request(item_id=tf.make_tensor_proto([1, 2], dtype=tf.int32)),
        IA,
        "input 'item_id' must be DT_STRING, got DT_INT32",
    )
    expect_error(env, request(k=tf.make_tensor_proto(3.0, dtype=tf.float32)), IA, "must be DT_INT32")
    expect_error(
        env,
        request(item_id=tf.make_tensor_proto([["i1"]], dtype=tf.string)),
        IA,
        "input 'item_id' must have shape [?], got [1, 1]",
    )
    expect_error(env, request(k=tf.make_tensor_proto([3], dtype=tf.int32)), IA, "input 'k' must have shape []")
    req = request()
    del req.inputs["k"]
    expect_error(env, req, IA, "missing ['k']")
    expect_error(env, request([f"i{j}" for j in range(MAX_BATCH + 1)]), IA, "max_batch")
    expect_error(env, request(model="other"), NF, "model 'other' not found")
    expect_error(env, request(signature="nope"), NF, "signature 'nope' not found")
    req = request()
    req.model_spec.version.value = 999
    expect_error(env, req, NF, "version 999")
    req = request()
    req.model_spec.version_label = "canary"
    expect_error(env, req, NF, "label 'canary'")
    with pytest.raises(grpc.RpcError) as e:  # over max_message_bytes: refused by gRPC before our code runs
        env["stub"].Predict(request(["x" * 300_000]), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.related(env["addr"], ["i5"], 3)["item_ids"][0]  # still up


def test_empty_batch(env):
    out = client.related(env["addr"], [], 5)
    assert np.asarray(out["item_ids"]).size == 0 and np.asarray(out["scores"]).size == 0


def test_version_label_and_output_filter(env):
    req = request(["i3"], 4)
    req.model_spec.version_label = "latest"
    req.output_filter.append("item_ids")
    resp = env["stub"].Predict(req, timeout=10)
    assert list(resp.outputs) == ["item_ids"] and resp.model_spec.version.value == env["server"].current.version


def test_metadata_and_status(env):
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "pinsage"
    req.metadata_field.append("signature_def")
    resp = env["stub"].GetModelMetadata(req, timeout=10)
    sigs = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sigs)
    assert {"related_items", "embed_item", "serving_default"} <= set(sigs.signature_def)
    assert set(sigs.signature_def["related_items"].outputs) == {"item_ids", "scores", "titles"}
    sreq = get_model_status_pb2.GetModelStatusRequest()
    sreq.model_spec.name = "pinsage"
    status = env["models"].GetModelStatus(sreq, timeout=10).model_version_status
    assert [(s.version, s.state) for s in status] == [
        (env["server"].current.version, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]
    assert status[0].HasField("status") and (status[0].status.error_code, status[0].status.error_message) == (0, "")
    sreq.model_spec.name = "other"
    with pytest.raises(grpc.RpcError) as e:
        env["models"].GetModelStatus(sreq, timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def run_clients(env, n_threads, stop, results):
    def worker(seed):
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                resp = env["stub"].Predict(request([f"i{rng.integers(N)}"], 10), timeout=10)
                results.append((resp.model_spec.version.value, len(resp.outputs["item_ids"].string_val)))
            except grpc.RpcError as e:
                results.append(("error", e.code(), e.details()))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(n_threads)]
    for t in threads:
        t.start()
    return threads


def test_concurrent_clients(env):
    stop, results = threading.Event(), []
    threads = run_clients(env, 8, stop, results)
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    errors = [r for r in results if r[0] == "error"]
    assert not errors and len(results) >= 80, (errors[:3], len(results))
    assert all(r[1] == 10 for r in results)


def test_new_version_picked_up_under_traffic(env):
    before = env["server"].current.version
    stop, results = threading.Event(), []
    threads = run_clients(env, 4, stop, results)
    try:
        new_path = make_version(env["root"], datasets.clustered_vectors(N, D, clusters=30, seed=12), "v2")
        deadline = time.time() + 30
        while env["server"].current.version == before and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # traffic on the new version too
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert env["server"].current.version == int(os.path.basename(new_path)) == before + 1
    errors = [r for r in results if r[0] == "error"]
    assert not errors, errors[:3]
    versions = [r[0] for r in results]
    assert before in versions and before + 1 in versions
    assert client.related(env["addr"], ["i0"], 1)["titles"][0][0].startswith("v2 title")


def test_large_k_is_exact_and_broken_version_is_skipped(env):
    out = client.related(env["addr"], ["i4"], 500)  # beyond the index's 100 re-ranked candidates: exact scan
    want = exact_related(env["server"].current.embeddings, np.array([4]), 500)[0]
    assert [int(i[1:]) for i in out["item_ids"][0]][:50] == list(want[:50])
    served = env["server"].current.version
    broken = os.path.join(env["server"].model_dir, str(served + 1))
    os.makedirs(broken)
    open(os.path.join(broken, "saved_model.pb"), "wb").write(b"not a model")
    assert env["server"].refresh() == served and served + 1 in env["server"].failed
    assert client.related(env["addr"], ["i4"], 3)["item_ids"][0]


class QueryHeadStandIn(tf.Module):
    """A fixed linear query map u = z A (asymmetric), standing in for modules/layers.QueryHead."""

    def __init__(self, d, seed=7):
        super().__init__()
        self.a = tf.constant(np.random.default_rng(seed).normal(size=(d, d)).astype(np.float32) / np.sqrt(d))

    def __call__(self, z):
        return z @ self.a


def test_query_head_version_searches_with_query_vectors(tmp_path):
    emb = datasets.clustered_vectors(N, D, clusters=30, seed=13)
    head = QueryHeadStandIn(D)
    query = emb @ head.a.numpy()
    ids = [f"i{j}" for j in range(N)]
    export_serving_model(
        str(tmp_path / "sm"),
        emb,
        ids,
        embed_fn=StandIn(emb),
        feature_spec=FEATURES,
        query_embeddings=query,
        query_fn=head,
    )
    # exact (brute-force) index: this test is about which vector the server searches with, not ANN recall
    ib.build_index(emb, ids, str(tmp_path / "ix"), query_embeddings=query, brute_force_below=N + 1, recall_queries=100)
    pusher.push(str(tmp_path / "sm"), str(tmp_path / "ix"), str(tmp_path / "serving_model"))
    server = serve(
        ServingConfig(str(tmp_path / "serving_model"), port=0, poll_seconds=5, rest_api_port=None), block=False
    )
    try:
        addr = f"127.0.0.1:{server.port}"
        rows = np.arange(0, N, 300)
        got = np.array([[int(i[1:]) for i in r] for r in client.related(addr, [f"i{r}" for r in rows], 10)["item_ids"]])
        one = [int(i[1:]) for i in client.related(addr, [f"i{rows[1]}"], 10)["item_ids"][0]]  # the one-id fast path
        s = query[rows] @ emb.T
        s[np.arange(len(rows)), rows] = -np.inf
        exact = np.argsort(-s, axis=1)[:, :10]
        np.testing.assert_array_equal(got, exact)
        assert one == exact[1].tolist()
        plain = exact_related(emb, rows, 10)  # what a server ignoring the query head would say
        assert np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, plain)]) < 0.7
        # similar_items searches the same index with the item's own z: exactly z . z, on both paths
        sim = client.related(addr, [f"i{r}" for r in rows], 10, signature_name="similar_items")
        np.testing.assert_array_equal([[int(i[1:]) for i in r] for r in sim["item_ids"]], plain)
        np.testing.assert_allclose(sim["scores"], np.take_along_axis(emb[rows] @ emb.T, plain, 1), rtol=1e-5)
        sim_one = client.related(addr, [f"i{rows[1]}"], 10, signature_name="similar_items")["item_ids"][0]
        assert [int(i[1:]) for i in sim_one] == plain[1].tolist()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(addr))
        req = predict_pb2.PredictRequest()
        req.model_spec.name, req.model_spec.signature_name = "pinsage", "embed_item"
        for name, arr in (
            ("year", np.array([0.5], np.float32)),
            ("neighbor_ids", np.array([["i3", "i4"]])),
            ("neighbor_weights", np.array([[0.5, 0.5]], np.float32)),
            ("k", np.array(5, np.int32)),
        ):
            req.inputs[name].CopyFrom(tf.make_tensor_proto(arr))
        out = stub.Predict(req, timeout=30)
        z = tf.make_ndarray(out.outputs["embedding"])
        want = np.argsort(-((z @ head.a.numpy()) @ emb.T), axis=1)[0, :5]
        assert (
            len(
                set(np.char.lstrip(tf.make_ndarray(out.outputs["item_ids"])[0].astype(str), "i").astype(int))
                & set(want)
            )
            >= 4
        )
    finally:
        server.stop()


def free_ports(n):
    """n distinct free ports (all held while picking: a port closed and asked for again may come back)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def check_shared_rest_port(addr, rest_port, proc, deadline, log_path):
    """The REST port is shared like the gRPC one: a new connection per request, the gRPC answer."""
    import requests

    body = {"signature_name": "related_items", "inputs": {"item_id": ["i7"], "k": 5}}
    want = client.related(addr, ["i7"], 5)["item_ids"]
    url = f"http://127.0.0.1:{rest_port}/v1/models/pinsage:predict"
    while True:  # each child starts its REST listener right after its gRPC server
        try:
            if all(requests.post(url, json=body, timeout=10).status_code == 200 for _ in range(8)):
                break
        except requests.ConnectionError:
            pass
        assert proc.poll() is None and time.time() < deadline, log_path.read_text()[-2000:]
        time.sleep(0.2)
    for _ in range(6):
        r = requests.post(url, json=body, timeout=10)
        assert r.status_code == 200 and r.json()["outputs"]["item_ids"] == want, r.text


def test_several_processes_share_one_port(tmp_path):
    """`python -m serving --processes 2`: both children answer on the one port (SO_REUSEPORT), the answers equal
    the offline top-k whichever child a connection lands on, SIGTERM stops every child; a port held by someone
    else is a clear error, not a silent share."""
    import signal
    import subprocess
    import sys

    import psutil

    emb = datasets.clustered_vectors(N, D, clusters=30, seed=21)
    make_version(tmp_path, emb, "mp")
    port, rest_port = free_ports(2)  # gRPC and REST
    root = REPO_ROOT
    cmd = [
        sys.executable,
        "-m",
        "serving",
        "--model-base-path",
        str(tmp_path / "serving_model"),
        "--port",
        str(port),
        "--processes",
        "2",
        "--rest-api-port",
        str(rest_port),
    ]
    log = open(tmp_path / "server.log", "w+")  # a file, not a pipe: a full pipe would block the logging children

    def servers():  # the serving children (multiprocessing's resource tracker is a child too)
        return [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]

    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=log)
    try:
        addr, deadline = f"127.0.0.1:{port}", time.time() + 240
        while True:  # ready when both children have loaded the version (each connection below may hit either)
            try:
                if len(servers()) == 2 and all(client.related(addr, ["i0"], 1, timeout=5) for _ in range(8)):
                    break
            except grpc.RpcError:
                pass
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()[-2000:]
            time.sleep(0.5)
        rows = np.arange(0, N, 250)
        exact = exact_related(emb, rows, 10)
        overlap = []
        for r, e in zip(rows, exact):  # a new channel (connection) per request: spread over the children
            got = [int(i[1:]) for i in client.related(addr, [f"i{r}"], 10)["item_ids"][0]]
            assert r not in got
            overlap.append(len(set(got) & set(e)) / 10)
        assert np.mean(overlap) >= 0.9, overlap  # ScaNN (a tree at 3,000 items): as the one-process test
        check_shared_rest_port(addr, rest_port, proc, deadline, tmp_path / "server.log")
        # the port is now held: a second server must refuse it, not join it
        second = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0 and "cannot bind port" in second.stderr, second.stderr[-2000:]
    finally:
        kids = psutil.Process(proc.pid).children() if proc.poll() is None else []
        n_servers = len(servers()) if proc.poll() is None else 0
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, (tmp_path / "server.log").read_text()[-2000:]
    assert n_servers == 2
    gone, alive = psutil.wait_procs(kids, timeout=30)
    assert not alive
