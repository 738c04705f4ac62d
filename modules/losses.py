"""PinSage losses (§3.3) on TensorFlow Recommenders' retrieval task, and the hard-negative curriculum.

Scores are dot products s(a, b) = q_a . z_b of a query vector and item embeddings. Per positive pair (q, i) the
candidates are: S negatives shared by the whole minibatch (paper: 500, one [B, S] matmul instead of B*S gathers),
H per-example hard negatives (PPR), and optionally the other examples' positives and hard negatives ("in-batch"
negatives, free since they are embedded anyway). `tfrs.tasks.Retrieval` does the rest, so this module only says
which candidate counts for which example (`score_mask`):

- accidental hits (a candidate equal to the example's positive or query) and missing hard negatives are masked;
- log-Q correction: every candidate drawn from P_n (positives, shared negatives) gets -log P_n(v) added to its
  logit s / tau, as in tf.nn.sampled_softmax_loss, so popular items are not pushed down just for being sampled
  often. The max-margin loss works on the score scale, so it gets the same correction there: s - tau log P_n(v)
  (P_n^tau passed as the probability). Without it the hinge learns to rank positives above a popularity-weighted
  sample, i.e. against popularity, which the served lists and HR@10 both pay for. Retrieval clips probabilities
  at 1e-6, so they are passed relative to the largest one (a constant shift of every corrected logit, which the
  softmax ignores); hard negatives come from PPR, not P_n, and get the shift of the most likely item (no
  correction of their own);
- hardest negatives (`hardest_negatives`): TFRS's HardNegativeMining keeps each example's k highest-scoring
  negatives, so the loss is spent where the ranking is decided instead of on hundreds of easy negatives.

Losses over the resulting logits (Keras losses, mean over examples):
- max-margin (paper): per example, mean over its valid negatives of max(0, s(q, n) - s(q, i) + Delta);
- sampled softmax: -log softmax over the valid candidates of s / tau at i.

An optional uniformity term (Wang & Isola, ICML 2020, "Understanding contrastive representation learning through
alignment and uniformity on the hypersphere"): log E exp(-t ||z_a - z_b||^2) over pairs of the batch's shared
negatives, weighted by `uniformity_weight` (times tau for the max-margin loss: uniformity_scale). The softmax is
blind to a direction every item shares (it shifts all logits of a query alike), so nothing else stops the indexed
space from drifting into a narrow cone.
"""

from typing import Optional

import tensorflow as tf
import tensorflow_recommenders as tfrs
from tensorflow.python.autograph.core import ag_ctx

UNIFORMITY_T = 2.0  # the t of Wang & Isola's uniformity loss (their default)


def hard_negatives_for_epoch(epoch: int, max_hard: Optional[int] = None) -> int:
    """Curriculum (§3.3): epoch 1 has no hard negatives, epoch n adds n-1 per example (optionally capped)."""
    n = max(int(epoch) - 1, 0)
    return n if max_hard is None else min(n, max_hard)


@tf.keras.utils.register_keras_serializable(package="PinSage")
class MaxMarginLoss(tf.keras.losses.Loss):
    """PinSage's max-margin loss (§3.3, J = E_n max{0, z_q.z_n - z_q.z_i + Delta}) as a Keras loss over retrieval
    logits: y_true one-hot marks the positive, masked candidates (logit <= TFRS's MIN_FLOAT / 2) are left out.

    `average` says what each example's hinge terms are averaged over: 'all' its valid negatives (the paper's
    expectation over n), 'active' only those that violate the margin (Hermans et al. 2017, "In Defense of the
    Triplet Loss", batch-all averaging over non-zero terms): as the ranking sharpens, most of the hundreds of
    shared negatives fall inside the margin and the mean over all of them shrinks the gradient with them, which
    the softmax avoids by renormalising its weights over the candidates that still score high."""

    AVERAGES = ("all", "active")

    def __init__(self, margin: float, *, average: str, **kwargs):
        super().__init__(**kwargs)
        if average not in self.AVERAGES:
            raise ValueError(f"max-margin average must be one of {self.AVERAGES}, got {average!r}")
        self.margin = float(margin)
        self.average = average

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, y_pred.dtype)
        pos = tf.reduce_sum(y_true * y_pred, axis=1, keepdims=True)
        valid = (1.0 - y_true) * tf.cast(y_pred > tfrs.layers.loss.MIN_FLOAT / 2, y_pred.dtype)
        hinge = tf.nn.relu(y_pred - pos + self.margin) * valid
        counted = valid if self.average == "all" else tf.cast(hinge > 0, hinge.dtype)
        return tf.reduce_sum(hinge, 1) / tf.maximum(tf.reduce_sum(counted, 1), 1.0)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "average": self.average}


def retrieval_task(hparams) -> tfrs.tasks.Retrieval:
    """The TFRS retrieval task of hparams.loss (no metrics: the evaluator measures the model)."""
    if hparams.loss == "max_margin":
        loss, temperature = MaxMarginLoss(hparams.margin, average=hparams.margin_average), None
    elif hparams.loss == "sampled_softmax":
        loss = tf.keras.losses.CategoricalCrossentropy(from_logits=True)  # mean over examples (TFRS's default sums)
        temperature = hparams.temperature
    else:
        raise ValueError(f"unknown loss {hparams.loss!r}: 'max_margin' or 'sampled_softmax'")
    return tfrs.tasks.Retrieval(
        loss=loss,
        temperature=temperature,
        num_hard_negatives=hparams.hardest_negatives,
        remove_accidental_hits=False,  # score_mask does it, for the query's id as well as the positive's
        loss_metrics=[],
        batch_metrics=[],
    )


def score_mask(labels, *, in_batch: bool) -> tf.Tensor:
    """[B, B + S + B*H] bool: which of the candidates [positives; shared negatives; hard negatives (row-major
    [B, H])] count for each example. Its own positive always; shared negatives by labels['neg_mask']; its own
    hard negatives by labels['hard_mask']; with `in_batch`, the other examples' positives and valid hard negatives
    too, unless they are its positive or query (accidental hits)."""
    q, p = labels["query_id"], labels["positive_id"]
    b = tf.shape(p)[0]
    hard_id, hard_ok = labels["hard_id"], labels["hard_mask"] > 0
    h = tf.shape(hard_id)[1]
    hard_id, hard_ok = tf.reshape(hard_id, [-1]), tf.reshape(hard_ok, [-1])
    own = tf.eye(b, dtype=tf.bool)
    own_hard = tf.repeat(own, h, axis=1) & hard_ok[None, :]
    if in_batch:

        def not_hit(ids):
            return (ids[None, :] != p[:, None]) & (ids[None, :] != q[:, None])

        positives = own | not_hit(p)
        hard = own_hard | (not_hit(hard_id) & hard_ok[None, :])
    else:
        positives, hard = own, own_hard
    return tf.concat([positives, labels["neg_mask"] > 0, hard], axis=1)


def candidate_probabilities(labels, hparams) -> tf.Tensor:
    """[B + S + B*H] P_n of each candidate relative to the largest (1 for the hard negatives), to the power tau
    for the max-margin loss (its logits are unscaled scores); see the module docstring."""
    log_q = tf.concat([labels["pos_log_q"], labels["neg_log_q"]], 0)
    power = hparams.temperature if hparams.loss == "max_margin" else 1.0
    rel = tf.exp(power * (log_q - tf.reduce_max(log_q)))
    return tf.concat([rel, tf.ones([tf.size(labels["hard_id"])], rel.dtype)], 0)


def uniformity(z, t: float = UNIFORMITY_T) -> tf.Tensor:
    """log mean over pairs a != b of exp(-t ||z_a - z_b||^2) (Wang & Isola's L_uniform) of the rows of z."""
    sq = tf.reduce_sum(z * z, 1)
    d2 = tf.maximum(sq[:, None] + sq[None, :] - 2.0 * tf.matmul(z, z, transpose_b=True), 0.0)
    n = tf.shape(z)[0]
    off = tf.logical_not(tf.eye(n, dtype=tf.bool))
    return tf.reduce_logsumexp(tf.boolean_mask(-t * d2, off)) - tf.math.log(tf.cast(n * (n - 1), z.dtype))


def pinsage_loss(hparams, task, zq, zp, zn, zh, labels):
    """The loss hparams names, on a minibatch's query vectors zq [B, d], positives zp [B, d], shared negatives
    zn [S, d], hard negatives zh [B, H, d] and the labels of modules/batches; `task` = retrieval_task(hparams)."""
    d = tf.shape(zp)[1]
    candidates = tf.concat([zp, zn, tf.reshape(zh, [-1, d])], 0)
    corrected = hparams.logq_correction
    # Retrieval.call uses len() on a shape tensor, which only AutoGraph's conversion makes valid in a graph; the
    # train step runs with AutoGraph off (modules/train.py), so it is switched on for this one layer.
    with ag_ctx.ControlStatusCtx(status=ag_ctx.Status.ENABLED):
        loss = _call_task(task, zq, candidates, labels, hparams, corrected)
    if hparams.uniformity_weight:
        loss += uniformity_scale(hparams) * uniformity(zn)
    return loss


def uniformity_scale(hparams) -> float:
    """The uniformity term's weight. `uniformity_weight` is set against the softmax, whose logits are s / tau;
    the hinge works on s itself, so its gradients are about tau times the softmax's and the same weight would let
    the uniformity term dominate it: for max-margin the weight is scaled by tau, as its log-Q correction is."""
    scale = hparams.temperature if hparams.loss == "max_margin" else 1.0
    return hparams.uniformity_weight * scale


def _call_task(task, zq, candidates, labels, hparams, corrected):
    return task(
        zq,
        candidates,
        candidate_sampling_probability=candidate_probabilities(labels, hparams) if corrected else None,
        score_mask=score_mask(labels, in_batch=hparams.in_batch_negatives),
        compute_metrics=False,
        compute_batch_metrics=False,
    )
