"""What one server runs with, and the one place its defaults live: `serving.server.serve` takes a ServingConfig, and
the command line (serving/flags.py, shared by `pinsage serve` and `python -m serving`) takes its defaults from
DEFAULTS (tests/serving/test_flags.py checks that they agree). Imports nothing heavy: `--help` loads no TensorFlow."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from serving.model_config import BatchingOptions


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """The models come from `model_base_path` (one model, optionally named `model_name`) or `model_config_file`
    (TF Serving's ModelServerConfig text, several models): exactly one of the two."""

    model_base_path: Optional[str] = None
    model_name: Optional[str] = None
    model_config_file: Optional[str] = None
    port: int = 8500  # TF Serving's gRPC port; 0 = any free port
    poll_seconds: float = 5.0  # how often the model directory is scanned for new versions
    max_workers: int = 8  # worker threads for everything but the one-id fast path
    max_batch: int = 1024  # ids per request
    max_message_bytes: int = 4 * 1024 * 1024
    processes: int = 1  # server processes sharing the port (SO_REUSEPORT)
    model_config_file_poll_wait_seconds: float = 0.0  # 0: the config file is read once (TF Serving's default)
    retry_max_seconds: float = 300.0  # the longest back-off between load attempts of a failed version
    batching: Optional[BatchingOptions] = None  # --enable_batching's parameters; None: requests are not batched
    monitoring_path: Optional[str] = None  # where REST serves Prometheus text; None: not served
    # TF Serving's REST port; None = no REST API, 0 = any free port (the command line's 0 becomes None)
    rest_api_port: Optional[int] = 8501

    @property
    def enable_batching(self) -> bool:
        return self.batching is not None


DEFAULTS = ServingConfig()
