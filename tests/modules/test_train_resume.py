"""Resumable training (modules/train.TrainState) and training progress (modules/progress): a training SIGKILLed
mid-epoch resumes at its last checkpoint and ends with the embeddings, losses and validation history of an
uninterrupted run; checkpoints come every checkpoint_steps and at each epoch end; a non-TTY run prints plain
progress lines whose figures are the training's own."""

import io
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from modules import batches
from modules import train as train_lib
from modules.model import PinSageHParams
from tests.fixtures import REPO_ROOT
from tests.modules import resume_worker


def checkpoint_steps(model_dir):
    """Global steps of the checkpoints the manager keeps, oldest first."""
    state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]


@pytest.mark.slow
def test_a_training_killed_mid_epoch_resumes_at_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path):
    args, validation_fn = resume_worker.problem()
    ref_model, ref_history = train_lib.train(*args, str(tmp_path / "ref"), validation_fn=validation_fn)
    assert ref_history["resumed_from_step"] == 0 and checkpoint_steps(str(tmp_path / "ref")) == [6, 8, 12]

    # killed when the 10th step starts: steps 1-9 ran, checkpoints at 4, 6 (epoch 1's end) and 8
    model_dir = str(tmp_path / "killed")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    cmd = [sys.executable, "-m", "tests.modules.resume_worker", model_dir, "10"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert checkpoint_steps(model_dir) == [4, 6, 8]
    assert "train epoch 1/2 step 6/6" in proc.stderr  # epoch 1 ended (non-TTY progress line) ...
    assert "train epoch 2/2 step 6/6" not in proc.stderr  # ... epoch 2 did not

    log = io.StringIO()
    model, history = train_lib.train(*args, model_dir, validation_fn=validation_fn, progress_file=log)
    assert history["resumed_from_step"] == 8
    assert re.search(r"resuming from \S+ckpt-8 at step 8 \(epoch 2/2, step 2/6 of it\)", log.getvalue())
    assert "train epoch 1/2" not in log.getvalue()  # epoch 1 was not trained again
    assert checkpoint_steps(model_dir) == [6, 8, 12]
    feats, nbr, w = args[:3]
    got, want = (train_lib.embed_all(m, feats, nbr, w, 64) for m in (model, ref_model))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.abs(want - train_lib.embed_all(ref_model, feats, nbr, w, 64)).max() == 0  # embed_all is exact
    for k in ("epoch", "hard_negatives", "learning_rate", "val_hr@10"):
        assert history[k] == pytest.approx(ref_history[k], rel=1e-6), k
    assert history["hard_negatives"] == [0, 1]
    # epoch 2's mean loss covers all its 6 steps: the 2 before the kill (from the checkpoint) and the 4 after
    np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-5)


def test_a_resumed_epoch_has_the_same_batches_as_the_uninterrupted_one():
    args, _ = resume_worker.problem()
    feats, nbr, w, q, p, pools, _ = args
    builder = batches.BatchBuilder(
        feats, nbr, w, num_hops=2, negative_probs=np.ones(len(nbr)) / len(nbr), hard_neg_pools=pools
    )
    kw = dict(batch_size=32, num_negatives=20, num_hard=1, seed=5, epoch=2, steps=6)
    full = list(builder.training_dataset(q, p, **kw))
    tail = list(builder.training_dataset(q, p, start_step=4, **kw))
    assert len(full) == 6 and len(tail) == 2
    for (g0, l0), (g1, l1) in zip(full[4:], tail):
        for k in ("query_id", "positive_id", "negative_id", "hard_id"):
            np.testing.assert_array_equal(l0[k].numpy(), l1[k].numpy())
        np.testing.assert_array_equal(g0.node_sets["item"]["node_id"].numpy(), g1.node_sets["item"]["node_id"].numpy())
    assert not np.array_equal(full[0][1]["query_id"].numpy(), tail[0][1]["query_id"].numpy())


def test_non_tty_progress_prints_plain_lines_with_the_training_figures(tmp_path):
    args, _ = resume_worker.problem()
    hp = PinSageHParams(**dict(resume_worker.HPARAMS, epochs=1, steps_per_epoch=5, checkpoint_steps=0))
    log = io.StringIO()  # not a TTY
    _, history = train_lib.train(*args[:-1], hp, str(tmp_path / "m"), progress_file=log, progress_seconds=0)
    lines = log.getvalue().splitlines()
    pat = r"\[pinsage\] train epoch 1/1 step (\d)/5 loss (\S+) pairs/s (\d+) (ETA \S+|in \S+)$"
    got = [re.match(pat, ln) for ln in lines]
    assert all(got), lines
    assert [int(m.group(1)) for m in got] == [1, 2, 3, 4, 5]  # every step with a 0 s period, then the final line
    assert [m.group(4).split()[0] for m in got] == ["ETA"] * 4 + ["in"]
    assert float(got[-1].group(2)) == pytest.approx(history["loss"][0], abs=1e-4)  # the epoch's mean loss
    assert int(got[-1].group(3)) > 0 and "\r" not in log.getvalue()


def test_checkpoints_every_n_steps_and_at_epoch_ends_and_other_hparams_are_refused(tmp_path):
    args, _ = resume_worker.problem()
    hp = PinSageHParams(**dict(resume_worker.HPARAMS, epochs=2, steps_per_epoch=5, checkpoint_steps=2))
    d = str(tmp_path / "m")
    train_lib.train(*args[:-1], hp, d, progress_file=io.StringIO())
    saved = tf.train.get_checkpoint_state(os.path.join(d, "checkpoints"))
    # 2, 4, 5 (epoch end), 6, 8, 10 (epoch end); the manager keeps the last 3
    assert checkpoint_steps(d) == [6, 8, 10] and saved.model_checkpoint_path.endswith("ckpt-10")
    log = io.StringIO()
    _, again = train_lib.train(*args[:-1], hp, d, progress_file=log)  # done: nothing left to train
    assert again["resumed_from_step"] == 10 and again["epoch"] == [1, 2]
    assert "at step 10 (all epochs done)" in log.getvalue()
    other = PinSageHParams(**dict(resume_worker.HPARAMS, epochs=2, steps_per_epoch=5, learning_rate=1e-2))
    with pytest.raises(ValueError, match=r"other hparams \(learning_rate\).*" + re.escape(os.path.basename(d))):
        train_lib.train(*args[:-1], other, d, progress_file=io.StringIO())
