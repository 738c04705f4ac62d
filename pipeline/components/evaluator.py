"""PinSageEvaluator (custom TFX component): the fixed protocol of DESIGN.md over the trained model and the
baselines, in one report (report.json, report.md, plots).

TFX's stock Evaluator (TFMA) scores per-example predictions against labels; this protocol ranks the whole
catalogue per context with the context's seen items masked, which TFMA does not express, hence a component of its
own around pipeline/evaluation.py. Models in the report: `pinsage` (the trained model's item embeddings, dot
product), `popularity`, `cooccurrence_knn`, `transition_counts` (window 3) and `features_only` (cosine of the
Transform-ed item features with no graph and no training).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipeline import artifacts, evaluation, graph_io, report as report_lib

# The trainer's model artifact layout (modules/trainer.py) is the one source of these names.
from modules.trainer import (
    ABLATIONS_DIR,
    EMBEDDINGS_FILE,
    HISTORY_FILE,  # noqa: E402
    QUERY_EMBEDDINGS_FILE,
)

ABLATION_PREFIX = "ablation:"  # model names of the ablation rows in report.json


def load_model_embeddings(model_uri: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(embeddings, query embeddings or None, {ablation name: (embeddings, query embeddings or None)})."""

    def load(d):
        q = os.path.join(d, QUERY_EMBEDDINGS_FILE)
        return np.load(os.path.join(d, EMBEDDINGS_FILE)), (np.load(q) if os.path.exists(q) else None)

    emb, query = load(model_uri)
    root = os.path.join(model_uri, ABLATIONS_DIR)
    names = sorted(os.listdir(root)) if os.path.isdir(root) else []
    return (
        emb,
        query,
        {n: load(os.path.join(root, n)) for n in names if os.path.exists(os.path.join(root, n, EMBEDDINGS_FILE))},
    )


def features_only_embeddings(features: dict, text_buckets: int = 256) -> np.ndarray:
    """Item vectors from features alone: the float features concatenated (z-scored numerics, multi-hots, log
    degree) plus each text feature's token ids hashed into `text_buckets` counts; rows L2-normalised per block so
    that no block dominates the cosine."""
    import tensorflow as tf

    blocks = []
    for name, x in sorted(features.items()):
        if name == "node_id":
            continue
        if isinstance(x, tf.RaggedTensor):
            rows = x.value_rowids().numpy()
            cols = (x.flat_values.numpy() % text_buckets).astype(np.int64)
            b = np.zeros((x.nrows().numpy(), text_buckets), np.float32)
            np.add.at(b, (rows, cols), 1.0)
        else:
            b = np.asarray(x, np.float32).reshape(len(x), -1)
        norm = np.linalg.norm(b, axis=1, keepdims=True)
        blocks.append(b / np.maximum(norm, 1e-12))
    return np.concatenate(blocks, axis=1)


def colour_labels(features: dict, transform_graph_uri: str) -> tuple[np.ndarray, list[str], str]:
    """The first categorical multi-hot feature's first value per item (e.g. a movie's first genre)."""
    names = sorted(n for n in features if n.endswith("_multi_hot"))
    if not names:
        return np.full(len(features["node_id"]), -1), [], ""
    mh = np.asarray(features[names[0]])
    col = names[0][: -len("_multi_hot")]
    vocab_path = os.path.join(transform_graph_uri, "transform_fn", "assets", f"{col}_vocab")
    vocab = open(vocab_path).read().splitlines() if os.path.exists(vocab_path) else []
    vocab = vocab + ["<oov>"] * (mh.shape[1] - len(vocab))
    labels = np.where(mh.any(1), mh.argmax(1), -1)
    return labels, vocab, col


def evaluate_all(
    graph: graph_io.Graph,
    emb: np.ndarray | None,
    features: dict | None,
    query_emb: np.ndarray | None = None,
    ablations: dict | None = None,
    max_contexts: int | None = None,
) -> tuple[dict, dict]:
    """Test and validation metrics of every model: the baselines, `pinsage` (query vectors `query_emb` when
    the model has a query head) and each ablation {name: (emb, query_emb or None)} as `ablation:<name>`.
    `max_contexts`: evaluation.build_queries' context sample (each split's metrics then carry `num_contexts`
    evaluated and `total_contexts`)."""
    scorers = dict(evaluation.baseline_scorers(graph))
    if features is not None:
        scorers["features_only"] = evaluation.EmbeddingScorer(features_only_embeddings(features), "cosine")
    if emb is not None:
        scorers["pinsage"] = evaluation.EmbeddingScorer(emb, query_emb=query_emb)
    for name, (e, q) in sorted((ablations or {}).items()):
        scorers[ABLATION_PREFIX + name] = evaluation.EmbeddingScorer(e, query_emb=q)
    out = {}
    for split in ("test", "validation"):
        q = evaluation.build_queries(graph, split, max_contexts=max_contexts)
        out[split] = {
            name: dict(evaluation.metrics_from_ranks(evaluation.ranks(s, q)), total_contexts=q.total_contexts)
            for name, s in scorers.items()
        }
    return out["test"], out["validation"]


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
        from modules import features as features_lib

        t0 = time.time()
        out = artifact_utils.get_single_uri(output_dict["report"])
        model_uri = artifact_utils.get_single_uri(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        split = artifact_utils.decode_split_names(examples.split_names)[0]
        graph = graph_io.load_graph(artifact_utils.get_single_uri(input_dict["graph"]))
        feats = features_lib.load_item_features(
            artifact_utils.get_split_uri([examples], split), exec_properties["graph_schema"]
        )
        emb, query_emb, ablations = load_model_embeddings(model_uri)
        with open(os.path.join(model_uri, HISTORY_FILE)) as f:
            history = json.load(f)
        max_contexts = int(exec_properties.get("max_contexts") or 0) or None
        test, val = evaluate_all(graph, emb, feats, query_emb, ablations, max_contexts)
        t_eval = time.time() - t0

        plots = {}
        os.makedirs(os.path.join(out, "plots"), exist_ok=True)
        report_lib.plot_training_curves(history, os.path.join(out, "plots", "training.png"))
        plots["training curves"] = "plots/training.png"
        cos = {
            "pinsage": report_lib.pairwise_cosines(emb),
            "features_only": report_lib.pairwise_cosines(features_only_embeddings(feats)),
        }
        report_lib.plot_cosine_distribution(cos, os.path.join(out, "plots", "cosine_similarity.png"))
        plots["cosine similarity distribution"] = "plots/cosine_similarity.png"
        labels, names, col = colour_labels(feats, artifact_utils.get_single_uri(input_dict["transform_graph"]))
        if names:
            report_lib.plot_embedding_map(emb, labels, names, os.path.join(out, "plots", "embedding_map.png"))
            plots[f"embedding map coloured by {col}"] = "plots/embedding_map.png"
        abl = {
            name[len(ABLATION_PREFIX) :]: {"metrics": test.pop(name), "validation_metrics": val.pop(name)}
            for name in sorted(test)
            if name.startswith(ABLATION_PREFIX)
        }
        report = {
            "dataset": exec_properties["dataset"],
            "protocol": report_lib.PROTOCOL,
            "metrics": test,
            "validation_metrics": val,
            **(
                {"ablations": abl, "ablations_vs_paper": report_lib.ablations_vs_paper(test.get("pinsage"), abl)}
                if abl
                else {}
            ),
            "kurtosis": {k: report_lib.kurtosis(v) for k, v in cos.items()},
            "training": {
                k: history.get(k)
                for k in ("epoch", "loss", "val_hr@10", "pairs_per_second", "train_seconds", "hparams")
            },
            "plots": plots,
            "timings": {
                "evaluation": t_eval,
                "plots": time.time() - t0 - t_eval,
                "training": float(history.get("train_seconds", 0.0)),
            },
        }
        report_lib.write(report, out)


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
