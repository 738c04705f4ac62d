"""run_scratch: TFX's temporary files land in a scratch directory of the run's own, removed after it, failed or
not."""

import os
import stat
import subprocess
import sys
import tempfile

import pytest

from pipeline import scratch


@pytest.fixture
def system_tmp(tmp_path, monkeypatch):
    """An empty stand-in for the system's temporary directory (what a run must leave as it found it)."""
    path = tmp_path / "system"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    monkeypatch.setenv("TMPDIR", str(path))
    return path


def test_temporary_files_go_to_the_scratch_and_are_removed(system_tmp):
    with scratch.run_scratch() as path:
        assert os.path.dirname(path) == str(system_tmp)
        assert os.path.basename(path).startswith(f"{scratch.SCRATCH_PREFIX}{os.getpid()}-")
        made = tempfile.mkdtemp()
        assert os.path.dirname(made) == path
        child = subprocess.run(
            [sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert child.stdout.strip() == path  # subprocesses TFX starts (bdist_wheel, sdist) see it through TMPDIR
        with scratch.run_scratch() as inner:  # a run inside a scratch block (the test session's): not nested
            assert os.path.dirname(inner) == str(system_tmp)
            assert tempfile.gettempdir() == inner
        assert not os.path.exists(inner) and tempfile.gettempdir() == path
    assert not os.path.exists(path)
    assert tempfile.gettempdir() == str(system_tmp)
    assert os.environ["TMPDIR"] == str(system_tmp)
    assert os.listdir(system_tmp) == []


def test_removed_when_the_run_fails_and_read_only_directories_too(tmp_path, system_tmp):
    with pytest.raises(RuntimeError, match="stage failed"):
        with scratch.run_scratch(str(tmp_path)) as path:
            locked = os.path.join(tempfile.mkdtemp(), "tfx")
            os.makedirs(locked)
            open(os.path.join(locked, "setup.py"), "w").close()
            os.chmod(locked, stat.S_IRUSR | stat.S_IXUSR)  # as a read-only install copied by TFX keeps it
            raise RuntimeError("stage failed")
    assert not os.path.exists(path)
    assert tempfile.gettempdir() == str(system_tmp)


def test_a_beam_executor_with_options_leaves_nothing_behind(tmp_path, system_tmp):
    """The leak itself: a Beam executor given Beam options builds an sdist of TFX in a new temporary directory
    (tfx.utils.dependency_utils) and never removes it."""
    from pipeline.components import graph_gen

    context = graph_gen.Executor.Context(beam_pipeline_args=["--direct_num_workers=1"], tmp_dir=str(tmp_path / "t"))
    with scratch.run_scratch() as path:
        executor = graph_gen.Executor(context)
        sdist = [a for a in executor._beam_pipeline_args if a.startswith("--extra_package=")]
        assert sdist and sdist[0].split("=", 1)[1].startswith(path + os.sep)  # TFX built it in the scratch
        assert os.listdir(system_tmp) == [os.path.basename(path)]
    assert os.listdir(system_tmp) == []


def test_the_next_run_removes_what_a_killed_run_left_and_keeps_a_running_ones(tmp_path, system_tmp):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        killed = tmp_path / f"{scratch.SCRATCH_PREFIX}{ended.pid}-abc"
        (killed / "build" / "tfx").mkdir(parents=True)
        (killed / "build" / "tfx" / "setup.py").write_text("")
        alive = tmp_path / f"{scratch.SCRATCH_PREFIX}{running.pid}-def"
        alive.mkdir()
        other = tmp_path / f"{scratch.SCRATCH_PREFIX}notes"  # no pid in the name: not a run's, kept
        other.mkdir()
        with scratch.run_scratch(str(tmp_path)) as path:
            assert os.path.basename(path).startswith(f"{scratch.SCRATCH_PREFIX}{os.getpid()}-")
        assert sorted(os.listdir(tmp_path)) == sorted([alive.name, other.name, "system"])
    finally:
        running.kill()
        running.wait()


def test_unix_sockets_fit_under_the_scratch_and_multiprocessing_works_after_it():
    """A Unix socket's path takes at most 107 bytes and Chrome makes its profile's sockets under TMPDIR: the scratch
    stays in the system's temporary directory, not in a deep output directory. multiprocessing keeps its own
    per-process directory (its listeners' sockets) outside the scratch, so it still works after the block."""
    from multiprocessing.connection import Client, Listener

    def connect():
        with Listener(family="AF_UNIX") as listener:
            with Client(listener.address, family="AF_UNIX"):
                listener.accept().close()
            return listener.address

    with scratch.run_scratch() as path:
        assert len(os.path.join(path, ".org.chromium.Chromium.XXXXXX", "SingletonSocket")) <= 107
        inside = connect()
        assert not inside.startswith(path + os.sep)
    assert os.path.dirname(connect()) == os.path.dirname(inside)
