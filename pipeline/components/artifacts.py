"""Typed TFX artifacts that flow between PinSage's custom components (see graph_io.py for the Graph layout)."""

from tfx.types import (
    artifact,
    standard_artifacts,  # noqa: F401  (registers the standard types first)
)


class PinSageGraph(artifact.Artifact):
    """Bipartite interaction graph with contiguous int ids and the temporal split (schema/graph.py)."""

    TYPE_NAME = "pinsage.Graph"


class Neighborhoods(artifact.Artifact):
    """Per item, the top-T items by random-walk visit count and their L1-normalised weights."""

    TYPE_NAME = "pinsage.Neighborhoods"


class TrainingPairs(artifact.Artifact):
    """Positive (query, item) pairs from co-engagement plus Personalized-PageRank hard-negative pools."""

    TYPE_NAME = "pinsage.TrainingPairs"


class EvaluationReport(artifact.Artifact):
    """report.json + report.md + plots/ of the fixed evaluation protocol (pipeline/components/evaluator.py)."""

    TYPE_NAME = "pinsage.EvaluationReport"


class Embeddings(artifact.Artifact):
    """One vector per item: embeddings.npy (float32 [N, d], L2-normalised rows, node-id order) + item_ids.txt
    (source ids, one per line, same order) + optional titles.txt (modules/index.py)."""

    TYPE_NAME = "pinsage.Embeddings"


class Index(artifact.Artifact):
    """A serialized ScaNN searcher + id map (+ titles) + index_stats.json (modules/index.py)."""

    TYPE_NAME = "pinsage.Index"


class ContextVectors(artifact.Artifact):
    """A query vector u_c per known context and its history, in schema/versions.py's context layout
    (pipeline/history/context_vectors.py)."""

    TYPE_NAME = "pinsage.ContextVectors"
