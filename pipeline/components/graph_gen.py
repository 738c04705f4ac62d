"""GraphGen (custom TFX Beam component): interaction logs -> bipartite graph with int ids and the temporal split.

Reads the two ExampleGen tables and writes
- `graph`          (PinSageGraph, layout in pipeline/graph_io.py): items/contexts with contiguous int ids, every kept
                   interaction with its position in the context's history and its split;
- `item_examples`  (Examples, split `items`): each item's raw columns + node_id + train_degree, for Transform;
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
import pyarrow as pa
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
_INTERACTION_SCHEMA = pa.schema([("context_index", pa.int64()), ("node_id", pa.int64()),
                                 ("timestamp", pa.int64()), ("weight", pa.float64()),
                                 ("split", pa.string()), ("position", pa.int64())])
_ITEM_SCHEMA = pa.schema([("node_id", pa.int64()), ("item_id", pa.string()), ("title", pa.string()),
                          ("train_degree", pa.int64())])
_CONTEXT_SCHEMA = pa.schema([("context_index", pa.int64()), ("context_id", pa.string())])


def _value(ex: tf.train.Example, name: str):
    """The single value of a feature whatever type ExampleGen inferred for it (None when absent)."""
    f = ex.features.feature.get(name)
    if f is None:
        return None
    kind = f.WhichOneof("kind")
    vals = getattr(f, kind).value if kind else []
    if not vals:
        return None
    v = vals[0]
    return v.decode("utf-8") if isinstance(v, bytes) else v


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


class _SplitContexts(beam.DoFn):
    def process(self, element, item_index, context_index, item_order):
        ctx, rows = element
        out, dups = split_context(list(rows), id_sort_key(item_order))
        if dups:
            yield beam.pvalue.TaggedOutput("counts", ("graph.dropped.duplicate_interaction", dups))
        if len(out) < 3:
            yield beam.pvalue.TaggedOutput("counts", ("graph.contexts_with_fewer_than_3_train_only", 1))
        c = context_index[ctx]
        for item, ts, w, split, pos in out:
            yield {"context_index": c, "node_id": item_index[item], "timestamp": int(ts),
                   "weight": float(w), "split": split, "position": pos}


def _with_node_features(ex_bytes_and_id, item_index, degree):
    ex, item_id = ex_bytes_and_id
    out = tf.train.Example()
    out.CopyFrom(ex)
    node = item_index[item_id]
    out.features.feature["node_id"].int64_list.value.append(node)
    out.features.feature["train_degree"].int64_list.value.append(degree.get(node, 0))
    return out


def _write_json(path: str, obj) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True))


def _read(p, artifact, label):
    split = artifact_utils.decode_split_names(artifact.split_names)[0]
    pattern = os.path.join(artifact_utils.get_split_uri([artifact], split), "*")
    return p | f"Read{label}" >> beam.io.ReadFromTFRecord(pattern, coder=beam.coders.ProtoCoder(tf.train.Example))


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        items_art = artifact_utils.get_single_instance(input_dict["items"])
        inter_art = artifact_utils.get_single_instance(input_dict["interactions"])
        schema_uri = artifact_utils.get_single_uri(input_dict["items_schema"])
        graph_uri = artifact_utils.get_single_uri(output_dict["graph"])
        examples_art = artifact_utils.get_single_instance(output_dict["item_examples"])
        out_schema_uri = artifact_utils.get_single_uri(output_dict["item_schema"])
        examples_art.split_names = artifact_utils.encode_split_names([ITEM_SPLIT])
        ingest = {}
        if exec_properties.get("ingest_report"):
            with tf.io.gfile.GFile(exec_properties["ingest_report"]) as f:
                ingest = json.load(f)

        items_schema = io_utils.parse_pbtxt_file(
            io_utils.get_only_uri_in_dir(schema_uri), schema_pb2.Schema())
        io_utils.write_pbtxt_file(os.path.join(out_schema_uri, "schema.pbtxt"),
                                  schema_build.graph_items_schema(items_schema))

        with self._make_beam_pipeline() as p:
            items = (_read(p, items_art, "Items")
                     | "KeyItems" >> beam.Map(lambda ex: (_id_str(_value(ex, "item_id")), ex)))
            item_ids = items | "ItemIds" >> beam.Keys()
            item_index = beam.pvalue.AsSingleton(
                item_ids | "AllItemIds" >> beam.combiners.ToList() | "IndexItems" >> beam.Map(index_of))
            item_order = beam.pvalue.AsSingleton(
                item_ids | "ItemIdList" >> beam.combiners.ToList()
                | "IdOrder" >> beam.Map(id_order))

            inter = (_read(p, inter_art, "Interactions")
                     | "ParseInteractions" >> beam.Map(lambda ex: (
                         _id_str(_value(ex, "context_id")),
                         (_id_str(_value(ex, "item_id")), int(_value(ex, "timestamp")),
                          float(_value(ex, "weight") or 1.0)))))
            # Ingest already dropped interactions with unknown items; keep the guard so that a graph is never
            # built with a dangling id, and count what it catches.
            known, unknown = (inter | "CheckKnownItem" >> beam.Map(
                lambda kv, idx: beam.pvalue.TaggedOutput("unknown", 1) if kv[1][0] not in idx else kv,
                item_index).with_outputs("unknown", main="known"))
            context_table = (known | "ContextIds" >> beam.Keys() | "DistinctContexts" >> beam.Distinct()
                             | "AllContexts" >> beam.combiners.ToList() | "IndexContexts" >> beam.Map(index_of))
            context_index = beam.pvalue.AsSingleton(context_table)
            rows, counts = (known | "GroupByContext" >> beam.GroupByKey()
                            | "SplitContexts" >> beam.ParDo(_SplitContexts(), item_index, context_index,
                                                            item_order).with_outputs("counts", main="rows"))
            _ = rows | "WriteInteractions" >> beam.io.WriteToParquet(
                os.path.join(graph_uri, graph_io.INTERACTIONS), _INTERACTION_SCHEMA,
                file_name_suffix=".parquet")

            degree = beam.pvalue.AsDict(
                rows | "TrainOnly" >> beam.Filter(lambda r: r["split"] == "train")
                | "NodeOne" >> beam.Map(lambda r: (r["node_id"], 1)) | "Degree" >> beam.CombinePerKey(sum))
            _ = (items | "ItemRows" >> beam.Map(
                lambda kv, idx, deg: {"node_id": idx[kv[0]], "item_id": kv[0],
                                      "title": str(_value(kv[1], "title") or ""),
                                      "train_degree": deg.get(idx[kv[0]], 0)},
                item_index, degree)
                | "WriteItems" >> beam.io.WriteToParquet(os.path.join(graph_uri, graph_io.ITEMS), _ITEM_SCHEMA,
                                                         file_name_suffix=".parquet"))
            _ = (context_table | "ContextRows" >> beam.FlatMap(lambda idx: [
                {"context_index": v, "context_id": k} for k, v in idx.items()])
                | "WriteContexts" >> beam.io.WriteToParquet(os.path.join(graph_uri, graph_io.CONTEXTS),
                                                            _CONTEXT_SCHEMA, file_name_suffix=".parquet"))
            _ = (items | "SwapIdEx" >> beam.Map(lambda kv: (kv[1], kv[0]))
                 | "AddNodeFeatures" >> beam.Map(_with_node_features, item_index, degree)
                 | "WriteItemExamples" >> beam.io.WriteToTFRecord(
                     os.path.join(artifact_utils.get_split_uri([examples_art], ITEM_SPLIT), "data_tfrecord"),
                     coder=beam.coders.ProtoCoder(tf.train.Example), file_name_suffix=".gz"))

            # Statistics: every count is a (name, n) pair summed per name, then written once as JSON.
            split_counts = rows | "SplitName" >> beam.Map(lambda r: (f"interactions.{r['split']}", 1))
            unknown_counts = unknown | "UnknownName" >> beam.Map(lambda _: ("graph.dropped.unknown_item_id", 1))
            isolated = (item_ids | "Isolated" >> beam.FlatMap(
                lambda i, idx, deg: [("items.without_train_interactions", 1)] if deg.get(idx[i], 0) == 0 else [],
                item_index, degree))
            _ = ((counts, split_counts, unknown_counts, isolated) | "AllCounts" >> beam.Flatten()
                 | "SumCounts" >> beam.CombinePerKey(sum) | "CountList" >> beam.combiners.ToDict()
                 | "WriteStats" >> beam.Map(
                     lambda c, idx, cidx, order: _write_json(os.path.join(graph_uri, graph_io.STATS_FILE), {
                         "num_items": len(idx), "num_contexts": len(cidx), "item_id_order": order,
                         "num_interactions": sum(c.get(f"interactions.{s}", 0) for s in graph_io.SPLITS),
                         "counts": c, "ingest": ingest}),
                     item_index, context_index, item_order))


class GraphGenSpec(ComponentSpec):
    PARAMETERS = {"ingest_report": ExecutionParameter(type=str, optional=True)}
    INPUTS = {"items": ChannelParameter(type=standard_artifacts.Examples),
              "interactions": ChannelParameter(type=standard_artifacts.Examples),
              "items_schema": ChannelParameter(type=standard_artifacts.Schema)}
    OUTPUTS = {"graph": ChannelParameter(type=PinSageGraph),
               "item_examples": ChannelParameter(type=standard_artifacts.Examples),
               "item_schema": ChannelParameter(type=standard_artifacts.Schema)}


class GraphGen(base_beam_component.BaseBeamComponent):
    """items + interactions Examples -> PinSageGraph + item Examples (with node_id) + item Schema."""

    SPEC_CLASS = GraphGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, items, interactions, items_schema, ingest_report: str = ""):
        super().__init__(spec=GraphGenSpec(
            items=items, interactions=interactions, items_schema=items_schema, ingest_report=ingest_report,
            graph=channel.Channel(type=PinSageGraph),
            item_examples=channel.Channel(type=standard_artifacts.Examples),
            item_schema=channel.Channel(type=standard_artifacts.Schema)))
