"""NeighborhoodSampler: graph -> per-item importance neighbourhoods (top-T by random-walk visits, or by sequential
transition counts), a Beam TFX component.

`source` picks what "importance" means (pipeline/sampling/transitions.py):
- 'random_walk' (default): top-T by random-walk visit counts (PinSage §3.2), with one of the strategies below.
- 'transitions': top-T by symmetric window-`window` transition counts of the train histories (the sequential
  co-engagement the transition-counts baseline scores by), L1-normalised.
- 'mixed': top-T of the average of the two L1-normalised distributions.
'transitions' and 'mixed' are computed in one process with scipy.sparse (the counts are one sparse N x N
matrix with as many non-zeros as distinct pairs; 'mixed' walks in-process too) and written as one shard.

Two strategies, one output (schema/neighborhoods.py):
- 'in_memory': a PCollection of start-item shards; each worker loads the train CSR once (DoFn.setup) and walks
  its shards vectorised (random_walks.py). Seeds follow the shard index, so the output is the same on any
  number of workers and equals random_walks.sample_neighborhoods(adj, params, shard_size).
- 'join': walkers joined with adjacency lists one half-step per CoGroupByKey (beam_walks.py), for graphs that
  do not fit one worker; `shard_size` then sets the partition size (P = ceil(N / shard_size)).

    sampler = NeighborhoodSampler(graph=graph_gen.outputs['graph'], num_walks=200, top_t=20)
    sampler.outputs['neighborhoods']
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import apache_beam as beam
from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipeline.components import artifacts
from pipeline.configs import NEIGHBORHOOD_SOURCES, SAMPLING, WALK_STRATEGIES
from pipeline.sampling import beam_walks
from pipeline.sampling import random_walks as rw
from pipeline.sampling import transitions as sn
from schema import files
from schema import graph as graph_io
from schema import neighborhoods as neighborhood_io

STRATEGIES = WALK_STRATEGIES
SOURCES = NEIGHBORHOOD_SOURCES


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


class Executor(base_beam_executor.BaseBeamExecutor):
    """Runs the walks as one Beam pipeline and writes neighborhoods-*.parquet + neighborhood_stats.json."""

    def Do(self, input_dict, output_dict, exec_properties):
        graph_uri = artifact_utils.get_single_uri(input_dict["graph"])
        out_uri = artifact_utils.get_single_uri(output_dict["neighborhoods"])
        strategy = exec_properties["strategy"]
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        params = rw.WalkParams(
            num_walks=int(exec_properties["num_walks"]),
            walk_length=int(exec_properties["walk_length"]),
            restart_prob=float(exec_properties["restart_prob"]),
            top_t=int(exec_properties["top_t"]),
            seed=int(exec_properties["seed"]),
        )
        shard_size = int(exec_properties["shard_size"])
        n = num_rows(graph_uri, graph_io.ITEMS)
        stats_path = files.join(out_uri, neighborhood_io.STATS_FILE)
        start = time.time()
        source = exec_properties.get("source") or "random_walk"
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if source != "random_walk":
            window = int(exec_properties.get("window") or 3)
            self._write_sequence_neighborhoods(graph_uri, out_uri, source, params, window, shard_size)
            finish_stats(
                stats_path,
                rw.finalize_stats,
                seconds=time.time() - start,
                strategy="in_process",
                source=source,
                window=window,
                shard_size=shard_size,
                **dataclasses.asdict(params),
            )
            return
        with self._make_beam_pipeline() as p:
            if strategy == "in_memory":
                shards = (
                    p
                    | "Shards" >> beam.Create(rw.chunks(n, shard_size))
                    | "Spread" >> beam.Reshuffle()
                    | "Walk" >> beam.ParDo(beam_walks.WalkShard(graph_uri, params))
                )
            else:
                edges = (
                    p
                    | "ReadEdges"
                    >> beam.io.ReadFromParquetBatched(
                        os.path.join(graph_uri, f"{graph_io.INTERACTIONS}-*.parquet"),
                        columns=["context_index", "node_id", "split"],
                    )
                    | "TrainEdges" >> beam.FlatMap(beam_walks.train_edge_batches)
                )
                shards = beam_walks.walk_neighborhoods(
                    edges, n, num_rows(graph_uri, graph_io.CONTEXTS), params, num_partitions=math.ceil(n / shard_size)
                )
            _ = (
                shards
                | "ToTable" >> beam.Map(beam_walks.shard_table)
                | "Write"
                >> beam.io.WriteToParquetBatched(
                    os.path.join(out_uri, neighborhood_io.TABLE),
                    schema=neighborhood_io.schema(),
                    file_name_suffix=".parquet",
                )
            )
            beam_walks.write_stats(shards | "ShardStats" >> beam.Map(beam_walks.shard_stats), stats_path)
        finish_stats(
            stats_path,
            rw.finalize_stats,
            seconds=time.time() - start,
            strategy=strategy,
            source=source,
            shard_size=shard_size,
            **dataclasses.asdict(params),
        )

    @staticmethod
    def _write_sequence_neighborhoods(graph_uri, out_uri, source, params, window, shard_size):

        graph = graph_io.load_graph(graph_uri)
        nbr, w, cnt = sn.neighborhoods_from_graph(graph, source, params, window=window, shard_size=shard_size)
        neighborhood_io.write_neighborhoods(out_uri, nbr, w)
        isolated = int((graph.train_degree == 0).sum())
        files.write_json(files.join(out_uri, neighborhood_io.STATS_FILE), rw.chunk_stats(nbr, cnt, isolated))


class NeighborhoodSampler(base_beam_component.BaseBeamComponent):
    """graph (PinSageGraph) -> neighborhoods (Neighborhoods); see the module docstring."""

    SPEC_CLASS = NeighborhoodSamplerSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        graph: types.BaseChannel,
        num_walks: int = SAMPLING.num_walks,
        walk_length: int = SAMPLING.walk_length,
        restart_prob: float = SAMPLING.restart_prob,
        top_t: int = SAMPLING.top_t,
        seed: int = SAMPLING.seed,
        strategy: str = SAMPLING.strategy,
        shard_size: int = SAMPLING.shard_size,
        source: str = SAMPLING.neighborhood_source,
        window: int = SAMPLING.pair_window,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        super().__init__(
            spec=NeighborhoodSamplerSpec(
                graph=graph,
                neighborhoods=types.Channel(type=artifacts.Neighborhoods),
                num_walks=num_walks,
                walk_length=walk_length,
                restart_prob=float(restart_prob),
                top_t=top_t,
                seed=seed,
                strategy=strategy,
                shard_size=shard_size,
                source=source,
                window=window,
            )
        )
