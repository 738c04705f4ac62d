"""The version loader on its own (a stand-in load function that reads a marker file, so each case is exact and
fast): what is a version, the latest / all / specific policies over loadable versions only, retries with back-off,
states, labels. tests/serving/test_loader_live.py does the same cases to a running server under client load."""

import logging
import os

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from serving.errors import ServingError
from serving.loader import ModelVersions, scan
from serving.model_config import ModelSpec, VersionPolicy

State = get_model_status_pb2.ModelVersionStatus


class Loaded:
    def __init__(self, name, path, version):
        self.model_name, self.path, self.version = name, path, version


def fake_load(name, path, version):
    """A version loads when its directory holds a file `ok`; anything else fails, as a junk SavedModel would."""
    if not os.path.exists(os.path.join(path, "ok")):
        raise ValueError(f"{path}: not a model")
    return Loaded(name, path, version)


def make(base, name, ok=True):
    d = base / str(name)
    d.mkdir(parents=True, exist_ok=True)
    if ok:
        (d / "ok").write_text("")
    return d


def manager(base, policy=VersionPolicy(), labels=(), poll=0.01, warmup=None, retry_max=1.0):
    return ModelVersions(ModelSpec("m", str(base), policy, labels), fake_load, warmup, poll, retry_max)


def spec(version=None, label=None):
    s = model_pb2.ModelSpec(name="m")
    if version is not None:
        s.version.value = version
    if label is not None:
        s.version_label = label
    return s


def test_scan_takes_plain_ascii_digit_directories_only(tmp_path):
    for name in ("1", "20", "0", "²", "٣", "007", "12a", ".tmp-1-abc", "-3"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a directory")
    (tmp_path / "notes.txt").write_text("")
    versions, ignored = scan(str(tmp_path))
    assert versions == [0, 1, 20]
    assert ignored == sorted(["²", "٣", "007", "12a", "-3", "5", "notes.txt"])  # dot-names are the Pusher's
    assert scan(str(tmp_path / "missing")) == ([], [])


def test_junk_newest_directory_does_not_hide_the_others(tmp_path, caplog):
    for v in range(1, 6):
        make(tmp_path, v)
    make(tmp_path, 999999, ok=False)
    (tmp_path / "²").mkdir()
    m = manager(tmp_path)
    with caplog.at_level(logging.WARNING, "pinsage.serving.loader"):
        m.poll()  # a restart with the junk present: up on the newest loadable version
        m.poll()
        m.poll()
    assert m.newest.version == 5 and sorted(m.available) == [5]
    assert sum("'²'" in r.getMessage() for r in caplog.records) == 1  # ignored and logged once, no traceback
    statuses = {v: (s, e) for v, s, e in m.statuses()}
    assert statuses[5] == (State.AVAILABLE, None)
    assert statuses[999999][0] == State.END and "not a model" in statuses[999999][1]
    make(tmp_path, 1000000)  # a later valid push above the junk is served
    m.poll()
    assert m.newest.version == 1000000 and sorted(m.available) == [1000000]
    assert {v: s for v, s, _ in m.statuses()}[5] == State.END  # unloaded after its successor was available


def test_failed_version_is_retried_with_back_off(tmp_path):
    make(tmp_path, 1)
    half = make(tmp_path, 2, ok=False)  # half written
    m = manager(tmp_path, poll=0.05, retry_max=0.2)
    m.poll()
    rec = m.records[2]
    assert m.newest.version == 1 and rec.failures == 1 and rec.state == State.END
    first_retry = rec.retry_at
    m.poll()  # too early: not tried again
    assert rec.failures == 1
    rec.retry_at = 0  # due now: tried, fails again, the next delay doubles
    m.poll()
    assert rec.failures == 2 and rec.retry_at - first_retry > 0.04
    for _ in range(5):
        rec.retry_at = 0
        m.poll()
    assert rec.failures == 7  # the delay is capped by retry_max (0.2 s) instead of growing without bound
    (half / "ok").write_text("")  # completed in place
    rec.retry_at = 0
    m.poll()
    assert m.newest.version == 2 and rec.error is None and rec.state == State.AVAILABLE


def test_latest_n_all_and_specific(tmp_path):
    for v in (1, 2, 3, 5):
        make(tmp_path, v)
    make(tmp_path, 4, ok=False)
    m = manager(tmp_path, VersionPolicy("latest", 2))
    m.poll()
    assert sorted(m.available) == [3, 5]  # the two newest that load, 4 skipped
    m = manager(tmp_path, VersionPolicy("all"))
    m.poll()
    assert sorted(m.available) == [1, 2, 3, 5]
    m = manager(tmp_path, VersionPolicy("specific", versions=(2, 4, 9)))
    m.poll()
    assert sorted(m.available) == [2] and m.records[4].state == State.END and 9 not in m.records
    m.update(ModelSpec("m", str(tmp_path), VersionPolicy("specific", versions=(1, 3))))
    m.poll()
    assert sorted(m.available) == [1, 3]


def test_removed_version_is_unloaded_and_the_next_one_served(tmp_path):
    for v in (1, 2):
        make(tmp_path, v)
    m = manager(tmp_path)
    m.poll()
    assert m.newest.version == 2
    for f in (tmp_path / "2").iterdir():
        f.unlink()
    (tmp_path / "2").rmdir()
    m.poll()
    assert m.newest.version == 1 and 2 not in m.records  # gone from disk: no END record kept


def test_resolve_by_version_label_and_default(tmp_path):
    for v in (1, 2, 3):
        make(tmp_path, v)
    m = manager(tmp_path, VersionPolicy("all"), labels=(("canary", 3), ("stable", 2), ("old", 7)))
    with pytest.raises(ServingError) as e:
        m.resolve(spec())
    assert e.value.code == grpc.StatusCode.UNAVAILABLE  # nothing loaded yet
    m.poll()
    assert m.resolve(spec()).version == 3
    assert m.resolve(spec(label="canary")).version == 3
    assert m.resolve(spec(label="stable")).version == 2
    assert m.resolve(spec(label="latest")).version == 3  # not configured: the newest
    assert m.resolve(spec(version=1)).version == 1
    for s, code, text in (
        (spec(version=9), grpc.StatusCode.NOT_FOUND, "version 9"),
        (spec(label="nope"), grpc.StatusCode.NOT_FOUND, "label 'nope' is not defined"),
        (spec(label="old"), grpc.StatusCode.UNAVAILABLE, "names version 7"),
    ):
        with pytest.raises(ServingError) as e:
            m.resolve(s)
        assert e.value.code == code and text in str(e.value)


def test_warmup_runs_before_available_and_a_failing_warmup_fails_the_load(tmp_path):
    make(tmp_path, 1)
    make(tmp_path, 2)
    seen = []

    def warmup(v):
        seen.append((v.version, v.version in m.available))  # not yet AVAILABLE while warming up
        if v.version == 2:
            raise ValueError("warmup request 1: INVALID_ARGUMENT")
        return 3

    m = manager(tmp_path, warmup=warmup)
    m.poll()
    assert seen == [(2, False), (1, False)] and m.newest.version == 1
    assert "warmup request 1" in m.records[2].error and m.records[2].state == State.END
