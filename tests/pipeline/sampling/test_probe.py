"""The neighbourhood-source probe (pipeline/sampling/probe.py) and NeighborhoodSampler(source='auto'): the probe
keeps transition counts on a graph with strong sequential structure and random walks on one without sequence,
and its scores equal a plain-Python recomputation of the protocol (latest train item -> validation item, the
context's train items masked)."""

import json
import os

import numpy as np
import pytest

from modules import evaluation
from pipeline.components import artifacts
from pipeline.components.neighborhood_sampler import CANDIDATES_DIR, PROBE_FILE, Executor
from pipeline.sampling import probe
from schema import graph as graph_io
from schema import neighborhoods as neighborhood_io
from tests.fixtures import chain_histories, community_histories

PROPS = dict(
    num_walks=200,
    walk_length=4,
    restart_prob=0.5,
    top_t=10,
    seed=0,
    strategy="in_memory",
    shard_size=500,
    source="auto",
    window=3,
    probe_contexts=0,
)


def reference_scores(g, nbr: np.ndarray, contexts=None) -> dict:
    """MRR@T and HR@T by loops over the graph's rows: per context with a validation item, query = its train item
    of highest position, the context's train items removed from the query's neighbour list."""
    train, target = {}, {}
    for c, v, p, s in zip(g.context_index, g.node_id, g.position, g.split):
        if s == "train":
            train.setdefault(int(c), []).append((int(p), int(v)))
        elif s == "validation":
            target[int(c)] = int(v)
    rr, hits = [], []
    for c in sorted(target) if contexts is None else contexts:
        seen = {v for _, v in train[c]}
        query = max(train[c])[1]
        ranked = [v for v in nbr[query] if v >= 0 and v not in seen]
        hit = target[c] in ranked
        hits.append(hit)
        rr.append(1.0 / (ranked.index(target[c]) + 1) if hit else 0.0)
    return {"mrr": float(np.mean(rr)), "hr_at_t": float(np.mean(hits)), "contexts": len(rr)}


def run_auto(g, tmp_path, **overrides):
    uri = str(tmp_path / "graph")
    graph_io.write_graph(g, uri)
    gin, out = artifacts.PinSageGraph(), artifacts.Neighborhoods()
    gin.uri, out.uri = uri, str(tmp_path / "out")
    Executor().Do({"graph": [gin]}, {"neighborhoods": [out]}, {**PROPS, **overrides})
    with open(os.path.join(out.uri, PROBE_FILE)) as f:
        record = json.load(f)
    loser = next(c for c in record["scores"] if c != record["chosen"])
    tables = {
        record["chosen"]: neighborhood_io.load_neighborhoods(out.uri)[0],
        loser: neighborhood_io.load_neighborhoods(os.path.join(out.uri, CANDIDATES_DIR, loser))[0],
    }
    return record, tables, neighborhood_io.read_stats(out.uri)


@pytest.mark.parametrize(
    "name,graph,expected",
    [
        ("sequential", lambda: chain_histories(), "transitions"),
        ("order-free", lambda: community_histories(), "random_walk"),
    ],
)
def test_auto_keeps_the_source_that_ranks_validation_items_better(tmp_path, name, graph, expected):
    g = graph()
    record, tables, stats = run_auto(g, tmp_path)
    assert record["chosen"] == expected, (name, record["scores"])
    assert stats["source"] == expected and stats["source_requested"] == "auto"
    for source, nbr in tables.items():
        want = reference_scores(g, nbr)
        got = record["scores"][source]
        assert got["contexts"] == want["contexts"] == int((g.split == "validation").sum())
        assert got["mrr"] == pytest.approx(want["mrr"], abs=1e-12), source
        assert got["hr_at_t"] == pytest.approx(want["hr_at_t"], abs=1e-12), source
    other = next(s for s in tables if s != expected)
    margin = record["scores"][expected]["mrr"] - record["scores"][other]["mrr"]
    assert margin > 3 * np.hypot(record["scores"][expected]["mrr_se"], record["scores"][other]["mrr_se"])


def test_shuffling_the_order_takes_the_transitions_edge_away():
    """The same chains with each context's timestamps permuted: the transition counts lose most of their MRR,
    the walks (which never read the order) barely change."""
    from pipeline.sampling import random_walks as rw
    from pipeline.sampling import transitions as sn

    scores = {}
    for ordered in (True, False):
        g = chain_histories(ordered=ordered)
        q = probe.queries_from_graph(g, 0, 0)
        for source in ("transitions", "random_walk"):
            nbr = sn.neighborhoods_from_graph(g, source, rw.WalkParams(top_t=10))[0]
            scores[ordered, source] = probe.score(nbr, q)["mrr"]
    assert scores[False, "transitions"] < 0.5 * scores[True, "transitions"]
    assert abs(scores[False, "random_walk"] - scores[True, "random_walk"]) < 0.3 * scores[True, "random_walk"]


def test_score_masks_the_contexts_seen_items():
    nbr = np.array([[1, 2, 3], [0, -1, -1], [3, 0, 1], [-1, -1, -1]])
    q = evaluation.Queries(
        split="validation",
        context=np.arange(4),
        query=np.array([0, 0, 2, 3]),
        target=np.array([3, 2, 1, 0]),
        seen_indptr=np.array([0, 2, 2, 3, 3]),
        seen_indices=np.array([1, 2, 3]),  # ctx 0 saw items 1 and 2, ctx 2 saw item 3
        num_items=4,
    )
    s = probe.score(nbr, q)
    # ctx 0: [1, 2, 3] minus {1, 2} -> 3 at rank 1; ctx 1: 2 at rank 2; ctx 2: [0, 1] -> 1 at rank 2; ctx 3: miss
    assert s["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 2 + 0) / 4)
    assert s["hr_at_t"] == 0.75 and s["contexts"] == 4 and s["top_t"] == 3
    assert probe.choose({"random_walk": s, "transitions": dict(s)}) == "random_walk"  # a tie keeps the walks
    assert probe.choose({"random_walk": s, "transitions": {**s, "mrr": s["mrr"] + 1e-9}}) == "transitions"


def test_queries_from_the_artifact_are_the_evaluators_sample(tmp_path):
    g = community_histories(num_contexts=300)
    uri = str(tmp_path / "graph")
    graph_io.write_graph(g, uri)
    for k in (0, 50):
        a = probe.queries_from_uri(uri, k, seed=4)
        b = evaluation.build_queries(g, "validation", max_contexts=k or None, seed=4)
        for f in ("context", "query", "target", "seen_indptr", "seen_indices"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
        assert len(a) == (k or int((g.split == "validation").sum()))
