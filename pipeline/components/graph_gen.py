"""GraphGen (custom TFX Beam component): interaction logs -> bipartite graph with int ids and the temporal split.

Reads the two ingested Examples tables and writes
- `graph`          (PinSageGraph, layout in schema/graph.py): items/contexts with contiguous int ids, every kept
                   interaction with its position in the context's history and its split;
- `item_examples`  (Examples, split `items`, Parquet payload): each item's raw columns + node_id + train_degree, for
                   Transform;
- `item_schema`    (Schema): the items schema extended with those two columns.

The id order and the temporal split are pipeline/graph/split.py's (docs/DESIGN.md, fixed); the Beam transform is
pipeline/graph/beam_graph.py. Duplicates: the same (context, item) pair more than once keeps its first occurrence
in that order (a re-engagement would otherwise make the held-out item one the context has already "seen" in
train); each drop is counted. Transform runs after GraphGen (not before) so that log-degree is the *train*
degree, and every downstream table is keyed by the same node_id.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils, channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils

from pipeline.components.artifacts import PinSageGraph
from pipeline.graph.beam_graph import build_graph
from schema import build as schema_build

ITEM_SPLIT = "items"


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

        examples_dir = artifact_utils.get_split_uri([examples_art], ITEM_SPLIT)
        with self._make_beam_pipeline() as p:
            build_graph(p, items_art, inter_art, graph_uri, examples_dir, ingest)


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
