"""PinSagePusher (custom TFX component): embeddings + ScaNN index -> a TF-Serving-loadable version under
`<serving_model_dir>/<model_name>/<version>/`, atomically (pipeline/push/pusher.py), keeping the last N versions.

The stock Pusher copies a trained Model as is; what PinSage serves is not the training model (a GraphTensor in,
root embeddings out) but a retrieval SavedModel built from the item embeddings (modules/export.py: stock-op
`related_items`, so the real tensorflow_model_server can load it) with the ScaNN index as its asset for
serving/server.py. Hence an exporter-pusher of its own.

With the optional inputs `model` (the trained Keras model), `transform_graph`, `examples` (transformed item
examples) and `neighborhoods`, and the exec property `items_schema` (path of the items TFX schema .pbtxt), the
version also carries the cold-start `embed_item` signature (modules/cold_start.py): a new item's raw items.csv
columns + neighbour ids/weights -> its embedding and top-k, from the Transform graph, the model's layers and the
catalogue's stored layer states. Without them only related_items is exported.

With the input `context_vectors` (the ContextEmbedder's u_c of every known context; it needs `context_tower`) the
version also carries `recommend_context` (modules/export.py) and the context arrays under assets/contexts/
(schema/versions.py), which serving/ maps: the vectors are pushed in the same version as the tower and the items
they were computed over, so a version never pairs one day's vectors with another day's index.

With the cold-start inputs the version also carries assets/trained/ (schema/versions.py's trained layout): the
trained model, the Transform graph, the context tower and the sampler's config, which `pinsage embed`
(pipeline/refresh/embed.py) embeds a new catalogue with. Two exec properties only that refresh passes (not in the
spec, so a pipeline's cache key is unchanged): `refreshed_from` (the source version, recorded in trained.json) and
`carried_blessing` and `carried_recommend_blessed` (the source version's blessings, recorded as this version's:
the model is the same).

With the input `model_blessing` (the PinSageEvaluator's blessing) only a blessed model is pushed, as TFX's stock
Pusher does: an unblessed one leaves the serving directory as it was and the PushedModel artifact is marked
`pushed` = 0, unless the exec property `push_unblessed` overrides the blessing. The context tower is blessed on
its own (the blessing's custom property `recommend_blessed`): a blessed version whose tower is not is pushed
without it, as if the inputs `context_tower` and `context_vectors` were absent (no recommend signatures, no
context arrays, no tower in assets/trained/; pushed.json's `left_out` says so), unless `push_unblessed`.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional

import tensorflow_transform as tft
from absl import logging
from tfx import types
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import path_utils

from modules import cold_start, export
from modules import features as features_lib
from pipeline.components import artifacts
from pipeline.components.bulk_embedder import example_dir
from pipeline.configs import BLESSING, PUSH, PushConfig
from pipeline.evaluation import blessing as blessing_lib
from pipeline.push import pusher
from schema import embeddings as embeddings_io
from schema import files, versions
from schema import neighborhoods as neighborhood_io


class PinSagePusherSpec(ComponentSpec):
    PARAMETERS = {
        "serving_model_dir": ExecutionParameter(type=str),
        "model_name": ExecutionParameter(type=str),
        "keep": ExecutionParameter(type=int),
        "items_schema": ExecutionParameter(type=str, optional=True),
        "push_unblessed": ExecutionParameter(type=int, optional=True),  # 1: push even a model the blessing refused
    }
    INPUTS = {
        "embeddings": ChannelParameter(type=artifacts.Embeddings),
        "index": ChannelParameter(type=artifacts.Index),
        "model": ChannelParameter(type=standard_artifacts.Model, optional=True),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph, optional=True),
        "examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
        "neighborhoods": ChannelParameter(type=artifacts.Neighborhoods, optional=True),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
        "context_tower": ChannelParameter(type=standard_artifacts.Model, optional=True),  # adds `recommend`
        "context_vectors": ChannelParameter(type=artifacts.ContextVectors, optional=True),  # `recommend_context`
    }
    OUTPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}


COLD_START_INPUTS = ("model", "transform_graph", "examples", "neighborhoods")


def cold_start_embedder(input_dict, exec_properties, num_items: int):
    """(embed_fn, feature_spec) for export_serving_model when the cold-start inputs are all given, else
    (None, None); some but not all of them is an error."""
    given = [k for k in COLD_START_INPUTS if input_dict.get(k)]
    if exec_properties.get("items_schema"):
        given.append("items_schema")
    if not given:
        return None, None
    missing = [k for k in COLD_START_INPUTS + ("items_schema",) if k not in given]
    if missing:
        raise ValueError(f"embed_item needs {missing} too (given: {given})")

    model_dir = path_utils.serving_model_dir(artifact_utils.get_single_uri(input_dict["model"]))
    tg = artifact_utils.get_single_uri(input_dict["transform_graph"])
    spec = cold_start.transformed_spec(tft.TFTransformOutput(tg))
    feats = features_lib.load_item_features(example_dir(input_dict["examples"]), spec)
    nbr, w = neighborhood_io.load_neighborhoods(artifact_utils.get_single_uri(input_dict["neighborhoods"]))
    if nbr.shape[0] != num_items:
        raise ValueError(f"neighbourhoods cover {nbr.shape[0]} items, the embeddings {num_items}")
    return cold_start.make_embed_fn(model_dir, tg, feats, nbr, w, exec_properties["items_schema"])


PUSHED_FILE = "pushed.json"  # in the PushedModel artifact: what was pushed where, or why nothing was


def blessed(input_dict) -> bool | None:
    """Whether the model_blessing input blesses the model (TFX's check: its custom property `blessed` is 1);
    None without that input."""
    given = input_dict.get("model_blessing")
    return model_utils.is_model_blessed(artifact_utils.get_single_instance(given)) if given else None


def recommend_blessed(input_dict) -> bool | None:
    """Whether the model_blessing input blesses the context tower (its custom property `recommend_blessed`); None
    without that input or without that property (no tower was judged)."""
    given = input_dict.get("model_blessing")
    if not given:
        return None
    blessing = artifact_utils.get_single_instance(given)
    if not blessing.has_custom_property(blessing_lib.RECOMMEND_BLESSED_KEY):
        return None
    return bool(blessing.get_int_custom_property(blessing_lib.RECOMMEND_BLESSED_KEY))


TOWER_INPUTS = ("context_tower", "context_vectors")  # what a version without the context tower leaves out


def without_refused_tower(input_dict, exec_properties) -> tuple[dict, list]:
    """(the inputs to push, the signatures left out): without the context tower and its vectors when the blessing
    refuses the tower and push_unblessed does not override it, else the inputs as given and []."""
    if recommend_blessed(input_dict) is not False or not any(input_dict.get(k) for k in TOWER_INPUTS):
        return input_dict, []
    uri = artifact_utils.get_single_uri(input_dict["model_blessing"])
    if int(exec_properties.get("push_unblessed") or 0):
        logging.warning("PinSagePusher: the context tower is NOT blessed (%s): pushing it anyway (push_unblessed)", uri)
        return input_dict, []
    logging.warning("PinSagePusher: the context tower is NOT blessed (%s): the version is pushed without it", uri)
    return {k: v for k, v in input_dict.items() if k not in TOWER_INPUTS}, [versions.RECOMMEND]


def carried(exec_properties, key: str, judged):
    """A refresh's carried blessing (exec property `key`) when given, else the one judged from the inputs."""
    value = exec_properties.get(key)
    return judged if value is None else value


def mark_not_pushed(out, blessing_uri: str) -> None:
    """The PushedModel artifact of a push the blessing refused: `pushed` = 0 (as TFX's stock Pusher marks it) and
    a pushed.json that says so."""
    out.set_int_custom_property("pushed", 0)
    files.makedirs(out.uri)
    files.write_json(
        files.join(out.uri, PUSHED_FILE),
        {"pushed": False, "blessed": False, "destination": None, "version": None, "blessing": blessing_uri},
    )


def refused(input_dict, out, exec_properties) -> bool:
    """True when the blessing refuses the push (then `out` is marked not pushed); a refusal that push_unblessed
    overrides, and a push without a blessing input, go ahead. One log line either way a blessing refuses."""
    if blessed(input_dict) is not False:
        return False
    uri = artifact_utils.get_single_uri(input_dict["model_blessing"])
    if int(exec_properties.get("push_unblessed") or 0):
        logging.warning("PinSagePusher: the model is NOT blessed (%s): pushing it anyway (push_unblessed)", uri)
        return False
    logging.warning("PinSagePusher: the model is NOT blessed (%s): nothing pushed", uri)
    mark_not_pushed(out, uri)
    return True


def context_tower_of(input_dict, embeddings):
    """The ContextTowerTrainer's tower over the pushed embeddings (the batch embedder's z, the vectors it was
    trained on), or None without that input."""
    given = input_dict.get("context_tower")
    if not given:
        return None
    from pipeline.history import train as history_train

    return history_train.load_tower(artifact_utils.get_single_uri(given), embeddings)


def stage_trained(input_dict, exec_properties, dest: str) -> Optional[str]:
    """The trained layout (schema/versions.py) of the cold-start inputs, staged under `dest` for pusher.push; None
    without a model input."""
    if not input_dict.get("model"):
        return None
    from modules.trainer import QUERY_HEAD_DIR  # lazily, as Do imports modules.trainer

    model_uri = artifact_utils.get_single_uri(input_dict["model"])
    files.makedirs(files.join(dest, versions.TRAINED_MODEL_DIR))
    serving = os.path.basename(path_utils.serving_model_dir(model_uri))  # Format-Serving
    for part in (serving, QUERY_HEAD_DIR):  # the training-time arrays beside them stay in the artifact
        if files.isdir(files.join(model_uri, part)):
            files.copytree(files.join(model_uri, part), files.join(dest, versions.TRAINED_MODEL_DIR, part))
    copies = (("transform_graph", versions.TRAINED_TRANSFORM_DIR), ("context_tower", versions.TRAINED_TOWER_DIR))
    for key, name in copies:
        if input_dict.get(key):
            files.copytree(artifact_utils.get_single_uri(input_dict[key]), files.join(dest, name))
    stats = files.join(artifact_utils.get_single_uri(input_dict["neighborhoods"]), neighborhood_io.STATS_FILE)
    if files.exists(stats):
        files.copy(stats, files.join(dest, versions.TRAINED_SAMPLING_JSON))
    files.write_json(
        files.join(dest, versions.TRAINED_JSON),
        {
            "blessed": carried(exec_properties, "carried_blessing", blessed(input_dict)),
            "recommend_blessed": carried(exec_properties, "carried_recommend_blessed", recommend_blessed(input_dict)),
            "refreshed_from": exec_properties.get("refreshed_from"),
        },
    )
    return dest


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        out = artifact_utils.get_single_instance(output_dict["pushed_model"])
        if refused(input_dict, out, exec_properties):
            return
        input_dict, left_out = without_refused_tower(input_dict, exec_properties)  # a refused tower stays out
        emb, ids, titles = embeddings_io.read_embeddings(artifact_utils.get_single_uri(input_dict["embeddings"]))
        index_dir = artifact_utils.get_single_uri(input_dict["index"])
        embed_fn, feature_spec = cold_start_embedder(input_dict, exec_properties, len(ids))
        query_emb = embeddings_io.read_query_embeddings(artifact_utils.get_single_uri(input_dict["embeddings"]))
        query_fn = None
        if embed_fn is not None:
            from modules import trainer

            query_fn = trainer.load_query_head(artifact_utils.get_single_uri(input_dict["model"]))
        tower = context_tower_of(input_dict, emb)
        contexts_dir = (
            artifact_utils.get_single_uri(input_dict["context_vectors"]) if input_dict.get("context_vectors") else None
        )
        contexts = versions.read_context_arrays(contexts_dir) if contexts_dir else None
        with tempfile.TemporaryDirectory() as tmp:
            saved = export.export_serving_model(
                os.path.join(tmp, "export"),
                emb,
                ids,
                titles,
                embed_fn=embed_fn,
                feature_spec=feature_spec,
                query_embeddings=query_emb,
                query_fn=query_fn,
                context_tower=tower,
                context_vectors=contexts,
            )
            path = pusher.push(
                saved,
                index_dir,
                exec_properties["serving_model_dir"],
                model_name=exec_properties["model_name"],
                keep=int(exec_properties["keep"]),
                contexts_dir=contexts_dir,
                trained=stage_trained(input_dict, exec_properties, os.path.join(tmp, "trained")),
            )
        version = int(os.path.basename(path))
        out.set_int_custom_property("pushed", 1)
        out.set_string_custom_property("pushed_destination", path)
        out.set_int_custom_property("pushed_version", version)
        files.makedirs(out.uri)
        files.write_json(
            files.join(out.uri, PUSHED_FILE),
            {
                "pushed": True,
                "blessed": carried(exec_properties, "carried_blessing", blessed(input_dict)),
                "recommend_blessed": carried(
                    exec_properties, "carried_recommend_blessed", recommend_blessed(input_dict)
                ),
                "left_out": left_out,
                "destination": path,
                "version": version,
                "num_items": len(ids),
                "signatures": ["related_items", "similar_items"]
                + (["embed_item"] if embed_fn is not None else [])
                + ([versions.RECOMMEND, versions.RECOMMEND_WEIGHTED] if tower is not None else [])
                + ([versions.RECOMMEND_CONTEXT] if contexts is not None else []),
                "num_contexts": 0 if contexts is None else len(contexts.context_ids),
            },
        )


class PinSagePusher(base_component.BaseComponent):
    """embeddings + index (+ model, transform_graph, examples, neighborhoods, items_schema for embed_item) ->
    serving_model_dir/model_name/<version>/ (SavedModel + assets/index); with model_blessing, only a blessed
    model (or any, with push_unblessed)."""

    SPEC_CLASS = PinSagePusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        embeddings,
        index,
        serving_model_dir: str,
        config: PushConfig = PUSH,
        model=None,
        transform_graph=None,
        examples=None,
        neighborhoods=None,
        items_schema: Optional[str] = None,
        model_blessing=None,
        push_unblessed: bool = BLESSING.push_unblessed,
        context_tower=None,
        context_vectors=None,
    ):
        if context_vectors is not None and context_tower is None:
            raise ValueError("context_vectors need the context_tower they came from (recommend_context scores them)")
        cold = dict(
            model=model,
            transform_graph=transform_graph,
            examples=examples,
            neighborhoods=neighborhoods,
            items_schema=items_schema,
        )
        if any(v is not None for v in cold.values()) and any(v is None for v in cold.values()):
            raise ValueError(
                f"embed_item needs all of {sorted(cold)}; missing {sorted(k for k, v in cold.items() if v is None)}"
            )
        super().__init__(
            spec=PinSagePusherSpec(
                embeddings=embeddings,
                index=index,
                serving_model_dir=serving_model_dir,
                model_name=config.model_name,
                keep=config.keep,
                pushed_model=types.Channel(type=standard_artifacts.PushedModel),
                model_blessing=model_blessing,
                push_unblessed=int(push_unblessed),
                context_tower=context_tower,
                context_vectors=context_vectors,
                **cold,
            )
        )
