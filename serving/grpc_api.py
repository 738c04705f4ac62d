"""The gRPC front end: TF Serving's PredictionService / ModelService on grpc.aio over the request core
(serving/core.py), so any TF Serving client (PredictionServiceStub + tf.make_tensor_proto) works against it.

grpc.aio runs on an asyncio event loop in its own thread: one-item related_items requests, the bulk of the
traffic, are answered on the loop itself (or, batched, queued on it); anything heavier (batches, embed_item, other
signatures, metadata) goes to a pool of `max_workers` threads so it cannot stall the loop. Against grpc's
thread-pool server this saves a thread hand-off per request (bench/serving.py). Messages over `max_message_bytes`
are refused by gRPC itself (RESOURCE_EXHAUSTED). Every Predict is counted in serving/metrics.py (by model,
signature, status code; latency histogram).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures
from typing import Optional

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from serving import metrics
from serving.config import DEFAULTS
from serving.core import ModelServer

__all__ = ["GrpcServer", "event_loop"]

_LOOP: Optional[asyncio.AbstractEventLoop] = None
_LOOP_LOCK = threading.Lock()


def event_loop() -> asyncio.AbstractEventLoop:
    """The one asyncio loop (in a daemon thread) that every grpc.aio server of this process runs on: grpc.aio
    binds its completion queue to a single event loop per process, so a second server on a second loop hangs."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = asyncio.new_event_loop()
            threading.Thread(target=_LOOP.run_forever, name="grpc-aio", daemon=True).start()
        return _LOOP


class _AioServicer(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    """The grpc.aio face of a ModelServer: the fast path inline (or batched), the rest on the worker threads;
    every Predict counted in serving/metrics.py."""

    def __init__(self, core: ModelServer, pool: futures.ThreadPoolExecutor):
        self.core, self.pool = core, pool

    async def _answer(self, fn, request, context):
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, request)
        except Exception as e:
            await context.abort(*self.core.status_of(e))

    async def _predict(self, request):
        resp = self.core.predict_fast(request)
        if resp is None:
            return await asyncio.get_running_loop().run_in_executor(self.pool, self.core.predict, request)
        if not isinstance(resp, predict_pb2.PredictResponse):  # batched: the batcher answers it on this loop
            resp = await resp
        return resp

    async def Predict(self, request, context):
        start = time.perf_counter()
        try:
            resp = await self._predict(request)
        except Exception as e:
            code, message = self.core.status_of(e)
            self._record(request, code, start)
            await context.abort(code, message)
        self._record(request, grpc.StatusCode.OK, start)
        return resp

    def _record(self, request, code: grpc.StatusCode, start: float) -> None:
        """Labels only from what the server knows (a served model, a signature of it), so clients sending
        made-up names cannot grow the metrics without bound."""
        spec = request.model_spec
        m = self.core.models.get(spec.name)
        v = m.newest if m is not None else None
        signature = spec.signature_name or "serving_default"
        if code != grpc.StatusCode.OK and (v is None or signature not in v.signature_defs):
            signature = "_unknown"
        metrics.record("grpc", spec.name if m is not None else "_unknown", signature, code.name, start)

    async def GetModelMetadata(self, request, context):
        return await self._answer(self.core.metadata, request, context)

    async def GetModelStatus(self, request, context):
        return await self._answer(self.core.status, request, context)


class GrpcServer:
    """A grpc.aio server for one ModelServer on event_loop(), started on construction (OSError when the port
    cannot be bound). reuse_port lets several server processes share one port (serving/server.py's processes)."""

    def __init__(
        self,
        core: ModelServer,
        port: int,
        host: str = "[::]",
        max_workers: int = DEFAULTS.max_workers,
        max_message_bytes: int = DEFAULTS.max_message_bytes,
        reuse_port: bool = False,
    ):
        opts = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.so_reuseport", int(reuse_port)),
        ]
        self._pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="predict")
        self._server: Optional[grpc.aio.Server] = None
        self.port: Optional[int] = None
        ready, failure = threading.Event(), []

        async def run():
            server = grpc.aio.server(options=opts, maximum_concurrent_rpcs=max_workers * 16)
            servicer = _AioServicer(core, self._pool)
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
            model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
            try:
                bound = server.add_insecure_port(f"{host}:{port}")
            except RuntimeError:
                bound = 0
            if bound == 0:
                failure.append(OSError(f"cannot bind {host}:{port}"))
                ready.set()
                return
            await server.start()
            self._server, self.port = server, bound
            ready.set()
            await server.wait_for_termination()

        self._done = asyncio.run_coroutine_threadsafe(run(), event_loop())
        ready.wait()
        if failure:
            self._pool.shutdown()
            raise failure[0]

    def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(grace), event_loop()).result()
            self._done.result()
            self._pool.shutdown()
            self._server = None

    def wait(self) -> None:
        """Blocks until the server stops."""
        self._done.result()
