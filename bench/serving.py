"""Benchmark of the gRPC server: N concurrent clients for T seconds on loopback, related_items top-10 per request.

    .venv/bin/python bench/serving.py                                   # 1M items, 1 and 8 clients, 10 s each
    .venv/bin/python bench/serving.py --items 100000 --clients 1,8 --seconds 5
    .venv/bin/python bench/serving.py --dim 128 --clients 8 --enable-batching   # unbatched vs batched, one run
    .venv/bin/python bench/serving.py --dim 128 --pushes --seconds 60    # 8 clients while versions are pushed

--enable-batching runs an unbatched and a batched server (--enable_batching + a batching parameters file) on the
same model, alternating them `--rounds` times, and reports the QPS ratio (the box is shared: only ratios from
one run mean anything). --pushes keeps 8 clients on one server while two new versions are pushed (the Pusher's
temp dir + rename) and a junk all-digit directory appears, and reports failed requests and how long after each
push the clients were first answered by it.

A model version (export + ScaNN index, synthetic clustered 64-d vectors) is built once and cached under
--work-dir; the server runs as a separate process (`python -m serving`), as it would in production; each client
is a thread with its own channel sending single-item requests back to back (a closed loop, so the load is
bounded by the clients). Reports QPS, p50/p99 latency and the error count per client count. Clients and server
share this box's 2 cores, so the figures are a floor; the load average at start is recorded.
Target (issue): p99 <= 10 ms and >= 1.2k QPS with 8 clients at 1M items.
"""

from __future__ import annotations

import argparse
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
from pipeline.data import datasets
from pipeline.push import pusher
from schema import versions
from serving.client import related_request

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
    sm, ix = os.path.join(work_dir, f"sm_{items}x{dim}"), os.path.join(work_dir, f"ix_{items}x{dim}")
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


def run_load(addr: str, clients: int, seconds: float, items: int, k: int, server_pid: int, seen=None) -> dict:
    """Closed loop: each client sends its next request when the previous one returns. CPU time per request of
    the server and of the client process are recorded too: unlike QPS they hardly depend on what else runs."""
    rng = np.random.default_rng(clients)
    # serialized once: the clients share the box's 2 cores with the server, so they do as little as they can
    requests = [related_request([f"item{j}"], k).SerializeToString() for j in rng.integers(0, items, 2000)]
    latencies, errors, stop = [[] for _ in range(clients)], [0] * clients, threading.Event()

    def client(c):
        predict = grpc.insecure_channel(addr).unary_unary(
            PREDICT, request_serializer=None, response_deserializer=predict_pb2.PredictResponse.FromString
        )
        i = c
        while not stop.is_set():
            t = time.perf_counter()
            try:
                resp = predict(requests[i % len(requests)], timeout=5)
                latencies[c].append(time.perf_counter() - t)
                if seen is not None and resp.model_spec.version.value not in seen:
                    seen[resp.model_spec.version.value] = time.time()  # when a version first answered
            except grpc.RpcError:
                errors[c] += 1
            i += clients

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    cpu0 = cpu_seconds(server_pid), cpu_seconds(os.getpid(), children=False)
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    server_cpu, client_cpu = cpu_seconds(server_pid) - cpu0[0], cpu_seconds(os.getpid(), children=False) - cpu0[1]
    lat = np.concatenate([np.asarray(x) for x in latencies]) * 1000
    return dict(
        clients=clients,
        seconds=round(wall, 2),
        requests=int(lat.size),
        errors=int(sum(errors)),
        qps=round(lat.size / wall),
        p50_ms=round(float(np.percentile(lat, 50)), 3),
        p99_ms=round(float(np.percentile(lat, 99)), 3),
        max_ms=round(float(lat.max()), 2),
        server_cpu_ms_per_request=round(server_cpu * 1000 / max(lat.size, 1), 3),
        client_cpu_ms_per_request=round(client_cpu * 1000 / max(lat.size, 1), 3),
    )


def start_server(args, model_dir: str, port: int, extra=(), log_path=None):
    cmd = [sys.executable, "-m", "serving", "--model-base-path", model_dir, "--port", str(port)]
    cmd += ["--max-workers", str(args.server_workers)] + list(extra)
    if args.server_processes > 1:
        cmd += ["--processes", str(args.server_processes)]
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    return subprocess.Popen(cmd, cwd=args.server_root, stdout=subprocess.DEVNULL, stderr=log)


def stop_server(proc) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def measure(args, model_dir: str, extra=(), label="") -> list:
    """One server with `extra` flags: warm-up, then each client count for --seconds."""
    port = free_port()
    addr = f"127.0.0.1:{port}"
    proc = start_server(args, model_dir, port, extra)
    rows = []
    try:
        ready_s = wait_ready(addr, proc)
        print(f"server {label or 'default'} ready in {ready_s:.1f} s", flush=True)
        run_load(addr, 2, 1.0, args.items, args.k, proc.pid)  # warm-up
        for c in [int(x) for x in args.clients.split(",")]:
            row = dict(
                server=label or "default",
                server_root=args.server_root,
                server_processes=args.server_processes,
                items=args.items,
                dim=args.dim,
                k=args.k,
                server_ready_seconds=round(ready_s, 1),
                **run_load(addr, c, args.seconds, args.items, args.k, proc.pid),
            )
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        stop_server(proc)
    return rows


def batching_comparison(args, model_dir: str) -> dict:
    """Unbatched and batched servers alternated `--rounds` times in this one run; the QPS ratio per client count."""
    params = os.path.join(args.work_dir, "batching.config")
    with open(params, "w") as f:
        f.write(
            f"max_batch_size {{ value: {args.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {args.batch_timeout_micros} }}\n"
            f"max_enqueued_batches {{ value: 100 }}\nnum_batch_threads {{ value: 1 }}\n"
        )
    rows = []
    for _ in range(args.rounds):
        rows += measure(args, model_dir, (), "unbatched")
        rows += measure(args, model_dir, ("--enable_batching", "--batching_parameters_file", params), "batched")
    ratios = {}
    for c in sorted({r["clients"] for r in rows}):
        qps = {s: [r["qps"] for r in rows if r["clients"] == c and r["server"] == s] for s in ("unbatched", "batched")}
        ratios[c] = round(float(np.mean(qps["batched"]) / np.mean(qps["unbatched"])), 2)
    print(f"QPS ratio batched / unbatched by client count: {ratios}", flush=True)
    return dict(rows=rows, qps_ratio_batched_over_unbatched=ratios, batching_parameters=open(params).read())


def pushes_under_load(args, model_dir: str) -> dict:
    """8 clients on one server for --seconds: at 10 % a version is pushed; once the clients see it, a junk
    all-digit directory appears above it; two polls later a second version is pushed."""
    import shutil

    port, clients = free_port(), 8
    addr = f"127.0.0.1:{port}"
    fresh = os.path.join(args.work_dir, "pushes", "serving_model", "pinsage")  # the cached model stays as it is
    shutil.rmtree(os.path.dirname(fresh), ignore_errors=True)
    v = versions.latest_version(model_dir)
    shutil.copytree(os.path.join(model_dir, str(v)), os.path.join(fresh, str(v)), copy_function=os.link)
    model_dir = fresh
    log_path = os.path.join(args.work_dir, "pushes_server.log")
    proc = start_server(args, model_dir, port, ("--poll-seconds", str(args.poll_seconds)), log_path)
    sm, ix = (
        os.path.join(args.work_dir, f"sm_{args.items}x{args.dim}"),
        os.path.join(args.work_dir, f"ix_{args.items}x{args.dim}"),
    )
    events, seen = [], {}
    try:
        wait_ready(addr, proc)
        run_load(addr, 2, 1.0, args.items, args.k, proc.pid)
        result = {}
        load = threading.Thread(
            target=lambda: result.update(run_load(addr, clients, args.seconds, args.items, args.k, proc.pid, seen=seen))
        )
        load.start()
        t0 = time.time()
        time.sleep(0.1 * args.seconds)
        first = _push(sm, ix, model_dir, events)
        while first not in seen and time.time() - t0 < 0.6 * args.seconds:  # until the clients see it
            time.sleep(0.1)
        junk = os.path.join(model_dir, str(first + 1000))  # a junk all-digit folder above the good versions
        os.makedirs(junk)
        events.append(("junk", first + 1000, time.time()))
        time.sleep(2 * args.poll_seconds)
        _push(sm, ix, model_dir, events)
        load.join()
    finally:
        stop_server(proc)
    served = {v: round(seen[v] - t, 2) if v in seen else None for what, v, t in events if what == "push"}
    print(f"failed requests: {result['errors']}; seconds from push to first answer: {served}", flush=True)
    return dict(
        load=result,
        events=[(w, v) for w, v, _ in events],
        push_to_served_seconds=served,
        poll_seconds=args.poll_seconds,
        server_log_tail=open(log_path).read()[-3000:],
    )


def _push(sm: str, ix: str, model_dir: str, events: list) -> int:
    path = pusher.push(sm, ix, os.path.dirname(model_dir), keep=3)  # temp dir + rename, as the Pusher does
    events.append(("push", int(os.path.basename(path)), time.time()))
    return int(os.path.basename(path))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--clients", default="1,8")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--server-workers", type=int, default=8)
    p.add_argument("--server-processes", type=int, default=1, help="python -m serving --processes")
    p.add_argument("--enable-batching", action="store_true", help="compare unbatched and batched servers")
    p.add_argument("--rounds", type=int, default=2, help="with --enable-batching: alternations of the two")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--batch-timeout-micros", type=int, default=500)
    p.add_argument("--pushes", action="store_true", help="8 clients while versions are pushed")
    p.add_argument("--poll-seconds", type=float, default=1.0, help="with --pushes: the server's poll interval")
    p.add_argument("--work-dir", default="/tmp/pinsage_bench_serving")
    p.add_argument(
        "--server-root",
        default=ROOT,
        help="checkout whose `python -m serving` is started (compare "
        "an older commit's server on the same model and the same client)",
    )
    p.add_argument("--out", default=None, help="default: bench/results/serving[_batching|_pushes].json")
    args = p.parse_args(argv)
    load = os.getloadavg()
    print(f"load average at start: {load}", flush=True)
    model_dir = build_model(args.work_dir, args.items, args.dim)
    if args.pushes:
        out, name = pushes_under_load(args, model_dir), "serving_pushes"
    elif args.enable_batching:
        out, name = batching_comparison(args, model_dir), "serving_batching"
    else:
        out, name = dict(rows=measure(args, model_dir)), "serving"
    out.update(load_average_at_start=load, load_average_at_end=os.getloadavg(), cpus=os.cpu_count())
    out["target"] = "p99 <= 10 ms and >= 1.2k QPS with 8 clients at 1M items; batched >= 1.3x unbatched QPS"
    path = args.out or os.path.join(ROOT, "bench", "results", f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
