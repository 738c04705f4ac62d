"""serving/items.py's ItemTable against a plain dict / list reference: lookups of known, unknown, too long and
NUL-holding ids, rows -> ids / titles, the arrays and the lists forms agreeing, duplicates refused."""

import numpy as np
import pytest

from schema import versions
from serving.items import ItemTable


@pytest.fixture(scope="module")
def catalogue():
    rng = np.random.default_rng(5)
    ids = [f"{rng.integers(1 << 30):x}-{j}" for j in range(3000)] + ["", "é", "a b", "zz"]
    titles = [f"T{j}" * int(rng.integers(0, 4)) for j in range(len(ids))]
    return ids, titles


@pytest.fixture(scope="module", params=["arrays", "lists"])
def table(request, catalogue, tmp_path_factory):
    ids, titles = catalogue
    if request.param == "lists":
        return ItemTable.from_lists(ids, titles)
    d = tmp_path_factory.mktemp("arrays")
    versions.write_serving_arrays(str(d), ids, titles, np.zeros((len(ids), 2), np.float32))
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


def test_without_titles_every_title_is_empty():
    t = ItemTable.from_lists(["a", "b"])
    assert t.titles_of([1, 0, 1]) == [b"", b"", b""] and t.title_array(np.array([[0, 1]])).tolist() == [[b"", b""]]


def test_duplicates_and_nul_refused():
    with pytest.raises(ValueError, match="'b' repeats"):
        ItemTable.from_lists(["a", "b", "c", "b"])
    with pytest.raises(ValueError, match="NUL"):
        ItemTable.from_lists(["a", "b\0"])
