"""The serving command line and its defaults: one parser for `pinsage serve` and `python -m serving`, and the
defaults `serving.server.serve` takes (tests/serving/test_flags.py checks that all three agree)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    port: int = 8500  # TF Serving's gRPC port
    poll_seconds: float = 5.0  # how often the model directory is scanned for new versions
    max_workers: int = 8  # worker threads for everything but the one-id fast path
    max_batch: int = 1024  # ids per request
    max_message_bytes: int = 4 * 1024 * 1024
    processes: int = 1  # server processes sharing the port (SO_REUSEPORT)
    rest_api_port: int = 8501  # TF Serving's REST port; 0 = no REST API (as TF Serving's --rest_api_port 0)
    monitoring_path: str = "/monitoring/prometheus/metrics"  # Prometheus text on the REST port (TF Serving's)


DEFAULTS = ServingConfig()


def add_serve_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model-base-path", required=True, help="serving_model/<name> (or serving_model/ with one model)")
    p.add_argument("--port", type=int, default=DEFAULTS.port)
    p.add_argument("--model-name", default=None)
    p.add_argument("--poll-seconds", type=float, default=DEFAULTS.poll_seconds)
    p.add_argument("--max-workers", type=int, default=DEFAULTS.max_workers)
    p.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch)
    p.add_argument(
        "--processes",
        type=int,
        default=DEFAULTS.processes,
        help="server processes sharing the port (SO_REUSEPORT); one per core for throughput",
    )
    p.add_argument(
        "--rest-api-port",
        "--rest_api_port",
        type=int,
        default=DEFAULTS.rest_api_port,
        help="TF Serving's REST API, the related-items page (/) and the Prometheus metrics on this port; 0 = off",
    )
    return p


def serve_from_args(args, prog: str) -> int:
    """Runs the server the parsed arguments describe; a clear error and exit code 1 when it cannot start."""
    from serving.server import serve  # here, not at the top: `--help` does not load TensorFlow

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        serve(
            args.model_base_path,
            args.port,
            model_name=args.model_name,
            poll_seconds=args.poll_seconds,
            max_workers=args.max_workers,
            max_batch=args.max_batch,
            processes=args.processes,
            rest_api_port=args.rest_api_port or None,  # 0 = off on the command line, as TF Serving's flag
        )
    except (OSError, ValueError) as e:  # the port is taken, --processes without a fixed port
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0
