"""Neighbourhoods from sequential co-engagement (pipeline/sampling/transitions.py) and NeighborhoodSampler's
`source` property."""

import dataclasses
import json
import os

import numpy as np
import pytest

from modules import evaluation
from pipeline.components import artifacts
from pipeline.components.neighborhood_sampler import Executor, NeighborhoodSampler
from pipeline.configs import SAMPLING
from pipeline.sampling import random_walks as rw
from pipeline.sampling import transitions as sn
from schema import graph as graph_io
from schema import neighborhoods as neighborhood_io
from tests.pipeline.components.test_sampling_components import N, write_graph


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("seqnbr") / "graph")
    write_graph(uri)
    return uri, graph_io.load_graph(uri)


def test_transitions_are_top_t_of_the_transition_matrix(graph):
    _, g = graph
    t = 4
    nbr, w, cnt = sn.neighborhoods_from_graph(g, "transitions", rw.WalkParams(top_t=t))
    tm = evaluation.transition_matrix(g, 3).toarray()
    for u in range(N):
        row = tm[u]
        k = min(t, int((row > 0).sum()))
        expect = np.lexsort((np.arange(N), -row))[:k]  # count descending, ties to the lower id
        np.testing.assert_array_equal(nbr[u, :k], expect)
        assert (nbr[u, k:] == -1).all()
        np.testing.assert_array_equal(cnt[u, :k], row[expect])
        if k:
            assert w[u].sum() == pytest.approx(1.0, abs=1e-6)
            assert u not in nbr[u]


def test_mixed_covers_both_sources(graph):
    _, g = graph
    p = rw.WalkParams(num_walks=500, top_t=6, seed=1)
    nbr, w, _ = sn.neighborhoods_from_graph(g, "mixed", p)
    tn, _, _ = sn.neighborhoods_from_graph(g, "transitions", p)
    rn, _, _ = sn.neighborhoods_from_graph(g, "random_walk", p)
    filled = nbr >= 0
    assert np.allclose(w.sum(1)[filled.any(1)], 1.0, atol=1e-5)
    for u in range(N):
        cand = set(tn[u][tn[u] >= 0]) | set(rn[u][rn[u] >= 0])
        assert set(nbr[u][nbr[u] >= 0]) <= cand
        assert (nbr[u] >= 0).sum() == min(6, len(cand))


@pytest.mark.parametrize("source", ["transitions", "mixed"])
def test_executor_writes_the_source(graph, tmp_path, source):
    uri, g = graph
    gin, out = artifacts.PinSageGraph(), artifacts.Neighborhoods()
    gin.uri, out.uri = uri, str(tmp_path / "out")
    props = dict(
        num_walks=500,
        walk_length=4,
        restart_prob=0.5,
        top_t=5,
        seed=1,
        strategy="in_memory",
        shard_size=16,
        source=source,
        window=3,
    )
    Executor().Do({"graph": [gin]}, {"neighborhoods": [out]}, props)
    nbr, w = neighborhood_io.load_neighborhoods(out.uri)
    enbr, ew, _ = sn.neighborhoods_from_graph(g, source, rw.WalkParams(num_walks=500, top_t=5, seed=1), shard_size=16)
    np.testing.assert_array_equal(nbr, enbr[:, : nbr.shape[1]])
    np.testing.assert_allclose(w, ew[:, : nbr.shape[1]], atol=1e-6)
    with open(os.path.join(out.uri, neighborhood_io.STATS_FILE)) as f:
        stats = json.load(f)
    assert stats["source"] == source and stats["items"] == N


def test_constructor_rejects_unknown_source():
    from tfx import types

    with pytest.raises(ValueError, match="source"):
        NeighborhoodSampler(
            graph=types.Channel(type=artifacts.PinSageGraph),
            config=dataclasses.replace(SAMPLING, neighborhood_source="pagerank"),
        )
