"""Cost of the trainer's mid-epoch checkpoints (modules/train.TrainState): pairs/s of the same short training
with checkpoints off, at the default interval (hparams.checkpoint_seconds) and after every step (the worst case),
and the time of one save, on bench/training.py's ML-1M-sized synthetic graph with the default model shape.

    .venv/bin/python bench/checkpoint_cost.py [--steps 40] [--items 3706]

pairs/s is the epoch's (modules/train history: steps x batch / epoch seconds, saves inside the epoch included;
the epoch-end save comes after and is in none of the three). Each setting runs in a fresh model_dir, one epoch,
no validation; the order is interleaved (off, every, default, off, every, default) to spread the box's load.
"""

import argparse
import io
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from modules.model import PinSageHParams  # noqa: E402
from modules.train import train  # noqa: E402
from training import synthetic  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    feats, nbr, w, query, positive, pools = synthetic(num_items=args.items, num_pairs=args.pairs)
    default = PinSageHParams()
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
    best = {k: max(v) for k, v in got.items()}
    step_s = default.batch_size / best["off"]
    save_s = default.batch_size / best["every_step"] - step_s
    out = {
        "pairs_per_second": got,
        "best": best,
        "step_seconds": step_s,
        "save_seconds": save_s,
        "default_interval_cost": save_s / default.checkpoint_seconds,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
