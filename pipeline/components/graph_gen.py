"""GraphGen (custom TFX Beam component): interaction logs -> bipartite graph with int ids and the temporal split.

Reads the two ExampleGen tables and writes
- `graph`          (PinSageGraph, layout in pipeline/graph_io.py): items/contexts with contiguous int ids, every kept
                   interaction with its position in the context's history and its split;
- `item_examples`  (Examples, split `items`, Parquet payload): each item's raw columns + node_id + train_degree, for
                   Transform;
- `item_schema`    (Schema): the items schema extended with those two columns.

Temporal split (DESIGN.md, fixed): per context, sort by (timestamp, item tie-break) where the tie-break is numeric
when every item id is an integer and string order otherwise; the last interaction is test, the second-last
validation, the rest train; contexts with fewer than 3 interactions stay in train only.
Duplicates: the same (context, item) pair more than once keeps its first occurrence in that order (a re-engagement
would otherwise make the held-out item one the context has already "seen" in train); each drop is counted.
Transform runs after GraphGen (not before) so that log-degree is the *train* degree, and every downstream table is
keyed by the same node_id.
"""

from __future__ import annotations

import json
import os

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils, channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils

from pipeline import graph_io
from pipeline.artifacts import PinSageGraph
from pipeline.graph_io import id_order, id_sort_key  # noqa: F401  (re-exported: the split's tie-break)
from schema import build as schema_build
from tensorflow_metadata.proto.v0 import schema_pb2

ITEM_SPLIT = "items"
_INTERACTION_SCHEMA = pa.schema(
    [
        ("context_index", pa.int64()),
        ("node_id", pa.int64()),
        ("timestamp", pa.int64()),
        ("weight", pa.float64()),
        ("split", pa.string()),
        ("position", pa.int64()),
    ]
)
_ITEM_SCHEMA = pa.schema(
    [("node_id", pa.int64()), ("item_id", pa.string()), ("title", pa.string()), ("train_degree", pa.int64())]
)
_CONTEXT_SCHEMA = pa.schema([("context_index", pa.int64()), ("context_id", pa.string())])


def _id_str(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def index_of(ids: list[str]) -> dict:
    """Contiguous indices in id order, so that node ids are deterministic whatever order Beam delivers."""
    return {x: i for i, x in enumerate(sorted(ids, key=id_sort_key(id_order(ids))))}


def split_context(rows, item_key):
    """rows: [(item_id, timestamp, weight)] of one context -> ([(item_id, ts, w, split, position)], n_duplicates).

    Pure function (tested directly): sort by (timestamp, tie-break), drop repeated items, assign splits."""
    rows = sorted(rows, key=lambda r: (r[1], item_key(r[0])))
    seen, kept = set(), []
    for r in rows:
        if r[0] in seen:
            continue
        seen.add(r[0])
        kept.append(r)
    n = len(kept)
    out = []
    for pos, (item, ts, w) in enumerate(kept):
        split = "train"
        if n >= 3 and pos == n - 1:
            split = "test"
        elif n >= 3 and pos == n - 2:
            split = "validation"
        out.append((item, ts, w, split, pos))
    return out, len(rows) - n


NUM_PARTITIONS = 32  # context partitions of the split (a shuffle of arrays, not of single rows)
BATCH_SIZE = 100_000


def _column(rb, name: str) -> np.ndarray | None:
    """The single value per row of a list column of a RecordBatch (ExampleGen/ingest layout), as numpy;
    None when the column is absent. A row without a value gives None (object) or NaN."""
    import pyarrow.compute as pc

    i = rb.schema.get_field_index(name)
    if i < 0:
        return None
    col = rb.column(i)
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if not ((lens == 1).all()):
            flat = pc.list_element(
                pc.if_else(pc.equal(pc.list_value_length(col), 1), col, pa.nulls(len(col), col.type)), 0
            )
        else:
            flat = pc.list_flatten(col)
    else:
        flat = col
    if pa.types.is_binary(flat.type) or pa.types.is_large_binary(flat.type):
        flat = flat.cast(pa.string())
    return flat.to_numpy(zero_copy_only=False)


def _id_strings(values: np.ndarray) -> np.ndarray:
    """Ids as strings the way _id_str writes them (an integral float '5.0' -> '5')."""
    if values.dtype.kind == "f":
        return np.array([_id_str(float(v)) for v in values], dtype=object)
    return values.astype(str).astype(object)


def sorted_ids(ids: np.ndarray) -> tuple[np.ndarray, str]:
    """Distinct ids in id order (numeric when all are integers, else string order) and that order's name;
    the vectorised index_of: position in the result = contiguous index."""
    ids = np.unique(np.asarray(ids, dtype=str))
    try:
        keys = ids.astype(np.int64)
    except (ValueError, OverflowError):
        return ids, "string"
    return ids[np.argsort(keys, kind="stable")], "int"


def split_partition(ctx: np.ndarray, node: np.ndarray, ts: np.ndarray, w: np.ndarray):
    """The vectorised split_context over many contexts at once. node ids are in item-id order, so
    sorting by (timestamp, node id) is the DESIGN tie-break. Returns (columns dict in (context, position)
    order, duplicates dropped, contexts with fewer than 3 interactions)."""
    order = np.lexsort((node, ts, ctx))
    ctx, node, ts, w = ctx[order], node[order], ts[order], w[order]
    # first occurrence of each (context, item) in that order
    pair = np.lexsort((np.arange(len(ctx)), node, ctx))
    dup_sorted = np.r_[False, (ctx[pair][1:] == ctx[pair][:-1]) & (node[pair][1:] == node[pair][:-1])]
    keep = np.ones(len(ctx), bool)
    keep[pair[dup_sorted]] = False
    dups = int((~keep).sum())
    ctx, node, ts, w = ctx[keep], node[keep], ts[keep], w[keep]
    first = np.r_[True, ctx[1:] != ctx[:-1]]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.r_[starts, len(ctx)])
    position = np.arange(len(ctx)) - np.repeat(starts, sizes)
    n = np.repeat(sizes, sizes)
    split = np.full(len(ctx), "train", dtype=object)
    split[(n >= 3) & (position == n - 1)] = "test"
    split[(n >= 3) & (position == n - 2)] = "validation"
    return (
        {"context_index": ctx, "node_id": node, "timestamp": ts, "weight": w, "split": split, "position": position},
        dups,
        int((sizes < 3).sum()),
    )


def _concat_arrays(parts):
    parts = list(parts)
    return np.concatenate(parts) if parts else np.zeros(0, object)


class _Lookup:
    """Row numbers of ids in an id table (a side input), by a pd.Index hash built once per table per worker;
    integer ids are looked up as int64 (no per-row string conversion) when the table is all integers."""

    def __init__(self):
        self._cache = []

    def _index(self, table, as_int: bool):
        for t, kind, index in self._cache:
            if t is table and kind == as_int:
                return index
        try:
            index = pd.Index(table.astype(np.int64) if as_int else table.astype(object))
        except (ValueError, OverflowError):
            index = None
        self._cache = self._cache[-3:] + [(table, as_int, index)]
        return index

    def __call__(self, table, values: np.ndarray) -> np.ndarray:
        if values.dtype.kind in "iu":
            index = self._index(table, True)
            if index is not None and index.is_unique:
                return index.get_indexer(values)
        return self._index(table, False).get_indexer(_id_strings(values))


class _KnownContexts(beam.DoFn):
    """A RecordBatch of interactions -> the distinct context ids of its rows whose item is known."""

    def setup(self):
        self.lookup = _Lookup()

    def process(self, rb, item_table):
        known = self.lookup(item_table, _column(rb, "item_id")) >= 0
        ctx = _column(rb, "context_id")[known]
        yield (np.unique(ctx) if ctx.dtype.kind in "iu" else np.unique(_id_strings(ctx).astype(str))).astype(str)


class _PartitionInteractions(beam.DoFn):
    """A RecordBatch of interactions -> (partition, arrays) per context partition; unknown items counted."""

    def setup(self):
        self.lookup = _Lookup()

    def process(self, rb, item_table, context_table):
        node = self.lookup(item_table, _column(rb, "item_id"))
        known = node >= 0
        if (~known).any():
            yield beam.pvalue.TaggedOutput("counts", ("graph.dropped.unknown_item_id", int((~known).sum())))
        ctx = self.lookup(context_table, _column(rb, "context_id")[known])
        ts = _column(rb, "timestamp")[known].astype(np.int64)
        w_raw = _column(rb, "weight")
        w = np.ones(len(ctx)) if w_raw is None else np.nan_to_num(w_raw[known].astype(np.float64), nan=1.0)
        node = node[known].astype(np.int64)
        part = ctx % NUM_PARTITIONS
        for p in np.unique(part):
            m = part == p
            yield int(p), (ctx[m].astype(np.int64), node[m], ts[m], w[m])


class _SplitPartition(beam.DoFn):
    def process(self, element, num_items):
        _, chunks = element
        chunks = list(chunks)
        cols, dups, small = split_partition(*(np.concatenate([c[k] for c in chunks]) for k in range(4)))
        if dups:
            yield beam.pvalue.TaggedOutput("counts", ("graph.dropped.duplicate_interaction", dups))
        if small:
            yield beam.pvalue.TaggedOutput("counts", ("graph.contexts_with_fewer_than_3_train_only", small))
        for s in graph_io.SPLITS:
            n = int((cols["split"] == s).sum())
            if n:
                yield beam.pvalue.TaggedOutput("counts", (f"interactions.{s}", n))
        train = cols["split"] == "train"
        yield beam.pvalue.TaggedOutput("degree", np.bincount(cols["node_id"][train], minlength=num_items))
        yield pa.Table.from_pydict(
            {k: pa.array(v, _INTERACTION_SCHEMA.field(k).type) for k, v in cols.items()}, schema=_INTERACTION_SCHEMA
        )


def _example_list(col, offsets):
    """A column as a tf.Example feature in Arrow form, with the types tfx-bsl's decoders give (and ParquetTFXIO
    expects from the schema): large_list of large_binary (strings as bytes) / float32 / int64."""
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        col = pa.LargeListArray.from_arrays(offsets, col)
    v = col.type.value_type
    if pa.types.is_string(v) or pa.types.is_large_string(v) or pa.types.is_binary(v):
        to = pa.large_binary()
    elif pa.types.is_floating(v):
        to = pa.float32()  # FloatList, as CsvExampleGen wrote a FLOAT column
    elif pa.types.is_integer(v):
        to = pa.int64()
    else:
        to = v
    return col.cast(pa.large_list(to))


class _ItemOutputs(beam.DoFn):
    """An items RecordBatch -> its rows of the graph's items table; writes the batch with node_id and
    train_degree as one Parquet file of tf.Example-shaped list columns for Transform. Parquet, not TFRecords of
    tf.Examples: Transform then reads Arrow batches (ParquetTFXIO) instead of Beam's record-by-record Python
    TFRecord reader — 1M items: Transform 50 s vs 146 s (BUILD_NOTES.md, scale run)."""

    def __init__(self, examples_dir: str):
        self._dir = examples_dir

    def setup(self):
        self.lookup = _Lookup()

    def process(self, rb, item_table, degree):
        table, examples = _item_outputs(rb, item_table, degree, self.lookup)
        first = int(table.column("node_id").to_numpy().min()) if table.num_rows else 0
        path = os.path.join(self._dir, f"data_parquet-{first:010d}.parquet")  # node ids are unique: one name
        buf = pa.BufferOutputStream()  # then one write through GFile (any filesystem TF knows)
        pq.write_table(pa.Table.from_batches([examples]), buf)
        with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
            f.write(buf.getvalue().to_pybytes())
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
        yield table


def _item_outputs(rb, item_table, degree, lookup=None, title_column="title"):
    """An items RecordBatch -> (graph items table, the batch with node_id and train_degree: a RecordBatch of
    one list column per feature, i.e. tf.Examples in Arrow form, for Transform)."""
    raw = _column(rb, "item_id")
    ids = _id_strings(raw)
    node = (lookup or _Lookup())(item_table, raw).astype(np.int64)
    degree = _full_degree(degree, len(item_table))
    deg = degree[node].astype(np.int64)
    titles = _column(rb, title_column)
    titles = (
        np.full(len(ids), "", dtype=object)
        if titles is None
        else np.array(["" if t is None else str(t) for t in titles], dtype=object)
    )
    table = pa.Table.from_pydict(
        {
            "node_id": node,
            "item_id": pa.array(ids, pa.string()),
            "title": pa.array(titles, pa.string()),
            "train_degree": deg,
        },
        schema=_ITEM_SCHEMA,
    )
    offsets = pa.array(np.arange(len(node) + 1, dtype=np.int64))
    cols = [_example_list(c, offsets) for c in rb.columns]
    names = list(rb.schema.names)
    for name, v in (("node_id", node), ("train_degree", deg)):
        cols.append(pa.LargeListArray.from_arrays(offsets, pa.array(v)))
        names.append(name)
    return table, pa.RecordBatch.from_arrays(cols, names=names)


def _write_json(path: str, obj) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True))


def _source(p, artifact, label, schema=None):
    """RecordBatches of an Examples artifact's first split, whatever its payload (tf.Example TFRecords from an
    ExampleGen, or ingest's Parquet), through tfx-bsl's TFXIO."""
    from tfx.components.util import tfxio_utils

    split = artifact_utils.decode_split_names(artifact.split_names)[0]
    io = tfxio_utils.get_split_tfxio([artifact], split, ["PinSage", "GraphGen"], schema=schema)
    return p | f"Read{label}" >> io.BeamSource(batch_size=BATCH_SIZE)


def _concat_ids(batches):
    return sorted_ids(_concat_arrays(batches))


def _add_counts(arrays) -> np.ndarray:
    """Sum of per-node count arrays of possibly different lengths (the combine's identity is empty)."""
    arrays = list(arrays)
    out = np.zeros(max((len(a) for a in arrays), default=0), np.int64)
    for a in arrays:
        out[: len(a)] += a
    return out


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        items_art = artifact_utils.get_single_instance(input_dict["items"])
        inter_art = artifact_utils.get_single_instance(input_dict["interactions"])
        schema_uri = artifact_utils.get_single_uri(input_dict["items_schema"])
        graph_uri = artifact_utils.get_single_uri(output_dict["graph"])
        examples_art = artifact_utils.get_single_instance(output_dict["item_examples"])
        out_schema_uri = artifact_utils.get_single_uri(output_dict["item_schema"])
        examples_art.split_names = artifact_utils.encode_split_names([ITEM_SPLIT])
        # Parquet Examples (see _ItemOutputs): the properties TFXIO and Transform read the payload format from
        examples_art.set_string_custom_property("payload_format", "FORMAT_PARQUET")
        examples_art.set_string_custom_property("file_format", "FILE_FORMAT_PARQUET")
        ingest = {}
        if exec_properties.get("ingest_report"):
            with tf.io.gfile.GFile(exec_properties["ingest_report"]) as f:
                ingest = json.load(f)

        items_schema = io_utils.parse_pbtxt_file(io_utils.get_only_uri_in_dir(schema_uri), schema_pb2.Schema())
        io_utils.write_pbtxt_file(
            os.path.join(out_schema_uri, "schema.pbtxt"), schema_build.graph_items_schema(items_schema)
        )

        with self._make_beam_pipeline() as p:
            items = _source(p, items_art, "Items")
            item_sorted = (
                items
                | "ItemIds" >> beam.Map(lambda rb: _id_strings(_column(rb, "item_id")).astype(str))
                | "AllItemIds" >> beam.combiners.ToList()
                | "SortItemIds" >> beam.Map(_concat_ids)
            )
            item_table = beam.pvalue.AsSingleton(item_sorted | "ItemTable" >> beam.Map(lambda t: t[0]))
            item_order = beam.pvalue.AsSingleton(item_sorted | "ItemOrder" >> beam.Map(lambda t: t[1]))
            num_items = beam.pvalue.AsSingleton(item_sorted | "NumItems" >> beam.Map(lambda t: len(t[0])))

            inter = _source(p, inter_art, "Interactions")
            # contexts with at least one interaction with a known item, in id order
            context_sorted = (
                inter
                | "ContextIds" >> beam.ParDo(_KnownContexts(), item_table)
                | "AllContexts" >> beam.combiners.ToList()
                | "SortContexts" >> beam.Map(_concat_ids)
            )
            context_table = beam.pvalue.AsSingleton(context_sorted | "ContextTable" >> beam.Map(lambda t: t[0]))
            parts, unknown_counts = inter | "Partition" >> beam.ParDo(
                _PartitionInteractions(), item_table, context_table
            ).with_outputs("counts", main="parts")
            split = (
                parts
                | "GroupByPartition" >> beam.GroupByKey()
                | "Split" >> beam.ParDo(_SplitPartition(), num_items).with_outputs("counts", "degree", main="tables")
            )
            _ = split.tables | "WriteInteractions" >> beam.io.WriteToParquetBatched(
                os.path.join(graph_uri, graph_io.INTERACTIONS), _INTERACTION_SCHEMA, file_name_suffix=".parquet"
            )
            degree_pc = split.degree | "Degree" >> beam.CombineGlobally(_add_counts)
            degree = beam.pvalue.AsSingleton(degree_pc)

            examples_dir = artifact_utils.get_split_uri([examples_art], ITEM_SPLIT)
            tf.io.gfile.makedirs(examples_dir)
            _ = (
                items
                | "ItemOutputs" >> beam.ParDo(_ItemOutputs(examples_dir), item_table, degree)
                | "WriteItems"
                >> beam.io.WriteToParquetBatched(
                    os.path.join(graph_uri, graph_io.ITEMS), _ITEM_SCHEMA, file_name_suffix=".parquet"
                )
            )
            _ = (
                context_sorted
                | "ContextRows"
                >> beam.Map(
                    lambda t: pa.Table.from_pydict(
                        {
                            "context_index": np.arange(len(t[0]), dtype=np.int64),
                            "context_id": pa.array(t[0].astype(object), pa.string()),
                        },
                        schema=_CONTEXT_SCHEMA,
                    )
                )
                | "WriteContexts"
                >> beam.io.WriteToParquetBatched(
                    os.path.join(graph_uri, graph_io.CONTEXTS), _CONTEXT_SCHEMA, file_name_suffix=".parquet"
                )
            )

            # Statistics: every count is a (name, n) pair summed per name, then written once as JSON.
            isolated = degree_pc | "Isolated" >> beam.Map(
                lambda deg, n: ("items.without_train_interactions", int((_full_degree(deg, n) == 0).sum())), num_items
            )
            _ = (
                (split.counts, unknown_counts, isolated)
                | "AllCounts" >> beam.Flatten()
                | "SumCounts" >> beam.CombinePerKey(sum)
                | "CountList" >> beam.combiners.ToDict()
                | "WriteStats"
                >> beam.Map(
                    lambda c, n, ctx, order: _write_json(
                        os.path.join(graph_uri, graph_io.STATS_FILE),
                        {
                            "num_items": n,
                            "num_contexts": len(ctx),
                            "item_id_order": order,
                            "num_interactions": sum(c.get(f"interactions.{s}", 0) for s in graph_io.SPLITS),
                            "counts": c,
                            "ingest": ingest,
                        },
                    ),
                    num_items,
                    context_table,
                    item_order,
                )
            )


def _full_degree(deg: np.ndarray, n: int) -> np.ndarray:
    """Train degree per node id, length n (the combine's identity is an empty array)."""
    out = np.zeros(n, np.int64)
    out[: len(deg)] = deg
    return out


class GraphGenSpec(ComponentSpec):
    PARAMETERS = {"ingest_report": ExecutionParameter(type=str, optional=True)}
    INPUTS = {
        "items": ChannelParameter(type=standard_artifacts.Examples),
        "interactions": ChannelParameter(type=standard_artifacts.Examples),
        "items_schema": ChannelParameter(type=standard_artifacts.Schema),
    }
    OUTPUTS = {
        "graph": ChannelParameter(type=PinSageGraph),
        "item_examples": ChannelParameter(type=standard_artifacts.Examples),
        "item_schema": ChannelParameter(type=standard_artifacts.Schema),
    }


class GraphGen(base_beam_component.BaseBeamComponent):
    """items + interactions Examples -> PinSageGraph + item Examples (with node_id) + item Schema."""

    SPEC_CLASS = GraphGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, items, interactions, items_schema, ingest_report: str = ""):
        super().__init__(
            spec=GraphGenSpec(
                items=items,
                interactions=interactions,
                items_schema=items_schema,
                ingest_report=ingest_report,
                graph=channel.Channel(type=PinSageGraph),
                item_examples=channel.Channel(type=standard_artifacts.Examples),
                item_schema=channel.Channel(type=standard_artifacts.Schema),
            )
        )
