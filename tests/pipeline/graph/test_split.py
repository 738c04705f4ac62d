"""The temporal split of docs/DESIGN.md (pipeline/graph/split.py), on hand-built timelines, against a per-context
Python reference on random timelines, and on all of ML-100K against a pandas reference."""

import numpy as np
import pandas as pd

from pipeline.graph.split import id_strings, sorted_ids, split_partition


# ------------------------------------------------------------- independent references (plain Python, one context)
def id_order(ids) -> str:
    """'int' when every id is an integer, else 'string' (docs/DESIGN.md tie-break: numeric vs string order)."""
    try:
        for x in ids:
            int(x)
        return "int"
    except ValueError:
        return "string"


def id_sort_key(order: str):
    return (lambda x: (int(x), "")) if order == "int" else (lambda x: (0, x))


def index_of(ids: list[str]) -> dict:
    return {x: i for i, x in enumerate(sorted(ids, key=id_sort_key(id_order(ids))))}


def split_context(rows, item_key):
    """rows: [(item_id, timestamp, weight)] of one context -> ([(item_id, ts, w, split, position)], n_duplicates)."""
    rows = sorted(rows, key=lambda r: (r[1], item_key(r[0])))
    seen, kept = set(), []
    for r in rows:
        if r[0] not in seen:
            seen.add(r[0])
            kept.append(r)
    n = len(kept)
    out = []
    for pos, (item, ts, w) in enumerate(kept):
        split = "test" if n >= 3 and pos == n - 1 else "validation" if n >= 3 and pos == n - 2 else "train"
        out.append((item, ts, w, split, pos))
    return out, len(rows) - n


def split_one(rows):
    """split_partition (the code under test) on one context's [(item_id, ts, w)], ids mapped through sorted_ids,
    returned in split_context's shape."""
    ids, _ = sorted_ids(np.array([r[0] for r in rows]))
    node_of = {x: i for i, x in enumerate(ids)}
    cols, dups, _ = split_partition(
        np.zeros(len(rows), np.int64),
        np.array([node_of[r[0]] for r in rows], np.int64),
        np.array([r[1] for r in rows], np.int64),
        np.array([r[2] for r in rows], np.float64),
    )
    out = [
        (str(ids[n]), int(t), float(w), s, int(p))
        for n, t, w, s, p in zip(cols["node_id"], cols["timestamp"], cols["weight"], cols["split"], cols["position"])
    ]
    return out, dups


def test_last_is_test_second_last_validation_rest_train():
    rows = [("b", 30, 1.0), ("a", 10, 1.0), ("c", 20, 1.0), ("d", 40, 2.0)]
    out, dups = split_one(rows)
    assert dups == 0
    assert [(r[0], r[3], r[4]) for r in out] == [
        ("a", "train", 0),
        ("c", "train", 1),
        ("b", "validation", 2),
        ("d", "test", 3),
    ]


def test_ties_in_time_break_numerically_for_integer_ids_and_by_string_otherwise():
    rows = [("10", 5, 1.0), ("9", 5, 1.0), ("100", 5, 1.0), ("2", 1, 1.0)]
    num, _ = split_one(rows)
    assert [r[0] for r in num] == ["2", "9", "10", "100"]  # numeric: 9 < 10 < 100
    assert num[-1][3] == "test" and num[-1][0] == "100"
    txt, _ = split_one([("x" + r[0], *r[1:]) for r in rows])  # one non-integer id: string order for all
    assert [r[0] for r in txt] == ["x2", "x10", "x100", "x9"]  # string: "10" < "100" < "9"
    assert txt[-1][0] == "x9"


def test_contexts_with_fewer_than_three_stay_in_train_and_duplicates_keep_first():
    out, dups = split_one([("a", 2, 1.0), ("b", 1, 1.0)])
    assert [r[3] for r in out] == ["train", "train"] and dups == 0
    rows = [("a", 1, 1.0), ("b", 2, 1.0), ("a", 3, 5.0), ("c", 4, 1.0), ("a", 5, 1.0)]
    out, dups = split_one(rows)
    assert dups == 2
    assert [(r[0], r[1], r[3]) for r in out] == [("a", 1, "train"), ("b", 2, "validation"), ("c", 4, "test")]


def test_sorted_ids_are_contiguous_and_order_independent():
    def idx(ids):
        return {x: i for i, x in enumerate(sorted_ids(np.array(ids))[0])}

    ids = ["30", "4", "100", "7"]
    assert idx(ids) == {"4": 0, "7": 1, "30": 2, "100": 3}
    assert idx(list(reversed(ids))) == idx(ids)
    assert idx(["b", "10", "a"]) == {"10": 0, "a": 1, "b": 2}


def test_split_on_ml100k_matches_an_independent_pandas_reference(ml100k_dir):
    inter = pd.read_csv(f"{ml100k_dir}/interactions.csv")
    ref = inter.sort_values(["context_id", "timestamp", "item_id"])  # integer ids: numeric tie-break
    ref_test = ref.groupby("context_id").tail(1).set_index("context_id")["item_id"]
    ref_val = ref.groupby("context_id")["item_id"].nth(-2)
    tested = {}
    for ctx, g in inter.groupby("context_id"):
        rows = list(zip(g["item_id"].astype(str), g["timestamp"], g["weight"]))
        out, dups = split_one(rows)
        assert dups == 0
        by_split = {s: [r[0] for r in out if r[3] == s] for s in ("train", "validation", "test")}
        assert by_split["test"] == [str(ref_test[ctx])]
        assert by_split["validation"] == [str(ref_val[ctx])]
        # the test item is the latest: no train interaction is later than it
        t_test = [r[1] for r in out if r[3] == "test"][0]
        assert max(r[1] for r in out if r[3] == "train") <= t_test
        assert not set(by_split["train"]) & set(by_split["test"] + by_split["validation"])
        tested[ctx] = len(out)
    assert len(tested) == 943 and sum(tested.values()) == 100000
    # ML-100K: many users have several interactions in their last second, so the tie-break matters
    last_ts = ref.groupby("context_id")["timestamp"].transform("max")
    n_tied = (ref[ref["timestamp"] == last_ts].groupby("context_id").size() > 1).sum()
    assert n_tied > 100
    assert np.all(ref_test.index == np.sort(ref_test.index))


def test_vectorised_split_equals_the_per_context_reference():
    """GraphGen's split_partition (all contexts at once, numpy) against split_context (one context, Python) on
    random timelines with ties in time and repeated items."""
    rng = np.random.default_rng(0)
    n = 3000
    ctx = rng.integers(0, 300, n)
    node = rng.integers(0, 40, n)  # node ids in id order: the numeric tie-break
    ts = rng.integers(0, 20, n)  # many ties
    w = rng.random(n)
    cols, dups, small = split_partition(ctx, node, ts, w)
    exp_rows, exp_dups, exp_small = [], 0, 0
    for c in np.unique(ctx):
        m = ctx == c
        out, d = split_context(list(zip(node[m].tolist(), ts[m].tolist(), w[m].tolist())), id_sort_key("int"))
        exp_dups += d
        exp_small += len(out) < 3
        exp_rows += [(int(c), it, t, wt, s, p) for it, t, wt, s, p in out]
    got = list(
        zip(
            cols["context_index"].tolist(),
            cols["node_id"].tolist(),
            cols["timestamp"].tolist(),
            cols["weight"].tolist(),
            cols["split"].tolist(),
            cols["position"].tolist(),
        )
    )
    assert got == exp_rows
    assert (dups, small) == (exp_dups, exp_small) and dups > 0


def test_sorted_ids_is_index_of():
    for ids in (["30", "4", "100", "7", "4"], ["b", "10", "a"]):
        got, order = sorted_ids(np.array(ids))
        assert {x: i for i, x in enumerate(got)} == index_of(list(dict.fromkeys(ids)))
        assert order == id_order(ids)


def test_id_tables_cost_what_the_ids_cost():
    """One 1 MB id among many short ones: GraphGen's id tables stay object arrays (a fixed-width '<U' array would
    store every id at 4 bytes x the longest id), and the order is unchanged — string order
    by code point (Python's sort of the same strings is the reference), numeric for integers, int64 bounds
    respected."""
    huge = "x" * (1 << 20)
    ids = np.array(["b", huge, "10", "é", "a", "b", "Z"], dtype=object)
    got, order = sorted_ids(ids)
    assert got.dtype == object and order == "string"
    assert list(got) == sorted(set(ids.tolist()))
    assert id_strings(ids).dtype == object
    got, order = sorted_ids(np.array(["30", "-4", "9223372036854775807", "7"], dtype=object))
    assert list(got) == ["-4", "7", "30", "9223372036854775807"] and order == "int"
    got, order = sorted_ids(np.array(["30", "9223372036854775808"], dtype=object))  # beyond int64
    assert list(got) == ["30", "9223372036854775808"] and order == "string"
    assert list(sorted_ids(np.array([3, 10, 3]))[0]) == ["3", "10"]  # int64 input (Parquet INT ids)
