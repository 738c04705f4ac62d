"""pipeline/kubeflow_v2_runner.py: the pipeline compiled offline into a KFP v2 / Vertex AI PipelineJob JSON.

Checked against the pipeline definition itself (pipeline/pipeline.py built the same way for the local
runner): every component is a task with the same upstream components, runs from the given image, and reads its
inputs from the data root, not from this machine's staging directory. Its run options are `pinsage run`'s,
checked the same way before anything else (those tests run without kfp-pipeline-spec too)."""

import json
import os

import pytest
import yaml

from pipeline import cli
from pipeline import kubeflow_v2_runner as kfv2
from pipeline.configs import RunConfig
from pipeline.pipeline import create_pipeline

IMAGE = "europe-docker.pkg.dev/proj/repo/pinsage:1"
DATA_ROOT = "gs://bucket/pinsage/staging"
BEAM = ["--runner=DataflowRunner", "--project=proj", "--region=europe-west1"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    pytest.importorskip(
        "kfp.pipeline_spec.pipeline_spec_pb2",
        reason="kfp-pipeline-spec (TFX's KubeflowV2DagRunner protos) is not installed",
    )
    d = tmp_path_factory.mktemp("kfp")
    data = d / "data"
    data.mkdir()
    (data / "items.csv").write_text("item_id,title,genres\n1,A & B,x|y\n2,<C>,y\n3,D,x\n")
    (data / "interactions.csv").write_text(
        "context_id,item_id,timestamp\n" + "".join(f"{c},{i},{100 * c + i}\n" for c in range(1, 6) for i in (1, 2, 3))
    )
    staging = str(d / "staging")
    config = RunConfig(data_dir=str(data), beam_args=BEAM)
    inputs = kfv2.staged_inputs(staging, DATA_ROOT, config)
    out = str(d / "job" / "pipeline.json")
    job = kfv2.compile_pipeline(out, inputs, str(d / "root"), config, image=IMAGE)
    with open(out) as f:
        assert json.load(f) == job
    local = create_pipeline("pinsage", str(d / "local-root"), str(d / "m.sqlite"), inputs)
    yaml_job = kfv2.compile_pipeline(str(d / "job" / "pipeline.yaml"), inputs, str(d / "root"), config, image=IMAGE)
    with open(d / "job" / "pipeline.yaml") as f:
        assert yaml.safe_load(f) == yaml_job["pipelineSpec"]  # the KFP v2 upload format
    return job, local, staging


def test_every_component_is_a_task_with_the_same_upstream_components(compiled):
    job, local, _ = compiled
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert set(tasks) == {c.id for c in local.components}
    assert {
        "GraphGen",
        "Transform",
        "NeighborhoodSampler",
        "PairGen",
        "PinSageTrainer",
        "PinSageEvaluator",
        "BulkEmbedder",
        "IndexBuilder",
        "PinSagePusher",
    } <= set(tasks)
    for c in local.components:
        assert set(tasks[c.id].get("dependentTasks", [])) == {u.id for u in c.upstream_nodes}, c.id


def test_tasks_run_from_the_image_with_the_beam_options_and_read_from_the_data_root(compiled):
    job, _, staging = compiled
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    custom = {}
    imported = {}
    for name, ex in executors.items():
        if "importer" in ex:  # the tables ingest wrote, imported as Examples (no container)
            imported[name] = ex["importer"]["artifactUri"]["constantValue"]["stringValue"]
            continue
        c = ex["container"]
        assert c["image"] == IMAGE, name
        path = c["args"][c["args"].index("--executor_class_path") + 1]
        if path.startswith("pipeline."):  # our components: the image must contain this package
            custom[name] = c["args"]
    assert {"GraphGen_executor", "NeighborhoodSampler_executor", "BulkEmbedder_executor"} <= set(custom)
    for name in ("GraphGen_executor", "NeighborhoodSampler_executor", "BulkEmbedder_executor"):
        assert all(b in custom[name] for b in BEAM), name  # Beam pipeline options passed through
    assert set(imported) == {"items_example_gen_executor", "interactions_example_gen_executor"}
    for uri in imported.values():
        assert uri.startswith(DATA_ROOT + "/ingest/tables/")
        assert os.path.isdir(os.path.join(staging, uri[len(DATA_ROOT) + 1 :]))  # staged, to be copied there
    text = json.dumps(job["pipelineSpec"]["root"])
    assert staging not in text  # nothing points at this machine's staging
    report = job["pipelineSpec"]["root"]["dag"]["tasks"]["GraphGen"]["inputs"]["parameters"]["ingest_report"]
    path = report["runtimeValue"]["constantValue"]["stringValue"]
    assert path.startswith(DATA_ROOT + "/ingest/") and path.endswith("/ingest_report.json")
    rel = path[len(DATA_ROOT) + 1 :]
    assert os.path.exists(os.path.join(staging, rel))  # what to copy to the data root is there
    schema = job["pipelineSpec"]["root"]["dag"]["tasks"]["items_schema_gen"]["inputs"]["parameters"]["schema_file"]
    path = schema["runtimeValue"]["constantValue"]["stringValue"]
    assert path.startswith(DATA_ROOT + "/") and path.endswith("/items_schema.pbtxt")
    assert os.path.exists(os.path.join(staging, path[len(DATA_ROOT) + 1 :]))  # schema staged as well


def _options(parser) -> set:
    return {o for a in parser._actions for o in a.option_strings}


def test_the_run_options_are_pinsage_runs():
    run = next(a for a in cli.build_parser()._actions if a.dest == "command").choices["run"]
    # not here: where `pinsage run` writes (--output names the compiled file here), its local serving step and the
    # cold-start experiment (two runs and a refresh around the pipeline, not a stage of it)
    only_local = {"--serve-and-query", "--cold-start-share", "--cold-start-by", "--cold-start-seed"}
    assert _options(run) - _options(kfv2.build_parser()) == only_local


def _errors(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("[pinsage] ERROR")]


@pytest.mark.parametrize(
    "flags",
    [
        ["--hparams", '{"bogus": 1}'],
        ["--hparams", '{"epochs": "2"}'],
        ["--ablations", "x"],
        ["--context-tower-hparams", '{"bogus": 1}'],
        ["--context-tower-hparams", '{"max_len": "50"}'],
    ],
)
def test_a_bad_run_option_exits_2_with_the_message_of_pinsage_run(tmp_path, capsys, flags):
    """Refused while compiling (before any ingest), not inside the Trainer on the cluster."""
    rc_run = cli.main(["run", "--dataset", "ml-100k", "--output", str(tmp_path / "out"), *flags])
    want = _errors(capsys.readouterr().err)
    staging = tmp_path / "staging"
    argv = ["--dataset", "ml-100k", "--staging", str(staging), "--pipeline-root", "gs://b/root", *flags]
    rc = kfv2.main(argv + ["--output", str(tmp_path / "pipeline.json")])
    got = _errors(capsys.readouterr().err)
    assert rc == rc_run == 2
    assert len(want) == 1 and got == want
    assert not staging.exists() and not (tmp_path / "pipeline.json").exists()
