"""PairGen: graph -> positive training pairs + PPR hard-negative pools, a Beam TFX component.

Positives (modules/cooccurrence.py) are one linear numpy pass over the train interactions on one worker (the pair
table is a few int64 columns); the hard negatives (pipeline/sampling/ppr.py) are walks, sharded over workers by
query node id like NeighborhoodSampler's in-memory strategy: each worker loads the CSR and the pairs once
(DoFn.setup), and each shard's random stream follows its shard index, so the output is the same on any number of
workers. A query's excluded set is q, its positives and the items that have q as a positive (both would be false
negatives). Only `max_queries` queries (those with the most pair occurrences, ppr.select_queries) get PPR pools,
so that the cost stays linear in the catalogue; pair_stats.json reports how many and what share of the training
draws they cover.

    pair_gen = PairGen(graph=graph_gen.outputs['graph'], config=PAIRS, sampling=SAMPLING)
    pair_gen.outputs['pairs']
"""

from __future__ import annotations

import dataclasses
import operator
import os
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipeline.components import artifacts
from pipeline.components.neighborhood_sampler import finish_stats, num_rows
from pipeline.configs import PAIRS, SAMPLING, PairConfig, SamplingConfig
from pipeline.sampling import beam_walks, ppr
from pipeline.sampling import random_walks as rw
from pipeline.sampling.pairs import pairs_from_graph
from schema import graph as graph_io
from schema import pairs


class _SelectedNegativeShard(beam_walks.NegativeShard):
    """NegativeShard restricted to ppr.select_queries' queries (max_queries by pair occurrences); shard 0 also
    reports the selection."""

    def setup(self):
        self._adj = rw.load_adjacency(self._uri)
        q, i, count, _ = pairs_from_graph(self._uri, int(self._props["window"]), bool(self._props["symmetric"]))
        self._queries, self._selection = ppr.select_queries(q, count, int(self._props.get("max_queries") or 0))
        order = np.argsort(np.r_[q, i], kind="stable")
        self._ex_q, self._ex_i = np.r_[q, i][order], np.r_[i, q][order]  # both directions, sorted by query

    def process(self, shard):
        if shard[0] == 0:
            yield beam.pvalue.TaggedOutput("stats", dict(self._selection))
        yield from super().process(shard)


class PairGenSpec(ComponentSpec):
    PARAMETERS = {
        "window": ExecutionParameter(type=int),
        "symmetric": ExecutionParameter(type=bool),
        "ppr_num_walks": ExecutionParameter(type=int),
        "ppr_walk_length": ExecutionParameter(type=int),
        "ppr_restart_prob": ExecutionParameter(type=float),
        "negative_lo": ExecutionParameter(type=float),
        "negative_hi": ExecutionParameter(type=float),
        "max_negatives": ExecutionParameter(type=int),
        "seed": ExecutionParameter(type=int),
        "shard_size": ExecutionParameter(type=int),
        "max_queries": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {"graph": ChannelParameter(type=artifacts.PinSageGraph)}
    OUTPUTS = {"pairs": ChannelParameter(type=artifacts.TrainingPairs)}


class Executor(base_beam_executor.BaseBeamExecutor):
    """Writes pairs-*.parquet, hard_negatives-*.parquet and pair_stats.json."""

    def Do(self, input_dict, output_dict, exec_properties):

        graph_uri = artifact_utils.get_single_uri(input_dict["graph"])
        out_uri = artifact_utils.get_single_uri(output_dict["pairs"])
        props = dict(exec_properties)
        n = num_rows(graph_uri, graph_io.ITEMS)
        window = ppr.resolve_window(n, float(props["negative_lo"]), float(props["negative_hi"]))
        stats_path = os.path.join(out_uri, pairs.STATS_FILE)
        start = time.time()
        with self._make_beam_pipeline() as p:
            positives = p | "Graph" >> beam.Create([graph_uri]) | "Positives" >> beam.Map(beam_walks.positives, props)
            _ = (
                positives
                | "PairTable" >> beam.Map(operator.itemgetter(0))
                | "WritePairs"
                >> beam.io.WriteToParquetBatched(
                    os.path.join(out_uri, pairs.PAIRS),
                    file_name_suffix=".parquet",
                    schema=pa.schema([("query", pa.int64()), ("positive", pa.int64()), ("count", pa.int64())]),
                )
            )
            negatives = (
                p
                | "Shards" >> beam.Create(rw.chunks(n, int(props["shard_size"])))
                | "Spread" >> beam.Reshuffle()
                | "Negatives"
                >> beam.ParDo(_SelectedNegativeShard(graph_uri, props, window)).with_outputs("stats", main="tables")
            )
            _ = negatives.tables | "WriteNegatives" >> beam.io.WriteToParquetBatched(
                os.path.join(out_uri, pairs.HARD_NEGATIVES),
                file_name_suffix=".parquet",
                schema=pa.schema([("query", pa.int64()), ("negatives", pa.list_(pa.int64()))]),
            )
            beam_walks.write_stats(
                (positives | "PairStats" >> beam.Map(operator.itemgetter(1)), negatives.stats)
                | "AllStats" >> beam.Flatten(),
                stats_path,
            )
        finish_stats(stats_path, seconds=time.time() - start, negative_window=list(window), **props)


class PairGen(base_beam_component.BaseBeamComponent):
    """graph (PinSageGraph) -> pairs (TrainingPairs); see the module docstring and pairs.py / ppr.py."""

    SPEC_CLASS = PairGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, graph: types.BaseChannel, config: PairConfig = PAIRS, sampling: SamplingConfig = SAMPLING):
        super().__init__(spec=PairGenSpec(graph=graph, **exec_properties(config, sampling)))


def exec_properties(cfg: PairConfig, sampling: SamplingConfig) -> dict:
    """The component's parameters (what the TFX cache keys on): the PairConfig's fields plus the pair window and
    the seed it shares with the NeighborhoodSampler; with the output channel."""
    props = dataclasses.asdict(cfg)
    props.update(ppr_restart_prob=float(cfg.ppr_restart_prob), negative_lo=float(cfg.negative_lo))
    props.update(negative_hi=float(cfg.negative_hi), window=sampling.pair_window, seed=sampling.seed)
    return dict(props, pairs=types.Channel(type=artifacts.TrainingPairs))
