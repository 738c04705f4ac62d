"""A pushed version for the REST and page tests: the real export (related_items, serving_default) plus two
generic signatures whose inputs all have a batch dimension, which the row format ("instances") needs:
    embedding_of(item_id [N] string) -> embedding [N, d]                        one input, one output
    scaled(item_id [N] string, scale [N] float) -> embedding [N, d] * scale, item_id_bytes [N] (the id back)
The server runs those through the SavedModel itself (its generic path). With `query_map` [d, d] the version has a
linear query head, u = z A, so related_items (u . z) and similar_items (z . z) are different lists."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from modules import index as ib
from modules.export import export_serving_model
from pipeline.data import datasets
from pipeline.push import pusher

WORDS = ("amber", "blue", "crimson", "dusk", "ember", "frost", "golden", "harbor", "iron", "jade", "lunar", "misty")
NOUNS = ("river", "castle", "garden", "voyage", "signal", "orchard", "lantern", "meadow", "canyon", "harvest")


def title_of(j: int) -> str:
    return f"The {WORDS[j % len(WORDS)].title()} {NOUNS[(j // len(WORDS)) % len(NOUNS)].title()} No. {j}"


def make_rest_version(root, n: int = 3000, d: int = 16, seed: int = 11, tag: str = "v1", query_map=None):
    """(embeddings, ids, titles) of a version pushed to root/serving_model/pinsage."""
    emb = datasets.clustered_vectors(n, d, clusters=30, seed=seed)
    ids = [f"i{j}" for j in range(n)]
    titles = [f"{title_of(j)} ({tag})" for j in range(n)]
    query = None if query_map is None else np.asarray(emb, np.float32) @ np.asarray(query_map, np.float32)
    export_serving_model(str(root / f"sm0_{tag}"), emb, ids, titles=titles, query_embeddings=query)
    m = tf.saved_model.load(str(root / f"sm0_{tag}"))
    m.table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.range(n, dtype=tf.int64)), -1
    )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="item_id")])
    def embedding_of(item_id):
        return {"embedding": tf.gather(m.embeddings, m.table.lookup(item_id))}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="item_id"),
            tf.TensorSpec([None], tf.float32, name="scale"),
        ]
    )
    def scaled(item_id, scale):
        rows = m.table.lookup(item_id)
        return {"embedding": tf.gather(m.embeddings, rows) * scale[:, None], "item_id_bytes": tf.identity(item_id)}

    sigs = dict(m.signatures)
    sigs.update(embedding_of=embedding_of, scaled=scaled)
    tf.saved_model.save(m, str(root / f"sm_{tag}"), signatures=sigs)
    ib.build_index(
        emb,
        ids,
        str(root / f"ix_{tag}"),
        titles=titles,
        query_embeddings=query,
        brute_force_below=1000,
        recall_queries=100,
    )
    pusher.push(str(root / f"sm_{tag}"), str(root / f"ix_{tag}"), str(root / "serving_model"))
    return np.asarray(emb), ids, titles


def make_recommend_version(root, n: int = 600, d: int = 8, adapter: bool = False, tag: str = "rec"):
    """(embeddings, ids, tower) of a version with a small freshly built context tower (weights do not matter for
    equality tests), pushed to root/serving_model/pinsage; with `adapter` its item vectors differ from z."""
    from modules import context_tower as ct

    emb = np.asarray(datasets.clustered_vectors(n, d, clusters=12, seed=5), np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids, titles = [f"i{j}" for j in range(n)], [title_of(j) for j in range(n)]
    config = ct.ContextTowerConfig(form="sequence", max_len=4, hidden_dim=8, num_layers=1, dropout=0.0, adapter=adapter)
    tower = ct.build_context_tower(config, emb)
    if adapter:  # the adapter starts at the identity: move it so that its vectors differ from z
        for w in tower.get_layer("adapter").weights:
            w.assign(np.random.default_rng(3).normal(0, 0.3, w.shape).astype(np.float32))
    export_serving_model(str(root / f"sm_{tag}"), emb, ids, titles=titles, context_tower=tower)
    ib.build_index(emb, ids, str(root / f"ix_{tag}"), titles=titles, brute_force_below=1000, recall_queries=50)
    pusher.push(str(root / f"sm_{tag}"), str(root / f"ix_{tag}"), str(root / "serving_model"))
    return emb, ids, tower
