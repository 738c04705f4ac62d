"""Every default of the pipeline, in one place: the components, the wiring (pipeline.py), the CLI and the docs read
them from here (tests/pipeline/test_configs.py checks that the CLI's defaults equal these). Model and training
defaults are modules.model.PinSageHParams; serving defaults are serving.flags.ServingConfig; index defaults are
modules.index's (the layers below the pipeline own their own defaults).

Why these values (the measurements behind them: docs/DESIGN.md):
- 200 walks per item: fewer leave many top-T slots decided by a single visit.
- top-10 neighbourhoods, source `auto`: which source ranks the next item better depends on the data, so a
  validation probe picks it per graph instead of a default tuned on one dataset (pipeline/sampling/probe.py).
- transition counts in memory (one scipy pass) below 5M interactions, the Beam transform from there: the Beam
  path's shuffles cost more on one machine, worth it once the pair counts near one worker's memory.
- ingest limits of 1 KiB per id and 64 KiB per feature cell (UTF-8 bytes): every later stage hashes, sorts and
  copies an id, and real ids are far shorter; a cell past 64 KiB is more likely a broken quote than a description.
- the context tower (HistoryConfig, ContextTowerConfig overrides): form `auto`, picked per graph by a validation probe
  of order-aware against order-free history scorers (pipeline/history/probe.py), for the same reason as the
  neighbourhood source; the probe and the per-epoch check score a seeded sample of validation contexts.
- hard negatives from a PPR rank window of 1-3 % of the catalogue (the paper's window, scaled), PPR run for at most
  5,000 query items (the rest sample from them), so that PairGen stays linear.

A run is configured by one RunConfig (below): `pinsage run`, the TFX CLI runner and the Kubeflow compiler build it
from the same flags (pipeline/run_options.py), so the runners accept the same options and refuse the same mistakes.
"""

from __future__ import annotations

import dataclasses
import math

STAGES = ("graph", "transform", "sampling", "evaluation")  # `--stop-after` points
NEIGHBORHOOD_SOURCES = ("random_walk", "transitions", "mixed")  # the tables pipeline/sampling/transitions.py builds
SOURCE_CHOICES = ("auto",) + NEIGHBORHOOD_SOURCES  # auto: the validation probe picks one (pipeline/sampling/probe.py)
PROBE_CANDIDATES = ("random_walk", "transitions")  # what `auto` compares; a tie keeps the first (the paper's walks)
WALK_STRATEGIES = ("in_memory", "join")
EMBED_STRATEGIES = ("auto", "beam", "in_memory")
UNORDERED = "-unordered"  # `ml-1m-unordered` = ml-1m with each context's order shuffled by seed 0 (--shuffle-order)
DATASETS = ("ml-100k", "ml-1m", "synthetic", "ml-100k" + UNORDERED, "ml-1m" + UNORDERED)  # pipeline/data/datasets.py
SYNTHETIC_DEFAULTS = {"num_items": 10_000, "num_contexts": 5_000, "num_edges": 200_000}  # `--dataset synthetic`


@dataclasses.dataclass(frozen=True)
class IngestLimits:
    """Ingest: per-cell size limits in UTF-8 bytes. A row whose context or item id is longer is dropped and counted;
    a longer feature cell is blanked and counted. Overridden per dataset (`limits:` in dataset.yaml) or per run
    (`pinsage run --max-id-length/--max-cell-length`)."""

    max_id_length: int = 1024
    max_cell_length: int = 65536


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


BLESSING_METRICS = ("hr@10", "mrr", "ndcg@10")  # the metrics with a per-context value to pair (modules/evaluation.py)
# "more like this" is the paper's use of the embedding, measured there against content features alone; the
# next-item counters (co-occurrence, transitions) compete with related_items and are reported beside it, not gated
SIMILARITY_BASELINES = ("features_only",)


@dataclasses.dataclass(frozen=True)
class BlessingConfig:
    """The Evaluator's blessing (pipeline/evaluation/blessing.py), which the Pusher needs before it pushes: per
    served signature, the model must not be behind the best of that signature's baselines on `metric` (a paired
    difference more than `z` standard errors below zero, on the test split)."""

    metric: str = "hr@10"  # BLESSING_METRICS: the headline metric, whether the next item is in the top 10
    z: float = 2.0  # a trailing model is "behind" only past z paired SEs, so noise alone rarely refuses a model
    related_items: tuple[str, ...] | None = None  # None: every baseline in the report competes for "what next"
    similar_items: tuple[str, ...] = SIMILARITY_BASELINES  # "more like this" against the content-only ranking
    push_unblessed: bool = False  # a refused model is not served unless the run explicitly overrides the blessing

    def baselines(self) -> dict:
        """{signature: its baselines' names, or None for every baseline in the report}."""
        return {"related_items": self.related_items, "similar_items": self.similar_items}


INGEST = IngestLimits()
SAMPLING = SamplingConfig()
PAIRS = PairConfig()
EMBED = EmbedConfig()
PUSH = PushConfig()
BLESSING = BlessingConfig()


@dataclasses.dataclass(frozen=True)
class HistoryConfig:
    """The context tower's stage (ContextTowerTrainer) and the evaluator's history queries. The tower's own shape
    and training are modules.context_tower.ContextTowerConfig (overridden by RunConfig.context_tower)."""

    enabled: bool = True  # `--no-context-tower` leaves the stage and the history section out
    # validation contexts the form probe and the per-epoch check score (a seeded sample; 0 = all): as the
    # neighbourhood probe, enough for a standard error near 0.005 on HR@10 and cheap beside an epoch
    probe_contexts: int = 10_000
    # ContextEmbedder: contexts per tower call, one [B, max_len] batch (modules/context_tower.query_vectors' size)
    context_batch_size: int = 1024


HISTORY = HistoryConfig()

# the item-cold-start evaluation's hold-out (pipeline/evaluation/cold_start.py): a seeded random sample works on any
# data, the newest by first interaction needs meaningful timestamps
HOLD_OUT_BY = ("random", "newest")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What one run is configured by, whichever runner starts it; checked when made (ValueError naming the
    option). Where its output goes is the runner's own (OUT/, or the Kubeflow pipeline root)."""

    dataset: str | None = None  # a bundled dataset (DATASETS), or
    data_dir: str | None = None  # a directory in the CSV contract
    shuffle_seed: int | None = None  # the order-free check (--shuffle-order), bundled datasets only
    stop_after: str | None = None  # one of STAGES: build only a prefix of the pipeline
    hparams: dict = dataclasses.field(default_factory=dict)  # overrides of modules.model.PinSageHParams
    eval_contexts: int | None = None  # the evaluator's context sample per split (None: every context)
    ablations: tuple[str, ...] = ()  # modules.model.ABLATIONS variants also trained and reported
    sampling: SamplingConfig = SAMPLING
    pairs: PairConfig = PAIRS
    embed: EmbedConfig = EMBED
    push: PushConfig = PUSH
    blessing: BlessingConfig = BLESSING
    context_tower: dict = dataclasses.field(default_factory=dict)  # overrides of ContextTowerConfig
    history: HistoryConfig = HISTORY
    ingest_limits: dict = dataclasses.field(default_factory=dict)  # IngestLimits overrides (else dataset.yaml's)
    beam_args: tuple[str, ...] = ()  # Beam pipeline options of the Beam components
    enable_cache: bool = True  # the TFX execution cache

    def __post_init__(self):
        object.__setattr__(self, "ablations", tuple(self.ablations or ()))
        object.__setattr__(self, "beam_args", tuple(self.beam_args or ()))
        object.__setattr__(self, "hparams", check_hparams(dict(self.hparams or {})))
        object.__setattr__(self, "ingest_limits", _check_limits(self.ingest_limits))
        object.__setattr__(self, "context_tower", check_context_tower(dict(self.context_tower or {})))
        _check_choice("--stop-after", self.stop_after, (None,) + STAGES)
        _check_choice("--walk-strategy", self.sampling.strategy, WALK_STRATEGIES)
        _check_choice("--neighborhood-source", self.sampling.neighborhood_source, SOURCE_CHOICES)
        _check_choice("--embed-strategy", self.embed.strategy, EMBED_STRATEGIES)
        _check_choice("--blessing-metric", self.blessing.metric, BLESSING_METRICS)
        if not (isinstance(self.blessing.z, (int, float)) and math.isfinite(self.blessing.z) and self.blessing.z >= 0):
            raise ValueError(f"the blessing's z must be a number >= 0, got {self.blessing.z!r}")
        if self.dataset is not None and self.data_dir is not None:
            raise ValueError("give exactly one of --dataset or --data-dir")
        if self.shuffle_seed is not None and self.data_dir is not None:
            raise ValueError(
                "--shuffle-order applies to a bundled --dataset (shuffle a --data-dir's timestamps yourself)"
            )
        if self.ablations:
            from modules.model import ABLATIONS

            unknown = sorted(set(self.ablations) - set(ABLATIONS))
            if unknown:
                raise ValueError(f"unknown ablation(s) {unknown}; known: {sorted(ABLATIONS)}")


def _check_choice(flag: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{flag} must be one of {[c for c in choices if c is not None]}, got {value!r}")


def _check_limits(limits: dict | None) -> dict:
    """The given IngestLimits overrides, None values dropped (the dataset's or the default limit applies); ingest
    checks the values (pipeline/data/ingest.resolve_limits)."""
    return {k: v for k, v in (limits or {}).items() if v is not None}


def check_hparams(hparams: dict) -> dict:
    """`hparams` if every override names a modules.model.PinSageHParams field with a value of the default's type;
    else a ValueError naming the key (a string where the default is a number would otherwise fail deep inside the
    Trainer, as a traceback, on whichever machine runs it)."""
    from modules.model import PinSageHParams

    fields = {f.name: f.default for f in dataclasses.fields(PinSageHParams)}
    nullable = {f.name for f in dataclasses.fields(PinSageHParams) if type(None) in getattr(f.type, "__args__", ())}
    unknown = sorted(set(hparams) - set(fields))
    if unknown:
        raise ValueError(f"--hparams: unknown name(s) {unknown}; known: {sorted(fields)}")
    for k, v in hparams.items():
        d = fields[k]
        if v is None:  # null: only where the field is Optional (similarity_weight: chosen on validation)
            ok = k in nullable
        elif d is None:  # Optional[int] fields: an integer or null
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif isinstance(d, bool):
            ok = isinstance(v, bool)
        elif isinstance(d, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        else:
            ok = isinstance(v, type(d)) and not isinstance(v, bool)
        if not ok:
            raise ValueError(f"--hparams: {k} is {v!r}; expected a value like the default {d!r}")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
            raise ValueError(f"--hparams: {k} is {v!r}; expected a value >= 0")
    PinSageHParams.from_dict(hparams)  # its own cross-field checks (ValueError)
    return hparams


def check_context_tower(overrides: dict) -> dict:
    """`overrides` if they make a valid modules.context_tower.ContextTowerConfig (an unknown key or a bad value:
    a ValueError naming it, before any data is read)."""
    if not overrides:
        return overrides  # nothing to check: TensorFlow (which the tower module imports) stays unloaded
    from modules.context_tower import ContextTowerConfig

    try:
        ContextTowerConfig.from_dict(overrides)
    except (ValueError, TypeError) as e:
        raise ValueError(f"--context-tower-hparams: {e}") from None
    return overrides
