"""Ingest: every bad input is a counted drop/blank or a clear error naming the file — never a crash, never silent."""

import os

import pandas as pd
import pytest

from pipeline.data import ingest


def _write(d, items=None, inter=None, spec=None):
    d.mkdir(parents=True, exist_ok=True)
    if items is not None:
        (d / "items.csv").write_text(items)
    if inter is not None:
        (d / "interactions.csv").write_text(inter)
    if spec is not None:
        (d / "dataset.yaml").write_text(spec)
    return str(d)


ITEMS = (
    "item_id,title,year,genres\n"
    '1,"Toy Story, The",1995,Animation|Comedy\n'
    "2,Heat,1995,Action|Crime\n"
    "3,Alien,,Horror|Sci-Fi\n"  # empty numeric -> missing, counted
    "4,Brazil,NaN,Comedy\n"  # NaN -> blanked, counted
    "5,Fargo,nineteen,Crime\n"  # not a number -> blanked, counted
    "5,Fargo again,1996,Crime\n"  # duplicate item id -> dropped, counted
    ",No id,1990,Drama\n"
)  # missing id -> dropped, counted
SPEC = "name: t\nfeatures:\n  title: {kind: text}\n  year: {kind: numeric}\n  genres: {kind: categorical, separator: '|'}\n"
INTER = (
    "context_id,item_id,timestamp,weight\n"
    "u1,1,100,4\n"
    "u1,2,2001-09-09T01:46:40Z,5\n"  # ISO-8601 -> epoch seconds 1000000000
    "u1,3,notatime,3\n"  # malformed timestamp -> dropped
    "u1,99,300,3\n"  # unknown item -> dropped
    ",1,300,3\n"  # missing context id -> dropped
    "u2,1,400,\n"  # empty weight -> 1.0, counted
    "u2,2,500,-1\n"  # non-positive weight -> dropped
    "u2,4,600,abc\n"  # non-numeric weight -> dropped
    "u2,5,700,2\n"
)


def test_bad_cells_and_rows_are_counted_and_handled(tmp_path):
    canon, rep = ingest.canonicalise(_write(tmp_path / "d", ITEMS, INTER, SPEC), str(tmp_path / "out"))
    c = rep["counts"]
    assert c["items.dropped.missing_item_id"] == 1
    assert c["items.dropped.duplicate_item_id"] == 1
    assert c["items.year.missing"] == 1
    assert c["items.year.invalid_numeric_blanked"] == 2  # NaN and 'nineteen'
    assert c["interactions.dropped.malformed_timestamp"] == 1
    assert c["interactions.dropped.unknown_item_id"] == 1
    assert c["interactions.dropped.missing_id"] == 1
    assert c["interactions.dropped.invalid_weight"] == 2
    assert c["interactions.weight_defaulted_to_1"] == 1
    assert rep["items"] == {"rows_read": 7, "rows_kept": 5, "id_type": "int"}
    assert rep["interactions"]["rows_read"] == 9 and rep["interactions"]["rows_kept"] == 4
    # nothing lost silently: every row read is either kept or counted as dropped
    dropped = sum(v for k, v in c.items() if k.startswith("interactions.dropped."))
    assert rep["interactions"]["rows_kept"] + dropped == rep["interactions"]["rows_read"]

    items = pd.read_csv(os.path.join(canon, "items", "items.csv"), dtype=str, keep_default_na=False)
    assert items["item_id"].tolist() == ["1", "2", "3", "4", "5"]
    assert items["year"].tolist() == ["1995.0", "1995.0", "", "", ""]  # floats keep a decimal point
    assert items.loc[0, "title"] == "Toy Story, The"
    inter = pd.read_csv(os.path.join(canon, "interactions", "interactions.csv"))
    assert inter["timestamp"].tolist() == [100, 1000000000, 400, 700]
    assert inter["weight"].tolist() == [4.0, 5.0, 1.0, 2.0]


def test_output_dir_is_keyed_by_content(tmp_path):
    d = _write(tmp_path / "d", ITEMS, INTER, SPEC)
    a, _ = ingest.canonicalise(d, str(tmp_path / "out"))
    b, _ = ingest.canonicalise(d, str(tmp_path / "out"))
    assert a == b
    _write(tmp_path / "d", inter=INTER + "u3,1,800,1\n")
    c, rep = ingest.canonicalise(d, str(tmp_path / "out"))
    assert c != a and rep["interactions"]["rows_kept"] == 5


@pytest.mark.parametrize(
    "items,inter,message",
    [
        ("", "context_id,item_id,timestamp\nu,1,1\n", "items.csv: file is empty"),
        ("item_id,title\n1,a\n", "", "interactions.csv: file is empty"),
        ("item_id,title\n", "context_id,item_id,timestamp\nu,1,1\n", "items.csv: has a header but no data rows"),
        (
            "id,title\n1,a\n",
            "context_id,item_id,timestamp\nu,1,1\n",
            "items.csv: missing required column(s) ['item_id']",
        ),
        ("item_id,title\n1,a\n", "context_id,item_id\nu,1\n", "missing required column(s) ['timestamp']"),
        (
            "item_id,title\n1,a\n",
            'context_id,item_id,timestamp\nu,1,"unterminated\n',
            "interactions.csv: cannot be parsed",
        ),
        ("item_id,title\n1,a\n", "context_id,item_id,timestamp\nu,2,1\nu,3,5\n", "no usable interactions"),
    ],
)
def test_unusable_files_are_clear_errors_naming_the_file(tmp_path, items, inter, message):
    d = _write(tmp_path / "d", items, inter)
    with pytest.raises(
        ingest.InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    ):
        ingest.canonicalise(d, str(tmp_path / "out"))


def test_missing_file_and_bad_spec_are_clear_errors(tmp_path):
    d = _write(tmp_path / "d", "item_id,title\n1,a\n")
    with pytest.raises(ingest.InputError, match="interactions.csv: file not found"):
        ingest.canonicalise(d, str(tmp_path / "out"))
    d = _write(
        tmp_path / "e",
        "item_id,title\n1,a\n",
        "context_id,item_id,timestamp\nu,1,1\n",
        "features:\n  colour: {kind: categorical}\n",
    )
    with pytest.raises(ingest.InputError, match=r"\['colour'\] are not columns of items.csv"):
        ingest.canonicalise(d, str(tmp_path / "out"))
    d = _write(
        tmp_path / "f",
        "item_id,title\n1,a\n",
        "context_id,item_id,timestamp\nu,1,1\n",
        "features:\n  title: {kind: picture}\n",
    )
    with pytest.raises(ingest.InputError, match="kind 'picture'"):
        ingest.canonicalise(d, str(tmp_path / "out"))


def test_feature_kinds_are_inferred_and_reported_without_dataset_yaml(tmp_path):
    rows = ["item_id,price,colour,tags,vec,blurb"]
    for i in range(100):
        rows.append(
            f"{i},{i * 1.5},{['red', 'blue'][i % 2]},{'a|b' if i % 3 else 'c'},"
            f"{i} {i + 1} {i + 2},the quick brown fox number {i} jumps"
        )
    d = _write(tmp_path / "d", "\n".join(rows) + "\n", "context_id,item_id,timestamp\nu,1,1\nu,2,2\n")
    _, rep = ingest.canonicalise(d, str(tmp_path / "out"))
    f = rep["spec"]["features"]
    assert f["price"] == {"kind": "numeric"}
    assert f["colour"] == {"kind": "categorical"}
    assert f["tags"] == {"kind": "categorical", "separator": "|"}
    assert f["vec"] == {"kind": "dense_vector", "separator": " ", "dim": 3}
    assert f["blurb"] == {"kind": "text"}
    assert sorted(rep["spec"]["inferred"]) == ["blurb", "colour", "price", "tags", "vec"]
    assert rep["interactions"]["rows_kept"] == 2 and rep["counts"]["interactions.weight_defaulted_to_1"] == 0


def test_string_ids_and_invalid_vectors(tmp_path):
    items = "item_id,vec\nToy Story (1995),1 2\nHeat (1995),1 x\nAlien (1979),1 2 3\n"
    spec = "features:\n  vec: {kind: dense_vector, separator: ' ', dim: 2}\n"
    d = _write(tmp_path / "d", items, "context_id,item_id,timestamp\n7,Heat (1995),5\n", spec)
    canon, rep = ingest.canonicalise(d, str(tmp_path / "out"))
    assert rep["items"]["id_type"] == "string" and rep["interactions"]["context_id_type"] == "int"
    assert rep["counts"]["items.vec.invalid_vector_blanked"] == 2
    out = pd.read_csv(os.path.join(canon, "items", "items.csv"), dtype=str, keep_default_na=False)
    assert out["vec"].tolist() == ["1 2", "", ""]
