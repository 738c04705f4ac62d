"""The launcher: serve(config) starts a server (the request core of serving/core.py, its gRPC front end and
optionally its REST front end) or several server processes on one port; serve_from_args runs what the command line
(serving/flags.py) describes, for `pinsage serve` and `python -m serving`.

Why our own server: stock TF Serving can serve the pushed SavedModel (exact top-k over the whole catalogue per
request), but approximate search needs ScaNN, which TF Serving does not link. Speaking the same protos means any
TF Serving client (PredictionServiceStub + tf.make_tensor_proto) works against either. To use the real
container on the same directory instead:
    docker run -p 8500:8500 -v $PWD/serving_model/pinsage:/models/pinsage -e MODEL_NAME=pinsage tensorflow/serving
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
from typing import List, Optional

from schema import versions
from serving import model_config
from serving.config import ServingConfig
from serving.core import ModelServer
from serving.grpc_api import GrpcServer, event_loop
from serving.model_config import ConfigError, ModelSpec, load_model_config
from serving.rest import RestApi, RestServer

__all__ = ["ModelServer", "Server", "ServingConfig", "config_from_args", "model_specs_from", "serve", "serve_from_args"]
log = logging.getLogger("pinsage.serving")


def resolve_model_dir(model_base_path: str, model_name: Optional[str] = None):
    """(directory holding the version dirs, model name). Like TF Serving, `model_base_path` is that directory
    (serving_model/pinsage); the parent (serving_model/) is accepted too when it holds one model (or `model_name`)."""
    base = os.path.abspath(model_base_path)
    if model_name and os.path.isdir(os.path.join(base, model_name)) and not versions.list_versions(base):
        return os.path.join(base, model_name), model_name
    subdirs = (
        [d for d in os.listdir(base) if not d.startswith(".") and os.path.isdir(os.path.join(base, d))]
        if os.path.isdir(base)
        else []
    )
    if (
        not model_name
        and not versions.list_versions(base)
        and len(subdirs) == 1
        and not versions.is_version_name(subdirs[0])
    ):
        return os.path.join(base, subdirs[0]), subdirs[0]
    return base, model_name or os.path.basename(base)


def model_specs_from(
    model_base_path: Optional[str], model_name: Optional[str], model_config_file: Optional[str]
) -> List[ModelSpec]:
    """The models to serve: --model_config_file, or the one-model shortcut --model_base_path [--model_name]
    (latest policy, one version). Exactly one of the two; ConfigError (a ValueError) otherwise."""
    if bool(model_base_path) == bool(model_config_file):
        raise ConfigError("give either --model_base_path (one model) or --model_config_file (several), not both")
    if model_config_file:
        return load_model_config(model_config_file)
    model_dir, name = resolve_model_dir(model_base_path, model_name)
    return [ModelSpec(name, model_dir)]


class Server:
    """A running server (what serve(config, block=False) returns): the request core, its gRPC front end and, when
    the config asks for one, its REST front end (None otherwise)."""

    def __init__(self, core: ModelServer, grpc_server: GrpcServer, rest: Optional[RestServer] = None):
        self.core, self.grpc, self.rest = core, grpc_server, rest

    @property
    def port(self) -> int:
        """The bound gRPC port."""
        return self.grpc.port

    def stop(self, grace: float = 1.0) -> None:
        if self.rest is not None:
            self.rest.stop()
            self.rest = None
        self.grpc.stop(grace)
        self.core.stop()

    def wait(self) -> None:
        """Blocks until gRPC stops."""
        self.grpc.wait()


def serve(config: ServingConfig, block: bool = True) -> Optional[Server]:
    """Starts the server `config` describes (what `pinsage serve` runs). block=False returns the running Server.

    config.processes > 1 starts that many server processes on the same port (SO_REUSEPORT: the kernel spreads the
    clients' connections over them). Python answers a request under one GIL per process, so on a box with
    several cores this is how one machine's throughput scales (the same reason TF Serving runs one process with
    C++ threads). Each process loads and hot-swaps versions on its own, so for up to `poll_seconds` after a push
    two connections may be served by different versions. It needs a fixed port and blocks until stopped.

    config.rest_api_port: TF Serving's REST API (serving/rest.py) on that port as well (0 = any free port, None =
    none), on the same event loop as gRPC, with Prometheus text at config.monitoring_path (None = not served)."""
    specs = model_specs_from(config.model_base_path, config.model_name, config.model_config_file)  # errors first
    if config.processes > 1:
        if not block or config.port == 0:
            raise ValueError("processes > 1 needs a fixed port and block=True")
        return _serve_processes(config)
    server = _start(config, specs)
    if block:
        try:
            server.wait()
        except KeyboardInterrupt:
            server.stop()
    return server


def _start(config: ServingConfig, specs: List[ModelSpec], reuse_port: bool = False) -> Server:
    """Loads every model's versions, starts gRPC, REST (when configured) and the version poller."""
    core = ModelServer(specs, config=config)
    core.start(event_loop())
    try:
        grpc_server = GrpcServer(
            core,
            config.port,
            max_workers=config.max_workers,
            max_message_bytes=config.max_message_bytes,
            reuse_port=reuse_port,
        )
    except OSError:
        core.stop()
        raise
    core.start_polling()
    server = Server(core, grpc_server)
    if config.rest_api_port is not None:
        server.rest = _start_rest(server, config, reuse_port)
    for m in core.models.values():
        log.info(
            "model '%s' from %s on port %d (versions %s, pid %d)",
            m.name,
            m.spec.base_path,
            server.port,
            sorted(m.available) or "none yet",
            os.getpid(),
        )
    return server


def _start_rest(server: Server, config: ServingConfig, reuse_port: bool) -> RestServer:
    """REST on the grpc.aio server's event loop: one loop answers both APIs."""
    api = RestApi(server.core, max_workers=config.max_workers, monitoring_path=config.monitoring_path)
    try:
        return RestServer(api, event_loop(), config.rest_api_port, reuse_port=reuse_port)
    except (OSError, ValueError):  # the port is taken or out of range: nothing of this server keeps running
        api.pool.shutdown()
        server.stop()
        raise


def config_from_args(args) -> ServingConfig:
    """The ServingConfig that parsed serving/flags.py arguments describe, with the batching parameters and the
    monitoring config read from their files; ConfigError for a bad flag combination or file."""
    if args.batching_parameters_file and not args.enable_batching:
        raise ConfigError("--batching_parameters_file needs --enable_batching")
    batching = model_config.load_batching_parameters(args.batching_parameters_file) if args.enable_batching else None
    return ServingConfig(
        model_base_path=args.model_base_path,
        model_name=args.model_name,
        model_config_file=args.model_config_file,
        port=args.port,
        poll_seconds=args.poll_seconds,
        max_workers=args.max_workers,
        max_batch=args.max_batch,
        processes=args.processes,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        retry_max_seconds=args.retry_max_seconds,
        batching=batching,
        monitoring_path=model_config.load_monitoring_config(args.monitoring_config_file),
        rest_api_port=args.rest_api_port or None,  # 0 = off on the command line, as TF Serving's flag
    )


def serve_from_args(args, prog: str) -> int:
    """Runs the server the parsed arguments describe; a clear error and exit code 1 when it cannot start."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        serve(config_from_args(args))
    except ConfigError as e:  # a bad flag combination or config file: a usage error
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:  # the port is taken, --processes without a fixed port
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


def _serve_child(config: ServingConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = _start(
        config, model_specs_from(config.model_base_path, config.model_name, config.model_config_file), reuse_port=True
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    server.stop()


def _serve_processes(config: ServingConfig) -> None:
    """n children serving on one port; a child that dies takes the others down with it (a supervisor such as
    Kubernetes then restarts the whole server, instead of it running on silently at reduced capacity)."""
    n, port = config.processes, config.port
    # a port someone else holds must be an error, not a silent share: probe it without SO_REUSEPORT first
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as probe:
        try:
            probe.bind(("::" if socket.has_ipv6 else "0.0.0.0", port))
        except OSError as e:
            raise OSError(f"cannot bind port {port}: {e}") from None
    ctx = mp.get_context("spawn")
    children = [ctx.Process(target=_serve_child, args=(config,), name=f"serving-{i}") for i in range(n)]
    for c in children:
        c.start()
    log.info("%d server processes on port %d: %s", n, port, [c.pid for c in children])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set() and all(c.is_alive() for c in children):
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for c in children:
            if c.is_alive():
                c.terminate()
        for c in children:
            c.join(timeout=30)
    dead = [c.exitcode for c in children if c.exitcode not in (0, -signal.SIGTERM)]
    if dead and not stop.is_set():
        raise RuntimeError(f"a server process exited with {dead}")
