"""Wires the PinSage TFX pipeline (components only; running it is local_runner.py's and cli.py's job).

logs -> ingest (typed, counted; Parquet Examples) -> Importer (items, interactions) -> StatisticsGen -> ImportSchemaGen -> ExampleValidator
     -> GraphGen (int ids, dedup, temporal split) -> Transform (item features, train log-degree)
     -> NeighborhoodSampler (importance neighbourhoods, source picked by a validation probe) -> PairGen (positives, PPR negatives)
     -> PinSageTrainer (TF-GNN model, run_fn in modules/trainer.py) -> PinSageEvaluator (report + baselines)
     -> BulkEmbedder (layer-wise, Beam) -> IndexBuilder (ScaNN) -> PinSagePusher (serving_model/<name>/<version>)
"""

from __future__ import annotations

import dataclasses
import os

from tfx import v1 as tfx

from pipeline import configs
from pipeline.components.bulk_embedder import BulkEmbedder
from pipeline.components.evaluator import PinSageEvaluator
from pipeline.components.graph_gen import ITEM_SPLIT, GraphGen
from pipeline.components.index_builder import IndexBuilder
from pipeline.components.neighborhood_sampler import NeighborhoodSampler
from pipeline.components.pair_gen import PairGen
from pipeline.components.pusher import PinSagePusher
from pipeline.components.trainer import PinSageTrainer, code_fingerprint
from pipeline.configs import STAGES, SamplingConfig
from pipeline.data import ingest
from schema import files

MODULES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "modules")


@dataclasses.dataclass
class PipelineInputs:
    """What the run-time driver resolved before the pipeline is built (see cli.py / local_runner.py)."""

    canonical_dir: str  # ingest output: items/items.csv, interactions/interactions.csv
    items_schema: str  # path of the items TFX schema .pbtxt
    interactions_schema: str  # path of the interactions TFX schema .pbtxt
    ingest_report: str  # path of ingest_report.json
    features: dict  # dataset.yaml `features` (kinds), passed to Transform
    graph_schema: str  # path of the TF-GNN GraphSchema .pbtxt of the item node set
    dataset: str  # dataset name for the report
    table_dirs: dict | None = None  # ExampleGen input dirs per table (default canonical_dir/<table>); the driver
    # keys each by its own content so that one table's change keeps the other cached


def step_budget_hparams(hparams: dict | None, steps: int) -> dict:
    """hparams overrides that cap training at `steps` optimizer steps in total (`pinsage run --train-steps`):
    one epoch of `steps` steps, or, when the overrides name `epochs`, steps // epochs per epoch (at least 1)."""
    if steps < 1:
        raise ValueError(f"the step budget must be >= 1, got {steps}")
    out = dict(hparams or {})
    epochs = int(out.get("epochs", 1))
    if epochs > steps:
        epochs = steps
    out.update(epochs=epochs, steps_per_epoch=steps // epochs)
    return out


def resolve_embed_strategy(strategy: str, beam_pipeline_args: list[str] | None) -> str:
    """'auto' -> 'in_memory' on the DirectRunner (its Beam join path runs ~1k items/s, BUILD_NOTES.md),
    'beam' when the Beam args name another runner (Dataflow, Flink, Spark: catalogues beyond one worker)."""
    if strategy != "auto":
        return strategy
    runner = "DirectRunner"
    for i, a in enumerate(beam_pipeline_args or []):
        if a.startswith("--runner="):
            runner = a.split("=", 1)[1]
        elif a == "--runner" and i + 1 < len(beam_pipeline_args):
            runner = beam_pipeline_args[i + 1]
    return "in_memory" if runner.split(".")[-1] in ("DirectRunner", "direct") else "beam"


def _example_gen(name: str, base: str):
    """The table as an Examples artifact: ingest already wrote it in an Examples payload (Parquet, one split named
    after the table, pipeline/data/ingest.py), so it is imported, not re-encoded by an ExampleGen — CsvExampleGen ran
    at ~7k rows/s on the DirectRunner. The directory is keyed by content, so reimport=False is a cache hit."""
    return tfx.dsl.Importer(
        source_uri=base,
        artifact_type=tfx.types.standard_artifacts.Examples,
        reimport=False,
        properties={"split_names": f'["{name}"]'},
        custom_properties={"payload_format": "FORMAT_PARQUET", "file_format": "FILE_FORMAT_PARQUET"},
    ).with_id(f"{name}_example_gen")


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    metadata_path: str,
    inputs: PipelineInputs,
    sampling: SamplingConfig | None = None,
    beam_pipeline_args: list[str] | None = None,
    enable_cache: bool = True,
    stop_after: str | None = None,
    hparams: dict | None = None,
    serving_model_dir: str | None = None,
    eval_contexts: int | None = None,
    embed_strategy: str = configs.EMBED.strategy,
    ablations: list[str] | None = None,
) -> tfx.dsl.Pipeline:
    """The pipeline; `stop_after` (one of STAGES) builds only a prefix (tests, partial runs).
    `hparams`: overrides of modules.model.PinSageHParams for the trainer; `serving_model_dir`: where the Pusher
    writes versions (default <pipeline_root>/../serving_model); `eval_contexts`: the evaluator ranks a fixed
    random sample of at most this many contexts per split (reported; None = all); `embed_strategy`: the
    BulkEmbedder's ('auto', 'beam', 'in_memory'; see resolve_embed_strategy); `ablations`:
    modules.model.ABLATIONS variants the trainer also trains and the evaluator reports."""
    if stop_after not in (None,) + STAGES:
        raise ValueError(f"stop_after must be one of {STAGES}, got {stop_after!r}")
    last = STAGES.index(stop_after) if stop_after else len(STAGES)
    components, graph_gen = _graph_components(inputs)
    if last > 0:
        transform = _transform(graph_gen, inputs)
        components.append(transform)
    if last > 1:
        sampler, pairs = _sampling_components(graph_gen, sampling or SamplingConfig())
        components += [sampler, pairs]
    if last > 2:
        trainer, evaluator = _training_components(
            graph_gen, transform, sampler, pairs, inputs, hparams, ablations, eval_contexts
        )
        components += [trainer, evaluator]
    if last > 3:
        serving_model_dir = serving_model_dir or files.join(
            files.dirname(files.abspath(pipeline_root)), "serving_model"
        )
        strategy = resolve_embed_strategy(embed_strategy, beam_pipeline_args)
        components += _serving_components(graph_gen, transform, sampler, trainer, inputs, serving_model_dir, strategy)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=beam_pipeline_args or [],
    )


def _graph_components(inputs: PipelineInputs):
    """Per table: import, statistics, schema, validation; then GraphGen. Returns (components, graph_gen)."""
    components, gens = [], {}
    for name, schema_file in (("items", inputs.items_schema), ("interactions", inputs.interactions_schema)):
        gen = _example_gen(
            name, (inputs.table_dirs or {}).get(name) or os.path.join(inputs.canonical_dir, ingest.EXAMPLES_DIR, name)
        )
        stats = tfx.components.StatisticsGen(examples=gen.outputs["result"]).with_id(f"{name}_statistics_gen")
        schema = tfx.components.ImportSchemaGen(schema_file=schema_file).with_id(f"{name}_schema_gen")
        validator = tfx.components.ExampleValidator(
            statistics=stats.outputs["statistics"], schema=schema.outputs["schema"]
        ).with_id(f"{name}_validator")
        components += [gen, stats, schema, validator]
        gens[name] = (gen, schema)
    graph_gen = GraphGen(
        items=gens["items"][0].outputs["result"],
        interactions=gens["interactions"][0].outputs["result"],
        items_schema=gens["items"][1].outputs["schema"],
        ingest_report=inputs.ingest_report,
    )
    return components + [graph_gen], graph_gen


def _transform(graph_gen, inputs: PipelineInputs):
    return tfx.components.Transform(
        examples=graph_gen.outputs["item_examples"],
        schema=graph_gen.outputs["item_schema"],
        module_file=os.path.join(MODULES_DIR, "preprocessing", "transform.py"),
        splits_config=tfx.proto.SplitsConfig(analyze=[ITEM_SPLIT], transform=[ITEM_SPLIT]),
        custom_config={"features": inputs.features},
        # pre/post-transform TFDV statistics are not read by any later stage, and cost a full TFDV pass
        # over the items twice (the raw items are validated by StatisticsGen + ExampleValidator already)
        disable_statistics=True,
    )


def _training_components(graph_gen, transform, sampler, pairs, inputs, hparams, ablations, eval_contexts):
    trainer = PinSageTrainer(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        graph=graph_gen.outputs["graph"],
        neighborhoods=sampler.outputs["neighborhoods"],
        pairs=pairs.outputs["pairs"],
        graph_schema=inputs.graph_schema,
        hparams=hparams,
        code_fingerprint=code_fingerprint(),
        ablations=ablations,
        eval_contexts=eval_contexts or 0,
    )
    evaluator = PinSageEvaluator(
        graph=graph_gen.outputs["graph"],
        model=trainer.outputs["model"],
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        dataset=inputs.dataset,
        graph_schema=inputs.graph_schema,
        max_contexts=eval_contexts or 0,
    )
    return trainer, evaluator


def _serving_components(graph_gen, transform, sampler, trainer, inputs, serving_model_dir: str, strategy: str):
    """BulkEmbedder -> IndexBuilder -> PinSagePusher (with the cold-start embed_item signature's inputs)."""
    embedder = BulkEmbedder(
        model=trainer.outputs["model"],
        examples=transform.outputs["transformed_examples"],
        neighborhoods=sampler.outputs["neighborhoods"],
        graph=graph_gen.outputs["graph"],
        graph_schema=inputs.graph_schema,
        strategy=strategy,
    )
    index = IndexBuilder(embeddings=embedder.outputs["embeddings"])
    pusher = PinSagePusher(
        embeddings=embedder.outputs["embeddings"],
        index=index.outputs["index"],
        serving_model_dir=serving_model_dir,
        model=trainer.outputs["model"],
        transform_graph=transform.outputs["transform_graph"],
        examples=transform.outputs["transformed_examples"],
        neighborhoods=sampler.outputs["neighborhoods"],
        items_schema=inputs.items_schema,
    )
    return [embedder, index, pusher]


def _sampling_components(graph_gen, cfg: SamplingConfig) -> list:
    """NeighborhoodSampler (importance neighbourhoods) and PairGen (positives + PPR hard negatives)."""
    sampler = NeighborhoodSampler(
        graph=graph_gen.outputs["graph"],
        num_walks=cfg.num_walks,
        walk_length=cfg.walk_length,
        restart_prob=cfg.restart_prob,
        top_t=cfg.top_t,
        seed=cfg.seed,
        strategy=cfg.strategy,
        source=cfg.neighborhood_source,
        window=cfg.pair_window,
        probe_contexts=cfg.probe_contexts,
        beam_min_interactions=cfg.beam_min_interactions,
    )
    pairs = PairGen(graph=graph_gen.outputs["graph"], window=cfg.pair_window, seed=cfg.seed)
    return sampler, pairs
