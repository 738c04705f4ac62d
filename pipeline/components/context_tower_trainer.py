"""ContextTowerTrainer (custom TFX component): the second tower, trained after the PinSageTrainer.

Inputs: the graph (its train sequences; validation items for the per-epoch check and the form probe) and the
PinSageTrainer's Model (its embeddings.npy: the item tower's z, the vectors the layer-wise embedder produces and
the index holds). Output: a Model artifact with the tower (saved_model/, weights/), config.json and history.json
(pipeline/history/train.py). The ContextTowerConfig overrides and the code fingerprint of the stage are exec
properties, so the TFX cache re-trains exactly when the data, the item tower, the config or the code change.
Resumable like the PinSageTrainer: a checkpoint at each epoch end goes to
`<pipeline root>/ContextTowerTrainer/.checkpoints/<key>/` (key: the TFX cache key, trainer.checkpoint_key), so a
re-run after a killed try resumes at its last epoch; the directory goes once the tower is saved.
"""

from __future__ import annotations

import json
import os

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from modules.trainer import load_model_embeddings
from pipeline.components import artifacts
from pipeline.components.trainer import CHECKPOINTS_DIR, checkpoint_key
from pipeline.configs import HISTORY, check_context_tower
from pipeline.history import train
from schema import graph as graph_io

STAGE_MODULE = "pipeline.history.train"  # what the code fingerprint follows


class ContextTowerTrainerSpec(ComponentSpec):
    PARAMETERS = {
        "config": ExecutionParameter(type=str),  # JSON of modules.context_tower.ContextTowerConfig overrides
        "probe_contexts": ExecutionParameter(type=int, optional=True),  # validation sample (0: all)
        "code_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "graph": ChannelParameter(type=artifacts.PinSageGraph),
        "model": ChannelParameter(type=standard_artifacts.Model),  # the item tower (embeddings.npy)
    }
    OUTPUTS = {"context_tower": ChannelParameter(type=standard_artifacts.Model)}


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        graph = graph_io.load_graph(artifact_utils.get_single_uri(input_dict["graph"]))
        emb, _, _ = load_model_embeddings(artifact_utils.get_single_uri(input_dict["model"]))
        out = artifact_utils.get_single_instance(output_dict["context_tower"])
        # <pipeline root>/<component id>/context_tower/<execution id>
        component_dir = os.path.dirname(os.path.dirname(out.uri.rstrip("/")))
        checkpoint_dir = os.path.join(component_dir, CHECKPOINTS_DIR, checkpoint_key(input_dict, exec_properties))
        hist = train.run(
            graph,
            emb,
            json.loads(exec_properties.get("config") or "{}"),
            out.uri,
            probe_contexts=int(exec_properties.get("probe_contexts") or 0) or None,
            checkpoint_dir=checkpoint_dir,
        )
        if fileio.exists(checkpoint_dir):  # trained and saved: nothing left to resume
            fileio.rmtree(checkpoint_dir)
        out.set_string_custom_property("form", hist["form"])
        out.set_float_custom_property("best_val_hr@10", float(hist.get("best_val_hr@10") or 0.0))
        out.set_int_custom_property("resumed_from_epoch", int(hist.get("resumed_from_epoch") or 0))


class ContextTowerTrainer(base_component.BaseComponent):
    """graph + item tower -> the context tower (a Model artifact: SavedModel, weights, config, history)."""

    SPEC_CLASS = ContextTowerTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        graph,
        model,
        config: dict | None = None,
        probe_contexts: int = HISTORY.probe_contexts,
        code_fingerprint: str = "",
    ):
        super().__init__(
            spec=ContextTowerTrainerSpec(
                graph=graph,
                model=model,
                config=json.dumps(check_context_tower(dict(config or {})), sort_keys=True),
                probe_contexts=int(probe_contexts or 0),
                code_fingerprint=code_fingerprint,
                context_tower=types.Channel(type=standard_artifacts.Model),
            )
        )
