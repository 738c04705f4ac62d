"""Cold start (modules/cold_start.py): an item embedded from its raw items.csv features and its neighbours through
the exported `embed_item` signature, with a real tf.Transform graph and a (untrained) model from a SavedModel.
An existing item fed its own features and neighbourhood gets its BulkEmbedder embedding back; the top-k equals
numpy brute force; a held-out copy of an item lands next to it; ML-100K items held out of training get neighbours
of their genre (slow)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from modules import cold_start, cooccurrence
from modules import embedding as be
from modules import features as features_lib
from modules.export import export_serving_model
from modules.model import PinSageHParams, build_model
from pipeline.sampling import transitions as sn
from schema import build
from schema import embeddings as embeddings_io
from schema import neighborhoods as neighborhood_io
from tests import fixtures

SPEC = {
    "features": {
        "title": {"kind": "text"},
        "year": {"kind": "numeric"},
        "genres": {"kind": "categorical", "separator": "|"},
    }
}
N, T = 48, 5
TOL = 1e-4
WORDS = ["star", "wars", "love", "story", "dark", "night", "toy", "life", "war", "king", "blue", "city"]
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def raw_catalogue(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(N):
        title = " ".join(rng.choice(WORDS, rng.integers(1, 4)))
        genres = "|".join(rng.choice(GENRES, rng.integers(1, 3), replace=False))
        rows.append(
            {
                "item_id": [f"i{u}".encode()],
                "title": [title.encode()],
                "year": [float(rng.integers(1950, 2000))],
                "genres": [genres.encode()],
                "node_id": [u],
                "train_degree": [0 if u % 3 == 0 else int(rng.integers(1, 50))],
            }
        )
    nbr = (np.arange(N)[:, None] + 1 + rng.integers(0, N - 1, (N, T))) % N
    nbr[rng.random((N, T)) < 0.25] = -1
    nbr[6] = -1  # an item without neighbours
    w = rng.random((N, T)).astype(np.float32) * (nbr >= 0) + 0.05 * (nbr >= 0)
    w = (w / np.maximum(w.sum(1, keepdims=True), 1e-9)).astype(np.float32)
    return rows, nbr.astype(np.int64), w


def transform(rows, tmp, spec=SPEC):
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    from modules.preprocessing import transform as transform_lib

    meta = dataset_metadata.DatasetMetadata(build.graph_items_schema(build.items_schema(spec, "string")))
    fn = lambda inputs: transform_lib.preprocessing_fn(inputs, spec)  # noqa: E731
    with tft_beam.Context(temp_dir=os.path.join(tmp, "tft_tmp")):
        (data, _), transform_fn = (rows, meta) | tft_beam.AnalyzeAndTransformDataset(fn, output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(tmp, "transform_graph"))
    # the raw metadata, as the TFX Transform component writes it next to transform_fn/ (raw_feature_spec())
    metadata_io.write_metadata(meta, os.path.join(tmp, "transform_graph", tft.TFTransformOutput.RAW_METADATA_DIR))
    data = sorted(data, key=lambda r: int(r["node_id"]))
    feats = {}
    for name in data[0]:
        if name == "title_tokens":
            feats[name] = tf.ragged.constant(
                [np.asarray(r[name], np.int64) for r in data], dtype=tf.int64, row_splits_dtype=tf.int64
            )
        else:
            feats[name] = np.stack([np.asarray(r[name]) for r in data])
    return feats, os.path.join(tmp, "transform_graph")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("cold"))
    rows, nbr, w = raw_catalogue()
    feats, tg = transform(rows, tmp)
    tf.keras.utils.set_random_seed(0)
    hp = PinSageHParams(num_layers=2, hidden_dim=16, output_dim=8, text_embedding_dim=4)
    model = build_model(hp, features_lib.feature_spec_from_arrays(feats), num_items=N, text_vocab_size=100)
    model_dir = os.path.join(tmp, "model", "Format-Serving")  # a TFX Model artifact's layout
    be.save_model(model, model_dir, save_traces=False)
    lw = be.LayerwiseModel.from_saved_model(model_dir)
    emb = be.embed_in_memory(lw, feats, nbr, w)
    schema_path = os.path.join(tmp, "items_schema.pbtxt")
    build.write_pbtxt(build.items_schema(SPEC, "string"), schema_path)
    embed_fn, spec = cold_start.make_embed_fn(
        model_dir, tg, feats, nbr, w, schema_path, lw=lw, new_item_degree="zero"
    )  # degree 0: the items below
    ids = [f"i{u}" for u in range(N)]
    path = os.path.join(tmp, "serving")
    export_serving_model(path, emb, ids, titles=[f"t{u}" for u in range(N)], embed_fn=embed_fn, feature_spec=spec)
    return dict(
        tmp=tmp,
        feats=feats,
        tg=tg,
        schema_path=schema_path,
        rows=rows,
        nbr=nbr,
        w=w,
        emb=emb,
        ids=ids,
        spec=spec,
        path=path,
        embed_fn=embed_fn,
    )


def request(s, items, nbr_of=None):
    """Named signature inputs for items (their raw columns), with the neighbourhoods of `nbr_of`."""
    nbr_of = items if nbr_of is None else nbr_of
    r = s["rows"]
    ids = np.array([[s["ids"][v] if v >= 0 else "" for v in s["nbr"][u]] for u in nbr_of], dtype=object)
    return {
        "title": tf.constant([r[u]["title"][0] for u in items]),
        "genres": tf.constant([r[u]["genres"][0] for u in items]),
        "year": tf.constant([r[u]["year"][0] for u in items], tf.float32),
        "neighbor_ids": tf.constant(ids, tf.string),
        "neighbor_weights": tf.constant(s["w"][nbr_of], tf.float32),
    }


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_raw_feature_spec_is_the_items_columns(setup):
    assert setup["spec"] == {
        "genres": tf.TensorSpec([None], tf.string),
        "title": tf.TensorSpec([None], tf.string),
        "year": tf.TensorSpec([None], tf.float32),
    }


def test_existing_item_gets_its_bulk_embedding_back_through_the_signature(setup):
    s = setup
    items = [u for u in range(N) if s["rows"][u]["train_degree"][0] == 0]  # node_id/degree as a new item's
    assert 6 in items  # the one without neighbours
    sig = tf.saved_model.load(s["path"]).signatures["embed_item"]
    assert set(sig.structured_input_signature[1]) == {
        "title",
        "genres",
        "year",
        "neighbor_ids",
        "neighbor_weights",
        "k",
    }
    k = 5
    out = sig(k=tf.constant(k), **request(s, items))
    got = out["embedding"].numpy()
    want = unit(s["emb"][items])
    assert got.shape == want.shape and np.abs(got - want).max() <= TOL
    scores = got @ s["emb"].T
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.testing.assert_allclose(out["scores"].numpy(), np.take_along_axis(scores, idx, 1), atol=1e-5)
    for row, got_ids, sc in zip(idx, out["item_ids"].numpy(), scores):
        got_ids = [x.decode() for x in got_ids]
        sure = [s["ids"][i] for i in row if sc[i] > sc[row[-1]] + 1e-5]  # above the k-th score: no tie
        assert got_ids[: len(sure)] == sure and all(sc[s["ids"].index(x)] >= sc[row[-1]] - 1e-5 for x in got_ids)
    assert np.abs(s["emb"][items[0]] - s["emb"][items[1]]).max() > 1e-3  # not a degenerate model


def test_held_out_item_lands_on_its_original(setup):
    """A new item (no id; node_id -1 and train degree 0 for the Transform) with the features and the neighbours of
    item X: its nearest catalogue item is X (items with train degree 0, whose transformed features a new item
    shares; for the others the log-degree feature differs)."""
    s = setup
    items = [u for u in range(N) if s["rows"][u]["train_degree"][0] == 0]
    out = tf.saved_model.load(s["path"]).signatures["embed_item"](k=tf.constant(1), **request(s, items))
    assert [x[0].decode() for x in out["item_ids"].numpy()] == [s["ids"][u] for u in items]
    np.testing.assert_allclose(out["scores"].numpy()[:, 0], 1.0, atol=1e-5)


def test_padding_and_neighbours_matter(setup):
    s = setup
    module = tf.saved_model.load(s["path"])
    u, v = 3, 4
    req = request(s, [u])
    # the same neighbourhood with extra padding columns gives the same vector
    padded = dict(
        req,
        neighbor_ids=tf.concat([req["neighbor_ids"], tf.constant([["", ""]])], 1),
        neighbor_weights=tf.concat([req["neighbor_weights"], tf.constant([[0.7, 0.2]])], 1),
    )
    sig = module.signatures["embed_item"]
    a = sig(k=tf.constant(1), **req)["embedding"].numpy()
    b = sig(k=tf.constant(1), **padded)["embedding"].numpy()
    assert np.abs(a - b).max() <= 1e-6
    c = sig(k=tf.constant(1), **request(s, [u], nbr_of=[v]))["embedding"].numpy()
    assert np.abs(a - c).max() > 1e-4  # a different neighbourhood moves it
    with pytest.raises(tf.errors.InvalidArgumentError, match="nope"):
        sig(k=tf.constant(1), **dict(req, neighbor_ids=tf.constant([["nope"] * T])))


def test_pusher_exports_embed_item_from_the_pipeline_artifacts(setup, tmp_path):
    """PinSagePusher's executor with the optional cold-start inputs (model, transform_graph, examples,
    neighborhoods, items_schema): the pushed version's embed_item gives the same vectors."""
    from tfx.types import artifact_utils, standard_artifacts

    from pipeline.components import artifacts
    from pipeline.components import pusher as pusher_component

    s = setup

    def artifact(cls, uri):
        a = cls()
        a.uri = str(uri)
        os.makedirs(a.uri, exist_ok=True)
        return [a]

    inputs = {
        "embeddings": artifact(artifacts.Embeddings, tmp_path / "embeddings"),
        "index": artifact(artifacts.Index, tmp_path / "index"),
        "model": artifact(standard_artifacts.Model, os.path.join(s["tmp"], "model")),
        "transform_graph": artifact(standard_artifacts.TransformGraph, s["tg"]),
        "examples": artifact(standard_artifacts.Examples, tmp_path / "examples"),
        "neighborhoods": artifact(artifacts.Neighborhoods, tmp_path / "neighborhoods"),
    }
    embeddings_io.write_embeddings(inputs["embeddings"][0].uri, s["emb"], s["ids"])
    os.makedirs(os.path.join(inputs["index"][0].uri, "scann"))  # stand-in: push only copies it
    inputs["examples"][0].split_names = artifact_utils.encode_split_names(["items"])
    fixtures.write_examples(os.path.join(inputs["examples"][0].uri, "Split-items"), s["feats"])
    neighborhood_io.write_neighborhoods(inputs["neighborhoods"][0].uri, s["nbr"], s["w"])
    out = {"pushed_model": artifact(standard_artifacts.PushedModel, tmp_path / "pushed")}
    serving = str(tmp_path / "serving_model")
    pusher_component.Executor().Do(
        inputs,
        out,
        {"serving_model_dir": serving, "model_name": "pinsage", "keep": 1, "items_schema": s["schema_path"]},
    )
    version = out["pushed_model"][0].get_string_custom_property("pushed_destination")
    sig = tf.saved_model.load(version).signatures["embed_item"]
    # the pipeline's default gives a new item the median catalogue item's log-degree: those items come back
    log_degree = np.asarray(s["feats"]["log_degree"]).ravel()
    items = [u for u in range(N) if log_degree[u] == np.sort(log_degree)[N // 2]]
    assert items and all(s["rows"][u]["train_degree"][0] > 0 for u in items)
    got = sig(k=tf.constant(1), **request(s, items))["embedding"].numpy()
    assert np.abs(got - unit(s["emb"][items])).max() <= TOL
    with pytest.raises(ValueError, match="neighborhoods"):
        pusher_component.cold_start_embedder(dict(inputs, neighborhoods=[]), {"items_schema": s["schema_path"]}, N)
    assert pusher_component.cold_start_embedder({"embeddings": inputs["embeddings"]}, {}, N) == (None, None)


# ------------------------------------------------------------------------------------------------ real data
# ML-100K: 30 items are held out of everything the model is trained on (graph, Transform analysers,
# neighbourhoods, pairs); a short training run (~20 s); each held-out item then comes back through embed_item with
# its title and year and the neighbours its interactions give it. Its top-10 should share its genre above chance.
HELD_OUT, TOP_T, WINDOW, K_RELATED = 30, 10, 3, 10
COLD_HP = dict(
    num_layers=2,
    hidden_dim=64,
    output_dim=32,
    text_embedding_dim=16,
    batch_size=256,
    num_negatives=200,
    hard_negatives=False,
    warmup_steps=20,
    epochs=1,
    steps_per_epoch=150,
    seed=0,
)


def positions(inter):
    """Each context's interactions in time order -> (context index, position)."""
    inter = inter.sort_values(["context_id", "timestamp", "item_id"], kind="stable")
    return (
        inter,
        inter["context_id"].astype("category").cat.codes.to_numpy(np.int64),
        inter.groupby("context_id").cumcount().to_numpy(np.int64),
    )


def held_out_requests(inter, items, held, cat, give_genres):
    """The held-out items' embed_item requests: raw features, and neighbours by the same window counts over all
    interactions, catalogue items only."""
    all_inter, actx, apos = positions(inter)
    ids = sorted(held) + list(cat["item_id"])
    index = {i: j for j, i in enumerate(ids)}
    counts = cooccurrence.transition_counts(
        actx, all_inter["item_id"].map(index).to_numpy(np.int64), apos, len(ids), WINDOW
    )
    counts = counts[:HELD_OUT].toarray()[:, HELD_OUT:]  # held-out rows, catalogue columns
    h_nbr, h_cnt = sn.top_t_rows(counts, TOP_T)
    h_w = h_cnt / np.maximum(h_cnt.sum(1, keepdims=True), 1)
    by_id = items.set_index("item_id")
    held = sorted(held)
    req = {
        "title": tf.constant([by_id["title"][i] for i in held]),
        "genres": tf.constant([by_id["genres"][i] if give_genres else "" for i in held]),
        "year": tf.constant([by_id["year"][i] for i in held], tf.float32),
        "neighbor_ids": tf.constant([[cat["item_id"][v] if v >= 0 else "" for v in r] for r in h_nbr]),
        "neighbor_weights": tf.constant(h_w, tf.float32),
    }
    return h_nbr, h_w, req


def ml100k_cold_start(tmp, hp_overrides=None, give_genres=True):
    """embed_item of a model trained without the held-out items, the held-out items' requests (raw features,
    neighbours from their interactions), their genres and the catalogue's."""
    from modules.model import PinSageHParams
    from modules.train import train
    from pipeline.data import datasets

    items, inter, spec = datasets.load_ml100k()
    items = items.assign(item_id=items["item_id"].astype(str), year=items["year"].astype("float64"))
    inter = inter.assign(item_id=inter["item_id"].astype(str))
    genres = {i: set(g.split("|")) - {"unknown", ""} for i, g in zip(items["item_id"], items["genres"])}
    count = inter["item_id"].value_counts()
    rng = np.random.default_rng(0)
    eligible = sorted(
        i
        for i in items["item_id"]
        if count.get(i, 0) >= 5 and genres[i] and np.isfinite(items.set_index("item_id")["year"][i])
    )
    held = set(rng.choice(eligible, HELD_OUT, replace=False))
    cat = items[~items["item_id"].isin(held)].reset_index(drop=True)  # the catalogue, node id = row
    node_of = {i: n for n, i in enumerate(cat["item_id"])}
    train_inter, ctx, pos = positions(inter[~inter["item_id"].isin(held)])
    node = train_inter["item_id"].map(node_of).to_numpy(np.int64)
    n = len(cat)
    degree = np.bincount(node, minlength=n)
    rows = [
        {
            "item_id": [i.encode()],
            "title": [t.encode()],
            "year": [float(y)],
            "genres": [g.encode()],
            "node_id": [u],
            "train_degree": [int(degree[u])],
        }
        for u, (i, t, y, g) in enumerate(zip(cat["item_id"], cat["title"], cat["year"], cat["genres"]))
    ]
    feats, tg = transform(rows, tmp, spec)
    nbr, w, _ = sn.transition_neighborhoods(ctx, node, pos, n, top_t=TOP_T, window=WINDOW)
    q, p, c, _ = cooccurrence.positive_pairs(ctx, node, pos, n, window=WINDOW)
    hp = PinSageHParams(**dict(COLD_HP, **(hp_overrides or {})))
    model, _ = train(feats, nbr, w, q, p, None, hp, os.path.join(tmp, "model"), pair_counts=c)
    lw = be.LayerwiseModel(model)
    emb = be.embed_in_memory(lw, feats, nbr, w)
    schema_path = os.path.join(tmp, "items_schema.pbtxt")
    build.write_pbtxt(build.items_schema(spec, "string"), schema_path)
    embed_fn, fspec = cold_start.make_embed_fn(None, tg, feats, nbr, w, schema_path, lw=lw)
    path = export_serving_model(
        os.path.join(tmp, "serving"),
        emb,
        list(cat["item_id"]),
        titles=list(cat["title"]),
        embed_fn=embed_fn,
        feature_spec=fspec,
    )
    h_nbr, h_w, req = held_out_requests(inter, items, held, cat, give_genres)
    held = sorted(held)
    return dict(
        sig=tf.saved_model.load(path).signatures["embed_item"],
        req=req,
        held_genres=[genres[i] for i in held],
        cat_genres={i: genres[i] for i in cat["item_id"]},
        emb=emb,
        cat_ids=list(cat["item_id"]),
        h_nbr=h_nbr,
        h_w=h_w,
        nbr=nbr,
    )


def genre_hit_rates(sig, req, held_genres, cat_genres, **_):
    """Per held-out item: the share of its top-10 related items sharing a genre with it, and the chance level
    (the share of all catalogue items that do)."""
    out = sig(k=tf.constant(K_RELATED), **req)["item_ids"].numpy().astype(str)
    assert out.shape == (len(held_genres), K_RELATED)
    hits = np.array([np.mean([bool(g & cat_genres[i]) for i in row]) for g, row in zip(held_genres, out)])
    chance = np.array([np.mean([bool(g & c) for c in cat_genres.values()]) for g in held_genres])
    return hits, chance


@pytest.mark.slow
def test_held_out_ml100k_items_get_neighbours_of_their_genre(tmp_path):
    """The held-out items come without their genres (""), so the genre can only reach their embedding through the
    neighbours their interactions give them: the top-10 must share a genre clearly more often than chance, and
    than the same model fed another held-out item's neighbours."""
    r = ml100k_cold_start(str(tmp_path), give_genres=False)
    hits, chance = genre_hit_rates(**r)
    perm = np.roll(np.arange(HELD_OUT), 1)  # each item gets the next one's neighbours
    shuffled = dict(
        r["req"],
        neighbor_ids=tf.gather(r["req"]["neighbor_ids"], perm),
        neighbor_weights=tf.gather(r["req"]["neighbor_weights"], perm),
    )
    wrong, _ = genre_hit_rates(**dict(r, req=shuffled))
    assert 0.2 < chance.mean() < 0.5  # computed from the data, not assumed
    assert hits.mean() >= chance.mean() + 0.10, (hits.mean(), chance.mean())
    assert hits.mean() >= wrong.mean() + 0.10, (hits.mean(), wrong.mean())
