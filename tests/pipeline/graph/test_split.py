"""The temporal split of docs/DESIGN.md, protocol version 2 (pipeline/graph/split.py): ties in time by the seeded
hash of (context id, item id), re-implemented here in plain Python (SipHash-2-4 + the documented mixing), on
hand-built timelines, against a per-context Python reference on random timelines, on all of ML-100K against a
pandas reference; and the split's independence of unrelated rows and of the id type, and the held-out tie count."""

import numpy as np
import pandas as pd

from pipeline.graph.split import (
    SPLIT_SEED,
    hash_key,
    held_out_ties,
    id_hashes,
    id_strings,
    pair_hashes,
    sorted_ids,
    split_partition,
)

# ------------------------------------------------------------- independent references (plain Python, one context)
M64 = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & M64


def siphash24(key: bytes, msg: bytes) -> int:
    """SipHash-2-4 (Aumasson & Bernstein) in plain Python: the hash pandas.util.hash_array applies to strings."""
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rounds(n):
        for _ in range(n):
            v[0] = (v[0] + v[1]) & M64
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & M64
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & M64
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & M64
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    tail = len(msg) - len(msg) % 8
    blocks = [int.from_bytes(msg[i : i + 8], "little") for i in range(0, tail, 8)]
    blocks.append((len(msg) & 0xFF) << 56 | int.from_bytes(msg[tail:], "little"))
    for m in blocks:
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def ref_id_hash(id_str: str, seed: int = 0) -> int:
    """The documented recipe for one id: SipHash-2-4 keyed by the seed as 16 hex digits, then splitmix64's
    finaliser (pandas' redistribution step)."""
    h = siphash24(f"{seed:016x}".encode(), id_str.encode("utf-8"))
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & M64
    return h ^ (h >> 31)


def ref_pair_hash(context_id: str, item_id: str, seed: int = 0) -> int:
    """h = (h_context * M) ^ h_item; h ^= h >> 32; h *= M; h ^= h >> 29, modulo 2**64 (the module docstring)."""
    m = 0x9E3779B97F4A7C15
    h = ((ref_id_hash(context_id, seed) * m) & M64) ^ ref_id_hash(item_id, seed)
    h ^= h >> 32
    h = (h * m) & M64
    return h ^ (h >> 29)


def id_order(ids) -> str:
    """'int' when every id is an integer, else 'string' (docs/DESIGN.md: numeric vs string order)."""
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


def split_context(rows, context_id="0"):
    """rows: [(item_id, timestamp, weight)] of one context -> ([(item_id, ts, w, split, position)], n_duplicates),
    ties in time by ref_pair_hash of the id strings."""
    rows = sorted(rows, key=lambda r: (r[1], ref_pair_hash(str(context_id), str(r[0]))))
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


def split_one(rows, context_id="0"):
    """split_partition (the code under test) on one context's [(item_id, ts, w)], ids mapped through sorted_ids and
    hashed by id_hashes, returned in split_context's shape."""
    ids, _ = sorted_ids(np.array([r[0] for r in rows], dtype=object))
    node_of = {x: i for i, x in enumerate(ids)}
    cols, dups, _ = split_partition(
        np.zeros(len(rows), np.int64),
        np.array([node_of[str(r[0])] for r in rows], np.int64),
        np.array([r[1] for r in rows], np.int64),
        np.array([r[2] for r in rows], np.float64),
        id_hashes(np.array([context_id], dtype=object)),
        id_hashes(ids),
    )
    out = [
        (str(ids[n]), int(t), float(w), s, int(p))
        for n, t, w, s, p in zip(cols["node_id"], cols["timestamp"], cols["weight"], cols["split"], cols["position"])
    ]
    return out, dups


def test_the_reference_hash_is_siphash_and_the_code_uses_the_documented_recipe():
    # SipHash-2-4's published test vector (key 00..0f, empty message and 15 bytes 00..0e)
    key = bytes(range(16))
    assert siphash24(key, b"") == 0x726FDB47DD0E0E31
    assert siphash24(key, bytes(range(15))) == 0xA129CA6149BE45E5
    ids = ["1", "10", "u1", "é", "", "x" * 100, "9223372036854775808"]
    assert id_hashes(np.array(ids, dtype=object)).tolist() == [ref_id_hash(x) for x in ids]
    assert id_hashes(np.array(ids, dtype=object), seed=7).tolist() == [ref_id_hash(x, 7) for x in ids]
    assert SPLIT_SEED == 0 and hash_key() == "0" * 16
    ctx, item = ["u1", "u1", "2", ""], ["1", "10", "é", "x"]
    got = pair_hashes(id_hashes(np.array(ctx, dtype=object)), id_hashes(np.array(item, dtype=object)))
    assert got.tolist() == [ref_pair_hash(c, i) for c, i in zip(ctx, item)]
    # 5, 5.0 and "5" are one id (id_strings), so they hash alike
    assert len({int(id_hashes(np.array([5]))[0]), int(id_hashes(np.array([5.0]))[0]), ref_id_hash("5")}) == 1


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


def test_ties_in_time_follow_the_pair_hash_whatever_the_id_type():
    rows = [("10", 5, 1.0), ("9", 5, 1.0), ("100", 5, 1.0), ("2", 1, 1.0), ("31", 5, 1.0), ("4", 9, 1.0)]
    for ctx in ("u1", "u2", "7"):
        tied = sorted(["10", "9", "100", "31"], key=lambda i: ref_pair_hash(ctx, i))
        expected = ["2", *tied, "4"]
        num, _ = split_one(rows, ctx)
        assert [r[0] for r in num] == expected
        assert [r[3] for r in num] == ["train"] * 4 + ["validation", "test"]
        # the same ids with one non-integer id in the catalogue (string id order): the same order
        txt, _ = split_one(rows + [("x", 0, 1.0)], ctx)
        assert [r[0] for r in txt] == ["x", *expected]
    # the tie order differs between contexts: not one global item order
    orders = {tuple(sorted(["10", "9", "100", "31"], key=lambda i: ref_pair_hash(c, i))) for c in map(str, range(9))}
    assert len(orders) > 1


def test_contexts_with_fewer_than_three_stay_in_train_and_duplicates_keep_first():
    out, dups = split_one([("a", 2, 1.0), ("b", 1, 1.0)])
    assert [r[3] for r in out] == ["train", "train"] and dups == 0
    rows = [("a", 1, 1.0), ("b", 2, 1.0), ("a", 3, 5.0), ("c", 4, 1.0), ("a", 5, 1.0)]
    out, dups = split_one(rows)
    assert dups == 2
    assert [(r[0], r[1], r[3]) for r in out] == [("a", 1, "train"), ("b", 2, "validation"), ("c", 4, "test")]
    # a repeat after a tie in time: the first occurrence is kept, placed among the tie by the hash
    rows = [("a", 7, 2.0), ("b", 5, 1.0), ("a", 5, 1.0), ("c", 9, 1.0)]
    out, dups = split_one(rows, "u")
    assert dups == 1 and [r[0] for r in out] == [*sorted("ab", key=lambda i: ref_pair_hash("u", i)), "c"]
    assert [(r[1], r[2]) for r in out if r[0] == "a"] == [(5, 1.0)]
    # the same pair twice at the same time: one row kept
    out, dups = split_one([("a", 5, 1.0), ("b", 5, 1.0), ("a", 5, 1.0), ("c", 6, 1.0)], "u")
    assert dups == 1 and sorted(r[0] for r in out[:2]) == ["a", "b"] and out[2][0] == "c"


def test_sorted_ids_are_contiguous_and_order_independent():
    def idx(ids):
        return {x: i for i, x in enumerate(sorted_ids(np.array(ids))[0])}

    ids = ["30", "4", "100", "7"]
    assert idx(ids) == {"4": 0, "7": 1, "30": 2, "100": 3}
    assert idx(list(reversed(ids))) == idx(ids)
    assert idx(["b", "10", "a"]) == {"10": 0, "a": 1, "b": 2}


def test_split_on_ml100k_matches_an_independent_pandas_reference(ml100k_dir):
    inter = pd.read_csv(f"{ml100k_dir}/interactions.csv", dtype={"context_id": str, "item_id": str})
    h = {x: ref_id_hash(x) for x in set(inter["context_id"]) | set(inter["item_id"])}
    m = 0x9E3779B97F4A7C15

    def pair(c, i):
        x = ((h[c] * m) & M64) ^ h[i]
        x ^= x >> 32
        x = (x * m) & M64
        return x ^ (x >> 29)

    inter["tie"] = [pair(c, i) for c, i in zip(inter["context_id"], inter["item_id"])]
    ref = inter.sort_values(["context_id", "timestamp", "tie"])
    ref_test = ref.groupby("context_id").tail(1).set_index("context_id")["item_id"]
    ref_val = ref.groupby("context_id")["item_id"].nth(-2)
    tested = {}
    for ctx, g in inter.groupby("context_id"):
        out, dups = split_one(list(zip(g["item_id"], g["timestamp"], g["weight"])), ctx)
        assert dups == 0
        by_split = {s: [r[0] for r in out if r[3] == s] for s in ("train", "validation", "test")}
        assert by_split["test"] == [ref_test[ctx]]
        assert by_split["validation"] == [ref_val[ctx]]
        # the test item is the latest: no train interaction is later than it
        t_test = [r[1] for r in out if r[3] == "test"][0]
        assert max(r[1] for r in out if r[3] == "train") <= t_test
        assert not set(by_split["train"]) & set(by_split["test"] + by_split["validation"])
        tested[ctx] = len(out)
    assert len(tested) == 943 and sum(tested.values()) == 100000
    # ML-100K: many users have several interactions in their last second, so the tie-break matters, and it now
    # differs from the item-id order for many of them
    last_ts = ref.groupby("context_id")["timestamp"].transform("max")
    n_tied = (ref[ref["timestamp"] == last_ts].groupby("context_id").size() > 1).sum()
    assert n_tied > 100
    by_id = inter.assign(i=inter["item_id"].astype(int)).sort_values(["context_id", "timestamp", "i"])
    old_test = by_id.groupby("context_id").tail(1).set_index("context_id")["item_id"]
    assert (old_test != ref_test.loc[old_test.index]).sum() > 50


def test_vectorised_split_equals_the_per_context_reference():
    """GraphGen's split_partition (all contexts at once, numpy; no hash tables: the indices are the ids) against
    split_context (one context, Python) on random timelines with ties in time and repeated items."""
    rng = np.random.default_rng(0)
    n = 3000
    ctx = rng.integers(0, 300, n)
    node = rng.integers(0, 40, n)
    ts = rng.integers(0, 20, n)  # many ties
    w = rng.random(n)
    cols, dups, small = split_partition(ctx, node, ts, w)
    exp_rows, exp_dups, exp_small, exp_ties = [], 0, 0, 0
    for c in np.unique(ctx):
        m = ctx == c
        out, d = split_context(list(zip(node[m].tolist(), ts[m].tolist(), w[m].tolist())), str(c))
        exp_dups += d
        exp_small += len(out) < 3
        exp_ties += len(out) >= 3 and (out[-1][1] == out[-2][1] or out[-2][1] == out[-3][1])
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
    assert held_out_ties(cols) == exp_ties > 0
    # the same ids passed as hash tables: the same split
    again, _, _ = split_partition(ctx, node, ts, w, id_hashes(np.arange(300)), id_hashes(np.arange(40)))
    assert all(np.array_equal(again[k], cols[k]) for k in cols)


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


# ------------------------------------------------------------------ independence of other rows and of the id type
def split_log(log) -> dict:
    """{(context id, item id): split} of a log [(context id, item id, ts)], ids of any type, built as GraphGen's
    callers do: sorted_ids tables, their id_hashes, split_partition on the indices."""
    ctx_raw, item_raw = np.array([r[0] for r in log]), np.array([r[1] for r in log])
    ctx_ids, _ = sorted_ids(ctx_raw)
    item_ids, _ = sorted_ids(item_raw)
    ctx_of = {x: i for i, x in enumerate(ctx_ids)}
    node_of = {x: i for i, x in enumerate(item_ids)}
    cols, _, _ = split_partition(
        np.array([ctx_of[x] for x in id_strings(ctx_raw)], np.int64),
        np.array([node_of[x] for x in id_strings(item_raw)], np.int64),
        np.array([r[2] for r in log], np.int64),
        np.ones(len(log)),
        id_hashes(ctx_ids),
        id_hashes(item_ids),
    )
    return {(ctx_ids[c], item_ids[n]): s for c, n, s in zip(cols["context_index"], cols["node_id"], cols["split"])}


# contexts whose last interactions tie in time; ids 9 / 10 / 100 sort differently as numbers and as strings
TIED_LOG = [
    (1, 9, 50), (1, 10, 50), (1, 100, 50), (1, 3, 10), (1, 4, 20),
    (2, 10, 7), (2, 100, 7), (2, 9, 7), (2, 3, 7),
    (30, 3, 1), (30, 9, 2), (30, 100, 2), (30, 4, 2),
]  # fmt: skip


def test_adding_unrelated_rows_or_switching_the_id_type_moves_no_interaction():
    base = split_log(TIED_LOG)
    assert sorted(base.values()).count("test") == 3
    as_strings = split_log([(str(c), str(i), t) for c, i, t in TIED_LOG])
    assert as_strings == base
    as_floats = split_log([(float(c), float(i), t) for c, i, t in TIED_LOG])
    assert as_floats == base
    huge = str(2**70)  # beyond int64: the item id order becomes string order, node ids move
    extras = {
        "an unrelated item in a new context": [(7, 5, 1), (7, 6, 1), (7, 8, 1)],
        "an unrelated context using the same items": [(4, 9, 3), (4, 10, 3), (4, 100, 3)],
        "a non-integer item id": [(5, "x", 1)],
        "an item id beyond int64": [(6, huge, 1), (6, 3, 1), (6, 9, 1)],
        "a non-integer context id": [("z", 9, 1)],
    }
    for name, rows in extras.items():
        log = [(str(c), str(i), t) for c, i, t in TIED_LOG + rows]
        got = split_log(log)
        assert {k: got[k] for k in base} == base, name
    assert sorted_ids(np.array([str(r[1]) for r in TIED_LOG + extras["an item id beyond int64"]]))[1] == "string"


def test_held_out_ties_count_the_contexts_the_hash_decided():
    """Hand-counted: a context counts when test and validation share a timestamp or validation and the latest
    train item do; ties inside train, in contexts under 3 interactions, or removed with a duplicate do not."""
    log = [
        ("a", 1, 1), ("a", 2, 2), ("a", 3, 3),  # no tie: 0
        ("b", 1, 1), ("b", 2, 2), ("b", 3, 2),  # test = validation time: 1
        ("c", 1, 1), ("c", 2, 1), ("c", 3, 2),  # validation = last train time: 1
        ("d", 1, 1), ("d", 2, 1),  # under 3 interactions: 0
        ("e", 1, 1), ("e", 1, 2), ("e", 2, 2), ("e", 3, 3),  # the tie at 2 is a repeat of item 1, dropped: 0
        ("f", 1, 1), ("f", 2, 1), ("f", 3, 1), ("f", 4, 5),  # validation = last train, test later: 1
        ("g", 1, 1), ("g", 2, 1), ("g", 3, 2), ("g", 4, 3),  # a tie inside train only: 0
    ]  # fmt: skip
    ctx_ids, _ = sorted_ids(np.array([r[0] for r in log]))
    ctx_of = {x: i for i, x in enumerate(ctx_ids)}
    cols, dups, small = split_partition(
        np.array([ctx_of[r[0]] for r in log]),
        np.array([r[1] for r in log]),
        np.array([r[2] for r in log]),
        np.ones(len(log)),
        id_hashes(ctx_ids),
        id_hashes(np.arange(5)),
    )
    assert (dups, small) == (1, 1)
    assert held_out_ties(cols) == 3
    empty = split_partition(*(np.zeros(0, np.int64) for _ in range(4)))  # a partition without rows
    assert held_out_ties(empty[0]) == 0 and empty[1:] == (0, 0) and len(empty[0]["split"]) == 0
