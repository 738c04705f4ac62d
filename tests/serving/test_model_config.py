"""TF Serving's config files parse into TF Serving's protos: ModelServerConfig (real proto), MonitoringConfig and
BatchingParameters (built from descriptors) with TF Serving's field numbers; bad files are errors naming the file."""

import pytest
from google.protobuf import text_format

from serving import flags
from serving.model_config import (
    BatchingParameters,
    ConfigError,
    MonitoringConfig,
    VersionPolicy,
    load_batching_parameters,
    load_model_config,
    load_monitoring_config,
)

CONFIG = """
model_config_list {
  config {
    name: "pinsage"
    base_path: "/models/pinsage"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
    version_labels { key: "stable" value: 3 }
    version_labels { key: "canary" value: 4 }
  }
  config { name: "other" base_path: "rel/other" model_version_policy { all {} } }
  config { name: "pinned" base_path: "/m/p" model_version_policy { specific { versions: 7 versions: 2 } } }
  config { name: "plain" base_path: "/m/q" }
}
"""


def write(tmp_path, text, name="models.config"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_model_config_file(tmp_path):
    specs = load_model_config(write(tmp_path, CONFIG))
    assert [s.name for s in specs] == ["pinsage", "other", "pinned", "plain"]
    assert specs[0].base_path == "/models/pinsage" and specs[0].policy == VersionPolicy("latest", 2)
    assert specs[0].label_map == {"stable": 3, "canary": 4}
    assert specs[1].base_path == str(tmp_path / "rel" / "other")  # relative to the config file
    assert specs[1].policy.kind == "all"
    assert specs[2].policy == VersionPolicy("specific", versions=(2, 7))
    assert specs[3].policy == VersionPolicy("latest", 1) and specs[3].labels == ()


@pytest.mark.parametrize(
    "text, message",
    [
        ("model_config_list { config { name: 'a' } }", "name and base_path are both required"),
        ("model_config_list { config { name: 'a' base_path: '/x' } config { name: 'a' base_path: '/y' } }", "twice"),
        ("model_config_list { config { name: 'a' base_path: '/x' model_platform: 'onnx' } }", "tensorflow only"),
        ("model_config_list { config { name: 'a' base_path: '/x' version_labels { key: 'c' value: -1 } } }", "labels"),
        ("model_config_list { }", "no config entries"),
        ("model_config_list { config { nme: 'a' } }", "not a valid ModelServerConfig"),
        (
            "model_config_list { config { name: 'a' base_path: '/x' model_version_policy { specific { } } } }",
            "specific.versions",
        ),
    ],
)
def test_bad_model_config_names_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_model_config(path)
    assert path in str(e.value) and message in str(e.value), str(e.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_model_config(str(tmp_path / "missing.config"))


def test_monitoring_config_is_tf_servings_message(tmp_path):
    assert load_monitoring_config(None) is None
    assert load_monitoring_config(write(tmp_path, "prometheus_config { enable: true }")) == (
        "/monitoring/prometheus/metrics"
    )
    assert load_monitoring_config(write(tmp_path, 'prometheus_config { enable: true, path: "/m" }')) == "/m"
    assert load_monitoring_config(write(tmp_path, "prometheus_config { enable: false }")) is None
    with pytest.raises(ConfigError, match="start with '/'"):
        load_monitoring_config(write(tmp_path, 'prometheus_config { enable: true, path: "m" }'))
    # wire format = TF Serving's field numbers: MonitoringConfig.prometheus_config = 1 { enable = 1, path = 2 }
    msg = text_format.Parse('prometheus_config { enable: true path: "/p" }', MonitoringConfig())
    assert msg.SerializeToString() == b"\x0a\x06\x08\x01\x12\x02/p"
    assert MonitoringConfig.DESCRIPTOR.full_name == "tensorflow.serving.MonitoringConfig"


def test_batching_parameters(tmp_path):
    d = load_batching_parameters(None)
    assert (d.max_batch_size, d.batch_timeout_micros, d.max_enqueued_batches, d.num_batch_threads) == (1000, 0, 10, 1)
    o = load_batching_parameters(
        write(
            tmp_path, "max_batch_size { value: 16 } batch_timeout_micros { value: 500 } num_batch_threads { value: 2 }"
        )
    )
    assert (o.max_batch_size, o.batch_timeout_micros, o.max_enqueued_batches, o.num_batch_threads) == (16, 500, 10, 2)
    # Int64Value wrappers at TF Serving's numbers: max_batch_size = 1, batch_timeout_micros = 2
    msg = text_format.Parse("max_batch_size { value: 3 } batch_timeout_micros { value: 5 }", BatchingParameters())
    assert msg.SerializeToString() == b"\x0a\x02\x08\x03\x12\x02\x08\x05"
    with pytest.raises(ConfigError, match="max_batch_size must be >= 1"):
        load_batching_parameters(write(tmp_path, "max_batch_size { value: 0 }"))
    with pytest.raises(ConfigError, match="not a valid BatchingParameters"):
        load_batching_parameters(write(tmp_path, "max_batch_size: 3"))


def test_tf_serving_flag_spellings():
    p = flags.add_serve_arguments(__import__("argparse").ArgumentParser())
    a = p.parse_args(
        [
            "--model_config_file",
            "m.config",
            "--model_config_file_poll_wait_seconds",
            "30",
            "--monitoring_config_file",
            "mon.config",
            "--enable_batching",
            "--batching_parameters_file",
            "b.config",
            "--file_system_poll_wait_seconds",
            "2",
        ]
    )
    assert (a.model_config_file, a.model_config_file_poll_wait_seconds, a.monitoring_config_file) == (
        "m.config",
        30.0,
        "mon.config",
    )
    assert a.enable_batching and a.batching_parameters_file == "b.config" and a.poll_seconds == 2.0
    b = p.parse_args(["--model_base_path", "/m", "--model_name", "x"])
    assert (b.model_base_path, b.model_name, b.model_config_file, b.enable_batching) == ("/m", "x", None, False)


def test_cli_errors_are_usage_errors(tmp_path, capsys):
    from serving.__main__ import main

    assert main([]) == 2 and "either --model_base_path" in capsys.readouterr().err
    bad = write(tmp_path, "model_config_list { config { name: 'a' } }")
    assert main(["--model_config_file", bad]) == 2 and bad in capsys.readouterr().err
    assert main(["--model_base_path", "/x", "--batching_parameters_file", bad]) == 2
    assert "needs --enable_batching" in capsys.readouterr().err


def test_one_model_shortcut_and_config_are_exclusive(tmp_path):
    from serving.core import ModelServer
    from serving.server import model_specs_from

    (tmp_path / "pinsage").mkdir()
    assert model_specs_from(str(tmp_path / "pinsage"), None, None)[0].name == "pinsage"
    cfg = write(tmp_path, CONFIG)
    assert [s.name for s in model_specs_from(None, None, cfg)][:2] == ["pinsage", "other"]
    with pytest.raises(ConfigError, match="not both"):
        model_specs_from(str(tmp_path), None, cfg)
    old_style = ModelServer(str(tmp_path / "pinsage"), "mine")  # the one-model constructor of before
    assert list(old_style.models) == ["mine"] and old_style.model_dir == str(tmp_path / "pinsage")
    assert not old_style.ready() and old_style.current is None
