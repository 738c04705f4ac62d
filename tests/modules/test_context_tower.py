"""modules/context_tower.py: masking, permutation invariance, causality and inductiveness checked on the model's
outputs against the property each form promises; learning checked on toy tasks against simple references (the
mean of the history's embeddings, popularity) scored here in numpy."""

import dataclasses
import io

import numpy as np
import pytest
import tensorflow as tf

from modules import context_tower as ct

N, D, L = 40, 16, 8


def _z(seed=0, n=N, d=D):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _tower(form, **kw):
    cfg = ct.ContextTowerConfig(form=form, max_len=L, dropout=0.1, **kw)
    return ct.build_context_tower(cfg, _z())


def _u(model, ids, weights=None, dense=False):
    inputs = {"history": tf.constant(ids, tf.int64)}
    if weights is not None:
        inputs["weights"] = tf.constant(weights, tf.float32)
    out = model.call_dense(inputs, training=False) if dense else model(inputs, training=False)
    return out.numpy()


def _hr10(scores, histories, targets):
    """HR@10 with the history's items masked, ties to the lower id (the independent reference)."""
    hits = 0
    for s, h, t in zip(scores, histories, targets):
        s = np.asarray(s, np.float64).copy()
        s[[i for i in h if i != t]] = -np.inf
        rank = np.count_nonzero(s > s[t]) + np.count_nonzero(s[:t] == s[t])
        hits += rank < 10
    return hits / len(targets)


@pytest.mark.parametrize("form", ct.FORMS)
def test_padding_and_junk_in_padded_slots_do_not_change_u(form):
    model = _tower(form)
    h = [3, 17, 5]
    short = _u(model, [[-1, -1] + h])
    full = _u(model, [[-1] * (L - 3) + h])
    junk = _u(model, [[9, 30, 2, 11, 0] + h], weights=[[0.0] * 5 + [1.0] * 3])
    unknown = _u(model, [[N, N + 7, -5, -1, -1] + h])  # ids outside the table are masked like padding
    np.testing.assert_allclose(short, full, atol=1e-5)
    np.testing.assert_allclose(junk, full, atol=1e-5)
    np.testing.assert_allclose(unknown, full, atol=1e-5)
    other = _u(model, [[-1] * (L - 3) + [3, 17, 6]])
    assert np.abs(other - full).max() > 1e-3  # the test can see a change of a real item
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(_u(model, [[-1] * L]), np.zeros((1, D)))  # nothing usable: u = 0


@pytest.mark.parametrize("form", ct.FORMS)
def test_dense_outputs_end_with_the_query_vector(form):
    model = _tower(form)
    ids = np.array([[-1, -1, 4, 9, 1, 30, 22, 7], [5, 6, 7, 8, 9, 10, 11, 12]])
    dense = _u(model, ids, dense=True)
    np.testing.assert_allclose(dense[:, -1], _u(model, ids), atol=1e-5)
    np.testing.assert_array_equal(dense[0, :2], 0.0)  # left padding: no item yet


def test_set_form_is_permutation_invariant_and_weights_act_as_repetition():
    model = _tower("set")
    h = np.array([3, 17, 5, 22, 8, 31])
    perm = np.random.default_rng(1).permutation(len(h))
    a = _u(model, [[-1, -1] + list(h)])
    b = _u(model, [[-1, -1] + list(h[perm])])
    np.testing.assert_allclose(a, b, atol=1e-5)
    # weight 2 on an item = the item twice (softmax(logit + log 2) doubles its share)
    w = _u(model, [[-1, -1, -1, 3, 17, 5]], weights=[[0, 0, 0, 2.0, 1, 1]])
    twice = _u(model, [[-1, -1, 3, 3, 17, 5]])
    np.testing.assert_allclose(w, twice, atol=1e-5)
    seq = _tower("sequence")  # the sequence form does see the order
    assert np.abs(_u(seq, [[-1, -1] + list(h)]) - _u(seq, [[-1, -1] + list(h[perm])])).max() > 1e-3


def test_sequence_form_is_causal():
    model = _tower("sequence")
    ids = np.array([[4, 9, 1, 30, 22, 7, 13, 2]])
    later = ids.copy()
    later[0, 5] = 35
    base, changed = _u(model, ids, dense=True), _u(model, later, dense=True)
    np.testing.assert_allclose(changed[0, :5], base[0, :5], atol=1e-6)
    assert np.abs(changed[0, 5:] - base[0, 5:]).max(axis=-1).min() > 1e-4  # every later slot sees it
    earlier = ids.copy()
    earlier[0, 0] = 35
    assert np.abs(_u(model, earlier) - _u(model, ids)).max() > 1e-4


def test_pad_histories_and_training_examples():
    ids, w = ct.pad_histories([[1, 2], [], list(range(10))], 4, weights=[[0.5, 2.0], [], [1.0] * 10])
    np.testing.assert_array_equal(ids, [[-1, -1, 1, 2], [-1, -1, -1, -1], [6, 7, 8, 9]])
    np.testing.assert_array_equal(w, [[0, 0, 0.5, 2.0], [0, 0, 0, 0], [1, 1, 1, 1]])
    seqs = [np.arange(11), np.arange(100, 103), np.array([7])]
    x, y = ct.training_examples(seqs, 4, dense=True)
    pairs = sorted((int(a), int(b)) for xi, yi in zip(x, y) for a, b in zip(xi, yi) if b >= 0)
    want = sorted((int(s[i]), int(s[i + 1])) for s in seqs for i in range(len(s) - 1))
    assert pairs == want  # every event but a sequence's first is a target once, after its predecessor
    assert all(((xi >= 0) == (yi >= 0)).all() for xi, yi in zip(x, y))
    x, y = ct.training_examples(seqs, 4, dense=False)
    assert len(y) == 10 + 2
    np.testing.assert_array_equal(x[-1], [-1, -1, 100, 101])
    assert y[-1] == 102
    np.testing.assert_array_equal(x[9], [6, 7, 8, 9])  # truncated to the last 4
    assert y[9] == 10


def _chains(rng, m, n=N):
    """Deterministic chains: item i is always followed by i + 1 mod n."""
    return [(rng.integers(n) + np.arange(rng.integers(4, 14))) % n for _ in range(m)]


CHAIN_CONFIG = dict(max_len=L, epochs=4, batch_size=32, learning_rate=3e-3, dropout=0.1)


@pytest.fixture(scope="module")
def chain_model():
    rng = np.random.default_rng(0)
    train, val = _chains(rng, 300), _chains(rng, 200)
    cfg = ct.ContextTowerConfig(form="sequence", **CHAIN_CONFIG)
    model, history = ct.train_context_tower(train, _z(), cfg, progress=io.StringIO())
    return model, history, ([v[:-1] for v in val], np.array([v[-1] for v in val]))


def test_sequence_form_learns_chains_far_above_the_mean_embedding(chain_model):
    model, history, (vh, vt) = chain_model
    assert history["epoch"] == [1, 2, 3, 4] and history["loss"][-1] < history["loss"][0]
    u = ct.query_vectors(model, vh)
    z = model.item_vectors().numpy()
    tower = _hr10(u @ z.T, vh, vt)
    mean = _hr10(np.stack([_z()[h].mean(0) for h in vh]) @ _z().T, vh, vt)
    assert tower >= 0.9 and tower > mean + 0.5, (tower, mean)
    assert ct.hit_rate(model, vh, vt) == pytest.approx(tower)


def test_new_items_work_as_history_and_as_candidates_without_retraining(chain_model):
    model, _, _ = chain_model
    z = _z()
    # a transition the model learned: j + 1 is its first choice after ..., j - 1, j
    u = ct.query_vectors(model, [np.arange(j - 2, j + 1) % N for j in range(N)])
    j = next(j for j in range(N) if np.argmax(u[j] @ z.T) == (j + 1) % N)
    rng = np.random.default_rng(3)
    new = z[[j, (j + 1) % N]] + 1e-3 * rng.normal(size=(2, D)).astype(np.float32)  # near-copies of j and j + 1
    model.set_item_embeddings(np.concatenate([z, new]))
    try:
        assert model.item_vectors().numpy().shape == (N + 2, D)
        hist = [np.array([(j - 2) % N, (j - 1) % N, N])]  # ..., j - 1, then the new copy of j
        s = ct.query_vectors(model, hist) @ model.item_vectors().numpy().T
        top = np.argsort(-s[0])[:3]
        assert set(top[:2]) == {(j + 1) % N, N + 1}, top  # j + 1 follows, and so does its new copy as a candidate
        with_old = ct.query_vectors(model, [np.arange(j - 2, j + 1) % N])
        assert np.abs(ct.query_vectors(model, hist) - with_old).max() < 0.05
    finally:
        model.set_item_embeddings(z)


def _communities(rng, m, k=4, size=10):
    """Contexts drawing 3-7 items (random order) from one of k communities of `size` items."""
    out = []
    for _ in range(m):
        c = rng.integers(k)
        out.append(c * size + rng.permutation(size)[: rng.integers(4, 8)])
    return out


def test_set_form_finds_the_community_far_above_popularity():
    rng = np.random.default_rng(0)
    train, val = _communities(rng, 400), _communities(rng, 200)
    cfg = ct.ContextTowerConfig(form="set", dense_all_action=False, **CHAIN_CONFIG)
    # d = 32: 40 random vectors in 16 dimensions cannot be told apart by community with any query vector
    model, _ = ct.train_context_tower(train, _z(d=32), cfg, progress=io.StringIO())
    vh, vt = [v[:-1] for v in val], np.array([v[-1] for v in val])
    tower = ct.hit_rate(model, vh, vt)
    pop = np.bincount(np.concatenate(train), minlength=N).astype(float)
    popularity = _hr10(np.tile(pop, (len(vt), 1)), vh, vt)
    assert tower >= 0.8 and tower > popularity + 0.4, (tower, popularity)


def test_id_ablation_with_sampled_softmax_learns_chains_and_does_not_know_new_ids():
    rng = np.random.default_rng(1)
    train, val = _chains(rng, 300), _chains(rng, 100)
    cfg = ct.ContextTowerConfig(
        form="sequence", item_input="id", loss="sampled_softmax", num_negatives=16, **CHAIN_CONFIG
    )
    assert not cfg.uses_full_softmax(N)
    model, _ = ct.train_context_tower(train, _z(), cfg, progress=io.StringIO())
    vh, vt = [v[:-1] for v in val], np.array([v[-1] for v in val])
    assert ct.hit_rate(model, vh, vt) >= 0.8
    np.testing.assert_array_equal(_u(model, [[-1] * (L - 2) + [N, N + 3]]), 0.0)
    with pytest.raises(ValueError, match="no item embedding table"):
        model.set_item_embeddings(_z(n=N + 1))


def test_training_is_deterministic_for_a_seed_and_the_adapter_moves_the_index():
    rng = np.random.default_rng(2)
    train, val = _chains(rng, 80), _chains(rng, 30)
    val = ([v[:-1] for v in val], np.array([v[-1] for v in val]))
    cfg = ct.ContextTowerConfig(form="sequence", adapter=True, **{**CHAIN_CONFIG, "epochs": 2})
    a, ha = ct.train_context_tower(train, _z(), cfg, validation=val, progress=io.StringIO())
    b, hb = ct.train_context_tower(train, _z(), cfg, validation=val, progress=io.StringIO())
    assert ha["loss"] == hb["loss"] and ha["val_hr@10"] == hb["val_hr@10"] and len(ha["val_hr@10"]) == 2
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    adapted = a.item_vectors().numpy()
    np.testing.assert_allclose(np.linalg.norm(adapted, axis=1), 1.0, atol=1e-5)
    assert np.abs(adapted - _z()).max() > 1e-3


def test_training_stops_at_the_step_budget_and_after_patience_epochs_without_a_better_validation():
    rng = np.random.default_rng(4)
    train = _chains(rng, 80)
    per_epoch = -(-len(ct.training_examples(train, L, True)[1]) // CHAIN_CONFIG["batch_size"])
    cfg = ct.ContextTowerConfig(form="sequence", **{**CHAIN_CONFIG, "epochs": 5, "max_steps": per_epoch + 1})
    _, h = ct.train_context_tower(train, _z(), cfg, progress=io.StringIO())
    assert h["steps"] == per_epoch + 1 and h["epoch"] == [1, 2]  # a whole epoch, then the budget's last step
    # a validation no epoch can improve on (targets that are in their own history: masked, never a hit)
    hopeless = ([np.array([1, 2, 3])] * 4, np.array([3, 3, 3, 3]))
    cfg = ct.ContextTowerConfig(form="sequence", **{**CHAIN_CONFIG, "epochs": 6, "patience": 2})
    _, h = ct.train_context_tower(train, _z(), cfg, validation=hopeless, progress=io.StringIO())
    assert h["val_hr@10"] == [0.0, 0.0, 0.0] and h["best_epoch"] == 1  # epoch 1 sets the best, 2 and 3 do not
    cfg = ct.ContextTowerConfig(form="sequence", **{**CHAIN_CONFIG, "epochs": 3, "patience": 0})
    _, h = ct.train_context_tower(train, _z(), cfg, validation=hopeless, progress=io.StringIO())
    assert len(h["epoch"]) == 3  # patience 0: no early stop


def test_a_killed_training_resumes_from_its_last_epoch_checkpoint_as_the_uninterrupted_run(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    train, val = _chains(rng, 60), _chains(rng, 20)
    val = ([v[:-1] for v in val], np.array([v[-1] for v in val]))
    cfg = ct.ContextTowerConfig(form="sequence", **{**CHAIN_CONFIG, "epochs": 3, "dropout": 0.0, "patience": 0})
    whole, hw = ct.train_context_tower(train, _z(), cfg, validation=val, progress=io.StringIO())
    real_hit_rate, calls = ct.hit_rate, []

    def killed_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # epoch 3's check: epochs 1 and 2 are checkpointed, epoch 3's training is lost
            raise KeyboardInterrupt
        return real_hit_rate(*args, **kwargs)

    monkeypatch.setattr(ct, "hit_rate", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        ct.train_context_tower(train, _z(), cfg, validation=val, progress=io.StringIO(), checkpoint_dir=str(tmp_path))
    monkeypatch.setattr(ct, "hit_rate", real_hit_rate)
    log = io.StringIO()
    resumed, hr = ct.train_context_tower(train, _z(), cfg, validation=val, progress=log, checkpoint_dir=str(tmp_path))
    assert "resuming from" in log.getvalue() and hr["resumed_from_epoch"] == 2
    assert hr["epoch"] == [1, 2, 3] and hr["loss"] == hw["loss"] and hr["val_hr@10"] == hw["val_hr@10"]
    assert hr["best_epoch"] == hw["best_epoch"] and hr["steps"] == hw["steps"]
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="another config"):
        other = dataclasses.replace(cfg, learning_rate=0.01)
        ct.train_context_tower(train, _z(), other, validation=val, progress=io.StringIO(), checkpoint_dir=str(tmp_path))


def test_config_round_trip_and_bad_values():
    cfg = ct.ContextTowerConfig(form="set", max_len=20, hidden_dim=32, adapter=True)
    assert ct.ContextTowerConfig.from_dict(cfg.to_dict()) == cfg
    assert ct.ContextTowerConfig().form == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_len = 3
    with pytest.raises(ValueError, match="unknown context tower config keys"):
        ct.ContextTowerConfig.from_dict({"max_len": 5, "layers": 2})
    with pytest.raises(ValueError, match="form"):
        ct.build_context_tower(ct.ContextTowerConfig(), _z())  # 'auto' is the pipeline's to resolve


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"form": "bag"}, "form"),
        ({"max_len": 0}, "max_len"),
        ({"max_len": 2.5}, "max_len"),
        ({"num_layers": 0}, "num_layers"),
        ({"num_heads": 0}, "num_heads"),
        ({"hidden_dim": 30, "num_heads": 4}, "multiple of num_heads"),
        ({"dropout": 1.0}, "dropout"),
        ({"item_input": "features"}, "item_input"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"loss": "bpr"}, "loss"),
        ({"learning_rate": -1e-3}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"adapter": 1}, "adapter"),
        ({"num_negatives": 0}, "num_negatives"),
    ],
)
def test_bad_config_values_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        ct.ContextTowerConfig(**bad)


def test_layers_get_config_round_trip():
    layers = [
        ct.AttentionBlock(width=16, num_heads=2, dropout=0.1, name="b"),
        ct.FrozenItemTable(num_items=7, dim=4, name="t"),
        ct.ResidualAdapter(dim=4, name="a"),
        ct.BiasedMultiHeadAttention(num_heads=2, key_dim=8, name="m"),
    ]
    for layer in layers:
        config = _stable(layer.get_config())
        again = type(layer).from_config(layer.get_config())
        assert _stable(again.get_config()) == config
        restored = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
        assert type(restored) is type(layer) and _stable(restored.get_config()) == config


def _stable(config):
    """A layer's config without MultiHeadAttention's input shapes (recorded once built, not before)."""
    return {k: v for k, v in config.items() if k not in ("query_shape", "key_shape", "value_shape")}


@pytest.mark.parametrize("form", ct.FORMS)
def test_model_from_config_and_saved_model_give_equal_outputs(form, tmp_path):
    model = _tower(form, adapter=True, hidden_dim=32)
    ids = np.array([[-1, -1, 4, 9, 1, 30, 22, 7], [5, 6, 7, 8, 9, 10, 11, 12]])
    w = np.where(ids >= 0, 1.5, 0.0).astype(np.float32)
    want = _u(model, ids, w)
    again = ct.ContextTower.from_config(model.get_config())
    again(ids)
    again.set_weights(model.get_weights())
    np.testing.assert_allclose(_u(again, ids, w), want, atol=1e-6)

    fn = tf.function(lambda h, v: {"u": model({"history": h, "weights": v}), "z": model.item_vectors()})
    sig = fn.get_concrete_function(tf.TensorSpec([None, L], tf.int64), tf.TensorSpec([None, L], tf.float32))
    tf.saved_model.save(model, str(tmp_path / "tower"), signatures={"serving_default": sig})
    loaded = tf.saved_model.load(str(tmp_path / "tower")).signatures["serving_default"]
    out = loaded(h=tf.constant(ids), v=tf.constant(w))
    np.testing.assert_allclose(out["u"].numpy(), want, atol=1e-6)
    np.testing.assert_allclose(out["z"].numpy(), model.item_vectors().numpy(), atol=1e-6)


@pytest.mark.parametrize("form", ct.FORMS)
def test_query_vectors_drop_unknown_ids_before_truncating_and_pass_weights(form):
    model = _tower(form)
    h = np.arange(1, 11)  # 10 items, L = 8: the last 8 are used
    noisy = np.insert(h, [2, 9, 10], [N + 5, -1, 10**6])  # unknown ids in between (one among the last 8 slots)
    np.testing.assert_allclose(ct.query_vectors(model, [noisy]), _u(model, [h[-L:]]), atol=1e-5)
    w = np.linspace(0.5, 2.0, len(h)).astype(np.float32)
    w_noisy = np.insert(w, [2, 9, 10], [7.0, 7.0, 7.0])
    got = ct.query_vectors(model, [noisy, h[:3]], weights=[w_noisy, w[:3]], batch_size=1)
    want = _u(model, [h[-L:], [-1] * (L - 3) + list(h[:3])], weights=[w[-L:], [0] * (L - 3) + list(w[:3])])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got[0] - ct.query_vectors(model, [h])[0]).max() > 1e-4  # the weights matter
