"""The serving layout: `serving_model/<model_name>/<version>/`, what the Pusher writes and every server reads.

    <version>/saved_model.pb, variables/        the export (modules/export.py)
    <version>/assets/item_ids.txt               the export's id -> row table asset
    <version>/assets/index/                     the index directory (modules/index.py): scann/, item_ids.txt,
                                                titles.txt, index_stats.json

A version is a directory named by a plain ASCII-digit number (`7`; not `007`, not `²`, whose str.isdigit() is
True but int() fails). Writers (pipeline/push/pusher.py) build a version under a dot-name
(`.tmp-<pid>-<random>`) and rename it into place, and retire one through `.del-...`, so a reader that lists only
all-digit names never sees a half-written or half-deleted version.
"""

from __future__ import annotations

import re
from typing import List, Optional

from schema import files

INDEX_ASSET_DIR = "index"
TMP_PREFIX = ".tmp-"
DEL_PREFIX = ".del-"
VERSION_NAME = re.compile(r"0|[1-9][0-9]*")  # re's [0-9] is ASCII only, unlike str.isdigit


def is_version_name(name: str) -> bool:
    return VERSION_NAME.fullmatch(name) is not None


def list_versions(model_dir: str) -> List[int]:
    """Complete versions, ascending (version names only: temp and retiring dirs start with a dot)."""
    if not files.isdir(model_dir):
        return []
    return sorted(
        int(d) for d in files.listdir(model_dir) if is_version_name(d) and files.isdir(files.join(model_dir, d))
    )


def latest_version(model_dir: str) -> Optional[int]:
    versions = list_versions(model_dir)
    return versions[-1] if versions else None


def index_dir(version_dir: str) -> str:
    """The ScaNN index directory inside one version."""
    return files.join(version_dir, "assets", INDEX_ASSET_DIR)
