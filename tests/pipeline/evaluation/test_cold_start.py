"""The item-cold-start evaluation (pipeline/evaluation/cold_start.py): the hold-out copy and the section's figures,
against hand-picked items, the full data's own split and a brute-force numpy ranking."""

import os

import numpy as np
import pandas as pd
import pytest

from pipeline.data import datasets
from pipeline.evaluation import cold_start
from pipeline.graph.from_csv import graph_from_csv


def write(tmp, items: list, inter: list) -> str:
    d = str(tmp)
    pd.DataFrame(items, columns=["item_id", "title"]).to_csv(os.path.join(d, "items.csv"), index=False)
    pd.DataFrame(inter, columns=["context_id", "item_id", "timestamp"]).to_csv(
        os.path.join(d, "interactions.csv"), index=False
    )
    return d


@pytest.fixture
def tiny(tmp_path):
    items = [[f"i{k}", f"Item, number {k}"] for k in range(10)]  # a comma: the copy must quote as the source does
    # item k first seen at time 100 + k (i9 newest), i0 also late
    inter = [[f"c{k % 3}", f"i{k}", 100 + k] for k in range(10)] + [["c0", "i0", 500], ["c1", "i1", 501]]
    return write(tmp_path, items, inter)


def test_newest_are_the_latest_first_interactions(tiny, tmp_path):
    h = cold_start.hold_out(tiny, str(tmp_path / "out"), share=0.3, by="newest")
    assert h.items == ("i7", "i8", "i9")  # first seen at 107..109; i0's late repeat does not make it new
    assert h.interactions_removed == 3


def test_random_is_seeded_and_sized(tiny, tmp_path):
    a = cold_start.hold_out(tiny, str(tmp_path / "a"), share=0.25, by="random", seed=3)
    b = cold_start.hold_out(tiny, str(tmp_path / "b"), share=0.25, by="random", seed=3)
    c = [cold_start.hold_out(tiny, str(tmp_path / f"c{s}"), 0.25, "random", s).items for s in range(6)]
    assert a.items == b.items and len(a.items) == round(0.25 * 10)
    assert len(set(c)) > 1  # the seed matters


def test_the_copy_is_the_data_without_them(tiny, tmp_path):
    out = str(tmp_path / "out")
    h = cold_start.hold_out(tiny, out, share=0.3, by="newest")
    read = lambda d, f: pd.read_csv(os.path.join(d, f), dtype=str)  # noqa: E731
    for f in ("items.csv", "interactions.csv"):
        full, copy = read(tiny, f), read(out, f)
        expected = full[~full["item_id"].isin(h.items)].reset_index(drop=True)
        pd.testing.assert_frame_equal(copy, expected)
    assert cold_start.read_held_out(out) == list(h.items)


@pytest.mark.parametrize("bad", [dict(share=0.0), dict(share=1.0), dict(by="oldest")])
def test_bad_hold_out_is_a_value_error(tiny, tmp_path, bad):
    with pytest.raises(ValueError):
        cold_start.hold_out(tiny, str(tmp_path / "out"), **{"share": 0.2, "by": "random", **bad})


def test_no_leak_the_copy_trains_on_a_subset_of_the_full_train_split(tmp_path):
    """Removing items only moves each context's split points later: every train interaction of the copy is a
    train interaction of the full data, so a held-out run never trains on the full data's validation or test."""
    full = str(tmp_path / "full")
    datasets.materialise("synthetic", full, items=80, contexts=40, edges=900, seed=5)
    for by in cold_start.HOLD_OUT_BY:
        h = cold_start.hold_out(full, str(tmp_path / by), share=0.2, by=by, seed=1)
        g_full, g_copy = graph_from_csv(full), graph_from_csv(h.data_dir)

        def train_pairs(g):
            c, n, _ = g.edges("train")
            return set(zip(g.context_ids[c].tolist(), g.item_ids[n].astype(str).tolist()))

        copy_train = train_pairs(g_copy)
        assert copy_train and copy_train <= train_pairs(g_full)
        assert not {i for _, i in copy_train} & set(h.items)


def brute_hr(graph, emb, query_emb, held) -> tuple[np.ndarray, np.ndarray]:
    """Per-context HR@10 of the test contexts whose target (and, second, whose query) is held out: the protocol
    written out with plain loops."""
    target_hits, query_hits = [], []
    for c in range(graph.num_contexts):
        rows = np.flatnonzero(graph.context_index == c)
        spl = graph.split[rows]
        if "test" not in spl:
            continue
        t = graph.node_id[rows[spl == "test"][0]]
        q = graph.node_id[rows[spl == "validation"][0]]
        s = query_emb[q] @ emb.T
        masked = set(graph.node_id[rows[spl != "test"]].tolist())
        above = sum(1 for j in range(graph.num_items) if j not in masked and (s[j] > s[t] or (s[j] == s[t] and j < t)))
        if held[t]:
            target_hits.append(above < 10)
        if held[q]:
            query_hits.append(above < 10)
    return np.array(target_hits, float), np.array(query_hits, float)


def test_section_matches_a_brute_force_ranking(tmp_path):
    data = str(tmp_path / "full")
    datasets.materialise("synthetic", data, items=120, contexts=60, edges=1500, seed=7)
    g = graph_from_csv(data)
    rng = np.random.default_rng(0)
    emb, q, other = (rng.normal(size=(g.num_items, 8)).astype(np.float32) for _ in range(3))
    held_ids = g.item_ids[rng.choice(g.num_items, 25, replace=False)].astype(str).tolist()
    section = cold_start.evaluate(g, held_ids, (emb, q), retrained=(other, None))
    held = cold_start.held_out_mask(g, held_ids)
    assert held.sum() == 25 == section["held_out_items"]
    assert section["held_out_items_with_train_interactions"] == int((g.train_degree[held] > 0).sum())
    t_hits, q_hits = brute_hr(g, emb, q, held)
    t_other, _ = brute_hr(g, other, other, held)
    targets = section["sets"][cold_start.TARGETS]
    assert targets["num_contexts"] == len(t_hits) > 0
    assert targets["metrics"][cold_start.MODEL]["hr@10"] == pytest.approx(t_hits.mean())
    assert targets["metrics"][cold_start.RETRAINED]["hr@10"] == pytest.approx(t_other.mean())
    assert section["sets"][cold_start.QUERIES]["metrics"][cold_start.MODEL]["hr@10"] == pytest.approx(q_hits.mean())
    v = targets["verdicts"][cold_start.RETRAINED][cold_start.MODEL]
    assert v["diff"] == pytest.approx((t_other - t_hits).mean())
    # lists: one per held-out item; popularity's is the ten most engaged items but the query itself
    order = np.argsort(-g.train_degree, kind="stable")
    shown = {int(j) for i in np.flatnonzero(held) for j in order[order != i][:10]}
    pop = section["lists"]["popularity"]
    assert pop["coverage@10"] == pytest.approx(len(shown) / (g.train_degree > 0).sum())
    assert pop["popular_share@10"] == pytest.approx(1.0)  # all ten among the 50 most engaged
    md = "\n".join(cold_start.markdown_lines(dict(section, how="test")))
    assert "## Item cold start" in md and "PinSage, refreshed" in md and "features only" not in md


def test_rows_of_reorders_by_id_and_zeroes_missing(tmp_path):
    data = str(tmp_path / "full")
    datasets.materialise("synthetic", data, items=30, contexts=10, edges=120, seed=1)
    g = graph_from_csv(data)
    ids = g.item_ids.astype(str)
    emb = np.arange(len(ids) * 2, dtype=np.float32).reshape(-1, 2)
    perm = np.random.default_rng(0).permutation(len(ids))[:-1]  # shuffled, one item missing
    out = cold_start.rows_of(emb[perm], ids[perm], g)
    missing = np.setdiff1d(np.arange(len(ids)), perm)
    assert np.array_equal(out[perm], emb[perm]) and not out[missing].any()


def test_retrained_is_a_version_or_an_embeddings_artifact(tmp_path):
    from pipeline.refresh import embed
    from schema import embeddings as embeddings_io

    with pytest.raises(embed.NotAModel, match=str(tmp_path)):
        embed.retrained_embeddings(str(tmp_path))
    emb = np.eye(3, 4, dtype=np.float32)
    embeddings_io.write_embeddings(str(tmp_path / "e"), emb, ["a", "b", "c"], query_embeddings=2 * emb)
    got, query, ids = embed.retrained_embeddings(str(tmp_path / "e"))
    assert ids == ["a", "b", "c"] and np.array_equal(got, emb) and np.array_equal(query, 2 * emb)
    assert embed.retrained_embeddings(None) is None


def test_a_sample_of_contexts_is_the_brute_force_of_those_contexts(tmp_path):
    data = str(tmp_path / "full")
    datasets.materialise("synthetic", data, items=120, contexts=80, edges=2000, seed=3)
    g = graph_from_csv(data)
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(g.num_items, 8)).astype(np.float32)
    held_ids = g.item_ids[rng.choice(g.num_items, 40, replace=False)].astype(str).tolist()
    full = cold_start.evaluate(g, held_ids, (emb, None))
    part = cold_start.evaluate(g, held_ids, (emb, None), max_contexts=5)
    for name in (cold_start.TARGETS, cold_start.QUERIES):
        total = full["sets"][name]["num_contexts"]
        assert total > 5 and part["sets"][name]["total_contexts"] == total
        assert part["sets"][name]["num_contexts"] == 5
        assert 0.0 <= part["sets"][name]["metrics"][cold_start.MODEL]["hr@10"] <= 1.0
    assert part["list_items"] == 5 and full["list_items"] == 40
    caption = cold_start.tables(part)[0][0]
    assert caption.endswith(f"a seeded sample of 5 of {full['sets'][cold_start.TARGETS]['num_contexts']}")
