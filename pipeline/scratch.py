"""A run's scratch directory: the temporary files TFX makes during a run go there, and go when the run ends.

TFX 1.16 leaves two kinds of directories in the system's temporary directory on every run and never removes them:
- every Beam executor given Beam options (`--beam-arg`) copies TFX's own source into a new directory and builds
  an sdist of it there, ~49 MB each, for remote workers (`tfx.utils.dependency_utils.build_ephemeral_package`);
- every component with a user module (Transform, Trainer) installs the module's wheel into a new directory
  (`tfx.components.util.udf_utils.TempPipInstallContext`).
A run with Beam options leaves ~0.4 GB behind, and a test suite several GB. `run_scratch` points Python's
`tempfile` (and TMPDIR, for the subprocesses TFX starts) at a directory of the run's own and removes it after. A
killed run cannot remove its own: the next run into the same directory removes those whose process is gone.
"""

import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Optional

SCRATCH_PREFIX = "scratch-"


@contextlib.contextmanager
def run_scratch(parent: Optional[str] = None) -> Iterator[str]:
    """Within the block, `tempfile` and TMPDIR name a new directory; it is removed when the block ends, failed
    or not.

    Args:
      parent: where to make it: a run's local output directory (its filesystem has room for the run's files);
        None or a remote URI (gs://...) takes the system's temporary directory.
    """
    local = parent is not None and "://" not in parent
    if local:
        os.makedirs(parent, exist_ok=True)
        remove_abandoned(parent)
    path = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=parent if local else None)
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
    """Removes the scratch directories in `parent` whose process (the pid in the name) no longer runs: what a
    killed run left. Returns their paths."""
    removed = []
    for name in sorted(os.listdir(parent)):
        pid = name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if not (name.startswith(SCRATCH_PREFIX) and pid.isdigit()) or _running(int(pid)):
            continue
        path = os.path.join(parent, name)
        if os.path.isdir(path):
            shutil.rmtree(path, onerror=_make_writable_and_retry)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _make_writable_and_retry(func, path, exc_info) -> None:
    """rmtree's error handler: a copy of a read-only install (TFX's source copy keeps its modes) has directories
    its owner may not write; make the parent writable and retry once, else leave the file."""
    parent = os.path.dirname(path)
    try:
        os.chmod(parent, os.stat(parent).st_mode | 0o700)
        func(path)
    except OSError:
        pass
