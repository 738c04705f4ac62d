"""Wires the PinSage TFX pipeline (components only; running it is local_runner.py's and cli.py's job).

logs -> ingest (typed, counted; Parquet Examples) -> Importer (items, interactions) -> StatisticsGen -> ImportSchemaGen -> ExampleValidator
     -> GraphGen (int ids, dedup, temporal split) -> Transform (item features, train log-degree)
     -> NeighborhoodSampler (importance neighbourhoods, source picked by a validation probe) -> PairGen (positives, PPR negatives)
     -> PinSageTrainer (TF-GNN model, run_fn in modules/trainer.py) -> ContextTowerTrainer (the history tower over z)
     -> PinSageEvaluator (report + baselines + history queries, blessing)
     -> BulkEmbedder (layer-wise, Beam) -> ContextEmbedder (u_c of every known context over z, Beam; with the tower)
     -> IndexBuilder (ScaNN) -> PinSagePusher (serving_model/<name>/<version>)

The Pusher reads the Evaluator's blessing (a ModelBlessing) and pushes only a blessed model, unless the run's
BlessingConfig.push_unblessed overrides it (pipeline/evaluation/blessing.py decides).
"""

from __future__ import annotations

import dataclasses
import os

from tfx import v1 as tfx

from pipeline.components.bulk_embedder import BulkEmbedder
from pipeline.components.context_embedder import STAGE_MODULE as CONTEXT_VECTORS_MODULE
from pipeline.components.context_embedder import ContextEmbedder
from pipeline.components.context_tower_trainer import STAGE_MODULE, ContextTowerTrainer
from pipeline.components.evaluator import PinSageEvaluator
from pipeline.components.graph_gen import ITEM_SPLIT, GraphGen
from pipeline.components.index_builder import IndexBuilder
from pipeline.components.neighborhood_sampler import NeighborhoodSampler
from pipeline.components.pair_gen import PairGen
from pipeline.components.pusher import PinSagePusher
from pipeline.components.trainer import PinSageTrainer, code_fingerprint
from pipeline.configs import STAGES, RunConfig
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


def resolve_embed_strategy(strategy: str, beam_pipeline_args: list[str] | None) -> str:
    """'auto' -> 'in_memory' on the DirectRunner (its Beam join path is slow in one process), 'beam' when the
    Beam args name another runner (Dataflow, Flink, Spark: catalogues beyond one worker)."""
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
    after the table, pipeline/data/ingest.py), so it is imported, not re-encoded by an ExampleGen (CsvExampleGen
    would encode every row again, row by row). The directory is keyed by content, so reimport=False is a cache hit."""
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
    config: RunConfig | None = None,
    serving_model_dir: str | None = None,
) -> tfx.dsl.Pipeline:
    """The pipeline a RunConfig describes (its data source is already `inputs`; default: RunConfig()):
    `config.stop_after` (one of STAGES) builds only a prefix (tests, partial runs), the sampling / pair / embed /
    push configs go to their components as they are. `serving_model_dir`: where the Pusher writes versions
    (default <pipeline_root>/../serving_model)."""
    config = config if config is not None else RunConfig()
    last = STAGES.index(config.stop_after) if config.stop_after else len(STAGES)
    components, graph_gen = _graph_components(inputs)
    if last > 0:
        transform = _transform(graph_gen, inputs)
        components.append(transform)
    if last > 1:
        sampler = NeighborhoodSampler(graph=graph_gen.outputs["graph"], config=config.sampling)
        pairs = PairGen(graph=graph_gen.outputs["graph"], config=config.pairs, sampling=config.sampling)
        components += [sampler, pairs]
    if last > 2:
        trainer, tower, evaluator = _training_components(graph_gen, transform, sampler, pairs, inputs, config)
        components += [c for c in (trainer, tower, evaluator) if c is not None]
    if last > 3:
        serving_model_dir = serving_model_dir or files.join(
            files.dirname(files.abspath(pipeline_root)), "serving_model"
        )
        embed = dataclasses.replace(
            config.embed, strategy=resolve_embed_strategy(config.embed.strategy, list(config.beam_args))
        )
        components += _serving_components(
            graph_gen, transform, sampler, (trainer, tower, evaluator), inputs, serving_model_dir, embed, config
        )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=list(config.beam_args),
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


def _training_components(graph_gen, transform, sampler, pairs, inputs: PipelineInputs, config: RunConfig):
    trainer = PinSageTrainer(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        graph=graph_gen.outputs["graph"],
        neighborhoods=sampler.outputs["neighborhoods"],
        pairs=pairs.outputs["pairs"],
        graph_schema=inputs.graph_schema,
        hparams=config.hparams,
        code_fingerprint=code_fingerprint(),
        ablations=list(config.ablations),
        eval_contexts=config.eval_contexts or 0,
    )
    tower = None
    if config.history.enabled:
        tower = ContextTowerTrainer(
            graph=graph_gen.outputs["graph"],
            model=trainer.outputs["model"],
            config=config.context_tower,
            probe_contexts=config.history.probe_contexts,
            code_fingerprint=code_fingerprint(STAGE_MODULE),
        )
    evaluator = PinSageEvaluator(
        graph=graph_gen.outputs["graph"],
        model=trainer.outputs["model"],
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        dataset=inputs.dataset,
        graph_schema=inputs.graph_schema,
        max_contexts=config.eval_contexts or 0,
        blessing=config.blessing,
        context_tower=tower.outputs["context_tower"] if tower is not None else None,
    )
    return trainer, tower, evaluator


def _serving_components(graph_gen, transform, sampler, trained, inputs, serving_model_dir: str, embed, config):
    """BulkEmbedder -> (ContextEmbedder) -> IndexBuilder -> PinSagePusher (with the cold-start embed_item
    signature's inputs, the context tower for `recommend`, the context vectors for `recommend_context` and the
    evaluator's blessing); `trained` = (trainer, tower or None, evaluator)."""
    trainer, tower, evaluator = trained
    embedder = BulkEmbedder(
        model=trainer.outputs["model"],
        examples=transform.outputs["transformed_examples"],
        neighborhoods=sampler.outputs["neighborhoods"],
        graph=graph_gen.outputs["graph"],
        graph_schema=inputs.graph_schema,
        config=embed,
    )
    contexts = None
    if tower is not None:  # over the served z, so a stored u_c is what `recommend` computes from the same history
        contexts = ContextEmbedder(
            graph=graph_gen.outputs["graph"],
            context_tower=tower.outputs["context_tower"],
            embeddings=embedder.outputs["embeddings"],
            batch_size=config.history.context_batch_size,
            code_fingerprint=code_fingerprint(CONTEXT_VECTORS_MODULE),
        )
    index = IndexBuilder(
        embeddings=embedder.outputs["embeddings"],
        item_examples=graph_gen.outputs["item_examples"],  # the items' attributes, shown by the related-items page
        features=inputs.features,
    )
    pusher = PinSagePusher(
        embeddings=embedder.outputs["embeddings"],
        index=index.outputs["index"],
        serving_model_dir=serving_model_dir,
        config=config.push,
        model=trainer.outputs["model"],
        transform_graph=transform.outputs["transform_graph"],
        examples=transform.outputs["transformed_examples"],
        neighborhoods=sampler.outputs["neighborhoods"],
        items_schema=inputs.items_schema,
        model_blessing=evaluator.outputs["blessing"],
        push_unblessed=config.blessing.push_unblessed,
        context_tower=tower.outputs["context_tower"] if tower is not None else None,
        context_vectors=contexts.outputs["context_vectors"] if contexts is not None else None,
    )
    return [c for c in (embedder, contexts, index, pusher) if c is not None]
