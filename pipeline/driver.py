"""Run driver: dataset -> checked inputs -> schemas -> pipeline on LocalDagRunner -> data report.

Shared by `pinsage run` (cli.py) and `tfx pipeline create/run --engine local` (local_runner.py), so both build the
same pipeline over the same artifacts. Everything a run makes lands under its output directory:
  <out>/data/<dataset>/        materialised bundled dataset (CSV contract)
  <out>/ingest/<hash>/         canonical CSVs + ingest_report.json (content-keyed: TFX cache hits on reruns)
  <out>/schema/                generated schemas (bundled datasets use the checked-in schema/<dataset>/)
  <out>/tfx/                   pipeline root;  <out>/metadata.sqlite  MLMD
  <out>/data_report.json       every bad input found, by reason, plus ExampleValidator anomalies
"""
from __future__ import annotations

import glob
import json
import logging
import os
import time

from pipeline import ingest
from pipeline.pinsage_pipeline import PipelineInputs, SamplingConfig, create_pipeline
from schema import build as schema_build

PIPELINE_NAME = "pinsage"
log = logging.getLogger("pinsage")


def prepare_inputs(output: str, dataset: str | None = None, data_dir: str | None = None,
                   cache_dir: str | None = None) -> tuple[PipelineInputs, dict]:
    """Materialises/ingests the data and resolves the schemas; returns the pipeline inputs and ingest report."""
    if bool(dataset) == bool(data_dir):
        raise ValueError("give exactly one of --dataset or --data-dir")
    if dataset:
        data_dir = os.path.join(output, "data", dataset)
        if not os.path.exists(os.path.join(data_dir, ingest.INTERACTIONS_FILE)):
            from pipeline import datasets
            print(f"[pinsage] materialising {dataset} into {data_dir}", flush=True)
            datasets.materialise(dataset, data_dir, cache_dir=cache_dir)
    canon, report = ingest.canonicalise(data_dir, os.path.join(output, "ingest"))
    spec = report["spec"]
    item_t, ctx_t = report["items"]["id_type"], report["interactions"]["context_id_type"]
    bundled = schema_build.bundled_dir(dataset) if dataset in schema_build.BUNDLED else None
    if bundled and os.path.exists(os.path.join(bundled, "items", schema_build.ITEMS_SCHEMA)):
        schema_dir = bundled
    else:
        schema_dir = os.path.join(output, "schema")
        schema_build.write_all(spec, item_t, ctx_t, schema_dir)
    inputs = PipelineInputs(
        canonical_dir=canon,
        items_schema=os.path.join(schema_dir, "items", schema_build.ITEMS_SCHEMA),
        interactions_schema=os.path.join(schema_dir, "interactions", schema_build.INTERACTIONS_SCHEMA),
        ingest_report=os.path.join(canon, ingest.REPORT_FILE),
        features=spec["features"],
        graph_schema=os.path.join(schema_dir, schema_build.GRAPH_SCHEMA),
        dataset=spec["name"],
    )
    return inputs, report


def build(output: str, dataset: str | None = None, data_dir: str | None = None, *,
          sampling: SamplingConfig | None = None, beam_args: list[str] | None = None,
          stop_after: str | None = None, enable_cache: bool = True, hparams: dict | None = None,
          eval_contexts: int | None = None, embed_strategy: str = "auto"):
    inputs, report = prepare_inputs(output, dataset, data_dir)
    pipeline = create_pipeline(PIPELINE_NAME, os.path.join(output, "tfx"), os.path.join(output, "metadata.sqlite"),
                               inputs, sampling=sampling, beam_pipeline_args=beam_args,
                               enable_cache=enable_cache, stop_after=stop_after, hparams=hparams,
                               serving_model_dir=os.path.join(output, "serving_model"),
                               eval_contexts=eval_contexts, embed_strategy=embed_strategy)
    return pipeline, report


class _StageProgress(logging.Handler):
    """Turns TFX's per-component log lines into one progress line per stage with its wall time."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.started: dict[str, float] = {}
        self.timings: dict[str, float] = {}

    def emit(self, record):
        msg = record.getMessage()
        for word, state in ((" is running.", "running"), (" is finished.", "finished")):
            if msg.startswith("Component ") and msg.endswith(word):
                name = msg[len("Component "):-len(word)]
                if state == "running":
                    self.started[name] = time.time()
                    print(f"[pinsage] stage {name} ...", flush=True)
                else:
                    dt = time.time() - self.started.get(name, time.time())
                    self.timings[name] = round(dt, 2)
                    print(f"[pinsage] stage {name} done in {dt:.1f} s", flush=True)


def run_local(pipeline) -> dict:
    """Runs on TFX's LocalDagRunner with stage-by-stage progress; returns per-stage wall times."""
    from absl import logging as absl_logging
    from tfx import v1 as tfx

    # TFX reports stage starts/ends at INFO: let those records reach _StageProgress, but keep the other handlers
    # at WARNING so the terminal is not flooded with pipeline protos.
    absl_logging.set_verbosity(absl_logging.INFO)
    root = logging.getLogger()
    quieted = [(h, h.level) for h in [absl_logging.get_absl_handler(), *root.handlers]]
    for h, _ in quieted:   # e.g. a basicConfig() handler some import installed: WARNING and up only
        h.setLevel(max(h.level, logging.WARNING))
    handler = _StageProgress()
    root.addHandler(handler)
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    finally:
        root.removeHandler(handler)
        for h, level in quieted:
            h.setLevel(level)
    return handler.timings


def latest_artifact_dir(output: str, component: str, key: str) -> str | None:
    """The newest execution's output directory of a component (pipeline_root/<component>/<key>/<exec id>)."""
    dirs = glob.glob(os.path.join(output, "tfx", component, key, "*"))
    dirs = [d for d in dirs if os.path.basename(d).isdigit()]
    return max(dirs, key=lambda d: int(os.path.basename(d))) if dirs else None


def anomalies(output: str) -> dict[str, list[str]]:
    """ExampleValidator anomalies per table, as readable strings."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

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
        "ingest": {k: ingest_report[k] for k in ("items", "interactions", "counts")},
        "features": ingest_report["spec"]["features"],
        "features_inferred": ingest_report["spec"].get("inferred", []),
        "graph": graph_stats,
        "example_validator_anomalies": anomalies(output),
    }
    with open(os.path.join(output, "data_report.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    return report


def summarize_data_report(report: dict) -> list[str]:
    """Human-readable lines: every non-zero problem count and every anomaly."""
    lines = []
    bad = {k: v for k, v in report["ingest"]["counts"].items() if v}
    bad.update({k: v for k, v in report["graph"].get("counts", {}).items()
                if v and ("dropped" in k or "without" in k or "fewer" in k)})
    for k, v in sorted(bad.items()):
        lines.append(f"  {k}: {v}")
    for table, found in report["example_validator_anomalies"].items():
        for a in found:
            lines.append(f"  ExampleValidator [{table}] {a}")
    if report["features_inferred"]:
        lines.append(f"  feature kinds inferred (no dataset.yaml entry): {report['features_inferred']}")
    return lines


def publish_report(report_dir: str, output: str) -> None:
    """Copies the evaluator's report.json / report.md / plots to the run's output directory (the CLI contract:
    everything a user looks at lands directly under OUT/)."""
    import shutil

    for name in ("report.json", "report.md"):
        shutil.copy(os.path.join(report_dir, name), os.path.join(output, name))
    if os.path.isdir(os.path.join(report_dir, "plots")):
        shutil.copytree(os.path.join(report_dir, "plots"), os.path.join(output, "plots"), dirs_exist_ok=True)
