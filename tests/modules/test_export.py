"""The serving SavedModel: signatures called the way TF Serving calls them (named tensors in, named out) give
the numpy brute-force answer; unknown ids and bad k fail; saved_model_cli lists the signatures."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from modules.export import export_serving_model
from pipeline.data.datasets import clustered_vectors

N, D = 400, 16
FEATURES = {"year": tf.TensorSpec([None], tf.float32), "genres": tf.TensorSpec([None, 3], tf.float32)}


class StandIn(tf.Module):
    """Stand-in cold-start embedder: weighted mean of the neighbours' stored embeddings + linear map of features."""

    def __init__(self, emb, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.emb = tf.constant(emb)
        self.w_year = tf.Variable(rng.normal(size=(1, emb.shape[1])).astype(np.float32))
        self.w_genres = tf.Variable(rng.normal(size=(3, emb.shape[1])).astype(np.float32))

    def __call__(self, features, neighbor_ids, neighbor_weights):
        pooled = tf.reduce_sum(tf.gather(self.emb, neighbor_ids) * neighbor_weights[..., None], axis=1)
        return pooled + 0.1 * (features["year"][:, None] * self.w_year + features["genres"] @ self.w_genres)

    def numpy(self, year, genres, rows, weights):
        pooled = (self.emb.numpy()[rows] * weights[..., None]).sum(1)
        z = pooled + 0.1 * (year[:, None] * self.w_year.numpy() + genres @ self.w_genres.numpy())
        return z / np.linalg.norm(z, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    emb = clustered_vectors(N, D, clusters=10, seed=5)
    ids = [f"m{i}" for i in range(N)]
    titles = [f"Movie {i} (19{i % 100:02d})" for i in range(N)]
    standin = StandIn(emb)
    path = str(tmp_path_factory.mktemp("export") / "sm")
    export_serving_model(path, emb, ids, titles=titles, embed_fn=standin, feature_spec=FEATURES)
    return path, emb, np.array(ids), np.array(titles), standin


def numpy_top_k(scores, k):
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(scores, idx, 1)


def test_related_items_equals_numpy_top_k(exported):
    path, emb, ids, titles, _ = exported
    sig = tf.saved_model.load(path).signatures["related_items"]
    assert set(sig.structured_input_signature[1]) == {"item_id", "k"}
    q = np.array([3, 77, 399])
    out = sig(item_id=tf.constant(ids[q]), k=tf.constant(10, tf.int32))
    assert set(out) == {"item_ids", "scores", "titles"}
    scores = emb[q] @ emb.T
    scores[np.arange(len(q)), q] = -np.inf  # the query item is excluded
    idx, top = numpy_top_k(scores, 10)
    assert out["item_ids"].shape == (3, 10)
    np.testing.assert_array_equal(out["item_ids"].numpy().astype(str), ids[idx])
    np.testing.assert_array_equal(out["titles"].numpy().astype(str), titles[idx])
    np.testing.assert_allclose(out["scores"].numpy(), top, rtol=1e-5)


def test_similar_items_without_a_query_head_is_related_items(exported):
    path, _, ids, _, _ = exported
    m = tf.saved_model.load(path)
    assert set(m.signatures["similar_items"].structured_input_signature[1]) == {"item_id", "k"}
    args = dict(item_id=tf.constant(ids[[5, 200]]), k=tf.constant(7, tf.int32))
    a, b = m.signatures["related_items"](**args), m.signatures["similar_items"](**args)
    for key in ("item_ids", "scores", "titles"):
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="similar_items: unknown item id"):
        m.signatures["similar_items"](item_id=tf.constant(["nope"]), k=tf.constant(3))


def test_embed_item_equals_numpy(exported):
    path, emb, ids, _, standin = exported
    sig = tf.saved_model.load(path).signatures["embed_item"]
    assert set(sig.structured_input_signature[1]) == {"year", "genres", "neighbor_ids", "neighbor_weights", "k"}
    nb = np.array([["m1", "m2", "m9"], ["m50", "m51", ""]])  # "" pads the second row
    w = np.array([[0.5, 0.3, 0.2], [0.6, 0.4, 7.0]], np.float32)
    year, genres = np.array([0.5, -1.0], np.float32), np.eye(3, dtype=np.float32)[:2]
    out = sig(
        year=tf.constant(year),
        genres=tf.constant(genres),
        neighbor_ids=tf.constant(nb),
        neighbor_weights=tf.constant(w),
        k=tf.constant(5, tf.int32),
    )
    rows = np.array([[1, 2, 9], [50, 51, 0]])
    want = standin.numpy(year, genres, rows, np.where(nb == "", 0, w))
    np.testing.assert_allclose(out["embedding"].numpy(), want, rtol=1e-5, atol=1e-6)
    idx, top = numpy_top_k(want @ emb.T, 5)
    np.testing.assert_array_equal(out["item_ids"].numpy().astype(str), ids[idx])
    np.testing.assert_allclose(out["scores"].numpy(), top, rtol=1e-4, atol=1e-5)


def test_unknown_id_and_bad_k_are_invalid_argument(exported):
    path = exported[0]
    m = tf.saved_model.load(path)
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown item id.*nope"):
        m.signatures["related_items"](item_id=tf.constant(["m1", "nope"]), k=tf.constant(3))
    for k in (0, N):  # N - 1 others at most
        with pytest.raises(tf.errors.InvalidArgumentError, match="k must be in"):
            m.signatures["related_items"](item_id=tf.constant(["m1"]), k=tf.constant(k))
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown item id.*ghost"):
        m.signatures["embed_item"](
            year=tf.constant([0.0]),
            genres=tf.zeros([1, 3]),
            neighbor_ids=tf.constant([["ghost"]]),
            neighbor_weights=tf.constant([[1.0]]),
            k=tf.constant(3),
        )


def test_saved_model_cli_lists_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run(
        [cli, "show", "--dir", exported[0], "--all"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for name in (
        "signature_def['related_items']",
        "signature_def['similar_items']",
        "signature_def['embed_item']",
        "signature_def['serving_default']",
        "inputs['item_id']",
        "inputs['neighbor_ids']",
        "outputs['item_ids']",
        "outputs['scores']",
        "outputs['titles']",
        "outputs['embedding']",
    ):
        assert name in out.stdout, name


def test_export_refuses_reserved_feature_names(tmp_path):
    emb = clustered_vectors(5, 4)
    with pytest.raises(ValueError, match="may not be named"):
        export_serving_model(
            str(tmp_path),
            emb,
            list("abcde"),
            embed_fn=lambda *a: a[0],
            feature_spec={"k": tf.TensorSpec([None], tf.float32)},
        )


class QueryStandIn(tf.Module):
    """Stand-in query head: a fixed random linear map (u = z A), not symmetric."""

    def __init__(self, d, seed=3):
        super().__init__()
        self.a = tf.constant(np.random.default_rng(seed).normal(size=(d, d)).astype(np.float32))

    def __call__(self, z):
        return z @ self.a


def test_query_vectors_drive_related_items_and_cold_start(tmp_path):
    emb = clustered_vectors(N, D, clusters=10, seed=5)
    ids = np.array([f"m{i}" for i in range(N)])
    head, standin = QueryStandIn(D), StandIn(emb)
    query = emb @ head.a.numpy()
    path = str(tmp_path / "sm")
    export_serving_model(
        path, emb, list(ids), embed_fn=standin, feature_spec=FEATURES, query_embeddings=query, query_fn=head
    )
    loaded = tf.saved_model.load(path)
    q = np.array([3, 77, 399])
    out = loaded.signatures["related_items"](item_id=tf.constant(ids[q]), k=tf.constant(10, tf.int32))
    scores = query[q] @ emb.T
    scores[np.arange(len(q)), q] = -np.inf
    idx, top = numpy_top_k(scores, 10)
    np.testing.assert_array_equal(out["item_ids"].numpy().astype(str), ids[idx])
    np.testing.assert_allclose(out["scores"].numpy(), top, rtol=1e-4, atol=1e-4)
    plain = emb[q] @ emb.T
    plain[np.arange(len(q)), q] = -np.inf
    assert not np.array_equal(numpy_top_k(plain, 10)[0], idx)  # the query vectors changed the answer
    out = loaded.signatures["similar_items"](item_id=tf.constant(ids[q]), k=tf.constant(10, tf.int32))
    sim_idx, sim_top = numpy_top_k(plain, 10)  # similar_items: the item's own z against z, not the head's u
    np.testing.assert_array_equal(out["item_ids"].numpy().astype(str), ids[sim_idx])
    np.testing.assert_allclose(out["scores"].numpy(), sim_top, rtol=1e-4, atol=1e-4)
    nb, w = np.array([["m1", "m2", "m9"]]), np.array([[0.5, 0.3, 0.2]], np.float32)
    year, genres = np.array([0.5], np.float32), np.eye(3, dtype=np.float32)[:1]
    out = loaded.signatures["embed_item"](
        year=tf.constant(year),
        genres=tf.constant(genres),
        neighbor_ids=tf.constant(nb),
        neighbor_weights=tf.constant(w),
        k=tf.constant(5, tf.int32),
    )
    z = standin.numpy(year, genres, np.array([[1, 2, 9]]), w)
    np.testing.assert_allclose(out["embedding"].numpy(), z, rtol=1e-5, atol=1e-6)  # the indexable z, not u
    idx, _ = numpy_top_k((z @ head.a.numpy()) @ emb.T, 5)
    np.testing.assert_array_equal(out["item_ids"].numpy().astype(str), ids[idx])
    np.testing.assert_allclose(loaded.query_new(tf.constant(z)).numpy(), z @ head.a.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.query_embeddings.numpy(), query)
    with pytest.raises(ValueError, match="needs query_fn"):
        export_serving_model(
            str(tmp_path / "bad"), emb, list(ids), embed_fn=standin, feature_spec=FEATURES, query_embeddings=query
        )


# ------------------------------------------------------------------------------------------------ recommend
TOWER_N = 120


def small_tower(emb, form="sequence", adapter=False, max_len=4):
    from modules import context_tower as ct

    config = ct.ContextTowerConfig(form=form, max_len=max_len, hidden_dim=8, num_layers=1, dropout=0.0, adapter=adapter)
    tower = ct.build_context_tower(config, emb)
    if adapter:  # the adapter starts at the identity: move it so that its vectors differ from z
        for w in tower.get_layer("adapter").weights:
            w.assign(np.random.default_rng(3).normal(0, 0.3, w.shape).astype(np.float32))
    return tower


@pytest.fixture(scope="module", params=[False, True], ids=["z", "adapter"])
def recommend_export(request, tmp_path_factory):
    emb = clustered_vectors(TOWER_N, 8, clusters=6, seed=7)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    ids = [f"m{i}" for i in range(TOWER_N)]
    tower = small_tower(emb, adapter=request.param)
    path = str(tmp_path_factory.mktemp("rec") / "sm")
    export_serving_model(path, emb, ids, titles=[f"T{i}" for i in range(TOWER_N)], context_tower=tower)
    return tf.saved_model.load(path), tower, np.array(ids)


def reference_recommend(tower, histories, k, weights=None):
    """numpy: u_c from query_vectors, every item scored u . v, the history's items excluded, stable top-k."""
    from modules.context_tower import query_vectors

    u = query_vectors(tower, histories, weights)
    s = u @ tower.item_vectors().numpy().T
    for r, h in enumerate(histories):
        s[r, h] = -np.inf
    return numpy_top_k(s, k)


def test_recommend_equals_numpy_reference(recommend_export):
    m, tower, ids = recommend_export
    has_adapter = tower.get_config()["adapter"]
    assert has_adapter == hasattr(m, "recommend_vectors")  # the adapter's vectors travel with the export
    if has_adapter:
        assert not np.allclose(m.recommend_vectors.numpy(), m.embeddings.numpy(), atol=1e-3)
    histories = [np.array([3, 40, 41, 7, 90, 5]), np.array([11]), np.array([60, 61])]  # the first beyond max_len
    width = max(map(len, histories))
    padded = np.array([list(ids[h]) + [""] * (width - len(h)) for h in histories])
    out = m.signatures["recommend"](history_ids=tf.constant(padded), k=tf.constant(7))
    want_idx, want_scores = reference_recommend(tower, histories, 7)
    np.testing.assert_array_equal(out["item_ids"].numpy().astype(str), ids[want_idx])
    np.testing.assert_allclose(out["scores"].numpy(), want_scores, rtol=1e-4, atol=1e-5)
    assert out["titles"].numpy()[0, 0].decode() == f"T{want_idx[0, 0]}"
    assert out["history_used"].numpy().tolist() == [6, 1, 2]
    w = np.random.default_rng(0).uniform(0.1, 3.0, (3, width)).astype(np.float32)
    out = m.signatures["recommend_weighted"](
        history_ids=tf.constant(padded), history_weights=tf.constant(w), k=tf.constant(5)
    )
    want_idx, _ = reference_recommend(tower, histories, 5, [w[r, : len(h)] for r, h in enumerate(histories)])
    np.testing.assert_array_equal(out["item_ids"].numpy().astype(str), ids[want_idx])


def test_recommend_padding_and_unknown_ids(recommend_export):
    m, _, ids = recommend_export
    rec = m.signatures["recommend"]
    plain = rec(history_ids=tf.constant([[ids[3], ids[9]]]), k=tf.constant(10))
    # padding anywhere and unknown ids between the known ones: the same list, only the known ids counted
    noisy = rec(history_ids=tf.constant([["", ids[3], "nope", "", ids[9], "", "x"]]), k=tf.constant(10))
    np.testing.assert_array_equal(plain["item_ids"].numpy(), noisy["item_ids"].numpy())
    np.testing.assert_allclose(plain["scores"].numpy(), noisy["scores"].numpy(), rtol=1e-5, atol=1e-6)
    assert noisy["history_used"].numpy().tolist() == [2]
    assert not {ids[3], ids[9]} & set(plain["item_ids"].numpy()[0].astype(str))


def test_recommend_errors_name_the_input(recommend_export):
    m, _, ids = recommend_export
    rec, weighted = m.signatures["recommend"], m.signatures["recommend_weighted"]
    for hist, text in (([["nope", ""]], "history_ids"), ([[ids[1]]], "k must be in")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=text):
            rec(history_ids=tf.constant(hist), k=tf.constant(TOWER_N + 1 if text != "history_ids" else 3))
    for w in ([[1.0, -1.0]], [[np.nan, 1.0]], [[1.0]]):
        with pytest.raises(tf.errors.InvalidArgumentError, match="history_weights"):
            weighted(
                history_ids=tf.constant([[ids[1], ids[2]]]),
                history_weights=tf.constant(w, tf.float32),
                k=tf.constant(3),
            )


def test_recommend_signature_lists_its_inputs(recommend_export):
    m, _, _ = recommend_export
    for name, inputs in (
        ("recommend", {"history_ids", "k"}),
        ("recommend_weighted", {"history_ids", "history_weights", "k"}),
    ):
        sig = m.signatures[name]
        assert set(sig.structured_input_signature[1]) == inputs
        assert set(sig.structured_outputs) == {"item_ids", "scores", "titles", "history_used"}
        assert sig.structured_input_signature[1]["history_ids"].shape.as_list() == [None, None]


def test_export_without_a_tower_has_no_recommend(exported):
    assert "recommend" not in tf.saved_model.load(exported[0]).signatures


def test_recommend_from_the_towers_saved_model_path(tmp_path):
    """The pipeline's tower artifact (SavedModel + config.json) exports the same recommend as the Keras tower."""
    from modules import context_tower as ct
    from pipeline.history import train as tower_train

    emb = clustered_vectors(TOWER_N, 8, clusters=6, seed=7)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    ids = [f"m{i}" for i in range(TOWER_N)]
    tower = small_tower(emb, form="set")
    config = ct.ContextTowerConfig(form="set", max_len=4, hidden_dim=8, num_layers=1, dropout=0.0)
    tower_train.save(tower, config, {}, str(tmp_path / "tower"))
    for name, source in (("keras", tower), ("path", str(tmp_path / "tower" / "saved_model"))):
        export_serving_model(str(tmp_path / name), emb, ids, context_tower=source)
    hist = tf.constant([["m5", "m17", "m18", "m2", "m99", ""]])
    a, b = (tf.saved_model.load(str(tmp_path / n)).signatures["recommend"] for n in ("keras", "path"))
    out_a, out_b = a(history_ids=hist, k=tf.constant(8)), b(history_ids=hist, k=tf.constant(8))
    np.testing.assert_array_equal(out_a["item_ids"].numpy(), out_b["item_ids"].numpy())
    np.testing.assert_allclose(out_a["scores"].numpy(), out_b["scores"].numpy(), rtol=1e-5, atol=1e-6)
