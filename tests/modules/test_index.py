"""ScaNN index: recall against exact search, the brute-force path, serialize/load from a moved directory, and
the TFX executor."""

import json
import shutil

import numpy as np
import pytest

from modules import index as ib
from pipeline.components import index_builder as index_component
from pipeline.data import datasets
from schema import embeddings as embeddings_io


@pytest.fixture(scope="module")
def vectors():
    return datasets.clustered_vectors(6000, 32, clusters=40, seed=3)


def ids_for(n):
    return [f"item-{i}" for i in range(n)]


def test_tree_index_recall_vs_numpy(vectors, tmp_path):
    stats = ib.build_index(vectors, ids_for(len(vectors)), str(tmp_path), brute_force_below=1000, recall_queries=200)
    assert stats["kind"] == "scann_tree_ah" and not stats["brute_force"]
    assert stats["num_leaves"] == round(np.sqrt(len(vectors)))
    assert stats["recall_at_10"] >= 0.9
    # independent check: fresh queries (perturbed items), numpy top-10 by full sort
    rng = np.random.default_rng(7)
    q = vectors[rng.choice(len(vectors), 200, replace=False)] + 0.1 * rng.normal(size=(200, 32)).astype(np.float32)
    exact = np.argsort(-(q @ vectors.T), axis=1)[:, :10]
    approx, _ = ib.load_index(str(tmp_path)).searcher.search_batched(q, final_num_neighbors=10)
    assert ib.recall_at_k(np.asarray(approx), exact) >= 0.9
    assert json.load(open(tmp_path / ib.STATS_FILE))["recall_at_10"] == stats["recall_at_10"]


def test_brute_force_below_threshold_is_exact(vectors, tmp_path):
    small = vectors[:1500]
    stats = ib.build_index(small, ids_for(len(small)), str(tmp_path), titles=[f"t{i}" for i in range(1500)])
    assert stats["kind"] == "brute_force" and stats["brute_force"] and stats["recall_at_10"] == 1.0
    idx, dist = ib.load_index(str(tmp_path)).searcher.search_batched(small[:50], final_num_neighbors=10)
    scores = small[:50] @ small.T
    np.testing.assert_allclose(np.asarray(dist), -np.sort(-scores, axis=1)[:, :10], rtol=1e-5, atol=1e-5)


def test_serialize_load_round_trip_from_moved_dir(vectors, tmp_path):
    n = len(vectors)
    titles = [f"title {i}" for i in range(n)]
    ib.build_index(vectors, ids_for(n), str(tmp_path / "a"), titles=titles, brute_force_below=1000, recall_queries=50)
    before, _ = ib.load_index(str(tmp_path / "a")).searcher.search_batched(vectors[:100], final_num_neighbors=10)
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))  # the Pusher copies it into a version's assets/
    loaded = ib.load_index(str(tmp_path / "b"))
    after, _ = loaded.searcher.search_batched(vectors[:100], final_num_neighbors=10)
    np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
    assert list(loaded.item_ids[:3]) == ids_for(3) and loaded.titles[5] == "title 5"


def test_bad_inputs_refused(tmp_path):
    x = datasets.clustered_vectors(10, 4)
    with pytest.raises(ValueError, match="unique"):
        ib.build_index(x, ["a"] * 10, str(tmp_path))
    with pytest.raises(ValueError, match="line breaks"):
        ib.build_index(x, [f"a\n{i}" for i in range(10)], str(tmp_path))
    with pytest.raises(ValueError, match="ids for"):
        ib.build_index(x, ["a"], str(tmp_path))


def test_tfx_executor_reads_embeddings_artifact(vectors, tmp_path):
    from pipeline.components import artifacts

    emb_art, idx_art = artifacts.Embeddings(), artifacts.Index()
    emb_art.uri, idx_art.uri = str(tmp_path / "emb"), str(tmp_path / "index")
    embeddings_io.write_embeddings(emb_art.uri, vectors[:500], ids_for(500), titles=[f"t{i}" for i in range(500)])
    component = index_component.IndexBuilder(embeddings=__import__("tfx").types.Channel(type=artifacts.Embeddings))
    props = {k: v for k, v in component.exec_properties.items()}
    index_component.Executor().Do({"embeddings": [emb_art]}, {"index": [idx_art]}, props)
    loaded = ib.load_index(idx_art.uri)
    assert loaded.stats["kind"] == "brute_force" and loaded.titles[1] == "t1"
    assert idx_art.get_string_custom_property("kind") == "brute_force"


def test_query_vectors_travel_with_the_embeddings_and_drive_the_recall_queries(vectors, tmp_path, monkeypatch):
    emb = vectors[:300]
    query = np.roll(emb, 1, axis=0)  # item u's query vector is item u-1's embedding
    embeddings_io.write_embeddings(str(tmp_path / "emb"), emb, ids_for(300), query_embeddings=query)
    np.testing.assert_array_equal(embeddings_io.read_query_embeddings(str(tmp_path / "emb")), query)
    embeddings_io.write_embeddings(str(tmp_path / "plain"), emb, ids_for(300))
    assert embeddings_io.read_query_embeddings(str(tmp_path / "plain")) is None
    with pytest.raises(ValueError, match="query embeddings"):
        embeddings_io.write_embeddings(str(tmp_path / "bad"), emb, ids_for(300), query_embeddings=query[:, :3])
    with pytest.raises(ValueError, match="1 query embeddings have NaN"):
        embeddings_io.write_embeddings(
            str(tmp_path / "nan"),
            emb,
            ids_for(300),
            query_embeddings=np.where(np.arange(300)[:, None] == 7, np.nan, query),
        )
    seen = []  # the exact reference is computed for the query vectors
    real = ib.exact_top_k
    monkeypatch.setattr(ib, "exact_top_k", lambda e, q, k, **kw: seen.append(np.array(q)) or real(e, q, k, **kw))
    stats = ib.build_index(
        emb,
        ids_for(300),
        str(tmp_path / "idx"),
        query_embeddings=query,
        brute_force_below=0,
        num_leaves=10,
        leaves_to_search=10,
        recall_queries=50,
        seed=4,
    )
    assert stats["recall_at_10"] >= 0.99  # all leaves searched: exact up to quantisation + reorder
    sample = np.random.default_rng(4).choice(300, size=50, replace=False)
    np.testing.assert_array_equal(seen[-1], query[sample])
