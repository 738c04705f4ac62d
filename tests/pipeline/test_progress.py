"""The progress meter (modules/progress.py) in the in-memory walks, PPR and the Beam shards: lines as the stages
run, and results identical with and without a meter."""

import dataclasses
import re

import numpy as np
import pytest

from modules import progress
from pipeline.sampling import ppr
from pipeline.sampling import random_walks as rw


@pytest.fixture
def fast(monkeypatch):
    """No delay, a line at every update: what a long stage shows, in a test's time."""
    monkeypatch.setattr(progress, "PROGRESS", dataclasses.replace(progress.PROGRESS, delay_s=0.0, interval_s=0.0))


def _graph(seed=0, n=400, c=150, e=3000):
    rng = np.random.default_rng(seed)
    return rw.build_adjacency(rng.integers(0, c, e), rng.integers(0, n, e), n, c)


def test_sample_neighborhoods_reports_progress_and_results_are_unchanged(fast, monkeypatch, capsys):
    adj, params = _graph(), rw.WalkParams(num_walks=20, walk_length=3, restart_prob=0.5, top_t=5, seed=3)
    with_meter = rw.sample_neighborhoods(adj, params, shard_size=100)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("[pinsage] random walks: ")]
    # one line per shard of 100 start items (interval 0), the last one the summary
    assert [re.search(r": (\d+)/400 items", ln).group(1) for ln in lines] == ["100", "200", "300", "400"]
    assert lines[-1].endswith("s)") and "done in" in lines[-1]
    monkeypatch.setattr(progress, "PROGRESS", dataclasses.replace(progress.PROGRESS, enabled=False))
    without = rw.sample_neighborhoods(adj, params, shard_size=100)
    assert capsys.readouterr().err == ""
    for a, b in zip(with_meter, without):
        np.testing.assert_array_equal(a, b)


def test_ppr_steps_report_and_results_are_unchanged():
    adj = _graph(1)
    queries = np.arange(0, 400, 7)
    args = (adj, queries, np.array([0, 7]), np.array([1, 2]), (5, 40), 30, 6, 0.3, 10)
    steps = []
    a, sa = ppr.ppr_negatives(*args, np.random.default_rng(5), on_step=steps.append)
    b, sb = ppr.ppr_negatives(*args, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert sa == sb and steps == [1, 2, 3, 4, 5, 6]


def test_beam_walk_and_ppr_shards_report_one_stage_meter(fast, tmp_path, capsys):
    """The NeighborhoodSampler's and PairGen's in-memory shards (beam_walks.WalkShard / NegativeShard on the
    DirectRunner, one process): one meter per stage across all shards, ending at its total."""
    import apache_beam as beam

    from pipeline.sampling import beam_walks
    from schema import graph as graph_io

    rng = np.random.default_rng(0)
    n, c, per = 300, 60, 12
    ctx = np.repeat(np.arange(c), per)
    node = rng.integers(0, n, c * per)
    pos = np.tile(np.arange(per), c)
    inter = {"context_index": ctx, "node_id": node, "timestamp": pos, "split": ["train"] * len(ctx), "position": pos}
    graph_io.write_tables(str(tmp_path), list(range(n)), [f"c{i}" for i in range(c)], inter)
    params = rw.WalkParams(num_walks=10, walk_length=3, restart_prob=0.5, top_t=5, seed=0)
    props = dict(
        window=3, symmetric=False, ppr_num_walks=20, ppr_walk_length=4, ppr_restart_prob=0.3, max_negatives=5, seed=0
    )
    with beam.Pipeline() as p:
        _ = p | "W" >> beam.Create(rw.chunks(n, 100)) | beam.ParDo(beam_walks.WalkShard(str(tmp_path), params))
        _ = (
            p
            | "N" >> beam.Create(rw.chunks(n, 100))
            | beam.ParDo(beam_walks.NegativeShard(str(tmp_path), props, (2, 20)))
        )
    err = capsys.readouterr().err.splitlines()
    walks = [ln for ln in err if ln.startswith("[pinsage] random walks: ")]
    assert walks and walks[-1].startswith(f"[pinsage] random walks: {n}/{n} items") and "done in" in walks[-1]
    negs = [ln for ln in err if ln.startswith("[pinsage] PPR hard negatives: ")]
    total = int(re.search(r"/(\d+) queries", negs[-1]).group(1))
    assert 0 < total <= n and negs[-1].startswith(f"[pinsage] PPR hard negatives: {total}/{total} queries")
    done = [int(re.search(r": (\d+)/", ln).group(1)) for ln in negs]
    assert done == sorted(done) and len(done) > 3  # it moves within the shards (per walk step), never back
