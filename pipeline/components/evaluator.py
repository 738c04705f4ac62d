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
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from modules import features as features_lib
from modules.trainer import HISTORY_FILE, load_model_embeddings
from pipeline.components import artifacts
from pipeline.evaluation import evaluate
from pipeline.evaluation import report as report_lib
from schema import files
from schema import graph as graph_io


class PinSageEvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        "dataset": ExecutionParameter(type=str),
        "graph_schema": ExecutionParameter(type=str),
        "max_contexts": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        "graph": ChannelParameter(type=artifacts.PinSageGraph),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
    }
    OUTPUTS = {"report": ChannelParameter(type=artifacts.EvaluationReport)}


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
        report = evaluate.evaluation_report(
            graph,
            load_model_embeddings(model_uri),
            feats,
            history,
            transform_graph_uri=artifact_utils.get_single_uri(input_dict["transform_graph"]),
            out_dir=artifact_utils.get_single_uri(output_dict["report"]),
            dataset=exec_properties["dataset"],
            max_contexts=int(exec_properties.get("max_contexts") or 0) or None,
        )
        report_lib.write(report, artifact_utils.get_single_uri(output_dict["report"]))


class PinSageEvaluator(base_component.BaseComponent):
    """graph + trained model (+ item features) -> report.json / report.md / plots."""

    SPEC_CLASS = PinSageEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, graph, model, examples, transform_graph, dataset: str, graph_schema: str, max_contexts: int = 0):
        super().__init__(
            spec=PinSageEvaluatorSpec(
                graph=graph,
                model=model,
                examples=examples,
                transform_graph=transform_graph,
                dataset=dataset,
                graph_schema=graph_schema,
                max_contexts=max_contexts,
                report=types.Channel(type=artifacts.EvaluationReport),
            )
        )
