"""IndexBuilder's item attributes: GraphGen's item examples (Parquet, one list column per feature, node_id) and
the dataset's feature kinds -> each item's numeric and categorical columns as display text in the index's
attribute arrays, by node id; text and dense-vector columns left out, empty cells dropped, an item absent from
the examples without attributes. Checked against hand-written rows and through the executor."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tfx.types import artifact_utils, channel, standard_artifacts

from pipeline.components import artifacts
from pipeline.components import index_builder as component
from schema import embeddings as embeddings_io
from schema import versions
from serving.items import ItemTable

FEATURES = {
    "title": {"kind": "text"},
    "year": {"kind": "numeric"},
    "genres": {"kind": "categorical", "separator": "|"},
    "tag": {"kind": "categorical"},
    "vec": {"kind": "dense_vector", "separator": " ", "dim": 2},
}
# node id -> (title, year, genres, tag): lists as GraphGen writes them, [] for a blank cell
ROWS = {
    2: ("C", [], [b"Drama"], [b"x y"]),
    0: ("A", [1995.0], [b"Animation|Children's|Comedy"], [b"x"]),
    1: ("B", [2.5], [b""], []),
    4: ("E", [-0.1], [b"Sci-Fi| Noir |"], [b"\xc3\xa9t\xc3\xa9"]),
    9: ("out of range", [1.0], [b"x"], [b"x"]),
}
WANT = [
    {"year": "1995", "genres": ["Animation", "Children's", "Comedy"], "tag": "x"},
    {"year": "2.5"},
    {"genres": ["Drama"], "tag": "x y"},
    {},  # node 3 is in no example
    {"year": "-0.1", "genres": ["Sci-Fi", "Noir"], "tag": "été"},
]


def write_examples(split_dir):
    split_dir.mkdir(parents=True)
    nodes = list(ROWS)
    for part, chunk in enumerate((nodes[:2], nodes[2:])):
        cols = {
            "item_id": pa.array([[100 + n] for n in chunk], pa.large_list(pa.int64())),
            "title": pa.array([[ROWS[n][0].encode()] for n in chunk], pa.large_list(pa.large_binary())),
            "year": pa.array([ROWS[n][1] for n in chunk], pa.large_list(pa.float32())),
            "genres": pa.array([ROWS[n][2] for n in chunk], pa.large_list(pa.large_binary())),
            "tag": pa.array([ROWS[n][3] for n in chunk], pa.large_list(pa.large_binary())),
            "vec": pa.array([[0.5, 1.5] for _ in chunk], pa.large_list(pa.float32())),
            "node_id": pa.array([[n] for n in chunk], pa.large_list(pa.int64())),
        }
        pq.write_table(pa.table(cols), split_dir / f"data_parquet-{part:010d}.parquet")


def test_item_attributes_by_node_id(tmp_path):
    write_examples(tmp_path / "Split-items")
    assert component.item_attributes(str(tmp_path / "Split-items"), FEATURES, 5) == WANT
    text_only = {"title": {"kind": "text"}, "vec": FEATURES["vec"]}
    assert component.item_attributes(str(tmp_path / "Split-items"), text_only, 5) is None


def test_executor_writes_the_attributes_into_the_index(tmp_path):
    write_examples(tmp_path / "examples" / "Split-items")
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["items"])
    emb_art, idx_art = artifacts.Embeddings(), artifacts.Index()
    emb_art.uri, idx_art.uri = str(tmp_path / "emb"), str(tmp_path / "index")
    emb = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    embeddings_io.write_embeddings(emb_art.uri, emb, [f"{100 + n}" for n in range(5)], titles=list("ABCDE"))
    built = component.IndexBuilder(
        embeddings=channel.Channel(type=artifacts.Embeddings),
        item_examples=channel.Channel(type=standard_artifacts.Examples),
        features=FEATURES,
    )
    props = dict(built.exec_properties)
    assert json.loads(props["features"]) == FEATURES
    component.Executor().Do({"embeddings": [emb_art], "item_examples": [examples]}, {"index": [idx_art]}, props)
    table = ItemTable.from_arrays(versions.read_serving_arrays(idx_art.uri))
    assert table.attributes_of(range(5)) == WANT and table.title_strings() == list("ABCDE")

    # without the examples (the component's older wiring): an index without attribute arrays
    props.pop("features")
    idx_art.uri = str(tmp_path / "index2")
    component.Executor().Do({"embeddings": [emb_art]}, {"index": [idx_art]}, props)
    assert versions.read_serving_arrays(idx_art.uri).attributes is None
