"""PinSage's Python API over a pushed version on disk, without a server:

    import pinsage

    v = pinsage.load("OUT/serving_model/pinsage")          # a model directory (its newest version) or a version
    for item in v.related(["50"], k=5)[0]:
        print(item.item_id, item.title, item.score, item.attributes)

`load` returns a pinsage.local.LocalVersion: related / similar / recommend / recommend_for / embed, answered by
the server's own request core in this process (serving/core.py over serving/version.py), so every answer equals
the server's for the same version. Importing this package is cheap; `load` imports TensorFlow and ScaNN.
"""

import schema  # noqa: F401  (first: prepares the process, see schema/__init__.py)
from pinsage.results import Embedded, Item

__all__ = ["Embedded", "Item", "load"]


def load(path: str):
    """The version at `path`: a version directory (serving_model/<name>/<version>/) or a model directory, whose
    newest version is loaded. Raises ValueError naming the problem when `path` is neither or does not load."""
    from pinsage.local import LocalVersion  # TensorFlow, ScaNN and the request core: seconds, so only here

    return LocalVersion.open(path)
