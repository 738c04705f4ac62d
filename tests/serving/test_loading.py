"""How a version is loaded (serving/version.py LoadedVersion): from the serving arrays, without TF's SavedModel
when every signature is related_items; with it for embed_item; a version from before the arrays (text files
only) answers exactly as the same version with them; a SavedModel and an index that disagree fail the load,
saying how."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from modules import index as ib
from modules.export import export_serving_model
from pipeline.data import datasets
from pipeline.push import pusher
from schema import versions
from serving.core import ModelServer
from serving.version import LoadedVersion
from tests.serving.test_server import D, N, embed_request, exact_related, make_version, request

ARRAY_FILES = (
    versions.EMBEDDINGS_NPY,
    versions.QUERY_EMBEDDINGS_NPY,
    versions.ITEM_IDS_NPY,
    versions.TITLES_BIN,
    versions.TITLE_OFFSETS_NPY,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("loading")
    emb = datasets.clustered_vectors(N, D, clusters=30, seed=21)
    with_embed = make_version(root, emb, "e")
    ids = [f"i{j}" for j in range(N)]
    export_serving_model(str(root / "sm_r"), emb, ids, titles=[f"r {j}" for j in range(N)])
    ib.build_index(emb, ids, str(root / "ix_r"), titles=[f"r {j}" for j in range(N)], brute_force_below=N + 1)
    related_only = pusher.push(str(root / "sm_r"), str(root / "ix_r"), str(root / "serving_model"))
    yield dict(root=root, emb=emb, with_embed=with_embed, related_only=related_only)


def copy_of(source: str, root, drop=ARRAY_FILES) -> str:
    """A copy of a version directory (as version 1 under root) with some of its serving arrays removed."""
    dst = str(root / "1")
    shutil.copytree(source, dst)
    for f in drop:
        path = os.path.join(versions.index_dir(dst), f)
        if os.path.exists(path):
            os.remove(path)
    return dst


def outputs(resp):
    return {k: tf.make_ndarray(t).tolist() for k, t in sorted(resp.outputs.items())}


def test_related_only_version_is_served_without_tf(env):
    v = LoadedVersion("pinsage", env["related_only"], 1)
    assert v.saved_model is None and set(v.kind.values()) == {"related"}
    assert set(v.load_breakdown) == {"scann", "saved_model", "arrays"}
    server = ModelServer(os.path.dirname(env["related_only"]), "pinsage")
    rows = np.array([0, 5, 1234, N - 1])
    for req in (request([f"i{r}" for r in rows], 10), request(["i1234"], 10)):  # batched and one-item paths
        got = outputs(server.predict_version(v, req))
        want = exact_related(env["emb"], rows if len(req.inputs["item_id"].string_val) > 1 else rows[2:3], 10)
        assert [[int(i[1:]) for i in r] for r in got["item_ids"]] == want.tolist()
        assert got["titles"] == [[f"r {j}".encode() for j in r] for r in want]
    assert server.warmup(v) == 8


def test_version_from_before_the_arrays_answers_the_same(env, tmp_path):
    new = LoadedVersion("pinsage", env["with_embed"], 1)
    old = LoadedVersion("pinsage", copy_of(env["with_embed"], tmp_path), 1)
    assert new.saved_model is not None and new.kind["embed_item"] == old.kind["embed_item"] == "embed"
    assert versions.read_serving_arrays(versions.index_dir(old.path)) is None
    server = ModelServer(os.path.dirname(old.path), "pinsage")
    reqs = [
        request(["i3", "i77", "i2999"], 10),
        request(["i42"], 7),
        request(["i9"], 500),  # beyond the tree's re-ranked candidates: the exact scan over the vectors
        embed_request([["i1", "i2", ""]], [[0.5, 0.25, 0.0]], [1.5], k=10),
    ]
    for req in reqs:
        assert outputs(server.predict_version(new, req)) == outputs(server.predict_version(old, req))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d, e: np.save(os.path.join(d, versions.QUERY_EMBEDDINGS_NPY), e), "disagree on query vectors"),
        (
            lambda d, e: np.save(
                os.path.join(d, versions.ITEM_IDS_NPY), np.array([f"j{j}".encode() for j in range(N)])
            ),
            "disagree on the item ids",
        ),
        (
            lambda d, e: np.save(os.path.join(d, versions.EMBEDDINGS_NPY), np.ones((N, D + 1), np.float32)),
            rf"the SavedModel's embeddings are \[{N}, {D}\], the index's \[{N}, {D + 1}\]",
        ),
    ],
)
def test_savedmodel_and_index_that_disagree_fail_the_load(env, tmp_path, damage, message):
    path = copy_of(env["related_only"], tmp_path, drop=())
    damage(versions.index_dir(path), env["emb"])
    with pytest.raises(ValueError, match=message):
        LoadedVersion("pinsage", path, 1)
