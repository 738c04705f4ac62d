"""Benchmark of bulk inference: layer-wise (modules/embedding.py, each item computed once per layer) vs
per-item recomputation (the model applied to each root's own K-hop subgraph, modules/train.embed_all with one
root per call), in items/s.

    .venv/bin/python bench/embedding.py                 # writes bench/results/embedding.json
    .venv/bin/python bench/embedding.py --big 200000 --beam-items 10000 --per-item-roots 200   # quicker

Rows:
- 'ml-1m': an ML-1M-sized catalogue (3,706 items, synthetic features of the ML transformed shape, random
  -1-padded top-T neighbourhoods, 2 % isolated), default model (hidden 128, output 64), K = 2, T in {10, 50}:
  per-item recomputation (batch of 1 root; timed on --per-item-roots roots), the batched direct application
  (embed_all, 1024 roots per subgraph; shared nodes deduplicated within a batch only) and the in-memory
  layer-wise path, with the max |difference| layer-wise vs direct.
- '1m': 1M items, T = 10, K = 2, same model, in-memory layer-wise only (per-layer seconds).
- 'beam': the BulkEmbedder executor (strategy 'beam', DirectRunner) end to end at --beam-items items, T = 10
  (inputs written first and not timed: SavedModel, GZIP tf.Examples, neighbourhood Parquet, items table).
Untrained random weights: the cost does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from modules import synthetic as catalogue
from schema import neighborhoods as neighborhood_io

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "embedding.json")


def model_for(feats, num_layers=2):
    from modules import features as features_lib
    from modules.model import PinSageHParams, build_model

    return build_model(PinSageHParams(num_layers=num_layers), features_lib.feature_spec_from_arrays(feats))


def bench_catalogue(n, top_t, per_item_roots, seed=0):
    import tensorflow as tf

    from modules import batches
    from modules import embedding as be
    from modules.train import embed_all

    feats, nbr, w = catalogue.synthetic_catalogue(n, top_t, seed=seed)
    model = model_for(feats)
    lw = be.LayerwiseModel(model)
    # warm-up (tracing) of both paths on a few items, then timed runs
    small = {k: v[:256] for k, v in feats.items()}
    be.embed_in_memory(lw, small, np.where(nbr[:256] < 256, nbr[:256], -1), w[:256], batch_size=128)
    t0 = time.time()
    timings = {}
    layerwise = be.embed_in_memory(lw, feats, nbr, w, batch_size=8192, timings=timings)
    t_layer = time.time() - t0

    builder = batches.BatchBuilder(feats, nbr, w, num_hops=2)
    fn = tf.function(lambda g: model(g, training=False), reduce_retracing=True, autograph=False)
    roots = np.random.default_rng(1).choice(n, per_item_roots, replace=False)
    for r in roots[:3]:
        fn(builder.subgraph(tf.constant([r])))
    t0 = time.time()
    single = np.concatenate([fn(builder.subgraph(tf.constant([r]))).numpy() for r in roots])
    t_single = time.time() - t0

    embed_all(model, feats, nbr, w, batch_size=1024, node_ids=np.arange(1024))  # warm-up
    t0 = time.time()
    direct = embed_all(model, feats, nbr, w, batch_size=1024)
    t_direct = time.time() - t0
    return {
        "items": n,
        "top_t": top_t,
        "num_layers": 2,
        "hidden_dim": 128,
        "output_dim": 64,
        "layerwise_seconds": round(t_layer, 3),
        "layerwise_items_per_s": round(n / t_layer, 1),
        "layerwise_stage_seconds": {k: round(v, 3) for k, v in timings.items()},
        "per_item_roots_timed": int(per_item_roots),
        "per_item_seconds": round(t_single, 3),
        "per_item_items_per_s": round(per_item_roots / t_single, 1),
        "batched_direct_seconds": round(t_direct, 3),
        "batched_direct_items_per_s": round(n / t_direct, 1),
        "speedup_vs_per_item": round((n / t_layer) / (per_item_roots / t_single), 1),
        "speedup_vs_batched_direct": round(t_direct / t_layer, 2),
        "max_abs_diff_vs_direct": float(np.abs(layerwise - direct).max()),
        "max_abs_diff_per_item_vs_direct": float(np.abs(single - direct[roots]).max()),
    }


def bench_big(n, top_t=10, batch_size=65536):
    from modules import embedding as be

    t0 = time.time()
    feats, nbr, w = catalogue.synthetic_catalogue(n, top_t, seed=2)
    t_gen = time.time() - t0
    model = model_for(feats)
    lw = be.LayerwiseModel(model)
    small = {k: v[:256] for k, v in feats.items()}
    be.embed_in_memory(lw, small, np.where(nbr[:256] < 256, nbr[:256], -1), w[:256], batch_size=128)
    timings = {}
    t0 = time.time()
    emb = be.embed_in_memory(lw, feats, nbr, w, batch_size=batch_size, timings=timings)
    t = time.time() - t0
    assert emb.shape == (n, 64) and np.isfinite(emb).all()
    return {
        "items": n,
        "top_t": top_t,
        "num_layers": 2,
        "hidden_dim": 128,
        "output_dim": 64,
        "batch_size": batch_size,
        "generate_seconds": round(t_gen, 2),
        "seconds": round(t, 2),
        "items_per_s": round(n / t, 1),
        "stage_seconds": {k: round(v, 2) for k, v in timings.items()},
    }


def bench_beam(n, top_t=10, batch_size=1024, workers=1):
    from tfx.types import standard_artifacts

    from modules import embedding as be
    from pipeline.components import artifacts
    from pipeline.components import bulk_embedder as component
    from schema import build

    tmp = tempfile.mkdtemp(prefix="bench_embedding_")
    feats, nbr, w = catalogue.synthetic_catalogue(n, top_t, seed=3)
    model = model_for(feats)
    t0 = time.time()
    uris = {k: os.path.join(tmp, k) for k in ("model", "examples", "neighborhoods", "graph", "out")}
    be.save_model(model, os.path.join(uris["model"], "Format-Serving"), save_traces=False)
    catalogue.write_examples(os.path.join(uris["examples"], "Split-train"), feats, shards=4)
    neighborhood_io.write_neighborhoods(uris["neighborhoods"], nbr, w, shards=4)
    catalogue.write_items(uris["graph"], [str(u) for u in range(n)])
    t_write = time.time() - t0

    def art(cls, uri, **kw):
        a = cls()
        a.uri = uri
        for k, v in kw.items():
            setattr(a, k, v)
        return [a]

    args = ["--runner=DirectRunner", f"--direct_num_workers={workers}"]
    if workers > 1:
        args.append("--direct_running_mode=multi_processing")
    ex = component.Executor(
        component.Executor.Context(beam_pipeline_args=args, tmp_dir=tmp + "/tmp", unique_id="bench")
    )
    out = art(artifacts.Embeddings, uris["out"])
    t0 = time.time()
    ex.Do(
        {
            "model": art(standard_artifacts.Model, uris["model"]),
            "examples": art(standard_artifacts.Examples, uris["examples"], split_names='["train"]'),
            "neighborhoods": art(artifacts.Neighborhoods, uris["neighborhoods"]),
            "graph": art(artifacts.PinSageGraph, uris["graph"]),
        },
        {"embeddings": out},
        {
            "graph_schema": os.path.join(build.bundled_dir("ml-1m"), build.GRAPH_SCHEMA),
            "strategy": "beam",
            "batch_size": batch_size,
        },
    )
    t = time.time() - t0
    emb = np.load(os.path.join(uris["out"], "embeddings.npy"))
    lw = be.LayerwiseModel(model)
    diff = float(np.abs(emb - be.embed_in_memory(lw, feats, nbr, w)).max())
    return {
        "items": n,
        "top_t": top_t,
        "num_layers": 2,
        "runner": "DirectRunner",
        "workers": workers,
        "batch_size": batch_size,
        "input_write_seconds": round(t_write, 2),
        "seconds": round(t, 2),
        "items_per_s": round(n / t, 1),
        "max_abs_diff_vs_in_memory": diff,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalogue", type=int, default=3706)
    ap.add_argument("--top-t", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--per-item-roots", type=int, default=500)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--beam-items", type=int, nargs="*", default=[100_000])
    ap.add_argument("--beam-workers", type=int, default=1)
    ap.add_argument("--skip", nargs="*", default=[], choices=["ml-1m", "1m", "beam"])
    ap.add_argument("--out", default=RESULTS)
    a = ap.parse_args()
    res = {
        "host": {"cpus": os.cpu_count(), "note": "2 shared cores; other jobs running"},
        "ml_1m": [],
        "big": None,
        "beam": [],
    }
    if "ml-1m" not in a.skip:
        for t in a.top_t:
            r = bench_catalogue(a.catalogue, t, a.per_item_roots)
            print(json.dumps(r), flush=True)
            res["ml_1m"].append(r)
    if "1m" not in a.skip and a.big:
        res["big"] = bench_big(a.big)
        print(json.dumps(res["big"]), flush=True)
    if "beam" not in a.skip:
        for n in a.beam_items:
            r = bench_beam(n, workers=a.beam_workers)
            print(json.dumps(r), flush=True)
            res["beam"].append(r)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
