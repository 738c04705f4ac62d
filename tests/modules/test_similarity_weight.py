"""The served query's similarity weight: u_q = normalise(u'_q + lambda z_q) (layers.QueryHead), chosen after
training on validation by the one-standard-error rule (modules/trainer.choose_similarity_weight)."""

import argparse
import math
import types

import numpy as np
import pytest
import tensorflow as tf

from modules import train as train_lib
from modules import trainer
from modules.model import SIMILARITY_WEIGHTS, PinSageHParams, build_query_head
from schema import graph as graph_io

D, H = 8, 16


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _head(seed=0):
    """A query head with random weights (Q2 would start at zero) and those weights as numpy arrays."""
    head = build_query_head(PinSageHParams(output_dim=D, hidden_dim=H))
    head(np.zeros((1, D), np.float32))
    rng = np.random.default_rng(seed)
    w = [rng.normal(0, 0.5, v.shape).astype(np.float32) for v in head.weights]
    head.set_weights(w)
    return head, w


def _reference_u(z, w, lam):
    """numpy: u' = normalise(z + ReLU(z W1 + b1) W2), then normalise(u' + lam z)."""
    w1, b1, w2 = w
    u = _unit(z + np.maximum(z @ w1 + b1, 0.0) @ w2)
    return _unit(u + lam * z) if lam else u


def test_query_head_blend_matches_numpy_and_survives_save_and_load(tmp_path):
    head, w = _head()
    z = _unit(np.random.default_rng(1).normal(size=(30, D))).astype(np.float32)
    np.testing.assert_allclose(head(z).numpy(), _reference_u(z, w, 0.0), atol=1e-5)
    train_lib.set_similarity_weight(head, 0.2)
    blended = head(z).numpy()
    np.testing.assert_allclose(blended, _reference_u(z, w, 0.2), atol=1e-5)
    assert np.abs(blended - _reference_u(z, w, 0.0)).max() > 1e-2  # lambda moves the query
    head.save(str(tmp_path / "head"), include_optimizer=False)
    loaded = tf.keras.models.load_model(str(tmp_path / "head"), compile=False)
    np.testing.assert_allclose(loaded(z).numpy(), blended, atol=1e-6)


def test_one_standard_error_choice_by_hand():
    # best 0.30 at 0, SE sqrt(0.3 * 0.7 / 100) = 0.0458: 0.29 is inside the band, 0.25 outside
    lam, se = trainer.one_standard_error_choice((0.0, 0.1, 0.2), (0.30, 0.29, 0.25), 100)
    assert lam == 0.1 and se == pytest.approx(math.sqrt(0.0021))
    # best 0.30 at 0.1, SE 0.0229: 0.28 (0.2) in, 0.1 (0.5) out; the band does not reach below the best's value
    lam, se = trainer.one_standard_error_choice((0.0, 0.1, 0.2, 0.5), (0.2, 0.3, 0.28, 0.1), 400)
    assert lam == 0.2 and se == pytest.approx(math.sqrt(0.21 / 400))


def _graph(z, u, rng, contexts=200):
    """Contexts of 3 train items, one validation and one test item. The validation target is the query's top
    unseen item under z . z (a quarter of the contexts: what the similarity weight recovers), under u . z (half:
    what it costs) or a random item."""
    n = len(z)
    ctx, node, split = [], [], []
    for c in range(contexts):
        items = rng.choice(n, 5, replace=False)
        if c % 4 != 3:
            sim = z @ (z if c % 4 == 0 else u)[items[2]]
            sim[items[:3]] = -np.inf
            items[3] = int(np.argmax(sim))
            items[4] = rng.choice(np.setdiff1d(np.arange(n), items[:4]))
        ctx += [c] * 5
        node += items.tolist()
        split += ["train"] * 3 + ["validation", "test"]
    ctx, node = np.asarray(ctx, np.int64), np.asarray(node, np.int64)
    split = np.asarray(split, object)
    return graph_io.Graph(
        item_ids=np.asarray([str(i) for i in range(n)], object),
        train_degree=np.bincount(node[split == "train"], minlength=n).astype(np.int64),
        context_ids=np.asarray([f"c{c}" for c in range(contexts)], object),
        context_index=ctx,
        node_id=node,
        timestamp=np.tile(np.arange(5), contexts).astype(np.int64),
        weight=np.ones(len(ctx)),
        split=split,
        position=np.tile(np.arange(5), contexts).astype(np.int64),
    )


def _reference_hr10(z, u, graph):
    """Brute force: per validation context, rank the target among the items not in its train rows."""
    hits = []
    for c in range(graph.num_contexts):
        rows = graph.context_index == c
        train = graph.node_id[rows & (graph.split == "train")]
        target = graph.node_id[rows & (graph.split == "validation")][0]
        s = z @ u[train[-1]]
        s[train] = -np.inf
        hits.append(int(np.sum(s > s[target])) < 10)
    return float(np.mean(hits))


def test_choose_similarity_weight_matches_a_brute_force_reference():
    head, w = _head(seed=3)
    rng = np.random.default_rng(1)
    z = _unit(rng.normal(size=(60, D))).astype(np.float32)
    graph = _graph(z, _reference_u(z, w, 0.0), rng)
    model = train_lib.attach_query_head(types.SimpleNamespace(), head)
    hp = PinSageHParams(output_dim=D, hidden_dim=H, similarity_weight=None)
    got = trainer.choose_similarity_weight(model, z, {"graph": graph}, hp)

    hr = [_reference_hr10(z, _reference_u(z, w, lam), graph) for lam in SIMILARITY_WEIGHTS]
    best = max(hr)
    band = best - math.sqrt(best * (1 - best) / graph.num_contexts)
    expected = max(lam for lam, h in zip(SIMILARITY_WEIGHTS, hr) if h >= band)
    np.testing.assert_allclose(got["validation_hr@10"], hr)
    assert got["chosen"] == expected and got["rule"] == "one standard error"
    # here the best lambda (0.5) is not the chosen one (1.0, inside the band): the rule, not an argmax
    assert expected != SIMILARITY_WEIGHTS[int(np.argmax(hr))] and got["standard_error"] > 0
    # the head now serves the chosen lambda
    np.testing.assert_allclose(train_lib.query_embeddings(model, z), _reference_u(z, w, expected), atol=1e-5)


def test_a_fixed_similarity_weight_is_applied_and_no_validation_split_means_zero():
    head, w = _head()
    rng = np.random.default_rng(5)
    z = _unit(rng.normal(size=(60, D))).astype(np.float32)
    graph = _graph(z, z, rng, contexts=20)
    model = train_lib.attach_query_head(types.SimpleNamespace(), head)
    fixed = trainer.choose_similarity_weight(model, z, {"graph": graph}, PinSageHParams(similarity_weight=0.3))
    assert fixed == {"chosen": 0.3, "rule": "fixed"}
    np.testing.assert_allclose(train_lib.query_embeddings(model, z), _reference_u(z, w, 0.3), atol=1e-5)
    no_val = graph_io.Graph(**{**graph.__dict__, "split": np.where(graph.split == "validation", "test", graph.split)})
    none = trainer.choose_similarity_weight(model, z, {"graph": no_val}, PinSageHParams(similarity_weight=None))
    assert none["chosen"] == 0.0
    np.testing.assert_allclose(train_lib.query_embeddings(model, z), _reference_u(z, w, 0.0), atol=1e-5)
    assert trainer.choose_similarity_weight(types.SimpleNamespace(), z, {"graph": graph}, PinSageHParams()) is None
    assert PinSageHParams().similarity_weight == 0.0  # the default serves the trained head as it is


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_hparams_refuse_a_negative_or_non_finite_similarity_weight(bad):
    with pytest.raises(ValueError, match="similarity_weight"):
        PinSageHParams(similarity_weight=bad)


def test_bench_served_scorer_adds_the_popularity_weight_as_one_more_coordinate():
    """bench/similarity_weight.py's (lambda, beta) scorer against the formula written out in numpy."""
    from bench import similarity_weight as bench_sw

    rng = np.random.default_rng(3)
    z = rng.normal(size=(40, 6)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    u0 = rng.normal(size=(40, 6)).astype(np.float32)
    u0 /= np.linalg.norm(u0, axis=1, keepdims=True)
    degree = rng.integers(0, 500, 40)
    nodes = np.array([0, 7, 39])
    for lam, beta in [(0.0, 0.0), (0.2, 0.0), (0.0, 0.03), (0.1, -0.02)]:
        q = u0 + lam * z
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        expect = q[nodes] @ z.T + beta * np.log1p(degree)[None, :]
        got = bench_sw.served_scorer(u0, z, lam, beta, degree).scores(nodes)
        np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)
    assert bench_sw._popularity_weights("-0.01,0,0.02") == [-0.01, 0.0, 0.02]
    for bad in ("0.01,nan", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench_sw._popularity_weights(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        bench_sw._weights("-0.1")
