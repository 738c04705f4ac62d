"""`pinsage serve`, `python -m serving` and serving.server.serve share one set of defaults (serving/flags.py)."""

import argparse
import inspect

from pipeline import cli
from serving import flags, server


def test_cli_module_and_function_defaults_agree():
    d = flags.DEFAULTS
    a = cli.build_parser().parse_args(["serve", "--model-base-path", "m"])
    b = flags.add_serve_arguments(argparse.ArgumentParser()).parse_args(["--model-base-path", "m"])
    for args in (a, b):
        assert (args.port, args.poll_seconds, args.max_workers, args.max_batch, args.processes) == (
            d.port,
            d.poll_seconds,
            d.max_workers,
            d.max_batch,
            d.processes,
        )
    sig = inspect.signature(server.serve).parameters
    for name in (
        "poll_seconds",
        "max_workers",
        "max_batch",
        "max_message_bytes",
        "processes",
        "model_config_file_poll_wait_seconds",
        "retry_max_seconds",
    ):
        assert sig[name].default == getattr(d, name), name
    for args in (a, b):
        assert (args.model_config_file_poll_wait_seconds, args.retry_max_seconds, args.enable_batching) == (
            d.model_config_file_poll_wait_seconds,
            d.retry_max_seconds,
            d.enable_batching,
        )
    q = cli.build_parser().parse_args(["query", "--item", "1"])
    assert q.port == d.port
