"""modules/losses.py against a per-example numpy reference written from the paper's and TFRS's definitions."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from modules import losses
from modules.model import PinSageHParams

B, S, H, D = 4, 6, 2, 5


def _unit(rng, *shape):
    x = rng.normal(size=shape)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _batch(seed=0):
    """Embeddings and labels of a small minibatch with accidental hits of every kind."""
    rng = np.random.default_rng(seed)
    query = np.array([10, 11, 12, 13])
    positive = np.array([20, 21, 20, 11])  # example 2 shares example 0's positive; example 3's positive is query 1
    negative = np.array([30, 20, 31, 12, 32, 33])  # 20 = positive of 0 and 2; 12 = query of 2
    hard = np.array([[40, 41], [21, 42], [43, 44], [45, 10]])  # 21 = example 0's... not its own; 10 = query 0
    hard_mask = np.array([[1, 1], [0, 1], [1, 0], [1, 1]], np.float32)  # missing pools / hits the batcher masked
    neg_mask = ((negative[None, :] != positive[:, None]) & (negative[None, :] != query[:, None])).astype(np.float32)
    labels = {
        "query_id": query,
        "positive_id": positive,
        "negative_id": negative,
        "hard_id": hard,
        "neg_mask": neg_mask,
        "hard_mask": hard_mask,
        "pos_log_q": np.log(rng.uniform(0.01, 0.2, B)).astype(np.float32),
        "neg_log_q": np.log(rng.uniform(0.01, 0.2, S)).astype(np.float32),
    }
    emb = (_unit(rng, B, D), _unit(rng, B, D), _unit(rng, S, D), _unit(rng, B, H, D))
    return emb, labels


def _valid_negatives(b, lab, in_batch):
    """(kind, index) of the candidates that are negatives of example b, decided from the ids alone."""
    q, p = lab["query_id"][b], lab["positive_id"][b]
    out = [("shared", s) for s in range(S) if lab["negative_id"][s] not in (p, q)]
    out += [("hard", (b, j)) for j in range(H) if lab["hard_mask"][b, j]]
    if in_batch:
        out += [("pos", c) for c in range(B) if c != b and lab["positive_id"][c] not in (p, q)]
        out += [
            ("hard", (c, j))
            for c, j in itertools.product(range(B), range(H))
            if c != b and lab["hard_mask"][c, j] and lab["hard_id"][c, j] not in (p, q)
        ]
    return out


def reference(hp, emb, lab):
    zq, zp, zn, zh = (np.asarray(x, np.float64) for x in emb)
    log_q = {("pos", c): lab["pos_log_q"][c] for c in range(B)} | {("shared", s): lab["neg_log_q"][s] for s in range(S)}
    top = max(log_q.values())
    vec = {("pos", c): zp[c] for c in range(B)} | {("shared", s): zn[s] for s in range(S)}
    vec |= {("hard", (c, j)): zh[c, j] for c in range(B) for j in range(H)}
    total = 0.0
    for b in range(B):

        def logit(key):
            s = zq[b] @ vec[key]
            corr = (log_q.get(key, top) - top) if hp.logq_correction else 0.0  # hard: the top item's shift
            if hp.loss == "max_margin":
                return s - hp.temperature * corr  # the same correction on the score scale
            return s / hp.temperature - corr

        pos = logit(("pos", b))
        neg = sorted((logit(k) for k in _valid_negatives(b, lab, hp.in_batch_negatives)), reverse=True)
        if hp.hardest_negatives is not None:
            neg = neg[: hp.hardest_negatives]
        if hp.loss == "max_margin":
            hinge = [max(0.0, n - pos + hp.margin) for n in neg]
            if hp.margin_average == "active":
                hinge = [h for h in hinge if h > 0] or [0.0]
            total += np.mean(hinge)
        else:
            total += np.log(np.exp([pos, *neg]).sum()) - pos
    loss = total / B
    if hp.uniformity_weight:
        d2 = [((zn[a] - zn[c]) ** 2).sum() for a in range(S) for c in range(S) if a != c]
        weight = hp.uniformity_weight * (hp.temperature if hp.loss == "max_margin" else 1.0)  # the hinge's scale
        loss += weight * np.log(np.mean(np.exp(-2.0 * np.array(d2))))
    return loss


CASES = [
    dict(loss="sampled_softmax", temperature=0.1),
    dict(loss="sampled_softmax", temperature=0.1, logq_correction=False),
    dict(loss="sampled_softmax", temperature=0.1, in_batch_negatives=True),
    dict(loss="sampled_softmax", temperature=0.1, hardest_negatives=3, in_batch_negatives=True),
    dict(loss="sampled_softmax", temperature=0.1, uniformity_weight=0.5),
    dict(),  # the defaults
    dict(loss="max_margin", margin=0.3),
    dict(loss="max_margin", margin=0.3, logq_correction=False),
    dict(loss="max_margin", margin=0.3, in_batch_negatives=True),
    dict(loss="max_margin", margin=0.1, hardest_negatives=2),
    dict(loss="max_margin", margin=0.1, uniformity_weight=0.5),
    dict(loss="max_margin", margin=0.3, margin_average="all"),
    dict(loss="max_margin", margin=0.3, margin_average="active"),
    dict(loss="max_margin", margin=0.05, margin_average="active", in_batch_negatives=True),
]


@pytest.mark.parametrize(
    "overrides", CASES, ids=[",".join(f"{k}={v}" for k, v in c.items()) or "defaults" for c in CASES]
)
def test_loss_equals_the_per_example_reference(overrides):
    hp = PinSageHParams(**{"in_batch_negatives": False, "uniformity_weight": 0.0, **overrides})
    emb, lab = _batch()
    got = losses.pinsage_loss(hp, losses.retrieval_task(hp), *(tf.constant(x) for x in emb), lab)
    np.testing.assert_allclose(float(got), reference(hp, emb, lab), rtol=2e-5)


def test_the_mask_of_the_batch_by_hand():
    _, lab = _batch()
    m = np.asarray(losses.score_mask(lab, in_batch=True))
    assert m.shape == (B, B + S + B * H)
    # example 0 (query 10, positive 20): example 2's positive is also 20 (a hit), example 3's hard 10 is its query
    assert m[0, :B].tolist() == [True, True, False, True]
    assert m[0, B : B + S].tolist() == [True, False, True, True, True, True]
    assert m[0, B + S :].tolist() == [True, True, False, True, True, False, True, False]
    plain = np.asarray(losses.score_mask(lab, in_batch=False))
    assert plain[:, :B].tolist() == np.eye(B, dtype=bool).tolist()
    assert plain[1, B + S :].tolist() == [False, False, False, True, False, False, False, False]


def test_max_margin_hinge_by_hand():
    """Two negatives, one masked: only the valid one's hinge counts (0.5 - 0.8 + 0.4 = 0.1)."""
    y_true = tf.constant([[1.0, 0.0, 0.0]])
    y_pred = tf.constant([[0.8, 0.5, -3.0e36]])
    np.testing.assert_allclose(float(losses.MaxMarginLoss(0.4, average="all")(y_true, y_pred)), 0.1, rtol=1e-6)


def test_max_margin_active_average_by_hand():
    """Hinges 0.1 (0.5 - 0.8 + 0.4), 0 (0.2 - 0.8 + 0.4 < 0) and 0.3; one masked. 'all' averages over the three
    valid negatives (0.4 / 3), 'active' over the two that violate the margin (0.2); none active gives 0."""
    y_true = tf.constant([[1.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    y_pred = tf.constant([[0.8, 0.5, 0.2, 0.7, -3.0e36], [0.9, 0.1, 0.2, 0.3, 0.0]])
    np.testing.assert_allclose(
        losses.MaxMarginLoss(0.4, average="all", reduction="none")(y_true, y_pred), [0.4 / 3, 0.0]
    )
    np.testing.assert_allclose(
        losses.MaxMarginLoss(0.4, average="active", reduction="none")(y_true, y_pred), [0.2, 0.0]
    )
    with pytest.raises(ValueError, match="average"):
        losses.MaxMarginLoss(0.4, average="hardest")


def test_uniformity_is_lower_for_a_spread_set_than_a_cone():
    rng = np.random.default_rng(3)
    spread = _unit(rng, 200, 16)
    cone = _unit(rng, 200, 16) * 0.2 + np.eye(16, dtype=np.float32)[0]
    cone /= np.linalg.norm(cone, axis=1, keepdims=True)
    assert float(losses.uniformity(tf.constant(spread))) < float(losses.uniformity(tf.constant(cone))) - 1.0


def test_curriculum_schedule():
    assert [losses.hard_negatives_for_epoch(e) for e in (1, 2, 3, 6)] == [0, 1, 2, 5]
    assert losses.hard_negatives_for_epoch(6, max_hard=3) == 3


def test_loss_in_the_train_steps_graph_mode():
    """The train step is a tf.function with AutoGraph off (modules/train.py); TFRS's Retrieval must still run."""
    hp = PinSageHParams(temperature=0.1, in_batch_negatives=True, hardest_negatives=3)
    emb, lab = _batch()
    task = losses.retrieval_task(hp)
    step = tf.function(lambda *e: losses.pinsage_loss(hp, task, *e, lab), autograph=False)
    np.testing.assert_allclose(float(step(*(tf.constant(x) for x in emb))), reference(hp, emb, lab), rtol=2e-5)


def _mean_logit_gradient(hp, p_pos, p_n, log_q_probs, draws, seed):
    """Mean over minibatches of d loss / d logits for one query whose free logits are log P_pos (the full
    softmax's optimum, where its gradient is exactly 0): one-hot item embeddings, so score = logit * tau."""
    n = len(p_pos)
    rng = np.random.default_rng(seed)
    task = losses.retrieval_task(hp)
    log_q = np.log(log_q_probs / log_q_probs.sum()).astype(np.float32)
    logits = tf.Variable(np.log(p_pos).astype(np.float32))
    eye = tf.eye(n)
    total = np.zeros(n)
    for _ in range(draws):
        pos = rng.choice(n, hp.batch_size, p=p_pos)
        neg = rng.choice(n, hp.num_negatives, p=p_n)
        labels = {
            "query_id": np.full(hp.batch_size, -1),
            "positive_id": pos,
            "hard_id": np.zeros((hp.batch_size, 0), np.int64),
            "hard_mask": np.zeros((hp.batch_size, 0), np.float32),
            "neg_mask": (neg[None, :] != pos[:, None]).astype(np.float32),
            "pos_log_q": log_q[pos],
            "neg_log_q": log_q[neg],
        }
        with tf.GradientTape() as tape:
            zq = tf.repeat(logits[None, :] * hp.temperature, hp.batch_size, 0)
            loss = losses.pinsage_loss(
                hp, task, zq, tf.gather(eye, pos), tf.gather(eye, neg), tf.zeros([hp.batch_size, 0, n]), labels
            )
        total += tape.gradient(loss, logits).numpy()
    return total / draws


def test_logq_mixture_corrects_in_batch_positives():
    """With in-batch negatives the candidates come from B P_pos + S P_n: corrected by that (logq_mixture), the
    sampled softmax's expected gradient vanishes at the true conditional, as the full softmax's does; corrected
    by P_n alone, it pushes the popular items down (the popularity penalty train.candidate_distribution names)."""
    from modules import train

    n = 300  # large enough that a batch rarely repeats its own positive (accidental hits are masked)
    p_pos = 1.0 / np.arange(1, n + 1) ** 0.7  # Zipf-like popularity of the positives
    p_pos /= p_pos.sum()
    base = dict(temperature=1.0, batch_size=32, num_negatives=32, uniformity_weight=0.0, in_batch_negatives=True)
    p_n = p_pos**0.75 / (p_pos**0.75).sum()
    grads = {}
    for mixture in (False, True):
        hp = PinSageHParams(**base, logq_mixture=mixture)
        q = train.candidate_distribution(hp, np.random.default_rng(1).choice(n, 200_000, p=p_pos), p_n, n)
        if mixture:
            np.testing.assert_allclose(q / q.sum(), (32 * p_pos + 32 * p_n) / 64, atol=2e-3)
        else:
            assert q is None
            q = p_n
        grads[mixture] = _mean_logit_gradient(hp, p_pos, p_n, q, draws=150, seed=2)
    top = [g[:10].sum() for g in (grads[False], grads[True])]  # the ten most popular items' logits
    assert top[0] > 0.03  # P_n alone: the loss rises with them, so training pushes them down
    assert abs(top[1]) < 0.3 * top[0]
