"""ContextEmbedder (custom TFX Beam component): the context tower's query vector u_c for every known context, the
daily refresh a served `recommend_context` answers from (pipeline/history/context_vectors.py).

Inputs: the graph (each context's whole history, its context ids), the ContextTowerTrainer's Model (the tower:
config.json + weights/, loaded by pipeline/history/train.load_tower) and the BulkEmbedder's Embeddings (the z the
version serves, so a stored u_c is the vector `recommend` computes from the same history). Output: a ContextVectors
artifact in the context layout of schema/versions.py (context_ids.npy, context_vectors.npy, the history CSR,
context_vectors.json), plus the Beam rows it was assembled from. The batch size and the stage's code fingerprint
are exec properties, so the TFX cache recomputes exactly when the graph, the tower, z or the code change.
Absent from the pipeline when the context tower is off (`--no-context-tower`).

    embedder = ContextEmbedder(graph=graph_gen.outputs['graph'], context_tower=tower.outputs['context_tower'],
                               embeddings=bulk_embedder.outputs['embeddings'])
    embedder.outputs['context_vectors']
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipeline.components import artifacts
from pipeline.configs import HISTORY

STAGE_MODULE = "pipeline.history.context_vectors"  # what the code fingerprint follows


class ContextEmbedderSpec(ComponentSpec):
    PARAMETERS = {
        "batch_size": ExecutionParameter(type=int),
        "code_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "graph": ChannelParameter(type=artifacts.PinSageGraph),
        "context_tower": ChannelParameter(type=standard_artifacts.Model),
        "embeddings": ChannelParameter(type=artifacts.Embeddings),
    }
    OUTPUTS = {"context_vectors": ChannelParameter(type=artifacts.ContextVectors)}


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        from pipeline.history import context_vectors

        out = artifact_utils.get_single_instance(output_dict["context_vectors"])
        stats = context_vectors.run(
            self._make_beam_pipeline,
            artifact_utils.get_single_uri(input_dict["graph"]),
            artifact_utils.get_single_uri(input_dict["context_tower"]),
            artifact_utils.get_single_uri(input_dict["embeddings"]),
            out.uri,
            int(exec_properties.get("batch_size") or HISTORY.context_batch_size),
        )
        out.set_int_custom_property("num_contexts", int(stats["contexts"]))
        out.set_int_custom_property("dim", int(stats["dim"]))


class ContextEmbedder(base_beam_component.BaseBeamComponent):
    """graph + context tower + item embeddings -> context vectors (ContextVectors); see the module docstring."""

    SPEC_CLASS = ContextEmbedderSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        graph: types.BaseChannel,
        context_tower: types.BaseChannel,
        embeddings: types.BaseChannel,
        batch_size: int = HISTORY.context_batch_size,
        code_fingerprint: str = "",
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(
            spec=ContextEmbedderSpec(
                graph=graph,
                context_tower=context_tower,
                embeddings=embeddings,
                batch_size=int(batch_size),
                code_fingerprint=code_fingerprint,
                context_vectors=types.Channel(type=artifacts.ContextVectors),
            )
        )
