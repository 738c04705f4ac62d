"""Training throughput (positive pairs/s) of PinSage on CPU through the real path: tf.data producer
(modules/batches) -> TF-GNN model (modules/model) -> loss + Adam step (modules/train).

Default shape (target >= 700 pairs/s per core):
a synthetic graph the size of ML-1M (3,706 items, ~1M positive pairs, T = 10 importance neighbours, power-law
popularity, communities), ML-1M-like features (65-wide genre multi-hot, title tokens, year + missing flag,
log degree), batch 512 pairs + 500 shared negatives, K = 2, hidden 128.

Reports: end-to-end pairs/s (producer and consumer together), the train step alone on pre-built batches
(consumer bound), batch assembly alone (producer bound), and a split of producer time by stage.

  .venv/bin/python bench/training.py [--steps 60] [--hard 0] [--items 3706] [--out bench/results/training.json]
(a non-default --items/--hard run is added under "other_runs" of the JSON file.)
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modules import batches
from modules import features as features_lib
from modules.model import PinSageHParams, build_model
from modules.train import learning_rate_schedule, make_train_step


def synthetic(num_items=3706, num_pairs=1_000_000, top_t=10, num_communities=40, seed=0):
    """Items in communities with Zipf(0.8) popularity; neighbours (top-T distinct of 4T popularity-weighted
    draws) and positives 80 % in-community. Vectorised, so --items 100000 takes seconds."""
    rng = np.random.default_rng(seed)
    comm = rng.integers(0, num_communities, num_items)
    pop = (1.0 / np.arange(1, num_items + 1) ** 0.8)[rng.permutation(num_items)]
    order = np.argsort(comm, kind="stable")  # community c = order[lo[c]:hi[c]]
    cum = np.cumsum(pop[order])
    hi = np.searchsorted(comm[order], np.arange(num_communities), side="right")
    lo = np.r_[0, hi[:-1]]
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)

    def draw(src):
        """One popularity-weighted item per source: from src's community w.p. 0.8, else from all items."""
        c = comm[src]
        u = base[c] + rng.random(src.shape) * (cum[hi[c] - 1] - base[c])
        same = order[np.minimum(np.searchsorted(cum, u), num_items - 1)]
        anywhere = order[np.minimum(np.searchsorted(cum, rng.random(src.shape) * cum[-1]), num_items - 1)]
        return np.where(rng.random(src.shape) < 0.8, same, anywhere)

    cand = np.sort(draw(np.repeat(np.arange(num_items)[:, None], 4 * top_t, 1)), 1)
    bad = (cand == np.arange(num_items)[:, None]) | np.c_[np.zeros(num_items, bool), cand[:, 1:] == cand[:, :-1]]
    pick = np.argsort(bad * 2.0 + rng.random(cand.shape), 1)[:, :top_t]
    nbr = np.take_along_axis(cand, pick, 1)
    nbr[np.take_along_axis(bad, pick, 1)] = -1
    c = (rng.pareto(1.5, nbr.shape) + 1) * (nbr >= 0)
    w = (-np.sort(-c, 1) / c.sum(1, keepdims=True)).astype(np.float32)
    nbr = np.take_along_axis(nbr, np.argsort(-c, 1, kind="stable"), 1)
    query = order[np.minimum(np.searchsorted(cum, rng.random(num_pairs) * cum[-1]), num_items - 1)]
    positive = draw(query)
    keep = positive != query
    lens = rng.integers(1, 7, num_items)
    feats = {
        "genres_multi_hot": (rng.random((num_items, 65)) < 0.03).astype(np.float32),
        "title_tokens": tf.RaggedTensor.from_row_lengths(
            tf.constant(rng.integers(0, 6000, lens.sum()), tf.int64), tf.constant(lens, tf.int64)
        ),
        "year": rng.normal(size=num_items).astype(np.float32),
        "year_missing": (rng.random(num_items) < 0.01).astype(np.float32),
        "log_degree": rng.normal(size=num_items).astype(np.float32),
        "node_id": np.arange(num_items, dtype=np.int64),
    }
    pools = np.sort(rng.integers(0, num_items, (num_items, 50)), 1)
    return feats, nbr, w, query[keep], positive[keep], pools


def timed(it, n):
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    return time.perf_counter() - t0


def producer_profile(builder, query, positive, hp, num_hard, reps=20):
    """Seconds per batch of each producer stage, run eagerly-compiled as separate tf.functions."""
    b, s = hp.batch_size, hp.num_negatives
    q, p = tf.constant(query[:b]), tf.constant(positive[:b])
    seed = tf.constant([1, 2], tf.int64)
    sample = tf.function(
        lambda: tf.concat(
            [q, p, builder.sample_negatives(s, seed), tf.reshape(builder.sample_hard(q, p, num_hard, seed)[0], [-1])], 0
        )
    )
    roots = sample()
    sub = tf.function(lambda r: batches.k_hop_subgraph(r, builder.nbr, builder.w, builder.num_hops))
    nodes, src, tgt, wt, rl = sub(roots)
    asm = tf.function(lambda *a: batches.assemble_graph(*a, builder.features))
    whole = tf.function(lambda i: builder.training_batch(i, q, p, num_negatives=s, num_hard=num_hard, seed=3))
    out = {}
    for name, fn in [
        ("sample_roots", sample),
        ("k_hop_subgraph", lambda: sub(roots)),
        ("gather_features_assemble", lambda: asm(nodes, src, tgt, wt, rl)),
        ("whole_batch", lambda: whole(tf.constant(0, tf.int64))),
    ]:
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        out[name] = (time.perf_counter() - t0) / reps
    out["subgraph_nodes"] = int(tf.size(nodes))
    out["subgraph_edges"] = int(tf.size(src))
    out["roots"] = int(tf.size(roots))
    return out


def _measure(builder, model, hp, query, positive, args) -> dict:
    """(end-to-end, train step alone, batch assembly alone) seconds for args.steps steps."""
    total = args.warmup + 2 * args.steps
    opt = tf.keras.optimizers.Adam(learning_rate_schedule(hp, total))
    step = make_train_step(model, opt, hp)
    common = dict(batch_size=hp.batch_size, num_negatives=hp.num_negatives, num_hard=args.hard, epoch=1)
    it = iter(builder.training_dataset(query, positive, seed=0, steps=total + 5, **common))
    for _ in range(args.warmup):
        g, lab = next(it)
        step(g, lab).numpy()
    # 1) end to end: producer (parallel map + prefetch) overlapping the train step.
    t0 = time.perf_counter()
    for _ in range(args.steps):
        g, lab = next(it)
        loss = step(g, lab)
    loss.numpy()
    e2e = time.perf_counter() - t0
    # 2) consumer alone: the train step on already-built batches.
    cached = [next(it) for _ in range(min(args.steps, 10))]
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(*cached[i % len(cached)])
    loss.numpy()
    consumer = time.perf_counter() - t0
    # 3) producer alone: iterate the dataset without training.
    it2 = iter(builder.training_dataset(query, positive, seed=1, steps=args.steps + 5, **common))
    timed(it2, 5)
    return {"e2e": e2e, "consumer": consumer, "producer": timed(it2, args.steps)}


def _save(res: dict, args) -> None:
    """The default shape is the file's top level; other shapes (--items, --hard) are kept under other_runs."""
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    out = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            out = json.load(f)
    if args.items == 3706 and args.hard == 0 and args.hparams == "{}":
        out = dict(res, other_runs=out.get("other_runs", {}))
    else:
        out.setdefault("other_runs", {})[f"items={args.items},hard={args.hard},hparams={args.hparams}"] = res
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--hard", type=int, default=0, help="hard negatives per example (curriculum epoch - 1)")
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "training.json")
    )
    ap.add_argument("--hparams", default="{}", help="JSON overrides of PinSageHParams (e.g. the previous loss)")
    args = ap.parse_args(argv)
    hp = PinSageHParams.from_dict(json.loads(args.hparams))
    t0 = time.perf_counter()
    feats, nbr, w, query, positive, pools = synthetic(num_items=args.items, num_pairs=args.pairs)
    gen_s = time.perf_counter() - t0
    n = nbr.shape[0]
    probs = batches.negative_distribution(np.bincount(positive, minlength=n))
    builder = batches.BatchBuilder(feats, nbr, w, num_hops=hp.num_layers, negative_probs=probs, hard_neg_pools=pools)
    model = build_model(hp, features_lib.feature_spec_from_arrays(feats), num_items=n)
    t = _measure(builder, model, hp, query, positive, args)
    prof = producer_profile(builder, query, positive, hp, args.hard)
    pairs = args.steps * hp.batch_size
    res = {
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_end": os.getloadavg()[0],
        "items": n,
        "pairs": int(len(query)),
        "top_t": int(nbr.shape[1]),
        "num_layers": hp.num_layers,
        "batch_size": hp.batch_size,
        "shared_negatives": hp.num_negatives,
        "hard_negatives": args.hard,
        "hidden_dim": hp.hidden_dim,
        "output_dim": hp.output_dim,
        "loss": hp.loss,
        "hparams": hp.to_dict(),
        "steps": args.steps,
        "end_to_end_pairs_per_s": pairs / t["e2e"],
        "train_step_only_pairs_per_s": pairs / t["consumer"],
        "batch_assembly_only_pairs_per_s": pairs / t["producer"],
        "end_to_end_ms_per_step": 1000 * t["e2e"] / args.steps,
        "train_step_ms": 1000 * t["consumer"] / args.steps,
        "batch_assembly_ms_per_batch_parallel": 1000 * t["producer"] / args.steps,
        "producer_stage_ms_serial": {k: (1000 * v if isinstance(v, float) else v) for k, v in prof.items()},
        "synthetic_graph_seconds": gen_s,
        "target_pairs_per_s": 700,
        "reference_plain_tf_pairs_per_s_per_core": 900,
    }
    print(json.dumps(res, indent=1))
    _save(res, args)
    return res


if __name__ == "__main__":
    main()
