"""The ContextTowerTrainer's stage: the context tower (modules/context_tower.py) trained on the graph's train
sequences over the item tower's embeddings z, its form picked by the validation probe (probe.py) when `auto`.

Data: each context's train items in position order (validation and test items are never trained on); the
per-epoch check is (train history, validation item) of a seeded sample of validation contexts, scored by HR@10,
the history masked (context_tower.hit_rate); with keep_best the tower of the best epoch is kept, so the epoch
budget is a ceiling and validation decides where training stops counting.

Output (a Model artifact's directory):
  saved_model/          the tower as a TF SavedModel, signature `serving_default`: history [B, L] int64 (-1 padded
                        on the left), weights [B, L] float32 -> query [B, d] (stock ops; serving builds on it)
  weights/              the same weights as a TF checkpoint (load_tower rebuilds the tower from config + z)
  config.json           the ContextTowerConfig trained, its form resolved
  history.json          per-epoch loss, seconds, val_hr@10, best_epoch, the form probe's record, train_seconds
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
import tensorflow as tf

from modules import context_tower as ct
from modules import history as history_lib
from pipeline.history import probe as probe_lib
from schema import files

SAVED_MODEL_DIR = "saved_model"
WEIGHTS_DIR = "weights"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"


def train_sequences(graph) -> list[np.ndarray]:
    """Each context's train items (node ids) in position order; contexts without a train item are left out."""
    m = graph.split == "train"
    ctx, pos, items = graph.context_index[m], graph.position[m], graph.node_id[m]
    order = np.lexsort((pos, ctx))
    ctx, items = ctx[order], np.asarray(items[order], np.int64)
    return np.split(items, np.flatnonzero(np.diff(ctx)) + 1) if len(items) else []


def resolve_config(graph, overrides: dict, probe_contexts: int | None) -> tuple[ct.ContextTowerConfig, dict | None]:
    """(the config to train, its form concrete; the probe's record when the form was `auto`, else None)."""
    config = ct.ContextTowerConfig.from_dict(dict(overrides or {}))
    if config.form != "auto":
        return config, None
    record = probe_lib.probe(graph, probe_contexts, seed=config.seed)
    return dataclasses.replace(config, form=record["form"]), record


def run(
    graph,
    item_embeddings,
    overrides: dict,
    out_dir: str,
    probe_contexts: int | None = None,
    progress=None,
    checkpoint_dir: str | None = None,
):
    """Trains the tower on `graph` over `item_embeddings` [N, d] and writes it to `out_dir` (module docstring);
    returns the history record. `probe_contexts`: the validation sample of the probe and the per-epoch check
    (None or 0: every validation context); `checkpoint_dir`: epoch checkpoints, resumed from when it holds one."""
    t0 = time.perf_counter()
    config, form_probe = resolve_config(graph, overrides, probe_contexts)
    if form_probe is not None:
        s = form_probe["scores"]
        print(
            f"[pinsage] context tower form: {form_probe['form']} (validation HR@10 "
            + ", ".join(f"{k} {v['hr@10']:.4f}" for k, v in s.items())
            + ")",
            file=sys.stderr,
            flush=True,
        )
    val = history_lib.build_history_queries(graph, "validation", max_contexts=probe_contexts or None, seed=config.seed)
    model, hist = ct.train_context_tower(
        train_sequences(graph),
        item_embeddings,
        config,
        validation=(val.histories(), val.target),
        progress=progress,
        checkpoint_dir=checkpoint_dir,
    )
    hist = dict(
        hist,
        form=config.form,
        form_probe=form_probe,
        validation_contexts=int(len(val)),
        total_validation_contexts=int(val.total_contexts),
        train_seconds=time.perf_counter() - t0,
    )
    best = hist["best_epoch"] - 1
    hist["best_val_hr@10"] = hist["val_hr@10"][best] if hist.get("val_hr@10") else None
    save(model, config, hist, out_dir)
    print(
        f"[pinsage] context tower: form {config.form}, best epoch {hist['best_epoch']} of {config.epochs} "
        f"(validation HR@10 {hist['best_val_hr@10']:.4f} on {len(val)} contexts), {hist['train_seconds']:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return hist


def save(model, config: ct.ContextTowerConfig, hist: dict, out_dir: str) -> None:
    files.makedirs(out_dir)
    tf.saved_model.save(model, files.join(out_dir, SAVED_MODEL_DIR), signatures={"serving_default": _signature(model)})
    model.save_weights(files.join(out_dir, WEIGHTS_DIR, "tower"))
    files.write_json(files.join(out_dir, CONFIG_FILE), config.to_dict(), indent=1)
    files.write_json(files.join(out_dir, HISTORY_FILE), hist, indent=1, default=float)


def _signature(model):
    """history [B, L] int64 + weights [B, L] float32 -> {"query": u_c [B, d]} (a traced inference function)."""
    spec = (
        tf.TensorSpec([None, None], tf.int64, name="history"),
        tf.TensorSpec([None, None], tf.float32, name="weights"),
    )

    @tf.function(input_signature=spec, autograph=False)
    def query(history, weights):
        return {"query": model({"history": history, "weights": weights}, training=False)}

    return query


def load_config(model_dir: str) -> ct.ContextTowerConfig:
    return ct.ContextTowerConfig.from_dict(files.read_json(files.join(model_dir, CONFIG_FILE)))


def load_tower(model_dir: str, item_embeddings) -> ct.ContextTower:
    """The trained tower of `model_dir` over `item_embeddings` (the z it was trained on, or z with new items)."""
    config = load_config(model_dir)
    model = ct.build_context_tower(config, item_embeddings)
    model.load_weights(files.join(model_dir, WEIGHTS_DIR, "tower")).expect_partial()
    if config.item_input == "embedding":
        model.set_item_embeddings(item_embeddings)  # the checkpoint holds the training z: the given one wins
    return model


def load_history(model_dir: str) -> dict:
    return files.read_json(files.join(model_dir, HISTORY_FILE))
