"""Cost of the trainer's mid-epoch checkpoints (modules/train.TrainState), on bench/training.py's ML-1M-sized
synthetic graph with the default model shape (hidden / output 128, query head, Adam):

1. the time of one TrainState.save() (model + Adam moments + position + history; --saves of them, median) and
   its size on disk, which with the default interval (hparams.checkpoint_seconds) gives the share of training
   time spent saving: save seconds / interval;
2. pairs/s of the same short training with checkpoints off, at the default interval and after every step (the
   worst case): the epoch's pairs/s of modules/train's history (saves inside the epoch included; the first
   step's tracing too, the same in each), fresh model_dir each, interleaved (off, every, default, off, ...) to
   spread the box's load. On a shared box this part is as noisy as the load is; part 1 is the figure.

    .venv/bin/python bench/checkpoint_cost.py [--steps 40] [--repeats 2] [--saves 10] [--items 3706]
"""

import argparse
import io
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from training import synthetic  # noqa: E402

from modules import features as features_lib  # noqa: E402
from modules.model import PinSageHParams, build_model, build_query_head  # noqa: E402
from modules.train import TrainState, train  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--saves", type=int, default=10)
    args = ap.parse_args()
    feats, nbr, w, query, positive, pools = synthetic(num_items=args.items, num_pairs=args.pairs)
    default = PinSageHParams()
    save_s, size = save_seconds(feats, nbr, default, args.saves)
    print(f"one save: {save_s * 1e3:.0f} ms, {size / 1e6:.1f} MB", flush=True)
    settings = {
        "off": dict(checkpoint_steps=0, checkpoint_seconds=0),
        "every_step": dict(checkpoint_steps=1, checkpoint_seconds=0),
        "default": dict(checkpoint_steps=default.checkpoint_steps, checkpoint_seconds=default.checkpoint_seconds),
    }
    got = {k: [] for k in settings}
    for _ in range(args.repeats):
        for name, ck in settings.items():
            hp = PinSageHParams(epochs=1, steps_per_epoch=args.steps, warmup_steps=5, **ck)
            with tempfile.TemporaryDirectory() as d:
                _, h = train(feats, nbr, w, query, positive, pools, hp, d, progress_file=io.StringIO())
            got[name].append(h["pairs_per_second"][0])
            print(f"{name}: {h['pairs_per_second'][0]:.0f} pairs/s ({h['seconds'][0]:.1f} s)", flush=True)
    out = {
        "save_seconds": save_s,
        "checkpoint_bytes": size,
        "default_interval_s": default.checkpoint_seconds,
        "default_interval_share": save_s / default.checkpoint_seconds,
        "pairs_per_second": got,
        "median_pairs_per_second": {k: float(np.median(v)) for k, v in got.items()},
    }
    print(json.dumps(out, indent=1))


def save_seconds(feats, nbr, hp: PinSageHParams, saves: int) -> tuple[float, int]:
    """(median seconds of one TrainState.save(), bytes of one checkpoint) for the default model on this graph."""
    spec = features_lib.feature_spec_from_arrays(feats)
    model = build_model(hp, spec, num_items=len(nbr), text_vocab_size=6000)
    optimizer = tf.keras.optimizers.Adam(1e-3)
    with tempfile.TemporaryDirectory() as d:
        state = TrainState(model, optimizer, build_query_head(hp), d, hp, steps_per_epoch=100)
        times = []
        for i in range(saves):
            optimizer.iterations.assign(i + 1)  # a new checkpoint number each time, as in training
            t0 = time.perf_counter()
            state.save()
            times.append(time.perf_counter() - t0)
        ckpt = os.path.join(d, "checkpoints")
        latest = os.path.basename(tf.train.latest_checkpoint(ckpt))
        size = sum(os.path.getsize(os.path.join(ckpt, f)) for f in os.listdir(ckpt) if f.startswith(latest + "."))
    return float(np.median(times)), size


if __name__ == "__main__":
    main()
