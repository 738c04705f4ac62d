"""modules/preprocessing/transform.py against numpy references, through tf.Transform's own Beam implementation."""

import os

import numpy as np
import pytest
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata

from modules.preprocessing import transform
from schema import build

SPEC = {
    "features": {
        "title": {"kind": "text"},
        "year": {"kind": "numeric"},
        "genres": {"kind": "categorical", "separator": "|"},
        "vec": {"kind": "dense_vector", "separator": " ", "dim": 2},
    }
}


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    raw = [
        {
            "item_id": [1],
            "title": [b"Toy Story"],
            "year": [1995.0],
            "genres": [b"Animation|Comedy"],
            "vec": [b"1 2"],
            "node_id": [0],
            "train_degree": [10],
        },
        {
            "item_id": [2],
            "title": [b"Toy Soldiers"],
            "year": [],
            "genres": [b"Action"],
            "vec": [b""],
            "node_id": [1],
            "train_degree": [0],
        },
        {
            "item_id": [3],
            "title": [b"Heat"],
            "year": [1975.0],
            "genres": [b"Comedy|Comedy"],
            "vec": [b"0.5 -1"],
            "node_id": [2],
            "train_degree": [3],
        },
    ]
    schema = build.graph_items_schema(build.items_schema(SPEC, "int"))
    for f in schema.feature:  # let 'year' be absent in a row, as ExampleGen leaves a blank cell
        if f.name == "year":
            f.ClearField("presence")
            f.value_count.min = 0
    meta = dataset_metadata.DatasetMetadata(schema)
    tmp = str(tmp_path_factory.mktemp("tft"))
    fn = lambda inputs: transform.preprocessing_fn(inputs, SPEC)  # noqa: E731
    with tft_beam.Context(temp_dir=tmp):
        (data, _), transform_fn = (raw, meta) | tft_beam.AnalyzeAndTransformDataset(fn, output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(tmp, "transform_fn"))
    return sorted(data, key=lambda r: int(r["node_id"])), tft.TFTransformOutput(os.path.join(tmp, "transform_fn"))


def test_numeric_z_score_with_mean_imputation(transformed):
    rows, _ = transformed
    years = np.array([1995.0, 1975.0])
    z = (years - years.mean()) / years.std()
    np.testing.assert_allclose([rows[0]["year"], rows[2]["year"]], z, rtol=1e-5)
    assert rows[1]["year"] == 0.0 and rows[1]["year_missing"] == 1.0 and rows[0]["year_missing"] == 0.0


def test_log_degree_is_z_scored_log1p(transformed):
    rows, _ = transformed
    ld = np.log1p([10, 0, 3])
    np.testing.assert_allclose([r["log_degree"] for r in rows], (ld - ld.mean()) / ld.std(), rtol=1e-5)


def test_categorical_multi_hot_and_text_vocabulary(transformed):
    rows, tf_out = transformed
    vocab = [v.decode() for v in tf_out.vocabulary_by_name("genres_vocab")]
    assert sorted(vocab) == ["Action", "Animation", "Comedy"] and vocab[0] == "Comedy"  # by frequency
    for r, expect in zip(rows, [{"Animation", "Comedy"}, {"Action"}, {"Comedy"}]):
        mh = np.asarray(r["genres_multi_hot"])
        assert mh.shape == (build.MULTI_HOT_WIDTH + 1,)
        assert {vocab[i] for i in np.flatnonzero(mh)} == expect and mh.max() == 1.0
    words = [v.decode() for v in tf_out.vocabulary_by_name("title_vocab")]
    assert words[0] == "toy"  # lower-cased, most frequent first
    assert [words[i] for i in rows[0]["title_tokens"]] == ["toy", "story"]
    assert [words[i] for i in rows[2]["title_tokens"]] == ["heat"]


def test_dense_vector_parsed_and_missing_is_zero(transformed):
    rows, _ = transformed
    np.testing.assert_allclose(rows[0]["vec"], [1, 2])
    np.testing.assert_allclose(rows[1]["vec"], [0, 0])
    np.testing.assert_allclose(rows[2]["vec"], [0.5, -1])


def test_output_features_match_the_graph_schema(transformed):
    rows, _ = transformed
    assert set(rows[0]) == set(build.transformed_features(SPEC))
