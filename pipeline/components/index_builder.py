"""IndexBuilder (custom TFX component): an Embeddings artifact -> an Index artifact (modules/index.py's layout).

A thin shell: the index is built, measured and serialized by modules.index.build_index.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from modules.index import BRUTE_FORCE_BELOW, REORDER, build_index
from pipeline.components import artifacts
from schema.embeddings import read_embeddings, read_query_embeddings


class IndexBuilderSpec(ComponentSpec):
    PARAMETERS = {
        "brute_force_below": ExecutionParameter(type=int),
        "num_leaves": ExecutionParameter(type=int),
        "leaves_to_search": ExecutionParameter(type=int),
        "reorder": ExecutionParameter(type=int),
        "recall_queries": ExecutionParameter(type=int),
        "seed": ExecutionParameter(type=int),
    }
    INPUTS = {"embeddings": ChannelParameter(type=artifacts.Embeddings)}
    OUTPUTS = {"index": ChannelParameter(type=artifacts.Index)}


class Executor(base_executor.BaseExecutor):
    """Reads embeddings.npy + item_ids.txt (+ titles.txt) and writes the index directory into the Index artifact."""

    def Do(self, input_dict, output_dict, exec_properties):
        uri = artifact_utils.get_single_uri(input_dict["embeddings"])
        emb, ids, titles = read_embeddings(uri)
        out = artifact_utils.get_single_instance(output_dict["index"])
        stats = build_index(
            emb,
            ids,
            out.uri,
            titles=titles,
            query_embeddings=read_query_embeddings(uri),
            recall_queries=int(exec_properties["recall_queries"]),
            seed=int(exec_properties["seed"]),
            brute_force_below=int(exec_properties["brute_force_below"]),
            num_leaves=int(exec_properties["num_leaves"]),
            leaves_to_search=int(exec_properties["leaves_to_search"]),
            reorder=int(exec_properties["reorder"]),
        )
        out.set_string_custom_property("kind", stats["kind"])
        out.set_float_custom_property("recall_at_10", stats["recall_at_10"])


class IndexBuilder(base_component.BaseComponent):
    """embeddings (Embeddings) -> index (Index); `num_leaves=0` / `leaves_to_search=0` pick ~sqrt(N) /
    max(8, leaves/40).

        index = IndexBuilder(embeddings=bulk_embedder.outputs['embeddings'])
        index.outputs['index']
    """

    SPEC_CLASS = IndexBuilderSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        embeddings: types.BaseChannel,
        brute_force_below: int = BRUTE_FORCE_BELOW,
        num_leaves: int = 0,
        leaves_to_search: int = 0,
        reorder: int = REORDER,
        recall_queries: int = 1000,
        seed: int = 0,
    ):
        super().__init__(
            spec=IndexBuilderSpec(
                embeddings=embeddings,
                index=types.Channel(type=artifacts.Index),
                brute_force_below=brute_force_below,
                num_leaves=num_leaves,
                leaves_to_search=leaves_to_search,
                reorder=reorder,
                recall_queries=recall_queries,
                seed=seed,
            )
        )
