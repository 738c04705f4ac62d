"""A run's scratch directory: the temporary files TFX makes during a run go there, and go when the run ends.

TFX 1.16 leaves two kinds of directories in the system's temporary directory on every run and never removes them:
- every Beam executor given Beam options (`--beam-arg`) copies TFX's own source into a new directory and builds
  an sdist of it there, ~49 MB each, for remote workers (`tfx.utils.dependency_utils.build_ephemeral_package`);
- every component with a user module (Transform, Trainer) installs the module's wheel into a new directory
  (`tfx.components.util.udf_utils.TempPipInstallContext`).
A run with Beam options leaves ~0.4 GB behind, and a test suite several GB. `run_scratch` points Python's
`tempfile` (and TMPDIR, for the subprocesses TFX starts) at a directory of the run's own and removes it after. A
killed run cannot remove its own: the next run removes those whose process is gone.

The directory stays in the system's temporary directory, where TFX would have written: paths under TMPDIR must
stay short, since a Unix socket made there (multiprocessing's, a browser's) takes at most 107 bytes of path.
"""

import contextlib
import multiprocessing.util
import os
import shutil
import tempfile
from typing import Iterator, Optional

from pipeline.push.pusher import pid_alive

SCRATCH_PREFIX = "pinsage-scratch-"


@contextlib.contextmanager
def run_scratch(parent: Optional[str] = None) -> Iterator[str]:
    """Within the block, `tempfile` and TMPDIR name a new directory `pinsage-scratch-<pid>-*`; it is removed when
    the block ends, failed or not.

    Args:
      parent: where to make it. Default: the system's temporary directory; within another run_scratch block, the
        directory that one was made in (scratch directories are not nested).
    """
    if parent is None:
        current = tempfile.gettempdir()
        nested = os.path.basename(current).startswith(SCRATCH_PREFIX)
        parent = os.path.dirname(current) if nested else current
    os.makedirs(parent, exist_ok=True)
    remove_abandoned(parent)
    # multiprocessing makes one temporary directory per process, on first use, and removes it at exit: made here
    # first, it stays outside the scratch (else every later use in this process would name a removed directory)
    multiprocessing.util.get_temp_dir()
    path = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=parent)
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = path
    os.environ["TMPDIR"] = path
    try:
        yield path
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(path, onerror=_make_writable_and_retry)


def remove_abandoned(parent: str) -> list[str]:
    """Removes this user's scratch directories in `parent` whose process (the pid in the name) no longer runs: what
    a killed run left. Returns their paths."""
    removed = []
    for name in sorted(os.listdir(parent)):
        pid = name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if not (name.startswith(SCRATCH_PREFIX) and pid.isdigit()) or pid_alive(int(pid)):
            continue
        path = os.path.join(parent, name)
        if os.path.isdir(path) and not os.path.islink(path) and os.stat(path).st_uid == os.getuid():
            shutil.rmtree(path, onerror=_make_writable_and_retry)
            removed.append(path)
    return removed


def _make_writable_and_retry(func, path, exc_info) -> None:
    """rmtree's error handler: a copy of a read-only install (TFX's source copy keeps its modes) has directories
    its owner may not write; make the parent writable and retry once, else leave the file."""
    parent = os.path.dirname(path)
    try:
        os.chmod(parent, os.stat(parent).st_mode | 0o700)
        func(path)
    except OSError:
        pass
