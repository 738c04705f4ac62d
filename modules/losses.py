"""PinSage losses (§3.3) and the hard-negative curriculum.

Scores are dot products s(a, b) = z_a . z_b. Per positive pair (q, i) with negatives n: S negatives shared by the
whole minibatch (paper: 500, one [B, S] matmul instead of B*S gathers) plus H per-example hard negatives.
Masks drop accidental hits (a shared negative that is the pair's positive or query) and missing hard negatives.

- max-margin (paper): J = mean over valid (example, negative) of max(0, s(q, n) - s(q, i) + Delta).
- sampled softmax: -log softmax over [i, shared n, hard n] of s/tau at i. With the log-Q correction the
  logits of the positive and the shared negatives (both items that P_n could have drawn) get -log P_n(v)
  subtracted, as in tf.nn.sampled_softmax_loss, so popular items are not pushed down just for being sampled
  often; hard negatives come from PPR, not P_n, and are left uncorrected.
"""

from typing import Optional

import tensorflow as tf

_MASKED = -1e9


def hard_negatives_for_epoch(epoch: int, max_hard: Optional[int] = None) -> int:
    """Curriculum (§3.3): epoch 1 has no hard negatives, epoch n adds n-1 per example (optionally capped)."""
    n = max(int(epoch) - 1, 0)
    return n if max_hard is None else min(n, max_hard)


def _scores(zq, zp, zn, zh):
    pos = tf.reduce_sum(zq * zp, -1)  # [B]
    shared = tf.matmul(zq, zn, transpose_b=True)  # [B, S]
    hard = None if zh is None else tf.einsum("bd,bhd->bh", zq, zh)  # [B, H]
    return pos, shared, hard


def _ones_like_or(mask, like):
    return tf.ones_like(like) if mask is None else tf.cast(mask, like.dtype)


def max_margin_loss(zq, zp, zn, *, margin: float, zh=None, neg_mask=None, hard_mask=None):
    """zq, zp [B, d]; zn [S, d] shared negatives; zh [B, H, d] hard negatives (optional); masks 1 = keep."""
    pos, shared, hard = _scores(zq, zp, zn, zh)
    m_shared = _ones_like_or(neg_mask, shared)
    total = tf.reduce_sum(tf.nn.relu(shared - pos[:, None] + margin) * m_shared)
    count = tf.reduce_sum(m_shared)
    if hard is not None:
        m_hard = _ones_like_or(hard_mask, hard)
        total += tf.reduce_sum(tf.nn.relu(hard - pos[:, None] + margin) * m_hard)
        count += tf.reduce_sum(m_hard)
    return total / tf.maximum(count, 1.0)


def sampled_softmax_loss(
    zq, zp, zn, *, temperature: float, zh=None, neg_mask=None, hard_mask=None, pos_log_q=None, neg_log_q=None
):
    """Mean over examples of -log softmax([s(q,i), s(q,n_shared), s(q,n_hard)] / tau)[0], with optional log-Q
    correction (pos_log_q [B], neg_log_q [S]: log P_n of the positive / shared negatives)."""
    pos, shared, hard = _scores(zq, zp, zn, zh)
    pos, shared = pos / temperature, shared / temperature
    if neg_log_q is not None:
        shared -= neg_log_q[None, :]
    if pos_log_q is not None:
        pos -= pos_log_q
    cols = [pos[:, None], tf.where(_ones_like_or(neg_mask, shared) > 0, shared, _MASKED)]
    if hard is not None:
        cols.append(tf.where(_ones_like_or(hard_mask, hard) > 0, hard / temperature, _MASKED))
    logits = tf.concat(cols, 1)
    return tf.reduce_mean(tf.reduce_logsumexp(logits, 1) - logits[:, 0])


def pinsage_loss(hparams, zq, zp, zn, zh, labels):
    """The loss hparams.loss names, on a minibatch's embeddings and the labels of modules/batches."""
    zh = zh if zh is not None and zh.shape[1] != 0 else None
    hard_mask = labels.get("hard_mask") if zh is not None else None
    if hparams.loss == "max_margin":
        return max_margin_loss(
            zq, zp, zn, margin=hparams.margin, zh=zh, neg_mask=labels.get("neg_mask"), hard_mask=hard_mask
        )
    if hparams.loss == "sampled_softmax":
        corr = hparams.logq_correction
        return sampled_softmax_loss(
            zq,
            zp,
            zn,
            temperature=hparams.temperature,
            zh=zh,
            neg_mask=labels.get("neg_mask"),
            hard_mask=hard_mask,
            pos_log_q=labels.get("pos_log_q") if corr else None,
            neg_log_q=labels.get("neg_log_q") if corr else None,
        )
    raise ValueError(f"unknown loss {hparams.loss!r}: 'max_margin' or 'sampled_softmax'")
