"""Typed TFX artifacts that flow between PinSage's custom components (see graph_io.py for the Graph layout)."""
from tfx.types import artifact
from tfx.types import standard_artifacts  # noqa: F401  (registers the standard types first)


class PinSageGraph(artifact.Artifact):
    """Bipartite interaction graph with contiguous int ids and the temporal split (pipeline/graph_io.py)."""
    TYPE_NAME = "PinSageGraph"


class Neighborhoods(artifact.Artifact):
    """Per item, the top-T items by random-walk visit count and their L1-normalised weights."""
    TYPE_NAME = "PinSageNeighborhoods"


class TrainingPairs(artifact.Artifact):
    """Positive (query, item) pairs from co-engagement plus Personalized-PageRank hard-negative pools."""
    TYPE_NAME = "PinSageTrainingPairs"


class DataReport(artifact.Artifact):
    """Counts of every bad input row/cell found and what was done with it (JSON)."""
    TYPE_NAME = "PinSageDataReport"
