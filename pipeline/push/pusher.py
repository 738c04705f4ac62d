"""Pusher: SavedModel + ScaNN index -> serving_model/<model_name>/<version>/, atomically, keeping the last N.

The layout of one version, and how readers list versions, is the contract in schema/versions.py.

Why a temp dir + rename: TF Serving and our server poll the model directory and load any all-digit
subdirectory they see. Everything is written into `.tmp-<pid>-<random>` in the same parent (same filesystem,
so os.rename is atomic, and the name is not all digits, so readers ignore it), then renamed to the version
number. A crash leaves only a dot-directory, which the next push removes once its writer is gone. Old versions
are retired the same way in reverse: renamed to `.del-...` first, then deleted.

A `gs://` / `s3://` serving_model_dir works too (schema/files.py), but an object store has no directory rename:
the version directory is copied into place file by file, so a poller can see it before it is complete; TF
Serving retries a version that failed to load. A stale dot-directory there is recognised by a dead pid only
when the push ran on this host.
"""

from __future__ import annotations

import os
import uuid
from typing import Callable, List, Optional

from pipeline.configs import PUSH
from schema import files
from schema.versions import (
    CONTEXT_FILES,
    CONTEXT_STATS_JSON,
    DEL_PREFIX,
    INDEX_ASSET_DIR,
    TMP_PREFIX,
    context_dir,
    latest_version,
    list_versions,
    trained_dir,
)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (signal 0 only asks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(model_dir: str) -> List[str]:
    """Removes temp/retiring dirs whose writing process no longer runs (a crashed push); returns their names."""
    removed = []
    for d in files.listdir(model_dir):
        if d.startswith((TMP_PREFIX, DEL_PREFIX)):
            pid = d.split("-")[1]
            if not (pid.isascii() and pid.isdigit() and pid_alive(int(pid))):
                files.rmtree(files.join(model_dir, d), ignore_errors=True)
                removed.append(d)
    return removed


def _retire(model_dir: str, version: int) -> None:
    gone = files.join(model_dir, f"{DEL_PREFIX}{os.getpid()}-{version}-{uuid.uuid4().hex[:8]}")
    files.rename(files.join(model_dir, str(version)), gone)
    files.rmtree(gone, ignore_errors=True)


def push(
    saved_model_dir: str,
    index_dir: str,
    serving_model_dir: str,
    model_name: str = "pinsage",
    keep: int = PUSH.keep,
    version: Optional[int] = None,
    hook: Optional[Callable[[str, str], None]] = None,
    contexts_dir: Optional[str] = None,
    trained: Optional[str] = None,
) -> str:
    """Copies one model version into serving_model_dir/model_name/<version>/ and returns that path.

    `version` defaults to the newest existing version + 1 (versions only ever increase; TF Serving serves the
    highest). `contexts_dir`: a ContextVectors artifact, whose context arrays go to assets/contexts/ in the same
    version (schema/versions.py); `trained`: a directory in the trained layout, copied to assets/trained/.
    `hook(stage, tmp_dir)` is called after each stage ("saved_model", "index", "contexts", "trained") — tests use
    it to simulate a crash mid-push. After the rename, all but the `keep` newest versions are retired."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    if not files.exists(files.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(f"no saved_model.pb in {saved_model_dir}")
    if not files.isdir(files.join(index_dir, "scann")):
        raise FileNotFoundError(f"no ScaNN index (scann/) in {index_dir}")
    missing = [n for n in CONTEXT_FILES if contexts_dir and not files.exists(files.join(contexts_dir, n))]
    if missing:
        raise FileNotFoundError(f"no {missing} in {contexts_dir}")
    model_dir = files.join(serving_model_dir, model_name)
    files.makedirs(model_dir)
    clean_stale(model_dir)
    current = latest_version(model_dir)
    if version is None:
        version = (current or 0) + 1
    elif current is not None and version <= current:
        raise ValueError(f"version {version} is not newer than the current {current}")

    tmp = files.join(model_dir, f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        files.copytree(saved_model_dir, tmp)
        if hook:
            hook("saved_model", tmp)
        files.copytree(index_dir, files.join(tmp, "assets", INDEX_ASSET_DIR))
        if hook:
            hook("index", tmp)
        if contexts_dir:  # the arrays only: the Beam rows they were assembled from stay in the artifact
            files.makedirs(context_dir(tmp))
            for name in CONTEXT_FILES + (CONTEXT_STATS_JSON,):
                files.copy(files.join(contexts_dir, name), files.join(context_dir(tmp), name))
            if hook:
                hook("contexts", tmp)
        if trained:
            files.copytree(trained, trained_dir(tmp))
            if hook:
                hook("trained", tmp)
        final = files.join(model_dir, str(version))
        files.rename(tmp, final)  # atomic locally; fails if a concurrent push took the same number
    except BaseException:
        files.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_versions(model_dir)[:-keep]:
        _retire(model_dir, old)
    return final
