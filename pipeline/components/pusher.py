"""PinSagePusher (custom TFX component): embeddings + ScaNN index -> a TF-Serving-loadable version under
`<serving_model_dir>/<model_name>/<version>/`, atomically (pipeline/pusher.py), keeping the last N versions.

The stock Pusher copies a trained Model as is; what PinSage serves is not the training model (a GraphTensor in,
root embeddings out) but a retrieval SavedModel built from the item embeddings (pipeline/export.py: stock-op
`related_items`, so the real tensorflow_model_server can load it) with the ScaNN index as its asset for
serving/server.py. Hence an exporter-pusher of its own.
"""
from __future__ import annotations

import json
import os
import tempfile

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipeline import artifacts, export, index_builder, pusher


class PinSagePusherSpec(ComponentSpec):
    PARAMETERS = {"serving_model_dir": ExecutionParameter(type=str),
                  "model_name": ExecutionParameter(type=str),
                  "keep": ExecutionParameter(type=int)}
    INPUTS = {"embeddings": ChannelParameter(type=artifacts.Embeddings),
              "index": ChannelParameter(type=artifacts.Index)}
    OUTPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        emb, ids, titles = index_builder.read_embeddings(artifact_utils.get_single_uri(input_dict["embeddings"]))
        index_dir = artifact_utils.get_single_uri(input_dict["index"])
        out = artifact_utils.get_single_instance(output_dict["pushed_model"])
        with tempfile.TemporaryDirectory() as tmp:
            saved = export.export_serving_model(os.path.join(tmp, "export"), emb, ids, titles)
            path = pusher.push(saved, index_dir, exec_properties["serving_model_dir"],
                               model_name=exec_properties["model_name"], keep=int(exec_properties["keep"]))
        version = int(os.path.basename(path))
        out.set_int_custom_property("pushed", 1)
        out.set_string_custom_property("pushed_destination", path)
        out.set_int_custom_property("pushed_version", version)
        os.makedirs(out.uri, exist_ok=True)
        with open(os.path.join(out.uri, "pushed.json"), "w") as f:
            json.dump({"destination": path, "version": version, "num_items": len(ids)}, f)


class PinSagePusher(base_component.BaseComponent):
    """embeddings + index -> serving_model_dir/model_name/<version>/ (SavedModel + assets/index)."""

    SPEC_CLASS = PinSagePusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, embeddings, index, serving_model_dir: str, model_name: str = "pinsage", keep: int = 3):
        super().__init__(spec=PinSagePusherSpec(
            embeddings=embeddings, index=index, serving_model_dir=serving_model_dir, model_name=model_name,
            keep=keep, pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
