"""The evaluator's logic: every model and baseline under the fixed protocol (modules/evaluation.py) on both
splits, and the labels the embedding map is coloured by."""

from __future__ import annotations

import os
import time

import numpy as np

from modules import evaluation
from pipeline.evaluation import report as report_lib
from schema import graph as graph_io

ABLATION_PREFIX = "ablation:"  # model names of the ablation rows in report.json


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
        scorers["features_only"] = evaluation.EmbeddingScorer(evaluation.features_only_embeddings(features), "cosine")
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


def _plots(out: str, history: dict, emb: np.ndarray, cos: dict, feats: dict, transform_graph_uri: str) -> dict:
    """Training curves, the similarity distribution and the embedding map under out/plots; {caption: path}."""
    os.makedirs(os.path.join(out, "plots"), exist_ok=True)
    report_lib.plot_training_curves(history, os.path.join(out, "plots", "training.png"))
    plots = {"training curves": "plots/training.png"}
    report_lib.plot_cosine_distribution(cos, os.path.join(out, "plots", "cosine_similarity.png"))
    plots["cosine similarity distribution"] = "plots/cosine_similarity.png"
    labels, names, col = colour_labels(feats, transform_graph_uri)
    if names:
        report_lib.plot_embedding_map(emb, labels, names, os.path.join(out, "plots", "embedding_map.png"))
        plots[f"embedding map coloured by {col}"] = "plots/embedding_map.png"
    return plots


def evaluation_report(
    graph: graph_io.Graph,
    model_embeddings: tuple,
    feats: dict,
    history: dict,
    *,
    transform_graph_uri: str,
    out_dir: str,
    dataset: str,
    max_contexts: int | None = None,
) -> dict:
    """report.json's content for a trained model: `model_embeddings` = (emb, query_emb or None, {ablation name:
    (emb, query_emb)}) as modules.trainer.load_model_embeddings returns them; plots are written under out_dir."""
    emb, query_emb, ablations = model_embeddings
    t0 = time.time()
    test, val = evaluate_all(graph, emb, feats, query_emb, ablations, max_contexts)
    t_eval = time.time() - t0
    cos = {
        "pinsage": report_lib.pairwise_cosines(emb),
        "features_only": report_lib.pairwise_cosines(evaluation.features_only_embeddings(feats)),
    }
    plots = _plots(out_dir, history, emb, cos, feats, transform_graph_uri)
    abl = {
        name[len(ABLATION_PREFIX) :]: {"metrics": test.pop(name), "validation_metrics": val.pop(name)}
        for name in sorted(test)
        if name.startswith(ABLATION_PREFIX)
    }
    return {
        "dataset": dataset,
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
            k: history.get(k) for k in ("epoch", "loss", "val_hr@10", "pairs_per_second", "train_seconds", "hparams")
        },
        "plots": plots,
        "timings": {
            "evaluation": t_eval,
            "plots": time.time() - t0 - t_eval,
            "training": float(history.get("train_seconds", 0.0)),
        },
    }
