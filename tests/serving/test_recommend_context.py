"""recommend_context: a known context's stored query vector u_c (assets/contexts/, mapped) searched in the server's
ScaNN index with its whole history excluded equals the SavedModel's stock-op signature, which equals a numpy
ranking; a context's answer equals `recommend` over its history; an unknown context id is INVALID_ARGUMENT over
gRPC and 400 over REST, naming context_id; `pinsage query --context` prints the served list."""

import re

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from modules import context_tower as ct
from modules import index as ib
from modules.export import WARMUP_REQUESTS, export_serving_model
from pipeline.data import datasets
from pipeline.push import pusher
from schema import versions
from serving import client
from serving.config import ServingConfig
from serving.server import serve
from tests.serving.recommend_checks import assert_same, expect_invalid, rest_predict

N, D, MAX_LEN = 600, 8, 4


def make_context_version(root, num_contexts=40, seed=2):
    """(contexts {id: history ids}, tower) of a version with a small context tower and the contexts' u_c
    (computed in-process with query_vectors; the Beam job's equality to it is tests/pipeline/history's)."""
    emb = np.asarray(datasets.clustered_vectors(N, D, clusters=12, seed=5), np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids, titles = [f"i{j}" for j in range(N)], [f"Title {j}" for j in range(N)]
    config = ct.ContextTowerConfig(form="sequence", max_len=MAX_LEN, hidden_dim=8, num_layers=1, dropout=0.0)
    tower = ct.build_context_tower(config, emb)
    rng = np.random.default_rng(seed)
    histories = [rng.choice(N, int(rng.integers(1, 12)), replace=False) for _ in range(num_contexts)]
    names = [f"user-{c}" if c % 4 else f"board ñ {c}" for c in range(num_contexts)]
    arrays = versions.write_context_arrays(
        str(root / "contexts"), names, ct.query_vectors(tower, histories), histories, {}
    )
    export_serving_model(str(root / "sm"), emb, ids, titles=titles, context_tower=tower, context_vectors=arrays)
    ib.build_index(emb, ids, str(root / "ix"), titles=titles, brute_force_below=1000, recall_queries=50)
    pusher.push(str(root / "sm"), str(root / "ix"), str(root / "serving_model"), contexts_dir=str(root / "contexts"))
    return {n: [ids[j] for j in h] for n, h in zip(names, histories)}, tower, emb


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("recommend_context")
    contexts, tower, emb = make_context_version(root)
    config = ServingConfig(model_base_path=str(root / "serving_model"), port=0, poll_seconds=0.2, rest_api_port=0)
    server = serve(config, block=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield dict(
        contexts=contexts,
        tower=tower,
        emb=emb,
        port=server.port,
        core=server.core,
        url=f"http://127.0.0.1:{server.rest.port}",
        stub=prediction_service_pb2_grpc.PredictionServiceStub(channel),
        saved_model=tf.saved_model.load(str(root / "serving_model" / "pinsage" / "1")),
    )
    channel.close()
    server.stop()


def stock(saved_model, context_ids, k):
    out = saved_model.signatures[versions.RECOMMEND_CONTEXT](context_id=tf.constant(context_ids), k=tf.constant(k))
    return {n: t.numpy() for n, t in out.items()}


def served(env, context_ids, k):
    return client.decode(env["stub"].Predict(client.recommend_context_request(context_ids, k), timeout=30))


def test_the_server_equals_the_stock_signature_which_equals_numpy(env):
    names = list(env["contexts"])[:7]
    for k in (1, 10, 50):
        got, want = served(env, names, k), stock(env["saved_model"], names, k)
        assert_same(got, want)
        assert got["history_used"] == [len(env["contexts"][c]) for c in names]
        for row, c in zip(got["item_ids"], names):
            assert not set(row) & set(env["contexts"][c])  # the whole history excluded
    # numpy: the stored u_c (the tower on the last MAX_LEN items) . z, the history at -inf, the top 10
    hist = [np.array([int(i[1:]) for i in env["contexts"][c]]) for c in names]
    s = ct.query_vectors(env["tower"], hist) @ env["emb"].T
    for r, h in enumerate(hist):
        s[r, h] = -np.inf
    top = np.argsort(-s, axis=1, kind="stable")[:, :10]
    want = stock(env["saved_model"], names, 10)
    assert want["item_ids"].astype(str).tolist() == [[f"i{j}" for j in row] for row in top]
    np.testing.assert_allclose(want["scores"], np.take_along_axis(s, top, 1), atol=1e-5)


def test_a_known_context_answers_as_recommend_over_its_history(env):
    long = [c for c, h in env["contexts"].items() if len(h) > MAX_LEN][:3]
    short = [c for c, h in env["contexts"].items() if len(h) <= MAX_LEN][:2]
    assert long and short
    for c in long + short:
        by_context = served(env, [c], 20)
        req = client.recommend_request([env["contexts"][c]], 20)
        by_history = client.decode(env["stub"].Predict(req, timeout=30))
        assert by_context["item_ids"] == by_history["item_ids"]
        np.testing.assert_allclose(by_context["scores"], by_history["scores"], atol=1e-5)
        assert by_context["history_used"] == by_history["history_used"] == [len(env["contexts"][c])]


def test_unknown_context_is_invalid_argument_naming_the_input(env):
    known = next(iter(env["contexts"]))
    expect_invalid(env, client.recommend_context_request(["nobody"], 5), "context_id")
    expect_invalid(env, client.recommend_context_request([known, "nobody"], 5), "nobody")
    expect_invalid(env, client.recommend_context_request([known + "x" * 100], 5), "context_id")  # wider than any id
    expect_invalid(env, client.recommend_context_request([known], 0), "k must be in")
    expect_invalid(env, client.recommend_context_request([known], N + 1), "k must be in")
    with pytest.raises(tf.errors.InvalidArgumentError, match="context_id: unknown context id"):
        stock(env["saved_model"], ["nobody"], 5)  # stock TF Serving's answer: the same status
    assert served(env, [known], 3)["history_used"] == [len(env["contexts"][known])]  # still serving
    empty = served(env, [], 5)
    assert empty["item_ids"] == [] and empty["history_used"] == []


def test_rest_instances_columns_and_400(env):
    names = list(env["contexts"])[:3]
    want = stock(env["saved_model"], names, 10)["item_ids"].astype(str).tolist()
    rows = [{"context_id": c, "k": 10} for c in names]
    code, body = rest_predict(env, {"signature_name": versions.RECOMMEND_CONTEXT, "instances": rows})
    assert code == 200 and [p["item_ids"] for p in body["predictions"]] == want, body
    code, body = rest_predict(
        env, {"signature_name": versions.RECOMMEND_CONTEXT, "inputs": {"context_id": names, "k": 10}}
    )
    assert code == 200 and body["outputs"]["item_ids"] == want, body
    code, body = rest_predict(
        env, {"signature_name": versions.RECOMMEND_CONTEXT, "inputs": {"context_id": ["nobody"], "k": 3}}
    )
    assert code == 400 and "context_id" in body["error"] and "nobody" in body["error"], body


def test_the_version_maps_its_context_arrays_and_warms_up_recommend_context(env):
    v = env["core"].current
    assert v.kind[versions.RECOMMEND_CONTEXT] == "recommend_context"
    for a in v.contexts.arrays:  # mapped, not read into memory
        assert isinstance(a.base, np.memmap), type(a.base)
    assert v.contexts.num_contexts == len(env["contexts"])
    assert env["core"].warmup(v) == 3 * WARMUP_REQUESTS  # related_items, recommend and recommend_context


def test_pinsage_query_context_prints_the_served_recommendations(env, capsys):
    from pipeline import cli

    c = next(iter(env["contexts"]))
    got = served(env, [c], 5)
    rc = cli.main(["query", "--port", str(env["port"]), "--context", c, "-k", "5"])
    out = capsys.readouterr().out
    assert rc == 0 and f"recommended for context {c}" in out and f"({len(env['contexts'][c])} items in its" in out
    printed = [m.group(1) for m in (re.match(r"\s*\d+\. (.*?)  \(", line) for line in out.splitlines()) if m]
    assert printed == got["titles"][0]
    assert cli.main(["query", "--port", str(env["port"]), "--context", "nobody"]) == 2
    assert "context_id" in capsys.readouterr().err
    assert cli.main(["query", "--port", str(env["port"]), "--context", c, "--item", "i1"]) == 2  # one query kind
