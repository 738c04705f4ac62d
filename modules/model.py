"""The PinSage model: item features -> K PinSage convolutions -> G2 . ReLU(G1 z + g), as one Keras model.

Input: a minibatch GraphTensor (modules/batches.py): node set `item` with Transform's feature tensors, edge set
`importance` with the weight alpha, and the `_readout/seed` structure naming the root nodes. Output: the embedding
of each readout root, in readout order ([R, output_dim]).

The model is inductive by default: an item's embedding is a function of its features and its neighbourhood only,
so new items (cold start) embed without retraining. A learnable per-item id embedding can be switched on
(`id_embedding=True`); an id-only model is a strong baseline on MovieLens, but it ties the
model to the training catalogue (unknown ids share one row).
"""

import dataclasses
import math
from typing import Optional

import tensorflow as tf
import tensorflow_gnn as tfgnn
from tensorflow.python.autograph.core import ag_ctx

from modules import batches, layers, losses
from modules import features as features_lib
from schema import constants

TEXT_VOCAB_SIZE = constants.TEXT_VOCAB_SIZE + 1  # + 1 out-of-vocabulary id


# The similarity weights the trainer tries when PinSageHParams.similarity_weight is None: a 1-2-5 grid over two
# decades (u and z are unit vectors, so lambda is a unitless share), 0 included so that the trained head can win.
SIMILARITY_WEIGHTS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclasses.dataclass
class PinSageHParams:
    """Model and training hyperparameters (defaults: the paper's shapes at this project's scale; the validation
    measurements behind each default are in docs/QUALITY.md)."""

    hidden_dim: int = 128  # h^(k) and message dims
    output_dim: int = 128  # final embedding (ANN index) dim: the widest that still helped on validation
    num_layers: int = 2  # K
    pooling: str = "importance"  # 'importance' | 'mean' | 'max'
    text_embedding_dim: int = 32  # embedding-bag width for `*_tokens` features
    id_embedding: bool = False  # learnable per-item embedding (not inductive)
    use_features: bool = True  # False (with id_embedding): the id-embedding-only ablation
    id_embedding_dim: int = 32
    normalize_output: bool = True  # L2-normalise the final embedding (scores are cosines)
    query_head: bool = True  # asymmetric u_q . z_i (layers.QueryHead): the target follows the query in time
    # lambda of the served query u_q = normalise(u'_q + lambda z_q) (layers.QueryHead), None: chosen on validation
    # from SIMILARITY_WEIGHTS (modules/trainer.py); 0 because validation HR@10 never preferred a larger lambda.
    similarity_weight: Optional[float] = 0.0
    loss: str = "sampled_softmax"  # or 'max_margin' (the paper's, an ablation row): it loses on order-free data
    margin: float = 0.03  # max-margin Delta: about one softmax temperature, a score gap the softmax finds decisive
    margin_average: str = "active"  # hinge averaged over violating negatives only ('all': the paper's), undiluted
    temperature: float = 0.03  # tau of the sampled softmax (with the query head, no worse than 0.05 on validation)
    logq_correction: bool = True  # subtract log P_n from sampled logits (popularity correction)
    logq_mixture: bool = False  # with in-batch negatives: log Q = log(B P_pos + S P_n) (modules/train.py)
    num_negatives: int = 500  # shared by every example of a minibatch
    in_batch_negatives: bool = True  # the other examples' positives and hard negatives: free, already embedded
    hardest_negatives: Optional[int] = None  # loss over each example's k highest-scoring negatives (None: all)
    uniformity_weight: float = 0.1  # keeps the indexed space from collapsing into a cone (modules/losses.py)
    negative_power: float = 0.75  # P_n(v) ~ (count_v + 1)^power
    hard_negatives: bool = True  # curriculum: epoch n adds n-1 hard negatives per example
    max_hard_negatives: Optional[int] = None
    # 'count': each (q, i) drawn as often as it occurred (the transition counts' weighting, the better on
    # validation); 'distinct': once per pass. An epoch is |distinct pairs| draws either way.
    pair_sampling: str = "count"
    # Optimisation.
    batch_size: int = 512  # positive pairs per minibatch
    learning_rate: float = 3e-3  # peak, reached after linear warm-up, then cosine decay (1e-3 did worse)
    warmup_steps: int = 200
    min_learning_rate_ratio: float = 0.1
    epochs: int = 3
    steps_per_epoch: Optional[int] = None  # None: one pass over the pairs
    seed: int = 0
    # Extra checkpoints (model, optimizer, epoch position) besides each epoch end's, every N steps / seconds (0: off).
    checkpoint_steps: int = 0
    checkpoint_seconds: float = 60.0  # time, not steps: a kill loses at most a minute whatever the step cost

    def __post_init__(self):
        if not self.use_features and not self.id_embedding:
            raise ValueError("use_features=False needs id_embedding=True (an item must be represented by something)")
        if self.logq_mixture and not self.in_batch_negatives:
            raise ValueError("logq_mixture=True corrects in-batch candidates: it needs in_batch_negatives=True")
        if self.margin_average not in losses.MaxMarginLoss.AVERAGES:
            raise ValueError(
                f"margin_average must be one of {losses.MaxMarginLoss.AVERAGES}, got {self.margin_average!r}"
            )
        sw = self.similarity_weight
        if sw is not None and not (
            isinstance(sw, (int, float)) and not isinstance(sw, bool) and math.isfinite(sw) and sw >= 0
        ):
            raise ValueError(f"similarity_weight must be None or a finite number >= 0, got {sw!r}")
        if self.num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {self.num_layers}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PinSageHParams":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown PinSage hparams: {sorted(unknown)}")
        return cls(**d)


@tf.keras.utils.register_keras_serializable(package="PinSage")
class ItemEncoder(tf.keras.layers.Layer):
    """h^(0)_u = ReLU(P . [float features ; mean of title-token embeddings ; id embedding] + p) for every item.

    Float features (z-scored numerics, missing indicators, log degree, multi-hots, dense vectors) are concatenated;
    the projection P is the "multi-hot -> dense" map. `*_tokens` ragged int ids get an embedding bag (mean; 0 for an
    empty title; ids beyond the vocabulary share the last row). Returns the graph with `hidden_state` as the item
    node set's only feature.
    """

    def __init__(
        self,
        *,
        feature_spec: dict,
        hidden_dim: int,
        text_vocab_size: int = TEXT_VOCAB_SIZE,
        text_embedding_dim: int = 32,
        num_items: Optional[int] = None,
        id_embedding_dim: int = 0,
        node_set: str = batches.NODE_SET,
        **kwargs,
    ):
        kwargs.setdefault("name", "item_encoder")
        super().__init__(**kwargs)
        self._feature_spec = {k: [str(v[0]), [int(d) for d in v[1]]] for k, v in sorted(feature_spec.items())}
        self._hidden_dim, self._text_vocab_size = hidden_dim, text_vocab_size
        self._text_embedding_dim, self._num_items = text_embedding_dim, num_items
        self._id_embedding_dim, self._node_set = id_embedding_dim, node_set
        dtypes = {k: features_lib.tf_dtype(dt) for k, (dt, _) in self._feature_spec.items()}
        self._float = [k for k, dt in dtypes.items() if dt.is_floating]
        self._text = [k for k, dt in dtypes.items() if dt.is_integer and -1 in self._feature_spec[k][1]]
        ignored = set(dtypes) - set(self._float) - set(self._text)
        if ignored:
            raise ValueError(f"ItemEncoder: no encoding for features {sorted(ignored)} (float or ragged int ids)")
        self._text_emb = {
            k: tf.keras.layers.Embedding(text_vocab_size, text_embedding_dim, name=f"{k}_embedding") for k in self._text
        }
        self._id_emb = None
        if id_embedding_dim:
            if not num_items:
                raise ValueError("id embedding needs num_items")
            self._id_emb = tf.keras.layers.Embedding(num_items + 1, id_embedding_dim, name="id_embedding")
        self._project = tf.keras.layers.Dense(hidden_dim, activation="relu", name="project")

    def get_config(self):
        return dict(
            **super().get_config(),
            feature_spec=self._feature_spec,
            hidden_dim=self._hidden_dim,
            text_vocab_size=self._text_vocab_size,
            text_embedding_dim=self._text_embedding_dim,
            num_items=self._num_items,
            id_embedding_dim=self._id_embedding_dim,
            node_set=self._node_set,
        )

    def call(self, graph: tfgnn.GraphTensor) -> tfgnn.GraphTensor:
        node_set = graph.node_sets[self._node_set]
        parts = []
        for k in self._float:
            x = tf.cast(node_set[k], tf.float32)
            parts.append(tf.reshape(x, [-1, 1]) if x.shape.rank == 1 else x)
        for k in self._text:
            ids = node_set[k]
            emb = self._text_emb[k](tf.minimum(tf.maximum(ids.values, 0), self._text_vocab_size - 1))
            total = tf.reduce_sum(ids.with_values(emb), axis=1)
            parts.append(total / tf.maximum(tf.cast(ids.row_lengths(), tf.float32), 1.0)[:, None])
        if self._id_emb is not None:
            nid = node_set[batches.NODE_ID]
            nid = tf.where((nid >= 0) & (nid < self._num_items), nid, self._num_items)  # unknown ids: last row
            parts.append(self._id_emb(nid))
        h = self._project(tf.concat(parts, -1))
        return graph.replace_features(node_sets={self._node_set: {tfgnn.HIDDEN_STATE: h}})


def build_model(
    hparams: PinSageHParams,
    feature_spec: dict,
    *,
    num_items: Optional[int] = None,
    text_vocab_size: int = TEXT_VOCAB_SIZE,
) -> tf.keras.Model:
    """Keras model: minibatch GraphTensor -> [R, output_dim] embeddings of its readout roots.

    feature_spec: {name: (dtype, shape)} of the item features (modules/features.feature_spec); `node_id` is only
    used when hparams.id_embedding is on (then num_items is required).
    """
    spec = dict(feature_spec)
    spec.setdefault(batches.NODE_ID, ("DT_INT64", []))
    # No tensor-dependent Python control flow in these layers: skip AutoGraph's source conversion of every layer
    # (TF-GNN's included), which otherwise dominates model construction.
    with ag_ctx.ControlStatusCtx(status=ag_ctx.Status.DISABLED):
        return _build_model(hparams, spec, num_items, text_vocab_size)


def head_units(hparams: PinSageHParams) -> int:
    """Width of the ReLU layer inside the embedding and query heads: max(hidden_dim, output_dim).

    z = G2 . ReLU(G1 h + g) lies in the span of G2's columns, one per ReLU unit, so a head narrower than its
    output would give embeddings of rank hidden_dim written in output_dim coordinates: every score u . z, and so
    every list the index serves, would be a rank-hidden_dim matrix whatever output_dim says.
    """
    return max(hparams.hidden_dim, hparams.output_dim)


def _build_model(hparams, spec, num_items, text_vocab_size):
    inputs = tf.keras.layers.Input(type_spec=batches.graph_spec(spec))
    encoder_spec = {k: v for k, v in spec.items() if k != batches.NODE_ID} if hparams.use_features else {}
    graph = ItemEncoder(
        feature_spec=encoder_spec,
        hidden_dim=hparams.hidden_dim,
        text_vocab_size=text_vocab_size,
        text_embedding_dim=hparams.text_embedding_dim,
        num_items=num_items,
        id_embedding_dim=hparams.id_embedding_dim if hparams.id_embedding else 0,
    )(inputs)
    for k in range(hparams.num_layers):
        graph = layers.PinSageGraphUpdate(
            units=hparams.hidden_dim, pooling=hparams.pooling, name=f"pinsage_layer_{k + 1}"
        )(graph)
    roots = tfgnn.keras.layers.StructuredReadout(batches.READOUT_KEY, feature_name=tfgnn.HIDDEN_STATE)(graph)
    outputs = layers.EmbeddingHead(
        hidden_units=head_units(hparams), output_units=hparams.output_dim, normalize=hparams.normalize_output
    )(roots)
    return tf.keras.Model(inputs, outputs, name="pinsage")


# `pinsage run --ablations`: variants trained with the same pairs, negatives and loss settings as the main model
# (each overrides only what it names) and reported next to it. The paper's Table 1 rows (pooling, hard
# negatives; the max-margin loss next to the sampled softmax) plus two rows that tell whether the graph earns
# its keep: the features through the same encoder and head with no convolution, and learnt ids alone.
ABLATIONS = {
    "mean_pooling": {"pooling": "mean"},
    "max_pooling": {"pooling": "max"},
    "no_hard_negatives": {"hard_negatives": False},
    "max_margin_loss": {"loss": "max_margin"},
    "features_only_mlp": {"num_layers": 0},
    "id_embedding_only": {"num_layers": 0, "id_embedding": True, "use_features": False},
}


def ablation_hparams(base: PinSageHParams, name: str) -> PinSageHParams:
    """The ablation `name` of ABLATIONS applied to `base`."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; known: {sorted(ABLATIONS)}")
    return PinSageHParams.from_dict({**base.to_dict(), **ABLATIONS[name]})


def build_query_head(hparams: PinSageHParams) -> Optional[tf.keras.Model]:
    """Keras model z [B, output_dim] -> u [B, output_dim] (the query vectors), or None without hparams.query_head."""
    if not hparams.query_head:
        return None
    z = tf.keras.layers.Input(shape=(hparams.output_dim,), dtype=tf.float32)
    u = layers.QueryHead(hidden_units=head_units(hparams), normalize=hparams.normalize_output)(z)
    return tf.keras.Model(z, u, name="pinsage_query_head")
