"""Every default of the pipeline, in one place: the components, the wiring (pipeline.py), the CLI and the docs read
them from here (tests/pipeline/test_configs.py checks that the CLI's defaults equal these). Model and training
defaults are modules.model.PinSageHParams; serving defaults are serving.flags.ServingConfig; index defaults are
modules.index's (the layers below the pipeline own their own defaults).

Why these values (measurements in BUILD_NOTES.md and bench/QUALITY.md):
- 200 walks per item: at 50 walks half of the top-20 slots have a visit count of 1; 200 leave 0.5 %.
- top-10 neighbourhoods, source `auto`: which source ranks the next item better depends on the data (how much
  the order carries, how sparse the co-engagements are), so a validation probe picks it per graph instead of a
  default tuned on MovieLens (pipeline/sampling/probe.py; the measurements in BUILD_NOTES.md).
- transition counts in memory (one scipy pass) below 5M interactions, the Beam transform from there: on the
  DirectRunner the Beam path's shuffles cost several times the scipy pass (BUILD_NOTES.md), worth it once the
  pair counts near one worker's memory.
- ingest limits of 1 KiB per id and 64 KiB per feature cell (UTF-8 bytes): an id is a key that every later stage
  hashes, sorts and copies (GraphGen's id tables, the neighbourhood and pair tables, the serving id map), so one
  huge id costs memory in each; real ids (integers, UUIDs, URLs, 'Title (Year)') are far shorter. 64 KiB holds a
  long product description (~10k words); past that a cell is more likely a broken quote swallowing the file.
- hard negatives from a PPR rank window of 1-3 % of the catalogue (the paper's 2000-5000 of millions, scaled),
  PPR run for at most 5,000 query items (the rest sample from them), so that PairGen stays linear.
"""

from __future__ import annotations

import dataclasses

STAGES = ("graph", "transform", "sampling", "evaluation")  # `--stop-after` points
NEIGHBORHOOD_SOURCES = ("random_walk", "transitions", "mixed")  # the tables pipeline/sampling/transitions.py builds
SOURCE_CHOICES = ("auto",) + NEIGHBORHOOD_SOURCES  # auto: the validation probe picks one (pipeline/sampling/probe.py)
PROBE_CANDIDATES = ("random_walk", "transitions")  # what `auto` compares; a tie keeps the first (the paper's walks)
WALK_STRATEGIES = ("in_memory", "join")
EMBED_STRATEGIES = ("auto", "beam", "in_memory")
UNORDERED = "-unordered"  # `ml-1m-unordered` = ml-1m with each context's order shuffled by seed 0 (--shuffle-order)
DATASETS = ("ml-100k", "ml-1m", "synthetic", "ml-100k" + UNORDERED, "ml-1m" + UNORDERED)  # pipeline/data/datasets.py


@dataclasses.dataclass(frozen=True)
class IngestLimits:
    """Ingest: per-cell size limits in UTF-8 bytes. A row whose context or item id is longer is dropped and counted;
    a longer feature cell is blanked and counted. Overridden per dataset (`limits:` in dataset.yaml) or per run
    (`pinsage run --max-id-length/--max-cell-length`)."""

    max_id_length: int = 1024
    max_cell_length: int = 65536


@dataclasses.dataclass(frozen=True)
class ProgressConfig:
    """pipeline/progress.py: loops that end within `delay_s` print nothing; longer ones draw a tqdm line on a
    terminal, or a plain line every `interval_s` into a log (CI: a line per 30 s shows life without flooding)."""

    enabled: bool = True
    delay_s: float = 5.0
    interval_s: float = 30.0


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """NeighborhoodSampler (importance neighbourhoods) and the pair window PairGen shares with it."""

    num_walks: int = 200  # walks per start item
    walk_length: int = 4  # max item -> context -> item traversals per walk
    restart_prob: float = 0.5  # chance a walk ends after each traversal
    top_t: int = 10  # neighbourhood size T (paper: 10 / 20 / 50)
    strategy: str = "in_memory"  # WALK_STRATEGIES: vectorised shards in memory, or the Beam join walk
    neighborhood_source: str = "auto"  # SOURCE_CHOICES
    probe_contexts: int = 10_000  # validation contexts the `auto` probe scores (a seeded sample; 0 = all)
    beam_min_interactions: int = 5_000_000  # transition counts as a Beam transform from this many interactions
    pair_window: int = 3  # positives: items within this many positions after the query
    seed: int = 0
    shard_size: int = 20_000  # start items per in-memory walk shard


@dataclasses.dataclass(frozen=True)
class PairConfig:
    """PairGen: positives and Personalized-PageRank hard negatives."""

    symmetric: bool = False  # also emit (i, q) for every positive (q, i)
    ppr_num_walks: int = 1000
    ppr_walk_length: int = 10
    ppr_restart_prob: float = 0.3
    negative_lo: float = 0.01  # PPR rank window of the hard negatives: a fraction of N (< 1) or a rank (>= 1)
    negative_hi: float = 0.03
    max_negatives: int = 100  # hard negatives kept per query
    shard_size: int = 5_000
    max_queries: int = 5_000  # PPR queries (ppr.select_queries); 0 = every query


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
    """BulkEmbedder: `auto` = in_memory on the in-process DirectRunner, beam on any other runner."""

    strategy: str = "auto"
    batch_size: int = 1024


@dataclasses.dataclass(frozen=True)
class PushConfig:
    model_name: str = "pinsage"
    keep: int = 3  # versions kept in serving_model/<name>/


INGEST = IngestLimits()
PROGRESS = ProgressConfig()
SAMPLING = SamplingConfig()
PAIRS = PairConfig()
EMBED = EmbedConfig()
PUSH = PushConfig()
