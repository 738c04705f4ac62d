"""The serving command line: one parser for `pinsage serve` and `python -m serving`, its defaults ServingConfig's
(serving/config.py; tests/serving/test_flags.py checks that they agree). serving/server.py's config_from_args turns
the parsed arguments into a ServingConfig."""

from __future__ import annotations

import argparse

from serving.config import DEFAULTS, ServingConfig

__all__ = ["DEFAULTS", "ServingConfig", "add_serve_arguments"]


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
