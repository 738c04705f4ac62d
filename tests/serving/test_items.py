"""serving/items.py's ItemTable against a plain dict / list reference: lookups of known, unknown, too long and
NUL-holding ids, rows -> ids / titles / attributes, the arrays and the lists forms agreeing, duplicates refused;
the attribute arrays (schema/versions.py) written, read back, absent in a version written without them, and
refused when inconsistent."""

import numpy as np
import pytest

from schema import versions
from serving.items import ItemTable


def attributes_of(j: int) -> dict:
    """Numbers as text, lists of categories (one may hold a separator-free unicode value), some items none."""
    if j % 5 == 0:
        return {}
    out = {"year": str(1900 + j % 120)}
    if j % 3:
        out["genres"] = ["Drama", "Film-Noir"][: j % 3] + (["Ciné «ß»"] if j % 7 == 0 else [])
    return out


@pytest.fixture(scope="module")
def catalogue():
    rng = np.random.default_rng(5)
    ids = [f"{rng.integers(1 << 30):x}-{j}" for j in range(3000)] + ["", "é", "a b", "zz"]
    titles = [f"T{j}" * int(rng.integers(0, 4)) for j in range(len(ids))]
    return ids, titles


@pytest.fixture(scope="module", params=["arrays", "lists"])
def table(request, catalogue, tmp_path_factory):
    ids, titles = catalogue
    attributes = [attributes_of(j) for j in range(len(ids))]
    if request.param == "lists":
        return ItemTable.from_lists(ids, titles, attributes)
    d = tmp_path_factory.mktemp("arrays")
    versions.write_serving_arrays(str(d), ids, titles, np.zeros((len(ids), 2), np.float32), attributes=attributes)
    return ItemTable.from_arrays(versions.read_serving_arrays(str(d)))


def test_lookups_match_a_dict(table, catalogue):
    ids, _ = catalogue
    ref = {i.encode(): r for r, i in enumerate(ids)}
    longest = max(ref, key=len)
    probes = list(ref) + [b"nope", longest + b"x", b"x" * 500, ids[7].encode() + b"\0", b"\0", b"zz\0", b"z"]
    for key in probes:
        assert table.row(key) == ref.get(key), key
    np.testing.assert_array_equal(table.rows(probes), [ref.get(k, -1) for k in probes])
    assert table.rows([]).shape == (0,)


def test_rows_to_ids_and_titles(table, catalogue):
    ids, titles = catalogue
    rows = [0, 3002, 3003, 17, 17, 2999]
    assert table.ids_of(rows) == [ids[r].encode() for r in rows]
    assert table.titles_of(rows) == [titles[r].encode() for r in rows]
    grid = np.array([[1, 2], [3000, 4]])
    assert table.id_array(grid).tolist() == [[ids[r].encode() for r in row] for row in grid]
    assert table.title_array(grid).tolist() == [[titles[r].encode() for r in row] for row in grid]
    assert table.id_strings() == ids and table.title_strings() == titles
    assert table.has_attributes
    assert table.attributes_of(rows) == [attributes_of(r) for r in rows]
    assert table.attributes_of(np.arange(len(ids))) == [attributes_of(r) for r in range(len(ids))]


def test_without_titles_every_title_is_empty():
    t = ItemTable.from_lists(["a", "b"])
    assert t.titles_of([1, 0, 1]) == [b"", b"", b""] and t.title_array(np.array([[0, 1]])).tolist() == [[b"", b""]]


def test_duplicates_and_nul_refused():
    with pytest.raises(ValueError, match="'b' repeats"):
        ItemTable.from_lists(["a", "b", "c", "b"])
    with pytest.raises(ValueError, match="NUL"):
        ItemTable.from_lists(["a", "b\0"])


def test_attribute_arrays_on_disk(tmp_path):
    """The files hold each item's JSON back to back (an item without attributes is empty), offsets into them."""
    ids = ["a", "b", "c"]
    attrs = [{"year": "1995", "genres": ["Animation", "Children's"]}, {}, {"size": "XL"}]
    versions.write_serving_arrays(str(tmp_path), ids, None, np.zeros((3, 2), np.float32), attributes=attrs)
    blob = (tmp_path / versions.ATTRIBUTES_BIN).read_bytes()
    first = '{"year":"1995","genres":["Animation","Children\'s"]}'.encode()
    assert blob == first + b'{"size":"XL"}'
    offsets = np.load(tmp_path / versions.ATTRIBUTE_OFFSETS_NPY)
    assert offsets.tolist() == [0, len(first), len(first), len(blob)]
    arrays = versions.read_serving_arrays(str(tmp_path))
    assert arrays.titles is None and arrays.attribute_offsets.tolist() == offsets.tolist()
    assert ItemTable.from_arrays(arrays).attributes_of([2, 1, 0]) == attrs[::-1]


def test_a_version_without_attribute_arrays_reads_and_serves_without_them(tmp_path):
    ids, titles = ["a", "b"], ["A", "B"]
    versions.write_serving_arrays(str(tmp_path), ids, titles, np.zeros((2, 2), np.float32))
    assert not (tmp_path / versions.ATTRIBUTES_BIN).exists()
    arrays = versions.read_serving_arrays(str(tmp_path))
    assert arrays.attributes is None and arrays.attribute_offsets is None
    table = ItemTable.from_arrays(arrays)
    assert not table.has_attributes and table.attributes_of([1, 0]) == [{}, {}]
    assert table.titles_of([1, 0]) == [b"B", b"A"]
    assert not ItemTable.from_lists(ids, titles).has_attributes
    # every item without attributes: an empty blob, which is read without mapping it
    versions.write_serving_arrays(str(tmp_path), ids, titles, np.zeros((2, 2), np.float32), attributes=[{}, {}])
    table = ItemTable.from_arrays(versions.read_serving_arrays(str(tmp_path)))
    assert table.has_attributes and table.attributes_of([0, 1]) == [{}, {}]


def test_bad_attributes_refused(tmp_path):
    emb = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="1 attribute rows for 2 item ids"):
        versions.write_serving_arrays(str(tmp_path), ["a", "b"], None, emb, attributes=[{}])
    with pytest.raises(ValueError, match="'year'"):
        versions.write_serving_arrays(str(tmp_path), ["a", "b"], None, emb, attributes=[{"year": 1995}, {}])
    with pytest.raises(ValueError, match="'genres'"):
        versions.write_serving_arrays(str(tmp_path), ["a", "b"], None, emb, attributes=[{"genres": ["x", 2]}, {}])
    versions.write_serving_arrays(str(tmp_path), ["a", "b"], None, emb, attributes=[{"k": "v"}, {}])
    np.save(tmp_path / versions.ATTRIBUTE_OFFSETS_NPY, np.array([0, 3, 2], np.int64))
    with pytest.raises(ValueError, match="attributes_offsets.npy.*size of attributes.bin"):
        versions.read_serving_arrays(str(tmp_path))
