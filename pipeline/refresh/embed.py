"""`pinsage embed`: a pushed version's trained model over a new catalogue -> a new served version, no retraining.

The version's assets/trained/ (schema/versions.py's trained layout, written by the Pusher) holds what the run's
serving stages used: the trained model, the Transform graph, the context tower and the sampler's config. The
refresh runs the run's own stages on the new data, each by its TFX executor (no orchestrator, no MLMD):

    ingest (pipeline/data/ingest.py: the contract, limits and data report of `pinsage run`)
    -> GraphGen -> the version's Transform graph applied to the items (tft_beam.TransformDataset: the run's
    vocabularies and statistics, not recomputed) -> NeighborhoodSampler (the recorded config, pinned to the source
    the run's probe chose) -> BulkEmbedder (layer by layer; a new item gets its embedding from its features and
    neighbourhood) -> ContextEmbedder (with a tower) -> IndexBuilder (titles, attributes) -> PinSagePusher

On unchanged data every stage sees the run's inputs, so the refreshed version serves the run's vectors and lists.
The blessing rule of a refresh: the model is the source version's, so the new version carries its blessings
(`blessed` and the context tower's `recommend_blessed`; trained.json and the report say which); nothing is
re-evaluated. A version pushed without its tower (the tower was not blessed) has no tower in assets/trained/, so
its refresh is pushed without one too; one pushed with it (--push-unblessed) is refreshed with it. Artifacts land under
OUT/tfx/<component>/<key>/<n>/ (n counts the refreshes into OUT) and the report in OUT/refresh_report.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import posixpath
import time
from typing import Optional

import numpy as np

from pipeline import scratch
from pipeline.configs import EMBED, PUSH, SAMPLING, WALK_STRATEGIES, SamplingConfig
from pipeline.data import ingest
from schema import files, versions

REPORT_FILE = "refresh_report.json"
REPORT_MD = "refresh_report.md"
TRANSFORMED_PREFIX = "transformed_examples"


class NotAModel(ValueError):
    """A --model path that is not a refreshable version; the message names the path."""


@dataclasses.dataclass(frozen=True)
class Source:
    """A pushed version and the trained layout inside it."""

    version_dir: str
    model: str  # a Model artifact directory (Format-Serving/, query_head/)
    transform_graph: str
    context_tower: Optional[str]
    sampling: Optional[dict]  # the sampler's recorded stats, None for a version pushed without them
    blessed: Optional[bool]
    recommend_blessed: Optional[bool] = None  # the context tower's blessing; None without a judged tower


def open_version(version_dir: str) -> Source:
    """The trained layout of `version_dir`; NotAModel naming the path when it is not a version that has one."""
    version_dir = files.abspath(version_dir)
    if not files.exists(files.join(version_dir, "saved_model.pb")):
        raise NotAModel(f"{version_dir}: not a pushed model version (no saved_model.pb)")
    trained = versions.trained_dir(version_dir)
    model = files.join(trained, versions.TRAINED_MODEL_DIR)
    transform = files.join(trained, versions.TRAINED_TRANSFORM_DIR)
    needed = (files.join(model, "Format-Serving", "saved_model.pb"), files.join(transform, "transform_fn"))
    missing = [p for p in needed if not files.exists(p)]
    if missing:
        raise NotAModel(
            f"{version_dir}: a version without its trained model ({missing[0]} is missing): it was pushed before "
            "versions carried assets/trained/, or without embed_item; push it again with `pinsage run`"
        )
    tower = files.join(trained, versions.TRAINED_TOWER_DIR)
    sampling = files.join(trained, versions.TRAINED_SAMPLING_JSON)
    record = files.join(trained, versions.TRAINED_JSON)
    record = files.read_json(record) if files.exists(record) else {}
    return Source(
        version_dir=version_dir,
        model=model,
        transform_graph=transform,
        context_tower=tower if files.isdir(tower) else None,
        sampling=files.read_json(sampling) if files.exists(sampling) else None,
        blessed=record.get("blessed"),
        recommend_blessed=record.get("recommend_blessed"),
    )


def sampling_config(recorded: Optional[dict]) -> tuple[SamplingConfig, str]:
    """The run's sampler config from its recorded stats, pinned to the source its probe chose (the model was
    trained on that source's neighbourhoods); configs.SAMPLING without a record. Returns (config, where from)."""
    if recorded is None:
        return SAMPLING, "defaults (configs.SAMPLING): the version does not record its sampling config"
    r = recorded
    strategy = r.get("strategy") if r.get("strategy") in WALK_STRATEGIES else SAMPLING.strategy
    cfg = dataclasses.replace(
        SAMPLING,
        num_walks=int(r.get("num_walks", SAMPLING.num_walks)),
        walk_length=int(r.get("walk_length", SAMPLING.walk_length)),
        restart_prob=float(r.get("restart_prob", SAMPLING.restart_prob)),
        top_t=int(r.get("top_t", SAMPLING.top_t)),
        seed=int(r.get("seed", SAMPLING.seed)),
        shard_size=int(r.get("shard_size", SAMPLING.shard_size)),
        pair_window=int(r.get("window", SAMPLING.pair_window)),
        neighborhood_source=r.get("source") or SAMPLING.neighborhood_source,
        strategy=strategy,
    )
    return cfg, "recorded (assets/trained/sampling.json)"


def check_item_columns(transform_dir: str, items_schema_path: str, items_file: str) -> None:
    """The new items table must have every raw column the model's Transform reads, of the same type: else an
    ingest.InputError naming the items file (the contract's error, exit 2)."""
    import tensorflow_transform as tft
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx.utils import io_utils

    from schema import build as schema_build

    want = tft.TFTransformOutput(transform_dir).raw_feature_spec()
    schema = io_utils.parse_pbtxt_file(items_schema_path, schema_pb2.Schema())
    have = schema_utils.schema_as_feature_spec(schema_build.graph_items_schema(schema)).feature_spec
    missing = sorted(c for c in want if c not in have)
    if missing:
        raise ingest.InputError(
            f"{items_file}: no column {missing} (or dataset.yaml does not declare it), which the model's features "
            f"are computed from ({transform_dir})"
        )
    changed = sorted(c for c in want if want[c].dtype != have[c].dtype)
    if changed:
        kinds = {c: (want[c].dtype.name, have[c].dtype.name) for c in changed}
        raise ingest.InputError(
            f"{items_file}: column(s) {changed} of another kind than the model was trained on "
            f"(trained, given): {kinds}; declare features in dataset.yaml as the run did, and keep the run's kind of "
            "item id (all integers, or not)"
        )


def run_number(out: str) -> int:
    """One more than the largest artifact number under OUT/tfx (each refresh into OUT gets fresh directories)."""
    numbers = (posixpath.basename(p.rstrip("/")) for p in files.glob(files.join(out, "tfx", "*", "*", "*")))
    return max([0] + [int(n) for n in numbers if n.isdigit()]) + 1


def artifact(kind, out: str, component: str, key: str, n: int, split: Optional[str] = None):
    """A new TFX artifact of type `kind` at OUT/tfx/<component>/<key>/<n> (with one split, for Examples)."""
    a = existing(kind, os.path.join(out, "tfx", component, key, str(n)), split)
    files.makedirs(a.uri)
    return a


def existing(kind, uri: str, split: Optional[str] = None):
    """A TFX artifact of type `kind` over the directory `uri` (with one split, for Examples)."""
    from tfx.types import artifact_utils

    a = kind()
    a.uri = uri
    if split:
        a.split_names = artifact_utils.encode_split_names([split])
    return a


def beam_context(executor_cls, out: str, beam_args: list, name: str):
    return executor_cls.Context(
        beam_pipeline_args=list(beam_args), tmp_dir=os.path.join(out, "tmp", name), unique_id=f"refresh-{name}"
    )


def transform_items(make_pipeline, item_examples, transform_dir: str, out_examples, tmp_dir: str) -> None:
    """The run's Transform graph over GraphGen's item examples (raw columns + node_id + train_degree) ->
    GZIP TFRecords of transformed tf.Examples in `out_examples`' split, which the embedder and Pusher read."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tfx.components.util import tfxio_utils
    from tfx.types import artifact_utils

    from pipeline.components.graph_gen import ITEM_SPLIT

    tft_output = tft.TFTransformOutput(transform_dir)
    source = artifact_utils.get_split_uri([item_examples], ITEM_SPLIT)
    factory = tfxio_utils.get_tfxio_factory_from_artifact(
        [item_examples], ["pinsage", "refresh"], schema=tft_output.raw_metadata.schema
    )
    tfxio = factory(os.path.join(source, "*"))
    coder = tft.coders.ExampleProtoCoder(tft_output.transformed_metadata.schema)
    dest = os.path.join(artifact_utils.get_split_uri([out_examples], ITEM_SPLIT), TRANSFORMED_PREFIX)
    with make_pipeline() as p, tft_beam.Context(temp_dir=tmp_dir):
        raw = p | "ReadItems" >> tfxio.BeamSource()
        fn = p | "ReadTransformFn" >> tft_beam.ReadTransformFn(transform_dir)
        transformed = ((raw, tfxio.TensorAdapterConfig()), fn) | "Transform" >> tft_beam.TransformDataset()
        _ = (
            transformed[0]
            | "Encode" >> beam.Map(coder.encode)
            | "Write" >> beam.io.WriteToTFRecord(dest, file_name_suffix=".gz")
        )


def index_params() -> dict:
    """The IndexBuilder's own defaults (what the run's pipeline builds it with), as its exec properties."""
    from pipeline.components.index_builder import IndexBuilder

    params = inspect.signature(IndexBuilder.__init__).parameters
    keys = ("brute_force_below", "num_leaves", "leaves_to_search", "reorder", "recall_queries", "seed")
    return {k: params[k].default for k in keys}


@dataclasses.dataclass(frozen=True)
class RefreshOptions:
    """What `pinsage embed` was asked (cli.py's flags)."""

    model: str  # VERSION_DIR
    data_dir: str
    output: str
    push_to: Optional[str] = None  # MODEL_BASE_PATH; default: the directory holding VERSION_DIR
    beam_args: tuple = ()
    embed_strategy: str = EMBED.strategy
    keep: int = PUSH.keep
    # the cold-start evaluation's "retrained" row: a version (or an Embeddings artifact) of the same model trained
    # with the new items, e.g. a `pinsage run` on the new data
    retrained: Optional[str] = None


def _examples(out: str, component: str, key: str, n: int, split: str, uri: Optional[str] = None, parquet=True):
    from tfx.types import standard_artifacts

    a = (
        existing(standard_artifacts.Examples, uri, split)
        if uri
        else artifact(standard_artifacts.Examples, out, component, key, n, split)
    )
    if parquet:  # what TFXIO reads the payload format from, as on the pipeline's Examples
        a.set_string_custom_property("payload_format", "FORMAT_PARQUET")
        a.set_string_custom_property("file_format", "FILE_FORMAT_PARQUET")
    return a


def build_graph(opts: RefreshOptions, inputs, n: int) -> dict:
    """GraphGen's executor over the ingested tables: {graph, item_examples, item_schema} artifacts."""
    from tfx.types import standard_artifacts

    from pipeline.components import artifacts as pinsage_artifacts
    from pipeline.components import graph_gen

    out = opts.output
    schema = existing(standard_artifacts.Schema, os.path.dirname(inputs.items_schema))
    tables = {t: _examples(out, f"{t}_example_gen", "result", n, t, inputs.table_dirs[t]) for t in inputs.table_dirs}
    made = {
        "graph": artifact(pinsage_artifacts.PinSageGraph, out, "GraphGen", "graph", n),
        "item_examples": _examples(out, "GraphGen", "item_examples", n, graph_gen.ITEM_SPLIT),
        "item_schema": artifact(standard_artifacts.Schema, out, "GraphGen", "item_schema", n),
    }
    graph_gen.Executor(beam_context(graph_gen.Executor, out, opts.beam_args, "graph")).Do(
        {"items": [tables["items"]], "interactions": [tables["interactions"]], "items_schema": [schema]},
        {k: [v] for k, v in made.items()},
        {"ingest_report": inputs.ingest_report},
    )
    return made


def sample(opts: RefreshOptions, graph, config: SamplingConfig, n: int):
    """The NeighborhoodSampler's executor with `config` (the run's): the Neighborhoods artifact."""
    from pipeline.components import artifacts as pinsage_artifacts
    from pipeline.components import neighborhood_sampler as ns

    made = artifact(pinsage_artifacts.Neighborhoods, opts.output, "NeighborhoodSampler", "neighborhoods", n)
    props = {k: v for k, v in ns.exec_properties(config).items() if k != "neighborhoods"}
    ns.Executor(beam_context(ns.Executor, opts.output, opts.beam_args, "sampling")).Do(
        {"graph": [graph]}, {"neighborhoods": [made]}, props
    )
    return made


def embed(opts: RefreshOptions, source: Source, inputs, made: dict, n: int, stage=None) -> dict:
    """BulkEmbedder (+ ContextEmbedder with a tower) executors: adds embeddings (and context_vectors) to `made`."""
    from tfx.types import standard_artifacts

    from pipeline.components import artifacts as pinsage_artifacts
    from pipeline.components import bulk_embedder, context_embedder
    from pipeline.configs import HISTORY
    from pipeline.pipeline import resolve_embed_strategy

    out = opts.output
    made["model"] = existing(standard_artifacts.Model, source.model)
    made["embeddings"] = artifact(pinsage_artifacts.Embeddings, out, "BulkEmbedder", "embeddings", n)
    bulk_embedder.Executor(beam_context(bulk_embedder.Executor, out, opts.beam_args, "embed")).Do(
        {k: [made[k]] for k in ("model", "examples", "neighborhoods", "graph")},
        {"embeddings": [made["embeddings"]]},
        {
            "graph_schema": inputs.graph_schema,
            "strategy": resolve_embed_strategy(opts.embed_strategy, list(opts.beam_args)),
            "batch_size": EMBED.batch_size,
        },
    )
    if source.context_tower is None:
        return made
    if stage is not None:
        stage.switch("ContextEmbedder")
    made["context_tower"] = existing(standard_artifacts.Model, source.context_tower)
    made["context_vectors"] = artifact(pinsage_artifacts.ContextVectors, out, "ContextEmbedder", "context_vectors", n)
    context_embedder.Executor(beam_context(context_embedder.Executor, out, opts.beam_args, "contexts")).Do(
        {k: [made[k]] for k in ("graph", "context_tower", "embeddings")},
        {"context_vectors": [made["context_vectors"]]},
        {"batch_size": HISTORY.context_batch_size},
    )
    return made


def index_and_push(opts: RefreshOptions, source: Source, inputs, made: dict, n: int, stage=None) -> dict:
    """IndexBuilder and PinSagePusher executors; returns the Pusher's pushed.json."""
    from tfx.types import standard_artifacts

    from pipeline.components import artifacts as pinsage_artifacts
    from pipeline.components import index_builder
    from pipeline.components import pusher as pusher_component

    out = opts.output
    made["index"] = artifact(pinsage_artifacts.Index, out, "IndexBuilder", "index", n)
    index_builder.Executor().Do(
        {"embeddings": [made["embeddings"]], "item_examples": [made["item_examples"]]},
        {"index": [made["index"]]},
        {**index_params(), "features": json.dumps(inputs.features) if inputs.features else None},
    )
    if stage is not None:
        stage.switch("PinSagePusher")
    made["transform_graph"] = existing(standard_artifacts.TransformGraph, source.transform_graph)
    pushed = artifact(standard_artifacts.PushedModel, out, "PinSagePusher", "pushed_model", n)
    base = files.abspath(opts.push_to or files.dirname(source.version_dir))
    keys = ("embeddings", "index", "model", "transform_graph", "examples", "neighborhoods")
    keys += ("context_tower", "context_vectors") if "context_vectors" in made else ()
    pusher_component.Executor().Do(
        {k: [made[k]] for k in keys},
        {"pushed_model": [pushed]},
        {
            "serving_model_dir": os.path.dirname(base),
            "model_name": os.path.basename(base),
            "keep": opts.keep,
            "items_schema": inputs.items_schema,
            "refreshed_from": source.version_dir,
            "carried_blessing": source.blessed,
            "carried_recommend_blessed": source.recommend_blessed,
        },
    )
    return files.read_json(files.join(pushed.uri, pusher_component.PUSHED_FILE))


def _item_ids(version_dir: str) -> set:
    arrays = versions.read_serving_arrays(versions.index_dir(version_dir))
    return set() if arrays is None else {i.decode("utf-8") for i in arrays.item_ids.tolist()}


def prepare(opts: RefreshOptions):
    """The checks before any stage runs: the version (NotAModel naming it), the data's contract (ingest.InputError
    naming the file) and the model's features. Returns (source, pipeline inputs, ingest report)."""
    from pipeline import driver

    source = open_version(opts.model)
    files.makedirs(opts.output)
    inputs, ingest_report = driver.prepare_inputs(opts.output, data_dir=opts.data_dir)
    check_item_columns(source.transform_graph, inputs.items_schema, os.path.join(opts.data_dir, ingest.ITEMS_FILE))
    return source, inputs, ingest_report


def refresh(opts: RefreshOptions, prepared=None) -> dict:
    """The whole refresh (module docstring) after `prepare` (called here unless its result is given); returns the
    report it writes to OUT/refresh_report.json."""
    opts = dataclasses.replace(opts, output=files.abspath(opts.output))
    with scratch.run_scratch():  # TFX's temporary files, removed after the run (pipeline/scratch.py)
        return _refresh(opts, prepared)


def _refresh(opts: RefreshOptions, prepared) -> dict:
    from pipeline import driver
    from pipeline.components import graph_gen

    t0 = time.time()
    source, inputs, ingest_report = prepared or prepare(opts)
    out = opts.output
    config, sampling_from = sampling_config(source.sampling)
    n = run_number(out)
    stage = _Stages(time.time() - t0)
    with stage("GraphGen"):
        made = build_graph(opts, inputs, n)
    with stage("Transform"):
        made["examples"] = _examples(out, "Transform", "transformed_examples", n, graph_gen.ITEM_SPLIT, parquet=False)
        beam_executor = graph_gen.Executor(beam_context(graph_gen.Executor, out, opts.beam_args, "transform"))
        transform_items(
            beam_executor._make_beam_pipeline,  # the executors' Beam options: the same runner for every stage
            made["item_examples"],
            source.transform_graph,
            made["examples"],
            os.path.join(out, "tmp", "tft"),
        )
    with stage("NeighborhoodSampler"):
        made["neighborhoods"] = sample(opts, made["graph"], config, n)
    with stage("BulkEmbedder"):
        embed(opts, source, inputs, made, n, stage)
    with stage("IndexBuilder"):
        pushed = index_and_push(opts, source, inputs, made, n, stage)
    data_report = driver.write_data_report(out, ingest_report)
    with stage("ColdStartEvaluation"):
        cold = cold_start_evaluation(source, inputs, made, retrained_embeddings(opts.retrained))
    return write_report(opts, source, pushed, made, config, sampling_from, data_report, stage.seconds, cold)


class _Stages:
    """Each stage's wall time (seconds, by name) and the run's progress lines ("[pinsage] stage NAME ...", "...
    done in S s"), as `pinsage run` prints them (bench/scale.py attributes time and memory by them). A stage may
    hand over to a next one inside it (`switch`): the Pusher after the IndexBuilder."""

    def __init__(self, ingest_seconds: float):
        self.seconds = {"ingest": ingest_seconds}
        self.current, self.t = None, time.time()

    def switch(self, name: str) -> None:
        now = time.time()
        if self.current is not None:
            self.seconds[self.current] = now - self.t
            print(f"[pinsage] stage {self.current} done in {now - self.t:.1f} s", flush=True)
        self.current, self.t = name, now
        if name is not None:
            print(f"[pinsage] stage {name} ...", flush=True)

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.switch(name)
        yield
        self.switch(None)


def check_retrained(path: Optional[str]) -> Optional[str]:
    """What --retrained names without reading its arrays: "version", "embeddings" or None (no path); NotAModel
    naming the path for anything else (the CLI's check before any stage runs)."""
    from schema import embeddings as embeddings_io

    if path is None:
        return None
    if files.isdir(path) and files.exists(files.join(versions.index_dir(path), versions.ITEM_IDS_NPY)):
        return "version"
    if files.exists(files.join(path, embeddings_io.EMBEDDINGS_FILE)):
        return "embeddings"
    raise NotAModel(f"{path}: --retrained is neither a pushed version nor an Embeddings artifact")


def retrained_embeddings(path: Optional[str]) -> Optional[tuple]:
    """(emb, query_emb or None, item ids) of a version directory or an Embeddings artifact directory; None for
    None; NotAModel naming the path for anything else (check_retrained)."""
    from schema import embeddings as embeddings_io

    kind = check_retrained(path)
    if kind == "version":
        arrays = versions.read_serving_arrays(versions.index_dir(path))
        ids = [i.decode("utf-8") for i in arrays.item_ids.tolist()]
        return np.asarray(arrays.embeddings), _copy(arrays.query_embeddings), ids
    if kind == "embeddings":
        emb, ids, _ = embeddings_io.read_embeddings(path)
        return emb, embeddings_io.read_query_embeddings(path), list(ids)
    return None


def _copy(a):
    return None if a is None else np.array(a)


def cold_start_evaluation(source: Source, inputs, made: dict, retrained: Optional[tuple] = None) -> dict:
    """pipeline/evaluation/cold_start.py's section over the refreshed graph for the items the source version did
    not have (the model never trained on them); {"held_out_items": 0} when there are none."""
    from modules import features as features_lib
    from pipeline.components import graph_gen
    from pipeline.evaluation import cold_start
    from pipeline.evaluation import evaluate as evaluate_lib
    from schema import embeddings as embeddings_io
    from schema import graph as graph_io

    graph = graph_io.load_graph(made["graph"].uri)
    emb, ids, _ = embeddings_io.read_embeddings(made["embeddings"].uri)
    old = _item_ids(source.version_dir)
    new = [i for i in ids if i not in old]
    if not new:
        return {"held_out_items": 0}
    query = embeddings_io.read_query_embeddings(made["embeddings"].uri)
    refreshed = (cold_start.rows_of(emb, ids, graph), None if query is None else cold_start.rows_of(query, ids, graph))
    from tfx.types import artifact_utils

    uri = artifact_utils.get_split_uri([made["examples"]], graph_gen.ITEM_SPLIT)
    feats = features_lib.load_item_features(uri, inputs.graph_schema)
    categories, _ = evaluate_lib.categorical_values(feats, source.transform_graph)
    again = None
    if retrained is not None:
        r_emb, r_query, r_ids = retrained
        again = (
            cold_start.rows_of(r_emb, r_ids, graph),
            None if r_query is None else cold_start.rows_of(r_query, r_ids, graph),
        )
    section = cold_start.evaluate(graph, new, refreshed, feats, categories, again)
    section["how"] = "in the data, not in the source version"
    if retrained is not None:
        section["retrained_missing_items"] = int(graph.num_items - len(set(retrained[2]) & set(map(str, ids))))
    return section


def write_report(opts, source: Source, pushed: dict, made: dict, config, sampling_from, data_report, seconds, cold):
    from schema import embeddings as embeddings_io

    _, ids, _ = embeddings_io.read_embeddings(made["embeddings"].uri)
    old = _item_ids(source.version_dir)
    contexts = made.get("context_vectors")
    report = {
        "source_version": source.version_dir,
        "version": pushed.get("version"),
        "destination": pushed.get("destination"),
        "signatures": pushed.get("signatures"),
        "blessed": source.blessed,
        "recommend_blessed": source.recommend_blessed,
        "blessing": "carried from the source version (same model, not re-evaluated)",
        "items": len(ids),
        "new_items": len([i for i in ids if i not in old]),
        "items_dropped": len(old - set(ids)),
        "contexts": pushed.get("num_contexts", 0),
        "context_tower": source.context_tower is not None,
        "sampling": dataclasses.asdict(config),
        "sampling_config_from": sampling_from,
        "artifacts": {k: a.uri for k, a in made.items()},
        "context_vectors": contexts.uri if contexts is not None else None,
        "data_report": os.path.join(opts.output, "data_report.json"),
        "data": {k: data_report[k] for k in ("dataset", "ingest", "graph")},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "beam_args": list(opts.beam_args),
        "cold_start": cold,
    }
    files.write_json(os.path.join(opts.output, REPORT_FILE), report, indent=1, sort_keys=True)
    files.write_text(os.path.join(opts.output, REPORT_MD), markdown(report))
    return report


def markdown(report: dict) -> str:
    """refresh_report.md: what was refreshed, and the cold-start evaluation of the new items."""
    from pipeline.evaluation import cold_start

    lines = [
        "# Catalogue refresh (`pinsage embed`)",
        "",
        f"- source version: `{report['source_version']}` (blessing {report['blessing']})",
        f"- pushed version {report['version']}: `{report['destination']}`",
        f"- {report['items']} items, {report['new_items']} new, {report['items_dropped']} dropped; "
        f"{report['contexts']} context vectors",
        "",
    ]
    return "\n".join(lines + cold_start.markdown_lines(report.get("cold_start") or {})) + "\n"
