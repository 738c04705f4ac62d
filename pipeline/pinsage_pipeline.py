"""Wires the PinSage TFX pipeline (components only; running it is local_runner.py's and cli.py's job).

logs -> ExampleGen (items, interactions) -> StatisticsGen -> ImportSchemaGen -> ExampleValidator
     -> GraphGen (int ids, dedup, temporal split) -> Transform (item features, train log-degree)
     -> NeighborhoodSampler (random-walk importance neighbourhoods) -> PairGen (positives, PPR hard negatives)
     -> PinSageTrainer (TF-GNN model, run_fn in modules/trainer.py) -> PinSageEvaluator (report + baselines)
     -> BulkEmbedder (layer-wise, Beam) -> IndexBuilder (ScaNN) -> PinSagePusher (serving_model/<name>/<version>)
"""
from __future__ import annotations

import dataclasses
import os

from tfx import v1 as tfx

from pipeline.components.graph_gen import ITEM_SPLIT, GraphGen
from pipeline.components.neighborhood_sampler import NeighborhoodSampler
from pipeline.components.pair_gen import PairGen
from pipeline.components.bulk_embedder import BulkEmbedder
from pipeline.components.evaluator import PinSageEvaluator
from pipeline.components.pusher import PinSagePusher
from pipeline.index_builder import IndexBuilder
from pipeline.components.trainer import PinSageTrainer, code_fingerprint

STAGES = ("graph", "transform", "sampling", "evaluation")
MODULES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "modules")


@dataclasses.dataclass
class PipelineInputs:
    """What the run-time driver resolved before the pipeline is built (see cli.py / local_runner.py)."""
    canonical_dir: str            # ingest output: items/items.csv, interactions/interactions.csv
    items_schema: str             # path of the items TFX schema .pbtxt
    interactions_schema: str      # path of the interactions TFX schema .pbtxt
    ingest_report: str            # path of ingest_report.json
    features: dict                # dataset.yaml `features` (kinds), passed to Transform
    graph_schema: str             # path of the TF-GNN GraphSchema .pbtxt of the item node set
    dataset: str                  # dataset name for the report
    table_dirs: dict | None = None  # ExampleGen input dirs per table (default canonical_dir/<table>); the driver
                                    # keys each by its own content so that one table's change keeps the other cached


@dataclasses.dataclass
class SamplingConfig:
    num_walks: int = 200
    walk_length: int = 4
    restart_prob: float = 0.5
    top_t: int = 10
    strategy: str = "in_memory"
    neighborhood_source: str = "transitions"   # random_walk | transitions | mixed (bench/QUALITY.md: transitions
                                               # beat random-walk neighbourhoods on ML-1M validation HR@10)
    pair_window: int = 3
    seed: int = 0


def _example_gen(name: str, base: str):
    # One input split maps to ExampleGen's default 2:1 train/eval hash split unless the output names a single
    # split with every hash bucket: the graph needs every row, and the temporal split is GraphGen's job.
    return tfx.components.CsvExampleGen(
        input_base=base,
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name=name, pattern="*.csv")]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(
            splits=[tfx.proto.SplitConfig.Split(name=name, hash_buckets=1)])),
    ).with_id(f"{name}_example_gen")


def create_pipeline(pipeline_name: str, pipeline_root: str, metadata_path: str, inputs: PipelineInputs,
                    sampling: SamplingConfig | None = None, beam_pipeline_args: list[str] | None = None,
                    enable_cache: bool = True, stop_after: str | None = None,
                    hparams: dict | None = None, serving_model_dir: str | None = None,
                    ablations: list[str] | None = None) -> tfx.dsl.Pipeline:
    """The pipeline; `stop_after` (one of STAGES) builds only a prefix (tests, partial runs).
    `hparams`: overrides of modules.model.PinSageHParams for the trainer; `serving_model_dir`: where the Pusher
    writes versions (default <pipeline_root>/../serving_model); `ablations`: modules.model.ABLATIONS variants
    the trainer also trains and the evaluator reports."""
    if stop_after not in (None,) + STAGES:
        raise ValueError(f"stop_after must be one of {STAGES}, got {stop_after!r}")
    components = []
    gens = {}
    for name, schema_file in (("items", inputs.items_schema), ("interactions", inputs.interactions_schema)):
        gen = _example_gen(name, (inputs.table_dirs or {}).get(name) or os.path.join(inputs.canonical_dir, name))
        stats = tfx.components.StatisticsGen(examples=gen.outputs["examples"]).with_id(f"{name}_statistics_gen")
        schema = tfx.components.ImportSchemaGen(schema_file=schema_file).with_id(f"{name}_schema_gen")
        validator = tfx.components.ExampleValidator(
            statistics=stats.outputs["statistics"], schema=schema.outputs["schema"]).with_id(f"{name}_validator")
        components += [gen, stats, schema, validator]
        gens[name] = (gen, schema)

    graph_gen = GraphGen(items=gens["items"][0].outputs["examples"],
                         interactions=gens["interactions"][0].outputs["examples"],
                         items_schema=gens["items"][1].outputs["schema"],
                         ingest_report=inputs.ingest_report)
    components.append(graph_gen)
    if stop_after != "graph":
        transform = tfx.components.Transform(
            examples=graph_gen.outputs["item_examples"],
            schema=graph_gen.outputs["item_schema"],
            module_file=os.path.join(MODULES_DIR, "preprocessing", "transform.py"),
            splits_config=tfx.proto.SplitsConfig(analyze=[ITEM_SPLIT], transform=[ITEM_SPLIT]),
            custom_config={"features": inputs.features},
        )
        components.append(transform)
    if stop_after not in ("graph", "transform"):
        sampler, pairs = _sampling_components(graph_gen, sampling or SamplingConfig())
        components += [sampler, pairs]
    if stop_after not in ("graph", "transform", "sampling"):
        trainer = PinSageTrainer(
            examples=transform.outputs["transformed_examples"], transform_graph=transform.outputs["transform_graph"],
            graph=graph_gen.outputs["graph"], neighborhoods=sampler.outputs["neighborhoods"],
            pairs=pairs.outputs["pairs"], graph_schema=inputs.graph_schema, hparams=hparams,
            code_fingerprint=code_fingerprint(MODULES_DIR), ablations=ablations)
        evaluator = PinSageEvaluator(
            graph=graph_gen.outputs["graph"], model=trainer.outputs["model"],
            examples=transform.outputs["transformed_examples"], transform_graph=transform.outputs["transform_graph"],
            dataset=inputs.dataset, graph_schema=inputs.graph_schema)
        components += [trainer, evaluator]
    if stop_after not in ("graph", "transform", "sampling", "evaluation"):
        embedder = BulkEmbedder(model=trainer.outputs["model"], examples=transform.outputs["transformed_examples"],
                                neighborhoods=sampler.outputs["neighborhoods"], graph=graph_gen.outputs["graph"],
                                graph_schema=inputs.graph_schema)
        index = IndexBuilder(embeddings=embedder.outputs["embeddings"])
        pusher = PinSagePusher(embeddings=embedder.outputs["embeddings"], index=index.outputs["index"],
                               serving_model_dir=serving_model_dir or os.path.join(
                                   os.path.dirname(os.path.abspath(pipeline_root)), "serving_model"),
                               # the cold-start embed_item signature (pipeline/cold_start.py)
                               model=trainer.outputs["model"], transform_graph=transform.outputs["transform_graph"],
                               examples=transform.outputs["transformed_examples"],
                               neighborhoods=sampler.outputs["neighborhoods"], items_schema=inputs.items_schema)
        components += [embedder, index, pusher]

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=beam_pipeline_args or [],
    )


def _sampling_components(graph_gen, cfg: SamplingConfig) -> list:
    """NeighborhoodSampler (importance neighbourhoods) and PairGen (positives + PPR hard negatives)."""
    sampler = NeighborhoodSampler(graph=graph_gen.outputs["graph"], num_walks=cfg.num_walks,
                                  walk_length=cfg.walk_length, restart_prob=cfg.restart_prob, top_t=cfg.top_t,
                                  seed=cfg.seed, strategy=cfg.strategy, source=cfg.neighborhood_source,
                                  window=cfg.pair_window)
    pairs = PairGen(graph=graph_gen.outputs["graph"], window=cfg.pair_window, seed=cfg.seed)
    return sampler, pairs
