"""PinSage convolution as TF-GNN Keras layers (Ying et al., KDD 2018, arXiv 1806.01973, Algorithm 1).

One PinSage layer updates every item u from its importance neighbourhood N(u) (top-T random-walk neighbours,
weights alpha = L1-normalised visit counts):

  (1) n_u = gamma({ ReLU(Q h_v + q) : v in N(u) }, alpha)        -- PinSageConv
  (2) z_u = ReLU(W . concat(h_u, n_u) + w)                        -- PinSageNextState
  (3) z_u <- z_u / ||z_u||_2

gamma is "importance pooling", the alpha-weighted mean; 'mean' and 'max' are the paper's ablations (Table 1).
The convolution is TF-GNN's own extension point, `AnyToAnyConvolutionBase`, with alpha passed as the
`sender_edge_feature` of edge set `importance` (source = neighbour v, target = item u), so the pooling is done by
TF-GNN's pool ops; `tfgnn.keras.layers.NodeSetUpdate` / `GraphUpdate` stack the layers (`PinSageGraphUpdate`).
"""

from typing import Any, Callable, Optional

import tensorflow as tf
import tensorflow_gnn as tfgnn

from schema.constants import EDGE_SET, NODE_SET, WEIGHT

POOLINGS = ("importance", "mean", "max")


@tf.keras.utils.register_keras_serializable(package="PinSage")
class PinSageConv(tfgnn.keras.layers.AnyToAnyConvolutionBase):
    """PinSage CONVOLVE, Algorithm 1 line 1: n_u = gamma({ReLU(Q h_v + q) | v in N(u)}, alpha).

    The message ReLU(Q h_v + q) depends on the sender v only, so it is computed once per node and then broadcast
    to v's out-edges (the same value the paper's per-neighbour formula gives, T times fewer FLOPs). Pooling:
      'importance': sum_v alpha_uv m_v / sum_v alpha_uv (the alpha-weighted mean; the denominator is 1 for a full
                    L1-normalised neighbourhood and renormalises a truncated one; 0 for an item without neighbours);
      'mean':       plain mean over N(u) (alpha ignored);
      'max':        element-wise max over N(u) (0 for an item without neighbours).
    Returns n_u for every receiver; `PinSageNextState` combines it with h_u.
    """

    def __init__(
        self,
        *,
        units: int,
        pooling: str = "importance",
        use_bias: bool = True,
        activation: Any = "relu",
        receiver_tag: tfgnn.IncidentNodeTag = tfgnn.TARGET,
        sender_node_feature: Optional[tfgnn.FieldName] = tfgnn.HIDDEN_STATE,
        sender_edge_feature: Optional[tfgnn.FieldName] = WEIGHT,
        **kwargs,
    ):
        """Args:
        units: dimension of the messages (rows of Q).
        pooling: 'importance' (alpha-weighted mean, PinSage), 'mean' or 'max'.
        use_bias: whether the message transform has the bias q.
        activation: the message nonlinearity (ReLU in the paper).
        receiver_tag: tfgnn.TARGET: edges run neighbour (source) -> item (target).
        sender_node_feature: the node state h_v.
        sender_edge_feature: the edge feature holding alpha; only read for 'importance' pooling.
        **kwargs: forwarded to AnyToAnyConvolutionBase / Layer.
        """
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if pooling == "importance" and sender_edge_feature is None:
            raise ValueError("importance pooling needs sender_edge_feature (the weight alpha)")
        if kwargs.get("receiver_feature") is not None:
            raise ValueError("receiver_feature has to be None for PinSageConv (h_u enters in PinSageNextState).")
        kwargs.pop("receiver_feature", None)
        kwargs.setdefault("name", "pinsage_conv")
        super().__init__(
            receiver_tag=receiver_tag,
            receiver_feature=None,
            sender_node_feature=sender_node_feature,
            sender_edge_feature=sender_edge_feature if pooling == "importance" else None,
            **kwargs,
        )
        self._units = units
        self._pooling = pooling
        self._use_bias = use_bias
        self._activation = tf.keras.activations.get(activation)
        self._message_fn = tf.keras.layers.Dense(units, use_bias=use_bias, activation=self._activation, name="message")

    def get_config(self):
        config = super().get_config()
        config.pop("receiver_feature", None)
        return dict(
            **config,
            units=self._units,
            pooling=self._pooling,
            use_bias=self._use_bias,
            activation=tf.keras.activations.serialize(self._activation),
        )

    def convolve(
        self,
        *,
        sender_node_input: Optional[tf.Tensor],
        sender_edge_input: Optional[tf.Tensor],
        receiver_input: Optional[tf.Tensor],
        broadcast_from_sender_node: Callable[[tf.Tensor], tf.Tensor],
        broadcast_from_receiver: Callable[[tf.Tensor], tf.Tensor],
        pool_to_receiver: Callable[..., tf.Tensor],
        extra_receiver_ops: Any = None,
        training: bool,
    ) -> tf.Tensor:
        """Overridden internal method of the base class."""
        del receiver_input, broadcast_from_receiver, training
        assert extra_receiver_ops is None, "Internal error: bad super().__init__()"
        assert sender_node_input is not None, "sender_node_input can't be None."
        messages = broadcast_from_sender_node(self._message_fn(sender_node_input))  # ReLU(Q h_v + q) per edge
        if self._pooling == "mean":
            return pool_to_receiver(messages, reduce_type="mean")
        if self._pooling == "max":
            return pool_to_receiver(messages, reduce_type="max_no_inf")
        # Importance pooling: the alpha-weighted mean = (sum over edges of alpha * m) / (sum over edges of alpha),
        # both sums by TF-GNN's pool; divide_no_nan gives 0 for an item with no (or zero-weight) neighbours.
        alpha = tf.expand_dims(tf.cast(sender_edge_input, messages.dtype), -1)
        weighted_sum = pool_to_receiver(alpha * messages, reduce_type="sum")
        alpha_sum = pool_to_receiver(alpha, reduce_type="sum")
        return tf.math.divide_no_nan(weighted_sum, alpha_sum)


@tf.keras.utils.register_keras_serializable(package="PinSage")
class PinSageNextState(tf.keras.layers.Layer):
    """PinSage CONVOLVE, Algorithm 1 lines 2-3: z_u = ReLU(W . concat(h_u, n_u) + w); z_u <- z_u / ||z_u||_2.

    A next-state layer for `tfgnn.keras.layers.NodeSetUpdate`: it receives (h_u, {edge_set: n_u}, {}) and returns
    the new state. The L2 normalisation (paper: "makes training more stable") uses tf.math.l2_normalize, whose
    epsilon maps an all-zero ReLU output to zero instead of NaN.
    """

    def __init__(
        self, *, units: int, use_bias: bool = True, activation: Any = "relu", normalize: bool = True, **kwargs
    ):
        kwargs.setdefault("name", "pinsage_next_state")
        super().__init__(**kwargs)
        self._units = units
        self._use_bias = use_bias
        self._activation = tf.keras.activations.get(activation)
        self._normalize = normalize
        self._dense = tf.keras.layers.Dense(units, use_bias=use_bias, activation=self._activation, name="combine")

    def get_config(self):
        return dict(
            **super().get_config(),
            units=self._units,
            use_bias=self._use_bias,
            activation=tf.keras.activations.serialize(self._activation),
            normalize=self._normalize,
        )

    def call(self, inputs):
        state, edge_inputs, context_inputs = inputs
        z = self._dense(tf.concat([state] + tf.nest.flatten(edge_inputs) + tf.nest.flatten(context_inputs), -1))
        return tf.math.l2_normalize(z, axis=-1) if self._normalize else z


def PinSageGraphUpdate(
    *,
    units: int,
    message_units: Optional[int] = None,
    pooling: str = "importance",
    node_set: str = NODE_SET,
    edge_set: str = EDGE_SET,
    weight_feature: str = WEIGHT,
    normalize: bool = True,
    name: Optional[str] = None,
) -> tfgnn.keras.layers.GraphUpdate:
    """One PinSage layer on a homogeneous graph: h_u^{(k)} = CONVOLVE(h_u^{(k-1)}, {h_v^{(k-1)} | v in N(u)})
    for every node of `node_set`, neighbours along `edge_set` (source = neighbour, target = node)."""
    conv = PinSageConv(
        units=message_units or units, pooling=pooling, receiver_tag=tfgnn.TARGET, sender_edge_feature=weight_feature
    )
    update = tfgnn.keras.layers.NodeSetUpdate(
        {edge_set: conv}, next_state=PinSageNextState(units=units, normalize=normalize)
    )
    return tfgnn.keras.layers.GraphUpdate(node_sets={node_set: update}, name=name)


@tf.keras.utils.register_keras_serializable(package="PinSage")
class EmbeddingHead(tf.keras.layers.Layer):
    """Algorithm 2's final dense layers: z_u = G2 . ReLU(G1 h_u^{(K)} + g), optionally L2-normalised (so that
    dot products are cosines and a softmax temperature has a fixed scale)."""

    def __init__(self, *, hidden_units: int, output_units: int, normalize: bool = True, **kwargs):
        kwargs.setdefault("name", "embedding_head")
        super().__init__(**kwargs)
        self._hidden_units, self._output_units, self._normalize = hidden_units, output_units, normalize
        self._g1 = tf.keras.layers.Dense(hidden_units, activation="relu", name="g1")
        self._g2 = tf.keras.layers.Dense(output_units, use_bias=False, name="g2")

    def get_config(self):
        return dict(
            **super().get_config(),
            hidden_units=self._hidden_units,
            output_units=self._output_units,
            normalize=self._normalize,
        )

    def call(self, h):
        z = self._g2(self._g1(h))
        return tf.math.l2_normalize(z, axis=-1) if self._normalize else z


@tf.keras.utils.register_keras_serializable(package="PinSage")
class QueryHead(tf.keras.layers.Layer):
    """The query side of an asymmetric score: u_q = normalise(z_q + Q2 . ReLU(Q1 z_q + q)), scored as u_q . z_i.

    PinSage's one tower makes z_q . z_i symmetric, but the target of a query item is the item that *follows* it
    (forward transitions beat symmetric ones on validation HR@10). This head maps
    an item's embedding to its query vector; the index still holds the z_i, so the model stays inductive (a new
    item's u is a function of its z). Q2 starts at zero: training starts from the symmetric model.

    `similarity_weight` lambda mixes the symmetric similarity back into the served query after training:
    u_q = normalise(u'_q + lambda z_q), so the score is u'_q . z_i + lambda z_q . z_i ("what comes next" plus
    lambda times "what is like it"), still one dot product against the same index. The u'_q of every query share
    a direction that favours popular items (what comes next is often a popular item); z_q . z_i has none. Zero
    while training; modules/trainer.choose_similarity_weight sets it on validation.
    """

    def __init__(self, *, hidden_units: int, normalize: bool = True, similarity_weight: float = 0.0, **kwargs):
        kwargs.setdefault("name", "query_head")
        super().__init__(**kwargs)
        self._hidden_units, self._normalize = hidden_units, normalize
        self.similarity_weight = float(similarity_weight)
        self._q1 = tf.keras.layers.Dense(hidden_units, activation="relu", name="q1")
        self._q2 = None

    def build(self, input_shape):
        self._q2 = tf.keras.layers.Dense(int(input_shape[-1]), use_bias=False, kernel_initializer="zeros", name="q2")
        super().build(input_shape)

    def get_config(self):
        return dict(
            **super().get_config(),
            hidden_units=self._hidden_units,
            normalize=self._normalize,
            similarity_weight=self.similarity_weight,
        )

    def call(self, z):
        u = self._unit(z + self._q2(self._q1(z)))
        # A Python branch, read when the call is traced: at lambda = 0 the head is exactly the trained one.
        return self._unit(u + self.similarity_weight * z) if self.similarity_weight else u

    def _unit(self, u):
        return tf.math.l2_normalize(u, axis=-1) if self._normalize else u
