"""The ContextTowerTrainer's stage (pipeline/history): the form probe picks "sequence" where order carries the next
item and "set" where it does not; the stage trains on the train sequences only, writes a tower that reloads to the
same query vectors and records its validation HR@10, which a reload reproduces (the best epoch's weights)."""

import numpy as np
import pytest
import tensorflow as tf

from modules import context_tower as ct
from modules import history
from pipeline.history import probe, train
from schema import files
from tests.fixtures import chain_histories, community_histories

# rings longer than a history (100 > 20 items): the rest of the ring is not just "the items left", order decides
CHAIN = dict(community_size=100, num_contexts=300)
SMALL = {"epochs": 2, "max_len": 10, "num_layers": 1, "batch_size": 64}


def test_the_probe_picks_sequence_on_chains_and_set_on_order_free_data():
    rec = probe.probe(chain_histories(**CHAIN))
    assert rec["form"] == "sequence" and rec["comparison"]["verdict"] == "ahead"
    assert rec["scores"]["transitions_last_item"]["contexts"] == 300
    assert probe.probe(chain_histories(**CHAIN, ordered=False))["form"] == "set"  # the same sets, order shuffled
    rec = probe.probe(community_histories())
    assert rec["form"] == "set" and rec["comparison"]["verdict"] != "ahead"


def test_the_probe_is_deterministic_and_reads_no_test_item():
    g = community_histories(seed=3)
    a, b = probe.probe_ranks(g, max_contexts=100, seed=1), probe.probe_ranks(g, max_contexts=100, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    g.node_id[g.split == "test"] = 0  # any test item: the probe cannot see it
    c = probe.probe_ranks(g, max_contexts=100, seed=1)
    assert all(np.array_equal(a[k], c[k]) for k in a)


def test_train_sequences_are_the_train_items_in_position_order():
    g = chain_histories(num_contexts=30)
    seqs = train.train_sequences(g)
    m = g.split == "train"
    assert sum(len(s) for s in seqs) == int(m.sum())
    c = int(g.context_index[m][0])
    rows = np.flatnonzero(m & (g.context_index == c))
    assert np.array_equal(seqs[0], g.node_id[rows[np.argsort(g.position[rows])]])


def test_the_stage_trains_saves_and_reloads_the_tower(tmp_path, capsys):
    g = chain_histories(**CHAIN)
    z = np.random.default_rng(0).normal(size=(g.num_items, 16)).astype(np.float32)
    out = str(tmp_path / "tower")
    hist = train.run(g, z, SMALL, out)
    said = capsys.readouterr().err
    assert "[pinsage] context tower form: sequence (validation HR@10 itemknn_history " in said
    assert f"[pinsage] context tower: form sequence, best epoch {hist['best_epoch']} of 2 (validation HR@10" in said
    assert hist["form"] == "sequence" and hist["form_probe"]["form"] == "sequence"  # auto: the probe decided
    for name in (train.CONFIG_FILE, train.HISTORY_FILE):
        assert files.exists(files.join(out, name))
    on_disk = train.load_history(out)
    assert on_disk["epoch"] == [1, 2] and len(on_disk["val_hr@10"]) == 2 and on_disk["train_seconds"] > 0
    assert on_disk["best_val_hr@10"] == max(on_disk["val_hr@10"]) and on_disk["validation_contexts"] == 300
    assert train.load_config(out).form == "sequence" and train.load_config(out).max_len == 10

    tower = train.load_tower(out, z)
    q = history.build_history_queries(g, "validation")
    assert ct.hit_rate(tower, q.histories(), q.target) == pytest.approx(on_disk["best_val_hr@10"])
    saved = tf.saved_model.load(files.join(out, train.SAVED_MODEL_DIR))  # the SavedModel serving will read
    ids, w = ct.pad_histories(q.histories(0, 5), 10)
    got = saved.signatures["serving_default"](history=tf.constant(ids), weights=tf.constant(w))["query"]
    np.testing.assert_allclose(got.numpy(), ct.query_vectors(tower, q.histories(0, 5)), atol=1e-5)


def test_a_given_form_skips_the_probe(tmp_path):
    g = community_histories(num_contexts=200)
    z = np.random.default_rng(1).normal(size=(g.num_items, 8)).astype(np.float32)
    hist = train.run(g, z, dict(SMALL, form="sequence", epochs=1), str(tmp_path / "t"))
    assert hist["form"] == "sequence" and hist["form_probe"] is None
