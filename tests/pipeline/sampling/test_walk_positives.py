"""bench/quality.py --walk-positives: each item's top-t random-walk neighbours as extra positive pairs, checked
against a plain-Python ranking of the same walks' visits (collections.Counter, sorted by visits / degree^beta)."""

import argparse
import collections

import numpy as np
import pytest

from bench.quality import walk_positive_pairs, walk_positives_arg
from pipeline.sampling import random_walks as rw
from tests.pipeline.sampling.test_random_walks import small_graph


def reference(adj, window_total, share, t, beta, params):
    """The same walks (one chunk: the graph has fewer than WALK_CHUNK items), ranked and scaled one start item at a time."""
    rows, items = rw.walk_visits(
        adj,
        np.arange(adj.num_items),
        params.num_walks,
        params.walk_length,
        params.restart_prob,
        rw.chunk_rng(params.seed, 0),
    )
    deg = np.maximum(adj.item_degree, 1)
    out = []
    for q in range(adj.num_items):
        visits = collections.Counter(items[rows == q].tolist())
        ranked = sorted(visits, key=lambda i: (-visits[i] / deg[i] ** beta, i))[:t]
        out += [(q, i, visits[i] / deg[i] ** beta) for i in ranked]
    total = sum(s for _, _, s in out)
    scale = share / (1 - share) * window_total / total
    return [(q, i, max(int(np.rint(s * scale)), 1)) for q, i, s in out]


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_walk_positives_are_each_items_top_t_visits_scaled_to_the_share(beta):
    ctx, item, n, c = small_graph()
    adj = rw.build_adjacency(ctx, item, n, c)
    params = rw.WalkParams(num_walks=50, walk_length=3, restart_prob=0.4, seed=3)
    q, i, cnt = walk_positive_pairs(adj, 10_000.0, 0.25, 4, beta, params)
    assert list(zip(q.tolist(), i.tolist(), cnt.tolist())) == reference(adj, 10_000.0, 0.25, 4, beta, params)
    assert not np.any(q == i) and (q != n - 1).all()  # no self pairs; the isolated item makes no walks
    assert np.bincount(q, minlength=n).max() == 4
    assert abs(cnt.sum() / (cnt.sum() + 10_000.0) - 0.25) < 0.01  # a quarter of all the draws


def test_the_option_parses_its_defaults_and_refuses_what_the_scaling_cannot_use():
    assert walk_positives_arg("0.1") == (0.1, rw.WalkParams().top_t, 0.0)
    assert walk_positives_arg("0.05,20,0.25") == (0.05, 20, 0.25)
    for bad in ("abc", "0.1,x", "1", "0", "-0.2", "0.1,0", "0.1,10,-1", "0.1,10,nan", "0.1,10,0.2,3"):
        with pytest.raises(argparse.ArgumentTypeError):
            walk_positives_arg(bad)
