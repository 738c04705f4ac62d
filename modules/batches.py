"""Minibatches as TF-GNN GraphTensors, built by a tf.data producer while the model trains (PinSage §3.2-3.3).

A training minibatch holds B positive pairs (q, i), S negatives shared by the whole minibatch (drawn from an
item distribution, by default train degree^0.75) and H hard negatives per pair (curriculum, from the query's PPR
pool). Their union are the *roots*. The batch is ONE GraphTensor:
  node set `item`        the subgraph's items with their feature rows and `node_id` (the global id)
  edge set `importance`  neighbour v (source) -> item u (target), feature `weight` = alpha_uv
  `_readout` + `_readout/seed`  TF-GNN's structured-readout structure listing the roots in the order
                         [queries (B), positives (B), shared negatives (S), hard negatives (B*H)]
plus the local indices and global ids of each group.

Which edges: the subgraph holds every node within K hops of a root, and gives *every node within K-1 hops all
of its importance edges*; nodes first reached at hop K get none. That is exactly what K layers need: layer k's
state of a node at hop d is only read by roots if d <= K-k, and it depends on layer k-1 states of that node's
full neighbourhood (hop <= d+1). Hop-K nodes only ever contribute their features (layer 0), so their own
(wrong, neighbour-less) later states are never read by a root, and root embeddings equal the full-graph
K-layer computation (tested). Node ids are deduplicated with tf.unique hop by hop; the first-occurrence order
it keeps makes local ids stable between hops (roots first, then hop 1, ...), so each hop only appends.

Everything is TF ops inside `Dataset.map(num_parallel_calls=AUTOTUNE)` + `prefetch`: sampling, subgraph
extraction and feature gathers run on tf.data's thread pool, overlapping the train step (producer-consumer).
"""

from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_gnn as tfgnn

from modules import features as features_lib
from schema.constants import EDGE_SET, NODE_ID, NODE_SET, WEIGHT

READOUT_KEY = "seed"
READOUT_NODE_SET = "_readout"
READOUT_EDGE_SET = f"_readout/{READOUT_KEY}"


# ---------------------------------------------------------------------------------------------- subgraphs


def k_hop_subgraph(roots, nbr, w, num_hops: int):
    """The K-hop importance subgraph of `roots` (global ids, duplicates allowed).

    Returns (nodes [n] int64 global ids, source [E] int32, target [E] int32, weight [E] float32,
    root_local [R] int32 = local index of each root). Local ids: unique roots first, then each hop's new nodes.
    """
    nodes, root_local = tf.unique(tf.cast(roots, tf.int64), out_idx=tf.int32)
    # num_hops = 0 (the no-convolution ablations): the roots alone, an empty edge set.
    sources, targets, weights = [tf.zeros([0], tf.int32)], [tf.zeros([0], tf.int32)], [tf.zeros([0], tf.float32)]
    frontier_start = tf.constant(0, tf.int32)
    for _ in range(num_hops):
        frontier = nodes[frontier_start:]
        rows_n = tf.gather(nbr, frontier)  # [F, T], -1 padded
        rows_w = tf.gather(w, frontier)
        valid = rows_n >= 0
        cand = tf.boolean_mask(rows_n, valid)  # row-major: grouped by receiver
        targets.append(frontier_start + tf.cast(tf.where(valid)[:, 0], tf.int32))
        weights.append(tf.boolean_mask(rows_w, valid))
        n_prev = tf.size(nodes, out_type=tf.int32)
        nodes, idx = tf.unique(tf.concat([nodes, cand], 0), out_idx=tf.int32)  # old nodes keep their ids
        sources.append(idx[n_prev:])
        frontier_start = n_prev
    return nodes, tf.concat(sources, 0), tf.concat(targets, 0), tf.concat(weights, 0), root_local


def assemble_graph(nodes, source, target, weight, readout_local, features: dict) -> tfgnn.GraphTensor:
    """One GraphTensor: node set `item` (gathered feature rows + node_id), edge set `importance`, and a
    `_readout/seed` structure reading out nodes `readout_local` in order."""
    n = tf.size(nodes, out_type=tf.int32)
    feats = {name: tf.gather(t, nodes) for name, t in features.items() if name != NODE_ID}
    feats[NODE_ID] = tf.cast(nodes, tf.int64)
    num_readout = tf.size(readout_local, out_type=tf.int32)
    return tfgnn.GraphTensor.from_pieces(
        node_sets={
            NODE_SET: tfgnn.NodeSet.from_fields(sizes=tf.reshape(n, [1]), features=feats),
            READOUT_NODE_SET: tfgnn.NodeSet.from_fields(sizes=tf.reshape(num_readout, [1])),
        },
        edge_sets={
            EDGE_SET: tfgnn.EdgeSet.from_fields(
                sizes=tf.reshape(tf.size(source, out_type=tf.int32), [1]),
                adjacency=tfgnn.Adjacency.from_indices(source=(NODE_SET, source), target=(NODE_SET, target)),
                features={WEIGHT: tf.cast(weight, tf.float32)},
            ),
            READOUT_EDGE_SET: tfgnn.EdgeSet.from_fields(
                sizes=tf.reshape(num_readout, [1]),
                adjacency=tfgnn.Adjacency.from_indices(
                    source=(NODE_SET, tf.cast(readout_local, tf.int32)),
                    target=(READOUT_NODE_SET, tf.range(num_readout, dtype=tf.int32)),
                ),
            ),
        },
    )


def subgraph_for_roots(roots, nbr, w, features: dict, num_hops: int) -> tfgnn.GraphTensor:
    """The minibatch GraphTensor whose readout is `roots` (in order, duplicates allowed)."""
    nodes, src, tgt, wt, root_local = k_hop_subgraph(roots, nbr, w, num_hops)
    return assemble_graph(nodes, src, tgt, wt, root_local, features)


def to_tensors(features: dict) -> dict:
    """numpy arrays -> tf tensors (RaggedTensors kept); gathered from inside the tf.data map functions."""
    return {k: v if isinstance(v, (tf.RaggedTensor, tf.Tensor)) else tf.constant(v) for k, v in features.items()}


def graph_spec(feature_spec: dict) -> tfgnn.GraphTensorSpec:
    """The (relaxed) GraphTensorSpec of every minibatch for a feature spec {name: (dtype, shape)}: built from an
    empty graph through `assemble_graph`, so model inputs and datasets agree by construction."""
    empty = {}
    for name, (dtype, shape) in feature_spec.items():
        dt = features_lib.tf_dtype(dtype)
        if -1 in shape:
            empty[name] = tf.RaggedTensor.from_row_splits(tf.zeros([0], dt), tf.zeros([1], tf.int64))
        else:
            empty[name] = tf.zeros([0] + list(shape), dt)
    z = tf.zeros([0], tf.int32)
    g = assemble_graph(tf.zeros([0], tf.int64), z, z, tf.zeros([0], tf.float32), z, empty)
    return g.spec.relax(num_nodes=True, num_edges=True)


# ---------------------------------------------------------------------------------------------- sampling


def negative_distribution(item_counts, power: float = 0.75) -> np.ndarray:
    """P_n(v) proportional to (count_v + 1)^power (word2vec's unigram^0.75; +1 keeps unseen items possible)."""
    p = (np.asarray(item_counts, np.float64) + 1.0) ** power
    return p / p.sum()


def left_aligned_pools(pools, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Hard-negative pools per query node id (an [N', K] -1-padded array or a list of id arrays) ->
    ([N, K] int64 left-aligned, [N] counts); rows beyond N' are empty."""
    if pools is None:
        return np.full((num_items, 1), -1, np.int64), np.zeros(num_items, np.int64)
    if isinstance(pools, np.ndarray) and pools.ndim == 2:  # e.g. pipeline/pairs.load_hard_negatives
        arr = pools[:num_items].astype(np.int64)
        valid = arr >= 0
        arr = np.take_along_axis(arr, np.argsort(~valid, axis=1, kind="stable"), 1)
        out = np.full((num_items, max(arr.shape[1], 1)), -1, np.int64)
        counts = np.zeros(num_items, np.int64)
        out[: len(arr), : arr.shape[1]] = arr
        counts[: len(arr)] = valid.sum(1)
        return out, counts
    rows = [np.asarray(r, np.int64) for r in pools]
    rows = [r[r >= 0] for r in rows]
    width = max(1, max((len(r) for r in rows), default=1))
    out = np.full((num_items, width), -1, np.int64)
    counts = np.zeros(num_items, np.int64)
    for q, r in enumerate(rows[:num_items]):
        out[q, : len(r)] = r
        counts[q] = len(r)
    return out, counts


class BatchBuilder:
    """Holds the tables a minibatch is built from (features, nbr, w, negative sampler, hard-negative pools) as
    tensors, and makes tf.data pipelines of minibatches from them."""

    def __init__(
        self,
        item_features: dict,
        nbr,
        w,
        *,
        num_hops: int = 2,
        negative_probs=None,
        hard_neg_pools=None,
        candidate_probs=None,
    ):
        nbr = np.asarray(nbr, np.int64)
        self.num_items = nbr.shape[0]
        self.num_hops = num_hops
        self.features = to_tensors(item_features)
        self.nbr = tf.constant(nbr)
        self.w = tf.constant(np.asarray(w, np.float32))
        p = (
            np.full(self.num_items, 1.0 / self.num_items)
            if negative_probs is None
            else np.asarray(negative_probs, np.float64) / np.sum(negative_probs)
        )
        # log Q of the log-Q correction: by default P_n itself; `candidate_probs` when the candidates are not all
        # drawn from P_n (in-batch positives: modules/train.candidate_distribution).
        q = p if candidate_probs is None else np.asarray(candidate_probs, np.float64) / np.sum(candidate_probs)
        self.log_q = tf.constant(np.log(np.maximum(q, 1e-30)), tf.float32)
        self.cdf = tf.constant(np.cumsum(p) / np.sum(p), tf.float64)
        pools, counts = left_aligned_pools(hard_neg_pools, self.num_items)
        self.pools, self.pool_counts = tf.constant(pools), tf.constant(counts)

    def subgraph(self, roots) -> tfgnn.GraphTensor:
        return subgraph_for_roots(roots, self.nbr, self.w, self.features, self.num_hops)

    def sample_negatives(self, num: int, seed):
        """`num` ids from P_n by inverse-CDF (O(num log N), unlike categorical sampling's O(num N))."""
        u = tf.random.stateless_uniform([num], seed=seed, dtype=tf.float64)
        return tf.minimum(tf.searchsorted(self.cdf, u, side="right", out_type=tf.int64), self.num_items - 1)

    def sample_hard(self, query, positive, num: int, seed):
        """[B, num] ids drawn uniformly from each query's pool, and a mask (0 where the pool is empty)."""
        c = tf.gather(self.pool_counts, query)  # [B]
        u = tf.random.stateless_uniform([tf.size(query), num], seed=seed)
        j = tf.cast(tf.floor(u * tf.cast(c[:, None], tf.float32)), tf.int64)
        j = tf.minimum(j, tf.maximum(c[:, None] - 1, 0))
        hard = tf.gather(tf.gather(self.pools, query), j, batch_dims=1)
        ok = (c[:, None] > 0) & (hard >= 0) & (hard != positive[:, None]) & (hard != query[:, None])
        return tf.where(ok, hard, positive[:, None]), tf.cast(ok, tf.float32)

    def training_batch(self, step, query, positive, *, num_negatives: int, num_hard: int, seed):
        """(GraphTensor, labels) for one minibatch of pairs; labels hold local indices, global ids, masks, log Q."""
        query, positive = tf.cast(query, tf.int64), tf.cast(positive, tf.int64)
        b = tf.size(query)
        s1 = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
        negative = self.sample_negatives(num_negatives, s1)
        hard, hard_mask = self.sample_hard(query, positive, num_hard, s1 + [0, 1 << 40])
        roots = tf.concat([query, positive, negative, tf.reshape(hard, [-1])], 0)
        nodes, src, tgt, wt, root_local = k_hop_subgraph(roots, self.nbr, self.w, self.num_hops)
        graph = assemble_graph(nodes, src, tgt, wt, root_local, self.features)
        # Accidental hits: a shared negative equal to the example's positive or query is not a negative.
        neg_mask = tf.cast((negative[None, :] != positive[:, None]) & (negative[None, :] != query[:, None]), tf.float32)
        labels = {
            "query": root_local[:b],
            "positive": root_local[b : 2 * b],
            "negative": root_local[2 * b : 2 * b + num_negatives],
            "hard": tf.reshape(root_local[2 * b + num_negatives :], [b, num_hard]),
            "query_id": query,
            "positive_id": positive,
            "negative_id": negative,
            "hard_id": hard,
            "neg_mask": neg_mask,
            "hard_mask": hard_mask,
            "pos_log_q": tf.gather(self.log_q, positive),
            "neg_log_q": tf.gather(self.log_q, negative),
        }
        return graph, labels

    def training_dataset(
        self,
        query,
        positive,
        *,
        batch_size: int,
        num_negatives: int,
        num_hard: int = 0,
        seed: int = 0,
        epoch: int = 1,
        steps: Optional[int] = None,
        deterministic: bool = True,
        start_step: int = 0,
    ) -> tf.data.Dataset:
        """One epoch of minibatches: pairs shuffled (seeded by seed, epoch), `steps` batches (default one pass,
        last partial batch dropped; more steps than a pass continue with a new shuffle), built by a parallel map
        and prefetched. start_step > 0 leaves out the epoch's first batches without building them (a resumed
        epoch): batch i is the same with or without them, since its pairs come from the (seed, epoch) shuffle and
        its negatives from the stateless (seed, epoch, i) stream."""
        query, positive = np.asarray(query, np.int64), np.asarray(positive, np.int64)
        num_pairs = len(query)
        steps = max(num_pairs // batch_size, 1) if steps is None else steps
        rng = np.random.default_rng([seed, epoch])
        need = steps * batch_size  # whole shuffled passes, as many as `steps` take
        perm = np.concatenate([rng.permutation(num_pairs) for _ in range(-(-need // num_pairs))])[:need]
        ds = tf.data.Dataset.from_tensor_slices((query[perm], positive[perm])).batch(batch_size, drop_remainder=True)
        batch_seed = seed * 1_000_003 + epoch

        @tf.autograph.experimental.do_not_convert  # plain TF ops; skip AutoGraph's source conversion
        def make_batch(step, qp):
            return self.training_batch(
                step, qp[0], qp[1], num_negatives=num_negatives, num_hard=num_hard, seed=batch_seed
            )

        ds = (
            ds.take(steps)
            .enumerate()
            .skip(start_step)
            .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        )
        return ds.prefetch(tf.data.AUTOTUNE)

    def embedding_dataset(self, batch_size: int, node_ids=None) -> tf.data.Dataset:
        """Minibatches whose roots are consecutive chunks of `node_ids` (default all items), for embed_all."""
        ids = np.arange(self.num_items) if node_ids is None else np.asarray(node_ids, np.int64)
        ds = tf.data.Dataset.from_tensor_slices(ids).batch(batch_size)
        build = tf.autograph.experimental.do_not_convert(self.subgraph)
        return ds.map(build, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
