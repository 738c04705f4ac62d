"""Training loop and direct bulk embedding for PinSage.

`train` runs a custom loop (one tf.function step per minibatch) over the tf.data producer of modules/batches:
the producer samples negatives and extracts the next subgraphs on tf.data's threads while the step runs. Per
epoch the curriculum sets the number of hard negatives (a new dataset, one retrace). Checkpoints (TrainState:
model, optimizer, position in the epoch) go to model_dir every few steps or seconds and at each epoch end, and a
rerun resumes from the latest at the step it was taken; progress (step, loss, pairs/s, ETA) goes to stderr
(modules/progress); TensorBoard scalars (loss, learning rate, pairs/s, validation metrics) go to log_dir.

`embed_all` applies the model directly to minibatches of root nodes (each root's K-hop subgraph), the reference
for the layer-wise bulk embedder.
"""

import json
import os
import sys
import time
from typing import Callable, Optional, TextIO

import numpy as np
import tensorflow as tf

from modules import batches, layers, losses
from modules import features as features_lib
from modules import progress as progress_lib
from modules.model import TEXT_VOCAB_SIZE, PinSageHParams, build_model, build_query_head
from schema import files


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


def set_similarity_weight(head: tf.keras.Model, weight: float) -> None:
    """Sets lambda of the layers.QueryHead inside `head` (the served query's share of z_q . z_i)."""
    (layer,) = [lay for lay in head.layers if isinstance(lay, layers.QueryHead)]
    layer.similarity_weight = float(weight)


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
    task = losses.retrieval_task(hp)

    @tf.function(reduce_retracing=True, autograph=False)
    def step(graph, labels):
        with tf.GradientTape() as tape:
            emb = model(graph, training=True)
            zq, zp, zn, zh = split_readout(emb, labels, hp.batch_size, hp.num_negatives)
            if query_head is not None:
                zq = query_head(zq, training=True)
            loss = losses.pinsage_loss(hp, task, zq, zp, zn, zh, labels)
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
    progress_file: Optional[TextIO] = None,
    progress_seconds: float = progress_lib.DEFAULT_INTERVAL_S,
):
    """Trains PinSage on positive pairs (query[p], positive[p]); returns (model, history).

    item_features: {name: [N, ...] array or RaggedTensor} by node id; nbr/w: [N, T] neighbourhoods (-1 / 0 padded);
    hard_neg_pools: per query node id, an [N, K] -1-padded array or list of arrays (or None);
    negative_weights: [N] unnormalised P_n (default (positive count + 1)^negative_power);
    validation_fn(model, epoch) -> {metric: value}, logged and kept in history.
    pair_counts: [P] occurrences of each pair; with hparams.pair_sampling == 'count' pairs are drawn in proportion
    to them (each epoch: P draws without replacement from the pairs repeated count times), and the negative
    distribution counts occurrences too.
    model_dir: checkpoints (TrainState) go to model_dir/checkpoints; when it holds one, training resumes from it.
    progress_file: where the per-epoch progress goes (default stderr; modules/progress.StepProgress).
    history: per-epoch lists of loss, seconds, pairs_per_second, hard_negatives, learning_rate + validation keys,
    and resumed_from_step (the global step the run started at; 0 for a fresh one).
    """
    hp = hparams
    tf.keras.utils.set_random_seed(hp.seed)
    nbr = np.asarray(nbr, np.int64)
    query, positive, steps = _training_pairs(hp, query, positive, pair_counts)
    builder = _batch_builder(item_features, nbr, w, positive, hp, hard_neg_pools, negative_weights)
    spec = feature_spec or features_lib.feature_spec_from_arrays(item_features)
    model = build_model(hp, spec, num_items=nbr.shape[0], text_vocab_size=_text_vocab_size(item_features))
    query_head = build_query_head(hp)
    attach_query_head(model, query_head)
    lr = learning_rate_schedule(hp, steps * hp.epochs)
    optimizer = tf.keras.optimizers.Adam(lr)
    state = TrainState(model, optimizer, query_head, model_dir, hp, steps)
    out = progress_file if progress_file is not None else sys.stderr
    state.announce(out)
    writer = tf.summary.create_file_writer(log_dir) if log_dir else tf.summary.create_noop_writer()
    step_fn = make_train_step(model, optimizer, hp, query_head)
    has_pools = hard_neg_pools is not None and hp.hard_negatives
    resumed_from = state.iterations()
    for epoch in range(state.epoch + 1, hp.epochs + 1):
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
            start_step=state.step,
        )
        desc = f"[pinsage] train epoch {epoch}/{hp.epochs}"
        bar = progress_lib.StepProgress(
            steps, desc, initial=state.step, pairs_per_step=hp.batch_size, file=out, interval_s=progress_seconds
        )
        with writer.as_default():
            with bar:
                metrics = _run_epoch(ds, step_fn, lr, log_every, state, bar)
            metrics["hard_negatives"] = num_hard
            if validation_fn is not None:
                metrics.update({f"val_{k}": float(v) for k, v in validation_fn(model, epoch).items()})
            for k, v in metrics.items():
                tf.summary.scalar(f"epoch/{k}", v, step=epoch)
            writer.flush()
        state.end_epoch(epoch, metrics)
    return model, dict(state.history, resumed_from_step=resumed_from)


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
        candidate_probs=candidate_distribution(hp, positive, negative_weights, nbr.shape[0]),
    )


def candidate_distribution(hp: PinSageHParams, positive, negative_weights, num_items: int):
    """Q(v) for the log-Q correction, or None for P_n itself.

    With in-batch negatives a minibatch's candidates are drawn from two distributions: the B positives from the
    pairs' marginal P_pos (positive: the epoch's draws, repeated by count under 'count' sampling) and the S
    shared negatives from P_n. Sampled softmax is unbiased when every candidate's logit is corrected by its
    expected count in the candidate set, B P_pos(v) + S P_n(v), whichever source drew it (Yang et al., WWW 2020,
    "Mixed negative sampling"; Yi et al., RecSys 2019, for the in-batch part); correcting the positives by P_n
    alone under-corrects popular items, i.e. a popularity penalty. `logq_mixture` turns that on."""
    if not hp.logq_mixture:  # PinSageHParams refuses it without in-batch negatives
        return None
    p_pos = np.bincount(np.asarray(positive, np.int64), minlength=num_items).astype(np.float64)
    p_pos /= max(p_pos.sum(), 1.0)
    p_n = np.asarray(negative_weights, np.float64)
    p_n = p_n / p_n.sum()
    return hp.batch_size * p_pos + hp.num_negatives * p_n


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


class TrainState:
    """What a checkpoint holds, so that a run killed at any step resumes as the uninterrupted run goes on: the
    model and query head, the optimizer (Adam's moments and its iteration counter, which drives the learning
    rate), the number of epochs done, the steps done in the current one (the resumed epoch skips them: its
    batches depend only on (seed, epoch, step), modules/batches), that epoch's running loss sum and seconds, and
    the history of the epochs done (JSON). Saved every hp.checkpoint_steps steps / hp.checkpoint_seconds and at
    each epoch end, as ckpt-<global step> under model_dir/checkpoints; restored from the latest on construction.
    tf.train.CheckpointManager writes the checkpoint files first and its index last (atomically), so a kill
    during a save leaves the previous checkpoint the latest."""

    def __init__(self, model, optimizer, query_head, model_dir: str, hp: PinSageHParams, steps_per_epoch: int):
        self.hp, self.optimizer, self.steps_per_epoch = hp, optimizer, steps_per_epoch
        variables = model.trainable_variables + (query_head.trainable_variables if query_head is not None else [])
        optimizer.build(variables)  # slots exist before the restore, which then fills them at once
        self.vars = {
            "epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            "step_in_epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            "epoch_loss_sum": tf.Variable(0.0, dtype=tf.float64, trainable=False),
            "epoch_seconds": tf.Variable(0.0, dtype=tf.float64, trainable=False),
            "history": tf.Variable("{}", dtype=tf.string, trainable=False),
        }
        heads = {"query_head": query_head} if query_head is not None else {}
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, **self.vars, **heads)
        self.manager = tf.train.CheckpointManager(ckpt, os.path.join(model_dir, "checkpoints"), max_to_keep=3)
        self.restored = self.manager.latest_checkpoint
        _check_hparams(model_dir, hp, bool(self.restored))
        if self.restored:
            try:
                ckpt.restore(self.restored).assert_existing_objects_matched()
            except AssertionError as e:  # e.g. a checkpoint of an older TrainState without the position
                raise ValueError(f"{self.restored} does not match this model and TrainState: {e}") from None
        v = self.vars
        self.epoch, self.step = int(v["epoch"].numpy()), int(v["step_in_epoch"].numpy())
        self.loss_sum, self.seconds = float(v["epoch_loss_sum"].numpy()), float(v["epoch_seconds"].numpy())
        names = ("epoch", "loss", "seconds", "pairs_per_second", "hard_negatives", "learning_rate")
        self.history = {k: [] for k in names} | json.loads(v["history"].numpy().decode())
        self._saved = (time.perf_counter(), self.iterations())

    def announce(self, file) -> None:
        """The line a resumed run starts with (tests and logs read the step from it)."""
        if not self.restored:
            return
        where = (
            f"epoch {self.epoch + 1}/{self.hp.epochs}, step {self.step}/{self.steps_per_epoch} of it"
            if self.epoch < self.hp.epochs
            else "all epochs done"
        )
        print(
            f"[pinsage] train: resuming from {self.restored} at step {self.iterations()} ({where})",
            file=file,
            flush=True,
        )

    def iterations(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def after_step(self, loss: float, seconds: float) -> None:
        """One more step of the current epoch, `seconds` its epoch's training time so far."""
        self.step, self.loss_sum, self.seconds = self.step + 1, self.loss_sum + loss, seconds
        it, hp = self.iterations(), self.hp
        by_steps = hp.checkpoint_steps > 0 and it % hp.checkpoint_steps == 0
        by_time = hp.checkpoint_seconds > 0 and time.perf_counter() - self._saved[0] >= hp.checkpoint_seconds
        last = self.step >= self.steps_per_epoch
        if (by_steps or by_time) and not last and it != self._saved[1]:  # the epoch end saves anyway
            self.save()

    def end_epoch(self, epoch: int, metrics: dict) -> None:
        """Epoch `epoch` done with `metrics` (history entries): saved with the position at the next one's start."""
        self.history["epoch"].append(epoch)
        for k, v in metrics.items():
            self.history.setdefault(k, []).append(v)
        self.epoch, self.step, self.loss_sum, self.seconds = epoch, 0, 0.0, 0.0
        self.save()

    def save(self) -> None:
        v = self.vars
        v["epoch"].assign(self.epoch)
        v["step_in_epoch"].assign(self.step)
        v["epoch_loss_sum"].assign(self.loss_sum)
        v["epoch_seconds"].assign(self.seconds)
        v["history"].assign(json.dumps(self.history))
        it = self.iterations()
        self.manager.save(checkpoint_number=it)
        self._saved = (time.perf_counter(), it)


def _check_hparams(model_dir: str, hp: PinSageHParams, restoring: bool) -> None:
    """Writes model_dir/hparams.json; a checkpoint made under other hparams (the checkpoint interval aside) is
    not resumed from but refused, naming the directory."""
    path = files.join(model_dir, "hparams.json")
    now = hp.to_dict()
    if restoring and files.exists(path):
        before = files.read_json(path)
        ignore = ("checkpoint_steps", "checkpoint_seconds")
        diff = sorted(k for k in set(now) | set(before) if k not in ignore and now.get(k) != before.get(k))
        if diff:
            raise ValueError(
                f"{model_dir} holds a checkpoint trained with other hparams ({', '.join(diff)}): "
                "use another model_dir or delete it"
            )
    files.makedirs(model_dir)
    files.write_json(path, now, indent=1, sort_keys=True)


def _run_epoch(ds, step_fn, lr, log_every: int, state: TrainState, bar) -> dict:
    """The epoch's remaining steps (a resumed one starts at state.step); loss and learning rate summaries every
    `log_every` steps, a checkpoint when one is due. loss / seconds / pairs_per_second cover the whole epoch,
    resumed or not."""
    t0, start_seconds = time.perf_counter(), state.seconds
    for graph, labels in ds:
        loss = float(step_fn(graph, labels))
        state.after_step(loss, start_seconds + time.perf_counter() - t0)
        it = state.iterations()
        if it % log_every == 0:
            tf.summary.scalar("loss", loss, step=it)
            tf.summary.scalar("learning_rate", float(lr(it)), step=it)
        bar.update(state.loss_sum / state.step)
    secs = start_seconds + time.perf_counter() - t0
    return {
        "loss": state.loss_sum / max(state.step, 1),
        "seconds": secs,
        "pairs_per_second": state.step * state.hp.batch_size / max(secs, 1e-9),
        "learning_rate": float(lr(state.iterations())),
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
