"""PinSage model code (modules/layers, model, batches, losses, train, features) against references:
numpy formulas for the convolution and the losses, the whole graph as one GraphTensor for minibatch
subgraphs, and a synthetic community graph for training."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_gnn as tfgnn

from modules import batches, layers
from modules import features as features_lib
from modules import model as model_lib
from modules.model import PinSageHParams, build_model
from modules.train import embed_all, query_embeddings, train
from modules.trainer import embed_items
from tests import fixtures

SMALL = dict(hidden_dim=16, output_dim=8, text_embedding_dim=4)


def random_graph(n, top_t, seed=0, vocab=50):
    """Random neighbourhoods (some padding, one isolated item, one truncated row) and ML-like features."""
    rng = np.random.default_rng(seed)
    nbr = np.stack([rng.choice(np.r_[:u, u + 1 : n], top_t, replace=False) for u in range(n)]).astype(np.int64)
    nbr[rng.random((n, top_t)) < 0.25] = -1
    nbr[1] = -1  # isolated item
    w = rng.random((n, top_t)).astype(np.float32) * (nbr >= 0)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-9)
    w[2] *= 0.5  # truncated: weights sum to 0.5
    lens = rng.integers(0, 4, n)
    feats = {
        "genres_multi_hot": (rng.random((n, 65)) < 0.1).astype(np.float32),
        "title_tokens": tf.RaggedTensor.from_row_lengths(
            tf.constant(rng.integers(0, vocab, lens.sum()), tf.int64), tf.constant(lens, tf.int64)
        ),
        "year": rng.normal(size=n).astype(np.float32),
        "node_id": np.arange(n, dtype=np.int64),
    }
    return feats, nbr, w


def relu(x):
    return np.maximum(x, 0)


# ------------------------------------------------------------------------------------------ convolution


@pytest.mark.parametrize("pooling", ["importance", "mean", "max"])
def test_convolution_matches_numpy_formula(pooling):
    rng = np.random.default_rng(1)
    n, t, d_in, d_msg, d_out = 7, 3, 5, 4, 6
    _, nbr, w = random_graph(n, t, seed=2)
    h = rng.normal(size=(n, d_in)).astype(np.float32)
    graph = fixtures.full_graph({tfgnn.HIDDEN_STATE: h}, nbr, w)
    conv = layers.PinSageConv(units=d_msg, pooling=pooling)
    nxt = layers.PinSageNextState(units=d_out)
    update = tfgnn.keras.layers.GraphUpdate(
        node_sets={"item": tfgnn.keras.layers.NodeSetUpdate({"importance": conv}, next_state=nxt)}
    )
    update(graph)  # build, then set known weights
    Q, q = rng.normal(size=(d_in, d_msg)), rng.normal(size=d_msg)
    W, b = rng.normal(size=(d_in + d_msg, d_out)), rng.normal(size=d_out)
    conv._message_fn.set_weights([Q, q])
    nxt._dense.set_weights([W, b])
    got = update(graph).node_sets["item"][tfgnn.HIDDEN_STATE].numpy()

    m = relu(h @ Q + q)  # ReLU(Q h_v + q)
    expect = np.zeros((n, d_out))
    for u in range(n):
        valid = nbr[u] >= 0
        msgs, alpha = m[nbr[u][valid]], w[u][valid]
        if not valid.any():
            nu = np.zeros(d_msg)
        elif pooling == "importance":
            nu = (alpha[:, None] * msgs).sum(0) / alpha.sum()  # gamma = alpha-weighted mean
        elif pooling == "mean":
            nu = msgs.mean(0)
        else:
            nu = msgs.max(0)
        z = relu(np.r_[h[u], nu] @ W + b)  # ReLU(W concat(h_u, n_u) + w)
        expect[u] = z / max(np.linalg.norm(z), 1e-6)  # z / ||z||_2
    np.testing.assert_allclose(got, expect, atol=1e-5)
    # the importance weights matter: with other alphas the importance result changes, mean/max do not
    if pooling == "importance":
        g2 = fixtures.full_graph({tfgnn.HIDDEN_STATE: h}, nbr, np.where(nbr >= 0, 1.0, 0.0).astype(np.float32))
        assert np.abs(update(g2).node_sets["item"][tfgnn.HIDDEN_STATE].numpy() - got).max() > 1e-3


def test_conv_config_round_trip():
    conv = layers.PinSageConv(units=8, pooling="max")
    again = layers.PinSageConv.from_config(conv.get_config())
    assert again.get_config() == conv.get_config() and again.takes_sender_edge_input is False
    assert layers.PinSageConv(units=8).takes_sender_edge_input
    with pytest.raises(ValueError):
        layers.PinSageConv(units=8, pooling="sum")


def test_output_wider_than_hidden_is_not_rank_limited_by_the_head():
    """z = G2 . ReLU(G1 h + g): with G1 only hidden_dim wide, every z would lie in a hidden_dim-dimensional span
    whatever output_dim says (so would every score u . z). The heads are max(hidden_dim, output_dim) wide."""
    feats, nbr, w = random_graph(200, 3, seed=4)
    hp = PinSageHParams(hidden_dim=8, output_dim=32, text_embedding_dim=4, normalize_output=False)
    assert model_lib.head_units(hp) == 32
    assert model_lib.head_units(PinSageHParams(hidden_dim=16, output_dim=8)) == 16
    model = build_model(hp, features_lib.feature_spec_from_arrays(feats), text_vocab_size=50)
    z = model(fixtures.full_graph(feats, nbr, w)).numpy()
    head = model_lib.build_query_head(hp)
    u = head(z).numpy() + 0.1 * np.random.default_rng(0).normal(size=z.shape)  # Q2 starts at zero: u = z
    sv = np.linalg.svd(z, compute_uv=False)
    # Singular values above 1e-4 of the largest: 32 with a 32-wide head, at most 8 through an 8-wide one.
    assert (sv > 1e-4 * sv[0]).sum() > hp.hidden_dim
    assert np.linalg.matrix_rank(u @ z.T, tol=1e-4 * sv[0] ** 2) > hp.hidden_dim


# ------------------------------------------------------------------------------------------ batches


@pytest.mark.parametrize("pooling,num_layers", [("importance", 2), ("max", 3)])
def test_root_embeddings_of_minibatch_equal_full_graph(pooling, num_layers):
    feats, nbr, w = random_graph(300, 3, seed=3)
    hp = PinSageHParams(num_layers=num_layers, pooling=pooling, **SMALL)
    model = build_model(hp, features_lib.feature_spec_from_arrays(feats), text_vocab_size=50)
    builder = batches.BatchBuilder(feats, nbr, w, num_hops=num_layers, hard_neg_pools=[np.arange(5, 40)] * 300)
    graph, lab = builder.training_batch(
        tf.constant(0, tf.int64),
        tf.constant([1, 2, 7, 7, 30]),
        tf.constant([4, 2, 8, 9, 31]),
        num_negatives=4,
        num_hard=2,
        seed=5,
    )
    assert graph.node_sets["item"].total_size < 300  # a proper subgraph, not the whole graph
    ids = np.concatenate([lab[k].numpy().reshape(-1) for k in ("query_id", "positive_id", "negative_id", "hard_id")])
    got = model(graph).numpy()
    expect = model(fixtures.full_graph(feats, nbr, w)).numpy()[ids]
    np.testing.assert_allclose(got, expect, atol=1e-5)
    # ... and a subgraph with one hop fewer is NOT enough (the test can tell).
    short = batches.subgraph_for_roots(tf.constant(ids), builder.nbr, builder.w, builder.features, num_layers - 1)
    assert np.abs(model(short).numpy() - expect).max() > 1e-4


def test_batch_assembly_nodes_reindexing_edges_and_labels():
    feats, nbr, w = random_graph(200, 4, seed=4)
    pools = [np.array([], np.int64)] * 200
    pools[10] = np.array([50, 51, -1, 52])
    builder = batches.BatchBuilder(feats, nbr, w, num_hops=2, hard_neg_pools=pools)
    graph, lab = builder.training_batch(
        tf.constant(3, tf.int64),
        tf.constant([10, 11, 10]),
        tf.constant([12, 1, 13]),
        num_negatives=6,
        num_hard=3,
        seed=0,
    )
    item = graph.node_sets["item"]
    gid = item["node_id"].numpy()
    assert len(np.unique(gid)) == len(gid)  # deduplicated
    roots = np.concatenate([lab[k].numpy().reshape(-1) for k in ("query_id", "positive_id", "negative_id", "hard_id")])
    hop1 = {v for r in roots for v in nbr[r] if v >= 0}
    hop2 = {v for u in hop1 for v in nbr[u] if v >= 0}
    assert set(gid) == set(roots) | hop1 | hop2  # every needed node, nothing else
    assert list(gid[: len(set(roots))]) == list(dict.fromkeys(roots))  # roots first, in first-seen order
    # re-indexing: readout / label local indices point at the right global ids
    ro = graph.edge_sets["_readout/seed"].adjacency.source.numpy()
    np.testing.assert_array_equal(gid[ro], roots)
    for k in ("query", "positive", "negative", "hard"):
        np.testing.assert_array_equal(gid[lab[k].numpy()], lab[k + "_id"].numpy())
    # edges: every node within 1 hop has exactly its importance neighbourhood with its weights; hop-2-only none
    es = graph.edge_sets["importance"]
    src, tgt, wt = (gid[es.adjacency.source.numpy()], gid[es.adjacency.target.numpy()], es["weight"].numpy())
    inner = set(roots) | hop1
    for u in set(gid):
        got = sorted((int(v), round(float(a), 5)) for v, a in zip(src[tgt == u], wt[tgt == u]))
        expect = sorted((int(v), round(float(a), 5)) for v, a in zip(nbr[u], w[u]) if v >= 0) if u in inner else []
        assert got == expect, u
    # features are the global rows
    np.testing.assert_array_equal(item["genres_multi_hot"].numpy(), feats["genres_multi_hot"][gid])
    assert item["title_tokens"].to_list() == tf.gather(feats["title_tokens"], gid).to_list()
    # hard negatives: query 10 draws from {50, 51, 52}; query 11 has no pool -> masked
    hard, mask = lab["hard_id"].numpy(), lab["hard_mask"].numpy()
    assert set(hard[[0, 2]].ravel()) <= {50, 51, 52} and mask[[0, 2]].all() and not mask[1].any()
    neg = lab["negative_id"].numpy()
    np.testing.assert_array_equal(
        lab["neg_mask"].numpy(), (neg[None] != [[12], [1], [13]]) & (neg[None] != [[10], [11], [10]])
    )


def test_hard_negative_pools_left_aligned_from_array_or_lists():
    arr = np.array([[-1, 3, -1, 4], [5, -1, -1, -1]])
    for pools in (arr, list(arr)):
        out, counts = batches.left_aligned_pools(pools, 3)
        np.testing.assert_array_equal(out[:, :2], [[3, 4], [5, -1], [-1, -1]])
        np.testing.assert_array_equal(counts, [2, 1, 0])
        assert (out[:, 2:] == -1).all()


def test_negative_sampler_follows_distribution():
    p = batches.negative_distribution(np.array([0, 10, 100, 1000]), power=0.75)
    np.testing.assert_allclose(p, np.array([1, 11, 101, 1001]) ** 0.75 / (np.array([1, 11, 101, 1001]) ** 0.75).sum())
    feats, nbr, w = random_graph(4, 2)
    b = batches.BatchBuilder(feats, nbr, w, negative_probs=p)
    s = b.sample_negatives(40000, tf.constant([0, 1], tf.int64)).numpy()
    np.testing.assert_allclose(np.bincount(s, minlength=4) / len(s), p, atol=0.01)


def test_load_item_features_orders_by_node_id(tmp_path):
    from schema import build

    spec = build.transformed_features(
        {"features": {"title": {"kind": "text"}, "year": {"kind": "numeric"}, "genres": {"kind": "categorical"}}}
    )
    rows = [(2, [5, 6], 1990.0), (0, [], 0.5), (1, [7], -1.0)]
    with tf.io.TFRecordWriter(str(tmp_path / "part-0.gz"), options="GZIP") as wr:
        for nid, toks, year in rows:
            f = {
                "node_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[nid])),
                "title_tokens": tf.train.Feature(int64_list=tf.train.Int64List(value=toks)),
                "year": tf.train.Feature(float_list=tf.train.FloatList(value=[year])),
                "year_missing": tf.train.Feature(float_list=tf.train.FloatList(value=[0.0])),
                "log_degree": tf.train.Feature(float_list=tf.train.FloatList(value=[float(nid)])),
                "genres_multi_hot": tf.train.Feature(float_list=tf.train.FloatList(value=[float(nid)] * 65)),
            }
            wr.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
    for spec_or_schema in (spec, os.path.join(build.bundled_dir("ml-100k"), build.GRAPH_SCHEMA)):
        out = features_lib.load_item_features(str(tmp_path), spec_or_schema)
        np.testing.assert_array_equal(out["node_id"], [0, 1, 2])
        np.testing.assert_allclose(out["year"], [0.5, -1.0, 1990.0])
        assert out["title_tokens"].to_list() == [[], [7], [5, 6]] and out["genres_multi_hot"].shape == (3, 65)
    with tf.io.TFRecordWriter(str(tmp_path / "part-1.gz"), options="GZIP") as wr:  # duplicate node id 0
        wr.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
    with pytest.raises(ValueError, match="node ids"):
        features_lib.load_item_features(str(tmp_path), spec)


def test_parquet_examples_load_as_the_tfrecord_ones(tmp_path):
    """Transform writes Parquet for a Parquet input (GraphGen's item examples): the same tf.Examples as Parquet list
    columns (converted by tfx-bsl's decoder, independent of features.from_arrow) load to the same arrays; a row of
    the wrong width is an error naming the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tfx_bsl.coders import example_coder

    feats, _, _ = fixtures.synthetic_catalogue(500, 5, seed=4)
    spec = features_lib.feature_spec_from_arrays(feats)
    fixtures.write_examples(str(tmp_path / "tfr"), feats, shards=2)
    recs = [
        r.numpy()
        for r in tf.data.TFRecordDataset(sorted(str(p) for p in (tmp_path / "tfr").iterdir()), compression_type="GZIP")
    ]
    rb = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(recs)
    os.makedirs(tmp_path / "pq")
    half = rb.num_rows // 2
    pq.write_table(pa.Table.from_batches([rb.slice(0, half)]), str(tmp_path / "pq" / "a.parquet"))
    pq.write_table(pa.Table.from_batches([rb.slice(half)]), str(tmp_path / "pq" / "b.parquet"))
    a = features_lib.load_item_features(str(tmp_path / "tfr"), spec)
    b = features_lib.load_item_features(str(tmp_path / "pq"), spec)
    assert sorted(a) == sorted(b) == sorted(spec)
    for name in spec:
        if isinstance(a[name], tf.RaggedTensor):
            assert a[name].to_list() == b[name].to_list(), name
        else:
            assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
            np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_array_equal(b["node_id"], np.arange(500))
    wide = spec["genres_multi_hot"][1][0]
    bad = pa.table(
        {
            k: pa.array([[1.0] * (wide - 1)])
            if k == "genres_multi_hot"
            else pa.array([[0]])
            if spec[k][0] == "DT_INT64"
            else pa.array([[0.0]])
            for k in spec
        }
    )
    with pytest.raises(ValueError, match="genres_multi_hot"):
        features_lib.from_arrow(bad, spec)


# ------------------------------------------------------------------------------------------ losses


# ------------------------------------------------------------------------------------------ training


def community_graph(n_comm=24, size=10, top_t=8, p_in=0.85, seed=0):
    """Items in communities of `size`; neighbours mostly in-community; features carry no community signal."""
    rng = np.random.default_rng(seed)
    n = n_comm * size
    comm = np.arange(n) // size
    nbr = np.zeros((n, top_t), np.int64)
    for u in range(n):
        k_in = min(rng.binomial(top_t, p_in), size - 1)
        mates = np.flatnonzero((comm == comm[u]) & (np.arange(n) != u))
        nbr[u] = np.r_[
            rng.choice(mates, k_in, replace=False),
            rng.choice(np.flatnonzero(comm != comm[u]), top_t - k_in, replace=False),
        ]
    c = rng.random((n, top_t)) + 0.1
    w = (c / c.sum(1, keepdims=True)).astype(np.float32)
    lens = rng.integers(1, 4, n)
    feats = {
        "genres_multi_hot": (rng.random((n, 65)) < 0.05).astype(np.float32),
        "title_tokens": tf.RaggedTensor.from_row_lengths(
            tf.constant(rng.integers(0, 500, lens.sum()), tf.int64), tf.constant(lens, tf.int64)
        ),
        "year": rng.normal(size=n).astype(np.float32),
        "node_id": np.arange(n, dtype=np.int64),
    }

    def pairs(m):  # positives: another item of q's community
        q = rng.integers(0, n, m)
        return q, comm[q] * size + (q % size + rng.integers(1, size, m)) % size

    return feats, nbr, w, pairs


def hit_rate_at_10(emb, q, p):
    s = emb[q] @ emb.T
    s[np.arange(len(q)), q] = -np.inf
    top = np.argsort(-s, 1)[:, :10]
    return float(np.mean([pi in t for pi, t in zip(p, top)]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    feats, nbr, w, pairs = community_graph()
    q, p = pairs(4000)
    tq, tp = pairs(500)
    hp = PinSageHParams(
        hidden_dim=32,
        output_dim=32,
        text_embedding_dim=8,
        batch_size=64,
        num_negatives=50,
        epochs=2,
        steps_per_epoch=40,
        warmup_steps=10,
        learning_rate=3e-3,
        temperature=0.1,
    )
    tf.keras.utils.set_random_seed(0)
    untrained = build_model(hp, features_lib.feature_spec_from_arrays(feats), num_items=len(nbr), text_vocab_size=500)
    hr0 = hit_rate_at_10(embed_all(untrained, feats, nbr, w, 128), tq, tp)
    pools = [np.flatnonzero(np.arange(len(nbr)) // 10 != u // 10)[:30] for u in range(len(nbr))]
    model_dir, log_dir = tmp_path_factory.mktemp("model"), tmp_path_factory.mktemp("logs")
    model, history = train(
        feats,
        nbr,
        w,
        q,
        p,
        pools,
        hp,
        str(model_dir),
        str(log_dir),
        validation_fn=lambda m, e: {"hr@10": hit_rate_at_10(embed_all(m, feats, nbr, w, 128), tq, tp)},
    )
    return dict(
        feats=feats,
        nbr=nbr,
        w=w,
        hr0=hr0,
        model=model,
        history=history,
        model_dir=str(model_dir),
        log_dir=str(log_dir),
        tq=tq,
        tp=tp,
    )


def test_training_beats_untrained_on_community_graph(trained):
    h = trained["history"]
    hr1 = h["val_hr@10"][-1]
    assert hr1 > trained["hr0"] + 0.3 and hr1 > 0.5, (trained["hr0"], h)
    assert h["hard_negatives"] == [0, 1] and h["loss"][-1] < h["loss"][0]
    assert os.listdir(os.path.join(trained["model_dir"], "checkpoints")) and os.listdir(trained["log_dir"])


def test_saved_model_reloads_with_equal_outputs(trained, tmp_path):
    model, feats, nbr, w = trained["model"], trained["feats"], trained["nbr"], trained["w"]
    graph = batches.subgraph_for_roots(
        tf.constant([3, 17, 3, 200]), tf.constant(nbr), tf.constant(w), batches.to_tensors(feats), 2
    )
    path = str(tmp_path / "saved")
    model.save(path, save_format="tf", include_optimizer=False)
    loaded = tf.keras.models.load_model(path)
    np.testing.assert_allclose(loaded(graph).numpy(), model(graph).numpy(), atol=1e-6)
    assert np.abs(model(graph).numpy()[0] - model(graph).numpy()[1]).max() > 1e-3  # distinct items differ


# ------------------------------------------------------------------------------- query head, ablations


def _directed_ring_training(query_head: bool, tmp_path):
    """6 rings of 10 items, each item identified by a one-hot feature, its neighbourhood its ring predecessor and
    successor (equal weights); positives are the *successor*. Returns how often an item's top-1 (itself excluded)
    is its successor. A symmetric score s(a, b) = s(b, a) cannot rank every successor first (around a ring that
    needs s(q, q+1) > s(q-1, q) for every q), so it stays near the 50 % of "next or previous"."""
    n, size = 60, 10
    items = np.arange(n)
    nxt, prv = (items // size) * size + (items % size + 1) % size, (items // size) * size + (items % size - 1) % size
    nbr, w = np.stack([prv, nxt], 1).astype(np.int64), np.full((n, 2), 0.5, np.float32)
    feats = {"code_multi_hot": np.eye(n, dtype=np.float32), "node_id": items.astype(np.int64)}
    q = np.random.default_rng(2).integers(0, n, 4000)
    hp = PinSageHParams(
        hidden_dim=32,
        output_dim=16,
        batch_size=64,
        num_negatives=30,
        num_layers=1,
        epochs=2,
        steps_per_epoch=50,
        warmup_steps=5,
        learning_rate=1e-2,
        temperature=0.1,
        hard_negatives=False,
        query_head=query_head,
    )
    model, _ = train(feats, nbr, w, q, nxt[q], None, hp, str(tmp_path / f"m{int(query_head)}"))
    z = embed_all(model, feats, nbr, w, 128)
    u = query_embeddings(model, z)
    assert (u is z) == (not query_head)
    s = u @ z.T
    np.fill_diagonal(s, -np.inf)
    return float(np.mean(s.argmax(1) == nxt))


def test_query_head_learns_direction_the_symmetric_model_cannot(tmp_path):
    sym, asym = _directed_ring_training(False, tmp_path), _directed_ring_training(True, tmp_path)
    assert asym > 0.9, (sym, asym)
    assert sym < 0.75, (sym, asym)


def test_ablation_variants_train_and_ignore_what_they_ablate(tmp_path):
    feats, nbr, w, pairs = community_graph(n_comm=6)
    q, p = pairs(600)
    base = PinSageHParams(
        hidden_dim=16,
        output_dim=16,
        text_embedding_dim=4,
        batch_size=32,
        num_negatives=20,
        epochs=1,
        steps_per_epoch=3,
        warmup_steps=1,
    )
    assert set(model_lib.ABLATIONS) >= {"mean_pooling", "no_hard_negatives", "features_only_mlp", "id_embedding_only"}
    assert model_lib.ablation_hparams(base, "mean_pooling").pooling == "mean"
    assert model_lib.ablation_hparams(base, "mean_pooling").output_dim == 16  # the rest is inherited
    with pytest.raises(ValueError, match="unknown ablation"):
        model_lib.ablation_hparams(base, "nope")
    with pytest.raises(ValueError, match="use_features=False needs id_embedding"):
        PinSageHParams(use_features=False)
    with pytest.raises(ValueError, match="logq_mixture=True .* needs in_batch_negatives"):
        PinSageHParams(logq_mixture=True, in_batch_negatives=False)
    with pytest.raises(ValueError, match="margin_average must be one of"):
        PinSageHParams(margin_average="hardest")
    shuffled_nbr = np.random.default_rng(0).permutation(nbr)
    other_feats = dict(feats, year=feats["year"] + 5.0, genres_multi_hot=1.0 - feats["genres_multi_hot"])
    for name in ("features_only_mlp", "id_embedding_only", "mean_pooling"):
        hp = model_lib.ablation_hparams(base, name)
        model, _ = train(feats, nbr, w, q, p, None, hp, str(tmp_path / name))
        z = embed_all(model, feats, nbr, w, 64)
        assert z.shape == (len(nbr), 16) and np.isfinite(z).all()
        # the trainer's layer-wise embedding of the catalogue (modules/trainer.embed_items) equals direct application
        np.testing.assert_allclose(embed_items(model, {"features": feats, "nbr": nbr, "w": w}), z, atol=1e-5)
        no_graph = np.abs(embed_all(model, feats, shuffled_nbr, w, 64) - z).max() < 1e-6
        no_feats = np.abs(embed_all(model, other_feats, nbr, w, 64) - z).max() < 1e-6
        assert (no_graph, no_feats) == {
            "features_only_mlp": (True, False),
            "id_embedding_only": (True, True),
            "mean_pooling": (False, False),
        }[name], name


def test_parquet_nulls_and_empty_files_are_clear(tmp_path):
    """A null list (a feature the example lacks) is no values: empty for a ragged feature, an error naming the
    column for a fixed-shape one; files without rows are an error, not an empty feature table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    spec = {"node_id": ("DT_INT64", []), "tokens": ("DT_INT64", [-1]), "year": ("DT_FLOAT", [])}
    t = pa.table(
        {
            "node_id": pa.array([[0], [1]], pa.large_list(pa.int64())),
            "tokens": pa.array([None, [3, 4]], pa.large_list(pa.int64())),
            "year": pa.array([[1.0], [2.0]], pa.large_list(pa.float32())),
        }
    )
    out = features_lib.from_arrow(t, spec)
    assert out["tokens"].to_list() == [[], [3, 4]]
    np.testing.assert_array_equal(out["year"], [1.0, 2.0])
    t2 = t.set_column(2, "year", pa.array([[1.0], None], pa.large_list(pa.float32())))
    with pytest.raises(ValueError, match="'year': row 1 has 0 values"):
        features_lib.from_arrow(t2, spec)
    pq.write_table(t.slice(0, 0), str(tmp_path / "empty.parquet"))
    with pytest.raises(ValueError, match="no rows"):
        features_lib.load_item_features(str(tmp_path), spec)
