"""Compiles the same pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines (TFX's KubeflowV2DagRunner).

    python -m pipeline.kubeflow_v2_runner --dataset ml-100k --staging runs/kfp-staging \
        --data-root gs://BUCKET/pinsage/staging --pipeline-root gs://BUCKET/pinsage/root \
        --image REGION-docker.pkg.dev/PROJECT/REPO/pinsage:latest --output pipeline.json

Compiling needs no cluster and no network: ingest and the schemas run here into --staging (as `pinsage run` does
into OUT/), and the compiled job refers to them under --data-root, where you copy --staging before submitting
(`gsutil -m rsync -r runs/kfp-staging gs://BUCKET/pinsage/staging`). Every component runs from --image, which must
contain this package (docs/RUNNERS.md: how to build it). Submitting and the other runners: docs/RUNNERS.md.

The run options are `pinsage run`'s (pipeline/run_options.py: the same flags, checked the same way before any data
is read) but --output, which names the compiled file here, and --serve-and-query. Needs `kfp-pipeline-spec` (the
PipelineSpec protos TFX compiles to; `pip install kfp-pipeline-spec==0.2.2`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys

from tfx import v1 as tfx

from pipeline import driver, run_options
from pipeline.configs import RunConfig
from pipeline.pipeline import PipelineInputs, create_pipeline

PATH_FIELDS = ("canonical_dir", "items_schema", "interactions_schema", "ingest_report", "graph_schema")


def staged_inputs(staging: str, data_root: str | None, config: RunConfig) -> PipelineInputs:
    """Ingest + schemas of `config`'s data into `staging` (schema files copied in too, so that one directory holds
    every input), with every path rewritten from `staging` to `data_root` (where the job will read them)."""
    inputs, _ = driver.prepare_inputs(
        staging, config.dataset, config.data_dir, ingest_limits=config.ingest_limits, shuffle_seed=config.shuffle_seed
    )
    staging = os.path.abspath(staging)
    moved = {}
    for field in PATH_FIELDS:
        path = os.path.abspath(getattr(inputs, field))
        if os.path.commonpath([path, staging]) != staging:  # a checked-in schema of a bundled dataset
            dst = os.path.join(staging, "schema", os.path.relpath(path, os.path.dirname(os.path.dirname(path))))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(path, dst)
            path = dst
        moved[field] = _to_root(path, staging, data_root)
    if inputs.table_dirs:  # content-addressed tables (driver.prepare_inputs)
        moved["table_dirs"] = {
            k: _to_root(os.path.abspath(v), staging, data_root) for k, v in inputs.table_dirs.items()
        }
    return dataclasses.replace(inputs, **moved)


def _to_root(path: str, staging: str, data_root: str | None) -> str:
    return path if not data_root else data_root.rstrip("/") + "/" + os.path.relpath(path, staging)


def compile_pipeline(
    output_file: str,
    inputs: PipelineInputs,
    pipeline_root: str,
    config: RunConfig | None = None,
    image: str | None = None,
    serving_model_dir: str | None = None,
) -> dict:
    """Writes the pipeline `config` describes (default: RunConfig()) to `output_file`: the KFP v2 PipelineJob as
    JSON (Vertex AI), or its PipelineSpec as YAML for a `.yaml` name (open-source Kubeflow Pipelines v2). Returns
    the PipelineJob as a dict."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kfv2  # ImportError without kfp-pipeline-spec

    pipeline = create_pipeline(
        driver.PIPELINE_NAME,
        pipeline_root,
        metadata_path=os.devnull,
        inputs=inputs,
        config=config,
        serving_model_dir=serving_model_dir or pipeline_root.rstrip("/") + "/serving_model",
    )
    pipeline.metadata_connection_config = None  # Kubeflow / Vertex run their own ML Metadata
    runner_config = kfv2.KubeflowV2DagRunnerConfig(default_image=image) if image else kfv2.KubeflowV2DagRunnerConfig()
    out_dir, name = os.path.split(os.path.abspath(output_file))
    os.makedirs(out_dir, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(runner_config, output_dir=out_dir, output_filename=name)
    return runner.run(pipeline)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.kubeflow_v2_runner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_options.add_source_arguments(p)
    p.add_argument("--staging", required=True, help="local directory for the ingested inputs")
    p.add_argument(
        "--data-root",
        default=None,
        help="where the job reads --staging from (gs://...); "
        "default: the local --staging paths (a cluster that mounts them)",
    )
    p.add_argument("--pipeline-root", required=True, help="artifact root of the job (gs://...)")
    p.add_argument("--serving-model-dir", default=None, help="default: <pipeline-root>/serving_model")
    p.add_argument(
        "--image",
        default=None,
        help="container image with this package installed (default: the "
        "stock TFX image, which lacks the custom components)",
    )
    p.add_argument("--output", default="pipeline.json", help="the PipelineJob JSON (or .yaml)")
    run_options.add_run_arguments(p)  # `pinsage run`'s options (pipeline/run_options.py)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = run_options.run_config(args)  # before anything else: a bad option costs no ingest
    except ValueError as e:
        print(f"[pinsage] ERROR: {e}", file=sys.stderr)
        return 2
    try:
        import kfp.pipeline_spec.pipeline_spec_pb2  # noqa: F401
    except ImportError:
        print(
            "[pinsage] ERROR: compiling for Kubeflow v2 / Vertex needs the PipelineSpec protos: "
            "pip install kfp-pipeline-spec==0.2.2",
            file=sys.stderr,
        )
        return 2
    from pipeline.data import datasets

    try:
        inputs = staged_inputs(args.staging, args.data_root, config)
    except (ValueError, datasets.DatasetUnavailable) as e:  # ingest.InputError is a ValueError naming the file
        print(f"[pinsage] ERROR: {e}", file=sys.stderr)
        return 2
    job = compile_pipeline(
        args.output, inputs, args.pipeline_root, config, image=args.image, serving_model_dir=args.serving_model_dir
    )
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    print(
        f"[pinsage] {args.output}: {len(tasks)} tasks ({', '.join(sorted(tasks))}); "
        f"inputs expected under {args.data_root or os.path.abspath(args.staging)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
