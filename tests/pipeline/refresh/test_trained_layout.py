"""The trained layout a version carries for `pinsage embed`: pushed atomically with the rest, read back by
open_version, refused when absent; the sampler's config read from it, the defaults without it."""

import dataclasses
import json
import os
import re

import pytest

from pipeline.configs import SAMPLING
from pipeline.push import pusher
from pipeline.refresh import embed
from schema import versions
from tests.pipeline.push.test_pusher import sources  # noqa: F401  (the Pusher's stand-in sources)


@pytest.fixture
def trained(tmp_path):
    """A trained layout with the files open_version requires (their content is not read here)."""
    d = tmp_path / "trained"
    (d / versions.TRAINED_MODEL_DIR / "Format-Serving").mkdir(parents=True)
    (d / versions.TRAINED_MODEL_DIR / "Format-Serving" / "saved_model.pb").write_bytes(b"pb")
    (d / versions.TRAINED_TRANSFORM_DIR / "transform_fn").mkdir(parents=True)
    (d / versions.TRAINED_JSON).write_text(json.dumps({"blessed": False, "refreshed_from": None}))
    stats = {"num_walks": 7, "walk_length": 3, "restart_prob": 0.25, "top_t": 5, "seed": 4, "window": 2}
    (d / versions.TRAINED_SAMPLING_JSON).write_text(json.dumps({**stats, "source": "transitions", "shard_size": 9}))
    return str(d)


def test_a_pushed_version_carries_the_trained_layout(sources, trained):  # noqa: F811
    sm, idx, out = sources
    path = pusher.push(sm, idx, out, trained=trained)
    source = embed.open_version(path)
    assert source.version_dir == path and source.blessed is False and source.context_tower is None
    assert os.path.isfile(os.path.join(source.model, "Format-Serving", "saved_model.pb"))
    cfg, where = embed.sampling_config(source.sampling)
    assert where.startswith("recorded")
    want = dict(num_walks=7, walk_length=3, restart_prob=0.25, top_t=5, seed=4, pair_window=2, shard_size=9)
    assert cfg == dataclasses.replace(SAMPLING, neighborhood_source="transitions", **want)


def test_a_crash_while_copying_the_trained_layout_leaves_no_version(sources, trained):  # noqa: F811
    sm, idx, out = sources

    def crash(stage, tmp):
        if stage == "trained":
            assert os.path.isdir(versions.trained_dir(tmp))
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        pusher.push(sm, idx, out, trained=trained, hook=crash)
    assert os.listdir(os.path.join(out, "pinsage")) == []


def test_without_a_sampling_record_the_defaults_and_the_report_says_so(sources, trained):  # noqa: F811
    sm, idx, out = sources
    os.remove(os.path.join(trained, versions.TRAINED_SAMPLING_JSON))
    cfg, where = embed.sampling_config(embed.open_version(pusher.push(sm, idx, out, trained=trained)).sampling)
    assert cfg == SAMPLING and where.startswith("defaults")


def test_a_version_without_the_trained_layout_is_not_a_model(sources, tmp_path):  # noqa: F811
    sm, idx, out = sources
    path = pusher.push(sm, idx, out)
    with pytest.raises(embed.NotAModel, match=re.escape(path)):
        embed.open_version(path)
    with pytest.raises(embed.NotAModel, match="no saved_model.pb"):
        embed.open_version(str(tmp_path))
