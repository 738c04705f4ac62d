"""PinSageEvaluator (custom TFX component): the fixed protocol of docs/DESIGN.md over the trained model and the
baselines, in one report (report.json, report.md, plots).

TFX's stock Evaluator (TFMA) scores per-example predictions against labels; this protocol ranks the whole
catalogue per context with the context's seen items masked, which TFMA does not express, hence a component of its
own around modules/evaluation.py (the protocol) and pipeline/evaluation/ (the report). Models in the report:
`pinsage` (the trained model's item embeddings, dot product), `popularity`, `cooccurrence_knn`,
`transition_counts` (window 3), `rwr` (random walk with restart 0.5 from the query on the train graph) and
`features_only` (cosine of the Transform-ed item features with no graph and no training), plus any ablations.
Each gets the list metrics of its related-items lists (coverage@10, popular_share@10, feature_agreement@10 on
the first categorical feature); the embedding models also get the spread of their space (random-pair cosine).

The component also blesses the model, as TFX's stock Evaluator does for its Pusher: the output `blessing` (a
ModelBlessing) holds an empty BLESSED or NOT_BLESSED file and the custom property `blessed` = 1 / 0, decided by
pipeline/evaluation/blessing.py from the report's paired verdicts on the item-to-item signatures; with a context
tower, the custom property `recommend_blessed` = 1 / 0 is the tower's own blessing (a tower that is not blessed is
left out of the pushed version, not the version refused). Both are in report.json too: `blessing`, `blessed`,
`recommend_blessed`.
"""

from __future__ import annotations

import json

from absl import logging
from tfx import types
from tfx.components.model_validator import constants
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from modules import features as features_lib
from modules.trainer import HISTORY_FILE, load_model_embeddings
from pipeline.components import artifacts
from pipeline.configs import BLESSING, BlessingConfig
from pipeline.evaluation import blessing as blessing_lib
from pipeline.evaluation import evaluate
from pipeline.evaluation import report as report_lib
from pipeline.history import train as tower_train
from schema import files
from schema import graph as graph_io


class PinSageEvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        "dataset": ExecutionParameter(type=str),
        "graph_schema": ExecutionParameter(type=str),
        "max_contexts": ExecutionParameter(type=int, optional=True),
        "blessing_metric": ExecutionParameter(type=str, optional=True),
        "blessing_z": ExecutionParameter(type=float, optional=True),
        "blessing_baselines": ExecutionParameter(type=str, optional=True),  # JSON {signature: [names] or null}
    }
    INPUTS = {
        "graph": ChannelParameter(type=artifacts.PinSageGraph),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
        # the ContextTowerTrainer's Model: with it the report gains the history section (pipeline/evaluation/history.py)
        "context_tower": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "report": ChannelParameter(type=artifacts.EvaluationReport),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


def exec_properties(config: BlessingConfig) -> dict:
    """The blessing's execution parameters (push_unblessed is the Pusher's: it does not change the blessing)."""
    return {
        "blessing_metric": config.metric,
        "blessing_z": float(config.z),
        "blessing_baselines": json.dumps({k: None if v is None else list(v) for k, v in config.baselines().items()}),
    }


def blessing_config(exec_properties: dict) -> BlessingConfig:
    """The BlessingConfig of the execution parameters (BLESSING's values where one is not given)."""
    baselines = json.loads(exec_properties.get("blessing_baselines") or "{}")
    given = {k: None if v is None else tuple(v) for k, v in baselines.items()}
    z = exec_properties.get("blessing_z")
    return BlessingConfig(
        metric=exec_properties.get("blessing_metric") or BLESSING.metric,
        z=BLESSING.z if z is None else float(z),
        related_items=given.get("related_items", BLESSING.related_items),
        similar_items=given.get("similar_items", BLESSING.similar_items),
    )


def write_blessing(blessing, blessed: bool, model_uri: str, recommend_blessed: bool | None = None) -> None:
    """The TFX blessing, as TFX's own Evaluator writes it: an empty BLESSED / NOT_BLESSED file in the artifact's
    directory and the custom property `blessed` (the stock Pusher's check, tfx.components.util.model_utils); with a
    context tower, `recommend_blessed` = 1 / 0 too (absent without one)."""
    files.makedirs(blessing.uri)
    name = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
    files.write_text(files.join(blessing.uri, name), "")
    value = constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, value)
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model_uri)
    if recommend_blessed is not None:
        blessing.set_int_custom_property(blessing_lib.RECOMMEND_BLESSED_KEY, int(recommend_blessed))


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        model_uri = artifact_utils.get_single_uri(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        split = artifact_utils.decode_split_names(examples.split_names)[0]
        graph = graph_io.load_graph(artifact_utils.get_single_uri(input_dict["graph"]))
        feats = features_lib.load_item_features(
            artifact_utils.get_split_uri([examples], split), exec_properties["graph_schema"]
        )
        history = files.read_json(files.join(model_uri, HISTORY_FILE))
        config = blessing_config(exec_properties)
        embeddings = load_model_embeddings(model_uri)
        tower = _context_tower(input_dict, embeddings[0])
        report = evaluate.evaluation_report(
            graph,
            embeddings,
            feats,
            history,
            transform_graph_uri=artifact_utils.get_single_uri(input_dict["transform_graph"]),
            out_dir=artifact_utils.get_single_uri(output_dict["report"]),
            dataset=exec_properties["dataset"],
            max_contexts=int(exec_properties.get("max_contexts") or 0) or None,
            verdict_metric=config.metric,
            z=float(config.z),
            context_tower=tower,
        )
        report["blessing"] = blessing_lib.decide(report, config)
        report["blessed"] = report["blessing"]["blessed"]
        report["recommend_blessed"] = report["blessing"]["recommend_blessed"]
        report_lib.write(report, artifact_utils.get_single_uri(output_dict["report"]))
        if output_dict.get("blessing"):  # absent only where a caller runs the executor without that output
            write_blessing(
                artifact_utils.get_single_instance(output_dict["blessing"]),
                report["blessed"],
                model_uri,
                report["recommend_blessed"],
            )
        left_out = "; ".join(report["blessing"]["left_out"].values())
        logging.info(
            "PinSageEvaluator: %s%s",
            "BLESSED" if report["blessed"] else "NOT BLESSED: " + "; ".join(report["blessing"]["reasons"]),
            f" (the context tower is NOT blessed, it is left out of the version: {left_out})" if left_out else "",
        )


def _context_tower(input_dict, emb):
    """(the trained tower over the item tower's z, its training history), or None without the input."""
    towers = input_dict.get("context_tower") or []
    if not towers:
        return None
    uri = artifact_utils.get_single_uri(towers)
    return tower_train.load_tower(uri, emb), tower_train.load_history(uri)


class PinSageEvaluator(base_component.BaseComponent):
    """graph + trained model (+ item features, + the context tower) -> report.json / report.md / plots, and the
    model's blessing (with the tower given, the tower's own blessing too)."""

    SPEC_CLASS = PinSageEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        graph,
        model,
        examples,
        transform_graph,
        dataset: str,
        graph_schema: str,
        max_contexts: int = 0,
        blessing: BlessingConfig = BLESSING,
        context_tower=None,
    ):
        super().__init__(
            spec=PinSageEvaluatorSpec(
                graph=graph,
                context_tower=context_tower,
                model=model,
                examples=examples,
                transform_graph=transform_graph,
                dataset=dataset,
                graph_schema=graph_schema,
                max_contexts=max_contexts,
                report=types.Channel(type=artifacts.EvaluationReport),
                blessing=types.Channel(type=standard_artifacts.ModelBlessing),
                **exec_properties(blessing),
            )
        )
