"""Benchmark of the server, gRPC and REST: N concurrent clients for T seconds on loopback, related_items top-10
per request (or recommend for 50-item histories with --workload recommend).

    .venv/bin/python bench/serving.py                                   # 1M items, 1 and 8 clients, 10 s each
    .venv/bin/python bench/serving.py --items 100000 --clients 1,8 --seconds 5
    .venv/bin/python bench/serving.py --apis grpc,rest                  # gRPC vs REST on the same server
    .venv/bin/python bench/serving.py --dim 128 --clients 8 --enable-batching   # unbatched vs batched, one run
    .venv/bin/python bench/serving.py --dim 128 --pushes --seconds 60    # 8 clients while versions are pushed
    .venv/bin/python bench/serving.py --workload recommend --enable-batching   # recommend, unbatched vs batched
    .venv/bin/python -m bench.serving --workload recommend --smoke      # a few seconds on 2,000 items (the test)

--apis grpc,rest loads both APIs against the same server process: per client count the two take turns, --slices
(5) turns each of --seconds / --slices, so that both see the same background load, and the REST p99 / gRPC p99
ratio is reported (with --enable-batching per server; REST shares the port across --server-processes as gRPC
does). The REST clients send TF Serving's columnar JSON ({"signature_name": "related_items", "inputs":
{"item_id": [id], "k": k}}) on one keep-alive http.client connection per thread. With one API (the default:
grpc) a client count runs once for --seconds, unsliced. --enable-batching runs an unbatched and a batched
server (--enable_batching + a batching parameters file) on the same model, alternating them `--rounds` times,
and reports the QPS ratio per API (the box is shared: only ratios from one run mean anything). --pushes keeps 8
gRPC clients on one server while two new versions are pushed (the Pusher's temp dir + rename) and a junk
all-digit directory appears, and reports failed requests and how long after each push the clients were first
answered by it.

A model version (export + ScaNN index, synthetic clustered 64-d vectors) is built once and cached under
--work-dir; the server runs as a separate process (`python -m serving`), as it would in production; each client
is a thread with its own channel (or connection) sending single-item requests back to back (a closed loop, so
the load is bounded by the clients). Reports QPS, p50/p99 latency and the error count per client count and
API. Clients and server share the box's cores, so the figures are a floor; the load average at start is
recorded. Targets: gRPC p99 <= 10 ms and >= 1.2k QPS with 8 clients at 1M items; batched >= 1.3x
unbatched QPS; REST p99 <= 2 x gRPC p99.

--workload recommend: the version also has an untrained context tower of the default shape (sequence form,
max_len 50, 2 layers, 2 heads, width d; the weights do not change the cost), exported as the pipeline does, and
each request is `recommend` for one history of --history (50) random known ids, --unknown-share (10 %) of them
with 3 unknown ids (skipped by the tower). Each request costs a tower call and a top-(k + 50) search with the
history dropped. Targets: p99 <= 15 ms with 8 clients at 1M items; batched >= 1.3x unbatched QPS. Its JSON is
bench/results/serving_recommend[_batching].json.
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
from pipeline.data import datasets
from pipeline.push import pusher
from schema import versions
from serving.client import recommend_request, related_request

PREDICT = "/tensorflow.serving.PredictionService/Predict"
WORKLOAD_HELP = "related: related_items for one id; recommend: a history of --history ids (a tower in the model)"
SMOKE_HELP = "defaults of 2,000 x 16 items, 1 and 2 clients for 1 s, one round: the benchmark runs (the tests)"


def build_model(work_dir: str, items: int, dim: int, tower: bool = False) -> str:
    """serving_model/pinsage with one version for (items, dim), reused when it exists (and has the serving
    arrays: one cached before them is built again). `tower`: with an untrained context tower of the default
    shape (recommend's cost does not depend on the weights), exported as the pipeline exports it."""
    import shutil

    tag = f"{items}x{dim}" + ("_tower" if tower else "")
    model_dir = os.path.join(work_dir, f"serving_model_{tag}_r{ib.REORDER}", "pinsage")
    v = versions.latest_version(model_dir)
    if v and versions.read_serving_arrays(versions.index_dir(os.path.join(model_dir, str(v)))) is not None:
        return model_dir
    shutil.rmtree(os.path.dirname(model_dir), ignore_errors=True)
    from modules.export import export_serving_model

    t = time.time()
    emb = datasets.clustered_vectors(items, dim, clusters=max(50, items // 1000))
    ids = [f"item{j}" for j in range(items)]
    titles = [f"Title {j}" for j in range(items)]
    sm, ix = os.path.join(work_dir, f"sm_{tag}"), os.path.join(work_dir, f"ix_{tag}")
    export_serving_model(sm, emb, ids, titles=titles, context_tower=default_tower(emb) if tower else None)
    stats = ib.build_index(emb, ids, ix, titles=titles, recall_queries=300)
    pusher.push(sm, ix, os.path.dirname(model_dir))
    print(
        f"built {tag} in {time.time() - t:.0f} s; index {stats['kind']} recall@10 {stats['recall_at_10']}", flush=True
    )
    return model_dir


def default_tower(emb: np.ndarray):
    """An untrained context tower of the default shape (the sequence form: the costlier of the two) over emb."""
    from modules import context_tower as ct

    return ct.build_context_tower(ct.ContextTowerConfig(form="sequence"), emb)


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


def request_ids(args, n: int = 2000, seed: int = 0) -> list:
    """The requests' item ids: one id each for related_items; for recommend a history of --history random known
    ids each, --unknown-share of them with 3 of the ids replaced by unknown ones (skipped by the tower)."""
    rng = np.random.default_rng(seed)
    if args.workload == "related":
        return [f"item{j}" for j in rng.integers(0, args.items, n)]
    out = []
    for r in range(n):
        h = [f"item{j}" for j in rng.integers(0, args.items, args.history)]
        if rng.random() < args.unknown_share:
            for u, at in enumerate(rng.choice(len(h), min(3, len(h)), replace=False)):
                h[at] = f"unknown{r}_{u}"
        out.append(h)
    return out


def grpc_payloads(args) -> list:
    """The serialized gRPC requests, built once: the clients share the box's 2 cores with the server, so they do
    as little as they can."""
    make = related_request if args.workload == "related" else recommend_request
    return [make([x], args.k).SerializeToString() for x in request_ids(args)]


def rest_payloads(args) -> list:
    """TF Serving's columnar JSON bodies of the same requests."""
    if args.workload == "related":
        return [
            json.dumps({"signature_name": "related_items", "inputs": {"item_id": [x], "k": args.k}}).encode()
            for x in request_ids(args)
        ]
    return [
        json.dumps({"signature_name": "recommend", "inputs": {"history_ids": [h], "k": args.k}}).encode()
        for h in request_ids(args)
    ]


def grpc_client(addr: str, requests: list, c: int, clients: int, seen=None):
    """A function sending client c's next gRPC request (of the serialized `requests`, every `clients`-th from c).
    `seen` (a dict) gets the time each served version first answered."""
    predict = grpc.insecure_channel(addr).unary_unary(
        PREDICT, request_serializer=None, response_deserializer=predict_pb2.PredictResponse.FromString
    )
    step = iter(range(c, 10**15, clients))

    def send() -> bool:
        try:
            resp = predict(requests[next(step) % len(requests)], timeout=5)
        except grpc.RpcError:
            return False
        if seen is not None and resp.model_spec.version.value not in seen:
            seen[resp.model_spec.version.value] = time.time()  # when a version first answered
        return True

    return send


def rest_client(rest_port: int, bodies: list, c: int, clients: int):
    """The same for REST: client c POSTs its next body on one keep-alive http.client connection (reopened after
    an error, which counts as a failed request)."""
    headers = {"Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=5)
    step = iter(range(c, 10**15, clients))

    def send() -> bool:
        nonlocal conn
        try:
            conn.request("POST", "/v1/models/pinsage:predict", bodies[next(step) % len(bodies)], headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=5)
            return False

    return send


def run_slice(senders: list, seconds: float, server_pid: int) -> dict:
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
        lat=np.concatenate([np.asarray(x, dtype=float) for x in latencies]) * 1000,
        errors=sum(errors),
        wall=time.perf_counter() - start,
        server_cpu=cpu_seconds(server_pid) - cpu0[0],
        client_cpu=cpu_seconds(os.getpid(), children=False) - cpu0[1],
    )


def run_load(makers: dict, clients: int, seconds: float, server_pid: int, slices: int = 1) -> dict:
    """{api: figures} for `clients` clients per API (makers: {api: make(c, clients) -> send}), all on the same
    requests. With several APIs they take turns, `slices` turns of seconds / slices each, so that all
    see the same background load (this box is shared: a load that changes over a few seconds would otherwise
    decide the ratio); one API runs once for `seconds`, unsliced, as before REST was added."""
    senders = {api: [make(c, clients) for c in range(clients)] for api, make in makers.items()}
    slices = slices if len(makers) > 1 else 1
    parts = {api: [] for api in makers}
    for _ in range(slices):
        for api in makers:
            parts[api].append(run_slice(senders[api], seconds / slices, server_pid))
    return {api: figures(clients, ps) for api, ps in parts.items()}


def figures(clients: int, parts: list) -> dict:
    """QPS, latency and CPU per request over run_slice's parts; the latencies and CPU per request are None when
    no request succeeded (the errors say how many failed)."""
    lat, wall = np.concatenate([p["lat"] for p in parts]), sum(p["wall"] for p in parts)
    n = lat.size

    def per_request(key):
        return round(sum(p[key] for p in parts) * 1000 / n, 3) if n else None

    return dict(
        clients=clients,
        seconds=round(wall, 2),
        requests=int(n),
        errors=int(sum(p["errors"] for p in parts)),
        qps=round(n / wall),
        p50_ms=round(float(np.percentile(lat, 50)), 3) if n else None,
        p95_ms=round(float(np.percentile(lat, 95)), 3) if n else None,
        p99_ms=round(float(np.percentile(lat, 99)), 3) if n else None,
        max_ms=round(float(lat.max()), 2) if n else None,
        server_cpu_ms_per_request=per_request("server_cpu"),
        client_cpu_ms_per_request=per_request("client_cpu"),
    )


def makers_for(args, apis, port: int, rest_port) -> dict:
    """{api: make(c, clients)} for the APIs asked for, in their order, on args.payloads (built once per run)."""
    makers = {
        "grpc": lambda c, n: grpc_client(f"127.0.0.1:{port}", args.payloads["grpc"], c, n),
        "rest": lambda c, n: rest_client(rest_port, args.payloads["rest"], c, n),
    }
    return {api: makers[api] for api in apis}


def server_takes_rest_flag(server_root: str) -> bool:
    """Whether --server-root's `python -m serving` has --rest-api-port (older checkouts have no REST API)."""
    out = subprocess.run(
        [sys.executable, "-m", "serving", "--help"], cwd=server_root, capture_output=True, text=True, timeout=300
    )
    return "--rest-api-port" in out.stdout


def start_server(args, model_dir: str, port: int, rest_port=None, extra=(), log_path=None):
    """`python -m serving` of --server-root as its own process, REST on rest_port when given, else off (0): the
    default 8501 may be taken on a shared box. With --server-processes all of them share both ports."""
    cmd = [sys.executable, "-m", "serving", "--model-base-path", model_dir, "--port", str(port)]
    cmd += ["--max-workers", str(args.server_workers)] + list(extra)
    if args.server_processes > 1:
        cmd += ["--processes", str(args.server_processes)]
    if args.rest_flag:
        cmd += ["--rest-api-port", str(rest_port or 0)]
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    return subprocess.Popen(cmd, cwd=args.server_root, stdout=subprocess.DEVNULL, stderr=log)


def stop_server(proc) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def measure(args, model_dir: str, extra=(), label="") -> list:
    """One server with `extra` flags: warm-up, then each client count for --seconds (per API in --apis)."""
    port = free_port()
    rest_port = free_port() if "rest" in args.apis else None
    proc = start_server(args, model_dir, port, rest_port, extra)
    makers = makers_for(args, args.apis, port, rest_port)
    rows = []
    try:
        ready_s = wait_ready(f"127.0.0.1:{port}", proc)
        print(f"server {label or 'default'} ready in {ready_s:.1f} s", flush=True)
        run_load(makers, 2, args.warmup_seconds, proc.pid)  # warm-up
        for c in [int(x) for x in args.clients.split(",")]:
            for api, figures in run_load(makers, c, args.seconds, proc.pid, args.slices).items():
                row = dict(
                    server=label or "default",
                    workload=args.workload,
                    api=api,
                    server_root=args.server_root,
                    server_processes=args.server_processes,
                    items=args.items,
                    dim=args.dim,
                    k=args.k,
                    history=args.history if args.workload == "recommend" else None,
                    server_ready_seconds=round(ready_s, 1),
                    **figures,
                )
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        stop_server(proc)
    return rows


def rest_over_grpc_p99(rows: list) -> dict:
    """{clients: REST p99 / gRPC p99} over rows of one server (empty unless both APIs were loaded)."""
    p99 = {(r["api"], r["clients"]): r["p99_ms"] for r in rows}
    return {
        str(c): round(p99[("rest", c)] / p99[("grpc", c)], 2)
        for api, c in p99
        if api == "grpc" and p99.get(("rest", c)) and p99[("grpc", c)]
    }


def plain(args, model_dir: str) -> dict:
    rows = measure(args, model_dir)
    out = dict(rows=rows)
    if len(args.apis) > 1:
        out["rest_over_grpc_p99_by_clients"] = ratios = rest_over_grpc_p99(rows)
        print(f"REST p99 / gRPC p99 by clients: {ratios}", flush=True)
    return out


def batching_comparison(args, model_dir: str) -> dict:
    """Unbatched and batched servers alternated `--rounds` times in this one run; the QPS ratio per client count
    (per API: the REST ratio under rest_qps_ratio_batched_over_unbatched)."""
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
    out = dict(rows=rows)
    for api in args.apis:
        ratios = {}
        for c in sorted({r["clients"] for r in rows}):
            qps = {
                s: [r["qps"] for r in rows if r["clients"] == c and r["server"] == s and r["api"] == api]
                for s in ("unbatched", "batched")
            }
            ratios[c] = round(float(np.mean(qps["batched"]) / max(np.mean(qps["unbatched"]), 1)), 2)
        print(f"{api} QPS ratio batched / unbatched by client count: {ratios}", flush=True)
        out[("" if api == "grpc" else f"{api}_") + "qps_ratio_batched_over_unbatched"] = ratios
    if len(args.apis) > 1:
        out["rest_over_grpc_p99_by_clients"] = {
            s: rest_over_grpc_p99([r for r in rows if r["server"] == s]) for s in ("unbatched", "batched")
        }
    out["batching_parameters"] = open(params).read()
    return out


def pushes_under_load(args, model_dir: str) -> dict:
    """8 clients on one server for --seconds: at 10 % a version is pushed; once the clients see it, a junk
    all-digit directory appears above it; two polls later a second version is pushed. gRPC only: the time a
    version first answered is read from the answers' model_spec, which a REST predict answer does not have."""
    import shutil

    port, clients = free_port(), 8
    addr = f"127.0.0.1:{port}"
    fresh = os.path.join(args.work_dir, "pushes", "serving_model", "pinsage")  # the cached model stays as it is
    shutil.rmtree(os.path.dirname(fresh), ignore_errors=True)
    v = versions.latest_version(model_dir)
    shutil.copytree(os.path.join(model_dir, str(v)), os.path.join(fresh, str(v)), copy_function=os.link)
    model_dir = fresh
    log_path = os.path.join(args.work_dir, "pushes_server.log")
    proc = start_server(args, model_dir, port, None, ("--poll-seconds", str(args.poll_seconds)), log_path)
    sm, ix = (
        os.path.join(args.work_dir, f"sm_{args.items}x{args.dim}"),
        os.path.join(args.work_dir, f"ix_{args.items}x{args.dim}"),
    )
    events, seen = [], {}
    try:
        wait_ready(addr, proc)
        run_load(makers_for(args, ["grpc"], port, None), 2, 1.0, proc.pid)  # warm-up
        makers = {"grpc": lambda c, n: grpc_client(addr, args.payloads["grpc"], c, n, seen=seen)}
        result = {}
        load = threading.Thread(target=lambda: result.update(run_load(makers, clients, args.seconds, proc.pid)["grpc"]))
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--clients", default="1,8")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--workload", choices=("related", "recommend"), default="related", help=WORKLOAD_HELP)
    p.add_argument("--history", type=int, default=50, help="recommend: ids per history")
    p.add_argument("--unknown-share", type=float, default=0.1, help="recommend: share with 3 unknown ids")
    p.add_argument("--warmup-seconds", type=float, default=1.0, help="2 clients before the measured loads")
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    p.add_argument("--server-workers", type=int, default=8)
    p.add_argument("--server-processes", type=int, default=1, help="python -m serving --processes")
    p.add_argument("--apis", default="grpc", help="grpc, rest or grpc,rest: the APIs loaded, in turns")
    p.add_argument("--slices", type=int, default=5, help="with several --apis: turns per API within --seconds")
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
    p.add_argument("--out", default=None, help="default: bench/results/serving[_recommend][_batching|_pushes].json")
    if p.parse_args(argv).smoke:  # its sizes as defaults: flags given beside it still count
        p.set_defaults(items=2000, dim=16, seconds=1.0, clients="1,2", rounds=1, warmup_seconds=0.5, slices=1)
    args = p.parse_args(argv)
    args.apis = args.apis.split(",")
    if not args.apis or set(args.apis) - {"grpc", "rest"} or len(set(args.apis)) < len(args.apis):
        p.error(f"--apis: grpc, rest or both (comma-separated), got {','.join(args.apis)!r}")
    if args.pushes and args.workload != "related":
        p.error("--pushes loads related_items only")
    if args.pushes and "rest" in args.apis:
        p.error("--pushes loads gRPC only (a REST predict answer does not say which version served it)")
    if args.slices < 1:
        p.error(f"--slices must be >= 1, got {args.slices}")
    args.rest_flag = server_takes_rest_flag(args.server_root)
    if "rest" in args.apis and not args.rest_flag:
        p.error(f"--apis rest: {args.server_root}'s `python -m serving` has no --rest-api-port")
    return args


TARGETS = {
    "related": "p99 <= 10 ms and >= 1.2k QPS with 8 clients at 1M items; batched >= 1.3x unbatched QPS; "
    "REST p99 <= 2 x gRPC p99",
    "recommend": "p99 <= 15 ms with 8 clients at 1M items; batched >= 1.3x unbatched QPS",
}


def main(argv=None):
    args = parse_args(argv)
    load = os.getloadavg()
    print(f"load average at start: {load}", flush=True)
    model_dir = build_model(args.work_dir, args.items, args.dim, tower=args.workload == "recommend")
    args.payloads = {"grpc": grpc_payloads(args), "rest": rest_payloads(args) if "rest" in args.apis else None}
    prefix = "serving" + ("_recommend" if args.workload == "recommend" else "")
    if args.pushes:
        out, name = pushes_under_load(args, model_dir), f"{prefix}_pushes"
    elif args.enable_batching:
        out, name = batching_comparison(args, model_dir), f"{prefix}_batching"
    else:
        out, name = plain(args, model_dir), prefix
    out.update(load_average_at_start=load, load_average_at_end=os.getloadavg(), cpus=os.cpu_count())
    out.update(workload=args.workload, target=TARGETS[args.workload])
    print(f"load average at end: {out['load_average_at_end']}", flush=True)
    path = args.out or os.path.join(ROOT, "bench", "results", f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
