"""--enable_batching: concurrent related_items requests merged into one index search. The batcher against a
plain-numpy exact search (batches formed by size and by timeout, the query item dropped as the unbatched path
does, load shedding when the queue is full), then a batching server under 8 clients against the offline top-k
(a brute-force index, so every answer must be exact)."""

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from modules import index as ib
from modules.export import export_serving_model
from pipeline.data import datasets
from pipeline.push import pusher
from serving import metrics
from serving.batching import Batcher
from serving.config import ServingConfig
from serving.errors import ServingError
from serving.model_config import BatchingOptions
from serving.server import serve
from tests.serving.test_server import D, N, exact_related, request


class ExactSearcher:
    """ScaNN's searcher interface over a numpy exact scan; records each call's batch size."""

    def __init__(self, emb):
        self.emb, self.calls = emb, []

    def search(self, q, final_num_neighbors):
        idx, dist = self.search_batched(q[None], final_num_neighbors)
        return idx[0], dist[0]

    def search_batched(self, q, final_num_neighbors):
        self.calls.append(len(q))
        s = q @ self.emb.T
        idx = np.argsort(-s, axis=1, kind="stable")[:, :final_num_neighbors]
        return idx, np.take_along_axis(s, idx, 1)


class FakeVersion:
    model_name = "batch-test"

    def __init__(self, emb):
        self.queries = emb
        self.index = type("Index", (), {"searcher": ExactSearcher(emb)})()


@pytest.fixture(scope="module")
def emb():
    return datasets.clustered_vectors(500, 8, clusters=10, seed=3)


def run(coro):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro(loop))
    finally:
        loop.close()


def test_batches_by_size_and_timeout_with_exact_answers(emb):
    v = FakeVersion(emb)
    rows, ks = [3, 17, 250, 499, 0, 42], [5, 1, 7, 5, 3, 9]

    async def scenario(loop):
        b = Batcher(BatchingOptions(max_batch_size=4, batch_timeout_micros=200_000, max_enqueued_batches=4), loop)
        fs = [b.submit(v, r, k) for r, k in zip(rows, ks)]  # 6 at once: a full batch of 4 and the rest at once
        got = await asyncio.gather(*fs)
        calls = list(v.index.searcher.calls)
        t = time.perf_counter()
        lone = b.submit(v, 7, 2)  # alone: waits for the timeout, then is searched by itself
        await asyncio.sleep(0.05)
        early = lone.done()
        await lone
        return got, calls, early, time.perf_counter() - t

    got, calls, early, waited = run(scenario)
    assert calls == [4, 2] and not early and 0.15 < waited < 2.0
    assert v.index.searcher.calls[-1] == 1
    for (ids, scores), r, k in zip(got, rows, ks):  # the query item dropped, as the unbatched path does
        want = exact_related(emb, np.array([r]), k)[0]
        assert ids == want.tolist() and r not in ids
        np.testing.assert_allclose(scores, emb[r] @ emb[want].T, rtol=1e-5)


def test_a_batch_searches_each_signatures_vectors_apart(emb):
    """related_items (the version's query vectors) and similar_items (vectors=z) requests that arrive together
    are one search per kind, each with its own vectors: a mixed batch must not answer one with the other's."""
    v = FakeVersion(emb)
    v.queries = emb @ np.random.default_rng(4).normal(size=(emb.shape[1], emb.shape[1])).astype(np.float32)
    rows, ks, similar = [3, 17, 250, 499, 0, 42], [5, 1, 7, 5, 3, 9], [False, True, True, False, True, False]

    async def scenario(loop):
        b = Batcher(BatchingOptions(max_batch_size=8, batch_timeout_micros=100_000, max_enqueued_batches=4), loop)
        fs = [b.submit(v, r, k, vectors=emb if sim else None) for r, k, sim in zip(rows, ks, similar)]
        return await asyncio.gather(*fs)

    got = run(scenario)
    assert sorted(v.index.searcher.calls) == [3, 3]  # one batch, split in two searches of three
    for (ids, scores), r, k, sim in zip(got, rows, ks, similar):
        q = emb[r] if sim else v.queries[r]
        s = q @ emb.T
        s[r] = -np.inf
        want = np.argsort(-s, kind="stable")[:k]
        assert ids == want.tolist(), (r, sim)
        np.testing.assert_allclose(scores, s[want], rtol=1e-5)


def test_full_queue_is_refused_not_queued_without_bound(emb):
    v = FakeVersion(emb)

    async def scenario(loop):
        b = Batcher(BatchingOptions(max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=2), loop)
        queued = [b.submit(v, r, 3) for r in range(1, 5)]  # 2 batches x 2 wait (nothing ran yet)
        with pytest.raises(ServingError) as e:
            b.submit(v, 9, 3)
        got = await asyncio.gather(*queued)
        after = b.submit(v, 9, 3)  # drained: accepted again
        return e.value, got, await after

    err, got, after = run(scenario)
    assert err.code == grpc.StatusCode.UNAVAILABLE and "batch queue is full" in str(err)
    assert all(len(g[0]) == 3 for g in got) and len(after[0]) == 3


def test_batching_server_under_concurrent_clients(tmp_path):
    emb = datasets.clustered_vectors(N, D, clusters=30, seed=51)
    ids = [f"i{j}" for j in range(N)]
    export_serving_model(str(tmp_path / "sm"), emb, ids, titles=ids)
    ib.build_index(emb, ids, str(tmp_path / "ix"), titles=ids, brute_force_below=N + 1, recall_queries=50)
    pusher.push(str(tmp_path / "sm"), str(tmp_path / "ix"), str(tmp_path / "serving_model"))
    opts = BatchingOptions(max_batch_size=8, batch_timeout_micros=2000)
    config = ServingConfig(str(tmp_path / "serving_model" / "pinsage"), port=0, batching=opts, rest_api_port=None)
    server = serve(config, block=False)
    label = {"model": "pinsage"}
    n0 = metrics.REGISTRY.get_sample_value("pinsage_serving_batch_size_count", label) or 0
    s0 = metrics.REGISTRY.get_sample_value("pinsage_serving_batch_size_sum", label) or 0
    results, errors = [], []
    try:
        addr = f"127.0.0.1:{server.port}"

        def client(seed):
            stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(addr))
            rng = np.random.default_rng(seed)
            for _ in range(40):
                row, k = int(rng.integers(N)), int(rng.integers(1, 12))
                try:
                    resp = stub.Predict(request([f"i{row}"], k), timeout=10)
                    results.append((row, k, [int(s.decode()[1:]) for s in resp.outputs["item_ids"].string_val]))
                except grpc.RpcError as e:
                    errors.append(e.details())

        threads = [threading.Thread(target=client, args=(s,)) for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(addr))
        multi = stub.Predict(request(["i4", "i9", "i2000"], 6), timeout=10)  # multi-id: one search of its own
        got_multi = np.array([int(s.decode()[1:]) for s in multi.outputs["item_ids"].string_val]).reshape(3, 6)
    finally:
        server.stop()
    assert not errors and len(results) == 320, errors[:3]
    for row, k, got in results:  # brute-force index: the batched answers are the exact top-k
        assert got == exact_related(emb, np.array([row]), k)[0].tolist(), (row, k)
    np.testing.assert_array_equal(got_multi, exact_related(emb, np.array([4, 9, 2000]), 6))
    batches = metrics.REGISTRY.get_sample_value("pinsage_serving_batch_size_count", label) - n0
    merged = metrics.REGISTRY.get_sample_value("pinsage_serving_batch_size_sum", label) - s0
    assert merged == 320 and batches < merged / 1.5, (batches, merged)  # requests did share searches


def test_batching_server_answers_rest_through_the_batcher(tmp_path):
    """REST's one-item fast path takes the batched answer too (it once read the batcher's (version, signature,
    future) tuple as a response: every REST request of a batching server failed)."""
    import http.client
    import json

    emb = datasets.clustered_vectors(N, D, clusters=30, seed=52)
    ids = [f"i{j}" for j in range(N)]
    export_serving_model(str(tmp_path / "sm"), emb, ids, titles=ids)
    ib.build_index(emb, ids, str(tmp_path / "ix"), titles=ids, brute_force_below=N + 1, recall_queries=50)
    pusher.push(str(tmp_path / "sm"), str(tmp_path / "ix"), str(tmp_path / "serving_model"))
    opts = BatchingOptions(max_batch_size=8, batch_timeout_micros=2000)
    config = ServingConfig(str(tmp_path / "serving_model" / "pinsage"), port=0, batching=opts, rest_api_port=0)
    server = serve(config, block=False)
    label = {"model": "pinsage"}
    s0 = metrics.REGISTRY.get_sample_value("pinsage_serving_batch_size_sum", label) or 0
    results, errors = [], []
    try:

        def client(seed):
            conn = http.client.HTTPConnection("127.0.0.1", server.rest.port, timeout=10)
            rng = np.random.default_rng(seed)
            for _ in range(20):
                row, k = int(rng.integers(N)), int(rng.integers(1, 12))
                body = {"signature_name": "related_items", "inputs": {"item_id": [f"i{row}"], "k": k}}
                conn.request("POST", "/v1/models/pinsage:predict", json.dumps(body))
                resp = conn.getresponse()
                out = json.loads(resp.read())
                if resp.status != 200:
                    errors.append((resp.status, out))
                else:
                    results.append((row, k, [int(s[1:]) for s in out["outputs"]["item_ids"][0]]))

        threads = [threading.Thread(target=client, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    assert not errors and len(results) == 80, errors[:3]
    for row, k, got in results:  # brute-force index: the batched answers are the exact top-k
        assert got == exact_related(emb, np.array([row]), k)[0].tolist(), (row, k)
    merged = metrics.REGISTRY.get_sample_value("pinsage_serving_batch_size_sum", label) - s0
    assert merged == 80, merged  # every REST request was answered by the batcher, none fell back unbatched
