"""Pusher: SavedModel + ScaNN index -> serving_model/<model_name>/<version>/, atomically, keeping the last N.

The layout of one version, and how readers list versions, is the contract in schema/versions.py.

Why a temp dir + rename: TF Serving and our server poll the model directory and load any all-digit
subdirectory they see. Everything is written into `.tmp-<pid>-<random>` in the same parent (same filesystem,
so os.rename is atomic, and the name is not all digits, so readers ignore it), then renamed to the version
number. A crash leaves only a dot-directory, which the next push removes once its writer is gone. Old versions
are retired the same way in reverse: renamed to `.del-...` first, then deleted.
"""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Callable, List, Optional

from pipeline.configs import PUSH
from schema.versions import DEL_PREFIX, INDEX_ASSET_DIR, TMP_PREFIX, latest_version, list_versions


def _pid_alive(pid: int) -> bool:
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
    for d in os.listdir(model_dir):
        if d.startswith((TMP_PREFIX, DEL_PREFIX)):
            pid = d.split("-")[1]
            if not (pid.isascii() and pid.isdigit() and _pid_alive(int(pid))):
                shutil.rmtree(os.path.join(model_dir, d), ignore_errors=True)
                removed.append(d)
    return removed


def _retire(model_dir: str, version: int) -> None:
    gone = os.path.join(model_dir, f"{DEL_PREFIX}{os.getpid()}-{version}-{uuid.uuid4().hex[:8]}")
    os.rename(os.path.join(model_dir, str(version)), gone)
    shutil.rmtree(gone, ignore_errors=True)


def push(
    saved_model_dir: str,
    index_dir: str,
    serving_model_dir: str,
    model_name: str = "pinsage",
    keep: int = PUSH.keep,
    version: Optional[int] = None,
    hook: Optional[Callable[[str, str], None]] = None,
) -> str:
    """Copies one model version into serving_model_dir/model_name/<version>/ and returns that path.

    `version` defaults to the newest existing version + 1 (versions only ever increase; TF Serving serves the
    highest). `hook(stage, tmp_dir)` is called after each stage ("saved_model", "index") — tests use it to
    simulate a crash mid-push. After the rename, all but the `keep` newest versions are retired."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    if not os.path.exists(os.path.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(f"no saved_model.pb in {saved_model_dir}")
    if not os.path.isdir(os.path.join(index_dir, "scann")):
        raise FileNotFoundError(f"no ScaNN index (scann/) in {index_dir}")
    model_dir = os.path.join(serving_model_dir, model_name)
    os.makedirs(model_dir, exist_ok=True)
    clean_stale(model_dir)
    current = latest_version(model_dir)
    if version is None:
        version = (current or 0) + 1
    elif current is not None and version <= current:
        raise ValueError(f"version {version} is not newer than the current {current}")

    tmp = os.path.join(model_dir, f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(saved_model_dir, tmp)
        if hook:
            hook("saved_model", tmp)
        shutil.copytree(index_dir, os.path.join(tmp, "assets", INDEX_ASSET_DIR))
        if hook:
            hook("index", tmp)
        final = os.path.join(model_dir, str(version))
        os.rename(tmp, final)  # atomic; fails if a concurrent push took the same number
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_versions(model_dir)[:-keep]:
        _retire(model_dir, old)
    return final
