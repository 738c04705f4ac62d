"""NeighborhoodSampler and PairGen as TFX components under LocalDagRunner, on a multi-process DirectRunner.

One pipeline (graph Importer -> in-memory sampler, join sampler, PairGen) runs once per module; the checks
compare its artifacts with the in-process library calls and with the same executors run in-process (one
Beam worker in this process): on 2 worker processes the in-memory strategy must be bit-identical to the library,
the join strategy and PairGen bit-identical to their in-process runs, and the join strategy statistically equal
to the in-memory one.
"""

import dataclasses
import glob
import json
import os

import numpy as np
import pytest
from tfx import v1 as tfx

from pipeline.components import artifacts
from pipeline.components.neighborhood_sampler import NeighborhoodSampler
from pipeline.components.pair_gen import PairGen
from pipeline.configs import PAIRS, SAMPLING
from pipeline.sampling import pairs as pair_sampling
from pipeline.sampling import ppr
from pipeline.sampling import random_walks as rw
from schema import neighborhoods as neighborhood_io
from schema import pairs
from tests.pipeline.sampling.test_random_walks import small_graph, tv

N, C = 60, 15
WALK = dict(num_walks=3000, walk_length=3, restart_prob=0.4, top_t=N, seed=7)
# the walks under test (not the default source), on 16-item shards
MEM = dataclasses.replace(SAMPLING, **WALK, neighborhood_source="random_walk", shard_size=16)
JOIN = dataclasses.replace(MEM, strategy="join")


def write_graph(uri):
    """A train/validation/test graph: positions per context, the last two interactions held out."""
    ctx, item, _, _ = small_graph(num_items=N, num_contexts=C, num_edges=240, seed=2)
    order = np.lexsort((np.arange(len(ctx)), ctx))
    ctx, item = ctx[order], item[order]
    first = np.searchsorted(ctx, ctx)
    pos = np.arange(len(ctx)) - first
    length = np.bincount(ctx, minlength=C)[ctx]
    split = np.where(pos == length - 1, "test", np.where(pos == length - 2, "validation", "train"))
    from schema import graph as graph_io

    graph_io.write_tables(
        uri,
        [f"i{k}" for k in range(N)],
        [f"c{k}" for k in range(C)],
        {"context_index": ctx, "node_id": item, "timestamp": pos * 10, "position": pos, "split": split},
    )


def output_uri(root, component_id, key):
    uris = glob.glob(os.path.join(root, component_id, key, "*"))
    assert len(uris) == 1, uris
    return uris[0]


_OUTPUT_TYPES = {"neighborhoods": artifacts.Neighborhoods, "pairs": artifacts.TrainingPairs}


def run_in_process(executor_cls, graph_uri, out_uri, key, exec_properties):
    """One executor on a DirectRunner in this process: the reference the worker-process runs must equal."""
    graph, out = artifacts.PinSageGraph(), _OUTPUT_TYPES[key]()
    graph.uri, out.uri = graph_uri, out_uri
    ctx = executor_cls.Context(
        beam_pipeline_args=["--runner=DirectRunner", "--direct_num_workers=1"],
        tmp_dir=out_uri + "_tmp",
        unique_id="in_process",
    )
    executor_cls(ctx).Do({"graph": [graph]}, {key: [out]}, exec_properties)
    return out_uri


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sampling")
    graph_uri, root = str(tmp / "graph"), str(tmp / "root")
    write_graph(graph_uri)
    graph = tfx.dsl.Importer(source_uri=graph_uri, artifact_type=artifacts.PinSageGraph).with_id("graph")
    mem = NeighborhoodSampler(graph=graph.outputs["result"], config=MEM)
    join = NeighborhoodSampler(graph=graph.outputs["result"], config=JOIN).with_id("JoinSampler")
    pair_gen = PairGen(
        graph=graph.outputs["result"],
        config=dataclasses.replace(PAIRS, ppr_num_walks=2000, negative_lo=3.0, negative_hi=12.0, shard_size=16),
        sampling=dataclasses.replace(SAMPLING, pair_window=2),
    )
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="sampling_test",
        pipeline_root=root,
        components=[graph, mem, join, pair_gen],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp / "mlmd.sqlite")
        ),
        beam_pipeline_args=["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    from pipeline.components import neighborhood_sampler as sampler_lib
    from pipeline.components import pair_gen as pair_gen_lib

    return {
        "graph": graph_uri,
        "mem": output_uri(root, "NeighborhoodSampler", "neighborhoods"),
        "join": output_uri(root, "JoinSampler", "neighborhoods"),
        "pairs": output_uri(root, "PairGen", "pairs"),
        "join_in_process": run_in_process(
            sampler_lib.Executor, graph_uri, str(tmp / "join1"), "neighborhoods", join.exec_properties
        ),
        "pairs_in_process": run_in_process(
            pair_gen_lib.Executor, graph_uri, str(tmp / "pairs1"), "pairs", pair_gen.exec_properties
        ),
    }


def test_in_memory_strategy_equals_in_process(run):
    nbr, w = neighborhood_io.load_neighborhoods(run["mem"])
    adj = rw.load_adjacency(run["graph"])
    want_nbr, want_w, _ = rw.sample_neighborhoods(adj, rw.WalkParams(**WALK), shard_size=16)
    np.testing.assert_array_equal(nbr, want_nbr[:, : nbr.shape[1]])
    np.testing.assert_array_equal(w, want_w[:, : nbr.shape[1]])
    assert len(glob.glob(os.path.join(run["mem"], "neighborhoods-*.parquet"))) >= 1
    stats = neighborhood_io.read_stats(run["mem"])
    isolated = int((adj.item_degree == 0).sum())
    assert isolated >= 1 and stats["isolated_items"] == isolated and stats["items"] == N
    assert stats["duplicate_edges"] == adj.duplicate_edges > 0
    assert {"mean_neighborhood_size", "count1_fraction", "seconds"} <= set(stats)
    assert (nbr[adj.item_degree == 0] == -1).all()


def test_join_strategy_agrees_statistically(run):
    mem_nbr, mem_w = neighborhood_io.load_neighborhoods(run["mem"], top_t=N)
    join_nbr, join_w = neighborhood_io.load_neighborhoods(run["join"], top_t=N)

    def dense(nbr, w):
        return np.stack([np.bincount(nbr[u][nbr[u] >= 0], w[u][nbr[u] >= 0], N) for u in range(N)])

    live = (mem_nbr >= 0).any(1)
    np.testing.assert_array_equal(live, (join_nbr >= 0).any(1))
    # Two Monte-Carlo estimates differ by sampling noise (TV ~ sqrt(k / (pi n)) ~ 0.05 here): the join run
    # must be as close to the in-memory run as a second in-memory run with another seed is.
    other_nbr, other_w, _ = rw.sample_neighborhoods(
        rw.load_adjacency(run["graph"]), rw.WalkParams(**{**WALK, "seed": 8}), shard_size=16
    )
    mem = dense(mem_nbr, mem_w)[live]
    noise = tv(mem, dense(other_nbr, other_w)[live]).mean()
    assert tv(mem, dense(join_nbr, join_w)[live]).mean() < 1.2 * noise + 0.005
    assert neighborhood_io.read_stats(run["join"])["isolated_items"] == (~live).sum()


def test_join_strategy_and_pair_gen_on_worker_processes_equal_in_process(run):
    """Their random streams follow (half-step, partition) / shard, not worker or bundle: 2 worker processes
    must reproduce the in-process run exactly."""
    got_nbr, got_w = neighborhood_io.load_neighborhoods(run["join"], top_t=N)
    want_nbr, want_w = neighborhood_io.load_neighborhoods(run["join_in_process"], top_t=N)
    np.testing.assert_array_equal(got_nbr, want_nbr)
    np.testing.assert_array_equal(got_w, want_w)
    assert (got_nbr >= 0).sum() > N  # not trivially empty
    assert _counters(neighborhood_io.read_stats(run["join"])) == _counters(
        neighborhood_io.read_stats(run["join_in_process"])
    )
    for got, want in zip(pairs.load_pairs(run["pairs"]), pairs.load_pairs(run["pairs_in_process"])):
        np.testing.assert_array_equal(got, want)
    neg = pairs.load_hard_negatives(run["pairs"], num_items=N)
    np.testing.assert_array_equal(neg, pairs.load_hard_negatives(run["pairs_in_process"], num_items=N))
    assert (neg >= 0).sum() > N
    stats = [json.load(open(os.path.join(d, pairs.STATS_FILE))) for d in (run["pairs"], run["pairs_in_process"])]
    assert _counters(stats[0]) == _counters(stats[1])


def _counters(stats: dict) -> dict:
    """A stats file without its wall time (the only field allowed to differ between runs)."""
    return {k: v for k, v in stats.items() if k != "seconds"}


def test_pair_gen_outputs(run):
    q, i, c = pairs.load_pairs(run["pairs"])
    want = pair_sampling.pairs_from_graph(run["graph"], window=2)
    for got, exp in zip((q, i, c), want[:3]):
        np.testing.assert_array_equal(got, exp)
    neg = pairs.load_hard_negatives(run["pairs"], num_items=N)
    assert neg.shape == (N, 9)
    positives = set(zip(q.tolist(), i.tolist()))
    for u in np.unique(q):
        got = neg[u][neg[u] >= 0]
        assert len(got) > 0 and u not in got
        assert not any((u, v) in positives or (v, u) in positives for v in got.tolist())
    stats = json.load(open(os.path.join(run["pairs"], pairs.STATS_FILE)))
    assert stats["distinct_pairs"] == len(q) and stats["queries"] == len(np.unique(q))
    assert stats["negative_window"] == [3, 12]


def test_constructor_rejects_unknown_strategy():
    channel = tfx.dsl.Importer(source_uri="/nonexistent", artifact_type=artifacts.PinSageGraph).outputs["result"]
    with pytest.raises(ValueError, match="strategy"):
        NeighborhoodSampler(graph=channel, config=dataclasses.replace(SAMPLING, strategy="loops"))
    assert ppr.resolve_window(N, 3.0, 12.0) == (3, 12)
