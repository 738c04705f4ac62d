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
    # --- TF Serving parity (issue 14): model config, loader, monitoring, batching
    model_config_file_poll_wait_seconds: float = 0.0  # 0: the config file is read once (TF Serving's default)
    retry_max_seconds: float = 300.0  # the longest back-off between load attempts of a failed version
    enable_batching: bool = False

    rest_api_port: int = 8501  # TF Serving's REST port; 0 = no REST API (as TF Serving's --rest_api_port 0)


DEFAULTS = ServingConfig()


def add_serve_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    # one model (--model-base-path) or several (--model-config-file); TF Serving's underscore spellings too
    p.add_argument(
        "--model-base-path",
        "--model_base_path",
        dest="model_base_path",
        default=None,
        help="serving_model/<name> (or serving_model/ with one model); or use --model_config_file",
    )
    p.add_argument("--port", type=int, default=DEFAULTS.port)
    p.add_argument("--model-name", "--model_name", dest="model_name", default=None)
    p.add_argument(
        "--poll-seconds",
        "--file_system_poll_wait_seconds",
        dest="poll_seconds",
        type=float,
        default=DEFAULTS.poll_seconds,
    )
    _add_parity_arguments(p)
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


def _add_parity_arguments(p: argparse.ArgumentParser) -> None:
    """TF Serving's model config / monitoring / batching flags (serving/model_config.py parses the files)."""
    p.add_argument(
        "--model-config-file",
        "--model_config_file",
        dest="model_config_file",
        default=None,
        help="TF Serving ModelServerConfig text file (model_config_list { config { name base_path ... } })",
    )
    p.add_argument(
        "--model-config-file-poll-wait-seconds",
        "--model_config_file_poll_wait_seconds",
        dest="model_config_file_poll_wait_seconds",
        type=float,
        default=DEFAULTS.model_config_file_poll_wait_seconds,
        help="re-read --model_config_file this often (0: never)",
    )
    p.add_argument(
        "--retry-max-seconds",
        dest="retry_max_seconds",
        type=float,
        default=DEFAULTS.retry_max_seconds,
        help="longest back-off between load attempts of a version that failed to load",
    )
    p.add_argument(
        "--monitoring-config-file",
        "--monitoring_config_file",
        dest="monitoring_config_file",
        default=None,
        help="TF Serving MonitoringConfig text file (prometheus_config { enable: true })",
    )
    p.add_argument(
        "--enable-batching",
        "--enable_batching",
        dest="enable_batching",
        action="store_true",
        default=DEFAULTS.enable_batching,
    )
    p.add_argument(
        "--batching-parameters-file",
        "--batching_parameters_file",
        dest="batching_parameters_file",
        default=None,
        help="TF Serving BatchingParameters text file (max_batch_size { value: 32 } batch_timeout_micros ...)",
    )


def serve_from_args(args, prog: str) -> int:
    """Runs the server the parsed arguments describe; a clear error and exit code 1 when it cannot start."""
    # here, not at the top: `--help` does not load TensorFlow
    from serving import model_config
    from serving.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        batching = (
            model_config.load_batching_parameters(args.batching_parameters_file) if args.enable_batching else None
        )
        if args.batching_parameters_file and not args.enable_batching:
            raise model_config.ConfigError("--batching_parameters_file needs --enable_batching")
        monitoring_path = model_config.load_monitoring_config(args.monitoring_config_file)
        server_args = dict(
            model_name=args.model_name,
            poll_seconds=args.poll_seconds,
            max_workers=args.max_workers,
            max_batch=args.max_batch,
            processes=args.processes,
            model_config_file=args.model_config_file,
            model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
            retry_max_seconds=args.retry_max_seconds,
            batching=batching,
            monitoring_path=monitoring_path,
            rest_api_port=args.rest_api_port or None,  # 0 = off on the command line, as TF Serving's flag
        )
        serve(args.model_base_path, args.port, **server_args)
    except model_config.ConfigError as e:  # a bad flag combination or config file: a usage error
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:  # the port is taken, --processes without a fixed port
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0
