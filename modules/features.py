"""Item feature tensors for the trainer: Transform's transformed examples -> arrays indexed by node_id.

Transform (modules/preprocessing/transform.py) writes one tf.Example per item with the tensors schema/build.py
`transformed_features` declares: float scalars (`<col>`, `<col>_missing`, `log_degree`), float vectors
(`<col>_multi_hot` [65], dense vectors [dim]), var-len int64 vocabulary ids (`<col>_tokens`) and `node_id`.
The trainer gathers rows of these per minibatch, so they are loaded once, ordered by node_id 0..N-1: dense
features as numpy arrays, var-len ones as tf.RaggedTensor. A missing or duplicated node id is an error, not a
silently shifted row.

A "feature spec" here is that dict name -> (dtype name, shape) with -1 for a ragged dimension; a TF-GNN
GraphSchema (proto or .pbtxt path) of the item node set gives the same information.
"""

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
import tensorflow_gnn as tfgnn
from tensorflow.core.framework import types_pb2

from schema import files
from schema.constants import NODE_ID, NODE_SET


def feature_spec(spec_or_schema, node_set: str = NODE_SET) -> dict:
    """Normalises a feature spec dict, a tfgnn.GraphSchema, or a path to a graph_schema.pbtxt to
    {name: (dtype name, shape list)} sorted by name."""
    if isinstance(spec_or_schema, dict):
        return {k: (str(v[0]), [int(d) for d in v[1]]) for k, v in sorted(spec_or_schema.items())}

    schema = spec_or_schema
    if isinstance(schema, (str, os.PathLike)):
        schema = tfgnn.read_schema(os.fspath(schema))
    out = {}
    for name, f in schema.node_sets[node_set].features.items():
        out[name] = (types_pb2.DataType.Name(f.dtype), [int(d.size) for d in f.shape.dim])
    return dict(sorted(out.items()))


def feature_spec_from_arrays(features: dict) -> dict:
    """The feature spec of in-memory features (numpy arrays / RaggedTensors with node rows first)."""
    out = {}
    for name, x in sorted(features.items()):
        if isinstance(x, tf.RaggedTensor):
            out[name] = (_dt(x.dtype), [-1])
        else:
            x = np.asarray(x)
            out[name] = (_dt(x.dtype), list(x.shape[1:]))
    return out


def _dt(dtype) -> str:

    return types_pb2.DataType.Name(tf.as_dtype(dtype).as_datatype_enum)


def tf_dtype(name: str) -> tf.DType:
    """'DT_FLOAT' (GraphSchema spelling) or 'float32' -> tf.float32."""

    return tf.as_dtype(types_pb2.DataType.Value(name) if name.startswith("DT_") else name)


def parse_spec(spec: dict) -> dict:
    """tf.io.parse_example features for a feature spec: fixed shapes dense, a -1 dimension ragged."""
    out = {}
    for name, (dtype, shape) in spec.items():
        if -1 in shape:
            if shape != [-1]:
                raise ValueError(f"{name}: only rank-1 ragged features are supported, got shape {shape}")
            out[name] = tf.io.RaggedFeature(tf_dtype(dtype), row_splits_dtype=tf.int64)
        else:
            out[name] = tf.io.FixedLenFeature(shape, tf_dtype(dtype))
    return out


def _files(path: str) -> list:
    """The data files of an examples directory, at any depth (hidden `.x` and `_x` files and `.x` dirs left out)."""
    if files.isfile(path):
        return [path]
    found = [
        files.join(path, *rel.split("/"))
        for rel in files.walk_files(path)
        if not any(part.startswith(".") for part in rel.split("/")) and not rel.split("/")[-1].startswith("_")
    ]
    if not found:
        raise FileNotFoundError(f"no transformed example files under {path!r}")
    return found


def is_parquet(path: str) -> bool:
    return path.endswith(".parquet")


def from_arrow(table, spec: dict) -> dict:
    """Rows of a Parquet payload (one list<value> column per feature, as Transform writes transformed examples when
    its input is Parquet) -> what tf.io.parse_example gives for the same rows under parse_spec(spec): fixed shapes
    as numpy [n, *shape] (a row of the wrong length is an error, like parse_example's), -1 as tf.RaggedTensor."""

    out = {}
    n = table.num_rows
    for name, (dtype, shape) in spec.items():
        if name not in table.column_names:
            raise ValueError(f"column {name!r} missing from the examples (have {sorted(table.column_names)})")
        col = table.column(name).combine_chunks()
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
            raise ValueError(f"column {name!r}: expected a list column (one tf.Example feature), got {col.type}")
        # a null row is a feature the example lacks: no values (an error below for a fixed shape, as in parse_example)
        values = col.flatten().to_numpy(zero_copy_only=False).astype(tf_dtype(dtype).as_numpy_dtype)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False), out=offsets[1:])
        if -1 in shape:
            out[name] = tf.RaggedTensor.from_row_splits(values, offsets, validate=False)
            continue
        width = int(np.prod(shape))
        lengths = np.diff(offsets)
        if (lengths != width).any():
            bad = int(np.flatnonzero(lengths != width)[0])
            raise ValueError(f"column {name!r}: row {bad} has {lengths[bad]} values, the spec says {shape}")
        out[name] = values.reshape([n] + list(shape))
    return out


def _read_file(path: str, features: dict, spec: dict, batch_size: int):
    """Batches of parsed features from one file: TFRecord (GZIP by the .gz suffix) or Parquet."""
    if is_parquet(path):
        for batch in files.parquet_file(path).iter_batches(batch_size=max(batch_size, 65536), columns=list(spec)):
            yield from_arrow(pa.Table.from_batches([batch]), spec)
        return
    ds = tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")
    for batch in ds.batch(batch_size).map(lambda s: tf.io.parse_example(s, features)):
        yield {k: (v if isinstance(v, tf.RaggedTensor) else v.numpy()) for k, v in batch.items()}


def load_item_features(transformed_examples_dir: str, feature_spec_or_graph_schema, batch_size: int = 4096) -> dict:
    """All items' feature tensors, row i = node_id i: {name: np.ndarray or tf.RaggedTensor}.

    Reads every file under the directory: TFRecords of tf.Examples (GZIP when the name ends in .gz; e.g. Transform's
    transformed_examples/Split-*/ files for a tf.Example input) or Parquet (Transform's output for a Parquet input,
    GraphGen's default), orders by node_id and checks the ids are exactly 0..N-1.
    """
    spec = feature_spec(feature_spec_or_graph_schema)
    if NODE_ID not in spec:
        raise ValueError(f"feature spec lacks {NODE_ID!r}: {sorted(spec)}")
    features = parse_spec(spec)
    parts = {name: [] for name in spec}
    for f in _files(transformed_examples_dir):
        for batch in _read_file(f, features, spec, batch_size):
            for name, x in batch.items():
                parts[name].append(x)
    if not parts[NODE_ID]:
        raise ValueError(f"{transformed_examples_dir!r}: the example files hold no rows")
    node_id = np.concatenate([np.asarray(x) for x in parts[NODE_ID]]).astype(np.int64)
    order = np.argsort(node_id, kind="stable")
    if not np.array_equal(node_id[order], np.arange(len(node_id))):
        raise ValueError(
            f"{transformed_examples_dir!r}: node ids are not exactly 0..{len(node_id) - 1} "
            f"({len(node_id)} rows, {len(np.unique(node_id))} distinct)"
        )
    out = {}
    for name, xs in parts.items():
        if isinstance(xs[0], tf.RaggedTensor):
            out[name] = tf.gather(tf.concat(xs, 0), order)
        else:
            out[name] = np.concatenate(xs)[order]
    return out
