"""The serving arrays of schema/versions.py: what is written reads back equal (memory-mapped), an index without
them reads as None, and a damaged or inconsistent file is an error naming it."""

import mmap
import os

import numpy as np
import pytest

from schema import versions


def write(tmp_path, n=5, titles=True, query=False):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(n, 3)).astype(np.float32)
    ids = [f"id-{i}" for i in range(n - 1)] + ["ünï"]  # non-ASCII: 5 bytes in UTF-8
    t = [f"Title {i}" for i in range(n - 2)] + ["", "Ça va"] if titles else None
    q = (2 * emb) if query else None
    versions.write_serving_arrays(str(tmp_path), ids, t, emb, q)
    return emb, ids, t, q


def test_round_trip_memory_mapped(tmp_path):
    emb, ids, titles, q = write(tmp_path, query=True)
    a = versions.read_serving_arrays(str(tmp_path))
    np.testing.assert_array_equal(a.embeddings, emb)
    np.testing.assert_array_equal(a.query_embeddings, q)
    assert a.item_ids.tolist() == [i.encode() for i in ids] and a.item_ids.dtype == np.dtype("S5")
    got = [bytes(a.titles[s:e]).decode() for s, e in zip(a.title_offsets[:-1], a.title_offsets[1:])]
    assert got == titles and isinstance(a.titles, mmap.mmap)
    # mapped, not read: the arrays are views of the files, and writing to them is refused
    assert not a.embeddings.flags.writeable and not a.item_ids.flags.writeable
    assert type(a.embeddings) is np.ndarray  # a plain view, not the np.memmap subclass


def test_optional_parts_and_index_from_before(tmp_path):
    write(tmp_path, titles=False, query=False)
    a = versions.read_serving_arrays(str(tmp_path))
    assert a.query_embeddings is None and a.titles is None and a.title_offsets is None
    assert versions.read_serving_arrays(str(tmp_path / "elsewhere")) is None  # no item_ids.npy: written before


def test_all_titles_empty(tmp_path):
    versions.write_serving_arrays(str(tmp_path), ["a", "b"], ["", ""], np.ones((2, 2), np.float32))
    a = versions.read_serving_arrays(str(tmp_path))
    assert a.titles == b"" and a.title_offsets.tolist() == [0, 0, 0]


def test_writer_refuses_what_it_cannot_represent(tmp_path):
    with pytest.raises(ValueError, match="NUL"):
        versions.write_serving_arrays(str(tmp_path), ["a\0"], None, np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="embeddings"):
        versions.write_serving_arrays(str(tmp_path), ["a", "b"], None, np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="query embeddings"):
        versions.write_serving_arrays(str(tmp_path), ["a"], None, np.ones((1, 2)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="titles"):
        versions.write_serving_arrays(str(tmp_path), ["a"], ["x", "y"], np.ones((1, 2)))


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda d: os.remove(d / versions.EMBEDDINGS_NPY), versions.EMBEDDINGS_NPY),
        (lambda d: np.save(d / versions.EMBEDDINGS_NPY, np.ones((4, 3), np.float32)), versions.EMBEDDINGS_NPY),
        (lambda d: np.save(d / versions.EMBEDDINGS_NPY, np.ones((5, 3), np.float64)), versions.EMBEDDINGS_NPY),
        (lambda d: np.save(d / versions.QUERY_EMBEDDINGS_NPY, np.ones((5, 2), np.float32)), "query_embeddings"),
        (lambda d: open(d / versions.ITEM_IDS_NPY, "wb").write(b"junk"), versions.ITEM_IDS_NPY),
        (lambda d: np.save(d / versions.ITEM_IDS_NPY, np.arange(5)), versions.ITEM_IDS_NPY),
        (lambda d: open(d / versions.TITLES_BIN, "ab").write(b"x"), versions.TITLE_OFFSETS_NPY),
        (lambda d: np.save(d / versions.TITLE_OFFSETS_NPY, np.array([0, 9, 3, 20, 21, 27])), "non-decreasing"),
        (lambda d: os.remove(d / versions.TITLE_OFFSETS_NPY), versions.TITLE_OFFSETS_NPY),
    ],
)
def test_damaged_files_are_errors_naming_them(tmp_path, damage, named):
    write(tmp_path)
    damage(tmp_path)
    with pytest.raises(ValueError, match=named):
        versions.read_serving_arrays(str(tmp_path))
