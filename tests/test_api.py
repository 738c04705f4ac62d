"""pinsage.load: a pushed version answered in-process equals a live server's answers for the same version (through
the TensorFlow-free gRPC client) and a brute-force numpy top-k over the version's own vectors, for related,
similar, recommend (history excluded), recommend_for and embed; attributes come with the items; bad input is a
ValueError naming the problem. `pinsage query` resolves titles through the server's catalogue search and its query
path imports no TensorFlow; the client's messages are TF Serving's on the wire."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

import pinsage
from modules import context_tower as ct
from modules import index as ib
from modules.export import export_serving_model
from pipeline import cli
from pipeline.data import datasets
from pipeline.push import pusher
from schema import versions
from serving import client
from serving.config import ServingConfig
from serving.server import serve
from tests.fixtures import REPO_ROOT
from tests.serving.rest_fixtures import title_of

N, D, MAX_LEN, YEAR_W = 600, 8, 4, 0.05
FEATURES = {"year": tf.TensorSpec([None], tf.float32)}
TWINS, ALIEN, ALIENS = (5, 6), 7, 8  # two items sharing a title; a title that starts another's


class Embedder(tf.Module):
    """A new item's z before normalisation: its neighbours' weighted sum + year * YEAR_W (per dimension)."""

    def __init__(self, emb):
        super().__init__()
        self.emb = tf.constant(emb)

    def __call__(self, features, neighbor_ids, neighbor_weights):
        pooled = tf.reduce_sum(tf.gather(self.emb, neighbor_ids) * neighbor_weights[..., None], axis=1)
        return pooled + features["year"][:, None] * YEAR_W


def catalogue():
    titles = [title_of(j) for j in range(N)]
    titles[TWINS[0]] = titles[TWINS[1]] = "Twin Peaks (1990)"
    titles[ALIEN], titles[ALIENS], titles[9] = "Alien (1979)", "Alien (1979) Director's Cut", "Amélie (2001)"
    attributes = [{"year": str(1950 + j % 50), "genres": ["drama", f"g{j % 7}"]} for j in range(N)]
    return [f"i{j}" for j in range(N)], titles, attributes


def make_full_version(root):
    """A version with every signature: a query head (related != similar), a cold-start embedder, a context tower
    and known contexts' stored vectors, titles and attributes; pushed to root/serving_model/pinsage/1."""
    ids, titles, attributes = catalogue()
    emb = np.asarray(datasets.clustered_vectors(N, D, clusters=12, seed=5), np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    head = np.random.default_rng(1).normal(0, 0.5, (D, D)).astype(np.float32) + np.eye(D, dtype=np.float32)
    config = ct.ContextTowerConfig(form="sequence", max_len=MAX_LEN, hidden_dim=8, num_layers=1, dropout=0.0)
    tower = ct.build_context_tower(config, emb)
    rng = np.random.default_rng(2)
    histories = [rng.choice(N, int(rng.integers(1, 9)), replace=False) for _ in range(30)]
    names = [f"user-{c}" for c in range(30)]
    contexts = versions.write_context_arrays(
        str(root / "contexts"), names, ct.query_vectors(tower, histories), histories, {}
    )
    export_serving_model(
        str(root / "sm"),
        emb,
        ids,
        titles=titles,
        embed_fn=Embedder(emb),
        feature_spec=FEATURES,
        query_embeddings=emb @ head,
        query_fn=lambda z: tf.matmul(z, tf.constant(head)),
        context_tower=tower,
        context_vectors=contexts,
    )
    ib.build_index(
        emb, ids, str(root / "ix"), titles=titles, query_embeddings=emb @ head, attributes=attributes,
        brute_force_below=1000, recall_queries=50,
    )  # fmt: skip
    pusher.push(str(root / "sm"), str(root / "ix"), str(root / "serving_model"), contexts_dir=str(root / "contexts"))
    return dict(emb=emb, head=head, tower=tower, histories=dict(zip(names, histories)), contexts=contexts)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    made = make_full_version(root)
    config = ServingConfig(model_base_path=str(root / "serving_model"), port=0, poll_seconds=60, rest_api_port=0)
    server = serve(config, block=False)
    yield dict(
        made,
        root=root,
        model_dir=str(root / "serving_model" / "pinsage"),
        version=pinsage.load(str(root / "serving_model" / "pinsage")),
        addr=f"127.0.0.1:{server.port}",
        ports=["--port", str(server.port), "--rest-api-port", str(server.rest.port)],
    )
    server.stop()


def top_k(scores: np.ndarray, k: int, exclude=()):
    """(ids, scores) of the k best items, `exclude`d rows left out: the brute-force reference."""
    scores = np.asarray(scores, np.float64).copy()
    scores[list(exclude)] = -np.inf
    best = np.argsort(-scores, kind="stable")[:k]
    return [f"i{j}" for j in best], scores[best]


def assert_items(items, want_ids, want_scores):
    assert [x.item_id for x in items] == want_ids
    np.testing.assert_allclose([x.score for x in items], want_scores, rtol=1e-4, atol=1e-5)


def as_served(items):
    """The API's lists in the client's shape, to compare with the server's answer exactly."""
    return {
        "item_ids": [[x.item_id for x in row] for row in items],
        "titles": [[x.title for x in row] for row in items],
        "scores": [[x.score for x in row] for row in items],
    }


def without_history_used(out: dict) -> dict:
    return {k: v for k, v in out.items() if k != "history_used"}


def test_related_and_similar_equal_the_server_and_a_brute_force_top_k(env):
    v, emb, queries = env["version"], env["emb"], env["emb"] @ env["head"]
    rows = [0, 17, 333, N - 1]
    ids = [f"i{r}" for r in rows]
    for k in (1, 10, 40):
        related, similar = v.related(ids, k=k), v.similar(ids, k=k)
        assert as_served(related) == client.related(env["addr"], ids, k)
        assert as_served(similar) == client.related(env["addr"], ids, k, signature_name=versions.SIMILAR_ITEMS)
        for r, got_related, got_similar in zip(rows, related, similar):
            assert_items(got_related, *top_k(queries[r] @ emb.T, k, exclude=[r]))
            assert_items(got_similar, *top_k(emb[r] @ emb.T, k, exclude=[r]))
    assert as_served(v.related("i17", k=5)) == client.related(env["addr"], ["i17"], 5)  # one id, the fast path
    assert [x.item_id for x in v.related("i17", k=5)[0]] != [x.item_id for x in v.similar("i17", k=5)[0]]


def test_items_carry_titles_and_attributes(env):
    ids, titles, attributes = catalogue()
    for item in env["version"].related(["i3", "i9"], k=20)[0] + env["version"].similar("i9", k=20)[0]:
        j = ids.index(item.item_id)
        assert (item.title, item.attributes) == (titles[j], attributes[j])
    assert isinstance(item, pinsage.Item) and type(item.score) is float


def test_recommend_excludes_the_history_and_equals_the_server_and_a_brute_force_top_k(env):
    v, emb = env["version"], env["emb"]
    histories = [["i3", "i40", "i41", "i7", "i90", "i5"], ["i11"], ["i60", "nope", "i61"]]
    for k in (1, 10, 50):
        got = v.recommend(histories, k=k)
        assert as_served(got) == without_history_used(client.recommend(env["addr"], histories, k))
        for hist, items in zip(histories, got):
            rows = [int(i[1:]) for i in hist if i != "nope"]
            u = ct.query_vectors(env["tower"], [np.array(rows)])[0]
            assert_items(items, *top_k(u @ emb.T, k, exclude=rows))
            assert not {x.item_id for x in items} & set(hist)
    assert as_served(v.recommend(histories[0], k=5)) == as_served(v.recommend([histories[0]], k=5))  # one history
    w = [[0.5, 1, 2, 0, 1, 3], [2.0], [1, 1, 0.1]]
    weighted = v.recommend(histories, k=10, weights=w)
    rows = [3, 40, 41, 7, 90, 5]
    u = ct.query_vectors(env["tower"], [np.array(rows)], weights=[np.array(w[0], np.float32)])[0]
    assert_items(weighted[0], *top_k(u @ emb.T, 10, exclude=rows))
    assert as_served(weighted) != as_served(v.recommend(histories, k=10))


def test_recommend_for_a_context_uses_its_stored_vector_and_excludes_its_history(env):
    v, emb, arrays = env["version"], env["emb"], env["contexts"]
    names = ["user-0", "user-7", "user-29"]
    got = v.recommend_for(names, k=12)
    assert as_served(got) == without_history_used(client.recommend_context(env["addr"], names, 12))
    table = [c.decode() for c in arrays.context_ids.tolist()]
    for name, items in zip(names, got):
        assert_items(items, *top_k(arrays.vectors[table.index(name)] @ emb.T, 12, exclude=env["histories"][name]))


def test_embed_a_new_item_equals_a_numpy_embedder_and_search(env):
    v, emb, head = env["version"], env["emb"], env["head"]
    assert v.embed_inputs == {"year": "float32"}
    nbrs, weights, years = [["i1", "i2", "i3"], ["i50"]], [[1.0, 2.0, 0.5], [1.0]], [0.2, -1.0]
    got = v.embed({"year": years}, nbrs, weights, k=8)
    for row, w, year, new in zip(nbrs, weights, years, got):
        z = sum(wi * emb[int(i[1:])] for i, wi in zip(row, w)) + year * YEAR_W
        z /= np.linalg.norm(z)
        np.testing.assert_allclose(new.embedding, z, rtol=1e-4, atol=1e-5)
        assert_items(new.items, *top_k((z @ head) @ emb.T, 8))
    default = v.embed({"year": [0.2]}, [["i1", "i2"]], k=3)[0]  # weights default to 1
    assert default == v.embed({"year": [0.2]}, [["i1", "i2"]], [[1, 1]], k=3)[0]


def test_a_model_directory_loads_its_newest_version(env, tmp_path):
    ids, titles, _ = catalogue()
    emb = env["emb"]
    for tag in ("old", "new"):
        tagged = [f"{tag} {t}" for t in titles]
        export_serving_model(str(tmp_path / f"sm_{tag}"), emb, ids, titles=tagged)
        ib.build_index(emb, ids, str(tmp_path / f"ix_{tag}"), titles=tagged, brute_force_below=1000, recall_queries=5)
        pusher.push(str(tmp_path / f"sm_{tag}"), str(tmp_path / f"ix_{tag}"), str(tmp_path / "serving_model"))
    newest = pinsage.load(tmp_path / "serving_model" / "pinsage")
    first = pinsage.load(str(tmp_path / "serving_model" / "pinsage" / "1"))
    assert (newest.version, first.version) == (2, 1)
    assert pinsage.load(tmp_path / "serving_model").path == newest.path  # its one model, as the server takes it
    assert newest.related("i0", k=1)[0][0].title.startswith("new ")
    assert first.related("i0", k=1)[0][0].title.startswith("old ")
    for call, name in ((first.recommend, "recommend"), (first.recommend_for, "recommend_context")):
        with pytest.raises(ValueError, match=name):
            call(["i1"])
    with pytest.raises(ValueError, match="embed_item"):
        first.embed({"year": [1.0]}, [["i1"]])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda v: v.related(["i1", "nope"]), r"unknown item id\(s\): \['nope'\]"),
        (lambda v: v.similar("nope"), "nope"),
        (lambda v: v.related("i1", k=0), r"k must be in \[1, 599\]"),
        (lambda v: v.related("i1", k=N), r"k must be in \[1, 599\]"),
        (lambda v: v.related("i1", k="3"), "k must be an integer"),
        (lambda v: v.related("i1", k=2**40), "k must be a 32-bit integer"),
        (lambda v: v.related([None]), "ids must be ids"),
        (lambda v: v.recommend([]), "history must be a non-empty list"),
        (lambda v: v.recommend(["nope"]), "history"),
        (lambda v: v.recommend(["i1", "i2"], weights=[1.0]), "weights must have one value per history item"),
        (lambda v: v.recommend(["i1"], weights=[-1.0]), "history_weights"),
        (lambda v: v.recommend_for("nobody"), "context_id"),
        (lambda v: v.embed({"year": [1.0]}, [["nope"]]), "nope"),
        (lambda v: v.embed({"yr": [1.0]}, [["i1"]]), "missing"),
        (lambda v: v.embed({"year": ["x"]}, [["i1"]]), "feature 'year'"),
        (lambda v: v.embed({"year": [1.0]}, [["i1"]], [[1.0, 2.0]]), "neighbor_weights must have one value"),
        (lambda v: v.embed({"year": [1.0], "k": [1]}, [["i1"]]), "may not be named"),
    ],
)
def test_bad_input_is_a_value_error_naming_it(env, call, message):
    with pytest.raises(ValueError, match=message):
        call(env["version"])


def test_load_refuses_what_is_not_a_version(env, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'empty'}: not a version directory")):
        pinsage.load(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no such directory"):
        pinsage.load(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="index"):
        pinsage.load(str(env["root"] / "sm"))  # a SavedModel, not a pushed version
    broken = tmp_path / "model" / "3"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"junk")
    os.makedirs(versions.index_dir(str(broken)))
    with pytest.raises(ValueError, match="does not load"):
        pinsage.load(str(tmp_path / "model"))
    with pytest.raises(ValueError, match="directory path"):
        pinsage.load(3)


def test_importing_pinsage_loads_no_tensorflow():
    code = "import sys, pinsage; sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ------------------------------------------------------------------------------------------------ pinsage query
def test_query_by_title_imports_no_tensorflow_and_prints_the_servers_list(env):
    """A live `pinsage query --title` in a fresh interpreter: the exact title wins over a longer one starting
    with it, the list is the server's, and TensorFlow never loads."""
    argv = ["query", *env["ports"], "--title", "Alien (1979)", "--item", "i3", "-k", "4"]
    code = (
        "import sys; from pipeline import cli; rc = cli.main(sys.argv[1:]); "
        "sys.exit(rc or (3 if 'tensorflow' in sys.modules else 0))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert f"related to i{ALIEN}  Alien (1979):" in proc.stdout and "related to i3:" in proc.stdout
    want = env["version"].related(f"i{ALIEN}", k=4)[0]
    listed = re.findall(r"id (i\d+), score", proc.stdout.split("Alien (1979):")[1])
    assert listed == [x.item_id for x in want]


def test_query_by_title_ignores_case_and_spacing_else_lists_the_closest(env, capsys):
    assert cli.main(["query", *env["ports"], "--title", "  amélie   (2001) ", "-k", "2"]) == 0
    assert "related to i9  Amélie (2001):" in capsys.readouterr().out
    assert cli.main(["query", *env["ports"], "--title", "Alien", "-k", "2"]) == 2
    err = capsys.readouterr().err
    assert "no item titled 'Alien'; the closest: 'Alien (1979)' (id i7); \"Alien (1979) Director's Cut\" (id i8)" in err
    assert cli.main(["query", *env["ports"], "--title", "Twin Peaks (1990)"]) == 2
    assert "2 items are titled 'Twin Peaks (1990)': ids i5" in capsys.readouterr().err
    assert cli.main(["query", *env["ports"], "--title", "qqqq"]) == 2
    assert "no item titled 'qqqq', and no title or id contains it" in capsys.readouterr().err
    assert cli.main(["query", "--port", env["ports"][1], "--rest-api-port", "9", "--title", "Alien (1979)"]) == 2
    assert "no answer from the REST API at localhost:9" in capsys.readouterr().err


def test_query_by_title_with_a_signature_and_the_other_kinds(env, capsys):
    """--signature applies to titles; --context and --history still go through the TensorFlow-free client."""
    assert cli.main(["query", *env["ports"], "--title", "Alien (1979)", "--signature", "similar_items", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"id (i\d+), score", out) == [x.item_id for x in env["version"].similar("i7", k=3)[0]]
    assert cli.main(["query", *env["ports"], "--context", "user-7", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"id (i\d+), score", out) == [x.item_id for x in env["version"].recommend_for("user-7", k=3)[0]]
    assert cli.main(["query", *env["ports"], "--title", "Alien (1979)", "--history", "i1"]) == 2  # one kind only


def test_the_clients_messages_are_tf_servings_on_the_wire():
    """Requests built without TensorFlow parse as tensorflow_serving's PredictRequest equal to ones built with
    tf.make_tensor_proto; a PredictResponse of TensorFlow's decodes to tf.make_ndarray's values."""

    def reference(signature, **inputs):
        req = predict_pb2.PredictRequest()
        req.model_spec.name, req.model_spec.signature_name = "pinsage", signature
        for name, (values, dtype) in inputs.items():
            req.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
        return req

    light = client.PredictRequest
    cases = [
        (
            client.related_request(["a", "ñ"], 5, request_type=light),
            reference("related_items", item_id=(["a", "ñ"], tf.string), k=(5, tf.int32)),
        ),
        (
            client.recommend_request([["a", "b"], ["c"]], 3, weights=[[1, 2], [3]], request_type=light),
            reference(
                "recommend_weighted",
                history_ids=([["a", "b"], ["c", ""]], tf.string),
                history_weights=(np.array([[1, 2], [3, 0]], np.float32), tf.float32),
                k=(3, tf.int32),
            ),
        ),
        (
            client.recommend_context_request(["u"], 2, request_type=light),
            reference("recommend_context", context_id=(["u"], tf.string), k=(2, tf.int32)),
        ),
    ]
    for ours, want in cases:
        parsed = predict_pb2.PredictRequest.FromString(ours.SerializeToString())
        assert parsed.model_spec == want.model_spec and sorted(parsed.inputs) == sorted(want.inputs)
        for name in want.inputs:
            got, expect = tf.make_ndarray(parsed.inputs[name]), tf.make_ndarray(want.inputs[name])
            assert got.dtype == expect.dtype and got.shape == expect.shape and (got == expect).all()
    resp = predict_pb2.PredictResponse()
    resp.model_spec.version.value = 7
    outputs = {
        "ids": np.array([[b"x", "é".encode()]], object),
        "scores": np.array([[0.5, -np.inf]], np.float32),
        "used": np.array([3, 1], np.int32),
        "big": np.array([2**40], np.int64),
    }
    for name, value in outputs.items():
        resp.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    resp.outputs["same"].CopyFrom(tf.make_tensor_proto(7, tf.int32, shape=[3]))  # TF's compact form: one value
    decoded = client.decode(client.PredictResponse.FromString(resp.SerializeToString()))
    assert decoded == {
        "ids": [["x", "é"]],
        "scores": [[0.5, -np.inf]],
        "used": [3, 1],
        "big": [2**40],
        "same": [7, 7, 7],
    }
    assert client.PredictResponse.FromString(resp.SerializeToString()).model_spec.version.value == 7
