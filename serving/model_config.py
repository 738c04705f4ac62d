"""TF Serving's configuration files, parsed into TF Serving's own protos with protobuf's text format.

- `--model_config_file`: a `ModelServerConfig` (tensorflow_serving.config.model_server_config_pb2, shipped in
  tensorflow-serving-api), e.g.

      model_config_list {
        config {
          name: "pinsage"
          base_path: "/models/pinsage"
          model_version_policy { latest { num_versions: 2 } }
          version_labels { key: "stable" value: 3 }
          version_labels { key: "canary" value: 4 }
        }
      }

- `--monitoring_config_file`: a `MonitoringConfig` (`prometheus_config { enable: true path: "..." }`).
- `--batching_parameters_file`: a `BatchingParameters` (`max_batch_size { value: 32 }` ...).

The last two messages are not in the tensorflow-serving-api wheel, so they are built here from a
FileDescriptorProto with TF Serving's package, field names and numbers (tensorflow_serving/config/
monitoring_config.proto and servables/tensorflow/session_bundle_config.proto): a file written for
tensorflow_model_server parses here unchanged, and one that parses here works there.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

PROMETHEUS_DEFAULT_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file."""


def _build_messages():
    """MonitoringConfig, PrometheusConfig and BatchingParameters as real message classes in a private pool."""
    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    def add_file(name, messages, deps=()):
        fdp = descriptor_pb2.FileDescriptorProto(name=name, package="tensorflow.serving", syntax="proto3")
        fdp.dependency.extend(deps)
        for msg_name, fields in messages:
            msg = fdp.message_type.add(name=msg_name)
            for field_name, number, ftype, type_name, label in fields:
                f = msg.field.add(name=field_name, number=number, type=ftype, label=label)
                if type_name:
                    f.type_name = type_name
        pool.Add(fdp)

    opt = F.LABEL_OPTIONAL
    add_file(
        "tensorflow_serving/config/monitoring_config.proto",
        [
            ("PrometheusConfig", [("enable", 1, F.TYPE_BOOL, None, opt), ("path", 2, F.TYPE_STRING, None, opt)]),
            (
                "MonitoringConfig",
                [("prometheus_config", 1, F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig", opt)],
            ),
        ],
    )
    i64, s = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
    add_file(
        "tensorflow_serving/servables/tensorflow/batching_parameters.proto",
        [
            (
                "BatchingParameters",
                [
                    ("max_batch_size", 1, F.TYPE_MESSAGE, i64, opt),
                    ("batch_timeout_micros", 2, F.TYPE_MESSAGE, i64, opt),
                    ("max_enqueued_batches", 3, F.TYPE_MESSAGE, i64, opt),
                    ("num_batch_threads", 4, F.TYPE_MESSAGE, i64, opt),
                    ("thread_pool_name", 5, F.TYPE_MESSAGE, s, opt),
                    ("allowed_batch_sizes", 6, F.TYPE_INT64, None, F.LABEL_REPEATED),
                    ("pad_variable_length_inputs", 7, F.TYPE_BOOL, None, opt),
                ],
            )
        ],
        deps=["google/protobuf/wrappers.proto"],
    )
    factory = message_factory.MessageFactory(pool)
    get = lambda n: factory.GetPrototype(pool.FindMessageTypeByName(f"tensorflow.serving.{n}"))  # noqa: E731
    return get("MonitoringConfig"), get("PrometheusConfig"), get("BatchingParameters")


MonitoringConfig, PrometheusConfig, BatchingParameters = _build_messages()


def parse_text_file(path: str, message):
    """A text-format proto file into `message` (returned); a missing or malformed file is a ConfigError."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise ConfigError(f"{path}: not a valid {message.DESCRIPTOR.name} in text format: {e}") from None


# ------------------------------------------------------------------------------------------------ models
@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which versions to serve: the newest `num_versions` loadable ones ("latest"), every one ("all"), or the
    listed ones ("specific")."""

    kind: str = "latest"
    num_versions: int = 1
    versions: Tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One `config { ... }` entry."""

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: Tuple[Tuple[str, int], ...] = ()

    @property
    def label_map(self) -> Dict[str, int]:
        return dict(self.labels)


def _policy(cfg, where: str) -> VersionPolicy:
    p = cfg.model_version_policy
    kind = p.WhichOneof("policy_choice")
    if kind is None or kind == "latest":
        n = p.latest.num_versions if kind else 1
        if kind and n == 0:
            n = 1  # TF Serving: an unset num_versions means 1
        if n < 1:
            raise ConfigError(f"{where}: latest.num_versions must be >= 1, got {n}")
        return VersionPolicy("latest", num_versions=n)
    if kind == "all":
        return VersionPolicy("all")
    vs = tuple(sorted(set(p.specific.versions)))
    if not vs or vs[0] < 0:
        raise ConfigError(f"{where}: specific.versions must list versions >= 0, got {list(p.specific.versions)}")
    return VersionPolicy("specific", versions=vs)


def model_specs(config: model_server_config_pb2.ModelServerConfig, source: str) -> List[ModelSpec]:
    """The validated models of a ModelServerConfig; relative base paths are taken from the file's directory."""
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{source}: only model_config_list is supported (custom_model_config is not)")
    specs, seen = [], set()
    for i, cfg in enumerate(config.model_config_list.config):
        where = f"{source}: config #{i + 1}" + (f" ('{cfg.name}')" if cfg.name else "")
        if not cfg.name or not cfg.base_path:
            raise ConfigError(f"{where}: name and base_path are both required")
        if cfg.name in seen:
            raise ConfigError(f"{where}: model name '{cfg.name}' appears twice")
        if cfg.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"{where}: model_platform '{cfg.model_platform}' is not served here (tensorflow only)")
        seen.add(cfg.name)
        labels = tuple(sorted(cfg.version_labels.items()))
        bad = [k for k, v in labels if not k or v < 0]
        if bad:
            raise ConfigError(f"{where}: invalid version labels {bad}")
        base = cfg.base_path
        if not os.path.isabs(base) and os.path.isfile(source):
            base = os.path.join(os.path.dirname(os.path.abspath(source)), base)
        specs.append(ModelSpec(cfg.name, base, _policy(cfg, where), labels))
    if not specs:
        raise ConfigError(f"{source}: model_config_list has no config entries")
    return specs


def load_model_config(path: str) -> List[ModelSpec]:
    """`--model_config_file` -> its models (ConfigError naming the file for anything wrong)."""
    return model_specs(parse_text_file(path, model_server_config_pb2.ModelServerConfig()), path)


# ------------------------------------------------------------------------------------------------ monitoring
def load_monitoring_config(path: Optional[str]) -> Optional[str]:
    """`--monitoring_config_file` -> the Prometheus path when enabled (TF Serving's default path if unset),
    None when there is no file or Prometheus is off."""
    if not path:
        return None
    cfg = parse_text_file(path, MonitoringConfig())
    if not cfg.prometheus_config.enable:
        return None
    p = cfg.prometheus_config.path or PROMETHEUS_DEFAULT_PATH
    if not p.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path must start with '/', got '{p}'")
    return p


# ------------------------------------------------------------------------------------------------ batching
@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """What serving/batching.py uses of BatchingParameters. The defaults are BasicBatchScheduler::Options'
    (max_batch_size 1000, batch_timeout_micros 0, max_enqueued_batches 10), except num_batch_threads: TF Serving
    takes the core count, here one thread is the default because a batch holds the GIL while it is not in
    ScaNN."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 1


def load_batching_parameters(path: Optional[str]) -> BatchingOptions:
    """`--batching_parameters_file` -> BatchingOptions (the defaults when there is no file)."""
    d = BatchingOptions()
    if not path:
        return d
    p = parse_text_file(path, BatchingParameters())

    def get(field, default):
        return getattr(p, field).value if p.HasField(field) else default

    opts = BatchingOptions(
        max_batch_size=get("max_batch_size", d.max_batch_size),
        batch_timeout_micros=get("batch_timeout_micros", d.batch_timeout_micros),
        max_enqueued_batches=get("max_enqueued_batches", d.max_enqueued_batches),
        num_batch_threads=get("num_batch_threads", d.num_batch_threads),
    )
    for field in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if getattr(opts, field) < 1:
            raise ConfigError(f"{path}: {field} must be >= 1, got {getattr(opts, field)}")
    if opts.batch_timeout_micros < 0:
        raise ConfigError(f"{path}: batch_timeout_micros must be >= 0, got {opts.batch_timeout_micros}")
    return opts
