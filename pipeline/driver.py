"""Run driver: dataset -> checked inputs -> schemas -> pipeline on LocalDagRunner -> data report.

Shared by `pinsage run` (cli.py) and `tfx pipeline create/run --engine local` (local_runner.py), so both build the
same pipeline over the same artifacts. Everything a run makes lands under its output directory:
  <out>/data/<dataset>/        materialised bundled dataset (CSV contract)
  <out>/ingest/<hash>/         canonical CSVs + ingest_report.json (content-keyed: TFX cache hits on reruns)
  <out>/ingest/tables/<table>-<hash>/, <out>/ingest/files/<hash>/   each canonical table (hard link) and each
                               schema file (copy) again under its own content hash: the paths the pipeline reads,
                               so that a change invalidates only the stages downstream of what changed
  <out>/schema/                generated schemas (bundled datasets use the checked-in schema/<dataset>/)
  <out>/tfx/                   pipeline root;  <out>/metadata.sqlite  MLMD
  <out>/data_report.json       every bad input found, by reason, plus ExampleValidator anomalies
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time

from absl import logging as absl_logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx

from modules import index as index_builder
from pipeline import scratch
from pipeline.configs import RunConfig
from pipeline.data import ingest
from pipeline.evaluation import report as report_lib
from pipeline.graph.beam_graph import HELD_OUT_TIES
from pipeline.pipeline import PipelineInputs, create_pipeline
from schema import build as schema_build
from schema import embeddings as embeddings_io
from schema import graph as graph_io

PIPELINE_NAME = "pinsage"
log = logging.getLogger("pinsage")


def prepare_inputs(
    output: str,
    dataset: str | None = None,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    ingest_limits: dict | None = None,
    shuffle_seed: int | None = None,
) -> tuple[PipelineInputs, dict]:
    """Materialises/ingests the data and resolves the schemas; returns the pipeline inputs and ingest report.
    `ingest_limits`: overrides of configs.IngestLimits (the CLI's --max-id-length / --max-cell-length);
    `shuffle_seed`: the order-free check (--shuffle-order), bundled datasets only (datasets.shuffle_order)."""
    if bool(dataset) == bool(data_dir):
        raise ValueError("give exactly one of --dataset or --data-dir")
    if shuffle_seed is not None and not dataset:
        raise ValueError("--shuffle-order applies to a bundled --dataset (shuffle a --data-dir's timestamps yourself)")
    if dataset:
        from pipeline.data import datasets

        base, shuffle_seed, name = datasets.resolve_dataset(dataset, shuffle_seed)
        data_dir = os.path.join(output, "data", name)
        if not os.path.exists(os.path.join(data_dir, ingest.INTERACTIONS_FILE)):
            print(f"[pinsage] materialising {name} into {data_dir}", flush=True)
            datasets.materialise(base, data_dir, cache_dir=cache_dir, shuffle_seed=shuffle_seed)
        dataset = base  # the schema of the bundled base dataset fits its shuffled copies too
    canon, report = ingest.canonicalise(data_dir, os.path.join(output, "ingest"), ingest_limits)
    spec = report["spec"]
    item_t, ctx_t = report["items"]["id_type"], report["interactions"]["context_id_type"]
    bundled = schema_build.bundled_dir(dataset) if dataset in schema_build.BUNDLED else None
    if bundled and os.path.exists(os.path.join(bundled, "items", schema_build.ITEMS_SCHEMA)):
        schema_dir = bundled
    else:
        schema_dir = os.path.join(output, "schema")
        schema_build.write_all(spec, item_t, ctx_t, schema_dir)
    # TFX caches on exec properties, i.e. on paths: give every input file a path that changes exactly when its
    # content does (one hash for both tables would re-run the interactions branch for an items-only change; a
    # fixed schema path would keep a stale schema cached).
    store = os.path.join(output, "ingest")
    inputs = PipelineInputs(
        canonical_dir=canon,
        items_schema=content_addressed(os.path.join(schema_dir, "items", schema_build.ITEMS_SCHEMA), store),
        interactions_schema=content_addressed(
            os.path.join(schema_dir, "interactions", schema_build.INTERACTIONS_SCHEMA), store
        ),
        ingest_report=os.path.join(canon, ingest.REPORT_FILE),
        features=spec["features"],
        graph_schema=content_addressed(os.path.join(schema_dir, schema_build.GRAPH_SCHEMA), store),
        dataset=spec["name"],
        table_dirs={
            t: content_addressed_dir(os.path.join(canon, ingest.EXAMPLES_DIR, t), store, prefix=f"tables/{t}-")
            for t in ("items", "interactions")
        },
    )
    return inputs, report


def content_addressed_dir(src: str, store: str, prefix: str) -> str:
    """The directory tree `src` (ingest's Parquet Examples of one table: never rewritten in place) hard-linked to
    <store>/<prefix><sha256 of its relative paths and bytes>/, made once and atomically; returns that path."""
    files = sorted(os.path.relpath(os.path.join(d, f), src) for d, _, fs in os.walk(src) for f in fs)
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b"\0")
        with open(os.path.join(src, rel), "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    dest = os.path.join(store, f"{prefix}{h.hexdigest()[:16]}")
    if not os.path.exists(dest):
        tmp = f"{dest}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        for rel in files:
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            try:
                os.link(os.path.join(src, rel), os.path.join(tmp, rel))
            except OSError:  # e.g. another file system
                shutil.copy2(os.path.join(src, rel), os.path.join(tmp, rel))
        try:
            os.rename(tmp, dest)
        except OSError:  # another run made it first: same content
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def content_addressed(path: str, store: str, prefix: str = "files/", link: bool = False) -> str:
    """`path` copied (`link`: hard-linked, for files never rewritten in place, as ingest's complete canonical
    tables) to <store>/<prefix><sha256 of its bytes>/<basename>, made once and atomically (a run killed here
    leaves a temporary directory, never a partial one under the final name)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    dest_dir = os.path.join(store, f"{prefix}{h.hexdigest()[:16]}")
    dest = os.path.join(dest_dir, os.path.basename(path))
    if not os.path.exists(dest):
        tmp = f"{dest_dir}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        target = os.path.join(tmp, os.path.basename(path))
        if link:
            try:
                os.link(path, target)
            except OSError:  # e.g. another file system
                shutil.copy2(path, target)
        else:
            shutil.copy2(path, target)
        try:
            os.rename(tmp, dest_dir)
        except OSError:  # another run made it first: same content
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def build(output: str, config: RunConfig):
    """The run's inputs (ingested under `output`) and its pipeline, as `config` sets them (pipeline/run_options.py
    builds it from the flags); returns (pipeline, ingest report)."""
    inputs, report = prepare_inputs(
        output, config.dataset, config.data_dir, ingest_limits=config.ingest_limits, shuffle_seed=config.shuffle_seed
    )
    pipeline = create_pipeline(
        PIPELINE_NAME,
        os.path.join(output, "tfx"),
        os.path.join(output, "metadata.sqlite"),
        inputs,
        config,
        serving_model_dir=os.path.join(output, "serving_model"),
    )
    return pipeline, report


class StageError(RuntimeError):
    """A stage the local runner did not run although the run went on (TFX logs such errors and continues)."""


class StageTimings(dict):
    """Wall seconds per stage (name -> s) plus the stages this run took from the TFX cache (`cached`)."""

    def __init__(self):
        super().__init__()
        self.cached: list[str] = []


class _StageProgress(logging.Handler):
    """Turns TFX's per-component log lines into one progress line per stage with its wall time."""

    def __init__(self, total: int = 0):
        super().__init__(logging.INFO)
        self.started: dict[str, float] = {}
        self.timings = StageTimings()
        self.total, self.current = total, None
        self.failed: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("A cached execution ") and self.current:  # LocalDagRunner runs one node at a time
            self.timings.cached.append(self.current)
            return
        if record.levelno >= logging.ERROR and "Input resolution error" in msg and self.current:
            self.failed.append(self.current)  # TFX logs it, marks the execution failed and goes on
            return
        for word, state in ((" is running.", "running"), (" is finished.", "finished")):
            if msg.startswith("Component ") and msg.endswith(word):
                name = msg[len("Component ") : -len(word)]
                if state == "running":
                    self.started[name], self.current = time.time(), name
                    n = f" {len(self.started)}/{self.total}" if self.total else ""
                    print(f"[pinsage] stage{n} {name} ...", flush=True)
                else:
                    dt = time.time() - self.started.get(name, time.time())
                    self.timings[name] = round(dt, 2)
                    how = (
                        "NOT RUN (inputs not resolved)"
                        if name in self.failed
                        else "cached"
                        if name in self.timings.cached
                        else "done"
                    )
                    print(f"[pinsage] stage {name} {how} in {dt:.1f} s", flush=True)
                    self.current = None


def _package_user_modules(pipeline) -> None:
    """Builds the user-code wheels (Transform's module file) that the runner would build first anyway: TFX runs
    `setup.py bdist_wheel` in a subprocess whose setuptools output would bury the progress lines, so
    its output goes to a temp file, shown only if packaging fails. Resolved dependencies are not rebuilt later."""

    with tempfile.TemporaryFile() as out:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            for c in pipeline.components:
                if hasattr(c, "_resolve_pip_dependencies"):
                    c._resolve_pip_dependencies(pipeline.pipeline_info.pipeline_root)
        except BaseException:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            out.seek(0)
            sys.stderr.write(out.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_local(pipeline) -> StageTimings:
    """Runs on TFX's LocalDagRunner with stage-by-stage progress; returns per-stage wall times (and which
    stages were cache hits)."""

    # TFX reports stage starts/ends at INFO: let those records reach _StageProgress, but keep the other handlers
    # at WARNING so the terminal is not flooded with pipeline protos.
    absl_logging.set_verbosity(absl_logging.INFO)
    root = logging.getLogger()
    quieted = [(h, h.level) for h in [absl_logging.get_absl_handler(), *root.handlers]]
    for h, _ in quieted:  # e.g. a basicConfig() handler some import installed: WARNING and up only
        h.setLevel(max(h.level, logging.WARNING))
    handler = _StageProgress(len(pipeline.components))
    root.addHandler(handler)
    try:
        with scratch.run_scratch():  # TFX's temporary files, removed after the run (pipeline/scratch.py)
            _package_user_modules(pipeline)
            tfx.orchestration.LocalDagRunner().run(pipeline)
    finally:
        root.removeHandler(handler)
        for h, level in quieted:
            h.setLevel(level)
    if handler.failed:
        raise StageError(
            f"stages not run, their inputs could not be resolved: {', '.join(handler.failed)} "
            "(the traceback above says why; an output directory made by an older version of this "
            "package can cause it: rerun with --no-cache or a new --output)"
        )
    return handler.timings


def latest_artifact_dir(output: str, component: str, key: str) -> str | None:
    """The newest execution's output directory of a component (pipeline_root/<component>/<key>/<exec id>)."""
    dirs = glob.glob(os.path.join(output, "tfx", component, key, "*"))
    dirs = [d for d in dirs if os.path.basename(d).isdigit()]
    return max(dirs, key=lambda d: int(os.path.basename(d))) if dirs else None


def last_run_output_dir(output: str, component: str, key: str) -> str | None:
    """The output directory a component's newest execution in MLMD produced or, a cache hit, reused (the newest
    directory on disk is not it after a rerun that a cache hit answered from an older execution); None when the
    component never ran."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    path = os.path.join(output, "metadata.sqlite")
    if not os.path.exists(path):
        return None
    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = path
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(cfg)
    node = store.get_context_by_type_and_name("node", f"{PIPELINE_NAME}.{component}")
    done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
    executions = [e for e in (store.get_executions_by_context(node.id) if node else []) if e.last_known_state in done]
    if not executions:
        return None
    newest = max(executions, key=lambda e: (e.create_time_since_epoch, e.id))
    ids = [
        ev.artifact_id
        for ev in store.get_events_by_execution_ids([newest.id])
        if ev.type == metadata_store_pb2.Event.OUTPUT and ev.path.steps and ev.path.steps[0].key == key
    ]
    return store.get_artifacts_by_id(ids[:1])[0].uri if ids else None


def pushed_model(output: str) -> dict | None:
    """The run's push: pushed.json of the PinSagePusher's newest execution ({"pushed": false, ...} when the
    blessing refused the model); None when the run has no Pusher output (it stopped earlier)."""
    d = last_run_output_dir(output, "PinSagePusher", "pushed_model")
    if not d or not os.path.exists(os.path.join(d, "pushed.json")):
        return None
    with open(os.path.join(d, "pushed.json")) as f:
        return json.load(f)


def anomalies(output: str) -> dict[str, list[str]]:
    """ExampleValidator anomalies per table, as readable strings."""

    out = {}
    for table in ("items", "interactions"):
        d = latest_artifact_dir(output, f"{table}_validator", "anomalies")
        if not d:
            continue
        found = []
        for path in glob.glob(os.path.join(d, "Split-*", "SchemaDiff.pb")):
            a = anomalies_pb2.Anomalies()
            with open(path, "rb") as f:
                a.ParseFromString(f.read())
            for feat, info in sorted(a.anomaly_info.items()):
                found.append(f"{feat}: {info.short_description} ({info.description})")
            if a.HasField("dataset_anomaly_info"):
                found.append(f"<dataset>: {a.dataset_anomaly_info.description}")
        out[table] = found
    return out


def write_data_report(output: str, ingest_report: dict) -> dict:
    """Merges ingest counts, GraphGen counts and ExampleValidator anomalies into <out>/data_report.json."""
    graph_dir = latest_artifact_dir(output, "GraphGen", "graph")
    graph_stats = {}
    if graph_dir and os.path.exists(os.path.join(graph_dir, "graph_stats.json")):
        with open(os.path.join(graph_dir, "graph_stats.json")) as f:
            graph_stats = json.load(f)
            graph_stats.pop("ingest", None)
    report = {
        "dataset": ingest_report["spec"]["name"],
        "ingest": {k: ingest_report[k] for k in ("items", "interactions", "counts", "limits") if k in ingest_report},
        "features": ingest_report["spec"]["features"],
        "features_inferred": ingest_report["spec"].get("inferred", []),
        "graph": graph_stats,
        "example_validator_anomalies": anomalies(output),
    }
    with open(os.path.join(output, "data_report.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    return report


def summarize_data_report(report: dict) -> list[str]:
    """Human-readable lines: every non-zero problem count and every anomaly, then information that is no problem
    (held-out items the split's tie-break picked among tied timestamps)."""
    lines = []
    bad = {k: v for k, v in report["ingest"]["counts"].items() if v}
    bad.update(
        {
            k: v
            for k, v in report["graph"].get("counts", {}).items()
            if v and ("dropped" in k or "without" in k or "fewer" in k)
        }
    )
    for k, v in sorted(bad.items()):
        lines.append(f"  {k}: {v}")
    for table, found in report["example_validator_anomalies"].items():
        for a in found:
            lines.append(f"  ExampleValidator [{table}] {a}")
    if report["features_inferred"]:
        lines.append(f"  feature kinds inferred (no dataset.yaml entry): {report['features_inferred']}")
    counts = report["graph"].get("counts", {})
    if counts.get(HELD_OUT_TIES):
        lines = lines or ["  no bad input found"]  # the note below is information, not a problem
        lines.append(
            f"  note: {counts[HELD_OUT_TIES]} of {counts.get('interactions.test', 0)} contexts had held-out items "
            f"picked among tied timestamps by the split's seeded tie-break ({HELD_OUT_TIES}; nothing dropped)"
        )
    return lines


def example_queries(output: str, per_bucket: int = 2, k: int = 10, seed: int = 0) -> list[dict] | None:
    """Related items of `per_bucket` query items from each of the head, torso and tail of the catalogue (thirds
    of the train interactions, modules.evaluation.popularity_buckets): the bucket's most engaged item, then seeded
    random ones (report_lib.example_query_rows), computed offline from the run's ScaNN index and batch embeddings
    as `pinsage serve` answers them. Each entry: query_id, query_title, bucket, train_interactions, related
    [{item_id, title, score}]; None without an index."""
    from modules.evaluation import popularity_buckets

    emb_dir = latest_artifact_dir(output, "BulkEmbedder", "embeddings")
    index_dir = latest_artifact_dir(output, "IndexBuilder", "index")
    graph_dir = latest_artifact_dir(output, "GraphGen", "graph")
    if not (emb_dir and index_dir and graph_dir):
        return None
    emb, ids, _ = embeddings_io.read_embeddings(emb_dir)
    index = index_builder.load_index(index_dir)
    if len(index.item_ids) != len(ids) or list(index.item_ids[:1000]) != ids[:1000]:
        raise ValueError(f"{index_dir} and {emb_dir} disagree on the item ids")
    items = graph_io.read_table(graph_dir, graph_io.ITEMS, ["node_id", "train_degree"]).sort_by("node_id")
    degree = items.column("train_degree").to_numpy()
    picks = report_lib.example_query_rows(degree, popularity_buckets(degree), per_bucket, seed)
    rows = [r for r, _ in picks]
    query = embeddings_io.read_query_embeddings(emb_dir)  # a query-head model searches with u_q
    found = report_lib.related_items(
        index.searcher, emb if query is None else query, index.item_ids, index.titles, rows, k
    )
    return [
        {
            "query_id": f["item_id"],
            "query_title": f["title"],
            "bucket": bucket,
            "train_interactions": int(degree[r]),
            "related": f["related"],
        }
        for (r, bucket), f in zip(picks, found)
    ]


def publish_report(
    report_dir: str,
    output: str,
    data_report: dict | None = None,
    timings: dict | None = None,
    examples: list[dict] | None = None,
    cold_start: dict | None = None,
) -> str:
    """The run's report in its output directory (the CLI contract: everything a user looks at lands directly
    under OUT/): the evaluator's report.json plus the data report, the example queries and the stage timings,
    rendered as report.json / report.md / report.html (plots copied to OUT/plots and inlined in the HTML).
    Returns the path of report.html."""

    with open(os.path.join(report_dir, "report.json")) as f:
        report = json.load(f)
    if os.path.isdir(os.path.join(report_dir, "plots")):
        shutil.copytree(os.path.join(report_dir, "plots"), os.path.join(output, "plots"), dirs_exist_ok=True)
    if data_report is not None:
        report["data"] = data_report
    if timings is not None:
        report["run_timings"] = timings
    if examples is not None:
        report["example_queries"] = examples
    if cold_start is not None:  # `pinsage run --cold-start-share` (pipeline/refresh/cold_start_run.py)
        report["cold_start"] = cold_start
    report_lib.write(report, output)
    return os.path.join(output, "report.html")
