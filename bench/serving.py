"""Benchmark of the server, gRPC and REST: N concurrent clients for T seconds on loopback, related_items top-10
per request, both APIs against the same server process in one run (REST p99 / gRPC p99 per client count).

    .venv/bin/python bench/serving.py                                   # 1M items, 1 and 8 clients, 10 s each
    .venv/bin/python bench/serving.py --items 100000 --clients 1,8 --seconds 5 --apis grpc,rest

A model version (export + ScaNN index, synthetic clustered 64-d vectors) is built once and cached under
--work-dir; the server runs as a separate process (`python -m serving`), as it would in production; each client
is a thread with its own channel sending single-item requests back to back (a closed loop, so the load is
bounded by the clients). The REST clients do the same with one keep-alive http.client connection per thread,
POSTing TF Serving's columnar JSON ({"signature_name": "related_items", "inputs": {"item_id": [id], "k": k}}).
Reports QPS, p50/p99 latency and the error count per client count and API. Clients and server share this box's
2 cores, so the figures are a floor; the load average at start is recorded.
Targets (issues): gRPC p99 <= 10 ms and >= 1.2k QPS with 8 clients at 1M items; REST p99 <= 2 x gRPC p99.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2

from modules import index as ib
from pipeline.push import pusher
from serving.client import related_request
from pipeline.data import datasets
from schema import versions

PREDICT = "/tensorflow.serving.PredictionService/Predict"


def build_model(work_dir: str, items: int, dim: int) -> str:
    """serving_model/pinsage with one version for (items, dim), reused when it exists."""
    model_dir = os.path.join(work_dir, f"serving_model_{items}x{dim}_r{ib.REORDER}", "pinsage")
    if versions.latest_version(model_dir):
        return model_dir
    from modules.export import export_serving_model

    t = time.time()
    emb = datasets.clustered_vectors(items, dim, clusters=max(50, items // 1000))
    ids = [f"item{j}" for j in range(items)]
    titles = [f"Title {j}" for j in range(items)]
    sm, ix = os.path.join(work_dir, f"sm_{items}"), os.path.join(work_dir, f"ix_{items}")
    export_serving_model(sm, emb, ids, titles=titles)
    stats = ib.build_index(emb, ids, ix, titles=titles, recall_queries=300)
    pusher.push(sm, ix, os.path.dirname(model_dir))
    print(
        f"built {items} x {dim} in {time.time() - t:.0f} s; index {stats['kind']} recall@10 {stats['recall_at_10']}",
        flush=True,
    )
    return model_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(addr: str, proc, timeout: float = 600) -> float:
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(addr))
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "pinsage"
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            stub.GetModelStatus(req, timeout=2)
            return time.time() - start
        except grpc.RpcError:
            time.sleep(0.5)
    raise TimeoutError("server not ready")


def cpu_seconds(pid: int, children: bool = True) -> float:
    """CPU seconds of a process and (children=True) its descendants: the server's processes with
    --server-processes; not for this process, whose child is the server."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc] + (proc.children(recursive=True) if children else []):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def grpc_client(addr: str, items: int, k: int, seed: int):
    """A function sending the next gRPC request: serialized once, since the clients share the box's 2 cores with
    the server and so do as little as they can."""
    rng = np.random.default_rng(seed)
    requests = [related_request([f"item{j}"], k).SerializeToString() for j in rng.integers(0, items, 2000)]
    predict = grpc.insecure_channel(addr).unary_unary(
        PREDICT, request_serializer=None, response_deserializer=predict_pb2.PredictResponse.FromString
    )
    count = iter(range(10**12))

    def send() -> bool:
        try:
            predict(requests[next(count) % len(requests)], timeout=5)
            return True
        except grpc.RpcError:
            return False

    return send


def rest_client(rest_port: int, items: int, k: int, seed: int):
    """A function POSTing the next REST request on one keep-alive connection (TF Serving's columnar JSON)."""
    rng = np.random.default_rng(seed)
    bodies = [
        json.dumps({"signature_name": "related_items", "inputs": {"item_id": [f"item{j}"], "k": k}}).encode()
        for j in rng.integers(0, items, 2000)
    ]
    headers = {"Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=5)
    count = iter(range(10**12))

    def send() -> bool:
        nonlocal conn
        try:
            conn.request("POST", "/v1/models/pinsage:predict", bodies[next(count) % len(bodies)], headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=5)
            return False

    return send


def run_slice(senders, seconds: float, server_pid: int) -> dict:
    """Closed loop for `seconds`: each client sends its next request when the previous one returns. CPU time of
    the server and of the client process are recorded too: unlike QPS they hardly depend on what else runs."""
    latencies, errors, stop = [[] for _ in senders], [0] * len(senders), threading.Event()

    def client(c):
        send = senders[c]
        while not stop.is_set():
            t = time.perf_counter()
            if send():
                latencies[c].append(time.perf_counter() - t)
            else:
                errors[c] += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(len(senders))]
    cpu0 = cpu_seconds(server_pid), cpu_seconds(os.getpid(), children=False)
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return dict(
        lat=np.concatenate([np.asarray(x) for x in latencies]) * 1000,
        errors=sum(errors),
        wall=time.perf_counter() - start,
        server_cpu=cpu_seconds(server_pid) - cpu0[0],
        client_cpu=cpu_seconds(os.getpid(), children=False) - cpu0[1],
    )


def run_load(makers: dict, clients: int, seconds: float, slices: int, server_pid: int) -> dict:
    """{api: figures} for `clients` clients per API, the APIs taking turns in `slices` slices of the run, so that
    both see the same background load (this box is shared: a load that changes over a few seconds would
    otherwise decide the ratio)."""
    senders = {api: [make(c) for c in range(clients)] for api, make in makers.items()}
    parts = {api: [] for api in makers}
    for _ in range(slices):
        for api in makers:
            parts[api].append(run_slice(senders[api], seconds / slices, server_pid))
    out = {}
    for api, ps in parts.items():
        lat, wall = np.concatenate([p["lat"] for p in ps]), sum(p["wall"] for p in ps)
        n = max(lat.size, 1)
        out[api] = dict(
            clients=clients,
            seconds=round(wall, 2),
            requests=int(lat.size),
            errors=int(sum(p["errors"] for p in ps)),
            qps=round(lat.size / wall),
            p50_ms=round(float(np.percentile(lat, 50)), 3),
            p99_ms=round(float(np.percentile(lat, 99)), 3),
            max_ms=round(float(lat.max()), 2),
            server_cpu_ms_per_request=round(sum(p["server_cpu"] for p in ps) * 1000 / n, 3),
            client_cpu_ms_per_request=round(sum(p["client_cpu"] for p in ps) * 1000 / n, 3),
        )
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--clients", default="1,8")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--server-workers", type=int, default=8)
    p.add_argument("--server-processes", type=int, default=1, help="python -m serving --processes")
    p.add_argument("--apis", default="grpc,rest", help="the APIs to load, taking turns, per client count")
    p.add_argument("--slices", type=int, default=5, help="turns per API within --seconds")
    p.add_argument("--work-dir", default="/tmp/pinsage_bench_serving")
    p.add_argument(
        "--server-root",
        default=ROOT,
        help="checkout whose `python -m serving` is started (compare "
        "an older commit's server on the same model and the same client)",
    )
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "serving.json"))
    args = p.parse_args(argv)
    apis = args.apis.split(",")
    load = os.getloadavg()
    print(f"load average at start: {load}", flush=True)
    model_dir = build_model(args.work_dir, args.items, args.dim)
    port, rest_port = free_port(), free_port()
    proc = start_server(args, model_dir, port, rest_port if "rest" in apis else None)
    makers = {
        "grpc": lambda c: grpc_client(f"127.0.0.1:{port}", args.items, args.k, seed=c),
        "rest": lambda c: rest_client(rest_port, args.items, args.k, seed=c),
    }
    makers = {api: makers[api] for api in apis}
    rows = []
    try:
        ready_s = wait_ready(f"127.0.0.1:{port}", proc)
        print(f"server ready in {ready_s:.1f} s", flush=True)
        run_load(makers, 2, 1.0, 1, proc.pid)  # warm-up
        for c in [int(x) for x in args.clients.split(",")]:
            for api, figures in run_load(makers, c, args.seconds, args.slices, proc.pid).items():
                row = dict(
                    api=api,
                    server_root=args.server_root,
                    server_processes=args.server_processes,
                    items=args.items,
                    dim=args.dim,
                    k=args.k,
                    **figures,
                )
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ratios = {
        str(c): round(r["p99_ms"] / g["p99_ms"], 2)
        for g in rows
        for r in rows
        if g["api"] == "grpc" and r["api"] == "rest" and (c := g["clients"]) == r["clients"]
    }
    if ratios:
        print(f"REST p99 / gRPC p99 by clients: {ratios}", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            {
                "rows": rows,
                "rest_over_grpc_p99_by_clients": ratios,
                "server_ready_seconds": round(ready_s, 1),
                "load_average_at_start": load,
                "cpus": os.cpu_count(),
                "target": "gRPC p99 <= 10 ms and >= 1.2k QPS with 8 clients at 1M items; REST p99 <= 2 x gRPC p99",
            },
            f,
            indent=1,
        )
    print(f"wrote {args.out}")


def start_server(args, model_dir: str, port: int, rest_port) -> subprocess.Popen:
    """`python -m serving` of --server-root as its own process (REST on rest_port when given, else off)."""
    cmd = [sys.executable, "-m", "serving", "--model-base-path", model_dir, "--port", str(port)]
    cmd += ["--max-workers", str(args.server_workers)]
    cmd += ["--processes", str(args.server_processes)] if args.server_processes > 1 else []
    if rest_port or args.server_root == ROOT:  # off (0) when not loaded: the default 8501 may be taken
        cmd += ["--rest-api-port", str(rest_port or 0)]
    return subprocess.Popen(cmd, cwd=args.server_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
