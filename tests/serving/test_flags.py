"""`pinsage serve`, `python -m serving` and serving.server.serve share one set of defaults: ServingConfig's
(serving/config.py)."""

import argparse
import dataclasses
import inspect

from pipeline import cli
from serving import config, flags, server


def test_cli_module_and_function_defaults_agree():
    d = flags.DEFAULTS
    assert d is config.DEFAULTS and d == config.ServingConfig()
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
        assert (args.model_config_file_poll_wait_seconds, args.retry_max_seconds, args.enable_batching) == (
            d.model_config_file_poll_wait_seconds,
            d.retry_max_seconds,
            d.enable_batching,
        )
        # every field of the config the command line gives without flags is the default's
        assert server.config_from_args(args) == dataclasses.replace(d, model_base_path="m")
    # serve() takes the config: it restates no default of its own
    sig = inspect.signature(server.serve).parameters
    assert list(sig) == ["config", "block"] and sig["config"].default is inspect.Parameter.empty
    q = cli.build_parser().parse_args(["query", "--item", "1"])
    assert q.port == d.port
