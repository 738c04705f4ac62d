"""The context tower: a context's history of items -> a query vector u_c in the item tower's space.

A context (a person, a board, a playlist, a cart) is the list of items it engaged with, oldest first. The tower reads
its most recent L items through the item tower's L2-normalised embeddings z (so new items and new contexts work
without retraining) and returns a unit vector u_c; recommendations are u_c . z_i / temperature over the same index.

Two forms:
- **sequence** (ordered histories): SASRec (Kang & McAuley, ICDM 2018, "Self-attentive sequential recommendation")
  as PinnerFormer uses it over PinSage vectors (Pancha et al., KDD 2022, "PinnerFormer: sequence modeling for user
  representation at Pinterest"): learned recency embeddings, causal self-attention blocks, the output at the most
  recent position; trained with PinnerFormer's dense all-action loss (the next item predicted at every position).
- **set** (order-free collections): attention pooling, a learned query vector attending over the projected items
  (stacked like a Set Transformer's pooling by multihead attention, Lee et al., ICML 2019); no positions, so the
  output is invariant to the order of the history by construction.

Inputs: `history` [B, L] int node ids, left-padded with -1 (the last slot is the most recent item) and optional
`weights` [B, L] (per-event weight, 0 on padding). A slot whose id is outside the item table or whose weight is 0
is never attended to; a weight w > 0 adds log w to every attention logit towards its slot, so w multiplies the
attention that event gets. Positions count back from the row's end (0 = most recent), so a history gives the same
u_c whatever the length of the padded row it sits in. A history with no usable item gets u_c = 0.

`item_input='id'` swaps z for free learned id embeddings (the SASRec-like ablation: not inductive, ids beyond the
training catalogue are unknown); `adapter=True` adds a learned residual map on the candidate side,
z' = normalise(z + W z), and then the index must be built from `ContextTower.item_vectors()`.
"""

import dataclasses
import json
import math
import sys
import time
import weakref
from typing import Optional, TextIO

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
from tensorflow.python.autograph.core import ag_ctx

from modules import progress as progress_lib
from schema import files

FORMS = ("sequence", "set")
ITEM_INPUTS = ("embedding", "id")
# 'softmax': over the whole catalogue when it has at most full_softmax_max_items items, else sampled with log-Q
# correction; 'full_softmax' / 'sampled_softmax' force one.
LOSSES = ("softmax", "full_softmax", "sampled_softmax")
_NEG = -1e9  # the additive attention bias of a masked slot: exp() of it is 0 in float32


@dataclasses.dataclass(frozen=True)
class ContextTowerConfig:
    """The context tower's shape and training; every default is argued from the model, not from one dataset."""

    form: str = "auto"  # 'sequence' | 'set' | 'auto' (the pipeline picks on validation; the library needs one)
    max_len: int = 50  # L: recent intent spans tens of events, and attention costs grow as L^2
    hidden_dim: Optional[int] = None  # attention width; None: the item embedding's d (no rank lost on the way in)
    num_layers: int = 2  # attention blocks: two lets an item's meaning depend on the others, more overfits sparse data
    num_heads: int = 2  # a couple of heads read different aspects; each keeps width / heads dimensions
    dropout: float = 0.2  # histories are few next to the weights of a transformer: regularise
    item_input: str = "embedding"  # 'embedding': the item tower's frozen z (inductive); 'id': learned ids (ablation)
    adapter: bool = False  # off: candidates are z itself, so the tower shares the item tower's index unchanged
    temperature: float = 0.05  # unit vectors score in [-1, 1]; 1 / tau sets how peaked the softmax over them can be
    loss: str = "softmax"  # see LOSSES
    full_softmax_max_items: int = 16384  # the [examples, N] logits of a batch stay within a few hundred MB
    num_negatives: int = 1024  # sampled softmax: shared negatives per batch, besides the batch's other targets
    dense_all_action: bool = True  # a target at every position: every event trains, not one per window
    batch_size: int = 128  # windows per step (x L targets each with dense_all_action)
    learning_rate: float = 1e-3  # Adam's default, the usual rate for small transformers
    epochs: int = 20  # passes over the windows; validation keeps the best epoch when it is given
    patience: int = 3  # with validation: stop after this many epochs without a better HR@10 (0: never early)
    max_steps: int = 1000  # a compute budget in optimizer steps (a few thousand items train in minutes on 2 cores)
    keep_best: bool = True  # with validation: return the weights of the epoch with the best HR@10
    seed: int = 0

    def __post_init__(self):
        _check_choice("form", self.form, FORMS + ("auto",))
        _check_choice("item_input", self.item_input, ITEM_INPUTS)
        _check_choice("loss", self.loss, LOSSES)
        for name in ("max_len", "num_layers", "num_heads", "batch_size", "epochs", "full_softmax_max_items"):
            _check_int(name, getattr(self, name), 1)
        _check_int("max_steps", self.max_steps, 1)
        _check_int("patience", self.patience, 0)
        _check_int("num_negatives", self.num_negatives, 1)
        _check_int("seed", self.seed, None)
        if self.hidden_dim is not None:
            _check_int("hidden_dim", self.hidden_dim, 1)
            if self.hidden_dim % self.num_heads:
                raise ValueError(f"hidden_dim ({self.hidden_dim}) must be a multiple of num_heads ({self.num_heads})")
        if not (_is_number(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        for name in ("temperature", "learning_rate"):
            v = getattr(self, name)
            if not (_is_number(v) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name in ("adapter", "dense_all_action", "keep_best"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ContextTowerConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown context tower config keys: {sorted(unknown)}")
        return cls(**d)

    def uses_full_softmax(self, num_items: int) -> bool:
        """Whether training scores every item (else a sampled softmax with log-Q correction)."""
        if self.loss == "softmax":
            return num_items <= self.full_softmax_max_items
        return self.loss == "full_softmax"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_int(name: str, value, minimum: Optional[int]) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _concrete_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS} here, got {form!r} ('auto' is resolved by the caller)")
    return form


@tf.keras.utils.register_keras_serializable(package="PinSage")
class BiasedMultiHeadAttention(tf.keras.layers.MultiHeadAttention):
    """tf.keras MultiHeadAttention whose `attention_mask` is a float bias [B, T, S] added to the attention logits
    (0: attend as usual, log w: weight w, a large negative: masked) instead of a boolean mask."""

    def _masked_softmax(self, attention_scores, attention_mask=None):
        if attention_mask is None:
            return super()._masked_softmax(attention_scores, attention_mask)
        # The stock layer only takes a boolean mask; a per-key log-weight needs an additive bias (heads axis 1).
        bias = tf.expand_dims(tf.cast(attention_mask, attention_scores.dtype), axis=1)
        return tf.nn.softmax(attention_scores + bias, axis=-1)


@tf.keras.utils.register_keras_serializable(package="PinSage")
class AttentionBlock(tf.keras.layers.Layer):
    """A pre-norm transformer block: x + Dropout(MHA(LN(x), kv, bias)), then + Dropout(FFN(LN(.))).

    kv is LN(x) itself (self-attention, the sequence form) or a fixed `context` (the set form's query attending
    over the items). The feed-forward is two Dense layers of the block's width (ReLU between), as in SASRec."""

    def __init__(self, *, width: int, num_heads: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self._width, self._num_heads, self._dropout = int(width), int(num_heads), float(dropout)
        self._norm_attention = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="norm_attention")
        self._attention = BiasedMultiHeadAttention(
            num_heads=num_heads, key_dim=width // num_heads, dropout=dropout, name="attention"
        )
        self._norm_ffn = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="norm_ffn")
        self._ffn_in = tf.keras.layers.Dense(width, activation="relu", name="ffn_in")
        self._ffn_out = tf.keras.layers.Dense(width, name="ffn_out")
        self._drop = tf.keras.layers.Dropout(dropout)

    def get_config(self):
        return {**super().get_config(), "width": self._width, "num_heads": self._num_heads, "dropout": self._dropout}

    def call(self, x, context=None, bias=None, training=None):
        q = self._norm_attention(x)
        kv = q if context is None else context
        x = x + self._drop(self._attention(q, kv, attention_mask=bias, training=training), training=training)
        return x + self._drop(self._ffn_out(self._ffn_in(self._norm_ffn(x))), training=training)


@tf.keras.utils.register_keras_serializable(package="PinSage")
class FrozenItemTable(tf.keras.layers.Layer):
    """The item tower's embeddings z [N, d] as a non-trainable table whose row count may change (`assign`), so
    items added after training are looked up like the others. Ids outside [0, N) give a zero row."""

    def __init__(self, *, num_items: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self._num_items, self._dim = int(num_items), int(dim)
        self.table = tf.Variable(
            tf.zeros([self._num_items, self._dim]),
            trainable=False,
            shape=tf.TensorShape([None, self._dim]),
            name="item_embeddings",
        )

    def get_config(self):
        return {**super().get_config(), "num_items": self._num_items, "dim": self._dim}

    def assign(self, z) -> None:
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self._dim:
            raise ValueError(f"item embeddings must be [N, {self._dim}], got shape {z.shape}")
        self.table.assign(z)

    def rows(self, out_type=tf.int64) -> tf.Tensor:
        """N, read from the variable's handle: tf.shape(table) would read the whole table, and once a gather has
        put the variable in copy-on-read mode every full read copies it (two [N, d] copies per call)."""
        return tf.raw_ops.VariableShape(input=self.table.handle, out_type=out_type)[0]

    def call(self, ids):
        known = (ids >= 0) & (ids < self.rows(ids.dtype))
        rows = tf.gather(self.table, tf.where(known, ids, tf.zeros_like(ids)))
        return rows * tf.cast(known, rows.dtype)[..., None]


@tf.keras.utils.register_keras_serializable(package="PinSage")
class ResidualAdapter(tf.keras.layers.Layer):
    """z' = normalise(z + W z), W initialised at 0 so that training starts from the item tower's own index."""

    def __init__(self, *, dim: int, **kwargs):
        super().__init__(**kwargs)
        self._dim = int(dim)
        self._map = tf.keras.layers.Dense(self._dim, use_bias=False, kernel_initializer="zeros", name="map")

    def get_config(self):
        return {**super().get_config(), "dim": self._dim}

    def build(self, input_shape):
        self._map.build(input_shape)
        super().build(input_shape)

    def call(self, z):
        return tf.math.l2_normalize(z + self._map(z), axis=-1)


@tf.keras.utils.register_keras_serializable(package="PinSage")
class ContextTower(tf.keras.Model):
    """History [B, L] (+ optional weights) -> u_c [B, d], unit vectors in the item tower's space.

    sequence form (SASRec, Kang & McAuley 2018; PinnerFormer, Pancha et al. 2022): x_t = P z_t + recency embedding,
    `num_layers` AttentionBlocks of causal self-attention, LayerNorm, then Dense to d and L2 normalisation; u_c is
    the output at the last slot, `call_dense` returns every slot's (slot t sees slots <= t only).
    set form: a learned query attends over LN(P z_t) through `num_layers` AttentionBlocks (cross-attention and
    feed-forward on the query only), then the same output head; `call_dense` gives slot t the pooling of slots <= t.
    Scores: `logits(u)` = u . item_vectors()^T / temperature.
    """

    def __init__(
        self,
        *,
        form: str,
        num_items: int,
        item_dim: int,
        max_len: int = 50,
        hidden_dim: Optional[int] = None,
        num_layers: int = 2,
        num_heads: int = 2,
        dropout: float = 0.2,
        item_input: str = "embedding",
        adapter: bool = False,
        temperature: float = 0.05,
        **kwargs,
    ):
        kwargs.setdefault("name", "context_tower")
        super().__init__(**kwargs)
        _check_choice("item_input", item_input, ITEM_INPUTS)
        self._tower_config = dict(
            form=_concrete_form(form),
            num_items=int(num_items),
            item_dim=int(item_dim),
            max_len=int(max_len),
            hidden_dim=None if hidden_dim is None else int(hidden_dim),
            num_layers=int(num_layers),
            num_heads=int(num_heads),
            dropout=float(dropout),
            item_input=item_input,
            adapter=bool(adapter),
            temperature=float(temperature),
        )
        self.form, self.max_len, self.temperature = form, int(max_len), float(temperature)
        width = hidden_dim or item_dim
        if item_input == "embedding":
            self._items = FrozenItemTable(num_items=num_items, dim=item_dim, name="items")
        else:
            self._items = tf.keras.layers.Embedding(num_items, item_dim, name="item_ids")
            self._items.build((None,))
        self._adapter = ResidualAdapter(dim=item_dim, name="adapter") if adapter else None
        if self._adapter is not None:
            self._adapter.build((None, item_dim))  # used outside call (item_vectors): built with the rest
        self._project = tf.keras.layers.Dense(width, name="project")
        self._input_drop = tf.keras.layers.Dropout(dropout)
        if form == "sequence":
            self._positions = tf.keras.layers.Embedding(max_len, width, name="recency")
        else:
            self._norm_items = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="norm_items")
            self._query = self.add_weight(
                name="query", shape=[1, 1, width], initializer=tf.keras.initializers.RandomNormal(stddev=0.02)
            )
        self._blocks = [
            AttentionBlock(width=width, num_heads=num_heads, dropout=dropout, name=f"block_{k + 1}")
            for k in range(num_layers)
        ]
        self._norm_out = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="norm_out")
        self._output = tf.keras.layers.Dense(item_dim, name="output")

    def get_config(self):
        return {"name": self.name, **self._tower_config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def num_items(self) -> tf.Tensor:
        """Rows of the item table now (it grows with `set_item_embeddings` in the embedding form)."""
        if isinstance(self._items, FrozenItemTable):
            return self._items.rows()
        return tf.constant(self._tower_config["num_items"], tf.int64)

    def set_item_embeddings(self, z) -> None:
        """Replaces the frozen table by z [N', d] (more rows: new items become usable without retraining)."""
        if not isinstance(self._items, FrozenItemTable):
            raise ValueError("item_input='id' has no item embedding table to replace")
        self._items.assign(_unit_rows(z))

    def item_vectors(self, ids=None) -> tf.Tensor:
        """The candidates' vectors [N, d] (or of `ids`): z, normalised learned ids, or the adapter's z'."""
        if isinstance(self._items, FrozenItemTable):
            base = self._items.table
        else:
            base = tf.math.l2_normalize(self._items.embeddings, axis=-1)
        if ids is not None:
            base = tf.gather(base, ids)
        return base if self._adapter is None else self._adapter(base)

    def logits(self, u) -> tf.Tensor:
        """u [B, d] -> [B, N] scores u . z_i / temperature over every item."""
        return tf.matmul(u, self.item_vectors(), transpose_b=True) / self.temperature

    def call(self, inputs, training=None):
        return self._encode(inputs, training, dense=False)

    def call_dense(self, inputs, training=None):
        """[B, L, d]: slot t's query vector from slots <= t (the dense all-action outputs)."""
        return self._encode(inputs, training, dense=True)

    def _read_inputs(self, inputs):
        """(ids [B, L] int64, valid [B, L] bool, log-weight bias [B, L])."""
        w = None
        if isinstance(inputs, dict):
            ids, w = inputs["history"], inputs.get("weights")
        else:
            ids = inputs
        ids = tf.cast(ids, tf.int64)
        w = tf.ones(tf.shape(ids), tf.float32) if w is None else tf.cast(w, tf.float32)
        valid = (ids >= 0) & (ids < self.num_items()) & (w > 0)
        return ids, valid, tf.where(valid, tf.math.log(tf.where(valid, w, 1.0)), _NEG)

    def _lookup(self, ids):
        if isinstance(self._items, FrozenItemTable):
            return self._items(ids)
        known = (ids >= 0) & (ids < self._tower_config["num_items"])
        rows = tf.gather(self._items.embeddings, tf.where(known, ids, tf.zeros_like(ids)))
        return rows * tf.cast(known, rows.dtype)[..., None]

    def _encode(self, inputs, training, dense: bool):
        ids, valid, log_w = self._read_inputs(inputs)
        x = self._project(self._lookup(ids)) * tf.cast(valid, tf.float32)[..., None]
        length = tf.shape(ids)[1]
        causal = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)  # [query t, key s]: s <= t
        causal_bias = tf.where(causal[None], log_w[:, None, :], _NEG)
        if self.form == "sequence":
            recency = tf.minimum(tf.range(length - 1, -1, -1), self.max_len - 1)
            x = self._input_drop(x + self._positions(recency)[None], training=training)
            for block in self._blocks:
                x = block(x, bias=causal_bias, training=training)
            h = x if dense else x[:, -1:]
        else:
            items = self._norm_items(self._input_drop(x, training=training))
            h = tf.tile(self._query, [tf.shape(ids)[0], length if dense else 1, 1])
            bias = causal_bias if dense else log_w[:, None, :]
            for block in self._blocks:
                h = block(h, context=items, bias=bias, training=training)
        u = tf.math.l2_normalize(self._output(self._norm_out(h)), axis=-1)
        if dense:
            seen = tf.cumsum(tf.cast(valid, tf.float32), axis=1) > 0  # slot t has a usable item at or before it
        else:
            seen = tf.reduce_any(valid, axis=1, keepdims=True)
        u = u * tf.cast(seen, u.dtype)[..., None]  # no usable item: u_c = 0 (every item scores 0)
        return u if dense else u[:, 0]


def _unit_rows(z) -> np.ndarray:
    z = np.asarray(z, np.float32)
    if z.ndim != 2:
        raise ValueError(f"item embeddings must be a 2-d [N, d] array, got shape {z.shape}")
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def build_context_tower(config: ContextTowerConfig, item_embeddings) -> ContextTower:
    """The (untrained) tower of `config` over the item tower's embeddings z [N, d] (rows L2-normalised here)."""
    z = _unit_rows(item_embeddings)
    model = ContextTower(
        form=config.form,
        num_items=z.shape[0],
        item_dim=z.shape[1],
        max_len=config.max_len,
        hidden_dim=config.hidden_dim,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        dropout=config.dropout,
        item_input=config.item_input,
        adapter=config.adapter,
        temperature=config.temperature,
    )
    if config.item_input == "embedding":
        model.set_item_embeddings(z)
    model(np.full((1, config.max_len), -1, np.int64))  # builds every weight
    return model


def pad_histories(histories, max_len: int, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """(ids [M, max_len] int64, -1 padded on the left, weights [M, max_len] float32, 0 on padding) of the last
    max_len items of each history (oldest first); `weights`: per-event weights aligned with the histories
    (default 1)."""
    m = len(histories)
    ids = np.full((m, max_len), -1, np.int64)
    out_w = np.zeros((m, max_len), np.float32)
    for r, h in enumerate(histories):
        h = np.asarray(h, np.int64).reshape(-1)
        n = min(len(h), max_len)
        if n:
            ids[r, max_len - n :] = h[-n:]
            out_w[r, max_len - n :] = 1.0 if weights is None else np.asarray(weights[r], np.float32).reshape(-1)[-n:]
    return ids, out_w


_INFERENCE_FNS: "weakref.WeakKeyDictionary[ContextTower, object]" = weakref.WeakKeyDictionary()


def _inference_fn(model: ContextTower):
    """One traced inference function per model (a new tf.function per call would retrace every time)."""
    fn = _INFERENCE_FNS.get(model)
    if fn is None:
        spec = tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None, None], tf.float32)
        fn = _INFERENCE_FNS[model] = tf.function(
            lambda i, v: model({"history": i, "weights": v}, training=False), input_signature=spec, autograph=False
        )
    return fn


def query_vectors(model: ContextTower, histories, weights=None, batch_size: int = 1024) -> np.ndarray:
    """[M, d] float32 u_c of each history (a list of id arrays, oldest first). Ids outside the item table are
    dropped before the last max_len items are taken; a history with no known item gets 0."""
    n = int(model.num_items())
    kept, kept_w = [], None if weights is None else []
    for r, h in enumerate(histories):
        h = np.asarray(h, np.int64).reshape(-1)
        known = (h >= 0) & (h < n)
        kept.append(h[known])
        if kept_w is not None:
            kept_w.append(np.asarray(weights[r], np.float32).reshape(-1)[known])
    ids, w = pad_histories(kept, model.max_len, kept_w)
    fn = _inference_fn(model)
    out = [fn(ids[lo : lo + batch_size], w[lo : lo + batch_size]).numpy() for lo in range(0, len(ids), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.item_vectors().shape[1]), np.float32)


def training_examples(histories, max_len: int, dense: bool) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [E, max_len] int64, -1 padded, targets) from the train sequences (oldest first).

    dense: each sequence cut from its end into windows of max_len + 1 items; a window's input is its first
    max_len items and its targets [E, max_len] the next item at every slot (-1 where there is none), so every
    event but the first of a sequence is a target exactly once. Otherwise every prefix (its last max_len items)
    with the next item as target [E]."""
    inputs, targets = [], []
    for s in histories:
        s = np.asarray(s, np.int64).reshape(-1)
        if dense:
            for end in range(len(s), 1, -max_len):
                window = s[max(0, end - max_len - 1) : end]
                inputs.append(window[:-1])
                targets.append(window[1:])
        else:
            for t in range(1, len(s)):
                inputs.append(s[max(0, t - max_len) : t])
                targets.append(s[t])
    x, _ = pad_histories(inputs, max_len)
    if dense:
        return x, pad_histories(targets, max_len)[0]
    return x, np.asarray(targets, np.int64)


def _loss_fn(model: ContextTower, config: ContextTowerConfig, num_items: int, targets: np.ndarray):
    """loss(u [R, d], target [R], step): softmax cross-entropy of each target over the catalogue (full), or
    TFRS Retrieval's over the batch's targets plus `num_negatives` shared items drawn from the targets'
    (add-one smoothed) frequency, with log-Q correction and accidental hits removed (sampled)."""
    if config.uses_full_softmax(num_items):

        def full(u, target, step):
            del step
            logits = model.logits(u)
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(target, logits))

        return full
    counts = np.bincount(targets[targets >= 0], minlength=num_items).astype(np.float64) + 1.0
    log_p = tf.constant(np.log(counts / counts.sum())[None, :], tf.float32)
    # in-batch targets and shared negatives come from the same distribution, so one Q (relative to its maximum:
    # TFRS clips probabilities at 1e-6) corrects both
    rel_q = tf.constant(counts / counts.max(), tf.float32)
    task = tfrs.tasks.Retrieval(
        loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True),  # mean over examples (TFRS's sums)
        temperature=config.temperature,
        remove_accidental_hits=True,
        loss_metrics=[],
        batch_metrics=[],
    )

    def sampled(u, target, step):
        seed = tf.stack([tf.constant(config.seed, tf.int64), tf.cast(step, tf.int64)])
        negatives = tf.random.stateless_categorical(log_p, config.num_negatives, seed=seed, dtype=tf.int64)[0]
        ids = tf.concat([tf.cast(target, tf.int64), negatives], 0)
        # Retrieval.call takes len() of a shape tensor, valid in a graph only under AutoGraph: on for this layer.
        with ag_ctx.ControlStatusCtx(status=ag_ctx.Status.ENABLED):
            return task(
                u,
                model.item_vectors(ids),
                candidate_sampling_probability=tf.gather(rel_q, ids),
                candidate_ids=ids,
                compute_metrics=False,
                compute_batch_metrics=False,
            )

    return sampled


def _make_step(model: ContextTower, optimizer, loss_fn, max_len: int, dense: bool):
    # No tensor-dependent Python control flow in the tower: AutoGraph's conversion would only cost tracing time.
    spec = (tf.TensorSpec([None, max_len], tf.int64), tf.TensorSpec([None, max_len] if dense else [None], tf.int64))

    @tf.function(input_signature=spec, autograph=False)
    def step(history, target):
        with tf.GradientTape() as tape:
            if dense:
                keep = target >= 0
                u = tf.boolean_mask(model.call_dense(history, training=True), keep)
                target = tf.boolean_mask(target, keep)
            else:
                u = model(history, training=True)
            loss = loss_fn(u, target, optimizer.iterations)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def hit_rate(model: ContextTower, histories, targets, k: int = 10, batch_size: int = 1024) -> float:
    """HR@k of the targets among every item, the history's own items masked (the target is ranked even if it is
    one of them), ties in score to the lower node id."""
    targets = np.asarray(targets, np.int64)
    if not len(targets):
        return float("nan")
    u = query_vectors(model, histories, batch_size=batch_size)
    z = model.item_vectors().numpy()
    hits = 0
    for lo in range(0, len(u), batch_size):
        s = u[lo : lo + batch_size] @ z.T
        t = targets[lo : lo + batch_size]
        rows = np.arange(len(t))
        s_t = s[rows, t].copy()
        for r in rows:
            h = np.asarray(histories[lo + r], np.int64)
            s[r, h[(h >= 0) & (h < s.shape[1]) & (h != t[r])]] = -np.inf
        above = (s > s_t[:, None]) | ((s == s_t[:, None]) & (np.arange(s.shape[1])[None, :] < t[:, None]))
        hits += int(np.count_nonzero(above.sum(1) < k))
    return hits / len(targets)


class _TowerState:
    """What a checkpoint of the tower's training holds, so that a killed run resumes at the last epoch end: the
    model, the optimizer (Adam's moments and its iteration counter, which also seeds the sampled negatives), the
    epochs and steps done, the early-stopping state (best HR@10, its epoch, epochs since) with the best epoch's
    weights, and the per-epoch history (JSON). Saved at each epoch end as ckpt-<epoch> under checkpoint_dir by
    tf.train.CheckpointManager, which writes its index last, so a kill during a save leaves the previous one."""

    def __init__(self, model, optimizer, config: ContextTowerConfig, checkpoint_dir: Optional[str]):
        self.epoch, self.done, self.since_best = 0, 0, 0
        self.best_hr, self.best_epoch, self.best_weights = -1.0, None, None
        self.history = {"epoch": [], "loss": [], "seconds": [], "examples_per_second": []}
        self.restored, self._manager, self._model = None, None, model
        if checkpoint_dir is None:
            return
        _check_checkpoint_config(checkpoint_dir, config)
        self._vars = {
            "epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            "done": tf.Variable(0, dtype=tf.int64, trainable=False),
            "since_best": tf.Variable(0, dtype=tf.int64, trainable=False),
            "best_hr": tf.Variable(-1.0, dtype=tf.float64, trainable=False),
            "best_epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            "history": tf.Variable("{}", dtype=tf.string, trainable=False),
        }
        # the best epoch's weights, kept beside the current ones (a list of variables tracks as a checkpoint node)
        self._best = [tf.Variable(w, trainable=False, shape=tf.TensorShape(None)) for w in model.get_weights()]
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, best=self._best, **self._vars)
        self._manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=1)
        self.restored = self._manager.latest_checkpoint
        if self.restored:
            ckpt.restore(self.restored).assert_existing_objects_matched()
            v = self._vars
            self.epoch, self.done = int(v["epoch"].numpy()), int(v["done"].numpy())
            self.since_best, self.best_hr = int(v["since_best"].numpy()), float(v["best_hr"].numpy())
            self.best_epoch = int(v["best_epoch"].numpy()) or None
            self.history = json.loads(v["history"].numpy().decode())
            if self.best_epoch is not None and config.keep_best:
                self.best_weights = [b.numpy() for b in self._best]

    def end_epoch(self, metrics: dict, steps: int, config: ContextTowerConfig) -> None:
        self.epoch, self.done = metrics["epoch"], self.done + steps
        for key, v in metrics.items():
            self.history.setdefault(key, []).append(v)
        hr = metrics.get("val_hr@10")
        if hr is not None:
            self.since_best = 0 if hr > self.best_hr else self.since_best + 1
            if hr > self.best_hr:
                self.best_hr, self.best_epoch = hr, self.epoch
                self.best_weights = self._model.get_weights() if config.keep_best else None
        if self._manager is not None:
            self._save()

    def _save(self) -> None:
        v = self._vars
        for name, value in (("epoch", self.epoch), ("done", self.done), ("since_best", self.since_best)):
            v[name].assign(value)
        v["best_hr"].assign(self.best_hr)
        v["best_epoch"].assign(self.best_epoch or 0)
        v["history"].assign(json.dumps(self.history))
        if self.best_weights is not None:
            for b, w in zip(self._best, self.best_weights):
                b.assign(w)
        self._manager.save(checkpoint_number=self.epoch)

    def finished(self, config: ContextTowerConfig) -> bool:
        stalled = config.patience and self.best_epoch is not None and self.since_best >= config.patience
        return self.epoch >= config.epochs or self.done >= config.max_steps or bool(stalled)


def _check_checkpoint_config(checkpoint_dir: str, config: ContextTowerConfig) -> None:
    """Writes checkpoint_dir/config.json; a checkpoint of another config is refused, naming the directory."""
    files.makedirs(checkpoint_dir)
    path = files.join(checkpoint_dir, "config.json")
    now = config.to_dict()
    if files.exists(path):
        before = files.read_json(path)
        diff = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
        if diff and tf.train.latest_checkpoint(checkpoint_dir):
            raise ValueError(
                f"{checkpoint_dir} holds a context tower checkpoint of another config ({', '.join(diff)}): "
                "use another directory or delete it"
            )
    files.write_json(path, now, indent=1, sort_keys=True)


def _epoch_dataset(x, y, config: ContextTowerConfig, epoch: int):
    """Epoch `epoch`'s batches: a shuffle seeded by (seed, epoch), so a resumed run sees the batches the
    uninterrupted one would."""
    return (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=config.seed * 1_000_003 + epoch, reshuffle_each_iteration=False)
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def train_context_tower(
    histories,
    item_embeddings,
    config: ContextTowerConfig,
    validation=None,
    progress: Optional[TextIO] = None,
    checkpoint_dir: Optional[str] = None,
):
    """Trains the context tower on the train sequences; returns (model, history).

    histories: one int array of node ids per context, oldest first (train split only); item_embeddings: the item
    tower's z [N, d]; validation: (histories, targets) scored by HR@10 after each epoch (with config.keep_best,
    the returned model holds the best epoch's weights, and `patience` epochs without a better one stop training);
    training also stops after `max_steps` optimizer steps; progress: where the per-epoch step line goes (stderr);
    checkpoint_dir: a checkpoint at each epoch end goes there, and a run finding one resumes from it (_TowerState).
    history: per-epoch lists epoch, loss, seconds, examples_per_second (+ val_hr@10), best_epoch, steps and
    resumed_from_epoch (0: a fresh run).
    Deterministic for a seed on one machine: seeded initialisation, shuffles, dropout and negatives; a resumed run
    equals the uninterrupted one when dropout is 0 (dropout's random state is not checkpointed)."""
    _concrete_form(config.form)
    tf.keras.utils.set_random_seed(config.seed)
    model = build_context_tower(config, item_embeddings)
    x, y = training_examples(histories, config.max_len, config.dense_all_action)
    if not len(x):
        raise ValueError("no training examples: every history has fewer than 2 items")
    optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    optimizer.build(model.trainable_variables)  # slots made here: the step is then traced once, not twice
    step = _make_step(
        model, optimizer, _loss_fn(model, config, int(model.num_items()), y), config.max_len, config.dense_all_action
    )
    state = _TowerState(model, optimizer, config, checkpoint_dir)
    out = progress if progress is not None else sys.stderr
    resumed_from = state.epoch
    if state.restored:
        print(f"[pinsage] context tower: resuming from {state.restored} after epoch {state.epoch}", file=out)
    steps = -(-len(x) // config.batch_size)
    while not state.finished(config):
        epoch = state.epoch + 1
        t0, total, n = time.perf_counter(), 0.0, 0
        bar = progress_lib.StepProgress(
            steps, f"[context tower] epoch {epoch}/{config.epochs}", pairs_per_step=config.batch_size, file=out
        )
        with bar:
            for n, (hx, hy) in enumerate(_epoch_dataset(x, y, config, epoch).take(config.max_steps - state.done), 1):
                total += float(step(hx, hy))
                bar.update(total / n)
        secs = time.perf_counter() - t0
        metrics = {"epoch": epoch, "loss": total / max(n, 1), "seconds": secs, "examples_per_second": len(x) / secs}
        if validation is not None:
            metrics["val_hr@10"] = hit_rate(model, *validation)
        state.end_epoch(metrics, n, config)
    history = dict(state.history, steps=state.done, resumed_from_epoch=resumed_from)
    if state.best_weights is not None:
        model.set_weights(state.best_weights)
    history["best_epoch"] = state.best_epoch if state.best_weights is not None else history["epoch"][-1]
    return model, history
