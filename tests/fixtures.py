"""Test fixtures shared by several test files: synthetic catalogues, artifact writers
for inputs that no pipeline stage wrote, and small independent references."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from modules.batches import assemble_graph, to_tensors
from modules.synthetic import synthetic_catalogue, write_examples, write_items  # noqa: F401  (re-exported)
from schema import graph as graph_io


def full_graph(features: dict, nbr, w, readout=None):
    """The whole item graph as one GraphTensor (every node with all its importance edges); readout = `readout`
    node ids (default all nodes). The reference the minibatch subgraphs must agree with."""
    nbr = np.asarray(nbr)
    n = nbr.shape[0]
    tgt, col = np.nonzero(nbr >= 0)
    readout = np.arange(n) if readout is None else np.asarray(readout)
    return assemble_graph(
        tf.range(n, dtype=tf.int64),
        tf.constant(nbr[tgt, col], tf.int32),
        tf.constant(tgt, tf.int32),
        tf.constant(np.asarray(w)[tgt, col], tf.float32),
        tf.constant(readout, tf.int32),
        to_tensors(features),
    )


def ranks_from_lists(ranked_items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Ranks from explicit ranked lists [M, L] (an ANN index's top-L, or an oracle ordering): 1 + the target's
    position in its row, or inf when it is absent (a miss at every cut-off, 0 towards MRR)."""
    ranked_items = np.asarray(ranked_items)
    found = ranked_items == np.asarray(targets)[:, None]
    return np.where(found.any(axis=1), found.argmax(axis=1) + 1, np.inf)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _split_graph(ctx, item, ts, num_items: int, num_contexts: int):
    """A schema.graph.Graph of (context, item, timestamp) rows, split as GraphGen splits (split.split_partition)."""
    from pipeline.graph.split import split_partition

    cols, _, _ = split_partition(ctx, item, ts, np.ones(len(ctx)))
    node = cols["node_id"]
    return graph_io.Graph(
        item_ids=np.array([f"i{k}" for k in range(num_items)], dtype=object),
        train_degree=np.bincount(node[cols["split"] == "train"], minlength=num_items),
        context_ids=np.array([f"c{k}" for k in range(num_contexts)], dtype=object),
        context_index=cols["context_index"],
        node_id=node,
        timestamp=cols["timestamp"],
        weight=cols["weight"],
        split=cols["split"],
        position=cols["position"],
    )


def chain_histories(
    num_items: int = 2000,
    community_size: int = 20,
    num_contexts: int = 600,
    length: int = 20,
    noise: float = 0.25,
    ordered: bool = True,
    seed: int = 0,
):
    """A graph whose contexts are runs along chains: the items form communities of `community_size`, each a ring
    i -> i + 1, and context c engages `length` consecutive ring members from a random start, in that order (a
    `noise` share of them replaced by random items). Ordered, the next item is the ring successor: strong
    sequential structure. `ordered=False` is the order-free check of the same graph: each context's timestamps
    permuted among its own interactions (datasets.shuffle_order), sets and counts unchanged."""
    from pipeline.data.datasets import shuffle_order

    rng = np.random.default_rng(seed)
    ctx = np.repeat(np.arange(num_contexts, dtype=np.int64), length)
    step = np.tile(np.arange(length, dtype=np.int64), num_contexts)
    start = rng.integers(0, num_items, num_contexts)[ctx]
    item = start - start % community_size + (start + step) % community_size
    swap = rng.random(len(item)) < noise
    item[swap] = rng.integers(0, num_items, int(swap.sum()))
    ts = 1_000 + 10 * step
    if not ordered:
        ts = shuffle_order(ctx, ts, seed + 1)
    return _split_graph(ctx, item, ts, num_items, num_contexts)


def community_histories(
    num_items: int = 2000,
    community_size: int = 50,
    num_contexts: int = 600,
    length: int = 6,
    alpha: float = 1.0,
    seed: int = 0,
):
    """A graph without sequence: each context engages `length` distinct members of one community, drawn by a
    Zipf(`alpha`) popularity inside the community (the popularity ranks a random permutation of the members, so
    no id order lines up with it), in a random order (shuffle_order of increasing timestamps). Sparse: a few
    interactions per item, so an item's direct co-engagements are a thin sample of its community."""
    from pipeline.data.datasets import shuffle_order

    rng = np.random.default_rng(seed)
    k = num_items // community_size
    comm = rng.integers(0, k, num_contexts)
    logpop = -alpha * np.log(np.arange(community_size) + 1.0)
    # `length` draws without replacement by popularity: the top-`length` of log p + Gumbel noise (Gumbel top-k)
    draw = np.argsort(-(logpop + rng.gumbel(size=(num_contexts, community_size))), axis=1)[:, :length]
    perm = np.argsort(rng.random((k, community_size)), axis=1)  # popularity rank -> member, per community
    item = (perm[comm[:, None], draw] + comm[:, None] * community_size).ravel()
    ctx = np.repeat(np.arange(num_contexts, dtype=np.int64), length)
    ts = shuffle_order(ctx, 1_000 + 10 * np.arange(len(ctx), dtype=np.int64), seed + 1)
    return _split_graph(ctx, item, ts, num_items, num_contexts)
