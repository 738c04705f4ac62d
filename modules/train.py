"""Training loop and direct bulk embedding for PinSage.

`train` runs a custom loop (one tf.function step per minibatch) over the tf.data producer of modules/batches:
the producer samples negatives and extracts the next subgraphs on tf.data's threads while the step runs. Per
epoch the curriculum sets the number of hard negatives (a new dataset, one retrace). Checkpoints (model,
optimizer, epoch) go to model_dir after every epoch and a rerun resumes from the latest; TensorBoard scalars
(loss, learning rate, pairs/s, validation metrics) go to log_dir.

`embed_all` applies the model directly to minibatches of root nodes (each root's K-hop subgraph), the reference
for the layer-wise bulk embedder.
"""

import os


import json
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from modules import batches
from modules import features as features_lib
from modules import losses
from modules.model import PinSageHParams, TEXT_VOCAB_SIZE, build_model, build_query_head


def split_readout(emb, labels, batch_size: int, num_negatives: int):
    """Model output rows [queries B; positives B; shared S; hard B*H] -> (zq, zp, zn, zh [B, H, d])."""
    b, s = batch_size, num_negatives
    num_hard = tf.shape(labels["hard"])[1]
    zh = tf.reshape(emb[2 * b + s :], [b, num_hard, tf.shape(emb)[1]])
    return emb[:b], emb[b : 2 * b], emb[2 * b : 2 * b + s], zh


def learning_rate_schedule(hp: PinSageHParams, total_steps: int):
    """Linear warm-up to hp.learning_rate over hp.warmup_steps, then cosine decay to min_learning_rate_ratio."""
    warmup = min(hp.warmup_steps, max(total_steps - 1, 0))
    return tf.keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=hp.learning_rate * (0.0 if warmup else 1.0),
        decay_steps=max(total_steps - warmup, 1),
        alpha=hp.min_learning_rate_ratio,
        warmup_target=hp.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def _text_vocab_size(item_features) -> int:
    top = 0
    for k, v in item_features.items():
        if isinstance(v, tf.RaggedTensor) and v.dtype.is_integer and tf.size(v.flat_values) > 0:
            top = max(top, int(tf.reduce_max(v.flat_values)) + 1)
    return max(TEXT_VOCAB_SIZE, top)


_QUERY_HEAD_ATTR = "_pinsage_query_head"


def query_head_of(model: tf.keras.Model) -> Optional[tf.keras.Model]:
    """The query head `train` attached to `model` (hparams.query_head), or None."""
    return getattr(model, _QUERY_HEAD_ATTR, None)


def attach_query_head(model: tf.keras.Model, head: Optional[tf.keras.Model]) -> tf.keras.Model:
    # Not a tracked Keras attribute: the embedding model's SavedModel stays the plain graph -> z model, and the
    # head is saved on its own (modules/trainer.py QUERY_HEAD_DIR).
    object.__setattr__(model, _QUERY_HEAD_ATTR, head)
    return model


def apply_query_head(head, emb: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """[N, d] query vectors u = head(z) of item embeddings z, in batches (z itself when head is None)."""
    if head is None:
        return emb
    return np.concatenate(
        [head(emb[i : i + batch_size], training=False).numpy() for i in range(0, len(emb), batch_size)] or [emb[:0]]
    )


def query_embeddings(model: tf.keras.Model, emb: np.ndarray) -> np.ndarray:
    """[N, d] query vectors of item embeddings z under the query head `train` attached to `model`."""
    return apply_query_head(query_head_of(model), emb)


def make_train_step(model, optimizer, hp: PinSageHParams, query_head=None):
    variables = model.trainable_variables + (query_head.trainable_variables if query_head is not None else [])

    @tf.function(reduce_retracing=True, autograph=False)
    def step(graph, labels):
        with tf.GradientTape() as tape:
            emb = model(graph, training=True)
            zq, zp, zn, zh = split_readout(emb, labels, hp.batch_size, hp.num_negatives)
            if query_head is not None:
                zq = query_head(zq, training=True)
            loss = losses.pinsage_loss(hp, zq, zp, zn, zh, labels)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    return step


def train(
    item_features: dict,
    nbr,
    w,
    query,
    positive,
    hard_neg_pools,
    hparams: PinSageHParams,
    model_dir: str,
    log_dir: Optional[str] = None,
    validation_fn: Optional[Callable[[tf.keras.Model, int], dict]] = None,
    *,
    negative_weights=None,
    feature_spec: Optional[dict] = None,
    log_every: int = 50,
    pair_counts=None,
):
    """Trains PinSage on positive pairs (query[p], positive[p]); returns (model, history).

    item_features: {name: [N, ...] array or RaggedTensor} by node id; nbr/w: [N, T] neighbourhoods (-1 / 0 padded);
    hard_neg_pools: per query node id, an [N, K] -1-padded array or list of arrays (or None);
    negative_weights: [N] unnormalised P_n (default (positive count + 1)^negative_power);
    validation_fn(model, epoch) -> {metric: value}, logged and kept in history.
    pair_counts: [P] occurrences of each pair; with hparams.pair_sampling == 'count' pairs are drawn in proportion
    to them (each epoch: P draws without replacement from the pairs repeated count times), and the negative
    distribution counts occurrences too.
    history: per-epoch lists of loss, seconds, pairs_per_second, hard_negatives, learning_rate + validation keys.
    """
    hp = hparams
    tf.keras.utils.set_random_seed(hp.seed)
    nbr = np.asarray(nbr, np.int64)
    n = nbr.shape[0]
    query, positive, steps = _training_pairs(hp, query, positive, pair_counts)
    builder = _batch_builder(item_features, nbr, w, positive, hp, hard_neg_pools, negative_weights)
    spec = feature_spec or features_lib.feature_spec_from_arrays(item_features)
    model = build_model(hp, spec, num_items=n, text_vocab_size=_text_vocab_size(item_features))
    query_head = build_query_head(hp)
    attach_query_head(model, query_head)
    lr = learning_rate_schedule(hp, steps * hp.epochs)
    optimizer = tf.keras.optimizers.Adam(lr)
    epoch_var, manager = _checkpoints(model, optimizer, query_head, model_dir)
    with open(os.path.join(model_dir, "hparams.json"), "w") as f:
        json.dump(hp.to_dict(), f, indent=1, sort_keys=True)
    writer = tf.summary.create_file_writer(log_dir) if log_dir else tf.summary.create_noop_writer()
    step_fn = make_train_step(model, optimizer, hp, query_head)
    has_pools = hard_neg_pools is not None and hp.hard_negatives
    history = {k: [] for k in ("epoch", "loss", "seconds", "pairs_per_second", "hard_negatives", "learning_rate")}
    for epoch in range(int(epoch_var.numpy()) + 1, hp.epochs + 1):
        num_hard = losses.hard_negatives_for_epoch(epoch, hp.max_hard_negatives) if has_pools else 0
        ds = builder.training_dataset(
            query,
            positive,
            batch_size=hp.batch_size,
            num_negatives=hp.num_negatives,
            num_hard=num_hard,
            seed=hp.seed,
            epoch=epoch,
            steps=steps,
        )
        with writer.as_default():
            metrics = _run_epoch(ds, step_fn, optimizer, lr, hp, log_every)
            metrics["hard_negatives"] = num_hard
            metrics = {
                k: metrics[k] for k in ("loss", "seconds", "pairs_per_second", "hard_negatives", "learning_rate")
            }
            if validation_fn is not None:
                metrics.update({f"val_{k}": float(v) for k, v in validation_fn(model, epoch).items()})
            for k, v in metrics.items():
                tf.summary.scalar(f"epoch/{k}", v, step=epoch)
            writer.flush()
        history["epoch"].append(epoch)
        for k, v in metrics.items():
            history.setdefault(k, []).append(v)
        epoch_var.assign(epoch)
        manager.save(checkpoint_number=epoch)
    return model, history


def _batch_builder(item_features, nbr, w, positive, hp: PinSageHParams, hard_neg_pools, negative_weights):
    """The tf.data minibatch builder; P_n defaults to (positive count + 1)^negative_power."""
    if negative_weights is None:
        counts = np.bincount(positive, minlength=nbr.shape[0])
        negative_weights = batches.negative_distribution(counts, hp.negative_power)
    return batches.BatchBuilder(
        item_features,
        nbr,
        w,
        num_hops=hp.num_layers,
        negative_probs=negative_weights,
        hard_neg_pools=hard_neg_pools if hp.hard_negatives else None,
    )


def _training_pairs(hp: PinSageHParams, query, positive, pair_counts):
    """(query, positive, steps per epoch): one epoch = as many pairs as there are distinct pairs, whatever the
    sampling (so 'count', which repeats each pair by its count, costs the same)."""
    query, positive = np.asarray(query, np.int64), np.asarray(positive, np.int64)
    steps = hp.steps_per_epoch or max(len(query) // hp.batch_size, 1)
    if hp.pair_sampling == "count" and pair_counts is not None:  # without counts: every pair once
        reps = np.maximum(np.asarray(pair_counts, np.int64), 1)
        query, positive = np.repeat(query, reps), np.repeat(positive, reps)
    if hp.pair_sampling not in ("distinct", "count"):
        raise ValueError(f"pair_sampling must be 'distinct' or 'count', got {hp.pair_sampling!r}")
    return query, positive, steps


def _checkpoints(model, optimizer, query_head, model_dir: str):
    """(epoch variable, CheckpointManager) under model_dir/checkpoints, restored from the latest checkpoint."""
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(
        model=model,
        optimizer=optimizer,
        epoch=epoch_var,
        **({"query_head": query_head} if query_head is not None else {}),
    )
    manager = tf.train.CheckpointManager(ckpt, os.path.join(model_dir, "checkpoints"), max_to_keep=3)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
    os.makedirs(model_dir, exist_ok=True)
    return epoch_var, manager


def _run_epoch(ds, step_fn, optimizer, lr, hp: PinSageHParams, log_every: int) -> dict:
    """One pass over the epoch's dataset; loss and learning rate summaries every `log_every` steps."""
    t0, total, count = time.perf_counter(), 0.0, 0
    for graph, labels in ds:
        loss = float(step_fn(graph, labels))
        total, count = total + loss, count + 1
        it = int(optimizer.iterations.numpy())
        if it % log_every == 0:
            tf.summary.scalar("loss", loss, step=it)
            tf.summary.scalar("learning_rate", float(lr(it)), step=it)
    secs = time.perf_counter() - t0
    return {
        "loss": total / max(count, 1),
        "seconds": secs,
        "pairs_per_second": count * hp.batch_size / max(secs, 1e-9),
        "learning_rate": float(lr(int(optimizer.iterations.numpy()))),
    }


def embed_all(
    model: tf.keras.Model,
    item_features: dict,
    nbr,
    w,
    batch_size: int = 1024,
    num_hops: Optional[int] = None,
    node_ids=None,
) -> np.ndarray:
    """[N, d] embeddings of every item (or of `node_ids`): the model applied to each batch of roots' K-hop
    subgraph. num_hops defaults to the model's number of PinSage layers."""
    if num_hops is None:
        num_hops = sum(1 for layer in model.layers if layer.name.startswith("pinsage_layer_"))
    builder = batches.BatchBuilder(item_features, nbr, w, num_hops=num_hops)
    fn = tf.function(lambda g: model(g, training=False), reduce_retracing=True, autograph=False)
    out = [fn(g).numpy() for g in builder.embedding_dataset(batch_size, node_ids)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)
