"""GraphGen's Beam transform: the two ingested tables -> the graph artifact (schema/graph.py) + the item examples.

Items: every item id -> its contiguous node id (split.sorted_ids, a side input); interactions: rows whose item is
known, partitioned by context (NUM_PARTITIONS groups of arrays, not a shuffle of single rows), split per
partition by split.split_partition (ties in time by split.id_hashes of the sorted id tables, side inputs too);
items again: each batch with node_id and train degree written as Parquet Examples for Transform. Every drop, and
the contexts whose held-out items the tie-break picked, is a (name, count) pair summed into graph_stats.json.
"""

from __future__ import annotations

import json
import os

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tensorflow as tf
from tfx.components.util import tfxio_utils
from tfx.types import artifact_utils

from pipeline.graph.split import held_out_ties, id_hashes, sorted_ids, split_partition
from pipeline.graph.split import id_strings as _id_strings
from schema import graph as graph_io
from schema.graph import CONTEXT_SCHEMA, INTERACTION_SCHEMA, ITEM_SCHEMA

NUM_PARTITIONS = 32  # context partitions of the split (a shuffle of arrays, not of single rows)
BATCH_SIZE = 100_000
HELD_OUT_TIES = "graph.contexts_with_held_out_ties"  # information, not a drop: the tie-break hash picked them


def _column(rb, name: str) -> np.ndarray | None:
    """The single value per row of a list column of a RecordBatch (ExampleGen/ingest layout), as numpy;
    None when the column is absent. A row without a value gives None (object) or NaN."""

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
        yield _id_strings(np.unique(ctx)) if ctx.dtype.kind in "iu" else pd.unique(_id_strings(ctx))


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
    """A context partition's arrays -> its split interactions table; counts and train degrees tagged. The
    tie-break hashes come as side inputs indexed by context index / node id (split.id_hashes, once per id)."""

    def process(self, element, num_items, context_hash, node_hash):
        _, chunks = element
        chunks = list(chunks)
        cols, dups, small = split_partition(
            *(np.concatenate([c[k] for c in chunks]) for k in range(4)), context_hash, node_hash
        )
        if dups:
            yield beam.pvalue.TaggedOutput("counts", ("graph.dropped.duplicate_interaction", dups))
        if small:
            yield beam.pvalue.TaggedOutput("counts", ("graph.contexts_with_fewer_than_3_train_only", small))
        ties = held_out_ties(cols)
        if ties:
            yield beam.pvalue.TaggedOutput("counts", (HELD_OUT_TIES, ties))
        for s in graph_io.SPLITS:
            n = int((cols["split"] == s).sum())
            if n:
                yield beam.pvalue.TaggedOutput("counts", (f"interactions.{s}", n))
        train = cols["split"] == "train"
        yield beam.pvalue.TaggedOutput("degree", np.bincount(cols["node_id"][train], minlength=num_items))
        yield pa.Table.from_pydict(
            {k: pa.array(v, INTERACTION_SCHEMA.field(k).type) for k, v in cols.items()}, schema=INTERACTION_SCHEMA
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
    TFRecord reader, several times slower on a large catalogue (docs/DESIGN.md)."""

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
        schema=ITEM_SCHEMA,
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


def _id_table(p, batches, label: str, known_items=None):
    """(sorted distinct ids, their order) of an id column as a singleton PCollection; for contexts, only those with
    at least one interaction with a known item."""
    if known_items is None:
        ids = batches | f"{label}Ids" >> beam.Map(lambda rb: _id_strings(_column(rb, "item_id")))
    else:
        ids = batches | f"{label}Ids" >> beam.ParDo(_KnownContexts(), known_items)
    return ids | f"All{label}Ids" >> beam.combiners.ToList() | f"Sort{label}Ids" >> beam.Map(_concat_ids)


def _write_table(pcoll, graph_uri: str, table: str, schema, label: str):
    return pcoll | label >> beam.io.WriteToParquetBatched(
        os.path.join(graph_uri, table), schema, file_name_suffix=".parquet"
    )


def _context_rows(t):
    return pa.Table.from_pydict(
        {
            "context_index": np.arange(len(t[0]), dtype=np.int64),
            "context_id": pa.array(t[0].astype(object), pa.string()),
        },
        schema=CONTEXT_SCHEMA,
    )


def _stats(counts: dict, num_items: int, context_table, item_order: str, ingest: dict) -> dict:
    return {
        "num_items": num_items,
        "num_contexts": len(context_table),
        "item_id_order": item_order,
        "num_interactions": sum(counts.get(f"interactions.{s}", 0) for s in graph_io.SPLITS),
        "counts": counts,
        "ingest": ingest,
    }


def build_graph(p, items_art, inter_art, graph_uri: str, examples_dir: str, ingest: dict) -> None:
    """Adds GraphGen to the Beam pipeline `p`: reads the two Examples artifacts, writes the graph artifact's
    tables and stats into graph_uri and the item examples (with node_id, train_degree) into examples_dir."""
    items = _source(p, items_art, "Items")
    item_sorted = _id_table(p, items, "Item")
    item_table = beam.pvalue.AsSingleton(item_sorted | "ItemTable" >> beam.Map(lambda t: t[0]))
    item_order = beam.pvalue.AsSingleton(item_sorted | "ItemOrder" >> beam.Map(lambda t: t[1]))
    num_items = beam.pvalue.AsSingleton(item_sorted | "NumItems" >> beam.Map(lambda t: len(t[0])))
    item_hash = beam.pvalue.AsSingleton(item_sorted | "ItemHash" >> beam.Map(lambda t: id_hashes(t[0])))

    inter = _source(p, inter_art, "Interactions")
    context_sorted = _id_table(p, inter, "Context", known_items=item_table)
    context_table = beam.pvalue.AsSingleton(context_sorted | "ContextTable" >> beam.Map(lambda t: t[0]))
    context_hash = beam.pvalue.AsSingleton(context_sorted | "ContextHash" >> beam.Map(lambda t: id_hashes(t[0])))
    parts, unknown_counts = inter | "Partition" >> beam.ParDo(
        _PartitionInteractions(), item_table, context_table
    ).with_outputs("counts", main="parts")
    split = (
        parts
        | "GroupByPartition" >> beam.GroupByKey()
        | "Split"
        >> beam.ParDo(_SplitPartition(), num_items, context_hash, item_hash).with_outputs(
            "counts", "degree", main="tables"
        )
    )
    _write_table(split.tables, graph_uri, graph_io.INTERACTIONS, INTERACTION_SCHEMA, "WriteInteractions")
    degree_pc = split.degree | "Degree" >> beam.CombineGlobally(_add_counts)

    tf.io.gfile.makedirs(examples_dir)
    item_rows = items | "ItemOutputs" >> beam.ParDo(
        _ItemOutputs(examples_dir), item_table, beam.pvalue.AsSingleton(degree_pc)
    )
    _write_table(item_rows, graph_uri, graph_io.ITEMS, ITEM_SCHEMA, "WriteItems")
    contexts = context_sorted | "ContextRows" >> beam.Map(_context_rows)
    _write_table(contexts, graph_uri, graph_io.CONTEXTS, CONTEXT_SCHEMA, "WriteContexts")

    # Statistics: every count is a (name, n) pair summed per name, then written once as JSON.
    isolated = degree_pc | "Isolated" >> beam.Map(
        lambda deg, n: ("items.without_train_interactions", int((_full_degree(deg, n) == 0).sum())), num_items
    )
    stats_path = os.path.join(graph_uri, graph_io.STATS_FILE)
    _ = (
        (split.counts, unknown_counts, isolated)
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombinePerKey(sum)
        | "CountList" >> beam.combiners.ToDict()
        | "WriteStats"
        >> beam.Map(
            lambda c, n, ctx, order: _write_json(stats_path, _stats(c, n, ctx, order, ingest)),
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
