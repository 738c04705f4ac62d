"""NeighborhoodSampler: graph -> per-item importance neighbourhoods (top-T by random-walk visits, or by sequential
transition counts), a Beam TFX component.

`source` picks what "importance" means (pipeline/sampling/transitions.py):
- 'auto' (default): builds both candidate tables (random walks, transition counts) and keeps the one that ranks
  the validation items better (pipeline/sampling/probe.py); the choice and both probe scores are written next to
  the table (source_probe.json, and the loser under candidates/) and printed.
- 'random_walk': top-T by random-walk visit counts (PinSage §3.2), with one of the strategies below.
- 'transitions': top-T by symmetric window-`window` transition counts of the train histories (the sequential
  co-engagement the transition-counts baseline scores by), L1-normalised. In one process with scipy.sparse below
  `beam_min_interactions` interactions (the fast path), else as a Beam transform (beam_transitions.py): a
  group-by over contexts, a per-pair sum and a top-T per item, equal to the in-memory table.
- 'mixed': top-T of the average of the two L1-normalised distributions, in one process.

Two walk strategies, one output (schema/neighborhoods.py):
- 'in_memory': a PCollection of start-item shards; each worker loads the train CSR once (DoFn.setup) and walks
  its shards vectorised (random_walks.py). Seeds follow the shard index, so the output is the same on any
  number of workers and equals random_walks.sample_neighborhoods(adj, params, shard_size).
- 'join': walkers joined with adjacency lists one half-step per CoGroupByKey (beam_walks.py), for graphs that
  do not fit one worker; `shard_size` then sets the partition size (P = ceil(N / shard_size)), as it does for
  the Beam transition counts.

    sampler = NeighborhoodSampler(graph=graph_gen.outputs['graph'], config=dataclasses.replace(SAMPLING, top_t=20))
    sampler.outputs['neighborhoods']

The SamplingConfig (pipeline/configs.py) becomes the spec's parameters in `exec_properties`, one typed parameter
per field: TFX caches on them, and the executor reads them as it always has.
"""

from __future__ import annotations

import dataclasses
import math
import time

import apache_beam as beam
from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipeline.components import artifacts
from pipeline.configs import PROBE_CANDIDATES, SAMPLING, SOURCE_CHOICES, WALK_STRATEGIES, SamplingConfig
from pipeline.sampling import beam_transitions, beam_walks, probe
from pipeline.sampling import random_walks as rw
from pipeline.sampling import transitions as sn
from schema import files
from schema import graph as graph_io
from schema import neighborhoods as neighborhood_io

STRATEGIES = WALK_STRATEGIES
SOURCES = SOURCE_CHOICES
PROBE_FILE = "source_probe.json"
CANDIDATES_DIR = "candidates"


class NeighborhoodSamplerSpec(ComponentSpec):
    PARAMETERS = {
        "num_walks": ExecutionParameter(type=int),
        "walk_length": ExecutionParameter(type=int),
        "restart_prob": ExecutionParameter(type=float),
        "top_t": ExecutionParameter(type=int),
        "seed": ExecutionParameter(type=int),
        "strategy": ExecutionParameter(type=str),
        "shard_size": ExecutionParameter(type=int),
        "source": ExecutionParameter(type=str, optional=True),
        "window": ExecutionParameter(type=int, optional=True),
        "probe_contexts": ExecutionParameter(type=int, optional=True),
        "beam_min_interactions": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {"graph": ChannelParameter(type=artifacts.PinSageGraph)}
    OUTPUTS = {"neighborhoods": ChannelParameter(type=artifacts.Neighborhoods)}


def finish_stats(path: str, finalize=lambda s: s, **extra) -> dict:
    """Derives ratios from the merged counters and adds what only the executor knows (parameters, time)."""
    stats = finalize(files.read_json(path))
    stats.update(extra)
    files.write_json(path, stats, indent=1, sort_keys=True)
    return stats


def num_rows(graph_uri: str, table: str) -> int:
    """Row count of a graph table from the Parquet footers (reads no data)."""
    return sum(_parquet_rows(f) for f in graph_io.table_files(graph_uri, table))


def _parquet_rows(path: str) -> int:

    return files.parquet_file(path).metadata.num_rows


@dataclasses.dataclass(frozen=True)
class _Props:
    """The executor's parameters, parsed and checked once."""

    params: rw.WalkParams
    strategy: str
    shard_size: int
    source: str
    window: int
    probe_contexts: int
    beam_min_interactions: int

    @classmethod
    def parse(cls, p: dict) -> "_Props":
        out = cls(
            params=rw.WalkParams(
                num_walks=int(p["num_walks"]),
                walk_length=int(p["walk_length"]),
                restart_prob=float(p["restart_prob"]),
                top_t=int(p["top_t"]),
                seed=int(p["seed"]),
            ),
            strategy=p["strategy"],
            shard_size=int(p["shard_size"]),
            source=p.get("source") or "random_walk",  # artifacts of older runs had no `source`
            window=int(p.get("window") or SAMPLING.pair_window),
            probe_contexts=int(p.get("probe_contexts", SAMPLING.probe_contexts) or 0),
            beam_min_interactions=int(p.get("beam_min_interactions", SAMPLING.beam_min_interactions) or 0),
        )
        if out.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {out.strategy!r}")
        if out.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {out.source!r}")
        return out


class Executor(base_beam_executor.BaseBeamExecutor):
    """Writes neighborhoods-*.parquet + neighborhood_stats.json of the source (for `auto`: the probe's choice,
    plus source_probe.json and the other candidate under candidates/)."""

    def Do(self, input_dict, output_dict, exec_properties):
        graph_uri = artifact_utils.get_single_uri(input_dict["graph"])
        out_uri = artifact_utils.get_single_uri(output_dict["neighborhoods"])
        props = _Props.parse(exec_properties)
        if props.source != "auto":
            self._write_source(props.source, graph_uri, out_uri, props)
            return
        start = time.time()
        dirs = {c: files.join(out_uri, CANDIDATES_DIR, c) for c in PROBE_CANDIDATES}
        cand_stats = {c: self._write_source(c, graph_uri, d, props) for c, d in dirs.items()}
        queries = probe.queries_from_uri(graph_uri, props.probe_contexts, props.params.seed)
        scores = {c: probe.score(neighborhood_io.load_neighborhoods(d)[0], queries) for c, d in dirs.items()}
        chosen = probe.choose(scores)
        for f in files.glob(files.join(dirs[chosen], "*")):
            files.rename(f, files.join(out_uri, f.rstrip("/").rsplit("/", 1)[-1]))
        files.rmtree(dirs[chosen])
        record = {
            "chosen": chosen,
            "rule": "highest validation MRR, then HR@T; a tie keeps random_walk (pipeline/sampling/probe.py)",
            "scores": scores,
            "candidate_seconds": {c: s["seconds"] for c, s in cand_stats.items()},
            "probe_contexts": props.probe_contexts,
        }
        files.write_json(files.join(out_uri, PROBE_FILE), record, indent=1, sort_keys=True)
        line = ", ".join(f"{c} MRR {s['mrr']:.4f} HR@{s['top_t']} {s['hr_at_t']:.4f}" for c, s in scores.items())
        print(f"[pinsage] neighbourhood source probe on {len(queries)} validation contexts: {line} -> {chosen}")
        finish_stats(
            files.join(out_uri, neighborhood_io.STATS_FILE),
            source=chosen,
            source_requested="auto",
            probe=record,
            seconds=time.time() - start,
        )

    def _write_source(self, source: str, graph_uri: str, out_uri: str, props: _Props) -> dict:
        """One source's table and stats into `out_uri`; returns the stats."""
        start = time.time()
        strategy = props.strategy
        if source == "random_walk":
            self._write_walks(graph_uri, out_uri, props)
        elif source == "transitions" and num_rows(graph_uri, graph_io.INTERACTIONS) >= props.beam_min_interactions:
            strategy = "beam"
            self._write_beam_transitions(graph_uri, out_uri, props)
        else:
            strategy = "in_process"
            self._write_sequence_neighborhoods(graph_uri, out_uri, source, props)
        return finish_stats(
            files.join(out_uri, neighborhood_io.STATS_FILE),
            rw.finalize_stats,
            seconds=time.time() - start,
            strategy=strategy,
            source=source,
            window=props.window,
            shard_size=props.shard_size,
            **dataclasses.asdict(props.params),
        )

    def _write_walks(self, graph_uri: str, out_uri: str, props: _Props) -> None:
        n = num_rows(graph_uri, graph_io.ITEMS)
        with self._make_beam_pipeline() as p:
            if props.strategy == "in_memory":
                shards = (
                    p
                    | "Shards" >> beam.Create(rw.chunks(n, props.shard_size))
                    | "Spread" >> beam.Reshuffle()
                    | "Walk" >> beam.ParDo(beam_walks.WalkShard(graph_uri, props.params))
                )
            else:
                edges = (
                    p
                    | "ReadEdges"
                    >> beam.io.ReadFromParquetBatched(
                        files.join(graph_uri, f"{graph_io.INTERACTIONS}-*.parquet"),
                        columns=["context_index", "node_id", "split"],
                    )
                    | "TrainEdges" >> beam.FlatMap(beam_walks.train_edge_batches)
                )
                shards = beam_walks.walk_neighborhoods(
                    edges,
                    n,
                    num_rows(graph_uri, graph_io.CONTEXTS),
                    props.params,
                    num_partitions=math.ceil(n / props.shard_size),
                )
            _write_shards(shards, out_uri)

    def _write_beam_transitions(self, graph_uri: str, out_uri: str, props: _Props) -> None:
        n = num_rows(graph_uri, graph_io.ITEMS)
        with self._make_beam_pipeline() as p:
            edges = (
                p
                | "ReadEdges"
                >> beam.io.ReadFromParquetBatched(
                    files.join(graph_uri, f"{graph_io.INTERACTIONS}-*.parquet"),
                    columns=["context_index", "node_id", "position", "split"],
                )
                | "TrainEdges" >> beam.FlatMap(beam_transitions.train_position_batches)
            )
            items = p | "ReadItems" >> beam.io.ReadFromParquetBatched(
                files.join(graph_uri, f"{graph_io.ITEMS}-*.parquet"), columns=["node_id", "train_degree"]
            )
            shards = beam_transitions.transition_neighborhoods(
                edges, items, n, props.params.top_t, props.window, num_partitions=math.ceil(n / props.shard_size)
            )
            _write_shards(shards, out_uri)

    @staticmethod
    def _write_sequence_neighborhoods(graph_uri, out_uri, source, props: _Props):

        graph = graph_io.load_graph(graph_uri)
        nbr, w, cnt = sn.neighborhoods_from_graph(
            graph, source, props.params, window=props.window, shard_size=props.shard_size
        )
        neighborhood_io.write_neighborhoods(out_uri, nbr, w)
        isolated = int((graph.train_degree == 0).sum())
        files.write_json(files.join(out_uri, neighborhood_io.STATS_FILE), rw.chunk_stats(nbr, cnt, isolated))


def _write_shards(shards, out_uri: str) -> None:
    """(node ids, nbr, counts, isolated[, extra counters]) shards -> the table's Parquet files and merged stats."""
    _ = (
        shards
        | "ToTable" >> beam.Map(beam_walks.shard_table)
        | "Write"
        >> beam.io.WriteToParquetBatched(
            files.join(out_uri, neighborhood_io.TABLE), schema=neighborhood_io.schema(), file_name_suffix=".parquet"
        )
    )
    beam_walks.write_stats(
        shards | "ShardStats" >> beam.Map(beam_walks.shard_stats), files.join(out_uri, neighborhood_io.STATS_FILE)
    )


class NeighborhoodSampler(base_beam_component.BaseBeamComponent):
    """graph (PinSageGraph) -> neighborhoods (Neighborhoods); see the module docstring."""

    SPEC_CLASS = NeighborhoodSamplerSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, graph: types.BaseChannel, config: SamplingConfig = SAMPLING):
        super().__init__(spec=NeighborhoodSamplerSpec(graph=graph, **exec_properties(config)))


def exec_properties(cfg: SamplingConfig) -> dict:
    """The component's parameters from its config (what the TFX cache keys on), checked; with the output channel."""
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {cfg.strategy!r}")
    if cfg.neighborhood_source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {cfg.neighborhood_source!r}")
    return dict(
        neighborhoods=types.Channel(type=artifacts.Neighborhoods),
        num_walks=cfg.num_walks,
        walk_length=cfg.walk_length,
        restart_prob=float(cfg.restart_prob),
        top_t=cfg.top_t,
        seed=cfg.seed,
        strategy=cfg.strategy,
        shard_size=cfg.shard_size,
        source=cfg.neighborhood_source,
        window=cfg.pair_window,
        probe_contexts=cfg.probe_contexts,
        beam_min_interactions=cfg.beam_min_interactions,
    )
