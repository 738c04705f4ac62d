"""GraphGen's Beam transform (pipeline/graph/beam_graph.build_graph on the DirectRunner, reading what Ingest
writes) against the in-process builder (pipeline/graph/from_csv.graph_from_csv): the same ids, the same split
row for row, and the held-out tie count in graph_stats.json, on toy logs whose contexts tie in time."""

from __future__ import annotations

import json
import os

import apache_beam as beam
import numpy as np
import pytest
from tfx.types import standard_artifacts

from pipeline.data import ingest
from pipeline.graph.beam_graph import HELD_OUT_TIES, build_graph
from pipeline.graph.from_csv import graph_from_csv
from schema import graph as graph_io
from tests.pipeline.graph.test_split import ref_pair_hash

# a repeat (u1, 7) tied with other items; u2 ties validation with train; u3 has under 3 interactions; ids 9 / 10 /
# 100 sort differently as numbers and as strings
INTER = (
    "context_id,item_id,timestamp\n"
    "u1,9,50\nu1,10,50\nu1,100,50\nu1,3,10\nu1,7,20\nu1,7,50\n"
    "u2,10,7\nu2,100,7\nu2,9,7\nu2,3,9\n"
    "u3,9,1\nu3,10,1\n"
    "u4,3,1\nu4,7,2\nu4,9,3\n"
)


def _examples(canon: str, table: str):
    art = standard_artifacts.Examples()
    art.uri = os.path.join(canon, ingest.EXAMPLES_DIR, table)
    art.split_names = json.dumps([table])
    art.set_string_custom_property("payload_format", "FORMAT_PARQUET")
    art.set_string_custom_property("file_format", "FILE_FORMAT_PARQUET")
    return art


def _graphgen(tmp_path, items: list, inter: str):
    """(GraphGen's graph, its graph_stats.json, the in-process graph) of one dataset directory."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "items.csv").write_text("item_id,title\n" + "".join(f"{i},t{i}\n" for i in items))
    (d / "interactions.csv").write_text(inter)
    canon, _ = ingest.canonicalise(str(d), str(tmp_path / "canon"))
    graph_uri, examples_dir = str(tmp_path / "graph"), str(tmp_path / "item_examples")
    with beam.Pipeline() as p:
        build_graph(p, _examples(canon, "items"), _examples(canon, "interactions"), graph_uri, examples_dir, {})
    with open(os.path.join(graph_uri, graph_io.STATS_FILE)) as f:
        stats = json.load(f)
    return graph_io.load_graph(graph_uri), stats, graph_from_csv(str(d))


def _rows(g) -> list:
    return sorted(
        (g.context_ids[c], g.item_ids[n], int(t), s, int(p))
        for c, n, t, s, p in zip(g.context_index, g.node_id, g.timestamp, g.split, g.position)
    )


@pytest.mark.parametrize("extra_item", ["", str(2**70)], ids=["int-ids", "an-id-beyond-int64"])
def test_graphgen_and_graph_from_csv_split_alike(tmp_path, extra_item):
    items = [3, 7, 9, 10, 100] + ([extra_item] if extra_item else [])
    inter = INTER + (f"u5,{extra_item},4\nu5,3,4\nu5,9,4\n" if extra_item else "")
    beam_g, stats, csv_g = _graphgen(tmp_path, items, inter)
    assert list(beam_g.item_ids) == list(csv_g.item_ids) and list(beam_g.context_ids) == list(csv_g.context_ids)
    assert stats["item_id_order"] == ("string" if extra_item else "int")
    assert _rows(beam_g) == _rows(csv_g)
    np.testing.assert_array_equal(beam_g.train_degree, csv_g.train_degree)
    held = {(c, s): i for c, i, _, s, _ in _rows(beam_g) if s != "train"}
    assert held == _expected_held_out(inter)
    c = stats["counts"]
    assert c["graph.dropped.duplicate_interaction"] == 1
    assert c["graph.contexts_with_fewer_than_3_train_only"] == 1
    # u1 (test and validation at 50) and u2 (validation and train at 7) and, with the huge id, u5 (all at 4)
    assert c[HELD_OUT_TIES] == (3 if extra_item else 2)


def _expected_held_out(inter: str) -> dict:
    """{(context, "validation"|"test"): item} by the documented recipe in plain Python (test_split's reference)."""
    rows = [line.split(",") for line in inter.strip().splitlines()[1:]]
    out = {}
    for ctx in sorted({r[0] for r in rows}):
        mine = sorted((int(t), ref_pair_hash(ctx, i), i) for c, i, t in rows if c == ctx)
        kept = [i for k, (_, _, i) in enumerate(mine) if i not in [x[2] for x in mine[:k]]]
        if len(kept) >= 3:
            out[(ctx, "validation")], out[(ctx, "test")] = kept[-2], kept[-1]
    return out


def test_the_data_report_shows_held_out_ties_as_information_not_as_bad_input():
    from pipeline import driver
    from pipeline.evaluation import report as report_lib

    report = {
        "ingest": {"counts": {"interactions.dropped.unknown_item_id": 0}},
        "graph": {"counts": {HELD_OUT_TIES: 2, "interactions.test": 3, "interactions.train": 6}},
        "example_validator_anomalies": {},
        "features_inferred": [],
    }
    lines = driver.summarize_data_report(report)
    assert lines[0] == "  no bad input found" and len(lines) == 2
    assert "2 of 3 contexts" in lines[1] and HELD_OUT_TIES in lines[1] and "nothing dropped" in lines[1]
    assert HELD_OUT_TIES not in dict(report_lib.data_anomalies(report)[0])  # not among the drops
    report["graph"]["counts"]["graph.dropped.duplicate_interaction"] = 4
    lines = driver.summarize_data_report(report)
    assert lines[0] == "  graph.dropped.duplicate_interaction: 4" and HELD_OUT_TIES in lines[1]
    report["graph"]["counts"][HELD_OUT_TIES] = 0
    assert driver.summarize_data_report(report) == ["  graph.dropped.duplicate_interaction: 4"]
