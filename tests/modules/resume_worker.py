"""Trains the resume test's small model in a process of its own and SIGKILLs that process when the training
step is called for the `kill_at`-th time (before that step runs): a real kill mid-epoch at a known step, for
tests/modules/test_train_resume.py. `python -m tests.modules.resume_worker MODEL_DIR KILL_AT`."""

import os
import signal
import sys

import numpy as np

from modules import train as train_lib
from modules.model import PinSageHParams
from tests.modules.test_model import community_graph, hit_rate_at_10

HPARAMS = dict(
    hidden_dim=16,
    output_dim=8,
    text_embedding_dim=4,
    batch_size=32,
    num_negatives=20,
    epochs=2,
    steps_per_epoch=6,
    warmup_steps=2,
    temperature=0.1,
    checkpoint_steps=4,
    checkpoint_seconds=0,
)


def problem():
    """(train() positional arguments, validation_fn) of a 120-item community graph with hard-negative pools."""
    feats, nbr, w, pairs = community_graph(n_comm=12, size=10, seed=3)
    q, p = pairs(600)
    tq, tp = pairs(100)
    pools = [np.flatnonzero(np.arange(len(nbr)) // 10 != u // 10)[:20] for u in range(len(nbr))]

    def validation_fn(model, epoch):
        return {"hr@10": hit_rate_at_10(train_lib.embed_all(model, feats, nbr, w, 64), tq, tp)}

    return (feats, nbr, w, q, p, pools, PinSageHParams(**HPARAMS)), validation_fn


def main(model_dir: str, kill_at: int) -> None:
    make = train_lib.make_train_step
    calls = [0]

    def make_killing_step(*args, **kwargs):
        step = make(*args, **kwargs)

        def killing_step(graph, labels):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(graph, labels)

        return killing_step

    train_lib.make_train_step = make_killing_step
    args, validation_fn = problem()
    train_lib.train(*args, model_dir, validation_fn=validation_fn)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
