"""The loader's cases done to a running server's model directory while clients query it: a junk all-digit
directory above the good versions, a non-ASCII digit name, a half-written version completed in place, new
pushes; then restarts with the junk present. Every client request must succeed (0 failed requests), and the
newest good version must be served within a few poll intervals."""

import logging
import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

from pipeline.data import datasets
from pipeline.push import pusher
from serving.config import ServingConfig
from serving.server import serve
from tests.serving.test_server import D, N, exact_related, make_version, request

POLL = 0.2
State = get_model_status_pb2.ModelVersionStatus


class Clients:
    """4 client threads sending related_items for random ids; every answer is compared with the offline top-5 of
    the version it names."""

    def __init__(self, addr, truth):
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(addr))
        self.truth, self.results, self.stop = truth, [], threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(s,)) for s in range(4)]
        for t in self.threads:
            t.start()

    def run(self, seed):
        rng = np.random.default_rng(seed)
        while not self.stop.is_set():
            row = int(rng.integers(N))
            try:
                resp = self.stub.Predict(request([f"i{row}"], 5), timeout=10)
                version = resp.model_spec.version.value
                got = [int(i[1:]) for i in (s.decode() for s in resp.outputs["item_ids"].string_val)]
                tag, exact = self.truth[version]
                overlap = len(set(got) & set(exact[row])) / 5
                titles = [t.decode() for t in resp.outputs["titles"].string_val]
                self.results.append((time.time(), version, overlap, all(t.startswith(tag + " ") for t in titles)))
            except grpc.RpcError as e:
                self.results.append((time.time(), "error", f"{e.code()}: {e.details()}"))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        return self.results


def wait_for(server, version, timeout=30):
    start = time.time()
    while time.time() - start < timeout:
        if server.core.current is not None and server.core.current.version == version:
            return time.time() - start
        time.sleep(0.02)
    raise AssertionError(f"version {version} not served after {timeout} s (serving {server.core.current.version})")


def statuses(addr):
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "pinsage"
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(addr))
    return {
        s.version: (s.state, s.status.error_message) for s in stub.GetModelStatus(req, timeout=10).model_version_status
    }


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    embs = [datasets.clustered_vectors(N, D, clusters=30, seed=s) for s in (31, 32, 33)]
    keep = root / "versions"  # complete versions, to copy in under new numbers
    for j, e in enumerate(embs):
        path = make_version(root, e, f"v{j}")
        shutil.copytree(path, keep / str(j + 1))
    model_dir = os.path.dirname(path)
    shutil.rmtree(model_dir)
    os.makedirs(model_dir)
    return dict(root=root, model_dir=model_dir, keep=keep, embs=embs)


def copy_version(pushed, source: int, number: int, skip_saved_model=False) -> str:
    dst = os.path.join(pushed["model_dir"], str(number))
    tmp = os.path.join(pushed["model_dir"], f".tmp-0-{number}")
    skip = shutil.ignore_patterns("saved_model.pb") if skip_saved_model else None
    shutil.copytree(pushed["keep"] / str(source), tmp, ignore=skip)
    os.rename(tmp, dst)
    return dst


def test_directory_changes_under_load(pushed, caplog):
    model_dir, keep = pushed["model_dir"], pushed["keep"]
    truth = {}

    def learn(number, source):
        truth[number] = (f"v{source - 1}", exact_related(pushed["embs"][source - 1], np.arange(N), 5))

    copy_version(pushed, 1, 1)
    learn(1, 1)
    config = ServingConfig(model_dir, port=0, poll_seconds=POLL, retry_max_seconds=2 * POLL, rest_api_port=None)
    server = serve(config, block=False)
    addr = f"127.0.0.1:{server.port}"
    clients = Clients(addr, truth)
    waits = {}
    try:
        with caplog.at_level(logging.WARNING, "pinsage.serving.loader"):
            time.sleep(0.5)
            os.makedirs(os.path.join(model_dir, "999999"))  # junk all-digit directory above the good versions
            open(os.path.join(model_dir, "999999", "saved_model.pb"), "wb").write(b"junk")
            os.makedirs(os.path.join(model_dir, "²"))  # a non-ASCII digit name
            time.sleep(4 * POLL)
            assert server.core.current.version == 1
            assert statuses(addr)[999999][0] == State.END and statuses(addr)[1][0] == State.AVAILABLE
            half = copy_version(pushed, 2, 1000000, skip_saved_model=True)  # half written, completed in place
            learn(1000000, 2)
            time.sleep(3 * POLL)
            assert server.core.current.version == 1 and 1000000 in server.core.failed
            shutil.copy(keep / "2" / "saved_model.pb", os.path.join(half, "saved_model.pb"))
            waits["completed in place"] = wait_for(server, 1000000)
            version = 1000001  # the Pusher numbers a push newest + 1, junk included (as TF Serving's users do)
            learn(version, 3)
            pushed_path = pusher.push(*_sources(pushed, 3), str(pushed["root"] / "serving_model"))
            assert int(os.path.basename(pushed_path)) == version
            waits["pushed"] = wait_for(server, version)
            time.sleep(0.5)
    finally:
        results = clients.finish()
        server.stop()
    errors = [r for r in results if r[1] == "error"]
    assert not errors, errors[:3]
    # each answer comes from the version it names (its titles carry the version's tag) and matches that
    # version's exact top-5 (ScaNN: on average)
    assert all(r[3] for r in results), [r for r in results if not r[3]][:3]
    for v in {r[1] for r in results}:
        assert np.mean([r[2] for r in results if r[1] == v]) >= 0.85, v
    assert {r[1] for r in results} == {1, 1000000, version} and len(results) > 100
    assert waits["pushed"] < 3 * POLL + 5.0, waits  # a poll or two plus the load (~1 s here, more on a busy box)
    ignored = [r for r in caplog.records if "'²'" in r.getMessage()]
    assert len(ignored) == 1 and not any(r.exc_info for r in ignored)  # logged once, no traceback

    # restarts: the junk and the non-ASCII name are still there; up on the newest loadable version
    for extra in (None, 99999999):
        if extra:
            os.makedirs(os.path.join(model_dir, str(extra)))  # an empty junk directory above everything
        server = serve(ServingConfig(model_dir, port=0, poll_seconds=POLL, rest_api_port=None), block=False)
        try:
            assert server.core.current.version == version
            assert client_answer(server) == version
        finally:
            server.stop()


def _sources(pushed, source):
    """A SavedModel + index dir pair for pusher.push, as make_version built them (sm_v<j>, ix_v<j>)."""
    j = source - 1
    return str(pushed["root"] / f"sm_v{j}"), str(pushed["root"] / f"ix_v{j}")


def client_answer(server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    return stub.Predict(request(["i1"], 3), timeout=10).model_spec.version.value
