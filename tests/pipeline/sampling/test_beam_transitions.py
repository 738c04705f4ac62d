"""The transition-count neighbourhoods as a Beam transform (pipeline/sampling/beam_transitions.py) equal the
in-memory scipy pass exactly (ids, weights, stats) through NeighborhoodSampler's executor: on a DirectRunner in
this process and on two worker processes, with many partitions, ties and isolated items."""

import json
import os

import numpy as np
import pytest

from pipeline.components import artifacts
from pipeline.components.neighborhood_sampler import Executor
from pipeline.sampling import beam_transitions
from pipeline.sampling import random_walks as rw
from pipeline.sampling import transitions as sn
from schema import graph as graph_io
from schema import neighborhoods as neighborhood_io
from tests.fixtures import chain_histories

T = 7
PROPS = dict(
    num_walks=10,
    walk_length=2,
    restart_prob=0.5,
    top_t=T,
    seed=0,
    strategy="in_memory",
    shard_size=23,  # 400 items -> 18 partitions, of contexts and of items
    source="transitions",
    window=3,
)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    # short noisy chains: many count ties (the tie-break is tested) and items with no train edges
    g = chain_histories(num_items=400, community_size=10, num_contexts=150, length=6, noise=0.3)
    assert (g.train_degree == 0).sum() > 0
    uri = str(tmp_path_factory.mktemp("beam_transitions") / "graph")
    graph_io.write_graph(g, uri)
    return uri, g


def run_executor(graph_uri, out_uri, beam_args, beam_min_interactions):
    gin, out = artifacts.PinSageGraph(), artifacts.Neighborhoods()
    gin.uri, out.uri = graph_uri, out_uri
    ctx = Executor.Context(beam_pipeline_args=beam_args, tmp_dir=out_uri + "_tmp", unique_id="t")
    Executor(ctx).Do(
        {"graph": [gin]}, {"neighborhoods": [out]}, {**PROPS, "beam_min_interactions": beam_min_interactions}
    )
    with open(os.path.join(out_uri, neighborhood_io.STATS_FILE)) as f:
        return neighborhood_io.load_neighborhoods(out_uri, top_t=T), json.load(f)


@pytest.mark.parametrize(
    "beam_args",
    [
        ["--runner=DirectRunner", "--direct_num_workers=1"],
        ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
    ],
    ids=["in_process", "two_workers"],
)
def test_beam_transitions_equal_the_in_memory_pass(graph, tmp_path, beam_args):
    uri, g = graph
    (nbr, w), stats = run_executor(uri, str(tmp_path / "beam"), beam_args, beam_min_interactions=0)
    (mem_nbr, mem_w), mem_stats = run_executor(uri, str(tmp_path / "mem"), beam_args[:1], beam_min_interactions=10**9)
    assert stats["strategy"] == "beam" and mem_stats["strategy"] == "in_process"
    want_nbr, want_w, want_cnt = sn.neighborhoods_from_graph(g, "transitions", rw.WalkParams(top_t=T))
    np.testing.assert_array_equal(mem_nbr, want_nbr)
    np.testing.assert_array_equal(nbr, want_nbr)
    np.testing.assert_array_equal(w, want_w)  # the same float32 L1 weights of the same integer counts
    assert ((want_cnt[:, 1:] == want_cnt[:, :-1]) & (want_nbr[:, 1:] >= 0)).any()  # ties decided by item id
    drop = {"seconds", "strategy"}
    assert {k: v for k, v in stats.items() if k not in drop} == {k: v for k, v in mem_stats.items() if k not in drop}
    assert stats["isolated_items"] == int((g.train_degree == 0).sum()) > 0


def test_sum_pair_counts_is_order_free():
    """Partial sums merged in any grouping give the one exact per-pair total."""
    rng = np.random.default_rng(0)
    q, i = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    c = rng.integers(1, 4, 200)
    fn = beam_transitions.SumPairCounts(5)
    parts = [fn.add_input(fn.create_accumulator(), (q[a:b], i[a:b], c[a:b])) for a, b in ((0, 70), (70, 71), (71, 200))]
    keys, counts = fn.extract_output(fn.merge_accumulators([parts[2], fn.merge_accumulators(parts[:2])]))
    want = np.zeros(25, np.int64)
    np.add.at(want, q * 5 + i, c)
    np.testing.assert_array_equal(keys, np.flatnonzero(want))
    np.testing.assert_array_equal(counts, want[want > 0])
